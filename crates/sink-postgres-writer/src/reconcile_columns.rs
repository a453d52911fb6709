//! What a reconciliation compares when it is not told: the source table's single-column primary
//! key, and the columns the source and target tables have in common, read from `pg_catalog`.
//!
//! [`resolve_spec`] turns a [`SpecRequest`] (tables, and optionally the key and columns) into a
//! checked [`ReconcileSpec`]: both tables exist, the key is unique in both (primary key or the only
//! column of a plain unique index, which the repair's `ON CONFLICT` needs), every compared column
//! exists in both, and none is generated in the target (a repair could not write it).

use sqlx::PgPool;

use crate::ident::{Ident, QualifiedName};
use crate::reconcile::ReconcileSpec;

/// What to reconcile; `None` asks for the default.
#[derive(Debug, Clone)]
pub struct SpecRequest {
    /// The source table.
    pub source: QualifiedName,
    /// The target table.
    pub target: QualifiedName,
    /// The key column; by default the source table's single-column primary key.
    pub key: Option<Ident>,
    /// Columns to compare (the key is added first when absent); by default every column both
    /// tables have, in the source's order, except columns generated in the target.
    pub columns: Option<Vec<Ident>>,
    /// Source rows per chunk.
    pub chunk_rows: u32,
}

/// Columns a table lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// `source` or `target`.
    pub side: &'static str,
    /// The table.
    pub table: QualifiedName,
    /// The columns it does not have.
    pub columns: Vec<Ident>,
}

/// Why a reconciliation cannot be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A table does not exist.
    #[error("{side} table {table} does not exist")]
    NoTable {
        /// `source` or `target`.
        side: &'static str,
        /// The table.
        table: QualifiedName,
    },
    /// The source table has no primary key to default the key to.
    #[error("source table {0} has no primary key; name the key column")]
    NoPrimaryKey(QualifiedName),
    /// The source table's primary key has several columns.
    #[error(
        "source table {table} has a composite primary key ({}); reconciliation needs a single \
         key column, unique in both tables",
        join(columns)
    )]
    CompositeKey {
        /// The table.
        table: QualifiedName,
        /// The key's columns.
        columns: Vec<Ident>,
    },
    /// The key is not unique in a table.
    #[error(
        "key column `{key}` is neither the primary key of {side} table {table} nor the only \
         column of a unique index on it"
    )]
    NotUnique {
        /// `source` or `target`.
        side: &'static str,
        /// The table.
        table: QualifiedName,
        /// The key column.
        key: Ident,
    },
    /// Compared columns missing from either table, all of them listed.
    #[error("missing columns: {}", describe_missing(.0))]
    MissingColumns(Vec<Missing>),
    /// Compared columns the target computes, which a repair cannot write.
    #[error(
        "target table {table} generates columns {}, which cannot be repaired",
        join(columns)
    )]
    Generated {
        /// The target table.
        table: QualifiedName,
        /// The generated columns asked for.
        columns: Vec<Ident>,
    },
    /// A catalog query failed.
    #[error("{operation} failed")]
    Sql {
        /// What was being read.
        operation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// A table's columns in order, with whether each is generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumns {
    /// The table.
    pub table: QualifiedName,
    /// Its columns in `attnum` order: name, and whether it is a generated column.
    pub columns: Vec<(Ident, bool)>,
}

impl TableColumns {
    fn has(&self, column: &Ident) -> bool {
        self.columns.iter().any(|(name, _)| name == column)
    }

    fn generated(&self, column: &Ident) -> bool {
        self.columns.iter().any(|(name, g)| name == column && *g)
    }
}

