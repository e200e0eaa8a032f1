//! The container images `tests/images/build` makes offline, read back from their OCI archives:
//! each is named by its pinned reference, runs the way its Dockerfile's final stage declares
//! (the project's own, or upstream Kubernetes' for pause), holds every library its programs load
//! and nothing more (no shell, no package manager), and a second build gives the same bytes.
//!
//! The build makes the release binaries when they are missing or stale (minutes on 2 cores the
//! first time; the README-command test needs the release gateway too).

mod images_support;

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use images_support::{
    IMAGES, Image, built,
    dockerfile::final_stage,
    elf::{SEARCH_PATH, linkage, resolve},
    repo_dir, run, sha256_hex, versions_env,
};
use serde_json::{Value, json};
use sstp_gateway::nat::{NatSettings, ruleset};

/// Labels every image carries (OCI annotation names).
const LABELS: [&str; 5] = [
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.licenses",
];

/// The programs each image holds; anything else is data or a library.
fn programs(image: &str) -> &'static [&'static str] {
    match image {
        "gateway" => &["/usr/local/bin/sstp-gateway", "/usr/sbin/nft"],
        "operator" => &["/usr/local/bin/sstp-operator"],
        _ => &["/pause"],
    }
}

/// File names that mean a shell, an interpreter or a package manager.
const FORBIDDEN: [&str; 17] = [
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "busybox", "toybox", "apt",
    "apt-get", "dpkg", "rpm", "apk", "perl", "python3",
];

fn image(name: &str) -> &'static Image {
    built()
        .iter()
        .find(|image| image.name == name)
        .unwrap_or_else(|| panic!("the build made no {name} image"))
}

