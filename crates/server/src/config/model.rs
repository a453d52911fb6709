//! The configuration file's shape: what each section holds and its defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::lenient;
use surefoot_core_model::{Secret, SecretUrl};

/// A whole `surefoot.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where queries keep their state and sources their bootstrap records.
    pub state_dir: PathBuf,
    /// The sources, in file order.
    pub sources: Vec<SourceConfig>,
    /// The continuous queries.
    pub queries: Vec<QueryConfig>,
    /// The reactions.
    pub reactions: Vec<ReactionConfig>,
    /// The management API.
    pub api: ApiConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Log output.
    pub logging: LoggingConfig,
}

/// The top level's plain settings (lists are read item by item).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    #[serde(default = "default_state_dir")]
    pub(crate) state_dir: PathBuf,
    #[serde(default)]
    pub(crate) api: ApiConfig,
    #[serde(default)]
    pub(crate) metrics: MetricsConfig,
    #[serde(default)]
    pub(crate) logging: LoggingConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("surefoot-state")
}

/// A source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// PostgreSQL logical replication, bootstrapped on first start.
    Postgres(PostgresSource),
    /// Changes posted over HTTP (`surefoot-source-http`).
    Http(HttpSource),
}

impl SourceConfig {
    /// The source's id.
    pub fn id(&self) -> &str {
        match self {
            SourceConfig::Postgres(source) => &source.id,
            SourceConfig::Http(source) => &source.id,
        }
    }
}

/// `kind: http`: changes posted to `POST /v1/changes` and `POST /v1/batches`, answered `200`
/// only once every consumer delivered them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// The source's id (its batches carry it).
    pub id: String,
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Bearer tokens accepted (redacted everywhere).
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// Accept posts without a token: allowed only on a loopback address.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub allow_unauthenticated: bool,
    /// The tables clients post to, with their columns and keys (queries and mirrors need
    /// them; nothing discovers them).
    pub tables: Vec<HttpTable>,
}

/// A table of an HTTP source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTable {
    /// `schema.table`, or `table` in `public`.
    pub name: String,
    /// Its columns.
    pub columns: Vec<String>,
    /// Its key columns (among `columns`).
    pub key: Vec<String>,
}

/// `kind: postgres`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// The source's id: names its slot and publication by default, and its batches.
    pub id: String,
    /// Server address (loopback by default).
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port", deserialize_with = "lenient::number")]
    pub port: u16,
    /// A role with the REPLICATION attribute.
    pub user: String,
    /// Its password (redacted everywhere).
    #[serde(default = "no_password")]
    pub password: Secret,
    /// The database.
    pub database: String,
    /// The replication slot; `surefoot_<id>` by default.
    #[serde(default)]
    pub slot: Option<String>,
    /// The publication; `surefoot_<id>` by default.
    #[serde(default)]
    pub publication: Option<String>,
    /// The tables (`schema.table` or `table`, in `public`); all tables when empty.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Create the publication when it is missing.
    #[serde(default = "yes", deserialize_with = "lenient::boolean")]
    pub create_publication: bool,
    /// Copy the tables' current rows before streaming, on first start.
    #[serde(default = "yes", deserialize_with = "lenient::boolean")]
    pub bootstrap: bool,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    5432
}

fn no_password() -> Secret {
    Secret::new("")
}

fn yes() -> bool {
    true
}

impl PostgresSource {
    /// The slot's name.
    pub fn slot_name(&self) -> String {
        self.slot
            .clone()
            .unwrap_or_else(|| format!("surefoot_{}", self.id.replace('-', "_")))
    }

    /// The publication's name.
    pub fn publication_name(&self) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| format!("surefoot_{}", self.id.replace('-', "_")))
    }
}

/// A continuous query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// The query's id: its result table is `query.<id>`.
    pub id: String,
    /// One SELECT over the sources' tables.
    pub sql: String,
    /// The sources whose tables it reads; every source when empty.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// A reaction.
