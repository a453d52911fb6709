//! The source's configuration, validated as a whole.

use std::net::SocketAddr;
use std::time::Duration;

use surefoot_core_model::{Secret, SourceId};

/// Who may post changes.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Requests must carry `Authorization: Bearer <token>` with one of these tokens, compared in
    /// constant time.
    Bearer(Vec<Secret>),
    /// Anyone who can reach the address may post. Allowed only on a loopback address; saying it
    /// is the only way to run without tokens.
    NoneOnLoopback,
}

/// When a request that was accepted is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// `200` only once every consumer settled the batch holding the request's changes as
    /// delivered; `503` with `Retry-After` when it failed or was not settled in time (the
    /// default).
    #[default]
    Sync,
    /// `202` as soon as the changes are queued. Not crash-safe: changes queued but not yet
    /// delivered are lost if the process dies, and a batch a consumer fails is only counted and
    /// logged, since the client was already told it was accepted.
    Async,
}

/// Where idempotency keys are remembered. Its `Debug` never shows the Redis URL's user
/// information (a password is a secret).
#[derive(Clone)]
pub enum IdempotencyBackend {
    /// In this process: right for one instance serving the source.
    Memory,
    /// In Redis, shared by every instance serving the source. Needs the crate's `redis`
    /// feature: without it, [`HttpSourceConfig::validate`] refuses this backend.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Prefix of every key. The instances serving one source share it; every source needs
        /// its own.
        prefix: String,
        /// Bound on each Redis command, connecting included.
        timeout: Duration,
    },
}

impl std::fmt::Debug for IdempotencyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis {
                url,
                prefix,
                timeout,
            } => f
                .debug_struct("Redis")
                .field("url", &redacted_url(url))
                .field("prefix", prefix)
                .field("timeout", timeout)
                .finish(),
        }
    }
}

/// The problem reported for the Redis backend in a build without the `redis` feature.
#[cfg(not(feature = "redis"))]
pub(crate) const REDIS_FEATURE_OFF: &str = "idempotency.backend: redis needs surefoot-source-http's `redis` feature, which this build lacks";

/// What may be shown of `url`: scheme, host and port (see `SecretUrl::redacted`).
pub(crate) fn redacted_url(url: &str) -> String {
    surefoot_core_model::secret::redact(url)
}

/// How idempotency keys are kept.
#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// The store.
    pub backend: IdempotencyBackend,
    /// How long the answer to a key is remembered.
    pub ttl: Duration,
    /// How long a key stays claimed by a request whose outcome is not known yet (a crashed
    /// instance's claims expire after this).
    pub pending_ttl: Duration,
    /// Keys remembered at most (memory store); past it, requests with a new key get `429`.
    pub capacity: usize,
}

/// How incoming requests are coalesced into batches.
#[derive(Debug, Clone)]
pub struct BatchingConfig {
    /// A batch is sent once it holds this many changes (a single larger request still goes
    /// whole, never split).
    pub max_changes: usize,
    /// The longest a change waits for others to join its batch while the output is busy.
    pub max_delay: Duration,
}

/// Configuration of a [`crate::HttpSource`].
#[derive(Debug, Clone)]
pub struct HttpSourceConfig {
    /// The source's id in the pipeline.
    pub id: SourceId,
    /// Address to listen on; port 0 picks a free one (see [`crate::HttpSource::local_addr`]).
    pub bind: SocketAddr,
    /// Who may post.
    pub auth: Auth,
    /// When requests are answered.
    pub ack_mode: AckMode,
    /// `sync` mode: how long a request waits for its batch to settle before `503`.
    pub ack_timeout: Duration,
    /// How long a request waits for room in the pipeline before `429`.
    pub accept_timeout: Duration,
    /// The `Retry-After` sent with `429` and `503` (rounded up to whole seconds).
    pub retry_after: Duration,
    /// Bound on reading a request's headers and body.
    pub read_timeout: Duration,
    /// Largest request body in bytes (`413` past it).
    pub max_body_bytes: usize,
    /// Most changes in one request (`413` past it).
    pub max_request_changes: usize,
    /// Requests queued for the batcher at most.
    pub queue_requests: usize,
    /// Open connections at most; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Batching of requests.
    pub batching: BatchingConfig,
    /// Idempotency keys.
    pub idempotency: IdempotencyConfig,
    /// This instance's id among the instances serving the source (issue 14, X-2; decision
    /// 0008). Its batches carry the source id `<id>/<instance>`, so each instance has its own
    /// checkpoint at a position-idempotent consumer and instances never interleave positions
    /// under one id. Required with the Redis backend (the documented way to run several
    /// instances); each instance needs its own, kept across restarts.
    pub instance: Option<String>,
    /// With the Redis backend, how long an instance's lease lasts without renewal (it is
    /// renewed every third of this). A process that dies holds its instance for at most this
    /// long; a second process started with the same instance is refused after waiting it out.
    pub instance_lease: Duration,
}

