//! Reconciliation (FINDINGS W-9): compares a source table with its mirror chunk by chunk of key
//! ranges, by checksum, and repairs the chunks that differ, reporting what it changed.
//!
//! Chunks are ranges `(lo, hi]` of the key, `chunk_rows` source rows each, plus a last open range
//! that catches target rows beyond the source's highest key. Each side's checksum is the MD5 of
//! the concatenated MD5s of the compared columns' row text in key order. Only differing chunks
//! are read row by row. Run it while the writer is paused, or accept that rows changing during
//! the run may be reported (and repaired to the source's then-current state, which the stream
//! then overwrites in order).

use std::collections::BTreeMap;

use sqlx::{PgPool, Postgres, Transaction};

use crate::error::WriterError;
use crate::ident::{Ident, QualifiedName};
use crate::schema::load;

/// What to compare.
#[derive(Debug, Clone)]
pub struct ReconcileSpec {
    /// The source table.
    pub source: QualifiedName,
    /// The target (mirror) table.
    pub target: QualifiedName,
    /// The key column (primary key or unique in both tables).
    pub key: Ident,
    /// Columns compared and repaired, the key included.
    pub columns: Vec<Ident>,
    /// Source rows per chunk.
    pub chunk_rows: u32,
}

/// What a run found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Chunks compared.
    pub chunks: u64,
    /// Chunks whose checksums differed.
    pub chunks_differing: u64,
    /// Rows missing from the target (inserted when repairing).
    pub missing: u64,
    /// Rows that differ (updated when repairing).
    pub different: u64,
    /// Rows only in the target (deleted when repairing).
    pub extra: u64,
    /// Whether the differences were repaired.
    pub repaired: bool,
}

type Bound = Option<String>;

/// Compares `spec.source` in `source` with `spec.target` in `target`; repairs when `repair`.
pub async fn reconcile(
    source: &PgPool,
    target: &PgPool,
    spec: &ReconcileSpec,
    repair: bool,
) -> Result<ReconcileReport, WriterError> {
    let key_type = {
        let mut conn = source
            .acquire()
            .await
            .map_err(|e| WriterError::sql("acquire a connection", e))?;
        let table = load(&mut conn, &spec.source).await?;
        table.column_type(spec.key.as_str())?.to_owned()
    };
    let mut report = ReconcileReport {
        repaired: repair,
        ..ReconcileReport::default()
    };
    let mut lo: Bound = None;
    loop {
        let hi = next_bound(source, spec, &key_type, &lo).await?;
        report.chunks += 1;
        let a = checksum(source, &spec.source, spec, &key_type, &lo, &hi).await?;
        let b = checksum(target, &spec.target, spec, &key_type, &lo, &hi).await?;
        if a != b {
            report.chunks_differing += 1;
            repair_chunk(
                source,
                target,
                spec,
                &key_type,
                (&lo, &hi),
                repair,
                &mut report,
            )
            .await?;
        }
        match hi {
            Some(hi) => lo = Some(hi),
            None => return Ok(report),
        }
    }
}

fn range_sql(spec: &ReconcileSpec, key_type: &str) -> String {
    let key = spec.key.quoted();
    format!(
        "($1::text IS NULL OR {key} > $1::text::{key_type}) \
         AND ($2::text IS NULL OR {key} <= $2::text::{key_type})"
    )
}

fn row_text(spec: &ReconcileSpec) -> String {
    let columns: Vec<String> = spec.columns.iter().map(Ident::quoted).collect();
    format!("ROW({})::text", columns.join(", "))
}

