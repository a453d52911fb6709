//! The endpoints: `POST /v1/changes` (one change), `POST /v1/batches` (a JSON array or NDJSON)
//! and `GET /health`.
//!
//! A request goes through, in order: authentication (`401`), content type (`415`), idempotency
//! key syntax (`400`), body size and read time (`413`, `408`), validation of the whole body
//! (`400`, `413`), the idempotency record (replay, `409`, `422`), room in the pipeline within
//! `accept_timeout` (`429`), then its answer per the ack mode. Nothing is queued before the whole
//! body is valid, so a rejected request ingests nothing.
//!
//! Cancel safety: a handler dropped mid-way (the client went away) loses nothing. Before its
//! changes are queued, dropping it releases its idempotency claim; after, the batcher and the
//! settler own the request, record its outcome under its key and drop the unsent answer.

#![allow(
    clippy::result_large_err,
    reason = "each step's early answer is its error; it is built once per request, not propagated far"
)]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::answer;
use crate::batcher::Submission;
use crate::config::AckMode;
use crate::idempotency::{self, Begin, Claim, ClaimId};
use crate::settler::Settled;
use crate::source::Shared;
use crate::wire::{self, Framing, Rejection};

/// The request header carrying an idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// What the handlers share during one run.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) submissions: mpsc::Sender<Submission>,
    pub(crate) releases: mpsc::Sender<ClaimId>,
    pub(crate) cancel: CancellationToken,
}

/// The router of one run.
pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/v1/changes", post(one))
        .route("/v1/batches", post(batch))
        .route("/health", get(health))
        .with_state(app)
}

async fn one(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let response = ingest(&app, "/v1/changes", false, &headers, body).await;
    app.shared.metrics.answered(response.status().as_u16());
    response
}

async fn batch(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let response = ingest(&app, "/v1/batches", true, &headers, body).await;
    app.shared.metrics.answered(response.status().as_u16());
    response
}

async fn health(State(app): State<App>) -> Response {
    let tracker = &app.shared.tracker;
    let stopping = app.cancel.is_cancelled();
    let watermark = tracker.watermark().map(|position| position.to_string());
    let text = json!({
        "status": if stopping { "stopping" } else { "running" },
        "in_flight_batches": tracker.in_flight(),
        "watermark": watermark,
        "stats": app.shared.metrics.stats(),
    });
    let status = if stopping { 503 } else { 200 };
    answer::body(status, text.to_string())
}

