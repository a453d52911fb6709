//! A snapshot on demand asked of a PostgreSQL source of the file: of every table, or of some
//! named ones (`schema.table`, or `table` in `public`), each checked against the source's
//! tables before anything is stopped.

use std::time::Duration;

use surefoot_core_model::TableRef;
use tokio::sync::oneshot;

use super::{Manager, Refusal};
use crate::run::source::SourceCommand;

/// How long a snapshot on demand is waited for before the API answers that it goes on.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);

impl Manager {
    /// Copies the tables named in `tables` (every table when `None`) of PostgreSQL source `id`
    /// again to every consumer (see `run::on_demand`): the rows copied, or `None` if not
    /// finished within the wait (it goes on).
    pub async fn snapshot_source(
        &self,
        id: &str,
        tables: Option<Vec<String>>,
    ) -> Result<Option<u64>, Refusal> {
        let commands = self
            .inner
            .source_commands
            .get(id)
            .ok_or_else(|| Refusal::new(404, format!("no PostgreSQL source `{id}`")))?;
        let tables = tables
            .map(|names| self.source_tables(id, &names))
            .transpose()?;
        let (reply, done) = oneshot::channel();
        let not_running = || Refusal::new(503, format!("source `{id}` is not running"));
        commands
            .send(SourceCommand::Snapshot(tables, reply))
            .await
            .map_err(|_| not_running())?;
        match tokio::time::timeout(SNAPSHOT_WAIT, done).await {
            Ok(Ok(Ok(rows))) => Ok(Some(rows)),
            Ok(Ok(Err(reason))) => Err(Refusal::new(503, reason)),
            Ok(Err(_)) => Err(not_running()),
            Err(_) => Ok(None),
        }
    }

    /// The tables of source `id` that `names` name, or every problem (422).
    fn source_tables(&self, id: &str, names: &[String]) -> Result<Vec<TableRef>, Refusal> {
        let known: Vec<&TableRef> = self
            .inner
            .tables
            .get(id)
            .map(|schemas| schemas.iter().map(|schema| &schema.table).collect())
            .unwrap_or_default();
        if names.is_empty() {
            return Err(Refusal::new(
                422,
                "tables: name at least one table, or send no body to copy every table",
            ));
        }
        let mut tables = Vec::with_capacity(names.len());
        let mut problems = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let table = match name.split_once('.') {
                Some((schema, table)) => TableRef::new(schema, table),
                None => TableRef::new("public", name.as_str()),
            };
            if !known.contains(&&table) {
                problems.push(format!(
                    "tables[{index}]: source `{id}` has no table `{table}`"
                ));
            } else if !tables.contains(&table) {
                tables.push(table);
            }
        }
        if problems.is_empty() {
            Ok(tables)
        } else {
            Err(Refusal {
                status: 422,
                problems,
            })
        }
    }
}
