//! The writer's configuration, validated as a whole: every problem is reported with its path
//! (FINDINGS W-7, W-8, W-10).

use std::collections::HashSet;
use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};
use surefoot_core_model::{Secret, TableRef};

use crate::ident::{Ident, QualifiedName};
use crate::rules::ColumnRule;

/// How the changes of one source table are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyMode {
    /// Upsert and delete by `key` in the target table.
    Mirror {
        /// The key columns (a primary key or unique constraint of the target).
        key: Vec<String>,
    },
    /// Every change becomes a row of `surefoot_writer.event`, unique on (sink, source,
    /// position).
    Append,
    /// Every change becomes an event row (as in append mode), and the named
    /// [`crate::Handler`] runs in the same transaction.
    Custom {
        /// The handler's name, as registered with the writer.
        handler: String,
    },
}

/// Where one source table's changes go.
#[derive(Debug, Clone, PartialEq)]
pub struct TableConfig {
    /// The source table.
    pub source: TableRef,
    /// The target table (mirror mode); defaults to the source's name.
    pub target: Option<String>,
    /// How to apply.
    pub mode: ApplyMode,
    /// Publish every applied change of this table to this Redis stream, through the outbox.
    pub publish: Option<String>,
    /// Checks on the incoming rows; a row that fails goes to the dead-letter table.
    pub rules: Vec<ColumnRule>,
}

impl TableConfig {
    /// A table applied in `mode`, into a target of the same name, unpublished, unchecked.
    pub fn new(source: TableRef, mode: ApplyMode) -> Self {
        Self {
            source,
            target: None,
            mode,
            publish: None,
            rules: Vec::new(),
        }
    }

    /// The target's name.
    pub fn target_name(&self) -> Result<QualifiedName, crate::ident::IdentError> {
        match &self.target {
            Some(target) => QualifiedName::parse(target),
            None => QualifiedName::new(&self.source.schema, &self.source.name),
        }
    }
}

/// The connection pool (FINDINGS W-7: nothing hard-coded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Bound on waiting for a connection from the pool.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this.
    pub idle_timeout: Duration,
    /// Sent as `statement_timeout` on every connection.
    pub statement_timeout: Duration,
    /// Bound on one whole sink transaction, commit included.
    pub transaction_timeout: Duration,
}

/// How much one sink transaction may hold before it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Changes per transaction.
    pub max_rows: usize,
    /// Approximate bytes of row data per transaction.
    pub max_bytes: usize,
    /// How long the first waiting batch may wait for company before the transaction commits.
    pub max_latency: Duration,
}

/// What to do with a batch that keeps failing (a permanent error, or the retry budget spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Record the batch's changes in the dead-letter table with the error, advance the
    /// checkpoint in the same transaction, and go on (the default).
    #[default]
    DeadLetter,
    /// Settle the batch as failed and stop the writer: the source redelivers it after a fix.
    Fail,
}

/// How long the applied-batch records are kept (issue 14, X-4; decision 0007). A batch at or
/// below the checkpoint is skipped only when these records prove it applied; a replay older
/// than what is kept is refused, never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRetention {
    /// Records kept per (sink, source), the newest: one per sink transaction, holding 68 bytes
    /// per batch it applied from that source. A source must never redeliver a batch more than
    /// this many sink transactions behind the checkpoint.
    pub keep: u32,
    /// Records older than this are deleted too, whatever `keep` says; `None` (the default)
    /// keeps them by count only.
    pub max_age: Option<Duration>,
}

impl Default for RecordRetention {
    fn default() -> Self {
        Self {
            keep: 10_000,
            max_age: None,
        }
    }
}

/// The relay that publishes the outbox to Redis Streams.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// `redis://host:port/db`.
    pub redis_url: Secret,
    /// Messages read and published per round.
    pub batch_size: usize,
    /// How often the relay looks for new messages when nothing wakes it.
    pub poll_interval: Duration,
    /// Bound on each Redis command and on connecting.
    pub redis_timeout: Duration,
    /// Delay between failed rounds, with full jitter (FINDINGS W-14).
    pub backoff: Backoff,
    /// Sent messages older than this are deleted from the outbox.
    pub retention: Duration,
}

