//! Finding the PostgreSQL and Redis server programs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming a directory that holds `initdb` and `postgres`; checked first.
pub const PG_BIN_ENV: &str = "SUREFOOT_PG_BIN";

/// The PostgreSQL server programs this crate runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// The `initdb` program.
    pub initdb: PathBuf,
    /// The `postgres` server program.
    pub postgres: PathBuf,
}

impl PgBinaries {
    /// Finds `initdb` and `postgres` in one directory: `$SUREFOOT_PG_BIN`, then `PATH`, then
    /// `/usr/lib/postgresql/<version>/bin` (newest first), `/usr/local/pgsql/bin` and
    /// `/usr/pgsql-<version>/bin` (newest first).
    ///
    /// Fails with [`Error::BinaryNotFound`] saying what to install when none has both.
    pub fn find() -> Result<Self> {
        Self::find_in(&pg_candidate_dirs())
    }

    fn find_in(candidates: &[PathBuf]) -> Result<Self> {
        candidates
            .iter()
            .find_map(|dir| Self::in_dir(dir))
            .ok_or_else(|| Error::BinaryNotFound {
                what: "PostgreSQL server programs `initdb` and `postgres`".into(),
                searched: format!(
                    "${PG_BIN_ENV}, PATH, /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin, /usr/pgsql-*/bin"
                ),
                install: format!(
                    "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; Fedora/RHEL: `dnf install postgresql-server`; macOS: `brew install postgresql`) or set {PG_BIN_ENV} to the directory holding them"
                ),
            })
    }

    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = executable(&dir.join("initdb"))?;
        let postgres = executable(&dir.join("postgres"))?;
        Some(Self { initdb, postgres })
    }
}

/// Finds `redis-server` on `PATH`, then in `/usr/bin` and `/usr/local/bin`.
///
/// Fails with [`Error::BinaryNotFound`] saying what to install when it is not there.
pub fn find_redis_server() -> Result<PathBuf> {
    let mut dirs = path_dirs();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/local/bin".into());
    dirs.iter()
        .find_map(|dir| executable(&dir.join("redis-server")))
        .ok_or_else(|| Error::BinaryNotFound {
            what: "`redis-server`".into(),
            searched: "PATH, /usr/bin, /usr/local/bin".into(),
            install: "install Redis (Debian/Ubuntu: `apt-get install redis-server`; Fedora/RHEL: `dnf install redis`; macOS: `brew install redis`)".into(),
        })
}

fn pg_candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    dirs.extend(path_dirs());
    dirs.extend(versioned_dirs(Path::new("/usr/lib/postgresql"), "", "bin"));
    dirs.push("/usr/local/pgsql/bin".into());
    dirs.extend(versioned_dirs(Path::new("/usr"), "pgsql-", "bin"));
    dirs
}

fn path_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).collect()
}

/// `<parent>/<prefix><version>/<sub>` for every version directory, newest version first.
fn versioned_dirs(parent: &Path, prefix: &str, sub: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = parse_version(name.strip_prefix(prefix)?)?;
            Some((version, entry.path().join(sub)))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn parse_version(text: &str) -> Option<Vec<u64>> {
    text.split('.').map(|part| part.parse().ok()).collect()
}

/// `path` when it is (or links to) an executable regular file.
///
/// Symlinks are kept as they are: `redis-server` is often a link to `redis-check-rdb` and picks
/// its role from the name it is started under.
fn executable(path: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "10", "17", "notaversion"] {
            std::fs::create_dir(dir.path().join(v)).unwrap();
        }
        let found = versioned_dirs(dir.path(), "", "bin");
        let names: Vec<_> = found
            .iter()
            .map(|p| p.parent().unwrap().file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["17", "15", "10", "9.6"]);
    }

    #[test]
    fn missing_binaries_say_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let error = PgBinaries::find_in(&[empty.path().to_owned()]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("initdb"), "{message}");
    }

    #[test]
    fn a_directory_with_both_programs_is_chosen() {
        let found = PgBinaries::find().unwrap();
        assert!(found.initdb.ends_with("initdb") && found.postgres.ends_with("postgres"));
    }

    #[test]
    fn prefixed_versions_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["pgsql-14", "pgsql-16", "other"] {
            std::fs::create_dir(dir.path().join(v)).unwrap();
        }
        let found = versioned_dirs(dir.path(), "pgsql-", "bin");
        assert_eq!(
            found,
            [
                dir.path().join("pgsql-16/bin"),
                dir.path().join("pgsql-14/bin")
            ]
        );
    }
}
