//! The writer: a pool, the routes, and the sink transaction with its retries.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres};
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass, Retry, timeout};
use surefoot_core_model::{Batch, ComponentError, Position, Reaction};
use tokio::sync::Notify;

use crate::apply::{
    FlushContext, FlushStats, Lasts, apply_flush, checkpoint, dead_letter_batch,
    plan_flush_yielding,
};
use crate::config::{FailurePolicy, WriterConfig};
use crate::error::WriterError;
use crate::handler::Handler;
use crate::metrics::WriterMetrics;
use crate::routes::{self, Routes};
use crate::schema::SchemaCache;
use crate::stats::LiveStats;

/// Builds a [`PostgresWriter`]: configuration plus the custom handlers it names.
#[derive(Debug)]
pub struct WriterBuilder {
    config: WriterConfig,
    handlers: HashMap<String, Arc<dyn Handler>>,
    metrics: Option<WriterMetrics>,
}

impl WriterBuilder {
    /// Registers `handler` under `name` (referred to by `ApplyMode::Custom`).
    #[must_use]
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler + 'static) -> Self {
        self.handlers.insert(name.into(), Arc::new(handler));
        self
    }

    /// Records metrics on these instruments instead of the global meter's.
    #[must_use]
    pub fn metrics(mut self, metrics: WriterMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Validates the configuration, opens the pool and, when configured, applies the embedded
    /// migrations.
    pub async fn connect(self) -> Result<PostgresWriter, WriterError> {
        let config = self.config;
        config.validate()?;
        let routes = routes::compile(&config, &self.handlers)?;
        let pool = open_pool(&config).await?;
        let metrics = self
            .metrics
            .unwrap_or_else(|| WriterMetrics::global(&config.sink));
        let writer = PostgresWriter {
            inner: Arc::new(Inner {
                config,
                pool,
                routes,
                schema: SchemaCache::default(),
                metrics,
                stats: Arc::new(LiveStats::default()),
                wake: Arc::new(Notify::new()),
                stopping: CancellationToken::new(),
                flushes: AtomicU64::new(0),
            }),
        };
        if writer.inner.config.run_migrations {
            writer.migrate().await?;
        }
        Ok(writer)
    }
}

async fn open_pool(config: &WriterConfig) -> Result<PgPool, WriterError> {
    let options = PgConnectOptions::from_str(config.database_url.expose())
        .map_err(|e| WriterError::sql("parse database_url", e))?
        .application_name(&config.application_name)
        .options([(
            "statement_timeout",
            format!("{}ms", config.pool.statement_timeout.as_millis()),
        )]);
    let pool = PgPoolOptions::new()
        .max_connections(config.pool.max_connections)
        .min_connections(config.pool.min_connections)
        .acquire_timeout(config.pool.acquire_timeout)
        .idle_timeout(Some(config.pool.idle_timeout))
        .connect_lazy_with(options);
    Ok(pool)
}

/// Transactional, idempotent writer of change batches into PostgreSQL. Cloning gives another
/// handle to the same writer.
#[derive(Debug, Clone)]
pub struct PostgresWriter {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: WriterConfig,
    pub(crate) pool: PgPool,
    routes: Routes,
    schema: SchemaCache,
    pub(crate) metrics: WriterMetrics,
    pub(crate) stats: Arc<LiveStats>,
    /// Notified after every commit that wrote outbox messages.
    pub(crate) wake: Arc<Notify>,
    /// Cancelled when the writer stops: interrupts retry waits, never a transaction.
    pub(crate) stopping: CancellationToken,
    /// Sink transactions attempted, to purge the applied-batch records every so often.
    flushes: AtomicU64,
}

/// The applied-batch records of a transaction's sources are purged once per this many sink
/// transactions (one `DELETE` per source, in the transaction).
const PURGE_EVERY: u64 = 100;

impl PostgresWriter {
    /// A builder for a writer with `config`.
    pub fn builder(config: WriterConfig) -> WriterBuilder {
        WriterBuilder {
            config,
            handlers: HashMap::new(),
            metrics: None,
        }
    }

