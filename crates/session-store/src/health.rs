//! An axum router that reports every store's pool as JSON (FINDINGS S-2, S-7).
//!
//! `GET /health` answers `{"status": "ok" | "degraded" | "closed", "pools": [PoolStats…]}`:
//! 200 while every pool is ok or degraded (serving, but operations wait or recently gave up),
//! 503 once any pool is closed.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use crate::pool::{PoolHealth, PoolStats};
use crate::store::SessionStore;

/// The health report.
#[derive(Debug, Clone, Serialize)]
pub struct HealthBody {
    /// The worst pool's health.
    pub status: PoolHealth,
    /// Every pool's numbers.
    pub pools: Vec<PoolStats>,
}

/// The worst health of `stores`' pools, with their numbers.
pub fn report(stores: &[Arc<dyn SessionStore>]) -> HealthBody {
    let pools: Vec<PoolStats> = stores.iter().map(|s| s.pool_stats()).collect();
    let status = pools
        .iter()
        .map(|p| p.health)
        .max_by_key(|h| match h {
            PoolHealth::Ok => 0,
            PoolHealth::Degraded => 1,
            PoolHealth::Closed => 2,
        })
        .unwrap_or(PoolHealth::Ok);
    HealthBody { status, pools }
}

/// `GET /health` for `stores`.
pub fn router(stores: Vec<Arc<dyn SessionStore>>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(Arc::new(stores))
}

async fn health(
    State(stores): State<Arc<Vec<Arc<dyn SessionStore>>>>,
) -> (StatusCode, Json<HealthBody>) {
    let body = report(&stores);
    let code = if body.status == PoolHealth::Closed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body))
}
