//! A worker: one consumer of a partitioned queue. It takes leases on a fair share of the
//! partitions and runs one task per partition it holds ([`super::consume`]); its `run` loop
//! renews the leases, balances the partitions among the live consumers and takes over the
//! partitions of consumers that stopped renewing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::ConnectionManager;
use surefoot_core_lifecycle::{Backoff, CancellationToken, Classify, TaskGroup};
use surefoot_core_model::{Reaction, SourceId};

use super::codec;
use super::config::RedisQueueConfig;
use super::consume;
use super::error::RedisQueueError;
use super::lease::{Lease, Leases};
use super::partition::{ensure_meta, partition_of};
use crate::dead_letter::RedisDeadLetters;
use crate::metrics::QueueMetrics;
use crate::runtime::HeldLane;
use crate::runtime::deliver::Deliverer;
use crate::runtime::hold::Holds;

/// How long partition tasks get to end after the worker is cancelled.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Consumes a partitioned queue as one of its consumers. See the [module docs](super).
pub struct RedisStreamWorker {
    shared: Arc<Shared>,
}

/// What the worker and its partition tasks share.
pub(crate) struct Shared {
    pub(crate) config: RedisQueueConfig,
    pub(crate) client: redis::Client,
    pub(crate) commands: ConnectionManager,
    pub(crate) deliverer: Deliverer,
    pub(crate) leases: Leases,
    /// Partitions held now, for [`RedisStreamWorker::owned_partitions`]. A leaf lock.
    owned: Mutex<BTreeSet<u32>>,
}

/// A partition held, with its task.
struct Owned {
    lease: Lease,
    cancel: CancellationToken,
    finished: Arc<AtomicBool>,
    /// Given up for balance: released once its task has finished.
    releasing: bool,
}

/// A worker's health: the partitions it holds, and those of them held at an entry that is not
/// settled delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    /// Partitions whose lease this worker holds.
    pub partitions: Vec<u32>,
    /// Partitions held at an entry (see [`HeldLane`]).
    pub held: Vec<HeldLane>,
}

impl std::fmt::Debug for RedisStreamWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamWorker")
            .field("stream", &self.shared.config.stream)
            .field("consumer", &self.shared.config.consumer)
            .finish_non_exhaustive()
    }
}

/// A reconnecting connection whose connects and replies are each limited to `limit` (the
/// redis crate's default reply limit is 500 ms, short for a loaded server).
pub async fn connection_manager(
    client: &redis::Client,
    limit: Duration,
) -> Result<ConnectionManager, RedisQueueError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit));
    surefoot_core_lifecycle::timeout(
        "connect",
        limit.saturating_mul(2),
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await?
    .map_err(|source| RedisQueueError::Redis {
        operation: "connect",
        stream: String::new(),
        source,
    })
}

