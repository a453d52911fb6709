//! PgServer against a real PostgreSQL: restart, crash recovery, backend termination.

use std::time::Duration;

use surefoot_test_support::PgServer;

async fn count_rows(pg: &PgServer) -> Result<i64, Box<dyn std::error::Error>> {
    let client = pg.connect("postgres").await?;
    Ok(client
        .query_one("SELECT count(*) FROM t", &[])
        .await?
        .get(0))
}

#[tokio::test]
async fn data_survives_restart_on_the_same_port() {
    let mut pg = PgServer::new().await.unwrap();
    let port = pg.port();
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);",
        )
        .await
        .unwrap();
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_level, "logical");
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('slot', 'test_decoding')")
        .await
        .unwrap();
    drop(client);

    pg.restart().await.unwrap();

    assert_eq!(pg.port(), port);
    assert_eq!(count_rows(&pg).await.unwrap(), 100);
    let client = pg.connect("postgres").await.unwrap();
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 1, "a logical slot survives a restart");
}

#[tokio::test]
async fn sigkill_then_start_recovers_committed_data() {
    let mut pg = PgServer::new().await.unwrap();
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
        )
        .await
        .unwrap();
    let pids = pg.pids();
    assert!(pids.len() > 1, "postmaster and children: {pids:?}");

    pg.kill().await.unwrap();

    assert!(!pg.is_running().unwrap());
    for pid in &pids {
        assert!(!alive(*pid), "server process {pid} survived the kill");
    }
    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        error.is_closed() || error.to_string().contains("connection"),
        "{error}"
    );

    pg.start().await.unwrap();
    assert_eq!(count_rows(&pg).await.unwrap(), 10);
    assert!(
        pg.log_tail().contains("not properly shut down"),
        "crash recovery ran:\n{}",
        pg.log_tail()
    );
}

#[tokio::test]
async fn stop_then_start_and_double_start_is_refused() {
    let mut pg = PgServer::new().await.unwrap();
    assert!(pg.start().await.is_err(), "already running");
    pg.stop().await.unwrap();
    assert!(!pg.is_running().unwrap());
    assert!(pg.connect("postgres").await.is_err());
    pg.start().await.unwrap();
    pg.connect("postgres").await.unwrap();
}

#[tokio::test]
async fn terminate_backends_terminates_exactly_the_named_application() {
    let pg = PgServer::new().await.unwrap();
    pg.create_database("app db").await.unwrap();
    let connect_as = async |app: &str| {
        let mut config = pg.config("app db");
        config.application_name(app);
        surefoot_test_support::connect(&config).await.unwrap()
    };
    let victims = [connect_as("victim").await, connect_as("victim").await];
    let bystander = connect_as("bystander").await;
    let similar = connect_as("victim-not").await;

    let terminated = pg.terminate_backends("victim").await.unwrap();

    assert_eq!(terminated, 2);
    for victim in &victims {
        let error = victim.simple_query("SELECT 1").await.unwrap_err();
        assert!(!error.to_string().is_empty());
    }
    bystander.simple_query("SELECT 1").await.unwrap();
    similar.simple_query("SELECT 1").await.unwrap();
    assert_eq!(pg.terminate_backends("nobody").await.unwrap(), 0);
}

#[tokio::test]
async fn start_failure_reports_the_log_tail() {
    let result = PgServer::builder()
        .setting("shared_buffers", "'not a size'")
        .start_timeout(Duration::from_secs(30))
        .start()
        .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("shared_buffers"), "{error}");
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}
