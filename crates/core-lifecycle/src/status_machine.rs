//! Compare-and-set status transitions, published on a watch channel.
//!
//! A [`StatusMachine`] holds one [`Status`]. Every change goes through
//! [`StatusMachine::transition`], which checks the pair against [`TRANSITIONS`] and swaps the
//! value only if it still is what the caller expects, atomically. Of N concurrent callers that
//! expect the same status, exactly one wins; the others get [`TransitionError::Conflict`] naming
//! the status they found (FINDINGS D-M3).

use std::sync::Arc;

use tokio::sync::watch;

use crate::error_class::{Classify, ErrorClass};
use crate::status::{Status, TRANSITIONS};

/// Why a status transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The pair is not in [`TRANSITIONS`]; no current status could make it valid.
    #[error("status transition {from} -> {to} is not in the transition table")]
    NotAllowed {
        /// The status the caller expected to leave.
        from: Status,
        /// The status the caller asked for.
        to: Status,
    },
    /// The status was not one of those the caller expected (someone else moved it first).
    #[error("cannot move to {to}: status is {actual}, expected one of {expected:?}")]
    Conflict {
        /// The statuses the caller would have accepted leaving.
        expected: &'static [Status],
        /// The status found.
        actual: Status,
        /// The status the caller asked for.
        to: Status,
    },
}

impl Classify for TransitionError {
    /// A refused transition is a fact about the component's state: retrying the same call
    /// immediately gives the same answer, so it is [`ErrorClass::Permanent`].
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// A status with compare-and-set transitions and a watch channel for observers.
///
/// Cloning gives another handle to the same status. The only lock involved is the watch
/// channel's own, held for the duration of one comparison and store; it is never held across an
/// `.await` and no other lock is taken while it is held.
#[derive(Debug, Clone)]
pub struct StatusMachine {
    tx: Arc<watch::Sender<Status>>,
}

impl StatusMachine {
    /// A machine in `initial` status.
    pub fn new(initial: Status) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(initial)),
        }
    }

    /// The current status.
    pub fn current(&self) -> Status {
        *self.tx.borrow()
    }

    /// A receiver that sees every status change (it may coalesce changes it did not look at in
    /// time, as watch channels do; the latest value is never lost).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.tx.subscribe()
    }

    /// Moves from `from` to `to` if the status is `from` now; see [`Self::transition_from`].
    pub fn transition(&self, from: Status, to: Status) -> Result<(), TransitionError> {
        let expected: &'static [Status] = match from {
            Status::Stopped => &[Status::Stopped],
            Status::Starting => &[Status::Starting],
            Status::Running => &[Status::Running],
            Status::Stopping => &[Status::Stopping],
            Status::Failed => &[Status::Failed],
        };
        self.transition_from(expected, to).map(|_| ())
    }

    /// Moves to `to` if the current status is one of `expected`, atomically, and returns the
    /// status it left.
    ///
    /// Fails with [`TransitionError::NotAllowed`] if any pair `(expected[i], to)` is not in
    /// [`TRANSITIONS`] (checked before looking at the status), and with
    /// [`TransitionError::Conflict`] if the current status is not in `expected`.
    pub fn transition_from(
        &self,
        expected: &'static [Status],
        to: Status,
    ) -> Result<Status, TransitionError> {
        if let Some(&from) = expected
            .iter()
            .find(|from| !TRANSITIONS.contains(&(**from, to)))
        {
            return Err(TransitionError::NotAllowed { from, to });
        }
        let mut left = None;
        let mut found = None;
        self.tx.send_if_modified(|status| {
            if expected.contains(status) {
                left = Some(*status);
                *status = to;
                true
            } else {
                found = Some(*status);
                false
            }
        });
        match (left, found) {
            (Some(from), _) => {
                tracing::debug!(%from, %to, "status transition");
                Ok(from)
            }
            (None, actual) => Err(TransitionError::Conflict {
                expected,
                actual: actual.unwrap_or(to),
                to,
            }),
        }
    }

    /// Waits until the status satisfies `predicate` and returns it.
    ///
    /// Cancel-safe: dropping the future loses nothing. Returns `None` only if every handle to
    /// the machine was dropped first.
    pub async fn wait_for(&self, predicate: impl FnMut(&Status) -> bool) -> Option<Status> {
        let mut rx = self.tx.subscribe();
        rx.wait_for(predicate).await.ok().map(|status| *status)
    }
}

impl Default for StatusMachine {
    /// A machine in [`Status::Stopped`].
    fn default() -> Self {
        Self::new(Status::Stopped)
    }
}
