//! The workspace's packages, read from `cargo metadata`.

use serde_json::Value;

use crate::cmd::command;

/// One package of the workspace, as far as the workflows need it.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    /// False for `publish = false` (cargo metadata shows it as `"publish": []`).
    pub(crate) published: bool,
    /// Its features, `default` excepted.
    pub(crate) features: Vec<String>,
}

/// `cargo metadata --no-deps` of the workspace.
pub(crate) fn metadata() -> Result<Value, String> {
    let output = command(
        "cargo",
        &["metadata", "--no-deps", "--format-version", "1", "--locked"],
    )
    .output()
    .map_err(|error| format!("could not run cargo metadata: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("cargo metadata printed invalid JSON: {error}"))
}

/// Every package of the workspace.
pub(crate) fn packages() -> Result<Vec<Package>, String> {
    let metadata = metadata()?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no `packages` list")?;
    packages.iter().map(package).collect()
}

fn package(json: &Value) -> Result<Package, String> {
    let name = json["name"]
        .as_str()
        .ok_or("a package in cargo metadata has no name")?
        .to_owned();
    // `null` means any registry; a list names the registries, and `[]` is `publish = false`.
    let published = json["publish"]
        .as_array()
        .is_none_or(|registries| !registries.is_empty());
    let features = json["features"]
        .as_object()
        .map(|features| {
            features
                .keys()
                .filter(|feature| *feature != "default")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(Package {
        name,
        published,
        features,
    })
}
