//! The source's ordinary SQL connection (setup, heartbeat, slot checks), with its connection
//! driven by a supervised task and every statement bounded by a timeout.

use std::future::Future;
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_lifecycle::timeout::timeout;
use tokio_postgres::Client;

use crate::config::PostgresSourceConfig;
use crate::error::SourceError;

/// A SQL connection whose driver task stops when this is dropped.
#[derive(Debug)]
pub(crate) struct SqlConnection {
    client: Client,
    statement_timeout: Duration,
    // Dropping the last handle cancels the driver task, which closes the connection.
    _driver: TaskGroup,
}

impl SqlConnection {
    /// Connects within the connect timeout, as `application_name` `surefoot-<source>-<purpose>`.
    pub(crate) async fn open(
        config: &PostgresSourceConfig,
        purpose: &str,
    ) -> Result<Self, SourceError> {
        let application_name = format!("surefoot-{}-{purpose}", config.id);
        let mut pg_config = config.sql_config(&application_name);
        let connector = config
            .tls
            .connector(&mut pg_config)
            .map_err(SourceError::Tls)?;
        let connecting = pg_config.connect(connector);
        let (client, connection) = timeout("connect", config.connect_timeout, connecting)
            .await?
            .map_err(|error| SourceError::query("connect", error))?;
        let driver = TaskGroup::new(application_name);
        driver.spawn_until_cancelled("connection", connection)?;
        Ok(Self {
            client,
            statement_timeout: config.statement_timeout,
            _driver: driver,
        })
    }

    /// Runs `work` on the client within the statement timeout (a black-holed connection fails
    /// instead of hanging), naming `operation` if it times out.
    pub(crate) async fn run<'a, T, F, Fut>(
        &'a self,
        operation: &'static str,
        work: F,
    ) -> Result<T, SourceError>
    where
        F: FnOnce(&'a Client) -> Fut,
        Fut: Future<Output = Result<T, SourceError>> + 'a,
    {
        timeout(operation, self.statement_timeout, work(&self.client)).await?
    }

    /// True once the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
