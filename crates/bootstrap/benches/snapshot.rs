//! Snapshot throughput and memory: rows/s of `PostgresProvider` against a plain
//! `COPY items TO STDOUT` of the same table read with tokio-postgres (bytes counted, nothing
//! decoded), in the same run, against the same server; and the peak memory of a snapshot of the
//! 1,000,000-row table above the process's baseline.
//!
//! Each reader reads the table `REPS` times, alternating; the median is reported. The snapshot
//! includes creating the temporary slot, importing the snapshot and decoding every row into
//! `Row`s sent as batches to a consumer that drops them at once. Peak memory is `VmHWM` after
//! resetting it (`/proc/self/clear_refs`), minus `VmRSS` just before the snapshot.
//!
//! Two diagnostics are printed beside them, not part of the ratio: the same COPY split into
//! columns with its integers parsed but nothing built, and the snapshot's server side alone (a
//! new connection, a repeatable-read transaction, COPY with the column list, bytes counted).
//!
//! Run: `cargo bench -p surefoot-bootstrap --bench snapshot`

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing with its
// message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{SnapshotRequest, TableRef, batch_channel};
use surefoot_source_postgres::{Identifier, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer};

const ROWS: u64 = 1_000_000;
const REPS: usize = 3;

fn main() {
    // `SUREFOOT_BENCH_WORKERS=n` runs on n worker threads; by default everything runs on one
    // thread (the connection's driver, the decoder and the consumer), as in a small service.
    let runtime = match std::env::var("SUREFOOT_BENCH_WORKERS") {
        Ok(workers) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.parse().expect("a number of worker threads"))
            .enable_all()
            .build(),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    runtime.expect("tokio runtime").block_on(run());
}

async fn run() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, amount int NOT NULL, label text NOT NULL);
             INSERT INTO items SELECT g, g % 1000, 'item number ' || g
               FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    admin.batch_execute("VACUUM ANALYZE items").await.unwrap();
    let source = source_config(&server);

    // Memory first, on a fresh high-water mark.
    let (peak, baseline) = snapshot_memory(&source).await;
    let mut copies = Vec::new();
    let mut snapshots = Vec::new();
    let mut copy_cpu = Vec::new();
    let mut ours_cpu = Vec::new();
    let mut decoded = Vec::new();
    let mut fresh = Vec::new();
    for rep in 0..REPS {
        decoded.push(decode_only(&admin).await);
        fresh.push(fresh_transaction_copy(&server).await);
        let before = cpu_time();
        copies.push(plain_copy(&admin).await);
        let middle = cpu_time();
        snapshots.push(snapshot(&source, rep).await);
        copy_cpu.push(middle - before);
        ours_cpu.push(cpu_time() - middle);
    }
    let copy = median(copies);
    let ours = median(snapshots);
    let (copy_cpu, ours_cpu) = (median(copy_cpu), median(ours_cpu));
    let decoded = median(decoded);
    let fresh = median(fresh);
    let rate = |elapsed: Duration| ROWS as f64 / elapsed.as_secs_f64();
    println!("snapshot of {ROWS} rows (bigint, int, text), median of {REPS}:");
    println!(
        "  COPY items TO STDOUT (bytes only): {:>10.0} rows/s ({copy:?})",
        rate(copy)
    );
    println!(
        "  PostgresProvider snapshot:         {:>10.0} rows/s ({ours:?})",
        rate(ours)
    );
    println!(
        "  COPY split into columns, integers parsed, nothing built: {:>10.0} rows/s",
        rate(decoded)
    );
    println!(
        "  COPY (columns) on a new connection in a repeatable-read transaction: {:>10.0} rows/s",
        rate(fresh)
    );
    println!("  ratio: {:.2} (target >= 0.8)", rate(ours) / rate(copy));
    println!(
        "  CPU time of this process per read: COPY {copy_cpu:?}, snapshot {ours_cpu:?} \
         ({:.2} us/row more)",
        (ours_cpu.as_secs_f64() - copy_cpu.as_secs_f64()) * 1e6 / ROWS as f64
    );
    println!(
        "  peak memory above baseline: {:.1} MiB (baseline {:.1} MiB; target < 64 MiB)",
        mib(peak.saturating_sub(baseline)),
        mib(baseline)
    );
}

