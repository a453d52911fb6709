//! The source's typed errors.

use std::net::SocketAddr;

use surefoot_core_lifecycle::{Classify, ErrorClass, SpawnError, TimeoutError};

use crate::config::ConfigError;

/// Why the HTTP source could not start or run. Non-exhaustive: the `Redis` variant exists only
/// with the `redis` feature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSourceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be bound (address in use, permission denied...).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address that was refused.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The Redis idempotency store could not be reached or answered an error (`redis` feature).
    #[cfg(feature = "redis")]
    #[error("idempotency store in Redis: {operation}")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// Redis's error.
        #[source]
        source: redis::RedisError,
    },
    /// A Redis command did not answer in time.
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
    /// Another live process holds this instance's lease: two processes were started with the
    /// same `instance` (decision 0008).
    #[error(
        "instance `{instance}` is served by another live process (its lease was still renewed \
         after {waited:?}); give each process its own instance id"
    )]
    InstanceInUse {
        /// The instance id.
        instance: String,
        /// How long the start waited for the lease.
        waited: std::time::Duration,
    },
    /// This process no longer holds its instance lease (another process took it after a
    /// renewal failed): it reserves no more sequences.
    #[error("instance `{instance}` lost its lease to another process")]
    LeaseLost {
        /// The instance id.
        instance: String,
    },
    /// A task could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl Classify for HttpSourceError {
    fn class(&self) -> ErrorClass {
        match self {
            HttpSourceError::Config(_) => ErrorClass::Configuration,
            HttpSourceError::Bind { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::InvalidInput => ErrorClass::Configuration,
                _ => ErrorClass::Transient,
            },
            #[cfg(feature = "redis")]
            HttpSourceError::Redis { source, .. } => {
                if source.is_connection_refusal()
                    || source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_timeout()
                {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            HttpSourceError::Timeout(error) => error.class(),
            HttpSourceError::InstanceInUse { .. } => ErrorClass::Configuration,
            HttpSourceError::LeaseLost { .. } | HttpSourceError::Spawn(_) => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_transient_and_a_forbidden_one_is_configuration() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 80));
        let taken = HttpSourceError::Bind {
            addr,
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(taken.class(), ErrorClass::Transient);
        assert!(taken.to_string().contains("127.0.0.1:80"));
        let forbidden = HttpSourceError::Bind {
            addr,
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(forbidden.class(), ErrorClass::Configuration);
    }
}
