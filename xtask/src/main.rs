//! surefoot's development workflows, in plain Rust: `cargo xtask <command>`.
//!
//! Every workflow installs the tools it needs on first use (and says so), so a fresh machine
//! needs only rustup and this repository.

// xtask is a command-line program: printing to the terminal is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod chaos;
mod cmd;
mod coverage;
mod demo;
mod disk;
mod docs;
mod features;
mod lint;
mod publish;
mod test;
mod tools;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo [--seconds N]
             the main job: throwaway servers, a sample shop under load, `surefoot run` on
             examples/demo.yaml with progress until Ctrl-C (or N seconds), then a summary
  lint       rustfmt check, clippy (warnings denied), cargo-deny
  test       the whole workspace's tests (nextest) and doctests, against real servers
  coverage   the tests under cargo-llvm-cov; per-crate line coverage against .config/coverage-threshold
  chaos [N]  the fault-injection tests (`chaos_*`), N iterations each (default 1), with a loss table
  bench      the benchmarks, with their ratio tables
  docs       `cargo doc --no-deps --workspace --all-features` with rustdoc warnings denied
             (broken and private intra-doc links included)
  features   the feature matrix: each package checked alone with its default features, none
             and each feature (cargo-hack), then `--no-default-features` tests where a package
             has features
  publish-check [--allow-dirty]
             `cargo package --workspace` of every published crate, each built as packaged
  ci         lint, docs, features, the tests under coverage, publish-check, then the demo for
             15 s (what .ci/run and GitHub Actions run)";

/// `cargo xtask ci`: the cheap checks first, so a broken build fails before the long tests.
/// What a step builds and no later step reads is removed when it is done (see `disk`).
fn ci() -> Result<(), String> {
    disk::report("checkout");
    lint::run()?;
    disk::report("lint");
    docs::run()?;
    disk::prune("doc")?;
    disk::report("docs");
    features::run()?;
    disk::report("features");
    coverage::run()?;
    disk::prune("llvm-cov-target")?;
    disk::report("coverage");
    publish::run(&[])?;
    disk::prune("package")?;
    disk::report("publish-check");
    demo::run(&["--seconds".to_owned(), "15".to_owned()])
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("lint") => lint::run(),
        Some("test") => test::run(),
        Some("coverage") => coverage::run(),
        Some("chaos") => chaos::run(args.get(1).map(String::as_str)),
        Some("bench") => bench::run(),
        Some("demo") => demo::run(&args[1..]),
        Some("docs") => docs::run(),
        Some("features") => features::run(),
        Some("publish-check") => publish::run(&args[1..]),
        Some("ci") => ci(),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
