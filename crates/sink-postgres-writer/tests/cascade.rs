#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use common::*;
use sqlx::PgConnection;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{AckOutcome, AckToken, Change, Position, Row, Value, batch_channel};
use surefoot_sink_postgres_writer::{
    ApplyMode, EntityLocks, Handler, HandlerError, HandlerInput, OutboxMessages, PostgresWriter,
    TableConfig,
};
use surefoot_test_support::PgServer;

/// Seed 003's cascade: every deposit event updates its vault's totals and leaves a cascade row.
/// It refuses deposits into `poison` vaults (a permanent failure) and fails the first attempt at
/// each `flaky` deposit (a transient one).
#[derive(Debug, Default)]
struct Cascade {
    failed_once: Mutex<HashSet<Position>>,
}

#[async_trait]
impl Handler for Cascade {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        input: HandlerInput<'_>,
        _outbox: &mut OutboxMessages,
    ) -> Result<(), HandlerError> {
        let mut positions = Vec::new();
        let mut vaults = Vec::new();
        let mut amounts = Vec::new();
        for change in input.changes {
            let after = change.after().unwrap();
            let Some(Value::Text(vault)) = after.get("vault") else {
                panic!("no vault")
            };
            let Some(Value::Int64(amount)) = after.get("amount") else {
                panic!("no amount")
            };
            if vault == "poison" {
                return Err(HandlerError::permanent("cascade refuses the poison vault"));
            }
            if vault == "flaky" && self.failed_once.lock().unwrap().insert(change.position) {
                return Err(HandlerError::transient("vault row busy"));
            }
            let Position::Sequence(n) = change.position else {
                panic!("not a sequence")
            };
            positions.push(n as i64);
            vaults.push(vault.clone());
            amounts.push(*amount);
        }
        let mut locks = EntityLocks::new();
        locks.lock(conn, vaults.iter().map(String::as_str)).await?;
        sqlx::query("INSERT INTO cascade_log (position, vault) SELECT * FROM unnest($1::int8[], $2::text[])")
            .bind(&positions)
            .bind(&vaults)
            .execute(&mut *conn)
            .await
            .map_err(|e| HandlerError::sql("cascade log", e))?;
        sqlx::query(
            "INSERT INTO vault_totals (vault, total, deposits) \
             SELECT v, sum(a), count(*) FROM unnest($1::text[], $2::int8[]) AS u(v, a) GROUP BY v \
             ON CONFLICT (vault) DO UPDATE SET total = vault_totals.total + EXCLUDED.total, \
             deposits = vault_totals.deposits + EXCLUDED.deposits",
        )
        .bind(&vaults)
        .bind(&amounts)
        .execute(&mut *conn)
        .await
        .map_err(|e| HandlerError::sql("vault totals", e))?;
        Ok(())
    }
}

const BATCHES: u64 = 300;

fn vault_of(batch: u64, change: u64) -> String {
    match batch % 100 {
        37 if change == 2 => "poison".to_owned(),
        71 => "flaky".to_owned(),
        _ => format!("vault-{}", (batch + change) % 7),
    }
}

#[tokio::test]
async fn w_1_cascade_failing_on_one_batch_in_100_leaves_no_event_without_its_cascade() {
    let server = PgServer::new().await.unwrap();
    let mut cfg = config(&server, "deposits");
    cfg.tables.push(TableConfig::new(
        table("deposits"),
        ApplyMode::Custom {
            handler: "cascade".into(),
        },
    ));
    cfg.batch.max_rows = 40;
    let writer = PostgresWriter::builder(cfg)
        .handler("cascade", Cascade::default())
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE cascade_log (position bigint PRIMARY KEY, vault text NOT NULL); \
         CREATE TABLE vault_totals (vault text PRIMARY KEY, total bigint NOT NULL, deposits bigint NOT NULL)",
    )
    .await;
    let (sender, receiver) = batch_channel(BATCHES as usize);
    let mut outcomes = Vec::new();
    for b in 0..BATCHES {
        let changes = (0..3)
            .map(|c| {
                let n = b * 3 + c + 1;
                let row = Row::new()
                    .with("vault", Value::Text(vault_of(b, c)))
                    .with("amount", Value::Int64(n as i64));
                Change::insert(seq(n), table("deposits"), row)
            })
            .collect();
        let (token, outcome) = AckToken::observed();
        sender
            .send(batch_with("chain", changes, token))
            .await
            .unwrap();
        outcomes.push(outcome);
    }
    drop(sender);
    writer
        .run(receiver, CancellationToken::new())
        .await
        .unwrap();
    for outcome in outcomes {
        // Dead-lettered batches are recorded, so they count as delivered.
        assert_eq!(outcome.await.unwrap(), AckOutcome::Delivered);
    }
    let orphans = scalar(
        &writer,
        "SELECT count(*) FROM surefoot_writer.event e \
         LEFT JOIN cascade_log c ON c.position = e.major WHERE c.position IS NULL",
    )
    .await;
    assert_eq!(orphans, 0, "events without their cascade rows");
    let cascades_without_event = scalar(
        &writer,
        "SELECT count(*) FROM cascade_log c LEFT JOIN surefoot_writer.event e \
         ON e.major = c.position WHERE e.id IS NULL",
    )
    .await;
    assert_eq!(cascades_without_event, 0);
    // The three poisoned batches (3 changes each) are dead-lettered whole, with the reason.
    let dead = scalar(
        &writer,
        "SELECT count(*) FROM surefoot_writer.dead_letter WHERE reason LIKE '%poison vault%'",
    )
    .await;
    assert_eq!(dead, 9);
    let events = scalar(&writer, "SELECT count(*) FROM surefoot_writer.event").await;
    assert_eq!(events, (BATCHES as i64 - 3) * 3);
    // Totals agree with the events they aggregate; flaky deposits were retried and applied.
    let mismatch = scalar(
        &writer,
        "SELECT count(*) FROM vault_totals v FULL JOIN \
         (SELECT payload->'after'->'vault'->>'value' AS vault, \
                 sum((payload->'after'->'amount'->>'value')::bigint) AS total \
          FROM surefoot_writer.event GROUP BY 1) e ON e.vault = v.vault \
         WHERE v.total IS DISTINCT FROM e.total",
    )
    .await;
    assert_eq!(mismatch, 0);
    let flaky = scalar(
        &writer,
        "SELECT deposits FROM vault_totals WHERE vault = 'flaky'",
    )
    .await;
    assert_eq!(flaky, 9);
    assert_eq!(
        writer.checkpoint("chain").await.unwrap(),
        Some(seq(BATCHES * 3))
    );
}
