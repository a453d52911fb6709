//! The consistent point validated as an LSN, and the ordinary connection that imports an
//! exported snapshot into a repeatable-read, read-only transaction and checks the isolation level
//! it got.
//!
//! Every step is bounded: connecting by `connect_timeout`, each statement by `statement_timeout`
//! (also sent to the server as its `statement_timeout`). The connection is driven by a supervised
//! task that stops, closing the connection and releasing the snapshot, when the
//! [`SnapshotConnection`] is dropped.

use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::Lsn;
use surefoot_pg_tls::PgTls;
use surefoot_source_postgres::transport::SESSION_OPTIONS;
use tokio_postgres::Client;

use crate::config::BootstrapConfig;
use crate::error::{BootstrapError, Step, bounded};

/// Parses the consistent point reported by `CREATE_REPLICATION_SLOT`, rejecting text that is not
/// an LSN and `0/0`, which no real slot reports.
pub fn parse_consistent_point(text: &str) -> Result<Lsn, BootstrapError> {
    let invalid = |reason: String| BootstrapError::InvalidConsistentPoint {
        text: text.to_owned(),
        reason,
    };
    let lsn: Lsn = text.parse().map_err(|error| invalid(format!("{error}")))?;
    if lsn.is_zero() {
        return Err(invalid("0/0 is not a position any slot reports".to_owned()));
    }
    Ok(lsn)
}

/// Checks that `name` has the form of an exported snapshot's name (`00000003-0000001B-1`: groups
/// of hexadecimal digits separated by dashes). `SET TRANSACTION SNAPSHOT` takes no parameters,
/// so the name is checked before it is quoted into the statement.
fn check_snapshot_name(name: &str) -> Result<(), BootstrapError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .split('-')
            .all(|group| !group.is_empty() && group.bytes().all(|byte| byte.is_ascii_hexdigit()));
    if valid {
        Ok(())
    } else {
        Err(BootstrapError::InvalidSnapshotName {
            name: name.to_owned(),
        })
    }
}

/// Accepts only a repeatable-read, read-only transaction, as `SHOW transaction_isolation` and
/// `SHOW transaction_read_only` report it.
fn verify_isolation(isolation: String, read_only: String) -> Result<(), BootstrapError> {
    if isolation == "repeatable read" && read_only == "on" {
        Ok(())
    } else {
        Err(BootstrapError::IsolationMismatch {
            isolation,
            read_only,
        })
    }
}

/// An ordinary SQL connection for copying a snapshot; its driver task stops when it is dropped.
#[derive(Debug)]
pub struct SnapshotConnection {
    client: Client,
    statement_timeout: Duration,
    // Dropping the last handle cancels the driver task, which closes the connection.
    _driver: TaskGroup,
}

impl SnapshotConnection {
    /// Connects with `pg_config` within the connect timeout, sending `statement_timeout` to the
    /// server too, with the session settings the value decoder expects (this replaces any
    /// `options` already set in `pg_config`), over TLS as `tls` says (libpq's `sslmode`).
    pub async fn open(
        mut pg_config: tokio_postgres::Config,
        tls: &PgTls,
        config: &BootstrapConfig,
    ) -> Result<Self, BootstrapError> {
        let connector = tls.connector(&mut pg_config).map_err(BootstrapError::Tls)?;
        pg_config
            .connect_timeout(config.connect_timeout)
            .options(format!(
                "{SESSION_OPTIONS} -c statement_timeout={}",
                config.statement_timeout.as_millis()
            ));
        let (client, connection) = bounded(
            Step::Connect,
            config.connect_timeout,
            pg_config.connect(connector),
        )
        .await?
        .map_err(|source| BootstrapError::query("connect", source))?;
        let driver = TaskGroup::new("surefoot-bootstrap-snapshot");
        driver.spawn_until_cancelled("connection", connection)?;
        Ok(Self {
            client,
            statement_timeout: config.statement_timeout,
            _driver: driver,
        })
    }

    /// Opens a repeatable-read, read-only transaction whose first statement imports the exported
    /// snapshot `name`, then checks that the transaction really is repeatable read and read only.
    pub async fn import(&self, name: &str) -> Result<(), BootstrapError> {
        check_snapshot_name(name)?;
        self.execute(
            "begin snapshot transaction",
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        )
        .await?;
        self.execute(
            "import snapshot",
            &format!("SET TRANSACTION SNAPSHOT '{name}'"),
        )
        .await?;
        let isolation = self
            .show("check isolation level", "SHOW transaction_isolation")
            .await?;
        let read_only = self
            .show("check read only", "SHOW transaction_read_only")
            .await?;
        verify_isolation(isolation, read_only)
    }

