//! A snapshot on demand of some of a source's tables, with the real `surefoot` binary: the
//! copied table is repaired while a writer keeps writing to every table, the other tables keep
//! every change written meanwhile (and are not copied), each result diff is applied once; and a
//! crash while a snapshot on demand is under way is repaired at the next start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod pipeline;

use std::path::Path;
use std::time::{Duration, Instant};

use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer};

use pipeline::*;

/// Whether the target's `customers` equal the source's.
async fn customers_equal(admin: &PgClient, target: &PgServer) -> bool {
    except_both_ways(
        admin.client(),
        &target.connection_string("target"),
        "customers",
        "id, region",
        "id int, region text",
    )
    .await
    .unwrap()
    .is_equal()
}

/// The target's rows of `orders` with this id.
async fn target_orders_with_id(copy: &PgClient, id: i32) -> i64 {
    copy.query_one("SELECT count(*) FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// Records in the target every write to `customers` that sets a region (`v` and a counter
/// that only grows in the source) lower than one the row already had: the target going back
/// in time.
const WATCH_REGRESSIONS: &str = "
    CREATE TABLE public.seen (id int PRIMARY KEY, region text NOT NULL);
    CREATE TABLE public.regressions (id int NOT NULL, was text NOT NULL, now text NOT NULL);
    CREATE FUNCTION public.watch_region() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.region LIKE 'v%' THEN
        INSERT INTO public.regressions SELECT NEW.id, s.region, NEW.region
          FROM public.seen s WHERE s.id = NEW.id AND s.region > NEW.region;
        INSERT INTO public.seen VALUES (NEW.id, NEW.region)
          ON CONFLICT (id) DO UPDATE SET region = greatest(seen.region, EXCLUDED.region);
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER watch_region BEFORE INSERT OR UPDATE ON customers
      FOR EACH ROW EXECUTE FUNCTION public.watch_region();";

/// Updates customer 1's region to a growing counter, one transaction each, until `stop`:
/// the updates it made.
async fn bump_customer_one(client: &PgClient, stop: &std::sync::atomic::AtomicBool) -> i32 {
    let mut bumps = 0i32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        bumps += 1;
        client
            .execute(
                "UPDATE customers SET region = 'v' || lpad(($1::int)::text, 8, '0') WHERE id = 1",
                &[&bumps],
            )
            .await
            .unwrap();
    }
    bumps
}

/// Waits until the source's record of a snapshot on demand under way is gone.
async fn wait_for_no_record(state: &Path) {
    let record = state.join("sources").join("shop.on-demand-snapshot");
    let deadline = Instant::now() + BOUND;
    while record.exists() {
        assert!(Instant::now() < deadline, "the snapshot's record is left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST .../snapshot` with `body`, waiting as long as a snapshot may take; status 0 with the
/// error when no answer came (the process was killed).
async fn ask_snapshot(api: &str, body: &str) -> (u16, String) {
    let sent = reqwest::Client::new()
        .post(format!("{api}/api/v1/sources/shop/snapshot"))
        .bearer_auth(TOKEN)
        .body(body.to_owned())
        .timeout(Duration::from_secs(180))
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => return (0, error.to_string()),
    };
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

/// Both tables drift in the target; a snapshot of `customers` alone, taken while a writer
/// changes both tables, repairs `customers`, leaves `orders` as it was apart from the changes
/// streamed (its drifted row stays: it was not copied), loses none of the orders written
/// meanwhile, and never sends a customer change the snapshot already holds: the target's
/// customer 1, updated all through the snapshot, never goes back to an older value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_one_table_repairs_it_and_the_others_lose_no_change() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = dir.path().join("surefoot.yaml");
    std::fs::write(&config_path, config(&source, &target, &state, api_port)).unwrap();
    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    wait_until_equal(&admin, &target).await;
    copy.batch_execute(WATCH_REGRESSIONS).await.unwrap();
    copy.batch_execute(
        "UPDATE customers SET region = 'drifted' WHERE id % 7 = 0; \
         INSERT INTO orders VALUES (999999, 1, 1);",
    )
    .await
    .unwrap();
    assert!(
        !customers_equal(&admin, &target).await,
        "the target drifted"
    );

    let (status, answer) = ask_snapshot(&api, r#"{"tables": ["customers", "public.nope"]}"#).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.contains("tables[1]: source `shop` has no table `public.nope`"),
        "{answer}"
    );
    let (status, answer) = ask_snapshot(&api, r#"{"table": "customers"}"#).await;
    assert_eq!(status, 422, "{answer}");

    let writer = source.connect("postgres").await.unwrap();
    let bumper = source.connect("postgres").await.unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let snapshot_under_writes = async {
        let answered = tokio::join!(
            ask_snapshot(&api, r#"{"tables": ["customers"]}"#),
            load(&writer, 700, 100)
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        answered
    };
    let (((status, answer), ()), bumps) =
        tokio::join!(snapshot_under_writes, bump_customer_one(&bumper, &stop));
    assert_eq!(status, 200, "{answer}");
    eprintln!("customer 1 updated {bumps} times during the snapshot");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        answer["rows"].as_u64(),
        Some(200),
        "only customers copied: {answer}"
    );
    load(&writer, 800, 50).await;

    let deadline = Instant::now() + BOUND;
    while !customers_equal(&admin, &target).await {
        assert!(Instant::now() < deadline, "customers never matched");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        target_orders_with_id(&copy, 999_999).await,
        1,
        "orders was copied again"
    );
    copy.execute("DELETE FROM orders WHERE id = 999999", &[])
        .await
        .unwrap();
    // The query's result, both tables and every order written during the snapshot.
    wait_until_equal(&admin, &target).await;
    let regressions: Vec<(i32, String, String)> = copy
        .query("SELECT id, was, now FROM public.regressions", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert!(
        regressions.is_empty(),
        "the target went back in time: {regressions:?}"
    );
    assert_applied_once_and_no_temporary_slot(&admin, &copy).await;
    wait_for_no_record(&state).await;
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("the stream passed the snapshot of some tables"),
        "the end of the dropped changes is logged"
    );
}

/// A snapshot on demand of `customers` cannot complete (no replication slot is free for its
/// temporary slot), after its truncate reached the consumers; the process is killed. The next
/// start finds the snapshot recorded as under way and copies every table again before it
/// streams, so the targets end equal although they were left with `customers` emptied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_snapshot_on_demand_is_repaired_at_the_next_start() {
    let source = PgServer::new().await.unwrap();
    let target = PgServer::new().await.unwrap();
    let (admin, copy) = prepare(&source, &target).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let config_path = dir.path().join("surefoot.yaml");
    std::fs::write(&config_path, config(&source, &target, &state, api_port)).unwrap();
    let mut child = start(&config_path);
    wait_until_ready(&api, true).await;
    wait_until_equal(&admin, &target).await;

    let fillers = fill_replication_slots(&admin).await;
    let writer = source.connect("postgres").await.unwrap();
    let asking = ask_snapshot(&api, r#"{"tables": ["customers"]}"#);
    let killing = async {
        let deadline = Instant::now() + BOUND;
        loop {
            let detail = source_detail(&api, "shop").await;
            if detail.contains("snapshot on demand, attempt 2") {
                break;
            }
            assert!(Instant::now() < deadline, "no second attempt: {detail}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let emptied: i64 = copy
            .query_one("SELECT count(*) FROM customers", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            emptied, 0,
            "the failed attempts' truncate reached the target"
        );
        load(&writer, 700, 50).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    };
    // The process is killed while the request waits: it fails with it.
    let ((status, answer), ()) = tokio::join!(asking, killing);
    assert_ne!(
        status, 200,
        "answered {answer} although it could not complete"
    );
    for filler in &fillers {
        admin
            .execute("SELECT pg_drop_replication_slot($1)", &[&filler.as_str()])
            .await
            .unwrap();
    }
    assert!(
        state
            .join("sources")
            .join("shop.on-demand-snapshot")
            .exists(),
        "the snapshot under way is recorded"
    );

    let child = start(&config_path);
    wait_until_ready(&api, true).await;
    load(&writer, 800, 50).await;
    wait_until_equal(&admin, &target).await;
    assert_applied_once_and_no_temporary_slot(&admin, &copy).await;
    wait_for_no_record(&state).await;
    let (status, output) = terminate(child, Duration::from_secs(60)).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("a snapshot on demand did not complete before the last stop"),
        "the repair is logged"
    );
}
