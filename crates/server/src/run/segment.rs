//! A segment: one query (or none, for reactions fed by a source) and the reactions fed by it,
//! run in one task. A reaction that fails ends the attempt: the query's store is closed and
//! reopened, its unacknowledged result batches are sent again, and the source redelivers what
//! was not delivered (the failed batches' tokens say so), which the query skips by position.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::try_join_all;
use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{Batch, BatchReceiver, BatchSender, Row, batch_channel};
use surefoot_query::{Catalog, DurableQuery};
use surefoot_sink_postgres_writer::{PostgresWriter, WriterConfig};
use tokio::sync::{mpsc, oneshot};

use super::error::{RunError, chain};
use super::registry::{Registry, State};

/// Waits between attempts.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Batches between a segment's query and each of its reactions.
const REACTION_QUEUE: usize = 64;

/// A query as a segment runs it.
#[derive(Debug, Clone)]
pub(crate) struct QuerySpec {
    pub(crate) id: String,
    pub(crate) sql: String,
    pub(crate) catalog: Catalog,
    pub(crate) state_path: PathBuf,
}

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
}

impl ReactionSpec {
    pub(crate) fn id(&self) -> &str {
        match self {
            ReactionSpec::Postgres { id, .. } | ReactionSpec::Log { id } => id,
        }
    }
}

/// What the API asks of a segment.
#[derive(Debug)]
pub(crate) enum Command {
    /// The query's current result.
    Results(oneshot::Sender<Vec<Row>>),
    /// Stop taking input (what was taken is finished; the source holds the rest), then reply.
    Pause(oneshot::Sender<()>),
    /// Take input again, then reply.
    Resume(oneshot::Sender<()>),
}

/// A segment's task.
#[derive(Debug)]
pub(crate) struct SegmentTask {
    pub(crate) query: Option<QuerySpec>,
    pub(crate) reactions: Vec<ReactionSpec>,
    pub(crate) input: BatchReceiver,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) registry: Registry,
    /// Writers connected, shared with readiness.
    pub(crate) writers: super::Writers,
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
                        self.registry.set(&id, State::Stopped, None);
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
        let mut outputs = Vec::new();
        let mut runs: Vec<ReactionRun> = Vec::new();
        for spec in &self.reactions {
            let (output, input) = batch_channel(REACTION_QUEUE);
            let Some(run) = self.connect(spec, input, cancel).await else {
                return Ok(Ended::Drained);
            };
            outputs.push(output);
            runs.push(run);
        }
        let mut query = match &self.query {
            Some(spec) => Some(open_query(spec, &self.registry)?),
            None => None,
        };
        let id = self.ids().join("+");
        let reactions = try_join_all(runs);
        tokio::pin!(reactions);
        let evaluation = evaluate(
            query.as_mut(),
            &mut self.input,
            &mut self.commands,
            outputs,
            paused,
            &self.registry,
            &id,
        );
        tokio::pin!(evaluation);
        tokio::select! {
            ended = &mut evaluation => match ended {
                Ok(()) => match reactions.await {
                    Ok(_) => Ok(Ended::Drained),
                    Err(error) => Ok(Ended::ReactionFailed(error)),
                },
                Err(error @ RunError::Query { .. }) => Err(error),
                // An output closed: its reaction failed, and says why.
                Err(error) => Ok(Ended::ReactionFailed(reactions.await.err().unwrap_or(error))),
            },
            failed = &mut reactions => Ok(Ended::ReactionFailed(failed.err().unwrap_or_else(|| {
                RunError::reaction(&id, "a reaction ended while its input was open")
            }))),
        }
    }

    /// Connects the reaction (retrying until it connects or `cancel`) and returns its run.
    async fn connect(
        &self,
        spec: &ReactionSpec,
        mut input: BatchReceiver,
        cancel: &CancellationToken,
    ) -> Option<ReactionRun> {
        let id = spec.id().to_owned();
        let registry = self.registry.clone();
        match spec {
            ReactionSpec::Log { .. } => {
                registry.set(&id, State::Running, None);
                Some(Box::pin(async move {
                    while let Some(batch) = input.recv().await {
                        for change in batch.changes.iter() {
                            tracing::info!(reaction = %id, source = %batch.source, ?change, "change");
                        }
                        registry.progress(&id);
                        batch.ack.delivered();
                    }
                    Ok(())
                }))
            }
            ReactionSpec::Postgres { config, .. } => {
                let writer = loop {
                    match PostgresWriter::builder((**config).clone()).connect().await {
                        Ok(writer) => break writer,
                        Err(error) => {
                            let reason = chain(&error);
                            tracing::warn!(reaction = %id, %reason, "writer could not connect; retrying");
                            registry.set(&id, State::Failed, Some(reason));
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        () = cancel.cancelled() => return None,
                    }
                };
                registry.set(&id, State::Running, None);
                self.writers.insert(&id, writer.clone());
                // Never cancelled: at a stop the input closes and the writer drains it.
                let never = CancellationToken::new();
                Some(Box::pin(async move {
                    match writer.run(input, never).await {
                        Ok(()) => Ok(()),
                        Err(error) => {
                            let reason = chain(&error);
                            registry.set(&id, State::Failed, Some(reason.clone()));
                            Err(RunError::reaction(&id, reason))
                        }
                    }
                }))
            }
        }
    }
}

