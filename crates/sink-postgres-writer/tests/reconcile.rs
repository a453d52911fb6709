#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use sqlx::postgres::PgPoolOptions;
use surefoot_sink_postgres_writer::{
    Ident, QualifiedName, ReconcileReport, ReconcileSpec, reconcile,
};
use surefoot_test_support::PgServer;

#[tokio::test]
async fn w_9_reconciliation_finds_and_repairs_drift_by_key_range_checksums() {
    let server = PgServer::new().await.unwrap();
    server.create_database("replica").await.unwrap();
    let source = PgPoolOptions::new()
        .connect(&server.url("postgres"))
        .await
        .unwrap();
    let target = PgPoolOptions::new()
        .connect(&server.url("replica"))
        .await
        .unwrap();
    let create = "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, balance numeric)";
    for pool in [&source, &target] {
        sqlx::raw_sql(create).execute(pool).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO accounts SELECT n, 'owner ' || n, n * 10 FROM generate_series(1, 1000) n",
        )
        .execute(pool)
        .await
        .unwrap();
    }
    // Drift: 3 rows lost, 2 changed, 4 extra (one beyond the source's highest key).
    sqlx::raw_sql(
        "DELETE FROM accounts WHERE id IN (5, 500, 1000); \
         UPDATE accounts SET balance = -1 WHERE id IN (77, 640); \
         UPDATE accounts SET owner = NULL WHERE id = 641; \
         INSERT INTO accounts VALUES (1001, 'ghost', 0), (1002, 'ghost', 0), (5000, 'ghost', 0)",
    )
    .execute(&target)
    .await
    .unwrap();
    sqlx::raw_sql("DELETE FROM accounts WHERE id = 999")
        .execute(&source)
        .await
        .unwrap();
    let spec = ReconcileSpec {
        source: QualifiedName::parse("accounts").unwrap(),
        target: QualifiedName::parse("public.accounts").unwrap(),
        key: Ident::parse("id").unwrap(),
        columns: ["id", "owner", "balance"]
            .map(|c| Ident::parse(c).unwrap())
            .to_vec(),
        chunk_rows: 100,
    };
    let found = reconcile(&source, &target, &spec, false).await.unwrap();
    assert_eq!(
        found,
        ReconcileReport {
            chunks: 10,
            chunks_differing: 4,
            missing: 3,
            different: 3,
            extra: 4,
            repaired: false,
        }
    );
    let repaired = reconcile(&source, &target, &spec, true).await.unwrap();
    assert_eq!(
        repaired,
        ReconcileReport {
            repaired: true,
            ..found
        }
    );
    let clean = reconcile(&source, &target, &spec, false).await.unwrap();
    assert_eq!(
        (clean.chunks_differing, clean.missing, clean.extra),
        (0, 0, 0)
    );
    let rows = |pool| async move {
        sqlx::query_as::<_, (i64, Option<String>, String)>(
            "SELECT id, owner, balance::text FROM accounts ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    };
    assert_eq!(rows(&source).await, rows(&target).await);
}
