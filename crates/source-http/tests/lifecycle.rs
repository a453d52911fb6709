#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! Start binds first and leaves nothing behind when it cannot (FINDINGS D-H2); stop closes
//! the listener, finishes requests in flight, flushes the batcher and ends with zero tasks.

mod common;

use std::error::Error as _;
use std::time::Duration;

use common::{BOUND, Consumer, array, client, insert, loopback_config, start, url};
use surefoot_core_lifecycle::Status;
use surefoot_core_model::{Source, batch_channel};
use surefoot_source_http::{AckMode, HttpSource, HttpSourceError};

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "current_thread")]
async fn d_h2_start_on_an_occupied_port_fails_naming_the_address_and_leaves_no_task() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap();
    let mut config = loopback_config("occupied");
    config.bind = taken;
    let (output, mut batches) = batch_channel(4);
    let source = HttpSource::new(config, output).unwrap();
    let before = alive_tasks();

    let error = source.start().await.unwrap_err();

    let mut found = None;
    let mut cause = error.source();
    while let Some(current) = cause {
        if let Some(HttpSourceError::Bind { addr, source }) = current.downcast_ref() {
            found = Some((*addr, source.kind()));
        }
        cause = current.source();
    }
    assert_eq!(
        found,
        Some((taken, std::io::ErrorKind::AddrInUse)),
        "{error:?}"
    );
    let chain = format!("{:?}", error);
    assert!(
        chain.contains(&taken.to_string()),
        "address not named: {chain}"
    );
    assert_eq!(source.status(), Status::Failed);
    assert_eq!(source.live_tasks(), 0);
    assert!(source.component().supervisor().is_none());
    assert_eq!(alive_tasks(), before, "a task outlived the failed start");
    assert!(source.local_addr().is_none());

    // Once the port is free, the same source starts and serves.
    drop(blocker);
    source.start().await.unwrap();
    assert_eq!(source.status(), Status::Running);
    assert_eq!(source.local_addr(), Some(taken));
    let posted = tokio::join!(
        client()
            .post(format!("{}/v1/changes", url(&source)))
            .header("content-type", "application/json")
            .body(insert("a"))
            .send(),
        async {
            let batch = batches.recv().await.unwrap();
            batch.ack.delivered();
        }
    );
    assert_eq!(posted.0.unwrap().status(), 200);
    source.stop(BOUND).await.unwrap();
    assert_eq!(source.live_tasks(), 0);

    // The source holds the only sender: dropping it closes the output, so no task kept one.
    drop(source);
    assert!(batches.recv().await.is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn d_h2_a_second_source_on_a_free_port_starts_after_one_failed() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = loopback_config("first");
    config.bind = blocker.local_addr().unwrap();
    let (output, _batches) = batch_channel(4);
    let failed = HttpSource::new(config, output).unwrap();
    failed.start().await.unwrap_err();
    assert_eq!(failed.live_tasks(), 0);

    let (second, batches) = start(loopback_config("second"), 4).await;
    let consumer = Consumer::start(batches, |_| false);
    let response = client()
        .post(format!("{}/v1/batches", url(&second)))
        .header("content-type", "application/json")
        .body(array(&["x".to_owned(), "y".to_owned()]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(consumer.has_all(&["x".to_owned(), "y".to_owned()]));
    second.stop(BOUND).await.unwrap();
    assert_eq!(second.live_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_finishes_requests_in_flight_and_ends_with_zero_tasks() {
    let (source, mut batches) = start(loopback_config("stop"), 4).await;
    let base = url(&source);
    let http = client();
    let request = http
        .post(format!("{base}/v1/changes"))
        .header("content-type", "application/json")
        .body(insert("in-flight"))
        .send();
    // The consumer settles only once the stop has begun.
    let (response, ()) = tokio::join!(request, async {
        let batch = batches.recv().await.unwrap();
        let stopping = source.stop(BOUND);
        let settle = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            batch.ack.delivered();
        };
        let (stopped, ()) = tokio::join!(stopping, settle);
        stopped.unwrap();
    });
    assert_eq!(
        response.unwrap().status(),
        200,
        "request in flight not finished"
    );
    assert_eq!(source.status(), Status::Stopped);
    assert_eq!(source.live_tasks(), 0);
    let refused = http
        .post(format!("{base}/v1/changes"))
        .header("content-type", "application/json")
        .body(insert("late"))
        .send()
        .await;
    assert!(refused.is_err(), "the listener is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flushes_changes_queued_in_async_mode() {
    let mut config = loopback_config("flush");
    config.ack_mode = AckMode::Async;
    let (source, mut batches) = start(config, 1).await;
    let http = client();
    let mut ids = Vec::new();
    // The output holds one batch and nobody reads it: later requests wait in the batcher.
    for n in 0..5 {
        let id = format!("queued-{n}");
        let response = http
            .post(format!("{}/v1/changes", url(&source)))
            .header("content-type", "application/json")
            .body(insert(&id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        ids.push(id);
    }
    let consumer_side = async {
        let mut seen = Vec::new();
        while let Some(batch) = batches.recv().await {
            seen.extend(batch.changes.iter().map(|c| common::id_of(&c.operation)));
            batch.ack.delivered();
        }
        seen
    };
    let stop = async {
        source.stop(BOUND).await.unwrap();
        drop(source);
    };
    let ((), seen) = tokio::join!(stop, consumer_side);
    assert_eq!(seen, ids, "queued changes not flushed in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_keep_growing_across_restarts_and_new_processes() {
    async fn post_one(
        source: &HttpSource,
        batches: &mut surefoot_core_model::BatchReceiver,
    ) -> u64 {
        let (response, position) = tokio::join!(
            client()
                .post(format!("{}/v1/changes", url(source)))
                .header("content-type", "application/json")
                .body(insert("p"))
                .send(),
            async {
                let batch = batches.recv().await.unwrap();
                let position = batch.first;
                batch.ack.delivered();
                position
            }
        );
        assert_eq!(response.unwrap().status(), 200);
        match position {
            surefoot_core_model::Position::Sequence(sequence) => sequence,
            other => panic!("not a sequence: {other:?}"),
        }
    }
    let (first, mut first_batches) = start(loopback_config("positions"), 4).await;
    let before = post_one(&first, &mut first_batches).await;
    first.stop(BOUND).await.unwrap();
    first.start().await.unwrap();
    let restarted = post_one(&first, &mut first_batches).await;
    assert!(restarted > before, "{restarted} after {before}");
    first.stop(BOUND).await.unwrap();
    // A new instance (as after a process restart) starts above everything handed out before.
    let (second, mut second_batches) = start(loopback_config("positions"), 4).await;
    let fresh = post_one(&second, &mut second_batches).await;
    assert!(fresh > restarted, "{fresh} after {restarted}");
    second.stop(BOUND).await.unwrap();
}
