//! End to end: PostgreSQL → `surefoot` (a mirror, no query) → PostgreSQL, against the limits
//! measured in the same run on the same servers (issue 17):
//!
//! - **throughput**: a WAL of `ROWS` rows in transactions of `ROWS_PER_TRANSACTION`, written
//!   before anything reads it; `surefoot` streams it from its slot into the target (from start to
//!   the last row in the target), `pg_recvlogical` reads the same WAL from a slot made at the
//!   same point (`--endpos`, into /dev/null), and a plain `COPY` moves the same rows from the
//!   source into a table of the target. Ratio against the slower of the two limits.
//! - **latency**: rows written at a fixed 5,000 changes/s; commit-to-commit latency per row
//!   (the target's `clock_timestamp()` at apply against the source's at insert), p50 and p99.
//! - **memory**: the target stopped for 60 s under a 1,000 changes/s load: `surefoot`'s resident
//!   memory sampled every second, then the target restarted and the backlog drained.
//!
//! Prints the figures; asserts nothing about speed. Run: `cargo bench -p surefoot-server`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use surefoot_test_support::{PgBinaries, PgClient, PgServer};
use tokio::process::{Child, Command};

const ROWS: i64 = 200_000;
const ROWS_PER_TRANSACTION: i64 = 100;
const LATENCY_RATE: u32 = 5_000;
const LATENCY_ROWS_PER_TRANSACTION: u32 = 20;
const LATENCY_SECONDS: u64 = 10;
const OUTAGE: Duration = Duration::from_secs(60);
const OUTAGE_RATE: u32 = 1_000;
const BOUND: Duration = Duration::from_secs(600);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let source = PgServer::new().await.unwrap();
    let mut target = PgServer::new().await.unwrap();
    let admin = source.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL);
             CREATE TABLE ticks (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE PUBLICATION surefoot_bench FOR TABLE items, ticks;",
        )
        .await
        .unwrap();
    // Both slots at the same point, each in a transaction of its own (a slot cannot be made in
    // a transaction that has written).
    for slot in ["surefoot_bench", "theirs"] {
        admin
            .batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            ))
            .await
            .unwrap();
    }
    target.create_database("target").await.unwrap();
    let copy = target.connect("target").await.unwrap();
    copy.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL);
         CREATE TABLE copied (id bigint PRIMARY KEY, body text NOT NULL);
         CREATE TABLE ticks (id bigint PRIMARY KEY, written_at timestamptz NOT NULL,
                             applied_at timestamptz NOT NULL DEFAULT clock_timestamp());",
    )
    .await
    .unwrap();
    let started = Instant::now();
    for first in (0..ROWS).step_by(ROWS_PER_TRANSACTION as usize * 50) {
        let mut script = String::new();
        for t in (first..(first + ROWS_PER_TRANSACTION * 50).min(ROWS))
            .step_by(ROWS_PER_TRANSACTION as usize)
        {
            script.push_str(&format!(
                "INSERT INTO items SELECT g, repeat('x', 64) || g FROM generate_series({t}, {}) g;\n",
                t + ROWS_PER_TRANSACTION - 1
            ));
        }
        admin.batch_execute(&script).await.unwrap();
    }
    let end: String = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "wrote {ROWS} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let theirs = recvlogical(&source, &end).await;
    let copied = plain_copy(&admin, &copy).await;
    let state = tempfile::tempdir().unwrap();
    let config = write_config(&source, &target, state.path());
    let begun = Instant::now();
    let mut surefoot = start(&config, &state.path().join("surefoot.log"));
    wait_for_count(&copy, "items", ROWS).await;
    let ours = begun.elapsed();
    let rate = |d: Duration| ROWS as f64 / d.as_secs_f64();
    let limit = rate(theirs).min(rate(copied));
    println!("\n| path | {ROWS} rows | rows/s | ratio to the slower limit |");
    println!("|---|---:|---:|---:|");
    println!(
        "| pg_recvlogical (same WAL) | {:.2} s | {:.0} | |",
        theirs.as_secs_f64(),
        rate(theirs)
    );
    println!(
        "| COPY source → target | {:.2} s | {:.0} | |",
        copied.as_secs_f64(),
        rate(copied)
    );
    println!(
        "| surefoot (slot → mirror) | {:.2} s | {:.0} | {:.2} |",
        ours.as_secs_f64(),
        rate(ours),
        rate(ours) / limit
    );

    latency(&admin, &copy).await;
    memory(&mut surefoot, &mut target, &source).await;
    stop(surefoot).await;
}

fn pg_recvlogical_path() -> PathBuf {
    let initdb = PgBinaries::find().unwrap().initdb;
    let real = std::fs::canonicalize(&initdb).unwrap();
    [initdb, real]
        .iter()
        .map(|path| path.with_file_name("pg_recvlogical"))
        .find(|path| path.exists())
        .expect("no pg_recvlogical next to initdb")
}

