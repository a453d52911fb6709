#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

//! `surefoot-reconcile` as a child process: check mode, repair, a clean re-check, bad
//! invocations; and the default key and column discovery against real catalogs.

use std::process::Output;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use surefoot_sink_postgres_writer::reconcile_columns::{SpecError, primary_key};
use surefoot_sink_postgres_writer::{QualifiedName, SpecRequest, resolve_spec};
use surefoot_test_support::PgServer;
use tokio::process::Command;

const SOURCE_TABLE: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, \
     balance numeric, note text)";
/// The target lacks `note` and has its own `synced_at`, both left out by default.
const TARGET_TABLE: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text, \
     balance numeric, synced_at timestamptz DEFAULT now())";
const ROWS: &str = "INSERT INTO accounts (id, owner, balance) \
     SELECT n, 'owner ' || n, n * 10 FROM generate_series(1, 1000) n";
/// 3 rows lost, 3 changed, 3 extra (one beyond the source's highest key).
const DRIFT: &str = "DELETE FROM accounts WHERE id IN (5, 500, 1000); \
     UPDATE accounts SET balance = -1 WHERE id IN (77, 640); \
     UPDATE accounts SET owner = NULL WHERE id = 641; \
     INSERT INTO accounts (id, owner, balance) VALUES (1001, 'ghost', 0), (1002, 'ghost', 0), \
     (5000, 'ghost', 0)";
const DIGEST: &str = "SELECT md5(string_agg(ROW(id, owner, balance)::text, ',' ORDER BY id)) \
     FROM accounts";

struct Setup {
    server: PgServer,
    source: PgPool,
    target: PgPool,
}

async fn setup() -> Setup {
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
    for (pool, create) in [(&source, SOURCE_TABLE), (&target, TARGET_TABLE)] {
        sqlx::raw_sql(create).execute(pool).await.unwrap();
        sqlx::raw_sql(ROWS).execute(pool).await.unwrap();
    }
    sqlx::raw_sql(DRIFT).execute(&target).await.unwrap();
    Setup {
        server,
        source,
        target,
    }
}

