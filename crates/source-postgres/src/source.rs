//! [`PostgresSource`]: setup, the supervised replication and heartbeat tasks, and stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use surefoot_core_lifecycle::{
    Classify, Component, ErrorClass, RestartPolicy, Service, Status, Supervisor, SupervisorConfig,
    TaskError,
};
use surefoot_core_model::{AckTracker, BatchSender, ComponentError, Lsn, Source, SourceId};
use tokio::sync::watch;

use crate::config::{PostgresSourceConfig, SlotLostPolicy};
use crate::error::SourceError;
use crate::heartbeat::run_heartbeat;
use crate::metrics::SourceMetrics;
use crate::reconnect::{ReconnectLog, replicate};
use crate::setup::{self, check_server, ensure_publication, inspect_slot};
use crate::spill::{SpillCounters, SpillStats};
use crate::sql::SqlConnection;
use crate::transport::{PgWireConnector, ReplicationEndpoint, TransportConnector};

pub use crate::reconnect::Reconnect;

/// A PostgreSQL logical replication source.
///
/// Start checks the server, creates the publication and then the slot if missing, and resumes
/// from the slot's confirmed position (never from `0/0`). Batches go to the output in commit
/// order, one transaction each; only the ack tracker's watermark is confirmed to the server.
/// Transient faults reconnect with jittered exponential backoff under the configured budget;
/// permanent ones, or an exhausted budget, make the source `Failed` with the reason in health.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    component: Component<ReplicationService>,
}

/// State shared by the source's tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: PostgresSourceConfig,
    pub(crate) output: BatchSender,
    pub(crate) tracker: AckTracker,
    pub(crate) metrics: SourceMetrics,
    /// The highest position told to the server.
    pub(crate) confirmed: watch::Sender<Lsn>,
    pub(crate) connector: Arc<dyn TransportConnector>,
    pub(crate) reconnects: ReconnectLog,
    /// Silences of the stream past the liveness timeout that the server showed were its
    /// walsender working.
    pub(crate) silences_survived: AtomicU64,
    /// Spill figures of large transactions.
    pub(crate) spill: SpillCounters,
    /// The server's WAL end minus the confirmed position at the last heartbeat, in bytes;
    /// `u64::MAX` until sampled.
    pub(crate) lag_bytes: AtomicU64,
    /// The deadline of the stop in progress, in milliseconds.
    stop_budget_ms: AtomicU64,
}

impl Shared {
    pub(crate) fn stop_budget(&self) -> Duration {
        Duration::from_millis(self.stop_budget_ms.load(Ordering::Acquire))
    }
}

#[derive(Debug)]
struct ReplicationService {
    shared: Arc<Shared>,
}

impl PostgresSource {
    /// A stopped source sending its batches to `output`. Fails when the configuration is
    /// invalid, listing every problem.
    pub fn new(config: PostgresSourceConfig, output: BatchSender) -> Result<Self, ComponentError> {
        config
            .validate()
            .map_err(|error| ComponentError::new("configure", ErrorClass::Configuration, error))?;
        let connector = Arc::new(PgWireConnector::new(ReplicationEndpoint::for_source(
            &config,
        )));
        Ok(Self::with_connector(config, output, connector))
    }

    /// A source using another transport (for instance one that counts or delays events).
    pub fn with_connector(
        config: PostgresSourceConfig,
        output: BatchSender,
        connector: Arc<dyn TransportConnector>,
    ) -> Self {
        let metrics = SourceMetrics::global(config.id.as_str());
        let name = format!("source-postgres/{}", config.id);
        let shared = Arc::new(Shared {
            output,
            tracker: AckTracker::new(None),
            metrics,
            confirmed: watch::Sender::new(Lsn::ZERO),
            connector,
            reconnects: ReconnectLog::default(),
            silences_survived: AtomicU64::new(0),
            spill: SpillCounters::default(),
            lag_bytes: AtomicU64::new(u64::MAX),
            stop_budget_ms: AtomicU64::new(10_000),
            config,
        });
        // No task failure is tolerated: every recoverable fault is retried inside the task under
        // the reconnect budget, so a task that fails is one that must fail the source.
        let supervisor = SupervisorConfig::default().with_intensity(0, Duration::from_secs(1));
        Self {
            component: Component::new(name, ReplicationService { shared }, supervisor),
        }
    }

    /// The ack tracker whose watermark is confirmed to the server.
    pub fn tracker(&self) -> &AckTracker {
        &self.shared().tracker
    }

    /// The highest position told to the server so far.
    pub fn confirmed(&self) -> Lsn {
        *self.shared().confirmed.borrow()
    }

    /// Reconnects so far: attempt, backoff delay and ceiling, and the error that caused it.
    pub fn reconnects(&self) -> Vec<Reconnect> {
        self.shared().reconnects.entries()
    }

