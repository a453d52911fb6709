//! Ordered, bounded queues and a reaction runtime that never drops: waiting producers, drain on stop, dead letters, and a Redis Streams backend
#![deny(missing_docs)]
