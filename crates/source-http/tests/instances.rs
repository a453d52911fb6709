#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout
)]
//! Issue 14, X-2: the positions of one source id never go out of order, with several instances
//! of one source sharing Redis and across restarts with a clock that stepped back.
//!
//! The consumer here does what the PostgreSQL writer does: it keeps a checkpoint per
//! `batch.source` and skips every position at or below it. Every change answered `200` must
//! have been applied by it exactly once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BOUND, array, client, id_of, loopback_config, url};
use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{BatchReceiver, Position, Source, batch_channel};
use surefoot_source_http::{
    HttpSource, HttpSourceConfig, IdempotencyBackend, SystemClock, WallClock,
};
use surefoot_test_support::RedisServer;

/// What the position-idempotent consumer did.
#[derive(Debug, Default)]
struct Mirror {
    /// The checkpoint per batch source id.
    checkpoints: HashMap<String, u64>,
    /// Applied ids, with how often.
    applied: HashMap<String, u32>,
    /// Changes skipped as "already applied".
    skipped: u64,
    /// Source ids seen.
    sources: Vec<String>,
}

fn sequence(position: Position) -> u64 {
    match position {
        Position::Sequence(n) => n,
        other => panic!("an HTTP source sent {other:?}"),
    }
}

/// Consumes `batches` into `mirror` like the writer: per source id, positions at or below the
/// checkpoint are skipped; the rest are applied; the checkpoint moves to the batch's last.
fn consume(group: &TaskGroup, name: &str, mut batches: BatchReceiver, mirror: Arc<Mutex<Mirror>>) {
    group
        .spawn(name.to_owned(), move |cancel| async move {
            loop {
                let batch = tokio::select! {
                    () = cancel.cancelled() => return Ok::<(), std::convert::Infallible>(()),
                    batch = batches.recv() => match batch {
                        Some(batch) => batch,
                        None => return Ok(()),
                    },
                };
                {
                    let mut mirror = mirror.lock().unwrap();
                    let source = batch.source.as_str().to_owned();
                    if !mirror.sources.contains(&source) {
                        mirror.sources.push(source.clone());
                    }
                    let checkpoint = mirror.checkpoints.get(&source).copied().unwrap_or(0);
                    for change in batch.changes.iter() {
                        if sequence(change.position) <= checkpoint {
                            mirror.skipped += 1;
                        } else {
                            *mirror.applied.entry(id_of(&change.operation)).or_default() += 1;
                        }
                    }
                    let last = sequence(batch.last).max(checkpoint);
                    mirror.checkpoints.insert(source, last);
                }
                // Applied (or skipped as already applied) before settling, like the writer.
                batch.ack.delivered();
            }
        })
        .unwrap();
}

fn redis_config(redis: &RedisServer, instance: &str) -> HttpSourceConfig {
    let mut config = loopback_config("orders");
    config.idempotency.backend = IdempotencyBackend::Redis {
        url: redis.url(),
        prefix: "surefoot:orders:".to_owned(),
        timeout: Duration::from_secs(2),
    };
    config.instance = Some(instance.to_owned());
    config
}

async fn start_with(
    config: HttpSourceConfig,
    clock: Arc<dyn WallClock>,
) -> (HttpSource, BatchReceiver) {
    let (output, batches) = batch_channel(8);
    let source = HttpSource::with_clock(config, output, clock).unwrap();
    source.start().await.unwrap();
    (source, batches)
}

/// Posts `ids` as one request; the answer's status and, when delivered, its last position.
async fn post(
    http: &reqwest::Client,
    source: &HttpSource,
    key: &str,
    ids: &[String],
) -> (u16, Option<u64>) {
    let response = http
        .post(format!("{}/v1/batches", url(source)))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(array(ids))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["last"].as_u64())
}

