//! Turning SIGTERM and SIGINT into an orderly shutdown.

use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::error_class::{Classify, ErrorClass};
use crate::supervisor::{RestartPolicy, Supervisor};
use crate::task_group::SpawnError;

/// The signal that asked for shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownSignal {
    /// SIGTERM (service managers, `kill`).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// A signal handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {signal}")]
pub struct SignalError {
    signal: &'static str,
    #[source]
    source: io::Error,
}

impl Classify for SignalError {
    /// The process cannot install handlers: [`ErrorClass::Configuration`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Configuration
    }
}

/// Listens for SIGTERM and SIGINT (from the moment it is called) and resolves on the first.
///
/// The handlers are installed before this returns, so a signal sent after the call is never
/// missed, even before the returned future is first polled. Once installed, tokio keeps them
/// for the life of the process: the default action (terminate) no longer applies. A
/// signal that arrives before the returned future is polled is kept for it. Dropping the
/// future drops its listeners; a signal that arrives after that is seen only by listeners
/// created before the signal (call this again to listen afresh).
pub fn shutdown_signal()
-> Result<impl Future<Output = ShutdownSignal> + Send + 'static, SignalError> {
    let install = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| SignalError {
            signal: name,
            source,
        })
    };
    let mut term = install(SignalKind::terminate(), "SIGTERM")?;
    let mut int = install(SignalKind::interrupt(), "SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => ShutdownSignal::Terminate,
            _ = int.recv() => ShutdownSignal::Interrupt,
        }
    })
}

/// Spawns a task named `shutdown-signal` under `supervisor` that cancels `token` on the first
/// SIGTERM or SIGINT. Wait on `token.cancelled()` in `main`, then stop your components (in
/// order) with their deadlines.
///
/// Fails if the handlers cannot be installed or the supervisor refuses the task.
pub fn cancel_on_shutdown_signal(
    supervisor: &Supervisor,
    token: CancellationToken,
) -> Result<(), ShutdownSignalSetupError> {
    let signal = shutdown_signal()?;
    let mut signal = Some(Box::pin(signal));
    supervisor.spawn("shutdown-signal", RestartPolicy::Never, move |cancel| {
        let signal = signal.take();
        let token = token.clone();
        async move {
            let Some(signal) = signal else {
                return Ok::<(), SpawnError>(());
            };
            tokio::select! {
                () = cancel.cancelled() => {}
                received = signal => {
                    tracing::info!(signal = ?received, "shutdown requested");
                    token.cancel();
                }
            }
            Ok(())
        }
    })?;
    Ok(())
}

/// Why [`cancel_on_shutdown_signal`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownSignalSetupError {
    /// The signal handlers could not be installed.
    #[error("cannot install shutdown signal handlers")]
    Signal(#[from] SignalError),
    /// The supervisor refused the task.
    #[error("cannot spawn the shutdown signal task")]
    Spawn(#[from] SpawnError),
}
