//! Holding a reaction through the API. A paused reaction takes no further batch and keeps its
//! connection; a stopped one finishes what it holds, then closes its connection, and connects
//! again when started. Either way nothing is dropped: once the reaction's queue is full its
//! segment waits, and so do the segment's query and its sources (a PostgreSQL slot keeps the
//! WAL), so the other reactions of the segment wait too.
//!
//! One lock (`Holds`), never held across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::watch;

/// Whether a reaction takes batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    /// It takes batches.
    Open,
    /// It takes no further batch and keeps its connection.
    Paused,
    /// It takes no further batch and has closed its connection.
    Stopped,
}

/// A reaction's hold: what the API wants, and what the reaction has carried out.
#[derive(Debug, Clone)]
struct Pair {
    wanted: watch::Sender<Hold>,
    seen: watch::Sender<Hold>,
}

/// What a reaction's task holds of its hold.
#[derive(Debug)]
pub(crate) struct HoldWatch {
    /// What the API wants.
    pub(crate) wanted: watch::Receiver<Hold>,
    /// What the reaction reports it carried out.
    seen: watch::Sender<Hold>,
}

impl HoldWatch {
    /// The reaction carried out `hold`.
    pub(crate) fn carried_out(&self, hold: Hold) {
        self.seen.send_replace(hold);
    }
}

/// Every reaction's hold, by reaction id. A reaction keeps its hold across the attempts of
/// its segment, so a segment that restarts does not resume a paused reaction.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    pairs: Arc<Mutex<BTreeMap<String, Pair>>>,
}

impl Holds {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Pair>) -> T) -> T {
        f(&mut self.pairs.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The hold of reaction `id`, open when it is new.
    pub(crate) fn watch(&self, id: &str) -> HoldWatch {
        self.with(|pairs| {
            let pair = pairs.entry(id.to_owned()).or_insert_with(|| Pair {
                wanted: watch::Sender::new(Hold::Open),
                seen: watch::Sender::new(Hold::Open),
            });
            HoldWatch {
                wanted: pair.wanted.subscribe(),
                seen: pair.seen.clone(),
            }
        })
    }

    /// Sets the hold of reaction `id` and returns what the reaction reports it carried out;
    /// `None` if the reaction is unknown.
    pub(crate) fn set(&self, id: &str, hold: Hold) -> Option<watch::Receiver<Hold>> {
        self.with(|pairs| {
            let pair = pairs.get(id)?;
            pair.wanted.send_replace(hold);
            Some(pair.seen.subscribe())
        })
    }

    /// What the API last asked of reaction `id`, if it exists.
    pub(crate) fn get(&self, id: &str) -> Option<Hold> {
        self.with(|pairs| pairs.get(id).map(|pair| *pair.wanted.borrow()))
    }

    /// Forgets reaction `id` (it was removed); its task then takes batches until it ends.
    pub(crate) fn remove(&self, id: &str) {
        self.with(|pairs| {
            pairs.remove(id);
        });
    }
}

/// Waits until the hold is other than `current`; a forgotten hold counts as open.
pub(crate) async fn changed(hold: &mut watch::Receiver<Hold>, current: Hold) -> Hold {
    let seen = hold
        .wait_for(|hold| *hold != current)
        .await
        .map(|hold| *hold);
    // An error: the reaction was removed, so it is no longer held.
    seen.unwrap_or(Hold::Open)
}

/// Waits until the reaction is held; never, once its hold is forgotten.
pub(crate) async fn held(hold: &mut watch::Receiver<Hold>) -> Hold {
    match changed(hold, Hold::Open).await {
        Hold::Open => std::future::pending().await,
        hold => hold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_is_seen_by_the_reaction_and_released() {
        let holds = Holds::default();
        let mut hold = holds.watch("r");
        let mut seen = holds.set("r", Hold::Paused).expect("known");
        assert_eq!(held(&mut hold.wanted).await, Hold::Paused);
        hold.carried_out(Hold::Paused);
        seen.wait_for(|seen| *seen == Hold::Paused)
            .await
            .expect("reported");
        assert_eq!(holds.get("r"), Some(Hold::Paused));
        assert!(holds.set("r", Hold::Stopped).is_some());
        assert_eq!(changed(&mut hold.wanted, Hold::Paused).await, Hold::Stopped);
        assert!(holds.set("r", Hold::Open).is_some());
        assert_eq!(changed(&mut hold.wanted, Hold::Stopped).await, Hold::Open);
        assert!(holds.set("unknown", Hold::Stopped).is_none());
    }

    #[tokio::test]
    async fn a_forgotten_hold_counts_as_open() {
        let holds = Holds::default();
        let mut hold = holds.watch("r");
        assert!(holds.set("r", Hold::Stopped).is_some());
        holds.remove("r");
        assert_eq!(changed(&mut hold.wanted, Hold::Stopped).await, Hold::Open);
        assert_eq!(holds.get("r"), None);
    }
}