async fn run(setup: &Setup, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surefoot-reconcile"))
        .args(args)
        .env(
            "SUREFOOT_RECONCILE_SOURCE_URL",
            setup.server.url("postgres"),
        )
        .env("SUREFOOT_RECONCILE_TARGET_URL", setup.server.url("replica"))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn counts(report: &serde_json::Value) -> [u64; 5] {
    [
        "chunks",
        "chunks_differing",
        "missing",
        "different",
        "extra",
    ]
    .map(|field| report[field].as_u64().unwrap())
}

async fn digest(pool: &PgPool) -> String {
    sqlx::query_scalar(DIGEST).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn w_9_reconcile_command_checks_repairs_and_rechecks() {
    let setup = setup().await;
    let before = digest(&setup.target).await;
    assert_ne!(before, digest(&setup.source).await);
    let table = ["--source-table", "accounts", "--chunk-rows", "100"];

    let check = run(&setup, &[&table[..], &["--json"]].concat()).await;
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let report = json(&check);
    assert_eq!(counts(&report), [11, 5, 3, 3, 3]);
    assert_eq!(report["repaired"], false);
    assert_eq!(report["key"], "id");
    assert_eq!(
        report["columns"],
        serde_json::json!(["id", "owner", "balance"])
    );
    assert_eq!(
        digest(&setup.target).await,
        before,
        "check mode changed the target"
    );

    let repair = run(&setup, &[&table[..], &["--repair", "--json"]].concat()).await;
    assert_eq!(repair.status.code(), Some(0), "{repair:?}");
    let report = json(&repair);
    assert_eq!(counts(&report), [11, 5, 3, 3, 3]);
    assert_eq!(report["repaired"], true);
    assert_eq!(digest(&setup.target).await, digest(&setup.source).await);

    let again = run(&setup, &table).await;
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(text.contains("chunks differing: 0"), "{text}");
    assert!(text.contains("source and target agree"), "{text}");
}

#[tokio::test]
async fn w_9_reconcile_command_human_output_says_what_it_would_change() {
    let setup = setup().await;
    let check = run(&setup, &["--source-table", "public.accounts"]).await;
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let text = String::from_utf8(check.stdout).unwrap();
    for line in [
        "chunks compared:  2",
        "rows missing:     3",
        "rows different:   3",
        "rows extra:       3",
        "would change 9 rows; run with --repair",
    ] {
        assert!(text.contains(line), "`{line}` not in:\n{text}");
    }
}

#[tokio::test]
async fn w_9_reconcile_command_refuses_bad_invocations_without_leaking_urls() {
    let setup = setup().await;
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--source-table", "accounts", "--columns", "owner,nope"],
            &["source table public.accounts has no `nope`; \
                 target table public.accounts has no `nope`"],
        ),
        (
            &["--source-table", "accounts", "--columns", "note"],
            &["target table public.accounts has no `note`"],
        ),
        (
            &["--source-table", "app.missing"],
            &["source table app.missing does not exist"],
        ),
    ];
    for (args, expected) in cases {
        let output = run(&setup, args).await;
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        for text in expected {
            assert!(stderr.contains(text), "{args:?}: `{text}` not in {stderr}");
        }
        assert!(!stderr.contains(&setup.server.url("postgres")), "{stderr}");
        assert!(!stderr.contains(&setup.server.url("replica")), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let closed = format!(
        "postgres://reconciler:s3cret-pw@127.0.0.1:{}/postgres",
        surefoot_test_support::free_port().unwrap()
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_surefoot-reconcile"))
        .args(["--source-table", "accounts", "--connect-timeout", "5"])
        .env("SUREFOOT_RECONCILE_SOURCE_URL", &closed)
        .env("SUREFOOT_RECONCILE_TARGET_URL", &closed)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("connect to the source database"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    let usage = run(&setup, &["--source-table", "accounts", "--chunk-rows", "0"]).await;
    assert_eq!(usage.status.code(), Some(1), "{usage:?}");
    let help = run(&setup, &["--help"]).await;
    let help_text = String::from_utf8(help.stdout).unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(
        help_text.contains("SUREFOOT_RECONCILE_SOURCE_URL"),
        "{help_text}"
    );
    assert!(
        !help_text.contains(&setup.server.url("postgres")),
        "{help_text}"
    );
}

#[tokio::test]
async fn w_9_reconcile_command_discovery_finds_the_key_and_refuses_composite_ones() {
    let setup = setup().await;
    sqlx::raw_sql(
        "CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (a, b)); \
         CREATE TABLE loose (id int, v text)",
    )
    .execute(&setup.source)
    .await
    .unwrap();
    let name = |n: &str| QualifiedName::parse(n).unwrap();
    assert_eq!(
        primary_key(&setup.source, &name("accounts"))
            .await
            .unwrap()
            .as_str(),
        "id"
    );
    let composite = primary_key(&setup.source, &name("pairs")).await;
    assert!(
        matches!(&composite, Err(SpecError::CompositeKey { columns, .. }) if columns.len() == 2),
        "{composite:?}"
    );
    assert!(matches!(
        primary_key(&setup.source, &name("loose")).await,
        Err(SpecError::NoPrimaryKey(_))
    ));
    let request = |table: &str, key: Option<&str>| SpecRequest {
        source: name(table),
        target: name("accounts"),
        key: key.map(|k| surefoot_sink_postgres_writer::Ident::parse(k).unwrap()),
        columns: None,
        chunk_rows: 10,
    };
    let spec = resolve_spec(&setup.source, &setup.target, request("accounts", None))
        .await
        .unwrap();
    let columns: Vec<&str> = spec.columns.iter().map(|c| c.as_str()).collect();
    assert_eq!(columns, ["id", "owner", "balance"]);
    let not_unique = resolve_spec(
        &setup.source,
        &setup.target,
        request("accounts", Some("owner")),
    )
    .await;
    assert!(
        matches!(not_unique, Err(SpecError::NotUnique { side: "source", .. })),
        "{not_unique:?}"
    );
    let output = run(
        &setup,
        &["--source-table", "pairs", "--target-table", "accounts"],
    )
    .await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("composite primary key (`a`, `b`)"),
        "{stderr}"
    );
}
