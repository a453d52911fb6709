//! [`FaultProxy`]: a loopback TCP proxy that can cut, black-hole or delay its connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use surefoot_core_lifecycle::{CancellationToken, StopReport, TaskGroup};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::process::POLL;
use crate::proxy_conn::{self, Conn, ProxyMode, Registry, State};

/// How long [`FaultProxy::cut`] waits for the cut connections to close.
const CUT_WAIT: Duration = Duration::from_secs(10);
/// How long [`FaultProxy::shutdown`] waits for tasks before aborting them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A TCP proxy on a free port of 127.0.0.1 in front of one upstream address, for injecting
/// network faults between a client and a real server.
///
/// It starts in [`ProxyMode::PassThrough`]. Mode changes reach open connections at once
/// (they watch the mode). Its accept loop and one task per connection (`conn-<n>`) run in a
/// [`TaskGroup`]; dropping the proxy cancels them, which closes every proxied connection.
/// [`FaultProxy::shutdown`] does the same and waits for the tasks.
#[derive(Debug)]
pub struct FaultProxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    registry: Arc<Registry>,
    accepted: Arc<AtomicU64>,
    group: TaskGroup,
}

impl FaultProxy {
    /// Binds a free loopback port and starts forwarding to `upstream`. Needs a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| Error::io("binding the fault proxy to 127.0.0.1:0", e))?;
        let listen = listener
            .local_addr()
            .map_err(|e| Error::io("reading the fault proxy's address", e))?;
        let proxy = Self {
            listen,
            upstream,
            state: watch::Sender::new(State {
                mode: ProxyMode::PassThrough,
                cut_epoch: 0,
            }),
            registry: Registry::new(),
            accepted: Arc::new(AtomicU64::new(0)),
            group: TaskGroup::new(format!("fault-proxy-{}", listen.port())),
        };
        let accept = AcceptLoop {
            listener,
            upstream,
            state: proxy.state.subscribe(),
            registry: Arc::clone(&proxy.registry),
            accepted: Arc::clone(&proxy.accepted),
            group: proxy.group.clone(),
        };
        proxy.group.spawn("accept", |cancel| accept.run(cancel))?;
        Ok(proxy)
    }

    /// Where clients connect: 127.0.0.1 and the proxy's port.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.listen.port()
    }

    /// The server the proxy forwards to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.state.borrow().mode
    }

    /// Switches mode; open connections follow immediately.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.state.send_modify(|state| state.mode = mode);
        tracing::debug!(proxy = %self.listen, ?mode, "fault proxy mode changed");
    }

    /// Back to pass-through: forwarding resumes, including what a black hole held back.
    pub fn heal(&self) {
        self.set_mode(ProxyMode::PassThrough);
    }

    /// Forward nothing; new connections are still accepted and old ones kept open.
    pub fn black_hole(&self) {
        self.set_mode(ProxyMode::BlackHole);
    }

    /// Wait `delay` before forwarding each chunk, in both directions.
    pub fn delay(&self, delay: Duration) {
        self.set_mode(ProxyMode::Delay(delay));
    }

    /// Cuts every connection open now: the client side is closed with a reset, the upstream
    /// side closed. Returns once they are all closed, with how many were cut. The mode is
    /// unchanged; later connections are served as usual.
    pub async fn cut(&self) -> Result<usize> {
        let mut closed = self.registry.closed_events();
        let mut epoch = 0;
        self.state.send_modify(|state| {
            state.cut_epoch += 1;
            epoch = state.cut_epoch;
        });
        let cut = self.registry.open_before(epoch);
        let deadline = Instant::now() + CUT_WAIT;
        while self.registry.open_before(epoch) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, closed.changed()).await.is_err() {
                return Err(Error::ProxyTimeout {
                    what: "closing the cut connections".into(),
                    timeout: CUT_WAIT,
                });
            }
        }
        tracing::debug!(proxy = %self.listen, cut, "fault proxy cut its connections");
        Ok(cut)
    }

    /// Connections accepted since the proxy started.
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.registry.open_count()
    }

    /// Stops accepting, closes every connection and waits for the tasks (up to 5 s, then
    /// they are aborted and named in the report).
    pub async fn shutdown(self) -> StopReport {
        self.group.stop(SHUTDOWN_WAIT).await
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.group.cancellation_token().cancel();
    }
}

/// The accept loop's inputs.
#[derive(Debug)]
struct AcceptLoop {
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    registry: Arc<Registry>,
    accepted: Arc<AtomicU64>,
    group: TaskGroup,
}

impl AcceptLoop {
    async fn run(self, cancel: CancellationToken) -> Result<()> {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = cancel.cancelled() => return Ok(()),
            };
            match accepted {
                Ok((client, _peer)) => self.serve(client)?,
                Err(e) => {
                    // Transient (a peer gone before accept, out of descriptors): keep going.
                    tracing::warn!(%e, "fault proxy accept failed");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    fn serve(&self, client: tokio::net::TcpStream) -> Result<()> {
        let id = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        let born = self.state.borrow().cut_epoch;
        let conn = Conn {
            client,
            upstream: self.upstream,
            state: self.state.clone(),
            born,
            guard: self.registry.register(id, born),
        };
        self.group.spawn(format!("conn-{id}"), |cancel| {
            proxy_conn::serve(conn, cancel)
        })?;
        Ok(())
    }
}
