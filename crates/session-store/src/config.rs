//! Settings shared by every backend.

use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::pool::PoolConfig;

/// Settings every backend takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The connection pool.
    pub pool: PoolConfig,
    /// Messages kept per room; older ones are trimmed (a resume from before them is reported
    /// with `recovered = false`).
    pub history_max_len: usize,
    /// Prefix of every Redis key (lets several stores share one Redis).
    pub key_prefix: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            pool: PoolConfig::default(),
            history_max_len: 10_000,
            key_prefix: "sf".to_owned(),
        }
    }
}

impl StoreConfig {
    /// `Ok`, or [`StoreError::Config`] listing every problem with its path.
    pub fn validate(&self) -> Result<(), StoreError> {
        let mut problems = self.pool.problems("pool");
        if !(1..=10_000_000).contains(&self.history_max_len) {
            problems.push(format!(
                "history_max_len: must be 1..=10000000, is {}",
                self.history_max_len
            ));
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !prefix_ok {
            problems.push(format!(
                "key_prefix: must be 1 to 64 characters of A-Z a-z 0-9 _ - ., is {:?}",
                self.key_prefix
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Config(problems))
        }
    }
}
