#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! One conformance suite, run against every backend: memory, Redis, PostgreSQL.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use surefoot_session_store::{PresenceMember, RoomId, SessionStore, StoreError, expiry_in};
use surefoot_test_support::{PgServer, RedisServer};

use common::{BOUND, new_session};

/// Messages each store under test keeps per room.
const KEEP: usize = 5;

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

async fn suite(store: &dyn SessionStore) {
    concurrent_saves_one_conflict(store).await;
    concurrent_joins_lose_nothing(store).await;
    insert_refuses_a_taken_id(store).await;
    touch_refreshes_without_rewriting(store).await;
    expired_sessions_are_gone(store).await;
    delete_removes(store).await;
    presence_expires(store).await;
    publish_offsets_are_unique_and_ordered(store).await;
    resume_recovers_missed_messages(store).await;
    trimmed_history_is_not_recovered(store).await;
    deleting_history_changes_the_epoch(store).await;
}

/// s_4: two requests that loaded the same version: one save wins, the other gets a typed
/// conflict; the stored data is the winner's.
async fn concurrent_saves_one_conflict(store: &dyn SessionStore) {
    let created = store.create(new_session("ann")).await.unwrap();
    for round in 0..5_u64 {
        let base = store.load(created.id).await.unwrap().unwrap();
        let mut a = base.clone();
        a.data = serde_json::json!({ "by": "a", "round": round });
        let mut b = base.clone();
        b.data = serde_json::json!({ "by": "b", "round": round });
        let (ra, rb) = tokio::join!(store.save(&a), store.save(&b));
        let (winner, conflict) = match (ra, rb) {
            (Ok(w), Err(c)) | (Err(c), Ok(w)) => (w, c),
            (ra, rb) => panic!(
                "{}: round {round}: expected one success and one conflict, got {ra:?} and {rb:?}",
                store.backend()
            ),
        };
        match conflict {
            StoreError::Conflict {
                id,
                expected,
                actual,
            } => {
                assert_eq!(
                    (id, expected, actual),
                    (created.id, base.version, base.version + 1)
                );
            }
            other => panic!("{}: expected a conflict, got {other:?}", store.backend()),
        }
        assert_eq!(winner.version, base.version + 1);
        let stored = store.load(created.id).await.unwrap().unwrap();
        assert_eq!(
            stored.data,
            winner.data,
            "{}: stored data is the winner's",
            store.backend()
        );
        assert_eq!(stored.version, winner.version);
    }
}

/// S-4: concurrent joins of one session all land (each reloads on conflict).
async fn concurrent_joins_lose_nothing(store: &dyn SessionStore) {
    let session = store.create(new_session("bob")).await.unwrap();
    let rooms: Vec<RoomId> = (0..8).map(|i| room(&format!("join-{i}"))).collect();
    let joins = rooms.iter().map(|r| store.join(session.id, r));
    for joined in futures::future::join_all(joins).await {
        joined.unwrap();
    }
    let stored = store.load(session.id).await.unwrap().unwrap();
    assert_eq!(
        stored.rooms,
        rooms.iter().cloned().collect::<BTreeSet<_>>(),
        "{}",
        store.backend()
    );
    let left = store.leave(session.id, &rooms[0]).await.unwrap();
    assert!(!left.rooms.contains(&rooms[0]));
    assert_eq!(left.rooms.len(), 7);
}

async fn insert_refuses_a_taken_id(store: &dyn SessionStore) {
    let session = store.create(new_session("cat")).await.unwrap();
    let error = store.insert(&session).await.unwrap_err();
    assert!(
        matches!(error, StoreError::AlreadyExists(id) if id == session.id),
        "{error:?}"
    );
}

async fn touch_refreshes_without_rewriting(store: &dyn SessionStore) {
    let session = store.create(new_session("dan")).await.unwrap();
    let later = expiry_in(Duration::from_secs(7200));
    assert!(store.touch(session.id, later).await.unwrap());
    let stored = store.load(session.id).await.unwrap().unwrap();
    assert_eq!(stored.version, session.version, "touch keeps the version");
    assert_eq!(stored.data, session.data);
    let drift = (stored.expires_at - later).num_milliseconds().abs();
    assert!(
        drift <= 1,
        "{}: expiry {} vs {later}",
        store.backend(),
        stored.expires_at
    );
    // A save of the copy loaded before the touch keeps the later expiry (no lost touch).
    let saved = store.save(&session).await.unwrap();
    let kept = store.load(session.id).await.unwrap().unwrap();
    assert!(
        (kept.expires_at - later).num_milliseconds().abs() <= 1,
        "{}: touch undone by save",
        store.backend()
    );
    assert_eq!(saved.expires_at, kept.expires_at);
    assert_eq!(kept.version, session.version + 1);
}

