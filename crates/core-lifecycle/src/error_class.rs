//! How an error classifies itself, so that retry loops can act on it.

use std::fmt;

/// What kind of failure an error is, which decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// May succeed if tried again later (connection reset, server restarting).
    Transient,
    /// Will fail again whatever is retried (authentication failed, object missing).
    Permanent,
    /// The configuration is wrong; a person must change it.
    Configuration,
    /// An operation did not finish within its time limit. Retrying may help.
    Timeout,
    /// The operation was cancelled on purpose (stop, shutdown). Never retried.
    Cancelled,
}

impl ErrorClass {
    /// Whether a retry loop should try again after an error of this class.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Timeout)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Configuration => "configuration",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Cancelled => "cancelled",
        };
        f.write_str(name)
    }
}

/// An error that knows its [`ErrorClass`].
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
}

impl Classify for std::io::Error {
    /// Connection-level failures (refused, reset, aborted, broken pipe, unexpected end, …) are
    /// [`ErrorClass::Transient`]; `TimedOut` is [`ErrorClass::Timeout`]; `PermissionDenied`,
    /// `NotFound`, `InvalidInput`, `InvalidData` and `Unsupported` are
    /// [`ErrorClass::Permanent`]. Anything else is treated as transient: a retry loop's budget
    /// bounds the cost of being wrong, while failing fast on a passing fault would stop a
    /// pipeline for nothing.
    fn class(&self) -> ErrorClass {
        use std::io::ErrorKind;
        match self.kind() {
            ErrorKind::TimedOut => ErrorClass::Timeout,
            ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::InvalidInput
            | ErrorKind::InvalidData
            | ErrorKind::Unsupported => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}
