//! Reads COPY data ahead of the decoder, so the server keeps sending while rows are decoded.
//!
//! tokio-postgres hands COPY data over one message at a time through a channel of one: a decoder
//! that is busy stops the socket from being read, and the server stops writing until it is woken
//! again, which under load costs far more than the decoding. A supervised task pulls the data
//! into groups of about `group_bytes` and queues at most `groups` of them, so memory stays
//! bounded (`groups` × (`group_bytes` + one row)) while the server is rarely kept waiting.

use std::pin::pin;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use surefoot_core_lifecycle::TaskGroup;
use tokio::sync::mpsc;
use tokio_postgres::CopyOutStream;

use crate::error::BootstrapError;

/// A group of COPY data chunks, or the driver's error.
pub(crate) type Group = Result<Vec<Bytes>, tokio_postgres::Error>;

/// The receiving end; dropping it stops the reading task.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    receiver: mpsc::Receiver<Group>,
    // Dropping the group cancels the reading task.
    _task: TaskGroup,
}

impl ReadAhead {
    /// Starts reading `stream`.
    pub(crate) fn start(
        stream: CopyOutStream,
        group_bytes: usize,
        groups: usize,
    ) -> Result<Self, BootstrapError> {
        let (sender, receiver) = mpsc::channel(groups.max(1));
        let task = TaskGroup::new("surefoot-bootstrap-copy");
        task.spawn_until_cancelled("read-ahead", read(stream, sender, group_bytes))?;
        Ok(Self {
            receiver,
            _task: task,
        })
    }

    /// The next group if one is queued now.
    pub(crate) fn ready(&mut self) -> Option<Option<Group>> {
        self.receiver.recv().now_or_never()
    }

    /// Waits for the next group; `None` at the end of the data. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Group> {
        self.receiver.recv().await
    }
}

/// Pulls chunks from `stream` into groups until the data ends, an error is passed on, or the
/// receiver is gone.
async fn read(
    stream: CopyOutStream,
    sender: mpsc::Sender<Group>,
    group_bytes: usize,
) -> Result<(), tokio_postgres::Error> {
    let mut stream = pin!(stream);
    let mut ended = false;
    while !ended {
        let mut group = Vec::new();
        let mut bytes = 0;
        // Wait for one chunk, then take what else is already there, up to the group's size.
        let mut next = stream.next().await;
        loop {
            match next {
                None => {
                    ended = true;
                    break;
                }
                Some(Err(error)) => {
                    if !group.is_empty() && sender.send(Ok(group)).await.is_err() {
                        return Ok(());
                    }
                    // The decoder reports the error; if it is gone, nobody is left to tell.
                    sender.send(Err(error)).await.ok();
                    return Ok(());
                }
                Some(Ok(chunk)) => {
                    bytes += chunk.len();
                    group.push(chunk);
                }
            }
            if bytes >= group_bytes {
                break;
            }
            match stream.next().now_or_never() {
                Some(chunk) => next = chunk,
                None => break,
            }
        }
        if !group.is_empty() && sender.send(Ok(group)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
