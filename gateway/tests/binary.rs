//! The built `sstp-gateway` binary: the `user` commands on a users file, and `standalone`
//! served inside a network namespace, then stopped with SIGTERM.
//! Run as root: `cargo test -p sstp-gateway --test binary`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Reaper, TestDir, client_options, http_get, in_new_netns, ping, runtime};
use sstp_api::UsersDocument;
use sstp_gateway::client::Client;
use sstp_proto::CloseReason;

const BIN: &str = env!("CARGO_BIN_EXE_sstp-gateway");

/// `sstp-gateway user add --users-file FILE NAME` with `password` on stdin.
fn user_add(file: &Path, name: &str, password: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "add", "--users-file"])
        .arg(file)
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "a password from stdin is not printed"
    );
}

fn user(file: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("user")
        .arg(args[0])
        .arg("--users-file")
        .arg(file)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn load(file: &Path) -> UsersDocument {
    UsersDocument::from_json(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn the_user_commands_edit_the_file_keep_other_fields_and_never_store_the_password() {
    let dir = TestDir::new("user-cli");
    let file = dir.0.join("users.json");
    user_add(&file, "alice", "correct horse battery");
    // A field the CLI does not manage survives every later edit.
    let mut doc = load(&file);
    doc.users.get_mut("alice").unwrap().static_address = Some("10.77.0.50".parse().unwrap());
    std::fs::write(&file, doc.to_json_pretty()).unwrap();

    let generated = user(&file, &["add", "bob", "--generate"]);
    let generated = generated.trim();
    assert!(generated.len() >= 20, "generated password {generated:?}");
    user(&file, &["disable", "alice"]);
    assert_eq!(
        user(&file, &["list"]),
        "alice\tdisabled\tstaticAddress=10.77.0.50\nbob\tenabled\n"
    );
    user(&file, &["enable", "alice"]);

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("correct horse battery") && !text.contains(generated));
    let doc = load(&file);
    let alice = &doc.users["alice"];
    assert!(!alice.disabled);
    assert_eq!(alice.static_address, Some("10.77.0.50".parse().unwrap()));
    let expected = sstp_ppp::NtHash::from_password("correct horse battery");
    assert_eq!(alice.nt_hash.to_bytes(), Some(expected.0));
    let bob = sstp_ppp::NtHash::from_password(generated);
    assert_eq!(doc.users["bob"].nt_hash.to_bytes(), Some(bob.0));

    user(&file, &["remove", "bob"]);
    assert_eq!(
        user(&file, &["list"]),
        "alice\tenabled\tstaticAddress=10.77.0.50\n"
    );
    let failed = Command::new(BIN)
        .args(["user", "remove", "--users-file"])
        .arg(&file)
        .arg("nobody")
        .output()
        .unwrap();
    assert!(!failed.status.success());
}

#[test]
fn sigterm_disconnects_clients_removes_the_tun_device_and_nft_table_and_exits_zero() {
    in_new_netns("sigterm", || {
        let dir = TestDir::new("sigterm");
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).unwrap();
        user_add(&data.join("users.json"), "alice", "alice-password");
        let mut reaper = standalone(&data, &[]);
        let pid = reaper.0.as_ref().unwrap().id();
        runtime().block_on(async {
            wait_ready("127.0.0.1:9090".parse().unwrap()).await;
            let ca = std::fs::read(data.join("ca.crt")).unwrap();
            let served_ca = http_get("127.0.0.1:8080".parse().unwrap(), "/sstp/ca.crt").await;
            assert_eq!(served_ca.as_bytes(), &ca[..]);
            let options = client_options(
                "127.0.0.1:8443".parse().unwrap(),
                &ca,
                "alice",
                "alice-password",
            );
            let mut client = Client::connect(options).await.unwrap();
            let addr = client.wait_up().await.unwrap();
            ping(
                &mut client,
                addr,
                "10.77.0.1".parse().unwrap(),
                5,
                b"before SIGTERM",
            )
            .await;
            assert!(common::run(&["nft", "list", "tables"]).contains("sstp_gateway_sstp0"));

            sigterm_disconnects(pid, client).await;
        });
        let mut child = reaper.0.take().unwrap();
        exits_zero(&mut child);
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        assert!(
            stdout.contains("ca.crt") && stdout.contains("user add --users-file"),
            "{stdout}"
        );
        assert!(!common::run(&["nft", "list", "tables"]).contains("sstp_gateway_sstp0"));
        let link = Command::new("ip")
            .args(["link", "show", "sstp0"])
            .output()
            .unwrap();
        assert!(!link.status.success(), "the TUN device is still there");
    });
}

/// A drain as a pod's SIGTERM starts it: readiness fails and new connections are refused at
/// once, the established session carries traffic through the disconnect delay, then gets
/// CALL_DISCONNECT, and the process exits 0.
#[test]
fn sigterm_with_a_disconnect_delay_refuses_new_clients_first_and_disconnects_after_it() {
    /// Long enough that the checks below run inside it even on a loaded machine.
    const DELAY: Duration = Duration::from_secs(8);
    in_new_netns("drain", || {
        let dir = TestDir::new("drain");
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data).unwrap();
        user_add(&data.join("users.json"), "alice", "alice-password");
        let delay = DELAY.as_secs().to_string();
        let mut reaper = standalone(
            &data,
            &["--drain-grace", "20", "--drain-disconnect-delay", &delay],
        );
        let pid = reaper.0.as_ref().unwrap().id();
        runtime().block_on(async {
            let admin = "127.0.0.1:9090".parse().unwrap();
            let sstp: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
            wait_ready(admin).await;
            let ca = std::fs::read(data.join("ca.crt")).unwrap();
            let options = client_options(sstp, &ca, "alice", "alice-password");
            let mut client = Client::connect(options).await.unwrap();
            let addr = client.wait_up().await.unwrap();
            let gateway = "10.77.0.1".parse().unwrap();
            ping(&mut client, addr, gateway, 1, b"before SIGTERM").await;

            common::run(&["kill", "-TERM", &pid.to_string()]);
            let signalled = Instant::now();
            // Not ready, and the SSTP port refuses, while the admin port still answers.
            let start = Instant::now();
            loop {
                let ready = http_get(admin, "/readyz").await;
                let refused = tokio::net::TcpStream::connect(sstp).await.is_err();
                if !ready.starts_with("ready") && refused {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(5), "still accepting");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The session still carries traffic.
            ping(&mut client, addr, gateway, 2, b"while draining").await;
            assert!(
                signalled.elapsed() < DELAY,
                "the checks took longer than the delay; they prove nothing"
            );
            let reason = tokio::time::timeout(DELAY + Duration::from_secs(10), client.closed())
                .await
                .expect("the client was disconnected after the delay");
            assert_eq!(reason, CloseReason::PeerDisconnected);
            assert!(
                signalled.elapsed() >= DELAY,
                "disconnected after {:?}, before the delay",
                signalled.elapsed()
            );
        });
        let mut child = reaper.0.take().unwrap();
        exits_zero(&mut child);
    });
}

#[test]
fn run_with_a_config_file_serves_and_stops_on_sigterm() {
    in_new_netns("run_config", || {
        let dir = TestDir::new("run-config");
        let users = dir.0.join("users.json");
        user_add(&users, "bob", "bob-password");
        let config = dir.0.join("config.json");
        let text = format!(
            r#"{{
  "listen": {{ "sstp": "127.0.0.1:7443", "http": "127.0.0.1:7080", "admin": "127.0.0.1:7090" }},
  "hostnames": ["localhost"],
  "addressPool": "10.66.0.0/28",
  "nat": false,
  "tls": {{ "selfManaged": {{ "dataDir": "{}" }} }},
  "users": {{ "file": {{ "path": "{}" }} }},
  "tun": {{ "name": "gw-test", "mtu": 1400 }}
}}"#,
            dir.0.join("pki").display(),
            users.display()
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut reaper = Reaper(Some(child));
        runtime().block_on(async {
            wait_ready("127.0.0.1:7090".parse().unwrap()).await;
            let ca = std::fs::read(dir.0.join("pki/ca.crt")).unwrap();
            let options = client_options(
                "127.0.0.1:7443".parse().unwrap(),
                &ca,
                "bob",
                "bob-password",
            );
            let mut client = Client::connect(options).await.unwrap();
            let addr = client.wait_up().await.unwrap();
            let pool: ipnet::Ipv4Net = "10.66.0.0/28".parse().unwrap();
            assert!(pool.contains(&addr));
            ping(
                &mut client,
                addr,
                "10.66.0.1".parse().unwrap(),
                9,
                b"from run --config",
            )
            .await;
            assert!(common::run(&["nft", "list", "tables"]).contains("sstp_gateway_gw_test"));
            sigterm_disconnects(pid, client).await;
        });
        let mut child = reaper.0.take().unwrap();
        exits_zero(&mut child);
        assert!(!common::run(&["nft", "list", "tables"]).contains("sstp_gateway_gw_test"));
    });
}

