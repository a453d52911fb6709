//! A component: a service with a status machine, a supervisor per run, and health.
//!
//! [`Component::start`] and [`Component::stop`] are compare-and-set transitions first and
//! work second: of any number of concurrent calls, only those whose transition wins do
//! anything; the rest get a typed [`TransitionError`] at once (FINDINGS D-M3). Each start
//! builds a fresh [`Supervisor`]; a stop empties it before the status says `Stopped`, so a
//! restarted component can never run beside its previous instance (FINDINGS D-H1).
//!
//! Lock order (FINDINGS D-6.1): a component's only lock is the slot holding its current
//! supervisor, taken to clone or replace the handle and never held across an `.await` or while
//! another lock is taken.

mod service;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use service::{FnService, Service, service_fn};

use crate::error_class::{Classify, ErrorClass};
use crate::events::EventBus;
use crate::health::Health;
use crate::status::Status;
use crate::status_machine::{StatusMachine, TransitionError};
use crate::supervisor::{IntensityExceeded, SharedError, Supervisor, SupervisorConfig};

/// Why [`Component::start`] failed. Each variant's cause is its
/// [`source`](std::error::Error::source), typed and downcastable.
#[derive(Debug)]
pub enum StartError {
    /// The component was not `Stopped` or `Failed` (another start or a stop won).
    Transition {
        /// The component.
        component: Arc<str>,
        /// The refused transition.
        source: TransitionError,
    },
    /// The service's start returned an error; the component is `Failed` and holds no task.
    Service {
        /// The component.
        component: Arc<str>,
        /// The service's error (also kept in the component's health).
        source: SharedError,
    },
    /// The component's supervisor gave up before the start completed; the component is
    /// `Failed`.
    GaveUp {
        /// The component.
        component: Arc<str>,
        /// Why its supervisor gave up.
        source: IntensityExceeded,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Transition { component, .. } => {
                write!(f, "component `{component}` cannot start")
            }
            StartError::Service { component, .. } => {
                write!(f, "component `{component}` failed to start")
            }
            StartError::GaveUp { component, .. } => {
                write!(f, "component `{component}` failed while starting")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Transition { source, .. } => Some(source),
            // The shared error itself, not the `Arc` around it, so that it downcasts.
            StartError::Service { source, .. } => Some(&**source),
            StartError::GaveUp { source, .. } => Some(source),
        }
    }
}

impl Classify for StartError {
    /// A lost transition is permanent (asking again gives the same answer); a service error
    /// is transient (a later start may succeed); giving up is permanent.
    fn class(&self) -> ErrorClass {
        match self {
            StartError::Transition { .. } | StartError::GaveUp { .. } => ErrorClass::Permanent,
            StartError::Service { .. } => ErrorClass::Transient,
        }
    }
}

/// Why [`Component::stop`] did not stop anything.
#[derive(Debug, thiserror::Error)]
#[error("component `{component}` cannot stop")]
pub struct StopError {
    /// The component.
    pub component: Arc<str>,
    /// The refused transition (it was not `Running` or `Failed`).
    #[source]
    pub source: TransitionError,
}

impl Classify for StopError {
    /// Always [`ErrorClass::Permanent`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// A supervised component. Cloning gives another handle to the same component.
///
/// Dropping the last handle drops the current supervisor, whose token is then cancelled, so
/// tasks that honour it end; nothing is awaited or aborted (use [`Component::stop`]).
pub struct Component<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    name: Arc<str>,
    service: S,
    config: SupervisorConfig,
    events: EventBus,
    status: StatusMachine,
    health: Health,
    supervisor: Mutex<Option<Supervisor>>,
}

impl<S> Clone for Component<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for Component<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.inner.name)
            .field("status", &self.inner.status.current())
            .finish_non_exhaustive()
    }
}

impl<S: Service> Component<S> {
    /// A `Stopped` component named `name` that runs `service` under supervisors built from
    /// `config`.
    pub fn new(name: impl Into<Arc<str>>, service: S, config: SupervisorConfig) -> Self {
        let config = config.resolved();
        let status = StatusMachine::new(Status::Stopped);
        let health = Health::new(status.subscribe(), config.stall_after);
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                service,
                events: config.events(),
                config,
                status,
                health,
                supervisor: Mutex::new(None),
            }),
        }
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.inner.service
    }

    /// Its status machine (observers subscribe to it; only the component moves it).
    pub fn status(&self) -> Status {
        self.inner.status.current()
    }

    /// A receiver of status changes.
    pub fn subscribe_status(&self) -> tokio::sync::watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Its health record; the service reports progress and pending work through it.
    pub fn health(&self) -> Health {
        self.inner.health.clone()
    }

    /// The bus its events are published on.
    pub fn events(&self) -> EventBus {
        self.inner.events.clone()
    }

    /// The supervisor of the current run, if it has one.
    pub fn supervisor(&self) -> Option<Supervisor> {
        self.slot().clone()
    }

    fn slot(&self) -> MutexGuard<'_, Option<Supervisor>> {
        // The slot holds one handle; a panic elsewhere cannot leave it half-written.
        self.inner
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn transition(&self, from: &'static [Status], to: Status) -> Result<Status, TransitionError> {
        let left = self.inner.status.transition_from(from, to)?;
        self.inner.events.emit(
            &self.inner.name,
            None,
            crate::events::EventKind::StatusChanged { from: left, to },
        );
        Ok(left)
    }

    fn shutdown_timeout(&self) -> Duration {
        self.inner.config.shutdown_timeout
    }
}

mod run;
