//! Replication throughput: changes/s of our source against `pg_recvlogical` with pgoutput over
//! the same WAL, in the same run, against the same server.
//!
//! For each workload, pairs of slots are created at the same point (one for us, one for
//! `pg_recvlogical`; `REPS` pairs), then the WAL is written, then each reader streams it from
//! its slot, alternating, and the median of each is reported:
//!
//! - ours: from `start()` to the last change received, acknowledging every batch at once;
//! - `pg_recvlogical --endpos=<end of the workload> -f /dev/null`: from spawn to exit.
//!
//! Both include connecting and starting the stream. The benchmark prints the ratio against the
//! limit measured in this run; it never asserts a speed.
//!
//! Run: `cargo bench -p surefoot-source-postgres --bench replication`

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing with its
// message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use surefoot_core_model::{Lsn, Source, batch_channel};
use surefoot_source_postgres::setup::PublicationTables;
use surefoot_source_postgres::{
    Identifier, PostgresSource, PostgresSourceConfig, SlotName, TableName,
};
use surefoot_test_support::{PgBinaries, PgClient, PgServer};

const PUBLICATION: &str = "bench_pub";
const BULK_ROWS: u64 = 200_000;
const SMALL_TRANSACTIONS: u64 = 20_000;
/// Transactions per script sent to the server while writing the small workload.
const SCRIPT_TRANSACTIONS: u64 = 1_000;
/// Reads of each workload by each reader; the median is reported.
const REPS: usize = 3;
/// Bound on each reader.
const READ_BOUND: Duration = Duration::from_secs(600);

struct Workload {
    name: &'static str,
    changes: u64,
    ours: Duration,
    theirs: Duration,
    /// CPU time (user + system) of the reader's process over the read, median.
    ours_cpu: Duration,
    theirs_cpu: Duration,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

/// Runtime worker threads: `SUREFOOT_BENCH_WORKERS`, default 2 (the machine's cores).
fn workers() -> usize {
    std::env::var("SUREFOOT_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
}

async fn run() {
    let pg_recvlogical = pg_recvlogical();
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE items (id bigint NOT NULL, body text NOT NULL);
             CREATE PUBLICATION {PUBLICATION} FOR TABLE items;"
        ))
        .await
        .unwrap();

    // `SUREFOOT_BENCH_ONLY=bulk` or `=small` runs one workload (for profiling).
    let only = std::env::var("SUREFOOT_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let mut workloads = Vec::new();
    if wanted("bulk") {
        workloads.push(measure(&server, &admin, &pg_recvlogical, "bulk", write_bulk).await);
    }
    if wanted("small") {
        workloads.push(measure(&server, &admin, &pg_recvlogical, "small", write_small).await);
    }

    println!();
    println!(
        "| workload | changes | ours (changes/s) | pg_recvlogical (changes/s) | ratio (ours/theirs) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for workload in &workloads {
        let ours = rate(workload.changes, workload.ours);
        let theirs = rate(workload.changes, workload.theirs);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} |",
            workload.name,
            workload.changes,
            ours,
            theirs,
            ours / theirs
        );
    }
    println!();
    for workload in &workloads {
        println!(
            "{}: ours {:.3} s ({:.2} s CPU), pg_recvlogical {:.3} s ({:.2} s CPU)",
            workload.name,
            workload.ours.as_secs_f64(),
            workload.ours_cpu.as_secs_f64(),
            workload.theirs.as_secs_f64(),
            workload.theirs_cpu.as_secs_f64(),
        );
    }
}

/// CPU time from `/proc/self/stat`: this process's, and that of its reaped children.
struct CpuTimes {
    own: Duration,
    children: Duration,
}

impl CpuTimes {
    fn now() -> Self {
        /// `USER_HZ`, the unit of `/proc/<pid>/stat` times; 100 on Linux.
        const TICKS_PER_SECOND: u64 = 100;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        // Fields after the command name, which is in parentheses: the 14th to 17th fields of
        // the line (utime, stime, cutime, cstime) are the 12th to 15th here.
        let (_, rest) = stat.rsplit_once(") ").unwrap();
        let field = |index: usize| -> u64 { rest.split(' ').nth(index).unwrap().parse().unwrap() };
        let ticks = |ticks: u64| Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND);
        Self {
            own: ticks(field(11) + field(12)),
            children: ticks(field(13) + field(14)),
        }
    }
}

fn rate(changes: u64, elapsed: Duration) -> f64 {
    changes as f64 / elapsed.as_secs_f64()
}

/// `pg_recvlogical` next to the `initdb` the test servers run from (or next to the file it
/// links to: `/usr/local/bin` often holds links to the server programs only).
fn pg_recvlogical() -> PathBuf {
    let initdb = PgBinaries::find().unwrap().initdb;
    let real = std::fs::canonicalize(&initdb).unwrap();
    [initdb, real]
        .iter()
        .map(|path| path.with_file_name("pg_recvlogical"))
        .find(|path| path.exists())
        .expect("no pg_recvlogical next to initdb")
}

