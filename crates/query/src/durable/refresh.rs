//! The current result of some keys sent again (see `ContinuousQuery::refresh`), logged like
//! any result batch: durable with its sequences before it is returned, sent again after a
//! crash until acknowledged.

use std::sync::PoisonError;

use surefoot_core_model::{Batch, Row};

use super::codec::StoredBatch;
use super::{DurableError, DurableQuery};

impl DurableQuery {
    /// A result batch with the current state of each of `keys`: an update to its current row,
    /// or a delete of a key no longer in the result; `None` for no keys. Durable before it is
    /// returned.
    pub fn refresh(&mut self, keys: &[Row]) -> Result<Option<Batch>, DurableError> {
        let cell = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let on_settled = surefoot_core_model::AckToken::new(self.on_delivered_cell(cell.clone()));
        let Some(batch) = self.query.refresh(keys, on_settled)? else {
            return Ok(None);
        };
        let record = StoredBatch::of(&batch);
        // Set before the batch leaves this function, so before its token can settle.
        cell.store(record.sequence()?, std::sync::atomic::Ordering::Release);
        let acknowledged = std::mem::take(
            &mut *self
                .acknowledged
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut outputs = self.commit(&[], &[record], &acknowledged, vec![batch])?;
        Ok(outputs.pop())
    }
}
