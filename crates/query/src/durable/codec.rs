//! How the durable copy writes tuples and result batches: JSON of the pipeline's own types
//! (`Value`, `Change`), so a stored value reads back as exactly the value it was.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use surefoot_core_model::{Batch, Change, Position, Value};

use super::DurableError;
use crate::datum::{Datum, Tuple};

/// A tuple as stored: its values in the table's kept-column order.
pub(crate) fn encode_tuple(tuple: &Tuple) -> Result<Vec<u8>, DurableError> {
    let values: Vec<Value> = tuple.iter().map(Datum::to_value).collect();
    serde_json::to_vec(&values).map_err(DurableError::Codec)
}

/// A stored tuple read back.
pub(crate) fn decode_tuple(bytes: &[u8]) -> Result<Tuple, DurableError> {
    let values: Vec<Value> = serde_json::from_slice(bytes).map_err(DurableError::Codec)?;
    values
        .iter()
        .map(|value| {
            Datum::from_value(value).ok_or_else(|| {
                DurableError::Corrupt("a stored row holds an unchanged marker".into())
            })
        })
        .collect()
}

/// A result batch in the output log, without its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredBatch {
    pub(crate) first: Position,
    pub(crate) last: Position,
    pub(crate) commit_time: Option<DateTime<Utc>>,
    pub(crate) changes: Vec<Change>,
}

impl StoredBatch {
    pub(crate) fn of(batch: &Batch) -> Self {
        Self {
            first: batch.first,
            last: batch.last,
            commit_time: batch.commit_time,
            changes: batch.changes.to_vec(),
        }
    }

    /// The first sequence number: the batch's key in the log.
    pub(crate) fn sequence(&self) -> Result<u64, DurableError> {
        match self.first {
            Position::Sequence(sequence) => Ok(sequence),
            other => Err(DurableError::Corrupt(format!(
                "a result batch starts at {other}, not at a sequence"
            ))),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, DurableError> {
        serde_json::to_vec(self).map_err(DurableError::Codec)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DurableError> {
        serde_json::from_slice(bytes).map_err(DurableError::Codec)
    }

    pub(crate) fn changes(&self) -> Arc<[Change]> {
        self.changes.clone().into()
    }
}
