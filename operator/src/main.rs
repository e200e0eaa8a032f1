//! `sstp-operator`: runs the SstpGateway and SstpUser controllers (see the crate docs and
//! operator/README.md for flags and RBAC).

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use sstp_api::gateway::ImagePullPolicy;
use sstp_operator::{
    DEFAULT_LEASE_DURATION, DEFAULT_LEASE_GRACE, Settings, leader::LeaseSettings, metrics::Metrics,
};
use tracing_subscriber::EnvFilter;

/// The SSTP gateway operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Image of gateway pods when an SstpGateway does not set spec.pod.image (default: the
    /// chart's default, the gateway image of this operator's version).
    #[arg(long, env = "SSTP_OPERATOR_GATEWAY_IMAGE")]
    gateway_image: Option<String>,
    /// Pull policy of that image when an SstpGateway does not set spec.pod.imagePullPolicy:
    /// Always, IfNotPresent or Never (default: unset, so Kubernetes picks Always for a :latest or
    /// untagged image and IfNotPresent otherwise).
    #[arg(
        long,
        env = "SSTP_OPERATOR_GATEWAY_IMAGE_PULL_POLICY",
        value_name = "POLICY"
    )]
    gateway_image_pull_policy: Option<ImagePullPolicy>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SSTP_OPERATOR_ADMIN_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    admin_address: SocketAddr,
    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "SSTP_OPERATOR_LEASE_NAME",
        default_value = "sstp-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease (the chart passes the operator's own, from the downward API;
    /// default: the kubeconfig context's namespace, or the service account's in a pod).
    #[arg(long, env = "SSTP_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease (the chart passes the pod name; default: the host
    /// name, which in a pod is the pod name).
    #[arg(long, env = "SSTP_OPERATOR_IDENTITY")]
    identity: Option<String>,
    /// Seconds the Lease stays valid without renewal.
    #[arg(long, env = "SSTP_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = DEFAULT_LEASE_DURATION)]
    lease_duration_seconds: u64,
    /// Watch only these namespaces, comma-separated (default: all namespaces; the RBAC can then
    /// be a Role in each).
    #[arg(
        long,
        env = "SSTP_OPERATOR_WATCH_NAMESPACE",
        value_delimiter = ',',
        value_name = "NAMESPACE[,NAMESPACE...]"
    )]
    watch_namespace: Vec<String>,
    /// Seconds before expiry that the holder renews.
    #[arg(long, env = "SSTP_OPERATOR_LEASE_GRACE_SECONDS", default_value_t = DEFAULT_LEASE_GRACE)]
    lease_grace_seconds: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SSTP_OPERATOR_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour codes only for a person at a terminal; pods and log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "sstp-operator failed");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let Cli {
        gateway_image,
        gateway_image_pull_policy,
        admin_address,
        lease_name,
        lease_namespace,
        identity,
        lease_duration_seconds,
        lease_grace_seconds,
        watch_namespace,
    } = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("Failed to configure the Kubernetes client")?;
        // A local run needs no flag, as kube-rs controllers do: the current kubeconfig, its
        // namespace for the Lease, the host name as identity, the chart's gateway image.
        let lease_namespace =
            lease_namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        let identity = identity.unwrap_or_else(host_name);
        let settings = Settings {
            gateway_image: gateway_image.unwrap_or_else(default_gateway_image),
            gateway_pull_policy: gateway_image_pull_policy,
            lease: LeaseSettings {
                name: lease_name,
                namespace: lease_namespace,
                identity,
                duration_seconds: lease_duration_seconds,
                grace_seconds: lease_grace_seconds,
            },
            admin_address: Some(admin_address),
            watch_namespaces: watch_namespace,
        };
        sstp_operator::run(client, settings, Metrics::new(), shutdown_signal())
            .await
            .context("The operator stopped")
    })
}

/// The repository the chart's `gateway.image.repository` defaults to.
const GATEWAY_REPOSITORY: &str = "ghcr.io/sstp-operator/sstp-gateway";

/// The gateway image the chart deploys by default: its repository, tagged with the chart's
/// appVersion, which is this crate's version.
fn default_gateway_image() -> String {
    format!("{GATEWAY_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// This machine's host name (a pod's is its name), for the Lease identity.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sstp-operator".to_owned())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn parse(extra: &[&str]) -> Cli {
        let base = [
            "sstp-operator",
            "--gateway-image=gw:1",
            "--lease-namespace=ops",
            "--identity=pod-0",
        ];
        match Cli::try_parse_from(base.iter().chain(extra)) {
            Ok(cli) => cli,
            Err(err) => panic!("{err}"),
        }
    }

    #[test]
    fn watch_namespace_takes_a_comma_separated_list() {
        let cli = parse(&["--watch-namespace=vpn-a,vpn-b"]);
        assert_eq!(cli.watch_namespace, ["vpn-a", "vpn-b"]);
    }

    #[test]
    fn the_gateway_pull_policy_is_optional_and_checked() {
        assert_eq!(parse(&[]).gateway_image_pull_policy, None);
        let cli = parse(&["--gateway-image-pull-policy=Never"]);
        assert_eq!(
            cli.gateway_image_pull_policy,
            Some(sstp_api::gateway::ImagePullPolicy::Never)
        );
        let wrong = Cli::try_parse_from([
            "sstp-operator",
            "--gateway-image=gw:1",
            "--lease-namespace=ops",
            "--identity=pod-0",
            "--gateway-image-pull-policy=sometimes",
        ]);
        assert!(wrong.is_err());
    }

    #[test]
    fn a_local_run_needs_no_flag() {
        let cli = Cli::try_parse_from(["sstp-operator"]).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(cli.gateway_image, None);
        assert_eq!(cli.lease_namespace, None);
        assert_eq!(cli.identity, None);
        assert!(!super::host_name().is_empty());
    }

    #[test]
    fn the_default_gateway_image_is_the_charts_default() {
        let values = include_str!("../../charts/sstp-operator/values.yaml");
        let chart = include_str!("../../charts/sstp-operator/Chart.yaml");
        let app_version = chart
            .lines()
            .find_map(|line| line.strip_prefix("appVersion:"))
            .map(|v| v.trim().trim_matches('"'))
            .expect("Chart.yaml has an appVersion");
        assert!(
            values.contains(&format!("    repository: {}\n", super::GATEWAY_REPOSITORY)),
            "values.yaml's gateway.image.repository"
        );
        assert_eq!(
            super::default_gateway_image(),
            format!("{}:{app_version}", super::GATEWAY_REPOSITORY)
        );
    }

    #[test]
    fn watch_namespace_may_be_repeated() {
        let cli = parse(&["--watch-namespace", "vpn-a", "--watch-namespace", "vpn-b"]);
        assert_eq!(cli.watch_namespace, ["vpn-a", "vpn-b"]);
    }
}
