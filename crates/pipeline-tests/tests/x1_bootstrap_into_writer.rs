//! Issue 14, X-1 composed: a 200,000-row table snapshotted by `bootstrap` while a writer keeps
//! changing it (at least 50 transactions/s), handed on to its `source-postgres` stream, all of it
//! applied by `sink-postgres-writer`'s mirror into another database. The mirror ends equal to the
//! table (`EXCEPT` both ways), no change lost, none applied twice (the writer's applied records
//! do not overlap and add up to every distinct position it was fed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    BatchReceiver, BatchSender, Position, SnapshotRequest, Source, TableRef, batch_channel,
};
use surefoot_pipeline_tests::{applied::applied, compare::except_both_ways};
use surefoot_sink_postgres_writer::{
    ApplyMode, PostgresWriter, RecordRetention, TableConfig, WriterConfig,
};
use surefoot_source_postgres::{Identifier, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer};
use tokio::sync::watch;

const ROWS: i32 = 200_000;
const SOURCE: &str = "items-source";
const SINK: &str = "mirror";
/// The writer's ids start here, above the snapshot's.
const WRITER_BASE: i32 = 1_000_000;
/// The last writer transaction inserts this id: once it is in the mirror, everything is.
const SENTINEL: i32 = -1;
/// How long the test waits for something that should come.
const BOUND: Duration = Duration::from_secs(180);

fn source_config(server: &PgServer) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        SOURCE,
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("items_source_slot").unwrap(),
        Identifier::parse("publication", "items_pub").unwrap(),
    );
    config.status_interval = Duration::from_millis(100);
    config
}

async fn writer(server: &PgServer) -> PostgresWriter {
    let mut config = WriterConfig::new(SINK, server.url("target")).table(TableConfig::new(
        TableRef::new("public", "items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    // Every record kept, so the test can count what was applied.
    config.applied_records = RecordRetention {
        keep: u32::MAX,
        max_age: None,
    };
    PostgresWriter::builder(config).connect().await.unwrap()
}

/// What the concurrent writer did.
struct Load {
    transactions: i32,
    elapsed: Duration,
}

/// Transactions of an insert, an update and a delete each, as fast as the server takes them,
/// until `done`; then the sentinel.
async fn load(
    client: &PgClient,
    mut done: watch::Receiver<bool>,
    count: &watch::Sender<i32>,
) -> Load {
    let started = Instant::now();
    let mut k = 0;
    while !*done.borrow_and_update() {
        k += 1;
        let insert = WRITER_BASE + k;
        let pick =
            |factor: i64| i32::try_from(i64::from(k) * factor % i64::from(ROWS)).unwrap() + 1;
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO items VALUES ({insert}, {insert});
                 UPDATE items SET v = v + {insert} WHERE id = {};
                 DELETE FROM items WHERE id = {};
                 COMMIT;",
                pick(7_919),
                pick(104_729)
            ))
            .await
            .unwrap();
        count.send_replace(k);
    }
    let elapsed = started.elapsed();
    client
        .batch_execute(&format!("INSERT INTO items VALUES ({SENTINEL}, 0)"))
        .await
        .unwrap();
    Load {
        transactions: k,
        elapsed,
    }
}

/// What passed from the sources to the writer.
#[derive(Default)]
struct Fed {
    changes: u64,
    positions: BTreeSet<Position>,
}

/// Passes every batch on to the writer, counting changes and distinct positions.
async fn tap(mut input: BatchReceiver, output: BatchSender, fed: Arc<Mutex<Fed>>) {
    while let Some(batch) = input.recv().await {
        {
            let mut fed = fed.lock().unwrap();
            fed.changes += batch.changes.len() as u64;
            fed.positions
                .extend(batch.changes.iter().map(|change| change.position));
        }
        if output.send(batch).await.is_err() {
            panic!("the writer stopped taking batches");
        }
    }
}

async fn wait_for_sentinel(target: &PgClient) {
    let deadline = Instant::now() + BOUND;
    loop {
        let row = target
            .query_one("SELECT count(*) FROM items WHERE id = $1", &[&SENTINEL])
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel never reached the mirror"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_1_bootstrap_of_200k_rows_under_concurrent_writes_into_the_writer_mirror() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO items SELECT g, g FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    server.create_database("target").await.unwrap();
    let target = server.connect("target").await.unwrap();
    target
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v bigint NOT NULL)")
        .await
        .unwrap();
    let writer = writer(&server).await;
    let load_client = server.connect("postgres").await.unwrap();
    let provider =
        PostgresProvider::first_start(source_config(&server), BootstrapConfig::default()).unwrap();

    let (source_out, source_in) = batch_channel(16);
    let (writer_out, writer_in) = batch_channel(16);
    let fed = Arc::new(Mutex::new(Fed::default()));
    let (done, done_seen) = watch::channel(false);
    let (count, count_seen) = watch::channel(0);
    let cancel = CancellationToken::new();
    let request = SnapshotRequest {
        consumer: SINK.to_owned(),
        tables: Vec::new(),
    };

    let drive = async {
        let before = *count_seen.borrow();
        let exported = provider
            .export(&request, &source_out, &cancel)
            .await
            .unwrap();
        let during = *count_seen.borrow() - before;
        let snapshot_rows = exported.complete.rows;
        let source = provider.stream_after(exported, source_out);
        source.start().await.unwrap();
        // Keep writing while the stream runs, as long again as the snapshot took.
        let streaming = *count_seen.borrow();
        let mut seen = count_seen.clone();
        seen.wait_for(|k| *k >= streaming + during.max(200))
            .await
            .unwrap();
        done.send_replace(true);
        wait_for_sentinel(&target).await;
        source.stop(Duration::from_secs(30)).await.unwrap();
        drop(source);
        (snapshot_rows, during)
    };
    let (load, (), run, (snapshot_rows, during)) = tokio::join!(
        load(&load_client, done_seen, &count),
        tap(source_in, writer_out, Arc::clone(&fed)),
        writer.run(writer_in, cancel.clone()),
        drive
    );
    run.unwrap();

    let rate = f64::from(load.transactions) / load.elapsed.as_secs_f64();
    let difference = except_both_ways(
        admin.client(),
        &server.connection_string("target"),
        "items",
        "id, v",
        "id int, v bigint",
    )
    .await
    .unwrap();
    let applied = applied(target.client(), SINK, SOURCE).await.unwrap();
    let fed = fed.lock().unwrap();
    let distinct = fed.positions.len() as u64;
    eprintln!(
        "x_1: snapshot {snapshot_rows} rows; writer {} transactions in {:.1} s ({rate:.0}/s), \
         {during} during the snapshot; fed {} changes ({distinct} distinct positions); \
         applied {} in {} records; lost {} extra {} duplicated {}",
        load.transactions,
        load.elapsed.as_secs_f64(),
        fed.changes,
        applied.changes,
        applied.records,
        difference.missing,
        difference.extra,
        applied.overlapping,
    );
    assert!(
        rate >= 50.0,
        "the concurrent writer ran only {rate:.0} transactions/s"
    );
    assert!(
        during > 0,
        "no transaction committed while the snapshot was copied"
    );
    assert!(snapshot_rows >= ROWS as u64 - during as u64);
    assert!(
        difference.is_equal(),
        "mirror differs from the table: {difference:?}"
    );
    assert_eq!(applied.overlapping, 0, "changes applied twice");
    assert_eq!(
        applied.changes, distinct,
        "changes fed but not applied (or applied twice)"
    );
}
