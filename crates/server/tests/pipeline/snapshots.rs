//! What the snapshot-on-demand tests share: taking the server's free replication slots, the
//! source's state as the API lists it, and the checks once a snapshot is done.

use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer};

use super::{TOKEN, get};

/// Takes every replication slot the server has left with slots of its own; returns their names.
pub(crate) async fn fill_replication_slots(admin: &PgClient) -> Vec<String> {
    let mut fillers = Vec::new();
    loop {
        let name = format!("filler_{}", fillers.len());
        let created = admin
            .execute(
                "SELECT pg_create_physical_replication_slot($1)",
                &[&name.as_str()],
            )
            .await;
        match created {
            Ok(_) => fillers.push(name),
            Err(error) => {
                let text = error.to_string();
                assert!(
                    format!("{error:?}").contains("all replication slots are in use"),
                    "{text}"
                );
                return fillers;
            }
        }
        assert!(fillers.len() < 100, "no slot limit reached");
    }
}

/// The source's state and detail, as the API lists them.
pub(crate) async fn source_detail(api: &str, id: &str) -> String {
    let (status, body) = get(&format!("{api}/api/v1/components"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let views: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let view = views.iter().find(|view| view["id"] == id).unwrap();
    format!("{} {}", view["state"], view["detail"])
}

/// Whether the target's `orders` equal the source's.
pub(crate) async fn orders_equal(admin: &PgClient, target: &PgServer) -> bool {
    except_both_ways(
        admin.client(),
        &target.connection_string("target"),
        "orders",
        "id, customer, amount",
        "id int, customer int, amount int",
    )
    .await
    .unwrap()
    .is_equal()
}

/// After a snapshot on demand: the query's result diffs were each applied once, and no
/// temporary slot is left on the source.
pub(crate) async fn assert_applied_once_and_no_temporary_slot(admin: &PgClient, copy: &PgClient) {
    let applied =
        surefoot_pipeline_tests::applied::applied(copy.client(), "totals-mirror", "totals")
            .await
            .unwrap();
    assert_eq!(applied.overlapping, 0, "result diffs applied twice");
    let temporary: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'surefoot_tmp%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temporary, 0, "a temporary slot is left");
}
