#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! s_1: 200 websocket clients in 10 rooms exchange messages; the chat server process is
//! SIGKILLed mid-stream and a new one started. Every client resumes with `recovered = true`,
//! gets every message it missed exactly once and in order, and keeps its session and rooms.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use surefoot_session_store::chat::protocol::{ClientMsg, ServerMsg};
use surefoot_session_store::{Message, RoomId, SessionStore};
use surefoot_test_support::chaos::{DeliveryLedger, report};
use surefoot_test_support::{PgServer, RedisServer, free_port};
use tokio::sync::{Barrier, watch};
use tokio::time::Instant;

use common::BOUND;
use common::client::{ChatProcess, Client, Frame};

const CLIENTS: usize = 200;
const ROOMS: usize = 10;
const PER_CLIENT: u64 = 5;

struct Shared {
    addr: SocketAddr,
    joined: Barrier,
    acked: AtomicUsize,
    finished_publishing: AtomicUsize,
    targets: watch::Receiver<Option<HashMap<RoomId, u64>>>,
}

#[derive(Debug)]
struct Outcome {
    client: usize,
    room: RoomId,
    received: Vec<Message>,
    acked: Vec<(u64, u64)>,
    resumes: Vec<bool>,
}

struct ClientRun {
    i: usize,
    room: RoomId,
    session: String,
    conn: Client,
    offset: u64,
    epoch: String,
    out: Outcome,
}

impl ClientRun {
    async fn start(i: usize, shared: &Shared) -> Self {
        let room = RoomId::new(format!("room-{}", i % ROOMS)).unwrap();
        let mut conn = Client::connect_retrying(shared.addr).await;
        let (session, rooms, resumed) = conn.hello(None, &format!("user-{i}")).await;
        assert!(rooms.is_empty() && !resumed);
        assert!(conn.send(&ClientMsg::Join { room: room.clone() }).await);
        let ServerMsg::Joined { offset, epoch, .. } = conn.msg().await else {
            panic!("client {i}: no joined")
        };
        let out = Outcome {
            client: i,
            room: room.clone(),
            received: Vec::new(),
            acked: Vec::new(),
            resumes: Vec::new(),
        };
        Self {
            i,
            room,
            session,
            conn,
            offset,
            epoch,
            out,
        }
    }

    fn take(&mut self, message: Message) {
        assert_eq!(
            message.epoch, self.epoch,
            "client {}: epoch changed",
            self.i
        );
        assert_eq!(
            message.offset,
            self.offset + 1,
            "client {}: message out of order or repeated",
            self.i
        );
        self.offset = message.offset;
        self.out.received.push(message);
    }

    /// After the server vanished: reconnect, continue the session, resume the room.
    async fn reconnect(&mut self, shared: &Shared) {
        self.conn = Client::connect_retrying(shared.addr).await;
        let (session, rooms, resumed) =
            self.conn.hello(Some(self.session.clone()), "ignored").await;
        assert_eq!(session, self.session, "client {}: session kept", self.i);
        assert!(resumed);
        assert_eq!(
            rooms,
            vec![self.room.to_string()],
            "client {}: rooms kept",
            self.i
        );
        let resume = ClientMsg::Resume {
            room: self.room.clone(),
            offset: self.offset,
            epoch: self.epoch.clone(),
        };
        assert!(self.conn.send(&resume).await);
        let ServerMsg::Resumed {
            recovered,
            messages,
            ..
        } = self.conn.msg().await
        else {
            panic!("client {}: no resumed", self.i)
        };
        self.out.resumes.push(recovered);
        for message in messages {
            self.take(message);
        }
    }

    async fn run(mut self, shared: &Shared) -> Outcome {
        shared.joined.wait().await;
        let mut targets = shared.targets.clone();
        let (mut next, mut in_flight, mut finished) = (0_u64, None, false);
        loop {
            if in_flight.is_none() && next < PER_CLIENT {
                let body = serde_json::json!({ "c": self.i, "s": next });
                if self
                    .conn
                    .send(&ClientMsg::Publish {
                        room: self.room.clone(),
                        id: next,
                        body,
                    })
                    .await
                {
                    in_flight = Some(next);
                }
                next += 1;
            }
            if in_flight.is_none() && next == PER_CLIENT && !finished {
                finished = true;
                shared.finished_publishing.fetch_add(1, Ordering::SeqCst);
            }
            let target = targets.borrow().as_ref().map(|t| t[&self.room]);
            if finished && target.is_some_and(|t| self.offset >= t) {
                assert_eq!(
                    Some(self.offset),
                    target,
                    "client {}: got past the room's end",
                    self.i
                );
                return self.out;
            }
            let frame = tokio::select! {
                frame = self.conn.recv() => frame,
                changed = targets.changed() => { changed.unwrap(); continue; }
            };
            match frame {
                Frame::Msg(ServerMsg::Message(message)) => self.take(message),
                Frame::Msg(ServerMsg::Published { id, offset, .. }) => {
                    assert_eq!(in_flight.take(), Some(id));
                    self.out.acked.push((id, offset));
                    shared.acked.fetch_add(1, Ordering::SeqCst);
                }
                Frame::Msg(other) => panic!("client {}: unexpected {other:?}", self.i),
                Frame::Closed(_) | Frame::Gone => {
                    // A publish without its reply is in doubt: stored or not, it is not resent.
                    in_flight = None;
                    self.reconnect(shared).await;
                }
            }
        }
    }
}

