//! The accept loop: one supervised task per connection, stopped gracefully.
//!
//! Connections are served by hyper directly (not `axum::serve`) so that each one is a named task
//! in a [`TaskGroup`]: on stop the listener is closed first, every connection is asked to finish
//! its request in hand and close, and whatever is still open at the deadline is aborted and
//! named. After [`serve`] returns, no connection task is left.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use surefoot_core_lifecycle::TaskGroup;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::HttpSourceError;
use crate::source::Shared;

/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until cancelled, then closes them gracefully within the stop budget.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> Result<(), HttpSourceError> {
    let connections = TaskGroup::new(format!("source-http/{}/connections", shared.config.id));
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut next = 0_u64;
    let result = loop {
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break Ok(()),
            },
        };
        let stream = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        next += 1;
        let router = router.clone();
        let read_timeout = shared.config.read_timeout;
        let spawned = connections.spawn(format!("conn-{next}"), move |cancel| {
            connection(stream, router, read_timeout, cancel, permit)
        });
        if let Err(error) = spawned {
            break Err(HttpSourceError::from(error));
        }
    };
    drop(listener);
    // Part of the stop budget, so this task ends before the supervisor's own deadline.
    let budget = shared.stop_budget().mul_f64(0.6);
    let report = connections.stop(budget).await;
    if !report.is_clean() {
        tracing::warn!(aborted = ?report.aborted, failed = report.failed.len(), "connections did not all close cleanly");
    }
    result
}

/// Serves one connection until it closes, or until cancelled: then the request in hand is
/// finished and the connection closed.
async fn connection(
    stream: TcpStream,
    router: Router,
    read_timeout: Duration,
    cancel: CancellationToken,
    _permit: OwnedSemaphorePermit,
) -> Result<(), std::convert::Infallible> {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    let service = TowerToHyperService::new(router);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        () = cancel.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        // The client's side of the connection failed (reset, timeout, bad request line): hyper
        // already answered what it could; nothing of ours is lost.
        tracing::debug!(%error, "connection ended with an error");
    }
    Ok(())
}
