//! An HTTP source in the file: a post is answered `200` only once its changes are in every
//! target (the query's mirror and the table's), so the targets can be read right after the
//! answer; a post without the token is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use surefoot_test_support::PgServer;
use tokio::process::Command;

const TOKEN: &str = "http-token-0123456789ab";
const API_TOKEN: &str = "api-token-0123456789abc";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn post(url: &str, token: Option<&str>, body: String) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-ndjson")
        .timeout(Duration::from_secs(30))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_post_is_answered_200_only_once_its_changes_are_in_every_target() {
    let target = PgServer::new().await.unwrap();
    target.create_database("target").await.unwrap();
    let copy = target.connect("target").await.unwrap();
    copy.batch_execute(
        "CREATE TABLE clicks (id bigint PRIMARY KEY, page text NOT NULL, ms bigint NOT NULL);
         CREATE SCHEMA query;
         CREATE TABLE query.views (page text, views bigint, \"_key.1\" text PRIMARY KEY);",
    )
    .await
    .unwrap();
    let (http_port, api_port) = (free_port(), free_port());
    let state = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://{}@127.0.0.1:{}/target",
        target.user(),
        target.port()
    );
    let config = format!(
        "state_dir: {state}
sources:
  - kind: http
    id: web
    listen: 127.0.0.1:{http_port}
    tokens: [\"{TOKEN}\"]
    tables:
      - name: public.clicks
        columns: [id, page, ms]
        key: [id]
queries:
  - id: views
    sql: SELECT page, count(*) AS views FROM clicks GROUP BY page
reactions:
  - kind: postgres
    id: views-mirror
    from: views
    url: {url}
  - kind: postgres
    id: clicks-mirror
    from: web
    url: {url}
api:
  listen: 127.0.0.1:{api_port}
  tokens: [\"{API_TOKEN}\"]
",
        state = state.path().join("state").display()
    );
    let path = state.path().join("surefoot.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_surefoot"))
        .args(["run", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{api_port}/health/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answered = reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let batches = format!("http://127.0.0.1:{http_port}/v1/batches");
    let click = |id: i64| {
        format!(
            r#"{{"table":"public.clicks","op":"insert","after":{{"id":{id},"page":"p{}","ms":{id}}}}}"#,
            id % 5
        )
    };
    assert_eq!(post(&batches, None, click(0)).await, 401, "no token");
    for request in 0..10 {
        let body: Vec<String> = (request * 20..request * 20 + 20).map(click).collect();
        assert_eq!(
            post(&batches, Some(TOKEN), body.join("\n") + "\n").await,
            200
        );
        // Answered: both targets hold the request's changes already.
        let rows: i64 = copy
            .query_one("SELECT count(*) FROM clicks", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, (request + 1) * 20);
        let views: i64 = copy
            .query_one(
                "SELECT coalesce(sum(views), 0)::bigint FROM query.views",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(views, (request + 1) * 20);
    }
    let delete = r#"{"table":"public.clicks","op":"delete","key":{"id":1}}"#.to_owned();
    assert_eq!(post(&batches, Some(TOKEN), delete + "\n").await, 200);
    let p1: i64 = copy
        .query_one("SELECT views FROM query.views WHERE page = 'p1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(p1, 39, "the delete is in the query's mirror when answered");

    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
