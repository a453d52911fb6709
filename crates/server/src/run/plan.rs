//! From a [`Config`] to the pipeline's tasks: each source's tables discovered, each query
//! planned over them, each reaction attached to what it reads, and the channels between.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_model::{BatchSender, TableRef, batch_channel};
use surefoot_query::{Catalog, ContinuousQuery, OUTPUT_SCHEMA, TableSchema};
use surefoot_reaction_queue::WebhookConfig;
use surefoot_sink_postgres_writer::{ApplyMode, TableConfig, WriterConfig};
use surefoot_source_postgres::{
    Identifier, PostgresSourceConfig, SlotName, TableName, setup::PublicationTables,
};
use tokio::sync::mpsc;

use super::discover::discover;
use super::error::{RunError, chain};
use super::http_source::HttpTask;
use super::late::{LateQuery, pending_path};
use super::registry::{Kind, Registry};
use super::segment::{Command, Holds, Launcher, QuerySpec, ReactionSpec, SegmentTask};
use super::snapshot::marker_path;
use super::source::SourceTask;
use super::writers::Writers;
use crate::config::{Config, HttpSource, PostgresSource, ReactionConfig, SourceConfig};
use surefoot_core_model::SourceId;
use surefoot_source_http::{Auth, HttpSourceConfig};

/// Batches between a source and each consumer.
const CONSUMER_QUEUE: usize = 64;

/// The pipeline's tasks, not yet started.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) sources: Vec<SourceTask>,
    pub(crate) http_sources: Vec<HttpTask>,
    /// Commands to each PostgreSQL source.
    pub(crate) source_commands: BTreeMap<String, mpsc::Sender<super::source::SourceCommand>>,
    /// Per source: its output's receiving end and the consumers' inputs.
    pub(crate) fan_outs: Vec<(
        String,
        surefoot_core_model::BatchReceiver,
        Consumers,
        super::skip::SkipReceiver,
    )>,
    pub(crate) segments: Vec<SegmentTask>,
    /// Commands to the segment of each query.
    pub(crate) commands: BTreeMap<String, mpsc::Sender<Command>>,
    pub(crate) registry: Registry,
    /// Each source's tables, as discovered.
    pub(crate) tables: BTreeMap<String, Vec<TableSchema>>,
    /// Each source's settings for the library.
    pub(crate) libraries: BTreeMap<String, PostgresSourceConfig>,
}

/// A source's consumers: each segment's key (query or source id) and input.
pub(crate) type Consumers = Vec<(String, BatchSender)>;

/// The source's settings for the library.
pub(crate) fn source_config(source: &PostgresSource) -> Result<PostgresSourceConfig, RunError> {
    let id = &source.id;
    let slot = SlotName::parse(&source.slot_name()).map_err(|e| RunError::source(id, chain(&e)))?;
    let publication = Identifier::parse("publication", &source.publication_name())
        .map_err(|e| RunError::source(id, chain(&e)))?;
    let mut config = PostgresSourceConfig::new(
        id.as_str(),
        source.host.as_str(),
        source.port,
        source.user.as_str(),
        source.database.as_str(),
        slot,
        publication,
    );
    config.password = source.password.clone();
    config.create_publication = source.create_publication;
    if !source.tables.is_empty() {
        let tables = source
            .tables
            .iter()
            .map(|t| TableName::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RunError::source(id, chain(&e)))?;
        config.tables = PublicationTables::Tables(tables);
    }
    Ok(config)
}

