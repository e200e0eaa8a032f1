//! SSTP attributes: the TLVs carried by control messages.
//!
//! See [MS-SSTP] §2.2.4–§2.2.8. Every attribute is `Reserved(1) | AttributeID(1) | R(4 bits) +
//! Length(12 bits) | Value`, where Length counts the 4-byte attribute header too.

use crate::error::DecodeError;
// Defined in the wire layer; re-exported where they were first published.
pub use crate::wire::{AttributeId, EncapsulatedProtocol, HashProtocol, HashProtocolSet, Status};

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
