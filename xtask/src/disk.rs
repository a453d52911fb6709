//! Disk use of `cargo xtask ci`. Each step builds the workspace its own way (checks per
//! feature set, an instrumented build for coverage, every package as packaged), and together
//! they outgrow a small disk: a CI run once failed with "No space left on device" while
//! verifying packages. So each step's output that no later step reads is removed when the
//! step is done, and the target directory's size and the free space are printed after each
//! step, so a run that still runs short shows where the space went.

use std::path::{Path, PathBuf};

use crate::cmd::workspace_root;

/// cargo's target directory, wherever `CARGO_TARGET_DIR` puts it.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Removes `target/<subdirectory>` once nothing later reads it, and says how much it freed.
pub(crate) fn prune(subdirectory: &str) -> Result<(), String> {
    let path = target_dir().join(subdirectory);
    if !path.exists() {
        return Ok(());
    }
    let size = size_of(&path);
    std::fs::remove_dir_all(&path)
        .map_err(|error| format!("cannot remove {}: {error}", path.display()))?;
    println!("disk: removed {} ({})", path.display(), gibibytes(size));
    Ok(())
}

/// Prints the target directory's size and the space left on its file system after `step`.
pub(crate) fn report(step: &str) {
    let target = target_dir();
    let used = size_of(&target);
    match free_bytes(&target) {
        Ok(free) => println!(
            "disk after {step}: target {}, free {}",
            gibibytes(used),
            gibibytes(free)
        ),
        // The report is for reading, not a check: a machine without `df` still runs CI.
        Err(error) => println!(
            "disk after {step}: target {}, free unknown ({error})",
            gibibytes(used)
        ),
    }
}

fn gibibytes(bytes: u64) -> String {
    // Precision lost past 2^53 bytes is far below what a disk report shows.
    #[allow(clippy::cast_precision_loss)]
    let gib = bytes as f64 / f64::from(1u32 << 30);
    format!("{gib:.1} GiB")
}

/// Bytes under `path`, not following symbolic links; what cannot be read counts as 0.
fn size_of(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| size_of(&entry.path()))
        .sum()
}

/// Free bytes on the file system holding `path` (or its nearest existing parent), by `df`.
fn free_bytes(path: &Path) -> Result<u64, String> {
    let existing = path
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(path);
    let output = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(existing)
        .output()
        .map_err(|error| format!("cannot run df: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .nth(1)
        .and_then(|line| line.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("df printed `{}`", text.trim()))
}
