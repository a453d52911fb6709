//! The rows one join index holds under one key, with their weights.
//!
//! Most keys hold one or two rows (a primary key, a foreign key with few references), where a
//! hash map per key costs an allocation and hashing for nothing; past [`FEW`] rows the list
//! becomes a map, so a key shared by many rows still costs per change, not per row.

use smallvec::SmallVec;

use crate::datum::{Map, Tuple};

/// Rows kept in a list before they move to a map.
const FEW: usize = 8;

/// Weighted rows under one join key.
#[derive(Debug)]
pub(crate) enum Entries {
    /// Up to [`FEW`] rows, searched in order.
    Few(SmallVec<[(Tuple, i64); 1]>),
    /// More rows, by hash.
    Many(Map<Tuple, i64>),
}

impl Entries {
    /// One row.
    pub(crate) fn of(tuple: Tuple, weight: i64) -> Self {
        let mut few = SmallVec::new();
        few.push((tuple, weight));
        Entries::Few(few)
    }

    /// Adds `weight` of `tuple`; returns the change in the number of rows (1, 0 or -1).
    pub(crate) fn add(&mut self, tuple: Tuple, weight: i64) -> isize {
        match self {
            Entries::Few(few) => {
                if let Some(place) = few.iter().position(|(row, _)| *row == tuple) {
                    few[place].1 += weight;
                    if few[place].1 != 0 {
                        return 0;
                    }
                    few.swap_remove(place);
                    return -1;
                }
                if few.len() < FEW {
                    few.push((tuple, weight));
                    return 1;
                }
                let mut many: Map<Tuple, i64> = few.drain(..).collect();
                many.insert(tuple, weight);
                *self = Entries::Many(many);
                1
            }
            Entries::Many(many) => {
                let Some(entry) = many.get_mut(&tuple) else {
                    many.insert(tuple, weight);
                    return 1;
                };
                *entry += weight;
                if *entry != 0 {
                    return 0;
                }
                many.remove(&tuple);
                -1
            }
        }
    }

    /// True when no row is held.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Entries::Few(few) => few.is_empty(),
            Entries::Many(many) => many.is_empty(),
        }
    }

    /// The sum of the weights.
    pub(crate) fn total(&self) -> i64 {
        self.iter().map(|(_, weight)| weight).sum()
    }

    /// The rows and their weights.
    pub(crate) fn iter(&self) -> EntriesIter<'_> {
        match self {
            Entries::Few(few) => EntriesIter::Few(few.iter()),
            Entries::Many(many) => EntriesIter::Many(many.iter()),
        }
    }
}

/// The rows of [`Entries`] with their weights; an enum, not a boxed iterator, since it is made
/// per joined delta.
pub(crate) enum EntriesIter<'a> {
    Few(std::slice::Iter<'a, (Tuple, i64)>),
    Many(std::collections::hash_map::Iter<'a, Tuple, i64>),
}

impl<'a> Iterator for EntriesIter<'a> {
    type Item = (&'a Tuple, i64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EntriesIter::Few(few) => few.next().map(|(row, weight)| (row, *weight)),
            EntriesIter::Many(many) => many.next().map(|(row, weight)| (row, *weight)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;

    fn row(n: i64) -> Tuple {
        smallvec::smallvec![Datum::Int(n)]
    }

    #[test]
    fn rows_move_to_a_map_past_few_and_weights_stay_exact() {
        let mut entries = Entries::of(row(0), 1);
        let mut count: isize = 1;
        for n in 1..20 {
            count += entries.add(row(n), 1);
        }
        assert_eq!(count, 20);
        assert!(matches!(entries, Entries::Many(_)));
        assert_eq!(entries.add(row(3), 1), 0);
        assert_eq!(entries.total(), 21);
        for n in 0..20 {
            count += entries.add(row(n), -1);
        }
        assert_eq!(count, 1, "row 3 still has weight 1");
        assert_eq!(entries.add(row(3), -1), -1);
        assert!(entries.is_empty());
    }

    #[test]
    fn a_few_rows_retract_exactly() {
        let mut entries = Entries::of(row(1), 1);
        assert_eq!(entries.add(row(2), 2), 1);
        assert_eq!(entries.add(row(1), -1), -1);
        assert_eq!(entries.iter().collect::<Vec<_>>(), vec![(&row(2), 2)]);
    }
}
