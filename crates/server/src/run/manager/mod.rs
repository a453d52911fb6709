//! Components created and removed while the server runs, through the API. One lock
//! (`Managed`), never held across an `.await`.
//!
//! Queries added at runtime bootstrap from temporary slots of their own (see `added`) and keep
//! their state under `<state_dir>/runtime/`, which a start clears: they last until the process
//! stops. Put a query in the file to keep it across restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value as Json, json};
use surefoot_core_lifecycle::{CancellationToken, TaskGroup};
use surefoot_query::TableSchema;
use surefoot_source_postgres::PostgresSourceConfig;
use tokio::sync::{mpsc, oneshot};

mod body;
mod queries;
mod reactions;
mod replay;
mod snapshot;
mod sources;

use super::fanout::FanOutCommand;
use super::registry::Registry;
use super::segment::{Command, Holds};
use super::source::SourceCommand;
use super::writers::Writers;
use crate::config::{Config, QueryConfig, ReactionConfig, SourceConfig};

/// What went wrong with a management request: the HTTP status to answer and the problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 404, 409, 422 or 503.
    pub status: u16,
    /// Each problem, `path: message` where there is a path.
    pub problems: Vec<String>,
}

impl Refusal {
    fn new(status: u16, problem: impl Into<String>) -> Self {
        Self {
            status,
            problems: vec![problem.into()],
        }
    }
}

/// A query the manager knows.
#[derive(Debug, Clone)]
struct QueryEntry {
    config: QueryConfig,
    /// Cancels the temporary-slot sources of a query added at runtime; `None` for the file's.
    runtime: Option<CancellationToken>,
}

#[derive(Debug, Default)]
struct Managed {
    /// Commands to each segment, by query id (or source id, for a source's own reactions).
    segments: BTreeMap<String, mpsc::Sender<Command>>,
    /// Commands to each source's fan-out.
    fan_outs: BTreeMap<String, mpsc::Sender<FanOutCommand>>,
    queries: BTreeMap<String, QueryEntry>,
    reactions: BTreeMap<String, ReactionConfig>,
    /// PostgreSQL sources added through the API: their settings, tables and configuration.
    sources: BTreeMap<String, sources::RuntimeSource>,
}

/// The running pipeline's components, for the API.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    managed: Mutex<Managed>,
    config: Config,
    tables: BTreeMap<String, Vec<TableSchema>>,
    libraries: BTreeMap<String, PostgresSourceConfig>,
    source_commands: BTreeMap<String, mpsc::Sender<SourceCommand>>,
    registry: Registry,
    writers: Writers,
    holds: Holds,
    work: TaskGroup,
    sources: TaskGroup,
    stop_deadline: Duration,
}

/// Everything the manager starts from.
#[derive(Debug)]
pub(crate) struct ManagerParts {
    pub(crate) config: Config,
    pub(crate) tables: BTreeMap<String, Vec<TableSchema>>,
    pub(crate) libraries: BTreeMap<String, PostgresSourceConfig>,
    pub(crate) segments: BTreeMap<String, mpsc::Sender<Command>>,
    pub(crate) fan_outs: BTreeMap<String, mpsc::Sender<FanOutCommand>>,
    pub(crate) source_commands: BTreeMap<String, mpsc::Sender<SourceCommand>>,
    pub(crate) registry: Registry,
    pub(crate) writers: Writers,
    pub(crate) holds: Holds,
    pub(crate) work: TaskGroup,
    pub(crate) sources: TaskGroup,
    pub(crate) stop_deadline: Duration,
}

impl Manager {
    pub(crate) fn new(parts: ManagerParts) -> Self {
        let managed = Managed {
            segments: parts.segments,
            fan_outs: parts.fan_outs,
            queries: parts
                .config
                .queries
                .iter()
                .map(|q| {
                    let entry = QueryEntry {
                        config: q.clone(),
                        runtime: None,
                    };
                    (q.id.clone(), entry)
                })
                .collect(),
            reactions: parts
                .config
                .reactions
                .iter()
                .map(|r| (r.id().to_owned(), r.clone()))
                .collect(),
            sources: BTreeMap::new(),
        };
        Self {
            inner: Arc::new(Inner {
                managed: Mutex::new(managed),
                config: parts.config,
                tables: parts.tables,
                libraries: parts.libraries,
                source_commands: parts.source_commands,
                registry: parts.registry,
                writers: parts.writers,
                holds: parts.holds,
                work: parts.work,
                sources: parts.sources,
                stop_deadline: parts.stop_deadline,
            }),
        }
    }

    fn managed(&self) -> MutexGuard<'_, Managed> {
        self.inner
            .managed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Where to send a query's commands.
    pub(crate) fn commands(&self, query: &str) -> Option<mpsc::Sender<Command>> {
        let managed = self.managed();
        managed
            .queries
            .contains_key(query)
            .then(|| managed.segments.get(query).cloned())
            .flatten()
    }

