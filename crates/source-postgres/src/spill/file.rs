//! The spill file: length-prefixed messages in an unlinked temporary file.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::SourceError;

/// Buffer size of spill writes and reads.
const BUFFER: usize = 64 * 1024;

/// Distinguishes the spill files of one process.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// Appends messages to a new spill file.
#[derive(Debug)]
pub(crate) struct SpillWriter {
    file: BufWriter<File>,
}

/// Reads a spill file's messages back, in order.
#[derive(Debug)]
pub(crate) struct SpillReader {
    file: BufReader<File>,
}

fn io_error(operation: &'static str) -> impl FnOnce(std::io::Error) -> SourceError {
    move |source| SourceError::Spill { operation, source }
}

impl SpillWriter {
    /// A new, empty file in the system's temporary directory, already unlinked (on Unix) so
    /// nothing is left behind.
    pub(crate) fn create() -> Result<Self, SourceError> {
        let path = spill_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create spill file"))?;
        if let Err(error) = std::fs::remove_file(&path) {
            // Not fatal: the file still works; it is only left for the system to clean up.
            tracing::warn!(path = %path.display(), %error, "could not unlink a spill file");
        }
        Ok(Self {
            file: BufWriter::with_capacity(BUFFER, file),
        })
    }

    /// Appends one message.
    pub(crate) fn append(&mut self, message: &[u8]) -> Result<(), SourceError> {
        let length = u32::try_from(message.len()).map_err(|_| SourceError::Spill {
            operation: "write spill file",
            source: std::io::Error::new(ErrorKind::InvalidInput, "message over 4 GiB"),
        })?;
        self.file
            .write_all(&length.to_le_bytes())
            .and_then(|()| self.file.write_all(message))
            .map_err(io_error("write spill file"))
    }

    /// Flushes the file and opens it for reading from the start.
    pub(crate) fn into_reader(self) -> Result<SpillReader, SourceError> {
        let mut file = self.file.into_inner().map_err(|error| SourceError::Spill {
            operation: "flush spill file",
            source: error.into_error(),
        })?;
        file.seek(SeekFrom::Start(0))
            .map_err(io_error("rewind spill file"))?;
        Ok(SpillReader {
            file: BufReader::with_capacity(BUFFER, file),
        })
    }
}

impl SpillReader {
    /// The next message, `None` at the end of the file.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, SourceError> {
        let mut length = [0u8; 4];
        // The end of the file is only clean between messages: a partial prefix is an error.
        let first = loop {
            match self.file.read(&mut length[..1]) {
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                read => break read.map_err(io_error("read spill file"))?,
            }
        };
        if first == 0 {
            return Ok(None);
        }
        self.file
            .read_exact(&mut length[1..])
            .map_err(io_error("read spill file"))?;
        let length = usize::try_from(u32::from_le_bytes(length)).unwrap_or(usize::MAX);
        let mut message = vec![0u8; length];
        self.file
            .read_exact(&mut message)
            .map_err(io_error("read spill file"))?;
        Ok(Some(Bytes::from(message)))
    }
}

fn spill_path() -> PathBuf {
    let file = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    std::env::temp_dir().join(format!(
        "surefoot-spill-{}-{file}-{nanos}",
        std::process::id()
    ))
}
