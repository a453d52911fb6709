//! Issue 15: a durable join + aggregate query in its own process (`surefoot-query-runner`:
//! `source-postgres` → `DurableQuery` → `sink-postgres-writer` mirror), killed with SIGKILL ten
//! times during 50,000 changes and started again each time on the same state file. At the end
//! the mirror equals PostgreSQL's answer to the same SQL (`EXCEPT` both ways), and the writer
//! applied every sequence the query emitted exactly once: none twice, none skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use surefoot_pipeline_tests::{applied::applied, compare::except_both_ways};
use surefoot_test_support::{PgClient, PgServer};
use tokio::process::{Child, Command};

const CHANGES: usize = 50_000;
const KILLS: usize = 10;
const CUSTOMERS: i32 = 200;
const SOURCE: &str = "shop";
const QUERY: &str = "totals";
const SINK: &str = "query-mirror";
const SLOT: &str = "shop_slot";
const SENTINEL_REGION: &str = "zz-sentinel";
const BOUND: Duration = Duration::from_secs(180);

const SQL: &str = "SELECT c.region, count(*) AS orders, sum(o.amount) AS total, \
     max(o.amount) AS largest, min(o.amount) AS smallest \
     FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region";
const COLUMNS: &str = "region, orders, total, largest, smallest";
const TYPES: &str = "region text, orders bigint, total bigint, largest bigint, smallest bigint";

async fn prepare(server: &PgServer) -> (PgClient, PgClient) {
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
             CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL);
             CREATE SCHEMA query;
             CREATE VIEW query.{QUERY} AS {SQL};"
        ))
        .await
        .unwrap();
    server.create_database("target").await.unwrap();
    let target = server.connect("target").await.unwrap();
    target
        .batch_execute(&format!(
            "CREATE SCHEMA query;
             CREATE TABLE query.{QUERY} ({TYPES}, \"_key.1\" text PRIMARY KEY)"
        ))
        .await
        .unwrap();
    (admin, target)
}

fn runner(server: &PgServer, state: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_surefoot-query-runner"))
        .env("SUREFOOT_PG_HOST", server.host())
        .env("SUREFOOT_PG_PORT", server.port().to_string())
        .env("SUREFOOT_PG_USER", server.user())
        .env("SUREFOOT_SOURCE", SOURCE)
        .env("SUREFOOT_SLOT", SLOT)
        .env("SUREFOOT_PUBLICATION", "shop_pub")
        .env("SUREFOOT_QUERY", QUERY)
        .env("SUREFOOT_SQL", SQL)
        .env(
            "SUREFOOT_CATALOG",
            "orders:id,customer,amount;customers:id,region",
        )
        .env("SUREFOOT_STATE", state)
        .env("SUREFOOT_DATABASE_URL", server.url("target"))
        .env("SUREFOOT_SINK", SINK)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until the runner's replication connection holds the slot.
async fn wait_until_streaming(admin: &PgClient, child: &mut Child) {
    let deadline = Instant::now() + BOUND;
    loop {
        let rows = admin
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&SLOT],
            )
            .await
            .unwrap();
        if !rows.is_empty() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the runner exited before streaming: {status}");
        }
        assert!(Instant::now() < deadline, "the runner never took the slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One transaction of ten changes: four orders added, three changed (amount and customer),
/// two removed, a customer moved to another region. Returns the changes made.
async fn transaction(client: &PgClient, k: i32) -> usize {
    let id = |n: i32| k * 4 + n;
    let customer = |n: i32| (k * 7 + n) % CUSTOMERS + 1;
    let earlier = |n: i32| (k - 1 - n).max(0) * 4 + n;
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO orders VALUES ({}, {}, {}), ({}, {}, {}), ({}, {}, {}), ({}, {}, {});
             UPDATE orders SET amount = amount + 3, customer = {} WHERE id IN ({}, {}, {});
             DELETE FROM orders WHERE id IN ({}, {});
             UPDATE customers SET region = 'r' || ({k} % 17) WHERE id = {};
             COMMIT;",
            id(0),
            customer(0),
            k % 101,
            id(1),
            customer(1),
            k % 53,
            id(2),
            customer(2),
            k % 211,
            id(3),
            customer(3),
            k % 7,
            customer(4),
            earlier(5),
            earlier(6),
            earlier(7),
            earlier(8) + 1,
            earlier(9) + 2,
            customer(5),
        ))
        .await
        .unwrap();
    10
}

async fn wait_for_sentinel(target: &PgClient) {
    let deadline = Instant::now() + BOUND;
    let sql = format!("SELECT count(*) FROM query.{QUERY} WHERE region = $1");
    loop {
        let row = target.query_one(&sql, &[&SENTINEL_REGION]).await.unwrap();
        if row.get::<_, i64>(0) == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel's group never reached the mirror"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the runner with SIGTERM and checks it exits 0 in time.
async fn stop(mut child: Child) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the runner stops within 60 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "the runner exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_join_aggregate_query_killed_ten_times_applies_every_sequence_once() {
    let server = PgServer::new().await.unwrap();
    let (admin, target) = prepare(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("totals.redb");
    let load = server.connect("postgres").await.unwrap();

    let mut child = runner(&server, &state);
    wait_until_streaming(&admin, &mut child).await;
    load.batch_execute(&format!(
        "INSERT INTO customers SELECT g, 'r' || (g % 17) FROM generate_series(1, {CUSTOMERS}) g"
    ))
    .await
    .unwrap();
    let mut changes = CUSTOMERS as usize;
    let mut kills = 0;
    let mut k = 0;
    while changes < CHANGES {
        k += 1;
        changes += transaction(&load, k).await;
        // Killed at every eleventh of the changes, while they keep coming.
        if kills < KILLS && changes >= (kills + 1) * CHANGES / (KILLS + 1) {
            child.start_kill().unwrap();
            let status = child.wait().await.unwrap();
            assert!(!status.success(), "the runner was killed: {status}");
            kills += 1;
            child = runner(&server, &state);
        }
    }
    let sentinel = CUSTOMERS + 1;
    load.batch_execute(&format!(
        "BEGIN;
         INSERT INTO customers VALUES ({sentinel}, '{SENTINEL_REGION}');
         INSERT INTO orders VALUES (-1, {sentinel}, 1);
         COMMIT;"
    ))
    .await
    .unwrap();
    wait_until_streaming(&admin, &mut child).await;
    wait_for_sentinel(&target).await;
    stop(child).await;

    let difference = except_both_ways(
        admin.client(),
        &server.connection_string("target"),
        &format!("query.{QUERY}"),
        COLUMNS,
        TYPES,
    )
    .await
    .unwrap();
    let applied = applied(target.client(), SINK, QUERY).await.unwrap();
    let highest = applied.highest.map_or(0, |(sequence, _)| sequence);
    eprintln!(
        "query kill -9: {changes} changes in {k} transactions, {kills} kills; applied {} diffs \
         in {} records, highest sequence {highest}; missing {} extra {} applied twice {}",
        applied.changes, applied.records, difference.missing, difference.extra, applied.overlapping,
    );
    assert_eq!(kills, KILLS);
    assert!(
        difference.is_equal(),
        "the mirror differs from PostgreSQL's answer: {difference:?}"
    );
    assert_eq!(applied.overlapping, 0, "sequences applied twice");
    assert_eq!(
        applied.changes,
        u64::try_from(highest).unwrap(),
        "sequences skipped: {} applied up to sequence {highest}",
        applied.changes
    );
}
