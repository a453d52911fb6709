//! A first start against a throwaway PostgreSQL: snapshot the table through the source's slot,
//! then stream the changes committed after the snapshot.
//!
//! Run: `cargo run -p surefoot-bootstrap --example handoff`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{SnapshotRequest, Source, batch_channel};
use surefoot_source_postgres::{Identifier, PostgresSource, PostgresSourceConfig, SlotName};
use surefoot_test_support::PgServer;

#[tokio::main]
async fn main() {
    let server = PgServer::new().await.expect("a PostgreSQL server");
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);
             INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g;",
        )
        .await
        .unwrap();

    let mut source = PostgresSourceConfig::new(
        "shop",
        server.host(),
        server.port(),
        server.user(),
        "postgres",
        SlotName::parse("shop_slot").unwrap(),
        Identifier::parse("publication", "shop_pub").unwrap(),
    );
    source.heartbeat = None;

    // 1. The snapshot, exact with respect to the source's slot.
    let provider = PostgresProvider::first_start(source.clone(), BootstrapConfig::default())
        .expect("a valid configuration");
    let request = SnapshotRequest {
        consumer: "example".to_owned(),
        tables: Vec::new(),
    };
    let (output, mut batches) = batch_channel(16);
    let cancel = CancellationToken::new();
    let snapshot = async {
        let exported = provider.export(&request, &output, &cancel).await;
        drop(output);
        exported
    };
    let receive = async {
        let mut rows = 0;
        while let Some(batch) = batches.recv().await {
            rows += batch.changes.len();
            batch.ack.delivered();
        }
        rows
    };
    let (exported, rows) = tokio::join!(snapshot, receive);
    let exported = exported.expect("a complete snapshot");
    // Row n of the snapshot is at `Position::snapshot(C, n)`; the stream continues above them.
    let last = exported
        .last_row()
        .map_or_else(|| "none".to_owned(), |row| row.to_string());
    println!(
        "snapshot complete: {rows} rows consistent with {}, the last at {last}",
        exported.slot.consistent_point()
    );
    // The persistent slot stays for the source.
    exported.slot.close();

    // 2. The stream, from the consistent point on.
    admin
        .batch_execute("UPDATE orders SET total = 0 WHERE id = 7")
        .await
        .unwrap();
    let (stream_out, mut stream_in) = batch_channel(16);
    let stream = PostgresSource::new(source, stream_out).expect("a valid source");
    stream.start().await.expect("the source starts");
    let batch = tokio::time::timeout(Duration::from_secs(30), stream_in.recv())
        .await
        .expect("a change within 30 s")
        .expect("an open stream");
    println!(
        "then {} change(s) committed at {}",
        batch.changes.len(),
        batch.last
    );
    batch.ack.delivered();
    stream
        .stop(Duration::from_secs(10))
        .await
        .expect("a clean stop");
}
