#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod catalog;
mod check;
pub mod datum;
pub mod durable;
mod engine;
pub mod error;
pub mod expr;
pub mod metrics;
mod ops;
pub mod plan;
pub mod query;
mod settle;

pub use catalog::{Catalog, TableSchema};
pub use check::check_language;
pub use durable::{DurableError, DurableQuery};
pub use error::{EvalError, QueryError, TextPosition};
pub use query::{ContinuousQuery, OUTPUT_SCHEMA, QueryHealth, QueryStats};
