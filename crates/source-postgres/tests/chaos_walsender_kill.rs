//! D-C3: a workload of 10,000 transactions (1 to 50 inserts, updates and deletes each, some
//! rows with out-of-line TOASTed text) while the walsender is terminated 20 times at random
//! points and the server is restarted twice. The consumer dedupes by position; the changes it
//! applied must equal the committed changes exactly, its final table must equal the server's,
//! and every reconnect delay must lie within its backoff ceiling.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use surefoot_core_lifecycle::{Backoff, RetryPolicy};
use surefoot_core_model::{
    Batch, BatchReceiver, Operation, Position, Source, Value, batch_channel,
};
use surefoot_source_postgres::setup::PublicationTables;
use surefoot_source_postgres::{
    Identifier, PostgresSource, PostgresSourceConfig, SlotName, TableName,
};
use surefoot_test_support::chaos::{self, DeliveryLedger};
use surefoot_test_support::{PgClient, PgServer, connect};
use tokio::sync::{Mutex, watch};

const TRANSACTIONS: u64 = 10_000;
const WALSENDER_KILLS: usize = 20;
const RESTARTS: usize = 2;
const REPLICATION_APP: &str = "surefoot-chaos-replication";

/// A committed change: (op, id, version).
type ChangeKey = (char, i64, i32);

#[derive(Debug, Clone, PartialEq)]
struct Item {
    version: i32,
    body: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_walsender_kill() {
    for iteration in 0..chaos::iterations() {
        let seed: u64 = rand::rng().random();
        eprintln!("chaos_walsender_kill iteration {iteration}: seed {seed}");
        let tally = run_once(seed).await;
        assert_eq!(
            (tally.lost, tally.duplicated),
            (0, 0),
            "seed {seed}: {tally:?}"
        );
    }
}

async fn run_once(seed: u64) -> chaos::Tally {
    let server = PgServer::new().await.unwrap();
    let db = server.config("postgres");
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, version int NOT NULL, body text);
             ALTER TABLE items ALTER COLUMN body SET STORAGE EXTERNAL;
             CREATE TABLE tx_log (tx bigint PRIMARY KEY);",
        )
        .await
        .unwrap();
    drop(admin);

    let (output, batches) = batch_channel(64);
    let source = PostgresSource::new(source_config(&server), output).unwrap();
    source.start().await.unwrap();
    let server = Arc::new(Mutex::new(server));
    let (progress_tx, progress) = watch::channel(0u64);

    let (written, (applied, consumer_items), ()) = tokio::join!(
        write_workload(&db, seed, progress_tx),
        consume(batches, &source),
        inject_faults(Arc::clone(&server), progress, seed),
    );
    source.stop(Duration::from_secs(10)).await.unwrap();

    // The tally goes to the report first, so `cargo xtask chaos` shows it even if a check fails.
    let mut ledger = DeliveryLedger::new();
    written.into_iter().for_each(|key| ledger.written(key));
    applied.into_iter().for_each(|key| ledger.applied(key));
    let tally = ledger.tally();
    chaos::report("chaos_walsender_kill", &tally).unwrap();
    if tally.lost > 0 {
        eprintln!("lost, first few: {:?}", ledger.lost_keys(10));
    }

    let server = server.lock().await;
    let client = server.connect("postgres").await.unwrap();
    assert_eq!(
        consumer_items,
        table_state(&client).await,
        "seed {seed}: final tables differ"
    );
    check_reconnect_delays(&source);
    assert!(
        source.reconnects().len() >= WALSENDER_KILLS,
        "every kill forces a reconnect"
    );
    tally
}

fn source_config(server: &PgServer) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        "chaos",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("chaos_slot").unwrap(),
        Identifier::parse("publication", "chaos_pub").unwrap(),
    );
    config.tables = PublicationTables::Tables(vec![TableName::parse("items").unwrap()]);
    config.heartbeat = Some(Duration::from_millis(500));
    config.liveness_timeout = Duration::from_secs(5);
    config.status_interval = Duration::from_millis(100);
    config.reconnect = RetryPolicy::new(Backoff::new(
        Duration::from_millis(20),
        Duration::from_secs(1),
    ))
    .with_max_attempts(u32::MAX)
    .with_max_elapsed(Duration::from_secs(300));
    config
}

/// The writer's view of live rows: id -> version.
struct Workload {
    rng: StdRng,
    live: BTreeMap<i64, i32>,
    next_id: i64,
}

