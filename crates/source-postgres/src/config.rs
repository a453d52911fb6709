//! The source's configuration, validated as a whole.

use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};
use surefoot_core_model::{Secret, SourceId};

use crate::ident::{Identifier, SlotName, TableName};
use crate::setup::PublicationTables;

/// What to do when the slot's WAL was removed (`wal_status = 'lost'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotLostPolicy {
    /// Fail with an error that says what happened (the default: changes were lost, a person
    /// decides).
    #[default]
    Fail,
    /// Drop the slot, create a new one and report that consumers must bootstrap again.
    Recreate,
}

/// Configuration of a [`crate::PostgresSource`].
#[derive(Debug, Clone)]
pub struct PostgresSourceConfig {
    /// The source's id in the pipeline.
    pub id: SourceId,
    /// Server host (loopback or a name; a path for a Unix socket directory).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// A role with the REPLICATION attribute.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// The database whose changes are streamed.
    pub database: String,
    /// The replication slot (created when missing).
    pub slot: SlotName,
    /// The publication (created when missing and `create_publication` is set).
    pub publication: Identifier,
    /// The tables the publication covers when it is created.
    pub tables: PublicationTables,
    /// Create the publication when it does not exist.
    pub create_publication: bool,
    /// What to do with an invalidated slot.
    pub on_slot_lost: SlotLostPolicy,
    /// Emit a `pg_logical_emit_message` this often, so an idle slot keeps advancing and a dead
    /// connection is noticed; `None` turns it off.
    pub heartbeat: Option<Duration>,
    /// Declare the connection dead when the stream is silent this long with the heartbeat on.
    pub liveness_timeout: Duration,
    /// How soon a confirmed position reaches the server.
    pub status_interval: Duration,
    /// Bound on connecting, authenticating and starting a stream.
    pub connect_timeout: Duration,
    /// Bound on each ordinary SQL statement (also sent as `statement_timeout`).
    pub statement_timeout: Duration,
    /// Reconnect backoff and budget; past it the source is `Failed`. The default waits 100 ms
    /// doubling to 30 s with full jitter, for up to 15 minutes of consecutive failures, with no
    /// limit on the number of attempts.
    pub reconnect: RetryPolicy,
    /// Events buffered between the connection and the stream loop.
    pub buffer_events: usize,
    /// Bytes of decoded changes one transaction may hold in memory; past it the rest of the
    /// transaction is spilled to a temporary file and, at its commit, delivered in batches of
    /// at most this much (default 64 MiB).
    pub max_transaction_memory: usize,
    /// TLS for the SQL and replication connections: libpq's `sslmode` and `sslrootcert`
    /// (default `prefer`; decision 0012).
    pub tls: surefoot_pg_tls::PgTls,
}

/// Every problem found in a configuration, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PostgreSQL source configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// `field: problem` entries.
    pub problems: Vec<String>,
}

impl PostgresSourceConfig {
    /// A configuration with defaults for everything but the connection and names.
    pub fn new(
        id: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        database: impl Into<String>,
        slot: SlotName,
        publication: Identifier,
    ) -> Self {
        let id: String = id.into();
        Self {
            id: SourceId::new(id),
            host: host.into(),
            port,
            user: user.into(),
            password: Secret::new(""),
            database: database.into(),
            slot,
            publication,
            tables: PublicationTables::All,
            create_publication: true,
            on_slot_lost: SlotLostPolicy::Fail,
            heartbeat: Some(Duration::from_secs(10)),
            liveness_timeout: Duration::from_secs(30),
            status_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            reconnect: RetryPolicy::new(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(30),
            ))
            // The budget is time: a server restart can refuse connections for longer than any
            // fixed number of quick attempts covers.
            .with_max_attempts(u32::MAX)
            .with_max_elapsed(Duration::from_secs(15 * 60)),
            buffer_events: 1024,
            max_transaction_memory: 64 * 1024 * 1024,
            tls: surefoot_pg_tls::PgTls::default(),
        }
    }

    /// Checks the values together and returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut require = |ok: bool, problem: &str| {
            if !ok {
                problems.push(problem.to_owned());
            }
        };
        require(!self.host.is_empty(), "host: must not be empty");
        require(self.port != 0, "port: must be 1..=65535");
        require(!self.user.is_empty(), "user: must not be empty");
        require(!self.database.is_empty(), "database: must not be empty");
        require(
            !matches!(&self.tables, PublicationTables::Tables(tables) if tables.is_empty()),
            "tables: list at least one table, or use all tables",
        );
        let positive = [
            ("liveness_timeout", self.liveness_timeout),
            ("status_interval", self.status_interval),
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
        ];
        for (field, value) in positive {
            require(!value.is_zero(), &format!("{field}: must be more than 0"));
        }
        if let Some(heartbeat) = self.heartbeat {
            require(
                !heartbeat.is_zero(),
                "heartbeat: must be more than 0, or off",
            );
            require(
                self.liveness_timeout > heartbeat * 2,
                "liveness_timeout: must be more than twice the heartbeat",
            );
        }
        require(self.buffer_events > 0, "buffer_events: must be more than 0");
        require(
            self.max_transaction_memory >= 64 * 1024,
            "max_transaction_memory: must be at least 64 KiB",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// A `tokio_postgres` configuration for the ordinary SQL connection.
    pub fn sql_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(self.password.expose())
            .dbname(&self.database)
            .application_name(application_name)
            .connect_timeout(self.connect_timeout)
            .options(format!(
                "-c statement_timeout={}",
                self.statement_timeout.as_millis()
            ));
        config
    }

    /// The tables of the publication, when it lists them.
    pub fn table_names(&self) -> &[TableName] {
        match &self.tables {
            PublicationTables::All => &[],
            PublicationTables::Tables(tables) => tables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PostgresSourceConfig {
        PostgresSourceConfig::new(
            "orders",
            "127.0.0.1",
            5432,
            "replicator",
            "app",
            SlotName::parse("orders_slot").unwrap(),
            Identifier::parse("publication", "orders_pub").unwrap(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        config().validate().unwrap();
        assert!(config().table_names().is_empty());
    }

    #[test]
    fn the_default_reconnect_budget_is_time_not_attempts() {
        let reconnect = config().reconnect;
        assert_eq!(reconnect.max_attempts(), u32::MAX);
        assert_eq!(reconnect.max_elapsed(), Duration::from_secs(15 * 60));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut bad = config();
        bad.port = 0;
        bad.host.clear();
        bad.heartbeat = Some(Duration::from_secs(20));
        bad.statement_timeout = Duration::ZERO;
        bad.tables = PublicationTables::Tables(Vec::new());
        let problems = bad.validate().unwrap_err().problems;
        assert_eq!(
            problems,
            [
                "host: must not be empty",
                "port: must be 1..=65535",
                "tables: list at least one table, or use all tables",
                "statement_timeout: must be more than 0",
                "liveness_timeout: must be more than twice the heartbeat",
            ]
        );
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let mut with_password = config();
        with_password.password = Secret::new("hunter2");
        assert!(!format!("{with_password:?}").contains("hunter2"));
    }
}
