//! The management API (axum, its own listener): health and metrics for probes and scrapers,
//! and `/api/v1` behind bearer tokens. The OpenAPI document is generated from the handlers'
//! annotations together with their routes (`utoipa-axum`), so the two cannot differ.

mod components;
mod dead_letters;
mod health;
mod queries;
mod reactions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::Secret;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::run::{Manager, Metrics, Registry, RunError, Writers};

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

/// The document's frame; the operations come from the handlers.
#[derive(OpenApi)]
#[openapi(info(
    title = "surefoot management API",
    description = "Components, health and metrics of a running surefoot server."
))]
struct ApiDoc;

/// Declares the bearer scheme and requires it on every `/api/v1` operation.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in api.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
                operation.security = Some(vec![bearer]);
            }
        }
    }
}

/// The routes, and the OpenAPI document generated with them (also served, behind the tokens,
/// at `/api/v1/openapi.json`).
pub fn router(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let (protected, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(components::components))
        .routes(routes!(components::tasks))
        .routes(routes!(
            components::describe_source,
            components::add_source,
            components::remove_source
        ))
        .routes(routes!(components::stop_source))
        .routes(routes!(components::start_source))
        .routes(routes!(components::pause_source))
        .routes(routes!(components::resume_source))
        .routes(routes!(components::snapshot_source))
        .routes(routes!(
            components::describe_query,
            components::add_query,
            components::remove_query
        ))
        .routes(routes!(
            components::describe_reaction,
            reactions::add,
            components::remove_reaction
        ))
        .routes(routes!(reactions::pause))
        .routes(routes!(reactions::stop))
        .routes(routes!(reactions::resume))
        .routes(routes!(reactions::start))
        .routes(routes!(dead_letters::dead_letters))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(queries::results))
        .routes(routes!(queries::pause))
        .routes(routes!(queries::resume))
        .routes(routes!(queries::stop))
        .routes(routes!(queries::start))
        .split_for_parts();
    let (public, public_document) = OpenApiRouter::new()
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .split_for_parts();
    document.merge(public_document);
    BearerAuth.modify(&mut document);
    let served = document.clone();
    let protected = protected
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(served) }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    (public.merge(protected).with_state(state), document)
}

/// Binds `listen` and serves the API in `group` until the group stops.
pub async fn serve(listen: SocketAddr, state: ApiState, group: &TaskGroup) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| RunError::Api(format!("cannot listen on {listen}: {error}")))?;
    tracing::info!(%listen, "management API listening");
    let (app, _document) = router(state);
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
