//! The instance lease in a build without the `redis` feature: there is none. Keys are kept in
//! this process, so one process serves a source and nothing needs a lease (see `lease.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::HttpSourceError;
use crate::idempotency::IdempotencyStore;
use crate::source::Shared;

/// Has no value: an instance lease lives in Redis.
#[derive(Debug)]
pub(crate) enum InstanceLease {}

impl InstanceLease {
    /// Never called: there is no lease to take.
    pub(crate) async fn acquire(&self) -> Result<(), HttpSourceError> {
        match *self {}
    }

    /// Never called: sequences come from this process's counter.
    pub(crate) async fn reserve(&self, _count: u64) -> Result<u64, HttpSourceError> {
        match *self {}
    }
}

/// No lease: keys are kept in this process.
pub(crate) fn for_store(
    _store: &IdempotencyStore,
    _instance: Option<&str>,
    _period: Duration,
) -> Option<InstanceLease> {
    None
}

/// The lease task has nothing to renew.
pub(crate) async fn run(
    _shared: Arc<Shared>,
    _cancel: CancellationToken,
) -> Result<(), HttpSourceError> {
    Ok(())
}