/// Checks the request against both catalogs and fills in the defaults.
pub async fn resolve_spec(
    source: &PgPool,
    target: &PgPool,
    request: SpecRequest,
) -> Result<ReconcileSpec, SpecError> {
    let source_columns = table_columns(source, "source", &request.source).await?;
    let target_columns = table_columns(target, "target", &request.target).await?;
    let key = match request.key {
        Some(key) => key,
        None => primary_key(source, &request.source).await?,
    };
    let columns = choose_columns(
        &key,
        &source_columns,
        &target_columns,
        request.columns.as_deref(),
    )?;
    check_unique_key(source, "source", &request.source, &key).await?;
    check_unique_key(target, "target", &request.target, &key).await?;
    Ok(ReconcileSpec {
        source: request.source,
        target: request.target,
        key,
        columns,
        chunk_rows: request.chunk_rows,
    })
}

/// `table`'s columns in order; [`SpecError::NoTable`] when it does not exist.
pub async fn table_columns(
    pool: &PgPool,
    side: &'static str,
    table: &QualifiedName,
) -> Result<TableColumns, SpecError> {
    let (found,): (Option<String>,) = sqlx::query_as("SELECT to_regclass($1)::text")
        .bind(table.quoted())
        .fetch_one(pool)
        .await
        .map_err(|e| sql(format!("look up {side} table {table}"), e))?;
    if found.is_none() {
        return Err(SpecError::NoTable {
            side,
            table: table.clone(),
        });
    }
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT attname::text, attgenerated <> '' FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table.quoted())
    .fetch_all(pool)
    .await
    .map_err(|e| sql(format!("read the columns of {side} table {table}"), e))?;
    Ok(TableColumns {
        table: table.clone(),
        columns: rows
            .into_iter()
            .filter_map(|(name, generated)| Ident::parse(&name).ok().map(|n| (n, generated)))
            .collect(),
    })
}

/// The single column of `table`'s primary key.
pub async fn primary_key(pool: &PgPool, table: &QualifiedName) -> Result<Ident, SpecError> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table.quoted())
    .fetch_all(pool)
    .await
    .map_err(|e| sql(format!("read the primary key of {table}"), e))?;
    let mut columns: Vec<Ident> = names
        .into_iter()
        .filter_map(|(name,)| Ident::parse(&name).ok())
        .collect();
    match columns.len() {
        0 => Err(SpecError::NoPrimaryKey(table.clone())),
        1 => Ok(columns.remove(0)),
        _ => Err(SpecError::CompositeKey {
            table: table.clone(),
            columns,
        }),
    }
}

/// Fails unless `key` is `table`'s primary key or the only column of an immediate, total,
/// non-expression unique index: what `ON CONFLICT (key)` and the key-range chunks need.
pub async fn check_unique_key(
    pool: &PgPool,
    side: &'static str,
    table: &QualifiedName,
    key: &Ident,
) -> Result<(), SpecError> {
    let (unique,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
         ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass($1) AND a.attname = $2 AND i.indisunique \
         AND i.indimmediate AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL)",
    )
    .bind(table.quoted())
    .bind(key.as_str())
    .fetch_one(pool)
    .await
    .map_err(|e| {
        sql(
            format!("read the unique indexes of {side} table {table}"),
            e,
        )
    })?;
    if unique {
        Ok(())
    } else {
        Err(SpecError::NotUnique {
            side,
            table: table.clone(),
            key: key.clone(),
        })
    }
}

/// The compared columns, the key first unless `explicit` places it: `explicit` checked against
/// both tables (every missing column listed), or by default the source's columns that the
/// target has and does not generate.
pub fn choose_columns(
    key: &Ident,
    source: &TableColumns,
    target: &TableColumns,
    explicit: Option<&[Ident]>,
) -> Result<Vec<Ident>, SpecError> {
    let mut columns: Vec<Ident> = match explicit {
        Some(explicit) => explicit.to_vec(),
        None => source
            .columns
            .iter()
            .filter(|(name, _)| name == key || (target.has(name) && !target.generated(name)))
            .map(|(name, _)| name.clone())
            .collect(),
    };
    if !columns.contains(key) {
        columns.insert(0, key.clone());
    }
    let mut seen = std::collections::HashSet::new();
    columns.retain(|c| seen.insert(c.clone()));
    let missing: Vec<Missing> = [("source", source), ("target", target)]
        .into_iter()
        .filter_map(|(side, table)| lacking(side, table, &columns))
        .collect();
    if !missing.is_empty() {
        return Err(SpecError::MissingColumns(missing));
    }
    let generated: Vec<Ident> = columns
        .iter()
        .filter(|c| target.generated(c))
        .cloned()
        .collect();
    if !generated.is_empty() {
        return Err(SpecError::Generated {
            table: target.table.clone(),
            columns: generated,
        });
    }
    Ok(columns)
}

