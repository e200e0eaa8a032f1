//! Error types of the crate.

/// Why a control packet or its options could not be parsed. Such packets are silently
/// discarded (RFC 1661 §5: "invalid packets are silently discarded").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PacketError {
    /// Fewer bytes than the header or the Length field promises.
    #[error("packet truncated")]
    Truncated,
    /// A Length field smaller than the header.
    #[error("packet length below header size")]
    BadLength,
    /// An option TLV with an impossible length.
    #[error("malformed option")]
    BadOption,
}

/// Why an NT hash could not be parsed from hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NtHashError {
    /// The string is not 32 characters long.
    #[error("NT hash must be 32 hex characters, got {0}")]
    Length(usize),
    /// The string has a character outside 0-9, a-f, A-F.
    #[error("NT hash is not hex")]
    NotHex,
}
