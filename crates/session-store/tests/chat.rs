#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! The example chat server in process: errors as typed events, graceful stop, events.

mod common;

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_session_store::chat::protocol::{ClientMsg, ServerMsg};
use surefoot_session_store::chat::{ChatConfig, ChatServer};
use surefoot_session_store::events::{SessionEventKind, SessionEvents, bridge_through_redis};
use surefoot_session_store::{PoolHealth, RoomId, SessionStore};
use surefoot_test_support::RedisServer;

use common::BOUND;
use common::client::{ChatProcess, Client, Frame};

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

async fn start(store: Arc<dyn SessionStore>, tweak: impl FnOnce(&mut ChatConfig)) -> ChatServer {
    let mut config = ChatConfig::new(([127, 0, 0, 1], 0).into(), "node-a");
    tweak(&mut config);
    ChatServer::start(config, store, SessionEvents::new("node-a", 64))
        .await
        .unwrap()
}

/// s_5 / s_6: stop tells every client to reconnect and closes with 1012, cancels the
/// listener, the sweeper, the heartbeats and every connection (zero tasks left, none aborted)
/// and closes the pool; afterwards no background work touches the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_5_s_6_stop_sends_reconnect_hint_cancels_every_task_and_closes_the_pool() {
    let redis = RedisServer::new().await.unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(common::redis(&redis, 100).await);
    let server = start(store.clone(), |c| {
        c.heartbeat_interval = Duration::from_millis(50);
        c.sweep_interval = Duration::from_millis(50);
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut client = Client::connect(server.local_addr()).await.unwrap();
        client.hello(None, &format!("user-{i}")).await;
        assert!(
            client
                .send(&ClientMsg::Join {
                    room: room("lobby")
                })
                .await
        );
        assert!(matches!(client.msg().await, ServerMsg::Joined { .. }));
        clients.push(client);
    }
    assert_eq!(
        server.live_tasks(),
        2 + 5,
        "http, sweeper and one task per connection"
    );

    // Clients keep reading while the server stops, as real ones do.
    let read_goodbyes = futures::future::join_all(clients.iter_mut().map(|client| async move {
        let mut hint = None;
        loop {
            match client.recv().await {
                Frame::Msg(ServerMsg::Reconnect { after_ms }) => hint = Some(after_ms),
                Frame::Msg(_) => {}
                Frame::Closed(frame) => return (hint, frame.map(|f| u16::from(f.code))),
                Frame::Gone => panic!("connection dropped without a close frame"),
            }
        }
    }));
    let (report, goodbyes) = tokio::time::timeout(BOUND, async {
        tokio::join!(server.stop(Duration::from_secs(5)), read_goodbyes)
    })
    .await
    .expect("stop hung");
    assert_eq!(report.live_tasks, 0);
    assert!(report.tasks.is_clean(), "{:?}", report.tasks);
    assert_eq!(report.pool.health, PoolHealth::Closed);
    for goodbye in goodbyes {
        assert_eq!(
            goodbye,
            (Some(200), Some(1012)),
            "reconnect hint, then close code 1012"
        );
    }
    // The pool's connections are closed: Redis sees no client left.
    let raw = redis::Client::open(redis.url()).unwrap();
    let mut admin = raw.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut admin)
            .await
            .unwrap();
        let others = clients
            .lines()
            .filter(|l| !l.contains("cmd=client"))
            .count();
        if others == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "store connections left open:\n{clients}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acquired = store.pool_stats().acquired;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.pool_stats().acquired,
        acquired,
        "no heartbeat or sweep after stop"
    );
}

