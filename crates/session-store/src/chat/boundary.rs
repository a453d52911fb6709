//! The handler error boundary (FINDINGS S-3): every request runs through it, so a failure is
//! retried where that is safe and otherwise reaches the client as a typed error event, a metric
//! and a log line; a panicking handler is caught and reported the same way.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use opentelemetry::KeyValue;
use surefoot_core_lifecycle::retry::{Retry, RetryPolicy};
use surefoot_core_lifecycle::{Classify, RetryError};

use super::protocol::ServerMsg;
use crate::StoreError;
use crate::metrics::StoreMetrics;

/// Runs handler operations with retries and turns failures into [`ServerMsg::Error`].
#[derive(Debug, Clone)]
pub struct Boundary {
    policy: RetryPolicy,
    metrics: StoreMetrics,
}

impl Boundary {
    /// A boundary retrying idempotent operations under `policy`.
    pub fn new(policy: RetryPolicy, metrics: StoreMetrics) -> Self {
        Self { policy, metrics }
    }

    /// Runs `op` for `request`: retried under the policy if `idempotent` and the error is
    /// retryable (a conflict, an exhausted pool, a dropped connection, a timeout), once
    /// otherwise. Cancel-safe: dropping the future drops the attempt in progress.
    pub async fn run<T, F, Fut>(
        &self,
        request: &'static str,
        idempotent: bool,
        mut op: F,
    ) -> Result<T, ServerMsg>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let outcome = if idempotent {
            let retry = Retry::new(request, self.policy);
            AssertUnwindSafe(retry.run(|_| op())).catch_unwind().await
        } else {
            AssertUnwindSafe(async { op().await.map_err(not_retried(request)) })
                .catch_unwind()
                .await
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.report(request, error)),
            Err(_panic) => Err(self.panicked(request)),
        }
    }

    fn report(&self, request: &'static str, error: RetryError<StoreError>) -> ServerMsg {
        let last = error.last_error();
        let code = last.code();
        let retryable = last.class().is_retryable();
        self.count(code);
        tracing::warn!(request, code, attempts = error.attempts(), error = %error, cause = %last, "request failed");
        ServerMsg::Error {
            request: request.to_owned(),
            code: code.to_owned(),
            message: last.to_string(),
            retryable,
        }
    }

    fn panicked(&self, request: &'static str) -> ServerMsg {
        self.count("internal");
        tracing::error!(request, "request handler panicked");
        ServerMsg::Error {
            request: request.to_owned(),
            code: "internal".to_owned(),
            message: "internal error".to_owned(),
            retryable: false,
        }
    }

    /// Counts an error reported to a client under `code`.
    pub fn count(&self, code: &'static str) {
        let mut labels = self.metrics.labels().to_vec();
        labels.push(KeyValue::new("code", code));
        self.metrics.handler_errors.add(1, &labels);
    }
}

fn not_retried(request: &'static str) -> impl FnOnce(StoreError) -> RetryError<StoreError> {
    move |error| RetryError::NotRetryable {
        operation: request.into(),
        attempts: 1,
        class: error.class(),
        error,
    }
}

/// A client-side mistake (bad frame, no session yet, room not joined) as an error event.
pub fn refused(request: &str, code: &str, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        request: request.to_owned(),
        code: code.to_owned(),
        message: message.into(),
        retryable: false,
    }
}
