//! RedisServer against a real redis-server: persistence only when asked for.

use redis::AsyncCommands;
use surefoot_test_support::RedisServer;

async fn connection(server: &RedisServer) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(server.url())?;
    client.get_multiplexed_async_connection().await
}

async fn set(server: &RedisServer, key: &str, value: &str) -> redis::RedisResult<()> {
    let mut con = connection(server).await?;
    con.set(key, value).await
}

async fn get(server: &RedisServer, key: &str) -> redis::RedisResult<Option<String>> {
    let mut con = connection(server).await?;
    con.get(key).await
}

#[tokio::test]
async fn restart_with_aof_keeps_data() {
    let mut server = RedisServer::builder().aof(true).start().await.unwrap();
    let port = server.port();
    set(&server, "k", "v").await.unwrap();
    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(get(&server, "k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn kill_with_aof_keeps_acknowledged_writes() {
    let mut server = RedisServer::builder().aof(true).start().await.unwrap();
    set(&server, "k", "v").await.unwrap();
    server.kill().await.unwrap();
    assert!(!server.is_running().unwrap());
    server.start().await.unwrap();
    assert_eq!(get(&server, "k").await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn restart_without_aof_loses_data() {
    let mut server = RedisServer::new().await.unwrap();
    assert!(!server.aof());
    set(&server, "k", "v").await.unwrap();
    assert_eq!(get(&server, "k").await.unwrap().as_deref(), Some("v"));
    server.restart().await.unwrap();
    assert_eq!(get(&server, "k").await.unwrap(), None);
    let files: Vec<_> = std::fs::read_dir(server.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["redis.log"], "nothing persisted");
}

#[tokio::test]
async fn url_points_at_a_private_port() {
    let server = RedisServer::new().await.unwrap();
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
}
