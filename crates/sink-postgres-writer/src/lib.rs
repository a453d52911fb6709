#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod apply;
pub mod config;
mod encode;
pub mod error;
pub mod handler;
pub mod health;
pub mod ident;
pub mod locks;
pub mod metrics;
pub mod migrate;
mod plan;
mod position;
pub mod reconcile;
pub mod reconcile_columns;
mod relay;
mod routes;
pub mod rules;
mod schema;
mod service;
mod sink;
mod stats;
mod writer;

pub use apply::FlushStats;
pub use config::{
    ApplyMode, BatchLimits, ConfigError, FailurePolicy, OutboxConfig, PoolConfig, RecordRetention,
    TableConfig, WriterConfig,
};
pub use error::{HandlerError, Refusal, RefusedBatch, WriterError};
pub use handler::{Handler, HandlerInput, OutboxMessages};
pub use health::{OutboxHealth, PoolHealth, WriterHealth};
pub use ident::{Ident, IdentError, QualifiedName};
pub use locks::{EntityLocks, lock_key};
pub use metrics::WriterMetrics;
pub use reconcile::{ReconcileReport, ReconcileSpec, reconcile};
pub use reconcile_columns::{SpecError, SpecRequest, resolve_spec};
pub use rules::{ColumnRule, HexChecksum, Rule};
pub use service::RunningWriter;
pub use writer::{PostgresWriter, WriterBuilder};
