//! Faults during a PostgreSQL snapshot: a black-holed connection mid-COPY (D-M1), a
//! cancellation mid-COPY, a missing table, a leftover slot. Each must end with a typed error or a
//! clean result and leave nothing behind: no backend, no temporary slot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{BOUND, client_backends, create_items, slots_like, source_config};
use surefoot_bootstrap::{BootstrapConfig, BootstrapError, PostgresProvider, Step};
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass, Status};
use surefoot_core_model::{BatchReceiver, SnapshotRequest, Source, TableRef, batch_channel};
use surefoot_source_postgres::{PostgresSource, SlotName};
use surefoot_test_support::{FaultProxy, PgClient, PgServer};

fn request(tables: Vec<TableRef>) -> SnapshotRequest {
    SnapshotRequest {
        consumer: "faults".to_owned(),
        tables,
    }
}

/// Waits (bounded) until only `baseline` client backends and walsenders remain and no slot
/// starting with `slot` exists.
async fn wait_released(admin: &PgClient, baseline: i64, slot: &str) {
    let deadline = Instant::now() + BOUND;
    loop {
        let backends = client_backends(admin).await;
        let slots = slots_like(admin, slot).await;
        if backends == baseline && slots == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {backends} backends (baseline {baseline}) and {slots} slots"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Receives the first batch, runs `fault`, then drains until the provider closes the channel;
/// returns when the fault was injected.
async fn fault_after_first_batch(batches: &mut BatchReceiver, fault: impl FnOnce()) -> Instant {
    let first = tokio::time::timeout(BOUND, batches.recv()).await.unwrap();
    assert!(first.is_some(), "no snapshot batch before the fault");
    fault();
    let injected = Instant::now();
    while batches.recv().await.is_some() {}
    injected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_m1_a_black_holed_copy_is_a_chunk_timeout_and_leaves_no_backend_and_no_slot() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 100_000).await;
    // 20 MB of rows: far more than the socket buffers and the read-ahead hold, so the COPY is
    // certainly in the middle when the network goes silent.
    admin
        .batch_execute("ALTER TABLE items ADD COLUMN pad text NOT NULL DEFAULT repeat('x', 200)")
        .await
        .unwrap();
    let upstream = SocketAddr::from(([127, 0, 0, 1], server.port()));
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let mut sql = server.config_at("postgres", proxy.listen_addr());
    sql.application_name("surefoot-d-m1-bootstrap");
    let config = BootstrapConfig {
        chunk_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(5),
        ..BootstrapConfig::default()
    };
    let slot = "d_m1_temporary_slot";
    let provider = PostgresProvider::added_consumer(
        source_config(&server, "d_m1"),
        SlotName::parse(slot).unwrap(),
        config.clone(),
    )
    .unwrap()
    .with_sql_config(sql);
    let baseline = client_backends(&admin).await;

    let (output, mut batches) = batch_channel(2);
    let cancel = CancellationToken::new();
    let export = async {
        let result = provider
            .export(&request(Vec::new()), &output, &cancel)
            .await;
        drop(output);
        (result, Instant::now())
    };
    let ((result, failed_at), injected) = tokio::join!(
        export,
        fault_after_first_batch(&mut batches, || proxy.black_hole())
    );
    let error = result.unwrap_err();
    let elapsed = failed_at - injected;
    eprintln!("chunk timeout reported {elapsed:?} after the black hole");
    assert!(
        matches!(error, BootstrapError::Timeout { step: Step::Chunk, limit } if limit == config.chunk_timeout),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "bootstrap step `chunk` timed out after 1s"
    );
    assert_eq!(error.class(), ErrorClass::Timeout);
    assert!(
        elapsed < config.chunk_timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );

    // The temporary slot went with the replication session at once; the copying backend goes
    // once the network lets the close through.
    proxy.heal();
    wait_released(&admin, baseline, slot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_copy_stops_promptly_and_releases_the_connection_snapshot_and_slot() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 100_000).await;
    let slot = "cancelled_temporary_slot";
    let provider = PostgresProvider::added_consumer(
        source_config(&server, "cancelled"),
        SlotName::parse(slot).unwrap(),
        BootstrapConfig::default(),
    )
    .unwrap();
    let baseline = client_backends(&admin).await;
    let (output, mut batches) = batch_channel(2);
    let cancel = CancellationToken::new();
    let export = async {
        let result = provider
            .export(&request(Vec::new()), &output, &cancel)
            .await;
        drop(output);
        (result, Instant::now())
    };
    let ((result, stopped_at), cancelled_at) = tokio::join!(
        export,
        fault_after_first_batch(&mut batches, || cancel.cancel())
    );
    let error = result.unwrap_err();
    assert!(matches!(error, BootstrapError::Cancelled), "{error:?}");
    assert!(
        stopped_at - cancelled_at < Duration::from_secs(1),
        "{:?}",
        stopped_at - cancelled_at
    );
    wait_released(&admin, baseline, slot).await;
}

#[tokio::test]
async fn a_missing_table_fails_the_snapshot_and_leaves_no_slot() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 10).await;
    let slot = "missing_table_slot";
    let provider = PostgresProvider::added_consumer(
        source_config(&server, "missing"),
        SlotName::parse(slot).unwrap(),
        BootstrapConfig::default(),
    )
    .unwrap();
    let baseline = client_backends(&admin).await;
    let (output, mut batches) = batch_channel(2);
    let tables = vec![
        TableRef::new("public", "items"),
        TableRef::new("public", "nope"),
    ];
    let cancel = CancellationToken::new();
    let export = async {
        let result = provider.export(&request(tables), &output, &cancel).await;
        drop(output);
        result
    };
    let drain = async { while batches.recv().await.is_some() {} };
    let (result, ()) = tokio::join!(export, drain);
    let error = result.unwrap_err();
    assert!(
        matches!(&error, BootstrapError::NoSuchTable { table } if table == "public.nope"),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    wait_released(&admin, baseline, slot).await;
}

