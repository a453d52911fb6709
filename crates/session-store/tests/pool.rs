#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! Pools: validated settings, bounded waits with typed errors, stats and health (S-2, S-7, W-7).

mod common;

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_session_store::{
    PoolConfig, PoolHealth, RedisStore, RoomId, SessionStore, StoreConfig, StoreError, health,
};
use surefoot_test_support::{FaultProxy, RedisServer};
use tokio::time::Instant;

use common::BOUND;

const ACQUIRE: Duration = Duration::from_secs(1);

#[test]
fn w_7_pool_settings_are_validated_with_every_problem() {
    let config = StoreConfig {
        pool: PoolConfig {
            size: 0,
            min_idle: 3,
            acquire_timeout: Duration::ZERO,
            idle_timeout: Duration::from_millis(10),
            ..PoolConfig::default()
        },
        history_max_len: 0,
        key_prefix: "bad prefix".into(),
    };
    let Err(StoreError::Config(problems)) = config.validate() else {
        panic!("invalid config accepted");
    };
    let paths: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "pool.size",
            "pool.min_idle",
            "pool.acquire_timeout",
            "pool.idle_timeout",
            "history_max_len",
            "key_prefix"
        ],
        "{problems:?}"
    );
    assert!(StoreConfig::default().validate().is_ok());
    let parsed: PoolConfig =
        serde_json::from_str(r#"{"size": 4, "acquire_timeout": 250}"#).unwrap();
    assert_eq!(
        (parsed.size, parsed.acquire_timeout),
        (4, Duration::from_millis(250))
    );
    assert!(
        serde_json::from_str::<PoolConfig>(r#"{"sise": 4}"#).is_err(),
        "unknown fields refused"
    );
}

/// s_2: a pool of 2 and 50 concurrent operations on a silent link: the two admitted hold their
/// slots, the others fail with a typed exhaustion error after the acquire timeout; while they wait
/// the health endpoint shows the waiters and a degraded pool; once the link heals the two finish.
/// Nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_2_pool_of_two_exhausts_with_typed_errors_and_health_shows_waiters() {
    let redis = RedisServer::new().await.unwrap();
    let proxy = FaultProxy::start(([127, 0, 0, 1], redis.port()).into())
        .await
        .unwrap();
    let config = StoreConfig {
        pool: PoolConfig {
            size: 2,
            min_idle: 0,
            acquire_timeout: ACQUIRE,
            operation_timeout: Duration::from_secs(10),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let url = format!("redis://{}/", proxy.listen_addr());
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::connect(&url, config).await.unwrap());
    let tasks = TaskGroup::new("s_2");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = health::router(vec![store.clone()]);
    tasks
        .spawn_until_cancelled("health", async move { axum::serve(listener, app).await })
        .unwrap();
    // The link goes silent: the two admitted operations hold their slots until it heals.
    proxy.black_hole();

    let room = RoomId::new("s2").unwrap();
    let started = Instant::now();
    let operations = (0..50).map(|i| {
        let store = store.clone();
        let room = room.clone();
        async move {
            let began = Instant::now();
            let result = store.publish(&room, &serde_json::json!({ "i": i })).await;
            (result, began.elapsed())
        }
    });
    let watch_health = async {
        let url = format!("http://{addr}/health");
        let deadline = Instant::now() + BOUND;
        let mut seen = None;
        loop {
            let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            let pool = &body["pools"][0];
            // Both slots taken and operations queued behind them: that is a degraded pool.
            if pool["waiting"].as_u64().unwrap() > 0 && pool["in_use"] == 2 {
                assert_eq!(body["status"], "degraded", "{body}");
                assert_eq!(
                    (pool["size"].as_u64(), pool["idle"].as_u64()),
                    (Some(2), Some(0))
                );
                seen.get_or_insert(body.clone());
            }
            if pool["exhausted"] == 48 {
                proxy.heal();
                return seen.expect("health never showed the waiters");
            }
            assert!(
                Instant::now() < deadline,
                "operations neither ran nor gave up: {body}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (results, seen) = tokio::time::timeout(BOUND, async {
        tokio::join!(futures::future::join_all(operations), watch_health)
    })
    .await
    .expect("operations hung");
    eprintln!("health while waiting: {seen}");
    let total = started.elapsed();

    let mut ok = 0;
    let mut exhausted = 0;
    for (result, took) in results {
        match result {
            Ok(_) => ok += 1,
            Err(StoreError::PoolExhausted {
                pool, waited, size, ..
            }) => {
                assert_eq!((pool.as_str(), size), ("redis", 2));
                assert!(
                    waited >= ACQUIRE && took >= ACQUIRE,
                    "gave up before the acquire timeout: {waited:?}"
                );
                exhausted += 1;
            }
            Err(other) => panic!("expected pool exhaustion, got {other:?}"),
        }
    }
    assert_eq!(
        (ok, exhausted),
        (2, 48),
        "the two admitted finish once the link heals"
    );
    assert!(total < BOUND);
    let stats = store.pool_stats();
    assert_eq!(stats.exhausted, exhausted);
    assert_eq!(stats.waiting, 0);
    assert_eq!(
        stats.health,
        PoolHealth::Degraded,
        "degraded for a while after exhaustion"
    );
    assert!(stats.acquire_micros_max >= 1);

    store.close().await;
    let after = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(after.status(), 503);
    let body: serde_json::Value = after.json().await.unwrap();
    assert_eq!(body["status"], "closed");
    let closed = store
        .publish(&room, &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(closed, StoreError::Closed(_)), "{closed:?}");
    assert!(tasks.stop(Duration::from_secs(5)).await.is_clean());
}

/// s_2 on PostgreSQL, without timing luck: two publishes hold the pool's two connections while
/// they wait on a room row the test has locked; the other 48 operations fail with a typed
/// exhaustion error after the acquire timeout; health shows the waiters meanwhile; once the
/// lock is released the two finish. Nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_2_postgres_pool_of_two_exhausts_while_its_connections_wait_on_a_lock() {
    let pg = surefoot_test_support::PgServer::new().await.unwrap();
    let config = StoreConfig {
        pool: PoolConfig {
            size: 2,
            min_idle: 0,
            acquire_timeout: ACQUIRE,
            operation_timeout: Duration::from_secs(20),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let store: Arc<dyn SessionStore> = Arc::new(
        surefoot_session_store::PgStore::connect(&pg.url("postgres"), config)
            .await
            .unwrap(),
    );
    let room = RoomId::new("s2pg").unwrap();
    store.publish(&room, &serde_json::json!(0)).await.unwrap();
    let locker = pg.connect("postgres").await.unwrap();
    locker
        .client()
        .batch_execute("BEGIN; SELECT 1 FROM sf_rooms WHERE room = 's2pg' FOR UPDATE")
        .await
        .unwrap();

    let operations = (0..50).map(|i| {
        let (store, room) = (store.clone(), room.clone());
        async move { store.publish(&room, &serde_json::json!({ "i": i })).await }
    });
    let hold_then_release = async {
        let deadline = Instant::now() + BOUND;
        let mut saw_waiters = false;
        loop {
            let body = health::report(std::slice::from_ref(&store));
            let pool = &body.pools[0];
            if pool.waiting > 0 && pool.in_use == 2 {
                assert_eq!(body.status, PoolHealth::Degraded);
                saw_waiters = true;
            }
            if pool.exhausted == 48 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "operations neither ran nor gave up: {pool:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        locker.client().batch_execute("COMMIT").await.unwrap();
        saw_waiters
    };
    let (results, saw_waiters) = tokio::time::timeout(BOUND, async {
        tokio::join!(futures::future::join_all(operations), hold_then_release)
    })
    .await
    .expect("operations hung");
    assert!(saw_waiters, "health never showed the waiters");
    let mut ok = 0;
    for result in results {
        match result {
            Ok(_) => ok += 1,
            Err(StoreError::PoolExhausted {
                pool,
                waited,
                size: 2,
                ..
            }) => {
                assert_eq!(pool, "postgres");
                assert!(waited >= ACQUIRE);
            }
            Err(other) => panic!("expected pool exhaustion, got {other:?}"),
        }
    }
    assert_eq!(
        ok, 2,
        "the two admitted publishes finish once the lock is released"
    );
    assert_eq!(store.position(&room).await.unwrap().offset, 3);
    store.close().await;
}
