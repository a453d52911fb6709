//! PostgreSQL sources added through the API. One added at runtime streams no slot of its own:
//! nothing in the file reads it, and each query added at runtime reads it from a temporary slot
//! of the query's own (see `added`). Its tables are discovered when it is added, so a query over
//! them is checked like the file's. It lasts until the process stops; put it in the file to
//! keep it.

use std::collections::BTreeMap;

use surefoot_query::TableSchema;
use surefoot_source_postgres::PostgresSourceConfig;

use super::{Manager, Refusal, body};
use crate::config::{PostgresSource, SourceConfig};
use crate::run::discover::discover;
use crate::run::error::chain;
use crate::run::plan::source_config;
use crate::run::registry::{Kind, State};

/// A source added through the API.
#[derive(Debug, Clone)]
pub(super) struct RuntimeSource {
    /// As given (its secrets redacted wherever shown).
    pub(super) config: PostgresSource,
    library: PostgresSourceConfig,
    tables: Vec<TableSchema>,
}

/// Every source's tables, and the PostgreSQL sources' settings, by id.
type Sources = (
    BTreeMap<String, Vec<TableSchema>>,
    BTreeMap<String, PostgresSourceConfig>,
);

impl Manager {
    /// The file's sources and those added at runtime.
    pub(super) fn sources(&self) -> Sources {
        let (mut tables, mut libraries) = (self.inner.tables.clone(), self.inner.libraries.clone());
        for (id, source) in &self.managed().sources {
            tables.insert(id.clone(), source.tables.clone());
            libraries.insert(id.clone(), source.library.clone());
        }
        (tables, libraries)
    }

    /// Adds PostgreSQL source `id` from `body` (YAML or JSON, as in the file's `sources`),
    /// validated like the file; its tables are read from its server before the answer.
    pub async fn add_source(&self, id: &str, body: &str) -> Result<(), Refusal> {
        let source = parse_source(id, body)?;
        let (tables, _) = self.sources();
        if tables.contains_key(id) || self.managed().queries.contains_key(id) {
            return Err(Refusal::new(409, format!("id: `{id}` is taken")));
        }
        let library = source_config(&source).map_err(|error| Refusal::new(422, chain(&error)))?;
        let discovered = discover(&library, &source.tables)
            .await
            .map_err(|error| Refusal::new(422, chain(&error)))?;
        let added = RuntimeSource {
            config: source,
            library,
            tables: discovered,
        };
        {
            let mut managed = self.managed();
            if managed.sources.contains_key(id) {
                return Err(Refusal::new(409, format!("id: `{id}` is taken")));
            }
            managed.sources.insert(id.to_owned(), added);
        }
        self.inner.registry.add(id, Kind::Source);
        let detail =
            "added at runtime: queries added at runtime read it, each from a slot of its own";
        self.inner
            .registry
            .set(id, State::Running, Some(detail.to_owned()));
        tracing::info!(source = %id, "source added");
        Ok(())
    }

    /// Removes source `id`, added at runtime, when no query reads it.
    pub fn remove_source(&self, id: &str) -> Result<(), Refusal> {
        if self.inner.tables.contains_key(id) {
            return Err(Refusal::new(
                409,
                format!("source `{id}` is in the file: remove it there"),
            ));
        }
        let mut managed = self.managed();
        if !managed.sources.contains_key(id) {
            return Err(Refusal::new(404, format!("no source `{id}`")));
        }
        let readers: Vec<String> = managed
            .queries
            .values()
            .filter(|entry| entry.config.sources.iter().any(|source| source == id))
            .map(|entry| entry.config.id.clone())
            .collect();
        if !readers.is_empty() {
            return Err(Refusal::new(
                409,
                format!(
                    "source `{id}` is read by {}: remove them first",
                    readers.join(", ")
                ),
            ));
        }
        managed.sources.remove(id);
        drop(managed);
        self.inner.registry.remove(id);
        tracing::info!(source = %id, "source removed");
        Ok(())
    }
}

/// The body as a one-source configuration, checked like the file.
fn parse_source(id: &str, body: &str) -> Result<PostgresSource, Refusal> {
    let source = body::mapping_with_id(id, body)?;
    let config = body::parse_as_file(vec![("sources", body::one(source))], "sources[0].")?;
    match config.sources.into_iter().next() {
        Some(SourceConfig::Postgres(source)) => Ok(source),
        Some(SourceConfig::Http(_)) => Err(Refusal::new(
            422,
            "kind: only PostgreSQL sources are added at runtime (an HTTP source needs a listener in the file)",
        )),
        None => Err(Refusal::new(422, "the body holds no source")),
    }
}
