//! The `SstpUser` custom resource: one person who may connect, and where their password is.
//!
//! The operator never writes a user's spec (GitOps tools must see no drift): a generated
//! password goes into Secret `<name>-credentials`, and everything else it decides goes in status.

#![expect(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats type_ = \"string\"; the lint reads them as duplicates"
)]
#![expect(
    unreachable_pub,
    reason = "the KubeSchema derive copies each struct as a pub item inside a private scope"
)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Desired state of a VPN user.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sstp.io",
    version = "v1alpha1",
    kind = "SstpUser",
    namespaced,
    status = "SstpUserStatus",
    shortname = "sstpuser",
    category = "sstp",
    derive = "PartialEq",
    doc = "A user of the SSTP gateways in this namespace",
    printcolumn(name = "Username", type_ = "string", json_path = ".spec.username"),
    printcolumn(name = "Disabled", type_ = "boolean", json_path = ".spec.disabled"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Sessions",
        type_ = "integer",
        json_path = ".status.activeSessions"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SstpUserSpec {
    /// The name typed into the client (default: the object's name). At most 256 bytes, no
    /// control characters, no leading or trailing blanks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.size() <= 256 && self.trim() == self && !self.matches('[\\\\x00-\\\\x1f\\\\x7f]')").message("username must be 1-256 printable characters without leading or trailing blanks"))]
    #[schemars(length(max = 256))]
    pub username: Option<String>,
    /// The Secret key holding the plaintext password; absent makes the operator generate one
    /// into Secret `<name>-credentials` (key `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<PasswordSecretRef>,
    /// A disabled user cannot log in and their sessions end.
    #[serde(default)]
    pub disabled: bool,
    /// The tunnel address this user always gets (IPv4, inside the gateway's pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isIP(self) && ip(self).family() == 4").message("staticAddress must be an IPv4 address"))]
    #[schemars(length(max = 15))]
    pub static_address: Option<String>,
    /// Concurrent sessions of this user on each gateway pod (overrides the gateway's per-user
    /// limit; pods do not share counts, so across a gateway of N pods it is up to N times this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("maxSessions must be at least 1"))]
    pub max_sessions: Option<i32>,
    /// From this instant on the user cannot log in (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub groups: Vec<String>,
}

/// Where a user's password is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretRef {
    /// Secret name in the user's namespace.
    #[x_kube(validation = Rule::new(crate::gateway::DNS_SUBDOMAIN_RULE).message("passwordSecretRef.name must be a Secret name"))]
    #[schemars(length(max = 253))]
    pub name: String,
    /// Key in the Secret (default `password`).
    #[serde(default = "default_password_key")]
    pub key: String,
}

/// Observed state of a user.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SstpUserStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the password is readable and the user is active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Gateways in the namespace whose selector accepts this user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// The Secret holding a generated password, when the operator generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// This user's sessions on the gateways above, counted every few seconds from the gateway
    /// pods; absent while not yet counted and where a gateway leaves user names out
    /// (`spec.logging.omitUserNames`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_sessions: Option<i32>,
}

impl SstpUser {
    /// The login name: `spec.username`, else the object's name.
    pub fn login_name(&self) -> String {
        self.spec
            .username
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }

    /// The name of the Secret a generated password goes into.
    pub fn credentials_secret_name(&self) -> String {
        format!(
            "{}{CREDENTIALS_SUFFIX}",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// Where this user's password is: the given reference, else the generated credentials.
    pub fn password_ref(&self) -> PasswordSecretRef {
        self.spec
            .password_secret_ref
            .clone()
            .unwrap_or_else(|| PasswordSecretRef {
                name: self.credentials_secret_name(),
                key: default_password_key(),
            })
    }
}

fn default_password_key() -> String {
    PASSWORD_KEY.to_owned()
}

/// Key of the password in a credentials Secret (and the default key of a reference).
pub const PASSWORD_KEY: &str = "password";
/// Suffix of the generated credentials Secret's name.
pub const CREDENTIALS_SUFFIX: &str = "-credentials";
