//! Insert-first: for a table whose recent flushes found none of their keys already there (an
//! append-mostly table, serial or time-ordered keys), the new rows are `COPY`d straight in
//! under a savepoint, without probing for existing keys first. The key's unique index decides:
//! if a row's key exists after all, the `COPY` fails with a unique violation, the transaction
//! rolls back to the savepoint (nothing of the `COPY` stays) and the rows take the probe path.
//! That costs the wasted `COPY`, so after such a conflict the table is probed for the next
//! [`InsertFirst`](crate::schema::InsertFirst) cooldown before trying again.
//!
//! Only for a key column with a unique index checked at once: a deferrable or partial index
//! would let duplicates in.

use std::sync::Arc;

use sqlx::PgConnection;

use super::group::{UpsertGroup, UpsertGroups};
use crate::error::WriterError;
use crate::plan::{Effect, MirrorPlan};
use crate::schema::TargetTable;

/// What trying the `COPY` first gave.
pub(crate) enum Tried {
    /// Every row went in.
    Copied,
    /// A key existed (or insert-first does not apply): the rows still need the probe path.
    ProbeNeeded,
}

/// A plan's upserts as `COPY` text, made while planning (before the transaction holds its
/// locks) for a table that inserts first.
#[derive(Debug)]
pub(crate) struct Rendered {
    names: Vec<Arc<str>>,
    text: String,
    /// Rows in `text`.
    pub(crate) rows: u64,
}

/// Whether `table` inserts first on `key`.
pub(crate) fn applies(table: &TargetTable, key: &str) -> bool {
    table.insert_first.is_on() && table.is_unique_now(key)
}

/// `plan`'s upserts as `COPY` text, when they are all it has (no truncate, no delete) and they
/// all carry the same columns; `None` otherwise.
pub(crate) fn render(plan: &MirrorPlan<'_>) -> Option<Rendered> {
    if plan.truncate {
        return None;
    }
    let mut groups = UpsertGroups::default();
    for (key, effect) in &plan.effects {
        match effect {
            Effect::Upsert(row) => groups.push(key, row),
            Effect::Delete => return None,
        }
    }
    let [group] = <[UpsertGroup<'_>; 1]>::try_from(groups.into_groups()).ok()?;
    Some(Rendered {
        text: group.copy_text(|_| true),
        rows: group.rows.len() as u64,
        names: group.names,
    })
}

/// `COPY`s every row of `group` into `table` under a savepoint when `table` qualifies.
pub(crate) async fn try_copy(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    group: &UpsertGroup<'_>,
) -> Result<Tried, WriterError> {
    if !applies(table, key) {
        return Ok(Tried::ProbeNeeded);
    }
    copy_under_savepoint(conn, table, &group.names, group.copy_text(|_| true)).await
}

/// `COPY`s `rendered` into `table` under a savepoint when `table` (still) qualifies.
pub(crate) async fn try_copy_rendered(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    rendered: Rendered,
) -> Result<Tried, WriterError> {
    if !applies(table, key) {
        return Ok(Tried::ProbeNeeded);
    }
    copy_under_savepoint(conn, table, &rendered.names, rendered.text).await
}

async fn copy_under_savepoint(
    conn: &mut PgConnection,
    table: &TargetTable,
    names: &[Arc<str>],
    text: String,
) -> Result<Tried, WriterError> {
    savepoint(conn, "SAVEPOINT surefoot_insert_first").await?;
    let copied = super::copy::copy_in(conn, table, names, text).await;
    match copied {
        // Not released: the savepoint ends with the transaction, and a `RELEASE` would cost a
        // round trip on every sink transaction's critical path. A transaction holds one per
        // insert-first `COPY` (one per mirror table and set of columns); past 64 of them,
        // PostgreSQL's other sessions check this transaction's rows more slowly until it ends.
        Ok(()) => Ok(Tried::Copied),
        Err(error) if is_unique_violation(&error) => {
            savepoint(conn, "ROLLBACK TO SAVEPOINT surefoot_insert_first").await?;
            savepoint(conn, "RELEASE SAVEPOINT surefoot_insert_first").await?;
            table.insert_first.met_existing();
            tracing::debug!(table = %table.name, "a key existed: back to probing first");
            Ok(Tried::ProbeNeeded)
        }
        Err(error) => Err(error),
    }
}

async fn savepoint(conn: &mut PgConnection, statement: &'static str) -> Result<(), WriterError> {
    sqlx::raw_sql(statement)
        .execute(conn)
        .await
        .map_err(|e| WriterError::sql(statement.to_lowercase(), e))?;
    Ok(())
}

fn is_unique_violation(error: &WriterError) -> bool {
    match error {
        WriterError::Sql {
            source: sqlx::Error::Database(db),
            ..
        } => db.code().as_deref() == Some("23505"),
        _ => false,
    }
}
