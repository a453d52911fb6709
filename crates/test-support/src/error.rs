//! The error type of every fallible operation in this crate.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while running a test server or proxy.
///
/// Messages are written for the person reading a failed test: they say what was being done and,
/// where a server is involved, end with the tail of its log. `Debug` prints the same message
/// followed by its causes, so a failed `.unwrap()` shows the log readably.
#[derive(thiserror::Error)]
pub enum Error {
    /// A server program is not installed where we look for it.
    #[error("{what} not found (looked in {searched}); {install}")]
    BinaryNotFound {
        /// The program(s) that were looked for.
        what: String,
        /// Where we looked.
        searched: String,
        /// What to install to get it.
        install: String,
    },
    /// Running as root, but there is no unprivileged user to run PostgreSQL as.
    #[error(
        "running as root and PostgreSQL refuses to run as root, but there is no `{user}` system user to run it as; install the Debian package `postgresql` (it creates the user) or run the tests as a normal user"
    )]
    NoServiceUser {
        /// The user that was looked up.
        user: String,
    },
    /// A file-system or process operation failed.
    #[error("{action}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call through `nix` failed.
    #[error("{action}")]
    Sys {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// A setup command (such as `initdb`) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its combined output.
        output: String,
    },
    /// The server process exited while it was expected to run.
    #[error("{server} exited unexpectedly ({status}); log tail ({log}):\n{log_tail}")]
    ServerExited {
        /// Which server.
        server: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// Waiting for something about a server took longer than allowed.
    #[error("{what} did not happen within {timeout:?}; log tail ({log}):\n{log_tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound that was exceeded.
        timeout: Duration,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A proxy operation did not finish within its bound.
    #[error("fault proxy: {what} did not happen within {timeout:?}")]
    ProxyTimeout {
        /// What was awaited.
        what: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// An operation needs the server to be stopped, and it is running.
    #[error("{server} is already running")]
    AlreadyRunning {
        /// Which server.
        server: String,
    },
    /// A PostgreSQL client operation failed.
    #[error("{action}")]
    Postgres {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A task of the fault proxy could not be started.
    #[error("could not start a fault-proxy task")]
    Spawn(#[from] surefoot_core_lifecycle::SpawnError),
}

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn sys(action: impl Into<String>, source: nix::Error) -> Self {
        Self::Sys {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn pg(action: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Postgres {
            action: action.into(),
            source,
        }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
