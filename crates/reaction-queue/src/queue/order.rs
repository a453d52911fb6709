//! The ordering structure: one lane per source, merged by the lanes' heads.
//!
//! Within a lane, entries are kept in position order (an entry that arrives with a lower
//! position than the lane's tail, as after a redelivery, is inserted in its place). Across
//! lanes, the entry taken next is the lane head with the smallest [`OrderKey`]: commit time,
//! then the source's rank, then position, then arrival. So entries of different sources that
//! share a commit time always come out in the same, stated order.
//!
//! Taking the next entry compares the heads of the lanes one by one: a pipeline has a handful of
//! sources, for which a scan beats keeping the heads in a sorted map on every push and pop.

use std::collections::{HashMap, VecDeque};

use surefoot_core_model::{Position, SourceId};

/// Where an entry sorts among the entries of other sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    /// Commit time in microseconds since the Unix epoch.
    pub time_micros: i64,
    /// The source's rank: its place in the configured source list.
    pub rank: u32,
    /// The entry's position within its source.
    pub position: Position,
    /// Arrival order, which breaks the remaining ties (equal positions).
    pub arrival: u64,
}

/// Entries in lanes, merged by their heads. Not synchronised; the queue wraps it in a lock.
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    lanes: Vec<VecDeque<(OrderKey, T)>>,
    /// Each source's lane and rank.
    by_source: HashMap<SourceId, (usize, u32)>,
    /// Configured ranks, for sources not seen yet.
    ranks: HashMap<SourceId, u32>,
    next_unranked: u32,
    len: usize,
    arrivals: u64,
}

impl<T> Lanes<T> {
    /// Empty lanes; `ranked` lists the sources in rank order. Sources not listed rank after
    /// every listed one, in the order they are first seen.
    pub(crate) fn new(ranked: &[SourceId]) -> Self {
        let ranks: HashMap<SourceId, u32> = ranked
            .iter()
            .enumerate()
            .map(|(rank, source)| (source.clone(), u32::try_from(rank).unwrap_or(u32::MAX)))
            .collect();
        let next_unranked = u32::try_from(ranks.len()).unwrap_or(u32::MAX);
        Self {
            lanes: Vec::new(),
            by_source: HashMap::new(),
            ranks,
            next_unranked,
            len: 0,
            arrivals: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds an entry; returns its key.
    pub(crate) fn push(
        &mut self,
        source: &SourceId,
        time_micros: i64,
        position: Position,
        item: T,
    ) -> OrderKey {
        let (lane_index, rank) = self.lane(source);
        let key = OrderKey {
            time_micros,
            rank,
            position,
            arrival: self.arrivals,
        };
        self.arrivals += 1;
        let lane = &mut self.lanes[lane_index];
        if lane
            .back()
            .is_none_or(|(tail, _)| tail.position <= position)
        {
            lane.push_back((key, item));
        } else {
            let at = lane.partition_point(|(existing, _)| existing.position <= position);
            lane.insert(at, (key, item));
        }
        self.len += 1;
        key
    }

    /// Takes the entry that comes next.
    pub(crate) fn pop(&mut self) -> Option<(OrderKey, T)> {
        let lane = self
            .lanes
            .iter_mut()
            .filter_map(|lane| lane.front().map(|(key, _)| *key).map(|key| (key, lane)))
            .min_by_key(|(key, _)| *key)
            .map(|(_, lane)| lane)?;
        let entry = lane.pop_front()?;
        self.len -= 1;
        Some(entry)
    }

    /// Takes every entry, in order.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        while let Some((_, item)) = self.pop() {
            out.push(item);
        }
        out
    }

    /// The source's lane and rank, creating the lane on first sight.
    fn lane(&mut self, source: &SourceId) -> (usize, u32) {
        if let Some(found) = self.by_source.get(source) {
            return *found;
        }
        let rank = self.ranks.get(source).copied().unwrap_or_else(|| {
            let rank = self.next_unranked;
            self.next_unranked = self.next_unranked.saturating_add(1);
            rank
        });
        self.lanes.push(VecDeque::new());
        let found = (self.lanes.len() - 1, rank);
        self.by_source.insert(source.clone(), found);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str) -> SourceId {
        SourceId::new(name)
    }

    #[test]
    fn equal_times_come_out_by_rank_then_position() {
        let (a, b) = (source("a"), source("b"));
        let mut lanes = Lanes::new(&[a.clone(), b.clone()]);
        lanes.push(&b, 5, Position::Sequence(1), "b1");
        lanes.push(&a, 5, Position::Sequence(2), "a2");
        lanes.push(&a, 5, Position::Sequence(3), "a3");
        lanes.push(&b, 4, Position::Sequence(0), "b0");
        assert_eq!(lanes.drain(), vec!["b0", "a2", "a3", "b1"]);
        assert_eq!(lanes.len(), 0);
    }
}
