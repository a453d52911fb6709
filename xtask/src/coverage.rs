//! `cargo xtask coverage`: the tests under cargo-llvm-cov, line coverage per crate, and a
//! failure when a crate is under the threshold kept in `.config/coverage-threshold`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cmd::{command, execute, workspace_root};
use crate::{disk, test, tools};

const THRESHOLD_FILE: &str = ".config/coverage-threshold";
const SUMMARY_FILE: &str = "llvm-cov-summary.json";

pub(crate) fn run() -> Result<(), String> {
    test::prepare()?;
    tools::ensure_llvm_tools()?;
    tools::ensure_cargo_tool("cargo-llvm-cov", "llvm-cov")?;
    let threshold = read_threshold()?;
    let summary = summary_path()?;
    let summary_arg = summary.to_string_lossy().into_owned();
    execute(command(
        "cargo",
        &[
            "llvm-cov",
            "nextest",
            "--workspace",
            "--locked",
            "--profile",
            "ci",
            // crates/demo is the demo program, proven by running it whole after the tests
            // (`cargo xtask ci` ends with it), not by unit tests.
            "--ignore-filename-regex",
            "(^|/)(xtask|tests|benches|examples|crates/demo)/",
            "--json",
            "--summary-only",
            "--output-path",
            &summary_arg,
        ],
    ))?;
    test::doctests()?;
    let per_crate = lines_per_crate(&summary)?;
    report(&per_crate, threshold)
}

/// The summary goes into cargo's target directory, which is created first, since llvm-cov
/// does not create it.
fn summary_path() -> Result<PathBuf, String> {
    let target = disk::target_dir();
    std::fs::create_dir_all(&target)
        .map_err(|error| format!("cannot create {}: {error}", target.display()))?;
    Ok(target.join(SUMMARY_FILE))
}

fn read_threshold() -> Result<f64, String> {
    let path = workspace_root().join(THRESHOLD_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|percent| (0.0..=100.0).contains(percent))
        .ok_or_else(|| {
            format!(
                "{THRESHOLD_FILE} must hold a percentage, found `{}`",
                text.trim()
            )
        })
}

/// (covered, total) lines per crate directory name.
fn lines_per_crate(summary: &Path) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let text = std::fs::read_to_string(summary)
        .map_err(|error| format!("cannot read {}: {error}", summary.display()))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not llvm-cov JSON: {error}", summary.display()))?;
    let files = json["data"][0]["files"]
        .as_array()
        .ok_or_else(|| format!("{} has no data[0].files", summary.display()))?;
    let mut per_crate: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for file in files {
        let Some(name) = file["filename"].as_str().and_then(crate_of) else {
            continue;
        };
        let lines = &file["summary"]["lines"];
        let entry = per_crate.entry(name).or_default();
        entry.0 += lines["covered"].as_u64().unwrap_or(0);
        entry.1 += lines["count"].as_u64().unwrap_or(0);
    }
    Ok(per_crate)
}

fn crate_of(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/crates/")?;
    rest.split('/').next().map(str::to_owned)
}

fn report(per_crate: &BTreeMap<String, (u64, u64)>, threshold: f64) -> Result<(), String> {
    println!("\nline coverage per crate (threshold {threshold:.1}% from {THRESHOLD_FILE})");
    println!(
        "{:<24} {:>8} {:>8} {:>8}",
        "crate", "covered", "lines", "percent"
    );
    let mut below = Vec::new();
    for (name, (covered, total)) in per_crate {
        let percent = if *total == 0 {
            100.0
        } else {
            *covered as f64 * 100.0 / *total as f64
        };
        let mark = if percent < threshold { "  BELOW" } else { "" };
        println!("{name:<24} {covered:>8} {total:>8} {percent:>7.1}%{mark}");
        if percent < threshold {
            below.push(format!("{name} ({percent:.1}%)"));
        }
    }
    if below.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "line coverage under {threshold:.1}%: {}",
            below.join(", ")
        ))
    }
}
