//! The load tool (`sstp-load`) against the real gateway, small and short: its sessions come up,
//! its datagrams and kernel TCP (iperf3) cross the tunnels both ways, and its ceiling mode
//! measures the machine. No timing assertions: the numbers are for
//! `tests/bench/load`, this only proves the tool and its sink work.
//!
//! Layout: gateway on 127.0.0.1 (pool 198.19.2k.0/24, NAT off) -> TUN -> host routing -> veth
//! 198.18.k.1/30 -> namespace 198.18.k.2:9000 (`sstp-load sink`; iperf3 servers from 5201 for
//! `tcp`, 5199 for `ceiling`), `k` from [`TestNet::pick`].

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use sstp_e2e::{
    Error,
    gateway_process::{self, GatewayOptions, GatewayProcess},
    netns::{NetnsLink, TestNet},
};

const SINK_PORT: u16 = 9000;
const SESSIONS: u32 = 8;

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `key=value` fields of the `RESULT` line `sstp-load` prints last.
fn run_load(load: &Path, args: &[&str], common: &[String]) -> Vec<(String, String)> {
    let out = Command::new(load)
        .args(args)
        .args(common)
        .stdin(Stdio::null())
        .output()
        .expect("sstp-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sstp-load {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from sstp-load {args:?}:\n{stdout}"));
    result
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field(fields: &[(String, String)], key: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key} in {fields:?}"))
}

#[test]
fn the_load_tool_brings_sessions_up_and_moves_datagrams_both_ways_through_a_real_gateway() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: the gateway needs root (TUN, nftables, namespaces)");
        return;
    }
    if let Err(err) = scenario() {
        panic!("{err}");
    }
}

