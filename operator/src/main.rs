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
    /// Image of gateway pods when an SstpGateway does not set spec.pod.image.
    #[arg(long, env = "SSTP_OPERATOR_GATEWAY_IMAGE")]
    gateway_image: String,
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
    /// Namespace of the Lease (normally the operator's own, from the downward API).
    #[arg(long, env = "SSTP_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: String,
    /// This replica's identity in the Lease (normally the pod name).
    #[arg(long, env = "SSTP_OPERATOR_IDENTITY")]
    identity: String,
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
        let settings = Settings {
            gateway_image,
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
    fn watch_namespace_may_be_repeated() {
        let cli = parse(&["--watch-namespace", "vpn-a", "--watch-namespace", "vpn-b"]);
        assert_eq!(cli.watch_namespace, ["vpn-a", "vpn-b"]);
    }
}
