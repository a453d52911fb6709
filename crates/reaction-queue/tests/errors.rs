#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use surefoot_core_lifecycle::{Classify, ErrorClass, Status};
use surefoot_core_model::AckToken;
#[cfg(feature = "redis")]
use surefoot_reaction_queue::RedisQueueError;
use surefoot_reaction_queue::{
    ConfigError, DeadLetterError, QueueConfig, QueueMetrics, RuntimeError, SubscribeError,
    TrySendError, ordered_queue,
};

use common::batch;

/// Errors say whether retrying can help, so that retry loops act on them.
#[tokio::test]
async fn errors_classify_themselves() {
    let (tx, rx) = ordered_queue(QueueConfig::new("q", 1), QueueMetrics::global("q")).unwrap();
    tx.try_send(batch("s", 0, 0, 0, AckToken::detached()))
        .unwrap();
    let full = tx
        .try_send(batch("s", 1, 0, 0, AckToken::detached()))
        .unwrap_err();
    assert_eq!(full.class(), ErrorClass::Transient);
    assert!(full.to_string().contains("queue `q` is full"));
    rx.close();
    let closed = tx.try_send(full.into_batch()).unwrap_err();
    assert_eq!(closed.class(), ErrorClass::Cancelled);
    let TrySendError::Closed(send) = closed else {
        panic!("not closed")
    };
    assert_eq!(send.class(), ErrorClass::Cancelled);

    let config = ConfigError {
        problems: vec!["a: b".into()],
    };
    assert_eq!(config.class(), ErrorClass::Configuration);
    let subscribe = SubscribeError::Config {
        upstream: "u".into(),
        source: config.clone(),
    };
    assert_eq!(subscribe.class(), ErrorClass::Configuration);
    let stopping = SubscribeError::NotAccepting {
        upstream: "u".into(),
        status: Status::Stopping,
    };
    assert_eq!(stopping.class(), ErrorClass::Transient);
    assert!(stopping.to_string().contains("stopping"), "{stopping}");
    let runtime = RuntimeError::Subscribe {
        reaction: "r".into(),
        source: stopping,
    };
    assert_eq!(runtime.class(), ErrorClass::Transient);
    assert_eq!(
        RuntimeError::Config(config).class(),
        ErrorClass::Configuration
    );
    assert_eq!(
        RuntimeError::UpstreamClosed {
            reaction: "r".into()
        }
        .class(),
        ErrorClass::Transient
    );

    #[cfg(feature = "redis")]
    redis_errors_classify_themselves();
    let timeout =
        surefoot_core_lifecycle::TimeoutError::new("XADD", std::time::Duration::from_secs(1));
    assert_eq!(DeadLetterError::from(timeout).class(), ErrorClass::Timeout);
    let io = DeadLetterError::File {
        path: "/x".into(),
        source: std::io::Error::other("disk"),
    };
    assert_eq!(io.class(), ErrorClass::Transient);
}

#[cfg(feature = "redis")]
fn redis_errors_classify_themselves() {
    let codec = RedisQueueError::Codec {
        stream: "s".into(),
        id: "1-0".into(),
        reason: "bad".into(),
    };
    assert_eq!(codec.class(), ErrorClass::Permanent);
    assert_eq!(
        RedisQueueError::Config { problems: vec![] }.class(),
        ErrorClass::Configuration
    );
    let timeout =
        surefoot_core_lifecycle::TimeoutError::new("XADD", std::time::Duration::from_secs(1));
    assert_eq!(RedisQueueError::from(timeout).class(), ErrorClass::Timeout);
}
