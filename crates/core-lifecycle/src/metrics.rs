//! Task, retry, breaker and event-bus metrics, recorded through the `opentelemetry` API.
//!
//! Nothing is exported from here: the instruments are no-ops until the application installs a
//! meter provider (or passes a [`Meter`] from one to [`LifecycleMetrics::new`]).
//!
//! | instrument | kind | attributes |
//! | --- | --- | --- |
//! | `surefoot.tasks.spawned` | counter | `supervisor`, `task` |
//! | `surefoot.tasks.finished` | counter (ended with `Ok`) | `supervisor`, `task` |
//! | `surefoot.tasks.failed` | counter (ended with `Err`) | `supervisor`, `task` |
//! | `surefoot.tasks.panicked` | counter | `supervisor`, `task` |
//! | `surefoot.tasks.restarted` | counter | `supervisor`, `task` |
//! | `surefoot.tasks.aborted` | counter (aborted at a stop deadline) | `supervisor`, `task` |
//! | `surefoot.tasks.active` | up-down counter | `supervisor`, `task` |
//! | `surefoot.supervisor.escalations` | counter (intensity exceeded) | `supervisor` |
//! | `surefoot.retries` | counter | `operation` |
//! | `surefoot.breaker.transitions` | counter | `breaker`, `to` |
//! | `surefoot.events.missed` | counter (events a lagging subscriber missed) | none |

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, UpDownCounter};

/// The instrumentation scope name used by [`LifecycleMetrics::global`].
pub const METER_NAME: &str = "surefoot-core-lifecycle";

/// The instruments this crate records. Cloning is cheap (the instruments are shared).
#[derive(Debug, Clone)]
pub struct LifecycleMetrics {
    pub(crate) spawned: Counter<u64>,
    pub(crate) finished: Counter<u64>,
    pub(crate) failed: Counter<u64>,
    pub(crate) panicked: Counter<u64>,
    pub(crate) restarted: Counter<u64>,
    pub(crate) aborted: Counter<u64>,
    pub(crate) active: UpDownCounter<i64>,
    pub(crate) escalations: Counter<u64>,
    pub(crate) retries: Counter<u64>,
    pub(crate) breaker_transitions: Counter<u64>,
    pub(crate) events_missed: Counter<u64>,
}

impl LifecycleMetrics {
    /// Instruments created from `meter`.
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Self {
            spawned: counter("surefoot.tasks.spawned", "Task instances started"),
            finished: counter("surefoot.tasks.finished", "Task instances that returned Ok"),
            failed: counter(
                "surefoot.tasks.failed",
                "Task instances that returned an error",
            ),
            panicked: counter("surefoot.tasks.panicked", "Task instances that panicked"),
            restarted: counter("surefoot.tasks.restarted", "Task restarts by a supervisor"),
            aborted: counter("surefoot.tasks.aborted", "Tasks aborted at a stop deadline"),
            active: meter
                .i64_up_down_counter("surefoot.tasks.active")
                .with_description("Task instances currently running")
                .build(),
            escalations: counter(
                "surefoot.supervisor.escalations",
                "Supervisors that exceeded their restart intensity",
            ),
            retries: counter("surefoot.retries", "Retries after a failed attempt"),
            breaker_transitions: counter(
                "surefoot.breaker.transitions",
                "Circuit breaker state changes",
            ),
            events_missed: counter(
                "surefoot.events.missed",
                "Lifecycle events a lagging subscriber missed",
            ),
        }
    }

    /// Instruments from the global meter provider, scope [`METER_NAME`].
    pub fn global() -> Self {
        Self::new(&opentelemetry::global::meter(METER_NAME))
    }

    pub(crate) fn breaker_transition(&self, breaker: &str, to: &'static str) {
        self.breaker_transitions.add(
            1,
            &[
                KeyValue::new("breaker", breaker.to_owned()),
                KeyValue::new("to", to),
            ],
        );
    }

    pub(crate) fn retry(&self, operation: &str) {
        self.retries
            .add(1, &[KeyValue::new("operation", operation.to_owned())]);
    }
}

impl Default for LifecycleMetrics {
    /// Same as [`LifecycleMetrics::global`].
    fn default() -> Self {
        Self::global()
    }
}
