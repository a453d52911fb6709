//! Health: status, last progress, and "stalled" when running with work pending but no progress.

use std::time::Duration;

use surefoot_core_lifecycle::{
    Component, RestartPolicy, Status, Supervisor, TaskError, service_fn,
};

use crate::common::Metrics;

#[tokio::test(start_paused = true)]
async fn health_reports_stalled_when_running_with_pending_work_and_no_progress() {
    let component = Component::new(
        "stall",
        service_fn(|supervisor: Supervisor| async move {
            supervisor.spawn("worker", RestartPolicy::OnFailure, |cancel| async move {
                cancel.cancelled().await;
                Ok::<(), TaskError>(())
            })?;
            Ok(())
        }),
        Metrics::new()
            .config()
            .with_stall_after(Duration::from_secs(30)),
    );
    let health = component.health();
    assert_eq!(health.report().status, Status::Stopped);
    component.start().await.unwrap();
    assert!(health.report().is_healthy());

    // Idle is not stalled, however long.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(!health.report().stalled);

    // Work pending and progress within the threshold: fine.
    health.set_pending(5);
    health.progress();
    tokio::time::advance(Duration::from_secs(30)).await;
    let report = health.report();
    assert!(!report.stalled);
    assert_eq!(report.since_progress, Duration::from_secs(30));

    // Past the threshold with work pending: stalled, though Running.
    tokio::time::advance(Duration::from_secs(1)).await;
    let report = health.report();
    assert_eq!(report.status, Status::Running);
    assert!(report.stalled && !report.is_healthy());

    // Progress clears it.
    health.progress();
    assert!(health.report().is_healthy());

    component.stop(Duration::from_secs(1)).await.unwrap();
    let report = health.report();
    assert_eq!(report.status, Status::Stopped);
    assert!(
        !report.stalled,
        "a stopped component is not stalled, it is stopped"
    );
}