async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND * 2;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn scenario(name: &str, store_url: &str, store: &dyn SessionStore) {
    let started = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let mut server = ChatProcess::start(addr, store_url).await;
    let (targets_tx, targets) = watch::channel(None);
    let shared = Arc::new(Shared {
        addr,
        joined: Barrier::new(CLIENTS),
        acked: AtomicUsize::new(0),
        finished_publishing: AtomicUsize::new(0),
        targets,
    });
    let clients = (0..CLIENTS).map(|i| {
        let shared = shared.clone();
        async move { ClientRun::start(i, &shared).await.run(&shared).await }
    });
    let controller = async {
        let total = CLIENTS * PER_CLIENT as usize;
        poll_until("40% of the publishes", || {
            shared.acked.load(Ordering::SeqCst) >= total * 2 / 5
        })
        .await;
        let at_kill = shared.acked.load(Ordering::SeqCst);
        server.kill().await;
        eprintln!("{name}: SIGKILL after {at_kill} acknowledged publishes");
        let restarted = ChatProcess::start(addr, store_url).await;
        poll_until("every client to finish publishing", || {
            shared.finished_publishing.load(Ordering::SeqCst) == CLIENTS
        })
        .await;
        let mut tops = HashMap::new();
        for r in 0..ROOMS {
            let room = RoomId::new(format!("room-{r}")).unwrap();
            let top = store.position(&room).await.unwrap().offset;
            tops.insert(room, top);
        }
        targets_tx.send(Some(tops.clone())).unwrap();
        (restarted, tops)
    };
    let (outcomes, (mut restarted, tops)) =
        tokio::join!(futures::future::join_all(clients), controller);
    // The restarted server stops gracefully: its clients are told to reconnect.
    restarted.terminate();
    let status = restarted.wait().await;
    assert!(
        status.success(),
        "{name}: restarted server exited with {status}"
    );
    verify(name, store, &outcomes, &tops).await;
    eprintln!("{name}: finished in {:?}", started.elapsed());
}

async fn verify(
    name: &str,
    store: &dyn SessionStore,
    outcomes: &[Outcome],
    tops: &HashMap<RoomId, u64>,
) {
    let mut ledger = DeliveryLedger::new();
    let mut history = HashMap::new();
    for (room, top) in tops {
        let page = store.history(room, 0, 100_000).await.unwrap();
        assert_eq!(page.messages.len() as u64, *top);
        history.insert(room.clone(), page.messages);
    }
    for outcome in outcomes {
        assert_eq!(
            outcome.resumes,
            vec![true],
            "client {}: one resume, recovered",
            outcome.client
        );
        let kept = &history[&outcome.room];
        for message in kept {
            ledger.written((outcome.client, message.offset));
        }
        for message in &outcome.received {
            ledger.applied((outcome.client, message.offset));
        }
        let bodies: Vec<_> = outcome.received.iter().map(|m| &m.body).collect();
        let stored: Vec<_> = kept.iter().map(|m| &m.body).collect();
        assert_eq!(
            bodies, stored,
            "client {}: got the room's history, in order",
            outcome.client
        );
        for (seq, offset) in &outcome.acked {
            let expected = serde_json::json!({ "c": outcome.client, "s": seq });
            let copies = kept.iter().filter(|m| m.body == expected).count();
            assert_eq!(
                copies, 1,
                "client {}: acknowledged publish {seq} stored once",
                outcome.client
            );
            assert_eq!(kept[(*offset - 1) as usize].body, expected);
        }
    }
    let tally = ledger.tally();
    eprintln!("{name}: {tally:?}");
    report(name, &tally).unwrap();
    assert_eq!(
        (tally.lost, tally.duplicated),
        (0, 0),
        "{name}: lost {:?}",
        ledger.lost_keys(10)
    );
    assert_eq!(tally.delivered, tally.written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_1_chaos_chat_restart_redis() {
    let redis = RedisServer::builder().aof(true).start().await.unwrap();
    let store = common::redis(&redis, 10_000).await;
    scenario("s_1_chaos_chat_restart_redis", &redis.url(), &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_1_chaos_chat_restart_postgres() {
    let pg = PgServer::new().await.unwrap();
    let store = common::postgres(&pg, 10_000).await;
    scenario(
        "s_1_chaos_chat_restart_postgres",
        &pg.url("postgres"),
        &store,
    )
    .await;
}
