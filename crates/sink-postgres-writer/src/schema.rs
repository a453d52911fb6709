//! What the writer knows of a target table: its columns and their SQL types, read from the
//! catalog once and cached.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::PgConnection;

use crate::error::WriterError;
use crate::ident::QualifiedName;

/// A target table's columns, each with its type as `format_type` spells it (safe to splice
/// into a cast: it comes from the catalog, quoted where needed).
#[derive(Debug)]
pub(crate) struct TargetTable {
    pub(crate) name: QualifiedName,
    types: HashMap<String, String>,
    /// Columns that alone carry a unique index checked at once (not deferrable, not partial,
    /// not on an expression): a duplicate key in a `COPY` fails it there and then.
    unique_now: HashSet<String>,
    /// Whether recent flushes found no existing keys (see `apply::insert_first`).
    pub(crate) insert_first: InsertFirst,
}

/// Whether `COPY` may go straight in for a table whose recent flushes only inserted: turned on
/// by a key probe that found no existing key, off for [`InsertFirst::COOLDOWN`] flushes by a
/// `COPY` that met an existing key.
#[derive(Debug, Default)]
pub(crate) struct InsertFirst {
    on: AtomicBool,
    cooldown: AtomicU32,
}

impl InsertFirst {
    /// Flushes that probe before a conflict is forgotten.
    const COOLDOWN: u32 = 64;

    /// Whether to try `COPY` first.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// A probe found none of a flush's keys in the table.
    pub(crate) fn found_none(&self) {
        let cooling = self
            .cooldown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if !cooling {
            self.on.store(true, Ordering::Relaxed);
        }
    }

    /// A `COPY` tried first met an existing key.
    pub(crate) fn met_existing(&self) {
        self.on.store(false, Ordering::Relaxed);
        self.cooldown.store(Self::COOLDOWN, Ordering::Relaxed);
    }
}

impl TargetTable {
    /// Whether `column` alone carries a unique index checked at once.
    pub(crate) fn is_unique_now(&self, column: &str) -> bool {
        self.unique_now.contains(column)
    }

    /// The type of `column`, or a schema error naming it.
    pub(crate) fn column_type(&self, column: &str) -> Result<&str, WriterError> {
        self.types
            .get(column)
            .map(String::as_str)
            .ok_or_else(|| WriterError::Schema {
                table: self.name.to_string(),
                problem: format!("has no column `{column}`"),
            })
    }
}

/// Target tables by name, loaded on first use. One lock, never held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    tables: Mutex<HashMap<QualifiedName, Arc<TargetTable>>>,
}

impl SchemaCache {
    /// The table's description, from the cache or the catalog.
    pub(crate) async fn get(
        &self,
        conn: &mut PgConnection,
        name: &QualifiedName,
    ) -> Result<Arc<TargetTable>, WriterError> {
        if let Some(table) = self.lock().get(name) {
            return Ok(Arc::clone(table));
        }
        let table = Arc::new(load(conn, name).await?);
        self.lock().insert(name.clone(), Arc::clone(&table));
        Ok(table)
    }

    /// The table's description if it was loaded already.
    pub(crate) fn cached(&self, name: &QualifiedName) -> Option<Arc<TargetTable>> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<QualifiedName, Arc<TargetTable>>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads `name`'s columns and types from the catalog.
pub(crate) async fn load(
    conn: &mut PgConnection,
    name: &QualifiedName,
) -> Result<TargetTable, WriterError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
         AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(name.quoted())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| WriterError::sql(format!("read the columns of {name}"), e))?;
    if rows.is_empty() {
        return Err(WriterError::Schema {
            table: name.to_string(),
            problem: "does not exist (or has no columns)".to_owned(),
        });
    }
    let unique_now: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate \
         AND i.indisvalid AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL",
    )
    .bind(name.quoted())
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| WriterError::sql(format!("read the unique indexes of {name}"), e))?;
    Ok(TargetTable {
        name: name.clone(),
        types: rows.into_iter().collect(),
        unique_now: unique_now.into_iter().collect(),
        insert_first: InsertFirst::default(),
    })
}
