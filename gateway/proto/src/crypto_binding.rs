//! Crypto binding: ties the TLS server certificate to the PPP authentication.
//!
//! See [MS-SSTP] §3.2.5.2 (computation) and §3.3.5.2.3 (server checks). Pure functions: the
//! certificate, the HLAK (from PPP) and the CALL_CONNECTED bytes are inputs.
//!
//! ```text
//! CMK  = HMAC-H(HLAK, "SSTP inner method derived CMK" || LEN (u16 little-endian) || 0x01)
//! CMAC = HMAC-H(CMK, the 112-byte CALL_CONNECTED with its 32-byte MAC field zeroed)
//! ```
//! CMK is the first block of IKEv2's PRF+, which is all SSTP needs (LEN = digest size).

use hmac::{Hmac, KeyInit, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::attribute::{CryptoBinding, HashProtocol, HashProtocolSet, NONCE_LEN};
use crate::control::ControlMessage;

/// SHA1 and SHA256 of the DER-encoded leaf certificate a connection was served.
#[derive(Clone, PartialEq, Eq)]
pub struct CertHashes {
    /// SHA1 of the DER.
    pub sha1: [u8; 20],
    /// SHA256 of the DER.
    pub sha256: [u8; 32],
}

impl CertHashes {
    /// Hashes a DER-encoded certificate, as the TLS layer sent it.
    #[must_use]
    pub fn from_der(leaf_der: &[u8]) -> Self {
        Self {
            sha1: Sha1::digest(leaf_der).into(),
            sha256: Sha256::digest(leaf_der).into(),
        }
    }

    /// The 32-byte CertHash field for `protocol` (SHA1 zero-padded), or `None` for an undefined
    /// algorithm.
    #[must_use]
    pub fn field(&self, protocol: HashProtocol) -> Option<[u8; 32]> {
        match protocol {
            HashProtocol::SHA1 => Some(pad20(&self.sha1)),
            HashProtocol::SHA256 => Some(self.sha256),
            _ => None,
        }
    }
}

impl std::fmt::Debug for CertHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertHashes { sha256: ")?;
        for b in &self.sha256 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(", .. }")
    }
}

/// Why a CALL_CONNECTED failed the server's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The nonce is not the one sent in CALL_CONNECT_ACK.
    #[error("nonce does not match")]
    Nonce,
    /// The hash protocol was not offered (or is undefined).
    #[error("hash protocol {0:?} was not offered")]
    HashProtocol(HashProtocol),
    /// The certificate hash is not the hash of the certificate served on this connection.
    #[error("certificate hash does not match")]
    CertHash,
    /// The compound MAC is wrong (typically a wrong HLAK: a relayed authentication).
    #[error("compound MAC does not match")]
    CompoundMac,
}

/// Derives the compound MAC key from the HLAK (§3.2.5.2.2 and §3.2.5.2.4). The SHA1 key is 20
/// bytes, zero-padded here to 32; only the first 20 are used.
#[must_use]
pub fn compound_mac_key(protocol: HashProtocol, hlak: &[u8; 32]) -> Option<[u8; 32]> {
    let len = u16::try_from(protocol.digest_len()?).ok()?;
    let mut seed = [0u8; CMK_SEED.len() + 3];
    let (label, tail) = seed.split_at_mut(CMK_SEED.len());
    label.copy_from_slice(CMK_SEED);
    let [lo, hi] = len.to_le_bytes();
    tail.copy_from_slice(&[lo, hi, 0x01]);
    hmac(protocol, hlak, &[&seed])
}

/// Computes the compound MAC over a 112-byte CALL_CONNECTED, whose MAC field (bytes 80..112) is
/// treated as zero whatever it holds. Returns the 32-byte field (SHA1 zero-padded), or `None`
/// for an undefined algorithm.
#[must_use]
pub fn compound_mac(
    protocol: HashProtocol,
    hlak: &[u8; 32],
    call_connected: &[u8; CALL_CONNECTED_LEN],
) -> Option<[u8; 32]> {
    let cmk = compound_mac_key(protocol, hlak)?;
    let key = cmk.get(..protocol.digest_len()?)?;
    let (covered, _mac) = call_connected.split_at(MAC_OFFSET);
    hmac(protocol, key, &[covered, &[0u8; 32]])
}

/// Builds the client's CALL_CONNECTED (§3.2.5.2): encodes it with a zero MAC, computes the MAC
/// and writes it in. Returns the 112 wire bytes, or `None` for an undefined algorithm.
#[must_use]
pub fn build_call_connected(
    protocol: HashProtocol,
    nonce: &[u8; NONCE_LEN],
    cert_hashes: &CertHashes,
    hlak: &[u8; 32],
) -> Option<[u8; CALL_CONNECTED_LEN]> {
    let binding = CryptoBinding {
        hash_protocol: protocol,
        nonce: *nonce,
        cert_hash: cert_hashes.field(protocol)?,
        compound_mac: [0; 32],
    };
    let mut out = Vec::with_capacity(CALL_CONNECTED_LEN);
    ControlMessage::CallConnected(binding).encode(&mut out);
    let mut bytes: [u8; CALL_CONNECTED_LEN] = out.try_into().ok()?;
    let mac = compound_mac(protocol, hlak, &bytes)?;
    bytes.get_mut(MAC_OFFSET..)?.copy_from_slice(&mac);
    Some(bytes)
}

