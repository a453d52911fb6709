//! Tests named after the findings they rule out (../shared/seeds/FINDINGS.md). Real tokio
//! tasks; timing-sensitive tests run on tokio's paused clock; orderings are made with channels
//! and tokens, never with sleeps.

// Helpers shared by the tests panic on unexpected errors, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod d_3;
mod d_6_1;
mod d_7_2;
mod d_8a;
mod d_8b;
mod d_c1;
mod d_c2;
mod d_h1;
mod d_m3;
mod health;
mod s_5_s_6;
mod status_props;
mod w_14;
