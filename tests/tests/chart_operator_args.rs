//! The operator binary accepts exactly the arguments and environment the chart gives it, and the
//! chart's RBAC is enough for it to do its whole job.
//!
//! The chart is installed; the Deployment the API server stored is read back; its args and env
//! (downward-API fields resolved as the kubelet would) start the real `sstp-operator` binary,
//! authenticated as the chart's ServiceAccount by a token. It must take the Lease, report ready,
//! and reconcile gateways (built-in CA and cert-manager) and users into all their children with
//! nothing forbidden, then stop cleanly on SIGTERM. Only two things differ from a pod: the admin
//! address is a free loopback port, and a kubeconfig stands in for the in-cluster config.

mod chart_support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chart_support::{
    TIMEOUT, TempDir, chart_dir, condition_true, crd_lock, delete_crds, foreign_crds, get_json,
    helm_ok, kubectl_ok, namespace, operator_binary, strings, succeed, wait_established, wait_for,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sstp_e2e::{ControlPlane, Error, gateway_process};

const RELEASE: &str = "run";
const FULLNAME: &str = "run-sstp-operator";
/// The pod name the kubelet would give a replica (the Lease identity comes from it).
const POD_NAME: &str = "run-sstp-operator-7d9c-x2b4q";
/// Read by the tracing subscriber, not by clap, so `--help` does not list it.
const LOG_ENV: &str = "SSTP_OPERATOR_LOG";

/// The env of `container` with `fieldRef`s resolved for a pod in `namespace`.
fn resolve_env(container: &Value, namespace: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().cloned().unwrap_or_default() {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => namespace.to_owned(),
                Some("metadata.name") => POD_NAME.to_owned(),
                _ => panic!("the chart sets {name} from something this test cannot resolve: {var}"),
            }
        };
        assert!(
            env.insert(name.clone(), value).is_none(),
            "{name} set twice"
        );
    }
    env
}

/// A kubeconfig for the control plane's API server that authenticates with `token`.
fn token_kubeconfig(
    cp: &ControlPlane,
    token: &str,
    dir: &Path,
) -> Result<std::path::PathBuf, Error> {
    let admin: Value = serde_json::from_str(&kubectl_ok(
        cp,
        &["config", "view", "--raw", "--minify", "-o", "json"],
    )?)
    .unwrap_or_default();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap_or_else(|err| panic!("{err}"));
    Ok(path)
}

