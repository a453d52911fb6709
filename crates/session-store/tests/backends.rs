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

/// A publish that waited for the room's lock while an earlier message committed still trims
/// that message: the trim's snapshot is taken after the lock, not before the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_trim_sees_a_message_committed_while_the_publish_waited_for_the_room() {
    let server = PgServer::new().await.unwrap();
    let store = common::postgres(&server, 1).await;
    let room = surefoot_session_store::RoomId::new("r").unwrap();
    store
        .publish(&room, &serde_json::json!({ "n": 1 }))
        .await
        .unwrap();
    // An earlier publisher, in flight: it holds the room and stores offset 2, uncommitted.
    let mut earlier = store.pool().begin().await.unwrap();
    sqlx::query("UPDATE sf_rooms SET top_offset = top_offset + 1 WHERE room = 'r'")
        .execute(&mut *earlier)
        .await
        .unwrap();
    sqlx::query("INSERT INTO sf_history (room, seq, body) VALUES ('r', 2, '{\"n\": 2}')")
        .execute(&mut *earlier)
        .await
        .unwrap();
    let third = serde_json::json!({ "n": 3 });
    let publishing = store.publish(&room, &third);
    let commit_once_it_waits = async {
        // The publish has begun and waits for the room.
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '%sf_rooms%'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the publish never waited for the room"
            );
            tokio::task::yield_now().await;
        }
        earlier.commit().await.unwrap();
    };
    let (published, ()) = tokio::join!(publishing, commit_once_it_waits);
    assert_eq!(published.unwrap().offset, 3);
    let page = store.history(&room, 0, 10).await.unwrap();
    let kept: Vec<u64> = page.messages.iter().map(|m| m.offset).collect();
    assert_eq!(kept, vec![3], "the history keeps 1 message");
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

/// History that Redis loses (a restart without persistence, an evicted key) is never passed
/// off as complete: the epoch changes, or the kept range says what is missing.
#[tokio::test]
async fn redis_history_lost_by_the_server_is_reported_not_recovered() {
    use surefoot_session_store::RoomId;
    let mut server = RedisServer::new().await.unwrap();
    let store = common::redis(&server, 100).await;
    let room = RoomId::new("lossy").unwrap();
    let publish = |n: u64| {
        let (store, room) = (&store, &room);
        async move {
            for i in 0..n {
                store.publish(room, &serde_json::json!(i)).await.unwrap();
            }
        }
    };
    let join = || async {
        let session = store.create(new_session("r")).await.unwrap();
        store.join(session.id, &room).await.unwrap();
        session
    };

    // The stream alone evicted: the position survives, the messages do not.
    let session = join().await;
    let start = store.position(&room).await.unwrap();
    publish(3).await;
    let raw = redis::Client::open(server.url()).unwrap();
    let mut conn = raw.get_multiplexed_async_connection().await.unwrap();
    let _deleted: i64 = redis::cmd("DEL")
        .arg("sf:h:lossy")
        .query_async(&mut conn)
        .await
        .unwrap();
    let resume = store
        .resume(session.id, &room, 1, &start.epoch, 100)
        .await
        .unwrap();
    assert!(!resume.recovered, "messages 2 and 3 are gone");

    // The meta hash evicted: a new epoch, and the orphaned stream is dropped with the old one.
    publish(2).await;
    let _deleted: i64 = redis::cmd("DEL")
        .arg("sf:m:lossy")
        .query_async(&mut conn)
        .await
        .unwrap();
    let now = store.position(&room).await.unwrap();
    assert_ne!(now.epoch, start.epoch);
    assert_eq!(now.offset, 0);
    assert!(
        !store
            .resume(session.id, &room, 5, &start.epoch, 100)
            .await
            .unwrap()
            .recovered
    );
    publish(1).await;
    assert_eq!(
        store.history(&room, 0, 100).await.unwrap().messages.len(),
        1
    );

    // A restart without persistence: everything forgotten, a new epoch.
    let before = store.position(&room).await.unwrap();
    server.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    let session = loop {
        match store.create(new_session("again")).await {
            Ok(session) => break session,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "redis did not come back: {error}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    store.join(session.id, &room).await.unwrap();
    let after = store.position(&room).await.unwrap();
    assert_ne!(after.epoch, before.epoch);
    let resume = store
        .resume(session.id, &room, before.offset, &before.epoch, 100)
        .await
        .unwrap();
    assert!(!resume.recovered);
}
