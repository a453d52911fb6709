//! Settling input tokens in order.
//!
//! A result batch carries a token of its own whose settlement settles the input batch's token
//! with the same outcome. An input batch that produced no diff has nothing to wait for, but it
//! is settled delivered only once every result batch before it has settled: its token waits in
//! a queue behind them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use surefoot_core_model::AckToken;

#[derive(Debug)]
enum Entry {
    /// A result batch, by id, and whether its token has settled.
    Output { id: u64, settled: bool },
    /// The token of an input batch without diffs, waiting for the outputs before it.
    Empty(AckToken),
}

#[derive(Debug, Default)]
struct Pending {
    next_id: u64,
    queue: VecDeque<Entry>,
}

/// The queue of unsettled result batches and the empty input batches behind them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settler {
    inner: Arc<Mutex<Pending>>,
}

impl Settler {
    /// A token for a result batch made from the input batch whose token is `input`.
    pub(crate) fn output(&self, input: AckToken) -> AckToken {
        let id = {
            let mut pending = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let id = pending.next_id;
            pending.next_id += 1;
            pending
                .queue
                .push_back(Entry::Output { id, settled: false });
            id
        };
        let inner = Arc::clone(&self.inner);
        AckToken::new(move |outcome| {
            input.settle_with(outcome);
            let released = {
                let mut pending = inner.lock().unwrap_or_else(PoisonError::into_inner);
                for entry in pending.queue.iter_mut() {
                    if let Entry::Output {
                        id: entry_id,
                        settled,
                    } = entry
                        && *entry_id == id
                    {
                        *settled = true;
                    }
                }
                release(&mut pending.queue)
            };
            // Settled outside the lock: a token's owner runs code of its own when it settles.
            released.into_iter().for_each(AckToken::delivered);
        })
    }

    /// Settles the token of an input batch without diffs, now or once the outputs before it
    /// have settled.
    pub(crate) fn empty(&self, input: AckToken) {
        let now = {
            let mut pending = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.queue.is_empty() {
                Some(input)
            } else {
                pending.queue.push_back(Entry::Empty(input));
                None
            }
        };
        if let Some(token) = now {
            token.delivered();
        }
    }

    /// Result batches and empty input batches not yet settled.
    pub(crate) fn pending(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
    }
}

/// Pops the settled front of the queue, returning the empty batches' tokens it frees.
fn release(queue: &mut VecDeque<Entry>) -> Vec<AckToken> {
    let mut released = Vec::new();
    while let Some(front) = queue.front() {
        match front {
            Entry::Output { settled: false, .. } => break,
            Entry::Output { settled: true, .. } => {
                queue.pop_front();
            }
            Entry::Empty(_) => {
                if let Some(Entry::Empty(token)) = queue.pop_front() {
                    released.push(token);
                }
            }
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;
    use surefoot_core_model::AckOutcome;

    #[test]
    fn an_empty_batch_waits_for_the_outputs_before_it() {
        let settler = Settler::default();
        let (first, mut first_outcome) = AckToken::observed();
        let (second, mut second_outcome) = AckToken::observed();
        let (third, mut third_outcome) = AckToken::observed();
        let out_first = settler.output(first);
        settler.empty(second);
        let out_third = settler.output(third);
        out_third.delivered();
        assert_eq!(third_outcome.try_recv().unwrap(), AckOutcome::Delivered);
        assert!(
            second_outcome.try_recv().is_err(),
            "settled before the output ahead of it"
        );
        out_first.failed();
        assert_eq!(first_outcome.try_recv().unwrap(), AckOutcome::Failed);
        assert_eq!(second_outcome.try_recv().unwrap(), AckOutcome::Delivered);
        assert_eq!(settler.pending(), 0);
        let (fourth, mut fourth_outcome) = AckToken::observed();
        settler.empty(fourth);
        assert_eq!(fourth_outcome.try_recv().unwrap(), AckOutcome::Delivered);
    }
}