/// The server's checks on a received CALL_CONNECTED (§3.3.5.2.3), in the spec's order. The MAC
/// is compared in constant time; the other fields are public values.
///
/// # Errors
/// The first [`BindingError`] found.
pub fn verify(
    raw: &[u8; CALL_CONNECTED_LEN],
    binding: &CryptoBinding,
    expected_nonce: &[u8; NONCE_LEN],
    offered: HashProtocolSet,
    cert_hashes: &CertHashes,
    hlak: &[u8; 32],
) -> Result<(), BindingError> {
    if binding.nonce != *expected_nonce {
        return Err(BindingError::Nonce);
    }
    let protocol = binding.hash_protocol;
    if !offered.contains(protocol) {
        return Err(BindingError::HashProtocol(protocol));
    }
    let unsupported = BindingError::HashProtocol(protocol);
    let len = protocol.digest_len().ok_or(unsupported)?;
    let cert = cert_hashes.field(protocol).ok_or(unsupported)?;
    // The SHA1 padding after the hash and after the MAC "MUST be ignored on receipt" (§2.2.7).
    if cert.get(..len) != binding.cert_hash.get(..len) {
        return Err(BindingError::CertHash);
    }
    let mac = compound_mac(protocol, hlak, raw).ok_or(unsupported)?;
    let (Some(expected), Some(received)) = (mac.get(..len), binding.compound_mac.get(..len)) else {
        return Err(unsupported);
    };
    if bool::from(expected.ct_eq(received)) {
        Ok(())
    } else {
        Err(BindingError::CompoundMac)
    }
}

fn hmac(protocol: HashProtocol, key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    match protocol {
        HashProtocol::SHA1 => {
            let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).ok()?;
            parts.iter().for_each(|p| mac.update(p));
            let out: [u8; 20] = mac.finalize().into_bytes().into();
            Some(pad20(&out))
        }
        HashProtocol::SHA256 => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
            parts.iter().for_each(|p| mac.update(p));
            Some(mac.finalize().into_bytes().into())
        }
        _ => None,
    }
}

fn pad20(digest: &[u8; 20]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let (head, _) = out.split_at_mut(20);
    head.copy_from_slice(digest);
    out
}

