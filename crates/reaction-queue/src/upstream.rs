//! An upstream that reactions subscribe to: a fan-out of result batches into each subscriber's
//! ordered queue.
//!
//! A query (or a source) publishes into a [`Fanout`]; each subscriber gets its own bounded
//! [`crate::queue`] and the publisher waits for room in every one of them, so a slow
//! subscriber slows the publisher down instead of losing results (D-M2: no broadcast lag).
//!
//! Subscriptions are made atomically against the fan-out's status (D-6.3): the status check
//! and the registration happen under the one lock that [`Fanout::begin_stop`] also takes, so a
//! subscription either exists before the stop begins (and is then closed by it) or is refused
//! with [`SubscribeError::NotAccepting`]. Dropping a [`Subscription`] removes it from the
//! fan-out at once (D-5.2).
//!
//! Lock order: the fan-out's state lock is a leaf; it is never held across an `.await`, and
//! queue locks are taken only after it is released.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use surefoot_core_lifecycle::{Classify, ErrorClass, Status};
use surefoot_core_model::Batch;

use crate::metrics::QueueMetrics;
use crate::queue::{ConfigError, QueueConfig, QueueReceiver, QueueSender, ordered_queue};

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The upstream is not starting or running (it is stopping, stopped or failed).
    #[error("upstream `{upstream}` is {status}; it accepts no subscriptions")]
    NotAccepting {
        /// The upstream's name.
        upstream: String,
        /// Its status when the subscription was tried.
        status: Status,
    },
    /// The subscriber's queue settings are invalid.
    #[error("subscription to `{upstream}`: {source}")]
    Config {
        /// The upstream's name.
        upstream: String,
        /// The problems.
        #[source]
        source: ConfigError,
    },
}

impl Classify for SubscribeError {
    /// A stopping upstream is transient (it may run again); bad settings are configuration.
    fn class(&self) -> ErrorClass {
        match self {
            SubscribeError::NotAccepting { .. } => ErrorClass::Transient,
            SubscribeError::Config { .. } => ErrorClass::Configuration,
        }
    }
}

/// [`Fanout::publish`] refused a batch; the batch comes back so its owner settles it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The fan-out is not running.
    #[error("upstream `{upstream}` is {status}; the batch was not published")]
    NotRunning {
        /// The upstream's name.
        upstream: String,
        /// Its status.
        status: Status,
        /// The batch.
        batch: Batch,
    },
    /// Nobody is subscribed (a reaction is stopped or not started yet): acknowledging the
    /// batch would lose it for that reaction, so it is refused instead.
    #[error("upstream `{upstream}` has no subscriber; the batch was not published")]
    NoSubscribers {
        /// The upstream's name.
        upstream: String,
        /// The batch.
        batch: Batch,
    },
}

impl PublishError {
    /// The refused batch.
    pub fn into_batch(self) -> Batch {
        match self {
            PublishError::NotRunning { batch, .. } | PublishError::NoSubscribers { batch, .. } => {
                batch
            }
        }
    }
}

