//! Shared by the chart tests: running helm and kubectl of the test control plane, parsing what
//! they print, temporary chart copies, and one lock for the tests that install the CRDs.
//!
//! These tests are blocking on purpose: every step is a helm or kubectl process, exactly what a
//! platform team runs.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::Value;
use sstp_e2e::{ControlPlane, Error, TestNamespace};

/// Bounds a broken run; the control plane answers within a second or two.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Both CRDs, as the chart installs them.
pub const CRD_NAMES: [&str; 2] = ["sstpgateways.sstp.io", "sstpusers.sstp.io"];

/// The repository root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// charts/sstp-operator.
pub fn chart_dir() -> PathBuf {
    repo_dir().join("charts/sstp-operator")
}

/// The Kubernetes version of the test control plane (tests/k8s/versions.env). `helm template`
/// needs it: the chart requires >= 1.31 and this helm build reports v1.20 when offline.
pub fn kube_version() -> String {
    let env = std::fs::read_to_string(repo_dir().join("tests/k8s/versions.env"))
        .unwrap_or_else(|err| panic!("reading tests/k8s/versions.env: {err}"));
    env.lines()
        .find_map(|line| line.strip_prefix("K8S_VERSION="))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no K8S_VERSION= in tests/k8s/versions.env"))
}

/// Runs `command`, returning its output whatever the exit status.
pub fn output(command: &mut Command, what: &str) -> Result<Output, Error> {
    command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io {
            what: what.to_owned(),
            source,
        })
}

/// Runs `command` and returns its stdout, failing the test (with stderr) if it failed.
pub fn succeed(command: &mut Command, what: &str) -> Result<String, Error> {
    let out = output(command, what)?;
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `helm <args>` against the control plane.
pub fn helm(cp: &ControlPlane, args: &[&str]) -> Result<Output, Error> {
    output(
        cp.command("helm").args(args),
        &format!("helm {}", args.join(" ")),
    )
}

/// `helm <args>`, which must succeed; its stdout.
pub fn helm_ok(cp: &ControlPlane, args: &[&str]) -> Result<String, Error> {
    succeed(
        cp.command("helm").args(args),
        &format!("helm {}", args.join(" ")),
    )
}

/// `kubectl <args>`, which must succeed; its stdout.
pub fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> Result<String, Error> {
    succeed(
        cp.command("kubectl").args(args),
        &format!("kubectl {}", args.join(" ")),
    )
}

/// `kubectl apply --server-side` of `path` (a file or a directory), as the test's field manager.
pub fn apply_server_side(cp: &ControlPlane, path: &Path) -> Result<(), Error> {
    let path = path.display().to_string();
    kubectl_ok(
        cp,
        &[
            "apply",
            "--server-side",
            "--field-manager=sstp-e2e",
            "-f",
            &path,
        ],
    )?;
    Ok(())
}

/// [`apply_server_side`] of the objects in `yaml` (one or more documents).
pub fn apply_yaml(cp: &ControlPlane, yaml: &str) -> Result<(), Error> {
    let dir = TempDir::new("objects");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).map_err(|source| Error::Io {
        what: format!("writing {}", file.display()),
        source,
    })?;
    apply_server_side(cp, &file)
}

/// `kubectl get <args> -o json`, parsed; `None` when the object does not exist.
pub fn get_json(cp: &ControlPlane, args: &[&str]) -> Result<Option<Value>, Error> {
    let out = output(
        cp.command("kubectl")
            .arg("get")
            .args(args)
            .args(["-o", "json", "--ignore-not-found"]),
        "kubectl get",
    )?;
    assert!(
        out.status.success(),
        "kubectl get {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&text).unwrap_or_else(|err| {
        panic!("kubectl get {args:?} printed no JSON ({err}): {text}")
    })))
}

/// `helm template` of `chart` as release `release` in `namespace` with `--set` values; the
/// rendered documents.
pub fn render(
    cp: &ControlPlane,
    chart: &Path,
    release: &str,
    namespace: &str,
    sets: &[&str],
) -> Result<Vec<Value>, Error> {
    let mut args = vec![
        "template".to_owned(),
        release.to_owned(),
        chart.display().to_string(),
        "--namespace".to_owned(),
        namespace.to_owned(),
        "--kube-version".to_owned(),
        kube_version(),
    ];
    for set in sets {
        args.push("--set".to_owned());
        args.push((*set).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(documents(&helm_ok(cp, &args)?))
}

/// Every non-empty YAML document of `text`, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|err| panic!("invalid YAML: {err}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The one document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {found:?}"
    );
    found[0]
}

/// `(kind, namespace, name)` of every document, sorted.
pub fn inventory(docs: &[Value]) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut all: Vec<_> = docs
        .iter()
        .map(|d| {
            (
                text(&d["kind"]),
                text(&d["metadata"]["namespace"]),
                text(&d["metadata"]["name"]),
            )
        })
        .collect();
    all.sort();
    all
}