/// A client that goes silent (answers no ping) is disconnected after the idle timeout, and its
/// task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_disconnected_after_the_idle_timeout() {
    let store: Arc<dyn SessionStore> = Arc::new(common::memory(10));
    let server = start(store, |c| {
        c.heartbeat_interval = Duration::from_millis(50);
        c.client_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut client = Client::connect(server.local_addr()).await.unwrap();
    client.hello(None, "quiet").await;
    assert_eq!(server.live_tasks(), 3);
    // The client reads nothing from here on, so it answers no ping.
    let deadline = tokio::time::Instant::now() + BOUND;
    while server.live_tasks() > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "silent client never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What was sent before the drop, then the end of the connection.
    while let Frame::Msg(_) = client.recv().await {}
    server.stop(Duration::from_secs(5)).await;
}

/// s_3: failures reach the client as typed error events and the connection keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_3_handler_errors_are_typed_events_and_retryable_ones_say_so() {
    let mut redis = RedisServer::builder().aof(true).start().await.unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(common::redis(&redis, 100).await);
    let server = start(store.clone(), |c| {
        c.heartbeat_interval = Duration::from_secs(3600)
    })
    .await;
    let mut client = Client::connect(server.local_addr()).await.unwrap();

    assert!(client.send(&ClientMsg::Join { room: room("r") }).await);
    assert!(
        matches!(client.msg().await, ServerMsg::Error { code, retryable: false, .. } if code == "no_session")
    );
    client.send_raw("{not json").await;
    assert!(matches!(client.msg().await, ServerMsg::Error { code, .. } if code == "bad_request"));
    client.hello(None, "ann").await;
    let publish = ClientMsg::Publish {
        room: room("r"),
        id: 1,
        body: serde_json::json!("hi"),
    };
    assert!(client.send(&publish).await);
    assert!(matches!(client.msg().await, ServerMsg::Error { code, .. } if code == "not_joined"));
    assert!(client.send(&ClientMsg::Join { room: room("r") }).await);
    assert!(matches!(client.msg().await, ServerMsg::Joined { .. }));

    redis.stop().await.unwrap();
    assert!(client.send(&publish).await);
    match client.msg().await {
        ServerMsg::Error {
            request,
            retryable,
            code,
            ..
        } => {
            assert_eq!(request, "publish");
            assert!(retryable, "a store outage is retryable ({code})");
        }
        other => panic!("expected an error event, got {other:?}"),
    }
    redis.start().await.unwrap();
    // The join is idempotent, so the boundary retries it through the reconnect.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        assert!(client.send(&ClientMsg::Join { room: room("r2") }).await);
        match client.msg().await {
            ServerMsg::Joined { .. } => break,
            ServerMsg::Error {
                retryable: true, ..
            } => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "store did not come back"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(client.send(&publish).await);
    assert!(matches!(
        client.msg().await,
        ServerMsg::Published { id: 1, .. } | ServerMsg::Message(_)
    ));
    server.stop(Duration::from_secs(5)).await;
}

/// A client that comes back with its session keeps its rooms and resumes what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_keeps_session_rooms_and_resumes_missed_messages() {
    let store: Arc<dyn SessionStore> = Arc::new(common::memory(100));
    let server = start(store, |_| {}).await;
    let addr = server.local_addr();
    let mut ann = Client::connect(addr).await.unwrap();
    let (session, _, resumed) = ann.hello(None, "ann").await;
    assert!(!resumed);
    assert!(ann.send(&ClientMsg::Join { room: room("r") }).await);
    let ServerMsg::Joined { offset, epoch, .. } = ann.msg().await else {
        panic!()
    };
    drop(ann);

    let mut bob = Client::connect(addr).await.unwrap();
    bob.hello(None, "bob").await;
    assert!(bob.send(&ClientMsg::Join { room: room("r") }).await);
    bob.msg().await;
    for id in 0..3 {
        assert!(
            bob.send(&ClientMsg::Publish {
                room: room("r"),
                id,
                body: serde_json::json!(id)
            })
            .await
        );
    }
    let mut acked = 0;
    while acked < 3 {
        if let ServerMsg::Published { .. } = bob.msg().await {
            acked += 1;
        }
    }
    let mut ann = Client::connect(addr).await.unwrap();
    let (again, rooms, resumed) = ann.hello(Some(session.clone()), "ann").await;
    assert_eq!(
        (again, rooms, resumed),
        (session, vec!["r".to_owned()], true)
    );
    assert!(
        ann.send(&ClientMsg::Resume {
            room: room("r"),
            offset,
            epoch
        })
        .await
    );
    let ServerMsg::Resumed {
        recovered,
        messages,
        ..
    } = ann.msg().await
    else {
        panic!()
    };
    assert!(recovered);
    assert_eq!(
        messages.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        [0, 1, 2].map(|i| serde_json::json!(i))
    );
    assert!(ann.send(&ClientMsg::Presence { room: room("r") }).await);
    let ServerMsg::Presence { members, .. } = ann.msg().await else {
        panic!()
    };
    assert_eq!(members.len(), 2);
    assert!(ann.send(&ClientMsg::Leave { room: room("r") }).await);
    assert!(matches!(ann.msg().await, ServerMsg::Left { .. }));
    server.stop(Duration::from_secs(5)).await;
}