    /// How many times the stream was silent for the liveness timeout while the server showed
    /// its walsender working (decoding a large transaction, or WAL the publication does not
    /// cover), so the session went on instead of reconnecting.
    pub fn silences_survived(&self) -> u64 {
        self.shared().silences_survived.load(Ordering::Relaxed)
    }

    /// How far the slot's confirmed position is behind the server's WAL end, in bytes, as
    /// sampled by the last heartbeat (with the heartbeat on); `None` before the first sample.
    /// A source catching up on a backlog sees it fall.
    pub fn lag_bytes(&self) -> Option<u64> {
        let lag = self.shared().lag_bytes.load(Ordering::Relaxed);
        (lag != u64::MAX).then_some(lag)
    }

    /// How large transactions were held to `max_transaction_memory`: the peak of the source's
    /// own accounting of one transaction's decoded changes, and what was spilled.
    pub fn spill_stats(&self) -> SpillStats {
        self.shared().spill.stats()
    }

    /// The component (status, health, events, supervisor).
    pub fn component(&self) -> &Component<impl Service> {
        &self.component
    }

    fn shared(&self) -> &Shared {
        &self.component.service().shared
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn id(&self) -> &SourceId {
        &self.shared().config.id
    }

    async fn start(&self) -> Result<(), ComponentError> {
        self.component.start().await.map_err(|error| {
            // The service's error travels type-erased through the component; its class is that
            // of the first source error in the chain.
            let class = source_error_class(&error).unwrap_or_else(|| error.class());
            ComponentError::new("start", class, error)
        })
    }

    async fn stop(&self, deadline: Duration) -> Result<(), ComponentError> {
        let millis = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self.shared()
            .stop_budget_ms
            .store(millis, Ordering::Release);
        let report = self
            .component
            .stop(deadline)
            .await
            .map_err(|error| ComponentError::classified("stop", error))?;
        if report.is_clean() {
            return Ok(());
        }
        let problem = format!("stop was not clean: {report:?}");
        Err(ComponentError::new("stop", ErrorClass::Transient, problem))
    }

    fn status(&self) -> Status {
        self.component.status()
    }
}

impl Service for ReplicationService {
    fn start<'a>(&'a self, supervisor: &'a Supervisor) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(self.start_tasks(supervisor))
    }
}

impl ReplicationService {
    async fn start_tasks(&self, supervisor: &Supervisor) -> Result<(), TaskError> {
        let shared = Arc::clone(&self.shared);
        let resume_from = prepare(&shared.config).await?;
        shared.confirmed.send_if_modified(|confirmed| {
            let raise = resume_from > *confirmed;
            *confirmed = (*confirmed).max(resume_from);
            raise
        });
        // Batches of a previous run that were never settled are delivered again.
        shared.tracker.rewind();
        let replication = Arc::clone(&shared);
        supervisor.spawn("replication", RestartPolicy::OnFailure, move |cancel| {
            replicate(Arc::clone(&replication), cancel)
        })?;
        if let Some(interval) = shared.config.heartbeat {
            let heartbeat = Arc::clone(&shared);
            supervisor.spawn("heartbeat", RestartPolicy::OnFailure, move |cancel| {
                run_heartbeat(Arc::clone(&heartbeat), interval, cancel)
            })?;
        }
        Ok(())
    }
}

/// Checks the server, creates the publication, then the slot; returns where to resume.
async fn prepare(config: &PostgresSourceConfig) -> Result<Lsn, SourceError> {
    let sql = SqlConnection::open(config, "setup").await?;
    let slot = &config.slot;
    sql.run("check server", |client| check_server(client, slot))
        .await?;
    sql.run("ensure publication", |client| {
        ensure_publication(
            client,
            &config.publication,
            &config.tables,
            config.create_publication,
        )
    })
    .await?;
    let state = sql
        .run("inspect slot", |client| inspect_slot(client, slot))
        .await?;
    match state {
        Some(state) if !state.is_lost() => Ok(state.confirmed_flush),
        Some(_) if config.on_slot_lost == SlotLostPolicy::Fail => Err(SourceError::SlotLost {
            slot: slot.as_str().to_owned(),
        }),
        Some(_) => {
            tracing::error!(slot = %slot, "replication slot was invalidated; recreating it: consumers must bootstrap again");
            sql.run("drop lost slot", |client| setup::drop_slot(client, slot))
                .await?;
            sql.run("create slot", |client| setup::create_slot(client, slot))
                .await
        }
        None => {
            sql.run("create slot", |client| setup::create_slot(client, slot))
                .await
        }
    }
}

/// The class of the first [`SourceError`] in `error`'s chain.
fn source_error_class(error: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(source_error) = error.downcast_ref::<SourceError>() {
            return Some(source_error.class());
        }
        current = error.source();
    }
    None
}
