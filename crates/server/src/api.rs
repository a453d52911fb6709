//! The management API (axum, its own listener): health and metrics for probes and scrapers,
//! and `/api/v1` behind bearer tokens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use subtle::ConstantTimeEq;
use surefoot_core_lifecycle::{TaskGroup, timeout};
use surefoot_core_model::Secret;
use tokio::sync::oneshot;

use crate::run::{
    Command, ComponentView, Kind, Manager, Metrics, Refusal, Registry, RunError, State as Stage,
    Writers,
};

/// Bound on one readiness probe of a writer, and on a query's answer to the API.
const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Every component.
    pub registry: Registry,
    /// The connected writers.
    pub writers: Writers,
    /// `/metrics`, when enabled.
    pub metrics: Option<Metrics>,
    /// The components, to describe, create and remove.
    pub manager: Manager,
    /// Accepted bearer tokens; none means the API is open (allowed on loopback only).
    pub tokens: Arc<Vec<Secret>>,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/api/v1/components", get(components))
        .route("/api/v1/queries/{id}/results", get(results))
        .route("/api/v1/queries/{id}/pause", post(pause))
        .route("/api/v1/queries/{id}/resume", post(resume))
        .route("/api/v1/tasks", get(tasks))
        .route("/api/v1/sources/{id}", get(describe_source))
        .route(
            "/api/v1/queries/{id}",
            get(describe_query).put(add_query).delete(remove_query),
        )
        .route(
            "/api/v1/reactions/{id}",
            get(describe_reaction).delete(remove_reaction),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(protected)
        .with_state(state)
}

/// Binds `listen` and serves the API in `group` until the group stops.
pub async fn serve(listen: SocketAddr, state: ApiState, group: &TaskGroup) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| RunError::Api(format!("cannot listen on {listen}: {error}")))?;
    tracing::info!(%listen, "management API listening");
    let app = router(state);
    group
        .spawn("api", move |cancel| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        })
        .map_err(|error| RunError::Api(error.to_string()))
}

async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if state.tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let accepted = presented.is_some_and(|presented| {
        state
            .tokens
            .iter()
            .any(|token| bool::from(token.expose().as_bytes().ct_eq(presented.as_bytes())))
    });
    if accepted {
        next.run(request).await
    } else {
        let body = Json(serde_json::json!({ "error": "a valid bearer token is required" }));
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response()
    }
}

async fn live() -> &'static str {
    "live\n"
}

/// Why the pipeline is not ready.
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    problems: Vec<String>,
}

async fn ready(State(state): State<ApiState>) -> Response {
    let mut problems = Vec::new();
    for view in state.registry.views() {
        match (view.kind, view.state) {
            (_, Stage::Failed) => problems.push(format!(
                "{} failed: {}",
                view.id,
                view.detail.unwrap_or_default()
            )),
            (Kind::Source, stage) if stage != Stage::Running => {
                problems.push(format!("source {} is not streaming ({stage:?})", view.id));
            }
            (Kind::Reaction, Stage::Starting) => {
                problems.push(format!("reaction {} is not connected", view.id));
            }
            _ if view.stalled => problems.push(format!(
                "{} is stalled: {} pending, no progress for {:.0} s",
                view.id, view.pending, view.since_progress_seconds
            )),
            _ => {}
        }
    }
    for (id, writer) in state.writers.all() {
        let healthy = timeout("writer health", PROBE_LIMIT, writer.health())
            .await
            .is_ok_and(|health| health.postgres_sync_healthy);
        if !healthy {
            problems.push(format!("reaction {id}: its PostgreSQL is not reachable"));
        }
    }
    let ready = problems.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, problems })).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let Some(metrics) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are disabled\n").into_response();
    };
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

async fn components(State(state): State<ApiState>) -> Json<Vec<ComponentView>> {
    Json(state.registry.views())
}

fn no_query(id: &str) -> Response {
    let body = Json(serde_json::json!({ "error": format!("no query `{id}`") }));
    (StatusCode::NOT_FOUND, body).into_response()
}

async fn results(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
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
        Ok(Ok(rows)) => Json(rows).into_response(),
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

async fn pause(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    command(&state, &id, Command::Pause).await
}

async fn resume(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
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

async fn tasks(State(state): State<ApiState>) -> Json<Vec<String>> {
    Json(state.manager.tasks())
}

fn describe(state: &ApiState, kind: &str, id: &str) -> Response {
    match state.manager.describe(kind, id) {
        Some(view) => Json(view).into_response(),
        None => refused(Refusal {
            status: 404,
            problems: vec![format!("no {kind} entry `{id}`")],
        }),
    }
}

async fn describe_source(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    describe(&state, "sources", &id)
}

async fn describe_query(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    describe(&state, "queries", &id)
}

async fn describe_reaction(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    describe(&state, "reactions", &id)
}

fn refused(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    (
        status,
        Json(serde_json::json!({ "problems": refusal.problems })),
    )
        .into_response()
}

async fn add_query(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    match state.manager.add_query(&id, &body) {
        Ok(()) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn remove_query(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.manager.remove_query(&id).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn remove_reaction(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    match state.manager.remove_reaction(&id).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refusal) => refused(refusal),
    }
}
