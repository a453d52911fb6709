//! A replication slot created with an exported snapshot, on a replication session that stays
//! open and idle while the snapshot is used.
//!
//! `CREATE_REPLICATION_SLOT <slot> [TEMPORARY] LOGICAL pgoutput (SNAPSHOT 'export')` answers with
//! the slot's consistent point and the name of a snapshot that sees exactly the transactions
//! committed before it. The snapshot lives until the session runs its next command or ends, so
//! [`ExportedSlot`] holds the session and runs nothing else on it until the copy is done.
//! Dropping it ends the session: the exported snapshot goes, and so does a temporary slot.

use pgwire_replication::ReplicationClient;
use surefoot_core_model::Lsn;
use surefoot_source_postgres::SlotName;
use surefoot_source_postgres::transport::ReplicationEndpoint;

use crate::config::BootstrapConfig;
use crate::error::{BootstrapError, Step, bounded};
use crate::postgres::connection::parse_consistent_point;

/// Whether the slot outlives the session that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A persistent slot: the source's own slot, created on first start and streamed from
    /// afterwards by `PostgresSource`.
    Persistent,
    /// A temporary slot, dropped by the server when the session ends (also on a crash): for a
    /// consumer added to a running source, which streams from it on the same session.
    Temporary,
}

/// What `CREATE_REPLICATION_SLOT` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotCreated {
    /// The slot.
    pub slot: String,
    /// The consistent point: the snapshot holds every transaction committed before it, the slot
    /// streams every transaction committed after it.
    pub consistent_point: Lsn,
    /// The exported snapshot's name.
    pub snapshot_name: String,
}

/// A slot with its exported snapshot, and the idle replication session that keeps the snapshot
/// alive.
pub struct ExportedSlot {
    /// `None` only once handed on by `into_client`.
    client: Option<ReplicationClient>,
    created: SlotCreated,
    kind: SlotKind,
    endpoint: ReplicationEndpoint,
}

impl std::fmt::Debug for ExportedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSlot")
            .field("created", &self.created)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The `CREATE_REPLICATION_SLOT` command for `slot`.
fn create_command(slot: &SlotName, kind: SlotKind) -> String {
    let temporary = match kind {
        SlotKind::Persistent => "",
        SlotKind::Temporary => " TEMPORARY",
    };
    format!(
        "CREATE_REPLICATION_SLOT {}{temporary} LOGICAL pgoutput (SNAPSHOT 'export')",
        slot.as_str()
    )
}

/// Reads the one row `(slot_name, consistent_point, snapshot_name, output_plugin)`.
fn parse_reply(rows: &[Vec<Option<bytes::Bytes>>]) -> Result<SlotCreated, BootstrapError> {
    let reply = |reason: &str| BootstrapError::SlotReply {
        reason: reason.to_owned(),
    };
    let [row] = rows else {
        return Err(reply(&format!("{} rows instead of 1", rows.len())));
    };
    let text = |index: usize| -> Result<String, BootstrapError> {
        let bytes = row
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| reply(&format!("column {index} is missing or null")))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| reply("a column is not UTF-8"))
    };
    if row.len() != 4 {
        return Err(reply(&format!("{} columns instead of 4", row.len())));
    }
    let plugin = text(3)?;
    if plugin != "pgoutput" {
        return Err(reply(&format!("output plugin `{plugin}`, not pgoutput")));
    }
    Ok(SlotCreated {
        slot: text(0)?,
        consistent_point: parse_consistent_point(&text(1)?)?,
        snapshot_name: text(2)?,
    })
}

/// A bounded replication command's outcome as one result.
fn flatten<T>(
    outcome: Result<Result<T, pgwire_replication::PgWireError>, BootstrapError>,
    operation: &'static str,
) -> Result<T, BootstrapError> {
    outcome?.map_err(|source| BootstrapError::replication(operation, source))
}

