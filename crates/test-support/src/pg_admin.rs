//! Administrative SQL run by [`PgServer`](crate::PgServer) on short-lived connections.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use crate::error::{Error, Result};
use crate::pg_client::with_client;
use crate::pg_init::quote_ident;
use crate::process::{POLL, log_tail};

/// How long terminated backends may take to exit.
const BACKEND_EXIT_WAIT: Duration = Duration::from_secs(10);

/// The server's `data_directory` setting.
pub(crate) async fn data_directory(config: &Config) -> Result<String, tokio_postgres::Error> {
    with_client(config, async |client| {
        let row = client
            .query_one("SELECT current_setting('data_directory')", &[])
            .await?;
        Ok(row.get(0))
    })
    .await
}

/// `CREATE DATABASE` with the name quoted.
pub(crate) async fn create_database(config: &Config, name: &str) -> Result<()> {
    let sql = format!("CREATE DATABASE {}", quote_ident(name));
    with_client(config, async |client| client.batch_execute(&sql).await)
        .await
        .map_err(|e| Error::pg(format!("creating database {name}"), e))
}

/// Signals every backend of `application_name` (except the caller's own) and returns the pids
/// that `pg_terminate_backend` accepted.
pub(crate) async fn terminate_backends(
    config: &Config,
    application_name: &str,
) -> Result<Vec<i32>> {
    with_client(config, async |client| {
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&application_name],
            )
            .await?;
        let mut terminated = Vec::new();
        for row in rows {
            let pid: i32 = row.get(0);
            let row = client.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await?;
            if row.get::<_, bool>(0) {
                terminated.push(pid);
            }
        }
        Ok(terminated)
    })
    .await
    .map_err(|e| Error::pg(format!("terminating backends of application {application_name}"), e))
}

/// Polls `pg_stat_activity` until none of `pids` is listed; times out with the log tail.
pub(crate) async fn await_backends_gone(config: &Config, pids: &[i32], log: &Path) -> Result<()> {
    let deadline = Instant::now() + BACKEND_EXIT_WAIT;
    loop {
        let left: i64 = with_client(config, async |client| {
            let sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)";
            Ok(client.query_one(sql, &[&pids]).await?.get(0))
        })
        .await
        .map_err(|e| Error::pg("checking for terminated backends", e))?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("terminated backends {pids:?} to exit"),
                timeout: BACKEND_EXIT_WAIT,
                log: log.to_owned(),
                log_tail: log_tail(log),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
