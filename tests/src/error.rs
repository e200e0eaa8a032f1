//! Errors of the harness.

use std::path::PathBuf;

/// Why the harness could not provide a control plane, a client or a namespace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `tests/k8s/build` failed or could not be run.
    #[error("building the control plane binaries with {script}: {reason}")]
    Build {
        /// The build script.
        script: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `tests/k8s/up` could not be started or did not report a ready control plane.
    #[error("starting the control plane: {0}")]
    Start(String),
    /// The shared control plane failed to come up (on first use, with this message).
    #[error("{0}")]
    Unavailable(String),
    /// The kubeconfig could not be read or turned into a client.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A call to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A program or file operation of a test failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Prometheus HTTP API answered with an error or something that is not its JSON.
    #[error("prometheus: {0}")]
    Prometheus(String),
    /// A condition did not hold within its timeout.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: std::time::Duration,
    },
}
