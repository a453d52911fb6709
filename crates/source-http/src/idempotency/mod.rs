//! Idempotency keys: a repeated key gets the first ingest's answer and ingests nothing new.
//!
//! A key moves through two states:
//!
//! - **pending**: claimed by the one request that is ingesting under it. A concurrent or later
//!   request with the same key gets `409 Conflict` with `Retry-After` and ingests nothing.
//! - **done**: the ingest reached a final answer, which is stored and replayed to every later
//!   request with the key (with `Idempotent-Replayed: true`).
//!
//! The stored answer is the *outcome of the ingest*, decided when the batch holding the changes
//! settles, not whatever the first connection happened to see: in `sync` mode a delivered batch
//! stores `200`; a batch that failed releases the key (nothing was delivered, so a retry ingests
//! again and that attempt's outcome becomes the answer). A request that timed out waiting
//! (`503`) leaves the key pending until its batch settles: if the batch is delivered later, a
//! retry gets the stored `200` instead of a second ingest. A `503` is therefore never stored.
//! A request refused before its changes were queued (`429`, validation) releases its claim.
//!
//! A key reused with a different body (or endpoint) gets `422` and ingests nothing.

mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis_store;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub(crate) use memory::MemoryStore;
#[cfg(feature = "redis")]
pub(crate) use redis_store::RedisStore;

use crate::error::HttpSourceError;

/// Longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A final answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredAnswer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// Identifies one claim of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimId {
    pub(crate) key: String,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) owner: u64,
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The key is new and now claimed by this request.
    New(ClaimId),
    /// The key has a final answer.
    Replay(StoredAnswer),
    /// Another request holds the key and has no final answer yet.
    InProgress,
    /// The key was used with a different body.
    Mismatch,
    /// The store is full of live keys.
    Full,
}

/// Where keys are remembered.
#[derive(Debug, Clone)]
pub(crate) enum IdempotencyStore {
    Memory(Arc<MemoryStore>),
    /// Only with the `redis` feature.
    #[cfg(feature = "redis")]
    Redis(Arc<RedisStore>),
}

impl IdempotencyStore {
    /// Looks `key` up and claims it when it is new.
    ///
    /// Cancel-safe: a claim that may have been written when the future is dropped is released
    /// through `releases` (only Redis claims go there).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn begin(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        releases: &mpsc::Sender<ClaimId>,
    ) -> Result<Begin, HttpSourceError> {
        match self {
            IdempotencyStore::Memory(store) => Ok(store.begin(key, fingerprint)),
            #[cfg(feature = "redis")]
            IdempotencyStore::Redis(store) => store.begin(key, fingerprint, releases).await,
        }
    }

    /// Stores the final answer of a claim. False when the claim had expired (and the answer was
    /// not stored).
    pub(crate) async fn complete(
        &self,
        claim: &ClaimId,
        answer: &StoredAnswer,
    ) -> Result<bool, HttpSourceError> {
        match self {
            IdempotencyStore::Memory(store) => Ok(store.complete(claim, answer)),
            #[cfg(feature = "redis")]
            IdempotencyStore::Redis(store) => store.complete(claim, answer).await,
        }
    }

    /// Forgets a claim whose request ingested nothing.
    pub(crate) async fn release(&self, claim: &ClaimId) -> Result<(), HttpSourceError> {
        match self {
            IdempotencyStore::Memory(store) => {
                store.release(claim);
                Ok(())
            }
            #[cfg(feature = "redis")]
            IdempotencyStore::Redis(store) => store.release(claim).await,
        }
    }
}

/// The fingerprint of a request: its endpoint and body.
pub(crate) fn fingerprint(endpoint: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().into()
}

/// True for a usable key: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub(crate) fn valid_key(key: &[u8]) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.iter().all(|byte| byte.is_ascii_graphic())
}

/// A claim held by a request until its changes are queued; dropped before that (the client
/// went away, the pipeline was full), it releases the key so a retry can ingest.
#[derive(Debug)]
pub(crate) struct Claim {
    id: Option<ClaimId>,
    store: IdempotencyStore,
    /// Where a Redis claim goes to be released (a memory claim is released at once).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    releases: mpsc::Sender<ClaimId>,
}

impl Claim {
    pub(crate) fn new(
        id: ClaimId,
        store: IdempotencyStore,
        releases: mpsc::Sender<ClaimId>,
    ) -> Self {
        Self {
            id: Some(id),
            store,
            releases,
        }
    }

    /// Hands the claim over to whoever settles the ingest.
    pub(crate) fn into_id(mut self) -> Option<ClaimId> {
        self.id.take()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        match &self.store {
            IdempotencyStore::Memory(store) => store.release(&id),
            #[cfg(feature = "redis")]
            IdempotencyStore::Redis(_) => {
                if let Err(error) = self.releases.try_send(id) {
                    // The settler is gone or swamped: the claim expires after pending_ttl.
                    tracing::warn!(%error, "idempotency claim left to expire");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(valid_key(b"order-42"));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"has space"));
        assert!(!valid_key(&[b'a'; MAX_KEY_LEN + 1]));
        assert!(valid_key(&[b'a'; MAX_KEY_LEN]));
    }

    #[test]
    fn the_endpoint_is_part_of_the_fingerprint() {
        assert_ne!(fingerprint("/a", b"x"), fingerprint("/b", b"x"));
        assert_eq!(fingerprint("/a", b"x"), fingerprint("/a", b"x"));
    }
}
