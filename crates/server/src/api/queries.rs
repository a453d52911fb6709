//! A query's current result, and pausing and resuming it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use surefoot_core_lifecycle::timeout;
use tokio::sync::oneshot;

use super::{ApiState, PROBE_LIMIT};
use crate::run::Command;

pub(super) fn no_query(id: &str) -> Response {
    let body = Json(serde_json::json!({ "error": format!("no query `{id}`") }));
    (StatusCode::NOT_FOUND, body).into_response()
}

#[utoipa::path(get, path = "/api/v1/queries/{id}/results", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 200, description = "The current result rows"), (status = 404, description = "No such query"), (status = 500, description = "The result could not be evaluated from the query's state"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn results(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(commands) = state.manager.commands(&id) else {
        return no_query(&id);
    };
    let (reply, answer) = oneshot::channel();
    if commands.send(Command::Results(reply)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the query is not running\n",
        )
            .into_response();
    }
    match timeout("query results", PROBE_LIMIT * 5, answer).await {
        Ok(Ok(Ok(rows))) => Json(rows).into_response(),
        Ok(Ok(Err(reason))) => {
            let body = Json(serde_json::json!({ "error": reason }));
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }
        Ok(Err(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the query is not running\n",
        )
            .into_response(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "the query did not answer in time\n",
        )
            .into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/queries/{id}/pause", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 200, description = "Paused: no further input is taken"), (status = 404, description = "No such query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn pause(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    command(&state, &id, Command::Pause).await
}

#[utoipa::path(post, path = "/api/v1/queries/{id}/resume", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 200, description = "Taking input again"), (status = 404, description = "No such query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn resume(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    command(&state, &id, Command::Resume).await
}

#[utoipa::path(post, path = "/api/v1/queries/{id}/stop", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 200, description = "Stopped as paused: no further input is taken (its state stays, so a query has no stopped state apart from paused)"), (status = 404, description = "No such query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn stop(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    command(&state, &id, Command::Pause).await
}

#[utoipa::path(post, path = "/api/v1/queries/{id}/start", tag = "queries", params(("id" = String, Path, description = "The query")), responses((status = 200, description = "Taking input again, as after resume"), (status = 404, description = "No such query"), (status = 401, description = "No valid bearer token")))]
pub(super) async fn start(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    command(&state, &id, Command::Resume).await
}

/// Sends a command and answers once the segment carried it out: `200` then, so a caller that
/// paused knows no further input is taken.
async fn command(
    state: &ApiState,
    id: &str,
    command: impl FnOnce(oneshot::Sender<()>) -> Command,
) -> Response {
    let Some(commands) = state.manager.commands(id) else {
        return no_query(id);
    };
    let (reply, done) = oneshot::channel();
    let not_running = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the query is not running\n",
        )
    };
    if commands.send(command(reply)).await.is_err() {
        return not_running().into_response();
    }
    match timeout("query command", PROBE_LIMIT * 5, done).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(_)) => not_running().into_response(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "the query did not answer in time\n",
        )
            .into_response(),
    }
}
