//! iperf3 (Debian's) as the kernel-TCP traffic of the `tcp` and `ceiling` modes: servers kept
//! for the whole run, one client per stream, its JSON report read back.

use std::{net::Ipv4Addr, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use tokio::process::Child;

use crate::netns::command_in;

/// How long the servers get to listen.
const LISTEN_DEADLINE: Duration = Duration::from_secs(10);
/// Beyond the test's own duration: connect, the final exchange of results, process exit.
const CLIENT_SLACK: Duration = Duration::from_secs(30);

/// iperf3 servers, one per port; killed when dropped.
pub(crate) struct Servers {
    children: Vec<(u16, Child)>,
}

impl Servers {
    /// Starts a server on `bind:port` for each port (in `netns`, or here) and waits until every
    /// one listens.
    pub(crate) async fn start(
        netns: Option<&str>,
        bind: Ipv4Addr,
        ports: impl IntoIterator<Item = u16>,
    ) -> anyhow::Result<Self> {
        let bind_text = bind.to_string();
        let mut children = Vec::new();
        for port in ports {
            let child = command_in(netns, "iperf3")
                .args(["-s", "-p", &port.to_string(), "-B", &bind_text])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start iperf3 (the tcp and ceiling modes need Debian's iperf3)")?;
            children.push((port, child));
        }
        let mut servers = Self { children };
        servers.wait_listening(netns, bind).await?;
        Ok(servers)
    }

    async fn wait_listening(&mut self, netns: Option<&str>, bind: Ipv4Addr) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + LISTEN_DEADLINE;
        loop {
            for (port, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!("the iperf3 server for port {port} exited ({status}): port taken?");
                }
            }
            let output = command_in(netns, "ss")
                .args(["-Hltn"])
                .stdin(Stdio::null())
                .output()
                .await
                .context("cannot run ss")?;
            let listing = String::from_utf8_lossy(&output.stdout);
            let waiting = self
                .children
                .iter()
                .filter(|(port, _)| !listing.contains(&format!("{bind}:{port} ")))
                .count();
            if waiting == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{waiting} iperf3 servers not listening after {LISTEN_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What one iperf3 stream moved.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    /// Bytes the receiving end took (TCP payload).
    pub(crate) bytes: u64,
    /// Over how long the receiver counted them.
    pub(crate) seconds: f64,
    /// Segments the sending end's kernel retransmitted.
    pub(crate) retransmits: u64,
}

impl Report {
    /// Goodput at the receiver.
    pub(crate) fn mbit_per_s(self) -> f64 {
        crate::stats::mbit_per_s(self.bytes, self.seconds)
    }

    pub(crate) fn add(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.seconds = self.seconds.max(other.seconds);
        self.retransmits += other.retransmits;
    }
}

/// Which way the stream runs, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// The client sends.
    Send,
    /// The server sends (`iperf3 -R`).
    Receive,
}

/// Runs one iperf3 client (in `netns`, or here) against `server:port` for `duration`.
pub(crate) async fn client(
    netns: Option<&str>,
    server: Ipv4Addr,
    port: u16,
    duration: Duration,
    way: Way,
) -> anyhow::Result<Report> {
    // iperf3 takes whole seconds.
    let seconds = duration.as_secs().max(1);
    let mut command = command_in(netns, "iperf3");
    command
        .args(["-c", &server.to_string(), "-p", &port.to_string()])
        .args([
            "-t",
            &seconds.to_string(),
            "-J",
            "--connect-timeout",
            "5000",
        ])
        .stdin(Stdio::null());
    if way == Way::Receive {
        command.arg("-R");
    }
    let limit = Duration::from_secs(seconds) + CLIENT_SLACK;
    let output = tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("iperf3 to {server}:{port} did not finish in {limit:?}"))?
        .context("cannot run iperf3")?;
    let report = parse_report(&output.stdout)
        .with_context(|| format!("iperf3 to {server}:{port} ({})", output.status))?;
    Ok(report)
}

/// The totals of an `iperf3 -J` report, or the error it reports.
fn parse_report(json: &[u8]) -> anyhow::Result<Report> {
    let value: serde_json::Value =
        serde_json::from_slice(json).context("the output is not iperf3's JSON report")?;
    if let Some(error) = value.get("error").and_then(serde_json::Value::as_str) {
        bail!("{error}");
    }
    let end = &value["end"];
    let number = |section: &str, key: &str| end[section][key].as_f64();
    let bytes = number("sum_received", "bytes").context("no end.sum_received.bytes")?;
    let seconds = number("sum_received", "seconds").context("no end.sum_received.seconds")?;
    // Linux reports the sender's retransmits; with -R the server's reach the client's report.
    let retransmits = number("sum_sent", "retransmits").unwrap_or(0.0);
    Ok(Report {
        bytes: bytes as u64,
        seconds,
        retransmits: retransmits as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_gives_the_receivers_bytes_and_the_senders_retransmits() {
        // Trimmed from `iperf3 -c 127.0.0.1 -t 1 -J -R` (3.12): with -R the server's sending
        // figures, retransmits included, reach the client's report.
        let json = br#"{"start": {}, "intervals": [], "end": {
            "sum_sent": {"seconds": 1.001105, "bytes": 1435238400, "retransmits": 13, "sender": false},
            "sum_received": {"seconds": 1.000029, "bytes": 1433993163, "sender": false}}}"#;
        let report = parse_report(json).expect("a valid report");
        assert_eq!(report.bytes, 1_433_993_163);
        assert!((report.seconds - 1.000_029).abs() < 1e-9);
        assert_eq!(report.retransmits, 13);
    }

    #[test]
    fn a_failed_run_says_why() {
        let json = br#"{"start": {}, "intervals": [], "end": {}, "error": "unable to connect to server: Connection refused"}"#;
        let err = parse_report(json).expect_err("an error report").to_string();
        assert!(err.contains("Connection refused"), "{err}");
        assert!(parse_report(b"iperf3: error").is_err());
    }
}
