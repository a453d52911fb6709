//! Reactions provided with the crate: [`LogReaction`], [`WebhookReaction`] and, with the
//! `redis` feature, `RedisReaction`.
//!
//! Each one returns from [`surefoot_core_model::Reaction::apply`] only once its effect is done
//! (logged, answered with a 2xx, acknowledged by Redis), and carries an idempotency key derived
//! from the batch's source and positions ([`idempotency_key`]) so that receivers can drop a
//! redelivered batch.

mod log;
#[cfg(feature = "redis")]
mod redis_out;
mod webhook;

use sha2::{Digest, Sha256};
use surefoot_core_model::Batch;

pub use log::LogReaction;
#[cfg(feature = "redis")]
pub use redis_out::{RedisReaction, RedisTarget};
pub use webhook::{IDEMPOTENCY_HEADER, WebhookConfig, WebhookError, WebhookReaction};

/// A stable key for a batch: hex SHA-256 of its source, first and last position. The same
/// batch delivered again has the same key; different batches of one source never share one.
pub fn idempotency_key(batch: &Batch) -> String {
    let mut hasher = Sha256::new();
    hasher.update(batch.source.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(batch.first.to_string().as_bytes());
    hasher.update([0]);
    hasher.update(batch.last.to_string().as_bytes());
    let digest = hasher.finalize();
    let mut key = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    key
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The JSON body webhooks and Redis messages carry.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Payload<'a> {
    idempotency_key: String,
    source: &'a str,
    first: surefoot_core_model::Position,
    last: surefoot_core_model::Position,
    commit_time: Option<chrono::DateTime<chrono::Utc>>,
    changes: &'a [surefoot_core_model::Change],
}

impl<'a> Payload<'a> {
    pub(crate) fn of(batch: &'a Batch) -> Self {
        Self {
            idempotency_key: idempotency_key(batch),
            source: batch.source.as_str(),
            first: batch.first,
            last: batch.last,
            commit_time: batch.commit_time,
            changes: &batch.changes,
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.idempotency_key
    }
}
