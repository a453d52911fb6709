//! Tools the workflows need, installed on first use when the machine lacks them.

use std::path::Path;

use crate::cmd::{command, execute, succeeds};

/// Ensures `cargo <subcommand>` works, installing `crate_name` with `cargo install` if not.
pub(crate) fn ensure_cargo_tool(crate_name: &str, subcommand: &str) -> Result<(), String> {
    if succeeds("cargo", &[subcommand, "--version"]) {
        return Ok(());
    }
    eprintln!(
        "xtask: `cargo {subcommand}` is missing; installing {crate_name} from crates.io (first use only)"
    );
    execute(command("cargo", &["install", "--locked", crate_name])).map_err(|error| {
        format!("{error}\nxtask: install it yourself with `cargo install --locked {crate_name}`")
    })
}

/// Ensures the `llvm-tools` rustup component that cargo-llvm-cov needs.
pub(crate) fn ensure_llvm_tools() -> Result<(), String> {
    let installed = command("rustup", &["component", "list", "--installed"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).contains("llvm-tools"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    eprintln!("xtask: the llvm-tools rustup component is missing; installing it (first use only)");
    execute(command("rustup", &["component", "add", "llvm-tools"])).map_err(|error| {
        format!("{error}\nxtask: install it yourself with `rustup component add llvm-tools`")
    })
}

/// Ensures the PostgreSQL and Redis server binaries the tests start are on this machine.
///
/// As root on Debian they are installed with apt-get; otherwise the error says what to install.
pub(crate) fn ensure_servers() -> Result<(), String> {
    let missing: Vec<&str> = [
        ("postgresql", has_postgres_server()),
        ("redis-server", on_path("redis-server")),
    ]
    .into_iter()
    .filter(|(_, present)| !present)
    .map(|(package, _)| package)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = missing.join(" ");
    if !is_root() || !on_path("apt-get") {
        return Err(format!(
            "the tests start their own PostgreSQL (with initdb) and Redis servers, and this \
             machine lacks: {packages}. Install them (Debian: `apt-get install {packages}`; \
             elsewhere the PostgreSQL server binaries and redis-server) and run again"
        ));
    }
    eprintln!("xtask: installing the server packages the tests need: {packages} (first use only)");
    execute(command("apt-get", &["update", "-q"]))?;
    let mut install = command(
        "apt-get",
        &["install", "-y", "-q", "--no-install-recommends"],
    );
    install
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    execute(install)
}

fn has_postgres_server() -> bool {
    let versioned = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|version| version.path().join("bin/initdb").is_file());
    on_path("initdb") || versioned || Path::new("/usr/local/pgsql/bin/initdb").is_file()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn is_root() -> bool {
    command("id", &["-u"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}
