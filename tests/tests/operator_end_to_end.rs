//! End to end: the operator renders a gateway; the real `sstp-gateway` binary is started with
//! the arguments, environment and files of that Deployment (volumes materialised from the
//! ConfigMap and Secrets in the apiserver, credentials of the gateway's own ServiceAccount), in a
//! network namespace of its own; the project's SSTP client logs in with a user's credentials, and
//! `kubectl patch` disabling that user ends the session within two seconds.
//!
//! Needs root (network namespace, veth, TUN) and the gateway binary, which the test builds
//! from this workspace (`SSTP_GATEWAY_BIN` overrides its path). The gateway reaches the apiserver,
//! which listens on the host's loopback, through a TCP relay this test runs on the veth address.
//! The Deployment's mounts under /etc/sstp-gateway are bind-mounted inside the sandbox's own
//! mount namespace (`ip netns exec` makes one), so the host sees only an empty mount point.
#![allow(clippy::unwrap_used)]

mod operator_support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{ConfigMap, Secret, ServiceAccount},
};
use kube::{Api, Client, api::PostParams};
use sstp_api::{SstpGateway, SstpUser};
use sstp_e2e::{ControlPlane, Error, TestNamespace, eventually};
use sstp_gateway::client::{Client as SstpClient, ClientOptions, tls_config_with_ca};

use operator_support::{Operator, TIMEOUT, create, password_secret};

/// The session must end within this long after `kubectl patch` returns (a bounded wait).
const DISABLE_DEADLINE: Duration = Duration::from_secs(2);
/// Where the Deployment mounts its volumes.
const ETC: &str = "/etc/sstp-gateway";

/// A network namespace with a veth pair to the host, and the gateway process in it; both go
/// away on drop.
struct Sandbox {
    name: String,
    host: Ipv4Addr,
    guest: Ipv4Addr,
    gateway: Option<Child>,
}

impl Sandbox {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // Unique per test in this process (the counter) and among processes (the pid).
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2;
        let id = std::process::id();
        let subnet = u8::try_from((id % 120) * 2 + n).unwrap();
        let name = format!("sstpe2e-{id}-{n}");
        let (host_if, guest_if) = (
            format!("se2h{}{n}", id % 100_000),
            format!("se2g{}{n}", id % 100_000),
        );
        let sandbox = Self {
            name: name.clone(),
            host: Ipv4Addr::new(10, 213, subnet, 1),
            guest: Ipv4Addr::new(10, 213, subnet, 2),
            gateway: None,
        };
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &guest_if,
        ]);
        run(&["ip", "link", "set", &guest_if, "netns", &name]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", sandbox.host),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let inside = |argv: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &name];
            full.extend_from_slice(argv);
            run(&full);
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", sandbox.guest),
            "dev",
            &guest_if,
        ]);
        inside(&["ip", "link", "set", &guest_if, "up"]);
        sandbox
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(child) = &mut self.gateway {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SSTP_GATEWAY_BIN") {
        return PathBuf::from(path);
    }
    // Builds (or reuses) this workspace's gateway binary, once per test binary.
    sstp_e2e::gateway_process::binaries()
        .expect("building the sstp-gateway binary")
        .gateway
}

/// Relays TCP from `listen` to `target` until the test ends.
async fn relay(listen: SocketAddr, target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let bound = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    bound
}

/// Writes every key of the ConfigMaps and Secrets the Deployment mounts under [`ETC`] into the
/// same relative place under `root` (what the kubelet would do).
async fn materialise(
    client: &Client,
    ns: &str,
    deployment: &Deployment,
    root: &Path,
) -> Result<(), Error> {
    let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
    let volumes = pod.volumes.unwrap_or_default();
    for mount in pod.containers[0].volume_mounts.clone().unwrap_or_default() {
        let Some(relative) = mount.mount_path.strip_prefix(ETC) else {
            continue;
        };
        let dir = root.join(relative.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
        let files: Vec<(String, Vec<u8>)> = if let Some(source) = &volume.config_map {
            let map = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&source.name)
                .await?;
            map.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect()
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap();
            let secret = Api::<Secret>::namespaced(client.clone(), ns)
                .get(&name)
                .await?;
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        } else {
            continue;
        };
        for (key, value) in files {
            std::fs::write(dir.join(key), value).unwrap();
        }
    }
    Ok(())
}

