//! `surefoot-writer-consumer`: one consumer process of a partitioned Redis reaction queue
//! (`reaction-queue`) whose reaction is `sink-postgres-writer`'s mirror, as a user deploys
//! several on different machines. Used by this crate's tests; stops on SIGTERM or SIGINT.
//!
//! Settings (environment): `SUREFOOT_REDIS_URL`, `SUREFOOT_STREAM`, `SUREFOOT_CONSUMER`,
//! `SUREFOOT_PARTITIONS`, `SUREFOOT_LEASE_TTL_MS`, `SUREFOOT_DATABASE_URL` (the target),
//! `SUREFOOT_SINK` and `SUREFOOT_TABLES` (comma-separated `public` tables mirrored by `id`).
#![allow(clippy::print_stderr)] // stderr is this process's only report channel.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use surefoot_core_lifecycle::{CancellationToken, ErrorClass};
use surefoot_core_model::{
    AckOutcome, AckToken, Batch, BatchSender, ComponentError, Reaction, TableRef, batch_channel,
};
use surefoot_reaction_queue::{QueueMetrics, RedisQueueConfig, RedisStreamWorker};
use surefoot_sink_postgres_writer::{
    ApplyMode, PostgresWriter, RecordRetention, TableConfig, WriterConfig,
};
use tokio::sync::oneshot;

/// Hands each batch to the writer's sink loop and reports its outcome: delivered only once the
/// writer committed it (or proved it applied before).
struct IntoWriter {
    input: BatchSender,
}

/// The writer settled a batch other than delivered.
#[derive(Debug, thiserror::Error)]
#[error("the writer settled the batch {0:?}")]
struct NotDelivered(AckOutcome);

/// The writer's sink loop ended.
#[derive(Debug, thiserror::Error)]
#[error("the writer's sink loop is gone")]
struct WriterGone;

#[async_trait]
impl Reaction for IntoWriter {
    fn name(&self) -> &str {
        "postgres-writer"
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        let gone = || ComponentError::new("postgres writer", ErrorClass::Transient, WriterGone);
        let (settled, outcome) = oneshot::channel();
        let ack = AckToken::new(move |outcome| {
            // The apply call below waits on the receiver; if it was dropped (the attempt was
            // abandoned), nobody needs the outcome.
            settled.send(outcome).ok();
        });
        let copy = Batch {
            source: batch.source.clone(),
            first: batch.first,
            last: batch.last,
            commit_time: batch.commit_time,
            changes: Arc::clone(&batch.changes),
            ack,
        };
        self.input.send(copy).await.map_err(|_| gone())?;
        match outcome.await.map_err(|_| gone())? {
            outcome if outcome.is_delivered() => Ok(()),
            outcome => Err(ComponentError::new(
                "postgres writer",
                ErrorClass::Transient,
                NotDelivered(outcome),
            )),
        }
    }
}

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn number<T: std::str::FromStr>(name: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    setting(name)?
        .parse()
        .map_err(|error| format!("{name}: {error}"))
}

async fn writer() -> Result<PostgresWriter, String> {
    let mut config =
        WriterConfig::new(setting("SUREFOOT_SINK")?, setting("SUREFOOT_DATABASE_URL")?);
    for table in setting("SUREFOOT_TABLES")?.split(',') {
        config = config.table(TableConfig::new(
            TableRef::new("public", table),
            ApplyMode::Mirror {
                key: vec!["id".into()],
            },
        ));
    }
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

async fn run() -> Result<(), String> {
    let chain = |error: &surefoot_reaction_queue::RedisQueueError| {
        surefoot_reaction_queue::dead_letter::error_chain(error)
    };
    let client = redis::Client::open(setting("SUREFOOT_REDIS_URL")?).map_err(|e| e.to_string())?;
    let consumer = setting("SUREFOOT_CONSUMER")?;
    let mut config = RedisQueueConfig::new(setting("SUREFOOT_STREAM")?, "group", consumer.clone());
    config.partitions = number("SUREFOOT_PARTITIONS")?;
    config.lease_ttl = Duration::from_millis(number("SUREFOOT_LEASE_TTL_MS")?);
    config.block = Duration::from_millis(100);
    let writer = writer().await?;
    let (input, batches) = batch_channel(64);
    let worker = RedisStreamWorker::connect(
        &client,
        config,
        Arc::new(IntoWriter { input }),
        QueueMetrics::global(&consumer),
    )
    .await
    .map_err(|e| chain(&e))?;
    let signal = surefoot_core_lifecycle::signal::shutdown_signal().map_err(|e| e.to_string())?;
    let cancel = CancellationToken::new();
    let stop = async {
        let _signal = signal.await;
        cancel.cancel();
    };
    let consume = async {
        let result = worker.run(cancel.clone()).await.map_err(|e| chain(&e));
        // The worker's reaction holds the writer's input; ending the worker ends the sink loop.
        drop(worker);
        result
    };
    let work = async { tokio::join!(consume, writer.run(batches, cancel.clone())) };
    tokio::pin!(work);
    // On a signal both stop: the worker between entries, the sink after its transaction.
    let (consumed, sunk) = tokio::select! {
        results = &mut work => results,
        () = stop => work.await,
    };
    consumed?;
    sunk.map_err(|error| error.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("surefoot-writer-consumer: {error}");
            ExitCode::FAILURE
        }
    }
}
