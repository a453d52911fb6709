//! The segment's loop: what the last run left unacknowledged first, then every input batch
//! through the query to the reactions, with commands answered between batches.

use std::collections::BTreeMap;

use surefoot_core_model::{Batch, BatchReceiver, BatchSender};
use surefoot_query::DurableQuery;
use tokio::sync::{mpsc, oneshot};

use super::reaction::{Launcher, ReactionEnded, ReactionSpec};
use super::{Command, Ended};
use crate::run::error::{RunError, chain};
use crate::run::registry::State;

/// Input batches evaluated together and made durable in one transaction, at most: those
/// already waiting when one arrives (a backlog costs one sync of the state per this many).
const GROUP_COMMIT: usize = 64;

/// What the loop waits for.
enum Event {
    Command(Option<Command>),
    Batch(Option<Batch>),
    ReactionEnded(Option<ReactionEnded>),
}

/// One attempt's loop and what it holds.
pub(super) struct Evaluation<'a> {
    pub(super) query: Option<&'a mut DurableQuery>,
    pub(super) input: &'a mut BatchReceiver,
    pub(super) commands: &'a mut mpsc::Receiver<Command>,
    pub(super) outputs: BTreeMap<String, BatchSender>,
    pub(super) endings: &'a mut mpsc::UnboundedReceiver<ReactionEnded>,
    pub(super) paused: &'a mut bool,
    pub(super) reactions: &'a mut Vec<ReactionSpec>,
    pub(super) launcher: &'a Launcher,
}

impl Evaluation<'_> {
    /// Runs until the input closes (then the outputs close and the reactions drain) or a
    /// reaction fails.
    pub(super) async fn run(&mut self) -> Result<Ended, RunError> {
        let closed = || RunError::Reaction {
            id: String::new(),
            reason: "a reaction stopped taking batches".to_owned(),
        };
        if let Some(query) = self.query.as_deref_mut() {
            for batch in query.unacknowledged() {
                if !send_all(batch, &self.outputs).await {
                    return self.reaction_failed(closed()).await;
                }
            }
        }
        let (mut commands_open, mut endings_open) = (true, true);
        loop {
            let event = tokio::select! {
                biased;
                ended = self.endings.recv(), if endings_open => Event::ReactionEnded(ended),
                command = self.commands.recv(), if commands_open => Event::Command(command),
                batch = self.input.recv(), if !*self.paused => Event::Batch(batch),
                // Paused with nobody left to resume it: take input again.
                else => Event::Command(Some(Command::Resume(oneshot::channel().0))),
            };
            match event {
                Event::ReactionEnded(Some((_, Some(error)))) => {
                    return Ok(Ended::ReactionFailed(error));
                }
                Event::ReactionEnded(Some((_, None))) => {}
                // Every reaction has ended (all were removed): nothing more to hear.
                Event::ReactionEnded(None) => endings_open = false,
                Event::Command(None) => commands_open = false,
                Event::Command(Some(command)) => self.command(command),
                Event::Batch(None) => {
                    self.outputs.clear();
                    return Ok(Ended::Drained);
                }
                Event::Batch(Some(batch)) => {
                    let mut batches = vec![batch];
                    while batches.len() < GROUP_COMMIT {
                        match self.input.try_recv() {
                            Some(batch) => batches.push(batch),
                            None => break,
                        }
                    }
                    for result in self.process(batches)? {
                        if !send_all(result, &self.outputs).await {
                            return self.reaction_failed(closed()).await;
                        }
                    }
                }
            }
        }
    }

    /// An output closed: its reaction failed, and says why on `endings`.
    async fn reaction_failed(&mut self, fallback: RunError) -> Result<Ended, RunError> {
        self.outputs.clear();
        while let Some((_, failure)) = self.endings.recv().await {
            if let Some(error) = failure {
                return Ok(Ended::ReactionFailed(error));
            }
        }
        Ok(Ended::ReactionFailed(fallback))
    }

    /// The batches' results: evaluated, and durable, together.
    fn process(&mut self, batches: Vec<Batch>) -> Result<Vec<Batch>, RunError> {
        let Some(query) = self.query.as_deref_mut() else {
            return Ok(batches);
        };
        let id = query.query().id().to_string();
        let count = batches.len() as u64;
        let result =
            tokio::task::block_in_place(|| query.process_batches(batches)).map_err(|error| {
                let reason = chain(&error);
                self.launcher
                    .registry
                    .set(&id, State::Failed, Some(reason.clone()));
                RunError::query(&id, reason)
            })?;
        self.launcher.registry.progress_by(&id, count);
        Ok(result)
    }

    fn command(&mut self, command: Command) {
        // Each reply: the asker may have given up waiting; the command is carried out all the
        // same.
        match command {
            Command::Pause(reply) => {
                *self.paused = true;
                let _unasked = reply.send(());
            }
            Command::Resume(reply) => {
                *self.paused = false;
                let _unasked = reply.send(());
            }
            Command::Results(reply) => {
                let rows = self
                    .query
                    .as_deref()
                    .map(|q| q.query().result())
                    .unwrap_or_default();
                let _unasked = reply.send(rows);
            }
            Command::RemoveReaction(id, reply) => {
                self.outputs.remove(&id);
                self.reactions.retain(|spec| spec.id() != id);
                self.launcher.writers.remove(&id);
                self.launcher.holds.remove(&id);
                self.launcher.registry.remove(&id);
                tracing::info!(reaction = %id, "reaction removed; it drains what it holds");
                let _unasked = reply.send(());
            }
        }
    }
}

/// Sends `batch` to every output: forks to all but the last, which takes the batch itself.
/// False if an output is closed.
async fn send_all(batch: Batch, outputs: &BTreeMap<String, BatchSender>) -> bool {
    let mut outputs = outputs.values();
    let Some(last) = outputs.next_back() else {
        batch.ack.delivered();
        return true;
    };
    for output in outputs {
        if output.send(batch.fork()).await.is_err() {
            return false;
        }
    }
    last.send(batch).await.is_ok()
}
