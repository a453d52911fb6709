//! The components: listed, described, created and removed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::run::{ComponentView, Refusal};

#[utoipa::path(get, path = "/api/v1/components", tag = "components", responses((status = 200, description = "Every component: status, detail, progress"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn components(State(state): State<ApiState>) -> Json<Vec<ComponentView>> {
    Json(state.registry.views())
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "components", responses((status = 200, description = "Names of the live tasks"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn tasks(State(state): State<ApiState>) -> Json<Vec<String>> {
    Json(state.manager.tasks())
}

pub(super) fn describe(state: &ApiState, kind: &str, id: &str) -> Response {
    match state.manager.describe(kind, id) {
        Some(view) => Json(view).into_response(),
        None => refused(Refusal {
            status: 404,
            problems: vec![format!("no {kind} entry `{id}`")],
        }),
    }
}

#[utoipa::path(get, path = "/api/v1/sources/{id}", tag = "sources", params(("id" = String, Path, description = "The source")), responses((status = 200, description = "Its settings (no secrets) and status"), (status = 404, description = "No such source"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn describe_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    describe(&state, "sources", &id)
}

#[utoipa::path(get, path = "/api/v1/queries/{id}", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 200, description = "Its settings and status"), (status = 404, description = "No such query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn describe_query(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    describe(&state, "queries", &id)
}

#[utoipa::path(get, path = "/api/v1/reactions/{id}", tag = "reactions", params(("id" = String, Path, description = "The reaction")), responses((status = 200, description = "Its settings (no secrets) and status"), (status = 404, description = "No such reaction"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn describe_reaction(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    describe(&state, "reactions", &id)
}

pub(super) fn refused(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    (
        status,
        Json(serde_json::json!({ "problems": refusal.problems })),
    )
        .into_response()
}

#[utoipa::path(put, path = "/api/v1/queries/{id}", tag = "queries", params(("id" = String, Path, description = "The query")), request_body(content = String, description = "YAML or JSON: `sql`, `sources`, `reactions`, as in the file", content_type = "application/yaml"), responses((status = 201, description = "Created: it bootstraps, then streams"), (status = 409, description = "The id is taken"), (status = 422, description = "Every problem, with its path"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn add_query(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    match state.manager.add_query(&id, &body) {
        Ok(()) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(delete, path = "/api/v1/queries/{id}", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 202, description = "Removed: it drains what it holds, then its tasks end"), (status = 404, description = "No such query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn remove_query(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    match state.manager.remove_query(&id).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(delete, path = "/api/v1/reactions/{id}", tag = "reactions", params(("id" = String, Path, description = "The reaction")), responses((status = 202, description = "Removed: it drains what it holds, then its task ends"), (status = 404, description = "No such reaction"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn remove_reaction(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    match state.manager.remove_reaction(&id).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/stop", tag = "sources", params(("id" = String, Path, description = "The PostgreSQL source")), responses((status = 200, description = "Stopped: intake ended and the final watermark confirmed; its consumers keep what they took"), (status = 404, description = "No such PostgreSQL source"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn stop_source(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.manager.source_command(&id, false).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/start", tag = "sources", params(("id" = String, Path, description = "The PostgreSQL source")), responses((status = 200, description = "Streaming again from its slot"), (status = 404, description = "No such PostgreSQL source"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn start_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    match state.manager.source_command(&id, true).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// The body of a snapshot on demand: the tables to copy (`schema.table`, or `table` in
/// `public`). With no body, every table of the source is copied.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SnapshotTables {
    /// The tables to copy again.
    tables: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/snapshot", tag = "sources", params(("id" = String, Path, description = "The PostgreSQL source")), request_body(content = Option<SnapshotTables>, description = "The tables to copy; no body copies every table", content_type = "application/json"), responses((status = 200, description = "The tables (every table of the source, with no body) copied again to every consumer (their copies were emptied, then filled); the source streams on after the snapshot"), (status = 202, description = "Under way: it goes on"), (status = 404, description = "No such PostgreSQL source"), (status = 422, description = "A table the source does not have, or a body that is not `{\"tables\": [...]}`"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn snapshot_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let tables = if body.trim().is_empty() {
        None
    } else {
        match serde_json::from_str::<SnapshotTables>(&body) {
            Ok(named) => Some(named.tables),
            Err(error) => {
                return refused(Refusal {
                    status: 422,
                    problems: vec![format!("body: {error}")],
                });
            }
        }
    };
    match state.manager.snapshot_source(&id, tables).await {
        Ok(Some(rows)) => Json(serde_json::json!({ "id": id, "rows": rows })).into_response(),
        Ok(None) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "id": id, "under_way": true })),
        )
            .into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(put, path = "/api/v1/sources/{id}", tag = "sources", params(("id" = String, Path, description = "The source")), request_body(content = String, description = "YAML or JSON, a PostgreSQL source as in the file's `sources`", content_type = "application/yaml"), responses((status = 201, description = "Added: its tables were read; queries added at runtime read it, each from a slot of its own"), (status = 409, description = "The id is taken"), (status = 422, description = "Every problem, with its path, or its server could not be read"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn add_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    match state.manager.add_source(&id, &body).await {
        Ok(()) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(delete, path = "/api/v1/sources/{id}", tag = "sources", params(("id" = String, Path, description = "The source")), responses((status = 202, description = "Removed"), (status = 404, description = "No such source"), (status = 409, description = "In the file, or read by a query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn remove_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    match state.manager.remove_source(&id) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refused(refusal),
    }
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/pause", tag = "sources", params(("id" = String, Path, description = "The PostgreSQL source")), responses((status = 200, description = "Paused as stopped: a source has no paused state apart from stopped (intake ended, final watermark confirmed)"), (status = 404, description = "No such PostgreSQL source"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn pause_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    stop_source(State(state), Path(id)).await
}

#[utoipa::path(post, path = "/api/v1/sources/{id}/resume", tag = "sources", params(("id" = String, Path, description = "The PostgreSQL source")), responses((status = 200, description = "Streaming again from its slot, as after start"), (status = 404, description = "No such PostgreSQL source"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn resume_source(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Response {
    start_source(State(state), Path(id)).await
}
