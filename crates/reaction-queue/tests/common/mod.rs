//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use surefoot_core_model::{
    AckOutcome, AckToken, Batch, Change, Position, Row, SourceId, TableRef, Value,
};

/// Outcomes of settled tokens, by (source, sequence).
#[derive(Debug, Clone, Default)]
pub struct Outcomes(Arc<Mutex<HashMap<(String, u64), AckOutcome>>>);

impl Outcomes {
    pub fn token(&self, source: &str, seq: u64) -> AckToken {
        let map = Arc::clone(&self.0);
        let key = (source.to_owned(), seq);
        AckToken::new(move |outcome| {
            let previous = map.lock().unwrap().insert(key.clone(), outcome);
            assert!(previous.is_none(), "token {key:?} settled twice");
        })
    }

    pub fn get(&self, source: &str, seq: u64) -> Option<AckOutcome> {
        self.0
            .lock()
            .unwrap()
            .get(&(source.to_owned(), seq))
            .copied()
    }

    pub fn count(&self, outcome: AckOutcome) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|o| **o == outcome)
            .count()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

pub fn at_second(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + second, 0).unwrap()
}

/// A one-change batch of `source` at sequence `seq`, committed at `second`, with `payload`
/// bytes of text.
pub fn batch(source: &str, seq: u64, second: i64, payload: usize, ack: AckToken) -> Batch {
    let position = Position::Sequence(seq);
    let row = Row::new()
        .with("id", Value::Text(format!("{source}-{seq}")))
        .with("payload", Value::Text("x".repeat(payload)));
    Batch {
        source: SourceId::new(source),
        first: position,
        last: position,
        commit_time: Some(at_second(second)),
        changes: Arc::from(vec![Change::insert(
            position,
            TableRef::new("public", "t"),
            row,
        )]),
        ack,
    }
}

pub fn seq_of(batch: &Batch) -> u64 {
    match batch.first {
        Position::Sequence(seq) => seq,
        other => panic!("unexpected position {other}"),
    }
}

/// Resident memory of this process in bytes.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A reaction for tests: records what it applied, checks that no two items with the same key
/// are applied at once, takes `work` per item, and fails permanently on `poison` sequences.
pub struct Recorder {
    pub applied: Mutex<Vec<(String, u64)>>,
    in_flight: Mutex<std::collections::HashSet<u64>>,
    pub overlaps: std::sync::atomic::AtomicU64,
    pub attempts: std::sync::atomic::AtomicU64,
    pub work: std::time::Duration,
    pub poison: std::collections::HashSet<u64>,
    pub key: fn(&Batch) -> u64,
}

impl Recorder {
    pub fn new(work: std::time::Duration) -> Self {
        Self {
            applied: Mutex::default(),
            in_flight: Mutex::default(),
            overlaps: Default::default(),
            attempts: Default::default(),
            work,
            poison: Default::default(),
            key: |_| 0,
        }
    }

    pub fn applied(&self) -> Vec<(String, u64)> {
        self.applied.lock().unwrap().clone()
    }
}

/// The error a poisoned item fails with.
#[derive(Debug, thiserror::Error)]
#[error("item {0} is poison")]
pub struct Poison(pub u64);

#[async_trait::async_trait]
impl surefoot_core_model::Reaction for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn apply(&self, batch: &Batch) -> Result<(), surefoot_core_model::ComponentError> {
        use std::sync::atomic::Ordering;
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let seq = seq_of(batch);
        let key = (self.key)(batch);
        if !self.in_flight.lock().unwrap().insert(key) {
            self.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        self.in_flight.lock().unwrap().remove(&key);
        if self.poison.contains(&seq) {
            return Err(surefoot_core_model::ComponentError::new(
                "apply",
                surefoot_core_lifecycle::ErrorClass::Permanent,
                Poison(seq),
            ));
        }
        self.applied
            .lock()
            .unwrap()
            .push((batch.source.to_string(), seq));
        Ok(())
    }
}

/// `XPENDING <stream> <group>`: count, smallest id, greatest id, count per consumer.
pub type PendingSummary = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);