#[test]
fn readyz_waits_until_the_users_document_is_in_force() {
    in_new_netns("readyz_users", || {
        let dir = TestDir::new("readyz-users");
        let (config, users) = minimal_run_config(&dir, 6);
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _reaper = Reaper(Some(child));
        runtime().block_on(async {
            let admin = "127.0.0.1:6090".parse().unwrap();
            poll_until("admin port up", Duration::from_secs(20), || async {
                tokio::net::TcpStream::connect(admin).await.is_ok()
            })
            .await;
            // Serving, but with no users file every login would fail: not ready.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!http_get(admin, "/readyz").await.starts_with("ready"));
            user_add(&users, "bob", "bob-password");
            poll_until("ready", Duration::from_secs(10), || ready(admin)).await;
        });
    });
}

#[test]
fn readyz_waits_for_ipv4_forwarding_and_the_log_says_what_to_set() {
    in_new_netns("readyz_forwarding", || {
        let sysctl = "/proc/sys/net/ipv4/ip_forward";
        std::fs::write(sysctl, "0\n").unwrap();
        let dir = TestDir::new("readyz-forwarding");
        let (config, users) = minimal_run_config(&dir, 5);
        user_add(&users, "bob", "bob-password");
        let log = dir.0.join("gateway.log");
        // As in a pod: /proc/sys read-only, so the gateway cannot turn forwarding on itself.
        let child = with_read_only_proc_sys(&format!("{BIN} run --config {}", config.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let _reaper = Reaper(Some(child));
        runtime().block_on(async {
            let admin = "127.0.0.1:5090".parse().unwrap();
            poll_until("users loaded", Duration::from_secs(20), || async {
                tokio::net::TcpStream::connect(admin).await.is_ok()
                    && http_get(admin, "/metrics")
                        .await
                        .contains("sstp_users_loaded 1")
            })
            .await;
            // Users are in force, but clients would reach nothing: not ready, and said why.
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(!http_get(admin, "/readyz").await.starts_with("ready"));
            assert!(
                http_get(admin, "/metrics")
                    .await
                    .contains("sstp_ipv4_forwarding 0")
            );
            let logged = std::fs::read_to_string(&log).unwrap();
            assert!(
                logged.contains("IPv4 forwarding is off")
                    && logged.contains("spec.pod.ipForwarding")
                    && logged.contains("sysctl -w net.ipv4.ip_forward=1"),
                "{logged}"
            );
            // Turned on from outside (this thread's /proc/sys is writable): ready soon after.
            std::fs::write(sysctl, "1\n").unwrap();
            poll_until("ready", Duration::from_secs(15), || ready(admin)).await;
            assert!(
                http_get(admin, "/metrics")
                    .await
                    .contains("sstp_ipv4_forwarding 1")
            );
        });
    });
}

/// Polls `check` every 100 ms until it holds; fails the test after `bound` (a safety net, not a
/// timing assertion: healthy runs pass in a fraction of it).
async fn poll_until<F: Future<Output = bool>>(what: &str, bound: Duration, check: impl Fn() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < bound, "never {what} within {bound:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `/readyz` on `admin` says ready.
async fn ready(admin: std::net::SocketAddr) -> bool {
    http_get(admin, "/readyz").await.starts_with("ready")
}

/// `sstp-gateway standalone` with `data` on 127.0.0.1 (SSTP 8443, HTTP 8080, admin 9090),
/// NAT off, plus `extra` flags; stdout piped (it prints the standalone help), stderr dropped.
fn standalone(data: &Path, extra: &[&str]) -> Reaper {
    let child = Command::new(BIN)
        .arg("standalone")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--listen",
            "127.0.0.1:8443",
            "--http-listen",
            "127.0.0.1:8080",
            "--admin-listen",
            "127.0.0.1:9090",
            "--hostname",
            "localhost",
            "--no-nat",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Reaper(Some(child))
}

/// Waits (at most 20 s) until the gateway's admin port says ready.
async fn wait_ready(admin: std::net::SocketAddr) {
    let start = Instant::now();
    while !(tokio::net::TcpStream::connect(admin).await.is_ok()
        && http_get(admin, "/readyz").await.starts_with("ready"))
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM to the gateway and waits for `client` to be told. The gateway ends PPP with LCP
/// Terminate, then sends CALL_DISCONNECT; the client's own PPP is still in its RFC 1661 Stopping
/// wait (restart timer) when that arrives, so the call ends by the peer's CALL_DISCONNECT, not a
/// dropped transport.
async fn sigterm_disconnects(pid: u32, mut client: Client) {
    common::run(&["kill", "-TERM", &pid.to_string()]);
    let reason = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the client was disconnected");
    assert_eq!(reason, CloseReason::PeerDisconnected);
}

/// Waits (at most 15 s) for the gateway to exit after SIGTERM, and checks it exited 0.
fn exits_zero(child: &mut std::process::Child) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
}

/// `command` (a shell command line) in a mount namespace of its own whose `/proc/sys` is
/// read-only, as in an unprivileged container.
fn with_read_only_proc_sys(command: &str) -> Command {
    let mut shell = Command::new("unshare");
    shell
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec {command}"
        ));
    shell
}

/// A `run` config in `dir` listening on 127.0.0.1 ports `<prefix>443`, `<prefix>080` and
/// `<prefix>090`, users from `dir/users.json` (not created); returns (config, users file).
fn minimal_run_config(dir: &TestDir, prefix: u8) -> (std::path::PathBuf, std::path::PathBuf) {
    let users = dir.0.join("users.json");
    let config = dir.0.join("config.json");
    let text = format!(
        r#"{{
  "listen": {{ "sstp": "127.0.0.1:{prefix}443", "http": "127.0.0.1:{prefix}080", "admin": "127.0.0.1:{prefix}090" }},
  "hostnames": ["localhost"], "addressPool": "10.66.0.0/28", "nat": false,
  "tls": {{ "selfManaged": {{ "dataDir": "{}" }} }},
  "users": {{ "file": {{ "path": "{}" }} }}
}}"#,
        dir.0.join("pki").display(),
        users.display()
    );
    std::fs::write(&config, text).unwrap();
    (config, users)
}

