#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod breaker;
pub mod component;
pub mod error_class;
pub mod events;
pub mod health;
pub mod metrics;
pub mod retry;
#[cfg(unix)]
pub mod signal;
pub mod status;
pub mod status_machine;
pub mod supervisor;
pub mod task_group;
pub mod timeout;

pub use breaker::{BreakerConfig, BreakerError, BreakerState, CircuitBreaker};
pub use component::{Component, Service, StartError, StopError, service_fn};
pub use error_class::{Classify, ErrorClass};
pub use events::{EventBus, EventKind, LifecycleEvent, Subscription};
pub use health::{Health, HealthReport};
pub use metrics::LifecycleMetrics;
pub use retry::{Backoff, Retry, RetryBudget, RetryError, RetryPolicy};
pub use status::Status;
pub use status_machine::{StatusMachine, TransitionError};
pub use supervisor::{ExitCause, IntensityExceeded, RestartPolicy, Supervisor, SupervisorConfig};
pub use task_group::{SpawnError, StopReport, TaskError, TaskFailure, TaskGroup};
pub use timeout::{TimeoutError, timeout};
pub use tokio_util::sync::CancellationToken;
