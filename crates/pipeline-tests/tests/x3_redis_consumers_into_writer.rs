//! Issue 14, X-3 composed: three `source-postgres` sources (a table each) → `reaction-queue`'s
//! partitioned Redis queue → three consumer processes, each running `sink-postgres-writer`'s
//! mirror, one of them SIGKILLed mid-stream. Its partition passes to another consumer, which
//! applies what it left first. The mirror ends equal to the tables (`EXCEPT` both ways), no
//! change lost, none applied twice (the writer's applied records do not overlap and add up to
//! every distinct position appended).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surefoot_core_model::{BatchReceiver, Position, Source, SourceId, batch_channel};
use surefoot_pipeline_tests::{applied::applied, compare::except_both_ways};
use surefoot_reaction_queue::{QueueMetrics, RedisQueueProducer, partition_of};
use surefoot_source_postgres::{Identifier, PostgresSource, PostgresSourceConfig, SlotName};
use surefoot_test_support::{PgClient, PgServer, RedisServer};

const TABLES: usize = 3;
const PARTITIONS: u32 = 3;
const STREAM: &str = "x3-writer";
const SINK: &str = "mirror";
/// Writer transactions in all (a third per table).
const TRANSACTIONS: i32 = 1_500;
/// The killed consumer goes after this many transactions.
const KILL_AFTER: i32 = 500;
const SENTINEL: i32 = -1;
const BOUND: Duration = Duration::from_secs(180);

/// A source id per table, each on its own partition, so the three consumers share the work.
fn source_ids() -> Vec<SourceId> {
    let mut ids: Vec<Option<SourceId>> = vec![None; PARTITIONS as usize];
    for n in 0.. {
        let id = SourceId::new(format!("pg-{n}"));
        let slot = &mut ids[partition_of(&id, PARTITIONS) as usize];
        if slot.is_none() {
            *slot = Some(id);
        }
        if ids.iter().all(Option::is_some) {
            break;
        }
    }
    ids.into_iter().map(Option::unwrap).collect()
}

fn source_config(server: &PgServer, id: &SourceId, table: usize) -> PostgresSourceConfig {
    let mut config = PostgresSourceConfig::new(
        id.as_str(),
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse(&format!("t{table}_slot")).unwrap(),
        Identifier::parse("publication", &format!("t{table}_pub")).unwrap(),
    );
    config.status_interval = Duration::from_millis(100);
    config
}

fn consumer(server: &PgServer, redis: &RedisServer, name: &str) -> Child {
    let tables: Vec<String> = (0..TABLES).map(|t| format!("t{t}")).collect();
    Command::new(env!("CARGO_BIN_EXE_surefoot-writer-consumer"))
        .env("SUREFOOT_REDIS_URL", redis.url())
        .env("SUREFOOT_STREAM", STREAM)
        .env("SUREFOOT_CONSUMER", name)
        .env("SUREFOOT_PARTITIONS", PARTITIONS.to_string())
        .env("SUREFOOT_LEASE_TTL_MS", "2000")
        .env("SUREFOOT_DATABASE_URL", server.url("target"))
        .env("SUREFOOT_SINK", SINK)
        .env("SUREFOOT_TABLES", tables.join(","))
        .spawn()
        .unwrap()
}

/// Consumer processes, killed when the test ends however it ends.
struct Consumers(Vec<Child>);

impl Consumers {
    /// Stops every consumer still running with SIGTERM, as a service manager does, and checks
    /// that each one stopped cleanly (exit status 0) within the test's bound.
    fn stop_survivors(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().unwrap().is_some() {
                continue;
            }
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            kill(pid, Signal::SIGTERM).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (index, child) in self.0.iter_mut().enumerate() {
            if index == 1 {
                continue; // SIGKILLed: its status is the signal's.
            }
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "consumer c{index} did not stop within 30 s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(status.success(), "consumer c{index} stopped with {status}");
        }
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Positions appended to the queue, per source.
type Fed = Arc<Mutex<Vec<BTreeSet<Position>>>>;

/// Appends every batch of source `index` to the queue; its token settles once it is in Redis.
async fn produce(producer: &RedisQueueProducer, mut input: BatchReceiver, index: usize, fed: Fed) {
    while let Some(batch) = input.recv().await {
        fed.lock().unwrap()[index].extend(batch.changes.iter().map(|change| change.position));
        producer.append_all(vec![batch]).await.unwrap();
    }
}

/// Transactions of an insert, an update and a delete on table `k % TABLES`; calls `progress`
/// after each; then a sentinel row in every table.
async fn load(client: &PgClient, mut progress: impl FnMut(i32)) {
    for k in 1..=TRANSACTIONS {
        let table = k as usize % TABLES;
        let n = k / TABLES as i32;
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO t{table} VALUES ({n}, {k});
                 UPDATE t{table} SET v = v + {k} WHERE id = {};
                 DELETE FROM t{table} WHERE id = {};
                 COMMIT;",
                n * 7 % (n + 1),
                if n % 5 == 4 { n - 3 } else { -100 },
            ))
            .await
            .unwrap();
        progress(k);
    }
    for table in 0..TABLES {
        client
            .batch_execute(&format!("INSERT INTO t{table} VALUES ({SENTINEL}, 0)"))
            .await
            .unwrap();
    }
}

