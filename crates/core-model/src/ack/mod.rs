//! End-to-end acknowledgement: tokens that travel with batches, and the tracker that turns
//! settled tokens into the watermark a source may confirm upstream.
//!
//! The whole design is in the workspace's DESIGN notes ("the spine"); in short: a token is cloned
//! for every consumer, each clone is settled delivered or failed (dropping it unsettled counts as
//! failed), the worst outcome wins, and the watermark is the highest position below which every
//! batch was delivered.

mod token;
mod tracker;

pub use token::{AckOutcome, AckToken};
pub use tracker::{AckTracker, FailedBatch, TrackerError, TrackerSnapshot};
