//! How a connected reaction takes its batches, and how it is held (see `hold`): between
//! batches it looks at its hold; while held it takes nothing, so its queue fills and the
//! segment waits. A PostgreSQL writer that is stopped finishes the transactions it holds,
//! closes its connections, and connects again when started.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, CancellationToken, timeout};
use surefoot_core_model::{Batch, BatchReceiver, BatchSender, Reaction, batch_channel};
use surefoot_sink_postgres_writer::PostgresWriter;

use super::hold::{Hold, HoldWatch, changed, held};
use super::reaction::{Launcher, ReactionSpec};
use crate::run::error::{RunError, chain};
use crate::run::registry::{Registry, State};

/// Limit of one application of a batch by a Redis or webhook reaction.
const EFFECT_LIMIT: Duration = Duration::from_secs(30);
/// Limit of closing a stopped writer's connections.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// A connected reaction.
pub(super) enum Run {
    /// A PostgreSQL writer.
    Writer(PostgresWriter),
    /// Every change to the log.
    Log,
    /// A reaction with an effect elsewhere (Redis, a webhook): each batch in order, settled
    /// delivered only once applied; a failure is retried with backoff, holding the batch and
    /// every later one (never skipped), with the reason in the status meanwhile.
    Effect(Arc<dyn Reaction>),
}

/// What a reaction's task needs besides its input: its hold and how to connect again.
pub(super) struct Held {
    pub(super) id: String,
    pub(super) hold: HoldWatch,
    pub(super) launcher: Launcher,
    pub(super) spec: ReactionSpec,
}

impl Held {
    fn registry(&self) -> &Registry {
        &self.launcher.registry
    }

    /// Reports `hold` carried out and waits until the API asks something else: the new hold,
    /// or `None` if the task was cancelled meanwhile (the batches it did not take stay
    /// unsettled, so their source sends them again).
    async fn hold_until_changed(&mut self, hold: Hold, cancel: &CancellationToken) -> Option<Hold> {
        let detail = match hold {
            Hold::Open => return Some(Hold::Open),
            Hold::Paused => "paused through the API: it takes no batch until resumed",
            Hold::Stopped => {
                "stopped through the API: disconnected, it takes no batch until started"
            }
        };
        tracing::info!(reaction = %self.id, ?hold, "reaction held");
        self.registry()
            .set(&self.id, State::Stopped, Some(detail.to_owned()));
        self.hold.carried_out(hold);
        tokio::select! {
            next = changed(&mut self.hold.wanted, hold) => Some(next),
            () = cancel.cancelled() => None,
        }
    }

    /// The reaction takes batches again.
    fn reopened(&self) {
        tracing::info!(reaction = %self.id, "reaction takes batches again");
        self.registry().set(&self.id, State::Running, None);
        self.hold.carried_out(Hold::Open);
    }

    /// The next batch, or `None` when the input closed or the task was cancelled while held.
    async fn next(
        &mut self,
        input: &mut BatchReceiver,
        cancel: &CancellationToken,
    ) -> Option<Batch> {
        loop {
            let mut hold = tokio::select! {
                biased;
                hold = held(&mut self.hold.wanted) => hold,
                batch = input.recv() => return batch,
            };
            while hold != Hold::Open {
                hold = self.hold_until_changed(hold, cancel).await?;
            }
            self.reopened();
        }
    }
}

impl Run {
    /// Runs until `input` closes (the writer drains it first); a failure is in the status.
    pub(super) async fn run(
        self,
        input: BatchReceiver,
        mut held: Held,
        cancel: CancellationToken,
    ) -> Result<(), RunError> {
        let result = match self {
            Run::Log => run_log(input, &mut held, &cancel).await,
            Run::Effect(reaction) => run_effect(&*reaction, input, &mut held, &cancel).await,
            Run::Writer(writer) => run_writer(writer, input, &mut held, &cancel).await,
        };
        if let Err(error) = &result {
            held.registry()
                .set(&held.id, State::Failed, Some(error.to_string()));
        }
        result
    }
}

async fn run_log(
    mut input: BatchReceiver,
    held: &mut Held,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    while let Some(batch) = held.next(&mut input, cancel).await {
        for change in batch.changes.iter() {
            tracing::info!(reaction = %held.id, source = %batch.source, ?change, "change");
        }
        held.registry().progress(&held.id);
        batch.ack.delivered();
    }
    Ok(())
}

