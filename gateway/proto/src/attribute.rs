//! SSTP attributes: the TLVs carried by control messages.
//!
//! See [MS-SSTP] §2.2.4–§2.2.8. Every attribute is `Reserved(1) | AttributeID(1) | R(4 bits) +
//! Length(12 bits) | Value`, where Length counts the 4-byte attribute header too.

use std::fmt;

use crate::packet::DecodeError;

sstp_ppp::wire_enum! {
    /// An attribute identifier. Unknown values are kept so they can be reported back to the peer.
    ///
    /// See [MS-SSTP] §2.2.4 and, for [`AttributeId::NO_ERROR`], §2.2.8.
    pub struct AttributeId(pub u8);
    debug = "AttributeId({:#04x})";
    /// `SSTP_ATTRIB_NO_ERROR`: only valid inside a STATUS_INFO's AttribID field.
    pub const NO_ERROR = 0x00, "NO_ERROR";
    /// `SSTP_ATTRIB_ENCAPSULATED_PROTOCOL_ID` (§2.2.5).
    pub const ENCAPSULATED_PROTOCOL_ID = 0x01, "ENCAPSULATED_PROTOCOL_ID";
    /// `SSTP_ATTRIB_STATUS_INFO` (§2.2.8).
    pub const STATUS_INFO = 0x02, "STATUS_INFO";
    /// `SSTP_ATTRIB_CRYPTO_BINDING` (§2.2.7).
    pub const CRYPTO_BINDING = 0x03, "CRYPTO_BINDING";
    /// `SSTP_ATTRIB_CRYPTO_BINDING_REQ` (§2.2.6).
    pub const CRYPTO_BINDING_REQ = 0x04, "CRYPTO_BINDING_REQ";
}

sstp_ppp::wire_enum! {
    /// The status carried in a STATUS_INFO attribute. See [MS-SSTP] §2.2.8.
    pub struct Status(pub u32);
    debug = "Status({:#x})";
    /// `ATTRIB_STATUS_NO_ERROR`.
    pub const NO_ERROR = 0x00, "NO_ERROR";
    /// `ATTRIB_STATUS_DUPLICATE_ATTRIBUTE`.
    pub const DUPLICATE_ATTRIBUTE = 0x01, "DUPLICATE_ATTRIBUTE";
    /// `ATTRIB_STATUS_UNRECOGNIZED_ATTRIBUTE`.
    pub const UNRECOGNIZED_ATTRIBUTE = 0x02, "UNRECOGNIZED_ATTRIBUTE";
    /// `ATTRIB_STATUS_INVALID_ATTRIB_VALUE_LENGTH`.
    pub const INVALID_ATTRIB_VALUE_LENGTH = 0x03, "INVALID_ATTRIB_VALUE_LENGTH";
    /// `ATTRIB_STATUS_VALUE_NOT_SUPPORTED`.
    pub const VALUE_NOT_SUPPORTED = 0x04, "VALUE_NOT_SUPPORTED";
    /// `ATTRIB_STATUS_UNACCEPTED_FRAME_RECEIVED`: a message not acceptable in the current state.
    pub const UNACCEPTED_FRAME_RECEIVED = 0x05, "UNACCEPTED_FRAME_RECEIVED";
    /// `ATTRIB_STATUS_RETRY_COUNT_EXCEEDED`.
    pub const RETRY_COUNT_EXCEEDED = 0x06, "RETRY_COUNT_EXCEEDED";
    /// `ATTRIB_STATUS_INVALID_FRAME_RECEIVED`: an unknown message type or frame format.
    pub const INVALID_FRAME_RECEIVED = 0x07, "INVALID_FRAME_RECEIVED";
    /// `ATTRIB_STATUS_NEGOTIATION_TIMEOUT`.
    pub const NEGOTIATION_TIMEOUT = 0x08, "NEGOTIATION_TIMEOUT";
    /// `ATTRIB_STATUS_ATTRIB_NOT_SUPPORTED_IN_MSG`.
    pub const ATTRIB_NOT_SUPPORTED_IN_MSG = 0x09, "ATTRIB_NOT_SUPPORTED_IN_MSG";
    /// `ATTRIB_STATUS_REQUIRED_ATTRIBUTE_MISSING`.
    pub const REQUIRED_ATTRIBUTE_MISSING = 0x0a, "REQUIRED_ATTRIBUTE_MISSING";
    /// `ATTRIB_STATUS_STATUS_INFO_NOT_SUPPORTED_IN_MSG`.
    pub const STATUS_INFO_NOT_SUPPORTED_IN_MSG = 0x0b, "STATUS_INFO_NOT_SUPPORTED_IN_MSG";
}

