//! Mirror-mode throughput against plain `COPY` of the same rows, in the same run, against the
//! same server.
//!
//! The rows: 100,000 inserts of `(id bigint primary key, body text, amount numeric)`.
//!
//! - ours (the headline): the writer's sink loop fed through a batch channel, one source
//!   transaction of 5 changes per batch (20,000 batches), coalesced into sink transactions of up
//!   to 5,000 changes, each with its checkpoint; from the first batch sent to the loop's return
//!   after the last commit. Batches are built before the clock starts.
//! - limit: one `COPY ... FROM STDIN` (text format) of the same rows into an identical table,
//!   in one transaction, rows formatted before the clock starts.
//!
//! - also printed: the same rows through `PostgresWriter::apply` directly, 5,000 changes per
//!   call, without the sink loop (no pipelining); plain `COPY` split like the sink transactions,
//!   20 transactions of one 5,000-row `COPY` each; and, right after the inserts, updates of all
//!   100,000 rows through the sink loop (every key exists: the key probe and an `UPDATE` instead
//!   of insert-first `COPY`), against the same `COPY` figure.
//!
//! Each side runs `REPS` times, alternating, into freshly truncated tables; medians reported.
//! Autovacuum is off for both tables (the same for both sides): the updates leave 100,000 dead
//! rows, and a vacuum of them during the next repetition only added noise.
//! Every run's positions lie above the previous run's, so nothing is skipped as already applied.
//! `SUREFOOT_BENCH_MAX_ROWS` sets the sink transaction's row limit (default 5,000).
//! `SUREFOOT_BENCH_STATEMENTS=1` loads `pg_stat_statements` and prints the server's execution
//! time per statement over the whole run (both sides), to see where the time goes.
//! Never asserts a speed. Run: `cargo bench -p surefoot-sink-postgres-writer --bench writer`

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use surefoot_core_lifecycle::{CancellationToken, TaskGroup};
use surefoot_core_model::{
    AckToken, Batch, Change, Numeric, Position, Row, SourceId, TableRef, Value, batch_channel,
};
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, TableConfig, WriterConfig};
use surefoot_test_support::PgServer;

const ROWS: u64 = 100_000;
const PER_TRANSACTION: u64 = 5;
const REPS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

fn body(n: u64) -> String {
    format!("order {n} for customer {} with some text", n % 977)
}

fn amount(n: u64) -> String {
    format!("{}.{:02}", n % 10_000, n % 100)
}

fn batches(rep: usize) -> Vec<Batch> {
    changes(rep, false)
}

/// 20,000 source transactions of 5 changes: inserts of ids 1..=100,000, or updates of them.
fn changes(rep: usize, update: bool) -> Vec<Batch> {
    let table = TableRef::new("public", "mirror_target");
    let base = rep as u64 * ROWS;
    (0..ROWS / PER_TRANSACTION)
        .map(|t| {
            let changes: Vec<Change> = (0..PER_TRANSACTION)
                .map(|c| {
                    let n = t * PER_TRANSACTION + c + 1;
                    let row = Row::new()
                        .with("id", Value::Int64(n as i64))
                        .with("body", Value::Text(body(n)))
                        .with(
                            "amount",
                            Value::Numeric(amount(n).parse::<Numeric>().unwrap()),
                        );
                    let position = Position::Sequence(base + n);
                    if update {
                        Change::update(position, table.clone(), None, None, row)
                    } else {
                        Change::insert(position, table.clone(), row)
                    }
                })
                .collect();
            Batch {
                source: SourceId::new("bench"),
                first: changes[0].position,
                last: changes[changes.len() - 1].position,
                commit_time: None,
                changes: Arc::from(changes),
                ack: AckToken::detached(),
            }
        })
        .collect()
}

async fn ours(writer: &PostgresWriter, rep: usize) -> Duration {
    sqlx::raw_sql("TRUNCATE mirror_target")
        .execute(writer.pool())
        .await
        .unwrap();
    through_loop(writer, batches(3 * rep)).await
}

/// Updates of every row `ours` inserted, through the sink loop: each key exists, so every
/// sink transaction probes for its keys and updates them.
async fn updates(writer: &PostgresWriter, rep: usize) -> Duration {
    through_loop(writer, changes(3 * rep + 1, true)).await
}

/// The batches sent by a task of their own, as a source's would be, into the sink loop.
async fn through_loop(writer: &PostgresWriter, prepared: Vec<Batch>) -> Duration {
    let (sender, receiver) = batch_channel(256);
    let producer = TaskGroup::new("bench-source");
    let started = Instant::now();
    producer
        .spawn("send", move |_cancel| async move {
            for batch in prepared {
                sender.send(batch).await?;
            }
            Ok::<(), surefoot_core_model::ChannelClosed>(())
        })
        .unwrap();
    writer
        .run(receiver, CancellationToken::new())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(producer.stop(Duration::from_secs(10)).await.is_clean());
    elapsed
}