impl OutboxConfig {
    /// Defaults for everything but the URL.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: Secret::new(redis_url.into()),
            batch_size: 500,
            poll_interval: Duration::from_millis(200),
            redis_timeout: Duration::from_secs(5),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Configuration of a [`crate::PostgresWriter`].
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The sink's name: its checkpoints, events and outbox rows carry it.
    pub sink: String,
    /// `postgres://user:password@host:port/database`.
    pub database_url: Secret,
    /// `application_name` of the writer's connections.
    pub application_name: String,
    /// The pool.
    pub pool: PoolConfig,
    /// Apply the embedded migrations at start.
    pub run_migrations: bool,
    /// Sink transaction limits.
    pub batch: BatchLimits,
    /// Most changes applied per second (FINDINGS W-8); `None` is unlimited.
    pub max_rows_per_second: Option<u32>,
    /// Retry of a failing sink transaction; transient errors only.
    pub retry: RetryPolicy,
    /// After retries: dead-letter or fail.
    pub on_failure: FailurePolicy,
    /// Retention of the applied-batch records that prove a redelivery.
    pub applied_records: RecordRetention,
    /// The tables applied. Changes of other tables are skipped (and counted).
    pub tables: Vec<TableConfig>,
    /// Publishing through the outbox; required when a table publishes.
    pub outbox: Option<OutboxConfig>,
}

/// Every problem found in a configuration, each as `path: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PostgreSQL writer configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// `path: problem` entries, in field order.
    pub problems: Vec<String>,
}

impl WriterConfig {
    /// Defaults for everything but the sink's name, the database and the tables.
    pub fn new(sink: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self {
            sink: sink.into(),
            database_url: Secret::new(database_url.into()),
            application_name: "surefoot-pg-writer".to_owned(),
            pool: PoolConfig {
                max_connections: 8,
                min_connections: 1,
                acquire_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(300),
                statement_timeout: Duration::from_secs(30),
                transaction_timeout: Duration::from_secs(60),
            },
            run_migrations: true,
            batch: BatchLimits {
                max_rows: 5_000,
                max_bytes: 8 << 20,
                max_latency: Duration::from_millis(20),
            },
            max_rows_per_second: None,
            retry: RetryPolicy::new(Backoff::new(
                Duration::from_millis(50),
                Duration::from_secs(5),
            ))
            .with_max_attempts(u32::MAX)
            .with_max_elapsed(Duration::from_secs(120)),
            on_failure: FailurePolicy::DeadLetter,
            applied_records: RecordRetention::default(),
            tables: Vec::new(),
            outbox: None,
        }
    }

    /// Adds a table, builder style.
    #[must_use]
    pub fn table(mut self, table: TableConfig) -> Self {
        self.tables.push(table);
        self
    }

