//! [`HttpSource`]: bind first, then the supervised settler, batcher and server tasks; stop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use surefoot_core_lifecycle::{
    Classify, Component, ErrorClass, RestartPolicy, Service, Status, Supervisor, SupervisorConfig,
    TaskError,
};
use surefoot_core_model::{AckTracker, BatchSender, ComponentError, Source, SourceId};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::Authenticator;
use crate::clock::{SystemClock, WallClock};
#[cfg(not(feature = "redis"))]
use crate::config::REDIS_FEATURE_OFF;
use crate::config::{HttpSourceConfig, IdempotencyBackend};
use crate::error::HttpSourceError;
use crate::handler::{App, router};
#[cfg(feature = "redis")]
use crate::idempotency::RedisStore;
use crate::idempotency::{IdempotencyStore, MemoryStore};
use crate::lease::{self, InstanceLease};
use crate::metrics::{HttpMetrics, Stats};
use crate::{batcher, server, settler};

/// Claims waiting to be released in Redis at most (see [`crate::idempotency`]).
const RELEASE_QUEUE: usize = 1024;

/// An HTTP ingest source.
///
/// Start binds the listening socket before anything else: if that fails, start returns
/// [`HttpSourceError::Bind`] naming the address, the status is `Failed` and no task or channel is
/// left. Then it starts three supervised tasks: the settler, the batcher and the server (one task
/// per connection inside it). Stop closes the listener, lets requests in flight finish, flushes
/// the batcher and waits for the batches in flight to settle, up to the deadline.
#[derive(Debug, Clone)]
pub struct HttpSource {
    component: Component<IngestService>,
}

/// State shared by the source's tasks and handlers, across runs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: HttpSourceConfig,
    pub(crate) output: BatchSender,
    pub(crate) tracker: AckTracker,
    pub(crate) metrics: HttpMetrics,
    pub(crate) auth: Authenticator,
    pub(crate) store: IdempotencyStore,
    clock: Arc<dyn WallClock>,
    /// The next sequence to hand out (memory backend).
    sequence: AtomicU64,
    /// The sequences reserved in Redis and not handed out yet, `(next, end)` (Redis backend).
    /// Only the batcher takes sequences, so the lock is never contended and never held across
    /// an await.
    reserved: Mutex<(u64, u64)>,
    /// The instance lease (Redis backend): sequences are reserved under it.
    pub(crate) lease: Option<InstanceLease>,
    /// The source id batches carry (`<id>/<instance>` with an instance).
    pub(crate) batch_source: SourceId,
    local_addr: Mutex<Option<SocketAddr>>,
    /// The deadline of the stop in progress, in milliseconds.
    stop_budget_ms: AtomicU64,
}

