//! Adding reactions to running queries, and holding reactions: pause (it keeps its
//! connection), stop (it closes it), and resume or start. A held reaction takes no further
//! batch; once its queue is full its segment, the segment's query and their sources wait, so
//! nothing is dropped.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::components::refused;
use crate::run::Hold;

#[utoipa::path(post, path = "/api/v1/reactions/{id}/pause", tag = "reactions", params(("id" = String, Path, description = "The reaction")), responses((status = 200, description = "Paused: it takes no further batch and keeps its connection"), (status = 202, description = "Asked: it pauses once the batch in hand is done or once it runs again"), (status = 404, description = "No such reaction"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn pause(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    hold(&state, &id, Hold::Paused).await
}

#[utoipa::path(post, path = "/api/v1/reactions/{id}/stop", tag = "reactions", params(("id" = String, Path, description = "The reaction")), responses((status = 200, description = "Stopped: it finished what it held and closed its connection"), (status = 202, description = "Asked: it stops once the batch in hand is done or once it runs again"), (status = 404, description = "No such reaction"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn stop(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    hold(&state, &id, Hold::Stopped).await
}

#[utoipa::path(post, path = "/api/v1/reactions/{id}/resume", tag = "reactions", params(("id" = String, Path, description = "The reaction")), responses((status = 200, description = "It takes batches again"), (status = 202, description = "Asked: it takes batches once it runs again"), (status = 404, description = "No such reaction"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn resume(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    hold(&state, &id, Hold::Open).await
}

#[utoipa::path(post, path = "/api/v1/reactions/{id}/start", tag = "reactions", params(("id" = String, Path, description = "The reaction")), responses((status = 200, description = "Connected again (after a stop) and taking batches"), (status = 202, description = "Asked: it takes batches once connected"), (status = 404, description = "No such reaction"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn start(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    hold(&state, &id, Hold::Open).await
}

#[utoipa::path(put, path = "/api/v1/reactions/{id}", tag = "reactions", params(("id" = String, Path, description = "The reaction")), request_body(content = String, description = "YAML or JSON, as in the file's `reactions`; `from` names a query", content_type = "application/yaml"), responses((status = 201, description = "Created: it is sent the query's current result, then every change"), (status = 409, description = "The id is taken"), (status = 422, description = "Every problem, with its path"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn add(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    match state.manager.add_reaction(&id, &body).await {
        Ok(()) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn hold(state: &ApiState, id: &str, hold: Hold) -> Response {
    match state.manager.hold_reaction(id, hold).await {
        Ok(carried_out) => {
            let status = if carried_out {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, Json(serde_json::json!({ "id": id, "hold": hold }))).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}
