//! `surefoot-queue-worker`: one worker process of a Redis-backed reaction queue, used by this
//! crate's tests and benchmark.
//!
//! Its reaction is a position-idempotent consumer kept in Redis, as the PostgreSQL writer is
//! (a checkpoint per source, `<applied>:checkpoints`): a batch above its source's checkpoint
//! is applied (`<applied>` hash field `<source>:<first>` = consumer, counted in
//! `<applied>:applied` and `<applied>:by:<consumer>`); a redelivered one is counted in
//! `<applied>:redelivered`; one at or below the checkpoint that was never applied is lost and
//! recorded in the list `<applied>:out_of_order`. Positions must be sequences. It stops on
//! SIGTERM or SIGINT.
//!
//! Settings (environment): `SUREFOOT_REDIS_URL`, `SUREFOOT_STREAM`, `SUREFOOT_GROUP`,
//! `SUREFOOT_CONSUMER`, `SUREFOOT_APPLIED` (hash name), optional `SUREFOOT_LEASE_TTL_MS`
//! (partition lease, default 10000), `SUREFOOT_PARTITIONS` (default 16),
//! `SUREFOOT_READ_COUNT` (entries read at a time, default 10),
//! `SUREFOOT_WORK_MS` (time each batch takes, default 0) and
//! `SUREFOOT_HANG_AFTER` (after applying that many batches, the worker sets `hung:<consumer>`
//! and stops making progress, as a stuck process would, holding its pending entries).
#![allow(clippy::print_stderr)] // stderr is this process's only report channel.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::{CancellationToken, ErrorClass};
use surefoot_core_model::{Batch, ComponentError, Position, Reaction};
use surefoot_reaction_queue::{QueueMetrics, RedisQueueConfig, RedisStreamWorker};

struct RecordApplied {
    connection: ConnectionManager,
    applied: String,
    consumer: String,
    work: Duration,
    hang_after: Option<u64>,
    count: AtomicU64,
}

#[async_trait]
impl Reaction for RecordApplied {
    fn name(&self) -> &str {
        "record-applied"
    }

    async fn apply(&self, batch: &Batch) -> Result<(), ComponentError> {
        let fail = |error| ComponentError::new("record applied", ErrorClass::Transient, error);
        let mut connection = self.connection.clone();
        if self
            .hang_after
            .is_some_and(|limit| self.count.load(Ordering::Relaxed) >= limit)
        {
            redis::cmd("SET")
                .arg(format!("hung:{}", self.consumer))
                .arg(1)
                .query_async::<()>(&mut connection)
                .await
                .map_err(fail)?;
            std::future::pending::<()>().await;
        }
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        let Position::Sequence(seq) = batch.first else {
            return Err(ComponentError::new(
                "record applied",
                ErrorClass::Permanent,
                NotASequence(batch.first),
            ));
        };
        let field = format!("{}:{}", batch.source, batch.first);
        RECORD
            .key(&self.applied)
            .key(format!("{}:checkpoints", self.applied))
            .arg(batch.source.as_str())
            .arg(seq)
            .arg(field)
            .arg(&self.consumer)
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(fail)?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The batch's position is not a sequence; this recorder orders sequences only.
#[derive(Debug, thiserror::Error)]
#[error("position {0} is not a sequence")]
struct NotASequence(Position);

/// Applies a batch as a position-idempotent consumer does (the PostgreSQL writer's
/// checkpoint per source): a position above the source's checkpoint is applied and becomes
/// the checkpoint; one at or below it is skipped, counted in `:redelivered` when it was
/// applied before and recorded in the list `:out_of_order` when it never was (that batch is
/// lost, as it would be for the writer).
static RECORD: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        local checkpoint = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
        local seq = tonumber(ARGV[2])
        if seq <= checkpoint then
            if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then
                redis.call('INCR', KEYS[1] .. ':redelivered')
                return 1
            end
            redis.call('RPUSH', KEYS[1] .. ':out_of_order', ARGV[3] .. ' after ' .. checkpoint)
            return 2
        end
        redis.call('HSET', KEYS[2], ARGV[1], seq)
        redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
        redis.call('INCR', KEYS[1] .. ':applied')
        redis.call('INCR', KEYS[1] .. ':by:' .. ARGV[4])
        return 0
        ",
    )
});

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn millis(name: &str, default: u64) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map(Duration::from_millis)
            .map_err(|error| format!("{name}: {error}")),
        Err(_) => Ok(Duration::from_millis(default)),
    }
}

async fn run() -> Result<(), String> {
    let client = redis::Client::open(setting("SUREFOOT_REDIS_URL")?).map_err(|e| e.to_string())?;
    let consumer = setting("SUREFOOT_CONSUMER")?;
    let mut config = RedisQueueConfig::new(
        setting("SUREFOOT_STREAM")?,
        setting("SUREFOOT_GROUP")?,
        consumer.clone(),
    );
    config.lease_ttl = millis("SUREFOOT_LEASE_TTL_MS", 10_000)?;
    config.partitions = match std::env::var("SUREFOOT_PARTITIONS") {
        Ok(text) => text
            .parse()
            .map_err(|e| format!("SUREFOOT_PARTITIONS: {e}"))?,
        Err(_) => surefoot_reaction_queue::DEFAULT_PARTITIONS,
    };
    config.read_count = match std::env::var("SUREFOOT_READ_COUNT") {
        Ok(text) => text
            .parse()
            .map_err(|e| format!("SUREFOOT_READ_COUNT: {e}"))?,
        Err(_) => 10,
    };
    let hang_after = match std::env::var("SUREFOOT_HANG_AFTER") {
        Ok(text) => Some(
            text.parse()
                .map_err(|e| format!("SUREFOOT_HANG_AFTER: {e}"))?,
        ),
        Err(_) => None,
    };
    let connection = surefoot_reaction_queue::connection_manager(&client, config.op_timeout)
        .await
        .map_err(|e| surefoot_reaction_queue::dead_letter::error_chain(&e))?;
    let reaction = RecordApplied {
        connection,
        applied: setting("SUREFOOT_APPLIED")?,
        consumer: consumer.clone(),
        work: millis("SUREFOOT_WORK_MS", 0)?,
        hang_after,
        count: AtomicU64::new(0),
    };
    let worker = RedisStreamWorker::connect(
        &client,
        config,
        Arc::new(reaction),
        QueueMetrics::global(&consumer),
    )
    .await
    .map_err(|e| surefoot_reaction_queue::dead_letter::error_chain(&e))?;
    let signal = surefoot_core_lifecycle::signal::shutdown_signal().map_err(|e| e.to_string())?;
    let cancel = CancellationToken::new();
    let run = worker.run(cancel.clone());
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => return result.map_err(|e| surefoot_reaction_queue::dead_letter::error_chain(&e)),
        _ = signal => cancel.cancel(),
    }
    run.await
        .map_err(|e| surefoot_reaction_queue::dead_letter::error_chain(&e))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("surefoot-queue-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
