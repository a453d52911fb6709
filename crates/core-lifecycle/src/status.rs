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
