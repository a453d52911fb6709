//! Issue 14, X-8: a snapshot over TLS against a server from `surefoot-test-support` serving a
//! certificate for `localhost` signed by a throwaway authority. Before, the snapshot connection
//! was plain (`NoTls`) whatever the source's settings, and the replication session had no TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{create_items, source_config};
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass};
use surefoot_core_model::{SnapshotRequest, batch_channel};
use surefoot_pg_tls::{PgTls, TlsFailure};
use surefoot_test_support::PgServer;

const ROWS: i32 = 1_000;

fn request() -> SnapshotRequest {
    SnapshotRequest {
        consumer: "tls".to_owned(),
        tables: Vec::new(),
    }
}

/// The bootstrap's backends (snapshot and replication session) connected with and without TLS.
async fn bootstrap_backends(admin: &surefoot_test_support::PgClient) -> (i64, i64) {
    let sql = "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
               WHERE a.application_name LIKE 'surefoot-%-bootstrap%'";
    let row = admin.query_one(sql, &[]).await.unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn x_8_a_snapshot_over_verify_full_copies_every_row_on_encrypted_connections() {
    let server = PgServer::builder().tls().start().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, ROWS).await;
    let mut config = source_config(&server, "tls");
    config.host = "localhost".into();
    config.tls = PgTls::verify_full(server.ca_cert().unwrap());
    // Batches of 10 into a channel of 4: the copy is still waiting when the first is taken.
    let bootstrap = BootstrapConfig {
        batch_changes: 10,
        ..BootstrapConfig::default()
    };
    let provider = PostgresProvider::first_start(config, bootstrap).unwrap();
    let (output, mut batches) = batch_channel(4);
    let cancel = CancellationToken::new();
    let exporting = async {
        let exported = provider.export(&request(), &output, &cancel).await;
        drop(output);
        exported
    };
    let receiving = async {
        let mut rows = 0;
        let mut during = None;
        while let Some(batch) = batches.recv().await {
            if during.is_none() {
                // The copy waits for room: both connections are open now.
                during = Some(bootstrap_backends(&admin).await);
            }
            rows += batch.changes.len();
            batch.ack.delivered();
        }
        (rows, during)
    };
    let (exported, (rows, during)) = tokio::join!(exporting, receiving);
    let exported = exported.unwrap();
    assert_eq!((rows, exported.complete.rows), (ROWS as usize, ROWS as u64));
    assert_eq!(
        during,
        Some((2, 0)),
        "snapshot and replication session on TLS"
    );
    exported.slot.close();
}

#[tokio::test]
async fn x_8_a_snapshot_refuses_a_host_the_certificate_does_not_name_as_a_configuration_error() {
    let server = PgServer::builder().tls().start().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    create_items(&admin, ROWS).await;
    let mut config = source_config(&server, "tls_wrong_host");
    config.host = "127.0.0.1".into();
    config.tls = PgTls::verify_full(server.ca_cert().unwrap());
    let provider = PostgresProvider::first_start(config, BootstrapConfig::default()).unwrap();
    let (output, _batches) = batch_channel(4);
    let cancel = CancellationToken::new();
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        provider.export(&request(), &output, &cancel),
    )
    .await
    .expect("the snapshot did not fail within 30 s")
    .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration, "{error:?}");
    let failure = TlsFailure::find(&error);
    assert!(
        matches!(failure, Some(TlsFailure::WrongHost { .. })),
        "{failure:?} in {error:?}"
    );
}