/// The same batches through `PostgresWriter::apply`, 1,000 batches (5,000 changes) per call,
/// without the sink loop and its channel.
async fn direct(writer: &PostgresWriter, rep: usize) -> Duration {
    sqlx::raw_sql("TRUNCATE mirror_target")
        .execute(writer.pool())
        .await
        .unwrap();
    let prepared = batches(3 * rep + 2);
    let started = Instant::now();
    for chunk in prepared.chunks(1_000) {
        let refs: Vec<&Batch> = chunk.iter().collect();
        writer.apply(&refs).await.unwrap();
    }
    started.elapsed()
}

/// The limit: the rows as `COPY` text in transactions of `per_transaction` rows (one `COPY` each).
async fn copy(url: &str, per_transaction: usize) -> Duration {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("TRUNCATE copy_target")
        .execute(&mut conn)
        .await
        .unwrap();
    let lines: Vec<String> = (1..=ROWS)
        .map(|n| format!("{n}\t{}\t{}\n", body(n), amount(n)))
        .collect();
    let chunks: Vec<String> = lines.chunks(per_transaction).map(<[_]>::concat).collect();
    let started = Instant::now();
    for chunk in &chunks {
        let mut tx = conn.begin().await.unwrap();
        let mut copy = tx
            .copy_in_raw("COPY copy_target (id, body, amount) FROM STDIN")
            .await
            .unwrap();
        copy.send(chunk.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
        tx.commit().await.unwrap();
    }
    started.elapsed()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn rate(duration: Duration) -> f64 {
    ROWS as f64 / duration.as_secs_f64()
}

/// The statements that took the server longest, over the whole run.
async fn print_statements(writer: &PostgresWriter) {
    let rows: Vec<(i64, f64, i64, String)> = sqlx::query_as(
        "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 120) \
         FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8",
    )
    .fetch_all(writer.pool())
    .await
    .unwrap();
    println!("   calls  server ms     rows statement");
    for (calls, total, rows, query) in rows {
        println!("{calls:>8} {total:>10.1} {rows:>8} {query}");
    }
}

async fn run() {
    let stats = std::env::var_os("SUREFOOT_BENCH_STATEMENTS").is_some();
    let server = if stats {
        PgServer::builder()
            .setting("shared_preload_libraries", "'pg_stat_statements'")
            .setting("pg_stat_statements.track", "'all'")
            .start()
            .await
            .unwrap()
    } else {
        PgServer::new().await.unwrap()
    };
    let url = server.url("postgres");
    let mut config = WriterConfig::new("bench", url.clone()).table(TableConfig::new(
        TableRef::new("public", "mirror_target"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    config.batch.max_rows = std::env::var("SUREFOOT_BENCH_MAX_ROWS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5_000);
    config.batch.max_latency = Duration::from_millis(5);
    let writer = PostgresWriter::builder(config).connect().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE mirror_target (id bigint PRIMARY KEY, body text, amount numeric) \
             WITH (autovacuum_enabled = off); \
         CREATE TABLE copy_target (id bigint PRIMARY KEY, body text, amount numeric) \
             WITH (autovacuum_enabled = off);",
    )
    .execute(writer.pool())
    .await
    .unwrap();
    if stats {
        sqlx::raw_sql("CREATE EXTENSION pg_stat_statements")
            .execute(writer.pool())
            .await
            .unwrap();
    }
    let (mut mine, mut theirs, mut direct_runs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut split_runs, mut update_runs) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        theirs.push(copy(&url, ROWS as usize).await);
        split_runs.push(copy(&url, 5_000).await);
        mine.push(ours(&writer, rep).await);
        update_runs.push(updates(&writer, rep).await);
        direct_runs.push(direct(&writer, rep).await);
        println!(
            "rep {rep}: mirror {:.0} rows/s (apply() directly {:.0}; updates of every row {:.0}), \
             COPY {:.0} rows/s (20 COPYs of 5,000 rows, a transaction each: {:.0})",
            rate(mine[rep]),
            rate(direct_runs[rep]),
            rate(update_runs[rep]),
            rate(theirs[rep]),
            rate(split_runs[rep])
        );
    }
    if stats {
        print_statements(&writer).await;
    }
    let (mine, theirs, direct_median) = (median(mine), median(theirs), median(direct_runs));
    let split = median(split_runs);
    let updated = median(update_runs);
    println!(
        "COPY in 20 transactions of 5,000 rows (the sink transactions' shape): {:.0} rows/s, \
         mirror against it {:.2}",
        rate(split),
        rate(mine) / rate(split)
    );
    println!(
        "apply() directly: {:.0} rows/s, ratio {:.2}",
        rate(direct_median),
        rate(direct_median) / rate(theirs)
    );
    println!(
        "| workload | rows | mirror (rows/s) | COPY (rows/s) | ratio (mirror/COPY) |\n\
         |---|---:|---:|---:|---:|\n\
         | inserts, {PER_TRANSACTION} per source transaction | {ROWS} | {:.0} | {:.0} | {:.2} |\n\
         | updates of every row, {PER_TRANSACTION} per source transaction | {ROWS} | {:.0} | {:.0} | {:.2} |",
        rate(mine),
        rate(theirs),
        rate(mine) / rate(theirs),
        rate(updated),
        rate(theirs),
        rate(updated) / rate(theirs)
    );
}
