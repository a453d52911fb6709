//! The queue's settings.

use surefoot_core_model::SourceId;

use super::error::ConfigError;

/// How big a queue is and how it orders sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's name, for errors, logs and metrics.
    pub name: String,
    /// The most batches it holds; a producer waits while it is full.
    pub capacity: usize,
    /// Optionally, the most bytes it holds, counting each batch by the length of its changes
    /// serialised as JSON. A batch bigger than this is still accepted into an empty queue, so
    /// it cannot wait forever.
    pub max_bytes: Option<usize>,
    /// Sources in rank order: among batches with equal commit times, the earlier source comes
    /// first. Sources not listed rank after all listed ones, in the order they are first seen.
    pub source_ranks: Vec<SourceId>,
}

impl QueueConfig {
    /// A queue of `capacity` batches, no byte limit, sources ranked as first seen.
    pub fn new(name: impl Into<String>, capacity: usize) -> Self {
        Self {
            name: name.into(),
            capacity,
            max_bytes: None,
            source_ranks: Vec::new(),
        }
    }

    /// Also bounds the queue by bytes.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Ranks sources, first the highest.
    pub fn with_source_ranks(mut self, ranks: impl IntoIterator<Item = SourceId>) -> Self {
        self.source_ranks = ranks.into_iter().collect();
        self
    }

    /// Every problem with the settings, each with its path under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push(format!("{path}.name: must not be empty"));
        }
        if self.capacity == 0 {
            problems.push(format!("{path}.capacity: must be at least 1"));
        }
        if self.max_bytes == Some(0) {
            problems.push(format!("{path}.max_bytes: must be at least 1 when set"));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, source) in self.source_ranks.iter().enumerate() {
            if !seen.insert(source) {
                problems.push(format!(
                    "{path}.source_ranks[{index}]: `{source}` is listed twice"
                ));
            }
        }
        problems
    }

    /// Checks the settings, listing every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems("queue");
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
    fn every_problem_is_listed_with_its_path() {
        let config = QueueConfig {
            name: " ".into(),
            capacity: 0,
            max_bytes: Some(0),
            source_ranks: vec![SourceId::new("a"), SourceId::new("a")],
        };
        let error = config.validate().unwrap_err();
        assert_eq!(
            error.problems,
            vec![
                "queue.name: must not be empty",
                "queue.capacity: must be at least 1",
                "queue.max_bytes: must be at least 1 when set",
                "queue.source_ranks[1]: `a` is listed twice",
            ]
        );
        assert!(QueueConfig::new("q", 1).validate().is_ok());
    }
}
