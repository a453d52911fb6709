#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! 50 clients post 200,000 changes through fault proxies that cut 5% of their connections
//! mid-request, while the consumer fails 10% of the batches. Every request is retried with its
//! idempotency key until answered 200. The consumer, which dedupes nothing, must end with every
//! change exactly once, and no 200 may ever be answered for a change it did not deliver
//! (FINDINGS D-M2, HTTP side: a result is never dropped while the client is told it arrived).
//! A second scenario runs two instances of the source sharing their keys in Redis, each retry
//! going to the other instance.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{BOUND, Consumer, array, loopback_config, start};
use surefoot_core_model::Source;
#[cfg(feature = "redis")]
use surefoot_source_http::IdempotencyBackend;
use surefoot_source_http::{HttpSource, HttpSourceConfig, REPLAYED_HEADER};
use surefoot_test_support::FaultProxy;
#[cfg(feature = "redis")]
use surefoot_test_support::RedisServer;
use surefoot_test_support::chaos::{DeliveryLedger, report};

const CHANGES_PER_REQUEST: usize = 200;
/// One request in 20 has its connection cut.
const CUT_ONE_IN: u64 = 20;
/// The consumer fails one batch in 10.
const FAIL_ONE_IN: u64 = 10;
/// The clients' own pause before retrying a 409/429/503 (they may retry sooner than the
/// `Retry-After` advises; the source must cope with impatient clients too).
const CLIENT_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Tally {
    cut_connections: AtomicU64,
    transport_errors: AtomicU64,
    unavailable: AtomicU64,
    conflicts: AtomicU64,
    throttled: AtomicU64,
    replays: AtomicU64,
}

/// A small deterministic generator, so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Client {
    index: usize,
    /// One proxy and endpoint per instance; attempt `k` goes to instance `(index + k) % n`.
    proxies: Vec<FaultProxy>,
    endpoints: Vec<String>,
    http: reqwest::Client,
}

struct Scenario {
    name: &'static str,
    clients: usize,
    changes_per_client: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_d_m2_fifty_clients_with_cut_connections_and_failed_batches_deliver_each_change_once()
{
    let scenario = Scenario {
        name: "source-http: 50 clients, 5% cut, 10% failed batches",
        clients: 50,
        changes_per_client: 4_000,
    };
    run(&scenario, vec![chaos_config()]).await;
}

// Needs the `redis` feature (the shared key store).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_d_m2_two_instances_sharing_keys_in_redis_deliver_each_change_once() {
    let redis = RedisServer::new().await.unwrap();
    let configs = (0..2)
        .map(|n| {
            let mut config = chaos_config();
            config.idempotency.backend = IdempotencyBackend::Redis {
                url: redis.url(),
                prefix: "chaos:".to_owned(),
                timeout: Duration::from_secs(5),
            };
            config.instance = Some(format!("instance-{n}"));
            config
        })
        .collect();
    let scenario = Scenario {
        name: "source-http: 2 instances, Redis keys, 20 clients, 5% cut, 10% failed batches",
        clients: 20,
        changes_per_client: 2_000,
    };
    run(&scenario, configs).await;
}

fn chaos_config() -> HttpSourceConfig {
    let mut config = loopback_config("chaos");
    config.batching.max_changes = 4_000;
    config.queue_requests = 64;
    config.accept_timeout = Duration::from_secs(5);
    config.ack_timeout = Duration::from_secs(10);
    config
}