impl Workload {
    /// One transaction's SQL and the changes it makes if it commits.
    fn transaction(&mut self, tx: u64) -> (String, Vec<ChangeKey>, BTreeMap<i64, Option<i32>>) {
        let mut sql = String::from("BEGIN;");
        let mut changes = Vec::new();
        let mut touched: BTreeMap<i64, Option<i32>> = BTreeMap::new();
        let rows = self.rng.random_range(1..=50);
        for _ in 0..rows {
            let current =
                |id: i64, touched: &BTreeMap<i64, Option<i32>>, live: &BTreeMap<i64, i32>| {
                    touched
                        .get(&id)
                        .copied()
                        .unwrap_or_else(|| live.get(&id).copied())
                };
            let pick = self.rng.random_range(0..10);
            // A random id ever used; most are live (a fifth of changes are deletes).
            let candidate = self.rng.random_range(1..self.next_id.max(2));
            let existing =
                Some(candidate).filter(|id| current(*id, &touched, &self.live).is_some());
            match (pick, existing) {
                (0..=4, _) | (_, None) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let body = if self.rng.random_range(0..10) == 0 {
                        let text: String = (0..4000)
                            .map(|_| self.rng.random_range(b'a'..=b'z') as char)
                            .collect();
                        format!("'{text}'")
                    } else {
                        "'short'".to_owned()
                    };
                    sql.push_str(&format!("INSERT INTO items VALUES ({id}, 1, {body});"));
                    changes.push(('I', id, 1));
                    touched.insert(id, Some(1));
                }
                (5..=7, Some(id)) => {
                    let version = current(id, &touched, &self.live).unwrap_or(1) + 1;
                    sql.push_str(&format!(
                        "UPDATE items SET version = {version} WHERE id = {id};"
                    ));
                    changes.push(('U', id, version));
                    touched.insert(id, Some(version));
                }
                (_, Some(id)) => {
                    let version = current(id, &touched, &self.live).unwrap_or(1);
                    sql.push_str(&format!("DELETE FROM items WHERE id = {id};"));
                    changes.push(('D', id, version));
                    touched.insert(id, None);
                }
            }
        }
        sql.push_str(&format!("INSERT INTO tx_log VALUES ({tx}); COMMIT;"));
        (sql, changes, touched)
    }

    fn committed(&mut self, touched: BTreeMap<i64, Option<i32>>) {
        for (id, version) in touched {
            match version {
                Some(version) => self.live.insert(id, version),
                None => self.live.remove(&id),
            };
        }
    }
}

/// Commits the workload, then a sentinel row (id -1). Returns every committed change.
async fn write_workload(
    db: &tokio_postgres::Config,
    seed: u64,
    progress: watch::Sender<u64>,
) -> Vec<ChangeKey> {
    let mut workload = Workload {
        rng: StdRng::seed_from_u64(seed),
        live: BTreeMap::new(),
        next_id: 1,
    };
    let mut client = reconnect(db).await;
    let mut written = Vec::new();
    for tx in 0..=TRANSACTIONS {
        let (sql, changes, touched) = if tx == TRANSACTIONS {
            let sql = format!(
                "BEGIN; INSERT INTO items VALUES (-1, 1, 'end'); INSERT INTO tx_log VALUES ({tx}); COMMIT;"
            );
            (sql, vec![('I', -1, 1)], BTreeMap::from([(-1, Some(1))]))
        } else {
            workload.transaction(tx)
        };
        let committed = match client.batch_execute(&sql).await {
            Ok(()) => true,
            Err(_) => {
                // The connection died (restart or termination): did the commit happen?
                client = reconnect(db).await;
                let found = client
                    .query_opt("SELECT 1 FROM tx_log WHERE tx = $1", &[&(tx as i64)])
                    .await;
                found.unwrap().is_some()
            }
        };
        if committed {
            written.extend(changes);
            workload.committed(touched);
        }
        progress.send_replace(tx);
        if tx % 1000 == 0 {
            eprintln!(
                "writer: {tx} transactions, {} changes committed",
                written.len()
            );
        }
    }
    written
}

