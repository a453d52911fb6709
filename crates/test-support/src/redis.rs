//! [`RedisServer`]: a throwaway Redis server.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::binaries::find_redis_server;
use crate::error::{Error, Result};
use crate::port::free_port;
use crate::process::{POLL, ServerProcess, log_tail};

const SERVER: &str = "Redis";
/// How many fresh ports the first start tries when another process takes the chosen one.
const PORT_ATTEMPTS: usize = 5;
/// Bound on a graceful shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for a [`RedisServer`]; see [`RedisServer::builder`].
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    aof: bool,
    start_timeout: Duration,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        Self {
            aof: false,
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl RedisServerBuilder {
    /// Durable mode for durability tests: `appendonly yes` with `appendfsync always`, so every
    /// acknowledged write survives a restart or a kill. Off by default (no persistence at all).
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// How long a start may take before it fails with the log tail (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Creates the temp dir and starts the server.
    pub async fn start(self) -> Result<RedisServer> {
        let binary = find_redis_server()?;
        let dir = tempfile::Builder::new()
            .prefix("surefoot-redis-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp dir for Redis", e))?;
        let mut server = RedisServer {
            process: None,
            port: free_port()?,
            binary,
            aof: self.aof,
            start_timeout: self.start_timeout,
            log: dir.path().join("redis.log"),
            dir,
        };
        server.first_start().await?;
        Ok(server)
    }
}

/// A Redis server of its own for one test, on a free port on 127.0.0.1 (never the system
/// instance), working in a temp dir. Persistence is off (`save ""`, `appendonly no`) unless
/// [`RedisServerBuilder::aof`] asks for it.
///
/// Dropping it (also while a test panics) kills the server with SIGKILL, waits until no process
/// of it is left, and removes the temp dir.
#[derive(Debug)]
pub struct RedisServer {
    // Declared before `dir`: fields drop in order, so the server is gone before its files.
    process: Option<ServerProcess>,
    port: u16,
    binary: PathBuf,
    aof: bool,
    start_timeout: Duration,
    log: PathBuf,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server with the default options (no persistence).
    pub async fn new() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for a new server.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts the stopped (or killed) server on the same port and dir, and waits until it
    /// answers PING (with AOF on, after it has loaded the file).
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running()? {
            return Err(Error::AlreadyRunning {
                server: SERVER.into(),
            });
        }
        let process = self.spawn()?;
        self.await_ready(process).await
    }

    /// Graceful shutdown (SIGTERM; with AOF on, the file is flushed) and waits until the
    /// server is gone. Does nothing when it is not running.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop_with(Signal::SIGTERM, STOP_TIMEOUT).await?;
        }
        Ok(())
    }

    /// [`stop`](Self::stop), then [`start`](Self::start): same port, same dir. Without AOF the
    /// data is gone afterwards.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start().await
    }

    /// Kills the server with SIGKILL, like a crash, and waits until it is gone.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill_tree().await?;
        }
        Ok(())
    }

    /// True when the server process is running.
    pub fn is_running(&mut self) -> Result<bool> {
        match self.process.as_mut() {
            Some(process) => Ok(process.try_exited()?.is_none()),
            None => Ok(false),
        }
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The TCP port on 127.0.0.1; it stays the same across stop, kill and start.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://{}:{}/", Ipv4Addr::LOCALHOST, self.port)
    }

    /// True when the server was built with AOF durability.
    pub fn aof(&self) -> bool {
        self.aof
    }

    /// The temp dir the server works in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    async fn first_start(&mut self) -> Result<()> {
        for _ in 1..PORT_ATTEMPTS {
            let process = self.spawn()?;
            match self.await_ready(process).await {
                Err(Error::ServerExited { log_tail, .. })
                    if log_tail.contains("Address already in use") =>
                {
                    tracing::debug!(port = self.port, "port taken meanwhile; trying another");
                    self.port = free_port()?;
                }
                other => return other,
            }
        }
        let process = self.spawn()?;
        self.await_ready(process).await
    }

    fn spawn(&self) -> Result<ServerProcess> {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--save", "", "--logfile", ""]);
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        ServerProcess::spawn(
            SERVER,
            command,
            &self.log,
            Signal::SIGKILL,
            Duration::ZERO,
            self.dir.path(),
        )
    }

    async fn await_ready(&mut self, mut process: ServerProcess) -> Result<()> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Some(status) = process.try_exited()? {
                return Err(process.exited_error(status));
            }
            let probe =
                tokio::time::timeout(Duration::from_secs(2), ready(self.port, process.pid()));
            if let Ok(Ok(true)) = probe.await {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(process.timeout_error("Redis answering PING", self.start_timeout));
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }
}

/// True when the server on `port` is the process `pid` (so not another server that took the
/// port) and answers PING with PONG (not LOADING or an error).
async fn ready(port: u16, pid: u32) -> std::io::Result<bool> {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    let mut stream = BufReader::new(stream);
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .await?;
    let mut header = String::new();
    stream.read_line(&mut header).await?;
    let Some(len) = header
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return Ok(false);
    };
    let mut info = vec![0_u8; len + 2];
    stream.read_exact(&mut info).await?;
    if !String::from_utf8_lossy(&info).contains(&format!("process_id:{pid}\r\n")) {
        return Ok(false);
    }
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    Ok(line.trim_end() == "+PONG")
}
