//! Issue 14, X-8: every mode against real PostgreSQL servers from `surefoot-test-support`, one
//! serving TLS with a certificate for `localhost` signed by a throwaway authority, one without
//! TLS. Before this crate, surefoot's connections had no TLS at all (tokio-postgres `NoTls`,
//! pgwire-replication and sqlx without a TLS feature): a server that requires TLS refused them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use surefoot_pg_tls::{PgTls, SslMode, TlsFailure};
use surefoot_test_support::PgServer;

async fn tls_server() -> PgServer {
    PgServer::builder().tls().start().await.unwrap()
}

fn config(server: &PgServer, host: &str) -> tokio_postgres::Config {
    let mut config = server.config("postgres");
    config.host(host);
    config
}

/// Connects with `tls`; true when the session is encrypted, or the error's TLS failure.
async fn connect(server: &PgServer, host: &str, tls: &PgTls) -> Result<bool, Option<TlsFailure>> {
    let mut config = config(server, host);
    let connector = tls.connector(&mut config).unwrap();
    let (client, connection) = match config.connect(connector).await {
        Ok(connected) => connected,
        Err(error) => return Err(TlsFailure::find(&error)),
    };
    // The connection runs beside the query and ends once the client is dropped.
    let query = async {
        let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        let row = client.query_one(sql, &[]).await.unwrap();
        drop(client);
        row
    };
    let (row, ended) = tokio::join!(query, connection);
    ended.unwrap();
    Ok(row.get(0))
}

fn ca(server: &PgServer) -> &Path {
    server.ca_cert().unwrap()
}

#[tokio::test]
async fn x_8_verify_full_connects_by_name_with_the_ca_and_refuses_a_host_the_certificate_does_not_name()
 {
    let server = tls_server().await;
    let tls = PgTls::verify_full(ca(&server));
    assert_eq!(connect(&server, "localhost", &tls).await, Ok(true));
    let refused = connect(&server, "127.0.0.1", &tls).await;
    assert!(
        matches!(refused, Err(Some(TlsFailure::WrongHost { .. }))),
        "{refused:?}"
    );
    // verify-ca checks the chain only: the address is fine.
    let ca_only = PgTls::new(SslMode::VerifyCa).with_root_cert(ca(&server));
    assert_eq!(connect(&server, "127.0.0.1", &ca_only).await, Ok(true));
}

#[tokio::test]
async fn x_8_verify_ca_refuses_a_server_signed_by_another_authority() {
    let server = tls_server().await;
    let other = tls_server().await;
    let tls = PgTls::new(SslMode::VerifyCa).with_root_cert(ca(&other));
    let refused = connect(&server, "localhost", &tls).await;
    assert!(
        matches!(refused, Err(Some(TlsFailure::UntrustedCertificate { .. }))),
        "{refused:?}"
    );
    // Without a root certificate the Mozilla roots are trusted, which do not sign test servers.
    let refused = connect(&server, "localhost", &PgTls::new(SslMode::VerifyFull)).await;
    assert!(
        matches!(refused, Err(Some(TlsFailure::UntrustedCertificate { .. }))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn x_8_require_encrypts_without_verifying_and_refuses_a_server_without_tls() {
    let server = tls_server().await;
    let plain = PgServer::new().await.unwrap();
    let require = PgTls::new(SslMode::Require);
    assert_eq!(connect(&server, "127.0.0.1", &require).await, Ok(true));
    let refused = connect(&plain, "127.0.0.1", &require).await;
    assert!(
        matches!(refused, Err(Some(TlsFailure::ServerRefusedTls))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn x_8_prefer_uses_tls_when_offered_and_falls_back_to_plain() {
    let server = tls_server().await;
    let plain = PgServer::new().await.unwrap();
    let prefer = PgTls::default();
    assert_eq!(connect(&server, "127.0.0.1", &prefer).await, Ok(true));
    assert_eq!(connect(&plain, "127.0.0.1", &prefer).await, Ok(false));
    assert_eq!(
        connect(&server, "127.0.0.1", &PgTls::disable()).await,
        Ok(false)
    );
}

#[cfg(feature = "sqlx")]
#[tokio::test]
async fn x_8_sqlx_connects_with_verify_full_and_refuses_a_wrong_host() {
    let server = tls_server().await;
    let tls = PgTls::verify_full(ca(&server));
    let options = |host: &str| {
        tls.sqlx(
            sqlx::postgres::PgConnectOptions::new()
                .host(host)
                .port(server.port())
                .username(server.user())
                .database("postgres"),
        )
    };
    use sqlx::ConnectOptions;
    let mut connection = options("localhost").connect().await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert!(ssl);
    let error = options("127.0.0.1").connect().await.unwrap_err();
    assert!(TlsFailure::find(&error).is_some(), "{error:?}");
}

#[test]
fn x_8_replication_settings_follow_the_mode() {
    use pgwire_replication::SslMode as Wire;
    let cases = [
        (PgTls::disable(), Wire::Disable),
        (PgTls::default(), Wire::Prefer),
        (PgTls::new(SslMode::Require), Wire::Require),
        (
            PgTls::new(SslMode::Require).with_root_cert("/ca.crt"),
            Wire::VerifyCa,
        ),
        (PgTls::verify_full("/ca.crt"), Wire::VerifyFull),
    ];
    for (tls, expected) in cases {
        let wire = tls.replication();
        assert_eq!(wire.mode, expected, "{tls:?}");
        assert_eq!(wire.ca_pem_path, tls.root_cert);
    }
}

#[test]
fn x_8_an_unreadable_root_certificate_is_a_clear_error() {
    let tls = PgTls::verify_full("/nonexistent/ca.crt");
    let mut config = tokio_postgres::Config::new();
    let Err(error) = tls.connector(&mut config) else {
        panic!("a missing root certificate was accepted");
    };
    assert!(error.to_string().contains("/nonexistent/ca.crt"), "{error}");
}
