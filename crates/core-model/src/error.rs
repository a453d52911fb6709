//! The error type the shared traits return.

use std::error::Error as StdError;

use surefoot_core_lifecycle::{Classify, ErrorClass};

/// An error from a component behind one of the shared traits, with its class and its cause.
///
/// The cause keeps its type: find it with [`std::error::Error::source`] and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed ({class})")]
pub struct ComponentError {
    operation: &'static str,
    class: ErrorClass,
    #[source]
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl ComponentError {
    /// Wraps `source`, which failed during `operation`, classified as `class`.
    pub fn new(
        operation: &'static str,
        class: ErrorClass,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            operation,
            class,
            source: source.into(),
        }
    }

    /// Wraps an error that classifies itself.
    pub fn classified<E>(operation: &'static str, source: E) -> Self
    where
        E: StdError + Classify + Send + Sync + 'static,
    {
        Self::new(operation, source.class(), source)
    }

    /// The operation that failed, e.g. `start`.
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

impl Classify for ComponentError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}
