//! How a supervised task instance ended, and why a supervisor gave up.
//!
//! These are error types with real `source` chains: a task's own error stays reachable (and
//! downcastable) through [`std::error::Error::source`], never flattened to a string (FINDINGS
//! D-3.1).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error_class::{Classify, ErrorClass};
use crate::task_group::TaskError;

/// A task's error, shared so that events, health and reports can all hold it.
pub type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

/// A task panicked; the message is the panic payload when it was a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task panicked: {message}")]
pub struct PanicError {
    message: Arc<str>,
}

impl PanicError {
    /// A panic with this message.
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        if let Some(text) = payload.downcast_ref::<&str>() {
            Self::new(*text)
        } else if let Some(text) = payload.downcast_ref::<String>() {
            Self::new(text.as_str())
        } else {
            Self::new("panic with a non-string payload")
        }
    }
}

/// How one instance of a supervised task ended.
#[derive(Debug, Clone)]
pub enum ExitCause {
    /// The task returned `Ok(())`. Under [`RestartPolicy::Always`](super::RestartPolicy) this is
    /// an unexpected exit and is restarted.
    Finished,
    /// The task returned an error; it is the [`source`](StdError::source) of this value.
    Failed(SharedError),
    /// The task panicked.
    Panicked(PanicError),
}

impl ExitCause {
    pub(crate) fn from_error(error: impl Into<TaskError>) -> Self {
        ExitCause::Failed(Arc::from(error.into()))
    }

    /// True for [`ExitCause::Failed`] and [`ExitCause::Panicked`].
    pub fn is_failure(&self) -> bool {
        !matches!(self, ExitCause::Finished)
    }

    /// True for [`ExitCause::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, ExitCause::Panicked(_))
    }
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Finished => f.write_str("task returned"),
            ExitCause::Failed(_) => f.write_str("task returned an error"),
            ExitCause::Panicked(panic) => panic.fmt(f),
        }
    }
}

impl StdError for ExitCause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ExitCause::Failed(error) => Some(&**error),
            ExitCause::Finished | ExitCause::Panicked(_) => None,
        }
    }
}

impl Classify for ExitCause {
    /// A task failure is [`ErrorClass::Transient`] (a supervisor may restart it); a panic is a
    /// bug and [`ErrorClass::Permanent`].
    fn class(&self) -> ErrorClass {
        match self {
            ExitCause::Finished | ExitCause::Failed(_) => ErrorClass::Transient,
            ExitCause::Panicked(_) => ErrorClass::Permanent,
        }
    }
}

/// A supervisor exceeded its restart intensity and gave up: its component is `Failed`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "supervisor `{supervisor}` gave up: task `{task}` needed more than {intensity} restarts within {period:?}"
)]
pub struct IntensityExceeded {
    /// The supervisor that gave up.
    pub supervisor: Arc<str>,
    /// The task whose exit exceeded the intensity.
    pub task: Arc<str>,
    /// Restarts allowed within `period`.
    pub intensity: u32,
    /// The sliding window restarts are counted in.
    pub period: Duration,
    /// The exit that was one too many.
    #[source]
    pub last: ExitCause,
}

impl Classify for IntensityExceeded {
    /// Restarting has already been tried as often as allowed: [`ErrorClass::Permanent`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Renders an error and its whole source chain on one line, for logs.
pub(crate) fn chain_to_string(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