/// The key closing the next chunk after `lo`, or `None` when fewer than a chunk's rows remain.
async fn next_bound(
    pool: &PgPool,
    spec: &ReconcileSpec,
    key_type: &str,
    lo: &Bound,
) -> Result<Bound, WriterError> {
    let key = spec.key.quoted();
    let sql = format!(
        "SELECT max(k)::text, count(*) FROM (SELECT {key} AS k FROM {} \
         WHERE $1::text IS NULL OR {key} > $1::text::{key_type} ORDER BY {key} LIMIT $2) s",
        spec.source.quoted()
    );
    let (hi, rows): (Option<String>, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(lo)
        .bind(i64::from(spec.chunk_rows))
        .fetch_one(pool)
        .await
        .map_err(|e| WriterError::sql("find the next chunk", e))?;
    Ok(hi.filter(|_| rows >= i64::from(spec.chunk_rows)))
}

async fn checksum(
    pool: &PgPool,
    table: &QualifiedName,
    spec: &ReconcileSpec,
    key_type: &str,
    lo: &Bound,
    hi: &Bound,
) -> Result<(i64, String), WriterError> {
    let sql = format!(
        "SELECT count(*), coalesce(md5(string_agg(md5({}), '' ORDER BY {})), '') FROM {} WHERE {}",
        row_text(spec),
        spec.key.quoted(),
        table.quoted(),
        range_sql(spec, key_type)
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(lo)
        .bind(hi)
        .fetch_one(pool)
        .await
        .map_err(|e| WriterError::sql(format!("checksum a chunk of {table}"), e))
}

/// Rows of a chunk: key text to (row text, row as JSON).
async fn rows(
    pool: &PgPool,
    table: &QualifiedName,
    spec: &ReconcileSpec,
    key_type: &str,
    (lo, hi): (&Bound, &Bound),
) -> Result<BTreeMap<String, (String, String)>, WriterError> {
    let columns: Vec<String> = spec.columns.iter().map(Ident::quoted).collect();
    let sql = format!(
        "SELECT {key}::text, {text}, json_build_object({pairs})::text FROM {table} WHERE {range}",
        key = spec.key.quoted(),
        text = row_text(spec),
        pairs = spec
            .columns
            .iter()
            .zip(&columns)
            .map(|(name, quoted)| format!("'{}', {quoted}", name.as_str().replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", "),
        table = table.quoted(),
        range = range_sql(spec, key_type),
    );
    let found: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(lo)
        .bind(hi)
        .fetch_all(pool)
        .await
        .map_err(|e| WriterError::sql(format!("read a chunk of {table}"), e))?;
    Ok(found.into_iter().map(|(k, t, j)| (k, (t, j))).collect())
}

async fn repair_chunk(
    source: &PgPool,
    target: &PgPool,
    spec: &ReconcileSpec,
    key_type: &str,
    range: (&Bound, &Bound),
    repair: bool,
    report: &mut ReconcileReport,
) -> Result<(), WriterError> {
    let wanted = rows(source, &spec.source, spec, key_type, range).await?;
    let present = rows(target, &spec.target, spec, key_type, range).await?;
    let mut upserts = Vec::new();
    for (key, (text, json)) in &wanted {
        match present.get(key) {
            None => report.missing += 1,
            Some((found, _)) if found != text => report.different += 1,
            Some(_) => continue,
        }
        upserts.push(json.clone());
    }
    let extras: Vec<String> = present
        .keys()
        .filter(|key| !wanted.contains_key(*key))
        .cloned()
        .collect();
    report.extra += extras.len() as u64;
    tracing::info!(source = %spec.source, target = %spec.target, upserts = upserts.len(), extras = extras.len(), repair, "reconciliation found drift in a chunk");
    if !repair {
        return Ok(());
    }
    let mut tx = target
        .begin()
        .await
        .map_err(|e| WriterError::sql("begin repair", e))?;
    apply_repair(&mut tx, spec, key_type, upserts, extras).await?;
    tx.commit()
        .await
        .map_err(|e| WriterError::sql("commit repair", e))
}

async fn apply_repair(
    tx: &mut Transaction<'static, Postgres>,
    spec: &ReconcileSpec,
    key_type: &str,
    upserts: Vec<String>,
    extras: Vec<String>,
) -> Result<(), WriterError> {
    let table = spec.target.quoted();
    let key = spec.key.quoted();
    if !extras.is_empty() {
        let sql = format!("DELETE FROM {table} WHERE {key} = ANY($1::text[]::{key_type}[])");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(extras)
            .execute(&mut **tx)
            .await
            .map_err(|e| WriterError::sql("delete extra rows", e))?;
    }
    if !upserts.is_empty() {
        let columns: Vec<String> = spec.columns.iter().map(Ident::quoted).collect();
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| **c != key)
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        let list = columns.join(", ");
        let sql = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM \
             json_populate_recordset(NULL::{table}, $1::json) ON CONFLICT ({key}) DO {action}"
        );
        let array = format!("[{}]", upserts.join(","));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(array)
            .execute(&mut **tx)
            .await
            .map_err(|e| WriterError::sql("upsert missing and different rows", e))?;
    }
    Ok(())
}
