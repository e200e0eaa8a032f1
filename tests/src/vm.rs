//! The real SSTP client's VM (`tests/vm/run`) as a child process of a test.
//!
//! `tests/vm/run` boots the Debian kernel under qemu over this machine's root filesystem and runs
//! one guest script; it kills qemu's process group when it exits or receives SIGTERM. [`VmRun`]
//! keeps the `run` process and sends it SIGTERM from `Drop` (then SIGKILL if it lingers), so a
//! failing test never leaves a VM behind. Files come back through a host directory shared
//! read-write with the guest (`--rwdir`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use crate::{Error, gateway_process::signal, poll_until};

/// How often [`VmRun::wait_for_file`] and [`VmRun::wait`] look again.
const POLL: Duration = Duration::from_millis(100);
/// How long `run` gets to kill qemu after SIGTERM before it is killed itself.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The helpers guest scripts source (`tests/vm/guest-lib.sh`): calls with sstpc, the pppd
/// wrapper, the rule for sstpc's post-handshake race, the checksummed transfer.
const GUEST_LIB: &str = include_str!("../vm/guest-lib.sh");

/// Writes [`GUEST_LIB`] into `dir` (a directory the guest shares) and returns its path, for the
/// guest script's `GUEST_LIB` variable.
pub fn write_guest_lib(dir: &Path) -> Result<PathBuf, Error> {
    let path = dir.join("guest-lib.sh");
    std::fs::write(&path, GUEST_LIB).map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(path)
}

/// Whether the VM harness is installed here (`tests/vm/install` was run): `None` if so, else
/// the reason it is not.
pub fn vm_unavailable() -> Option<String> {
    let vng = Path::new("/opt/virtme-ng-1.42/bin/vng");
    if !vng.exists() {
        return Some(format!("{} missing: run tests/vm/install", vng.display()));
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("the VM needs root (qemu reads /boot/vmlinuz-*)".into());
    }
    None
}

/// A guest script running in a fresh VM.
#[derive(Debug)]
pub struct VmRun {
    child: Child,
    exit: Option<ExitStatus>,
    log: PathBuf,
}

impl VmRun {
    /// Boots a VM running `script` with `env` exported, `shared` shared read-write at the same
    /// path, the whole run bounded by `timeout` (inside `run`, which kills qemu at expiry).
    /// The VM's console goes to `log`.
    pub fn start(
        script: &Path,
        env: &[(&str, String)],
        shared: &Path,
        timeout: Duration,
        log: &Path,
    ) -> Result<Self, Error> {
        let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run");
        let mut command = Command::new(&run);
        command
            .args(["--timeout", &timeout.as_secs().to_string()])
            .arg("--log")
            .arg(log)
            .arg("--rwdir")
            .arg(shared);
        for (name, value) in env {
            command.args(["-e", &format!("{name}={value}")]);
        }
        let child = command
            .arg(script)
            .stdin(Stdio::null())
            // `run` echoes the console too; the log file has it all.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("starting {}", run.display()),
                source,
            })?;
        Ok(Self {
            child,
            exit: None,
            log: log.to_owned(),
        })
    }

    /// Waits until `path` exists (the guest wrote it through the shared directory). Fails at
    /// once if the VM ends first, and after `timeout` otherwise.
    pub fn wait_for_file(&mut self, path: &Path, timeout: Duration) -> Result<(), Error> {
        // Some(None): the file is there; Some(Some(status)): the VM ended first.
        let outcome = poll_until(timeout, POLL, || {
            if path.exists() {
                return Ok(Some(None));
            }
            Ok(self.try_wait()?.map(Some))
        })?;
        match outcome {
            Some(None) => Ok(()),
            Some(Some(status)) => Err(Error::Unavailable(format!(
                "the VM ended ({status}) before writing {}; console tail:\n{}",
                path.display(),
                self.console_tail(60)
            ))),
            // The console says where the guest is (its steps log there): without it a stuck
            // guest leaves nothing to go on once the VM is killed.
            None => Err(Error::Unavailable(format!(
                "the guest did not write {} within {timeout:?}; console tail:\n{}",
                path.display(),
                self.console_tail(60)
            ))),
        }
    }

    /// Waits up to `timeout` for the VM to end; returns `run`'s exit status (the script's).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        match poll_until(timeout, POLL, || self.try_wait())? {
            Some(status) => Ok(status),
            None => Err(Error::Unavailable(format!(
                "the VM did not finish within {timeout:?}; console tail:\n{}",
                self.console_tail(60)
            ))),
        }
    }

    /// The last `lines` lines of the console log (NULs from sstpc's log lines removed).
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text).replace('\0', "");
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| Error::Io {
                what: "waiting for tests/vm/run".into(),
                source,
            })?;
        }
        Ok(self.exit)
    }
}

impl Drop for VmRun {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SIGTERM lets `run` kill qemu's process group; SIGKILL would orphan qemu.
        let _ = signal(self.child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
