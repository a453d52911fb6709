//! `cargo xtask chaos [N]`: the fault-injection tests (named `chaos_*`), N iterations each, and a
//! table per scenario of changes written, delivered, lost and duplicated.
//!
//! Each chaos test reads its iteration count from `SUREFOOT_CHAOS_ITERATIONS` and appends one JSON
//! line per iteration to the file named by `SUREFOOT_CHAOS_REPORT` (see test-support's `chaos`
//! module): `{"scenario": .., "written": .., "delivered": .., "lost": .., "duplicated": ..}`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cmd::{command, execute, workspace_root};
use crate::test;

const REPORT_FILE: &str = "target/chaos-report.jsonl";

#[derive(Default)]
struct Tally {
    iterations: u64,
    written: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
}

pub(crate) fn run(iterations: Option<&str>) -> Result<(), String> {
    let iterations: u32 = match iterations {
        None => 1,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("iterations must be a positive number, not `{text}`"))?,
    };
    test::prepare()?;
    let report_path = workspace_root().join(REPORT_FILE);
    if report_path.exists() {
        std::fs::remove_file(&report_path)
            .map_err(|error| format!("cannot remove {}: {error}", report_path.display()))?;
    }
    let mut nextest = command(
        "cargo",
        &[
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--profile",
            "ci",
            "--no-tests",
            "warn",
            "-E",
            "test(/(^|::)chaos_/)",
        ],
    );
    nextest
        .env("SUREFOOT_CHAOS_ITERATIONS", iterations.to_string())
        .env("SUREFOOT_CHAOS_REPORT", &report_path);
    let tests = execute(nextest);
    let tallies = read_report(&report_path)?;
    print_table(&tallies, iterations);
    tests?;
    let bad: Vec<&str> = tallies
        .iter()
        .filter(|(_, tally)| tally.lost > 0 || tally.duplicated > 0)
        .map(|(name, _)| name.as_str())
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("changes lost or duplicated in: {}", bad.join(", ")))
    }
}

fn read_report(path: &std::path::Path) -> Result<BTreeMap<String, Tally>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let row: Value = serde_json::from_str(line)
            .map_err(|error| format!("{}:{}: {error}", path.display(), number + 1))?;
        let scenario = row["scenario"]
            .as_str()
            .ok_or_else(|| format!("{}:{}: no scenario", path.display(), number + 1))?;
        let field = |name: &str| row[name].as_u64().unwrap_or(0);
        let tally = tallies.entry(scenario.to_owned()).or_default();
        tally.iterations += 1;
        tally.written += field("written");
        tally.delivered += field("delivered");
        tally.lost += field("lost");
        tally.duplicated += field("duplicated");
    }
    Ok(tallies)
}

fn print_table(tallies: &BTreeMap<String, Tally>, iterations: u32) {
    if tallies.is_empty() {
        println!("\nno chaos scenario reported (no test named chaos_* ran)");
        return;
    }
    println!("\nchaos scenarios, {iterations} iteration(s) requested");
    println!(
        "{:<48} {:>5} {:>10} {:>10} {:>6} {:>10}",
        "scenario", "runs", "written", "delivered", "lost", "duplicated"
    );
    for (name, t) in tallies {
        println!(
            "{name:<48} {:>5} {:>10} {:>10} {:>6} {:>10}",
            t.iterations, t.written, t.delivered, t.lost, t.duplicated
        );
    }
}
