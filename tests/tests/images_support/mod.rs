//! Shared by tests/tests/images.rs: runs `tests/images/build` twice, into two directories, and
//! reads each archive back the way a runtime does: index.json, the manifest, the config (every
//! blob checked against its digest) and the layer, unpacked into a directory with `tar`.

#![allow(dead_code, unreachable_pub)]

pub mod dockerfile;
pub mod elf;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The images, in the order the build prints them.
pub const IMAGES: [&str; 3] = ["gateway", "operator", "pause"];

/// The repository root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// One image as read back from its archive.
#[derive(Debug)]
pub struct Image {
    /// `gateway`, `operator` or `pause`.
    pub name: String,
    /// What the build printed for it.
    pub reference: String,
    /// The archive of the first build.
    pub archive: PathBuf,
    /// The same image from the second build.
    pub rebuilt: PathBuf,
    /// index.json and the image config.
    pub index: Value,
    pub config: Value,
    /// The oci-layout file.
    pub layout: Value,
    /// `tar -tv --numeric-owner` of the layer, one member per line.
    pub members: Vec<String>,
    /// The layer, unpacked.
    pub rootfs: PathBuf,
}

impl Image {
    /// The label `name` of the config, or "".
    pub fn label(&self, name: &str) -> &str {
        self.config["config"]["Labels"][name]
            .as_str()
            .unwrap_or_default()
    }
}

/// The images of the first build, read back; the build runs (twice) on first use only.
pub fn built() -> &'static [Image] {
    static BUILT: OnceLock<Result<Vec<Image>, String>> = OnceLock::new();
    match BUILT.get_or_init(build_twice) {
        Ok(images) => images,
        Err(err) => panic!("{err}"),
    }
}

fn build_twice() -> Result<Vec<Image>, String> {
    let scratch = repo_dir().join("target/images-test");
    let _ = std::fs::remove_dir_all(&scratch);
    let (first, second) = (scratch.join("first"), scratch.join("second"));
    let printed = build(&first)?;
    let again = build(&second)?;
    if printed != again {
        return Err(format!("two builds printed {printed:?} and {again:?}"));
    }
    printed
        .into_iter()
        .map(|(name, reference)| {
            let archive = first.join(format!("{name}.oci.tar"));
            read(
                &archive,
                &name,
                reference,
                second.join(format!("{name}.oci.tar")),
            )
        })
        .collect()
}

/// Runs the build into `out` (never importing into a cluster) and returns its IMAGE lines.
fn build(out: &Path) -> Result<Vec<(String, String)>, String> {
    let script = repo_dir().join("tests/images/build");
    let output = Command::new(&script)
        .env("SSTP_IMAGES_DIR", out)
        .env_remove("SSTP_K8S_DIR")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("running {}: {err}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{stdout}",
            script.display(),
            output.status
        ));
    }
    stdout
        .lines()
        .map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
            ["IMAGE", name, reference] => Ok((name.to_owned(), reference.to_owned())),
            _ => Err(format!("not an `IMAGE <name> <reference>` line: {line:?}")),
        })
        .collect()
}

fn read(archive: &Path, name: &str, reference: String, rebuilt: PathBuf) -> Result<Image, String> {
    let dir = archive.with_extension("unpacked");
    let (layout_dir, rootfs) = (dir.join("layout"), dir.join("rootfs"));
    for d in [&layout_dir, &rootfs] {
        std::fs::create_dir_all(d).map_err(|err| format!("creating {}: {err}", d.display()))?;
    }
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&layout_dir))?;
    let file = |path: &str| {
        std::fs::read(layout_dir.join(path)).map_err(|err| format!("{name}: reading {path}: {err}"))
    };
    let blob = |digest: &Value| -> Result<Vec<u8>, String> {
        let digest = digest.as_str().unwrap_or_default();
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or(format!("{name}: digest {digest}"))?;
        let data = file(&format!("blobs/sha256/{hex}"))?;
        if sha256_hex(&data) != hex {
            return Err(format!("{name}: blob {hex} does not hash to its name"));
        }
        Ok(data)
    };
    let json = |data: Vec<u8>| {
        serde_json::from_slice::<Value>(&data).map_err(|err| format!("{name}: bad JSON: {err}"))
    };
    let index = json(file("index.json")?)?;
    let manifest = json(blob(&index["manifests"][0]["digest"])?)?;
    let config = json(blob(&manifest["config"]["digest"])?)?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = &layers[..] else {
        return Err(format!("{name}: {} layers, expected one", layers.len()));
    };
    blob(&layer["digest"])?;
    let layer_path = layout_dir.join(format!(
        "blobs/sha256/{}",
        layer["digest"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("sha256:")
    ));
    let tar = run(Command::new("gzip").arg("-dc").arg(&layer_path))?;
    if config["rootfs"]["diff_ids"][0].as_str() != Some(&format!("sha256:{}", sha256_hex(&tar))) {
        return Err(format!(
            "{name}: the layer's diff_id is not its uncompressed digest"
        ));
    }
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&rootfs))?;
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&layer_path))?;
    Ok(Image {
        name: name.to_owned(),
        reference,
        archive: archive.to_owned(),
        rebuilt,
        index,
        config,
        layout: json(file("oci-layout")?)?,
        members: String::from_utf8_lossy(&listing)
            .lines()
            .map(str::to_owned)
            .collect(),
        rootfs,
    })
}

/// Runs `command`, returning its stdout; an error with its stderr if it fails.
pub fn run(command: &mut Command) -> Result<Vec<u8>, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("running {command:?}: {err}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `NAME=value` from tests/images/versions.env.
pub fn versions_env(name: &str) -> String {
    let path = repo_dir().join("tests/images/versions.env");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .map(|value| value.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name}= in {}", path.display()))
}
