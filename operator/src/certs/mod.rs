//! The three certificate modes of a gateway. Each turns what is stored into what `<gw>-tls`
//! should hold plus the facts for `CertificateReady` and status; none of them does I/O.
//!
//! - [`self_managed`]: the built-in CA, one per gateway (in `<gw>-ca`). Per gateway rather than
//!   per namespace so that deleting a gateway takes its CA with it through the owner reference,
//!   two gateways in one namespace never share a key, and no finalizer is needed.
//! - [`cert_manager`]: a cert-manager `Certificate` whose Secret is then checked like BYO.
//! - [`byo`]: a Secret someone else fills; checked for names, EKU, expiry and key.

pub mod byo;
pub mod cert_manager;
pub mod self_managed;

use jiff::Timestamp;
use sstp_pki::CertInfo;

/// A served certificate that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Facts about the leaf.
    pub info: CertInfo,
    /// When to look again: the renewal time (self-managed) or the expiry.
    pub revisit_at: Timestamp,
}

/// `notAfter` as RFC 3339.
pub fn not_after_text(info: &CertInfo) -> String {
    Timestamp::from_second(info.not_after)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Unix seconds of a timestamp (what `CertInfo` uses).
pub(crate) fn unix(time: Timestamp) -> i64 {
    time.as_second()
}

/// A `time::OffsetDateTime` (what the PKI code takes) for a timestamp.
pub(crate) fn offset(time: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(time.as_second())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
