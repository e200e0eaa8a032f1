//! A test body inside a fresh network namespace of its own, for the gateway's unit and
//! integration tests (TUN devices, nftables, sockets) that must not touch the host's.
//!
//! The body runs on its own thread, which leaves the test process's namespace with
//! `unshare(CLONE_NEWNET)`; namespaces are per thread on Linux, so the rest of the test binary is
//! untouched. Anything the body creates there (TUN devices, nftables tables, sockets, the
//! processes it spawns, tokio workers it starts) lives in that namespace, and the kernel destroys
//! the namespace with all of it once the thread and its file descriptors are gone: cleanup needs
//! no code, happens on panic too, and even when the test process is killed. That is why this
//! beats `ip netns add` ([`crate::netns`]), whose named namespaces outlive a crashed test.

use std::process::Command;

use nix::{
    sched::{CloneFlags, unshare},
    unistd::Uid,
};

/// Runs `body` in a new network namespace with loopback up and returns what it returns; a panic
/// in it is the caller's panic. `None` (after saying why on stderr, naming `test`) when not root,
/// since only root may create namespaces, TUN devices and nftables tables here.
pub fn in_new_netns<T: Send + 'static>(
    test: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if !Uid::effective().is_root() {
        eprintln!("SKIPPED {test}: needs root (network namespaces, TUN, nftables)");
        return None;
    }
    let thread = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) as root");
        run(&["ip", "link", "set", "lo", "up"]);
        body()
    });
    match thread.join() {
        Ok(value) => Some(value),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a command (inside the calling thread's namespace) and returns its stdout; panics with
/// its stderr if it fails.
pub fn run(argv: &[&str]) -> String {
    let (program, args) = argv.split_first().expect("a command line");
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{argv:?} did not start: {error}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
