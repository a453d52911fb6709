//! Issue 14, X-8: the source over TLS against a server from `surefoot-test-support` that serves a
//! certificate for `localhost` signed by a throwaway authority. Before, both of the source's
//! connections were plain (`NoTls`, pgwire-replication without TLS): a server that requires TLS
//! refused them, and `verify-full` could not be asked for.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{Source, Value, batch_channel};
use surefoot_pg_tls::{PgTls, TlsFailure};
use surefoot_source_postgres::PostgresSource;
use surefoot_test_support::PgServer;

mod common;
use common::{next_batch, source_config};

/// Every backend of the source (SQL and walsender) that is connected without TLS.
const PLAIN_BACKENDS: &str =
    "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
     WHERE a.application_name LIKE 'surefoot-tls%' AND NOT s.ssl";

/// The source's walsender connected with TLS.
const TLS_WALSENDERS: &str =
    "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)
     WHERE r.application_name LIKE 'surefoot-tls%' AND s.ssl";

#[tokio::test]
async fn x_8_replication_over_verify_full_streams_a_change() {
    let server = PgServer::builder().tls().start().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY)")
        .await
        .unwrap();
    let mut config = source_config(&server, "tls");
    config.host = "localhost".into();
    config.tls = PgTls::verify_full(server.ca_cert().unwrap());
    let (output, mut batches) = batch_channel(16);
    let source = PostgresSource::new(config, output).unwrap();
    source.start().await.unwrap();

    admin
        .batch_execute("INSERT INTO items VALUES (7)")
        .await
        .unwrap();
    let batch = next_batch(&mut batches).await;
    let after = batch.changes[0].after().unwrap();
    assert_eq!(after.get("id"), Some(&Value::Int32(7)));
    let encrypted: i64 = admin.query_one(TLS_WALSENDERS, &[]).await.unwrap().get(0);
    let plain: i64 = admin.query_one(PLAIN_BACKENDS, &[]).await.unwrap().get(0);
    assert_eq!(
        (encrypted, plain),
        (1, 0),
        "walsenders on TLS, backends in plain"
    );
    batch.ack.delivered();
    source.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn x_8_verify_full_refuses_a_host_the_certificate_does_not_name_as_a_configuration_error() {
    let server = PgServer::builder().tls().start().await.unwrap();
    // The certificate names `localhost`; the address is not in it.
    let mut config = source_config(&server, "tls_wrong_host");
    config.host = "127.0.0.1".into();
    config.tls = PgTls::verify_full(server.ca_cert().unwrap());
    let (output, _batches) = batch_channel(16);
    let source = PostgresSource::new(config, output).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), source.start())
        .await
        .expect("start did not fail within 30 s")
        .unwrap_err();
    // Retrying cannot fix a certificate: the caller is told at once, not after a retry budget.
    assert_eq!(error.class(), ErrorClass::Configuration, "{error:?}");
    let failure = TlsFailure::find(&error);
    assert!(
        matches!(failure, Some(TlsFailure::WrongHost { .. })),
        "{failure:?} in {error:?}"
    );
}

#[tokio::test]
async fn x_8_an_unreadable_root_certificate_is_a_configuration_error() {
    let server = PgServer::new().await.unwrap();
    let mut config = source_config(&server, "tls_no_root");
    config.tls = PgTls::verify_full("/nonexistent/surefoot/root.crt");
    let (output, _batches) = batch_channel(16);
    let source = PostgresSource::new(config, output).unwrap();
    let error = source.start().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration, "{error:?}");
}
