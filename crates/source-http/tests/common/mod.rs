//! Helpers shared by the source's integration tests.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{BatchReceiver, Operation, Source, Value, batch_channel};
use surefoot_source_http::{Auth, HttpSource, HttpSourceConfig};

/// How long a test waits for something that should happen.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// A loopback configuration on a free port without auth, answering `Retry-After: 1`.
pub(crate) fn loopback_config(id: &str) -> HttpSourceConfig {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    HttpSourceConfig::new(id, bind, Auth::NoneOnLoopback)
}

/// Starts a source with an output of `capacity` batches.
pub(crate) async fn start(
    config: HttpSourceConfig,
    capacity: usize,
) -> (HttpSource, BatchReceiver) {
    let (output, batches) = batch_channel(capacity);
    let source = HttpSource::new(config, output).unwrap();
    source.start().await.unwrap();
    (source, batches)
}

/// The base URL of a started source.
pub(crate) fn url(source: &HttpSource) -> String {
    format!("http://{}", source.local_addr().unwrap())
}

/// An insert of the row `{"id": id}` into `t`, as JSON text.
pub(crate) fn insert(id: &str) -> String {
    format!(r#"{{"table":"t","op":"insert","after":{{"id":"{id}"}}}}"#)
}

/// A JSON array of inserts.
pub(crate) fn array(ids: &[String]) -> String {
    let items: Vec<String> = ids.iter().map(|id| insert(id)).collect();
    format!("[{}]", items.join(","))
}

/// What the consumer saw: delivered ids with their count, and batches it failed.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) delivered: HashMap<String, u32>,
    pub(crate) failed_batches: u64,
    pub(crate) delivered_batches: u64,
}

/// A consumer of the source's output that records every delivered id and fails every batch
/// whose number `fail(n)` says, settling it failed without recording it. It dedupes nothing.
#[derive(Debug, Clone)]
pub(crate) struct Consumer {
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) group: TaskGroup,
}

impl Consumer {
    pub(crate) fn start(
        batches: BatchReceiver,
        fail: impl Fn(u64) -> bool + Send + 'static,
    ) -> Self {
        Self::start_recording(batches, fail, Arc::default())
    }

    /// Like [`Consumer::start`], recording into `ledger` (shared by the consumers of several
    /// instances of one source).
    pub(crate) fn start_recording(
        mut batches: BatchReceiver,
        fail: impl Fn(u64) -> bool + Send + 'static,
        ledger: Arc<Mutex<Ledger>>,
    ) -> Self {
        let group = TaskGroup::new("consumer");
        let recorded = Arc::clone(&ledger);
        let counter = AtomicU64::new(0);
        group
            .spawn("consume", move |cancel| async move {
                loop {
                    let batch = tokio::select! {
                        () = cancel.cancelled() => return Ok::<(), std::convert::Infallible>(()),
                        batch = batches.recv() => match batch {
                            Some(batch) => batch,
                            None => return Ok(()),
                        },
                    };
                    let number = counter.fetch_add(1, Ordering::Relaxed);
                    if fail(number) {
                        recorded.lock().unwrap().failed_batches += 1;
                        batch.ack.failed();
                        continue;
                    }
                    {
                        let mut ledger = recorded.lock().unwrap();
                        ledger.delivered_batches += 1;
                        for change in batch.changes.iter() {
                            *ledger
                                .delivered
                                .entry(id_of(&change.operation))
                                .or_default() += 1;
                        }
                    }
                    // Recorded before settling: a 200 can only follow a recorded delivery.
                    batch.ack.delivered();
                }
            })
            .unwrap();
        Self { ledger, group }
    }

    /// True when every id was delivered.
    pub(crate) fn has_all(&self, ids: &[String]) -> bool {
        let ledger = self.ledger.lock().unwrap();
        ids.iter().all(|id| ledger.delivered.contains_key(id))
    }

    /// Delivered changes counted with repeats.
    pub(crate) fn total(&self) -> u64 {
        let ledger = self.ledger.lock().unwrap();
        ledger
            .delivered
            .values()
            .map(|count| u64::from(*count))
            .sum()
    }
}

/// The `id` of an insert's row.
pub(crate) fn id_of(operation: &Operation) -> String {
    match operation {
        Operation::Insert { after } | Operation::Update { after, .. } => match after.get("id") {
            Some(Value::Text(id)) => id.clone(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// A plain HTTP client with a bound on every request.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(BOUND)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}
