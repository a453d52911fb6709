//! The replication task: sessions one after another, reconnecting after transient faults with
//! jittered exponential backoff under a budget, and the clean stop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use surefoot_core_lifecycle::timeout::timeout;
use surefoot_core_lifecycle::{CancellationToken, Classify, ErrorClass};

use crate::error::SourceError;
use crate::liveness::SqlProbe;
use crate::session::{Session, SessionContext, SessionEnd};
use crate::setup::settle_slot;
use crate::source::Shared;
use crate::sql::SqlConnection;

/// How many reconnects [`ReconnectLog`] keeps.
const LOG_CAPACITY: usize = 1024;

/// One reconnect: why, and how long the source waited first.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    /// 1 for the first reconnect after a healthy session, then 2, 3, …
    pub attempt: u32,
    /// The backoff delay drawn for it.
    pub delay: Duration,
    /// The ceiling the delay was drawn under: `min(cap, base * 2^(attempt - 1))`.
    pub ceiling: Duration,
    /// The class of the error that ended the session.
    pub class: ErrorClass,
    /// The error, with its causes.
    pub error: String,
}

/// The latest reconnects, newest last.
#[derive(Debug, Default)]
pub(crate) struct ReconnectLog {
    entries: Mutex<VecDeque<Reconnect>>,
}

impl ReconnectLog {
    fn push(&self, entry: Reconnect) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    pub(crate) fn entries(&self) -> Vec<Reconnect> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().cloned().collect()
    }
}

/// Runs sessions until the source stops (`Ok`) or a fault that retrying cannot fix, or the
/// reconnect budget, ends it (`Err`, which fails the source).
pub(crate) async fn replicate(
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<(), SourceError> {
    let policy = shared.config.reconnect;
    let mut schedule = policy.schedule(jitter_rng());
    let mut attempt = 0u32;
    loop {
        shared.metrics.connection_attempted();
        // Boxed: a session's future holds the TLS connector and the stream state.
        let (outcome, progressed) = Box::pin(run_session(&shared, &cancel)).await;
        if progressed && attempt > 0 {
            shared.metrics.recovered();
            schedule = policy.schedule(jitter_rng());
            attempt = 0;
        }
        let error = match outcome {
            Ok(SessionEnd::Stopping) => return Ok(()),
            Ok(SessionEnd::Redeliver) => {
                let from = shared.tracker.rewind();
                tracing::warn!(source = %shared.config.id, ?from, "a batch was not delivered; delivering again from the watermark");
                continue;
            }
            Err(error) => error,
        };
        let class = error.class();
        shared.metrics.session_failed(class);
        if cancel.is_cancelled() {
            // The source is stopping: an error now (while draining, closing or releasing the
            // slot) belongs in the stop report, not in a reconnect that will never happen.
            tracing::error!(source = %shared.config.id, %class, error = %chain(&error), "replication stop failed");
            return Err(error);
        }
        if !class.is_retryable() {
            tracing::error!(source = %shared.config.id, %class, error = %chain(&error), "replication failed; not retrying");
            return Err(error);
        }
        let Some(delay) = schedule.next() else {
            tracing::error!(source = %shared.config.id, attempts = attempt, error = %chain(&error), "reconnect budget exhausted");
            return Err(SourceError::ReconnectBudgetExhausted {
                attempts: attempt,
                last: Box::new(error),
            });
        };
        attempt += 1;
        let ceiling = policy.backoff().ceiling(attempt - 1);
        tracing::warn!(source = %shared.config.id, attempt, ?delay, %class, error = %chain(&error), "replication session failed; reconnecting");
        shared.reconnects.push(Reconnect {
            attempt,
            delay,
            ceiling,
            class,
            error: chain(&error),
        });
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One session from connect to its end; with the stop path when cancelled. Returns whether the
/// session made progress (to reset the backoff).
async fn run_session(
    shared: &Shared,
    cancel: &CancellationToken,
) -> (Result<SessionEnd, SourceError>, bool) {
    let start = *shared.confirmed.borrow();
    let transport = tokio::select! {
        () = cancel.cancelled() => return (Ok(SessionEnd::Stopping), false),
        opened = shared.connector.open(start) => match opened {
            Ok(transport) => transport,
            Err(error) => return (Err(error), false),
        },
    };
    let application_name = format!("surefoot-{}-replication", shared.config.id);
    let probe = SqlProbe {
        config: &shared.config,
        application_name: &application_name,
    };
    let ctx = SessionContext {
        source: &shared.config.id,
        tracker: &shared.tracker,
        output: &shared.output,
        metrics: &shared.metrics,
        liveness: shared
            .config
            .heartbeat
            .map(|_| shared.config.liveness_timeout),
        confirmed: &shared.confirmed,
        probe: &probe,
        silences_survived: &shared.silences_survived,
        max_transaction_memory: shared.config.max_transaction_memory,
        spill: &shared.spill,
    };
    let mut session = Session::new(ctx, transport);
    let outcome = session.run(cancel).await;
    let progressed = session.made_progress;
    match outcome {
        Ok(SessionEnd::Stopping) => (Box::pin(stop_cleanly(shared, session)).await, progressed),
        other => {
            discard(session).await;
            (other, progressed)
        }
    }
}

/// The clean stop: let batches in flight settle, send the final watermark, end the stream with
/// CopyDone, then make sure the slot is released at exactly that position.
async fn stop_cleanly(
    shared: &Shared,
    mut session: Session<'_>,
) -> Result<SessionEnd, SourceError> {
    let budget = shared.stop_budget();
    session.drain(budget / 2).await;
    let final_flush = *shared.confirmed.borrow();
    let outcome = session
        .into_transport()
        .close(Some(final_flush), budget / 4)
        .await?;
    tracing::info!(source = %shared.config.id, %final_flush, ?outcome, "replication stream closed");
    let settle = async {
        let sql = SqlConnection::open(&shared.config, "stop").await?;
        settle_slot(&sql, &shared.config.slot, final_flush).await
    };
    Box::pin(timeout("release replication slot", budget / 5, settle)).await??;
    Ok(SessionEnd::Stopping)
}

/// Closes the transport of a failed session without waiting long: it is usually dead already.
async fn discard(session: Session<'_>) {
    const DISCARD_DEADLINE: Duration = Duration::from_secs(1);
    if let Err(error) = session.into_transport().close(None, DISCARD_DEADLINE).await {
        tracing::debug!(error = %chain(&error), "closing a failed replication stream");
    }
}

/// A sendable generator for backoff jitter, seeded from the thread's generator.
fn jitter_rng() -> rand::rngs::StdRng {
    rand::SeedableRng::from_rng(&mut rand::rng())
}

/// The error and its causes on one line, for logs and the reconnect log.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
