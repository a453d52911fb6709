//! Queries through the API: added at runtime (bootstrapped from temporary slots of their own,
//! see `added`) and removed.

use serde_norway::Value;
use surefoot_core_lifecycle::CancellationToken;
use tokio::sync::oneshot;

use super::{Manager, QueryEntry, Refusal, body, read_by, remove_stale, runtime_dir};
use crate::config::Config;
use crate::run::added::run_added;
use crate::run::error::chain;
use crate::run::fanout::FanOutCommand;
use crate::run::plan::query_segment;
use crate::run::segment::Launcher;

impl Manager {
    /// Adds query `id` from `body` (YAML or JSON: `sql`, `sources`, `reactions`), validated like
    /// the file; it bootstraps from temporary slots and then streams.
    pub fn add_query(&self, id: &str, body: &str) -> Result<(), Refusal> {
        let mini = self.parse_query(id, body)?;
        self.check_names(&mini)?;
        let Some(query) = mini.queries.first().cloned() else {
            return Err(Refusal::new(422, "the body holds no query"));
        };
        let (tables, libraries) = self.sources();
        let (read, catalog) = read_by(&query, &tables);
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
        let mut query = body::mapping_with_id(id, body)?;
        let reactions = query
            .remove("reactions")
            .unwrap_or(Value::Sequence(Vec::new()));
        // The sources are the running server's, not the document's: checked by `check_names`.
        let sources: Vec<String> = match query.remove("sources") {
            None | Some(Value::Null) => Vec::new(),
            Some(listed) => serde_norway::from_value(listed)
                .map_err(|error| Refusal::new(422, format!("sources: {error}")))?,
        };
        let sections = vec![("queries", body::one(query)), ("reactions", reactions)];
        let mut config = body::parse_as_file(sections, "queries[0].")?;
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
}
