//! An HTTP source's task: listens until cancelled, then stops: new requests are refused,
//! requests in flight are answered once their batches settle (or fail).

use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, Status};
use surefoot_core_model::{BatchSender, Source};
use surefoot_source_http::{HttpSource, HttpSourceConfig};

use super::error::{RunError, chain};
use super::registry::{Registry, State};

/// What an HTTP source task needs.
#[derive(Debug)]
pub(crate) struct HttpTask {
    pub(crate) config: HttpSourceConfig,
    pub(crate) output: BatchSender,
    pub(crate) registry: Registry,
    pub(crate) stop_deadline: Duration,
}

impl HttpTask {
    pub(crate) async fn run(self, cancel: CancellationToken) -> Result<(), RunError> {
        let id = self.config.id.to_string();
        let source = HttpSource::new(self.config, self.output)
            .map_err(|error| RunError::source(&id, chain(&error)))?;
        if let Err(error) = source.start().await {
            let reason = chain(&error);
            self.registry.set(&id, State::Failed, Some(reason.clone()));
            return Err(RunError::source(&id, reason));
        }
        let listening = source.local_addr().map(|addr| addr.to_string());
        tracing::info!(source = %id, listen = ?listening, "HTTP source listening");
        self.registry.set(&id, State::Running, None);
        let mut status = source.component().subscribe_status();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if *status.borrow_and_update() == Status::Failed {
                        let report = source.component().health().report();
                        let reason = report.failure.map(|f| chain(&*f)).unwrap_or_default();
                        tracing::error!(source = %id, %reason, "HTTP source failed");
                        self.registry.set(&id, State::Failed, Some(reason));
                    }
                }
            }
        }
        self.registry
            .set(&id, State::Stopped, Some("stopping".to_owned()));
        let stopped = source.stop(self.stop_deadline).await;
        drop(source);
        stopped.map_err(|error| RunError::source(&id, chain(&error)))?;
        self.registry.set(&id, State::Stopped, None);
        Ok(())
    }
}