type ReactionRun = std::pin::Pin<Box<dyn Future<Output = Result<(), RunError>> + Send>>;

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

/// Sends `batch` to every output: forks to all but the last, which takes the batch itself.
async fn send_all(batch: Batch, outputs: &[BatchSender]) -> Result<(), ()> {
    let Some((last, rest)) = outputs.split_last() else {
        batch.ack.delivered();
        return Ok(());
    };
    for output in rest {
        output.send(batch.fork()).await.map_err(|_| ())?;
    }
    last.send(batch).await.map_err(|_| ())
}

/// What the evaluation loop waits for.
enum Event {
    Command(Option<Command>),
    Batch(Option<Batch>),
}

/// Sends what the last run left unacknowledged, then evaluates every input batch and sends its
/// result to the reactions, answering commands between batches. Ends when the input closes.
async fn evaluate(
    mut query: Option<&mut DurableQuery>,
    input: &mut BatchReceiver,
    commands: &mut mpsc::Receiver<Command>,
    outputs: Vec<BatchSender>,
    paused: &mut bool,
    registry: &Registry,
    id: &str,
) -> Result<(), RunError> {
    let closed = |_| RunError::reaction(id, "a reaction stopped taking batches");
    if let Some(query) = query.as_deref_mut() {
        for batch in query.unacknowledged() {
            send_all(batch, &outputs).await.map_err(closed)?;
        }
    }
    let mut commands_open = true;
    loop {
        let event = tokio::select! {
            biased;
            command = commands.recv(), if commands_open => Event::Command(command),
            batch = input.recv(), if !*paused => Event::Batch(batch),
            // Paused with nobody left to resume it: take input again.
            else => Event::Command(Some(Command::Resume(oneshot::channel().0))),
        };
        match event {
            Event::Command(None) => commands_open = false,
            Event::Command(Some(Command::Pause(reply))) => {
                *paused = true;
                // The asker may have given up waiting: the segment is paused all the same.
                let _unasked = reply.send(());
            }
            Event::Command(Some(Command::Resume(reply))) => {
                *paused = false;
                let _unasked = reply.send(());
            }
            Event::Command(Some(Command::Results(reply))) => {
                let rows = query
                    .as_deref()
                    .map(|q| q.query().result())
                    .unwrap_or_default();
                // The asker may have given up waiting: nothing to tell it then.
                let _unasked = reply.send(rows);
            }
            Event::Batch(None) => return Ok(()),
            Event::Batch(Some(batch)) => {
                let result = match query.as_deref_mut() {
                    Some(query) => {
                        let id = query.query().id().to_string();
                        tokio::task::block_in_place(|| query.process(batch)).map_err(|error| {
                            let reason = chain(&error);
                            registry.set(&id, State::Failed, Some(reason.clone()));
                            RunError::query(&id, reason)
                        })?
                    }
                    None => Some(batch),
                };
                if let Some(query) = query.as_deref() {
                    registry.progress(&query.query().id().to_string());
                }
                if let Some(result) = result {
                    send_all(result, &outputs).await.map_err(closed)?;
                }
            }
        }
    }
}
