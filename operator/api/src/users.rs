//! The users document (`users.json`): who may connect to a gateway, and with which NT hash.
//!
//! The operator writes it into Secret `<gw>-users`; a standalone gateway reads it from a file. It
//! never holds a plaintext password, only the NT hash (MD4 of the UTF-16LE password, as MS-CHAPv2
//! needs it), written as 32 hex digits.
//!
//! ```json
//! {
//!   "version": 1,
//!   "users": {
//!     "alice": { "ntHash": "8846f7eaee8fb117ad06bdd830b7586c", "staticAddress": "10.8.0.10" },
//!     "bob": { "ntHash": "...", "disabled": true, "expiresAt": "2027-01-01T00:00:00Z" }
//!   }
//! }
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::Ipv4Addr,
};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Position;

/// The only version of the users document this crate reads and writes.
pub const USERS_DOCUMENT_VERSION: u32 = 1;

/// The users document: a version and a map from user name to [`UserEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsersDocument {
    /// Document format version; must be [`USERS_DOCUMENT_VERSION`].
    pub version: u32,
    /// Users by name (the name the client sends in MS-CHAPv2 / PAP).
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

/// One user's entry in the users document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserEntry {
    /// NT password hash: MD4 of the UTF-16LE password, 32 hex digits. Never the plaintext.
    pub nt_hash: NtHashHex,
    /// A disabled user cannot authenticate; their sessions are ended.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// The tunnel address this user always gets; reserved in the pool, never handed to others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_address: Option<Ipv4Addr>,
    /// At most this many concurrent sessions (overrides the gateway's per-user limit). Not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// From this instant on (RFC 3339, with offset) the user cannot authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<Timestamp>,
    /// Free-form group names (for policy later; not used in metric labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// An NT hash written as hex. `Debug` prints nothing of the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct NtHashHex(pub String);

