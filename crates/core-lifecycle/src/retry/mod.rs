//! Retrying fallible operations: exponential backoff with full jitter, an attempt budget and a
//! time budget, acting on each error's [`ErrorClass`](crate::ErrorClass).

mod backoff;
mod budget;
mod run;

pub use backoff::{Backoff, RetryPolicy, Schedule};
pub use budget::RetryBudget;
pub use run::{Budget, Retry, RetryError};
