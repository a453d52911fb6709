//! The backends: memory, Redis and PostgreSQL.

pub mod memory;
pub mod postgres;
mod postgres_sql;
pub mod redis;
mod redis_scripts;