/// Why a users document was refused. Each message names the line and column or the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersDocumentError {
    /// The text is not JSON, or does not match the document's shape.
    #[error("invalid users document at {position}: {message}")]
    Syntax {
        /// Where serde_json stopped.
        position: Position,
        /// serde_json's message, without its position suffix.
        message: String,
    },
    /// The `version` field names a format this gateway does not know.
    #[error(
        "unsupported users document version {found} (this gateway reads version {USERS_DOCUMENT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found in the document.
        found: u32,
    },
    /// The user name itself is unusable.
    #[error("user name {user:?} is invalid: {problem}")]
    InvalidUserName {
        /// The offending name, escaped by `{:?}`.
        user: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A field of one user's entry is wrong.
    #[error("user {user:?}: {problem}")]
    InvalidEntry {
        /// The user whose entry is wrong.
        user: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two users claim the same static address.
    #[error("users {first:?} and {second:?} both have static address {address}")]
    DuplicateStaticAddress {
        /// The address claimed twice.
        address: Ipv4Addr,
        /// The first user (in name order) that claims it.
        first: String,
        /// The second user that claims it.
        second: String,
    },
}

impl UsersDocumentError {
    /// The error without any user name, for logs above debug level (user names stay out of
    /// them). Positions, versions, addresses and the problem text are kept.
    pub fn without_user_names(&self) -> String {
        match self {
            Self::Syntax { .. } | Self::UnsupportedVersion { .. } => self.to_string(),
            Self::InvalidUserName { problem, .. } => format!("a user name is invalid: {problem}"),
            Self::InvalidEntry { problem, .. } => format!("a user entry is invalid: {problem}"),
            Self::DuplicateStaticAddress { address, .. } => {
                format!("two users both have static address {address}")
            }
        }
    }
}

impl UsersDocument {
    /// An empty version-1 document.
    pub fn new() -> Self {
        Self {
            version: USERS_DOCUMENT_VERSION,
            users: BTreeMap::new(),
        }
    }

    /// Parses and validates a users document from JSON text.
    pub fn from_json(text: &str) -> Result<Self, UsersDocumentError> {
        let doc: Self = match serde_json::from_str(text) {
            Ok(doc) => doc,
            Err(err) => return Err(version_error(text).unwrap_or_else(|| syntax_error(&err))),
        };
        doc.validate()?;
        Ok(doc)
    }

    /// Renders the document as pretty JSON (what the operator writes into the Secret).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a UsersDocument always serializes")
    }

    /// Checks what the types cannot: version, names, hash format, limits, unique static addresses.
    pub fn validate(&self) -> Result<(), UsersDocumentError> {
        if self.version != USERS_DOCUMENT_VERSION {
            return Err(UsersDocumentError::UnsupportedVersion {
                found: self.version,
            });
        }
        let mut by_address: HashMap<Ipv4Addr, &str> = HashMap::new();
        for (name, entry) in &self.users {
            check_user_name(name)?;
            entry
                .validate()
                .map_err(|problem| UsersDocumentError::InvalidEntry {
                    user: name.clone(),
                    problem,
                })?;
            if let Some(address) = entry.static_address
                && let Some(first) = by_address.insert(address, name)
            {
                return Err(UsersDocumentError::DuplicateStaticAddress {
                    address,
                    first: first.to_owned(),
                    second: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The JSON Schema of the document.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(Self)
    }
}

impl Default for UsersDocument {
    fn default() -> Self {
        Self::new()
    }
}

impl UserEntry {
    /// An enabled user with only an NT hash.
    pub fn new(nt_hash: NtHashHex) -> Self {
        Self {
            nt_hash,
            disabled: false,
            static_address: None,
            max_sessions: None,
            expires_at: None,
            groups: Vec::new(),
        }
    }

    /// Whether the user may authenticate at `now`: not disabled and not expired.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        !self.disabled && self.expires_at.is_none_or(|expiry| now < expiry)
    }

    fn validate(&self) -> Result<(), String> {
        if self.nt_hash.to_bytes().is_none() {
            return Err(format!(
                "ntHash must be 32 hex digits (MD4 of the UTF-16LE password), found {} characters",
                self.nt_hash.0.chars().count()
            ));
        }
        if self.max_sessions == Some(0) {
            return Err(
                "maxSessions must be at least 1 (set disabled: true to lock a user out)".into(),
            );
        }
        for group in &self.groups {
            if group.is_empty() || group.chars().any(char::is_control) {
                return Err(format!("group {group:?} must be non-empty and printable"));
            }
        }
        Ok(())
    }
}

impl NtHashHex {
    /// Writes the 16 hash bytes as 32 lowercase hex digits.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The 16 hash bytes, or `None` if the text is not exactly 32 hex digits (either case).
    pub fn to_bytes(&self) -> Option<[u8; 16]> {
        let digits = self.0.as_bytes();
        if digits.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(text, 16).ok()?;
        }
        Some(out)
    }
}

impl fmt::Debug for NtHashHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NtHashHex(<redacted>)")
    }
}

/// A user name is what the Windows client sends; it must be something a person could type.
fn check_user_name(name: &str) -> Result<(), UsersDocumentError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_USER_NAME_BYTES {
        Some("it is longer than 256 bytes (the MS-CHAPv2 limit, RFC 2759 §8.2)")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if name.trim() != name {
        Some("it starts or ends with whitespace")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(UsersDocumentError::InvalidUserName {
            user: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// A document from a newer operator fails on its unknown fields; say "version" instead.
fn version_error(text: &str) -> Option<UsersDocumentError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let found = serde_json::from_str::<VersionOnly>(text).ok()?.version;
    (found != USERS_DOCUMENT_VERSION).then_some(UsersDocumentError::UnsupportedVersion { found })
}

fn syntax_error(err: &serde_json::Error) -> UsersDocumentError {
    UsersDocumentError::Syntax {
        position: Position::of(err),
        message: crate::strip_position(err),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// MS-CHAPv2 hashes the user name as a "0-to-256-char UserName" (RFC 2759 §8.2, ChallengeHash).
const MAX_USER_NAME_BYTES: usize = 256;

#[cfg(test)]
mod tests;