/// Creates `REPS` pairs of slots, writes the workload, then reads it `REPS` times each way,
/// alternating (pg_recvlogical first, so any warming of caches by the first reader favours it),
/// and keeps the median of each.
async fn measure<W>(
    server: &PgServer,
    admin: &PgClient,
    pg_recvlogical: &Path,
    name: &'static str,
    write: W,
) -> Workload
where
    W: AsyncFnOnce(&PgClient) -> (&'static str, u64),
{
    let slots: Vec<(String, String)> = (0..REPS)
        .map(|rep| (format!("ours_{name}_{rep}"), format!("theirs_{name}_{rep}")))
        .collect();
    for (ours, theirs) in &slots {
        for slot in [ours, theirs] {
            admin
                .execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[slot],
                )
                .await
                .unwrap();
        }
    }
    let writing = Instant::now();
    let (name, changes) = write(admin).await;
    let end: Lsn = current_wal_lsn(admin).await;
    eprintln!(
        "{name}: wrote {changes} changes in {:.1} s, WAL end {end}",
        writing.elapsed().as_secs_f64()
    );
    let mut ours = Vec::new();
    let mut starts = Vec::new();
    let mut theirs = Vec::new();
    let mut ours_cpu = Vec::new();
    let mut theirs_cpu = Vec::new();
    for (ours_slot, theirs_slot) in &slots {
        let cpu = CpuTimes::now();
        theirs.push(run_pg_recvlogical(server, pg_recvlogical, theirs_slot, end).await);
        theirs_cpu.push(CpuTimes::now().children - cpu.children);
        let cpu = CpuTimes::now();
        let (elapsed, start) = run_ours(server, ours_slot, changes).await;
        ours_cpu.push(CpuTimes::now().own - cpu.own);
        ours.push(elapsed);
        starts.push(start);
        for slot in [ours_slot, theirs_slot] {
            admin
                .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
                .unwrap();
        }
    }
    eprintln!("{name}: ours {ours:?} (of which start() {starts:?}), pg_recvlogical {theirs:?}");
    Workload {
        name,
        changes,
        ours: median(ours),
        theirs: median(theirs),
        ours_cpu: median(ours_cpu),
        theirs_cpu: median(theirs_cpu),
    }
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

async fn current_wal_lsn(admin: &PgClient) -> Lsn {
    let row = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// (a) One transaction of `BULK_ROWS` inserts.
async fn write_bulk(admin: &PgClient) -> (&'static str, u64) {
    admin
        .batch_execute(&format!(
            "INSERT INTO items SELECT g, 'bulk row ' || g FROM generate_series(1, {BULK_ROWS}) g"
        ))
        .await
        .unwrap();
    ("bulk, 1 transaction", BULK_ROWS)
}

/// (b) `SMALL_TRANSACTIONS` transactions of 1 to 3 inserts.
async fn write_small(admin: &PgClient) -> (&'static str, u64) {
    let mut changes = 0;
    let mut script = String::new();
    for tx in 0..SMALL_TRANSACTIONS {
        let rows = tx % 3 + 1;
        script.push_str("BEGIN;");
        for row in 0..rows {
            let id = tx * 3 + row;
            script.push_str(&format!(
                "INSERT INTO items VALUES ({id}, 'small row {id}');"
            ));
        }
        script.push_str("COMMIT;\n");
        changes += rows;
        if (tx + 1) % SCRIPT_TRANSACTIONS == 0 {
            admin.batch_execute(&script).await.unwrap();
            script.clear();
        }
    }
    if !script.is_empty() {
        admin.batch_execute(&script).await.unwrap();
    }
    ("small, 1-3 rows each", changes)
}

/// From start to the last change received, acknowledging every batch at once; and how long
/// `start()` itself took.
async fn run_ours(server: &PgServer, slot: &str, changes: u64) -> (Duration, Duration) {
    let mut config = PostgresSourceConfig::new(
        "bench",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse(slot).unwrap(),
        Identifier::parse("publication", PUBLICATION).unwrap(),
    );
    config.tables = PublicationTables::Tables(vec![TableName::parse("items").unwrap()]);
    config.create_publication = false;
    config.heartbeat = None;
    let (output, mut batches) = batch_channel(256);
    let source = PostgresSource::new(config, output).unwrap();
    let started = Instant::now();
    source.start().await.unwrap();
    let start = started.elapsed();
    let mut received = 0u64;
    let mut tenths = Vec::new();
    let receive = async {
        while received < changes {
            let batch = batches.recv().await.expect("source output closed");
            received += batch.changes.len() as u64;
            batch.ack.delivered();
            if received * 10 >= changes * (tenths.len() as u64 + 1) {
                tenths.push(started.elapsed().as_millis());
            }
        }
    };
    tokio::time::timeout(READ_BOUND, receive)
        .await
        .expect("our source did not deliver the workload in time");
    let elapsed = started.elapsed();
    if std::env::var_os("SUREFOOT_BENCH_TRACE").is_some() {
        eprintln!("  ours on {slot}: ms at each tenth of the changes {tenths:?}");
    }
    assert_eq!(
        received, changes,
        "our source delivered more than was written"
    );
    source.stop(Duration::from_secs(30)).await.unwrap();
    (elapsed, start)
}

/// From spawn to exit of `pg_recvlogical --endpos=<end>`.
async fn run_pg_recvlogical(server: &PgServer, program: &Path, slot: &str, end: Lsn) -> Duration {
    let mut command = tokio::process::Command::new(program);
    command
        .args(["-h", server.host()])
        .args(["-p", &server.port().to_string()])
        .args(["-U", server.user()])
        .args(["-d", "postgres"])
        .args(["--slot", slot])
        .arg("--start")
        .args(["-o", "proto_version=1"])
        .args(["-o", &format!("publication_names={PUBLICATION}")])
        .arg(format!("--endpos={end}"))
        .args(["-f", "/dev/null"])
        .arg("--no-loop")
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn pg_recvlogical");
    let status = match tokio::time::timeout(READ_BOUND, child.wait()).await {
        Ok(status) => status.expect("wait for pg_recvlogical"),
        Err(_) => {
            child.start_kill().expect("kill pg_recvlogical");
            panic!("pg_recvlogical did not reach {end} in time");
        }
    };
    let elapsed = started.elapsed();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    elapsed
}
