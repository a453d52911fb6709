//! What the API and readiness report: every component's kind, status, detail and progress.
//! One lock, never held across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A source.
    Source,
    /// A continuous query.
    Query,
    /// A reaction.
    Reaction,
}

/// Where a component is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not started yet, or between attempts.
    Starting,
    /// Copying its snapshot.
    Bootstrapping,
    /// Running (a source: streaming; a reaction: connected).
    Running,
    /// Failed: see the detail; retried when the failure is transient.
    Failed,
    /// Stopping or stopped.
    Stopped,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    state: State,
    detail: Option<String>,
    processed: u64,
    pending: u64,
    lag_bytes: Option<u64>,
    last_progress: Instant,
}

/// A component's view, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentView {
    /// Its id.
    pub id: String,
    /// What it is.
    pub kind: Kind,
    /// Its state.
    pub state: State,
    /// Why it failed, or what it is doing.
    pub detail: Option<String>,
    /// Batches (sources, reactions) or input batches (queries) handled since the start.
    pub processed: u64,
    /// Batches waiting for it.
    pub pending: u64,
    /// A PostgreSQL source: how far its confirmed position is behind the server's WAL, in
    /// bytes, at the last heartbeat.
    pub lag_bytes: Option<u64>,
    /// Seconds since it last made progress.
    pub since_progress_seconds: f64,
    /// Work waiting and no progress for longer than the stall threshold.
    pub stalled: bool,
}

/// The registry of components, shared by the pipeline's tasks and the API.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    stall_after: Duration,
}

impl Registry {
    /// An empty registry; a component with work waiting and no progress for `stall_after` is
    /// stalled.
    pub fn new(stall_after: Duration) -> Self {
        Self {
            entries: Arc::default(),
            stall_after,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds a component, `Starting`.
    pub fn add(&self, id: &str, kind: Kind) {
        self.with(|entries| {
            entries.insert(
                id.to_owned(),
                Entry {
                    kind,
                    state: State::Starting,
                    detail: None,
                    processed: 0,
                    pending: 0,
                    lag_bytes: None,
                    last_progress: Instant::now(),
                },
            );
        });
    }

    /// Removes a component.
    pub fn remove(&self, id: &str) {
        self.with(|entries| {
            entries.remove(id);
        });
    }

    /// Sets a component's state and detail.
    pub fn set(&self, id: &str, state: State, detail: Option<String>) {
        self.with(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.state = state;
                entry.detail = detail;
            }
        });
    }

    /// One more unit of work done.
    pub fn progress(&self, id: &str) {
        self.progress_by(id, 1);
    }

    /// `units` more units of work done.
    pub fn progress_by(&self, id: &str, units: u64) {
        self.with(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.processed += units;
                entry.last_progress = Instant::now();
            }
        });
    }

    /// The component made progress (without a unit of work to count).
    pub fn touch(&self, id: &str) {
        self.with(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.last_progress = Instant::now();
            }
        });
    }

    /// How much work waits for the component.
    pub fn set_pending(&self, id: &str, pending: u64) {
        self.with(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.pending = pending;
            }
        });
    }

    /// How far a source is behind its server's WAL.
    pub fn set_lag(&self, id: &str, lag_bytes: Option<u64>) {
        self.with(|entries| {
            if let Some(entry) = entries.get_mut(id) {
                entry.lag_bytes = lag_bytes;
            }
        });
    }

    /// Every component, by id.
    pub fn views(&self) -> Vec<ComponentView> {
        let stall_after = self.stall_after;
        self.with(|entries| {
            entries
                .iter()
                .map(|(id, entry)| {
                    let since = entry.last_progress.elapsed();
                    ComponentView {
                        id: id.clone(),
                        kind: entry.kind,
                        state: entry.state,
                        detail: entry.detail.clone(),
                        processed: entry.processed,
                        pending: entry.pending,
                        lag_bytes: entry.lag_bytes,
                        since_progress_seconds: since.as_secs_f64(),
                        stalled: entry.pending > 0 && since > stall_after,
                    }
                })
                .collect()
        })
    }
}