impl RedisStreamWorker {
    /// Connects to Redis and records (or checks) the queue's partition count and group in
    /// `<stream>:meta`.
    pub async fn connect(
        client: &redis::Client,
        config: RedisQueueConfig,
        reaction: Arc<dyn Reaction>,
        metrics: QueueMetrics,
    ) -> Result<Self, RedisQueueError> {
        config.validate()?;
        let commands = connection_manager(client, config.op_timeout)
            .await
            .map_err(|error| match error {
                RedisQueueError::Redis { source, .. } => RedisQueueError::Redis {
                    operation: "connect",
                    stream: config.stream.clone(),
                    source,
                },
                other => other,
            })?;
        let partitions = config.partitions.to_string();
        ensure_meta(
            &commands,
            &config.stream,
            "partitions",
            &partitions,
            config.op_timeout,
        )
        .await?;
        ensure_meta(
            &commands,
            &config.stream,
            "group",
            &config.group,
            config.op_timeout,
        )
        .await?;
        let dead_letters = RedisDeadLetters::new(
            commands.clone(),
            &config.dead_letter_stream,
            config.op_timeout,
        );
        metrics.declare();
        let name = format!("{}/{}", config.stream, config.consumer);
        let deliverer = Deliverer {
            operation: format!("reaction `{name}`").into(),
            name,
            reaction,
            dead_letters: Arc::new(dead_letters),
            retry: config.retry,
            attempt_timeout: config.attempt_timeout,
            dead_letter_timeout: config.op_timeout,
            metrics,
            holds: Holds::default(),
        };
        let leases = Leases {
            connection: commands.clone(),
            stream: config.stream.clone(),
            consumer: config.consumer.clone(),
            ttl: config.lease_ttl,
            op_timeout: config.op_timeout,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                client: client.clone(),
                commands,
                deliverer,
                leases,
                owned: Mutex::default(),
            }),
        })
    }

    /// The worker's metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.shared.deliverer.metrics
    }

    /// The partitions whose lease this worker holds now.
    pub fn owned_partitions(&self) -> Vec<u32> {
        self.shared.owned().iter().copied().collect()
    }

    /// The partitions held, and those held at an entry that is not settled delivered.
    pub fn health(&self) -> WorkerHealth {
        WorkerHealth {
            partitions: self.owned_partitions(),
            held: self.shared.deliverer.holds.held(),
        }
    }

    /// Consumes until `cancel` fires. Every third of `lease_ttl` it records itself as live,
    /// renews its leases, gives up partitions beyond its fair share (`ceil(partitions /
    /// live consumers)`, once their task is between entries) and takes free ones (expired
    /// leases included: their entries are applied from the oldest, in order) up to it.
    ///
    /// Connection trouble is retried with backoff; an error retrying cannot fix ends the run.
    /// On `cancel` the partition tasks drop the entry in progress (it stays in the stream, and
    /// is applied by whoever holds the partition next), the leases are released and the
    /// consumer leaves the live set.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), RedisQueueError> {
        let shared = &self.shared;
        let group = TaskGroup::new(format!(
            "redis-queue/{}/{}",
            shared.config.stream, shared.config.consumer
        ));
        let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
        let renew_every = shared.config.lease_ttl / 3;
        let backoff = Backoff::new(Duration::from_millis(50), renew_every);
        let mut failures: u32 = 0;
        let result = loop {
            let wait = match self.tick(&mut owned, &group).await {
                Ok(()) => {
                    failures = 0;
                    renew_every
                }
                Err(error) if error.class().is_retryable() => {
                    tracing::warn!(stream = %shared.config.stream, consumer = %shared.config.consumer, %error, "lease round failed; retrying");
                    failures = failures.saturating_add(1);
                    backoff.delay(failures)
                }
                Err(error) => break Err(error),
            };
            shared.set_owned(&owned);
            tokio::select! {
                () = cancel.cancelled() => break Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        };
        self.finish(owned, &group).await;
        result
    }

    async fn finish(&self, owned: BTreeMap<u32, Owned>, group: &TaskGroup) {
        let shared = &self.shared;
        let report = group.stop(STOP_GRACE).await;
        if !report.aborted.is_empty() {
            tracing::warn!(stream = %shared.config.stream, consumer = %shared.config.consumer, aborted = ?report.aborted, "partition tasks aborted at stop");
        }
        for held in owned.values() {
            if let Err(error) = shared.leases.release(&held.lease).await {
                // Not fatal: the lease expires after `lease_ttl` and another consumer takes it.
                tracing::warn!(stream = %shared.config.stream, partition = held.lease.partition, %error, "lease not released; it will expire");
            }
        }
        if let Err(error) = shared.leases.leave().await {
            // Not fatal: the entry expires after `lease_ttl`.
            tracing::warn!(stream = %shared.config.stream, consumer = %shared.config.consumer, %error, "consumer not removed from the live set; it will expire");
        }
        shared.set_owned(&BTreeMap::new());
    }

    /// One lease round: heartbeat, renewals, releases, acquisitions.
    async fn tick(
        &self,
        owned: &mut BTreeMap<u32, Owned>,
        group: &TaskGroup,
    ) -> Result<(), RedisQueueError> {
        let shared = &self.shared;
        let live = shared.leases.heartbeat().await?.max(1);
        self.renew_all(owned).await?;
        let fair = shared.config.partitions.div_ceil(live);
        let active: Vec<u32> = owned
            .iter()
            .filter(|(_, held)| !held.releasing)
            .map(|(partition, _)| *partition)
            .collect();
        let active_count = u32::try_from(active.len()).unwrap_or(u32::MAX);
        if active_count > fair {
            for partition in active.iter().rev().take((active_count - fair) as usize) {
                if let Some(held) = owned.get_mut(partition) {
                    tracing::info!(stream = %shared.config.stream, consumer = %shared.config.consumer, partition, live, "giving a partition up for balance");
                    held.releasing = true;
                    held.cancel.cancel();
                }
            }
        } else if active_count < fair {
            self.acquire_up_to(fair - active_count, owned, group)
                .await?;
        }
        Ok(())
    }

    /// Renews every lease; forgets those lost, and releases those whose task has finished.
    async fn renew_all(&self, owned: &mut BTreeMap<u32, Owned>) -> Result<(), RedisQueueError> {
        let shared = &self.shared;
        let mut gone = Vec::new();
        for (partition, held) in owned.iter() {
            if held.finished.load(Ordering::Acquire) {
                gone.push((*partition, true));
            } else if !shared.leases.renew(&held.lease).await? {
                tracing::warn!(stream = %shared.config.stream, consumer = %shared.config.consumer, partition, "lease lost (it expired and another consumer took it); stopping the partition");
                held.cancel.cancel();
                gone.push((*partition, false));
            }
        }
        for (partition, finished) in gone {
            let Some(held) = owned.remove(&partition) else {
                continue;
            };
            if finished {
                if !held.releasing {
                    tracing::error!(stream = %shared.config.stream, consumer = %shared.config.consumer, partition, "partition task ended on its own; releasing its lease");
                }
                shared.leases.release(&held.lease).await?;
            }
        }
        Ok(())
    }

    /// Takes up to `wanted` free partitions, starting at a place that depends on the consumer
    /// name (so consumers do not all contend for the same ones), and starts their tasks.
    async fn acquire_up_to(
        &self,
        mut wanted: u32,
        owned: &mut BTreeMap<u32, Owned>,
        group: &TaskGroup,
    ) -> Result<(), RedisQueueError> {
        let shared = &self.shared;
        let partitions = shared.config.partitions;
        let start = partition_of(&SourceId::new(shared.config.consumer.as_str()), partitions);
        for step in 0..partitions {
            if wanted == 0 {
                break;
            }
            let partition = (start + step) % partitions;
            if owned.contains_key(&partition) {
                continue;
            }
            let Some(lease) = shared.leases.acquire(partition).await? else {
                continue;
            };
            if lease.taken_over {
                shared.deliverer.metrics.partition_taken_over();
                tracing::warn!(stream = %shared.config.stream, consumer = %shared.config.consumer, partition, token = lease.token, "took over a partition whose lease expired; applying what its owner left, in order");
            } else {
                tracing::info!(stream = %shared.config.stream, consumer = %shared.config.consumer, partition, token = lease.token, "partition acquired");
            }
            let held = self.start_partition(lease.clone(), group);
            match held {
                Ok(held) => {
                    owned.insert(partition, held);
                    wanted -= 1;
                }
                Err(error) => {
                    tracing::error!(stream = %shared.config.stream, partition, %error, "partition task not started; releasing the lease");
                    shared.leases.release(&lease).await?;
                }
            }
        }
        Ok(())
    }

    fn start_partition(
        &self,
        lease: Lease,
        group: &TaskGroup,
    ) -> Result<Owned, surefoot_core_lifecycle::SpawnError> {
        let cancel = group.cancellation_token().child_token();
        let finished = Arc::new(AtomicBool::new(false));
        let task_cancel = cancel.clone();
        let task_finished = Arc::clone(&finished);
        let shared = Arc::clone(&self.shared);
        let task_lease = lease.clone();
        group.spawn(
            format!("partition-{}#{}", lease.partition, lease.token),
            move |_group_cancel| async move {
                let _finished = SetOnDrop(task_finished);
                consume::consume(shared, task_lease, task_cancel).await
            },
        )?;
        Ok(Owned {
            lease,
            cancel,
            finished,
            releasing: false,
        })
    }
}

/// Sets the flag when dropped: the partition task has ended (returned, failed or panicked).
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Shared {
    fn owned(&self) -> MutexGuard<'_, BTreeSet<u32>> {
        // Replaced whole on every update; a panic cannot leave it half-updated.
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_owned(&self, owned: &BTreeMap<u32, Owned>) {
        *self.owned() = owned.keys().copied().collect();
    }
}

/// The instant the entry was added, from its id, for end-to-end latency.
pub(crate) fn added_at(id: &str) -> Instant {
    let now = Instant::now();
    let age_millis = codec::added_at_millis(id)
        .map(|added| Utc::now().timestamp_millis().saturating_sub(added))
        .and_then(|age| u64::try_from(age).ok())
        .unwrap_or(0);
    now.checked_sub(Duration::from_millis(age_millis))
        .unwrap_or(now)
}
