//! Checks shared by surefoot's end-to-end tests: they compose the crates the way a user does
//! (bootstrap into the writer, sources through queues into the writer) and end by comparing the
//! target with the source and counting what was lost and what was applied twice.
//!
//! - [`compare`]: the rows of a source table missing from its copy in another database and the
//!   rows of the copy the source does not have, each side's `EXCEPT` of the other (via `dblink`).
//! - [`applied`]: what `sink-postgres-writer` recorded as applied per source, checked for
//!   overlapping ranges (a change applied twice).

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod applied;
pub mod compare;
