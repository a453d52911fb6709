//! The Redis backend's errors.

use surefoot_core_lifecycle::{Classify, ErrorClass, TimeoutError};

/// A Redis queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisQueueError {
    /// Redis refused the command or the connection failed.
    #[error("Redis `{operation}` on stream `{stream}` failed")]
    Redis {
        /// The command.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer in time.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
    /// An entry could not be encoded or decoded.
    #[error("entry {id} of stream `{stream}` is not a batch: {reason}")]
    Codec {
        /// The stream.
        stream: String,
        /// The entry id (`-` before it has one).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The settings are invalid.
    #[error("invalid Redis queue configuration: {}", problems.join("; "))]
    Config {
        /// Each problem with its path.
        problems: Vec<String>,
    },
}

impl Classify for RedisQueueError {
    fn class(&self) -> ErrorClass {
        match self {
            RedisQueueError::Redis { source, .. } => redis_class(source),
            RedisQueueError::Timeout(_) => ErrorClass::Timeout,
            RedisQueueError::Codec { .. } => ErrorClass::Permanent,
            RedisQueueError::Config { .. } => ErrorClass::Configuration,
        }
    }
}

/// Connection trouble is transient; a refused command (wrong type, no group) is permanent.
pub(crate) fn redis_class(error: &redis::RedisError) -> ErrorClass {
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
    {
        ErrorClass::Transient
    } else if error.kind() == redis::ErrorKind::AuthenticationFailed {
        ErrorClass::Configuration
    } else {
        ErrorClass::Permanent
    }
}
