//! A table and its copy in another database of the same server, compared with `EXCEPT` both
//! ways.

use tokio_postgres::Client;

/// How a table and its copy differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// Rows of the source that the copy lacks (or holds with other values): lost.
    pub missing: i64,
    /// Rows of the copy that the source lacks (or holds with other values): extra or stale.
    pub extra: i64,
}

impl Difference {
    /// Both sides hold exactly the same rows.
    pub fn is_equal(&self) -> bool {
        self.missing == 0 && self.extra == 0
    }
}

/// Compares `table` (columns `columns`, their SQL types in `types`, e.g. `"id int, v int"`) in
/// `source`'s database with the table of the same name reached through the libpq connection
/// string `copy`, with `EXCEPT` both ways on the source's server. Creates `dblink` in the
/// source database if it is missing.
pub async fn except_both_ways(
    source: &Client,
    copy: &str,
    table: &str,
    columns: &str,
    types: &str,
) -> Result<Difference, tokio_postgres::Error> {
    source
        .batch_execute("CREATE EXTENSION IF NOT EXISTS dblink")
        .await?;
    let remote = format!(
        "SELECT {columns} FROM dblink($1, 'SELECT {columns} FROM {table}') AS copy({types})"
    );
    let local = format!("SELECT {columns} FROM {table}");
    let missing = count(source, &format!("{local} EXCEPT {remote}"), copy).await?;
    let extra = count(source, &format!("{remote} EXCEPT {local}"), copy).await?;
    Ok(Difference { missing, extra })
}

async fn count(source: &Client, query: &str, copy: &str) -> Result<i64, tokio_postgres::Error> {
    let row = source
        .query_one(
            &format!("SELECT count(*) FROM ({query}) AS difference"),
            &[&copy],
        )
        .await?;
    row.try_get(0)
}