async fn ingest(
    app: &App,
    endpoint: &'static str,
    batch: bool,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let shared = &app.shared;
    if !shared.auth.allows(headers) {
        return answer::unauthorized();
    }
    let Some(framing) = framing(headers, batch) else {
        let expected = if batch {
            "application/json (an array) or application/x-ndjson"
        } else {
            "application/json"
        };
        let message = format!("unsupported content type; send {expected}");
        return answer::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message);
    };
    let key = match idempotency_key(headers) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let bytes = match read_body(shared, headers, body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let changes = match wire::parse(&bytes, framing, shared.config.max_request_changes) {
        Ok(changes) => changes,
        Err(Rejection::Invalid(problems)) => return answer::invalid(&problems),
        Err(Rejection::TooMany { count, limit }) => {
            let message = format!("{count} changes in one request; at most {limit}");
            return answer::error(StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
    };
    let claim = match key {
        None => None,
        Some(key) => match claim(app, endpoint, &key, &bytes).await {
            Ok(claim) => Some(claim),
            Err(response) => return response,
        },
    };
    submit(app, changes, claim).await
}

/// The framing the content type asks for, if it is one the endpoint takes.
fn framing(headers: &HeaderMap, batch: bool) -> Option<Framing> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    match (media.as_str(), batch) {
        ("application/json", false) => Some(Framing::Single),
        ("application/json", true) => Some(Framing::Array),
        ("application/x-ndjson" | "application/ndjson", true) => Some(Framing::Ndjson),
        _ => None,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    if !idempotency::valid_key(value.as_bytes()) {
        let message = format!(
            "{IDEMPOTENCY_HEADER}: must be 1 to {} visible ASCII characters",
            idempotency::MAX_KEY_LEN
        );
        return Err(answer::error(StatusCode::BAD_REQUEST, &message));
    }
    Ok(Some(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

async fn read_body(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let limit = shared.config.max_body_bytes;
    let too_large = || {
        let message = format!("the body is larger than {limit} bytes");
        answer::error(StatusCode::PAYLOAD_TOO_LARGE, &message)
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(
        shared.config.read_timeout,
        Limited::new(body, limit).collect(),
    );
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(error)) => {
            let message = format!("the body could not be read: {error}");
            Err(answer::error(StatusCode::BAD_REQUEST, &message))
        }
        Err(_elapsed) => Err(answer::error(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

/// Claims the key, or answers from its record.
async fn claim(app: &App, endpoint: &str, key: &str, bytes: &[u8]) -> Result<Claim, Response> {
    let shared = &app.shared;
    let retry_after = shared.config.retry_after_secs();
    let fingerprint = idempotency::fingerprint(endpoint, bytes);
    match shared.store.begin(key, fingerprint, &app.releases).await {
        Ok(Begin::New(id)) => Ok(Claim::new(id, shared.store.clone(), app.releases.clone())),
        Ok(Begin::Replay(stored)) => {
            shared.metrics.replayed();
            Err(answer::replayed(stored.status, stored.body))
        }
        Ok(Begin::InProgress) => Err(answer::retry(
            StatusCode::CONFLICT,
            "a request with this idempotency key is still in progress",
            retry_after,
        )),
        Ok(Begin::Mismatch) => Err(answer::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this idempotency key was used for a different request",
        )),
        Ok(Begin::Full) => Err(answer::retry(
            StatusCode::TOO_MANY_REQUESTS,
            "too many idempotency keys in flight",
            retry_after,
        )),
        Err(error) => {
            shared.metrics.idempotency_error();
            tracing::warn!(%error, "idempotency store unavailable");
            Err(answer::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                "the idempotency store is unavailable; nothing was ingested",
                retry_after,
            ))
        }
    }
}

/// Queues the changes within `accept_timeout` and answers per the ack mode.
async fn submit(app: &App, changes: Vec<wire::PostedChange>, claim: Option<Claim>) -> Response {
    let shared = &app.shared;
    let retry_after = shared.config.retry_after_secs();
    let reserve = tokio::time::timeout(shared.config.accept_timeout, app.submissions.reserve());
    let permit = match reserve.await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_closed)) => {
            return answer::retry(
                StatusCode::SERVICE_UNAVAILABLE,
                "the source is stopping; nothing was ingested",
                retry_after,
            );
        }
        Err(_elapsed) => {
            return answer::retry(
                StatusCode::TOO_MANY_REQUESTS,
                "the pipeline is full; nothing was ingested",
                retry_after,
            );
        }
    };
    let count = changes.len();
    let sync = shared.config.ack_mode == AckMode::Sync;
    let (reply, settled) = if sync {
        let (sender, receiver) = oneshot::channel();
        (Some(sender), Some(receiver))
    } else {
        (None, None)
    };
    let claim = claim.and_then(Claim::into_id);
    permit.send(Submission {
        changes,
        claim,
        reply,
    });
    shared.metrics.queued(count);
    let queued_at = Instant::now();
    let Some(settled) = settled else {
        return answer::body(202, answer::queued_body(count));
    };
    let response = wait(app, settled).await;
    shared.metrics.waited(queued_at.elapsed());
    response
}

async fn wait(app: &App, settled: oneshot::Receiver<Settled>) -> Response {
    let shared = &app.shared;
    let retry_after = shared.config.retry_after_secs();
    match tokio::time::timeout(shared.config.ack_timeout, settled).await {
        Ok(Ok(Settled::Delivered(receipt))) => answer::body(
            200,
            answer::delivered_body(receipt.first, receipt.last, receipt.changes),
        ),
        Ok(Ok(Settled::Failed(outcome))) => {
            let message = format!(
                "the batch was not delivered ({outcome:?}); retry, with the same idempotency key"
            );
            answer::retry(StatusCode::SERVICE_UNAVAILABLE, &message, retry_after)
        }
        Ok(Err(_settler_gone)) => answer::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "the source stopped before delivery was confirmed; retry with the same idempotency key",
            retry_after,
        ),
        Err(_elapsed) => answer::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery was not confirmed in time; retry with the same idempotency key",
            retry_after,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn typed(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn content_types_select_the_framing() {
        let json = typed("Application/JSON; charset=utf-8");
        assert_eq!(framing(&json, false), Some(Framing::Single));
        assert_eq!(framing(&json, true), Some(Framing::Array));
        let ndjson = typed("application/x-ndjson");
        assert_eq!(framing(&ndjson, true), Some(Framing::Ndjson));
        assert_eq!(framing(&ndjson, false), None);
        assert_eq!(framing(&typed("text/plain"), true), None);
        assert_eq!(framing(&HeaderMap::new(), true), None);
    }
}
