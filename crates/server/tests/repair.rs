//! Repairs with the real `surefoot` binary: dead letters replayed once their cause is fixed, a
//! snapshot on demand for a target that drifted, and a snapshot of its own for a query new to
//! the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod pipeline;

use std::time::{Duration, Instant};

use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::PgServer;

use pipeline::*;

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
    assert_applied_once_and_no_temporary_slot(&admin, &copy).await;
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
