//! The fast path of a mirror upsert for single-column keys: find which keys exist (one index
//! probe per key), update those, and `COPY` the new rows straight into the target, PostgreSQL's
//! bulk insert path (`INSERT ... SELECT` inserts row by row). Tables whose recent flushes only
//! inserted skip the probe and `COPY` first (`apply::insert_first`).
//!
//! Race: another writer inserting one of the new keys between the probe and the `COPY` makes the
//! `COPY` fail with a unique violation; the transaction is then retried batch by batch and the
//! retry finds the row. Writers of one (sink, source) never race here: the checkpoint lock
//! serialises them.

use std::sync::Arc;

use sqlx::PgConnection;

use super::group::UpsertGroup;
use super::insert_first::{Tried, try_copy};
use crate::error::WriterError;
use crate::ident::Ident;
use crate::schema::TargetTable;

/// Upserts the rows of `group`, keyed by the single column `key`: the rows whose key exists are
/// updated, the others are written straight into the target with `COPY`.
pub(crate) async fn upsert_by_copy(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    group: &UpsertGroup<'_>,
) -> Result<(), WriterError> {
    if let Tried::Copied = try_copy(conn, table, key, group).await? {
        return Ok(());
    }
    let names = &group.names;
    let key_index = names
        .iter()
        .position(|name| &**name == key)
        .ok_or_else(|| WriterError::Schema {
            table: table.name.to_string(),
            problem: format!("a row lacks the key column `{key}`"),
        })?;
    let keys: Vec<Option<&str>> = group
        .rows
        .iter()
        .map(|(key_text, _)| key_text.first().and_then(Option::as_deref))
        .collect();
    let mut is_old = vec![false; keys.len()];
    for index in existing_rows(conn, table, key, &keys).await? {
        if let Some(flag) = is_old.get_mut(index) {
            *flag = true;
        }
    }
    let old_count = is_old.iter().filter(|old| **old).count();
    if old_count == 0 {
        table.insert_first.found_none();
    }
    if names.len() > 1 && old_count > 0 {
        let old = group.columns(|i| is_old[i]);
        update(conn, table, key, key_index, names, old).await?;
    }
    if old_count < keys.len() {
        copy_in(conn, table, names, group.copy_text(|i| !is_old[i])).await?;
    }
    Ok(())
}

/// 0-based indexes of the rows whose key exists in the target.
async fn existing_rows(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    keys: &[Option<&str>],
) -> Result<Vec<usize>, WriterError> {
    let ty = table.column_type(key)?;
    let column = quote(key)?;
    // A join with the keys' ordinals: an index probe per key, or one hash join; never a search
    // of the key array per row (`array_position` is linear). Keys outside the table's lowest and
    // highest key cannot exist and are not probed: two index descents, evaluated once, spare
    // the probe of every key of an append (serial or time-ordered keys), which took a sixth to a
    // quarter of the server's time per sink transaction in the benchmark. An empty table gives
    // NULL bounds, so nothing is probed; NULL keys are left out of the bounds (a descending
    // order would put them first), as the join never matches them. Needs the key type's default
    // btree ordering, which every type of a primary key or unique constraint has.
    let target = table.name.quoted();
    let bound = |order: &str| {
        format!(
            "(SELECT b.{column} FROM {target} AS b WHERE b.{column} IS NOT NULL \
             ORDER BY b.{column} {order} LIMIT 1)"
        )
    };
    let sql = format!(
        "SELECT u.n FROM unnest($1::text[]::{ty}[]) WITH ORDINALITY AS u(k, n) \
         JOIN {target} AS t ON t.{column} = u.k \
         WHERE u.k >= {} AND u.k <= {}",
        bound("ASC"),
        bound("DESC")
    );
    let found: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(keys)
        .fetch_all(conn)
        .await
        .map_err(|e| WriterError::sql(format!("look up existing keys of {}", table.name), e))?;
    Ok(found
        .into_iter()
        .filter_map(|ordinal| usize::try_from(ordinal - 1).ok())
        .collect())
}

type Columns = Vec<Vec<Option<String>>>;

async fn update(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    key_index: usize,
    names: &[Arc<str>],
    old: Columns,
) -> Result<(), WriterError> {
    let mut casts = Vec::with_capacity(names.len());
    let mut sets = Vec::new();
    let mut params = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let n = i + 1;
        casts.push(format!("u.v{n}::{} AS c{n}", table.column_type(name)?));
        params.push((format!("${n}::text[]"), format!("v{n}")));
        if i != key_index {
            sets.push(format!("{} = u.c{n}", quote(name)?));
        }
    }
    let (list, aliases): (Vec<String>, Vec<String>) = params.into_iter().unzip();
    let sql = format!(
        "UPDATE {} AS t SET {} FROM (SELECT {} FROM unnest({}) AS u({})) AS u WHERE t.{} = u.c{}",
        table.name.quoted(),
        sets.join(", "),
        casts.join(", "),
        list.join(", "),
        aliases.join(", "),
        quote(key)?,
        key_index + 1
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for column in old {
        query = query.bind(column);
    }
    query
        .execute(conn)
        .await
        .map_err(|e| WriterError::sql(format!("update {}", table.name), e))?;
    Ok(())
}

pub(crate) async fn copy_in(
    conn: &mut PgConnection,
    table: &TargetTable,
    names: &[Arc<str>],
    data: String,
) -> Result<(), WriterError> {
    let columns: Vec<String> = names.iter().map(|n| quote(n)).collect::<Result<_, _>>()?;
    let statement = format!(
        "COPY {} ({}) FROM STDIN",
        table.name.quoted(),
        columns.join(", ")
    );
    let failed = |e| WriterError::sql(format!("copy into {}", table.name), e);
    let mut copy = conn.copy_in_raw(&statement).await.map_err(failed)?;
    if let Err(error) = copy.send(data.as_bytes()).await {
        if let Err(abort) = copy.abort("sending rows failed").await {
            tracing::warn!(error = %abort, "aborting a failed COPY failed too; the transaction is rolled back anyway");
        }
        return Err(failed(error));
    }
    copy.finish().await.map_err(failed)?;
    Ok(())
}

fn quote(name: &str) -> Result<String, WriterError> {
    Ident::parse(name)
        .map(|ident| ident.quoted())
        .map_err(|e| WriterError::Schema {
            table: String::new(),
            problem: format!("column name: {e}"),
        })
}
