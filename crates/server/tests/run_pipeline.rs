//! The real `surefoot` binary run as a subprocess against throwaway PostgreSQL servers: a
//! config file alone bootstraps a join + aggregate query and a mirror of the source's tables,
//! streams a concurrent load into a second server, and stops on SIGTERM with exit 0 and the
//! slot confirmed; restarted, it resumes from its slot. The API refuses requests without the
//! token, `/metrics` parses as Prometheus text, readiness follows the target server, and the
//! secrets never appear in the output or the API's answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{Change, Operation};
use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer, RedisServer};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const TOKEN: &str = "api-token-7f3a9c1e5b2d4f60";
const HOOK_TOKEN: &str = "hook-path-token-5c8e1a";
const TARGET_PASSWORD: &str = "target-pass-Q8w2e4r6";
const BOUND: Duration = Duration::from_secs(120);

const SQL: &str = "SELECT c.region, count(*) AS orders, sum(o.amount) AS total, \
     max(o.amount) AS largest FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region";
const TOTAL_COLUMNS: &str = "region, orders, total, largest";
const TOTAL_TYPES: &str = "region text, orders bigint, total bigint, largest bigint";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(source: &PgServer, target: &PgServer, state: &Path, api_port: u16) -> String {
    config_with(source, target, state, api_port, "")
}

/// The config with `extra` appended to its reactions.
fn config_with(
    source: &PgServer,
    target: &PgServer,
    state: &Path,
    api_port: u16,
    extra: &str,
) -> String {
    format!(
        r#"state_dir: {state}
sources:
  - kind: postgres
    id: shop
    host: {host}
    port: {port}
    user: {user}
    database: postgres
    tables: [orders, customers]
queries:
  - id: totals
    sql: "{SQL}"
reactions:
  - kind: postgres
    id: totals-mirror
    from: totals
    url: postgres://{tuser}:${{TARGET_PASSWORD}}@{thost}:{tport}/target
  - kind: postgres
    id: tables-mirror
    from: shop
    url: postgres://{tuser}:${{TARGET_PASSWORD}}@{thost}:{tport}/target
{extra}api:
  listen: 127.0.0.1:{api_port}
  tokens: ["${{SUREFOOT_TOKEN}}"]
"#,
        state = state.display(),
        host = source.host(),
        port = source.port(),
        user = source.user(),
        tuser = target.user(),
        thost = target.host(),
        tport = target.port(),
    )
}

async fn prepare(source: &PgServer, target: &PgServer) -> (PgClient, PgClient) {
    let admin = source.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
             CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL);
             INSERT INTO customers SELECT g, 'r' || (g % 7) FROM generate_series(1, 200) g;
             INSERT INTO orders SELECT g, g % 200 + 1, g % 97 FROM generate_series(1, 20000) g;
             CREATE SCHEMA query;
             CREATE VIEW query.totals AS {SQL};"
        ))
        .await
        .unwrap();
    target.create_database("target").await.unwrap();
    let copy = target.connect("target").await.unwrap();
    copy.batch_execute(&format!(
        "CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
         CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL);
         CREATE SCHEMA query;
         CREATE TABLE query.totals ({TOTAL_TYPES}, \"_key.1\" text PRIMARY KEY)"
    ))
    .await
    .unwrap();
    (admin, copy)
}

fn start(config_path: &Path) -> Child {
    start_with(config_path, &[])
}

