//! PPP authentication: the credential types, outcomes, and the MS-CHAPv2 and PAP exchanges.

pub(crate) mod chap;
pub mod mschapv2;
pub(crate) mod pap;

use std::{fmt, net::Ipv4Addr};

use subtle::ConstantTimeEq;

use crate::error::NtHashError;

/// An NT password hash: MD4 over the UTF-16LE password (RFC 2759 §8.3 NtPasswordHash).
/// Its `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct NtHash(pub [u8; 16]);

impl NtHash {
    /// Hashes a plaintext password.
    #[must_use]
    pub fn from_password(password: &str) -> Self {
        Self(mschapv2::nt_password_hash(password))
    }

    /// Parses 32 hex characters (either case), the form stored in the users document.
    pub fn from_hex(hex_str: &str) -> Result<Self, NtHashError> {
        if hex_str.len() != 32 {
            return Err(NtHashError::Length(hex_str.len()));
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(hex_str, &mut bytes).map_err(|_| NtHashError::NotHex)?;
        Ok(Self(bytes))
    }

    /// Lowercase hex, the inverse of [`NtHash::from_hex`].
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time equality, for password checks.
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for NtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NtHash(<redacted>)")
    }
}

/// The Higher-Layer Authentication Key SSTP crypto binding is keyed with ([MS-SSTP]
/// §3.2.5.2): for MS-CHAPv2 the server's MasterReceiveKey ‖ MasterSendKey, for PAP all zeros.
/// Its `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Hlak(pub [u8; 32]);

impl Hlak {
    /// The HLAK of methods that derive no keys (PAP), [MS-SSTP] §3.2.5.2.
    pub const ZERO: Self = Self([0; 32]);
}

impl fmt::Debug for Hlak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ZERO {
            f.write_str("Hlak::ZERO")
        } else {
            f.write_str("Hlak(<redacted>)")
        }
    }
}

/// The authentication method a session used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// MS-CHAPv2 (RFC 2759).
    MsChapV2,
    /// PAP (RFC 1334).
    Pap,
}

/// Why authentication failed. Every credential failure answers the peer identically
/// (MS-CHAPv2 E=691 or a PAP Nak) so a client cannot tell unknown users from wrong passwords;
/// the distinction is for logs and metrics only. The three refusals after verified credentials
/// ([`crate::Refusal`]) are told to the peer (E=649 with a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The password does not match.
    BadPassword,
    /// No such user.
    UnknownUser,
    /// The user is disabled.
    Disabled,
    /// The user's account has expired.
    Expired,
    /// The user failed too often recently.
    Throttled,
    /// The peer wants only methods the policy does not allow.
    MethodNotAllowed,
    /// The peer's authentication packet is malformed.
    Malformed,
    /// The peer never completed authentication.
    Timeout,
    /// Credentials right, but the user is at their session limit.
    SessionLimit,
    /// Credentials right, but no client address is free.
    AddressExhausted,
    /// Credentials right, but the gateway is at its session limit.
    GatewayFull,
}

impl From<crate::Refusal> for AuthFailure {
    fn from(refusal: crate::Refusal) -> Self {
        match refusal {
            crate::Refusal::SessionLimit => Self::SessionLimit,
            crate::Refusal::AddressExhausted => Self::AddressExhausted,
            crate::Refusal::GatewayFull => Self::GatewayFull,
        }
    }
}

impl AuthFailure {
    /// A stable lowercase label for metrics.
    #[must_use]
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::BadPassword => "bad_password",
            Self::UnknownUser => "unknown_user",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::Throttled => "throttled",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Malformed => "malformed",
            Self::Timeout => "timeout",
            Self::SessionLimit => "session_limit",
            Self::AddressExhausted => "address_exhausted",
            Self::GatewayFull => "gateway_full",
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric_label())
    }
}

/// The end of a server-side authentication exchange.
#[derive(Debug)]
pub(crate) enum AuthOutcome {
    Success {
        username: String,
        method: AuthMethod,
        hlak: Hlak,
        /// What the admission gave the peer.
        address: Ipv4Addr,
    },
    Failure {
        username: Option<String>,
        reason: AuthFailure,
    },
}

/// The end of a client-side authentication exchange.
#[derive(Debug)]
pub(crate) enum ClientAuthOutcome {
    Success { hlak: Hlak },
    Failure { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_hash_hex_round_trips_and_rejects_bad_input() {
        let hash = NtHash::from_password("clientPass");
        let hex_str = hash.to_hex();
        assert_eq!(hex_str, "44ebba8d5312b8d611474411f56989ae");
        assert_eq!(NtHash::from_hex(&hex_str.to_uppercase()).unwrap(), hash);
        assert_eq!(NtHash::from_hex("abc"), Err(NtHashError::Length(3)));
        assert_eq!(NtHash::from_hex(&"zz".repeat(16)), Err(NtHashError::NotHex));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let hash = NtHash([0xAB; 16]);
        assert!(!format!("{hash:?}").to_lowercase().contains("ab"));
        let hlak = Hlak([0xCD; 32]);
        assert!(!format!("{hlak:?}").to_lowercase().contains("cd"));
        assert_eq!(format!("{:?}", Hlak::ZERO), "Hlak::ZERO");
    }
}
