//! Dropping a server leaves no process and no temp dir behind, also when the test panics.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use surefoot_test_support::{PgServer, RedisServer};

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

fn assert_gone(pids: &[u32], dir: &Path) {
    assert!(!pids.is_empty());
    for pid in pids {
        assert!(!alive(*pid), "process {pid} is still alive");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[tokio::test]
async fn dropping_pg_server_leaves_nothing_behind() {
    let pg = PgServer::new().await.unwrap();
    let client = pg.connect("postgres").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let pids = pg.pids();
    assert!(pids.len() > 2, "postmaster, backend and helpers: {pids:?}");
    let dir = pg.dir().to_owned();
    assert!(dir.exists());

    drop(pg);

    assert_gone(&pids, &dir);
}

#[tokio::test]
async fn dropping_a_killed_pg_server_leaves_nothing_behind() {
    let mut pg = PgServer::new().await.unwrap();
    let pids = pg.pids();
    let dir = pg.dir().to_owned();
    pg.kill().await.unwrap();
    let shmid = shared_memory_id(&pg.data_dir().join("postmaster.pid")).unwrap();
    assert!(
        shm_exists(&shmid),
        "a killed server leaves its segment {shmid}"
    );

    drop(pg);

    assert_gone(&pids, &dir);
    assert!(
        !shm_exists(&shmid),
        "drop removes the orphaned segment {shmid}"
    );
}

/// The SysV shared-memory id recorded in a `postmaster.pid`.
fn shared_memory_id(pid_file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let line = text.lines().nth(6)?;
    Some(line.split_whitespace().nth(1)?.to_owned())
}

fn shm_exists(shmid: &str) -> bool {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1) == Some(shmid))
}

#[tokio::test]
async fn dropping_redis_server_leaves_nothing_behind() {
    let redis = RedisServer::builder().aof(true).start().await.unwrap();
    let pids = vec![redis.pid().unwrap()];
    let dir = redis.dir().to_owned();
    assert!(dir.exists());

    drop(redis);

    assert_gone(&pids, &dir);
}

/// A server's processes and temp dir.
type Leftovers = (Vec<u32>, PathBuf);

/// A panicking test still cleans up: the servers are dropped while unwinding.
#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let seen: Arc<Mutex<Vec<Leftovers>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let outcome = std::panic::catch_unwind(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let pg = PgServer::new().await.unwrap();
            let redis = RedisServer::new().await.unwrap();
            let mut seen = recorded.lock().unwrap();
            seen.push((pg.pids(), pg.dir().to_owned()));
            seen.push((vec![redis.pid().unwrap()], redis.dir().to_owned()));
            drop(seen);
            panic!("test failure while servers run");
        })
    });
    assert!(outcome.is_err());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (pids, dir) in seen.iter() {
        assert_gone(pids, dir);
    }
}
