//! The processes Prometheus scrapes: a standalone gateway and the operator against the
//! project's API server.

// The constants and shared helpers live in the test's root.
use super::*;

/// A standalone gateway on loopback with a client pool no interface uses; `data_dir` may already
/// hold a PKI for it to serve.
pub(super) fn start_gateway(data_dir: &Path, tag: char) -> Result<GatewayProcess, Error> {
    let bins = gateway_process::binaries()?;
    let net = TestNet::pick()?;
    GatewayProcess::start(
        &bins.gateway,
        &GatewayOptions {
            data_dir: data_dir.to_owned(),
            address_pool: net.pool(0),
            tun_name: format!("sstpm{tag}{}", std::process::id() % 100_000),
            pap: false,
            nat: false,
            extra_args: Vec::new(),
        },
    )
}

/// The real `sstp-operator` binary against the test control plane, as admin, watching
/// `namespaces` with its Lease in the first. Killed on drop.
pub(super) struct OperatorProcess {
    pub(super) child: Child,
    pub(super) admin: SocketAddr,
    pub(super) log: std::path::PathBuf,
    pub(super) _dir: TempDir,
}

impl OperatorProcess {
    pub(super) fn start(cp: &ControlPlane, namespaces: &[&str]) -> Result<Self, Error> {
        let binary = operator_binary()?;
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, gateway_process::free_port()?));
        let dir = TempDir::new("prometheus-operator");
        let log = dir.path().join("operator.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|err| panic!("{err}"));
        let err = out.try_clone().unwrap_or_else(|err| panic!("{err}"));
        let mut command = Command::new(&binary);
        command
            // Pods never run on this control plane (no nodes); the image is only a name.
            .arg("--gateway-image=example.invalid/sstp-gateway:test")
            .arg(format!("--admin-address={admin}"))
            .arg("--lease-name=sstp-operator-prometheus-test")
            .arg(format!("--lease-namespace={}", namespaces[0]))
            .arg("--identity=prometheus-test")
            .arg(format!("--watch-namespace={}", namespaces.join(",")));
        // The operator reads SSTP_OPERATOR_* variables as flags; the test's own must not leak in.
        for (name, _) in std::env::vars() {
            if name.starts_with("SSTP_OPERATOR_") {
                command.env_remove(name);
            }
        }
        let child = command
            .env("KUBECONFIG", cp.kubeconfig())
            .env("SSTP_OPERATOR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("starting {}", binary.display()),
                source,
            })?;
        Ok(Self {
            child,
            admin,
            log,
            _dir: dir,
        })
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(super) fn metrics(&self) -> Result<String, Error> {
        match gateway_process::http_get(self.admin, "/metrics") {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(Error::Unavailable(format!(
                "operator /metrics answered {status}: {body}"
            ))),
            Err(source) => Err(Error::Io {
                what: format!("GET http://{}/metrics", self.admin),
                source,
            }),
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
