//! Every problem of a configuration, each with its path, with secrets redacted.

/// One problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `queries[1].sql`, or empty for the file as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The problems found so far, and the secret values no message may show.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<Problem>,
    secrets: Vec<String>,
}

/// Secrets shorter than this are not redacted from messages: they would mangle ordinary words,
/// and a value that short is not a credential worth the name.
const SHORTEST_REDACTED: usize = 4;

impl Problems {
    /// Records a problem; a second one at a path that has one already is left out (it follows
    /// from the first, such as a malformed value that an unset variable left).
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        if !path.is_empty() && self.found.iter().any(|p| p.path == path) {
            return;
        }
        self.found.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Never show `secret` in a message.
    pub fn redact(&mut self, secret: String) {
        if secret.len() >= SHORTEST_REDACTED {
            self.secrets.push(secret);
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `value` if nothing was found, else every problem, redacted.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The problems, in the order found, with secrets replaced by `[redacted]`.
    pub fn list(&self) -> Vec<Problem> {
        let mut secrets: Vec<&String> = self.secrets.iter().collect();
        // The longest first, so a secret containing another is redacted whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        self.found
            .iter()
            .map(|problem| {
                let mut message = problem.message.clone();
                for secret in &secrets {
                    message = message.replace(secret.as_str(), "[redacted]");
                }
                Problem {
                    path: problem.path.clone(),
                    message,
                }
            })
            .collect()
    }
}
