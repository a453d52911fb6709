//! A test process killed outright (a nextest timeout) cannot run Drop; the watchdogs clean up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use surefoot_test_support::{PgServer, RedisServer};

/// Where the helper writes what it started.
const REPORT_ENV: &str = "SUREFOOT_ORPHAN_REPORT";

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

fn line(dir: &Path, pids: &[u32]) -> String {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!("{}\t{}\n", dir.display(), pids.join(" "))
}

/// Started by the test below in a child process, which it then SIGKILLs.
#[tokio::test]
#[ignore = "helper process of killed_test_process_leaves_nothing_behind"]
async fn orphan_helper() {
    let Some(report) = std::env::var_os(REPORT_ENV) else {
        return;
    };
    let pg = PgServer::new().await.unwrap();
    let redis = RedisServer::builder().aof(true).start().await.unwrap();
    let text = line(pg.dir(), &pg.pids()) + &line(redis.dir(), &[redis.pid().unwrap()]);
    let partial = PathBuf::from(&report).with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, &report).unwrap();
    std::future::pending::<()>().await;
}

#[test]
fn killed_test_process_leaves_nothing_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let report = scratch.path().join("report");
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["orphan_helper", "--exact", "--ignored", "--nocapture"])
        .env(REPORT_ENV, &report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !report.exists() {
        assert!(
            helper.try_wait().unwrap().is_none(),
            "the helper ended early"
        );
        assert!(
            Instant::now() < deadline,
            "the helper did not start its servers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = std::fs::read_to_string(&report).unwrap();

    helper.kill().unwrap();
    helper.wait().unwrap();

    let servers: Vec<(PathBuf, Vec<u32>)> = started
        .lines()
        .map(|line| {
            let (dir, pids) = line.split_once('\t').unwrap();
            let pids = pids.split(' ').map(|p| p.parse().unwrap()).collect();
            (PathBuf::from(dir), pids)
        })
        .collect();
    assert_eq!(servers.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    for (dir, pids) in &servers {
        assert!(!pids.is_empty());
        while dir.exists() || pids.iter().any(|&pid| alive(pid)) {
            assert!(
                Instant::now() < deadline,
                "{} or {pids:?} left behind",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
