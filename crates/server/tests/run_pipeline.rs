//! The real `surefoot` binary run as a subprocess against throwaway PostgreSQL servers: a
//! config file alone bootstraps a join + aggregate query and a mirror of the source's tables,
//! streams a concurrent load into a second server, and stops on SIGTERM with exit 0 and the
//! slot confirmed; restarted, it resumes from its slot. The API refuses requests without the
//! token, `/metrics` parses as Prometheus text, readiness follows the target server, and the
//! secrets never appear in the output or the API's answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod pipeline;

use std::time::{Duration, Instant};

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{Change, Operation};
use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer, RedisServer};

use pipeline::*;

/// Every operation of the OpenAPI document is served (none falls to the router's fallback or
/// answers 405), and every route the server has is in the document.
async fn openapi_matches_the_routes(api: &str) {
    assert_eq!(
        get(&format!("{api}/api/v1/openapi.json"), None).await.0,
        401
    );
    let (status, body) = get(&format!("{api}/api/v1/openapi.json"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations.sort();
    let expected = [
        "DELETE /api/v1/queries/{id}",
        "DELETE /api/v1/reactions/{id}",
        "DELETE /api/v1/sources/{id}",
        "GET /api/v1/components",
        "GET /api/v1/dead-letters",
        "GET /api/v1/queries/{id}",
        "GET /api/v1/queries/{id}/results",
        "GET /api/v1/reactions/{id}",
        "GET /api/v1/sources/{id}",
        "GET /api/v1/tasks",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
        "POST /api/v1/dead-letters/replay",
        "POST /api/v1/queries/{id}/pause",
        "POST /api/v1/queries/{id}/resume",
        "POST /api/v1/queries/{id}/start",
        "POST /api/v1/queries/{id}/stop",
        "POST /api/v1/reactions/{id}/pause",
        "POST /api/v1/reactions/{id}/resume",
        "POST /api/v1/reactions/{id}/start",
        "POST /api/v1/reactions/{id}/stop",
        "POST /api/v1/sources/{id}/pause",
        "POST /api/v1/sources/{id}/resume",
        "POST /api/v1/sources/{id}/snapshot",
        "POST /api/v1/sources/{id}/start",
        "POST /api/v1/sources/{id}/stop",
        "PUT /api/v1/queries/{id}",
        "PUT /api/v1/reactions/{id}",
        "PUT /api/v1/sources/{id}",
    ];
    assert_eq!(operations, expected, "the documented operations");
    for operation in &operations {
        let (method, path) = operation.split_once(' ').unwrap();
        let url = format!("{api}{}", path.replace("{id}", "no-such-id"));
        let response = reqwest::Client::new()
            .request(method.parse().unwrap(), &url)
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{operation}: not routed for its method");
        assert!(
            status != 404 || !text.is_empty(),
            "{operation}: falls to the router's fallback"
        );
        if path.starts_with("/api/v1") {
            let unauthenticated = reqwest::Client::new()
                .request(method.parse().unwrap(), &url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            assert_eq!(
                unauthenticated.status().as_u16(),
                401,
                "{operation} without a token"
            );
            let security = &paths[path][method.to_lowercase()]["security"];
            assert!(
                security.is_array(),
                "{operation}: no security requirement documented"
            );
        }
    }
    // A route not in the document is the fallback's.
    let (status, text) = get(&format!("{api}/api/v1/undocumented"), Some(TOKEN)).await;
    assert_eq!(
        (status, text.as_str()),
        (404, ""),
        "an undocumented route answers"
    );
}

/// An HTTP endpoint that keeps every body posted to it.
struct Webhook {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _group: TaskGroup,
}

impl Webhook {
    async fn start() -> Self {
        let bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
        let kept = bodies.clone();
        let app = axum::Router::new().route(
            &format!("/{HOOK_TOKEN}"),
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let group = TaskGroup::new("webhook");
        group
            .spawn("server", move |cancel| async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(cancel.cancelled_owned())
                    .await
            })
            .unwrap();
        Self {
            url,
            bodies,
            _group: group,
        }
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Every batch appended to `stream`, as its JSON.
async fn stream_batches(url: &str, stream: &str) -> Vec<serde_json::Value> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .map(|entry| {
            let text: String = entry.get("batch").unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

/// The result rows the diffs of `batches` add up to: each change once (by position, as a
/// position-idempotent consumer applies them), keyed by the group key.
fn fold(batches: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut seen = std::collections::BTreeSet::new();
    let mut rows = std::collections::BTreeMap::new();
    for batch in batches {
        let changes: Vec<Change> = serde_json::from_value(batch["changes"].clone()).unwrap();
        for change in changes {
            if !seen.insert(change.position.to_string()) {
                continue;
            }
            let key = |row: &surefoot_core_model::Row| format!("{:?}", row.get("_key.1"));
            match &change.operation {
                Operation::Insert { after } | Operation::Update { after, .. } => {
                    rows.insert(key(after), serde_json::to_value(after).unwrap());
                }
                Operation::Delete { key: Some(old), .. }
                | Operation::Delete {
                    before: Some(old), ..
                } => {
                    rows.remove(&key(old));
                }
                other => panic!("a result diff that is not a row change: {other:?}"),
            }
        }
    }
    sorted(rows.into_values().collect())
}

fn sorted(mut rows: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rows.sort_by_key(|row| row.to_string());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_alone_bootstraps_streams_stops_cleanly_and_resumes() {
    let source = PgServer::new().await.unwrap();
    let mut target = PgServer::new().await.unwrap();
    let redis = RedisServer::new().await.unwrap();
    let (admin, _copy) = prepare(&source, &target).await;
    let state = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let hook = Webhook::start().await;
    let extra = format!(
        "  - kind: redis\n    id: totals-stream\n    from: totals\n    url: ${{REDIS_URL}}\n  \
         - kind: webhook\n    id: totals-hook\n    from: totals\n    url: {}/{HOOK_TOKEN}\n",
        hook.url
    );
    let config_path = state.path().join("surefoot.yaml");
    let text = config_with(
        &source,
        &target,
        &state.path().join("state"),
        api_port,
        &extra,
    );
    std::fs::write(&config_path, text).unwrap();
    let redis_url = redis.url();
    let env = [("REDIS_URL", redis_url.as_str())];

    let child = start_with(&config_path, &env);
    wait_until_ready(&api, true).await;
    load(&admin, 0, 300).await;
    wait_until_equal(&admin, &target).await;

    // The API: tokens required; answers hold no secret.
    let components = format!("{api}/api/v1/components");
    assert_eq!(get(&components, None).await.0, 401);
    assert_eq!(get(&components, Some("wrong-token-000000000")).await.0, 401);
    let (status, body) = get(&components, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"totals-mirror\""), "{body}");
    assert_no_secrets(&body, "the components answer");
    let (status, body) = get(&format!("{api}/api/v1/queries/totals/results"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), 9, "one result row per region: {body}");

    openapi_matches_the_routes(&api).await;

    // Metrics parse as Prometheus text and hold the libraries' instruments.
    let (status, text) = get(&format!("{api}/metrics"), None).await;
    assert_eq!(status, 200);
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("surefoot_")),
        "no surefoot_ metric in {text}"
    );
    assert_no_secrets(&text, "/metrics");

    // Readiness follows the target server.
    target.stop().await.unwrap();
    wait_until_ready(&api, false).await;
    target.start().await.unwrap();
    wait_until_ready(&api, true).await;

    load(&admin, 300, 200).await;
    let written = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    wait_until_equal(&admin, &target).await;
    let (status, body) = get(&format!("{api}/api/v1/queries/totals/results"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let result = sorted(serde_json::from_str(&body).unwrap());
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    eprintln!("--- first run ---\n{output}");
    assert!(status.success(), "exit status {status:?}");
    assert_no_secrets(&output, "the server's output");
    assert!(
        !output.contains(HOOK_TOKEN),
        "the webhook's path token shows in the output"
    );
    // The Redis stream and the webhook each carried every diff: folded, they are the result.
    let streamed = stream_batches(&redis_url, "surefoot:totals").await;
    assert_eq!(fold(&streamed), result, "the Redis stream's diffs, folded");
    assert_eq!(fold(&hook.bodies()), result, "the webhook's diffs, folded");
    let confirmed_past_load: bool = admin
        .query_one(
            "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
             WHERE slot_name = 'surefoot_shop'",
            &[&written],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        confirmed_past_load,
        "the slot was not confirmed past the delivered load"
    );

    // Restarted: resumes from the slot (no second bootstrap) and keeps up.
    load(&admin, 500, 100).await;
    let child = start_with(&config_path, &env);
    wait_until_ready(&api, true).await;
    load(&admin, 600, 100).await;
    wait_until_equal(&admin, &target).await;
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    eprintln!("--- second run ---\n{output}");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !output.contains("bootstrap: snapshot sent"),
        "bootstrapped again"
    );
    assert_no_secrets(&output, "the server's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_lose_nothing_and_sigterm_under_load_confirms_the_slot_at_the_sink() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    let state = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = state.path().join("surefoot.yaml");
    let text = config(&source, &target, &state.path().join("state"), api_port)
        .replace("api:\n", "api:\n  stall_after_ms: 1500\n");
    std::fs::write(&config_path, text).unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;

    // Paused: the query takes nothing more, whatever the load; resumed, it catches up.
    assert_eq!(
        post(&format!("{api}/api/v1/queries/totals/pause"), TOKEN).await,
        200
    );
    let at_pause = processed(&api, "totals").await;
    load(&admin, 0, 200).await;
    assert_eq!(
        processed(&api, "totals").await,
        at_pause,
        "input taken while paused"
    );
    // The source has batches pending that nobody settles: stalled, so not ready.
    wait_until_ready(&api, false).await;
    let (_, readiness) = get(&format!("{api}/health/ready"), None).await;
    assert!(readiness.contains("stalled"), "{readiness}");
    assert_eq!(
        post(&format!("{api}/api/v1/queries/totals/resume"), TOKEN).await,
        200
    );
    wait_until_equal(&admin, &target).await;
    assert!(processed(&api, "totals").await > at_pause);
    wait_until_ready(&api, true).await;

    reaction_holds_lose_nothing(&api, &admin, &copy, &target).await;

    // SIGTERM while the load runs.
    let load_client = source.connect("postgres").await.unwrap();
    let (stop_load, mut stopped) = tokio::sync::watch::channel(false);
    let loader = async {
        let mut k = 1_000;
        while !*stopped.borrow_and_update() {
            load(&load_client, k, 10).await;
            k += 10;
        }
        k - 1_000
    };
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stopping = Instant::now();
        let (status, output) = terminate(child, Duration::from_secs(60)).await;
        stop_load.send_replace(true);
        (status, output, stopping.elapsed())
    };
    let (transactions, (status, output, took)) = tokio::join!(loader, stopper);
    assert!(status.success(), "exit status {status:?}\n{output}");
    assert_no_secrets(&output, "the server's output");

    // The slot's confirmed position is the table mirror's checkpoint: nothing confirmed that
    // the sink had not committed.
    let confirmed: String = admin
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'surefoot_shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let checkpoint: String = copy
        .query_one(
            "SELECT ('0/0'::pg_lsn + major)::text FROM surefoot_writer.checkpoint \
             WHERE sink = 'tables-mirror' AND source = 'shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // The sink's checkpoint is the position of its last transaction's commit record; the slot
    // confirms where that record ends (streaming resumes with the next transaction).
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .unwrap();
    let (record, commit_end): (String, String) = admin
        .query_one(
            "SELECT record_type, end_lsn::text FROM pg_get_wal_record_info($1::text::pg_lsn)",
            &[&checkpoint],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    eprintln!(
        "sigterm under load: {transactions} load transactions, exit in {:.1} s; slot confirmed \
         {confirmed}; sink checkpoint {checkpoint} ({record} record ending at {commit_end})",
        took.as_secs_f64()
    );
    assert_eq!(record, "COMMIT", "the checkpoint is not a commit record");
    assert_eq!(
        confirmed, commit_end,
        "the slot is not confirmed at the end of the sink's last transaction"
    );

    // Nothing was lost: restarted, the targets catch up with everything written.
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    wait_until_equal(&admin, &target).await;
    let applied =
        surefoot_pipeline_tests::applied::applied(copy.client(), "totals-mirror", "totals")
            .await
            .unwrap();
    assert_eq!(applied.overlapping, 0, "result diffs applied twice");
    let (status, _) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success());
}

/// Connections of reaction `id` to the target.
async fn connections_of(copy: &PgClient, id: &str) -> i64 {
    copy.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&format!("surefoot-{id}")],
    )
    .await
    .unwrap()
    .get(0)
}

async fn orders_in(copy: &PgClient) -> i64 {
    copy.query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0)
}

/// Paused, the tables' mirror takes nothing while the query's mirror keeps up; stopped, it
/// closes its connections; started, it connects again and catches up with everything.
async fn reaction_holds_lose_nothing(
    api: &str,
    admin: &PgClient,
    copy: &PgClient,
    target: &PgServer,
) {
    let reaction = format!("{api}/api/v1/reactions/tables-mirror");
    assert_eq!(post(&format!("{reaction}/pause"), TOKEN).await, 200);
    let (_, described) = get(&reaction, Some(TOKEN)).await;
    assert!(described.contains(r#""hold":"paused""#), "{described}");
    let orders = orders_in(copy).await;
    let before = processed(api, "totals").await;
    // Fewer transactions than the mirror's queues hold, so the source is not held back.
    load(admin, 400, 20).await;
    let copy_url = target.connection_string("target");
    let deadline = Instant::now() + BOUND;
    loop {
        let totals = except_both_ways(
            admin.client(),
            &copy_url,
            "query.totals",
            TOTAL_COLUMNS,
            TOTAL_TYPES,
        )
        .await
        .unwrap();
        if totals.is_equal() && processed(api, "totals").await > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query's mirror did not keep up: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(orders_in(copy).await, orders, "the paused mirror wrote");
    let (_, readiness) = get(&format!("{api}/health/ready"), None).await;
    assert!(readiness.contains("tables-mirror is held"), "{readiness}");

    assert!(connections_of(copy, "tables-mirror").await > 0);
    assert_eq!(post(&format!("{reaction}/stop"), TOKEN).await, 200);
    let deadline = Instant::now() + BOUND;
    while connections_of(copy, "tables-mirror").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the stopped mirror kept its connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(orders_in(copy).await, orders, "the stopped mirror wrote");
    assert_eq!(post(&format!("{reaction}/start"), TOKEN).await, 200);
    wait_until_equal(admin, target).await;
    assert!(connections_of(copy, "tables-mirror").await > 0);
    wait_until_ready(api, true).await;
}
