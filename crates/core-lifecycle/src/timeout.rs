//! Timeouts that name the operation that timed out.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use crate::error_class::{Classify, ErrorClass};

/// An operation did not finish within its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation `{operation}` timed out after {limit:?}")]
pub struct TimeoutError {
    operation: Cow<'static, str>,
    limit: Duration,
}

impl TimeoutError {
    /// A timeout of `operation` after `limit`.
    pub fn new(operation: impl Into<Cow<'static, str>>, limit: Duration) -> Self {
        Self {
            operation: operation.into(),
            limit,
        }
    }

    /// The operation that timed out.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The limit it exceeded.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl Classify for TimeoutError {
    /// Always [`ErrorClass::Timeout`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Timeout
    }
}

/// Runs `future` for at most `limit`; on expiry drops it and returns a [`TimeoutError`] naming
/// `operation`.
///
/// Cancel safety: as cancel-safe as `future` itself; on timeout `future` is dropped, with the
/// same consequences as dropping it anywhere else.
pub async fn timeout<F: Future>(
    operation: impl Into<Cow<'static, str>>,
    limit: Duration,
    future: F,
) -> Result<F::Output, TimeoutError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_elapsed| TimeoutError::new(operation, limit))
}
