//! The README's first command, run exactly as written there (parsed from `README.md`, so the
//! docs and this test cannot drift apart), as a new user would run it on a fresh clone.
//!
//! `cargo run --release -p sstp-gateway -- standalone --data-dir ./sstp-data` is started in a
//! scratch directory inside this workspace (cargo finds the workspace from there, and
//! `./sstp-data` lands in the scratch directory, not in the checkout). It binds the fixed ports
//! 443, 80 and 9090 and a TUN device named `sstp0`, so it runs in a network namespace of its own
//! (made on this test's thread; the child inherits it): no other test or service on this host can
//! collide with it. The test waits until the gateway serves TLS on 443 (a handshake verified
//! against the `ca.crt` it created, for the name `localhost`), `/metrics` on 9090 and the CA on
//! 80, then sends SIGTERM and expects exit code 0.
//!
//! `--release` is what the README says, so the first run of this test pays for a release build
//! of the gateway (minutes on 2 cores); later runs reuse it.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use nix::{
    sched::{CloneFlags, unshare},
    sys::signal::{Signal, kill},
    unistd::{Pid, Uid},
};

const README: &str = include_str!("../../README.md");
/// Bound of the build plus the start: a cold release build of the gateway on 2 busy cores.
const START_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long the gateway may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The commands of the README's first code block (comments stripped), one per line.
fn readme_commands() -> Vec<String> {
    let mut lines = README.lines();
    lines
        .by_ref()
        .find(|line| line.trim_start().starts_with("```"))
        .expect("README.md has a code block");
    lines
        .take_while(|line| !line.trim_start().starts_with("```"))
        .map(|line| line.split(" #").next().unwrap_or(line).trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn the_readme_starts_with_exactly_two_commands_run_and_test() {
    let first_block_start = README.find("```").expect("README.md has a code block");
    let before: Vec<&str> = README[..first_block_start]
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        before.len() == 1 && before[0].starts_with("# "),
        "the README must open with its title and then the two commands, found {before:?}"
    );
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands[0].starts_with("cargo run "), "{commands:?}");
    assert_eq!(commands[1], "tests/run");
}

#[test]
fn the_readme_first_command_as_written_serves_tls_metrics_and_the_ca_and_stops_on_sigterm() {
    if !Uid::effective().is_root() {
        eprintln!("SKIPPED: the README's first command needs root (ports 443/80, TUN)");
        return;
    }
    let command = readme_commands().remove(0);
    assert!(
        !command.contains(['"', '\'', '\\', '$', '`', '|', '&', ';']),
        "the first command must be plain words to run without a shell: {command}"
    );
    let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    // On a thread of its own: the network namespace belongs to the thread (and to the processes
    // it starts), and the kernel removes it, with the TUN device and nftables table, when both
    // are gone, on panic too.
    let outcome = std::thread::spawn(move || run_in_own_netns(&words))
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    eprintln!(
        "README first command: serving after {:.1} s (build included), exited 0 {:.1} s after SIGTERM",
        outcome.ready_after.as_secs_f64(),
        outcome.stopped_after.as_secs_f64()
    );
}

struct Outcome {
    ready_after: Duration,
    stopped_after: Duration,
}

fn run_in_own_netns(words: &[String]) -> Outcome {
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) as root");
    let lo = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("running ip");
    assert!(lo.success(), "ip link set lo up: {lo}");

    let scratch = Scratch::new();
    let log_path = scratch.0.join("output.log");
    let log = std::fs::File::create(&log_path).expect("creating the output log");
    let mut command = Command::new(&words[0]);
    command
        .args(&words[1..])
        .current_dir(&scratch.0)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("duplicating the log"))
        .stderr(log);
    // As on a fresh machine: no SSTP_GATEWAY_* settings from the test's own environment.
    for (name, _) in std::env::vars() {
        if name.starts_with("SSTP_GATEWAY_") {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let mut child = Kill(
        command
            .spawn()
            .expect("starting the README's first command"),
    );
    let output = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let data_dir = scratch.0.join("sstp-data");
    loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the command") {
            panic!(
                "the README's first command exited ({status}) before serving:\n{}",
                output()
            );
        }
        if serving(&data_dir) {
            break;
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "not serving TLS on 443, /metrics on 9090 and the CA on 80 within {START_TIMEOUT:?}:\n{}",
            output()
        );
        std::thread::sleep(POLL);
    }
    let ready_after = started.elapsed();

    // `cargo run` replaces itself with the program (exec), so the child is the gateway.
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.0.id())).unwrap_or_default();
    assert!(
        exe.ends_with("release/sstp-gateway"),
        "the process serving is {}, not the release sstp-gateway",
        exe.display()
    );
    for file in ["ca.crt", "server.crt", "users.json"] {
        assert!(
            data_dir.join(file).is_file(),
            "./sstp-data/{file} was not created"
        );
    }
    let text = output();
    assert!(
        text.contains("sstp-gateway user add --users-file"),
        "the gateway did not print how to add a user:\n{text}"
    );

    let pid = Pid::from_raw(i32::try_from(child.0.id()).expect("pid fits i32"));
    kill(pid, Signal::SIGTERM).expect("sending SIGTERM");
    let term_sent = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the gateway") {
            break status;
        }
        assert!(
            term_sent.elapsed() < STOP_TIMEOUT,
            "the gateway still ran {STOP_TIMEOUT:?} after SIGTERM:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM: {status}\n{}",
        output()
    );
    Outcome {
        ready_after,
        stopped_after: term_sent.elapsed(),
    }
}

/// True once TLS on 443 (verified against the CA the gateway made), `/metrics` on 9090 and
/// `/sstp/ca.crt` on 80 all answer.
fn serving(data_dir: &Path) -> bool {
    let Ok(ca) = std::fs::read(data_dir.join("ca.crt")) else {
        return false;
    };
    tls_handshake(&ca).is_ok()
        && matches!(http_get(9090, "/metrics"), Ok((200, body)) if body.contains("sstp_sessions_active"))
        && matches!(http_get(80, "/sstp/ca.crt"), Ok((200, body)) if body.as_bytes() == ca.as_slice())
}

fn tls_handshake(ca: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let config: Arc<rustls::ClientConfig> = sstp_gateway::client::tls_config_with_ca(ca)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut conn = rustls::ClientConnection::new(config, name)?;
    let mut tcp = connect(443)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(())
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let tcp =
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(tcp)
}

fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    sstp_e2e::gateway_process::http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path)
}

/// Kills the child (SIGKILL) if it still runs when the test ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A scratch directory inside the workspace (so that `cargo run -p` finds the workspace from
/// it), under the git-ignored `target/`; removed at the end unless `SSTP_E2E_KEEP` is set.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(format!("readme-first-command.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating the scratch directory");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SSTP_E2E_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
