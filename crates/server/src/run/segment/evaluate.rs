//! The segment's loop: what the last run left unacknowledged first, then every input batch
//! through the query to the reactions, with commands answered between batches.

use std::collections::BTreeMap;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Batch, BatchReceiver, BatchSender, Row};
use surefoot_query::DurableQuery;
use tokio::sync::{mpsc, oneshot};

use super::join::{join, receivers, sequence_of, snapshot};
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
    /// Reactions added while the segment runs (see `join`).
    pub(super) joined: &'a mut BTreeMap<String, u64>,
    /// Where a reaction launched by a command reports its end.
    pub(super) ended: mpsc::UnboundedSender<ReactionEnded>,
    pub(super) cancel: &'a CancellationToken,
}

impl Evaluation<'_> {
    /// Runs until the input closes (then the outputs close and the reactions drain) or a
    /// reaction fails.
    pub(super) async fn run(&mut self) -> Result<Ended, RunError> {
        let closed = || RunError::Reaction {
            id: String::new(),
            reason: "a reaction stopped taking batches".to_owned(),
        };
        let joining: Vec<String> = self.joined.keys().cloned().collect();
        for id in joining {
            if !self.join(&id).await {
                return self.reaction_failed(closed()).await;
            }
        }
        if let Some(query) = self.query.as_deref_mut() {
            for batch in query.unacknowledged() {
                if !send_all(batch, &self.outputs, self.joined).await {
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
                Event::Command(Some(Command::AddReaction(spec, reply))) => {
                    if !self.add_reaction(*spec, reply).await {
                        return self.reaction_failed(closed()).await;
                    }
                }
                Event::Command(Some(Command::Refresh(rows, reply))) => {
                    if !self.refresh(rows, reply).await {
                        return self.reaction_failed(closed()).await;
                    }
                }
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
                        if !send_all(result, &self.outputs, self.joined).await {
                            return self.reaction_failed(closed()).await;
                        }
                    }
                }
            }
        }
    }

    /// Sends reaction `id` its snapshot (see `join`); false if its output closed.
    async fn join(&mut self, id: &str) -> bool {
        let (Some(query), Some(output)) = (self.query.as_deref(), self.outputs.get(id)) else {
            return true;
        };
        let snapshot = match snapshot(query) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let query_id = query.query().id().to_string();
                let reason = format!("the current result for reaction `{id}`: {error}");
                tracing::error!(query = %query_id, %reason, "the query cannot join a reaction");
                self.launcher
                    .registry
                    .set(&query_id, State::Failed, Some(reason));
                return false;
            }
        };
        match join(id, snapshot, output, &self.launcher.writers).await {
            Some(held) => {
                self.joined.insert(id.to_owned(), held);
                true
            }
            None => false,
        }
    }

    /// Sends the current result of the keys of `rows` again to every reaction; false if an
    /// output closed.
    async fn refresh(
        &mut self,
        rows: Vec<Row>,
        reply: oneshot::Sender<Result<Option<u64>, String>>,
    ) -> bool {
        let Some(query) = self.query.as_deref_mut() else {
            let _unasked = reply.send(Err(
                "a source's own reactions have no query to refresh from".to_owned(),
            ));
            return true;
        };
        let keys: Vec<Row> = rows
            .iter()
            .filter_map(|row| query.query().key_of(row))
            .collect();
        let id = query.query().id().to_string();
        let refreshed = tokio::task::block_in_place(|| query.refresh(&keys));
        let batch = match refreshed {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                let _unasked = reply.send(Ok(None));
                return true;
            }
            Err(error) => {
                let reason = chain(&error);
                self.launcher
                    .registry
                    .set(&id, State::Failed, Some(reason.clone()));
                let _unasked = reply.send(Err(reason));
                return true;
            }
        };
        let last = sequence_of(batch.last);
        tracing::info!(query = %id, keys = keys.len(), sequence = last, "current rows of dead-lettered keys sent again");
        let sent = send_all(batch, &self.outputs, self.joined).await;
        // The asker may have given up waiting; the batch is sent all the same.
        let _unasked = reply.send(Ok(Some(last)));
        sent
    }

    /// Launches a reaction added through the API and joins it; false if an output closed.
    async fn add_reaction(
        &mut self,
        spec: ReactionSpec,
        reply: oneshot::Sender<Result<(), String>>,
    ) -> bool {
        let id = spec.id().to_owned();
        if self.query.is_none() {
            let _unasked = reply.send(Err("a reaction added at runtime reads a query".to_owned()));
            return true;
        }
        let launched = self.launcher.launch(&spec, &self.ended, self.cancel).await;
        let output = match launched {
            Ok(Some(output)) => output,
            Ok(None) => {
                let _unasked = reply.send(Err("the server is stopping".to_owned()));
                return true;
            }
            Err(error) => {
                let _unasked = reply.send(Err(chain(&error)));
                return true;
            }
        };
        self.outputs.insert(id.clone(), output);
        self.reactions.push(spec);
        self.joined.insert(id.clone(), 0);
        let joined = self.join(&id).await;
        tracing::info!(reaction = %id, "reaction added");
        // The asker may have given up waiting; the reaction is added all the same.
        let _unasked = reply.send(Ok(()));
        joined
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
                let rows = match self.query.as_deref() {
                    Some(query) => query.query().result().map_err(|error| {
                        tracing::error!(query = %query.query().id(), %error,
                            "the query's current result could not be evaluated");
                        error.to_string()
                    }),
                    None => Ok(Vec::new()),
                };
                let _unasked = reply.send(rows);
            }
            Command::Refresh(_, reply) => {
                // Carried out by `refresh`: it needs to wait.
                let _unasked = reply.send(Err("not refreshed".to_owned()));
            }
            Command::AddReaction(spec, reply) => {
                // Carried out by `add_reaction`: it needs to wait.
                let _unasked = reply.send(Err(format!("`{}` not added", spec.id())));
            }
            Command::RemoveReaction(id, reply) => {
                self.outputs.remove(&id);
                self.joined.remove(&id);
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

/// Sends `batch` to every output but those of reactions that joined after it: forks to all
/// but the last, which takes the batch itself. False if an output is closed.
async fn send_all(
    batch: Batch,
    outputs: &BTreeMap<String, BatchSender>,
    joined: &BTreeMap<String, u64>,
) -> bool {
    let receivers = receivers(outputs, joined, batch.last);
    let mut outputs = receivers.into_iter();
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