/// A kubeconfig for the gateway's ServiceAccount, through the relay.
async fn gateway_kubeconfig(
    control_plane: &ControlPlane,
    client: &Client,
    ns: &str,
    relay: SocketAddr,
    path: &Path,
) -> Result<(), Error> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request("gw", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|status| status.token)
        .expect("the TokenRequest returned a token");
    let mut kubeconfig = kube::config::Kubeconfig::read_from(control_plane.kubeconfig()).unwrap();
    for named in &mut kubeconfig.clusters {
        if let Some(cluster) = named.cluster.as_mut() {
            cluster.server = Some(format!("https://{relay}"));
            // The apiserver's certificate names localhost, not the relay address.
            cluster.tls_server_name = Some("localhost".to_owned());
            // certificate-authority stays a path: the sandbox shares the host filesystem.
        }
    }
    for named in &mut kubeconfig.auth_infos {
        named.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..Default::default()
        });
    }
    std::fs::write(path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    Ok(())
}

/// A gateway the operator rendered, running as the real binary in its sandbox, with user
/// `alice` (password [`PASSWORD`]) admitted.
struct Rendered {
    client: Client,
    namespace: TestNamespace,
    operator: Operator,
    sandbox: Sandbox,
    work: PathBuf,
    ca: Vec<u8>,
}

const PASSWORD: &str = "alice end to end";

