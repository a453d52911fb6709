//! The answers the source gives, as JSON bodies with their status codes.
//!
//! | status | when |
//! | --- | --- |
//! | `200` | `sync`: every change of the request was delivered (body: positions) |
//! | `202` | `async`: the changes are queued |
//! | `400` | malformed or invalid body (every problem with its path), bad idempotency key |
//! | `401` | missing or wrong bearer token |
//! | `408` | the body did not arrive within `read_timeout` |
//! | `409` | another request holds the idempotency key and has no answer yet (`Retry-After`) |
//! | `413` | body or number of changes past the limits |
//! | `415` | content type other than JSON (or NDJSON for batches) |
//! | `422` | idempotency key reused with a different body |
//! | `429` | no room in the pipeline within `accept_timeout`, or idempotency store full (`Retry-After`) |
//! | `503` | `sync`: the batch failed or was not settled within `ack_timeout`; stopping; idempotency store unreachable (`Retry-After`) |

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::wire::Problem;

/// The header marking an answer replayed from an idempotency record.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

pub(crate) fn delivered_body(first: u64, last: u64, changes: usize) -> String {
    json!({"status": "delivered", "changes": changes, "first": first, "last": last}).to_string()
}

pub(crate) fn queued_body(changes: usize) -> String {
    json!({"status": "queued", "changes": changes}).to_string()
}

/// A JSON answer.
pub(crate) fn body(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error with a message.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    body(status.as_u16(), json!({ "error": message }).to_string())
}

/// An error the client should retry after `retry_after_secs`.
pub(crate) fn retry(status: StatusCode, message: &str, retry_after_secs: u64) -> Response {
    let mut response = error(status, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// `401` with the challenge.
pub(crate) fn unauthorized() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// `400` listing every problem.
pub(crate) fn invalid(problems: &[Problem]) -> Response {
    let text =
        json!({"error": "the request is invalid; nothing was ingested", "problems": problems});
    body(400, text.to_string())
}

/// A stored answer, replayed.
pub(crate) fn replayed(status: u16, text: String) -> Response {
    let mut response = body(status, text);
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
