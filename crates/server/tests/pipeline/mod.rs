//! What the tests that run the `surefoot` binary share: the throwaway servers' tables, the
//! config file, starting and stopping the binary, the API and the checks of the targets.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

mod snapshots;
// Each test binary uses part of it (as for the items above).
#[allow(unused_imports)]
pub(crate) use snapshots::*;

pub(crate) const TOKEN: &str = "api-token-7f3a9c1e5b2d4f60";
pub(crate) const HOOK_TOKEN: &str = "hook-path-token-5c8e1a";
pub(crate) const TARGET_PASSWORD: &str = "target-pass-Q8w2e4r6";
pub(crate) const BOUND: Duration = Duration::from_secs(120);

pub(crate) const SQL: &str = "SELECT c.region, count(*) AS orders, sum(o.amount) AS total, \
     max(o.amount) AS largest FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region";
pub(crate) const TOTAL_COLUMNS: &str = "region, orders, total, largest";
pub(crate) const TOTAL_TYPES: &str = "region text, orders bigint, total bigint, largest bigint";

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn config(source: &PgServer, target: &PgServer, state: &Path, api_port: u16) -> String {
    config_with(source, target, state, api_port, "")
}

/// The config with `extra` appended to its reactions.
pub(crate) fn config_with(
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

pub(crate) async fn prepare(source: &PgServer, target: &PgServer) -> (PgClient, PgClient) {
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

pub(crate) fn start(config_path: &Path) -> Child {
    start_with(config_path, &[])
}

pub(crate) fn start_with(config_path: &Path, env: &[(&str, &str)]) -> Child {
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
pub(crate) async fn terminate(
    mut child: Child,
    bound: Duration,
) -> (std::process::ExitStatus, String) {
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

pub(crate) async fn get(url: &str, token: Option<&str>) -> (u16, String) {
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

pub(crate) async fn wait_until_ready(api: &str, want: bool) {
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
pub(crate) async fn wait_until_equal(admin: &PgClient, target: &PgServer) {
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
pub(crate) async fn load(client: &PgClient, from: i32, count: i32) {
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

pub(crate) fn assert_no_secrets(text: &str, what: &str) {
    for secret in [TOKEN, TARGET_PASSWORD, HOOK_TOKEN] {
        assert!(!text.contains(secret), "a secret appears in {what}");
    }
}

pub(crate) async fn post(url: &str, token: &str) -> u16 {
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
pub(crate) async fn processed(api: &str, id: &str) -> u64 {
    let (status, body) = get(&format!("{api}/api/v1/components"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let views: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    views
        .iter()
        .find(|view| view["id"] == id)
        .and_then(|view| view["processed"].as_u64())
        .unwrap()
}

pub(crate) async fn send(method: reqwest::Method, url: &str, body: Option<&str>) -> (u16, String) {
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
pub(crate) async fn wait_for_no_task(api: &str, fragment: &str) {
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
