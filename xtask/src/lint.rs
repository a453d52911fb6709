//! `cargo xtask lint`: formatting, clippy with warnings denied, cargo-deny.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::cmd::{command, execute};
use crate::tools;

pub(crate) fn run() -> Result<(), String> {
    execute(command("cargo", &["fmt", "--all", "--check"]))?;
    execute(command(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    ))?;
    tools::ensure_cargo_tool("cargo-deny", "deny")?;
    execute(command(
        "cargo",
        &["deny", "--locked", "check", "licenses", "bans", "sources"],
    ))?;
    if advisory_database_reachable() {
        execute(command(
            "cargo",
            &["deny", "--locked", "check", "advisories"],
        ))
    } else {
        eprintln!(
            "xtask: advisories SKIPPED: the advisory database (github.com/rustsec/advisory-db) \
             is not reachable from this machine"
        );
        Ok(())
    }
}

fn advisory_database_reachable() -> bool {
    let Ok(mut addresses) = ("github.com", 443).to_socket_addrs() else {
        return false;
    };
    addresses.any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(5)).is_ok())
}
