//! `surefoot-query-runner`: one process running a durable continuous query between a
//! `source-postgres` stream and `sink-postgres-writer`'s mirror of its result, as a user runs a
//! pipeline. Used by this crate's tests, which kill it with SIGKILL and start it again; stops
//! cleanly on SIGTERM or SIGINT.
//!
//! Settings (environment): `SUREFOOT_PG_HOST`, `SUREFOOT_PG_PORT`, `SUREFOOT_PG_USER` (the
//! source server, database `postgres`), `SUREFOOT_SOURCE`, `SUREFOOT_SLOT`,
//! `SUREFOOT_PUBLICATION`, `SUREFOOT_QUERY` (its id), `SUREFOOT_SQL`, `SUREFOOT_CATALOG`
//! (`table:key,column,...;...`, `public` tables, the first column the key), `SUREFOOT_STATE`
//! (the query's state file), `SUREFOOT_DATABASE_URL` (the target) and `SUREFOOT_SINK`.
#![allow(clippy::print_stderr)] // stderr is this process's only report channel.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{BatchReceiver, BatchSender, Source, SourceId, TableRef, batch_channel};
use surefoot_query::{Catalog, DurableQuery, TableSchema};
use surefoot_sink_postgres_writer::{
    ApplyMode, PostgresWriter, RecordRetention, TableConfig, WriterConfig,
};
use surefoot_source_postgres::{Identifier, PostgresSource, PostgresSourceConfig, SlotName};

/// How long a stop may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn catalog(source: &SourceId) -> Result<Catalog, String> {
    let mut catalog = Catalog::new();
    for table in setting("SUREFOOT_CATALOG")?.split(';') {
        let (name, columns) = table
            .split_once(':')
            .ok_or_else(|| format!("SUREFOOT_CATALOG: `{table}` is not table:columns"))?;
        let columns: Vec<&str> = columns.split(',').collect();
        let schema = TableSchema::new(TableRef::new("public", name), &columns, &columns[..1]);
        catalog = catalog.with(schema.from_source(source.clone()));
    }
    Ok(catalog)
}

fn source(output: BatchSender) -> Result<PostgresSource, String> {
    let port = setting("SUREFOOT_PG_PORT")?
        .parse()
        .map_err(|error| format!("SUREFOOT_PG_PORT: {error}"))?;
    let mut config = PostgresSourceConfig::new(
        setting("SUREFOOT_SOURCE")?,
        setting("SUREFOOT_PG_HOST")?,
        port,
        setting("SUREFOOT_PG_USER")?,
        "postgres",
        SlotName::parse(&setting("SUREFOOT_SLOT")?).map_err(|e| e.to_string())?,
        Identifier::parse("publication", &setting("SUREFOOT_PUBLICATION")?)
            .map_err(|e| e.to_string())?,
    );
    config.status_interval = Duration::from_millis(100);
    PostgresSource::new(config, output).map_err(|error| error.to_string())
}

async fn writer(query: &str) -> Result<PostgresWriter, String> {
    let mut config =
        WriterConfig::new(setting("SUREFOOT_SINK")?, setting("SUREFOOT_DATABASE_URL")?).table(
            TableConfig::new(
                TableRef::new(surefoot_query::OUTPUT_SCHEMA, query),
                ApplyMode::Mirror {
                    key: vec!["_key.1".into()],
                },
            ),
        );
    config.batch.max_latency = Duration::from_millis(5);
    // Every record kept: the test counts what was applied.
    config.applied_records = RecordRetention {
        keep: u32::MAX,
        max_age: None,
    };
    PostgresWriter::builder(config)
        .connect()
        .await
        .map_err(|error| error.to_string())
}

/// Sends the result batches left unacknowledged by the last run, then evaluates every input
/// batch and sends its result on.
async fn evaluate(
    mut query: DurableQuery,
    mut input: BatchReceiver,
    output: BatchSender,
) -> Result<(), String> {
    let gone = |_| "the writer stopped taking result batches".to_owned();
    for batch in query.unacknowledged() {
        output.send(batch).await.map_err(gone)?;
    }
    while let Some(batch) = input.recv().await {
        if let Some(result) = query.process(batch).map_err(|error| error.to_string())? {
            output.send(result).await.map_err(gone)?;
        }
    }
    Ok(())
}

async fn run() -> Result<(), String> {
    let id = setting("SUREFOOT_QUERY")?;
    let source_id = SourceId::new(setting("SUREFOOT_SOURCE")?);
    let state = PathBuf::from(setting("SUREFOOT_STATE")?);
    let query = DurableQuery::open(
        &state,
        &id,
        &setting("SUREFOOT_SQL")?,
        &catalog(&source_id)?,
    )
    .map_err(|error| error.to_string())?;
    let writer = writer(&id).await?;
    let (source_output, inputs) = batch_channel(64);
    let (results, sink_input) = batch_channel(64);
    let source = source(source_output)?;
    let signal = surefoot_core_lifecycle::signal::shutdown_signal().map_err(|e| e.to_string())?;
    source.start().await.map_err(|error| error.to_string())?;
    eprintln!("surefoot-query-runner: streaming");
    // On a signal, or if the query or the writer ends first, the source stops (its last
    // confirmed position is the delivered prefix) and is dropped, which ends the query's input;
    // the query then ends the writer's.
    let never_cancelled = CancellationToken::new();
    let work = async {
        tokio::join!(
            evaluate(query, inputs, results),
            writer.run(sink_input, never_cancelled)
        )
    };
    tokio::pin!(work);
    let ended = tokio::select! {
        results = &mut work => Some(results),
        _signal = signal => None,
    };
    let stopped = source.stop(STOP_DEADLINE).await;
    drop(source);
    let (evaluated, sunk) = match ended {
        Some(results) => results,
        None => work.await,
    };
    let stopped = stopped.map_err(|error| error.to_string());
    stopped?;
    evaluated?;
    sunk.map_err(|error| error.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("surefoot-query-runner: {error}");
            ExitCode::FAILURE
        }
    }
}
