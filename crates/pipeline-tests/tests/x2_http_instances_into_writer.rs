//! Issue 14, X-2 composed: two `source-http` instances of one source sharing Redis (idempotency
//! keys and sequence counters) → `sink-postgres-writer`'s mirror. Concurrent clients alternate
//! between the instances, each request a new insert or an update of an id the client inserted
//! earlier (answered `200` only once applied, so an id's changes reach the writer in order even
//! across instances). Every change answered `200` is in the mirror (`EXCEPT` both ways against
//! the expected rows), none lost, none applied twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{BatchReceiver, BatchSender, Position, Source, TableRef, batch_channel};
use surefoot_pipeline_tests::applied::applied;
use surefoot_sink_postgres_writer::{
    ApplyMode, PostgresWriter, RecordRetention, TableConfig, WriterConfig,
};
use surefoot_source_http::{Auth, HttpSource, HttpSourceConfig, IdempotencyBackend};
use surefoot_test_support::{PgServer, RedisServer};

const CLIENTS: usize = 8;
const REQUESTS: usize = 60;
const SINK: &str = "mirror";

fn instance(redis: &RedisServer, name: &str) -> HttpSourceConfig {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = HttpSourceConfig::new("orders", bind, Auth::NoneOnLoopback);
    config.idempotency.backend = IdempotencyBackend::Redis {
        url: redis.url(),
        prefix: "orders:".to_owned(),
        timeout: Duration::from_secs(5),
    };
    config.instance = Some(name.to_owned());
    config
}

/// Positions passed to the writer, per source id.
type Fed = Arc<Mutex<BTreeMap<String, BTreeSet<Position>>>>;

async fn tap(mut input: BatchReceiver, output: BatchSender, fed: Fed) {
    while let Some(batch) = input.recv().await {
        fed.lock()
            .unwrap()
            .entry(batch.source.to_string())
            .or_default()
            .extend(batch.changes.iter().map(|change| change.position));
        if output.send(batch).await.is_err() {
            panic!("the writer stopped taking batches");
        }
    }
}

/// Client `client`'s requests, alternating between the two instances: odd ones insert a new
/// id, even ones update the id it inserted last. Returns the rows as the mirror must end.
async fn client(
    http: &reqwest::Client,
    urls: &[String; 2],
    client: usize,
) -> BTreeMap<String, i64> {
    let mut expected = BTreeMap::new();
    let mut last_id = None;
    for request in 0..REQUESTS {
        let url = &urls[request % 2];
        let (op, id) = match (&last_id, request % 2) {
            (Some(id), 0) => ("update", String::clone(id)),
            _ => ("insert", format!("c{client}-r{request}")),
        };
        let v = (client * 1_000 + request) as i64;
        let body = format!(r#"[{{"table":"events","op":"{op}","after":{{"id":"{id}","v":{v}}}}}]"#);
        let response = http
            .post(format!("{url}/v1/batches"))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("c{client}-r{request}"))
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "request {request} of client {client}"
        );
        expected.insert(id.clone(), v);
        last_id = Some(id);
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_2_two_http_instances_sharing_redis_into_the_writer() {
    let server = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let target = server.connect("postgres").await.unwrap();
    target
        .batch_execute(
            "CREATE TABLE events (id text PRIMARY KEY, v bigint NOT NULL);
             CREATE TABLE expected (id text PRIMARY KEY, v bigint NOT NULL);",
        )
        .await
        .unwrap();
    let mut config = WriterConfig::new(SINK, server.url("postgres")).table(TableConfig::new(
        TableRef::new("public", "events"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    config.batch.max_latency = Duration::from_millis(5);
    config.applied_records = RecordRetention {
        keep: u32::MAX,
        max_age: None,
    };
    let writer = PostgresWriter::builder(config).connect().await.unwrap();

    let (writer_out, writer_in) = batch_channel(16);
    let fed: Fed = Arc::default();
    let (a_out, a_in) = batch_channel(8);
    let (b_out, b_in) = batch_channel(8);
    let a = HttpSource::new(instance(&redis, "a"), a_out).unwrap();
    let b = HttpSource::new(instance(&redis, "b"), b_out).unwrap();
    a.start().await.unwrap();
    b.start().await.unwrap();
    let url = |source: &HttpSource| format!("http://{}", source.local_addr().unwrap());
    let urls = [url(&a), url(&b)];
    let cancel = CancellationToken::new();
    let http = reqwest::Client::new();

    let (http, urls) = (&http, &urls);
    // Owns the sources: stopping and dropping them closes their outputs, which ends the taps
    // and then the writer's sink loop.
    let drive = async move {
        let clients = (0..CLIENTS).map(|n| client(http, urls, n));
        let expected: BTreeMap<String, i64> = futures::future::join_all(clients)
            .await
            .into_iter()
            .flatten()
            .collect();
        a.stop(Duration::from_secs(30)).await.unwrap();
        b.stop(Duration::from_secs(30)).await.unwrap();
        drop((a, b));
        expected
    };
    let (expected, (), (), run) = tokio::join!(
        drive,
        tap(a_in, writer_out.clone(), Arc::clone(&fed)),
        tap(b_in, writer_out, Arc::clone(&fed)),
        writer.run(writer_in, cancel.clone()),
    );
    run.unwrap();

    for (id, v) in &expected {
        target
            .execute("INSERT INTO expected VALUES ($1, $2)", &[id, v])
            .await
            .unwrap();
    }
    let count = |query: &'static str| {
        let target = &target;
        async move { target.query_one(query, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let lost =
        count("SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM events) d").await;
    let extra =
        count("SELECT count(*) FROM (SELECT * FROM events EXCEPT SELECT * FROM expected) d").await;
    let fed = fed.lock().unwrap().clone();
    let mut report = Vec::new();
    let mut duplicated = 0;
    for (source, positions) in &fed {
        let applied = applied(target.client(), SINK, source).await.unwrap();
        duplicated += applied.overlapping;
        report.push(format!(
            "{source}: fed {} applied {}",
            positions.len(),
            applied.changes
        ));
        assert_eq!(
            applied.changes,
            positions.len() as u64,
            "{source}: fed and applied differ"
        );
    }
    eprintln!(
        "x_2: {} changes answered 200 by two instances, {} rows expected; {}; lost {lost} extra \
         {extra} duplicated {duplicated}",
        CLIENTS * REQUESTS,
        expected.len(),
        report.join("; ")
    );
    let sources: Vec<&String> = fed.keys().collect();
    assert_eq!(sources, ["orders/a", "orders/b"]);
    assert_eq!((lost, extra, duplicated), (0, 0, 0));
}