/// Plans the pipeline: connects to every source to read its tables.
pub(crate) async fn plan(
    config: &Config,
    registry: &Registry,
    writers: &Writers,
    holds: &Holds,
    group: &TaskGroup,
    stop_deadline: Duration,
) -> Result<Pipeline, RunError> {
    let mut tables: BTreeMap<String, Vec<TableSchema>> = BTreeMap::new();
    let mut source_configs = Vec::new();
    let mut http_configs = Vec::new();
    for source in &config.sources {
        match source {
            SourceConfig::Postgres(pg) => {
                let library = source_config(pg)?;
                tables.insert(pg.id.clone(), discover(&library, &pg.tables).await?);
                source_configs.push((pg.clone(), library));
            }
            SourceConfig::Http(http) => {
                tables.insert(http.id.clone(), http_tables(http)?);
                http_configs.push(http.clone());
            }
        }
    }
    let mut inputs: BTreeMap<String, Consumers> = BTreeMap::new();
    let mut segments = Vec::new();
    let mut commands = BTreeMap::new();
    let mut late_queries: BTreeMap<String, Vec<LateQuery>> = BTreeMap::new();
    for query in &config.queries {
        let read: Vec<&String> = if query.sources.is_empty() {
            tables.keys().collect()
        } else {
            query.sources.iter().collect()
        };
        let catalog = catalog_of(&tables, &read);
        let state_path = config
            .state_dir
            .join("queries")
            .join(format!("{}.redb", query.id));
        let late = check_bootstrap_state(config, &read, &query.id, &state_path)?;
        let launcher = Launcher {
            group: group.clone(),
            registry: registry.clone(),
            writers: writers.clone(),
            holds: holds.clone(),
        };
        let (segment, command, sender) =
            query_segment(&config.reactions, query, catalog, state_path, launcher)?;
        for source in late {
            late_queries
                .entry(source.clone())
                .or_default()
                .push(LateQuery {
                    query: query.id.clone(),
                    input: sender.clone(),
                    pending: pending_path(&config.state_dir, &source, &query.id),
                });
        }
        for source in read {
            inputs
                .entry(source.clone())
                .or_default()
                .push((query.id.clone(), sender.clone()));
        }
        commands.insert(query.id.clone(), command);
        segments.push(segment);
    }
    for (source, schemas) in &tables {
        let reactions = reactions_of(&config.reactions, source, |target| {
            source_tables(schemas, target)
        });
        if reactions.is_empty() {
            continue;
        }
        let (sender, input) = batch_channel(CONSUMER_QUEUE);
        inputs
            .entry(source.clone())
            .or_default()
            .push((source.clone(), sender));
        let (command, commands_in) = mpsc::channel(8);
        commands.insert(source.clone(), command);
        segments.push(SegmentTask {
            query: None,
            reactions,
            input,
            commands: commands_in,
            launcher: Launcher {
                group: group.clone(),
                registry: registry.clone(),
                writers: writers.clone(),
                holds: holds.clone(),
            },
            joined: BTreeMap::new(),
        });
    }
    for reaction in &config.reactions {
        if tables.contains_key(reaction.from()) {
            registry.add(reaction.id(), Kind::Reaction);
        }
    }
    let mut sources = Vec::new();
    let mut source_commands = BTreeMap::new();
    let mut fan_outs = Vec::new();
    let libraries = source_configs
        .iter()
        .map(|(pg, library)| (pg.id.clone(), library.clone()))
        .collect();
    for (pg, library) in source_configs {
        let (output, receiver) = batch_channel(CONSUMER_QUEUE);
        registry.add(&pg.id, Kind::Source);
        let (skips, skipped) = super::skip::skip_channel();
        fan_outs.push((
            pg.id.clone(),
            receiver,
            inputs.remove(&pg.id).unwrap_or_default(),
            skipped,
        ));
        let (command, commands_in) = mpsc::channel(4);
        source_commands.insert(pg.id.clone(), command);
        sources.push(SourceTask {
            commands: commands_in,
            config: library,
            bootstrap: pg.bootstrap,
            state_dir: config.state_dir.clone(),
            output,
            registry: registry.clone(),
            stop_deadline,
            late: late_queries.remove(&pg.id).unwrap_or_default(),
            tables: tables
                .get(&pg.id)
                .map(|schemas| schemas.iter().map(|schema| schema.table.clone()).collect())
                .unwrap_or_default(),
            skips,
        });
    }
    let mut http_sources = Vec::new();
    for http in http_configs {
        let (output, receiver) = batch_channel(CONSUMER_QUEUE);
        registry.add(&http.id, Kind::Source);
        // An HTTP source takes no snapshot: its fan-out never drops a change.
        let (_never, skipped) = super::skip::skip_channel();
        fan_outs.push((
            http.id.clone(),
            receiver,
            inputs.remove(&http.id).unwrap_or_default(),
            skipped,
        ));
        http_sources.push(HttpTask {
            config: http_config(&http),
            output,
            registry: registry.clone(),
            stop_deadline,
        });
    }
    Ok(Pipeline {
        sources,
        source_commands,
        http_sources,
        fan_outs,
        segments,
        commands,
        registry: registry.clone(),
        tables,
        libraries,
    })
}

