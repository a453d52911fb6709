//! `cargo xtask demo [--seconds N]`: the main job, end to end on this machine (see
//! crates/demo): throwaway servers, a sample shop under load, `surefoot run` on
//! examples/demo.yaml, progress until Ctrl-C or N seconds, then a clean stop and a summary.

use crate::cmd::{command, execute, workspace_root};
use crate::tools::ensure_servers;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    ensure_servers()?;
    execute(command(
        "cargo",
        &[
            "build",
            "-q",
            "-p",
            "surefoot-server",
            "-p",
            "surefoot-demo",
        ],
    ))?;
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("debug");
    let surefoot = target.join("surefoot");
    let config = root.join("examples/demo.yaml");
    let demo = target.join("surefoot-demo");
    let mut run = command(&demo.to_string_lossy(), &[]);
    run.arg("--surefoot")
        .arg(&surefoot)
        .arg("--config")
        .arg(&config)
        .args(args);
    execute(run)
}