/// The protocol carried inside SSTP data packets. See [MS-SSTP] §2.2.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EncapsulatedProtocol(pub u16);

impl EncapsulatedProtocol {
    /// `SSTP_ENCAPSULATED_PROTOCOL_PPP`, the only value SSTP version 1 defines.
    pub const PPP: Self = Self(0x0001);
}

sstp_ppp::wire_enum! {
    /// The single hash algorithm a client chose for crypto binding. See [MS-SSTP] §2.2.7.
    pub struct HashProtocol(pub u8);
    debug = "HashProtocol({:#04x})";
    /// `CERT_HASH_PROTOCOL_SHA1`: 20-byte cert hash and HMAC-SHA1 compound MAC.
    pub const SHA1 = 0x01, "SHA1";
    /// `CERT_HASH_PROTOCOL_SHA256`: 32-byte cert hash and HMAC-SHA256 compound MAC.
    pub const SHA256 = 0x02, "SHA256";
}

impl HashProtocol {
    /// The digest length in bytes, or `None` for a value the spec does not define.
    #[must_use]
    pub fn digest_len(self) -> Option<usize> {
        match self {
            Self::SHA1 => Some(20),
            Self::SHA256 => Some(32),
            _ => None,
        }
    }
}

/// A set of hash algorithms, as the server offers them in CRYPTO_BINDING_REQ.
///
/// See [MS-SSTP] §2.2.6: bit 0 is SHA1, bit 1 is SHA256; the other bits are reserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashProtocolSet(pub u8);

impl HashProtocolSet {
    /// SHA1 only.
    pub const SHA1: Self = Self(HashProtocol::SHA1.0);
    /// SHA256 only.
    pub const SHA256: Self = Self(HashProtocol::SHA256.0);
    /// Both; what the server offers by default, because some clients leave when SHA1 is absent.
    pub const BOTH: Self = Self(HashProtocol::SHA1.0 | HashProtocol::SHA256.0);

    /// Whether `protocol` (one defined algorithm) is in the set.
    #[must_use]
    pub fn contains(self, protocol: HashProtocol) -> bool {
        protocol.digest_len().is_some() && self.0 & protocol.0 == protocol.0
    }

    /// The strongest algorithm in both `self` and `supported`, as a client picks it (§2.2.10).
    #[must_use]
    pub fn strongest_common(self, supported: Self) -> Option<HashProtocol> {
        [HashProtocol::SHA256, HashProtocol::SHA1]
            .into_iter()
            .find(|p| self.contains(*p) && supported.contains(*p))
    }
}

impl fmt::Debug for HashProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashProtocolSet({:#04x})", self.0)
    }
}

/// STATUS_INFO: which attribute a status refers to, why, and (in a NAK) the offending value.
///
/// See [MS-SSTP] §2.2.8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusInfo {
    /// The attribute the status is about (`AttributeId::NO_ERROR` for none).
    pub attribute: AttributeId,
    /// The reason.
    pub status: Status,
    /// The value the peer proposed; at most [`STATUS_INFO_MAX_VALUE`] bytes are kept.
    pub value: Vec<u8>,
}

impl StatusInfo {
    /// A status without an echoed value.
    #[must_use]
    pub fn new(attribute: AttributeId, status: Status) -> Self {
        Self {
            attribute,
            status,
            value: Vec::new(),
        }
    }

    /// The `0/0` status a CALL_DISCONNECT carries (§2.2.14).
    #[must_use]
    pub fn no_error() -> Self {
        Self::new(AttributeId::NO_ERROR, Status::NO_ERROR)
    }
}

/// CRYPTO_BINDING_REQ: the server's nonce and the hash algorithms it accepts. See [MS-SSTP] §2.2.6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoBindingRequest {
    /// Algorithms the client may choose from.
    pub hash_protocols: HashProtocolSet,
    /// Fresh random nonce the client must echo.
    pub nonce: [u8; NONCE_LEN],
}

