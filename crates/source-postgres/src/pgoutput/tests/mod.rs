//! Tests of the decoder: unit tests, property tests, and the strategies and samples they share.

mod assembly_tests;
mod decode_tests;
mod message_props;
mod render;
mod samples;
mod strategies;
mod transaction_props;
mod transaction_tests;
mod value_props;
mod value_tests;
