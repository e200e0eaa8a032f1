//! The contract between the SSTP operator and its gateways.
//!
//! The operator renders two documents that each gateway pod mounts and reads:
//!
//! - [`gateway_config::GatewayConfig`]: the gateway's configuration file (`config.json`, from
//!   ConfigMap `<gw>-config`), read once at start by `sstp-gateway run --config FILE`.
//! - [`users::UsersDocument`]: the users document (`users.json`, from Secret `<gw>-users`), which
//!   the gateway reloads live.
//!
//! Both are JSON with camelCase keys and reject unknown keys, so a typo in a hand-written file is
//! an error that names the line and column instead of a silently ignored setting. Both have a JSON
//! Schema through [`schemars`].
//!
//! The custom resources (group `sstp.io`, version `v1alpha1`) live beside them:
//! [`gateway::SstpGateway`] and [`user::SstpUser`], with the status [`condition`] helpers both use.
//! [`crds`] returns their CustomResourceDefinitions (what `crdgen` writes to `crds/`). This crate
//! does no I/O and no hashing: NT hashes arrive here already computed (`sstp-ppp` owns the MD4
//! code).
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod condition;
pub mod gateway;
pub mod gateway_config;
pub mod user;
pub mod users;
#[cfg(feature = "watch-backoff")]
pub mod watch_backoff;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use gateway::{SstpGateway, SstpGatewaySpec, SstpGatewayStatus};
pub use gateway_config::{ConfigError, GatewayConfig};
pub use user::{SstpUser, SstpUserSpec, SstpUserStatus};
pub use users::{UserEntry, UsersDocument, UsersDocumentError};

/// The CustomResourceDefinitions of this API, with the file name each is written to in `crds/`.
pub fn crds() -> [(&'static str, CustomResourceDefinition); 2] {
    [
        ("sstpgateway.yaml", SstpGateway::crd()),
        ("sstpuser.yaml", SstpUser::crd()),
    ]
}

/// Where a JSON document failed to parse: 1-based line and column, as serde_json reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number.
    pub column: usize,
}

impl Position {
    fn of(err: &serde_json::Error) -> Self {
        Self {
            line: err.line(),
            column: err.column(),
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// serde_json's message without the " at line L column C" it appends (we report [`Position`]).
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix)
        .map_or_else(|| text.clone(), str::to_owned)
}
