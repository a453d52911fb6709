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
