//! Custom handlers: code that runs inside the sink transaction, next to the event rows.
//!
//! Seed 003's writer inserted an event and updated its cascades (vault and term aggregates) in
//! separate transactions (FINDINGS W-1). Here a handler gets the open transaction: its updates,
//! the events, the outbox messages and the checkpoint commit together or not at all.

use async_trait::async_trait;
use sqlx::PgConnection;
use surefoot_core_model::{Change, SourceId};

pub use crate::apply::outbox::OutboxMessages;
use crate::error::HandlerError;

/// The changes routed to a handler in one sink transaction.
#[derive(Debug)]
pub struct HandlerInput<'a> {
    /// The source the changes came from.
    pub source: &'a SourceId,
    /// The changes, in position order, already recorded as events in this transaction.
    pub changes: &'a [&'a Change],
}

/// Applies changes with its own SQL inside the sink transaction.
///
/// Errors classify themselves: a transient one makes the writer retry the whole transaction, a
/// permanent one dead-letters the batch (or fails the writer, per configuration). The handler
/// must not commit or roll back; it must use `conn` for every statement.
#[async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug {
    /// Runs the handler's statements on `conn`, queueing messages on `outbox`.
    async fn handle(
        &self,
        conn: &mut PgConnection,
        input: HandlerInput<'_>,
        outbox: &mut OutboxMessages,
    ) -> Result<(), HandlerError>;
}