/// Waits until each consumer holds the lease of one partition, so that the one killed leaves
/// work behind.
async fn wait_for_one_partition_each(client: &redis::Client) {
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let mut owners = BTreeSet::new();
        for partition in 0..PARTITIONS {
            let lease: Option<String> = redis::cmd("GET")
                .arg(format!("{STREAM}:lease:{partition}"))
                .query_async(&mut connection)
                .await
                .unwrap();
            if let Some(owner) = lease.and_then(|lease| lease.split('#').next().map(str::to_owned))
            {
                owners.insert(owner);
            }
        }
        if owners.len() == PARTITIONS as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never spread: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_sentinels(target: &PgClient) {
    let deadline = Instant::now() + BOUND;
    loop {
        let mut present = 0;
        for table in 0..TABLES {
            let query = format!("SELECT count(*) FROM t{table} WHERE id = {SENTINEL}");
            present += target
                .query_one(&query, &[])
                .await
                .unwrap()
                .get::<_, i64>(0);
        }
        if present == TABLES as i64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{present} of {TABLES} sentinels reached the mirror"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_3_postgres_source_to_redis_queue_with_three_consumers_one_killed_into_the_writer() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    server.create_database("target").await.unwrap();
    let target = server.connect("target").await.unwrap();
    for table in 0..TABLES {
        let create = format!("CREATE TABLE t{table} (id int PRIMARY KEY, v bigint NOT NULL)");
        admin.batch_execute(&create).await.unwrap();
        target.batch_execute(&create).await.unwrap();
        admin
            .batch_execute(&format!(
                "CREATE PUBLICATION t{table}_pub FOR TABLE t{table}"
            ))
            .await
            .unwrap();
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = client.get_connection_manager().await.unwrap();
    let producer = RedisQueueProducer::new(
        connection,
        STREAM,
        100_000,
        Duration::from_secs(5),
        QueueMetrics::global("x3-producer"),
    )
    .with_partitions(PARTITIONS);

    let ids = source_ids();
    let fed: Fed = Arc::new(Mutex::new(vec![BTreeSet::new(); TABLES]));
    let mut sources = Vec::new();
    let mut inputs = Vec::new();
    for (table, id) in ids.iter().enumerate() {
        let (output, input) = batch_channel(16);
        let source = PostgresSource::new(source_config(&server, id, table), output).unwrap();
        source.start().await.unwrap();
        sources.push(source);
        inputs.push(input);
    }
    let mut consumers = Consumers(
        ["c0", "c1", "c2"]
            .iter()
            .map(|name| consumer(&server, &redis, name))
            .collect(),
    );
    wait_for_one_partition_each(&client).await;
    let killed = Mutex::new(None);
    let load_client = server.connect("postgres").await.unwrap();
    let loading = async {
        load(&load_client, |k| {
            if k == KILL_AFTER {
                let victim = &mut consumers.0[1];
                victim.kill().unwrap(); // SIGKILL
                *killed.lock().unwrap() = Some(Instant::now());
            }
        })
        .await;
        wait_for_sentinels(&target).await;
        for source in &sources {
            source.stop(Duration::from_secs(30)).await.unwrap();
        }
        sources.clear();
    };
    let mut producing = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        producing.push(produce(&producer, input, index, Arc::clone(&fed)));
    }
    let [first, second, third]: [_; TABLES] = producing.try_into().ok().unwrap();
    tokio::join!(loading, first, second, third);
    assert!(killed.lock().unwrap().is_some(), "no consumer was killed");
    let takeovers: i64 = {
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("GET")
            .arg(format!("{STREAM}:takeovers"))
            .query_async::<Option<i64>>(&mut connection)
            .await
            .unwrap()
            .unwrap_or(0)
    };

    let copy = server.connection_string("target");
    let fed = fed.lock().unwrap().clone();
    let mut lost = 0;
    let mut extra = 0;
    let mut duplicated = 0;
    let mut report = Vec::new();
    for (table, id) in ids.iter().enumerate() {
        let name = format!("t{table}");
        let difference =
            except_both_ways(admin.client(), &copy, &name, "id, v", "id int, v bigint")
                .await
                .unwrap();
        let applied = applied(target.client(), SINK, id.as_str()).await.unwrap();
        lost += difference.missing + (fed[table].len() as i64 - applied.changes as i64).max(0);
        extra += difference.extra;
        duplicated += applied.overlapping;
        report.push(format!(
            "{id} ({name}): fed {} applied {} in {} records",
            fed[table].len(),
            applied.changes,
            applied.records
        ));
        assert_eq!(
            applied.changes,
            fed[table].len() as u64,
            "{id}: fed and applied differ"
        );
    }
    eprintln!(
        "x_3: {TRANSACTIONS} transactions, consumer c1 SIGKILLed after {KILL_AFTER}; \
         {takeovers} partition takeovers; {}; lost {lost} extra {extra} duplicated {duplicated}",
        report.join("; ")
    );
    assert_eq!((lost, extra, duplicated), (0, 0, 0));
    assert!(
        takeovers >= 1,
        "the killed consumer's partition was never taken over"
    );
    consumers.stop_survivors();
}
