#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! Backend-specific behaviour: PostgreSQL sweeps skip locked rows; Redis reports its eviction
//! policy (a policy other than `noeviction` is warned about at connect).

mod common;

use chrono::Utc;
use surefoot_session_store::SessionStore;
use surefoot_test_support::{PgServer, RedisServer};

use common::{BOUND, new_session};

/// A sweep takes only rows nobody holds: one locked by a concurrent transaction is skipped
/// (not waited for) and swept once released.
#[tokio::test]
async fn postgres_sweep_skips_locked_rows_and_removes_them_later() {
    let server = PgServer::new().await.unwrap();
    let store = common::postgres(&server, 100).await;
    let held = store.create(new_session("held")).await.unwrap();
    let free = store.create(new_session("free")).await.unwrap();
    for id in [held.id, free.id] {
        assert!(
            store
                .touch(id, Utc::now() - chrono::Duration::seconds(5))
                .await
                .unwrap()
        );
    }
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM sf_sessions WHERE id = $1 FOR UPDATE")
        .bind(held.id.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let swept = tokio::time::timeout(BOUND, store.sweep())
        .await
        .expect("sweep waited on a lock")
        .unwrap();
    assert_eq!(swept, 1, "only the unlocked expired session");
    tx.rollback().await.unwrap();
    assert_eq!(
        store.sweep().await.unwrap(),
        1,
        "the released one goes next"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sf_sessions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    store.close().await;
    assert!(store.pool().is_closed());
}

#[tokio::test]
async fn redis_reports_an_eviction_policy_that_could_lose_history() {
    let server = RedisServer::new().await.unwrap();
    let store = common::redis(&server, 100).await;
    assert_eq!(
        store.eviction_policy().await.unwrap().as_deref(),
        Some("noeviction")
    );
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let warned = common::redis(&server, 100).await;
    assert_eq!(
        warned.eviction_policy().await.unwrap().as_deref(),
        Some("allkeys-lru")
    );
    // The store still works; the warning is the operator's cue.
    let session = warned.create(new_session("x")).await.unwrap();
    assert!(warned.load(session.id).await.unwrap().is_some());
}