#[derive(Debug, Clone)]
pub enum ReactionConfig {
    /// Applies diffs or changes to PostgreSQL tables (`sink-postgres-writer`).
    Postgres(PostgresReaction),
    /// Writes every change to the log.
    Log(LogReaction),
    /// Appends every batch to a Redis stream.
    Redis(RedisReaction),
    /// Posts every batch to an HTTP endpoint.
    Webhook(WebhookReaction),
}

impl ReactionConfig {
    /// The reaction's id.
    pub fn id(&self) -> &str {
        match self {
            ReactionConfig::Postgres(reaction) => &reaction.id,
            ReactionConfig::Log(reaction) => &reaction.id,
            ReactionConfig::Redis(reaction) => &reaction.id,
            ReactionConfig::Webhook(reaction) => &reaction.id,
        }
    }

    /// The query or source it reads.
    pub fn from(&self) -> &str {
        match self {
            ReactionConfig::Postgres(reaction) => &reaction.from,
            ReactionConfig::Log(reaction) => &reaction.from,
            ReactionConfig::Redis(reaction) => &reaction.from,
            ReactionConfig::Webhook(reaction) => &reaction.from,
        }
    }
}

/// `kind: postgres`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresReaction {
    /// The reaction's id (the writer's sink name).
    pub id: String,
    /// A query id (its result is mirrored) or a source id (its tables are mirrored).
    pub from: String,
    /// The target database, `postgres://...` (redacted everywhere).
    pub url: Secret,
    /// For a query: the target table, `query.<id>` by default. For a source: a schema the
    /// tables are mirrored into, their own by default.
    #[serde(default)]
    pub target: Option<String>,
    /// Rows per transaction at most.
    #[serde(default = "default_max_rows", deserialize_with = "lenient::number")]
    pub max_rows: usize,
    /// Longest wait to fill a transaction, in milliseconds.
    #[serde(
        default = "default_max_latency_ms",
        deserialize_with = "lenient::number"
    )]
    pub max_latency_ms: u64,
}

fn default_max_rows() -> usize {
    5_000
}

fn default_max_latency_ms() -> u64 {
    20
}

/// `kind: log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogReaction {
    /// The reaction's id.
    pub id: String,
    /// A query id or a source id.
    pub from: String,
}

/// `kind: redis`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisReaction {
    /// The reaction's id.
    pub id: String,
    /// A query id or a source id.
    pub from: String,
    /// The server, `redis://...` (redacted everywhere).
    pub url: SecretUrl,
    /// The stream appended to; `surefoot:<from>` by default.
    #[serde(default)]
    pub stream: Option<String>,
}

/// `kind: webhook`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookReaction {
    /// The reaction's id.
    pub id: String,
    /// A query id or a source id.
    pub from: String,
    /// The endpoint, `http://` or `https://` (redacted everywhere: its path is often a token).
    pub url: SecretUrl,
    /// Limit of one request, in milliseconds.
    #[serde(
        default = "default_webhook_timeout_ms",
        deserialize_with = "lenient::number"
    )]
    pub timeout_ms: u64,
}

fn default_webhook_timeout_ms() -> u64 {
    10_000
}

/// The management API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where it listens; off when absent.
    #[serde(default = "default_listen")]
    pub listen: Option<SocketAddr>,
    /// Bearer tokens accepted (redacted everywhere).
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// Serve without tokens: allowed only on a loopback address.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub allow_unauthenticated: bool,
    /// A component with work pending and no progress for this long is stalled: not ready.
    #[serde(
        default = "default_stall_after_ms",
        deserialize_with = "lenient::number"
    )]
    pub stall_after_ms: u64,
}

fn default_stall_after_ms() -> u64 {
    30_000
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tokens: Vec::new(),
            allow_unauthenticated: false,
            stall_after_ms: default_stall_after_ms(),
        }
    }
}

fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 7878)))
}

/// `/metrics` on the API's listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    #[serde(default = "yes", deserialize_with = "lenient::boolean")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `pretty` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `surefoot=debug,info`; `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".to_owned()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}
