//! A segment's reactions: each connected (retrying until it connects), then run as a task of
//! its own, telling the segment how it ended.

use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::{CancellationToken, TaskGroup};
use surefoot_core_model::{BatchSender, SecretUrl, batch_channel};
use surefoot_reaction_queue::{
    RedisReaction, RedisTarget, WebhookConfig, WebhookReaction, connection_manager,
};
use surefoot_sink_postgres_writer::{PostgresWriter, WriterConfig};
use tokio::sync::mpsc;

use super::drive::{Held, Run};
use super::hold::Holds;
use crate::run::error::{RunError, chain};
use crate::run::registry::{Registry, State};
use crate::run::writers::Writers;

/// Waits between attempts to connect.
const CONNECT_RETRY: Duration = Duration::from_secs(2);
/// Limit of one Redis connect or reply.
const REDIS_LIMIT: Duration = Duration::from_secs(5);
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
    /// Reactions paused or stopped through the API.
    pub(crate) holds: Holds,
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
        let held = Held {
            id: id.clone(),
            hold: self.holds.watch(&id),
            launcher: self.clone(),
            spec: spec.clone(),
        };
        let ended = ended.clone();
        let name = format!("reaction-{id}");
        let spawned = self.group.spawn(name, move |cancel| async move {
            let failure = run.run(input, held, cancel).await.err();
            // The segment is gone only when it has stopped waiting for its reactions.
            let _segment_gone = ended.send((id, failure));
            Ok::<(), RunError>(())
        });
        spawned.map_err(|error| RunError::reaction(spec.id(), chain(&error)))?;
        Ok(Some(output))
    }

    pub(super) async fn connect(
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
