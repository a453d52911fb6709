//! D-3.1 (errors flattened to strings) and D-3.2 (errors not classified).

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use surefoot_core_lifecycle::{
    Backoff, Classify, Component, ErrorClass, Retry, RetryError, RetryPolicy, StartError,
    Supervisor, TimeoutError, service_fn, timeout,
};

#[derive(Debug, thiserror::Error)]
#[error("{class} failure")]
struct Classified {
    class: ErrorClass,
}

impl Classify for Classified {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

async fn attempts_until_giving_up(class: ErrorClass) -> (u32, ErrorClass) {
    let calls = Arc::new(AtomicU32::new(0));
    let policy = RetryPolicy::new(Backoff::new(
        Duration::from_millis(1),
        Duration::from_millis(5),
    ))
    .with_max_attempts(4);
    let counted = calls.clone();
    let error = Retry::new("op", policy)
        .run(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(Classified { class }) }
        })
        .await
        .unwrap_err();
    assert_eq!(error.attempts(), calls.load(Ordering::SeqCst));
    (error.attempts(), error.class())
}

#[tokio::test(start_paused = true)]
async fn d_3_2_retry_acts_on_the_error_class() {
    use ErrorClass::*;
    for (class, attempts) in [
        (Transient, 4),
        (Timeout, 4),
        (Permanent, 1),
        (Configuration, 1),
        (Cancelled, 1),
    ] {
        assert_eq!(
            attempts_until_giving_up(class).await,
            (attempts, class),
            "{class}"
        );
    }
}

#[test]
fn d_3_2_io_errors_classify_themselves() {
    use std::io::{Error, ErrorKind};
    assert_eq!(
        Error::from(ErrorKind::ConnectionReset).class(),
        ErrorClass::Transient
    );
    assert_eq!(
        Error::from(ErrorKind::ConnectionRefused).class(),
        ErrorClass::Transient
    );
    assert_eq!(
        Error::from(ErrorKind::TimedOut).class(),
        ErrorClass::Timeout
    );
    assert_eq!(
        Error::from(ErrorKind::PermissionDenied).class(),
        ErrorClass::Permanent
    );
    assert!(!ErrorClass::Configuration.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn d_3_2_timeouts_name_the_operation() {
    let error: TimeoutError = timeout(
        "bootstrap.connect",
        Duration::from_secs(3),
        std::future::pending::<()>(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.operation(), "bootstrap.connect");
    assert_eq!(error.limit(), Duration::from_secs(3));
    assert_eq!(error.class(), ErrorClass::Timeout);
    assert!(error.to_string().contains("bootstrap.connect"));
}

#[tokio::test(start_paused = true)]
async fn d_3_1_error_chains_keep_typed_sources() {
    // Retry: the last error is the source, typed.
    let policy = RetryPolicy::default().with_max_attempts(1);
    let error: RetryError<std::io::Error> = Retry::new("read", policy)
        .run(|_| async { Err::<(), _>(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) })
        .await
        .unwrap_err();
    let source = error
        .source()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionReset);

    // A service's start error: the component error's source is the service's own error.
    let component = Component::new(
        "d31",
        service_fn(|_s: Supervisor| async {
            Err(std::io::Error::from(std::io::ErrorKind::AddrInUse).into())
        }),
        Default::default(),
    );
    let error = component.start().await.unwrap_err();
    assert!(matches!(error, StartError::Service { .. }));
    let io = error
        .source()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
    // And health keeps the same typed error.
    let failure = component.health().report().failure.unwrap();
    assert!(failure.downcast_ref::<std::io::Error>().is_some());
    assert_eq!(component.status(), surefoot_core_lifecycle::Status::Failed);
}
