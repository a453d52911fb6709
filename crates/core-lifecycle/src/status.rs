//! Component status.

use std::fmt;

/// The lifecycle status of a component.
///
/// `Stopped → Starting → Running → Stopping → Stopped`; `Failed` is reachable from the active
/// states and `Failed → Starting` retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not running; nothing held.
    Stopped,
    /// Start in progress.
    Starting,
    /// Running normally.
    Running,
    /// Stop in progress.
    Stopping,
    /// Stopped because of an error.
    Failed,
}

/// The one transition table for component status: `(from, to)` pairs, and nothing else, are
/// allowed.
///
/// `Stopped → Starting → Running → Stopping → Stopped`; `Failed` is reachable from the active
/// states (`Starting`, `Running`, `Stopping`); `Failed → Starting` retries and `Failed → Stopping`
/// releases what a failed component still holds.
pub const TRANSITIONS: &[(Status, Status)] = &[
    (Status::Stopped, Status::Starting),
    (Status::Starting, Status::Running),
    (Status::Starting, Status::Failed),
    (Status::Running, Status::Stopping),
    (Status::Running, Status::Failed),
    (Status::Stopping, Status::Stopped),
    (Status::Stopping, Status::Failed),
    (Status::Failed, Status::Starting),
    (Status::Failed, Status::Stopping),
];

impl Status {
    /// Every status, in declaration order.
    pub const ALL: [Status; 5] = [
        Status::Stopped,
        Status::Starting,
        Status::Running,
        Status::Stopping,
        Status::Failed,
    ];

    /// Whether [`TRANSITIONS`] allows going from `self` to `to`.
    pub fn can_transition_to(self, to: Status) -> bool {
        TRANSITIONS.contains(&(self, to))
    }

    /// True for the states in which a component holds tasks or resources: `Starting`, `Running`
    /// and `Stopping`.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Starting | Status::Running | Status::Stopping)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Status::Stopped => "stopped",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Failed => "failed",
        };
        f.write_str(name)
    }
}