async fn run_effect(
    reaction: &dyn Reaction,
    mut input: BatchReceiver,
    held: &mut Held,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    while let Some(batch) = held.next(&mut input, cancel).await {
        apply_until_done(reaction, &batch, &held.id, held.registry()).await;
        held.registry().progress(&held.id);
        batch.ack.delivered();
    }
    Ok(())
}

/// How forwarding to a writer ended.
enum Forwarded {
    /// The segment closed the input: the writer drained it.
    InputClosed,
    /// The reaction was held.
    Held(Hold),
    /// The writer stopped taking batches: it failed, and says why.
    WriterGone,
}

/// Runs the writer in rounds: each forwards batches until the reaction is held or the input
/// closes; a stop between rounds closes the writer's connections and a start reconnects.
async fn run_writer(
    writer: PostgresWriter,
    mut input: BatchReceiver,
    held: &mut Held,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let mut connected = Some(writer);
    loop {
        let writer = match connected.take() {
            Some(writer) => writer,
            None => match reconnect(held, cancel).await {
                Some(writer) => {
                    held.reopened();
                    writer
                }
                None => return Ok(()),
            },
        };
        let (forward, writer_input) = batch_channel(1);
        // Never cancelled: at a stop or a hold the input closes and the writer drains it.
        let (forwarded, applied) = tokio::join!(
            forward_until_held(&mut input, forward, held),
            writer.run(writer_input, CancellationToken::new())
        );
        applied.map_err(|error| RunError::reaction(&held.id, chain(&error)))?;
        match forwarded {
            Forwarded::InputClosed => return Ok(()),
            Forwarded::WriterGone => {
                return Err(RunError::reaction(
                    &held.id,
                    "the writer stopped taking batches",
                ));
            }
            Forwarded::Held(mut hold) => {
                let mut writer = Some(writer);
                while hold != Hold::Open {
                    if hold == Hold::Stopped
                        && let Some(stopped) = writer.take()
                    {
                        disconnect(held, stopped).await;
                    }
                    match held.hold_until_changed(hold, cancel).await {
                        Some(next) => hold = next,
                        None => return Ok(()),
                    }
                }
                if writer.is_some() {
                    held.reopened();
                }
                connected = writer;
            }
        }
    }
}

/// Closes a stopped writer's connections (waiting for those in use at most the limit).
async fn disconnect(held: &Held, writer: PostgresWriter) {
    held.launcher.writers.remove(&held.id);
    if timeout("close writer", CLOSE_LIMIT, writer.pool().close())
        .await
        .is_err()
    {
        tracing::warn!(reaction = %held.id, "the stopped writer's connections did not close in time");
    }
}

/// Connects the writer again after a stop; `None` if cancelled first.
async fn reconnect(held: &Held, cancel: &CancellationToken) -> Option<PostgresWriter> {
    let ReactionSpec::Postgres { config, .. } = &held.spec else {
        return None;
    };
    held.launcher.connect(&held.id, config, cancel).await
}

async fn forward_until_held(
    input: &mut BatchReceiver,
    forward: BatchSender,
    reaction: &mut Held,
) -> Forwarded {
    loop {
        let batch = tokio::select! {
            biased;
            hold = held(&mut reaction.hold.wanted) => return Forwarded::Held(hold),
            batch = input.recv() => batch,
        };
        let Some(batch) = batch else {
            return Forwarded::InputClosed;
        };
        if forward.send(batch).await.is_err() {
            return Forwarded::WriterGone;
        }
    }
}

/// Applies `batch` until it is applied, backing off between attempts.
async fn apply_until_done(reaction: &dyn Reaction, batch: &Batch, id: &str, registry: &Registry) {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut attempt = 0u32;
    loop {
        let applied = timeout("reaction", EFFECT_LIMIT, reaction.apply(batch)).await;
        let reason = match applied {
            Ok(Ok(())) => {
                if attempt > 0 {
                    registry.set(id, State::Running, None);
                }
                return;
            }
            Ok(Err(error)) => chain(&error),
            Err(error) => chain(&error),
        };
        attempt += 1;
        tracing::warn!(reaction = %id, attempt, %reason, "batch not applied; retrying, holding the rest");
        registry.set(
            id,
            State::Failed,
            Some(format!("retrying (attempt {attempt}): {reason}")),
        );
        tokio::time::sleep(backoff.delay(attempt)).await;
    }
}
