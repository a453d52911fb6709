//! The providers' configuration: a timeout for every step and the bounds that keep memory flat,
//! validated as a whole.

use std::time::Duration;

/// Timeouts and chunk bounds shared by the bootstrap providers.
///
/// Every I/O step of a snapshot is bounded: a provider that hangs is reported as a
/// [`crate::BootstrapError::Timeout`] naming the [`crate::Step`], never waited on forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// Bound on establishing the source: connecting to a server, or opening a file.
    pub connect_timeout: Duration,
    /// Bound on each SQL statement (PostgreSQL providers also send it as `statement_timeout`).
    /// A COPY is the exception: it lasts as long as its table takes, so it is bounded by
    /// `chunk_timeout` and `snapshot_timeout` instead (on the server too).
    pub statement_timeout: Duration,
    /// Bound on reading one chunk from the source (a read of the file, a chunk of COPY data).
    /// Waiting for room in the consumer's channel is not part of it: backpressure is bounded by
    /// `snapshot_timeout` only.
    pub chunk_timeout: Duration,
    /// Bound on the whole snapshot, from the first step to the last row sent.
    pub snapshot_timeout: Duration,
    /// Most changes in one batch sent to the consumer.
    pub batch_changes: usize,
    /// Bytes read from the source at a time.
    pub chunk_bytes: usize,
    /// Longest line (or row) accepted, in bytes; a longer one fails the snapshot rather than
    /// growing memory without bound.
    pub max_line_bytes: usize,
}

impl Default for BootstrapConfig {
    /// Connect 10 s, statement 30 s, chunk 30 s, snapshot 1 hour; batches of 1,000 changes, reads
    /// of 64 KiB, lines up to 16 MiB.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            chunk_timeout: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(60 * 60),
            batch_changes: 1_000,
            chunk_bytes: 64 * 1024,
            max_line_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Every problem found in a configuration, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bootstrap configuration: {}", problems.join("; "))]
pub struct ConfigError {
    /// `field: problem` entries.
    pub problems: Vec<String>,
}

impl BootstrapConfig {
    /// Checks the values together and returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut require = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        let timeouts = [
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
            ("chunk_timeout", self.chunk_timeout),
            ("snapshot_timeout", self.snapshot_timeout),
        ];
        for (field, value) in timeouts {
            require(!value.is_zero(), format!("{field}: must be more than 0"));
        }
        for (field, value) in &timeouts[..3] {
            require(
                self.snapshot_timeout >= *value,
                format!("snapshot_timeout: must be at least {field} ({value:?})"),
            );
        }
        require(
            self.batch_changes > 0,
            "batch_changes: must be more than 0".to_owned(),
        );
        require(
            self.chunk_bytes > 0,
            "chunk_bytes: must be more than 0".to_owned(),
        );
        require(
            self.max_line_bytes > 0,
            "max_line_bytes: must be more than 0".to_owned(),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(BootstrapConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_listed() {
        let config = BootstrapConfig {
            connect_timeout: Duration::ZERO,
            statement_timeout: Duration::ZERO,
            chunk_timeout: Duration::from_secs(120),
            snapshot_timeout: Duration::from_secs(60),
            batch_changes: 0,
            chunk_bytes: 0,
            max_line_bytes: 0,
        };
        let problems = config.validate().unwrap_err().problems;
        assert_eq!(
            problems,
            [
                "connect_timeout: must be more than 0",
                "statement_timeout: must be more than 0",
                "snapshot_timeout: must be at least chunk_timeout (120s)",
                "batch_changes: must be more than 0",
                "chunk_bytes: must be more than 0",
                "max_line_bytes: must be more than 0",
            ]
        );
    }

    #[test]
    fn a_zero_snapshot_timeout_is_named() {
        let config = BootstrapConfig {
            snapshot_timeout: Duration::ZERO,
            ..BootstrapConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("snapshot_timeout: must be more than 0"),
            "{error}"
        );
    }
}
