//! Preparing the server: checks that say exactly what is wrong, the publication, the slot.

use std::time::Duration;
use surefoot_core_model::Lsn;

use tokio_postgres::Client;

use crate::error::SourceError;
use crate::ident::{Identifier, SlotName, TableName};
use crate::sql::SqlConnection;

/// Which tables the publication covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationTables {
    /// `FOR ALL TABLES`.
    All,
    /// `FOR TABLE ...` with these tables.
    Tables(Vec<TableName>),
}

/// The slot as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// Whether a walsender holds the slot now.
    pub active: bool,
    /// The position the server knows we confirmed; streaming resumes after it.
    pub confirmed_flush: Lsn,
    /// `wal_status`: `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
}

impl SlotState {
    /// True when the server removed WAL the slot needed.
    pub fn is_lost(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }
}

/// Checks that the server can serve logical replication to this role with this slot, and
/// returns every problem found (not just the first) with what to do about it.
pub async fn check_server(client: &Client, slot: &SlotName) -> Result<(), SourceError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), \
                    current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_slots)::int, \
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*) FROM pg_stat_replication)::int, \
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                    current_user::text",
            &[&slot.as_str()],
        )
        .await
        .map_err(|error| SourceError::query("check server settings", error))?;
    let settings = ServerSettings {
        wal_level: row.get(0),
        max_slots: row.get(1),
        used_slots: row.get(2),
        slot_exists: row.get(3),
        max_senders: row.get(4),
        used_senders: row.get(5),
        can_replicate: row.get::<_, Option<bool>>(6).unwrap_or(false),
        role: row.get(7),
    };
    let problems = settings.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SourceError::ServerNotReady { problems })
    }
}

struct ServerSettings {
    wal_level: String,
    max_slots: i32,
    used_slots: i32,
    slot_exists: bool,
    max_senders: i32,
    used_senders: i32,
    can_replicate: bool,
    role: String,
}

impl ServerSettings {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.wal_level != "logical" {
            problems.push(format!(
                "wal_level is {}; set wal_level = logical and restart the server",
                self.wal_level
            ));
        }
        if !self.slot_exists && self.used_slots >= self.max_slots {
            problems.push(format!(
                "all {} replication slots are in use (max_replication_slots = {}); raise it or \
                 drop an unused slot",
                self.used_slots, self.max_slots
            ));
        }
        if self.used_senders >= self.max_senders {
            problems.push(format!(
                "all {} WAL senders are busy (max_wal_senders = {}); raise it",
                self.used_senders, self.max_senders
            ));
        }
        if !self.can_replicate {
            problems.push(format!(
                "role {} may not replicate; run ALTER ROLE {} REPLICATION",
                self.role,
                Identifier::parse("role", &self.role)
                    .map(|role| role.quoted())
                    .unwrap_or_else(|_| self.role.clone())
            ));
        }
        problems
    }
}

/// Whether the publication exists.
pub async fn publication_exists(
    client: &Client,
    publication: &Identifier,
) -> Result<bool, SourceError> {
    let rows = client
        .query(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication.as_str()],
        )
        .await
        .map_err(|error| SourceError::query("look up publication", error))?;
    Ok(!rows.is_empty())
}

/// Creates the publication unless it exists. Without `create`, a missing publication is an
/// error naming it.
pub async fn ensure_publication(
    client: &Client,
    publication: &Identifier,
    tables: &PublicationTables,
    create: bool,
) -> Result<(), SourceError> {
    if publication_exists(client, publication).await? {
        return Ok(());
    }
    if !create {
        return Err(SourceError::PublicationMissing {
            publication: publication.as_str().to_owned(),
        });
    }
    let target = match tables {
        PublicationTables::All => "ALL TABLES".to_owned(),
        PublicationTables::Tables(tables) => {
            let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
            format!("TABLE {}", names.join(", "))
        }
    };
    let statement = format!("CREATE PUBLICATION {} FOR {target}", publication.quoted());
    client
        .batch_execute(&statement)
        .await
        .map_err(|error| SourceError::query("create publication", error))
}

/// The slot's state, or `None` when it does not exist.
pub async fn inspect_slot(
    client: &Client,
    slot: &SlotName,
) -> Result<Option<SlotState>, SourceError> {
    let rows = client
        .query(
            "SELECT plugin::text, active, confirmed_flush_lsn::text, wal_status \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot.as_str()],
        )
        .await
        .map_err(|error| SourceError::query("inspect replication slot", error))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let plugin: Option<String> = row.get(0);
    if plugin.as_deref() != Some("pgoutput") {
        return Err(SourceError::SlotPluginMismatch {
            slot: slot.as_str().to_owned(),
            plugin: plugin.unwrap_or_else(|| "none (a physical slot)".to_owned()),
        });
    }
    let confirmed: Option<String> = row.get(2);
    let confirmed_flush = match confirmed {
        Some(text) => text.parse().map_err(SourceError::InvalidLsn)?,
        None => Lsn::ZERO,
    };
    Ok(Some(SlotState {
        active: row.get(1),
        confirmed_flush,
        wal_status: row.get(3),
    }))
}

/// Creates the logical slot with pgoutput and returns its consistent point.
pub async fn create_slot(client: &Client, slot: &SlotName) -> Result<Lsn, SourceError> {
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot.as_str()],
        )
        .await
        .map_err(|error| SourceError::query("create replication slot", error))?;
    let lsn: String = row.get(0);
    lsn.parse().map_err(SourceError::InvalidLsn)
}

/// Drops the slot (it must be inactive).
pub async fn drop_slot(client: &Client, slot: &SlotName) -> Result<(), SourceError> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot.as_str()])
        .await
        .map_err(|error| SourceError::query("drop replication slot", error))?;
    Ok(())
}

/// After a stop: waits until no walsender holds the slot, then makes sure its confirmed
/// position is `final_flush` (advancing it if the last status update did not arrive before the
/// connection closed). Polls every 20 ms; the caller bounds the whole wait.
pub(crate) async fn settle_slot(
    sql: &SqlConnection,
    slot: &SlotName,
    final_flush: Lsn,
) -> Result<(), SourceError> {
    const POLL: Duration = Duration::from_millis(20);
    let state = loop {
        match sql
            .run("inspect slot", |client| inspect_slot(client, slot))
            .await?
        {
            Some(state) if state.active => tokio::time::sleep(POLL).await,
            Some(state) => break state,
            None => return Ok(()),
        }
    };
    if state.confirmed_flush < final_flush {
        tracing::info!(%slot, from = %state.confirmed_flush, to = %final_flush, "advancing the released slot to the final watermark");
        let target = final_flush.to_string();
        sql.run("advance slot", |client| async move {
            client
                .execute(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                    &[&slot.as_str(), &target],
                )
                .await
                .map_err(|error| SourceError::query("advance slot", error))
        })
        .await?;
    }
    Ok(())
}
