//! Creating a PostgreSQL cluster in a temp dir: the user to run as, `initdb`, the settings.

use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use crate::binaries::PgBinaries;
use crate::error::{Error, Result};

/// The database superuser created by `initdb`.
pub(crate) const SUPERUSER: &str = "postgres";
/// The system user PostgreSQL runs as when the tests run as root.
const SERVICE_USER: &str = "postgres";

/// Who the server processes run as: `None` means the current user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs(Option<(Uid, Gid)>);

impl RunAs {
    /// The `postgres` system user when running as root (PostgreSQL refuses root), else nobody.
    pub(crate) fn detect() -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(Self(None));
        }
        let user = User::from_name(SERVICE_USER)
            .map_err(|e| Error::sys(format!("looking up the `{SERVICE_USER}` user"), e))?
            .ok_or_else(|| Error::NoServiceUser {
                user: SERVICE_USER.into(),
            })?;
        Ok(Self(Some((user.uid, user.gid))))
    }

    /// Makes `path` owned by the user the server runs as.
    pub(crate) fn give(&self, path: &Path) -> Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(|e| {
            Error::io(
                format!("chown {} to the `{SERVICE_USER}` user", path.display()),
                e,
            )
        })
    }

    /// Makes `command` run as that user, in `dir`, with the C locale.
    pub(crate) fn apply(&self, command: &mut Command, dir: &Path) {
        if let Some((uid, gid)) = self.0 {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command.current_dir(dir).env("LC_ALL", "C").env("LANG", "C");
    }
}

/// Runs `initdb` for `data_dir` (trust auth, UTF8, C locale, no fsync).
pub(crate) async fn initdb(
    bins: &PgBinaries,
    run_as: RunAs,
    dir: &Path,
    data_dir: &Path,
) -> Result<()> {
    let mut command = Command::new(&bins.initdb);
    command.arg("-D").arg(data_dir).args([
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run_as.apply(&mut command, dir);
    let line = format!("{command:?}");
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .map_err(|e| Error::io(format!("running {line}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::CommandFailed {
        command: line,
        status: output.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The settings every test server gets, before the caller's own.
fn base_settings(socket_dir: &Path) -> Vec<(String, String)> {
    let fixed = [
        ("listen_addresses", "'127.0.0.1'"),
        ("wal_level", "logical"),
        ("max_replication_slots", "20"),
        ("max_wal_senders", "20"),
        ("max_connections", "60"),
        ("shared_buffers", "32MB"),
        ("fsync", "off"),
        ("synchronous_commit", "on"),
        ("log_line_prefix", "'%m [%p] %a '"),
    ];
    let mut settings: Vec<(String, String)> = fixed
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    settings.push((
        "unix_socket_directories".into(),
        quote(&socket_dir.to_string_lossy()),
    ));
    settings
}

/// Appends the base settings and `extra` to `postgresql.conf` (later lines win).
pub(crate) fn write_settings(
    data_dir: &Path,
    socket_dir: &Path,
    extra: &[(String, String)],
) -> Result<()> {
    let path = data_dir.join("postgresql.conf");
    let lines: String = base_settings(socket_dir)
        .iter()
        .chain(extra)
        .map(|(name, value)| format!("{name} = {value}\n"))
        .collect();
    let text = format!("\n# surefoot-test-support\n{lines}");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| Error::io(format!("writing settings to {}", path.display()), e))
}

/// A PostgreSQL string literal.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A PostgreSQL quoted identifier.
pub(crate) fn quote_ident(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Removes the SysV shared-memory segment a killed server left behind.
///
/// A postmaster that exits normally removes its small interlock segment; one killed with
/// SIGKILL cannot, and a later start in the same data directory would reuse it. When the data
/// directory is about to be deleted nothing will, so the segment named in the stale
/// `postmaster.pid` is removed with `ipcrm`. Called only once every server process is gone.
pub(crate) fn remove_orphaned_shmem(data_dir: &Path) {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return; // Clean shutdown (or never started): nothing left.
    };
    let Some(shmid) = text
        .lines()
        .nth(6)
        .and_then(|line| line.split_whitespace().nth(1))
        .filter(|id| id.parse::<u64>().is_ok())
    else {
        tracing::debug!(file = %pid_file.display(), "no shared-memory id in postmaster.pid");
        return;
    };
    match Command::new("ipcrm").args(["-m", shmid]).output() {
        Ok(output) if output.status.success() => {
            tracing::debug!(shmid, "removed orphaned shared memory")
        }
        Ok(output) => tracing::debug!(
            shmid,
            stderr = %String::from_utf8_lossy(&output.stderr),
            "ipcrm failed (the segment may already be gone)"
        ),
        Err(e) => {
            tracing::warn!(shmid, %e, "could not run ipcrm; a killed server's shared memory segment stays until reboot")
        }
    }
}
