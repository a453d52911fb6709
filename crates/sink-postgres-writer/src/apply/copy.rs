//! The fast path of a mirror upsert for single-column keys: find which keys exist (one index
//! probe per key), update those, and `COPY` the new rows straight into the target, PostgreSQL's
//! bulk insert path (`INSERT ... SELECT` inserts row by row).
//!
//! Race: another writer inserting one of the new keys between the probe and the `COPY` makes the
//! `COPY` fail with a unique violation; the transaction is then retried batch by batch and the
//! retry finds the row. Writers of one (sink, source) never race here: the checkpoint lock
//! serialises them.

use std::sync::Arc;

use sqlx::PgConnection;

use crate::error::WriterError;
use crate::ident::Ident;
use crate::schema::TargetTable;

/// Upserts rows given as columns (`names`, `arrays`) keyed by the single column `key`.
pub(crate) async fn upsert_by_copy(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    names: &[Arc<str>],
    arrays: Vec<Vec<Option<String>>>,
) -> Result<(), WriterError> {
    let key_index = names
        .iter()
        .position(|name| &**name == key)
        .ok_or_else(|| WriterError::Schema {
            table: table.name.to_string(),
            problem: format!("a row lacks the key column `{key}`"),
        })?;
    let existing = existing_rows(conn, table, key, &arrays[key_index]).await?;
    let (old, new) = split(arrays, &existing);
    if names.len() > 1 && old.first().is_some_and(|column| !column.is_empty()) {
        update(conn, table, key, key_index, names, old).await?;
    }
    if new.first().is_some_and(|column| !column.is_empty()) {
        copy_in(conn, table, names, &new).await?;
    }
    Ok(())
}

/// 0-based indexes of the rows whose key exists in the target.
async fn existing_rows(
    conn: &mut PgConnection,
    table: &TargetTable,
    key: &str,
    keys: &[Option<String>],
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

/// The rows at `existing` and the others, as columns.
fn split(arrays: Columns, existing: &[usize]) -> (Columns, Columns) {
    if existing.is_empty() {
        return (Vec::new(), arrays);
    }
    let rows = arrays.first().map_or(0, Vec::len);
    let mut is_old = vec![false; rows];
    for index in existing {
        if let Some(flag) = is_old.get_mut(*index) {
            *flag = true;
        }
    }
    let mut old = vec![Vec::new(); arrays.len()];
    let mut new = vec![Vec::new(); arrays.len()];
    for (c, column) in arrays.into_iter().enumerate() {
        for (r, value) in column.into_iter().enumerate() {
            if is_old[r] { &mut old[c] } else { &mut new[c] }.push(value);
        }
    }
    (old, new)
}

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

async fn copy_in(
    conn: &mut PgConnection,
    table: &TargetTable,
    names: &[Arc<str>],
    new: &Columns,
) -> Result<(), WriterError> {
    let columns: Vec<String> = names.iter().map(|n| quote(n)).collect::<Result<_, _>>()?;
    let statement = format!(
        "COPY {} ({}) FROM STDIN",
        table.name.quoted(),
        columns.join(", ")
    );
    let data = copy_text(new);
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

/// Rows in COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_text(columns: &Columns) -> String {
    let rows = columns.first().map_or(0, Vec::len);
    let mut text = String::with_capacity(rows * 64);
    for r in 0..rows {
        for (c, column) in columns.iter().enumerate() {
            if c > 0 {
                text.push('\t');
            }
            match &column[r] {
                None => text.push_str("\\N"),
                Some(value) => escape_into(&mut text, value),
            }
        }
        text.push('\n');
    }
    text
}

fn escape_into(text: &mut String, value: &str) {
    if !value
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        text.push_str(value);
        return;
    }
    for ch in value.chars() {
        match ch {
            '\\' => text.push_str("\\\\"),
            '\t' => text.push_str("\\t"),
            '\n' => text.push_str("\\n"),
            '\r' => text.push_str("\\r"),
            other => text.push(other),
        }
    }
}

fn quote(name: &str) -> Result<String, WriterError> {
    Ident::parse(name)
        .map(|ident| ident.quoted())
        .map_err(|e| WriterError::Schema {
            table: String::new(),
            problem: format!("column name: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_and_marks_nulls() {
        let columns = vec![
            vec![Some("1".to_owned()), Some("2".to_owned())],
            vec![Some("a\tb\\c\nd\re".to_owned()), None],
        ];
        assert_eq!(copy_text(&columns), "1\ta\\tb\\\\c\\nd\\re\n2\t\\N\n");
        let (old, new) = split(columns, &[1]);
        assert_eq!(old, vec![vec![Some("2".to_owned())], vec![None]]);
        assert_eq!(new[0], vec![Some("1".to_owned())]);
    }
}