impl Shared {
    /// Reserves `count` consecutive sequences and returns the first. With the Redis backend
    /// they come from the instance's counter in Redis, in blocks of at least
    /// [`SEQUENCE_BLOCK`]; while Redis cannot be reached the batch waits (an error logged and
    /// counted per attempt), and its requests are answered `503` at their `ack_timeout`.
    pub(crate) async fn take_sequences(&self, count: u64) -> u64 {
        let Some(lease) = &self.lease else {
            return self.take_local_sequences(count);
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            {
                let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
                let (next, end) = *reserved;
                if next.saturating_add(count) <= end {
                    reserved.0 = next + count;
                    return next;
                }
            }
            let block = count.max(SEQUENCE_BLOCK);
            match lease.reserve(block).await {
                Ok(first) => {
                    *self.reserved.lock().unwrap_or_else(PoisonError::into_inner) =
                        (first, first.saturating_add(block));
                }
                Err(error) => {
                    self.metrics.sequence_reservation_failed();
                    tracing::error!(
                        source = %self.batch_source,
                        error = &error as &dyn std::error::Error,
                        "could not reserve sequences in Redis; the batch waits"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Forgets the block of sequences reserved under a lease that may be gone: the next batch
    /// must reserve again, which only the lease's holder can.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn drop_reserved_sequences(&self) {
        *self.reserved.lock().unwrap_or_else(PoisonError::into_inner) = (0, 0);
    }

    /// Sequences from this process's counter (memory backend).
    fn take_local_sequences(&self, count: u64) -> u64 {
        let first = self.sequence.fetch_add(count, Ordering::AcqRel);
        ISSUED.fetch_max(first.saturating_add(count), Ordering::AcqRel);
        first
    }

    /// Moves the next sequence up to the clock's floor (see [`sequence_floor`]).
    fn raise_sequence(&self) {
        self.sequence
            .fetch_max(sequence_floor(&*self.clock), Ordering::AcqRel);
    }

    pub(crate) fn stop_budget(&self) -> Duration {
        Duration::from_millis(self.stop_budget_ms.load(Ordering::Acquire))
    }
}

#[derive(Debug)]
struct IngestService {
    shared: Arc<Shared>,
}

impl HttpSource {
    /// A stopped source sending its batches to `output`. Fails when the configuration is
    /// invalid, listing every problem.
    pub fn new(config: HttpSourceConfig, output: BatchSender) -> Result<Self, ComponentError> {
        Self::with_clock(config, output, Arc::new(SystemClock))
    }

    /// Like [`HttpSource::new`], reading `clock` instead of the system clock.
    pub fn with_clock(
        config: HttpSourceConfig,
        output: BatchSender,
        clock: Arc<dyn WallClock>,
    ) -> Result<Self, ComponentError> {
        config.validate().map_err(|error| {
            ComponentError::classified("configure", HttpSourceError::from(error))
        })?;
        let store =
            store(&config).map_err(|error| ComponentError::classified("configure", error))?;
        let lease = lease::for_store(&store, config.instance.as_deref(), config.instance_lease);
        let shared = Arc::new(Shared {
            lease,
            metrics: HttpMetrics::global(config.id.as_str()),
            auth: Authenticator::new(&config.auth),
            output,
            tracker: AckTracker::new(None),
            store,
            sequence: AtomicU64::new(sequence_floor(&*clock)),
            reserved: Mutex::new((0, 0)),
            batch_source: config.batch_source(),
            clock,
            local_addr: Mutex::new(None),
            stop_budget_ms: AtomicU64::new(10_000),
            config,
        });
        let name = format!("source-http/{}", shared.config.id);
        // No task failure is tolerated: a failed task fails the source.
        let supervisor = SupervisorConfig::default().with_intensity(0, Duration::from_secs(1));
        Ok(Self {
            component: Component::new(name, IngestService { shared }, supervisor),
        })
    }

    /// The address the source listens on, once started (the real port when configured with 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self
            .shared()
            .local_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts of requests, batches and replays since the source was built.
    pub fn stats(&self) -> Stats {
        self.shared().metrics.stats()
    }

    /// The ack tracker of the batches sent. For HTTP the confirmation upstream is each
    /// request's answer; the watermark is for observation: the delivered prefix since the last
    /// failure handed back to a client.
    pub fn tracker(&self) -> &AckTracker {
        &self.shared().tracker
    }

    /// Tasks alive in the current run (0 when stopped or failed to start).
    pub fn live_tasks(&self) -> usize {
        self.component
            .supervisor()
            .map_or(0, |supervisor| supervisor.live_tasks())
    }

    /// The component (status, health, events, supervisor).
    pub fn component(&self) -> &Component<impl Service> {
        &self.component
    }

    fn shared(&self) -> &Shared {
        &self.component.service().shared
    }
}

fn store(config: &HttpSourceConfig) -> Result<IdempotencyStore, HttpSourceError> {
    let idempotency = &config.idempotency;
    Ok(match &idempotency.backend {
        IdempotencyBackend::Memory => IdempotencyStore::Memory(Arc::new(MemoryStore::new(
            idempotency.capacity,
            idempotency.ttl,
            idempotency.pending_ttl,
        ))),
        #[cfg(feature = "redis")]
        IdempotencyBackend::Redis {
            url,
            prefix,
            timeout,
        } => IdempotencyStore::Redis(Arc::new(RedisStore::new(
            url,
            prefix.clone(),
            idempotency.ttl,
            idempotency.pending_ttl,
            *timeout,
        )?)),
        // Refused by `validate` already; kept for a caller that skipped it.
        #[cfg(not(feature = "redis"))]
        IdempotencyBackend::Redis { .. } => {
            return Err(HttpSourceError::Config(crate::config::ConfigError {
                problems: vec![REDIS_FEATURE_OFF.to_owned()],
            }));
        }
    })
}

#[async_trait]
impl Source for HttpSource {
    /// The id its batches carry: `<id>/<instance>` with an instance configured.
    fn id(&self) -> &SourceId {
        &self.shared().batch_source
    }

    async fn start(&self) -> Result<(), ComponentError> {
        self.component.start().await.map_err(|error| {
            let class = http_error_class(&error).unwrap_or_else(|| error.class());
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

impl Service for IngestService {
    fn start<'a>(&'a self, supervisor: &'a Supervisor) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(self.start_tasks(supervisor))
    }
}

impl IngestService {
    async fn start_tasks(&self, supervisor: &Supervisor) -> Result<(), TaskError> {
        let shared = Arc::clone(&self.shared);
        // Bind before creating anything: a refused address leaves nothing behind.
        let addr = shared.config.bind;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpSourceError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpSourceError::Bind { addr, source })?;
        *shared
            .local_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(local);
        shared.raise_sequence();
        if let Some(lease) = &shared.lease {
            lease.acquire().await?;
        }
        // Started first, so stopped last: the lease is held until every other task is gone.
        let lease_shared = Arc::clone(&shared);
        // A lost lease fails the source: the supervisor tolerates no task failure.
        supervisor.spawn("lease", RestartPolicy::OnFailure, move |cancel| {
            let shared = Arc::clone(&lease_shared);
            async move { lease::run(shared, cancel).await.map_err(TaskError::from) }
        })?;
        let capacity = shared.config.queue_requests;
        let (submissions, submitted) = mpsc::channel(capacity);
        let (watches, watched) = mpsc::channel(capacity);
        let (releases, released) = mpsc::channel(RELEASE_QUEUE);
        let mut settler_input = Some((watched, released));
        let settler_shared = Arc::clone(&shared);
        supervisor.spawn("settler", RestartPolicy::OnFailure, move |cancel| {
            let input = settler_input.take();
            let shared = Arc::clone(&settler_shared);
            async move {
                let (watched, released) = input.ok_or(NotRestartable("settler"))?;
                settler::run(shared, watched, released, cancel)
                    .await
                    .map_err(TaskError::from)
            }
        })?;
        let mut batcher_input = Some((submitted, watches));
        let batcher_shared = Arc::clone(&shared);
        supervisor.spawn("batcher", RestartPolicy::OnFailure, move |cancel| {
            let input = batcher_input.take();
            let shared = Arc::clone(&batcher_shared);
            async move {
                let (submitted, watches) = input.ok_or(NotRestartable("batcher"))?;
                batcher::run(shared, submitted, watches, cancel)
                    .await
                    .map_err(TaskError::from)
            }
        })?;
        let mut server_input = Some((listener, submissions, releases));
        supervisor.spawn("server", RestartPolicy::OnFailure, move |cancel| {
            let input = server_input.take();
            let shared = Arc::clone(&shared);
            async move {
                let (listener, submissions, releases) = input.ok_or(NotRestartable("server"))?;
                let app = App {
                    shared: Arc::clone(&shared),
                    submissions,
                    releases,
                    cancel: cancel.clone(),
                };
                server::serve(shared, listener, router(app), cancel)
                    .await
                    .map_err(TaskError::from)
            }
        })?;
        Ok(())
    }
}

/// Sequences reserved in Redis at a time, at least: one round trip per this many changes.
const SEQUENCE_BLOCK: u64 = 4_096;

/// Bits of a sequence below the millisecond clock.
const SEQUENCE_CLOCK_SHIFT: u32 = 22;

/// One past the highest sequence handed out by any source in this process.
static ISSUED: AtomicU64 = AtomicU64::new(0);

/// The lowest sequence a run may start from: the Unix time in milliseconds, shifted left by
/// [`SEQUENCE_CLOCK_SHIFT`], and above every sequence this process handed out.
///
/// Consumers skip positions they have applied, so positions must keep growing across restarts,
/// with nothing stored. Within a process, [`ISSUED`] guarantees it. Across processes, the clock
/// does: a run hands out one sequence per change, and no source ingests 2^22 (4 million)
/// changes per millisecond, so a run's sequences stay below the clock's floor at any start a
/// millisecond or more later (a process restart takes far longer). This holds as long as the
/// clock does not go back; the range lasts until the year 2109.
fn sequence_floor(clock: &dyn WallClock) -> u64 {
    let millis = clock.now_millis();
    let clock = millis.saturating_mul(1 << SEQUENCE_CLOCK_SHIFT);
    clock.max(ISSUED.load(Ordering::Acquire)).max(1)
}

/// A task's one-shot inputs were used by its first instance.
#[derive(Debug, thiserror::Error)]
#[error("task `{0}` cannot be restarted: its channel ends belong to the failed instance")]
struct NotRestartable(&'static str);

/// The class of the first [`HttpSourceError`] in `error`'s chain.
fn http_error_class(error: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(source_error) = error.downcast_ref::<HttpSourceError>() {
            return Some(source_error.class());
        }
        current = error.source();
    }
    None
}