impl Rendered {
    async fn start(label: &str, tls: serde_json::Value) -> Result<Self, Error> {
        let binary = gateway_binary();
        assert!(
            binary.exists(),
            "build the gateway first: cargo build -p sstp-gateway ({})",
            binary.display()
        );
        let control_plane = ControlPlane::shared()?;
        let client = control_plane.client().await?;
        operator_support::install_crds(&client).await?;
        let namespace = TestNamespace::create(control_plane, &client, label).await?;
        let ns = namespace.name().to_owned();
        let operator = Operator::start(&client, &ns, "op-a");
        password_secret(&client, &ns, "alice-password", PASSWORD).await?;
        create::<SstpGateway>(&client, &ns, serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway", "metadata": {"name": "gw"},
            "spec": {"hostnames": ["vpn.example.com"], "addressPool": "10.77.0.0/24", "replicas": 1, "nat": false, "tls": tls}
        }))
        .await?;
        create::<SstpUser>(
            &client,
            &ns,
            serde_json::json!({
                "apiVersion": "sstp.io/v1alpha1", "kind": "SstpUser", "metadata": {"name": "alice"},
                "spec": {"passwordSecretRef": {"name": "alice-password"}}
            }),
        )
        .await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let deployment = eventually("the rendered Deployment and Secrets", TIMEOUT, || {
            let deployments = deployments.clone();
            let secrets = secrets.clone();
            async move {
                let ready = secrets.get_opt("gw-tls").await?.is_some()
                    && secrets.get_opt("gw-users").await?.is_some();
                Ok(if ready {
                    deployments.get_opt("gw").await?
                } else {
                    None
                })
            }
        })
        .await?;

        let work = std::env::temp_dir().join(format!("sstp-e2e-gw-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let etc = work.join("etc");
        materialise(&client, &ns, &deployment, &etc).await?;
        let mut sandbox = Sandbox::new();
        let apiserver: SocketAddr = {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(control_plane.kubeconfig()).unwrap();
            let server = kubeconfig.clusters[0]
                .cluster
                .as_ref()
                .unwrap()
                .server
                .clone()
                .unwrap();
            server.trim_start_matches("https://").parse().unwrap()
        };
        let relay = relay(SocketAddr::from((sandbox.host, 0)), apiserver).await;
        let kubeconfig = work.join("kubeconfig");
        gateway_kubeconfig(control_plane, &client, &ns, relay, &kubeconfig).await?;

        let container = deployment
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .clone();
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &sandbox.name,
                "sh",
                "-c",
                r#"mkdir -p "$1" && mount --bind "$2" "$1" && shift 2 && exec "$@""#,
                "sh",
                ETC,
            ])
            .arg(&etc)
            .arg(&binary)
            .args(container.args.clone().unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null());
        for env in container.env.clone().unwrap_or_default() {
            let field = env
                .value_from
                .and_then(|from| from.field_ref)
                .map(|f| f.field_path);
            let value = match field.as_deref() {
                Some("metadata.namespace") => ns.clone(),
                Some("metadata.name") => "gw-0".to_owned(),
                _ => env.value.unwrap_or_default(),
            };
            command.env(env.name, value);
        }
        sandbox.gateway = Some(command.spawn().unwrap());

        let guest = sandbox.guest;
        eventually("the gateway's /readyz", TIMEOUT, || async move {
            Ok(http_status(SocketAddr::from((guest, 9090)), "/readyz")
                .await
                .filter(|s| *s == 200)
                .map(|_| ()))
        })
        .await?;
        let ca = secrets.get("gw-tls").await?.data.unwrap()["ca.crt"]
            .0
            .clone();
        Ok(Self {
            client,
            namespace,
            operator,
            sandbox,
            work,
            ca,
        })
    }

    fn ns(&self) -> &str {
        self.namespace.name()
    }

    /// Logs `alice` in with the project's client and waits for the tunnel.
    async fn connect(&self) -> SstpClient {
        let ppp = sstp_ppp::ClientConfig {
            username: "alice".to_owned(),
            password: PASSWORD.to_owned(),
            auth: sstp_ppp::AuthPolicy::default(),
            request_dns: false,
            ipv6: false,
            timers: sstp_ppp::Timers::default(),
            link: sstp_ppp::LinkProfile::Minimal,
        };
        let options = ClientOptions::new(
            SocketAddr::from((self.sandbox.guest, 443)),
            rustls::pki_types::ServerName::try_from("vpn.example.com").unwrap(),
            tls_config_with_ca(&self.ca).unwrap(),
            sstp_proto::ClientConfig::new(ppp, "vpn.example.com"),
        );
        let mut session = SstpClient::connect(options).await.unwrap();
        let address = tokio::time::timeout(TIMEOUT, session.wait_up())
            .await
            .expect("tunnel up in time")
            .unwrap();
        assert!(address.octets()[..3] == [10, 77, 0], "{address}");
        session
    }

    async fn stop(self) {
        let Self {
            operator,
            sandbox,
            work,
            namespace,
            ..
        } = self;
        drop(sandbox);
        let _ = std::fs::remove_dir_all(&work);
        operator.stop().await;
        drop(namespace);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_deployment_serves_a_user_and_kubectl_disabling_them_ends_the_session()
-> Result<(), Error> {
    let rendered = Rendered::start("end-to-end", serde_json::json!({"selfManaged": {}})).await?;
    let mut session = rendered.connect().await;

    let patched = ControlPlane::shared()?
        .command("kubectl")
        .args([
            "-n",
            rendered.ns(),
            "patch",
            "sstpuser",
            "alice",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ])
        .output()
        .unwrap();
    assert!(
        patched.status.success(),
        "{}",
        String::from_utf8_lossy(&patched.stderr)
    );
    let reason = tokio::time::timeout(DISABLE_DEADLINE, session.closed()).await;
    assert!(
        reason.is_ok(),
        "the session outlived the disabled user by more than {DISABLE_DEADLINE:?}"
    );
    rendered.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_to_new_connections_while_the_established_session_stays()
-> Result<(), Error> {
    let rendered = Rendered::start(
        "renewal-e2e",
        serde_json::json!({"selfManaged": {"certificateLifetimeSeconds": 30}}),
    )
    .await?;
    let mut session = rendered.connect().await;
    let gateways: Api<SstpGateway> = Api::namespaced(rendered.client.clone(), rendered.ns());
    let fingerprint = |gw: SstpGateway| {
        gw.status
            .and_then(|s| s.certificate)
            .map(|c| c.sha256_fingerprint)
    };
    let first = fingerprint(gateways.get("gw").await?).expect("a certificate in status");

    // Play kubelet: when the operator renews, the mounted Secret files change (atomically, as
    // the kubelet's symlink swap does); the gateway picks them up by itself.
    let secrets: Api<Secret> = Api::namespaced(rendered.client.clone(), rendered.ns());
    let tls_dir = rendered.work.join("etc/tls");
    let renewed = eventually("the operator to renew the certificate", TIMEOUT, || {
        let gateways = gateways.clone();
        let first = first.clone();
        async move { Ok(fingerprint(gateways.get("gw").await?).filter(|now| *now != first)) }
    })
    .await?;
    for (key, value) in secrets.get("gw-tls").await?.data.unwrap() {
        let staged = tls_dir.join(format!(".{key}.new"));
        std::fs::write(&staged, value.0).unwrap();
        std::fs::rename(&staged, tls_dir.join(&key)).unwrap();
    }
    let guest = rendered.sandbox.guest;
    let ca = rendered.ca.clone();
    eventually(
        "new connections to get the renewed certificate",
        TIMEOUT,
        || {
            let ca = ca.clone();
            let renewed = renewed.clone();
            async move {
                Ok(
                    (served_fingerprint(SocketAddr::from((guest, 443)), &ca).await
                        == Some(renewed))
                    .then_some(()),
                )
            }
        },
    )
    .await?;
    let still_open = tokio::time::timeout(Duration::from_secs(1), session.closed()).await;
    assert!(
        still_open.is_err(),
        "the established session was dropped: {still_open:?}"
    );
    rendered.stop().await;
    Ok(())
}

/// SHA-256 (hex) of the leaf certificate a fresh TLS connection to `address` is served.
async fn served_fingerprint(address: SocketAddr, ca: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let connector = tokio_rustls::TlsConnector::from(tls_config_with_ca(ca).ok()?);
    let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("vpn.example.com").ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.clone();
    Some(
        Sha256::digest(leaf.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// The status code of a plain HTTP GET.
async fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}
