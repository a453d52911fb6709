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
use serde_norway::{Mapping, Value};
use surefoot_core_lifecycle::{CancellationToken, TaskGroup};
use surefoot_query::TableSchema;
use surefoot_source_postgres::PostgresSourceConfig;
use tokio::sync::{mpsc, oneshot};

mod reactions;
mod replay;
mod sources;

use super::added::run_added;
use super::error::chain;
use super::fanout::FanOutCommand;
use super::plan::{catalog_of, query_segment};
use super::registry::Registry;
use super::segment::{Command, Holds, Launcher};
use super::source::SourceCommand;
use super::writers::Writers;
use crate::config::{self, Config, QueryConfig, ReactionConfig, SourceConfig};

/// How long a snapshot on demand is waited for before the API answers that it goes on.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);

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

    /// Copies every table of PostgreSQL source `id` again to every consumer (see
    /// `resnapshot`): the rows copied, or `None` if not finished within the wait (it goes on).
    pub async fn snapshot_source(&self, id: &str) -> Result<Option<u64>, Refusal> {
        let commands = self
            .inner
            .source_commands
            .get(id)
            .ok_or_else(|| Refusal::new(404, format!("no PostgreSQL source `{id}`")))?;
        let (reply, done) = oneshot::channel();
        let not_running = || Refusal::new(503, format!("source `{id}` is not running"));
        commands
            .send(SourceCommand::Snapshot(reply))
            .await
            .map_err(|_| not_running())?;
        match tokio::time::timeout(SNAPSHOT_WAIT, done).await {
            Ok(Ok(Ok(rows))) => Ok(Some(rows)),
            Ok(Ok(Err(reason))) => Err(Refusal::new(503, reason)),
            Ok(Err(_)) => Err(not_running()),
            Err(_) => Ok(None),
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

    /// Adds query `id` from `body` (YAML or JSON: `sql`, `sources`, `reactions`), validated like
    /// the file; it bootstraps from temporary slots and then streams.
    pub fn add_query(&self, id: &str, body: &str) -> Result<(), Refusal> {
        let mini = self.parse_query(id, body)?;
        self.check_names(&mini)?;
        let Some(query) = mini.queries.first().cloned() else {
            return Err(Refusal::new(422, "the body holds no query"));
        };
        let (tables, libraries) = self.sources();
        let read: Vec<String> = if query.sources.is_empty() {
            tables.keys().cloned().collect()
        } else {
            query.sources.clone()
        };
        let refs: Vec<&String> = read.iter().collect();
        let catalog = catalog_of(&tables, &refs);
        let state_path = runtime_dir(&self.inner.config.state_dir)
            .join("queries")
            .join(format!("{id}.redb"));
        remove_stale(&state_path)?;
        let launcher = Launcher {
            group: self.inner.work.clone(),
            registry: self.inner.registry.clone(),
            writers: self.inner.writers.clone(),
            holds: self.inner.holds.clone(),
        };
        let (segment, commands, input) =
            query_segment(&mini.reactions, &query, catalog, state_path, launcher)
                .map_err(|error| Refusal::new(422, format!("sql: {error}")))?;
        let own = CancellationToken::new();
        {
            let mut managed = self.managed();
            if managed.queries.contains_key(id) {
                return Err(Refusal::new(409, format!("query `{id}` exists")));
            }
            managed.segments.insert(id.to_owned(), commands);
            let entry = QueryEntry {
                config: query.clone(),
                runtime: Some(own.clone()),
            };
            managed.queries.insert(id.to_owned(), entry);
            for reaction in &mini.reactions {
                managed
                    .reactions
                    .insert(reaction.id().to_owned(), reaction.clone());
            }
        }
        let spawn_failed = |error: surefoot_core_lifecycle::SpawnError| {
            Refusal::new(503, format!("cannot start: {}", chain(&error)))
        };
        self.inner
            .work
            .spawn(format!("query-{id}"), |cancel| segment.run(cancel))
            .map_err(spawn_failed)?;
        for source in read {
            let Some(library) = libraries.get(&source).cloned() else {
                continue;
            };
            let (query, output, registry) =
                (id.to_owned(), input.clone(), self.inner.registry.clone());
            let (own, deadline) = (own.clone(), self.inner.stop_deadline);
            self.inner
                .sources
                .spawn(format!("source-{source}-for-{id}"), move |group| {
                    run_added(library, query, output, registry, [group, own], deadline)
                })
                .map_err(spawn_failed)?;
        }
        tracing::info!(query = %id, "query added; bootstrapping");
        Ok(())
    }

    /// The body as a one-query configuration, checked like the file.
    fn parse_query(&self, id: &str, body: &str) -> Result<Config, Refusal> {
        let parsed: Value = serde_norway::from_str(body)
            .map_err(|error| Refusal::new(422, format!("not valid YAML or JSON: {error}")))?;
        let Value::Mapping(mut query) = parsed else {
            return Err(Refusal::new(422, "the body must be a mapping"));
        };
        if let Some(given) = query.get("id").and_then(Value::as_str)
            && given != id
        {
            return Err(Refusal::new(
                422,
                format!("id: `{given}` is not the path's `{id}`"),
            ));
        }
        query.insert("id".into(), id.into());
        let reactions = query
            .remove("reactions")
            .unwrap_or(Value::Sequence(Vec::new()));
        // The sources are the running server's, not the document's: checked by `check_names`.
        let sources: Vec<String> = match query.remove("sources") {
            None | Some(Value::Null) => Vec::new(),
            Some(listed) => serde_norway::from_value(listed)
                .map_err(|error| Refusal::new(422, format!("sources: {error}")))?,
        };
        let mut document = Mapping::new();
        document.insert(
            "queries".into(),
            Value::Sequence(vec![Value::Mapping(query)]),
        );
        document.insert("reactions".into(), reactions);
        let mut api = Mapping::new();
        api.insert("listen".into(), Value::Null);
        document.insert("api".into(), Value::Mapping(api));
        let text = serde_norway::to_string(&Value::Mapping(document))
            .map_err(|error| Refusal::new(422, error.to_string()))?;
        let mut config =
            config::parse(&text, &|name| std::env::var(name).ok()).map_err(|problems| Refusal {
                status: 422,
                problems: problems
                    .list()
                    .iter()
                    .map(|problem| problem.to_string().replacen("queries[0].", "", 1))
                    .collect(),
            })?;
        if let Some(query) = config.queries.first_mut() {
            query.sources = sources;
        }
        Ok(config)
    }

    /// The new query's and reactions' ids are free, its sources exist, its reactions read it.
    fn check_names(&self, mini: &Config) -> Result<(), Refusal> {
        let mut problems = Vec::new();
        let (tables, libraries) = self.sources();
        let managed = self.managed();
        for query in &mini.queries {
            if managed.queries.contains_key(&query.id) || tables.contains_key(&query.id) {
                problems.push(format!("id: `{}` is taken", query.id));
            }
            for (n, source) in query.sources.iter().enumerate() {
                if !tables.contains_key(source) {
                    problems.push(format!("sources[{n}]: no source `{source}`"));
                } else if !libraries.contains_key(source) {
                    problems.push(format!(
                        "sources[{n}]: `{source}` has no snapshot to bootstrap from (a query \
                         added at runtime reads PostgreSQL sources only)"
                    ));
                }
            }
            if query.sources.is_empty() && libraries.len() != tables.len() {
                problems.push(
                    "sources: name them: a query added at runtime reads PostgreSQL sources only"
                        .to_owned(),
                );
            }
        }
        for (n, reaction) in mini.reactions.iter().enumerate() {
            if managed.reactions.contains_key(reaction.id()) {
                problems.push(format!("reactions[{n}].id: `{}` is taken", reaction.id()));
            }
        }
        drop(managed);
        let known: Vec<String> = mini.queries.iter().map(|q| q.id.clone()).collect();
        for (n, reaction) in mini.reactions.iter().enumerate() {
            if !known.iter().any(|id| id == reaction.from()) {
                problems.push(format!("reactions[{n}].from: must be the query"));
            }
        }
        let status = if problems.iter().any(|p| p.contains("is taken")) {
            409
        } else {
            422
        };
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Refusal { status, problems })
        }
    }

    /// Removes a query and its reactions: its input closes, it drains, its tasks end.
    pub async fn remove_query(&self, id: &str) -> Result<(), Refusal> {
        let (entry, fan_outs, reactions) = {
            let mut managed = self.managed();
            let entry = managed
                .queries
                .remove(id)
                .ok_or_else(|| Refusal::new(404, format!("no query `{id}`")))?;
            managed.segments.remove(id);
            let reactions: Vec<String> = managed
                .reactions
                .iter()
                .filter(|(_, r)| r.from() == id)
                .map(|(rid, _)| rid.clone())
                .collect();
            for reaction in &reactions {
                managed.reactions.remove(reaction);
            }
            (entry, managed.fan_outs.clone(), reactions)
        };
        match &entry.runtime {
            Some(own) => own.cancel(),
            None => {
                for fan_out in fan_outs.values() {
                    let (reply, done) = oneshot::channel();
                    if fan_out
                        .send(FanOutCommand::Remove(id.to_owned(), reply))
                        .await
                        .is_ok()
                    {
                        // A fan-out that ended has no consumer left to remove.
                        let _ended = done.await;
                    }
                }
            }
        }
        self.inner.registry.remove(id);
        for reaction in reactions {
            self.inner.registry.remove(&reaction);
            self.inner.writers.remove(&reaction);
        }
        tracing::info!(query = %id, "query removed; it drains what it holds");
        Ok(())
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
