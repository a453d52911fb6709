//! Snapshot rows decode like stream rows: the same content inserted before the snapshot (so it
//! arrives through COPY) and after it (so it arrives through pgoutput) gives the same values, for
//! every type surefoot interprets and one it does not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::{next_batch, source_config};
use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Position, Row, SnapshotRequest, Source, Value, batch_channel};
use surefoot_source_postgres::PostgresSource;
use surefoot_test_support::PgServer;

const COLUMNS: &str =
    "b, s, i, big, r, d, n, t, vc, by, j, jb, u, dt, tm, ts, tstz, addr, arr, nul";
const VALUES: &str = "true, -7, 42, 9007199254740993, 1.5, 0.1, 12345.678900, \
    E'tab\\there\\nnew line \\\\ backslash \\u00e9', 'varchar', '\\x00ff5c0a09'::bytea, \
    '{\"a\": [1, 2]}', '{\"b\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', \
    '23:59:59.5', '2024-01-02 03:04:05.678', '2024-01-02 03:04:05+02', '10.0.0.1/8', \
    ARRAY[1, NULL, 3], NULL";

fn without_id(row: &Row) -> Vec<(String, Value)> {
    row.columns()
        .iter()
        .filter(|column| &*column.name != "id")
        .map(|column| (column.name.to_string(), column.value.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_rows_decode_exactly_like_stream_rows() {
    let server = PgServer::new().await.unwrap();
    let admin = server.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, b bool, s smallint, i int, big bigint,
               r real, d double precision, n numeric, t text, vc varchar(20), by bytea, j json,
               jb jsonb, u uuid, dt date, tm time, ts timestamp, tstz timestamptz, addr inet,
               arr int[], nul text, twice int GENERATED ALWAYS AS (i * 2) STORED);
             INSERT INTO items (id, {COLUMNS}) VALUES (1, {VALUES});"
        ))
        .await
        .unwrap();
    let config = source_config(&server, "types");
    let provider =
        PostgresProvider::first_start(config.clone(), BootstrapConfig::default()).unwrap();
    let request = SnapshotRequest {
        consumer: "types".to_owned(),
        tables: Vec::new(),
    };
    let (output, mut batches) = batch_channel(4);
    let cancel = CancellationToken::new();
    let exported = provider.export(&request, &output, &cancel).await.unwrap();
    drop(output);
    let snapshot = next_batch(&mut batches).await;
    assert!(batches.recv().await.is_none());
    assert_eq!(exported.complete.rows, 1);
    let point = exported.slot.consistent_point();
    assert_eq!(snapshot.first, Position::snapshot(point, 0));
    assert_eq!(snapshot.last, Position::snapshot(point, 0));
    assert_eq!(exported.last_row(), Some(snapshot.last));
    assert!(snapshot.last < exported.complete.consistent_point);
    exported.slot.close();

    let (stream_out, mut stream_in) = batch_channel(4);
    let source = PostgresSource::new(config, stream_out).unwrap();
    source.start().await.unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO items (id, {COLUMNS}) VALUES (2, {VALUES})"
        ))
        .await
        .unwrap();
    let streamed = next_batch(&mut stream_in).await;

    let copied = snapshot.changes[0].after().unwrap();
    let decoded = streamed.changes[0].after().unwrap();
    assert_eq!(copied.get("id"), Some(&Value::Int32(1)));
    // Generated columns are not copied (pgoutput does not send them either).
    assert_eq!(copied.get("twice"), None);
    assert_eq!(without_id(copied), without_id(decoded));
    assert_eq!(
        copied.get("t"),
        Some(&Value::Text(
            "tab\there\nnew line \\ backslash é".to_owned()
        ))
    );
    assert_eq!(
        copied.get("by"),
        Some(&Value::Bytes(vec![0x00, 0xff, b'\\', b'\n', b'\t']))
    );
    assert_eq!(copied.get("nul"), Some(&Value::Null));
    assert_eq!(
        copied.get("big"),
        Some(&Value::Int64(9_007_199_254_740_993))
    );
    assert!(
        matches!(copied.get("addr"), Some(Value::Other { type_name, text }) if type_name == "inet" && text == "10.0.0.1/8"),
        "{:?}",
        copied.get("addr")
    );
    snapshot.ack.delivered();
    streamed.ack.delivered();
    source.stop(Duration::from_secs(10)).await.unwrap();
}
