//! FaultProxy between real clients and real servers.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use surefoot_test_support::{FaultProxy, PgServer, ProxyMode, RedisServer, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Polls `condition` until it holds, failing after 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn pg_behind_proxy()
-> surefoot_test_support::Result<(PgServer, FaultProxy, tokio_postgres::Config)> {
    let pg = PgServer::new().await?;
    let proxy = FaultProxy::start(local(pg.port())).await?;
    let config = pg.config_at("postgres", proxy.listen_addr());
    Ok((pg, proxy, config))
}

async fn ping(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    let mut buf = [0_u8; 7];
    stream.read_exact(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn black_hole_makes_a_query_hit_its_timeout_and_heal_recovers() {
    let (_pg, proxy, config) = pg_behind_proxy().await.unwrap();
    let client = connect(&config).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    proxy.black_hole();
    assert_eq!(proxy.mode(), ProxyMode::BlackHole);
    let query = tokio::time::timeout(Duration::from_millis(300), client.simple_query("SELECT 2"));
    assert!(query.await.is_err(), "the query must hit its timeout");
    assert!(
        !client.is_closed(),
        "a black hole keeps the connection open"
    );

    proxy.heal();
    let query = tokio::time::timeout(Duration::from_secs(30), client.simple_query("SELECT 3"));
    query.await.unwrap().unwrap();
}

#[tokio::test]
async fn black_hole_accepts_new_connections_but_forwards_nothing() {
    let (_pg, proxy, config) = pg_behind_proxy().await.unwrap();
    proxy.black_hole();
    let attempt = tokio::time::timeout(Duration::from_millis(300), connect(&config));
    assert!(attempt.await.is_err(), "the startup handshake must hang");
    eventually("the connection to be accepted", || {
        proxy.connections_accepted() == 1
    })
    .await;
    proxy.heal();
    let client = connect(&config).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn cutting_makes_the_postgres_client_see_a_closed_connection() {
    let (_pg, proxy, config) = pg_behind_proxy().await.unwrap();
    let client = connect(&config).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    assert_eq!(proxy.cut().await.unwrap(), 1);

    let error = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        error.is_closed() || error.to_string().contains("connection"),
        "{error}"
    );
    eventually("the client to notice", || client.is_closed()).await;
    let again = connect(&config).await.unwrap();
    again.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn cutting_resets_a_raw_tcp_connection() {
    let redis = RedisServer::new().await.unwrap();
    let proxy = FaultProxy::start(local(redis.port())).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    assert_eq!(ping(&mut stream).await.unwrap(), "+PONG\r\n");

    assert_eq!(proxy.cut().await.unwrap(), 1);

    let mut buf = [0_u8; 1];
    let error = stream.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    assert_eq!(proxy.connections_open(), 0);
}

#[tokio::test]
async fn delay_surfaces_as_a_timeout_and_heal_removes_it() {
    let redis = RedisServer::new().await.unwrap();
    let proxy = FaultProxy::start(local(redis.port())).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    proxy.delay(Duration::from_secs(5));
    let slow = tokio::time::timeout(Duration::from_millis(200), ping(&mut stream));
    assert!(
        slow.await.is_err(),
        "a 5 s delay must outlast a 200 ms timeout"
    );
    drop(stream);
    proxy.heal();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    let fast = tokio::time::timeout(Duration::from_secs(30), ping(&mut stream));
    assert_eq!(fast.await.unwrap().unwrap(), "+PONG\r\n");
}

#[tokio::test]
async fn counts_accepted_and_open_connections() {
    let redis = RedisServer::new().await.unwrap();
    let proxy = FaultProxy::start(local(redis.port())).await.unwrap();
    assert_eq!(proxy.upstream_addr(), local(redis.port()));
    let mut first = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    let mut second = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    ping(&mut first).await.unwrap();
    ping(&mut second).await.unwrap();
    assert_eq!(proxy.connections_accepted(), 2);
    assert_eq!(proxy.connections_open(), 2);

    drop(first);
    eventually("one connection to close", || proxy.connections_open() == 1).await;
    assert_eq!(proxy.connections_accepted(), 2);
    drop(second);
    eventually("both connections to close", || {
        proxy.connections_open() == 0
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_every_task() {
    let redis = RedisServer::new().await.unwrap();
    let proxy = FaultProxy::start(local(redis.port())).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    ping(&mut stream).await.unwrap();

    let report = proxy.shutdown().await;

    assert!(report.is_clean(), "{report:?}");
    let mut buf = [0_u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection is closed: {read:?}"
    );
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let redis = RedisServer::new().await.unwrap();
    let proxy = FaultProxy::start(local(redis.port())).await.unwrap();
    let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
    ping(&mut stream).await.unwrap();
    let listen = proxy.listen_addr();

    drop(proxy);

    let mut buf = [0_u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection is closed: {read:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(listen).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the proxy still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