fn scenario() -> Result<(), Error> {
    let bins = gateway_process::binaries()?;
    let dir = TempDir(PathBuf::from(format!(
        "/var/tmp/sstp-e2e-load.{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Io { what, source }
    };
    std::fs::create_dir_all(&dir.0).map_err(io("creating the test directory"))?;
    let net = TestNet::pick()?;
    let link = NetnsLink::create(net.veth_host(), net.veth_ns(), 30)?;
    link.route_to_host(&net.pool(0))?;

    let gw_dir = dir.0.join("gw");
    std::fs::create_dir_all(&gw_dir).map_err(io("creating the gateway directory"))?;
    let password = "load-Pa55word";
    GatewayProcess::add_user(&bins.gateway, &gw_dir.join("users.json"), "load", password)?;
    let password_file = dir.0.join("password");
    std::fs::write(&password_file, format!("{password}\n")).map_err(io("writing the password"))?;
    let gateway = GatewayProcess::start(
        &bins.gateway,
        &GatewayOptions {
            data_dir: gw_dir,
            address_pool: net.pool(0),
            tun_name: format!("sstpl{}", std::process::id() % 100_000),
            pap: false,
            nat: false,
            extra_args: ["--max-sessions-per-user", "64"].map(String::from).to_vec(),
        },
    )?;
    let sink_addr = format!("{}:{SINK_PORT}", net.veth_ns());
    let _sink = ChildGuard(
        link.command(&bins.load.display().to_string())
            .args(["sink", "--listen", &sink_addr, "--exit-after", "120s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting the sink"))?,
    );

    let common = vec![
        "--target".to_owned(),
        gateway.sstp_addr().to_string(),
        "--ca-cert".to_owned(),
        gateway.ca_cert().display().to_string(),
        "--user".to_owned(),
        "load".to_owned(),
        "--password-file".to_owned(),
        password_file.display().to_string(),
    ];
    let sessions = SESSIONS.to_string();

    let setup = run_load(
        &bins.load,
        &[
            "setup",
            "--sessions",
            &sessions,
            "--rate",
            "50",
            "--duration",
            "200ms",
        ],
        &common,
    );
    assert_eq!(field(&setup, "up"), f64::from(SESSIONS), "{setup:?}");

    let throughput = run_load(
        &bins.load,
        &[
            "throughput",
            "--sessions",
            "2",
            "--duration",
            "1s",
            "--sink",
            &sink_addr,
        ],
        &common,
    );
    assert_eq!(field(&throughput, "tunnels"), 2.0, "{throughput:?}");
    assert!(
        field(&throughput, "up_packets") > 0.0,
        "nothing reached the sink: {throughput:?}"
    );
    assert!(
        field(&throughput, "down_packets") > 0.0,
        "nothing came back: {throughput:?}"
    );

    // Kernel TCP (iperf3) through two tunnels, each client's TUN in a namespace of its own,
    // both ways; then the machine's ceilings the benchmark gives those figures against.
    let server_netns = link.name().to_owned();
    let server_addr = net.veth_ns().to_string();
    let tcp = run_load(
        &bins.load,
        &[
            "tcp",
            "--sessions",
            "2",
            "--duration",
            "1s",
            "--server-netns",
            &server_netns,
            "--server-addr",
            &server_addr,
        ],
        &common,
    );
    assert_eq!(field(&tcp, "tunnels"), 2.0, "{tcp:?}");
    for way in ["up", "down"] {
        assert_eq!(field(&tcp, &format!("{way}_failed")), 0.0, "{tcp:?}");
        assert!(
            field(&tcp, &format!("{way}_bytes")) > 0.0,
            "no TCP payload went {way}: {tcp:?}"
        );
    }
    let ca_cert = gateway.ca_cert();
    let gw_dir = ca_cert.parent().expect("the data directory");
    let ceiling = run_load(
        &bins.load,
        &[
            "ceiling",
            "--server-netns",
            &server_netns,
            "--server-addr",
            &server_addr,
            "--cert",
            &gw_dir.join("server.crt").display().to_string(),
            "--key",
            &gw_dir.join("server.key").display().to_string(),
            "--ca-cert",
            &ca_cert.display().to_string(),
            "--duration",
            "1s",
        ],
        &[],
    );
    for key in [
        "tls_mbit_s",
        "tun_mbit_s",
        "veth_up_mbit_s",
        "veth_down_mbit_s",
    ] {
        assert!(field(&ceiling, key) > 0.0, "{key}: {ceiling:?}");
    }

    let pid = gateway.pid().to_string();
    let idle = run_load(
        &bins.load,
        &[
            "idle",
            "--sessions",
            &sessions,
            "--duration",
            "200ms",
            "--gateway-pid",
            &pid,
        ],
        &common,
    );
    assert_eq!(field(&idle, "up"), f64::from(SESSIONS), "{idle:?}");
    assert!(field(&idle, "rss_after_kib") > 0.0, "{idle:?}");

    // hold, undisturbed: every session up from start to stop, none ended.
    let hold = run_load(
        &bins.load,
        &["hold", "--sessions", &sessions, "--duration", "1s"],
        &common,
    );
    assert_eq!(field(&hold, "up_at_start"), f64::from(SESSIONS), "{hold:?}");
    assert_eq!(field(&hold, "up_at_stop"), f64::from(SESSIONS), "{hold:?}");
    assert_eq!(field(&hold, "ends"), 0.0, "{hold:?}");
    assert_eq!(field(&hold, "fewest_up"), f64::from(SESSIONS), "{hold:?}");

    // hold, with the user removed while it runs: every call ends by the gateway's
    // CALL_DISCONNECT, and the redials (refused now) give up. Last: the user is gone after it.
    let ready = dir.0.join("hold-ready");
    let hold = std::thread::scope(|scope| {
        let holding = scope.spawn(|| {
            run_load(
                &bins.load,
                &[
                    "hold",
                    "--sessions",
                    "4",
                    "--duration",
                    "60s",
                    "--redial-attempts",
                    "2",
                    "--ready-file",
                    &ready.display().to_string(),
                ],
                &common,
            )
        });
        sstp_e2e::poll_until(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(100),
            || Ok(ready.exists().then_some(())),
        )
        .expect("polling")
        .expect("hold wrote its ready file");
        gateway.remove_user("load").expect("removing the user");
        holding.join().expect("the hold run")
    });
    assert_eq!(field(&hold, "up_at_start"), 4.0, "{hold:?}");
    assert_eq!(field(&hold, "ends"), 4.0, "{hold:?}");
    assert_eq!(field(&hold, "ends_by_disconnect"), 4.0, "{hold:?}");
    assert_eq!(field(&hold, "redialed"), 0.0, "{hold:?}");
    assert_eq!(field(&hold, "up_at_stop"), 0.0, "{hold:?}");
    assert_eq!(field(&hold, "fewest_up"), 0.0, "{hold:?}");
    Ok(())
}
