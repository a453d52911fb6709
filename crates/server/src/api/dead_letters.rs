//! The writers' dead letters: changes a target refused for good (a constraint, a rule),
//! recorded with the reason instead of stopping the pipeline.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use surefoot_core_lifecycle::timeout;

use super::{ApiState, PROBE_LIMIT};

/// Rows returned per writer at most.
const MOST: i64 = 1_000;

/// `?reaction=<id>`: one writer's only.
#[derive(Debug, Deserialize)]
pub(super) struct Filter {
    reaction: Option<String>,
}

/// One dead letter.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct DeadLetter {
    id: i64,
    sink: String,
    source: String,
    table_schema: String,
    table_name: String,
    reason: String,
    change: serde_json::Value,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "reactions", params(("reaction" = Option<String>, Query, description = "One PostgreSQL reaction's only")), responses((status = 200, description = "The newest dead letters of each PostgreSQL reaction (1,000 at most each), newest first"), (status = 503, description = "A writer's database did not answer"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn dead_letters(
    State(state): State<ApiState>,
    Query(filter): Query<Filter>,
) -> Response {
    let mut letters = Vec::new();
    for (id, writer) in state.writers.all() {
        if filter.reaction.as_ref().is_some_and(|wanted| *wanted != id) {
            continue;
        }
        let read = sqlx::query_as::<_, DeadLetter>(
            "SELECT id, sink, source, table_schema, table_name, reason, change, created_at \
             FROM surefoot_writer.dead_letter WHERE sink = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(writer.sink())
        .bind(MOST)
        .fetch_all(writer.pool());
        match timeout("dead letters", PROBE_LIMIT * 5, read).await {
            Ok(Ok(rows)) => letters.extend(rows),
            Ok(Err(error)) => return unavailable(&id, &error.to_string()),
            Err(error) => return unavailable(&id, &error.to_string()),
        }
    }
    Json(letters).into_response()
}

fn unavailable(reaction: &str, reason: &str) -> Response {
    let body = serde_json::json!({ "problems": [format!("reaction {reaction}: {reason}")] });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