impl ExportedSlot {
    /// Opens a replication session to `endpoint` and creates `endpoint.slot` with an exported
    /// snapshot. Connecting (up to an answer to `IDENTIFY_SYSTEM`) is bounded by
    /// `connect_timeout` ([`Step::Connect`]); creating the slot, which waits for the transactions
    /// running at that moment to end, by `statement_timeout` ([`Step::Statement`]).
    ///
    /// Creating a persistent slot that already exists fails: the caller decides whether an old
    /// slot may go (see [`SnapshotConnection::drop_slot_if_inactive`](crate::postgres::SnapshotConnection::drop_slot_if_inactive)).
    pub async fn create(
        endpoint: &ReplicationEndpoint,
        kind: SlotKind,
        config: &BootstrapConfig,
    ) -> Result<Self, BootstrapError> {
        let mut client = ReplicationClient::connect_gated(endpoint.replication_config(Lsn::ZERO))
            .await
            .map_err(|source| BootstrapError::replication("connect for replication", source))?;
        // The gated session connects in the background: IDENTIFY_SYSTEM is the connect step.
        let identified = bounded(
            Step::Connect,
            config.connect_timeout,
            client.identify_system(),
        )
        .await;
        if let Err(error) = flatten(identified, "connect for replication") {
            client.abort();
            return Err(error);
        }
        // Creating the slot waits for the transactions running at that moment to end.
        let command = create_command(&endpoint.slot, kind);
        let answer = bounded(
            Step::Statement,
            config.statement_timeout,
            client.simple_query(&command),
        )
        .await;
        let rows = match flatten(answer, "create replication slot") {
            Ok(rows) => rows,
            Err(error) => {
                client.abort();
                return Err(error);
            }
        };
        let created = match parse_reply(&rows) {
            Ok(created) => created,
            Err(error) => {
                client.abort();
                return Err(error);
            }
        };
        Ok(Self {
            client: Some(client),
            created,
            kind,
            endpoint: endpoint.clone(),
        })
    }

    /// What the server reported.
    pub fn created(&self) -> &SlotCreated {
        &self.created
    }

    /// The consistent point.
    pub fn consistent_point(&self) -> Lsn {
        self.created.consistent_point
    }

    /// The exported snapshot's name.
    pub fn snapshot_name(&self) -> &str {
        &self.created.snapshot_name
    }

    /// Whether the slot is temporary.
    pub fn kind(&self) -> SlotKind {
        self.kind
    }

    /// The endpoint the session is open to.
    pub fn endpoint(&self) -> &ReplicationEndpoint {
        &self.endpoint
    }

    /// Ends the session. The exported snapshot is released; a temporary slot is dropped by the
    /// server, a persistent one stays for the source to stream from.
    pub fn close(self) {
        drop(self);
    }

    /// The session, for streaming from the slot on it.
    pub(crate) fn into_client(mut self) -> Option<ReplicationClient> {
        self.client.take()
    }
}

impl Drop for ExportedSlot {
    /// Aborts the session's worker, which closes its socket: the server ends the session at
    /// once, whatever state the worker was in.
    fn drop(&mut self) {
        if let Some(mut client) = self.client.take() {
            client.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn row(columns: &[Option<&str>]) -> Vec<Option<Bytes>> {
        columns
            .iter()
            .map(|column| column.map(|text| Bytes::copy_from_slice(text.as_bytes())))
            .collect()
    }

    #[test]
    fn the_command_names_the_slot_and_asks_for_a_snapshot() {
        let slot = SlotName::parse("orders_slot").unwrap();
        assert_eq!(
            create_command(&slot, SlotKind::Temporary),
            "CREATE_REPLICATION_SLOT orders_slot TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            create_command(&slot, SlotKind::Persistent),
            "CREATE_REPLICATION_SLOT orders_slot LOGICAL pgoutput (SNAPSHOT 'export')"
        );
    }

    #[test]
    fn d_4_3_the_slot_reply_is_read_and_a_malformed_consistent_point_rejected() {
        let good = row(&[
            Some("s"),
            Some("0/16B3748"),
            Some("00000003-00000002-1"),
            Some("pgoutput"),
        ]);
        let created = parse_reply(std::slice::from_ref(&good)).unwrap();
        assert_eq!(created.consistent_point, Lsn(0x16B_3748));
        assert_eq!(created.snapshot_name, "00000003-00000002-1");

        let malformed = row(&[Some("s"), Some("16B3748"), Some("x"), Some("pgoutput")]);
        assert!(matches!(
            parse_reply(&[malformed]),
            Err(BootstrapError::InvalidConsistentPoint { .. })
        ));
        let zero = row(&[Some("s"), Some("0/0"), Some("x"), Some("pgoutput")]);
        assert!(matches!(
            parse_reply(&[zero]),
            Err(BootstrapError::InvalidConsistentPoint { .. })
        ));
        let plugin = row(&[Some("s"), Some("0/1"), Some("x"), Some("wal2json")]);
        let error = parse_reply(&[plugin]).unwrap_err();
        assert!(error.to_string().contains("wal2json"), "{error}");
        assert!(matches!(
            parse_reply(&[]),
            Err(BootstrapError::SlotReply { .. })
        ));
        assert!(matches!(
            parse_reply(&[good.clone(), good]),
            Err(BootstrapError::SlotReply { .. })
        ));
        let null = row(&[Some("s"), None, Some("x"), Some("pgoutput")]);
        assert!(matches!(
            parse_reply(&[null]),
            Err(BootstrapError::SlotReply { .. })
        ));
        let short = row(&[Some("s"), Some("0/1")]);
        assert!(matches!(
            parse_reply(&[short]),
            Err(BootstrapError::SlotReply { .. })
        ));
    }
}
