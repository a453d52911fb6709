//! `cargo xtask bench`: runs the workspace's benchmarks. Each benchmark measures the limit (a bare
//! channel, `pg_recvlogical` on the same WAL, `redis-benchmark`) in the same run and prints its
//! own table of ratios against it.

use crate::cmd::{command, execute};
use crate::{test, workspace};

pub(crate) fn run() -> Result<(), String> {
    let benches = bench_targets()?;
    if benches.is_empty() {
        println!("no benchmark targets in the workspace yet");
        return Ok(());
    }
    println!("benchmarks: {}", benches.join(", "));
    test::prepare()?;
    execute(command("cargo", &["bench", "--workspace", "--locked"]))
}

fn bench_targets() -> Result<Vec<String>, String> {
    let metadata = workspace::metadata()?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let names = packages
        .iter()
        .flat_map(|package| package["targets"].as_array().cloned().unwrap_or_default())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect();
    Ok(names)
}
