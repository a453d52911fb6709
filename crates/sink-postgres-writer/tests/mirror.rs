#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::*;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{AckOutcome, AckToken, Change, Reaction, Row, Value, batch_channel};
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, TableConfig};
use surefoot_test_support::PgServer;

fn mirror(name: &str) -> TableConfig {
    TableConfig::new(
        table(name),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    )
}

#[tokio::test]
async fn unchanged_toast_column_keeps_the_target_value() {
    let server = PgServer::new().await.unwrap();
    let writer = PostgresWriter::builder(config(&server, "toast").table(mirror("docs")))
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)",
    )
    .await;
    // A value far above the TOAST threshold (2 kB), incompressible enough to be stored out of line.
    let big: String = (0..300_000u32)
        .map(|i| char::from(b'a' + ((i * 7919) % 26) as u8))
        .collect();
    let insert = Change::insert(
        seq(1),
        table("docs"),
        row(1, Value::Text(big.clone())).with("title", Value::Text("v1".into())),
    );
    writer.apply(&[&batch("src", vec![insert])]).await.unwrap();
    // PostgreSQL's update of another column: the TOASTed body comes as unchanged.
    let update = Change::update(
        seq(2),
        table("docs"),
        None,
        None,
        row(1, Value::Unchanged).with("title", Value::Text("v2".into())),
    );
    writer.apply(&[&batch("src", vec![update])]).await.unwrap();
    let (title, body): (String, String) =
        sqlx::query_as("SELECT title, body FROM docs WHERE id = 1")
            .fetch_one(writer.pool())
            .await
            .unwrap();
    assert_eq!(title, "v2");
    assert_eq!(body.len(), big.len());
    assert!(body == big, "the TOASTed body was overwritten");
    let external: i64 = scalar(
        &writer,
        "SELECT count(*) FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid \
         WHERE c.relname = 'docs' AND pg_relation_size(t.oid) > 0",
    )
    .await;
    assert_eq!(
        external, 1,
        "the body was not stored out of line; the test proves nothing"
    );
}

#[tokio::test]
async fn mirror_applies_once_and_skips_what_the_checkpoint_covers() {
    let server = PgServer::new().await.unwrap();
    let writer = PostgresWriter::builder(config(&server, "m").table(mirror("items")))
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let text = |s: &str| Value::Text(s.into());
    let first = batch(
        "src",
        vec![
            Change::insert(seq(1), table("items"), row(1, text("a"))),
            Change::insert(seq(2), table("items"), row(2, text("b"))),
            Change::insert(seq(3), table("items"), row(3, text("c"))),
        ],
    );
    let second = batch(
        "src",
        vec![
            Change::update(seq(4), table("items"), None, None, row(1, text("a2"))),
            Change::delete(seq(5), table("items"), Some(row(2, Value::Null)), None),
            Change::update(
                seq(6),
                table("items"),
                Some(common::row(3, Value::Null).project(&["id"])),
                None,
                row(30, text("c")),
            ),
        ],
    );
    let stats = writer.apply(&[&first, &second]).await.unwrap();
    assert_eq!(stats.applied, 6);
    // Redelivery after a crash: both batches again, and an older one on its own.
    let again = writer.apply(&[&first, &second]).await.unwrap();
    assert_eq!((again.applied, again.already_applied), (0, 6));
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, body FROM items ORDER BY id")
        .fetch_all(writer.pool())
        .await
        .unwrap();
    assert_eq!(rows, [(1, "a2".to_owned()), (30, "c".to_owned())]);
    assert_eq!(writer.checkpoint("src").await.unwrap(), Some(seq(6)));
    assert_eq!(writer.checkpoint("other").await.unwrap(), None);
}

#[tokio::test]
async fn run_loop_acknowledges_only_after_commit() {
    let server = PgServer::new().await.unwrap();
    let writer = PostgresWriter::builder(config(&server, "loop").table(mirror("items")))
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE items (id bigint PRIMARY KEY, body text)",
    )
    .await;
    let (sender, receiver) = batch_channel(32);
    let cancel = CancellationToken::new();
    let mut outcomes = Vec::new();
    for n in 1..=20u64 {
        let (token, outcome) = AckToken::observed();
        let change = Change::insert(
            seq(n),
            table("items"),
            row(n as i64, Value::Text(n.to_string())),
        );
        sender
            .send(batch_with("src", vec![change], token))
            .await
            .unwrap();
        outcomes.push(outcome);
    }
    // A change for a table nobody routes is skipped, and still acknowledged.
    let stray = Change::insert(seq(21), table("elsewhere"), row(1, Value::Null));
    let (token, outcome) = AckToken::observed();
    sender
        .send(batch_with("src", vec![stray], token))
        .await
        .unwrap();
    outcomes.push(outcome);
    drop(sender);
    writer.run(receiver, cancel).await.unwrap();
    for outcome in outcomes {
        assert_eq!(outcome.await.unwrap(), AckOutcome::Delivered);
    }
    assert_eq!(scalar(&writer, "SELECT count(*) FROM items").await, 20);
    // The Reaction face of the writer does the same for one batch.
    let late = batch(
        "src",
        vec![Change::insert(
            seq(22),
            table("items"),
            row(99, Value::Null),
        )],
    );
    Reaction::apply(&writer, &late).await.unwrap();
    assert_eq!(Reaction::name(&writer), "loop");
    assert_eq!(scalar(&writer, "SELECT count(*) FROM items").await, 21);
}

