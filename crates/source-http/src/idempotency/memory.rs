//! Keys kept in this process, bounded in number and expiring.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Begin, ClaimId, StoredAnswer};

#[derive(Debug)]
enum State {
    Pending { owner: u64 },
    Done(StoredAnswer),
}

#[derive(Debug)]
struct Entry {
    fingerprint: [u8; 32],
    state: State,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Expiry times of claims, in order (they all live `pending_ttl`); an entry whose expiry
    /// changed since leaves a stale item, skipped when it comes up.
    pending_expiry: VecDeque<(Instant, String)>,
    /// Expiry times of answers, in order (they all live `ttl`).
    done_expiry: VecDeque<(Instant, String)>,
    next_owner: u64,
}

/// At most `capacity` keys, each forgotten `ttl` after its answer was stored (`pending_ttl`
/// after its claim while it has none). One lock, never held across an `.await`.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
    pending_ttl: Duration,
}

impl MemoryStore {
    pub(crate) fn new(capacity: usize, ttl: Duration, pending_ttl: Duration) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
            ttl,
            pending_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent before it can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn begin(&self, key: &str, fingerprint: [u8; 32]) -> Begin {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.purge(now);
        if let Some(entry) = inner.entries.get(key) {
            if entry.fingerprint != fingerprint {
                return Begin::Mismatch;
            }
            return match &entry.state {
                State::Pending { .. } => Begin::InProgress,
                State::Done(answer) => Begin::Replay(answer.clone()),
            };
        }
        if inner.entries.len() >= self.capacity {
            return Begin::Full;
        }
        inner.next_owner += 1;
        let owner = inner.next_owner;
        let expires = now + self.pending_ttl;
        let entry = Entry {
            fingerprint,
            state: State::Pending { owner },
            expires,
        };
        inner.entries.insert(key.to_owned(), entry);
        inner.pending_expiry.push_back((expires, key.to_owned()));
        Begin::New(ClaimId {
            key: key.to_owned(),
            fingerprint,
            owner,
        })
    }

    pub(crate) fn complete(&self, claim: &ClaimId, answer: &StoredAnswer) -> bool {
        let expires = Instant::now() + self.ttl;
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(&claim.key) else {
            return false;
        };
        if !matches!(entry.state, State::Pending { owner } if owner == claim.owner) {
            return false;
        }
        entry.state = State::Done(answer.clone());
        entry.expires = expires;
        inner.done_expiry.push_back((expires, claim.key.clone()));
        true
    }

    pub(crate) fn release(&self, claim: &ClaimId) {
        let mut inner = self.lock();
        let owned = inner.entries.get(&claim.key).is_some_and(
            |entry| matches!(entry.state, State::Pending { owner } if owner == claim.owner),
        );
        if owned {
            inner.entries.remove(&claim.key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    fn purge(&mut self, now: Instant) {
        purge_queue(&mut self.entries, &mut self.pending_expiry, now);
        purge_queue(&mut self.entries, &mut self.done_expiry, now);
    }
}

/// Removes the entries whose expiry at the front of `queue` has passed. Released claims leave
/// items behind; the queue is compacted when those outgrow the entries by far.
fn purge_queue(
    entries: &mut HashMap<String, Entry>,
    queue: &mut VecDeque<(Instant, String)>,
    now: Instant,
) {
    while queue.front().is_some_and(|(expires, _)| *expires <= now) {
        let Some((expires, key)) = queue.pop_front() else {
            break;
        };
        if entries.get(&key).map(|entry| entry.expires) == Some(expires) {
            entries.remove(&key);
        }
    }
    if queue.len() > 2 * entries.len() + 1024 {
        queue.retain(|(expires, key)| entries.get(key).is_some_and(|e| e.expires == *expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> StoredAnswer {
        StoredAnswer {
            status: 200,
            body: "{}".to_owned(),
        }
    }

    fn claimed(begin: Begin) -> ClaimId {
        match begin {
            Begin::New(claim) => claim,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[test]
    fn a_key_is_claimed_once_then_replayed() {
        let store = MemoryStore::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let claim = claimed(store.begin("k", [1; 32]));
        assert!(matches!(store.begin("k", [1; 32]), Begin::InProgress));
        assert!(matches!(store.begin("k", [2; 32]), Begin::Mismatch));
        assert!(store.complete(&claim, &answer()));
        assert!(matches!(store.begin("k", [1; 32]), Begin::Replay(a) if a == answer()));
        assert!(!store.complete(&claim, &answer()), "completed twice");
    }

    #[test]
    fn a_released_key_can_be_claimed_again_but_only_by_its_owner() {
        let store = MemoryStore::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let first = claimed(store.begin("k", [1; 32]));
        store.release(&first);
        let second = claimed(store.begin("k", [1; 32]));
        store.release(&first);
        assert!(matches!(store.begin("k", [1; 32]), Begin::InProgress));
        assert!(store.complete(&second, &answer()));
    }

    #[test]
    fn the_store_is_bounded_and_keys_expire() {
        let store = MemoryStore::new(2, Duration::from_millis(1), Duration::from_secs(60));
        let a = claimed(store.begin("a", [0; 32]));
        claimed(store.begin("b", [0; 32]));
        assert!(matches!(store.begin("c", [0; 32]), Begin::Full));
        assert!(store.complete(&a, &answer()));
        std::thread::sleep(Duration::from_millis(5));
        claimed(store.begin("c", [0; 32]));
        assert_eq!(store.len(), 2);
    }
}
