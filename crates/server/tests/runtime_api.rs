//! Components created and removed through the API of the real `surefoot` binary: queries,
//! reactions joining a running query, and sources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod pipeline;

use std::time::{Duration, Instant};

use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer};

use pipeline::*;

/// A reaction PUT on the file's query is sent the current result (its table, holding a stale
/// row, is made exact) and then every change.
async fn reaction_added_to_a_running_query_gets_its_result_then_its_changes(
    api: &str,
    admin: &PgClient,
    copy: &PgClient,
    target: &PgServer,
    url: &str,
) {
    copy.batch_execute(&format!(
        "CREATE TABLE query.totals_copy ({TOTAL_TYPES}, \"_key.1\" text PRIMARY KEY);
         INSERT INTO query.totals_copy VALUES ('stale', 1, 1, 1, 'stale')"
    ))
    .await
    .unwrap();
    let reaction = format!("{api}/api/v1/reactions/totals-copy");
    let body = format!("kind: postgres\nfrom: totals\nurl: {url}\ntarget: query.totals_copy\n");
    let (status, answer) = send(reqwest::Method::PUT, &reaction, Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = send(reqwest::Method::PUT, &reaction, Some(&body)).await;
    assert_eq!(status, 409, "a second PUT of the same id");
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/reactions/other"),
        Some(&body.replace("from: totals", "from: nothing")),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("from: no query `nothing`"), "{answer}");
    let copy_url = target.connection_string("target");
    let matches = || async {
        except_both_ways(
            admin.client(),
            &copy_url,
            "query.totals",
            TOTAL_COLUMNS,
            TOTAL_TYPES,
        )
        .await
        .unwrap()
    };
    let copied = || rows_as_text(copy, "query.totals_copy");
    let expected = || rows_as_text(admin, "query.totals");
    for round in 0..2 {
        if round == 1 {
            load(admin, 600, 100).await;
        }
        let deadline = Instant::now() + BOUND;
        loop {
            if matches().await.is_equal() && copied().await == expected().await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the added reaction's table never matched (round {round})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let (status, _) = send(reqwest::Method::DELETE, &reaction, None).await;
    assert_eq!(status, 202);
    wait_for_no_task(api, "reaction-totals-copy").await;
}

/// A source PUT at runtime (another database) is read by a query PUT after it; the source
/// cannot be removed while the query reads it, and can once the query is gone.
async fn source_added_at_runtime_is_read_by_a_query_added_at_runtime(
    api: &str,
    source: &PgServer,
    copy: &PgClient,
    url: &str,
) {
    source.create_database("other").await.unwrap();
    let other = source.connect("other").await.unwrap();
    other
        .batch_execute(
            "CREATE TABLE things (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO things SELECT g, 'n' || g FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    copy.batch_execute(
        "CREATE TABLE query.named (id int, name text, \"_key.t.id\" int PRIMARY KEY)",
    )
    .await
    .unwrap();
    let body = format!(
        "kind: postgres\nhost: {}\nport: {}\nuser: {}\ndatabase: other\ntables: [things]\n",
        source.host(),
        source.port(),
        source.user()
    );
    let added = format!("{api}/api/v1/sources/other");
    let (status, answer) = send(reqwest::Method::PUT, &added, Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = send(reqwest::Method::PUT, &added, Some(&body)).await;
    assert_eq!(status, 409, "a second PUT of the same id");
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/sources/broken"),
        Some("kind: postgres\nport: nine\n"),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let query = format!(
        "sql: \"SELECT t.id, t.name FROM things t WHERE t.id % 2 = 0\"\nsources: [other]\nreactions:\n  - kind: postgres\n    id: named-mirror\n    from: named\n    url: {url}\n"
    );
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/named"),
        Some(&query),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    other
        .batch_execute("INSERT INTO things SELECT g, 'm' || g FROM generate_series(501, 600) g; DELETE FROM things WHERE id < 50;")
        .await
        .unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let held: i64 = copy
            .query_one("SELECT count(*) FROM query.named", &[])
            .await
            .unwrap()
            .get(0);
        let wrong: i64 = copy
            .query_one(
                "SELECT count(*) FROM query.named WHERE id % 2 <> 0 OR id < 50 OR id > 600",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if held == 276 && wrong == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the added source's query never matched: {held} rows, {wrong} wrong"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, answer) = send(reqwest::Method::DELETE, &added, None).await;
    assert_eq!(status, 409, "removed while a query reads it: {answer}");
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/queries/named"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let (status, answer) = send(reqwest::Method::DELETE, &added, None).await;
    assert_eq!(status, 202, "{answer}");
    let (status, _) = get(&added, Some(TOKEN)).await;
    assert_eq!(status, 404);
    let (status, answer) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/sources/shop"),
        None,
    )
    .await;
    assert_eq!(status, 409, "a source of the file: {answer}");
}

/// The rows of `table` (the totals' columns) as text, sorted.
async fn rows_as_text(client: &PgClient, table: &str) -> Vec<String> {
    let query = format!("SELECT ({TOTAL_COLUMNS})::text FROM {table}");
    let rows = client.query(query.as_str(), &[]).await.unwrap();
    let mut rows: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    rows.sort();
    rows
}

const BIG_SQL: &str = "SELECT o.id, o.amount, c.region FROM orders o JOIN customers c \
     ON o.customer = c.id WHERE o.amount > 50";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_added_at_runtime_bootstraps_and_streams_and_removed_components_leave_no_task() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    admin
        .batch_execute(&format!("CREATE VIEW query.big AS {BIG_SQL}"))
        .await
        .unwrap();
    copy.batch_execute(
        "CREATE TABLE query.big (id int, amount int, region text, \"_key.o.id\" int, \
         \"_key.c.id\" int, PRIMARY KEY (\"_key.o.id\", \"_key.c.id\"))",
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = state.path().join("surefoot.yaml");
    std::fs::write(
        &config_path,
        config(&source, &target, &state.path().join("state"), api_port),
    )
    .unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    load(&admin, 0, 100).await;

    // Refused like the file would be, with the path of each problem.
    let (status, body) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/bad"),
        Some("sql: SELECT id FROM orders ORDER BY id\ncolour: red\n"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("colour: unknown field"), "{body}");

    let url = format!(
        "postgres://{}:${{TARGET_PASSWORD}}@{}:{}/target",
        target.user(),
        target.host(),
        target.port()
    );
    let body = format!(
        "sql: \"{BIG_SQL}\"\nreactions:\n  - kind: postgres\n    id: big-mirror\n    from: big\n    url: {url}\n    target: query.big\n"
    );
    let (status, answer) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/big"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = send(
        reqwest::Method::PUT,
        &format!("{api}/api/v1/queries/big"),
        Some(&body),
    )
    .await;
    assert_eq!(status, 409, "a second PUT of the same id");
    load(&admin, 100, 200).await;
    let copy_url = target.connection_string("target");
    let deadline = Instant::now() + BOUND;
    loop {
        let big = except_both_ways(
            admin.client(),
            &copy_url,
            "query.big",
            "id, amount, region",
            "id int, amount int, region text",
        )
        .await
        .unwrap();
        if big.is_equal() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the added query's mirror never matched: {big:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, description) = get(&format!("{api}/api/v1/queries/big"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{description}");
    assert!(description.contains("\"runtime\":true"), "{description}");
    let (_, reaction) = get(&format!("{api}/api/v1/reactions/big-mirror"), Some(TOKEN)).await;
    assert_no_secrets(&reaction, "a reaction's description");

    reaction_added_to_a_running_query_gets_its_result_then_its_changes(
        &api, &admin, &copy, &target, &url,
    )
    .await;

    source_added_at_runtime_is_read_by_a_query_added_at_runtime(&api, &source, &copy, &url).await;

    // Removed: the reaction's task ends, then the query's and its temporary slot's.
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/reactions/big-mirror"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for_no_task(&api, "reaction-big-mirror").await;
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/queries/big"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for_no_task(&api, "query-big").await;
    wait_for_no_task(&api, "for-big").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let slots: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'surefoot_tmp%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if slots == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the temporary slot stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(&format!("{api}/api/v1/queries/big"), Some(TOKEN))
            .await
            .0,
        404
    );

    // A source stopped through the API lets go of its slot; started, it streams what was
    // written meanwhile.
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{api}/api/v1/sources/shop/stop"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let active: bool = admin
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'surefoot_shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!active, "the stopped source still holds its slot");
    load(&admin, 400, 50).await;
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{api}/api/v1/sources/shop/start"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A reaction of the file removed; the rest keeps running.
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{api}/api/v1/reactions/tables-mirror"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    wait_for_no_task(&api, "reaction-tables-mirror").await;
    load(&admin, 300, 100).await;
    let deadline = Instant::now() + BOUND;
    loop {
        let totals = except_both_ways(
            admin.client(),
            &copy_url,
            "query.totals",
            TOTAL_COLUMNS,
            TOTAL_TYPES,
        )
        .await
        .unwrap();
        if totals.is_equal() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query's mirror stopped: {totals:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "exit status {status:?}\n{output}");
    assert_no_secrets(&output, "the server's output");
}
