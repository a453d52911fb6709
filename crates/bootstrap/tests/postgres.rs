//! Importing an exported snapshot against a real PostgreSQL: what it sees, how its isolation is
//! checked, and how a bad name, a bad snapshot or a silent server fail.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use surefoot_bootstrap::postgres::SnapshotConnection;
use surefoot_bootstrap::{BootstrapConfig, BootstrapError, Step};
use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_pg_tls::PgTls;
use surefoot_test_support::{FaultProxy, PgServer};

async fn count(connection: &SnapshotConnection) -> i64 {
    let row = connection
        .client()
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn an_imported_snapshot_sees_exactly_what_the_exporter_saw() {
    let server = PgServer::new().await.unwrap();
    let writer = server.connect("postgres").await.unwrap();
    writer
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2);",
        )
        .await
        .unwrap();
    let exporter = server.connect("postgres").await.unwrap();
    exporter
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let name: String = exporter
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .unwrap()
        .get(0);
    // Committed after the export: invisible to the snapshot.
    writer
        .batch_execute("INSERT INTO items VALUES (3); DELETE FROM items WHERE id = 1;")
        .await
        .unwrap();

    let config = BootstrapConfig::default();
    let connection =
        SnapshotConnection::open(server.config("postgres"), &PgTls::default(), &config)
            .await
            .unwrap();
    connection.import(&name).await.unwrap();
    assert_eq!(count(&connection).await, 2);
    let ids: Vec<i32> = connection
        .client()
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, [1, 2]);
    let timeout: String = connection
        .client()
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "30s", "statement_timeout is sent to the server");

    // A malformed name never reaches the server; a well-formed unknown one is refused by it.
    let other = SnapshotConnection::open(server.config("postgres"), &PgTls::default(), &config)
        .await
        .unwrap();
    let error = other.import("x'; DROP TABLE items; --").await.unwrap_err();
    assert!(
        matches!(error, BootstrapError::InvalidSnapshotName { .. }),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    let error = other.import("00000099-00000099-1").await.unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::Query {
                operation: "import snapshot",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(count(&connection).await, 2);
}

#[tokio::test]
async fn d_4_3_the_isolation_level_the_import_got_is_verified() {
    let server = PgServer::new().await.unwrap();
    let exporter = server.connect("postgres").await.unwrap();
    exporter
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let name: String = exporter
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .unwrap()
        .get(0);
    let connection = SnapshotConnection::open(
        server.config("postgres"),
        &PgTls::default(),
        &BootstrapConfig::default(),
    )
    .await
    .unwrap();
    // A transaction that already ran a query cannot import a snapshot: the import fails rather
    // than reading outside the snapshot.
    connection
        .client()
        .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1")
        .await
        .unwrap();
    let error = connection.import(&name).await.unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::Query {
                operation: "begin snapshot transaction",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Permanent);

    // One opened without a query yet takes the characteristics the import asks for, and the
    // check confirms them from the server.
    let connection = SnapshotConnection::open(
        server.config("postgres"),
        &PgTls::default(),
        &BootstrapConfig::default(),
    )
    .await
    .unwrap();
    connection
        .client()
        .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    connection.import(&name).await.unwrap();
    let isolation: String = connection
        .client()
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(isolation, "repeatable read");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_connect_timeout() {
    // Accepts TCP connections (the backlog does) but never speaks PostgreSQL.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    let mut pg_config = tokio_postgres::Config::new();
    pg_config
        .host(address.ip().to_string())
        .port(address.port())
        .user("nobody")
        .dbname("nothing");
    let config = BootstrapConfig {
        connect_timeout: Duration::from_millis(300),
        ..BootstrapConfig::default()
    };
    let started = Instant::now();
    let error = SnapshotConnection::open(pg_config, &PgTls::default(), &config)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            error,
            BootstrapError::Timeout {
                step: Step::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Timeout);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = unused.local_addr().unwrap();
    drop(unused);
    let mut pg_config = tokio_postgres::Config::new();
    pg_config
        .host(address.ip().to_string())
        .port(address.port())
        .user("nobody");
    let error = SnapshotConnection::open(pg_config, &PgTls::default(), &BootstrapConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            BootstrapError::Query {
                operation: "connect",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
}

async fn backends_named(client: &tokio_postgres::Client, application_name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn d_m1_a_black_holed_statement_is_a_statement_timeout_and_the_connection_is_released() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let proxy = FaultProxy::start(upstream).await.unwrap();
    let application_name = "surefoot-bootstrap-d-m1";
    let mut pg_config = server.config_at("postgres", proxy.listen_addr());
    pg_config.application_name(application_name);
    let config = BootstrapConfig {
        statement_timeout: Duration::from_millis(500),
        ..BootstrapConfig::default()
    };
    let connection = SnapshotConnection::open(pg_config, &PgTls::default(), &config)
        .await
        .unwrap();
    assert_eq!(backends_named(&admin, application_name).await, 1);

    proxy.black_hole();
    let started = Instant::now();
    let error = connection.import("00000003-0000001B-1").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed < config.statement_timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert!(
        matches!(error, BootstrapError::Timeout { step: Step::Statement, limit } if limit == config.statement_timeout),
        "{error:?}"
    );

    // Dropping the connection stops its driver task and closes it; once the network is back the
    // server ends the backend.
    drop(connection);
    proxy.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    while backends_named(&admin, application_name).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the backend outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