/// `enable-ip-forward` (the operator's init container): turns forwarding on, says so, and
/// succeeds without writing when it is on already; a read-only `/proc/sys` (an unprivileged
/// container) is refused with the fix named.
#[test]
fn enable_ip_forward_turns_forwarding_on_and_explains_a_read_only_proc_sys() {
    in_new_netns("enable_ip_forward", || {
        let sysctl = "/proc/sys/net/ipv4/ip_forward";
        // A new namespace inherits the host's value; start from off whatever the host has.
        std::fs::write(sysctl, "0\n").unwrap();
        let read_only = with_read_only_proc_sys(&format!("{BIN} enable-ip-forward"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&read_only.stderr);
        assert!(!read_only.status.success(), "{stderr}");
        assert!(
            stderr.contains("cannot write 1 to /proc/sys/net/ipv4/ip_forward")
                && stderr.contains("privileged: true")
                && stderr.contains("Read-only file system"),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(sysctl).unwrap(), "0\n");

        let enable = || {
            let out = Command::new(BIN).arg("enable-ip-forward").output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(enable(), "net.ipv4.ip_forward = 1 (turned on)\n");
        assert_eq!(std::fs::read_to_string(sysctl).unwrap(), "1\n");
        assert_eq!(enable(), "net.ipv4.ip_forward = 1 (it was on already)\n");
    });
}