fn source_config(server: &PgServer) -> PostgresSourceConfig {
    PostgresSourceConfig::new(
        "bench",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("bench_slot").unwrap(),
        Identifier::parse("publication", "bench_pub").unwrap(),
    )
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

async fn plain_copy(admin: &PgClient) -> Duration {
    let started = Instant::now();
    let stream = admin.copy_out("COPY items TO STDOUT").await.unwrap();
    let mut stream = pin!(stream);
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    assert!(bytes > 0);
    started.elapsed()
}

/// `COPY items TO STDOUT` with each row's columns found and each integer parsed, building
/// nothing: how much of the snapshot's cost is reading the format at all.
async fn decode_only(admin: &PgClient) -> Duration {
    let started = Instant::now();
    let stream = admin.copy_out("COPY items TO STDOUT").await.unwrap();
    let mut stream = pin!(stream);
    let mut sum = 0_i64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for line in chunk
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            let mut columns = line.split(|byte| *byte == b'\t');
            let id: i64 = std::str::from_utf8(columns.next().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let amount: i64 = std::str::from_utf8(columns.next().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            sum += id + amount + columns.next().unwrap().len() as i64;
        }
    }
    assert!(sum > 0);
    started.elapsed()
}

/// The snapshot's server side without its client side: a new connection, a repeatable-read
/// read-only transaction, `COPY "public"."items" (...) TO STDOUT`, bytes counted.
async fn fresh_transaction_copy(server: &PgServer) -> Duration {
    let started = Instant::now();
    let client = server.connect("postgres").await.unwrap();
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .unwrap();
    let sql = "COPY \"public\".\"items\" (\"id\", \"amount\", \"label\") TO STDOUT";
    let stream = client.copy_out(sql).await.unwrap();
    let mut stream = pin!(stream);
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    assert!(bytes > 0);
    started.elapsed()
}

/// One snapshot of the table through a temporary slot; every batch is dropped on arrival.
async fn snapshot(source: &PostgresSourceConfig, rep: usize) -> Duration {
    let slot = SlotName::parse(&format!("bench_snapshot_{rep}")).unwrap();
    let provider =
        PostgresProvider::added_consumer(source.clone(), slot, BootstrapConfig::default()).unwrap();
    let request = SnapshotRequest {
        consumer: "bench".to_owned(),
        tables: vec![TableRef::new("public", "items")],
    };
    let (output, mut batches) = batch_channel(16);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let export = async {
        let exported = provider.export(&request, &output, &cancel).await.unwrap();
        drop(output);
        exported
    };
    let drain = async {
        let mut rows = 0;
        let mut first = None;
        while let Some(batch) = batches.recv().await {
            first.get_or_insert_with(Instant::now);
            rows += batch.changes.len() as u64;
            batch.ack.delivered();
        }
        (rows, first)
    };
    let (exported, (rows, first)) = tokio::join!(export, drain);
    let elapsed = started.elapsed();
    assert_eq!(rows, ROWS);
    assert_eq!(exported.complete.rows, ROWS);
    exported.slot.close();
    if std::env::var_os("SUREFOOT_BENCH_TRACE").is_some() {
        let setup = first.unwrap() - started;
        println!("  snapshot {rep}: first batch after {setup:?}, all after {elapsed:?}");
    }
    elapsed
}

/// `(VmHWM, VmRSS before)` around one snapshot, in bytes.
async fn snapshot_memory(source: &PostgresSourceConfig) -> (u64, u64) {
    // Writing 5 resets the peak resident set size to the current one (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let baseline = status_bytes("VmRSS");
    snapshot(source, REPS).await;
    (status_bytes("VmHWM"), baseline)
}

/// User and system CPU time of this process so far (`/proc/self/stat`, at 100 ticks a second).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which ends with `)`: utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
