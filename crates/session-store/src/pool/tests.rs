//! The gate's own contract, without a server: a bounded wait, a typed error, health.

use std::time::Duration;

use super::{PoolConfig, PoolGate, PoolHealth};
use crate::StoreError;

fn gate(size: usize) -> PoolGate {
    PoolGate::new(
        "test",
        PoolConfig {
            size,
            min_idle: 0,
            acquire_timeout: Duration::from_millis(100),
            operation_timeout: Duration::from_millis(500),
            degraded_for: Duration::from_secs(60),
            ..PoolConfig::default()
        },
    )
}

#[tokio::test(start_paused = true)]
async fn a_full_gate_fails_after_the_acquire_timeout_and_reports_degraded() {
    let gate = gate(1);
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let holder = gate.run("hold", async {
        held.await.ok();
        Ok(())
    });
    let waiter = async {
        tokio::task::yield_now().await;
        let stats = gate.stats(None);
        assert_eq!((stats.in_use, stats.idle, stats.waiting), (1, 0, 0));
        let error = gate.run("wait", async { Ok(()) }).await.unwrap_err();
        assert!(
            matches!(error, StoreError::PoolExhausted { waited, size: 1, .. } if waited >= Duration::from_millis(100))
        );
        assert_eq!(gate.stats(None).health, PoolHealth::Degraded);
        release.send(()).ok();
    };
    let (held, ()) = tokio::join!(holder, waiter);
    held.unwrap();
    let stats = gate.stats(None);
    assert_eq!((stats.exhausted, stats.acquired, stats.in_use), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_slow_operation_times_out_and_a_closed_gate_refuses() {
    let gate = gate(2);
    let slow = gate
        .run("slow", std::future::pending::<Result<(), StoreError>>())
        .await;
    assert!(matches!(slow, Err(StoreError::Timeout(_))), "{slow:?}");
    assert_eq!(gate.stats(None).health, PoolHealth::Ok);
    gate.close();
    let closed = gate.run("after close", async { Ok(()) }).await;
    assert!(matches!(closed, Err(StoreError::Closed(_))));
    assert_eq!(gate.stats(None).health, PoolHealth::Closed);
}
