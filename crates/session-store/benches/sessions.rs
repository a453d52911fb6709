//! Session load/save operations per second against `redis-benchmark` running the equivalent
//! commands (GET for a load, SET for a save) on the same server, in the same run, at the same
//! concurrency; and resume latency (p50, p99) for 100 missed messages on each backend.
//!
//! Ours: `RedisStore::load` (one HMGET) and `RedisStore::save` (one EVALSHA of the
//! compare-and-set script), `CONCURRENCY` callers each on its own session, through the pool
//! gate with `CONCURRENCY` connections. Theirs: `redis-benchmark -c CONCURRENCY -n OPS -d
//! <encoded session size> -t get,set`. The benchmark prints ratios; it never asserts a speed.
//!
//! Run: `cargo bench -p surefoot-session-store --bench sessions`

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing with its
// message.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::{Duration, Instant};

use surefoot_session_store::{
    MemoryStore, NewSession, PgStore, PoolConfig, RedisStore, RoomId, Session, SessionStore,
    StoreConfig, expiry_in,
};
use surefoot_test_support::{PgServer, RedisServer};

const CONCURRENCY: usize = 50;
const OPS: usize = 50_000;
const RESUMES: usize = 500;
const MISSED: u64 = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

fn config() -> StoreConfig {
    StoreConfig {
        pool: PoolConfig {
            size: CONCURRENCY,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    }
}

async fn run() {
    let redis = RedisServer::new().await.unwrap();
    let store = RedisStore::connect(&redis.url(), config()).await.unwrap();
    let sessions = sessions(&store).await;
    let payload = serde_json::to_string(&sessions[0]).unwrap().len();

    let load = ops_per_sec(OPS, || {
        let tasks = sessions.iter().map(|s| {
            let store = &store;
            async move {
                for _ in 0..OPS / CONCURRENCY {
                    store.load(s.id).await.unwrap().unwrap();
                }
            }
        });
        futures::future::join_all(tasks)
    })
    .await;
    let save = ops_per_sec(OPS, || {
        let tasks = sessions.iter().cloned().map(|mut s| {
            let store = &store;
            async move {
                for _ in 0..OPS / CONCURRENCY {
                    s = store.save(&s).await.unwrap();
                }
            }
        });
        futures::future::join_all(tasks)
    })
    .await;
    let (get, set) = redis_benchmark(redis.port(), payload);
    println!(
        "session-store bench: {CONCURRENCY} concurrent callers, {OPS} operations per kind, session ~{payload} bytes"
    );
    println!(
        "  load (HMGET)   {load:>10.0} ops/s   redis-benchmark GET {get:>10.0} ops/s   ratio {:.2}",
        load / get
    );
    println!(
        "  save (CAS Lua) {save:>10.0} ops/s   redis-benchmark SET {set:>10.0} ops/s   ratio {:.2}",
        save / set
    );

    println!("resume latency, {MISSED} missed messages, {RESUMES} resumes:");
    resume_latency("memory", &MemoryStore::new(StoreConfig::default()).unwrap()).await;
    resume_latency("redis", &store).await;
    let pg = PgServer::new().await.unwrap();
    let pg_store = PgStore::connect(&pg.url("postgres"), config())
        .await
        .unwrap();
    resume_latency("postgres", &pg_store).await;
    pg_store.close().await;
}

async fn sessions(store: &dyn SessionStore) -> Vec<Session> {
    let mut sessions = Vec::new();
    for i in 0..CONCURRENCY {
        let new = NewSession {
            user: format!("user-{i}"),
            data: serde_json::json!({ "theme": "dark", "lang": "en", "cart": [1, 2, 3] }),
            node: "bench".into(),
            expires_at: expiry_in(Duration::from_secs(3600)),
        };
        sessions.push(store.create(new).await.unwrap());
    }
    sessions
}

async fn ops_per_sec<F, Fut>(ops: usize, work: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future,
{
    let started = Instant::now();
    work().await;
    ops as f64 / started.elapsed().as_secs_f64()
}

/// `redis-benchmark`'s GET and SET requests per second at our concurrency and payload size.
fn redis_benchmark(port: u16, payload: usize) -> (f64, f64) {
    let output = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &CONCURRENCY.to_string(), "-n", &OPS.to_string()])
        .args(["-d", &payload.to_string(), "-t", "get,set", "--csv"])
        .output()
        .expect("redis-benchmark runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = |name: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(&format!("\"{name}\"")))
            .and_then(|line| line.split(',').nth(1))
            .map(|v| v.trim_matches('"').parse().unwrap())
            .unwrap_or_else(|| panic!("no {name} in redis-benchmark output: {text}"))
    };
    (rate("GET"), rate("SET"))
}

async fn resume_latency(name: &str, store: &dyn SessionStore) {
    let room = RoomId::new("bench-resume").unwrap();
    let session = sessions(store).await.remove(0);
    store.join(session.id, &room).await.unwrap();
    let epoch = store.position(&room).await.unwrap().epoch;
    for i in 0..MISSED * 10 {
        store
            .publish(&room, &serde_json::json!({ "i": i, "text": "hello there" }))
            .await
            .unwrap();
    }
    let from = MISSED * 10 - MISSED;
    let mut took = Vec::with_capacity(RESUMES);
    for _ in 0..RESUMES {
        let started = Instant::now();
        let resume = store
            .resume(session.id, &room, from, &epoch, 1000)
            .await
            .unwrap();
        took.push(started.elapsed());
        assert!(resume.recovered && resume.messages.len() as u64 == MISSED);
    }
    took.sort();
    let p = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "  {name:<9} p50 {:>8.3} ms   p99 {:>8.3} ms",
        ms(p(0.5)),
        ms(p(0.99))
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
