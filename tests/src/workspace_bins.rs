//! Builds binaries of this workspace for the tests that run them as processes (the gateway, the
//! load tool, the operator), with the same cargo and profile as the test binary itself.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::Error;

/// Runs `cargo build --locked -p <package>` plus `selection` (e.g. `["--bins"]` or
/// `["--bin", "name"]`) on this workspace and returns the directory the binaries land in. A
/// no-op when they are up to date.
pub fn build(package: &str, selection: &[&str]) -> Result<PathBuf, Error> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let status = Command::new(&cargo)
        .args(["build", "--locked", "-p", package])
        .args(selection)
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .status()
        .map_err(|source| Error::Io {
            what: format!("running {cargo} build"),
            source,
        })?;
    if !status.success() {
        return Err(Error::Unavailable(format!(
            "cargo build -p {package} {} failed: {status}",
            selection.join(" ")
        )));
    }
    // The test binary is target/<profile>/deps/<name>; the binaries are in target/<profile>.
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        what: "locating the test binary".into(),
        source,
    })?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .ok_or_else(|| Error::Unavailable(format!("unexpected test binary path {}", exe.display())))
}