async fn run(scenario: &Scenario, configs: Vec<HttpSourceConfig>) {
    let shared_ledger = Arc::default();
    let mut sources = Vec::new();
    let mut consumers = Vec::new();
    for config in configs {
        let (source, batches) = start(config, 16).await;
        let fail = |n: u64| n % FAIL_ONE_IN == FAIL_ONE_IN - 1;
        consumers.push(Consumer::start_recording(
            batches,
            fail,
            Arc::clone(&shared_ledger),
        ));
        sources.push(source);
    }
    let consumer = &consumers[0];
    let tally = Arc::new(Tally::default());

    let mut clients = Vec::new();
    for index in 0..scenario.clients {
        let mut proxies = Vec::new();
        let mut endpoints = Vec::new();
        for source in &sources {
            let proxy = FaultProxy::start(source.local_addr().unwrap())
                .await
                .unwrap();
            endpoints.push(format!("http://{}/v1/batches", proxy.listen_addr()));
            proxies.push(proxy);
        }
        let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
        clients.push(Client {
            index,
            proxies,
            endpoints,
            http,
        });
    }
    let runs = clients
        .iter()
        .map(|client| run_client(client, scenario.changes_per_client, consumer, &tally));
    tokio::time::timeout(Duration::from_secs(240), futures::future::join_all(runs))
        .await
        .expect("the clients did not finish");

    let mut ledger = DeliveryLedger::new();
    for client in 0..scenario.clients {
        for n in 0..scenario.changes_per_client {
            ledger.written(change_id(client, n));
        }
    }
    let (delivered_batches, failed_batches) = {
        let seen = consumer.ledger.lock().unwrap();
        for (id, count) in &seen.delivered {
            for _ in 0..*count {
                ledger.applied(id.clone());
            }
        }
        (seen.delivered_batches, seen.failed_batches)
    };
    let result = ledger.tally();
    report(scenario.name, &result).unwrap();
    let stats: Vec<_> = sources.iter().map(HttpSource::stats).collect();
    eprintln!(
        "{}: {result:?}; batches delivered {delivered_batches}, failed {failed_batches}; cut {}, transport errors {}, 503 {}, 409 {}, 429 {}, replays {}; sources {stats:?}",
        scenario.name,
        tally.cut_connections.load(Ordering::Relaxed),
        tally.transport_errors.load(Ordering::Relaxed),
        tally.unavailable.load(Ordering::Relaxed),
        tally.conflicts.load(Ordering::Relaxed),
        tally.throttled.load(Ordering::Relaxed),
        tally.replays.load(Ordering::Relaxed),
    );
    assert_eq!(
        result.written,
        (scenario.clients * scenario.changes_per_client) as u64
    );
    assert_eq!(result.lost, 0, "lost: {:?}", ledger.lost_keys(10));
    assert_eq!(result.duplicated, 0);
    assert_eq!(result.delivered, result.written);
    // The faults really happened.
    assert!(tally.cut_connections.load(Ordering::Relaxed) > 0);
    assert!(failed_batches > 0);
    assert!(tally.unavailable.load(Ordering::Relaxed) > 0);

    for source in &sources {
        source.stop(BOUND).await.unwrap();
        assert_eq!(source.live_tasks(), 0);
    }
    for client in clients {
        for proxy in client.proxies {
            proxy.shutdown().await;
        }
    }
}

fn change_id(client: usize, n: usize) -> String {
    format!("c{client}-{n}")
}

async fn run_client(client: &Client, changes: usize, consumer: &Consumer, tally: &Tally) {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (client.index as u64 + 1));
    for request in 0..changes / CHANGES_PER_REQUEST {
        let first = request * CHANGES_PER_REQUEST;
        let ids: Vec<String> = (first..first + CHANGES_PER_REQUEST)
            .map(|n| change_id(client.index, n))
            .collect();
        let key = format!("client-{}-request-{request}", client.index);
        let cut_after = dice
            .roll()
            .is_multiple_of(CUT_ONE_IN)
            .then(|| Duration::from_millis(dice.roll() % 20));
        send_until_delivered(client, &key, &ids, cut_after, consumer, tally).await;
    }
}

async fn send_until_delivered(
    client: &Client,
    key: &str,
    ids: &[String],
    mut cut_after: Option<Duration>,
    consumer: &Consumer,
    tally: &Tally,
) {
    let body = array(ids);
    for attempt in 0..10_000 {
        let instance = (client.index + attempt) % client.endpoints.len();
        let request = client
            .http
            .post(&client.endpoints[instance])
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.clone())
            .send();
        let result = match cut_after.take() {
            None => request.await,
            Some(delay) => {
                let cut = async {
                    tokio::time::sleep(delay).await;
                    client.proxies[instance].cut().await.unwrap()
                };
                let (result, cut) = tokio::join!(request, cut);
                tally
                    .cut_connections
                    .fetch_add(cut as u64, Ordering::Relaxed);
                result
            }
        };
        let response = match result {
            Ok(response) => response,
            Err(_cut) => {
                tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        match response.status().as_u16() {
            200 => {
                // The answer must follow delivery: every change is with the consumer already.
                assert!(
                    consumer.has_all(ids),
                    "200 answered for {key} before its changes were delivered"
                );
                if response.headers().contains_key(REPLAYED_HEADER) {
                    tally.replays.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            503 => tally.unavailable.fetch_add(1, Ordering::Relaxed),
            409 => tally.conflicts.fetch_add(1, Ordering::Relaxed),
            429 => tally.throttled.fetch_add(1, Ordering::Relaxed),
            other => panic!("unexpected answer {other} for {key}"),
        };
        tokio::time::sleep(CLIENT_BACKOFF).await;
    }
    panic!("{key} was never delivered");
}
