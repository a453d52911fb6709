//! `cargo xtask publish-check [--allow-dirty]`: every published crate packaged as
//! `cargo publish` would upload it, and each `.crate` built against the others as packaged
//! (`cargo package --workspace`, verification on). A file left out of a package, a path
//! dependency without a `version`, or a manifest that only builds inside the workspace fails
//! here rather than at release time. Packages with `publish = false` are excluded: cargo
//! packages them too when asked for the whole workspace.

use crate::cmd::{command, execute};
use crate::workspace;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let allow_dirty = parse(args)?;
    let packages = workspace::packages()?;
    let published: Vec<&str> = packages
        .iter()
        .filter(|package| package.published)
        .map(|package| package.name.as_str())
        .collect();
    if published.is_empty() {
        return Err("no package of the workspace is published".to_owned());
    }
    println!(
        "packaging {} published crates: {}",
        published.len(),
        published.join(", ")
    );
    let mut package = command("cargo", &["package", "--workspace", "--locked"]);
    for unpublished in packages.iter().filter(|package| !package.published) {
        package.args(["--exclude", &unpublished.name]);
    }
    if allow_dirty {
        package.arg("--allow-dirty");
    }
    execute(package)
}

/// `--allow-dirty` packages uncommitted changes (for local runs while editing); CI runs on a
/// clean checkout without it.
fn parse(args: &[String]) -> Result<bool, String> {
    match args {
        [] => Ok(false),
        [flag] if flag == "--allow-dirty" => Ok(true),
        _ => Err(format!(
            "publish-check takes only --allow-dirty, not `{}`",
            args.join(" ")
        )),
    }
}
