//! Bookkeeping for fault-injection (`chaos_*`) tests, and the report `cargo xtask chaos` reads.
//!
//! A chaos test records every change it wrote and every change its consumer applied in a
//! [`DeliveryLedger`], asserts the ledger is exact, and calls [`report`] once per iteration.
//! `cargo xtask chaos N` sets `SUREFOOT_CHAOS_ITERATIONS=N` (read with [`iterations`]) and
//! `SUREFOOT_CHAOS_REPORT=<file>`, to which [`report`] appends one JSON line per iteration.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::Write;

use crate::error::{Error, Result};

/// Environment variable with the number of iterations a chaos test runs.
pub const ITERATIONS_ENV: &str = "SUREFOOT_CHAOS_ITERATIONS";
/// Environment variable naming the JSON-lines file results are appended to.
pub const REPORT_ENV: &str = "SUREFOOT_CHAOS_REPORT";

/// How many iterations to run: `SUREFOOT_CHAOS_ITERATIONS`, or 1.
pub fn iterations() -> u32 {
    std::env::var(ITERATIONS_ENV)
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// One iteration's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Changes committed upstream.
    pub written: u64,
    /// Distinct changes the consumer applied.
    pub delivered: u64,
    /// Changes committed but never applied.
    pub lost: u64,
    /// Applications beyond the first of a change.
    pub duplicated: u64,
}

/// Written and applied changes, by key.
#[derive(Debug)]
pub struct DeliveryLedger<K> {
    written: HashMap<K, u32>,
    applied: HashMap<K, u32>,
}

impl<K> Default for DeliveryLedger<K> {
    fn default() -> Self {
        Self {
            written: HashMap::new(),
            applied: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> DeliveryLedger<K> {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a change committed upstream.
    pub fn written(&mut self, key: K) {
        *self.written.entry(key).or_default() += 1;
    }

    /// Records a change the consumer applied.
    pub fn applied(&mut self, key: K) {
        *self.applied.entry(key).or_default() += 1;
    }

    /// Counts: lost is written and never applied; duplicated is every application past the
    /// first; an applied change that was never written counts as duplicated too (it is extra).
    pub fn tally(&self) -> Tally {
        let lost = self
            .written
            .keys()
            .filter(|key| !self.applied.contains_key(*key))
            .count();
        let duplicated: u64 = self
            .applied
            .iter()
            .map(|(key, count)| {
                let allowed = self.written.get(key).copied().unwrap_or(0).min(1);
                u64::from(count.saturating_sub(allowed))
            })
            .sum();
        Tally {
            written: self.written.len() as u64,
            delivered: self.applied.len() as u64,
            lost: lost as u64,
            duplicated,
        }
    }

    /// Up to `limit` keys written and never applied, for a failure message.
    pub fn lost_keys(&self, limit: usize) -> Vec<K> {
        self.written
            .keys()
            .filter(|key| !self.applied.contains_key(*key))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Appends `scenario`'s tally to the report file, when `cargo xtask chaos` asked for one.
pub fn report(scenario: &str, tally: &Tally) -> Result<()> {
    let Some(path) = std::env::var_os(REPORT_ENV) else {
        return Ok(());
    };
    let line = format!(
        "{{\"scenario\":{},\"written\":{},\"delivered\":{},\"lost\":{},\"duplicated\":{}}}\n",
        serde_json::Value::from(scenario),
        tally.written,
        tally.delivered,
        tally.lost,
        tally.duplicated
    );
    let describe = || format!("appending to the chaos report {}", path.to_string_lossy());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(describe(), e))?;
    // One write of one short line: appends from parallel test processes do not interleave.
    file.write_all(line.as_bytes())
        .map_err(|e| Error::io(describe(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_lost_duplicated_and_extra_changes() {
        let mut ledger = DeliveryLedger::new();
        for key in 1..=4 {
            ledger.written(key);
        }
        ledger.applied(1);
        ledger.applied(2);
        ledger.applied(2);
        ledger.applied(9);
        let tally = ledger.tally();
        assert_eq!(
            tally,
            Tally {
                written: 4,
                delivered: 3,
                lost: 2,
                duplicated: 2
            }
        );
        let mut lost = ledger.lost_keys(10);
        lost.sort();
        assert_eq!(lost, [3, 4]);
    }
}