    /// Checks every value and returns every problem, each with its path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        problems.check(!self.sink.trim().is_empty(), "sink", "must not be empty");
        let url = self.database_url.expose();
        problems.check(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "database_url",
            "must start with postgres:// or postgresql://",
        );
        problems.check(
            !self.application_name.is_empty(),
            "application_name",
            "must not be empty",
        );
        self.validate_pool(&mut problems);
        self.validate_batch(&mut problems);
        if self.max_rows_per_second == Some(0) {
            problems.push("max_rows_per_second", "must be more than 0, or unlimited");
        }
        problems.check(
            self.retry.backoff().base() <= self.retry.backoff().cap(),
            "retry.backoff",
            "base must not exceed cap",
        );
        problems.check(
            self.applied_records.keep > 0,
            "applied_records.keep",
            "must be more than 0",
        );
        if self
            .applied_records
            .max_age
            .is_some_and(|age| age.is_zero())
        {
            problems.push("applied_records.max_age", "must be more than 0, or unset");
        }
        self.validate_tables(&mut problems);
        if let Some(outbox) = &self.outbox {
            validate_outbox(outbox, &mut problems);
        } else if self.tables.iter().any(|t| t.publish.is_some()) {
            problems.push("outbox", "required when a table publishes");
        }
        problems.finish()
    }

    fn validate_pool(&self, problems: &mut Problems) {
        let pool = &self.pool;
        problems.check(
            pool.max_connections > 0,
            "pool.max_connections",
            "must be more than 0",
        );
        problems.check(
            pool.min_connections <= pool.max_connections,
            "pool.min_connections",
            "must not exceed pool.max_connections",
        );
        for (field, value) in [
            ("pool.acquire_timeout", pool.acquire_timeout),
            ("pool.idle_timeout", pool.idle_timeout),
            ("pool.statement_timeout", pool.statement_timeout),
            ("pool.transaction_timeout", pool.transaction_timeout),
        ] {
            problems.check(!value.is_zero(), field, "must be more than 0");
        }
    }

    fn validate_batch(&self, problems: &mut Problems) {
        problems.check(
            self.batch.max_rows > 0,
            "batch.max_rows",
            "must be more than 0",
        );
        problems.check(
            self.batch.max_bytes > 0,
            "batch.max_bytes",
            "must be more than 0",
        );
        problems.check(
            !self.batch.max_latency.is_zero(),
            "batch.max_latency",
            "must be more than 0",
        );
    }

    fn validate_tables(&self, problems: &mut Problems) {
        problems.check(!self.tables.is_empty(), "tables", "list at least one table");
        let mut seen = HashSet::new();
        for (index, table) in self.tables.iter().enumerate() {
            let path = format!("tables[{index}]");
            if !seen.insert(table.source.clone()) {
                problems.push(format!("{path}.source"), "listed twice");
            }
            if let Err(error) = QualifiedName::new(&table.source.schema, &table.source.name) {
                problems.push(format!("{path}.source"), error);
            }
            if let Err(error) = table.target_name() {
                problems.push(format!("{path}.target"), error);
            }
            match &table.mode {
                ApplyMode::Mirror { key } => {
                    if key.is_empty() {
                        problems.push(format!("{path}.mode.key"), "list at least one column");
                    }
                    for (k, column) in key.iter().enumerate() {
                        if let Err(error) = Ident::parse(column) {
                            problems.push(format!("{path}.mode.key[{k}]"), error);
                        }
                    }
                }
                ApplyMode::Append => {}
                ApplyMode::Custom { handler } => {
                    problems.check(
                        !handler.is_empty(),
                        format!("{path}.mode.handler"),
                        "must not be empty",
                    );
                }
            }
            if table.publish.as_ref().is_some_and(|s| s.is_empty()) {
                problems.push(format!("{path}.publish"), "stream name must not be empty");
            }
            for (r, rule) in table.rules.iter().enumerate() {
                for problem in rule.problems() {
                    problems.push(format!("{path}.rules[{r}].{problem}"), "");
                }
            }
        }
    }
}

fn validate_outbox(outbox: &OutboxConfig, problems: &mut Problems) {
    let url = outbox.redis_url.expose();
    problems.check(
        url.starts_with("redis://") || url.starts_with("rediss://"),
        "outbox.redis_url",
        "must start with redis:// or rediss://",
    );
    problems.check(
        outbox.batch_size > 0,
        "outbox.batch_size",
        "must be more than 0",
    );
    for (field, value) in [
        ("outbox.poll_interval", outbox.poll_interval),
        ("outbox.redis_timeout", outbox.redis_timeout),
        ("outbox.retention", outbox.retention),
    ] {
        problems.check(!value.is_zero(), field, "must be more than 0");
    }
    problems.check(
        outbox.backoff.base() <= outbox.backoff.cap() && !outbox.backoff.cap().is_zero(),
        "outbox.backoff",
        "cap must be more than 0 and not below base",
    );
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, problem: impl std::fmt::Display) {
        let path = path.into();
        let problem = problem.to_string();
        self.0.push(if problem.is_empty() {
            path
        } else {
            format!("{path}: {problem}")
        });
    }

    fn check(&mut self, ok: bool, path: impl Into<String>, problem: &str) {
        if !ok {
            self.push(path, problem);
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}
