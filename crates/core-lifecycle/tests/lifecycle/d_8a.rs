//! D-8a: component stop swallows errors during shutdown.

use std::time::Duration;

use surefoot_core_lifecycle::{
    Component, EventKind, ExitCause, RestartPolicy, Supervisor, TaskError, service_fn,
};

use crate::common::Metrics;

#[tokio::test(start_paused = true)]
async fn d_8a_errors_during_stop_are_reported() {
    let metrics = Metrics::new();
    let component = Component::new(
        "d8a",
        service_fn(|supervisor: Supervisor| async move {
            supervisor.spawn("flusher", RestartPolicy::OnFailure, |cancel| async move {
                cancel.cancelled().await;
                Err::<(), _>(std::io::Error::other("final flush failed"))
            })?;
            supervisor.spawn("closer", RestartPolicy::OnFailure, |cancel| async move {
                cancel.cancelled().await;
                panic!("close panicked");
                #[allow(unreachable_code)]
                Ok::<(), TaskError>(())
            })?;
            Ok(())
        }),
        metrics.config(),
    );
    let mut events = component.events().subscribe();
    component.start().await.unwrap();
    let report = component.stop(Duration::from_secs(1)).await.unwrap();

    assert!(!report.is_clean());
    let mut failed: Vec<_> = report
        .failed
        .iter()
        .map(|f| (f.name.as_str(), f.panicked))
        .collect();
    failed.sort();
    assert_eq!(failed, [("closer", true), ("flusher", false)]);
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.reason.contains("final flush failed"))
    );
    assert_eq!(
        metrics.sum("surefoot.tasks.failed", &[("task", "flusher")]),
        1
    );
    assert_eq!(
        metrics.sum("surefoot.tasks.panicked", &[("task", "closer")]),
        1
    );

    // The typed error travels with the event, and it was not restarted during the stop.
    loop {
        let event = events.recv().await.unwrap();
        if let EventKind::TaskExited {
            cause: ExitCause::Failed(error),
            restarting,
        } = event.kind
        {
            assert!(!restarting);
            let io = error
                .downcast_ref::<std::io::Error>()
                .expect("typed source");
            assert_eq!(io.to_string(), "final flush failed");
            break;
        }
    }
    // The Stopped event carries the summary.
    loop {
        let event = events.recv().await.unwrap();
        if let EventKind::Stopped { summary } = event.kind {
            assert_eq!(summary.failed.len(), 2);
            break;
        }
    }
}