fn start_with(config_path: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_surefoot"))
        .envs(env.iter().copied())
        .args(["run", "-c"])
        .arg(config_path)
        .env("TARGET_PASSWORD", TARGET_PASSWORD)
        .env("SUREFOOT_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Stops `child` with SIGTERM; its exit status and everything it wrote.
async fn terminate(mut child: Child, bound: Duration) -> (std::process::ExitStatus, String) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut output = String::new();
    let read = async {
        let (mut err, mut out) = (String::new(), String::new());
        stderr.read_to_string(&mut err).await.unwrap();
        stdout.read_to_string(&mut out).await.unwrap();
        output = format!("{out}{err}");
    };
    let status = tokio::time::timeout(bound, async {
        read.await;
        child.wait().await.unwrap()
    })
    .await
    .expect("surefoot did not exit within the deadline after SIGTERM");
    (status, output)
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client.get(url).timeout(Duration::from_secs(10));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

async fn wait_until_ready(api: &str, want: bool) {
    let deadline = Instant::now() + BOUND;
    loop {
        let (status, body) = get(&format!("{api}/health/ready"), None).await;
        if (status == 200) == want && status != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never became {want}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the query's mirror and both table mirrors equal the source.
async fn wait_until_equal(admin: &PgClient, target: &PgServer) {
    let copy = target.connection_string("target");
    let deadline = Instant::now() + BOUND;
    loop {
        let totals = except_both_ways(
            admin.client(),
            &copy,
            "query.totals",
            TOTAL_COLUMNS,
            TOTAL_TYPES,
        )
        .await
        .unwrap();
        let orders = except_both_ways(
            admin.client(),
            &copy,
            "orders",
            "id, customer, amount",
            "id int, customer int, amount int",
        )
        .await
        .unwrap();
        let customers = except_both_ways(
            admin.client(),
            &copy,
            "customers",
            "id, region",
            "id int, region text",
        )
        .await
        .unwrap();
        if totals.is_equal() && orders.is_equal() && customers.is_equal() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the targets never matched: totals {totals:?} orders {orders:?} customers {customers:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `count` transactions that insert, move and delete orders and move a customer.
async fn load(client: &PgClient, from: i32, count: i32) {
    for k in from..from + count {
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO orders VALUES ({}, {}, {});
                 UPDATE orders SET amount = amount + 1, customer = {} WHERE id = {};
                 DELETE FROM orders WHERE id = {};
                 UPDATE customers SET region = 'r' || ({k} % 9) WHERE id = {};
                 COMMIT;",
                100_000 + k,
                k % 200 + 1,
                k % 50,
                (k * 7) % 200 + 1,
                (k * 13) % 20_000 + 1,
                (k * 31) % 20_000 + 1,
                k % 200 + 1,
            ))
            .await
            .unwrap();
    }
}

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

fn assert_no_secrets(text: &str, what: &str) {
    for secret in [TOKEN, TARGET_PASSWORD, HOOK_TOKEN] {
        assert!(!text.contains(secret), "a secret appears in {what}");
    }
}

/// Changes the target refused (a CHECK constraint) are dead-lettered; once the constraint is
/// gone, a replay sends the current rows of their keys and the target ends equal to the SQL's
/// answer, the dead letters removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replayed_once_the_cause_is_fixed_leave_the_target_exact() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    let state = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = state.path().join("surefoot.yaml");
    std::fs::write(
        &config_path,
        config(&source, &target, &state.path().join("state"), api_port),
    )
    .unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    wait_until_equal(&admin, &target).await;
    copy.batch_execute(
        "ALTER TABLE query.totals ADD CONSTRAINT no_r3 CHECK (region <> 'r3') NOT VALID",
    )
    .await
    .unwrap();
    load(&admin, 0, 60).await;
    // Every consumer delivered (or dead-lettered) all of it once the slot is confirmed there.
    let end: String = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + BOUND;
    loop {
        let confirmed: bool = admin
            .query_one(
                "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
                 WHERE slot_name = 'surefoot_shop'",
                &[&end],
            )
            .await
            .unwrap()
            .get(0);
        if confirmed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot never reached the load's end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, letters) = get(
        &format!("{api}/api/v1/dead-letters?reaction=totals-mirror"),
        Some(TOKEN),
    )
    .await;
    let letters: Vec<serde_json::Value> = serde_json::from_str(&letters).unwrap();
    assert!(!letters.is_empty(), "nothing was dead-lettered");
    let before = except_both_ways(
        admin.client(),
        &target.connection_string("target"),
        "query.totals",
        TOTAL_COLUMNS,
        TOTAL_TYPES,
    )
    .await
    .unwrap();
    assert!(
        !before.is_equal(),
        "the dead letters left the target as it should be"
    );

    copy.batch_execute("ALTER TABLE query.totals DROP CONSTRAINT no_r3")
        .await
        .unwrap();
    let replay = format!("{api}/api/v1/dead-letters/replay");
    let (status, answer) = send(
        reqwest::Method::POST,
        &replay,
        Some(r#"{"reaction": "nothing"}"#),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = send(
        reqwest::Method::POST,
        &replay,
        Some(r#"{"reaction": "tables-mirror"}"#),
    )
    .await;
    assert_eq!(
        status, 422,
        "a source's mirror has no query to replay from: {answer}"
    );
    let (status, answer) = send(
        reqwest::Method::POST,
        &replay,
        Some(r#"{"reaction": "totals-mirror"}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let replayed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        replayed["dead_letters"].as_u64(),
        Some(letters.len() as u64),
        "{answer}"
    );
    assert_eq!(replayed["applied"], true, "{answer}");
    assert_eq!(replayed["dead_lettered_again"], 0, "{answer}");
    wait_until_equal(&admin, &target).await;
    let (_, left) = get(
        &format!("{api}/api/v1/dead-letters?reaction=totals-mirror"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(left.trim(), "[]", "replayed dead letters are removed");
    let applied =
        surefoot_pipeline_tests::applied::applied(copy.client(), "totals-mirror", "totals")
            .await
            .unwrap();
    assert_eq!(applied.overlapping, 0, "result diffs applied twice");
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");
}

/// A target that drifted (rows deleted and added behind the pipeline's back) is repaired by a
/// snapshot on demand taken while a writer keeps writing: every consumer ends equal to the
/// source, the query's result diffs each applied once, and the stream goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_on_demand_repairs_a_drifted_target_under_writes() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    let state = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = state.path().join("surefoot.yaml");
    std::fs::write(
        &config_path,
        config(&source, &target, &state.path().join("state"), api_port),
    )
    .unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    wait_until_equal(&admin, &target).await;
    copy.batch_execute(
        "DELETE FROM orders WHERE id % 10 = 0; INSERT INTO orders VALUES (999999, 1, 1); \
         UPDATE customers SET region = 'drifted' WHERE id % 7 = 0;",
    )
    .await
    .unwrap();
    let drifted = except_both_ways(
        admin.client(),
        &target.connection_string("target"),
        "orders",
        "id, customer, amount",
        "id int, customer int, amount int",
    )
    .await
    .unwrap();
    assert!(!drifted.is_equal());

    let snapshot = format!("{api}/api/v1/sources/shop/snapshot");
    let unknown = format!("{api}/api/v1/sources/nope/snapshot");
    let (status, answer) = send(reqwest::Method::POST, &unknown, None).await;
    assert_eq!(status, 404, "{answer}");
    let writer = source.connect("postgres").await.unwrap();
    let (status, answer) = tokio::join!(
        send(reqwest::Method::POST, &snapshot, None),
        load(&writer, 700, 100)
    )
    .0;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(answer["rows"].as_u64().unwrap() > 19_000, "{answer}");
    load(&writer, 800, 50).await;
    wait_until_equal(&admin, &target).await;
    let applied =
        surefoot_pipeline_tests::applied::applied(copy.client(), "totals-mirror", "totals")
            .await
            .unwrap();
    assert_eq!(applied.overlapping, 0, "result diffs applied twice");
    let slots: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'surefoot_tmp%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "the snapshot's temporary slot is left");
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");
}

const LATE_SQL: &str = "SELECT o.id, o.amount FROM orders o WHERE o.amount > 50";

/// A query put in the file after its source was bootstrapped gets a snapshot of its own at
/// the next start, while a backlog waits in the slot and a writer keeps writing: its target
/// ends equal to the SQL's answer, each result change applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_added_to_the_file_later_gets_a_snapshot_of_its_own_at_start() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    admin
        .batch_execute(&format!("CREATE VIEW query.late AS {LATE_SQL}"))
        .await
        .unwrap();
    copy.batch_execute(
        "CREATE TABLE query.late (id int, amount int, \"_key.o.id\" int PRIMARY KEY)",
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = state.path().join("surefoot.yaml");
    let first = config(&source, &target, &state_dir, api_port);
    std::fs::write(&config_path, &first).unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    load(&admin, 0, 50).await;
    wait_until_equal(&admin, &target).await;
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");

    // A backlog in the slot, then the query in the file.
    load(&admin, 50, 50).await;
    let url = format!(
        "postgres://{}:${{TARGET_PASSWORD}}@{}:{}/target",
        target.user(),
        target.host(),
        target.port()
    );
    let second = first.replacen(
        "reactions:\n",
        &format!(
            "  - id: late\n    sql: \"{LATE_SQL}\"\nreactions:\n  - kind: postgres\n    id: late-mirror\n    from: late\n    url: {url}\n"
        ),
        1,
    );
    std::fs::write(&config_path, &second).unwrap();
    let child = start(&config_path);
    let writer = source.connect("postgres").await.unwrap();
    load(&writer, 100, 100).await;
    wait_until_ready(&api, true).await;
    wait_until_equal(&admin, &target).await;
    let copy_url = target.connection_string("target");
    let deadline = Instant::now() + BOUND;
    loop {
        let late = except_both_ways(
            admin.client(),
            &copy_url,
            "query.late",
            "id, amount",
            "id int, amount int",
        )
        .await
        .unwrap();
        if late.is_equal() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late query's mirror never matched: {late:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let applied = surefoot_pipeline_tests::applied::applied(copy.client(), "late-mirror", "late")
        .await
        .unwrap();
    assert_eq!(applied.overlapping, 0, "result diffs applied twice");
    assert!(
        !state_dir
            .join("queries")
            .join("late.snapshot-of-shop.pending")
            .exists(),
        "the snapshot is still marked under way"
    );
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");
    assert!(output.contains("taking a snapshot for it"), "{output}");
    assert!(
        output.contains("the new query's snapshot was delivered"),
        "{output}"
    );
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

async fn post(url: &str, token: &str) -> u16 {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Input batches the query has evaluated.
async fn processed(api: &str, id: &str) -> u64 {
    let (status, body) = get(&format!("{api}/api/v1/components"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let views: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    views
        .iter()
        .find(|view| view["id"] == id)
        .and_then(|view| view["processed"].as_u64())
        .unwrap()
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

/// A reaction PUT on the file's query is sent the current result (its table, holding a stale
/// row, is made exact) and then every change.
async fn reaction_added_to_a_running_query_gets_its_result_then_its_changes(
    api: &str,
    admin: &PgClient,
    copy: &PgClient,
    target: &PgServer,
    url: &str,
) {
    copy.batch_execute(&format!(
        "CREATE TABLE query.totals_copy ({TOTAL_TYPES}, \"_key.1\" text PRIMARY KEY);
         INSERT INTO query.totals_copy VALUES ('stale', 1, 1, 1, 'stale')"
    ))
    .await
    .unwrap();
    let reaction = format!("{api}/api/v1/reactions/totals-copy");
    let body = format!("kind: postgres\nfrom: totals\nurl: {url}\ntarget: query.totals_copy\n");
    let (status, answer) = send(reqwest::Method::PUT, &reaction, Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = send(reqwest::Method::PUT, &reaction, Some(&body)).await;
    assert_eq!(status, 409, "a second PUT of the same id");
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/reactions/other"),
        Some(&body.replace("from: totals", "from: nothing")),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("from: no query `nothing`"), "{answer}");
    let copy_url = target.connection_string("target");
    let matches = || async {
        except_both_ways(
            admin.client(),
            &copy_url,
            "query.totals",
            TOTAL_COLUMNS,
            TOTAL_TYPES,
        )
        .await
        .unwrap()
    };
    let copied = || rows_as_text(copy, "query.totals_copy");
    let expected = || rows_as_text(admin, "query.totals");
    for round in 0..2 {
        if round == 1 {
            load(admin, 600, 100).await;
        }
        let deadline = Instant::now() + BOUND;
        loop {
            if matches().await.is_equal() && copied().await == expected().await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the added reaction's table never matched (round {round})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let (status, _) = send(reqwest::Method::DELETE, &reaction, None).await;
    assert_eq!(status, 202);
    wait_for_no_task(api, "reaction-totals-copy").await;
}

/// A source PUT at runtime (another database) is read by a query PUT after it; the source
/// cannot be removed while the query reads it, and can once the query is gone.
async fn source_added_at_runtime_is_read_by_a_query_added_at_runtime(
    api: &str,
    source: &PgServer,
    copy: &PgClient,
    url: &str,
) {
    source.create_database("other").await.unwrap();
    let other = source.connect("other").await.unwrap();
    other
        .batch_execute(
            "CREATE TABLE things (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO things SELECT g, 'n' || g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    copy.batch_execute(
        "CREATE TABLE query.named (id int, name text, \"_key.t.id\" int PRIMARY KEY)",
    )
    .await
    .unwrap();
    let body = format!(
        "kind: postgres\nhost: {}\nport: {}\nuser: {}\ndatabase: other\ntables: [things]\n",
        source.host(),
        source.port(),
        source.user()
    );
    let added = format!("{api}/api/v1/sources/other");
    let (status, answer) = send(reqwest::Method::PUT, &added, Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = send(reqwest::Method::PUT, &added, Some(&body)).await;
    assert_eq!(status, 409, "a second PUT of the same id");
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/sources/broken"),
        Some("kind: postgres\nport: nine\n"),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let query = format!(
        "sql: \"SELECT t.id, t.name FROM things t WHERE t.id % 2 = 0\"\nsources: [other]\nreactions:\n  - kind: postgres\n    id: named-mirror\n    from: named\n    url: {url}\n"
    );
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/named"),
        Some(&query),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    other
        .batch_execute("INSERT INTO things SELECT g, 'm' || g FROM generate_series(501, 600) g; DELETE FROM things WHERE id < 50;")
        .await
        .unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let held: i64 = copy
            .query_one("SELECT count(*) FROM query.named", &[])
            .await
            .unwrap()
            .get(0);
        let wrong: i64 = copy
            .query_one(
                "SELECT count(*) FROM query.named WHERE id % 2 <> 0 OR id < 50 OR id > 600",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if held == 276 && wrong == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the added source's query never matched: {held} rows, {wrong} wrong"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, answer) = send(reqwest::Method::DELETE, &added, None).await;
    assert_eq!(status, 409, "removed while a query reads it: {answer}");
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/queries/named"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let (status, answer) = send(reqwest::Method::DELETE, &added, None).await;
    assert_eq!(status, 202, "{answer}");
    let (status, _) = get(&added, Some(TOKEN)).await;
    assert_eq!(status, 404);
    let (status, answer) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/sources/shop"),
        None,
    )
    .await;
    assert_eq!(status, 409, "a source of the file: {answer}");
}

/// The rows of `table` (the totals' columns) as text, sorted.
async fn rows_as_text(client: &PgClient, table: &str) -> Vec<String> {
    let query = format!("SELECT ({TOTAL_COLUMNS})::text FROM {table}");
    let rows = client.query(query.as_str(), &[]).await.unwrap();
    let mut rows: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    rows.sort();
    rows
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

async fn send(method: reqwest::Method, url: &str, body: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Waits until no live task's name contains `fragment`.
async fn wait_for_no_task(api: &str, fragment: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&format!("{api}/api/v1/tasks"), Some(TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        let tasks: Vec<String> = serde_json::from_str(&body).unwrap();
        if !tasks.iter().any(|task| task.contains(fragment)) {
            return;
        }
        assert!(Instant::now() < deadline, "tasks left: {tasks:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const BIG_SQL: &str = "SELECT o.id, o.amount, c.region FROM orders o JOIN customers c \
     ON o.customer = c.id WHERE o.amount > 50";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_added_at_runtime_bootstraps_and_streams_and_removed_components_leave_no_task() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    admin
        .batch_execute(&format!("CREATE VIEW query.big AS {BIG_SQL}"))
        .await
        .unwrap();
    copy.batch_execute(
        "CREATE TABLE query.big (id int, amount int, region text, \"_key.o.id\" int, \
         \"_key.c.id\" int, PRIMARY KEY (\"_key.o.id\", \"_key.c.id\"))",
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = state.path().join("surefoot.yaml");
    std::fs::write(
        &config_path,
        config(&source, &target, &state.path().join("state"), api_port),
    )
    .unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    load(&admin, 0, 100).await;

    // Refused like the file would be, with the path of each problem.
    let (status, body) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/bad"),
        Some("sql: SELECT id FROM orders ORDER BY id\ncolour: red\n"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("colour: unknown field"), "{body}");

    let url = format!(
        "postgres://{}:${{TARGET_PASSWORD}}@{}:{}/target",
        target.user(),
        target.host(),
        target.port()
    );
    let body = format!(
        "sql: \"{BIG_SQL}\"\nreactions:\n  - kind: postgres\n    id: big-mirror\n    from: big\n    url: {url}\n    target: query.big\n"
    );
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/big"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/big"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 409, "a second PUT of the same id");
    load(&admin, 100, 200).await;
    let copy_url = target.connection_string("target");
    let deadline = Instant::now() + BOUND;
    loop {
        let big = except_both_ways(
            admin.client(),
            &copy_url,
            "query.big",
            "id, amount, region",
            "id int, amount int, region text",
        )
        .await
        .unwrap();
        if big.is_equal() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the added query's mirror never matched: {big:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, description) = get(&format!("{api}/api/v1/queries/big"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{description}");
    assert!(description.contains("\"runtime\":true"), "{description}");
    let (_, reaction) = get(&format!("{api}/api/v1/reactions/big-mirror"), Some(TOKEN)).await;
    assert_no_secrets(&reaction, "a reaction's description");

    reaction_added_to_a_running_query_gets_its_result_then_its_changes(
        &api, &admin, &copy, &target, &url,
    )
    .await;

    source_added_at_runtime_is_read_by_a_query_added_at_runtime(&api, &source, &copy, &url).await;

    // Removed: the reaction's task ends, then the query's and its temporary slot's.
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/reactions/big-mirror"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for_no_task(&api, "reaction-big-mirror").await;
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/queries/big"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for_no_task(&api, "query-big").await;
    wait_for_no_task(&api, "for-big").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let slots: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'surefoot_tmp%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if slots == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the temporary slot stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(&format!("{api}/api/v1/queries/big"), Some(TOKEN))
            .await
            .0,
        404
    );

    // A source stopped through the API lets go of its slot; started, it streams what was
    // written meanwhile.
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{api}/api/v1/sources/shop/stop"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let active: bool = admin
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'surefoot_shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!active, "the stopped source still holds its slot");
    load(&admin, 400, 50).await;
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{api}/api/v1/sources/shop/start"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A reaction of the file removed; the rest keeps running.
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/reactions/tables-mirror"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for_no_task(&api, "reaction-tables-mirror").await;
    load(&admin, 300, 100).await;
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
        if totals.is_equal() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query's mirror stopped: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "exit status {status:?}\n{output}");
    assert_no_secrets(&output, "the server's output");
}
