//! How many rows a snapshot will copy, about: the planner's estimate for each table, read in
//! the snapshot's transaction before the copy. It is a progress aid, never a bound: a table
//! the planner has no statistics for is estimated from its size on disk.

use serde_json::Value;
use surefoot_core_model::TableRef;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use super::connection::SnapshotConnection;
use crate::error::{BootstrapError, Step, bounded};

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The planner's estimate of the rows of `tables` (summed), inside the snapshot.
pub(crate) async fn estimated_rows(
    connection: &SnapshotConnection,
    tables: &[TableRef],
) -> Result<u64, BootstrapError> {
    let mut total = 0u64;
    for table in tables {
        let sql = format!(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM {}.{}",
            quote(&table.schema),
            quote(&table.name)
        );
        // The simple protocol answers in text whatever the column's type (`json` here).
        let messages = bounded(
            Step::Statement,
            connection.statement_timeout(),
            connection.client().simple_query(sql.as_str()),
        )
        .await?
        .map_err(|source| {
            if source.code() == Some(&SqlState::UNDEFINED_TABLE) {
                BootstrapError::NoSuchTable {
                    table: table.to_string(),
                }
            } else {
                BootstrapError::query("estimate rows", source)
            }
        })?;
        let plan = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        match plan
            .and_then(|text| serde_json::from_str(text).ok())
            .as_ref()
            .and_then(plan_rows)
        {
            Some(rows) => total += rows,
            None => {
                tracing::warn!(%table, "the planner's estimate was not understood; counted as 0")
            }
        }
    }
    Ok(total)
}

/// `Plan Rows` of the top node of an `EXPLAIN (FORMAT JSON)` answer.
fn plan_rows(plan: &Value) -> Option<u64> {
    let rows = plan.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64()?;
    // Rounded: the planner's figure is a float.
    Some(rows.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_nodes_rows_are_read_and_anything_else_is_unknown() {
        let plan =
            serde_json::json!([{ "Plan": { "Node Type": "Seq Scan", "Plan Rows": 2550.0 } }]);
        assert_eq!(plan_rows(&plan), Some(2550));
        assert_eq!(plan_rows(&serde_json::json!([{}])), None);
        assert_eq!(plan_rows(&serde_json::json!({"Plan": 1})), None);
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
