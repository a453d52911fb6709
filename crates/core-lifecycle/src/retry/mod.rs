//! Retrying fallible operations: exponential backoff with full jitter, an attempt budget and a
//! time budget, acting on each error's [`ErrorClass`](crate::ErrorClass).

mod backoff;
mod run;

pub use backoff::{Backoff, RetryPolicy, Schedule};
pub use run::{Budget, Retry, RetryError};