    /// The sink's name.
    pub fn sink(&self) -> &str {
        &self.inner.config.sink
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Applies the embedded migrations (idempotent; see the crate docs for the upgrade path).
    pub async fn migrate(&self) -> Result<(), WriterError> {
        crate::migrate::run(&self.inner.pool).await
    }

    /// The last position applied from `source`.
    pub async fn checkpoint(&self, source: &str) -> Result<Option<Position>, WriterError> {
        let mut conn = self.acquire().await?;
        checkpoint::read(&mut conn, &self.inner.config.sink, source).await
    }

    /// Applies `batches` (whole source transactions, in order) in one sink transaction, retrying
    /// transient failures. When a transaction fails permanently, each batch is applied on its
    /// own; a batch that still fails permanently is dead-lettered or fails the call, per
    /// [`FailurePolicy`]. Returns once everything is committed: only then may the batches be
    /// acknowledged.
    ///
    /// A batch at or below its source's checkpoint is skipped only when the applied-batch
    /// records prove it was applied as given (a true redelivery, counted in
    /// [`FlushStats::already_applied`]); otherwise the call fails with
    /// [`WriterError::ReplayRefused`] (never dead-lettered), counted in
    /// `surefoot.writer.batches.refused` and logged. Batches given before it in the same call
    /// may have been committed; a caller settles them all failed and they are proven on
    /// redelivery.
    pub async fn apply(&self, batches: &[&Batch]) -> Result<FlushStats, WriterError> {
        let result = self.apply_splitting(batches).await;
        if let Err(WriterError::ReplayRefused(refused)) = &result {
            self.inner.metrics.refused(&refused.source_id);
            tracing::error!(sink = %self.sink(), source = %refused.source_id, error = %refused, "batch refused: at or below the checkpoint and not proven applied; it is not skipped and not acknowledged");
        }
        result
    }

    async fn apply_splitting(&self, batches: &[&Batch]) -> Result<FlushStats, WriterError> {
        match self.with_retry(batches).await {
            Ok(stats) => Ok(stats),
            Err(error) if error.class() != ErrorClass::Permanent || batches.len() == 1 => {
                self.give_up(batches, error).await
            }
            Err(error) => {
                tracing::warn!(sink = %self.sink(), batches = batches.len(), error = %error, "sink transaction failed permanently; applying its batches one by one");
                let mut total = FlushStats::default();
                for batch in batches {
                    let stats = match self.with_retry(&[batch]).await {
                        Ok(stats) => stats,
                        Err(error) => self.give_up(&[batch], error).await?,
                    };
                    total = add(total, stats);
                }
                Ok(total)
            }
        }
    }

    async fn with_retry(&self, batches: &[&Batch]) -> Result<FlushStats, WriterError> {
        Retry::new("sink transaction", self.inner.config.retry)
            .with_cancellation(self.inner.stopping.clone())
            .run(|_| self.try_flush(batches, None))
            .await
            .map_err(surefoot_core_lifecycle::RetryError::into_last_error)
    }

    async fn give_up(
        &self,
        batches: &[&Batch],
        error: WriterError,
    ) -> Result<FlushStats, WriterError> {
        let [batch] = batches else {
            return Err(error);
        };
        // A refused replay is never dead-lettered: that would settle it delivered.
        if error.class() != ErrorClass::Permanent
            || self.inner.config.on_failure == FailurePolicy::Fail
            || matches!(error, WriterError::ReplayRefused(_))
        {
            return Err(error);
        }
        let reason = error_chain(&error);
        tracing::error!(sink = %self.sink(), source = %batch.source, first = %batch.first, last = %batch.last, reason = %reason, "batch dead-lettered");
        let mut conn = self.acquire().await?;
        let ctx = self.context();
        let work = async {
            let mut tx = conn
                .begin()
                .await
                .map_err(|e| WriterError::sql("begin", e))?;
            let recorded = dead_letter_batch(ctx, &mut tx, batch, &reason).await?;
            tx.commit()
                .await
                .map_err(|e| WriterError::sql("commit dead letters", e))?;
            Ok::<_, WriterError>(recorded)
        };
        let recorded = timeout(
            "dead-letter transaction",
            self.inner.config.pool.transaction_timeout,
            work,
        )
        .await??;
        self.inner.stats.committed();
        self.inner.metrics.dead_lettered(recorded);
        Ok(FlushStats {
            dead_lettered: recorded,
            ..FlushStats::default()
        })
    }

    fn context(&self) -> FlushContext<'_> {
        FlushContext {
            sink: &self.inner.config.sink,
            routes: &self.inner.routes,
            schema: &self.inner.schema,
            purge: None,
        }
    }