    /// The client, for statements inside the imported snapshot.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The statement timeout.
    pub(crate) fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// Raises the server's `statement_timeout` for the rest of the transaction to `limit`: a COPY
    /// of a large table is one statement that may run far longer than any other, and is bounded
    /// on this side by the chunk and snapshot timeouts instead.
    pub async fn allow_statements_up_to(&self, limit: Duration) -> Result<(), BootstrapError> {
        let sql = format!("SET LOCAL statement_timeout = {}", limit.as_millis());
        self.execute("raise statement timeout for the copy", &sql)
            .await
    }

    /// Ends the snapshot transaction, releasing the snapshot.
    pub async fn finish(&self) -> Result<(), BootstrapError> {
        self.execute("end snapshot transaction", "COMMIT").await
    }

    /// Drops the persistent slot `slot` if it exists and no session holds it: a leftover of a
    /// snapshot that never completed. Returns whether one was dropped. Runs outside any
    /// snapshot transaction, before the import.
    pub async fn drop_slot_if_inactive(&self, slot: &str) -> Result<bool, BootstrapError> {
        let sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                   WHERE slot_name = $1 AND NOT active";
        let dropped = bounded(
            Step::Statement,
            self.statement_timeout,
            self.client.execute(sql, &[&slot]),
        )
        .await?
        .map_err(|source| BootstrapError::query("drop leftover slot", source))?;
        Ok(dropped > 0)
    }

    async fn execute(&self, operation: &'static str, sql: &str) -> Result<(), BootstrapError> {
        bounded(
            Step::Statement,
            self.statement_timeout,
            self.client.batch_execute(sql),
        )
        .await?
        .map_err(|source| BootstrapError::query(operation, source))
    }

    async fn show(&self, operation: &'static str, sql: &str) -> Result<String, BootstrapError> {
        let rows = bounded(
            Step::Statement,
            self.statement_timeout,
            self.client.simple_query(sql),
        )
        .await?
        .map_err(|source| BootstrapError::query(operation, source))?;
        let value = rows.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
        Ok(value.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d_4_3_malformed_consistent_points_are_rejected_with_a_clear_error() {
        assert_eq!(
            parse_consistent_point("16/B374D848").unwrap(),
            Lsn(0x16_B374_D848)
        );
        for bad in ["", "0/0", "16B374D848", "16/", "x/1", "1/123456789"] {
            let error = parse_consistent_point(bad).unwrap_err();
            assert!(
                matches!(&error, BootstrapError::InvalidConsistentPoint { text, .. } if text == bad),
                "{bad}: {error:?}"
            );
        }
        let message = parse_consistent_point("0/0").unwrap_err().to_string();
        assert!(message.contains("`0/0`"), "{message}");
        let message = parse_consistent_point("16B374D848")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("consistent point `16B374D848` is invalid: "),
            "{message}"
        );
    }

    #[test]
    fn d_4_3_only_repeatable_read_read_only_is_accepted() {
        verify_isolation("repeatable read".to_owned(), "on".to_owned()).unwrap();
        for (isolation, read_only) in [
            ("serializable", "on"),
            ("read committed", "on"),
            ("repeatable read", "off"),
            ("", ""),
        ] {
            let error = verify_isolation(isolation.to_owned(), read_only.to_owned()).unwrap_err();
            assert!(
                matches!(&error, BootstrapError::IsolationMismatch { .. }),
                "{error:?}"
            );
            assert!(
                error
                    .to_string()
                    .contains("not repeatable read and read only"),
                "{error}"
            );
        }
    }

    #[test]
    fn snapshot_names_are_checked_before_quoting() {
        for good in ["00000003-0000001B-1", "0000000A-00000002"] {
            check_snapshot_name(good).unwrap();
        }
        for bad in ["", "x'; DROP TABLE t; --", "00000003--1", "-1", "0000 0003"] {
            assert!(
                matches!(
                    check_snapshot_name(bad),
                    Err(BootstrapError::InvalidSnapshotName { .. })
                ),
                "{bad}"
            );
        }
    }
}