/// An HTTP source's declared tables.
fn http_tables(http: &HttpSource) -> Result<Vec<TableSchema>, RunError> {
    http.tables
        .iter()
        .map(|table| {
            let name = TableName::parse(&table.name)
                .map_err(|error| RunError::source(&http.id, chain(&error)))?;
            let columns: Vec<&str> = table.columns.iter().map(String::as_str).collect();
            let key: Vec<&str> = table.key.iter().map(String::as_str).collect();
            let table = TableRef::new(name.schema.as_str(), name.table.as_str());
            Ok(
                TableSchema::new(table, &columns, &key)
                    .from_source(SourceId::new(http.id.as_str())),
            )
        })
        .collect()
}

/// An HTTP source's settings for the library: sync acknowledgement (`200` once delivered).
fn http_config(http: &HttpSource) -> HttpSourceConfig {
    let auth = if http.tokens.is_empty() {
        Auth::NoneOnLoopback
    } else {
        Auth::Bearer(http.tokens.clone())
    };
    HttpSourceConfig::new(http.id.as_str(), http.listen, auth)
}

/// The catalog of the tables of `sources`.
pub(crate) fn catalog_of(
    tables: &BTreeMap<String, Vec<TableSchema>>,
    sources: &[&String],
) -> Catalog {
    sources
        .iter()
        .flat_map(|source| tables.get(*source).into_iter().flatten())
        .fold(Catalog::new(), |catalog, table| catalog.with(table.clone()))
}

/// A query's segment with the reactions (of `reactions`) that read it: the task, where to
/// send it commands, and its input.
pub(crate) fn query_segment(
    reactions: &[ReactionConfig],
    query: &crate::config::QueryConfig,
    catalog: Catalog,
    state_path: std::path::PathBuf,
    launcher: Launcher,
) -> Result<(SegmentTask, mpsc::Sender<Command>, BatchSender), RunError> {
    let planned = ContinuousQuery::new(&query.id, &query.sql, &catalog)
        .map_err(|error| RunError::query(&query.id, error.to_string()))?;
    let reactions = reactions_of(reactions, &query.id, |target| {
        query_table(&query.id, planned.key_columns(), target)
    });
    for reaction in &reactions {
        launcher.registry.add(reaction.id(), Kind::Reaction);
    }
    let (sender, input) = batch_channel(CONSUMER_QUEUE);
    let (command, commands) = mpsc::channel(8);
    launcher.registry.add(&query.id, Kind::Query);
    let segment = SegmentTask {
        query: Some(QuerySpec {
            id: query.id.clone(),
            sql: query.sql.clone(),
            catalog,
            state_path,
        }),
        reactions,
        input,
        commands,
        launcher,
        joined: BTreeMap::new(),
    };
    Ok((segment, command, sender))
}

/// A reaction added at runtime to query `query`, as its segment runs it.
pub(crate) fn query_reaction(
    reaction: &ReactionConfig,
    query: &crate::config::QueryConfig,
    catalog: &Catalog,
) -> Result<ReactionSpec, RunError> {
    let planned = ContinuousQuery::new(&query.id, &query.sql, catalog)
        .map_err(|error| RunError::query(&query.id, error.to_string()))?;
    let specs = reactions_of(std::slice::from_ref(reaction), &query.id, |target| {
        query_table(&query.id, planned.key_columns(), target)
    });
    specs
        .into_iter()
        .next()
        .ok_or_else(|| RunError::reaction(reaction.id(), "it does not read the query"))
}