/// Answers every id of `clients` concurrent clients, each posting `requests` requests of two
/// changes to `source`; returns the ids answered 200.
async fn load(
    http: &reqwest::Client,
    source: &HttpSource,
    tag: &str,
    clients: usize,
    requests: usize,
) -> Vec<String> {
    let per_client = (0..clients).map(|client| async move {
        let mut delivered = Vec::new();
        for request in 0..requests {
            let ids: Vec<String> = (0..2)
                .map(|n| format!("{tag}-{client}-{request}-{n}"))
                .collect();
            let key = format!("{tag}-{client}-{request}");
            let (status, _) = post(http, source, &key, &ids).await;
            assert_eq!(status, 200, "request {key} was not delivered");
            delivered.extend(ids);
        }
        delivered
    });
    futures::future::join_all(per_client)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn assert_applied_once(mirror: &Mirror, delivered: &[String]) {
    let missing: Vec<&String> = delivered
        .iter()
        .filter(|id| !mirror.applied.contains_key(*id))
        .collect();
    let repeated: Vec<(&String, &u32)> = mirror.applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "{} of {} changes answered 200 were never applied ({} skipped as at or below the \
         checkpoint, sources {:?}); {} applied more than once; first missing: {:?}",
        missing.len(),
        delivered.len(),
        mirror.skipped,
        mirror.sources,
        repeated.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_2_two_instances_of_one_source_never_interleave_positions_under_one_source_id() {
    let redis = RedisServer::new().await.unwrap();
    let (first, first_batches) = start_with(redis_config(&redis, "a"), Arc::new(SystemClock)).await;
    let (second, second_batches) =
        start_with(redis_config(&redis, "b"), Arc::new(SystemClock)).await;
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let consumers = TaskGroup::new("mirror");
    consume(&consumers, "first", first_batches, Arc::clone(&mirror));
    consume(&consumers, "second", second_batches, Arc::clone(&mirror));
    let http = client();

    let (mut delivered, more) = tokio::join!(
        load(&http, &first, "a", 8, 25),
        load(&http, &second, "b", 8, 25),
    );
    delivered.extend(more);
    assert_eq!(delivered.len(), 2 * 8 * 25 * 2);

    {
        let mirror = mirror.lock().unwrap();
        assert_applied_once(&mirror, &delivered);
        assert_eq!(mirror.skipped, 0);
        let mut sources = mirror.sources.clone();
        sources.sort();
        assert_eq!(sources, ["orders/a", "orders/b"]);
    }
    first.stop(BOUND).await.unwrap();
    second.stop(BOUND).await.unwrap();
    assert!(consumers.stop(BOUND).await.is_clean());
}

/// A clock `offset_ms` off the system clock.
#[derive(Debug)]
struct OffsetClock(i64);

impl WallClock for OffsetClock {
    fn now_millis(&self) -> u64 {
        SystemClock.now_millis().saturating_add_signed(self.0)
    }
}

const HELPER: &str = "x_2_helper_one_earlier_run_in_its_own_process";
const HELPER_REDIS: &str = "SUREFOOT_X2_REDIS_URL";
const HELPER_OFFSET: &str = "SUREFOOT_X2_CLOCK_OFFSET_MS";

/// One run of instance `a` in a process of its own (started by the restart test below, as a
/// real restart is a new process): posts 20 changes with a clock an hour ahead and prints the
/// source id and the highest position answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper process of x_2_a_restarted_instance_continues_above_its_earlier_positions_even_if_the_clock_went_back"]
async fn x_2_helper_one_earlier_run_in_its_own_process() {
    let (Ok(redis_url), Ok(offset)) = (std::env::var(HELPER_REDIS), std::env::var(HELPER_OFFSET))
    else {
        panic!("run only by the restart test, which sets {HELPER_REDIS} and {HELPER_OFFSET}");
    };
    let mut config = loopback_config("orders");
    config.idempotency.backend = IdempotencyBackend::Redis {
        url: redis_url,
        prefix: "surefoot:orders:".to_owned(),
        timeout: Duration::from_secs(2),
    };
    config.instance = Some("a".to_owned());
    let clock = Arc::new(OffsetClock(offset.parse().unwrap()));
    let (source, batches) = start_with(config, clock).await;
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let consumers = TaskGroup::new("mirror");
    consume(&consumers, "earlier", batches, Arc::clone(&mirror));
    let http = client();
    let mut last = 0;
    for n in 0..20 {
        let (status, position) = post(
            &http,
            &source,
            &format!("earlier-{n}"),
            &[format!("earlier-{n}")],
        )
        .await;
        assert_eq!(status, 200);
        last = last.max(position.unwrap());
    }
    let sources = mirror.lock().unwrap().sources.clone();
    assert_eq!(sources.len(), 1);
    println!("X2-RUN source={} last={last}", sources[0]);
    source.stop(BOUND).await.unwrap();
    assert!(consumers.stop(BOUND).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_2_a_restarted_instance_continues_above_its_earlier_positions_even_if_the_clock_went_back()
 {
    let redis = RedisServer::new().await.unwrap();
    // The earlier run, in its own process, with the clock an hour ahead.
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", HELPER, "--ignored", "--nocapture"])
        .env(HELPER_REDIS, redis.url())
        .env(HELPER_OFFSET, "3600000")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BOUND * 2, output)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the earlier run failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("X2-RUN "))
        .expect("the earlier run's report");
    let (earlier_source, earlier_last) = line.split_once(" last=").unwrap();
    let earlier_source = earlier_source.strip_prefix("source=").unwrap().to_owned();
    let earlier_last: u64 = earlier_last.parse().unwrap();

    // The restart: the clock is back to now, an hour behind the earlier run's.
    let (source, batches) = start_with(redis_config(&redis, "a"), Arc::new(OffsetClock(0))).await;
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    mirror
        .lock()
        .unwrap()
        .checkpoints
        .insert(earlier_source.clone(), earlier_last);
    let consumers = TaskGroup::new("mirror");
    consume(&consumers, "later", batches, Arc::clone(&mirror));
    let http = client();
    let mut delivered = Vec::new();
    let mut positions = Vec::new();
    for n in 0..20 {
        let id = format!("later-{n}");
        let (status, position) = post(&http, &source, &id, std::slice::from_ref(&id)).await;
        assert_eq!(status, 200);
        positions.push(position.unwrap());
        delivered.push(id);
    }
    {
        let mirror = mirror.lock().unwrap();
        assert_eq!(
            mirror.sources,
            std::slice::from_ref(&earlier_source),
            "both runs must be one source id"
        );
        assert!(
            positions.iter().all(|position| *position > earlier_last),
            "positions after the restart {:?}.. are not above the earlier run's last {earlier_last}",
            &positions[..3],
        );
        assert_applied_once(&mirror, &delivered);
    }
    source.stop(BOUND).await.unwrap();
    assert!(consumers.stop(BOUND).await.is_clean());
}
