//! D-C2: stop aborts tasks without letting them finish; in-flight work is lost.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surefoot_core_lifecycle::{RestartPolicy, Supervisor, TaskError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::common::Metrics;

#[tokio::test(start_paused = true)]
async fn d_c2_stop_lets_the_unit_in_hand_finish_and_aborts_a_task_that_ignores_cancellation() {
    let metrics = Metrics::new();
    let supervisor = Supervisor::new("c2", metrics.config());
    let (work_tx, work_rx) = mpsc::channel::<u32>(4);
    let (began_tx, began_rx) = oneshot::channel::<()>();
    let completed = Arc::new(AtomicU32::new(0));

    let mut work = Some((work_rx, began_tx));
    let done = completed.clone();
    supervisor
        .spawn("careful", RestartPolicy::Never, move |cancel| {
            let (mut rx, began) = work.take().unwrap();
            let done = done.clone();
            async move {
                let mut began = Some(began);
                loop {
                    let item = tokio::select! {
                        biased;
                        () = cancel.cancelled() => return Ok::<(), TaskError>(()),
                        item = rx.recv() => item,
                    };
                    if item.is_none() {
                        return Ok(());
                    }
                    if let Some(began) = began.take() {
                        began.send(()).unwrap();
                    }
                    // The unit of work: not interrupted by cancellation.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .unwrap();
    supervisor
        .spawn("stubborn", RestartPolicy::Never, |_cancel| async {
            std::future::pending::<()>().await;
            Ok::<(), TaskError>(())
        })
        .unwrap();
    assert_eq!(supervisor.live_tasks(), 2);

    work_tx.send(1).await.unwrap();
    began_rx.await.unwrap();
    let started = Instant::now();
    let report = supervisor.stop(Duration::from_secs(2)).await;

    assert_eq!(
        completed.load(Ordering::SeqCst),
        1,
        "the unit in hand completed"
    );
    assert_eq!(report.aborted, ["stubborn"]);
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "aborted at the deadline"
    );
    assert_eq!(supervisor.live_tasks(), 0);
    assert_eq!(
        metrics.sum("surefoot.tasks.aborted", &[("task", "stubborn")]),
        1
    );
    assert_eq!(metrics.sum("surefoot.tasks.active", &[]), 0);
    assert!(
        supervisor
            .spawn("late", RestartPolicy::Never, |_c| async {
                Ok::<(), TaskError>(())
            })
            .is_err(),
        "a stopped supervisor takes no new task"
    );
}

#[tokio::test(start_paused = true)]
async fn d_c2_stop_goes_in_reverse_start_order() {
    let supervisor = Supervisor::new("order", Metrics::new().config());
    let order = Arc::new(Mutex::new(Vec::new()));
    for name in ["source", "query", "reaction"] {
        let order = order.clone();
        supervisor
            .spawn(name, RestartPolicy::Never, move |cancel| {
                let order = order.clone();
                async move {
                    cancel.cancelled().await;
                    order.lock().unwrap().push(name);
                    Ok::<(), TaskError>(())
                }
            })
            .unwrap();
    }
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert!(report.is_clean());
    assert_eq!(*order.lock().unwrap(), ["reaction", "query", "source"]);
    assert_eq!(supervisor.live_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn d_c2_nested_supervisor_stragglers_are_aborted_and_named() {
    let parent = Supervisor::new("root", Metrics::new().config());
    parent
        .spawn_supervisor("inner", RestartPolicy::Never, Default::default(), |child| {
            child.spawn("stuck", RestartPolicy::Never, |_c| async {
                std::future::pending::<()>().await;
                Ok::<(), TaskError>(())
            })
        })
        .unwrap();
    let started = Instant::now();
    let report = parent.stop(Duration::from_secs(1)).await;
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert!(
        report.aborted.iter().any(|n| n == "inner/stuck"),
        "{report:?}"
    );
    assert_eq!(parent.live_tasks(), 0);
}