    /// Stops (`start` false) or starts a PostgreSQL source; answers once done.
    pub async fn source_command(&self, id: &str, start: bool) -> Result<(), Refusal> {
        let commands = self
            .inner
            .source_commands
            .get(id)
            .ok_or_else(|| Refusal::new(404, format!("no PostgreSQL source `{id}`")))?;
        let (reply, done) = oneshot::channel();
        let command = if start {
            SourceCommand::Start(reply)
        } else {
            SourceCommand::Stop(reply)
        };
        let not_running = || Refusal::new(503, format!("source `{id}` is not running"));
        commands.send(command).await.map_err(|_| not_running())?;
        match tokio::time::timeout(self.inner.stop_deadline * 2, done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(Refusal::new(503, reason)),
            Ok(Err(_)) => Err(not_running()),
            Err(_) => Err(Refusal::new(
                504,
                format!("source `{id}` did not answer in time"),
            )),
        }
    }

    /// Names of every live task: the pipeline's and the sources'.
    pub fn tasks(&self) -> Vec<String> {
        let mut names = self.inner.work.live_task_names();
        names.extend(self.inner.sources.live_task_names());
        names.sort();
        names
    }

    /// A component's settings (never its secrets) and state, if it exists.
    pub fn describe(&self, kind: &str, id: &str) -> Option<Json> {
        let view = self
            .inner
            .registry
            .views()
            .into_iter()
            .find(|view| view.id == id);
        let settings = match kind {
            "sources" => {
                let runtime = self.managed().sources.get(id).map(|s| s.config.clone());
                let file = self
                    .inner
                    .config
                    .sources
                    .iter()
                    .find(|s| s.id() == id)
                    .cloned();
                file.or(runtime.map(SourceConfig::Postgres))
                    .map(|s| match s {
                        SourceConfig::Postgres(pg) => json!({ "kind": "postgres", "id": pg.id,
                        "host": pg.host, "port": pg.port, "user": pg.user,
                        "database": pg.database, "slot": pg.slot_name(),
                        "publication": pg.publication_name(), "tables": pg.tables,
                        "bootstrap": pg.bootstrap }),
                        SourceConfig::Http(http) => json!({ "kind": "http", "id": http.id,
                        "listen": http.listen.to_string(),
                        "tables": http.tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>() }),
                    })
            }
            "queries" => self.managed().queries.get(id).map(|q| {
                json!({ "id": q.config.id, "sql": q.config.sql, "sources": q.config.sources,
                    "runtime": q.runtime.is_some() })
            }),
            "reactions" => self.managed().reactions.get(id).map(|r| match r {
                ReactionConfig::Postgres(pg) => json!({ "kind": "postgres", "id": pg.id,
                    "from": pg.from, "target": pg.target, "max_rows": pg.max_rows }),
                ReactionConfig::Log(log) => {
                    json!({ "kind": "log", "id": log.id, "from": log.from })
                }
                ReactionConfig::Redis(redis) => json!({ "kind": "redis", "id": redis.id,
                    "from": redis.from, "url": redis.url.to_string(), "stream": redis.stream }),
                ReactionConfig::Webhook(hook) => json!({ "kind": "webhook", "id": hook.id,
                    "from": hook.from, "url": hook.url.to_string() }),
            }),
            _ => None,
        }?;
        if kind == "reactions" {
            let hold = self.inner.holds.get(id);
            return Some(json!({ "settings": settings, "status": view, "hold": hold }));
        }
        Some(json!({ "settings": settings, "status": view }))
    }

    /// Removes a reaction: its input closes, it drains, its task ends.
    pub async fn remove_reaction(&self, id: &str) -> Result<(), Refusal> {
        let (segment, reaction) = {
            let managed = self.managed();
            let reaction = managed
                .reactions
                .get(id)
                .cloned()
                .ok_or_else(|| Refusal::new(404, format!("no reaction `{id}`")))?;
            (managed.segments.get(reaction.from()).cloned(), reaction)
        };
        let not_running = || Refusal::new(503, format!("the segment of `{id}` is not running"));
        let segment = segment.ok_or_else(not_running)?;
        let (reply, done) = oneshot::channel();
        segment
            .send(Command::RemoveReaction(reaction.id().to_owned(), reply))
            .await
            .map_err(|_| not_running())?;
        done.await.map_err(|_| not_running())?;
        self.managed().reactions.remove(id);
        Ok(())
    }
}

/// The sources `query` reads (every source when it names none) and the catalog of their
/// tables.
fn read_by(
    query: &QueryConfig,
    tables: &BTreeMap<String, Vec<TableSchema>>,
) -> (Vec<String>, surefoot_query::Catalog) {
    let read: Vec<String> = if query.sources.is_empty() {
        tables.keys().cloned().collect()
    } else {
        query.sources.clone()
    };
    let refs: Vec<&String> = read.iter().collect();
    let catalog = super::plan::catalog_of(tables, &refs);
    (read, catalog)
}

/// Where components created at runtime keep their state.
pub(crate) fn runtime_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("runtime")
}

fn remove_stale(path: &std::path::Path) -> Result<(), Refusal> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Refusal::new(503, format!("{}: {error}", path.display()))),
    }
}
