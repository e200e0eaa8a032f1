//! `sstp-load hold` run from the host against the gateway's Service (its NodePort): many sessions
//! of the project's client held and redialed as they end, for as long as a step of the scenario
//! takes, then stopped and its `RESULT` read.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use sstp_e2e::{Error, reaper::Reaper};

use super::chart_support::wait_until;

/// Where the load dials: the Service's NodePort on the node, the CA, a directory for its files.
pub(crate) struct Target<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) address: String,
    pub(crate) ca: PathBuf,
    pub(crate) user: &'a str,
    pub(crate) password: &'a str,
    /// Run inside this network namespace (a node's, to reach pod addresses), else on the host.
    pub(crate) netns: Option<&'a str>,
}

impl Target<'_> {
    /// `sstp-load MODE` against this target with its common flags; `tag` names the password
    /// file in the target's directory.
    pub(crate) fn command(&self, mode: &str, tag: &str) -> Result<Command, Error> {
        let bins = sstp_e2e::gateway_process::binaries()?;
        let password = self.dir.join(format!("{tag}-password"));
        std::fs::write(&password, format!("{}\n", self.password)).map_err(|source| Error::Io {
            what: "writing the password".into(),
            source,
        })?;
        let mut command = match self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&bins.load);
                command
            }
            None => Command::new(&bins.load),
        };
        command
            .arg(mode)
            .args(["--target", &self.address, "--server-name", "gw.test"])
            .args(["--user", self.user])
            .arg("--ca-cert")
            .arg(&self.ca)
            .arg("--password-file")
            .arg(&password)
            .stdin(Stdio::null());
        Ok(command)
    }
}

/// A running `sstp-load hold`; killed when dropped before [`HoldRun::finish`].
pub(crate) struct HoldRun {
    child: Reaper,
    ready: PathBuf,
    stop: PathBuf,
}

impl HoldRun {
    /// Starts `sessions` sessions (50 a second), each redialed up to `redial_attempts` times
    /// when it ends; `tag` names its files in the target's directory.
    pub(crate) fn start(
        target: &Target<'_>,
        tag: &str,
        sessions: u32,
        redial_attempts: u32,
    ) -> Result<Self, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        let (ready, stop) = (
            target.dir.join(format!("{tag}-ready")),
            target.dir.join(format!("{tag}-stop")),
        );
        let child = target
            .command("hold", tag)?
            .args(["--sessions", &sessions.to_string(), "--rate", "50"])
            .args(["--redial-attempts", &redial_attempts.to_string()])
            // Bounded even if the step never says stop.
            .args(["--duration", "900s"])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--stop-file")
            .arg(&stop)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("starting sstp-load hold"))?;
        Ok(Self {
            child: Reaper(Some(child)),
            ready,
            stop,
        })
    }

    /// Waits until every session was up once (or given up on).
    pub(crate) fn wait_ready(&self, bound: Duration) -> Result<(), Error> {
        wait_until("the load's sessions to be up", bound, || {
            Ok(self.ready.exists().then_some(()))
        })
    }

    /// Stops the load (every session disconnects) and returns its `RESULT` fields; prints its
    /// whole report, labelled `what`.
    pub(crate) fn finish(mut self, what: &str) -> Result<BTreeMap<String, String>, Error> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        std::fs::write(&self.stop, b"").map_err(io("writing the load's stop file"))?;
        let child = self.child.0.take().expect("the load process");
        let out = child
            .wait_with_output()
            .map_err(io("waiting for sstp-load hold"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "real-node: sstp-load hold {what} ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(result_fields(&stdout))
    }
}

/// A numeric field of a `RESULT`; panics (failing the test) naming what is missing.
pub(crate) fn field(result: &BTreeMap<String, String>, key: &str) -> u64 {
    result
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the load's result {result:?}"))
}

/// The `RESULT` fields of one `sstp-load` run to completion (e.g. `setup`).
pub(crate) fn run(mut command: Command, what: &str) -> Result<BTreeMap<String, String>, Error> {
    let out = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Error::Io {
            what: format!("running sstp-load {what}"),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "real-node: sstp-load {what} ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(result_fields(&stdout))
}

fn result_fields(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
