//! [`PgServer`]: a throwaway PostgreSQL server with logical decoding enabled.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::binaries::PgBinaries;
use crate::error::{Error, Result};
use crate::pg_admin;
use crate::pg_client::{self, PgClient};
use crate::pg_init::{self, RunAs, SUPERUSER};
use crate::pg_tls::{self, TlsFiles};
use crate::port::free_port;
use crate::process::{POLL, ServerProcess, log_tail};

const SERVER: &str = "PostgreSQL";
const HOST: &str = "127.0.0.1";
/// The application name of the connections this crate makes itself.
const ADMIN_APP: &str = "surefoot-test-support";
/// How many fresh ports the first start tries when another process takes the chosen one.
const PORT_ATTEMPTS: usize = 5;
/// Bound on a fast shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dropping waits for an immediate shutdown before killing.
const DROP_GRACE: Duration = Duration::from_secs(10);

/// Options for a [`PgServer`]; see [`PgServer::builder`].
#[derive(Debug, Clone)]
pub struct PgServerBuilder {
    settings: Vec<(String, String)>,
    start_timeout: Duration,
    tls: bool,
}

impl Default for PgServerBuilder {
    fn default() -> Self {
        Self {
            settings: Vec::new(),
            start_timeout: Duration::from_secs(60),
            tls: false,
        }
    }
}

impl PgServerBuilder {
    /// Adds a `postgresql.conf` setting; `value` is written as is, so quote strings
    /// (`"'on'"`, `"'replica'"`). Later settings override the defaults.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Serves TLS (`ssl = on`) with a server certificate for `localhost` signed by a throwaway
    /// authority, whose certificate is [`PgServer::ca_cert`]. Plain connections stay allowed.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// How long a start may take before it fails with the log tail (default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Creates the cluster in a new temp dir and starts the server.
    pub async fn start(self) -> Result<PgServer> {
        let bins = PgBinaries::find()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("surefoot-pg-")
            .tempdir()
            .map_err(|e| Error::io("creating a temp dir for PostgreSQL", e))?;
        run_as.give(dir.path())?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir(&socket_dir)
            .map_err(|e| Error::io(format!("creating {}", socket_dir.display()), e))?;
        run_as.give(&socket_dir)?;
        pg_init::initdb(&bins, run_as, dir.path(), &data_dir).await?;
        let tls = match self.tls {
            true => Some(pg_tls::generate(dir.path(), run_as)?),
            false => None,
        };
        let mut settings = tls.as_ref().map(TlsFiles::settings).unwrap_or_default();
        settings.extend(self.settings);
        pg_init::write_settings(&data_dir, &socket_dir, &settings)?;
        let mut server = PgServer {
            process: None,
            port: free_port()?,
            bins,
            run_as,
            start_timeout: self.start_timeout,
            data_dir,
            log: dir.path().join("server.log"),
            ca_cert: tls.map(|files| files.ca_cert),
            dir,
        };
        server.first_start().await?;
        Ok(server)
    }
}

/// A PostgreSQL server of its own for one test: a fresh cluster in a temp dir, listening on a
/// free port on 127.0.0.1 (never the system instance), with `wal_level = logical`, 20
/// replication slots and WAL senders, trust authentication and superuser `postgres`.
///
/// When the tests run as root the server runs as the `postgres` system user. The postmaster
/// leads its own process group and each of its children leads another (PostgreSQL does that),
/// so [`PgServer::kill`] SIGKILLs the postmaster's group and every child's, like a crash.
///
/// Dropping it (also while a test panics) shuts the server down immediately, waits until
/// no process of it is left (killing stragglers), and removes the temp dir.
#[derive(Debug)]
pub struct PgServer {
    // Declared before `dir`: fields drop in order, so the server is gone before its files.
    process: Option<ServerProcess>,
    port: u16,
    bins: PgBinaries,
    run_as: RunAs,
    start_timeout: Duration,
    data_dir: PathBuf,
    log: PathBuf,
    ca_cert: Option<PathBuf>,
    dir: TempDir,
}

impl PgServer {
    /// Creates and starts a server with the default options.
    pub async fn new() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for a new server.
    pub fn builder() -> PgServerBuilder {
        PgServerBuilder::default()
    }

