//! Ingest throughput: changes/s through `POST /v1/batches` in `sync` mode against a bare axum
//! handler that takes the body and answers 200 doing nothing, with the same load generator in
//! the same run. A third server, an axum handler that only parses the body into a
//! `serde_json::Value`, shows how much of the gap is reading JSON at all.
//!
//! The load generator is `CLIENTS` concurrent HTTP/1.1 clients (reqwest, keep-alive), each posting
//! JSON arrays of `REQUEST_CHANGES` inserts until `TOTAL_CHANGES` are sent. For ours, a consumer
//! settles every batch delivered at once, so each answer waits for a real settlement. The two
//! servers take turns, `REPS` times each, and the median of each is reported with their ratio.
//! It never asserts a speed.
//!
//! Run: `cargo bench -p surefoot-source-http --bench ingest`

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing with its
// message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{Source, batch_channel};
use surefoot_source_http::{Auth, HttpSource, HttpSourceConfig};

const CLIENTS: usize = 16;
const REQUEST_CHANGES: usize = 500;
const TOTAL_CHANGES: usize = 600_000;
const REPS: usize = 3;

fn main() {
    let workers = std::env::var("SUREFOOT_BENCH_WORKERS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let bodies = Arc::new(bodies());
    let (ours_addr, source, consumer) = start_ours().await;
    let (bare_addr, bare) = start_bare().await;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut parsing = Vec::new();
    for _ in 0..REPS {
        theirs.push(load(bare_addr, "/v1/batches", Arc::clone(&bodies)).await);
        parsing.push(load(bare_addr, "/parse", Arc::clone(&bodies)).await);
        ours.push(load(ours_addr, "/v1/batches", Arc::clone(&bodies)).await);
    }
    let ours = median(ours);
    let theirs = median(theirs);
    let parsing = median(parsing);
    let rate = |elapsed: Duration| TOTAL_CHANGES as f64 / elapsed.as_secs_f64();
    println!(
        "ingest, {CLIENTS} clients, {REQUEST_CHANGES} changes per request, {TOTAL_CHANGES} changes, median of {REPS}"
    );
    println!("| server | changes/s |");
    println!("|---|---:|");
    println!("| source-http, sync | {:.0} |", rate(ours));
    println!("| bare axum handler | {:.0} |", rate(theirs));
    println!(
        "| axum handler parsing the body into serde_json::Value | {:.0} |",
        rate(parsing)
    );
    let ratio = |limit: Duration| limit.as_secs_f64() / ours.as_secs_f64();
    println!("ratio (ours/bare): {:.2}", ratio(theirs));
    println!("ratio (ours/parsing): {:.2}", ratio(parsing));
    println!("source stats: {:?}", source.stats());
    source.stop(Duration::from_secs(10)).await.unwrap();
    consumer.stop(Duration::from_secs(10)).await;
    bare.stop(Duration::from_secs(10)).await;
}

/// Request bodies: JSON arrays of inserts with distinct ids, each a few dozen bytes.
fn bodies() -> Vec<String> {
    (0..TOTAL_CHANGES / REQUEST_CHANGES)
        .map(|request| {
            let items: Vec<String> = (0..REQUEST_CHANGES)
                .map(|n| {
                    let id = request * REQUEST_CHANGES + n;
                    format!(r#"{{"table":"bench","op":"insert","after":{{"id":{id},"name":"row {id}","qty":3}}}}"#)
                })
                .collect();
            format!("[{}]", items.join(","))
        })
        .collect()
}

async fn start_ours() -> (SocketAddr, HttpSource, TaskGroup) {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = HttpSourceConfig::new("bench", bind, Auth::NoneOnLoopback);
    let (output, mut batches) = batch_channel(256);
    let source = HttpSource::new(config, output).unwrap();
    source.start().await.unwrap();
    let consumer = TaskGroup::new("bench-consumer");
    consumer
        .spawn_until_cancelled("settle", async move {
            while let Some(batch) = batches.recv().await {
                batch.ack.delivered();
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    (source.local_addr().unwrap(), source, consumer)
}

async fn start_bare() -> (SocketAddr, TaskGroup) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/v1/batches", post(|_body: Bytes| async { StatusCode::OK }))
        .route(
            "/parse",
            post(|body: Bytes| async move {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(_) => StatusCode::OK,
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }),
        );
    let group = TaskGroup::new("bench-bare");
    group
        .spawn_until_cancelled("serve", async move { axum::serve(listener, router).await })
        .unwrap();
    (addr, group)
}

/// Posts every body once with `CLIENTS` concurrent clients; returns the elapsed time.
async fn load(addr: SocketAddr, path: &str, bodies: Arc<Vec<String>>) -> Duration {
    let url = format!("http://{addr}{path}");
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|_| {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (url, next, bodies) = (&url, &next, &bodies);
        async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    return;
                };
                let response = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            }
        }
    });
    futures::future::join_all(clients).await;
    started.elapsed()
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}