/// The PRF+ seed, 29 ASCII bytes without a terminator (§3.2.5.2.2).
const CMK_SEED: &[u8; 29] = b"SSTP inner method derived CMK";
/// Size of CALL_CONNECTED on the wire (§2.2.11).
pub const CALL_CONNECTED_LEN: usize = 112;
/// Offset of the CompoundMAC field inside CALL_CONNECTED: header 4, type+count 4, attribute
/// header 4, reserved+protocol 4, nonce 32, cert hash 32.
const MAC_OFFSET: usize = 80;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let clean: String = s.chars().filter(char::is_ascii_hexdigit).collect();
        hex::decode(clean).expect("hex").try_into().expect("length")
    }

    /// [MS-SSTP] §4.7, first example (SHA256).
    const SHA256_HLAK: &str = "2A1BB40D55AB0F5EF32F06F2B3CC73C48FD3FAC41D7A1315A19228D9024CA164";
    const SHA256_CALL_CONNECTED: &str = "
        10 01 00 70 00 04 00 01 00 03 00 68 00 00 00 02
        41 2B 48 9A EB D7 EC C7 D0 89 66 F2 6B E7 CD 72 B2 31 A0 E9 21 0D 7C 91 B3 08 86 2B 03 44 C4 35
        79 93 EF 31 4C 49 3D AC E9 F0 2D 60 E7 E6 1C 84 B6 69 0A AF E9 D7 AE EA 92 CB BE 8A D5 99 42 2D
        52 A6 8E FD 8C FF BF 52 77 0B 8F 0F E8 EC 73 71 65 83 AF 6D 61 1E B6 D1 79 B3 B2 08 40 98 54 49";
    /// [MS-SSTP] §4.7, second example (SHA1).
    const SHA1_HLAK: &str = "4B3128F43925D9006EEFB1C4E86515A1D88E56BAB3CA2BDF0373B7F5A8A13B19";
    const SHA1_CALL_CONNECTED: &str = "
        10 01 00 70 00 04 00 01 00 03 00 68 00 00 00 01
        0F 1A 2D 58 D4 A3 E3 00 0F AD 3C E4 90 6E 07 B7 07 AA 9E 44 1C CE AC 5C BD 7B 2C C1 C9 D8 6C DF
        58 26 B6 29 BD A5 9B 8E 6F D8 DC D2 62 2F D3 4C 53 48 05 A5 00 00 00 00 00 00 00 00 00 00 00 00
        69 91 5D D5 83 D8 06 2F EF 16 F6 1D B2 F0 32 90 EC 27 CB 6C 00 00 00 00 00 00 00 00 00 00 00 00";

    fn binding_of(raw: &[u8; CALL_CONNECTED_LEN]) -> CryptoBinding {
        match Packet::decode(raw) {
            Ok(Packet::Control(ControlMessage::CallConnected(b))) => b,
            other => panic!("not a CALL_CONNECTED: {other:?}"),
        }
    }

    fn check_spec_example(protocol: HashProtocol, hlak: &str, packet: &str) {
        let hlak = unhex::<32>(hlak);
        let raw = unhex::<CALL_CONNECTED_LEN>(packet);
        let binding = binding_of(&raw);
        assert_eq!(binding.hash_protocol, protocol);
        assert_eq!(
            compound_mac(protocol, &hlak, &raw),
            Some(binding.compound_mac)
        );
        let mut certs = CertHashes {
            sha1: [0; 20],
            sha256: [0; 32],
        };
        certs.sha256 = binding.cert_hash;
        certs.sha1.copy_from_slice(&binding.cert_hash[..20]);
        let offered = HashProtocolSet(protocol.0);
        assert_eq!(
            verify(&raw, &binding, &binding.nonce, offered, &certs, &hlak),
            Ok(())
        );
        assert_eq!(
            build_call_connected(protocol, &binding.nonce, &certs, &hlak),
            Some(raw)
        );
    }

    #[test]
    fn spec_sha256_example_gives_the_published_compound_mac() {
        check_spec_example(HashProtocol::SHA256, SHA256_HLAK, SHA256_CALL_CONNECTED);
    }

    #[test]
    fn spec_sha1_example_gives_the_published_compound_mac() {
        check_spec_example(HashProtocol::SHA1, SHA1_HLAK, SHA1_CALL_CONNECTED);
    }

    #[test]
    fn padding_after_a_sha1_mac_is_ignored_on_receipt() {
        let hlak = unhex::<32>(SHA1_HLAK);
        let mut raw = unhex::<CALL_CONNECTED_LEN>(SHA1_CALL_CONNECTED);
        raw[CALL_CONNECTED_LEN - 1] = 0xff;
        let binding = binding_of(&raw);
        let mut certs = CertHashes {
            sha1: [0; 20],
            sha256: [0; 32],
        };
        certs.sha1.copy_from_slice(&binding.cert_hash[..20]);
        let offered = HashProtocolSet::BOTH;
        assert_eq!(
            verify(&raw, &binding, &binding.nonce, offered, &certs, &hlak),
            Ok(())
        );
        raw[MAC_OFFSET] ^= 1;
        let binding = binding_of(&raw);
        assert_eq!(
            verify(&raw, &binding, &binding.nonce, offered, &certs, &hlak),
            Err(BindingError::CompoundMac)
        );
    }

    #[test]
    fn a_wrong_hlak_fails_with_compound_mac() {
        let raw = unhex::<CALL_CONNECTED_LEN>(SHA256_CALL_CONNECTED);
        let binding = binding_of(&raw);
        let certs = CertHashes {
            sha1: [0; 20],
            sha256: binding.cert_hash,
        };
        let result = verify(
            &raw,
            &binding,
            &binding.nonce,
            HashProtocolSet::BOTH,
            &certs,
            &[0; 32],
        );
        assert_eq!(result, Err(BindingError::CompoundMac));
    }

    #[test]
    fn checks_report_nonce_then_protocol_then_cert_hash() {
        let raw = unhex::<CALL_CONNECTED_LEN>(SHA256_CALL_CONNECTED);
        let binding = binding_of(&raw);
        let hlak = unhex::<32>(SHA256_HLAK);
        let certs = CertHashes {
            sha1: [0; 20],
            sha256: binding.cert_hash,
        };
        let offered = HashProtocolSet::BOTH;
        assert_eq!(
            verify(&raw, &binding, &[0; 32], offered, &certs, &hlak),
            Err(BindingError::Nonce)
        );
        assert_eq!(
            verify(
                &raw,
                &binding,
                &binding.nonce,
                HashProtocolSet::SHA1,
                &certs,
                &hlak
            ),
            Err(BindingError::HashProtocol(HashProtocol::SHA256))
        );
        let other = CertHashes {
            sha1: [0; 20],
            sha256: [1; 32],
        };
        assert_eq!(
            verify(&raw, &binding, &binding.nonce, offered, &other, &hlak),
            Err(BindingError::CertHash)
        );
    }

    #[test]
    fn cert_hashes_are_sha1_and_sha256_of_the_der() {
        let hashes = CertHashes::from_der(b"abc");
        assert_eq!(
            hex::encode(hashes.sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(hashes.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
