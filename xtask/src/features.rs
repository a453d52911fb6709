//! `cargo xtask features`: the feature matrix. Each package is built on its own (not with the
//! features the rest of the workspace turns on for it) with its default features, with none,
//! and with each feature alone (cargo-hack). Then each package that has features has every
//! target checked and its tests run with `--no-default-features`, against real servers.

use crate::cmd::{command, execute};
use crate::workspace::{self, Package};
use crate::{test, tools};

pub(crate) fn run() -> Result<(), String> {
    tools::ensure_cargo_tool("cargo-hack", "hack")?;
    each_feature()?;
    let with_features: Vec<Package> = workspace::packages()?
        .into_iter()
        .filter(|package| !package.features.is_empty())
        .collect();
    if with_features.is_empty() {
        return Ok(());
    }
    test::prepare()?;
    for package in &with_features {
        without_default_features(package)?;
    }
    Ok(())
}

/// `cargo check` of every package alone, once per feature set.
fn each_feature() -> Result<(), String> {
    execute(command(
        "cargo",
        &["hack", "check", "--workspace", "--each-feature", "--locked"],
    ))
}

/// Every target checked, then the tests, of `package` with its default features off.
fn without_default_features(package: &Package) -> Result<(), String> {
    let name = package.name.as_str();
    execute(command(
        "cargo",
        &[
            "check",
            "-p",
            name,
            "--all-targets",
            "--no-default-features",
            "--locked",
        ],
    ))?;
    execute(command(
        "cargo",
        &[
            "nextest",
            "run",
            "-p",
            name,
            "--no-default-features",
            "--locked",
            "--profile",
            "ci",
            "--no-tests",
            "warn",
        ],
    ))
}
