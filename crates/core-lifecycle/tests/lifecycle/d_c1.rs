//! D-C1: a background task dies and nobody notices.

use std::time::Duration;

use surefoot_core_lifecycle::supervisor::NestedError;
use surefoot_core_lifecycle::{
    Component, EventKind, ExitCause, IntensityExceeded, RestartPolicy, Status, Supervisor,
    SupervisorConfig, TaskError, service_fn,
};

use crate::common::Metrics;

fn panicking(
    policy: RestartPolicy,
) -> impl Fn(Supervisor) -> std::future::Ready<Result<(), TaskError>> + Send + Sync + 'static {
    move |supervisor: Supervisor| {
        std::future::ready(
            supervisor
                .spawn("panicky", policy, |_cancel| async {
                    panic!("boom");
                    #[allow(unreachable_code)]
                    Ok::<(), TaskError>(())
                })
                .map_err(TaskError::from),
        )
    }
}

#[tokio::test(start_paused = true)]
async fn d_c1_panic_is_reported_restarted_and_past_intensity_the_component_is_failed() {
    let metrics = Metrics::new();
    let config = metrics.config().with_intensity(2, Duration::from_secs(60));
    let component = Component::new(
        "c1",
        service_fn(panicking(RestartPolicy::OnFailure)),
        config,
    );
    let mut events = component.events().subscribe();
    let mut status = component.subscribe_status();

    component.start().await.unwrap();
    status.wait_for(|s| *s == Status::Failed).await.unwrap();

    // Events: three panics (two restarted), two restarts, one escalation.
    let mut exits = Vec::new();
    let mut restarts = 0;
    loop {
        let event = events.recv().await.unwrap();
        match event.kind {
            EventKind::TaskExited { cause, restarting } => {
                assert!(matches!(&cause, ExitCause::Panicked(p) if p.message() == "boom"));
                assert_eq!(event.task.as_deref(), Some("panicky"));
                exits.push(restarting);
            }
            EventKind::TaskRestarting { .. } => restarts += 1,
            EventKind::Escalated { error } => {
                assert_eq!(&*error.task, "panicky");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(exits, [true, true, false]);
    assert_eq!(restarts, 2);

    // Health says why.
    let health = component.health().report();
    assert_eq!(health.status, Status::Failed);
    assert!(!health.is_healthy());
    let failure = health.failure.expect("health names the failure");
    let gave_up = failure
        .downcast_ref::<IntensityExceeded>()
        .expect("the failure is typed");
    assert_eq!(gave_up.intensity, 2);
    assert!(gave_up.last.is_panic());
    assert_eq!(health.task_failures, 3);

    // Metrics.
    let task = [("task", "panicky")];
    assert_eq!(metrics.sum("surefoot.tasks.spawned", &task), 3);
    assert_eq!(metrics.sum("surefoot.tasks.panicked", &task), 3);
    assert_eq!(metrics.sum("surefoot.tasks.restarted", &task), 2);
    assert_eq!(metrics.sum("surefoot.supervisor.escalations", &[]), 1);
    assert_eq!(metrics.sum("surefoot.tasks.active", &[]), 0);

    // Stop from Failed reports every panic and leaves nothing.
    let report = component.stop(Duration::from_secs(1)).await.unwrap();
    assert_eq!(report.failed.len(), 3);
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.panicked && f.reason.contains("boom"))
    );
    assert_eq!(component.status(), Status::Stopped);
}

#[tokio::test(start_paused = true)]
async fn d_c1_restart_policy_decides_what_is_restarted() {
    let metrics = Metrics::new();
    let supervisor = Supervisor::new("policies", metrics.config());
    let mut events = supervisor.events().subscribe();
    supervisor
        .spawn("never", RestartPolicy::Never, |_c| async {
            Err::<(), _>(std::io::Error::other("gone"))
        })
        .unwrap();
    let mut first = true;
    supervisor
        .spawn("always", RestartPolicy::Always, move |cancel| {
            let again = !std::mem::replace(&mut first, false);
            async move {
                if again {
                    cancel.cancelled().await;
                }
                Ok::<(), TaskError>(())
            }
        })
        .unwrap();
    supervisor
        .spawn("on-failure", RestartPolicy::OnFailure, |_c| async {
            Ok::<(), TaskError>(())
        })
        .unwrap();

    let mut seen = std::collections::HashMap::new();
    while seen.len() < 3 {
        let event = events.recv().await.unwrap();
        if let EventKind::TaskExited { restarting, .. } = event.kind {
            seen.entry(event.task.unwrap().to_string())
                .or_insert(restarting);
        }
    }
    assert!(
        !seen["never"],
        "a failed Never task is reported, not restarted"
    );
    assert!(
        seen["always"],
        "a returning Always task is an unexpected exit"
    );
    assert!(!seen["on-failure"], "a returning OnFailure task is done");
    assert_eq!(supervisor.status(), Status::Running);
    assert_eq!(
        metrics.sum("surefoot.tasks.failed", &[("task", "never")]),
        1
    );
    assert_eq!(
        metrics.sum("surefoot.tasks.finished", &[("task", "on-failure")]),
        1
    );
    let health = supervisor.health().report();
    assert_eq!(health.task_failures, 1);
    assert_eq!(
        health.last_task_failure.as_ref().map(|(t, _)| &**t),
        Some("never")
    );
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert_eq!(report.failed.len(), 1);
    assert!(report.aborted.is_empty());
    assert_eq!(supervisor.live_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn d_c1_nested_supervisor_that_gives_up_is_restarted_then_escalates_to_its_parent() {
    let metrics = Metrics::new();
    let parent = Supervisor::new(
        "parent",
        metrics.config().with_intensity(1, Duration::from_secs(60)),
    );
    let nested = SupervisorConfig::default().with_intensity(0, Duration::from_secs(60));
    parent
        .spawn_supervisor("child", RestartPolicy::OnFailure, nested, |child| {
            child.spawn("worker", RestartPolicy::OnFailure, |_c| async {
                Err::<(), _>(std::io::Error::other("worker broke"))
            })
        })
        .unwrap();

    let gave_up = parent.gave_up().await;
    assert_eq!(parent.status(), Status::Failed);
    assert_eq!(&*gave_up.task, "child");
    let ExitCause::Failed(error) = &gave_up.last else {
        panic!(
            "expected the nested supervisor's failure, got {:?}",
            gave_up.last
        );
    };
    let nested_error = error.downcast_ref::<NestedError>().expect("typed");
    let NestedError::GaveUp(inner) = nested_error else {
        panic!("{nested_error:?}");
    };
    assert_eq!(&*inner.supervisor, "parent/child");
    assert_eq!(&*inner.task, "worker");
    // The nested supervisor ran twice (first run, one restart by the parent).
    assert_eq!(metrics.sum("surefoot.supervisor.escalations", &[]), 3);
    let report = parent.stop(Duration::from_secs(1)).await;
    assert!(report.failed.iter().any(|f| f.name == "child/worker"));
    assert!(report.aborted.is_empty());
    assert_eq!(parent.live_tasks(), 0);
}
