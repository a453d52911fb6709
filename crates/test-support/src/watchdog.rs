//! A helper process that cleans up a server if the test process dies without dropping it.
//!
//! Drop cannot run when the test process is killed (a nextest timeout sends SIGTERM, then
//! SIGKILL), and a server in its own process group would outlive it. So each server process gets
//! a small `sh` watchdog, in a process group of its own, reading a pipe whose write end only
//! this process holds. A normal drop writes `done` and the watchdog exits. If this process dies,
//! the pipe reaches EOF and the watchdog signals the server, waits up to 5 s, SIGKILLs its
//! process group and removes the server's temp dir.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::error::{Error, Result};

const SCRIPT: &str = r#"
IFS= read -r line
[ "$line" = done ] && exit 0
kill -s "$2" "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill -s KILL -- -"$1" 2>/dev/null
rm -rf "$3"
"#;

/// The watchdog of one server process; dropping it dismisses it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog for the server process `pid` that, if this process dies, sends it
    /// `signal` (a `kill` signal name such as `QUIT`), then kills its group and removes `dir`.
    pub(crate) fn spawn(pid: u32, signal: &str, dir: &Path) -> Result<Self> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("surefoot-watchdog")
            .arg(pid.to_string())
            .arg(signal)
            .arg(dir)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| Error::io("starting the cleanup watchdog (/bin/sh)", e))?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take()
            && let Err(e) = stdin.write_all(b"done\n")
        {
            tracing::debug!(%e, "watchdog already gone");
        }
        if let Err(e) = self.child.wait() {
            tracing::debug!(%e, "could not reap the watchdog");
        }
    }
}
