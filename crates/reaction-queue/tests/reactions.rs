#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
#[cfg(feature = "redis")]
use futures::StreamExt;
use surefoot_core_lifecycle::{Backoff, Classify, ErrorClass, RetryPolicy, TaskGroup};
use surefoot_core_model::{AckToken, Reaction};
use surefoot_reaction_queue::{
    LogReaction, WebhookConfig, WebhookError, WebhookReaction, idempotency_key,
};
#[cfg(feature = "redis")]
use surefoot_reaction_queue::{RedisReaction, RedisTarget};
#[cfg(feature = "redis")]
use surefoot_test_support::RedisServer;

use common::batch;

#[derive(Clone, Default)]
struct Hook {
    /// Idempotency keys and bodies of the requests received.
    seen: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    /// Requests still to answer with 503.
    failures_left: Arc<Mutex<u32>>,
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: String) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    hook.seen
        .lock()
        .unwrap()
        .push((key, serde_json::from_str(&body).unwrap()));
    let mut left = hook.failures_left.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::NO_CONTENT
}

async fn reject(State(hook): State<Hook>, body: String) -> StatusCode {
    hook.seen
        .lock()
        .unwrap()
        .push((String::new(), serde_json::from_str(&body).unwrap()));
    StatusCode::BAD_REQUEST
}

async fn hang() -> StatusCode {
    // An endpoint that never answers in time.
    std::future::pending::<()>().await;
    StatusCode::OK
}

/// A real HTTP server on a free port, run under a task group.
async fn serve(hook: Hook) -> (String, TaskGroup) {
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .route("/reject", post(reject))
        .route("/hang", post(hang))
        .with_state(hook);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let group = TaskGroup::new("webhook-test-server");
    group
        .spawn_until_cancelled("axum", axum::serve(listener, app).into_future())
        .unwrap();
    (format!("http://{address}"), group)
}

fn quick(config: WebhookConfig, attempts: u32) -> WebhookConfig {
    WebhookConfig {
        retry: RetryPolicy::new(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .with_max_attempts(attempts),
        ..config
    }
}

#[tokio::test]
async fn webhook_retries_unavailable_and_sends_a_stable_idempotency_key() {
    let hook = Hook::default();
    *hook.failures_left.lock().unwrap() = 2;
    let (base, server) = serve(hook.clone()).await;
    let webhook =
        WebhookReaction::new("hook", quick(WebhookConfig::new(format!("{base}/hook")), 5)).unwrap();

    let first = batch("orders", 7, 0, 4, AckToken::detached());
    webhook.apply(&first).await.unwrap();
    // Delivered again (after a restart, say): same key, so the receiver can drop it.
    webhook
        .apply(&batch("orders", 7, 0, 4, AckToken::detached()))
        .await
        .unwrap();
    let other = batch("orders", 8, 0, 4, AckToken::detached());
    webhook.apply(&other).await.unwrap();

    let seen = hook.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "two 503s, then three deliveries");
    let key = idempotency_key(&first);
    assert!(seen[..4].iter().all(|(k, _)| *k == key));
    assert_eq!(seen[4].0, idempotency_key(&other));
    assert_ne!(key, idempotency_key(&other));
    assert_eq!(seen[0].1["idempotency_key"], key.as_str());
    assert_eq!(seen[0].1["source"], "orders");
    assert_eq!(seen[0].1["changes"].as_array().unwrap().len(), 1);
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn webhook_client_error_is_permanent_and_not_retried() {
    let hook = Hook::default();
    let (base, server) = serve(hook.clone()).await;
    let webhook = WebhookReaction::new(
        "hook",
        quick(WebhookConfig::new(format!("{base}/reject")), 5),
    )
    .unwrap();
    let error = webhook
        .apply(&batch("s", 1, 0, 0, AckToken::detached()))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(hook.seen.lock().unwrap().len(), 1);
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn webhook_that_hangs_fails_as_a_timeout_within_its_limit() {
    let (base, server) = serve(Hook::default()).await;
    let config = WebhookConfig {
        timeout: Duration::from_millis(300),
        ..quick(WebhookConfig::new(format!("{base}/hang")), 1)
    };
    let webhook = WebhookReaction::new("hook", config).unwrap();
    let started = Instant::now();
    let error = webhook
        .apply(&batch("s", 1, 0, 0, AckToken::detached()))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Timeout);
    assert!(started.elapsed() < Duration::from_secs(10));
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn webhook_unreachable_is_transient() {
    let port = surefoot_test_support::free_port().unwrap();
    let webhook = WebhookReaction::new(
        "hook",
        quick(
            WebhookConfig::new(format!("http://127.0.0.1:{port}/hook")),
            2,
        ),
    )
    .unwrap();
    let error = webhook
        .apply(&batch("s", 1, 0, 0, AckToken::detached()))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
}

#[test]
fn webhook_config_lists_every_problem() {
    let config = WebhookConfig {
        timeout: Duration::ZERO,
        ..WebhookConfig::new("ftp://example.com/x")
    };
    match WebhookReaction::new("hook", config).unwrap_err() {
        WebhookError::Config { problems } => assert_eq!(
            problems,
            vec![
                "webhook.url: scheme `ftp` is not http or https",
                "webhook.timeout: must be more than 0",
            ]
        ),
        other => panic!("unexpected {other}"),
    }
    assert!(WebhookReaction::new("hook", WebhookConfig::new("not a url")).is_err());
}

#[tokio::test]
async fn log_reaction_applies() {
    let reaction = LogReaction::new("log");
    assert_eq!(reaction.name(), "log");
    reaction
        .apply(&batch("s", 1, 0, 0, AckToken::detached()))
        .await
        .unwrap();
}

// Needs the `redis` feature.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_reaction_appends_to_a_stream_and_publishes() {
    let mut redis = RedisServer::new().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let connection =
        surefoot_reaction_queue::connection_manager(&client, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    let limit = Duration::from_secs(5);

    let to_stream = RedisReaction::new(
        "out",
        connection.clone(),
        RedisTarget::Stream("out".into()),
        limit,
    );
    let one = batch("s", 1, 0, 0, AckToken::detached());
    to_stream.apply(&one).await.unwrap();
    let mut conn = connection.clone();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("out")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.ids.len(), 1);
    let key: String = entries.ids[0].get("key").unwrap();
    assert_eq!(key, idempotency_key(&one));
    let body: String = entries.ids[0].get("batch").unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["first"], serde_json::json!({"sequence": 1}));

    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("live").await.unwrap();
    let publish = RedisReaction::new(
        "live",
        connection.clone(),
        RedisTarget::Publish("live".into()),
        limit,
    );
    publish.apply(&one).await.unwrap();
    let message = tokio::time::timeout(limit, pubsub.on_message().next())
        .await
        .unwrap()
        .unwrap();
    let payload: String = message.get_payload().unwrap();
    assert!(payload.contains(&idempotency_key(&one)));

    // With Redis down, the reaction fails (retryably) within its limit.
    redis.stop().await.unwrap();
    let started = Instant::now();
    let error = to_stream.apply(&one).await.unwrap_err();
    assert!(error.class().is_retryable(), "{error}: {:?}", error.class());
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// The credentials a webhook URL may carry: user information, a token in the path, one in the
/// query.
const URL_SECRETS: [&str; 3] = ["hunter2", "T0KENPATH", "s3cr3t"];

fn assert_no_url_secret(what: &str, text: &str) {
    for secret in URL_SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}: {text}");
    }
}