    /// One attempt at `batches` while the transaction that applies `after` may still be
    /// running: planned now (overlapping that transaction's server time), written once the
    /// checkpoints show `after` committed, or [`WriterError::PredecessorNotCommitted`] with
    /// nothing written. Not retried; the sink loop falls back to [`PostgresWriter::apply`].
    pub(crate) async fn apply_after(
        &self,
        batches: &[&Batch],
        after: &Lasts,
    ) -> Result<FlushStats, WriterError> {
        self.try_flush(batches, Some(after)).await
    }

    async fn try_flush(
        &self,
        batches: &[&Batch],
        after: Option<&Lasts>,
    ) -> Result<FlushStats, WriterError> {
        let started = Instant::now();
        let mut ctx = self.context();
        if self.inner.flushes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            ctx.purge = Some(self.inner.config.applied_records);
        }
        let limit = self.inner.config.pool.transaction_timeout;
        let attempt = async {
            // Planned before a connection is taken: CPU work that, for a transaction begun
            // ahead, runs while the previous one is on the server.
            let planned = plan_flush_yielding(ctx, batches).await?;
            let mut conn = self.acquire().await?;
            let work = async {
                let mut tx = conn
                    .begin()
                    .await
                    .map_err(|e| WriterError::sql("begin", e))?;
                let stats = apply_flush(ctx, &mut tx, batches, planned, after).await?;
                tx.commit()
                    .await
                    .map_err(|e| WriterError::sql("commit", e))?;
                Ok::<_, WriterError>(stats)
            };
            timeout("sink transaction", limit, work).await?
        };
        match attempt.await {
            Ok(stats) => {
                self.committed(batches, stats, started);
                Ok(stats)
            }
            Err(error) if after.is_some() => {
                // Begun ahead: the sink loop applies it again, in order, and that attempt's
                // failure is the one counted.
                tracing::debug!(sink = %self.sink(), error = %error_chain(&error), "a sink transaction begun ahead did not apply; it is applied again in order");
                Err(error)
            }
            Err(error) => {
                self.inner.stats.failed();
                self.inner.metrics.failed(error.class());
                tracing::warn!(sink = %self.sink(), error = %error_chain(&error), "sink transaction failed");
                Err(error)
            }
        }
    }

    fn committed(&self, batches: &[&Batch], stats: FlushStats, started: Instant) {
        let changes: usize = batches.iter().map(|b| b.changes.len()).sum();
        let metrics = &self.inner.metrics;
        metrics.committed(changes as u64, stats, started.elapsed().as_secs_f64());
        let now = chrono::Utc::now();
        for commit_time in batches.iter().filter_map(|b| b.commit_time) {
            let lag = (now - commit_time).to_std().unwrap_or_default();
            metrics.lag(lag.as_secs_f64());
        }
        self.inner.stats.committed();
        if stats.published > 0 {
            self.inner.wake.notify_one();
        }
    }

    /// A pooled connection, timed and counted for the health report.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Postgres>, WriterError> {
        let stats = &self.inner.stats;
        let started = Instant::now();
        stats.acquire_started();
        let result = self.inner.pool.acquire().await;
        let took = started.elapsed();
        stats.acquire_ended(took);
        self.inner.metrics.acquired(took.as_secs_f64());
        result.map_err(|e| WriterError::sql("acquire a connection", e))
    }
}

fn add(a: FlushStats, b: FlushStats) -> FlushStats {
    FlushStats {
        applied: a.applied + b.applied,
        already_applied: a.already_applied + b.already_applied,
        unrouted: a.unrouted + b.unrouted,
        dead_lettered: a.dead_lettered + b.dead_lettered,
        published: a.published + b.published,
    }
}

/// The error and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Reaction for PostgresWriter {
    fn name(&self) -> &str {
        self.sink()
    }

    /// Applies one batch in one transaction; `Ok` only after it committed.
    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        PostgresWriter::apply(self, &[batch])
            .await
            .map(|_| ())
            .map_err(|e| ComponentError::classified("apply", e))
    }
}
