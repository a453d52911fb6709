//! Helpers shared by the PostgreSQL provider's integration tests: a table the writer changes in
//! numbered transactions, and a consumer that applies snapshot and stream by key.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use surefoot_bootstrap::postgres::snapshot_end;
use surefoot_core_model::{Batch, BatchReceiver, Change, Lsn, Operation, Position, Value};
use surefoot_source_postgres::{Identifier, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer};
use tokio::sync::watch;

/// How long a test waits for something that should come.
pub(crate) const BOUND: Duration = Duration::from_secs(60);

/// Writer transactions mark the rows they write with values from here on.
pub(crate) const WRITER_BASE: i32 = 1_000_000;

/// The id of the row the writer's last transaction inserts: the end of its changes.
pub(crate) const SENTINEL: i32 = -1;

/// A source `id` on `server`'s `postgres` database with slot `<id>_slot` and publication
/// `items_pub` for all tables; heartbeat off; status updates every 100 ms.
pub(crate) fn source_config(server: &PgServer, id: &str) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        id,
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse(&format!("{id}_slot")).unwrap(),
        Identifier::parse("publication", "items_pub").unwrap(),
    );
    config.heartbeat = None;
    config.status_interval = Duration::from_millis(100);
    config
}

/// Creates `items (id int PRIMARY KEY, v int)` with rows `1..=rows`, `v = id`.
pub(crate) async fn create_items(admin: &PgClient, rows: i32) {
    admin
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO items SELECT g, g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
}

/// Runs numbered writer transactions on `client` until at least `at_least` committed and `done`
/// turned true; each inserts a new row, updates one and deletes one. The last inserts
/// [`SENTINEL`]. Every committed transaction bumps `committed`. Returns how many ran.
pub(crate) async fn write(
    client: &PgClient,
    rows: i32,
    at_least: i32,
    mut done: watch::Receiver<bool>,
    committed: &watch::Sender<i32>,
) -> i32 {
    let mut k = 0;
    while k < at_least || !*done.borrow_and_update() {
        k += 1;
        let insert = WRITER_BASE + k;
        // In i64: under load the writer runs past 20,000 transactions, where `k * 104_729`
        // overflows an i32.
        let pick = |factor: i64, offset: i64| {
            i32::try_from((i64::from(k) * factor + offset) % i64::from(rows)).unwrap() + 1
        };
        let (update, delete) = (pick(7_919, 0), pick(104_729, 13));
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO items VALUES ({insert}, {insert});
                 UPDATE items SET v = {insert} WHERE id = {update};
                 DELETE FROM items WHERE id = {delete};
                 COMMIT;"
            ))
            .await
            .unwrap();
        committed.send_replace(k);
    }
    client
        .batch_execute(&format!("INSERT INTO items VALUES ({SENTINEL}, 0)"))
        .await
        .unwrap();
    k
}

/// The table as it is now.
pub(crate) async fn table_state(admin: &PgClient) -> BTreeMap<i32, i32> {
    admin
        .query("SELECT id, v FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn int(value: Option<&Value>) -> i32 {
    match value {
        Some(Value::Int32(value)) => *value,
        other => panic!("not an int4: {other:?}"),
    }
}

/// The writer transaction a row's content comes from, if any.
fn writer_txn(id: i32, v: i32) -> Option<i32> {
    if id > WRITER_BASE {
        Some(id - WRITER_BASE)
    } else if v > WRITER_BASE {
        Some(v - WRITER_BASE)
    } else {
        None
    }
}

/// A consumer's state, applied by key, and which writer transactions reached it how.
#[derive(Debug, Default)]
pub(crate) struct Consumer {
    pub(crate) rows: BTreeMap<i32, i32>,
    /// Writer transactions whose effects arrived in the snapshot.
    pub(crate) in_snapshot: BTreeSet<i32>,
    /// Writer transactions that arrived in the stream, in arrival order.
    pub(crate) in_stream: Vec<i32>,
    /// Whether the sentinel arrived.
    pub(crate) ended: bool,
    /// The position of the last snapshot row received.
    pub(crate) last_snapshot: Option<Position>,
}

impl Consumer {
    /// Applies a snapshot batch (inserts only). Rows must be numbered `Position::snapshot(C, n)`
    /// with `n` from 0 in the order received, the batch's `first`/`last` its first and
    /// last row's.
    pub(crate) fn snapshot(&mut self, batch: Batch) {
        let first = batch.changes.first().unwrap().position;
        let Position::Snapshot {
            consistent_point,
            row,
        } = first
        else {
            panic!("a snapshot row at {first}, not a snapshot position");
        };
        let expected = match self.last_snapshot {
            Some(Position::Snapshot { row: last, .. }) => last + 1,
            _ => 0,
        };
        assert_eq!(row, expected, "snapshot rows are not numbered in order");
        assert_eq!(batch.first, first);
        for (n, change) in (row..).zip(batch.changes.iter()) {
            assert_eq!(change.position, Position::snapshot(consistent_point, n));
        }
        assert_eq!(batch.last, batch.changes.last().unwrap().position);
        self.last_snapshot = Some(batch.last);
        for change in batch.changes.iter() {
            let row = change.after().expect("snapshot rows are inserts");
            let (id, v) = (int(row.get("id")), int(row.get("v")));
            assert!(self.rows.insert(id, v).is_none(), "row {id} twice");
            self.in_snapshot.extend(writer_txn(id, v));
        }
        batch.ack.delivered();
    }

    /// Applies a stream batch; every one must commit at `consistent_point` or later (the slot
    /// streams transactions whose commit record starts there or after; the snapshot holds those
    /// before), and sort after every snapshot row and the snapshot's end.
    pub(crate) fn stream(&mut self, batch: Batch, consistent_point: Lsn) {
        let commit = batch.last.commit_lsn().unwrap();
        assert!(
            commit >= consistent_point,
            "a transaction committed at {commit}, before the consistent point {consistent_point}"
        );
        assert!(
            batch.first > snapshot_end(consistent_point),
            "a stream change sorts with the snapshot"
        );
        if let Some(last) = self.last_snapshot {
            assert!(
                batch.first > last,
                "a stream change sorts with the snapshot"
            );
        }
        let mut txn = None;
        for change in batch.changes.iter() {
            txn = txn.or(self.apply(change));
        }
        self.in_stream.extend(txn);
        batch.ack.delivered();
    }

    fn apply(&mut self, change: &Change) -> Option<i32> {
        match &change.operation {
            Operation::Insert { after } | Operation::Update { after, .. } => {
                let (id, v) = (int(after.get("id")), int(after.get("v")));
                self.ended |= id == SENTINEL;
                self.rows.insert(id, v);
                writer_txn(id, v)
            }
            Operation::Delete { key, before } => {
                let key = key.as_ref().or(before.as_ref()).unwrap();
                self.rows.remove(&int(key.get("id")));
                None
            }
            Operation::Truncate => panic!("no truncate expected"),
        }
    }
}

/// The next batch, failing the test if none comes within [`BOUND`].
pub(crate) async fn next_batch(batches: &mut BatchReceiver) -> Batch {
    tokio::time::timeout(BOUND, batches.recv())
        .await
        .expect("no batch within the bound")
        .expect("output closed")
}

/// Replication slots whose name starts with `prefix`.
pub(crate) async fn slots_like(admin: &PgClient, prefix: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE starts_with(slot_name, $1)",
            &[&prefix],
        )
        .await
        .unwrap()
        .get(0)
}

/// Backends of client connections (not the server's own processes).
pub(crate) async fn client_backends(admin: &PgClient) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('client backend', 'walsender')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
