//! A segment: one query (or none, for reactions fed by a source) and the reactions fed by it,
//! run in one task. A reaction that fails ends the attempt: the query's store is closed and
//! reopened, its unacknowledged result batches are sent again, and the source redelivers what
//! was not delivered (the failed batches' tokens say so), which the query skips by position.

use std::path::PathBuf;
use std::time::Duration;

mod drive;
mod evaluate;
mod hold;
mod join;
mod reaction;

use std::collections::BTreeMap;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{BatchReceiver, Row};
use surefoot_query::{Catalog, DurableQuery};
use tokio::sync::{mpsc, oneshot};

use super::error::{RunError, chain};
use super::registry::{Registry, State};
use evaluate::Evaluation;
pub use hold::{Hold, Holds};
pub(crate) use reaction::{Launcher, ReactionSpec};

/// Waits between attempts.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A query as a segment runs it.
#[derive(Debug, Clone)]
pub(crate) struct QuerySpec {
    pub(crate) id: String,
    pub(crate) sql: String,
    pub(crate) catalog: Catalog,
    pub(crate) state_path: PathBuf,
}

/// What the API asks of a segment.
#[derive(Debug)]
pub(crate) enum Command {
    /// The query's current result.
    Results(oneshot::Sender<Result<Vec<Row>, String>>),
    /// Stop taking input (what was taken is finished; the source holds the rest), then reply.
    Pause(oneshot::Sender<()>),
    /// Take input again, then reply.
    Resume(oneshot::Sender<()>),
    /// Remove a reaction: its input closes, it drains and its task ends; then reply.
    RemoveReaction(String, oneshot::Sender<()>),
    /// Send the current result of the keys of these rows again (see `DurableQuery::refresh`);
    /// reply with the batch's last sequence, `None` when no row had the query's key.
    Refresh(Vec<Row>, oneshot::Sender<Result<Option<u64>, String>>),
    /// Add a reaction, which joins with a snapshot of the result; then reply.
    AddReaction(Box<ReactionSpec>, oneshot::Sender<Result<(), String>>),
}

/// A segment's task.
#[derive(Debug)]
pub(crate) struct SegmentTask {
    pub(crate) query: Option<QuerySpec>,
    pub(crate) reactions: Vec<ReactionSpec>,
    pub(crate) input: BatchReceiver,
    pub(crate) commands: mpsc::Receiver<Command>,
    /// Where its reactions are spawned, with the registry and the writers.
    pub(crate) launcher: Launcher,
    /// Reactions added while it runs, with the sequence through which each holds the result.
    pub(crate) joined: BTreeMap<String, u64>,
}

/// How an attempt ended.
enum Ended {
    /// The input closed and every reaction drained: the segment is done.
    Drained,
    /// A reaction failed: try again.
    ReactionFailed(RunError),
}

impl SegmentTask {
    /// Runs attempts until the input closes (the sources stopped) and the reactions drained.
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), RunError> {
        let mut paused = false;
        loop {
            match self.attempt(&mut paused, &cancel).await {
                Ok(Ended::Drained) => {
                    for id in self.ids() {
                        self.launcher.registry.set(&id, State::Stopped, None);
                    }
                    return Ok(());
                }
                Ok(Ended::ReactionFailed(error)) | Err(error) => {
                    let permanent = matches!(error, RunError::Query { .. });
                    tracing::error!(%error, permanent, "segment attempt ended");
                    if permanent {
                        // The input is held, not read: the source keeps what the query did
                        // not take (its slot holds the WAL) until the stop.
                        cancel.cancelled().await;
                        return Err(error);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_AFTER) => {}
                () = cancel.cancelled() => return Ok(()),
            }
        }
    }

    fn ids(&self) -> Vec<String> {
        let query = self.query.iter().map(|q| q.id.clone());
        query
            .chain(self.reactions.iter().map(|r| r.id().to_owned()))
            .collect()
    }

    async fn attempt(
        &mut self,
        paused: &mut bool,
        cancel: &CancellationToken,
    ) -> Result<Ended, RunError> {
        let (ended, mut endings) = mpsc::unbounded_channel();
        let mut outputs = BTreeMap::new();
        for spec in &self.reactions {
            match self.launcher.launch(spec, &ended, cancel).await? {
                Some(output) => outputs.insert(spec.id().to_owned(), output),
                None => return Ok(Ended::Drained),
            };
        }
        let opened = match &self.query {
            Some(spec) => open_query(spec, &self.launcher.registry).map(Some),
            None => Ok(None),
        };
        let result = match opened {
            Ok(mut query) => {
                let mut loop_state = Evaluation {
                    query: query.as_mut(),
                    input: &mut self.input,
                    commands: &mut self.commands,
                    outputs,
                    endings: &mut endings,
                    paused,
                    reactions: &mut self.reactions,
                    launcher: &self.launcher,
                    joined: &mut self.joined,
                    ended: ended.clone(),
                    cancel,
                };
                loop_state.run().await
            }
            Err(error) => {
                drop(outputs);
                Err(error)
            }
        };
        drop(ended);
        // Every reaction task has ended before the next attempt reuses their names.
        while endings.recv().await.is_some() {}
        result
    }
}

fn open_query(spec: &QuerySpec, registry: &Registry) -> Result<DurableQuery, RunError> {
    if let Some(dir) = spec.state_path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|error| RunError::State(format!("{}: {error}", dir.display())))?;
    }
    let opened = tokio::task::block_in_place(|| {
        DurableQuery::open(&spec.state_path, &spec.id, &spec.sql, &spec.catalog)
    });
    match opened {
        Ok(query) => {
            registry.set(&spec.id, State::Running, None);
            Ok(query)
        }
        Err(error) => {
            let reason = chain(&error);
            registry.set(&spec.id, State::Failed, Some(reason.clone()));
            Err(RunError::query(&spec.id, reason))
        }
    }
}