/// The reactions reading `from`, each postgres writer given its tables by `tables`.
fn reactions_of(
    reactions: &[ReactionConfig],
    from: &str,
    tables: impl Fn(Option<&str>) -> Vec<TableConfig>,
) -> Vec<ReactionSpec> {
    reactions
        .iter()
        .filter(|reaction| reaction.from() == from)
        .map(|reaction| match reaction {
            ReactionConfig::Log(log) => ReactionSpec::Log { id: log.id.clone() },
            ReactionConfig::Redis(redis) => ReactionSpec::Redis {
                id: redis.id.clone(),
                url: redis.url.clone(),
                stream: redis
                    .stream
                    .clone()
                    .unwrap_or_else(|| format!("surefoot:{from}")),
            },
            ReactionConfig::Webhook(webhook) => {
                let mut config = WebhookConfig::new(webhook.url.expose());
                config.timeout = Duration::from_millis(webhook.timeout_ms);
                ReactionSpec::Webhook {
                    id: webhook.id.clone(),
                    config,
                }
            }
            ReactionConfig::Postgres(pg) => {
                let mut writer = WriterConfig::new(pg.id.as_str(), pg.url.expose());
                // Names the reaction in pg_stat_activity.
                writer.application_name = format!("surefoot-{}", pg.id);
                writer.batch.max_rows = pg.max_rows;
                writer.batch.max_latency = Duration::from_millis(pg.max_latency_ms);
                writer.tables = tables(pg.target.as_deref());
                ReactionSpec::Postgres {
                    id: pg.id.clone(),
                    config: Box::new(writer),
                }
            }
        })
        .collect()
}

/// A query's result mirrored by its key into `target` (`query.<id>` by default).
fn query_table(query: &str, key: &[std::sync::Arc<str>], target: Option<&str>) -> Vec<TableConfig> {
    let mut table = TableConfig::new(
        TableRef::new(OUTPUT_SCHEMA, query),
        ApplyMode::Mirror {
            key: key.iter().map(|k| k.to_string()).collect(),
        },
    );
    table.target = target.map(str::to_owned);
    vec![table]
}

/// A source's tables mirrored by their primary keys, into schema `target` (their own by
/// default).
fn source_tables(schemas: &[TableSchema], target: Option<&str>) -> Vec<TableConfig> {
    schemas
        .iter()
        .map(|schema| {
            let mut table = TableConfig::new(
                schema.table.clone(),
                ApplyMode::Mirror {
                    key: schema.key.iter().map(|k| k.to_string()).collect(),
                },
            );
            table.target = target.map(|target| format!("{target}.{}", schema.table.name));
            table
        })
        .collect()
}

/// Refuses to start a query whose state does not match its sources' bootstrap records: a
/// source whose bootstrap did not complete while the query holds state (part of a snapshot),
/// or a snapshot of its own that did not complete. Returns the bootstrapped sources of a query
/// new to the file, which then gets a snapshot of its own (see `late`).
fn check_bootstrap_state(
    config: &Config,
    sources: &[&String],
    query: &str,
    state_path: &Path,
) -> Result<Vec<String>, RunError> {
    let has_state = state_path.exists();
    let mut late = Vec::new();
    for source in sources {
        let bootstraps = config.sources.iter().any(|s| match s {
            SourceConfig::Postgres(pg) => &&pg.id == source && pg.bootstrap,
            SourceConfig::Http(_) => false,
        });
        if !bootstraps {
            continue;
        }
        let recorded = marker_path(&config.state_dir, source).exists();
        let pending = pending_path(&config.state_dir, source, query);
        if pending.exists() {
            return Err(RunError::State(format!(
                "query `{query}`'s own snapshot of source `{source}` did not complete; remove {} \
                 and {} and the query's target rows to take it again",
                state_path.display(),
                pending.display()
            )));
        }
        if has_state && !recorded {
            return Err(RunError::State(format!(
                "query `{query}` holds state from a bootstrap of source `{source}` that did not \
                 complete; remove {} and the query's target rows to bootstrap again",
                config.state_dir.display()
            )));
        }
        if recorded && !has_state {
            late.push((*source).clone());
        }
    }
    Ok(late)
}