/// Every problem found in a configuration, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HTTP source configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// `field: problem` entries.
    pub problems: Vec<String>,
}

impl HttpSourceConfig {
    /// The source id this instance's batches carry: `<id>/<instance>`, or the id alone when no
    /// instance is configured.
    pub fn batch_source(&self) -> SourceId {
        match &self.instance {
            Some(instance) => SourceId::new(format!("{}/{instance}", self.id)),
            None => self.id.clone(),
        }
    }

    fn validate_instance(&self, require: &mut impl FnMut(bool, String)) {
        let redis = matches!(self.idempotency.backend, IdempotencyBackend::Redis { .. });
        require(
            !redis || self.instance.is_some(),
            "instance: required with the redis idempotency backend (each instance of a source \
             needs its own id, or two instances would interleave positions under one source id)"
                .to_owned(),
        );
        if let Some(instance) = &self.instance {
            let valid = !instance.is_empty()
                && instance.len() <= 64
                && instance
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            require(
                valid,
                format!("instance: {instance:?} must be 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'"),
            );
        }
    }

    /// A configuration with defaults for everything but the id, address and auth.
    pub fn new(id: impl Into<String>, bind: SocketAddr, auth: Auth) -> Self {
        let id: String = id.into();
        Self {
            id: SourceId::new(id),
            bind,
            auth,
            ack_mode: AckMode::Sync,
            ack_timeout: Duration::from_secs(10),
            accept_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            read_timeout: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
            max_request_changes: 10_000,
            queue_requests: 256,
            max_connections: 1024,
            batching: BatchingConfig {
                max_changes: 10_000,
                max_delay: Duration::from_millis(5),
            },
            idempotency: IdempotencyConfig {
                backend: IdempotencyBackend::Memory,
                ttl: Duration::from_secs(24 * 60 * 60),
                pending_ttl: Duration::from_secs(120),
                capacity: 100_000,
            },
            instance: None,
            instance_lease: Duration::from_secs(10),
        }
    }

