//! The instance lease: at most one process serves an instance id at a time (issue 14, X-2;
//! decision 0008).
//!
//! Two processes started with the same `instance` would interleave positions under one source
//! id, which a position-idempotent consumer cannot tell from a jump backwards. So with the
//! Redis backend an instance holds a lease, the Redis string `<prefix>lease:<instance>` set to
//! a random owner with `PX instance_lease`:
//!
//! - **start** takes it, waiting up to one lease period for a crashed predecessor's lease to
//!   expire; a lease still held after that is renewed by a live process, and the start fails
//!   naming the instance;
//! - the **lease task** renews it every third of the period. A renewal that finds another
//!   owner fails the task, which fails the source. A renewal that cannot reach Redis is
//!   retried; once the period has passed without one, the reserved sequences are dropped;
//! - **sequences** are reserved by a script that checks the owner first, so a process that
//!   lost its lease gets no new block;
//! - on **stop** the task (stopped last, it was started first) deletes the lease if still its
//!   own, so a successor starts at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::HttpSourceError;
use crate::idempotency::IdempotencyStore;
use crate::idempotency::redis_store::RedisStore;
use crate::source::Shared;

/// Takes the lease if it is free, expired or already this owner's, and sets its expiry.
const HOLD: &str = "local owner = redis.call('GET', KEYS[1]) \
     if owner == false or owner == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0";
/// Deletes the lease if it is still this owner's.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// Adds `ARGV[2]` to the sequence counter `KEYS[2]` if the lease `KEYS[1]` is this owner's
/// (`ARGV[1]`), returning the counter; -1 if it is not.
const RESERVE: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end \
     return redis.call('INCRBY', KEYS[2], ARGV[2])";

/// How often a start waiting for a lease looks again.
const RETRY_WAIT: Duration = Duration::from_millis(200);

/// One process's claim on an instance id.
#[derive(Debug)]
pub(crate) struct InstanceLease {
    store: Arc<RedisStore>,
    instance: String,
    key: String,
    /// The instance's sequence counter, `<prefix>sequence:<instance>`: it only grows and
    /// outlives the process, so a restart continues above every position handed out before,
    /// whatever the clock says.
    counter: String,
    owner: String,
    period: Duration,
}

impl InstanceLease {
    pub(crate) fn new(store: Arc<RedisStore>, instance: &str, period: Duration) -> Self {
        Self {
            key: store.namespaced(&format!("lease:{instance}")),
            counter: store.namespaced(&format!("sequence:{instance}")),
            owner: format!("{:016x}", rand::random::<u64>()),
            instance: instance.to_owned(),
            store,
            period,
        }
    }

    /// Takes or renews the lease: `Ok(false)` when another process holds it.
    async fn hold(&self) -> Result<bool, HttpSourceError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(HOLD).arg(1).arg(&self.key).arg(&self.owner);
        eval.arg(millis(self.period));
        let held: i64 = self.store.query("hold instance lease", &eval).await?;
        Ok(held == 1)
    }

    /// Takes the lease at start, waiting up to one period (plus a margin for the renewal in
    /// flight) for a lease left by a process that died.
    pub(crate) async fn acquire(&self) -> Result<(), HttpSourceError> {
        let started = Instant::now();
        let patience = self.period + self.period / 2;
        let mut logged = false;
        while !self.hold().await? {
            let waited = started.elapsed();
            if waited >= patience {
                return Err(HttpSourceError::InstanceInUse {
                    instance: self.instance.clone(),
                    waited,
                });
            }
            if !logged {
                tracing::warn!(
                    instance = %self.instance,
                    "instance lease is held; waiting for it to expire or be released"
                );
                logged = true;
            }
            tokio::time::sleep(RETRY_WAIT).await;
        }
        Ok(())
    }

    /// Deletes the lease if it is still this process's.
    async fn release(&self) -> Result<(), HttpSourceError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE).arg(1).arg(&self.key).arg(&self.owner);
        let _deleted: i64 = self.store.query("release instance lease", &eval).await?;
        Ok(())
    }

    /// Reserves `count` consecutive sequences from the instance's counter while the lease is
    /// this process's, and returns the first; [`HttpSourceError::LeaseLost`] if it is not.
    pub(crate) async fn reserve(&self, count: u64) -> Result<u64, HttpSourceError> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(RESERVE).arg(2).arg(&self.key).arg(&self.counter);
        eval.arg(&self.owner).arg(count);
        let end: i64 = self.store.query("reserve sequences", &eval).await?;
        let end = u64::try_from(end).map_err(|_| self.lost())?;
        Ok(end.saturating_sub(count).saturating_add(1))
    }

    fn lost(&self) -> HttpSourceError {
        HttpSourceError::LeaseLost {
            instance: self.instance.clone(),
        }
    }
}

/// The lease of `instance` when keys are kept in Redis; none otherwise.
pub(crate) fn for_store(
    store: &IdempotencyStore,
    instance: Option<&str>,
    period: Duration,
) -> Option<InstanceLease> {
    match (store, instance) {
        (IdempotencyStore::Redis(redis), Some(instance)) => {
            Some(InstanceLease::new(Arc::clone(redis), instance, period))
        }
        _ => None,
    }
}

/// The lease task: renews until cancelled, then releases. Returns an error only when another
/// process holds the lease (the source then fails).
pub(crate) async fn run(
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Result<(), HttpSourceError> {
    let Some(lease) = shared.lease.as_ref() else {
        return Ok(());
    };
    let renew_every = lease.period / 3;
    let mut held_until = Instant::now() + lease.period;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(renew_every) => {}
        }
        let attempt = Instant::now();
        match lease.hold().await {
            Ok(true) => held_until = attempt + lease.period,
            Ok(false) => {
                shared.drop_reserved_sequences();
                shared.metrics.lease_failed();
                let error = lease.lost();
                tracing::error!(error = %error, "instance lease taken by another process");
                return Err(error);
            }
            Err(error) => {
                shared.metrics.lease_failed();
                tracing::error!(
                    instance = %lease.instance,
                    error = &error as &dyn std::error::Error,
                    "could not renew the instance lease"
                );
                if Instant::now() >= held_until {
                    // Another process may take the lease now: hand out nothing more from the
                    // block reserved under it.
                    shared.drop_reserved_sequences();
                }
            }
        }
    }
    if let Err(error) = lease.release().await {
        // Not a failed stop: the lease expires on its own within one period.
        tracing::warn!(
            instance = %lease.instance,
            error = &error as &dyn std::error::Error,
            "could not release the instance lease; it expires on its own"
        );
    }
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