impl Classify for PublishError {
    /// Both are transient: the upstream may run again, a subscriber may come (back).
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

#[derive(Debug)]
struct Subscriber {
    name: String,
    sender: QueueSender,
}

#[derive(Debug)]
struct State {
    status: Status,
    subscribers: BTreeMap<u64, Subscriber>,
    next_id: u64,
}

#[derive(Debug)]
struct Inner {
    name: String,
    state: Mutex<State>,
}

/// A fan-out of batches to subscribers' ordered queues. Cloning gives another handle.
#[derive(Debug, Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

/// A live subscription: the subscriber's queue, registered with the fan-out until dropped.
pub struct Subscription {
    receiver: QueueReceiver,
    upstream: Weak<Inner>,
    id: u64,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Fanout {
    /// A running fan-out with no subscribers.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                state: Mutex::new(State {
                    status: Status::Running,
                    subscribers: BTreeMap::new(),
                    next_id: 0,
                }),
            }),
        }
    }

    /// The fan-out's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.inner.state().status
    }

    /// Subscribers registered now.
    pub fn subscriber_count(&self) -> usize {
        self.inner.state().subscribers.len()
    }

    /// Subscribes `subscriber` with a queue configured by `queue`.
    ///
    /// Refused with [`SubscribeError::NotAccepting`] unless the fan-out is starting or
    /// running; nothing is registered or started then.
    pub fn subscribe(
        &self,
        subscriber: &str,
        queue: QueueConfig,
        metrics: QueueMetrics,
    ) -> Result<Subscription, SubscribeError> {
        let mut state = self.inner.state();
        if !matches!(state.status, Status::Starting | Status::Running) {
            return Err(SubscribeError::NotAccepting {
                upstream: self.inner.name.clone(),
                status: state.status,
            });
        }
        let (sender, receiver) =
            ordered_queue(queue, metrics).map_err(|source| SubscribeError::Config {
                upstream: self.inner.name.clone(),
                source,
            })?;
        let id = state.next_id;
        state.next_id += 1;
        state.subscribers.insert(
            id,
            Subscriber {
                name: subscriber.to_owned(),
                sender,
            },
        );
        drop(state);
        tracing::debug!(upstream = %self.inner.name, subscriber, id, "subscribed");
        Ok(Subscription {
            receiver,
            upstream: Arc::downgrade(&self.inner),
            id,
        })
    }

    /// Hands a fork of `batch` to every subscriber, waiting for room in each queue in turn, and
    /// settles the publisher's own token as delivered; each fork is settled by its subscriber.
    /// Returns the number of subscribers reached. A subscriber whose queue closed meanwhile
    /// (it is stopping) gets its fork settled as failed, so the batch is delivered again.
    /// With no subscriber at all the batch is refused ([`PublishError::NoSubscribers`]): a
    /// stopped reaction must get it after its restart, so it is not acknowledged.
    ///
    /// Cancel safety: dropping the future part-way leaves some subscribers with the batch and
    /// settles the rest of the forks as abandoned: redelivery, never a silent loss.
    pub async fn publish(&self, batch: Batch) -> Result<usize, PublishError> {
        let senders: Vec<(String, QueueSender)> = {
            let state = self.inner.state();
            if state.status != Status::Running {
                return Err(PublishError::NotRunning {
                    upstream: self.inner.name.clone(),
                    status: state.status,
                    batch,
                });
            }
            if state.subscribers.is_empty() {
                return Err(PublishError::NoSubscribers {
                    upstream: self.inner.name.clone(),
                    batch,
                });
            }
            state
                .subscribers
                .values()
                .map(|s| (s.name.clone(), s.sender.clone()))
                .collect()
        };
        let mut reached = 0;
        for (name, sender) in senders {
            match sender.send(batch.fork()).await {
                Ok(()) => reached += 1,
                Err(closed) => {
                    tracing::debug!(upstream = %self.inner.name, subscriber = %name, "subscriber stopped; its copy will be redelivered");
                    closed.batch.ack.failed();
                }
            }
        }
        batch.ack.delivered();
        Ok(reached)
    }

    /// Begins stopping: refuses new subscriptions and publishes, and closes every subscriber's
    /// queue (they drain what they hold and then see the end). Subscribers are unregistered.
    pub fn begin_stop(&self) {
        let subscribers = {
            let mut state = self.inner.state();
            state.status = Status::Stopping;
            std::mem::take(&mut state.subscribers)
        };
        for subscriber in subscribers.into_values() {
            subscriber.sender.close();
        }
    }

    /// Marks the stop finished.
    pub fn finish_stop(&self) {
        self.inner.state().status = Status::Stopped;
    }

    /// Runs again after a stop.
    pub fn restart(&self) {
        self.inner.state().status = Status::Running;
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data, consistent after every update: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Subscription {
    /// The subscriber's queue.
    pub fn receiver(&self) -> &QueueReceiver {
        &self.receiver
    }

    /// Stops intake now and removes the subscription from the upstream; queued batches can
    /// still be received.
    pub fn close(&self) {
        self.receiver.close();
        self.unregister();
    }

    fn unregister(&self) {
        if let Some(inner) = self.upstream.upgrade() {
            let removed = inner.state().subscribers.remove(&self.id);
            if let Some(subscriber) = removed {
                tracing::debug!(upstream = %inner.name, subscriber = %subscriber.name, "unsubscribed");
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.unregister();
    }
}
