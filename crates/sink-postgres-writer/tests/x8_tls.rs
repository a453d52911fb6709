//! Issue 14, X-8: the writer's `database_url` takes libpq's `sslmode` and `sslrootcert`
//! (sqlx on rustls), tested against a test-support server serving TLS with a certificate for
//! `localhost` signed by a throwaway authority. Before, the writer's sqlx had no TLS: any
//! `sslmode` above `prefer` failed to connect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Change, Value, batch_channel};
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, TableConfig, WriterConfig};
use surefoot_test_support::PgServer;

fn url(server: &PgServer, host: &str, mode: &str) -> String {
    let ca = server.ca_cert().unwrap().display().to_string();
    format!(
        "postgres://{}@{host}:{}/postgres?sslmode={mode}&sslrootcert={ca}",
        server.user(),
        server.port()
    )
}

fn mirror(url: String) -> WriterConfig {
    let mut config = WriterConfig::new("tls", url).table(TableConfig::new(
        table("items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ));
    config.batch.max_latency = std::time::Duration::from_millis(5);
    config
}

#[tokio::test]
async fn x_8_the_writer_applies_over_verify_full_and_refuses_a_host_the_certificate_does_not_name()
{
    let server = PgServer::builder().tls().start().await.unwrap();
    let writer = PostgresWriter::builder(mirror(url(&server, "localhost", "verify-full")))
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let (sender, receiver) = batch_channel(2);
    let change = Change::insert(
        seq(1),
        table("items"),
        row(1, Value::Text("over TLS".into())),
    );
    sender.send(batch("src", vec![change])).await.unwrap();
    drop(sender);
    writer
        .run(receiver, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(scalar(&writer, "SELECT count(*) FROM items").await, 1);
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(writer.pool())
            .await
            .unwrap();
    assert!(encrypted, "the writer's session is not encrypted");

    let wrong_host = PostgresWriter::builder(mirror(url(&server, "127.0.0.1", "verify-full")))
        .connect()
        .await;
    let Err(error) = wrong_host else {
        panic!("verify-full accepted a certificate that does not name 127.0.0.1");
    };
    let chain = format!("{error:?}");
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
}
