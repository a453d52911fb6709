//! A snapshot on demand whose attempts fail (the server has no replication slot free for its
//! temporary slot) is taken again until it completes, while writes go on, and the source does
//! not stream from its old watermark meanwhile: once a slot is free the target ends equal, each
//! result diff applied once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod pipeline;

use std::time::{Duration, Instant};

use surefoot_test_support::PgServer;

use pipeline::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_on_demand_is_taken_again_until_it_completes() {
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
    copy.batch_execute("DELETE FROM orders WHERE id % 10 = 0")
        .await
        .unwrap();
    assert!(!orders_equal(&admin, &target).await, "the target drifted");

    let fillers = fill_replication_slots(&admin).await;
    let asking = reqwest::Client::new()
        .post(format!("{api}/api/v1/sources/shop/snapshot"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(180))
        .send();
    let writer = source.connect("postgres").await.unwrap();
    let freeing = async {
        let deadline = Instant::now() + BOUND;
        loop {
            let detail = source_detail(&api, "shop").await;
            if detail.contains("snapshot on demand, attempt 2") {
                break;
            }
            assert!(Instant::now() < deadline, "no second attempt: {detail}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Written while no attempt can complete: they reach the target only in the snapshot
        // that finally does, or in the stream after it.
        load(&writer, 700, 100).await;
        assert!(
            !orders_equal(&admin, &target).await,
            "repaired without a snapshot"
        );
        admin
            .execute(
                "SELECT pg_drop_replication_slot($1)",
                &[&fillers[0].as_str()],
            )
            .await
            .unwrap();
    };
    let (asked, ()) = tokio::join!(asking, freeing);

    let answer = asked.unwrap();
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(body["rows"].as_u64().unwrap() > 19_000, "{body}");
    load(&writer, 800, 50).await;
    wait_until_equal(&admin, &target).await;
    assert_applied_once_and_no_temporary_slot(&admin, &copy).await;
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("snapshot on demand failed; taking it again before streaming"),
        "the failed attempts are logged"
    );
}
