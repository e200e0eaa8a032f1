//! Network namespaces and the `ip` commands that set them up, for the modes that run kernel
//! TCP (`tcp`, `ceiling`): each tunnel gets a namespace of its own, so its iperf3 client has a
//! network stack whose only way out is the tunnel.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::Command;

/// How long one `ip` or `sysctl` invocation may take (they are local and quick; a wait beyond
/// this means something is stuck, and the run should say so rather than hang).
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `program args...` to completion; its stderr becomes the error.
pub(crate) async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    output(program, args).await.map(drop)
}

/// [`run`], returning what the command printed.
pub(crate) async fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new(program);
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_DEADLINE, command.output())
        .await
        .with_context(|| format!("`{program} {}` did not finish", args.join(" ")))?
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A network namespace this process created; deleted when dropped (which also destroys the
/// interfaces moved into it, apart from a TUN device whose descriptor is still open: that one
/// goes when the descriptor closes).
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` with its loopback up and IPv6 off (the tunnels carry IPv4 only; without
    /// this the kernel's router solicitations would be offered to them).
    pub(crate) async fn create(name: String) -> anyhow::Result<Self> {
        run("ip", &["netns", "add", &name]).await?;
        let netns = Self { name };
        netns.exec("ip", &["link", "set", "lo", "up"]).await?;
        netns
            .exec("sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .await?;
        netns
            .exec("sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            .await?;
        Ok(netns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program args...` inside the namespace.
    pub(crate) async fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        self.exec_output(program, args).await.map(drop)
    }

    /// [`Netns::exec`], returning what the command printed.
    pub(crate) async fn exec_output(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        output("ip", &full).await
    }

    /// Creates TUN device `name` (bare IPv4, `mtu`) in this process's namespace, where the
    /// descriptor is opened, and moves the interface into this one: the descriptor keeps
    /// working, so the caller stays where the gateway is reachable. Address and link state are
    /// the caller's (a move clears them).
    pub(crate) async fn new_tun(
        &self,
        name: &str,
        mtu: u16,
    ) -> anyhow::Result<tun_rs::AsyncDevice> {
        // No offload: the clients stand for Windows, whose tunnel adapter takes plain packets.
        let device = tun_rs::DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .build_async()
            .with_context(|| format!("cannot create TUN device {name} (root?)"))?;
        run("ip", &["link", "set", "dev", name, "netns", &self.name]).await?;
        Ok(device)
    }

    /// Packets the kernel dropped sending out of `device` in this namespace (its transmit
    /// queue was full: for a TUN device, its reader fell behind).
    pub(crate) async fn tx_dropped(&self, device: &str) -> anyhow::Result<u64> {
        let path = format!("/sys/class/net/{device}/statistics/tx_dropped");
        let text = self.exec_output("cat", &[&path]).await?;
        text.trim()
            .parse()
            .with_context(|| format!("{path} holds {text:?}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Synchronous: drop may run after the runtime is gone.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `ip netns exec NETNS program` as a command to spawn, or `program` when `netns` is `None`
/// (this process's own namespace).
pub(crate) fn command_in(netns: Option<&str>, program: &str) -> Command {
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, program]);
            command
        }
        None => Command::new(program),
    };
    command.kill_on_drop(true);
    command
}
