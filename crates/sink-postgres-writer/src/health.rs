//! Health as an axum router to embed (FINDINGS W-2: the field is `postgres_sync_healthy`).
//!
//! `GET /health` answers `200` when healthy or degraded (Redis down: the outbox grows, nothing
//! is lost) and `503` when PostgreSQL cannot be reached, the last sink transaction failed, or the
//! relay holds a message Redis refused and the stream does not hold as ours.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use surefoot_core_lifecycle::timeout;

use crate::writer::PostgresWriter;

/// The health report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WriterHealth {
    /// `healthy`, `degraded` (publishing is behind, data is safe) or `unhealthy`.
    pub status: &'static str,
    /// PostgreSQL answers and the last sink transaction did not fail.
    pub postgres_sync_healthy: bool,
    /// The pool.
    pub pool: PoolHealth,
    /// The outbox, when configured.
    pub outbox: Option<OutboxHealth>,
    /// When the last sink transaction committed (RFC 3339), if any did.
    pub last_commit_time: Option<String>,
}

/// Pool figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolHealth {
    /// Open connections.
    pub size: u32,
    /// Idle connections.
    pub idle: usize,
    /// Callers waiting for a connection now.
    pub waiting: u64,
    /// How long the last acquire took, in milliseconds.
    pub acquire_ms: f64,
}

/// Outbox figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutboxHealth {
    /// Unsent messages.
    pub backlog: i64,
    /// Age of the oldest unsent message, in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// The relay's last Redis round succeeded.
    pub redis_connected: bool,
    /// Set while the relay holds a message unsent because Redis refused its id and the stream
    /// does not hold it as this sink's (another writer uses the stream, or the sink database
    /// was restored while Redis kept it): the reason. The writer is `unhealthy` meanwhile.
    pub refused: Option<String>,
}

impl PostgresWriter {
    /// The writer's health, from live figures and one bounded query.
    pub async fn health(&self) -> WriterHealth {
        let stats = &self.inner.stats;
        let limit = self.inner.config.pool.acquire_timeout;
        let probe = timeout("health query", limit, self.outbox_figures()).await;
        let (reachable, backlog, oldest) = match probe {
            Ok(Ok((backlog, oldest))) => (true, backlog, oldest),
            Ok(Err(_)) | Err(_) => (false, 0, None),
        };
        let postgres_sync_healthy = reachable && !stats.is_failing();
        let outbox = self.inner.config.outbox.as_ref().map(|_| OutboxHealth {
            backlog,
            oldest_age_seconds: oldest,
            redis_connected: !stats.redis_down(),
            refused: stats.outbox_refused(),
        });
        let degraded = outbox.as_ref().is_some_and(|o| !o.redis_connected);
        let refused = outbox.as_ref().is_some_and(|o| o.refused.is_some());
        let status = match (postgres_sync_healthy && !refused, degraded) {
            (false, _) => "unhealthy",
            (true, true) => "degraded",
            (true, false) => "healthy",
        };
        WriterHealth {
            status,
            postgres_sync_healthy,
            pool: PoolHealth {
                size: self.pool().size(),
                idle: self.pool().num_idle(),
                waiting: stats.waiting(),
                acquire_ms: stats.last_acquire().as_secs_f64() * 1000.0,
            },
            outbox,
            last_commit_time: stats.last_commit().map(|t| t.to_rfc3339()),
        }
    }

    async fn outbox_figures(&self) -> Result<(i64, Option<f64>), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8 \
             FROM surefoot_writer.outbox WHERE sink = $1 AND sent_at IS NULL",
        )
        .bind(self.sink())
        .fetch_one(self.pool())
        .await
    }

    /// `GET /health` for this writer, to nest in an application's router.
    pub fn health_router(&self) -> Router {
        Router::new()
            .route("/health", get(health_handler))
            .with_state(self.clone())
    }
}

async fn health_handler(State(writer): State<PostgresWriter>) -> (StatusCode, Json<WriterHealth>) {
    let health = writer.health().await;
    let code = if health.status != "unhealthy" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}
