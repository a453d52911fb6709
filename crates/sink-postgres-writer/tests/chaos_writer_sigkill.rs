#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

//! The writer as a child process, SIGKILLed 10 times while it applies a 100,000-change stream.

mod common;

use std::time::Duration;

use common::*;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::Position;
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, TableConfig};
use surefoot_test_support::PgServer;
use surefoot_test_support::chaos::{DeliveryLedger, iterations, report};
use tokio::process::{Child, Command};

const CHANGES: i64 = 100_000;
const KILLS: usize = 10;
const BOUND: Duration = Duration::from_secs(90);

/// 5 changes per source transaction; every 4th is a ledger event, every 13th a delete.
const SOURCE_SQL: &str = "
CREATE TABLE replay_source (seq bigint PRIMARY KEY, tx bigint NOT NULL, tbl text NOT NULL,
                            op text NOT NULL, id bigint NOT NULL, body text);
INSERT INTO replay_source
SELECT s, (s - 1) / 5,
       CASE WHEN s % 4 = 0 THEN 'ledger' ELSE 'items' END,
       CASE WHEN s % 4 = 0 THEN 'insert' WHEN s % 13 = 0 THEN 'delete'
            WHEN s % 3 = 0 THEN 'update' ELSE 'insert' END,
       CASE WHEN s % 4 = 0 THEN s ELSE (s * 7919) % 5000 END,
       'v' || s
FROM generate_series(1, 100000) AS s;
CREATE TABLE items (id bigint PRIMARY KEY, body text);
";

fn spawn_writer(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_surefoot-writer-replay"))
        .arg(url)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn checkpoint(observer: &PostgresWriter) -> u64 {
    match observer.checkpoint("replay-source").await.unwrap() {
        Some(Position::Sequence(seq)) => seq,
        None => 0,
        Some(other) => panic!("unexpected checkpoint {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_writer_sigkill() {
    for _ in 0..iterations() {
        run_once().await;
    }
}

async fn run_once() {
    let server = PgServer::new().await.unwrap();
    let url = server.url("postgres");
    // An observer on the same database: applies the migrations and reads the checkpoint.
    let observer_config = config(&server, "replay").table(TableConfig::new(
        table("items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    let observer = PostgresWriter::builder(observer_config)
        .connect()
        .await
        .unwrap();
    exec(&observer, SOURCE_SQL).await;

    let done = CancellationToken::new();
    let sampler = async {
        let mut samples = Vec::new();
        while !done.is_cancelled() {
            samples.push(checkpoint(&observer).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples
    };
    let killer = async {
        let mut kills = 0;
        for round in 0..KILLS {
            let start = checkpoint(&observer).await;
            let mut child = spawn_writer(&url);
            // Let it commit a few thousand changes, then kill it mid-stream.
            let progressed = tokio::time::timeout(BOUND, async {
                while checkpoint(&observer).await < start + 4_000 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(
                progressed.is_ok(),
                "round {round}: the writer made no progress"
            );
            // Vary where in its work the kill lands.
            tokio::time::sleep(Duration::from_millis(7 * round as u64)).await;
            child.kill().await.unwrap();
            kills += 1;
        }
        let mut last = spawn_writer(&url);
        let status = tokio::time::timeout(BOUND, last.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the final writer run failed: {status}");
        done.cancel();
        kills
    };
    let (samples, kills) = tokio::join!(sampler, killer);
    assert_eq!(kills, KILLS);
    assert!(
        samples.windows(2).all(|pair| pair[0] <= pair[1]),
        "the checkpoint went backwards"
    );
    assert_eq!(checkpoint(&observer).await, CHANGES as u64);

    // The target equals the source: per key, the last change wins.
    let drift = scalar(
        &observer,
        "WITH expected AS ( \
           SELECT id, body FROM ( \
             SELECT DISTINCT ON (id) id, op, body FROM replay_source \
             WHERE tbl = 'items' ORDER BY id, seq DESC) last WHERE op <> 'delete') \
         SELECT count(*) FROM ((SELECT * FROM expected EXCEPT SELECT * FROM items) \
                         UNION ALL (SELECT * FROM items EXCEPT SELECT * FROM expected)) d",
    )
    .await;
    assert_eq!(drift, 0, "target and source differ");

    // The append table: every ledger change exactly once.
    let written: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM replay_source WHERE tbl = 'ledger'")
            .fetch_all(observer.pool())
            .await
            .unwrap();
    let applied: Vec<i64> = sqlx::query_scalar(
        "SELECT major FROM surefoot_writer.event WHERE sink = 'replay' AND source = 'replay-source'",
    )
    .fetch_all(observer.pool())
    .await
    .unwrap();
    let mut ledger = DeliveryLedger::new();
    written.into_iter().for_each(|seq| ledger.written(seq));
    applied.into_iter().for_each(|seq| ledger.applied(seq));
    let tally = ledger.tally();
    report("writer_sigkill", &tally).unwrap();
    assert_eq!((tally.lost, tally.duplicated), (0, 0), "{tally:?}");
    assert_eq!(tally.written, (CHANGES / 4) as u64);
}
