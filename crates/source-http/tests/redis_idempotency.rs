#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! Idempotency keys kept in a real Redis, shared by two instances serving one source.

mod common;

use std::time::Duration;

use common::{BOUND, Consumer, array, client, loopback_config, start, url};
use surefoot_core_model::Source;
use surefoot_source_http::{HttpSource, HttpSourceConfig, IdempotencyBackend, REPLAYED_HEADER};
use surefoot_test_support::RedisServer;

fn shared_config(redis: &RedisServer) -> HttpSourceConfig {
    let mut config = loopback_config("orders");
    config.idempotency.backend = IdempotencyBackend::Redis {
        url: redis.url(),
        prefix: "surefoot:idem:".to_owned(),
        timeout: Duration::from_secs(2),
    };
    // Each instance its own id (required with Redis): the sources these tests start are
    // instances of one source.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    config.instance = Some(format!("instance-{n}"));
    config
}

async fn post(
    http: &reqwest::Client,
    source: &HttpSource,
    key: &str,
    body: &str,
) -> reqwest::Response {
    http.post(format!("{}/v1/batches", url(source)))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ingest_a_key_once_between_them() {
    let redis = RedisServer::new().await.unwrap();
    let (first, first_batches) = start(shared_config(&redis), 8).await;
    let (second, second_batches) = start(shared_config(&redis), 8).await;
    // The first instance's consumer fails its first batch.
    let first_consumer = Consumer::start(first_batches, |n| n == 0);
    let second_consumer = Consumer::start(second_batches, |_| false);
    let http = client();
    let ids: Vec<String> = (0..5).map(|n| format!("r-{n}")).collect();
    let body = array(&ids);

    let failed = post(&http, &first, "k1", &body).await;
    assert_eq!(
        failed.status(),
        503,
        "the failed batch must release the key"
    );
    let retried = post(&http, &second, "k1", &body).await;
    assert_eq!(retried.status(), 200);
    let replayed = post(&http, &first, "k1", &body).await;
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.headers()[REPLAYED_HEADER], "true");
    let mismatch = post(&http, &first, "k1", &array(&ids[..1])).await;
    assert_eq!(mismatch.status(), 422);
    assert_eq!(first_consumer.total() + second_consumer.total(), 5);

    // Many concurrent requests with one key, split across the instances: one ingest.
    let body = array(&["c-0".to_owned(), "c-1".to_owned()]);
    let racing = (0..20).map(|n| {
        let source = if n % 2 == 0 { &first } else { &second };
        post(&http, source, "k2", &body)
    });
    let answers = futures::future::join_all(racing).await;
    let fresh = answers
        .iter()
        .filter(|a| a.status() == 200 && !a.headers().contains_key(REPLAYED_HEADER))
        .count();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(fresh, 1, "{statuses:?}");
    assert_eq!(first_consumer.total() + second_consumer.total(), 7);

    first.stop(BOUND).await.unwrap();
    second.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_refuses_with_503_and_ingests_nothing() {
    let mut redis = RedisServer::new().await.unwrap();
    let (source, batches) = start(shared_config(&redis), 8).await;
    let consumer = Consumer::start(batches, |_| false);
    let http = client();
    let body = array(&["down-0".to_owned()]);
    assert_eq!(post(&http, &source, "before", &body).await.status(), 200);

    redis.stop().await.unwrap();
    let refused = post(&http, &source, "during", &body).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(consumer.total(), 1);
    assert!(source.stats().idempotency_errors > 0);

    redis.start().await.unwrap();
    let mut answered = None;
    for _ in 0..100 {
        let response = post(&http, &source, "during", &body).await;
        if response.status() == 200 {
            answered = Some(response);
            break;
        }
        assert_eq!(response.status(), 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered.is_some(), "the store never came back");
    assert_eq!(consumer.total(), 2);
    source.stop(BOUND).await.unwrap();
}
