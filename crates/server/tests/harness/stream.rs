//! A query's Redis stream, read back and folded into the result it describes.

use std::collections::{BTreeMap, BTreeSet};

use surefoot_core_model::{Change, Operation, Row};

/// Every batch appended to `stream`, as its JSON.
pub async fn batches(url: &str, stream: &str) -> Vec<serde_json::Value> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .map(|entry| {
            let text: String = entry.get("batch").unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

/// The rows the diffs add up to, each change taken once by position (as a consumer that
/// dedupes by position does), keyed by the group key.
pub fn fold(batches: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut seen = BTreeSet::new();
    let mut rows = BTreeMap::new();
    let key = |row: &Row| format!("{:?}", row.get("_key.1"));
    for batch in batches {
        let changes: Vec<Change> = serde_json::from_value(batch["changes"].clone()).unwrap();
        for change in changes {
            if !seen.insert(change.position.to_string()) {
                continue;
            }
            match &change.operation {
                Operation::Insert { after } | Operation::Update { after, .. } => {
                    rows.insert(key(after), serde_json::to_value(after).unwrap());
                }
                Operation::Delete { key: Some(old), .. }
                | Operation::Delete {
                    before: Some(old), ..
                } => {
                    rows.remove(&key(old));
                }
                other => panic!("a result diff that is not a row change: {other:?}"),
            }
        }
    }
    sorted(rows.into_values().collect())
}

pub fn sorted(mut rows: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rows.sort_by_key(|row| row.to_string());
    rows
}