#[tokio::test]
async fn failed_transaction_settles_the_batches_failed() {
    let server = PgServer::new().await.unwrap();
    let mut cfg = config(&server, "fail").table(mirror("missing_table"));
    cfg.on_failure = surefoot_sink_postgres_writer::FailurePolicy::Fail;
    let writer = PostgresWriter::builder(cfg).connect().await.unwrap();
    let (sender, receiver) = batch_channel(4);
    let (token, outcome) = AckToken::observed();
    let change = Change::insert(seq(1), table("missing_table"), row(1, Value::Null));
    sender
        .send(batch_with("src", vec![change], token))
        .await
        .unwrap();
    let error = writer
        .run(receiver, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("missing_table"), "{error}");
    assert_eq!(outcome.await.unwrap(), AckOutcome::Failed);
    assert_eq!(writer.checkpoint("src").await.unwrap(), None);
}

#[tokio::test]
async fn composite_keys_are_upserted_and_deleted_in_one_statement_each() {
    let server = PgServer::new().await.unwrap();
    let members = TableConfig::new(
        table("members"),
        ApplyMode::Mirror {
            key: vec!["tenant".into(), "id".into()],
        },
    );
    let writer = PostgresWriter::builder(config(&server, "composite").table(members))
        .connect()
        .await
        .unwrap();
    exec(
        &writer,
        "CREATE TABLE members (tenant text, id bigint, body text, PRIMARY KEY (tenant, id))",
    )
    .await;
    let member = |tenant: &str, id: i64, body: &str| {
        row(id, Value::Text(body.into())).with("tenant", Value::Text(tenant.into()))
    };
    let first = batch(
        "src",
        vec![
            Change::insert(seq(1), table("members"), member("a", 1, "x")),
            Change::insert(seq(2), table("members"), member("b", 1, "y")),
            Change::insert(seq(3), table("members"), member("b", 2, "z")),
        ],
    );
    writer.apply(&[&first]).await.unwrap();
    let key_only = Row::new()
        .with("tenant", Value::Text("b".into()))
        .with("id", Value::Int64(2));
    let second = batch(
        "src",
        vec![
            Change::update(seq(4), table("members"), None, None, member("a", 1, "x2")),
            Change::delete(seq(5), table("members"), Some(key_only), None),
            Change::update(
                seq(6),
                table("members"),
                None,
                None,
                row(1, Value::Unchanged).with("tenant", Value::Text("b".into())),
            ),
        ],
    );
    writer.apply(&[&second]).await.unwrap();
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT tenant, id, body FROM members ORDER BY tenant, id")
            .fetch_all(writer.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("a".to_owned(), 1, "x2".to_owned()),
            ("b".to_owned(), 1, "y".to_owned())
        ]
    );
}

#[tokio::test]
async fn keys_below_inside_and_above_the_stored_range_are_inserted_or_updated() {
    let server = PgServer::new().await.unwrap();
    let writer = PostgresWriter::builder(config(&server, "range").table(mirror("tags")))
        .connect()
        .await
        .unwrap();
    // A text key (ordered by the column's collation) whose unique index allows a NULL key: the
    // probe's bounds must ignore the NULL and still find the stored key inside the range.
    exec(
        &writer,
        "CREATE TABLE tags (id text UNIQUE, body text); \
         INSERT INTO tags VALUES ('k', 'old k'), ('m', 'old m'), (NULL, 'no key')",
    )
    .await;
    let tag = |id: &str, body: &str| {
        Row::new()
            .with("id", Value::Text(id.into()))
            .with("body", Value::Text(body.into()))
    };
    let changes = vec![
        Change::insert(seq(1), table("tags"), tag("a", "new a")),
        Change::insert(seq(2), table("tags"), tag("m", "new m")),
        Change::insert(seq(3), table("tags"), tag("z", "new z")),
    ];
    let stats = writer.apply(&[&batch("src", changes)]).await.unwrap();
    assert_eq!(stats.applied, 3);
    let rows: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT id, body FROM tags ORDER BY id NULLS LAST")
            .fetch_all(writer.pool())
            .await
            .unwrap();
    let expected = [
        (Some("a"), "new a"),
        (Some("k"), "old k"),
        (Some("m"), "new m"),
        (Some("z"), "new z"),
        (None, "no key"),
    ]
    .map(|(id, body)| (id.map(str::to_owned), body.to_owned()));
    assert_eq!(rows, expected);
}
