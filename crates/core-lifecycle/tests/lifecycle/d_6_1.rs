//! D-6.1: nested locks with no documented order.
//!
//! The design: one lock per manager, never held across an await (clippy's
//! `await_holding_lock`, denied in CI), never held while another is taken. These tests check
//! the first rule on the source and run every manager concurrently to show nothing deadlocks.

use std::time::Duration;

use surefoot_core_lifecycle::{
    BreakerConfig, CircuitBreaker, Component, RestartPolicy, Supervisor, TaskError, service_fn,
};
use tokio::task::JoinSet;

use crate::common::Metrics;

const SOURCES: &[(&str, &str)] = &[
    ("breaker.rs", include_str!("../../src/breaker.rs")),
    ("component.rs", include_str!("../../src/component.rs")),
    (
        "component/run.rs",
        include_str!("../../src/component/run.rs"),
    ),
    ("events.rs", include_str!("../../src/events.rs")),
    ("health.rs", include_str!("../../src/health.rs")),
    (
        "status_machine.rs",
        include_str!("../../src/status_machine.rs"),
    ),
    (
        "supervisor/shared.rs",
        include_str!("../../src/supervisor/shared.rs"),
    ),
    (
        "supervisor/processor.rs",
        include_str!("../../src/supervisor/processor.rs"),
    ),
    (
        "supervisor/runner.rs",
        include_str!("../../src/supervisor/runner.rs"),
    ),
    (
        "supervisor/stop.rs",
        include_str!("../../src/supervisor/stop.rs"),
    ),
    ("task_group.rs", include_str!("../../src/task_group.rs")),
];

#[test]
fn d_6_1_each_manager_has_one_documented_lock() {
    for (file, source) in SOURCES {
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        // Lock declarations: fields and type aliases (not function signatures).
        let locks = code
            .lines()
            .filter(|line| !line.contains("fn "))
            .map(|line| line.matches("Mutex<").count() + line.matches("RwLock<").count())
            .sum::<usize>();
        assert!(locks <= 1, "{file} declares {locks} locks");
        assert!(
            !code.contains("tokio::sync::Mutex"),
            "{file} uses an async lock"
        );
        if locks == 1 {
            assert!(
                source.contains("Lock") || source.contains("lock"),
                "{file} holds a lock without documenting it"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_6_1_managers_used_concurrently_never_deadlock() {
    let metrics = Metrics::new();
    let component = Component::new(
        "d61",
        service_fn(|supervisor: Supervisor| async move {
            for i in 0..4 {
                supervisor.spawn(
                    format!("worker-{i}"),
                    RestartPolicy::OnFailure,
                    |cancel| async move {
                        cancel.cancelled().await;
                        Ok::<(), TaskError>(())
                    },
                )?;
            }
            Ok(())
        }),
        metrics.config(),
    );
    let breaker = CircuitBreaker::new("b", BreakerConfig::default());
    let work = async {
        let mut calls = JoinSet::new();
        for i in 0..64 {
            let (component, breaker) = (component.clone(), breaker.clone());
            calls.spawn(async move {
                match i % 4 {
                    0 => drop(component.start().await),
                    1 => drop(component.stop(Duration::from_secs(1)).await),
                    2 => {
                        let health = component.health();
                        health.progress();
                        health.set_pending(i);
                        drop(health.report());
                        if let Some(supervisor) = component.supervisor() {
                            drop(supervisor.live_task_names());
                            drop(supervisor.spawn(
                                format!("extra-{i}"),
                                RestartPolicy::Never,
                                |_c| async { Ok::<(), TaskError>(()) },
                            ));
                        }
                    }
                    _ => drop(
                        breaker
                            .call(async { Err::<(), _>(std::io::Error::other("x")) })
                            .await,
                    ),
                }
            });
        }
        calls.join_all().await;
        drop(component.stop(Duration::from_secs(1)).await);
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("a deadlock would hang here");
}
