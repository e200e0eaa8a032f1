//! The built `sstp-operator` binary against the real control plane: configured only through its
//! environment, it takes the Lease, serves its admin endpoints, reconciles, and on SIGTERM
//! releases the Lease and exits 0. The CRDs are applied from the committed `crds/` with kubectl.
//! Run as a developer runs it locally, with nothing but a kubeconfig, it takes the Lease in the
//! kubeconfig's namespace under the host name and deploys the chart's default gateway image.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease, core::v1::Secret};
use kube::{Api, api::PostParams};
use sstp_api::SstpGateway;
use sstp_e2e::{ControlPlane, Error, TestNamespace, eventually, reaper::Reaper};

const BIN: &str = env!("CARGO_BIN_EXE_sstp-operator");
const TIMEOUT: Duration = Duration::from_secs(60);

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Status line and body of a plain HTTP GET.
fn http_get(address: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// Applies the committed CRDs and waits until they are served.
fn apply_crds(control_plane: &ControlPlane) {
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let applied = control_plane
        .command("kubectl")
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&crds)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let established = control_plane
        .command("kubectl")
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/sstpgateways.sstp.io",
            "crd/sstpusers.sstp.io",
        ])
        .output()
        .unwrap();
    assert!(
        established.status.success(),
        "{}",
        String::from_utf8_lossy(&established.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_leads_serves_its_admin_endpoints_reconciles_and_stops_cleanly_on_sigterm()
-> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    apply_crds(control_plane);
    let namespace = TestNamespace::create(control_plane, &client, "operator-binary").await?;
    let ns = namespace.name();
    let admin = free_port();

    let child = Command::new(BIN)
        .env("KUBECONFIG", control_plane.kubeconfig())
        .env(
            "SSTP_OPERATOR_GATEWAY_IMAGE",
            "example.invalid/sstp-gateway:test",
        )
        .env("SSTP_OPERATOR_ADMIN_ADDRESS", admin.to_string())
        .env("SSTP_OPERATOR_LEASE_NAMESPACE", ns)
        .env("SSTP_OPERATOR_IDENTITY", "binary-1")
        .env("SSTP_OPERATOR_WATCH_NAMESPACE", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut reaper = Reaper(Some(child));

    eventually("/readyz and the lease", TIMEOUT, || async move {
        let ready = http_get(admin, "/readyz").is_some_and(|(status, _)| status.contains("200"));
        let leading = http_get(admin, "/metrics")
            .is_some_and(|(_, body)| body.contains("sstp_operator_leader 1"));
        Ok((ready && leading).then_some(()))
    })
    .await?;
    assert!(http_get(admin, "/healthz").unwrap().0.contains("200"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let holder = leases
        .get("sstp-operator")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("binary-1"));

    let gateway: SstpGateway = serde_json::from_value(serde_json::json!({
        "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
        "metadata": {"name": "gw"},
        "spec": {"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24"}
    }))
    .unwrap();
    Api::<SstpGateway>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &gateway)
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    eventually("gw-users from the binary", TIMEOUT, || {
        let secrets = secrets.clone();
        async move { Ok(secrets.get_opt("gw-users").await?) }
    })
    .await?;
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("sstp_operator_reconciles_total{controller=\"gateway\"}"),
        "{metrics}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = reaper.0.take().unwrap();
    let status = eventually("the binary to exit after SIGTERM", TIMEOUT, || {
        let exited = child.try_wait().unwrap();
        async move { Ok(exited) }
    })
    .await?;
    assert!(status.success(), "exit status {status}");
    let holder = leases
        .get("sstp-operator")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder, None, "the lease was not released");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_run_needs_only_a_kubeconfig() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    apply_crds(control_plane);
    let namespace = TestNamespace::create(control_plane, &client, "operator-local").await?;
    let ns = namespace.name();
    // The developer's kubeconfig, its current context set to this test's namespace.
    let dir = std::env::temp_dir().join(format!("sstp-operator-local-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(control_plane.kubeconfig(), &kubeconfig).unwrap();
    let set = control_plane
        .command("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["config", "set-context", "--current", "--namespace", ns])
        .output()
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let admin = free_port();
    let child = Command::new(BIN)
        .env("KUBECONFIG", &kubeconfig)
        // Not required; set so that this test's operator stays out of the other test's
        // namespace and port.
        .env("SSTP_OPERATOR_ADMIN_ADDRESS", admin.to_string())
        .env("SSTP_OPERATOR_WATCH_NAMESPACE", ns)
        .env_remove("SSTP_OPERATOR_GATEWAY_IMAGE")
        .env_remove("SSTP_OPERATOR_LEASE_NAMESPACE")
        .env_remove("SSTP_OPERATOR_IDENTITY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _reaper = Reaper(Some(child));

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let holder = eventually("the Lease in the kubeconfig's namespace", TIMEOUT, || {
        let leases = leases.clone();
        async move {
            Ok(leases
                .get_opt("sstp-operator")
                .await?
                .and_then(|lease| lease.spec?.holder_identity))
        }
    })
    .await?;
    assert_eq!(holder, host, "the identity is the host name");

    let gateway: SstpGateway = serde_json::from_value(serde_json::json!({
        "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
        "metadata": {"name": "local"},
        "spec": {"hostnames": ["vpn.example.com"], "addressPool": "10.9.0.0/24"}
    }))
    .unwrap();
    Api::<SstpGateway>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &gateway)
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = eventually("the gateway's Deployment", TIMEOUT, || {
        let deployments = deployments.clone();
        async move { Ok(deployments.get_opt("local").await?) }
    })
    .await?;
    let image = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.containers.into_iter().next())
        .and_then(|container| container.image);
    assert_eq!(
        image.as_deref(),
        Some(concat!(
            "ghcr.io/sstp-operator/sstp-gateway:",
            env!("CARGO_PKG_VERSION")
        )),
        "the chart's default gateway image"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