/// The string items of a JSON array (empty when it is not one).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl auth can-i <verb> <resource> --as=<service account>` plus `extra` (e.g. `-n ns`,
/// `--subresource=status`, `--all-namespaces`).
pub fn can_i(
    cp: &ControlPlane,
    service_account: &str,
    verb: &str,
    resource: &str,
    extra: &[&str],
) -> Result<bool, Error> {
    // A discovery cache of its own: a shared one may predate this test's CRDs, and kubectl sends
    // a resource it cannot find in discovery without its group (so the answer would be "no").
    let cache = TempDir::new("kubectl-cache");
    let out = output(
        cp.command("kubectl")
            .args(["auth", "can-i", verb, resource])
            .arg(format!("--cache-dir={}", cache.path().display()))
            .arg(format!("--as={service_account}"))
            .args(extra),
        "kubectl auth can-i",
    )?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => panic!(
            "kubectl auth can-i {verb} {resource} {extra:?}: {answer:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Polls `check` until it returns `Some` (its value) or [`TIMEOUT`] passes.
pub fn wait_for<T>(
    what: &str,
    check: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    wait_until(what, TIMEOUT, check)
}

/// Polls `check` every 250 ms until it returns `Some` (its value), for at most `bound`.
pub fn wait_until<T>(
    what: &str,
    bound: Duration,
    check: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    sstp_e2e::poll_until(bound, Duration::from_millis(250), check)?.ok_or_else(|| Error::Timeout {
        what: what.to_owned(),
        after: bound,
    })
}

/// A namespace for this test (deleted when the guard drops).
pub fn namespace(cp: &ControlPlane, label: &str) -> Result<TestNamespace, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "starting a runtime".to_owned(),
            source,
        })?;
    runtime.block_on(async {
        let client = cp.client().await?;
        TestNamespace::create(cp, &client, label).await
    })
}

/// Serializes the tests that install the CRDs with a release: the CRDs are cluster-wide and a
/// Helm release can only adopt what no other release owns. A panicking holder does not poison it
/// for the others.
pub fn crd_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes the CRDs (a release's uninstall keeps them on purpose) and waits until they are gone,
/// so the next test's release can own them.
pub fn delete_crds(cp: &ControlPlane) -> Result<(), Error> {
    let mut args = vec!["delete", "crd", "--ignore-not-found", "--wait=false"];
    args.extend(CRD_NAMES);
    kubectl_ok(cp, &args)?;
    // The apiserver deletes every instance first. Once, in a full `tests/run`, this took over
    // 60 s; the bound is wider and a timeout says what the CRD was still waiting for.
    let mut waiting = String::new();
    wait_until("the CRDs to be deleted", CRD_DELETE_BOUND, || {
        for name in CRD_NAMES {
            if let Some(crd) = get_json(cp, &["crd", name])? {
                waiting = format!("{name}: {}", crd["status"]["conditions"]);
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .map_err(|error| {
        eprintln!("delete_crds: {error}; still there: {waiting}");
        error
    })
}

/// How long deleting the CRDs (and every instance with them) may take.
const CRD_DELETE_BOUND: Duration = Duration::from_secs(180);

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes `sstp-chart-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sstp-chart-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|err| panic!("creating {}: {err}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|err| panic!("reading {}: {err}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|err| panic!("reading {}: {err}", from.display()));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|err| panic!("copying {}: {err}", entry.path().display()));
        }
    }
}

/// Stand-ins for the cert-manager `Certificate` and prometheus-operator `ServiceMonitor` CRDs (any
/// content accepted), so that RBAC questions about them resolve (kubectl needs discovery to know a
/// resource's group) and the operator can apply them. Idempotent; never deleted.
pub fn foreign_crds(cp: &ControlPlane) -> Result<(), Error> {
    let stub = |group: &str, kind: &str, plural: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.{group}\n\
             spec:\n  group: {group}\n  scope: Namespaced\n  names:\n    kind: {kind}\n    plural: {plural}\n    singular: {singular}\n\
             \x20 versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n\
             \x20         type: object\n          x-kubernetes-preserve-unknown-fields: true\n",
            singular = kind.to_lowercase()
        )
    };
    apply_yaml(
        cp,
        &[
            stub("cert-manager.io", "Certificate", "certificates"),
            stub("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
        ]
        .join("---\n"),
    )?;
    for name in [
        "certificates.cert-manager.io",
        "servicemonitors.monitoring.coreos.com",
    ] {
        wait_established(cp, name)?;
    }
    Ok(())
}

/// True when `object` has condition `kind` with status True.
pub fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// Waits until the CRD `name` is established (served).
pub fn wait_established(cp: &ControlPlane, name: &str) -> Result<(), Error> {
    wait_for(&format!("CRD {name} established"), || {
        Ok(get_json(cp, &["crd", name])?
            .filter(|crd| condition_true(crd, "Established"))
            .map(|_| ()))
    })
}

/// Builds the `sstp-operator` binary (debug profile, once per test process; a no-op when it is
/// up to date) and returns its path.
pub fn operator_binary() -> Result<PathBuf, Error> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_operator().map_err(|err| err.to_string()))
        .clone()
        .map_err(Error::Unavailable)
}

fn build_operator() -> Result<PathBuf, Error> {
    sstp_e2e::workspace_bins::build("sstp-operator", &["--bin", "sstp-operator"])
        .map(|dir| dir.join("sstp-operator"))
}
