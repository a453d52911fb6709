//! A server process in its own process group, with crash-like killing and bounded waits.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::watchdog::Watchdog;

/// How often bounded waits look again.
pub(crate) const POLL: Duration = Duration::from_millis(10);
/// How long killing waits for the processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(20);

/// A running server: the child process, started as the leader of a new process group, with
/// stdout and stderr appended to a log file.
///
/// Dropping it sends `drop_signal`, waits up to `drop_grace` for the leader to exit, then kills
/// whatever is left (see [`ServerProcess::kill_tree`]) and waits for it to be gone. A
/// [`Watchdog`] does the same (and removes the server's temp dir) if this process dies first.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    server: String,
    child: Child,
    log: PathBuf,
    drop_signal: Signal,
    drop_grace: Duration,
    exited: Option<ExitStatus>,
    /// Dismissed when this is dropped, after the server is gone.
    _watchdog: Watchdog,
}

impl ServerProcess {
    /// Starts `command` in its own process group with output appended to `log`.
    pub(crate) fn spawn(
        server: &str,
        mut command: Command,
        log: &Path,
        drop_signal: Signal,
        drop_grace: Duration,
        dir: &Path,
    ) -> Result<Self> {
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io(format!("opening log file {}", log.display()), e))
        };
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?);
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {server}: {command:?}"), e))?;
        tracing::debug!(server, pid = child.id(), "server process started");
        let signal_name = drop_signal.as_str().trim_start_matches("SIG");
        let watchdog = match Watchdog::spawn(child.id(), signal_name, dir) {
            Ok(watchdog) => watchdog,
            Err(e) => {
                // Do not leave the server running without anyone to stop it.
                let mut orphan = child;
                if let Err(kill_error) = orphan.kill().and_then(|()| orphan.wait().map(drop)) {
                    tracing::warn!(%kill_error, "could not stop a server without a watchdog");
                }
                return Err(e);
            }
        };
        Ok(Self {
            server: server.to_owned(),
            child,
            log: log.to_owned(),
            drop_signal,
            drop_grace,
            exited: None,
            _watchdog: watchdog,
        })
    }

    /// The leader's process id (also the process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The leader and its direct children that are still alive.
    pub(crate) fn live_pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        pids.extend(children_of(self.pid()));
        pids.retain(|&pid| is_alive(pid));
        pids
    }

    /// The exit status if the leader has exited (it is reaped then).
    pub(crate) fn try_exited(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .map_err(|e| Error::io(format!("checking whether {} exited", self.server), e))?;
        }
        Ok(self.exited)
    }

    /// An error saying the server exited with `status`, with the log tail.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> Error {
        Error::ServerExited {
            server: self.server.clone(),
            status,
            log: self.log.clone(),
            log_tail: log_tail(&self.log),
        }
    }

    /// An error saying `what` did not happen within `timeout`, with the log tail.
    pub(crate) fn timeout_error(&self, what: impl Into<String>, timeout: Duration) -> Error {
        Error::Timeout {
            what: what.into(),
            timeout,
            log: self.log.clone(),
            log_tail: log_tail(&self.log),
        }
    }

    /// Sends `signal` to the leader.
    pub(crate) fn signal(&self, signal: Signal) -> Result<()> {
        kill(pid(self.pid()), signal)
            .map_err(|e| Error::sys(format!("sending {signal} to {}", self.server), e))
    }

    /// Sends `signal` and waits up to `timeout` for the leader to exit; the rest of the tree is
    /// then killed so nothing of the server is left.
    pub(crate) async fn stop_with(&mut self, signal: Signal, timeout: Duration) -> Result<()> {
        if self.try_exited()?.is_none() {
            self.signal(signal)?;
        }
        let deadline = Instant::now() + timeout;
        while self.try_exited()?.is_none() {
            if Instant::now() >= deadline {
                self.kill_tree().await?;
                return Err(
                    self.timeout_error(format!("{} exit after {signal}", self.server), timeout)
                );
            }
            tokio::time::sleep(POLL).await;
        }
        self.kill_tree().await
    }

    /// Kills the server like a crash: stops the leader so it forks no more, SIGKILLs its
    /// children (and their process groups: PostgreSQL backends lead their own), then the
    /// leader's group, and waits until none of them is alive.
    pub(crate) async fn kill_tree(&mut self) -> Result<()> {
        let pids = self.signal_tree();
        let deadline = Instant::now() + KILL_WAIT;
        while !self.tree_gone(&pids)? {
            if Instant::now() >= deadline {
                return Err(self.timeout_error(
                    format!("{} processes {pids:?} to die after SIGKILL", self.server),
                    KILL_WAIT,
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    fn signal_tree(&mut self) -> Vec<u32> {
        let leader = self.pid();
        if matches!(self.try_exited(), Ok(Some(_))) {
            return Vec::new();
        }
        // Errors are ESRCH (already gone), which is the outcome we want anyway.
        if let Err(e) = kill(pid(leader), Signal::SIGSTOP) {
            tracing::debug!(leader, %e, "SIGSTOP failed");
        }
        let children = children_of(leader);
        for &child in &children {
            if let Err(e) = killpg(pid(child), Signal::SIGKILL) {
                tracing::trace!(child, %e, "child leads no process group");
            }
            if let Err(e) = kill(pid(child), Signal::SIGKILL) {
                tracing::trace!(child, %e, "child already gone");
            }
        }
        if let Err(e) = killpg(pid(leader), Signal::SIGKILL) {
            tracing::debug!(leader, %e, "SIGKILL of the process group failed");
        }
        children
    }

    fn tree_gone(&mut self, children: &[u32]) -> Result<bool> {
        Ok(self.try_exited()?.is_some() && children.iter().all(|&c| !is_alive(c)))
    }

    fn drop_blocking(&mut self) {
        if !matches!(self.try_exited(), Ok(None)) {
            return;
        }
        if let Err(e) = self.signal(self.drop_signal) {
            tracing::debug!(%e, "drop signal failed");
        }
        let deadline = Instant::now() + self.drop_grace;
        while matches!(self.try_exited(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let pids = self.signal_tree();
        let deadline = Instant::now() + KILL_WAIT;
        while !matches!(self.tree_gone(&pids), Ok(true)) {
            if Instant::now() >= deadline {
                tracing::error!(server = %self.server, ?pids, "server processes survived SIGKILL");
                return;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.drop_blocking();
    }
}

fn pid(raw: u32) -> Pid {
    // Process ids fit in i32 on every Unix; a larger value cannot name a process.
    Pid::from_raw(i32::try_from(raw).unwrap_or(i32::MAX))
}

/// State, parent and process group of `pid` from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything, so parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// True when `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _, _)) if state != 'Z' && state != 'X')
}

/// Processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| matches!(proc_stat(p), Some((_, ppid, _)) if ppid == parent))
        .collect()
}

/// The last lines of a log file (at most 8 KiB), or a note saying why it could not be read.
pub(crate) fn log_tail(log: &Path) -> String {
    const TAIL: u64 = 8 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(log)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("(could not read {}: {e})", log.display()))
}