/// From spawn to exit of `pg_recvlogical --endpos=<end>` on the slot made with ours.
async fn recvlogical(server: &PgServer, end: &str) -> Duration {
    let mut command = Command::new(pg_recvlogical_path());
    command
        .args([
            "-h",
            server.host(),
            "-p",
            &server.port().to_string(),
            "-U",
            server.user(),
        ])
        .args(["-d", "postgres", "--slot", "theirs", "--start"])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=surefoot_bench",
        ])
        .arg(format!("--endpos={end}"))
        .args(["-f", "/dev/null", "--no-loop"])
        .kill_on_drop(true);
    let started = Instant::now();
    let status = tokio::time::timeout(BOUND, command.status())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    started.elapsed()
}

/// `COPY items TO STDOUT` from the source streamed into `COPY copied FROM STDIN` on the target.
async fn plain_copy(source: &PgClient, target: &PgClient) -> Duration {
    let started = Instant::now();
    let out = source.copy_out("COPY items TO STDOUT").await.unwrap();
    let sink = target.copy_in("COPY copied FROM STDIN").await.unwrap();
    futures::pin_mut!(out, sink);
    while let Some(chunk) = out.next().await {
        sink.send(chunk.unwrap()).await.unwrap();
    }
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, ROWS as u64);
    started.elapsed()
}

fn write_config(source: &PgServer, target: &PgServer, dir: &Path) -> PathBuf {
    let text = format!(
        "state_dir: {}
sources:
  - kind: postgres
    id: bench
    port: {}
    user: {}
    database: postgres
    slot: surefoot_bench
    publication: surefoot_bench
    tables: [items, ticks]
    bootstrap: false
reactions:
  - kind: postgres
    id: mirror
    from: bench
    url: postgres://{}@127.0.0.1:{}/target
    max_latency_ms: 5
api:
  listen: null
logging:
  level: warn
",
        dir.join("state").display(),
        source.port(),
        source.user(),
        target.user(),
        target.port()
    );
    let path = dir.join("surefoot.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_surefoot"))
        .args(["run", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn stop(mut child: Child) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "surefoot exited with {status}");
}

async fn count(client: &PgClient, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map_or(-1, |row| row.get(0))
}

async fn wait_for_count(client: &PgClient, table: &str, rows: i64) {
    let deadline = Instant::now() + BOUND;
    while count(client, table).await < rows {
        assert!(
            Instant::now() < deadline,
            "{table} never reached {rows} rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `rate` rows/s into `ticks` from id `first` for `seconds`, in transactions of
/// `per_transaction` rows; returns the next id.
async fn tick_load(
    client: &PgClient,
    first: i64,
    rate: u32,
    per_transaction: u32,
    seconds: u64,
) -> i64 {
    let transactions = u64::from(rate / per_transaction) * seconds;
    let mut pace = tokio::time::interval(Duration::from_secs(1) / (rate / per_transaction));
    let mut id = first;
    for _ in 0..transactions {
        pace.tick().await;
        let last = id + i64::from(per_transaction) - 1;
        client
            .batch_execute(&format!(
                "INSERT INTO ticks (id) SELECT g FROM generate_series({id}, {last}) g"
            ))
            .await
            .unwrap();
        id = last + 1;
    }
    id
}

async fn latency(source: &PgClient, target: &PgClient) {
    let next = tick_load(
        source,
        0,
        LATENCY_RATE,
        LATENCY_ROWS_PER_TRANSACTION,
        LATENCY_SECONDS,
    )
    .await;
    wait_for_count(target, "ticks", next).await;
    let row = target
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - written_at)),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - written_at)),
                    max(extract(epoch FROM applied_at - written_at))::float8
             FROM ticks",
            &[],
        )
        .await
        .unwrap();
    let (p50, p99, max): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
    println!(
        "\nlatency at {LATENCY_RATE} changes/s for {LATENCY_SECONDS} s ({next} rows): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50 * 1000.0,
        p99 * 1000.0,
        max * 1000.0
    );
}

fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The target down for `OUTAGE` under load: resident memory every second.
async fn memory(surefoot: &mut Child, target: &mut PgServer, source: &PgServer) {
    let pid = surefoot.id().unwrap();
    let before = resident_mib(pid);
    target.stop().await.unwrap();
    let client = source.connect("postgres").await.unwrap();
    let mut samples = Vec::new();
    let sampling = async {
        let started = Instant::now();
        while started.elapsed() < OUTAGE {
            samples.push(resident_mib(pid));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let first = 10_000_000;
    let (next, ()) = tokio::join!(
        tick_load(&client, first, OUTAGE_RATE, 10, OUTAGE.as_secs()),
        sampling
    );
    target.start().await.unwrap();
    let copy = target.connect("target").await.unwrap();
    let drained = Instant::now();
    let expected: i64 = client
        .query_one("SELECT count(*) FROM ticks", &[])
        .await
        .unwrap()
        .get(0);
    wait_for_count(&copy, "ticks", expected).await;
    let peak = samples.iter().copied().fold(0.0, f64::max);
    println!(
        "\nmemory with the target down {} s under {OUTAGE_RATE} changes/s ({} rows): resident {before:.1} MiB before, \
         {:.1} MiB after 10 s, {:.1} MiB at the end, peak {peak:.1} MiB; backlog drained {:.1} s after the target returned",
        OUTAGE.as_secs(),
        next - first,
        samples.get(10).copied().unwrap_or(0.0),
        samples.last().copied().unwrap_or(0.0),
        drained.elapsed().as_secs_f64()
    );
}
