//! The runtime's errors.

use surefoot_core_lifecycle::{Classify, ErrorClass, SpawnError, TimeoutError, TransitionError};
use surefoot_core_model::ComponentError;

use crate::queue::ConfigError;
use crate::upstream::SubscribeError;

/// Why the runtime could not start, or why it failed while running.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Another start or stop is under way, or the runtime is already running.
    #[error("reaction `{reaction}` cannot change status")]
    Status {
        /// The reaction.
        reaction: String,
        /// The refused transition.
        #[source]
        source: TransitionError,
    },
    /// The upstream refused the subscription (it is stopping, say). No task was started.
    #[error("reaction `{reaction}` could not subscribe")]
    Subscribe {
        /// The reaction.
        reaction: String,
        /// Why.
        #[source]
        source: SubscribeError,
    },
    /// A task could not be started; everything started before it was stopped.
    #[error("reaction `{reaction}` could not start its tasks")]
    Spawn {
        /// The reaction.
        reaction: String,
        /// Why.
        #[source]
        source: SpawnError,
    },
    /// The upstream ended the subscription while the reaction was running (D-2.2).
    #[error("the upstream of reaction `{reaction}` closed its subscription while it was running")]
    UpstreamClosed {
        /// The reaction.
        reaction: String,
    },
}

impl Classify for RuntimeError {
    fn class(&self) -> ErrorClass {
        match self {
            RuntimeError::Config(_) => ErrorClass::Configuration,
            RuntimeError::Status { .. } => ErrorClass::Permanent,
            RuntimeError::Subscribe { source, .. } => source.class(),
            RuntimeError::Spawn { .. } | RuntimeError::UpstreamClosed { .. } => {
                ErrorClass::Transient
            }
        }
    }
}

/// One attempt of a reaction failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The reaction returned an error.
    #[error(transparent)]
    Reaction(#[from] ComponentError),
    /// The reaction did not finish within the attempt limit.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
}

impl Classify for AttemptError {
    fn class(&self) -> ErrorClass {
        match self {
            AttemptError::Reaction(error) => error.class(),
            AttemptError::Timeout(error) => error.class(),
        }
    }
}
