//! The source of a query added while the server runs: a temporary slot with an exported
//! snapshot (`PostgresProvider::added_consumer`), the snapshot into the query, then the stream
//! from that slot, so the query gets exactly what follows its snapshot and the running sources
//! are untouched (decision 0005). The slot lives as long as the session: if the stream fails,
//! the query is failed with the reason, never fed from elsewhere.

use std::time::Duration;

use surefoot_bootstrap::{BootstrapConfig, PostgresProvider};
use surefoot_core_lifecycle::{CancellationToken, Status};
use surefoot_core_model::{BatchSender, SnapshotRequest, Source};
use surefoot_source_postgres::{PostgresSourceConfig, SlotName};

use super::error::{RunError, chain};
use super::registry::{Registry, State};

/// A temporary slot's name for `query` reading `source`: lower case, digits and `_`, at most 63
/// bytes.
pub(crate) fn temporary_slot(source: &str, query: &str) -> String {
    let name: String = format!("surefoot_tmp_{source}_{query}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    name.chars().take(63).collect()
}

/// Bootstraps `query` from `source` and streams to `output` until either token is cancelled.
pub(crate) async fn run_added(
    source: PostgresSourceConfig,
    query: String,
    output: BatchSender,
    registry: Registry,
    cancels: [CancellationToken; 2],
    stop_deadline: Duration,
) -> Result<(), RunError> {
    let [group, own] = cancels;
    let cancel = CancellationToken::new();
    let either = async {
        tokio::select! {
            () = group.cancelled() => {}
            () = own.cancelled() => {}
        }
    };
    let work = stream(source, &query, output, &registry, &cancel, stop_deadline);
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => return report(&registry, &query, result),
        () = either => cancel.cancel(),
    }
    report(&registry, &query, work.await)
}

fn report(registry: &Registry, query: &str, result: Result<(), RunError>) -> Result<(), RunError> {
    if let Err(error) = &result {
        tracing::error!(%query, %error, "the added query's source failed");
        registry.set(query, State::Failed, Some(error.to_string()));
    }
    result
}

async fn stream(
    config: PostgresSourceConfig,
    query: &str,
    output: BatchSender,
    registry: &Registry,
    cancel: &CancellationToken,
    stop_deadline: Duration,
) -> Result<(), RunError> {
    let id = config.id.to_string();
    let slot = SlotName::parse(&temporary_slot(&id, query))
        .map_err(|error| RunError::source(&id, chain(&error)))?;
    let provider = PostgresProvider::added_consumer(config, slot, BootstrapConfig::default())
        .map_err(|error| RunError::source(&id, chain(&error)))?;
    let request = SnapshotRequest {
        consumer: query.to_owned(),
        tables: Vec::new(),
    };
    registry.set(
        query,
        State::Bootstrapping,
        Some(format!("snapshot of `{id}`")),
    );
    let exported = provider
        .export(&request, &output, cancel)
        .await
        .map_err(|error| RunError::query(query, format!("bootstrap failed: {}", chain(&error))))?;
    tracing::info!(%query, source = %id, rows = exported.complete.rows, "added query bootstrapped; streaming");
    registry.set(query, State::Running, None);
    let source = provider.stream_after(exported, output);
    source
        .start()
        .await
        .map_err(|error| RunError::source(&id, chain(&error)))?;
    let mut status = source.component().subscribe_status();
    let failed = async {
        loop {
            if status.changed().await.is_err() {
                return None;
            }
            if *status.borrow_and_update() == Status::Failed {
                let report = source.component().health().report();
                return Some(report.failure.map(|f| chain(&*f)).unwrap_or_default());
            }
        }
    };
    let failure = tokio::select! {
        () = cancel.cancelled() => None,
        failure = failed => failure,
    };
    let stopped = source.stop(stop_deadline).await;
    drop(source);
    if let Some(reason) = failure {
        return Err(RunError::query(
            query,
            format!("its stream from `{id}` failed (remove and add the query again): {reason}"),
        ));
    }
    stopped.map_err(|error| RunError::source(&id, chain(&error)))
}
