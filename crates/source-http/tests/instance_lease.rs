#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 14, X-2: one instance id is served by at most one process at a time. Two processes
//! started with the same `instance` would interleave positions under one source id; the lease
//! refuses the second, and a process that lost its lease fails instead of reserving more.

mod common;

use std::time::Duration;

use common::{BOUND, array, client, loopback_config, url};
use surefoot_core_lifecycle::{Classify, ErrorClass, Status};
use surefoot_core_model::{BatchReceiver, Source, batch_channel};
use surefoot_source_http::{HttpSource, HttpSourceConfig, IdempotencyBackend};
use surefoot_test_support::RedisServer;

const PREFIX: &str = "surefoot:orders:";
const LEASE: Duration = Duration::from_secs(1);

fn redis_config(redis: &RedisServer) -> HttpSourceConfig {
    let mut config = loopback_config("orders");
    config.idempotency.backend = IdempotencyBackend::Redis {
        url: redis.url(),
        prefix: PREFIX.to_owned(),
        timeout: Duration::from_secs(2),
    };
    config.instance = Some("a".to_owned());
    config.instance_lease = LEASE;
    config
}

fn source(redis: &RedisServer) -> (HttpSource, BatchReceiver) {
    let (output, batches) = batch_channel(8);
    (
        HttpSource::new(redis_config(redis), output).unwrap(),
        batches,
    )
}

/// Answers one request of one change and hands its batch over, as a consumer would.
async fn post_one(source: &HttpSource, batches: &mut BatchReceiver, id: &str) -> u16 {
    let http = client();
    let request = http
        .post(format!("{}/v1/batches", url(source)))
        .header("content-type", "application/json")
        .header("idempotency-key", id)
        .body(array(&[id.to_owned()]))
        .send();
    let consume = async {
        let batch = batches.recv().await.unwrap();
        batch.ack.delivered();
    };
    let (response, ()) = tokio::join!(request, consume);
    response.unwrap().status().as_u16()
}

/// An error with every cause after it.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        shown.push_str(": ");
        shown.push_str(&next.to_string());
        cause = next.source();
    }
    shown
}

async fn redis_command(redis: &RedisServer, command: &redis::Cmd) -> redis::Value {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    command.query_async(&mut connection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_2_a_second_process_with_the_same_instance_id_is_refused_at_start() {
    let redis = RedisServer::new().await.unwrap();
    let (first, mut first_batches) = source(&redis);
    first.start().await.unwrap();
    assert_eq!(post_one(&first, &mut first_batches, "one").await, 200);

    let (second, _second_batches) = source(&redis);
    let error = tokio::time::timeout(BOUND, second.start())
        .await
        .expect("the refusal surfaces within its bound")
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration, "{error}");
    let shown = chain(&error);
    assert!(
        shown.contains("instance `a` is served by another live process"),
        "{shown}"
    );
    assert_eq!(second.status(), Status::Failed);
    assert_eq!(second.live_tasks(), 0);
    // The first kept its lease through the second's wait, and still serves.
    assert_eq!(first.status(), Status::Running);
    assert_eq!(post_one(&first, &mut first_batches, "two").await, 200);

    // Stopped, the first releases the lease: the second starts without waiting it out.
    first.stop(BOUND).await.unwrap();
    let lease = format!("{PREFIX}lease:a");
    let held = redis_command(&redis, redis::cmd("EXISTS").arg(&lease)).await;
    assert_eq!(
        held,
        redis::Value::Int(0),
        "the stopped instance left its lease"
    );
    second.start().await.unwrap();
    second.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_2_the_lease_of_a_process_that_died_expires_and_a_successor_starts() {
    let redis = RedisServer::new().await.unwrap();
    // A process killed while holding the lease: its value stays until the lease runs out.
    let lease = format!("{PREFIX}lease:a");
    let mut set = redis::cmd("SET");
    set.arg(&lease).arg("dead-owner").arg("PX").arg(1_500);
    redis_command(&redis, &set).await;
    let (successor, mut batches) = source(&redis);
    tokio::time::timeout(BOUND, successor.start())
        .await
        .expect("the start surfaces within its bound")
        .unwrap();
    assert_eq!(post_one(&successor, &mut batches, "after").await, 200);
    successor.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_2_an_instance_whose_lease_was_taken_fails_and_reserves_no_more_sequences() {
    let redis = RedisServer::new().await.unwrap();
    let (taken, mut batches) = source(&redis);
    taken.start().await.unwrap();
    assert_eq!(post_one(&taken, &mut batches, "before").await, 200);
    let counter = format!("{PREFIX}sequence:a");
    let reserved = redis_command(&redis, redis::cmd("GET").arg(&counter)).await;

    // Another process took the lease (this one's renewals were cut off past its expiry).
    let mut set = redis::cmd("SET");
    set.arg(format!("{PREFIX}lease:a"))
        .arg("other-owner")
        .arg("PX")
        .arg(60_000);
    redis_command(&redis, &set).await;

    let failed = async {
        while taken.status() != Status::Failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(BOUND, failed)
        .await
        .expect("the lost lease fails the source within its bound");
    let failure = taken.component().health().report().failure.unwrap();
    let reason = chain(&*failure);
    assert!(reason.contains("instance `a` lost its lease"), "{reason}");
    assert!(taken.stats().lease_failures >= 1);
    // Nothing more was reserved under the other owner's lease.
    let after = redis_command(&redis, redis::cmd("GET").arg(&counter)).await;
    assert_eq!(after, reserved);
    // The other owner's lease is untouched by this process's stop.
    let stop = taken.stop(BOUND).await;
    assert!(stop.is_err(), "a stop after a failure reports it");
    let owner = redis_command(&redis, redis::cmd("GET").arg(format!("{PREFIX}lease:a"))).await;
    assert_eq!(owner, redis::Value::BulkString(b"other-owner".to_vec()));
}
