//! A segment's reactions: each connected (retrying until it connects), then run as a task of
//! its own, telling the segment how it ended.

use std::time::Duration;

use std::sync::Arc;

use surefoot_core_lifecycle::{Backoff, CancellationToken, TaskGroup, timeout};
use surefoot_core_model::{Batch, BatchReceiver, BatchSender, Reaction, SecretUrl, batch_channel};
use surefoot_reaction_queue::{
    RedisReaction, RedisTarget, WebhookConfig, WebhookReaction, connection_manager,
};
use surefoot_sink_postgres_writer::{PostgresWriter, WriterConfig};
use tokio::sync::mpsc;

use crate::run::error::{RunError, chain};
use crate::run::registry::{Registry, State};
use crate::run::writers::Writers;

/// Waits between attempts to connect.
const CONNECT_RETRY: Duration = Duration::from_secs(2);
/// Limit of one Redis connect or reply.
const REDIS_LIMIT: Duration = Duration::from_secs(5);
/// Limit of one application of a batch by a Redis or webhook reaction.
const EFFECT_LIMIT: Duration = Duration::from_secs(30);
/// Batches between a segment and each of its reactions.
const REACTION_QUEUE: usize = 64;

/// A reaction as a segment runs it.
#[derive(Debug, Clone)]
pub(crate) enum ReactionSpec {
    /// A PostgreSQL writer.
    Postgres {
        id: String,
        config: Box<WriterConfig>,
    },
    /// Every change to the log.
    Log { id: String },
    /// Every batch appended to a Redis stream.
    Redis {
        id: String,
        url: SecretUrl,
        stream: String,
    },
    /// Every batch posted to an endpoint.
    Webhook { id: String, config: WebhookConfig },
}

impl ReactionSpec {
    pub(crate) fn id(&self) -> &str {
        match self {
            ReactionSpec::Postgres { id, .. }
            | ReactionSpec::Log { id }
            | ReactionSpec::Redis { id, .. }
            | ReactionSpec::Webhook { id, .. } => id,
        }
    }
}

/// How a reaction's task ended: its id, and the failure if it failed.
pub(crate) type ReactionEnded = (String, Option<RunError>);

/// What launching needs.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) group: TaskGroup,
    pub(crate) registry: Registry,
    pub(crate) writers: Writers,
}

impl Launcher {
    /// Connects `spec` and spawns its task `reaction-<id>`, which reports its end on `ended`.
    /// Returns the reaction's input, or `None` if cancelled while connecting.
    pub(crate) async fn launch(
        &self,
        spec: &ReactionSpec,
        ended: &mpsc::UnboundedSender<ReactionEnded>,
        cancel: &CancellationToken,
    ) -> Result<Option<BatchSender>, RunError> {
        let id = spec.id().to_owned();
        let (output, input) = batch_channel(REACTION_QUEUE);
        let run = match spec {
            ReactionSpec::Log { .. } => Run::Log,
            ReactionSpec::Postgres { config, .. } => {
                match self.connect(&id, config, cancel).await {
                    Some(writer) => Run::Writer(writer),
                    None => return Ok(None),
                }
            }
            ReactionSpec::Redis { url, stream, .. } => {
                match self.connect_redis(&id, url, stream, cancel).await {
                    Some(reaction) => Run::Effect(Arc::new(reaction)),
                    None => return Ok(None),
                }
            }
            ReactionSpec::Webhook { config, .. } => {
                let reaction = WebhookReaction::new(id.as_str(), config.clone())
                    .map_err(|error| RunError::reaction(&id, chain(&error)))?;
                Run::Effect(Arc::new(reaction))
            }
        };
        self.registry.set(&id, State::Running, None);
        let registry = self.registry.clone();
        let ended = ended.clone();
        let name = format!("reaction-{id}");
        let spawned = self.group.spawn(name, move |_| async move {
            let failure = run.run(&id, input, &registry).await.err();
            if let Some(error) = &failure {
                registry.set(&id, State::Failed, Some(error.to_string()));
            }
            // The segment is gone only when it has stopped waiting for its reactions.
            let _segment_gone = ended.send((id, failure));
            Ok::<(), RunError>(())
        });
        spawned.map_err(|error| RunError::reaction(spec.id(), chain(&error)))?;
        Ok(Some(output))
    }

    async fn connect(
        &self,
        id: &str,
        config: &WriterConfig,
        cancel: &CancellationToken,
    ) -> Option<PostgresWriter> {
        loop {
            match PostgresWriter::builder(config.clone()).connect().await {
                Ok(writer) => {
                    self.writers.insert(id, writer.clone());
                    return Some(writer);
                }
                Err(error) => {
                    let reason = chain(&error);
                    tracing::warn!(reaction = %id, %reason, "writer could not connect; retrying");
                    self.registry.set(id, State::Failed, Some(reason));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CONNECT_RETRY) => {}
                () = cancel.cancelled() => return None,
            }
        }
    }
}

impl Launcher {
    async fn connect_redis(
        &self,
        id: &str,
        url: &SecretUrl,
        stream: &str,
        cancel: &CancellationToken,
    ) -> Option<RedisReaction> {
        loop {
            let connected = match redis::Client::open(url.expose()) {
                Ok(client) => connection_manager(&client, REDIS_LIMIT)
                    .await
                    .map_err(|error| chain(&error)),
                Err(error) => Err(chain(&error)),
            };
            match connected {
                Ok(connection) => {
                    let target = RedisTarget::Stream(stream.to_owned());
                    return Some(RedisReaction::new(id, connection, target, REDIS_LIMIT));
                }
                Err(reason) => {
                    // The reason names the host at most: the URL's secrets are not in it.
                    tracing::warn!(reaction = %id, %url, %reason, "Redis not reachable; retrying");
                    self.registry.set(id, State::Failed, Some(reason));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CONNECT_RETRY) => {}
                () = cancel.cancelled() => return None,
            }
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

/// A connected reaction.
enum Run {
    Writer(PostgresWriter),
    Log,
    /// A reaction with an effect elsewhere (Redis, a webhook): each batch in order, settled
    /// delivered only once applied; a failure is retried with backoff, holding the batch and
    /// every later one (never skipped), with the reason in the status meanwhile.
    Effect(Arc<dyn Reaction>),
}

impl Run {
    /// Runs until `input` closes (the writer drains it first).
    async fn run(
        self,
        id: &str,
        mut input: BatchReceiver,
        registry: &Registry,
    ) -> Result<(), RunError> {
        match self {
            Run::Log => {
                while let Some(batch) = input.recv().await {
                    for change in batch.changes.iter() {
                        tracing::info!(reaction = %id, source = %batch.source, ?change, "change");
                    }
                    registry.progress(id);
                    batch.ack.delivered();
                }
                Ok(())
            }
            Run::Effect(reaction) => {
                while let Some(batch) = input.recv().await {
                    apply_until_done(&*reaction, &batch, id, registry).await;
                    registry.progress(id);
                    batch.ack.delivered();
                }
                Ok(())
            }
            // Never cancelled: at a stop the input closes and the writer drains it.
            Run::Writer(writer) => writer
                .run(input, CancellationToken::new())
                .await
                .map_err(|error| RunError::reaction(id, chain(&error))),
        }
    }
}
