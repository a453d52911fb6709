#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod run;