fn lacking(side: &'static str, table: &TableColumns, columns: &[Ident]) -> Option<Missing> {
    let absent: Vec<Ident> = columns.iter().filter(|c| !table.has(c)).cloned().collect();
    (!absent.is_empty()).then(|| Missing {
        side,
        table: table.table.clone(),
        columns: absent,
    })
}

fn join(columns: &[Ident]) -> String {
    columns
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_missing(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(|m| format!("{} table {} has no {}", m.side, m.table, join(&m.columns)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn sql(operation: String, source: sqlx::Error) -> SpecError {
    SpecError::Sql { operation, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, columns: &[(&str, bool)]) -> TableColumns {
        TableColumns {
            table: QualifiedName::parse(name).unwrap(),
            columns: columns
                .iter()
                .map(|(c, g)| (Ident::parse(c).unwrap(), *g))
                .collect(),
        }
    }

    fn idents(names: &[&str]) -> Vec<Ident> {
        names.iter().map(|n| Ident::parse(n).unwrap()).collect()
    }

    #[test]
    fn defaults_are_the_common_columns_in_source_order_without_generated_ones() {
        let source = table(
            "s",
            &[("a", false), ("id", false), ("b", false), ("c", false)],
        );
        let target = table(
            "t",
            &[("c", false), ("b", true), ("id", false), ("z", false)],
        );
        let key = Ident::parse("id").unwrap();
        let chosen = choose_columns(&key, &source, &target, None).unwrap();
        assert_eq!(chosen, idents(&["id", "c"]));
    }

    #[test]
    fn explicit_columns_get_the_key_and_every_missing_one_is_listed() {
        let source = table("app.s", &[("id", false), ("a", false)]);
        let target = table("t", &[("id", false), ("b", false)]);
        let key = Ident::parse("id").unwrap();
        let chosen = choose_columns(&key, &source, &target, Some(&idents(&["a"])));
        let Err(SpecError::MissingColumns(missing)) = chosen else {
            panic!("expected missing columns, got {chosen:?}");
        };
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].side, "target");
        assert_eq!(missing[0].columns, idents(&["a"]));
        let both = choose_columns(&key, &source, &target, Some(&idents(&["a", "b", "x"])));
        let message = both.unwrap_err().to_string();
        assert_eq!(
            message,
            "missing columns: source table app.s has no `b`, `x`; \
             target table public.t has no `a`, `x`"
        );
        let ok = choose_columns(&key, &source, &source, Some(&idents(&["a"]))).unwrap();
        assert_eq!(ok, idents(&["id", "a"]));
    }

    #[test]
    fn a_key_the_target_lacks_or_generates_is_refused() {
        let source = table("s", &[("id", false), ("a", false)]);
        let lacking = table("t", &[("a", false)]);
        let key = Ident::parse("id").unwrap();
        assert!(matches!(
            choose_columns(&key, &source, &lacking, None),
            Err(SpecError::MissingColumns(_))
        ));
        let generated = table("t", &[("id", false), ("a", true)]);
        let error = choose_columns(&key, &source, &generated, Some(&idents(&["a"]))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "target table public.t generates columns `a`, which cannot be repaired"
        );
    }
}
