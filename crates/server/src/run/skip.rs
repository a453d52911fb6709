//! After a snapshot on demand of some of a source's tables (see `table_snapshot`), the source
//! streams again from its old watermark, and the changes to those tables committed before the
//! snapshot's consistent point are already in it. The source's fan-out drops them: every other
//! change, and every change committed at the consistent point or later, goes on.

use std::collections::BTreeSet;
use std::sync::Arc;

use surefoot_core_model::{Batch, Change, Lsn, TableRef};
use tokio::sync::watch;

/// The changes a fan-out drops: those to `tables` committed before `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkipRule {
    pub(crate) tables: BTreeSet<TableRef>,
    pub(crate) until: Lsn,
}

/// Where a source task sets its fan-out's rule; `None`: nothing is dropped.
pub(crate) type SkipSender = watch::Sender<Option<Arc<SkipRule>>>;
/// Where a fan-out reads its rule.
pub(crate) type SkipReceiver = watch::Receiver<Option<Arc<SkipRule>>>;

/// A rule's two ends, with no rule set.
pub(crate) fn skip_channel() -> (SkipSender, SkipReceiver) {
    watch::channel(None)
}

impl SkipRule {
    /// Whether `change` is dropped: a stream change to one of the tables committed before
    /// `until` (a snapshot row has no commit and is never dropped).
    pub(crate) fn skips(&self, change: &Change) -> bool {
        change
            .position
            .commit_lsn()
            .is_some_and(|commit| commit < self.until)
            && self.tables.contains(&change.table)
    }

    /// `batch` without the changes this rule drops; `None` when it drops all of them, the
    /// batch then settled as delivered (its changes are in the snapshot every consumer
    /// delivered).
    pub(crate) fn apply(&self, batch: Batch) -> Option<Batch> {
        if !batch.changes.iter().any(|change| self.skips(change)) {
            return Some(batch);
        }
        let kept: Vec<Change> = batch
            .changes
            .iter()
            .filter(|change| !self.skips(change))
            .cloned()
            .collect();
        if kept.is_empty() {
            batch.ack.delivered();
            return None;
        }
        Some(Batch {
            changes: kept.into(),
            ..batch
        })
    }
}

#[cfg(test)]
mod tests {
    use surefoot_core_model::{AckOutcome, AckToken, Position, Row, SourceId};

    use super::*;

    fn table(name: &str) -> TableRef {
        TableRef::new("public", name)
    }

    fn batch(changes: Vec<Change>, settled: &Arc<std::sync::Mutex<Vec<AckOutcome>>>) -> Batch {
        let settled = Arc::clone(settled);
        Batch {
            source: SourceId::new("shop"),
            first: changes[0].position,
            last: changes[changes.len() - 1].position,
            commit_time: None,
            changes: changes.into(),
            ack: AckToken::new(move |outcome| settled.lock().unwrap().push(outcome)),
        }
    }

    fn insert(commit: u64, name: &str) -> Change {
        Change::insert(
            Position::postgres(Lsn(commit), 0),
            table(name),
            Row::default(),
        )
    }

    fn rule() -> SkipRule {
        SkipRule {
            tables: [table("customers")].into_iter().collect(),
            until: Lsn(100),
        }
    }

    #[test]
    fn only_the_snapshotted_tables_changes_before_the_point_are_dropped() {
        let settled = Arc::default();
        let kept = rule()
            .apply(batch(
                vec![insert(40, "customers"), insert(40, "orders")],
                &settled,
            ))
            .unwrap();
        assert_eq!(kept.changes.len(), 1);
        assert_eq!(kept.changes[0].table, table("orders"));
        let after = rule()
            .apply(batch(vec![insert(100, "customers")], &settled))
            .unwrap();
        assert_eq!(after.changes.len(), 1, "committed at the point: kept");
        let snapshot_row = Change::insert(
            Position::snapshot(Lsn(100), 3),
            table("customers"),
            Row::default(),
        );
        assert!(!rule().skips(&snapshot_row));
        assert!(settled.lock().unwrap().is_empty());
    }

    #[test]
    fn a_batch_wholly_dropped_is_settled_as_delivered() {
        let settled = Arc::default();
        assert!(
            rule()
                .apply(batch(vec![insert(8, "customers")], &settled))
                .is_none()
        );
        assert_eq!(*settled.lock().unwrap(), vec![AckOutcome::Delivered]);
    }
}
