//! The writers' dead letters: changes a target refused for good (a constraint, a rule),
//! recorded with the reason instead of stopping the pipeline; and their replay, which sends
//! the current rows of their keys again once the cause is fixed.

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

/// What to replay.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// The PostgreSQL reaction (writer) whose dead letters are replayed; it must read a query.
    reaction: String,
    /// The dead letters' ids; all of the reaction's when absent.
    ids: Option<Vec<i64>>,
}

#[utoipa::path(post, path = "/api/v1/dead-letters/replay", tag = "reactions", request_body(content = ReplayRequest, description = "JSON or YAML: `reaction`, and `ids` (all when absent)"), responses((status = 200, description = "Replayed: the current rows of the dead-lettered keys were applied and the dead letters removed; `dead_lettered_again` counts those refused again"), (status = 202, description = "Sent, but not applied within the deadline: the dead letters are kept"), (status = 404, description = "No such reaction"), (status = 422, description = "Not a PostgreSQL writer reading a query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn replay(State(state): State<ApiState>, body: String) -> Response {
    let request: ReplayRequest = match serde_norway::from_str(&body) {
        Ok(request) => request,
        Err(error) => {
            let problem = format!("not a replay request (`reaction`, `ids`): {error}");
            let body = serde_json::json!({ "problems": [problem] });
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
    };
    match state
        .manager
        .replay_dead_letters(&request.reaction, request.ids)
        .await
    {
        Ok(replayed) => {
            let status = if replayed.applied {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, Json(replayed)).into_response()
        }
        Err(refusal) => super::components::refused(refusal),
    }
}
