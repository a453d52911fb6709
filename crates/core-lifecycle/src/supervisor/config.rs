//! Restart policies and supervisor configuration.

use std::time::Duration;

use super::exit::ExitCause;
use crate::events::EventBus;
use crate::metrics::LifecycleMetrics;
use crate::retry::Backoff;

/// When a supervisor restarts a task that ended (OTP's temporary / transient / permanent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Never restarted; a failure is still reported (event, metric, stop report).
    Never,
    /// Restarted when it returns an error or panics; a normal return ends it.
    OnFailure,
    /// Restarted whenever it ends before the supervisor stops it: a normal return is an
    /// unexpected exit too.
    Always,
}

impl RestartPolicy {
    /// Whether an instance that ended with `cause` is restarted (if the supervisor is not
    /// stopping and its intensity allows).
    pub fn restarts_after(self, cause: &ExitCause) -> bool {
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => cause.is_failure(),
            RestartPolicy::Always => true,
        }
    }
}

/// How a supervisor restarts, reports and stops.
///
/// Intensity and period follow OTP: more than `intensity` restarts (of all its tasks together)
/// within any `period` and the supervisor gives up: it cancels its tasks, its component goes
/// `Failed`, and a parent supervisor sees the nested supervisor fail.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub(crate) intensity: u32,
    pub(crate) period: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) stall_after: Duration,
    pub(crate) metrics: Option<LifecycleMetrics>,
    pub(crate) events: Option<EventBus>,
}

impl Default for SupervisorConfig {
    /// 3 restarts within 5 s; restart backoff 100 ms doubling to 10 s with full jitter; 5 s
    /// shutdown timeout after an escalation; stalled after 60 s; global metrics; a new event bus
    /// of 1024 events.
    fn default() -> Self {
        Self {
            intensity: 3,
            period: Duration::from_secs(5),
            backoff: Backoff::default(),
            shutdown_timeout: Duration::from_secs(5),
            stall_after: Duration::from_secs(60),
            metrics: None,
            events: None,
        }
    }
}

impl SupervisorConfig {
    /// Gives up after more than `intensity` restarts within `period`.
    pub fn with_intensity(mut self, intensity: u32, period: Duration) -> Self {
        self.intensity = intensity;
        self.period = period;
        self
    }

    /// Waits per `backoff` before each restart (retry `n` is the task's `n`-th consecutive
    /// restart; a task that ran for a whole period starts again from 0).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Time given to a component's tasks to stop after it failed, before they are aborted.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Health reports the component stalled after `after` without progress while work is
    /// pending.
    pub fn with_stall_after(mut self, after: Duration) -> Self {
        self.stall_after = after;
        self
    }

    /// Records metrics in `metrics` instead of the global meter provider.
    pub fn with_metrics(mut self, metrics: LifecycleMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Publishes events on `events` instead of a bus of its own.
    pub fn with_events(mut self, events: EventBus) -> Self {
        self.events = Some(events);
        self
    }

    /// Fills in the metrics and event bus, so that clones share them.
    pub(crate) fn resolved(mut self) -> Self {
        let metrics = self
            .metrics
            .get_or_insert_with(LifecycleMetrics::global)
            .clone();
        self.events
            .get_or_insert_with(|| EventBus::new(1024, metrics));
        self
    }

    pub(crate) fn metrics(&self) -> LifecycleMetrics {
        self.metrics.clone().unwrap_or_default()
    }

    pub(crate) fn events(&self) -> EventBus {
        self.events
            .clone()
            .unwrap_or_else(|| EventBus::new(1024, self.metrics()))
    }
}