#[tokio::test]
async fn x_8_a_webhook_url_is_never_in_debug_errors_or_dead_letters() {
    use surefoot_reaction_queue::dead_letter::error_chain;
    use surefoot_reaction_queue::{Fanout, FileDeadLetters, QueueMetrics, ReactionRuntime};

    let hook = Hook::default();
    let (base, server) = serve(hook.clone()).await;
    let with_secrets = |base: &str, route: &str| {
        let authority = base.trim_start_matches("http://");
        format!("http://user:hunter2@{authority}/{route}?T0KENPATH=1&token=s3cr3t")
    };
    let port = surefoot_test_support::free_port().unwrap();
    let unreachable = with_secrets(&format!("http://127.0.0.1:{port}"), "hook");
    for (url, class) in [
        (with_secrets(&base, "reject"), ErrorClass::Permanent),
        (unreachable, ErrorClass::Transient),
    ] {
        let config = quick(WebhookConfig::new(url), 1);
        assert_no_url_secret("the config's Debug", &format!("{config:?}"));
        let webhook = WebhookReaction::new("hook", config).unwrap();
        assert_no_url_secret("the reaction's Debug", &format!("{webhook:?}"));
        let error = webhook
            .apply(&batch("s", 1, 0, 0, AckToken::detached()))
            .await
            .unwrap_err();
        assert_eq!(error.class(), class, "{error}");
        assert_no_url_secret("the error chain", &error_chain(&error));
        assert_no_url_secret("the error's Debug", &format!("{error:?}"));
        assert!(
            error_chain(&error).contains("127.0.0.1"),
            "{}",
            error_chain(&error)
        );
    }
    // The receiver saw the request, so the secrets did reach the one place that needs them.
    assert_eq!(hook.seen.lock().unwrap().len(), 1);

    // Through the runtime: the permanent failure goes to the dead-letter file without the URL.
    let dir = tempfile::tempdir().unwrap();
    let file = FileDeadLetters::new(dir.path().join("dead.jsonl"));
    let webhook = WebhookReaction::new(
        "hook",
        quick(WebhookConfig::new(with_secrets(&base, "reject")), 1),
    )
    .unwrap();
    let upstream = Fanout::new("query");
    let runtime = ReactionRuntime::new(
        surefoot_reaction_queue::RuntimeConfig::new("x_8_webhook", 8),
        Arc::new(webhook) as Arc<dyn Reaction>,
        Arc::new(file.clone()),
        QueueMetrics::global("x_8_webhook"),
    );
    runtime.start(&upstream).unwrap();
    upstream
        .publish(batch("s", 2, 0, 0, AckToken::detached()))
        .await
        .unwrap();
    let summary = runtime.stop(Duration::from_secs(30)).await;
    assert!(summary.drained, "{summary:?}");
    let letters = file.read_all().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_no_url_secret(
        "the dead letter",
        &serde_json::to_string(&letters[0]).unwrap(),
    );
    assert!(letters[0].error.contains("400"), "{}", letters[0].error);
    server.stop(Duration::from_secs(5)).await;
}
