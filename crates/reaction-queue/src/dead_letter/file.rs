//! Dead letters appended to a file, one JSON object a line.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{DeadLetter, DeadLetterError, DeadLetterSink};

/// Appends each letter as a JSON line and syncs the file before returning.
#[derive(Debug, Clone)]
pub struct FileDeadLetters {
    path: PathBuf,
}

impl FileDeadLetters {
    /// Letters go to `path` (created if missing, appended to otherwise).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Reads every letter in the file (for operators and tests).
    pub async fn read_all(&self) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.error(source)),
        };
        text.lines()
            .map(|line| serde_json::from_str(line).map_err(DeadLetterError::from))
            .collect()
    }

    fn error(&self, source: std::io::Error) -> DeadLetterError {
        DeadLetterError::File {
            path: self.path.display().to_string(),
            source,
        }
    }
}

#[async_trait]
impl DeadLetterSink for FileDeadLetters {
    async fn write(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut line = serde_json::to_vec(letter)?;
        line.push(b'\n');
        // Opened per letter, in append mode: each letter is one write at the end of the file,
        // and no handle (or lock) is kept between letters. Dead letters are rare.
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|source| self.error(source))?;
        file.write_all(&line)
            .await
            .map_err(|source| self.error(source))?;
        file.sync_data().await.map_err(|source| self.error(source))
    }
}
