#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! Random bodies and headers against a running source: it never panics, never answers 5xx for
//! a client's mistake, and never ingests any part of a request it refused.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{BOUND, Consumer, client, insert};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use surefoot_core_model::{Secret, Source, batch_channel};
use surefoot_source_http::{Auth, HttpSource, HttpSourceConfig, REPLAYED_HEADER};

const TOKEN: &str = "proptest-token-0123456789";
const MAX_CHANGES: usize = 20;

#[derive(Debug, Clone)]
struct Case {
    batch_endpoint: bool,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    key: Option<String>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// Valid changes, as JSON text each.
    Valid(Vec<String>),
    /// Valid changes with one broken item at `broken`.
    Broken(Vec<String>, usize, String),
    /// Anything.
    Bytes(Vec<u8>),
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9 ]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("{\"nested\":[1,2]}".to_owned()),
    ]
}

fn row() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-z]{1,6}", scalar()), 1..4).prop_map(|columns| {
        let fields: Vec<String> = columns
            .into_iter()
            .map(|(name, value)| format!("\"{name}\":{value}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    })
}

fn change() -> impl Strategy<Value = String> {
    let table = prop_oneof![Just("t"), Just("app.orders"), Just("x_1")];
    (table, row(), 0..4u8).prop_map(|(table, row, op)| match op {
        0 => format!(r#"{{"table":"{table}","op":"insert","after":{row}}}"#),
        1 => format!(r#"{{"table":"{table}","op":"update","after":{row},"key":{row}}}"#),
        2 => format!(r#"{{"table":"{table}","op":"delete","key":{row}}}"#),
        _ => format!(r#"{{"table":"{table}","op":"truncate"}}"#),
    })
}

fn broken_item() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"{"table":"t","op":"upsert","after":{"a":1}}"#.to_owned()),
        Just(r#"{"table":"","op":"insert","after":{"a":1}}"#.to_owned()),
        Just(r#"{"table":"t","op":"insert"}"#.to_owned()),
        Just(r#"{"table":"t","op":"insert","after":{}}"#.to_owned()),
        Just(r#"{"table":"t","op":"delete","after":{"a":1}}"#.to_owned()),
        Just(r#"{"table":"t","op":"truncate","surprise":1}"#.to_owned()),
        Just(r#"{"table":"a.b.c","op":"truncate"}"#.to_owned()),
        Just("42".to_owned()),
        Just("[]".to_owned()),
        Just("{\"table\":".to_owned()),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    let changes = || prop::collection::vec(change(), 1..MAX_CHANGES);
    prop_oneof![
        4 => changes().prop_map(Body::Valid),
        3 => (changes(), any::<prop::sample::Index>(), broken_item())
            .prop_map(|(changes, at, item)| {
                let at = at.index(changes.len() + 1);
                Body::Broken(changes, at, item)
            }),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let content_type = prop_oneof![
        4 => Just(Some("application/json")),
        2 => Just(Some("application/x-ndjson")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("text/plain")),
        1 => Just(None),
    ];
    let authorization = prop_oneof![
        6 => Just(Some(format!("Bearer {TOKEN}"))),
        1 => Just(None),
        1 => Just(Some("Bearer wrong".to_owned())),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    let key = prop_oneof![
        2 => Just(None),
        3 => (0..6u8).prop_map(|n| Some(format!("key-{n}"))),
        1 => "[ -~]{0,10}".prop_map(Some),
    ];
    (any::<bool>(), content_type, authorization, key, body()).prop_map(
        |(batch_endpoint, content_type, authorization, key, body)| Case {
            batch_endpoint,
            content_type,
            authorization,
            key,
            body,
        },
    )
}

/// The body's bytes for the case's framing, and how many changes a success must ingest.
fn encode(case: &Case) -> (Vec<u8>, Option<usize>) {
    let ndjson = case.content_type == Some("application/x-ndjson");
    let join = |items: &[String]| {
        if !case.batch_endpoint {
            items.first().cloned().unwrap_or_default()
        } else if ndjson {
            items.join("\n")
        } else {
            format!("[{}]", items.join(","))
        }
    };
    match &case.body {
        Body::Valid(items) => {
            let expected = if case.batch_endpoint { items.len() } else { 1 };
            (join(items).into_bytes(), Some(expected))
        }
        Body::Broken(items, at, item) => {
            let mut items = items.clone();
            if case.batch_endpoint {
                items.insert(*at, item.clone());
            } else {
                items.insert(0, item.clone());
            }
            (join(&items).into_bytes(), None)
        }
        Body::Bytes(bytes) => (bytes.clone(), None),
    }
}

#[test]
fn random_requests_never_panic_never_5xx_and_never_ingest_part_of_a_refusal() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // reqwest arms its timeout when a request is built: that needs the runtime's context.
    let _context = runtime.enter();
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = HttpSourceConfig::new("prop", bind, Auth::Bearer(vec![Secret::new(TOKEN)]));
    config.max_request_changes = MAX_CHANGES;
    let (source, consumer) = runtime.block_on(async {
        let (output, batches) = batch_channel(8);
        let source = HttpSource::new(config, output).unwrap();
        source.start().await.unwrap();
        (source, Consumer::start(batches, |_| false))
    });
    let base = format!("http://{}", source.local_addr().unwrap());
    let http = client();
    let expected_total = Arc::new(std::sync::Mutex::new(0_u64));
    let (accepted, refused) = (AtomicU64::new(0), AtomicU64::new(0));

    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |case| {
        let (bytes, expected) = encode(&case);
        let endpoint = if case.batch_endpoint {
            "v1/batches"
        } else {
            "v1/changes"
        };
        let mut request = http.post(format!("{base}/{endpoint}")).body(bytes);
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(authorization) = &case.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(key) = &case.key {
            request = request.header("idempotency-key", key);
        }
        let before = consumer.total();
        let response = runtime.block_on(request.send()).unwrap();
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key(REPLAYED_HEADER);
        let ingested = consumer.total() - before;
        prop_assert!(status < 500, "answered {} for {:?}", status, case);
        if status == 200 && !replayed {
            let expected = expected.expect("refused body accepted");
            prop_assert_eq!(ingested, expected as u64, "{:?}", case);
            *expected_total.lock().unwrap() += expected as u64;
            accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            refused.fetch_add(1, Ordering::Relaxed);
            prop_assert_eq!(ingested, 0, "answered {} yet ingested, {:?}", status, case);
        }
        if expected.is_none() {
            prop_assert!(
                status >= 400,
                "answered {} for a refused body {:?}",
                status,
                case
            );
        }
        Ok(())
    });
    outcome.unwrap();
    let (accepted, refused) = (accepted.into_inner(), refused.into_inner());
    eprintln!("{accepted} requests ingested, {refused} refused or replayed");
    assert!(
        accepted > 10 && refused > 10,
        "{accepted} ingested, {refused} refused"
    );

    // A last request behind everything: a late ingest of an earlier request would show here.
    let last = runtime.block_on(
        http.post(format!("{base}/v1/changes"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(insert("last"))
            .send(),
    );
    assert_eq!(last.unwrap().status(), 200);
    assert_eq!(consumer.total(), *expected_total.lock().unwrap() + 1);
    let stats = source.stats();
    assert_eq!(stats.server_errors, 0, "{stats:?}");
    runtime.block_on(async {
        tokio::time::timeout(BOUND, source.stop(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    });
}
