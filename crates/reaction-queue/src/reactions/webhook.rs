//! A reaction that POSTs each batch to an HTTP endpoint.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use surefoot_core_lifecycle::{Backoff, Classify, ErrorClass, Retry, RetryPolicy};
use surefoot_core_model::{Batch, ComponentError, Reaction, SecretUrl};

use super::Payload;

/// The header carrying [`super::idempotency_key`].
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Where and how to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The endpoint (`http://` or `https://`). A secret: its path or query is often the
    /// endpoint's token, so `Debug`, errors and dead letters show only its scheme, host and port.
    pub url: SecretUrl,
    /// Limit of one request, connection included.
    pub timeout: Duration,
    /// Limit of establishing the connection.
    pub connect_timeout: Duration,
    /// Retries of one batch inside the reaction (the runtime may retry the whole reaction
    /// again under its own policy).
    pub retry: RetryPolicy,
}

impl WebhookConfig {
    /// 10 s per request, 3 s to connect, 3 attempts from 100 ms.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretUrl::new(url),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retry: RetryPolicy::new(Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(2),
            ))
            .with_max_attempts(3),
        }
    }

    /// Every problem with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(self.url.expose()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => problems.push(format!(
                "webhook.url: scheme `{}` is not http or https",
                url.scheme()
            )),
            Err(error) => problems.push(format!("webhook.url: {error}")),
        }
        if self.timeout.is_zero() {
            problems.push("webhook.timeout: must be more than 0".to_owned());
        }
        if self.connect_timeout.is_zero() {
            problems.push("webhook.connect_timeout: must be more than 0".to_owned());
        }
        problems
    }
}

/// A webhook call failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The settings are invalid.
    #[error("invalid webhook configuration: {}", problems.join("; "))]
    Config {
        /// Each problem.
        problems: Vec<String>,
    },
    /// The request could not be made or did not finish in time.
    #[error("POST {endpoint} failed")]
    Request {
        /// The endpoint, redacted ([`SecretUrl::redacted`]).
        endpoint: String,
        /// Why (without the URL, which reqwest would otherwise print).
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint answered with a status other than 2xx.
    #[error("POST {endpoint} answered {status}")]
    Status {
        /// The endpoint, redacted ([`SecretUrl::redacted`]).
        endpoint: String,
        /// The status.
        status: StatusCode,
    },
}

impl Classify for WebhookError {
    /// Timeouts are [`ErrorClass::Timeout`]; connection errors, 408, 429 and 5xx are
    /// transient; other 4xx are permanent (the same request will be refused again).
    fn class(&self) -> ErrorClass {
        match self {
            WebhookError::Config { .. } => ErrorClass::Configuration,
            WebhookError::Request { source, .. } if source.is_timeout() => ErrorClass::Timeout,
            WebhookError::Request { source, .. } if source.is_builder() => {
                ErrorClass::Configuration
            }
            WebhookError::Request { .. } => ErrorClass::Transient,
            WebhookError::Status { status, .. }
                if status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT =>
            {
                ErrorClass::Transient
            }
            WebhookError::Status { .. } => ErrorClass::Permanent,
        }
    }
}

/// POSTs each batch as JSON (`idempotency_key`, `source`, `first`, `last`, `commit_time`,
/// `changes`) with an `Idempotency-Key` header derived from the source and positions, and
/// returns once the endpoint answers 2xx.
#[derive(Debug, Clone)]
pub struct WebhookReaction {
    name: String,
    config: WebhookConfig,
    client: reqwest::Client,
}

impl WebhookReaction {
    /// A webhook reaction called `name`; fails with every problem of `config`.
    pub fn new(name: impl Into<String>, config: WebhookConfig) -> Result<Self, WebhookError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(WebhookError::Config { problems });
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|source: reqwest::Error| WebhookError::Request {
                endpoint: config.url.redacted(),
                source: source.without_url(),
            })?;
        Ok(Self {
            name: name.into(),
            config,
            client,
        })
    }

    /// One POST of `batch`.
    async fn post(&self, payload: &Payload<'_>) -> Result<(), WebhookError> {
        let request_error = |source: reqwest::Error| WebhookError::Request {
            endpoint: self.config.url.redacted(),
            source: source.without_url(),
        };
        let response = self
            .client
            .post(self.config.url.expose())
            .header(IDEMPOTENCY_HEADER, payload.key())
            .json(payload)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(WebhookError::Status {
            endpoint: self.config.url.redacted(),
            status,
        })
    }
}

#[async_trait]
impl Reaction for WebhookReaction {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        let payload = Payload::of(batch);
        Retry::new(format!("webhook `{}`", self.name), self.config.retry)
            .run(|_attempt| self.post(&payload))
            .await
            .map_err(|error| {
                let class = error.last_error().class();
                ComponentError::new("webhook", class, error)
            })
    }
}