/// CRYPTO_BINDING: the client's proof that the TLS and PPP endpoints are the same.
///
/// See [MS-SSTP] §2.2.7. For SHA1 the hash and MAC fields hold 20 bytes followed by 12 zero bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoBinding {
    /// The chosen algorithm.
    pub hash_protocol: HashProtocol,
    /// The server's nonce, echoed.
    pub nonce: [u8; NONCE_LEN],
    /// Hash of the server's leaf certificate (DER), zero-padded.
    pub cert_hash: [u8; 32],
    /// The compound MAC, zero-padded.
    pub compound_mac: [u8; 32],
}

/// One decoded attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// ENCAPSULATED_PROTOCOL_ID (§2.2.5).
    EncapsulatedProtocolId(EncapsulatedProtocol),
    /// STATUS_INFO (§2.2.8).
    StatusInfo(StatusInfo),
    /// CRYPTO_BINDING (§2.2.7).
    CryptoBinding(CryptoBinding),
    /// CRYPTO_BINDING_REQ (§2.2.6).
    CryptoBindingRequest(CryptoBindingRequest),
}

impl Attribute {
    /// The identifier written on the wire for this attribute.
    #[must_use]
    pub fn id(&self) -> AttributeId {
        match self {
            Self::EncapsulatedProtocolId(_) => AttributeId::ENCAPSULATED_PROTOCOL_ID,
            Self::StatusInfo(_) => AttributeId::STATUS_INFO,
            Self::CryptoBinding(_) => AttributeId::CRYPTO_BINDING,
            Self::CryptoBindingRequest(_) => AttributeId::CRYPTO_BINDING_REQ,
        }
    }

    /// Decodes the value of a raw attribute, checking its exact length.
    ///
    /// # Errors
    /// [`DecodeError::UnrecognizedAttribute`] for an unknown id and
    /// [`DecodeError::InvalidAttributeLength`] when the length does not match the spec.
    pub fn decode(raw: RawAttribute<'_>) -> Result<Self, DecodeError> {
        let id = raw.id;
        let bad_len = || DecodeError::InvalidAttributeLength(id);
        let v = raw.value;
        match raw.id {
            AttributeId::ENCAPSULATED_PROTOCOL_ID => {
                let bytes: [u8; 2] = v.try_into().map_err(|_| bad_len())?;
                Ok(Self::EncapsulatedProtocolId(EncapsulatedProtocol(
                    u16::from_be_bytes(bytes),
                )))
            }
            AttributeId::STATUS_INFO => {
                let (fixed, value) = v.split_first_chunk::<8>().ok_or_else(bad_len)?;
                if value.len() > STATUS_INFO_MAX_VALUE {
                    return Err(bad_len());
                }
                let [_, _, _, attribute, s0, s1, s2, s3] = *fixed;
                Ok(Self::StatusInfo(StatusInfo {
                    attribute: AttributeId(attribute),
                    status: Status(u32::from_be_bytes([s0, s1, s2, s3])),
                    value: value.to_vec(),
                }))
            }
            AttributeId::CRYPTO_BINDING => {
                let v: &[u8; CRYPTO_BINDING_VALUE_LEN] = v.try_into().map_err(|_| bad_len())?;
                let (head, rest) = v.split_first_chunk::<4>().ok_or_else(bad_len)?;
                let (nonce, rest) = rest.split_first_chunk::<NONCE_LEN>().ok_or_else(bad_len)?;
                let (cert_hash, rest) = rest.split_first_chunk::<32>().ok_or_else(bad_len)?;
                let compound_mac: [u8; 32] = rest.try_into().map_err(|_| bad_len())?;
                Ok(Self::CryptoBinding(CryptoBinding {
                    hash_protocol: HashProtocol(head[3]),
                    nonce: *nonce,
                    cert_hash: *cert_hash,
                    compound_mac,
                }))
            }
            AttributeId::CRYPTO_BINDING_REQ => {
                let v: &[u8; CRYPTO_BINDING_REQ_VALUE_LEN] = v.try_into().map_err(|_| bad_len())?;
                let (head, nonce) = v.split_first_chunk::<4>().ok_or_else(bad_len)?;
                Ok(Self::CryptoBindingRequest(CryptoBindingRequest {
                    hash_protocols: HashProtocolSet(head[3]),
                    nonce: nonce.try_into().map_err(|_| bad_len())?,
                }))
            }
            other => Err(DecodeError::UnrecognizedAttribute(other)),
        }
    }

