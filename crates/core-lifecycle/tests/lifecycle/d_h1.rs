//! D-H1: a restarted component overwrites its task handle; the old task keeps running.

use std::time::Duration;

use surefoot_core_lifecycle::{
    Backoff, Component, RestartPolicy, SpawnError, Supervisor, TaskError, service_fn,
};
use tokio::sync::mpsc;

use crate::common::{Instances, Metrics};

const CYCLES: usize = 1_000;

#[tokio::test(start_paused = true)]
async fn d_h1_thousand_supervised_restarts_never_overlap() {
    let metrics = Metrics::new();
    let config = metrics
        .config()
        .with_intensity(10 * CYCLES as u32, Duration::from_secs(1))
        .with_backoff(Backoff::new(
            Duration::from_micros(10),
            Duration::from_micros(100),
        ));
    let supervisor = Supervisor::new("h1", config);
    let instances = Instances::default();
    let (count_tx, mut count_rx) = mpsc::unbounded_channel();
    let counter = instances.clone();
    let mut n = 0u32;
    supervisor
        .spawn("flapping", RestartPolicy::Always, move |_cancel| {
            let guard = counter.enter();
            let count_tx = count_tx.clone();
            n += 1;
            let n = n;
            async move {
                let _alive = guard;
                count_tx.send(()).unwrap();
                tokio::task::yield_now().await;
                // Every kind of exit is restarted under Always: return, error, panic.
                match n % 100 {
                    0 => panic!("flap"),
                    k if k % 2 == 0 => Err(TaskError::from("flap")),
                    _ => Ok(()),
                }
            }
        })
        .unwrap();
    for _ in 0..CYCLES {
        count_rx.recv().await.unwrap();
    }
    // The name stays taken across restarts: no second "flapping" can be spawned beside it.
    let second = supervisor.spawn("flapping", RestartPolicy::Never, |_c| async {
        Ok::<(), TaskError>(())
    });
    assert!(
        matches!(second, Err(SpawnError::NameTaken { .. })),
        "{second:?}"
    );
    let report = supervisor.stop(Duration::from_secs(1)).await;
    assert!(report.aborted.is_empty());
    assert!(instances.total() >= CYCLES);
    assert_eq!(instances.max_alive(), 1, "two instances were alive at once");
    assert_eq!(instances.alive(), 0);
    assert_eq!(supervisor.live_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn d_h1_thousand_component_restarts_never_overlap() {
    let instances = Instances::default();
    let counter = instances.clone();
    let component = Component::new(
        "h1-component",
        service_fn(move |supervisor: Supervisor| {
            let counter = counter.clone();
            async move {
                supervisor.spawn("worker", RestartPolicy::OnFailure, move |cancel| {
                    let guard = counter.enter();
                    async move {
                        cancel.cancelled().await;
                        // Slow to let go: a stop that did not wait would overlap the next run.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        drop(guard);
                        Ok::<(), TaskError>(())
                    }
                })?;
                Ok(())
            }
        }),
        Metrics::new().config(),
    );
    for _ in 0..CYCLES {
        component.start().await.unwrap();
        let report = component.stop(Duration::from_secs(1)).await.unwrap();
        assert!(report.is_clean());
        assert_eq!(instances.alive(), 0);
    }
    assert_eq!(instances.total(), CYCLES);
    assert_eq!(instances.max_alive(), 1, "two instances were alive at once");
}