#[tokio::test]
async fn first_start_replaces_a_slot_left_by_an_incomplete_snapshot_but_not_one_in_use() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 10).await;
    let config = source_config(&server, "leftover");
    admin
        .execute(
            "SELECT pg_create_logical_replication_slot('leftover_slot', 'pgoutput')",
            &[],
        )
        .await
        .unwrap();
    let old: String = admin
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'leftover_slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute("INSERT INTO items VALUES (11, 11)")
        .await
        .unwrap();
    let provider =
        PostgresProvider::first_start(config.clone(), BootstrapConfig::default()).unwrap();
    let (output, mut batches) = batch_channel(16);
    let cancel = CancellationToken::new();
    let exported = provider
        .export(&request(Vec::new()), &output, &cancel)
        .await
        .unwrap();
    drop(output);
    let mut rows = 0;
    while let Some(batch) = batches.recv().await {
        rows += batch.changes.len();
        batch.ack.delivered();
    }
    assert_eq!(rows, 11);
    assert_eq!(exported.complete.rows, 11);
    let point = exported.slot.consistent_point();
    assert_ne!(point.to_string(), old, "the slot was created anew");

    exported.slot.close();

    // A slot a source streams from is in use: a first start refuses to touch it.
    let (stream_out, _stream_in) = batch_channel(16);
    let source = PostgresSource::new(config, stream_out).unwrap();
    source.start().await.unwrap();
    let deadline = Instant::now() + BOUND;
    while !slot_active(&admin, "leftover_slot").await {
        assert!(Instant::now() < deadline, "the source never took its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (output, _batches) = batch_channel(16);
    let error = provider
        .export(&request(Vec::new()), &output, &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::Replication {
                operation: "create replication slot",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    source.stop(Duration::from_secs(10)).await.unwrap();
}

async fn slot_active(admin: &PgClient, slot: &str) -> bool {
    admin
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_consumer_whose_slot_session_breaks_fails_rather_than_stream_from_elsewhere() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 10).await;
    let config = source_config(&server, "broken");
    let slot = SlotName::parse("broken_late_slot").unwrap();
    let provider =
        PostgresProvider::added_consumer(config.clone(), slot.clone(), BootstrapConfig::default())
            .unwrap();
    let (output, mut batches) = batch_channel(16);
    let cancel = CancellationToken::new();
    let exported = provider
        .export(&request(Vec::new()), &output, &cancel)
        .await
        .unwrap();
    drop(output);
    while let Some(batch) = batches.recv().await {
        batch.ack.delivered();
    }
    assert_eq!(exported.complete.rows, 10);
    let mut late_config = config;
    late_config.slot = slot.clone();
    let (late_out, _late_in) = batch_channel(16);
    let late =
        PostgresSource::with_connector(late_config, late_out, exported.slot.into_connector());
    late.start().await.unwrap();
    let deadline = Instant::now() + BOUND;
    while !slot_active(&admin, slot.as_str()).await {
        assert!(Instant::now() < deadline, "the late stream never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    admin
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot.as_str()],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + BOUND;
    while late.status() != Status::Failed {
        assert!(
            Instant::now() < deadline,
            "the late consumer's source is {:?}, not failed",
            late.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(slots_like(&admin, slot.as_str()).await, 0);
    // Releasing what the failed source still holds; the failure above is what is checked.
    late.stop(Duration::from_secs(10)).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_outlasts_the_statement_timeout_still_completes() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 20_000).await;
    // 20 MB of rows: more than socket buffers hold, so the server's COPY waits for the consumer.
    admin
        .batch_execute("ALTER TABLE items ADD COLUMN pad text NOT NULL DEFAULT repeat('x', 1000)")
        .await
        .unwrap();
    let config = BootstrapConfig {
        statement_timeout: Duration::from_secs(1),
        batch_changes: 100,
        ..BootstrapConfig::default()
    };
    let provider = PostgresProvider::added_consumer(
        source_config(&server, "long_copy"),
        SlotName::parse("long_copy_slot").unwrap(),
        config,
    )
    .unwrap();
    let (output, mut batches) = batch_channel(1);
    let cancel = CancellationToken::new();
    let export = async {
        let result = provider
            .export(&request(Vec::new()), &output, &cancel)
            .await;
        drop(output);
        result
    };
    // A slow consumer: it holds the copy (and so the COPY statement on the server) for longer
    // than the statement timeout.
    let slow = async {
        let mut rows = 0;
        let mut first = true;
        while let Some(batch) = batches.recv().await {
            rows += batch.changes.len();
            if first {
                first = false;
                tokio::time::sleep(Duration::from_millis(2_500)).await;
            }
        }
        rows
    };
    let (result, rows) = tokio::join!(export, slow);
    let exported = result.unwrap();
    assert_eq!(rows, 20_000);
    assert_eq!(exported.complete.rows, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_m1_slot_creation_held_up_by_a_running_transaction_is_a_statement_timeout() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, 10).await;
    // Creating a slot waits until the transactions running at that moment have ended.
    let blocker = server.connect("postgres").await.unwrap();
    blocker
        .batch_execute("BEGIN; INSERT INTO items VALUES (11, 11);")
        .await
        .unwrap();
    let config = BootstrapConfig {
        statement_timeout: Duration::from_secs(1),
        ..BootstrapConfig::default()
    };
    let slot = "held_up_slot";
    let provider = PostgresProvider::added_consumer(
        source_config(&server, "held_up"),
        SlotName::parse(slot).unwrap(),
        config.clone(),
    )
    .unwrap();
    let baseline = client_backends(&admin).await;
    let (output, _batches) = batch_channel(2);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let error = provider
        .export(&request(Vec::new()), &output, &cancel)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, BootstrapError::Timeout { step: Step::Statement, limit } if limit == config.statement_timeout),
        "{error:?}"
    );
    // Connecting, preparing and the slot's statement each have their own limit.
    assert!(
        elapsed < config.statement_timeout + Duration::from_secs(1) + config.connect_timeout,
        "{elapsed:?}"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    wait_released(&admin, baseline, slot).await;
}
