//! One proxied connection: two pumps gated by the proxy's mode, ended by a cut or a cancel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What the proxy does with the bytes of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything as it comes.
    PassThrough,
    /// Accept new connections and keep existing ones open, but forward nothing (not even a
    /// new connection's connect to the upstream). What was held back is forwarded after a heal,
    /// as TCP would retransmit it after a network partition ends.
    BlackHole,
    /// Forward everything, waiting this long before forwarding each chunk read, in each
    /// direction (a request and its response are delayed once each). A heal cuts a delay
    /// in progress short.
    Delay(Duration),
}

/// The mode plus the cut generation, published to every connection through a watch channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    pub(crate) mode: ProxyMode,
    /// Connections born before this epoch are cut.
    pub(crate) cut_epoch: u64,
}

/// Bookkeeping shared by the proxy handle, the accept loop and the connections.
#[derive(Debug)]
pub(crate) struct Registry {
    /// Open connections: id → cut epoch at accept time.
    open: Mutex<HashMap<u64, u64>>,
    /// Bumped whenever a connection closes.
    closed: watch::Sender<u64>,
}

impl Registry {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            closed: watch::Sender::new(0),
        })
    }

    /// Records an open connection; it is removed when the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, id: u64, born: u64) -> OpenGuard {
        self.lock().insert(id, born);
        OpenGuard {
            registry: Arc::clone(self),
            id,
        }
    }

    pub(crate) fn open_count(&self) -> usize {
        self.lock().len()
    }

    /// Connections accepted before cut epoch `epoch` that are still open.
    pub(crate) fn open_before(&self, epoch: u64) -> usize {
        self.lock().values().filter(|&&born| born < epoch).count()
    }

    pub(crate) fn closed_events(&self) -> watch::Receiver<u64> {
        self.closed.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        // Plain map updates cannot leave it inconsistent, so a poisoned lock is still usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a connection from the registry when it drops.
#[derive(Debug)]
pub(crate) struct OpenGuard {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.closed.send_modify(|n| *n += 1);
    }
}

/// A connection's inputs.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) client: TcpStream,
    pub(crate) upstream: SocketAddr,
    pub(crate) state: watch::Receiver<State>,
    pub(crate) born: u64,
    pub(crate) guard: OpenGuard,
}

enum End {
    Finished(std::io::Result<()>),
    Cut,
    Cancelled,
}

/// Serves one connection until both sides are done, it is cut, or the proxy is cancelled.
pub(crate) async fn serve(conn: Conn, cancel: CancellationToken) -> std::io::Result<()> {
    let Conn {
        mut client,
        upstream,
        mut state,
        born,
        guard,
    } = conn;
    let cut_watch = state.clone();
    let end = tokio::select! {
        result = forward(&mut client, upstream, &mut state) => End::Finished(result),
        () = cut_after(cut_watch, born) => End::Cut,
        () = cancel.cancelled() => End::Cancelled,
    };
    match end {
        End::Cut => {
            // A zero linger makes the close send RST, so the client sees a reset at once.
            if let Err(e) = client.set_zero_linger() {
                tracing::debug!(%e, "could not set zero linger on a cut connection");
            }
        }
        End::Finished(Err(e)) => tracing::debug!(%e, "proxied connection ended with an error"),
        End::Finished(Ok(())) | End::Cancelled => {}
    }
    // The client socket closes before the registry is told, so a cut is complete on return.
    drop(client);
    drop(guard);
    Ok(())
}

async fn forward(
    client: &mut TcpStream,
    upstream: SocketAddr,
    state: &mut watch::Receiver<State>,
) -> std::io::Result<()> {
    gate(state).await?;
    let mut server = TcpStream::connect(upstream).await?;
    for stream in [&*client, &server] {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%e, "could not set TCP_NODELAY");
        }
    }
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    tokio::try_join!(
        pump(client_read, server_write, state.clone()),
        pump(server_read, client_write, state.clone()),
    )?;
    Ok(())
}

/// Copies `from` to `to` chunk by chunk, each chunk passing the mode gate; at EOF it shuts
/// down `to`'s write side so the other end sees the half-close.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut state: watch::Receiver<State>,
) -> std::io::Result<()> {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let delay = gate(&mut state).await?;
        if !delay.is_zero() {
            wait_delay(&mut state, delay).await?;
            gate(&mut state).await?;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Waits while the proxy black-holes, then returns the per-chunk delay to apply.
async fn gate(state: &mut watch::Receiver<State>) -> std::io::Result<Duration> {
    loop {
        let mode = state.borrow_and_update().mode;
        match mode {
            ProxyMode::PassThrough => return Ok(Duration::ZERO),
            ProxyMode::Delay(delay) => return Ok(delay),
            ProxyMode::BlackHole => {
                if state.changed().await.is_err() {
                    return Err(std::io::Error::other("fault proxy dropped"));
                }
            }
        }
    }
}

/// Sleeps `delay`, cut short when the mode stops being a delay (a heal or a black hole).
async fn wait_delay(state: &mut watch::Receiver<State>, delay: Duration) -> std::io::Result<()> {
    let sleep = tokio::time::sleep(delay);
    let mut sleep = std::pin::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return Ok(()),
            changed = state.changed() => {
                changed.map_err(|_| std::io::Error::other("fault proxy dropped"))?;
                if !matches!(state.borrow_and_update().mode, ProxyMode::Delay(_)) {
                    return Ok(());
                }
            }
        }
    }
}

/// Completes once a cut covers connections born at `born`; never if the proxy is dropped.
async fn cut_after(mut state: watch::Receiver<State>, born: u64) {
    loop {
        if state.borrow_and_update().cut_epoch > born {
            return;
        }
        if state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
