//! D-M3: check-then-act on component status; two concurrent starts both succeed.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::component::FnService;
use surefoot_core_lifecycle::{
    Component, RestartPolicy, StartError, Status, Supervisor, TaskError, TransitionError,
    service_fn,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::common::{Instances, Metrics};

const N: usize = 100;

type StartFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;
type StartFn = Box<dyn Fn(Supervisor) -> StartFuture + Send + Sync>;
type TestService = FnService<StartFn>;

fn component(instances: &Instances) -> Component<TestService> {
    let counter = instances.clone();
    let start: StartFn = Box::new(move |supervisor: Supervisor| {
        let counter = counter.clone();
        Box::pin(async move {
            // The instance is counted from the moment start spawns it.
            let guard = counter.enter();
            let mut guard = Some(guard);
            supervisor.spawn("instance", RestartPolicy::Never, move |cancel| {
                let guard = guard.take();
                async move {
                    let _alive = guard;
                    cancel.cancelled().await;
                    Ok::<(), TaskError>(())
                }
            })?;
            Ok(())
        })
    });
    Component::new("m3", service_fn(start), Metrics::new().config())
}

fn is_conflict(error: &TransitionError) -> bool {
    matches!(error, TransitionError::Conflict { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_m3_hundred_concurrent_starts_give_one_success_and_one_instance() {
    let instances = Instances::default();
    let component = component(&instances);
    let barrier = Arc::new(Barrier::new(N));
    let mut calls = JoinSet::new();
    for _ in 0..N {
        let (component, barrier) = (component.clone(), barrier.clone());
        calls.spawn(async move {
            barrier.wait().await;
            component.start().await
        });
    }
    let results = calls.join_all().await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let typed = results
        .iter()
        .filter(|r| matches!(r, Err(StartError::Transition { source, .. }) if is_conflict(source)))
        .count();
    assert_eq!((ok, typed), (1, N - 1));
    assert_eq!(component.status(), Status::Running);
    assert_eq!(instances.alive(), 1);
    assert_eq!(instances.max_alive(), 1);
    assert_eq!(component.supervisor().unwrap().live_tasks(), 1);
    component.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(instances.alive(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_m3_hundred_concurrent_stops_give_one_success() {
    let instances = Instances::default();
    let component = component(&instances);
    component.start().await.unwrap();
    let barrier = Arc::new(Barrier::new(N));
    let mut calls = JoinSet::new();
    for _ in 0..N {
        let (component, barrier) = (component.clone(), barrier.clone());
        calls.spawn(async move {
            barrier.wait().await;
            component.stop(Duration::from_secs(5)).await
        });
    }
    let results = calls.join_all().await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let typed = results
        .iter()
        .filter(|r| matches!(r, Err(e) if is_conflict(&e.source)))
        .count();
    assert_eq!((ok, typed), (1, N - 1));
    assert_eq!(component.status(), Status::Stopped);
    assert_eq!(instances.alive(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_m3_start_racing_stop_never_runs_two_instances() {
    let instances = Instances::default();
    let component = component(&instances);
    for round in 0..20 {
        if component.status() == Status::Stopped {
            component.start().await.unwrap();
        }
        let barrier = Arc::new(Barrier::new(N));
        let mut calls = JoinSet::new();
        for i in 0..N {
            let (component, barrier) = (component.clone(), barrier.clone());
            calls.spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    component.start().await.map(|()| true).map_err(|e| match e {
                        StartError::Transition { source, .. } => source,
                        other => panic!("untyped start failure: {other}"),
                    })
                } else {
                    component
                        .stop(Duration::from_secs(5))
                        .await
                        .map(|_| false)
                        .map_err(|e| e.source)
                }
            });
        }
        let results = calls.join_all().await;
        let starts = results.iter().filter(|r| matches!(r, Ok(true))).count();
        let stops = results.iter().filter(|r| matches!(r, Ok(false))).count();
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().err().is_none_or(is_conflict)),
            "round {round}"
        );
        // From Running: every successful start follows a successful stop.
        assert!(
            stops == starts || stops == starts + 1,
            "round {round}: {starts} starts, {stops} stops"
        );
        match component.status() {
            Status::Running => assert_eq!(instances.alive(), 1, "round {round}"),
            Status::Stopped => assert_eq!(instances.alive(), 0, "round {round}"),
            other => panic!("round {round}: left in {other}"),
        }
        assert_eq!(instances.max_alive(), 1, "round {round}");
    }
    if component.status() == Status::Running {
        component.stop(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(instances.alive(), 0);
}