/// Expiry: a session whose time has passed is gone for load, touch and save; one that lapses
/// while we wait disappears on its own.
async fn expired_sessions_are_gone(store: &dyn SessionStore) {
    let session = store.create(new_session("eve")).await.unwrap();
    assert!(
        store
            .touch(session.id, Utc::now() - chrono::Duration::seconds(1))
            .await
            .unwrap()
    );
    assert_eq!(
        store.load(session.id).await.unwrap(),
        None,
        "{}",
        store.backend()
    );
    assert!(
        !store
            .touch(session.id, expiry_in(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    let error = store.save(&session).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");

    let mut short = new_session("fay");
    short.expires_at = expiry_in(Duration::from_millis(300));
    let short = store.create(short).await.unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    while store.load(short.id).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: session did not expire",
            store.backend()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.sweep().await.unwrap();
    assert_eq!(store.load(short.id).await.unwrap(), None);
    // The id of an expired session can be used again.
    store.insert(&short).await.unwrap();
}

async fn delete_removes(store: &dyn SessionStore) {
    let session = store.create(new_session("gus")).await.unwrap();
    assert!(store.delete(session.id).await.unwrap());
    assert!(!store.delete(session.id).await.unwrap());
    assert_eq!(store.load(session.id).await.unwrap(), None);
}

async fn presence_expires(store: &dyn SessionStore) {
    let lobby = room("presence");
    let live = store.create(new_session("hal")).await.unwrap();
    let stale = store.create(new_session("ivy")).await.unwrap();
    let member = |s: &surefoot_session_store::Session, ttl_ms: i64| PresenceMember {
        session: s.id,
        user: s.user.clone(),
        expires_at: Utc::now() + chrono::Duration::milliseconds(ttl_ms),
    };
    store
        .heartbeat(&lobby, &member(&live, 60_000))
        .await
        .unwrap();
    store
        .heartbeat(&lobby, &member(&stale, 60_000))
        .await
        .unwrap();
    assert_eq!(store.presence(&lobby).await.unwrap().len(), 2);
    // A heartbeat that is not renewed lapses.
    store
        .heartbeat(&lobby, &member(&stale, -1_000))
        .await
        .unwrap();
    let present = store.presence(&lobby).await.unwrap();
    assert_eq!(present.len(), 1, "{}: {present:?}", store.backend());
    assert_eq!(
        (present[0].session, present[0].user.as_str()),
        (live.id, "hal")
    );
    store.depart(&lobby, live.id).await.unwrap();
    assert!(store.presence(&lobby).await.unwrap().is_empty());
}

async fn publish_offsets_are_unique_and_ordered(store: &dyn SessionStore) {
    let busy = &room("busy");
    let publishes = (0..20).map(|i| async move {
        store
            .publish(busy, &serde_json::json!({ "i": i }))
            .await
            .unwrap()
    });
    let mut offsets: Vec<u64> = futures::future::join_all(publishes)
        .await
        .iter()
        .map(|m| m.offset)
        .collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (1..=20).collect::<Vec<u64>>(),
        "{}",
        store.backend()
    );
    let page = store.history(busy, 0, 100).await.unwrap();
    let kept: Vec<u64> = page.messages.iter().map(|m| m.offset).collect();
    assert_eq!(
        kept,
        (16..=20).collect::<Vec<u64>>(),
        "{}: last {KEEP} kept in order",
        store.backend()
    );
    assert_eq!((page.top.offset, page.earliest), (20, 16));
}

async fn resume_recovers_missed_messages(store: &dyn SessionStore) {
    let chat = room("resume");
    let session = store.create(new_session("jon")).await.unwrap();
    store.join(session.id, &chat).await.unwrap();
    let start = store.position(&chat).await.unwrap();
    assert_eq!(start.offset, 0);
    for i in 1..=4 {
        let m = store
            .publish(&chat, &serde_json::json!({ "i": i }))
            .await
            .unwrap();
        assert_eq!((m.offset, m.epoch.as_str()), (i, start.epoch.as_str()));
    }
    let resume = store
        .resume(session.id, &chat, 1, &start.epoch, 100)
        .await
        .unwrap();
    assert!(resume.recovered, "{}", store.backend());
    let got: Vec<u64> = resume.messages.iter().map(|m| m.offset).collect();
    assert_eq!(got, vec![2, 3, 4]);
    assert_eq!(resume.messages[0].body, serde_json::json!({ "i": 2 }));
    assert_eq!(resume.top.offset, 4);
    let nothing = store
        .resume(session.id, &chat, 4, &start.epoch, 100)
        .await
        .unwrap();
    assert!(nothing.recovered && nothing.messages.is_empty());
    let cut = store
        .resume(session.id, &chat, 0, &start.epoch, 2)
        .await
        .unwrap();
    assert!(
        !cut.recovered,
        "a limit that cuts the tail is not a full recovery"
    );
    let future = store
        .resume(session.id, &chat, 9, &start.epoch, 100)
        .await
        .unwrap();
    assert!(!future.recovered, "an offset past the top is not recovered");
    let outsider = store.create(new_session("kim")).await.unwrap();
    let error = store
        .resume(outsider.id, &chat, 0, &start.epoch, 10)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
}

async fn trimmed_history_is_not_recovered(store: &dyn SessionStore) {
    let chat = room("trim");
    let session = store.create(new_session("lea")).await.unwrap();
    store.join(session.id, &chat).await.unwrap();
    let epoch = store.position(&chat).await.unwrap().epoch;
    for i in 1..=8 {
        store
            .publish(&chat, &serde_json::json!({ "i": i }))
            .await
            .unwrap();
    }
    let lost = store
        .resume(session.id, &chat, 1, &epoch, 100)
        .await
        .unwrap();
    assert!(
        !lost.recovered,
        "{}: offsets 2 and 3 were trimmed",
        store.backend()
    );
    let kept = store
        .resume(session.id, &chat, 3, &epoch, 100)
        .await
        .unwrap();
    assert!(kept.recovered);
    assert_eq!(
        kept.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
}

/// Deleting a room's history changes its epoch; a resume from the old epoch says
/// `recovered = false` and offsets start again at 1.
async fn deleting_history_changes_the_epoch(store: &dyn SessionStore) {
    let chat = room("epoch");
    let session = store.create(new_session("max")).await.unwrap();
    store.join(session.id, &chat).await.unwrap();
    for i in 1..=3 {
        store
            .publish(&chat, &serde_json::json!({ "i": i }))
            .await
            .unwrap();
    }
    let before = store.position(&chat).await.unwrap();
    assert_eq!(before.offset, 3);
    store.delete_history(&chat).await.unwrap();
    let after = store.position(&chat).await.unwrap();
    assert_ne!(after.epoch, before.epoch, "{}", store.backend());
    assert_eq!(after.offset, 0);
    let resume = store
        .resume(session.id, &chat, 3, &before.epoch, 100)
        .await
        .unwrap();
    assert!(!resume.recovered, "{}", store.backend());
    assert!(resume.messages.is_empty());
    let next = store
        .publish(&chat, &serde_json::json!({ "i": 4 }))
        .await
        .unwrap();
    assert_eq!((next.offset, next.epoch), (1, after.epoch.clone()));
    let resume = store
        .resume(session.id, &chat, 2, &before.epoch, 100)
        .await
        .unwrap();
    assert!(!resume.recovered);
    assert_eq!(
        resume.messages.len(),
        1,
        "the client gets the new epoch's history"
    );
}

#[tokio::test]
async fn conformance_memory() {
    suite(&common::memory(KEEP)).await;
}

#[tokio::test]
async fn conformance_redis() {
    let server = RedisServer::new().await.unwrap();
    let store = common::redis(&server, KEEP).await;
    suite(&store).await;
}

#[tokio::test]
async fn conformance_postgres() {
    let server = PgServer::new().await.unwrap();
    let store = common::postgres(&server, KEEP).await;
    suite(&store).await;
    store.close().await;
}
