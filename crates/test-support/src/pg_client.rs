//! Connecting to PostgreSQL without a bare spawn: the connection is driven by a supervised task.

use std::ops::Deref;
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// How long the helpers wait for a connection to close after its client is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A `tokio_postgres::Client` whose connection is driven by a task in its own
/// [`TaskGroup`]. Derefs to the client.
///
/// When the server goes away the connection task ends and every call on the client returns an
/// error ("connection closed"). Dropping it cancels the task, which closes the connection.
#[derive(Debug)]
pub struct PgClient {
    client: Client,
    group: TaskGroup,
}

impl PgClient {
    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True once the connection has ended (closed by either side or failed).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Cancels and waits for the connection task.
    pub async fn close(self) {
        let group = self.group.clone();
        // Dropping the client and cancelling the task lets the connection close.
        drop(self);
        let report = group.stop(CLOSE_WAIT).await;
        tracing::debug!(?report, "postgres client closed");
    }
}

impl Deref for PgClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        self.group.cancellation_token().cancel();
    }
}

/// Connects with `config` (no TLS) and drives the connection in a supervised task.
///
/// Must be called inside a tokio runtime.
pub async fn connect(config: &Config) -> Result<PgClient> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        Error::pg(
            format!("connecting to PostgreSQL ({})", describe(config)),
            e,
        )
    })?;
    let group = TaskGroup::new("pg-client");
    group.spawn("connection", |cancel| async move {
        tokio::select! {
            result = connection => {
                if let Err(e) = result {
                    tracing::debug!(%e, "postgres connection ended with an error");
                }
            }
            () = cancel.cancelled() => {}
        }
        Ok::<(), std::io::Error>(())
    })?;
    Ok(PgClient { client, group })
}

/// Runs `work` on a fresh connection driven in the calling task, then closes the connection.
pub(crate) async fn with_client<T>(
    config: &Config,
    work: impl AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
) -> Result<T, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let mut connection = std::pin::pin!(connection);
    let mut connection_done = false;
    let result = {
        let mut work = std::pin::pin!(work(&client));
        loop {
            tokio::select! {
                result = &mut work => break result,
                result = &mut connection, if !connection_done => {
                    // The work future now fails with "connection closed"; keep polling it.
                    connection_done = true;
                    if let Err(e) = result {
                        tracing::debug!(%e, "helper connection ended");
                    }
                }
            }
        }
    };
    drop(client);
    if !connection_done && tokio::time::timeout(CLOSE_WAIT, connection).await.is_err() {
        tracing::debug!("helper connection did not close in time; dropping it");
    }
    result
}

fn describe(config: &Config) -> String {
    let ports = config.get_ports();
    let dbname = config.get_dbname().unwrap_or("(default)");
    format!("port {ports:?}, database {dbname}")
}