/// Session events reach the local bus and, through Redis, another node's bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_cross_nodes_through_redis() {
    let redis = RedisServer::new().await.unwrap();
    let (node_a, node_b) = (TaskGroup::new("a"), TaskGroup::new("b"));
    let a = SessionEvents::new("a", 16);
    let b = SessionEvents::new("b", 16);
    bridge_through_redis(&node_a, &redis.url(), "sf-events", &a, BOUND)
        .await
        .unwrap();
    bridge_through_redis(&node_b, &redis.url(), "sf-events", &b, BOUND)
        .await
        .unwrap();
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    let id = surefoot_session_store::SessionId::random();
    a.joined(id, &room("r"));
    let local = on_a.recv().await.unwrap();
    let remote = tokio::time::timeout(BOUND, on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(local, remote);
    assert_eq!((remote.node.as_str(), remote.session), ("a", Some(id)));
    assert_eq!(remote.kind, SessionEventKind::Joined { room: room("r") });
    for tasks in [node_a, node_b] {
        let report = tasks.stop(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(tasks.live_tasks(), 0);
    }
}

/// s_5: the binary turns SIGTERM into the same orderly stop: clients get the reconnect hint and
/// the 1012 close, and the process exits with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_5_the_chat_binary_stops_gracefully_on_sigterm() {
    let redis = RedisServer::new().await.unwrap();
    let addr = ([127, 0, 0, 1], surefoot_test_support::free_port().unwrap()).into();
    let mut server = ChatProcess::start(addr, &redis.url()).await;
    let mut client = Client::connect(addr).await.unwrap();
    client.hello(None, "ann").await;
    assert!(client.send(&ClientMsg::Join { room: room("r") }).await);
    assert!(matches!(client.msg().await, ServerMsg::Joined { .. }));
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    server.terminate();
    let mut hint = None;
    let code = loop {
        match client.recv().await {
            Frame::Msg(ServerMsg::Reconnect { after_ms }) => hint = Some(after_ms),
            Frame::Msg(_) => {}
            Frame::Closed(frame) => break frame.map(|f| u16::from(f.code)),
            Frame::Gone => panic!("connection dropped without a close frame"),
        }
    };
    assert_eq!((hint.is_some(), code), (true, Some(1012)));
    let status = server.wait().await;
    assert!(status.success(), "{status}");
}

/// Live delivery is by offset: a message stored behind the hub's back (another node) is filled
/// from history, pipelined publishes arrive once each in order, and after the history is
/// deleted the reader follows the new epoch from offset 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_fills_gaps_and_follows_a_new_epoch() {
    let store: Arc<dyn SessionStore> = Arc::new(common::memory(1000));
    let server = start(store.clone(), |_| {}).await;
    let lobby = room("lobby");
    let mut reader = Client::connect(server.local_addr()).await.unwrap();
    let mut writer = Client::connect(server.local_addr()).await.unwrap();
    for client in [&mut reader, &mut writer] {
        client.hello(None, "u").await;
        assert!(
            client
                .send(&ClientMsg::Join {
                    room: lobby.clone()
                })
                .await
        );
        let ServerMsg::Joined { offset: 0, .. } = client.msg().await else {
            panic!("joined at 0")
        };
    }
    let publish = |id: u64| ClientMsg::Publish {
        room: room("lobby"),
        id,
        body: serde_json::json!(id),
    };

    // Another node's message: stored, never sent through this node's hub.
    let elsewhere = store
        .publish(&lobby, &serde_json::json!("elsewhere"))
        .await
        .unwrap();
    assert_eq!(elsewhere.offset, 1);
    for id in 0..30 {
        assert!(writer.send(&publish(id)).await);
    }
    let mut offsets = Vec::new();
    let mut first_body = None;
    while offsets.len() < 31 {
        if let ServerMsg::Message(m) = reader.msg().await {
            first_body.get_or_insert(m.body.clone());
            offsets.push(m.offset);
        }
    }
    assert_eq!(offsets, (1..=31).collect::<Vec<u64>>());
    assert_eq!(first_body, Some(serde_json::json!("elsewhere")));

    let old = store.position(&lobby).await.unwrap().epoch;
    store.delete_history(&lobby).await.unwrap();
    assert!(writer.send(&publish(99)).await);
    let message = loop {
        if let ServerMsg::Message(m) = reader.msg().await {
            break m;
        }
    };
    assert_ne!(message.epoch, old);
    assert_eq!((message.offset, message.body), (1, serde_json::json!(99)));

    // A resume from the old epoch is answered honestly.
    assert!(
        reader
            .send(&ClientMsg::Resume {
                room: lobby.clone(),
                offset: 31,
                epoch: old
            })
            .await
    );
    let resumed = loop {
        if let ServerMsg::Resumed {
            recovered,
            messages,
            ..
        } = reader.msg().await
        {
            break (recovered, messages.len());
        }
    };
    assert_eq!(resumed, (false, 1));
    server.stop(Duration::from_secs(5)).await;
}
