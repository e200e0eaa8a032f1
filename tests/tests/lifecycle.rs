//! A control plane of its own (not the shared one) stops and leaves nothing behind when dropped.

use std::path::Path;

use sstp_e2e::{ControlPlane, Error};

/// Reads the pid a component of the control plane wrote into its state directory.
fn pid_of(state_dir: &Path, component: &str) -> Result<String, Error> {
    let file = state_dir.join(format!("{component}.pid"));
    std::fs::read_to_string(&file)
        .map(|pid| pid.trim().to_owned())
        .map_err(|source| Error::Io {
            what: format!("reading {}", file.display()),
            source,
        })
}

/// K8S_VERSION from tests/k8s/versions.env.
fn pinned_kubernetes_version() -> Result<String, Error> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/versions.env");
    let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
        what: format!("reading {}", file.display()),
        source,
    })?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("K8S_VERSION="))
        .unwrap_or_default()
        .trim()
        .to_owned())
}

#[tokio::test]
async fn a_dropped_control_plane_stops_its_processes_and_removes_its_state() -> Result<(), Error> {
    let control_plane = ControlPlane::start()?;
    let state_dir = control_plane
        .state_dir()
        .ok_or_else(|| Error::Unavailable("a started control plane has a state dir".to_owned()))?
        .to_owned();
    let client = control_plane.client().await?;
    // The binaries carry the pinned release, not an unstamped v0.0.0-master.
    let pinned = pinned_kubernetes_version()?;
    assert_eq!(client.apiserver_version().await?.git_version, pinned);

    let pids = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .map(|component| pid_of(&state_dir, component));
    drop(client);
    drop(control_plane);

    assert!(
        !state_dir.exists(),
        "{} is still there",
        state_dir.display()
    );
    for pid in pids {
        let pid = pid?;
        assert!(
            !Path::new("/proc").join(&pid).exists(),
            "process {pid} outlived its control plane"
        );
    }
    Ok(())
}
