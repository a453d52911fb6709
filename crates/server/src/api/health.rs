//! Probes and scrapes: liveness, readiness, Prometheus metrics. Not behind the tokens.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use surefoot_core_lifecycle::timeout;

use super::{ApiState, PROBE_LIMIT};
use crate::run::{Kind, State as Stage};

#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "The process runs")))]
pub(super) async fn live() -> &'static str {
    "live\n"
}

/// Why the pipeline is not ready.
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    problems: Vec<String>,
}

#[utoipa::path(get, path = "/health/ready", tag = "health", responses((status = 200, description = "Every source streams and every sink is connected"), (status = 503, description = "Not ready, with the reasons")))]
pub(super) async fn ready(State(state): State<ApiState>) -> Response {
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
            (Kind::Reaction, Stage::Stopped) => problems.push(format!(
                "reaction {} is held: {}",
                view.id,
                view.detail.unwrap_or_default()
            )),
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

#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text"), (status = 404, description = "Metrics are disabled")))]
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    let Some(metrics) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are disabled\n").into_response();
    };
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}