    /// Appends the attribute, header included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::EncapsulatedProtocolId(p) => {
                write_attribute_header(out, self.id(), 2);
                out.extend_from_slice(&p.0.to_be_bytes());
            }
            Self::StatusInfo(info) => {
                let value = info
                    .value
                    .get(..STATUS_INFO_MAX_VALUE)
                    .unwrap_or(&info.value);
                write_attribute_header(out, self.id(), 8 + value.len());
                out.extend_from_slice(&[0, 0, 0, info.attribute.0]);
                out.extend_from_slice(&info.status.0.to_be_bytes());
                out.extend_from_slice(value);
            }
            Self::CryptoBinding(b) => {
                write_attribute_header(out, self.id(), CRYPTO_BINDING_VALUE_LEN);
                out.extend_from_slice(&[0, 0, 0, b.hash_protocol.0]);
                out.extend_from_slice(&b.nonce);
                out.extend_from_slice(&b.cert_hash);
                out.extend_from_slice(&b.compound_mac);
            }
            Self::CryptoBindingRequest(r) => {
                write_attribute_header(out, self.id(), CRYPTO_BINDING_REQ_VALUE_LEN);
                out.extend_from_slice(&[0, 0, 0, r.hash_protocols.0]);
                out.extend_from_slice(&r.nonce);
            }
        }
    }
}

/// An attribute split out of a control message but not yet interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The attribute id.
    pub id: AttributeId,
    /// The value, without the 4-byte attribute header.
    pub value: &'a [u8],
}

/// Splits `body` into exactly `count` attributes.
///
/// # Errors
/// [`DecodeError::InvalidAttributeLength`] when a length field is below the header size or runs
/// past the end, [`DecodeError::AttributeCount`] when fewer attributes than announced are present,
/// and [`DecodeError::TrailingBytes`] when bytes are left after the last one.
pub fn split_attributes(mut body: &[u8], count: u16) -> Result<Vec<RawAttribute<'_>>, DecodeError> {
    let mut attributes = Vec::with_capacity(usize::from(count).min(4));
    for found in 0..count {
        let Some((&[_, id, hi, lo], rest)) = body.split_first_chunk::<ATTRIBUTE_HEADER_LEN>()
        else {
            return Err(DecodeError::AttributeCount {
                declared: count,
                found,
            });
        };
        let id = AttributeId(id);
        let len = usize::from(u16::from_be_bytes([hi & 0x0f, lo]));
        let value_len = len.checked_sub(ATTRIBUTE_HEADER_LEN);
        let Some((value, rest)) = value_len.and_then(|n| rest.split_at_checked(n)) else {
            return Err(DecodeError::InvalidAttributeLength(id));
        };
        attributes.push(RawAttribute { id, value });
        body = rest;
    }
    if body.is_empty() {
        Ok(attributes)
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

fn write_attribute_header(out: &mut Vec<u8>, id: AttributeId, value_len: usize) {
    // Every attribute this crate writes is at most 4 + 8 + 64 bytes, far below the 12-bit limit.
    let len = u16::try_from(ATTRIBUTE_HEADER_LEN + value_len).unwrap_or(u16::MAX) & 0x0fff;
    out.push(0);
    out.push(id.0);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Size of the attribute header: Reserved, AttributeID, R + Length. See [MS-SSTP] §2.2.4.
pub const ATTRIBUTE_HEADER_LEN: usize = 4;
/// Size of the crypto-binding nonce. See [MS-SSTP] §2.2.6.
pub const NONCE_LEN: usize = 32;
/// Longest AttribValue a STATUS_INFO may echo. See [MS-SSTP] §2.2.8.
pub const STATUS_INFO_MAX_VALUE: usize = 64;
/// CRYPTO_BINDING value: Reserved(3), HashProtocol(1), Nonce(32), CertHash(32), MAC(32) (§2.2.7).
const CRYPTO_BINDING_VALUE_LEN: usize = 100;
/// CRYPTO_BINDING_REQ value: Reserved(3), Bitmask(1), Nonce(32) (§2.2.6).
const CRYPTO_BINDING_REQ_VALUE_LEN: usize = 36;

#[cfg(test)]
mod tests;
