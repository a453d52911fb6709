//! What the writer knows of a target table: its columns and their SQL types, read from the
//! catalog once and cached.

use std::collections::HashMap;
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
}

impl TargetTable {
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
    .fetch_all(conn)
    .await
    .map_err(|e| WriterError::sql(format!("read the columns of {name}"), e))?;
    if rows.is_empty() {
        return Err(WriterError::Schema {
            table: name.to_string(),
            problem: "does not exist (or has no columns)".to_owned(),
        });
    }
    Ok(TargetTable {
        name: name.clone(),
        types: rows.into_iter().collect(),
    })
}
