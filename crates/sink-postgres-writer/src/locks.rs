//! Serialising updates to one entity (FINDINGS W-6).
//!
//! Mirror mode needs nothing extra: `UPDATE`, `DELETE` and the unique index of `INSERT` lock the
//! keys they touch, and writers of one (sink, source) are serialised by the checkpoint row lock.
//! Custom handlers that update aggregates (seed 003's cascades) often touch rows that may not
//! exist yet, which row locks cannot cover; for them [`EntityLocks`] takes transaction-scoped
//! advisory locks keyed by the first 64 bits of SHA-256 of the entity's name.
//!
//! Why this is safe: a collision of two names on one key only makes their updates wait for each
//! other; it never lets two updates of one entity run at once. The collision check is there to
//! make such a coarser lock visible (a warning and a count), not to correct anything. Keys are
//! taken in sorted order, so two transactions locking overlapping sets cannot deadlock.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::HandlerError;

/// The advisory lock key of `name`: the first 8 bytes of its SHA-256, as a signed 64-bit integer
/// (the type `pg_advisory_xact_lock` takes; the sign bit is simply the top bit of the hash).
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Advisory locks on entities for the rest of the open transaction.
#[derive(Debug, Default)]
pub struct EntityLocks {
    held: BTreeMap<i64, String>,
    collisions: u64,
}

impl EntityLocks {
    /// No locks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks every entity in `names` (e.g. `vault:0xabc`) until the transaction ends, in key
    /// order. A name already held is skipped. Two names sharing a key are reported (log and
    /// [`Self::collisions`]) and share the lock.
    pub async fn lock<'a>(
        &mut self,
        conn: &mut PgConnection,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), HandlerError> {
        let mut wanted: BTreeMap<i64, &str> = BTreeMap::new();
        for name in names {
            let key = lock_key(name);
            let earlier = self
                .held
                .get(&key)
                .map(String::as_str)
                .or(wanted.get(&key).copied());
            match earlier {
                Some(other) if other != name => {
                    self.collisions += 1;
                    tracing::warn!(
                        key,
                        first = other,
                        second = name,
                        "advisory lock key collision; the two entities share one lock"
                    );
                }
                Some(_) => {}
                None => {
                    wanted.insert(key, name);
                }
            }
        }
        let keys: Vec<i64> = wanted.keys().copied().collect();
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k ORDER BY k")
            .bind(&keys)
            .execute(conn)
            .await
            .map_err(|e| HandlerError::sql("take entity locks", e))?;
        self.held
            .extend(wanted.into_iter().map(|(k, n)| (k, n.to_owned())));
        Ok(())
    }

    /// Names that shared a key with another name.
    pub fn collisions(&self) -> u64 {
        self.collisions
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no lock is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_top_64_bits_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(
            lock_key("abc"),
            i64::from_be_bytes(0xba78_16bf_8f01_cfea_u64.to_be_bytes())
        );
        assert_ne!(lock_key("vault:1"), lock_key("vault:2"));
    }
}