async fn reconnect(db: &tokio_postgres::Config) -> PgClient {
    for _ in 0..200 {
        if let Ok(client) = connect(db).await {
            return client;
        }
        // The server is restarting; it is back within a few hundred milliseconds.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come back");
}

/// Applies batches, deduping by position, until the sentinel row arrives.
async fn consume(
    mut batches: BatchReceiver,
    source: &PostgresSource,
) -> (Vec<ChangeKey>, BTreeMap<i64, Item>) {
    let mut applied = Vec::new();
    let mut items: BTreeMap<i64, Item> = BTreeMap::new();
    let mut last_applied: Option<Position> = None;
    loop {
        let batch = next(&mut batches, source).await;
        if last_applied.is_some_and(|last| batch.last <= last) {
            batch.ack.delivered(); // Seen before: redelivered after a reconnect.
            continue;
        }
        let done = apply(&batch, &mut items, &mut applied);
        if applied.len() / 20_000 != (applied.len() - batch.changes.len()) / 20_000 {
            eprintln!(
                "consumer: {} changes applied, at {}",
                applied.len(),
                batch.last
            );
        }
        last_applied = Some(batch.last);
        batch.ack.delivered();
        if done {
            return (applied, items);
        }
    }
}

async fn next(batches: &mut BatchReceiver, source: &PostgresSource) -> Batch {
    match tokio::time::timeout(Duration::from_secs(120), batches.recv()).await {
        Ok(batch) => batch.expect("the source's output closed"),
        Err(_) => {
            let reconnects = source.reconnects();
            let recent = &reconnects[reconnects.len().saturating_sub(5)..];
            panic!(
                "no batch for 120 s: the source stopped delivering\nstatus: {:?}\nhealth: {:?}\ntracker: {:?}\nconfirmed: {}\nlast reconnects: {recent:#?}",
                source.status(),
                source.component().health().report(),
                source.tracker().snapshot(),
                source.confirmed(),
            )
        }
    }
}

/// Applies one batch; returns true when it holds the sentinel.
fn apply(batch: &Batch, items: &mut BTreeMap<i64, Item>, applied: &mut Vec<ChangeKey>) -> bool {
    let mut sentinel = false;
    for change in batch.changes.iter() {
        match &change.operation {
            Operation::Insert { after } | Operation::Update { after, .. } => {
                let id = int(after.get("id"));
                let version = int(after.get("version")) as i32;
                let op = if matches!(change.operation, Operation::Insert { .. }) {
                    'I'
                } else {
                    'U'
                };
                let body = match after.get("body") {
                    Some(Value::Text(text)) => Some(text.clone()),
                    Some(Value::Unchanged) => items.get(&id).and_then(|item| item.body.clone()),
                    Some(Value::Null) | None => None,
                    Some(other) => panic!("body is {other:?}"),
                };
                items.insert(id, Item { version, body });
                applied.push((op, id, version));
                sentinel |= id == -1;
            }
            Operation::Delete { key, .. } => {
                let id = int(key.as_ref().and_then(|key| key.get("id")));
                let removed = items
                    .remove(&id)
                    .expect("delete of a row the consumer never saw");
                applied.push(('D', id, removed.version));
            }
            Operation::Truncate => panic!("no truncates in this workload"),
        }
    }
    sentinel
}

fn int(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Int64(n)) => *n,
        Some(Value::Int32(n)) => i64::from(*n),
        other => panic!("expected an integer, got {other:?}"),
    }
}

async fn table_state(client: &PgClient) -> BTreeMap<i64, Item> {
    let rows = client
        .query("SELECT id, version, body FROM items", &[])
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.get(0),
                Item {
                    version: row.get(1),
                    body: row.get(2),
                },
            )
        })
        .collect()
}

/// 20 walsender terminations and 2 restarts at random points of the workload's progress.
async fn inject_faults(
    server: Arc<Mutex<PgServer>>,
    mut progress: watch::Receiver<u64>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut faults: Vec<(u64, bool)> = (0..WALSENDER_KILLS + RESTARTS)
        .map(|n| {
            (
                rng.random_range(100..TRANSACTIONS - 100),
                n >= WALSENDER_KILLS,
            )
        })
        .collect();
    faults.sort();
    let mut kills = 0;
    for (at, restart) in faults {
        if progress.wait_for(|done| *done >= at).await.is_err() {
            break;
        }
        if restart {
            server.lock().await.restart().await.unwrap();
        } else {
            kills += kill_walsender(&server).await;
        }
    }
    assert_eq!(
        kills, WALSENDER_KILLS,
        "every planned walsender kill found a walsender"
    );
}

/// Terminates the source's walsender, waiting for one to exist (the source may be reconnecting).
async fn kill_walsender(server: &Mutex<PgServer>) -> usize {
    for _ in 0..600 {
        if server
            .lock()
            .await
            .terminate_backends(REPLICATION_APP)
            .await
            .unwrap_or(0)
            > 0
        {
            return 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    0
}

fn check_reconnect_delays(source: &PostgresSource) {
    let base = Duration::from_millis(20);
    let cap = Duration::from_secs(1);
    let mut by_attempt: HashMap<u32, usize> = HashMap::new();
    for reconnect in source.reconnects() {
        let exponent = reconnect.attempt.saturating_sub(1).min(20);
        let expected_ceiling = cap.min(base * 2u32.pow(exponent));
        assert_eq!(reconnect.ceiling, expected_ceiling, "{reconnect:?}");
        assert!(reconnect.delay <= reconnect.ceiling, "{reconnect:?}");
        *by_attempt.entry(reconnect.attempt).or_default() += 1;
    }
    eprintln!("reconnects by attempt: {by_attempt:?}");
}
