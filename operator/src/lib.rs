//! The SSTP operator: turns `SstpGateway` and `SstpUser` objects into running, certificate-managed
//! gateways whose users change live.
//!
//! ```text
//!  SstpUser ──┐                 ┌─> Secret <gw>-users (users document, NT hashes only)
//!  Secrets  ──┼─> gateway   ────┼─> Secret <gw>-tls (+ <gw>-ca), ConfigMap <gw>-config
//!  SstpGateway┘   reconciler    └─> Deployment, Service, SA/Role/RoleBinding, PDB, ServiceMonitor
//!  SstpUser ────> user reconciler ─> Secret <user>-credentials (generated password), status
//! ```
//!
//! - [`resources`]: pure builders of every child object, unit-tested without a cluster.
//! - [`certs`]: the built-in CA, cert-manager and bring-your-own certificate modes.
//! - [`controller`]: the two reconcilers, server-side apply with one field manager, status.
//! - [`census`]: the leader asks each gateway pod for its sessions and writes the counts into
//!   `status.activeSessions` of gateways and users (its own field manager).
//! - [`leader`], [`metrics`], [`admin`]: leader election over a Lease, Prometheus metrics, and the
//!   `/metrics` `/healthz` `/readyz` server.
//! - [`run`]: everything together, as the binary and the tests start it.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod admin;
pub mod census;
pub mod certs;
pub mod controller;
pub mod crdgen;
pub mod leader;
pub mod metrics;
pub mod resources;
mod run;

pub use run::{DEFAULT_LEASE_DURATION, DEFAULT_LEASE_GRACE, RunError, Settings, run};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks something the API server always sets (namespace, name, uid).
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// Building the certificate failed.
    #[error("certificate: {0}")]
    Pki(#[from] sstp_pki::PkiError),
    /// A rendered document did not pass its own validation.
    #[error("rendered {what} is invalid: {problem}")]
    Render {
        /// Which document.
        what: &'static str,
        /// Why.
        problem: String,
    },
    /// Serializing an object failed.
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// Every value [`Error::metric_label`] gives: the errors metric exports each from the start,
    /// at zero, so the first failure is already an increase an alert can see.
    pub const METRIC_LABELS: [&'static str; 5] =
        ["kube", "missing_field", "pki", "render", "serialize"];

    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::MissingField(_) => "missing_field",
            Self::Pki(_) => "pki",
            Self::Render { .. } => "render",
            Self::Serialize(_) => "serialize",
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The field manager of every write this operator makes (server-side apply).
pub const FIELD_MANAGER: &str = "sstp-operator";
