#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! What each kind of request is answered, over real sockets, and what reaches the consumer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{BOUND, Consumer, array, client, insert, loopback_config, start, url};
use surefoot_core_model::{Secret, Source, batch_channel};
use surefoot_source_http::{AckMode, Auth, HttpSource, HttpSourceConfig, REPLAYED_HEADER};

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    key: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_with_paths_and_ingest_nothing() {
    let mut config = loopback_config("invalid");
    config.max_body_bytes = 4096;
    config.max_request_changes = 3;
    let (source, batches) = start(config, 8).await;
    let consumer = Consumer::start(batches, |_| false);
    let http = client();
    let batches_url = format!("{}/v1/batches", url(&source));
    let json = "application/json";

    let body = r#"[{"table":"t","op":"insert","after":{"id":"ok"}},{"table":"t","op":"upsert"},{"table":"","op":"delete"}]"#;
    let response = post(&http, &batches_url, json, None, body.to_owned()).await;
    assert_eq!(response.status(), 400);
    let answer: serde_json::Value = response.json().await.unwrap();
    let paths: Vec<&str> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["[1].op", "[2].table", "[2].key"]);

    let too_many = array(&ids("many", 4));
    let response = post(&http, &batches_url, json, None, too_many).await;
    assert_eq!(response.status(), 413);
    let too_big = array(&[String::from_utf8(vec![b'x'; 5000]).unwrap()]);
    let response = post(&http, &batches_url, json, None, too_big).await;
    assert_eq!(response.status(), 413);
    let response = post(&http, &batches_url, "text/plain", None, array(&ids("t", 1))).await;
    assert_eq!(response.status(), 415);
    let single = format!("{}/v1/changes", url(&source));
    let response = post(&http, &single, "application/x-ndjson", None, insert("n")).await;
    assert_eq!(response.status(), 415);
    let response = post(&http, &single, json, Some("bad key"), insert("k")).await;
    assert_eq!(response.status(), 400);
    let response = post(&http, &batches_url, json, None, "not json".to_owned()).await;
    assert_eq!(response.status(), 400);

    // NDJSON works, and proves the earlier refusals left nothing behind.
    let good = ids("good", 3);
    let ndjson: Vec<String> = good.iter().map(|id| insert(id)).collect();
    let response = post(
        &http,
        &batches_url,
        "application/x-ndjson",
        None,
        ndjson.join("\n"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(consumer.total(), 3);
    assert!(consumer.has_all(&good));
    let stats = source.stats();
    assert_eq!((stats.accepted, stats.client_errors), (1, 7));
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_required_when_configured() {
    let token = "a-token-of-enough-length";
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = HttpSourceConfig::new("auth", bind, Auth::Bearer(vec![Secret::new(token)]));
    let (source, batches) = start(config, 8).await;
    let consumer = Consumer::start(batches, |_| false);
    let http = client();
    let endpoint = format!("{}/v1/changes", url(&source));
    for header in [None, Some("Bearer wrong-token-of-enough-len"), Some(token)] {
        let mut request = http
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(insert("secret"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let response = http
        .post(&endpoint)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(insert("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(consumer.total(), 1);
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_without_a_token_is_refused() {
    let bind = SocketAddr::from(([0, 0, 0, 0], 0));
    let config = HttpSourceConfig::new("open", bind, Auth::NoneOnLoopback);
    let (output, _batches) = batch_channel(1);
    let error = HttpSource::new(config, output).unwrap_err();
    let chain = format!("{error:?}");
    assert!(chain.contains("auth: none is refused"), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_answered_503_and_its_retry_ingests_once() {
    let (source, batches) = start(loopback_config("retry"), 8).await;
    // The first batch fails, every later one is delivered.
    let consumer = Consumer::start(batches, |n| n == 0);
    let http = client();
    let endpoint = format!("{}/v1/batches", url(&source));
    let sent = ids("r", 5);
    let json = "application/json";
    let first = post(&http, &endpoint, json, Some("key-1"), array(&sent)).await;
    assert_eq!(first.status(), 503);
    assert!(first.headers().contains_key("retry-after"));
    assert_eq!(consumer.total(), 0);
    let second = post(&http, &endpoint, json, Some("key-1"), array(&sent)).await;
    assert_eq!(second.status(), 200);
    assert!(!second.headers().contains_key(REPLAYED_HEADER));
    let third = post(&http, &endpoint, json, Some("key-1"), array(&sent)).await;
    assert_eq!(third.status(), 200);
    assert_eq!(third.headers()[REPLAYED_HEADER], "true");
    let other = post(&http, &endpoint, json, Some("key-1"), array(&ids("o", 1))).await;
    assert_eq!(other.status(), 422);
    assert_eq!(consumer.total(), 5, "a retry or replay ingested twice");
    assert_eq!(source.stats().replays, 1);
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_answered_503_on_timeout_is_not_ingested_again_once_delivered() {
    let mut config = loopback_config("late");
    config.ack_timeout = Duration::from_millis(200);
    let (source, mut batches) = start(config, 8).await;
    let http = client();
    let endpoint = format!("{}/v1/changes", url(&source));
    let json = "application/json";
    let (timed_out, batch) = tokio::join!(
        post(&http, &endpoint, json, Some("slow"), insert("slow")),
        async { batches.recv().await.unwrap() }
    );
    assert_eq!(timed_out.status(), 503, "answered before the batch settled");
    // Still pending: a retry neither ingests nor waits forever.
    let pending = post(&http, &endpoint, json, Some("slow"), insert("slow")).await;
    assert_eq!(pending.status(), 409);
    assert!(pending.headers().contains_key("retry-after"));
    batch.ack.delivered();
    // Once delivered, the key holds the delivered answer.
    let replay = loop {
        let response = post(&http, &endpoint, json, Some("slow"), insert("slow")).await;
        if response.status() != 409 {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()[REPLAYED_HEADER], "true");
    assert!(batches.try_recv().is_none(), "the retry ingested again");
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_ingest_once() {
    let (source, batches) = start(loopback_config("same-key"), 8).await;
    let consumer = Consumer::start(batches, |_| false);
    let http = client();
    let endpoint = format!("{}/v1/batches", url(&source));
    let sent = ids("same", 10);
    let requests = (0..20).map(|_| {
        post(
            &http,
            &endpoint,
            "application/json",
            Some("k"),
            array(&sent),
        )
    });
    let answers = futures::future::join_all(requests).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let fresh = answers
        .iter()
        .filter(|a| a.status() == 200 && !a.headers().contains_key(REPLAYED_HEADER))
        .count();
    assert_eq!(fresh, 1, "{statuses:?}");
    assert_eq!(consumer.total(), 10);
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_m2_a_full_pipeline_answers_429_and_loses_nothing_it_accepted() {
    let mut config = loopback_config("full");
    config.queue_requests = 1;
    config.accept_timeout = Duration::from_millis(100);
    config.ack_mode = AckMode::Async;
    let (source, batches) = start(config, 1).await;
    let http = client();
    let endpoint = format!("{}/v1/changes", url(&source));
    // Nobody reads the output: one batch in it, one in the batcher's hands, one queued.
    let mut accepted = Vec::new();
    let mut throttled = None;
    for n in 0..1000 {
        let id = format!("full-{n}");
        let response = post(&http, &endpoint, "application/json", None, insert(&id)).await;
        match response.status().as_u16() {
            202 => accepted.push(id),
            429 => {
                throttled = Some(response);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let throttled = throttled.expect("never throttled");
    assert_eq!(throttled.headers()["retry-after"], "1");
    let consumer = Consumer::start(batches, |_| false);
    source.stop(BOUND).await.unwrap();
    assert!(consumer.has_all(&accepted));
    assert_eq!(consumer.total(), accepted.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_busy_output_are_coalesced() {
    let mut config = loopback_config("coalesce");
    config.batching.max_changes = 10;
    config.batching.max_delay = Duration::from_secs(20);
    config.ack_mode = AckMode::Async;
    let (source, mut batches) = start(config, 1).await;
    let http = client();
    let endpoint = format!("{}/v1/changes", url(&source));
    let requests = (0..21).map(|n| {
        post(
            &http,
            &endpoint,
            "application/json",
            None,
            insert(&format!("c-{n}")),
        )
    });
    for response in futures::future::join_all(requests).await {
        assert_eq!(response.status(), 202);
    }
    let mut sizes = Vec::new();
    while sizes.iter().sum::<usize>() < 21 {
        let batch = tokio::time::timeout(BOUND, batches.recv())
            .await
            .unwrap()
            .unwrap();
        sizes.push(batch.changes.len());
        batch.ack.delivered();
    }
    assert!(sizes.len() <= 4, "requests not coalesced: {sizes:?}");
    assert!(sizes.iter().all(|size| *size <= 10), "{sizes:?}");
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_running() {
    let (source, _batches) = start(loopback_config("health"), 1).await;
    let response = client()
        .get(format!("{}/health", url(&source)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "running");
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_mode_answers_202_and_counts_a_batch_that_then_fails() {
    let mut config = loopback_config("async-fail");
    config.ack_mode = AckMode::Async;
    let (source, batches) = start(config, 8).await;
    let consumer = Consumer::start(batches, |_| true);
    let http = client();
    let endpoint = format!("{}/v1/batches", url(&source));
    let sent = ids("lost", 3);
    let answer = post(
        &http,
        &endpoint,
        "application/json",
        Some("a1"),
        array(&sent),
    )
    .await;
    assert_eq!(answer.status(), 202);
    // The failure is counted, never silent; the key then replays the 202 the client was given.
    let replay = loop {
        let response = post(
            &http,
            &endpoint,
            "application/json",
            Some("a1"),
            array(&sent),
        )
        .await;
        if response.status() != 409 {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()[REPLAYED_HEADER], "true");
    assert_eq!(source.stats().async_failed, 3);
    assert_eq!(consumer.total(), 0);
    source.stop(BOUND).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408_and_ingests_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = loopback_config("stall");
    config.read_timeout = Duration::from_millis(300);
    let (source, batches) = start(config, 8).await;
    let consumer = Consumer::start(batches, |_| false);
    let mut socket = tokio::net::TcpStream::connect(source.local_addr().unwrap())
        .await
        .unwrap();
    let head = "POST /v1/changes HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"table\":";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(BOUND, socket.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(consumer.total(), 0);
    source.stop(BOUND).await.unwrap();
}
