//! Server checks, publication and slot management against a real PostgreSQL.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_source_postgres::setup::{
    PublicationTables, check_server, create_slot, ensure_publication, inspect_slot,
};
use surefoot_source_postgres::{Identifier, SlotName, SourceError, TableName};
use surefoot_test_support::PgServer;

#[tokio::test]
async fn a_ready_server_passes_and_a_misconfigured_one_is_told_what_to_fix() {
    let ready = PgServer::new().await.unwrap();
    let client = ready.connect("postgres").await.unwrap();
    let slot = SlotName::parse("surefoot_check").unwrap();
    check_server(&client, &slot).await.unwrap();

    let replica = PgServer::builder()
        .setting("wal_level", "replica")
        .setting("max_replication_slots", "0")
        .start()
        .await
        .unwrap();
    let client = replica.connect("postgres").await.unwrap();
    let error = check_server(&client, &slot).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Configuration);
    let message = error.to_string();
    assert!(
        message.contains("wal_level is replica; set wal_level = logical"),
        "{message}"
    );
    assert!(message.contains("max_replication_slots = 0"), "{message}");
}

#[tokio::test]
async fn a_missing_publication_is_named_or_created_with_quoted_names() {
    let server = PgServer::new().await.unwrap();
    let client = server.connect("postgres").await.unwrap();
    client
        .batch_execute(
            r#"CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Order Lines" (id int primary key)"#,
        )
        .await
        .unwrap();
    let publication = Identifier::parse("publication", r#"orders"; DROP TABLE x; --"#).unwrap();
    let tables = PublicationTables::Tables(vec![TableName::parse("Sales.Order Lines").unwrap()]);

    let error = ensure_publication(&client, &publication, &tables, false)
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::PublicationMissing { .. }));
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert!(error.to_string().contains(r#"orders"; DROP TABLE x; --"#));

    ensure_publication(&client, &publication, &tables, true)
        .await
        .unwrap();
    ensure_publication(&client, &publication, &tables, true)
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("Sales".into(), "Order Lines".into())
    );
}

#[tokio::test]
async fn a_created_slot_is_inspected_with_its_position() {
    let server = PgServer::new().await.unwrap();
    let client = server.connect("postgres").await.unwrap();
    let slot = SlotName::parse("surefoot_slot").unwrap();
    assert_eq!(inspect_slot(&client, &slot).await.unwrap(), None);
    let consistent_point = create_slot(&client, &slot).await.unwrap();
    assert!(!consistent_point.is_zero());
    let state = inspect_slot(&client, &slot).await.unwrap().unwrap();
    assert!(!state.active);
    assert!(!state.is_lost());
    assert_eq!(state.confirmed_flush, consistent_point);

    client
        .execute(
            "SELECT pg_create_logical_replication_slot('other_plugin', 'test_decoding')",
            &[],
        )
        .await
        .unwrap();
    let other = SlotName::parse("other_plugin").unwrap();
    let error = inspect_slot(&client, &other).await.unwrap_err();
    assert!(
        matches!(error, SourceError::SlotPluginMismatch { .. }),
        "{error}"
    );
}