/// The Dockerfile the image mirrors: this repository's, or upstream's for pause (in the Go module
/// cache, where the build compiled pause.c from).
fn dockerfile(name: &str) -> String {
    let path = if name == "pause" {
        let k8s = std::fs::read_to_string(repo_dir().join("tests/k8s/versions.env"))
            .expect("reading tests/k8s/versions.env");
        let version = k8s
            .lines()
            .find_map(|line| line.strip_prefix("K8S_VERSION="))
            .expect("K8S_VERSION in tests/k8s/versions.env");
        let path = format!(
            "{}:/usr/local/go/bin",
            std::env::var("PATH").unwrap_or_default()
        );
        let cache = run(Command::new("go")
            .args(["env", "GOMODCACHE"])
            .env("PATH", path))
        .expect("go env GOMODCACHE");
        Path::new(String::from_utf8_lossy(&cache).trim()).join(format!(
            "k8s.io/kubernetes@{version}/build/pause/Dockerfile"
        ))
    } else {
        repo_dir().join(name).join("Dockerfile")
    };
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// Every regular file of the unpacked image, as (absolute image path, host path).
fn files(image: &Image) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut pending = vec![image.rootfs.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the unpacked layer") {
            let path = entry.expect("a directory entry").path();
            let kind = std::fs::symlink_metadata(&path).expect("stat").file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let inside = path.strip_prefix(&image.rootfs).expect("under the rootfs");
                out.push((format!("/{}", inside.display()), path));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_build_prints_one_line_per_image_with_the_pinned_references() {
    let printed: Vec<(&str, &str)> = built()
        .iter()
        .map(|image| (image.name.as_str(), image.reference.as_str()))
        .collect();
    let version = env!("CARGO_PKG_VERSION"); // the workspace version, which every crate uses
    let gateway = format!("{}:{version}", versions_env("GATEWAY_REPOSITORY"));
    let operator = format!("{}:{version}", versions_env("OPERATOR_REPOSITORY"));
    let pause = versions_env("PAUSE_IMAGE");
    let expected = [
        (IMAGES[0], gateway.as_str()),
        (IMAGES[1], operator.as_str()),
        (IMAGES[2], pause.as_str()),
    ];
    assert_eq!(printed, expected);
    for (_, reference) in printed {
        assert!(!reference.ends_with(":latest"), "{reference} is not pinned");
    }
}

#[test]
fn each_archive_is_an_oci_layout_whose_index_names_the_reference() {
    for image in built() {
        assert_eq!(image.layout, json!({"imageLayoutVersion": "1.0.0"}));
        let manifests = image.index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 1, "{}: {}", image.name, image.index);
        let annotations = &manifests[0]["annotations"];
        let tag = image.reference.rsplit_once(':').map(|(_, tag)| tag);
        assert_eq!(
            annotations["org.opencontainers.image.ref.name"].as_str(),
            tag
        );
        assert_eq!(
            annotations["io.containerd.image.name"].as_str(),
            Some(image.reference.as_str())
        );
        let platform = json!({"architecture": "amd64", "os": "linux"});
        assert_eq!(manifests[0]["platform"], platform, "{}", image.name);
        assert_eq!(image.config["architecture"], "amd64", "{}", image.name);
        assert_eq!(image.config["os"], "linux", "{}", image.name);
        for member in &image.members {
            assert!(
                member.contains(" 0/0 ") && member.contains(" 1970-01-01 00:00 "),
                "{}: every member is root's, dated 0: {member}",
                image.name
            );
        }
    }
}

#[test]
fn each_image_runs_as_its_dockerfile_final_stage_declares() {
    for image in built() {
        let stage = final_stage(&dockerfile(&image.name));
        let config = &image.config["config"];
        let name = &image.name;
        assert_eq!(config["Entrypoint"], json!(stage.entrypoint), "{name}");
        assert_eq!(config["User"], json!(stage.user), "{name}");
        let ports: BTreeSet<&str> = config["ExposedPorts"]
            .as_object()
            .map(|ports| ports.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let declared: BTreeSet<&str> = stage.ports.iter().map(String::as_str).collect();
        assert_eq!(ports, declared, "{name}: EXPOSE");
        let env: Vec<&str> = config["Env"]
            .as_array()
            .map(|env| env.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let path = env.iter().find_map(|e| e.strip_prefix("PATH="));
        if let Some(declared) = stage.env.get("PATH") {
            assert_eq!(path, Some(declared.as_str()), "{name}: ENV PATH");
        }
        assert!(
            path.is_some_and(|p| p.contains("/usr/sbin")),
            "{name}: {env:?}"
        );
        for (label, value) in &stage.labels {
            if value.contains('$') {
                assert!(!image.label(label).is_empty(), "{name}: {label} is empty");
            } else {
                assert_eq!(image.label(label), value, "{name}: LABEL {label}");
            }
        }
        for label in LABELS {
            assert!(!image.label(label).is_empty(), "{name} has no {label}");
        }
        let tag = image.reference.rsplit_once(':').map(|(_, tag)| tag);
        assert_eq!(Some(image.label(LABELS[1])), tag, "{name}: version label");
    }
}

#[test]
fn every_elf_file_in_each_image_finds_its_loader_and_libraries_in_that_image() {
    for image in built() {
        let mut checked = 0;
        for (path, host) in files(image) {
            let data = std::fs::read(&host).expect("reading a file of the image");
            let Some(linked) = linkage(&data).unwrap_or_else(|err| panic!("{path}: {err}")) else {
                continue;
            };
            checked += 1;
            if let Some(interpreter) = &linked.interpreter {
                assert!(
                    resolve(&image.rootfs, interpreter).is_some(),
                    "{}: {path} needs the loader {interpreter}, which the image lacks",
                    image.name
                );
            }
            for library in &linked.needed {
                let found = SEARCH_PATH
                    .iter()
                    .any(|dir| resolve(&image.rootfs, &format!("{dir}/{library}")).is_some());
                assert!(
                    found,
                    "{}: {path} needs {library}, which the image lacks",
                    image.name
                );
            }
        }
        assert!(checked > 0, "{}: no ELF file found", image.name);
        let entrypoint = image.config["config"]["Entrypoint"][0]
            .as_str()
            .unwrap_or_default();
        let program = resolve(&image.rootfs, entrypoint)
            .unwrap_or_else(|| panic!("{}: no entrypoint {entrypoint}", image.name));
        let mode = std::fs::metadata(program)
            .expect("stat")
            .permissions()
            .mode();
        assert!(
            mode & 0o111 == 0o111,
            "{}: {entrypoint} is not executable",
            image.name
        );
    }
}

#[test]
fn each_image_holds_only_its_programs_and_no_shell_or_package_manager() {
    for image in built() {
        let files = files(image);
        let found: Vec<&str> = files
            .iter()
            .map(|(path, _)| path.as_str())
            .filter(|path| {
                let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                dir.is_empty() || dir.ends_with("/bin") || dir.ends_with("/sbin")
            })
            .collect();
        assert_eq!(found, programs(&image.name), "{}: programs", image.name);
        for member in &image.members {
            // `mode owner size date time path[ -> target]`; no path here has a space.
            let path = member.split_whitespace().nth(5).unwrap_or_default();
            let base = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(path);
            assert!(
                !FORBIDDEN.contains(&base) && !path.contains("var/lib/dpkg"),
                "{}: has {path}",
                image.name
            );
        }
    }
}

#[test]
fn the_pause_binary_is_static() {
    let pause = image("pause");
    let data = std::fs::read(pause.rootfs.join("pause")).expect("reading /pause");
    let linked = linkage(&data)
        .expect("parsing /pause")
        .expect("/pause is ELF");
    assert_eq!(linked.interpreter, None, "/pause names a dynamic loader");
    assert!(linked.needed.is_empty(), "/pause needs {:?}", linked.needed);
}

#[test]
fn two_builds_make_byte_identical_archives() {
    for image in built() {
        let first = std::fs::read(&image.archive).expect("reading the first archive");
        let second = std::fs::read(&image.rebuilt).expect("reading the second archive");
        assert!(
            first == second,
            "{}: {} ({}) and {} ({}) differ",
            image.name,
            image.archive.display(),
            sha256_hex(&first),
            image.rebuilt.display(),
            sha256_hex(&second)
        );
    }
}

/// The one real start available without a node: the entrypoint in a chroot of the unpacked
/// layer, as the image's user, with only the image's environment. The gateway's `nft` also
/// loads the gateway's own NAT table, in a network namespace of its own.
#[test]
fn each_entrypoint_starts_in_a_chroot_of_its_image_as_its_user() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: chroot needs root");
        return;
    }
    for image in built() {
        let config = &image.config["config"];
        let flag = if image.name == "pause" {
            "-v"
        } else {
            "--version"
        };
        let mut command = Command::new("chroot");
        command
            .arg(format!(
                "--userspec={}",
                config["User"].as_str().unwrap_or_default()
            ))
            .arg(&image.rootfs)
            .arg(config["Entrypoint"][0].as_str().unwrap_or_default())
            .arg(flag)
            .env_clear();
        for pair in config["Env"].as_array().into_iter().flatten() {
            if let Some((name, value)) = pair.as_str().and_then(|p| p.split_once('=')) {
                command.env(name, value);
            }
        }
        let out =
            String::from_utf8_lossy(&run(&mut command).expect("the entrypoint runs")).into_owned();
        let version = image.label(LABELS[1]);
        assert!(
            out.contains(version),
            "{}: {flag} printed {out:?}",
            image.name
        );
    }

    let settings = NatSettings {
        id: "image".to_owned(),
        pool: "10.8.0.0/24".parse().expect("a CIDR"),
        tun_name: "sstp0".to_owned(),
        mtu: 1400,
        masquerade: true,
    };
    let script = ruleset("sstp_gateway_image", &settings).expect("the NAT ruleset");
    let mut nft = Command::new("unshare")
        .args(["--net", "--", "chroot"])
        .arg(&image("gateway").rootfs)
        .args(["/usr/sbin/nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting nft in the gateway image");
    std::io::Write::write_all(&mut nft.stdin.take().expect("stdin"), script.as_bytes())
        .expect("writing the ruleset");
    let out = nft.wait_with_output().expect("waiting for nft");
    assert!(
        out.status.success(),
        "nft in the gateway image refused the gateway's table: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
