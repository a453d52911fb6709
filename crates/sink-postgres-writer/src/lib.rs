//! Transactional, idempotent writes of change batches into PostgreSQL, with a transactional outbox published to Redis
#![deny(missing_docs)]
