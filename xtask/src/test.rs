//! `cargo xtask test`: every test of the workspace, against real servers.

use crate::cmd::{command, execute};
use crate::tools;

pub(crate) fn run() -> Result<(), String> {
    prepare()?;
    execute(command(
        "cargo",
        &[
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--profile",
            "ci",
        ],
    ))?;
    doctests()
}

/// Servers and nextest, which every test workflow needs.
pub(crate) fn prepare() -> Result<(), String> {
    tools::ensure_servers()?;
    tools::ensure_cargo_tool("cargo-nextest", "nextest")
}

/// Doctests, which nextest does not run.
pub(crate) fn doctests() -> Result<(), String> {
    execute(command(
        "cargo",
        &["test", "--doc", "--workspace", "--locked"],
    ))
}
