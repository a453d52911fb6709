//! D-7.2: the event processor cannot be cancelled; shutdown waits on it.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{
    EventBus, EventKind, LifecycleEvent, RestartPolicy, Status, Supervisor, TaskError,
};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::common::Metrics;

fn synthetic(n: u32) -> LifecycleEvent {
    LifecycleEvent {
        source: Arc::from("test"),
        task: None,
        at: Instant::now(),
        kind: EventKind::StatusChanged {
            from: Status::Starting,
            to: if n.is_multiple_of(2) {
                Status::Running
            } else {
                Status::Starting
            },
        },
    }
}

#[tokio::test(start_paused = true)]
async fn d_7_2_shutdown_meets_its_deadline_while_subscribers_are_blocked() {
    let metrics = Metrics::new();
    let bus = EventBus::new(8, metrics.metrics.clone());
    let supervisor = Supervisor::new("d72", metrics.config().with_events(bus.clone()));

    // One subscriber never reads; a processor's handler blocks forever on its first event.
    let mut idle = bus.subscribe();
    let entered = Arc::new(Notify::new());
    let notify = entered.clone();
    bus.spawn_processor(&supervisor, "processor", move |_event| {
        let notify = notify.clone();
        async move {
            notify.notify_one();
            std::future::pending::<()>().await;
            Ok::<(), TaskError>(())
        }
    })
    .unwrap();
    bus.publish(synthetic(0));
    entered.notified().await;

    // Publishing goes on regardless of both.
    for n in 1..100 {
        bus.publish(synthetic(n));
    }

    let started = Instant::now();
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert_eq!(report.aborted, ["processor"]);
    assert_eq!(supervisor.live_tasks(), 0);

    // The idle subscriber is told how much it missed: an event and a metric.
    let first = idle.recv().await.unwrap();
    let EventKind::Missed { count } = first.kind else {
        panic!("expected a Missed event, got {first:?}");
    };
    assert!(count > 90, "missed {count}");
    assert_eq!(
        metrics.sum("surefoot.events.missed", &[]),
        i64::try_from(count).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn d_7_2_event_processor_is_supervised_and_cancellable() {
    let metrics = Metrics::new();
    let supervisor = Supervisor::new("d72b", metrics.config());
    let bus = supervisor.events();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    bus.spawn_processor(&supervisor, "processor", move |event| {
        let seen_tx = seen_tx.clone();
        async move {
            if matches!(event.kind, EventKind::TaskStarted { .. })
                && event.task.as_deref() == Some("bad")
            {
                // A failing handler is restarted, keeping its subscription.
                seen_tx.send("restart-me").unwrap();
                return Err(TaskError::from("handler failed"));
            }
            if let EventKind::TaskExited { .. } = event.kind {
                seen_tx.send("exit").unwrap();
            }
            Ok(())
        }
    })
    .unwrap();
    supervisor
        .spawn("bad", RestartPolicy::Never, |_c| async {
            Ok::<(), TaskError>(())
        })
        .unwrap();
    assert_eq!(seen_rx.recv().await, Some("restart-me"));
    // The restarted processor still sees the events that followed (and its own restart's).
    assert_eq!(seen_rx.recv().await, Some("exit"));
    assert!(
        supervisor
            .live_task_names()
            .contains(&"processor".to_owned())
    );

    let started = Instant::now();
    let report = supervisor.stop(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "processor honoured cancellation"
    );
    assert!(report.aborted.is_empty());
    assert_eq!(report.failed.len(), 1, "the handler failure is reported");
    assert_eq!(
        metrics.sum("surefoot.tasks.restarted", &[("task", "processor")]),
        1
    );
}
