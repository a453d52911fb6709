#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Change, Row, Value, batch_channel};
use surefoot_sink_postgres_writer::{
    ApplyMode, ColumnRule, HexChecksum, OutboxConfig, PostgresWriter, Rule, TableConfig,
};
use surefoot_test_support::PgServer;

fn wallet(id: i64, address: &str, balance: i64) -> Row {
    Row::new()
        .with("id", Value::Int64(id))
        .with("address", Value::Text(address.into()))
        .with("balance", Value::Int64(balance))
}

#[tokio::test]
async fn w_5_a_row_breaking_a_rule_is_dead_lettered_with_its_reason_and_never_applied() {
    let server = PgServer::new().await.unwrap();
    let mut wallets = TableConfig::new(
        table("wallets"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    );
    wallets.rules = vec![
        ColumnRule::new(
            "address",
            Rule::Hex {
                prefix: true,
                digits: Some(40),
                checksum: Some(HexChecksum::Eip55),
            },
        ),
        ColumnRule::new(
            "balance",
            Rule::Range {
                min: Some(0.0),
                max: None,
            },
        ),
    ];
    wallets.publish = Some("wallets".into());
    let mut cfg = config(&server, "wallets").table(wallets);
    // Published rows go to the outbox; no relay runs in this test, so they stay there.
    cfg.outbox = Some(OutboxConfig::new("redis://127.0.0.1:1/"));
    let writer = PostgresWriter::builder(cfg).connect().await.unwrap();
    exec(
        &writer,
        "CREATE TABLE wallets (id bigint PRIMARY KEY, address text, balance bigint)",
    )
    .await;
    let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let bad_case = "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    let changes = vec![
        Change::insert(seq(1), table("wallets"), wallet(1, good, 10)),
        Change::insert(seq(2), table("wallets"), wallet(2, bad_case, 10)),
        Change::insert(seq(3), table("wallets"), wallet(3, good, -5)),
        Change::insert(seq(4), table("wallets"), wallet(4, "0x12", 1)),
    ];
    let stats = writer.apply(&[&batch("src", changes)]).await.unwrap();
    assert_eq!(
        (stats.applied, stats.dead_lettered, stats.published),
        (1, 3, 1)
    );
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM wallets")
        .fetch_all(writer.pool())
        .await
        .unwrap();
    assert_eq!(ids, [1]);
    let reasons: Vec<(i64, String)> =
        sqlx::query_as("SELECT major, reason FROM surefoot_writer.dead_letter ORDER BY major")
            .fetch_all(writer.pool())
            .await
            .unwrap();
    assert_eq!(reasons.len(), 3);
    assert_eq!(
        reasons[0],
        (2, "column `address` fails its EIP-55 checksum".to_owned())
    );
    assert!(reasons[1].1.contains("below the minimum 0"), "{reasons:?}");
    assert!(
        reasons[2].1.contains("has 2 hex digits, expected 40"),
        "{reasons:?}"
    );
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(4)));
    let health = writer.health().await;
    assert_eq!(health.outbox.unwrap().backlog, 1);
    assert!(health.last_commit_time.is_some());
}

#[tokio::test]
async fn w_8_rows_per_second_limit_paces_the_sink_loop() {
    let server = PgServer::new().await.unwrap();
    let mut cfg =
        config(&server, "paced").table(TableConfig::new(table("events"), ApplyMode::Append));
    cfg.max_rows_per_second = Some(200);
    cfg.batch.max_rows = 20;
    let writer = PostgresWriter::builder(cfg).connect().await.unwrap();
    let (sender, receiver) = batch_channel(128);
    for n in 1..=100u64 {
        let change = Change::insert(
            seq(n),
            table("events"),
            Row::new().with("n", Value::Int64(n as i64)),
        );
        sender.send(batch("src", vec![change])).await.unwrap();
    }
    drop(sender);
    let started = Instant::now();
    writer
        .run(receiver, CancellationToken::new())
        .await
        .unwrap();
    // 100 rows at 200 rows/s: at least 0.4 s even if the first flush is free.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        scalar(&writer, "SELECT count(*) FROM surefoot_writer.event").await,
        100
    );
}
