//! Dead letters: where a batch goes once its reaction has failed past the retry budget (or with
//! an error retrying cannot fix), with its error and attempt count.
//!
//! A dead-lettered batch counts as settled: the runtime acknowledges it only after the
//! destination has durably accepted the letter. If writing the letter fails, the batch is
//! settled as failed instead, so it is delivered again: nothing is dropped either way.

mod file;
#[cfg(feature = "redis")]
mod redis_stream;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::{Batch, Change, Position};

pub use file::FileDeadLetters;
#[cfg(feature = "redis")]
pub use redis_stream::RedisDeadLetters;

/// A batch that could not be delivered, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The reaction that failed.
    pub reaction: String,
    /// The batch's source.
    pub source: String,
    /// The batch's first position.
    pub first: Position,
    /// The batch's last position.
    pub last: Position,
    /// The batch's commit time.
    pub commit_time: Option<DateTime<Utc>>,
    /// The batch's changes.
    pub changes: Vec<Change>,
    /// The last error with its causes, outermost first, joined by `: `.
    pub error: String,
    /// The last error's class.
    pub class: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the batch was given up on.
    pub failed_at: DateTime<Utc>,
}

impl DeadLetter {
    /// A letter for `batch`, which `reaction` gave up on after `attempts` with `error`.
    pub fn new(
        reaction: &str,
        batch: &Batch,
        error: &(dyn std::error::Error + 'static),
        class: ErrorClass,
        attempts: u32,
    ) -> Self {
        Self {
            reaction: reaction.to_owned(),
            source: batch.source.to_string(),
            first: batch.first,
            last: batch.last,
            commit_time: batch.commit_time,
            changes: batch.changes.to_vec(),
            error: error_chain(error),
            class: class.to_string(),
            attempts,
            failed_at: Utc::now(),
        }
    }
}

/// An error and its sources, joined by `: `.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// A dead letter could not be written. Non-exhaustive: the `Redis` variant exists only with the
/// `redis` feature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// Writing the file failed.
    #[error("writing dead letter to {path}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Redis refused or failed (`redis` feature).
    #[cfg(feature = "redis")]
    #[error("appending dead letter to Redis stream `{stream}`")]
    Redis {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: redis::RedisError,
    },
    /// The destination did not answer in time.
    #[error(transparent)]
    Timeout(#[from] surefoot_core_lifecycle::TimeoutError),
    /// The letter could not be encoded.
    #[error("encoding dead letter")]
    Encode(#[from] serde_json::Error),
}

impl Classify for DeadLetterError {
    fn class(&self) -> ErrorClass {
        match self {
            DeadLetterError::File { .. } => ErrorClass::Transient,
            #[cfg(feature = "redis")]
            DeadLetterError::Redis { .. } => ErrorClass::Transient,
            DeadLetterError::Timeout(_) => ErrorClass::Timeout,
            DeadLetterError::Encode(_) => ErrorClass::Permanent,
        }
    }
}

/// Where dead letters go.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Writes `letter` durably; returns only once it is written.
    async fn write(&self, letter: &DeadLetter) -> Result<(), DeadLetterError>;
}