/// Status code of `GET path` on `port` (HTTP/1.0, loopback).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The operator binary started like a replica of the installed chart, as its ServiceAccount.
struct Operator {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Operator {
    /// Reads release `RELEASE`'s Deployment in `home`, checks that every flag and variable is one
    /// the binary declares, and starts the binary with them.
    fn start(cp: &ControlPlane, home: &str) -> Result<Self, Error> {
        let binary = operator_binary()?;
        let deployment = get_json(cp, &["deployment", FULLNAME, "-n", home])?
            .unwrap_or_else(|| panic!("no Deployment {FULLNAME}"));
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().cloned().unwrap_or_default();
        assert_eq!(containers.len(), 1);
        let container = &containers[0];
        assert!(
            container.get("command").is_none(),
            "the image's entrypoint is the binary"
        );
        let args = strings(&container["args"]);
        let env = resolve_env(container, home);

        let help = succeed(Command::new(&binary).arg("--help"), "sstp-operator --help")?;
        for arg in &args {
            let flag = arg.split('=').next().unwrap_or_default();
            assert!(
                flag.starts_with("--") && help.contains(flag),
                "{flag} is not a flag of sstp-operator:\n{help}"
            );
        }
        for name in env.keys() {
            assert!(
                name == LOG_ENV || help.contains(&format!("[env: {name}=")),
                "{name} is not read by sstp-operator:\n{help}"
            );
        }

        // The same args and env, with the admin server on a free loopback port.
        let port = gateway_process::free_port()?;
        let admin = |a: &String| a.starts_with("--admin-address=");
        assert_eq!(args.iter().filter(|a| admin(a)).count(), 1, "{args:?}");
        let args: Vec<String> = args
            .into_iter()
            .map(|a| {
                if admin(&a) {
                    format!("--admin-address=127.0.0.1:{port}")
                } else {
                    a
                }
            })
            .collect();
        let account = pod["serviceAccountName"].as_str().unwrap_or_default();
        let token = kubectl_ok(
            cp,
            &["create", "token", account, "-n", home, "--duration=1h"],
        )?;
        let dir = TempDir::new("operator-run");
        let kubeconfig = token_kubeconfig(cp, token.trim(), dir.path())?;
        let log = dir.path().join("operator.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|err| panic!("{err}"));
        let err = out.try_clone().unwrap_or_else(|err| panic!("{err}"));
        let child = Command::new(&binary)
            .args(&args)
            .env_clear()
            .envs(&env)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Io {
                what: "starting sstp-operator".to_owned(),
                source,
            })?;
        Ok(Self {
            child,
            port,
            log,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test at once on an exit or an RBAC refusal in the log.
    fn healthy(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("sstp-operator exited ({status}):\n{}", self.log());
        }
        let log = self.log();
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the chart's RBAC refused something:\n{log}"
        );
    }

    /// Waits until it holds the Lease in `home` and `/readyz` answers 200.
    fn wait_leading(&mut self, cp: &ControlPlane, home: &str) -> Result<(), Error> {
        let lease = wait_for("the operator to take the Lease", || {
            self.healthy();
            Ok(get_json(cp, &["lease", FULLNAME, "-n", home])?
                .filter(|lease| lease["spec"]["holderIdentity"] == POD_NAME))
        })?;
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
        let port = self.port;
        wait_for("/readyz", || {
            Ok((http_status(port, "/readyz") == Some(200)).then_some(()))
        })
    }

    /// SIGTERM; it must exit 0.
    fn stop(mut self) -> Result<(), Error> {
        gateway_process::signal(self.child.id(), Signal::SIGTERM)?;
        let began = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|source| Error::Io {
                what: "waiting for sstp-operator".to_owned(),
                source,
            })? {
                break status;
            }
            assert!(
                began.elapsed() < TIMEOUT,
                "sstp-operator ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            status.success(),
            "sstp-operator exited with {status}:\n{}",
            self.log()
        );
        Ok(())
    }
}

impl Drop for Operator {
    /// Kills it if the test ended early.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Applies example `files` into `namespace`.
fn apply_examples(cp: &ControlPlane, namespace: &str, files: &[&str]) -> Result<(), Error> {
    for file in files {
        let path = chart_dir()
            .join("examples")
            .join(file)
            .display()
            .to_string();
        kubectl_ok(cp, &["apply", "-n", namespace, "-f", &path])?;
    }
    Ok(())
}

/// Waits until `kind`/`name` exists in `namespace`, failing early if the operator is unhealthy.
fn wait_exists(
    cp: &ControlPlane,
    operator: &mut Operator,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Value, Error> {
    wait_for(&format!("{kind} {name}"), || {
        operator.healthy();
        get_json(cp, &[kind, name, "-n", namespace])
    })
}

/// Waits until `kind`/`name` has condition `condition` True.
fn wait_condition(
    cp: &ControlPlane,
    operator: &mut Operator,
    namespace: &str,
    kind: &str,
    name: &str,
    condition: &str,
) -> Result<Value, Error> {
    let found = wait_for(&format!("{kind} {name} {condition}"), || {
        operator.healthy();
        Ok(get_json(cp, &[kind, name, "-n", namespace])?
            .filter(|object| condition_true(object, condition)))
    });
    if found.is_err() {
        // The log says why (it goes with the temporary directory otherwise).
        eprintln!("sstp-operator log:\n{}", operator.log());
    }
    found
}

/// Installs the chart (with the CRDs) as `RELEASE` in `home` with `sets`.
fn install(cp: &ControlPlane, home: &str, sets: &[&str]) -> Result<(), Error> {
    let chart = chart_dir().display().to_string();
    let mut args = vec!["install", RELEASE, chart.as_str(), "--namespace", home];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm_ok(cp, &args)?;
    for name in chart_support::CRD_NAMES {
        wait_established(cp, name)?;
    }
    Ok(())
}

#[test]
fn the_operator_runs_with_exactly_the_chart_arguments_and_environment_under_the_chart_rbac()
-> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let _crds = crd_lock();
    delete_crds(cp)?;
    foreign_crds(cp)?;
    let home = namespace(cp, "chart-run")?;
    let gateways = namespace(cp, "chart-run-gateways")?;
    install(cp, home.name(), &[])?;
    let mut operator = Operator::start(cp, home.name())?;
    operator.wait_leading(cp, home.name())?;

    // Its whole job in another namespace: certificates (built-in CA and cert-manager), users,
    // every child, events.
    let ns = gateways.name();
    apply_examples(
        cp,
        ns,
        &[
            "gateway-builtin-ca.yaml",
            "gateway-cert-manager.yaml",
            "user-generated-password.yaml",
            "user-provided-password.yaml",
        ],
    )?;
    let office = wait_condition(
        cp,
        &mut operator,
        ns,
        "sstpgateway",
        "office",
        "CertificateReady",
    )?;
    assert!(
        office["status"]["certificate"]["sha256Fingerprint"].is_string(),
        "{office}"
    );
    for (kind, name) in [
        ("deployment", "office"),
        ("service", "office"),
        ("serviceaccount", "office"),
        ("role", "office"),
        ("rolebinding", "office"),
        ("poddisruptionbudget", "office"),
        ("configmap", "office-config"),
        ("secret", "office-users"),
        ("secret", "office-tls"),
        ("secret", "office-ca"),
        ("secret", "alice-credentials"),
        ("certificates.cert-manager.io", "branch"),
        ("servicemonitors.monitoring.coreos.com", "branch"),
    ] {
        wait_exists(cp, &mut operator, ns, kind, name)?;
    }
    for user in ["alice", "bob"] {
        wait_condition(cp, &mut operator, ns, "sstpuser", user, "Ready")?;
    }
    let events = get_json(cp, &["events.events.k8s.io", "-n", ns])?.unwrap_or_default();
    let ours = events["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["reportingController"] == "sstp-operator")
                .count()
        })
        .unwrap_or_default();
    assert!(ours > 0, "no events from sstp-operator: {events}");
    operator.healthy();
    operator.stop()?;