    /// Checks the values together and returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut require = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        match &self.auth {
            Auth::Bearer(tokens) => {
                require(
                    !tokens.is_empty(),
                    "auth.bearer: list at least one token, or say auth: none on a loopback address"
                        .to_owned(),
                );
                for (index, token) in tokens.iter().enumerate() {
                    require(
                        token.expose().len() >= 16,
                        format!("auth.bearer[{index}]: must be at least 16 characters"),
                    );
                }
            }
            Auth::NoneOnLoopback => require(
                self.bind.ip().is_loopback(),
                format!(
                    "auth: none is refused on the non-loopback address {}; configure bearer tokens",
                    self.bind
                ),
            ),
        }
        let positive = [
            ("ack_timeout", self.ack_timeout),
            ("accept_timeout", self.accept_timeout),
            ("retry_after", self.retry_after),
            ("read_timeout", self.read_timeout),
            ("idempotency.ttl", self.idempotency.ttl),
            ("idempotency.pending_ttl", self.idempotency.pending_ttl),
            ("instance_lease", self.instance_lease),
        ];
        for (field, value) in positive {
            require(!value.is_zero(), format!("{field}: must be more than 0"));
        }
        let counts = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_request_changes", self.max_request_changes),
            ("queue_requests", self.queue_requests),
            ("max_connections", self.max_connections),
            ("batching.max_changes", self.batching.max_changes),
            ("idempotency.capacity", self.idempotency.capacity),
        ];
        for (field, value) in counts {
            require(value > 0, format!("{field}: must be more than 0"));
        }
        require(
            self.idempotency.pending_ttl > self.ack_timeout,
            "idempotency.pending_ttl: must be more than ack_timeout".to_owned(),
        );
        if let IdempotencyBackend::Redis { url, timeout, .. } = &self.idempotency.backend {
            #[cfg(not(feature = "redis"))]
            require(false, REDIS_FEATURE_OFF.to_owned());
            require(
                url.starts_with("redis://") || url.starts_with("rediss://"),
                "idempotency.redis.url: must start with redis:// or rediss://".to_owned(),
            );
            require(
                !timeout.is_zero(),
                "idempotency.redis.timeout: must be more than 0".to_owned(),
            );
        }
        self.validate_instance(&mut require);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The `Retry-After` header value: whole seconds, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let millis = self.retry_after.as_millis();
        u64::try_from(millis.div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn defaults_on_loopback_without_auth_are_valid() {
        let config = HttpSourceConfig::new("web", loopback(), Auth::NoneOnLoopback);
        config.validate().unwrap();
        assert_eq!(config.ack_mode, AckMode::Sync);
        assert_eq!(config.retry_after_secs(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let public = SocketAddr::from(([0, 0, 0, 0], 8080));
        let mut bad = HttpSourceConfig::new("web", public, Auth::NoneOnLoopback);
        bad.ack_timeout = Duration::ZERO;
        bad.max_body_bytes = 0;
        bad.idempotency.backend = IdempotencyBackend::Redis {
            url: "http://x".to_owned(),
            prefix: "p".to_owned(),
            timeout: Duration::ZERO,
        };
        let problems = bad.validate().unwrap_err().problems;
        let mut expected = vec![
            "auth: none is refused on the non-loopback address 0.0.0.0:8080; configure bearer tokens",
            "ack_timeout: must be more than 0",
            "max_body_bytes: must be more than 0",
        ];
        #[cfg(not(feature = "redis"))]
        expected.push(REDIS_FEATURE_OFF);
        expected.extend([
            "idempotency.redis.url: must start with redis:// or rediss://",
            "idempotency.redis.timeout: must be more than 0",
            "instance: required with the redis idempotency backend (each instance of a \
             source needs its own id, or two instances would interleave positions under one \
             source id)",
        ]);
        assert_eq!(problems, expected);
    }

    #[test]
    fn x_8_source_http_redis_url_is_never_in_debug_or_errors() {
        let mut config = HttpSourceConfig::new("web", loopback(), Auth::NoneOnLoopback);
        config.idempotency.backend = IdempotencyBackend::Redis {
            url: "redis://user:hunter2-secret@127.0.0.1:6379/0?token=abc".to_owned(),
            prefix: "p:".to_owned(),
            timeout: Duration::ZERO,
        };
        let shown = format!("{config:?} {:?}", config.validate().unwrap_err());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("token=abc"), "{shown}");
        assert!(
            shown.contains("redis://[redacted]@127.0.0.1:6379/[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn an_instance_names_the_batches_source_and_must_be_a_plain_name() {
        let mut config = HttpSourceConfig::new("web", loopback(), Auth::NoneOnLoopback);
        assert_eq!(config.batch_source().as_str(), "web");
        config.instance = Some("eu-1".to_owned());
        config.validate().unwrap();
        assert_eq!(config.batch_source().as_str(), "web/eu-1");
        config.instance = Some("a/b".to_owned());
        let problems = config.validate().unwrap_err().problems;
        assert_eq!(
            problems,
            [r#"instance: "a/b" must be 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'"#]
        );
    }

    #[test]
    fn bearer_tokens_are_checked_and_never_printed() {
        let tokens = vec![Secret::new("short"), Secret::new("a-long-enough-token-1")];
        let config = HttpSourceConfig::new("web", loopback(), Auth::Bearer(tokens));
        let problems = config.validate().unwrap_err().problems;
        assert_eq!(problems, ["auth.bearer[0]: must be at least 16 characters"]);
        assert!(!format!("{config:?}").contains("a-long-enough-token-1"));
        let empty = HttpSourceConfig::new("web", loopback(), Auth::Bearer(Vec::new()));
        assert_eq!(empty.validate().unwrap_err().problems.len(), 1);
    }
}
