//! S-5 (no graceful shutdown: timers left open) and S-6 (timers with no registry).

use std::time::Duration;

use surefoot_core_lifecycle::signal::cancel_on_shutdown_signal;
use surefoot_core_lifecycle::{CancellationToken, RestartPolicy, Supervisor, TaskError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::common::Metrics;

fn ticker(
    supervisor: &Supervisor,
    name: &str,
    every: Duration,
) -> mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = mpsc::unbounded_channel();
    supervisor
        .spawn_interval(name, every, move || {
            let tx = tx.clone();
            async move { tx.send(Instant::now()).map_err(TaskError::from) }
        })
        .unwrap();
    rx
}

#[tokio::test(start_paused = true)]
async fn s_6_timers_are_registered_and_cancellable() {
    let supervisor = Supervisor::new("timers", Metrics::new().config());
    let start = Instant::now();
    let mut heartbeat = ticker(&supervisor, "heartbeat", Duration::from_secs(1));
    let mut sweep = ticker(&supervisor, "sweep", Duration::from_secs(5));
    assert_eq!(supervisor.live_task_names(), ["heartbeat", "sweep"]);

    for n in 1..=3 {
        assert_eq!(
            heartbeat.recv().await.unwrap() - start,
            Duration::from_secs(n)
        );
    }
    assert!(supervisor.cancel_task("heartbeat"));
    // The timer's task ends (its sender is dropped) and it leaves the registry.
    assert_eq!(heartbeat.recv().await, None);
    assert_eq!(supervisor.live_task_names(), ["sweep"]);
    assert_eq!(sweep.recv().await.unwrap() - start, Duration::from_secs(5));
    assert!(!supervisor.cancel_task("heartbeat"));

    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert!(report.is_clean());
    assert_eq!(sweep.recv().await, None, "no timer outlives the stop");
    assert_eq!(supervisor.live_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn s_5_stop_closes_timers_and_tasks_and_keeps_nothing() {
    let supervisor = Supervisor::new("s5", Metrics::new().config());
    let mut timer = ticker(&supervisor, "timer", Duration::from_millis(100));
    supervisor
        .spawn("socket", RestartPolicy::Always, |cancel| async move {
            cancel.cancelled().await;
            Ok::<(), TaskError>(())
        })
        .unwrap();
    timer.recv().await.unwrap();
    let token = supervisor.cancellation_token();
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(token.is_cancelled());
    while timer.recv().await.is_some() {}
    assert_eq!(supervisor.live_tasks(), 0);
}

#[tokio::test]
async fn s_5_sigterm_becomes_an_orderly_shutdown() {
    let supervisor = Supervisor::new("s5-signal", Metrics::new().config());
    let shutdown = CancellationToken::new();
    cancel_on_shutdown_signal(&supervisor, shutdown.clone()).unwrap();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    supervisor
        .spawn("worker", RestartPolicy::OnFailure, move |cancel| {
            let done_tx = done_tx.clone();
            async move {
                cancel.cancelled().await;
                done_tx.send("finished cleanly").unwrap();
                Ok::<(), TaskError>(())
            }
        })
        .unwrap();

    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
    shutdown.cancelled().await;
    let report = supervisor.stop(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(done_rx.recv().await, Some("finished cleanly"));
    assert_eq!(supervisor.live_tasks(), 0);
}

#[tokio::test]
async fn s_5_blocking_work_is_supervised_and_stops() {
    let supervisor = Supervisor::new("blocking", Metrics::new().config());
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    supervisor
        .spawn_blocking("cooperative", RestartPolicy::Never, |cancel| {
            // Blocks until its token is cancelled, then returns.
            futures::executor::block_on(cancel.cancelled());
            Ok::<(), TaskError>(())
        })
        .unwrap();
    supervisor
        .spawn_blocking("uninterruptible", RestartPolicy::Never, move |_cancel| {
            // Blocks until the test releases it, whatever the token says.
            release_rx.lock().unwrap().recv().map_err(TaskError::from)
        })
        .unwrap();
    assert_eq!(supervisor.live_tasks(), 2);
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert_eq!(report.aborted, ["uninterruptible"]);
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(supervisor.live_tasks(), 0);
    release_tx.send(()).unwrap();
}

#[tokio::test]
async fn s_5_blocking_panic_is_reported_as_a_panic() {
    let supervisor = Supervisor::new("blocking-panic", Metrics::new().config());
    let mut events = supervisor.events().subscribe();
    supervisor
        .spawn_blocking("bad", RestartPolicy::Never, |_cancel| {
            panic!("blocking boom");
            #[allow(unreachable_code)]
            Ok::<(), TaskError>(())
        })
        .unwrap();
    loop {
        let event = events.recv().await.unwrap();
        if let surefoot_core_lifecycle::EventKind::TaskExited { cause, .. } = event.kind {
            assert!(cause.is_panic(), "{cause}");
            break;
        }
    }
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert!(report.failed[0].panicked);
}