    /// Starts the stopped (or killed) server on the same port and data, and waits until a real
    /// connection to it succeeds. After a kill this runs crash recovery.
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running()? {
            return Err(Error::AlreadyRunning {
                server: SERVER.into(),
            });
        }
        let process = self.spawn()?;
        self.await_ready(process).await
    }

    /// Fast shutdown (SIGINT: clients are disconnected, a checkpoint is written) and waits
    /// until every server process is gone. Does nothing when the server is not running.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop_with(Signal::SIGINT, STOP_TIMEOUT).await?;
        }
        Ok(())
    }

    /// [`stop`](Self::stop), then [`start`](Self::start): same port, same data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start().await
    }

    /// Kills every server process with SIGKILL, like a crash, and waits until they are all gone.
    /// Committed data survives; [`start`](Self::start) recovers it.
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

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The postmaster and its children (backends, checkpointer, WAL senders, ...) now alive.
    pub fn pids(&self) -> Vec<u32> {
        self.process
            .as_ref()
            .map(ServerProcess::live_pids)
            .unwrap_or_default()
    }

    /// The TCP port on 127.0.0.1; it stays the same across stop, kill and start.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host to connect to: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The superuser name, `postgres` (no password needed).
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// Client settings for `dbname`: host, port, superuser, a 5 s connect timeout.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        self.config_at(dbname, SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
    }

    /// Client settings for `dbname` that reach the server through `addr` instead, such as a
    /// [`FaultProxy`](crate::FaultProxy)'s listen address.
    pub fn config_at(&self, dbname: &str, addr: SocketAddr) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(SUPERUSER)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// A libpq key/value connection string for `dbname`.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={dbname}",
            self.port
        )
    }

    /// A `postgres://` URL for `dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{dbname}", self.port)
    }

    /// Connects to `dbname` as the superuser; see [`PgClient`].
    pub async fn connect(&self, dbname: &str) -> Result<PgClient> {
        pg_client::connect(&self.config(dbname)).await
    }

    /// Creates database `name` (quoted, so any name works).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        pg_admin::create_database(&self.admin_config(), name).await
    }

    /// Terminates (`pg_terminate_backend`) every connection whose `application_name` is
    /// `application_name`, waits until they are gone, and returns how many were terminated.
    /// Other connections are untouched.
    pub async fn terminate_backends(&self, application_name: &str) -> Result<usize> {
        let config = self.admin_config();
        let pids = pg_admin::terminate_backends(&config, application_name).await?;
        pg_admin::await_backends_gone(&config, &pids, &self.log).await?;
        Ok(pids.len())
    }

    /// The authority's certificate (PEM) of a server built with [`PgServerBuilder::tls`].
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The temp dir holding the data directory, the socket directory and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log (stdout and stderr of every start).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn admin_config(&self) -> tokio_postgres::Config {
        let mut config = self.config("postgres");
        config.application_name(ADMIN_APP);
        config
    }

    async fn first_start(&mut self) -> Result<()> {
        for _ in 1..PORT_ATTEMPTS {
            let process = self.spawn()?;
            match self.await_ready(process).await {
                Err(Error::ServerExited { log_tail, .. }) if port_taken(&log_tail) => {
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
        let mut command = Command::new(&self.bins.postgres);
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string());
        self.run_as.apply(&mut command, self.dir.path());
        ServerProcess::spawn(
            SERVER,
            command,
            &self.log,
            Signal::SIGQUIT,
            DROP_GRACE,
            self.dir.path(),
        )
    }

    /// Polls until a real connection succeeds, the process exits, or the start timeout passes.
    async fn await_ready(&mut self, mut process: ServerProcess) -> Result<()> {
        let deadline = Instant::now() + self.start_timeout;
        let config = self.admin_config();
        loop {
            if let Some(status) = process.try_exited()? {
                return Err(process.exited_error(status));
            }
            let attempt =
                tokio::time::timeout(Duration::from_secs(5), pg_admin::data_directory(&config));
            // The data directory proves it is this server, not another that took the port.
            if let Ok(Ok(dir)) = attempt.await
                && Path::new(&dir) == self.data_dir
            {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(
                    process.timeout_error("PostgreSQL accepting connections", self.start_timeout)
                );
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Stops the server (immediate shutdown, then SIGKILL for stragglers) and waits for it.
        drop(self.process.take());
        pg_init::remove_orphaned_shmem(&self.data_dir);
    }
}

fn port_taken(log_tail: &str) -> bool {
    log_tail.contains("Address already in use") || log_tail.contains("could not bind")
}