    helm_ok(cp, &["uninstall", RELEASE, "--namespace", home.name()])?;
    delete_crds(cp)
}

#[test]
fn in_namespaced_mode_the_operator_works_in_both_watched_namespaces_under_their_roles_alone()
-> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let _crds = crd_lock();
    delete_crds(cp)?;
    let home = namespace(cp, "chart-run-home")?;
    let first = namespace(cp, "chart-run-watched-a")?;
    let second = namespace(cp, "chart-run-watched-b")?;
    let other = namespace(cp, "chart-run-other")?;
    install(
        cp,
        home.name(),
        &[&format!(
            "watchNamespaces={{{},{}}}",
            first.name(),
            second.name()
        )],
    )?;
    let mut operator = Operator::start(cp, home.name())?;
    operator.wait_leading(cp, home.name())?;

    let files = ["gateway-builtin-ca.yaml", "user-generated-password.yaml"];
    apply_examples(cp, other.name(), &files)?;
    apply_examples(cp, first.name(), &files)?;
    apply_examples(cp, second.name(), &files)?;
    for ns in [first.name(), second.name()] {
        wait_condition(
            cp,
            &mut operator,
            ns,
            "sstpgateway",
            "office",
            "CertificateReady",
        )?;
        for (kind, name) in [
            ("deployment", "office"),
            ("role", "office"),
            ("rolebinding", "office"),
            ("secret", "office-users"),
            ("secret", "alice-credentials"),
        ] {
            wait_exists(cp, &mut operator, ns, kind, name)?;
        }
        wait_condition(cp, &mut operator, ns, "sstpuser", "alice", "Ready")?;
        // The user reached the gateway of its own namespace (its users Secret lists her).
        let office = wait_for(&format!("office in {ns} to count alice"), || {
            operator.healthy();
            Ok(get_json(cp, &["sstpgateway", "office", "-n", ns])?
                .filter(|gw| gw["status"]["users"] == 1))
        })?;
        assert_eq!(office["metadata"]["namespace"], ns, "{office}");
    }
    // The namespace it does not watch (applied first) stays untouched.
    let untouched =
        get_json(cp, &["sstpgateway", "office", "-n", other.name()])?.unwrap_or_default();
    assert!(untouched.get("status").is_none(), "{untouched}");
    assert!(get_json(cp, &["deployment", "office", "-n", other.name()])?.is_none());
    assert!(get_json(cp, &["secret", "alice-credentials", "-n", other.name()])?.is_none());
    operator.healthy();
    operator.stop()?;

    helm_ok(cp, &["uninstall", RELEASE, "--namespace", home.name()])?;
    delete_crds(cp)
}
