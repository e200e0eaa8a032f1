//! MS-CHAPv2 arithmetic (RFC 2759 §8) and the MPPE master keys that give SSTP its HLAK
//! (RFC 3079 §3). Pure functions, checked against the RFC vectors.

use des::{
    Des,
    cipher::{BlockCipherEncrypt, KeyInit},
};
use md4::{Digest, Md4};
use sha1::Sha1;

use super::{Hlak, NtHash};

/// NtPasswordHash: MD4 of the UTF-16LE password (RFC 2759 §8.3).
#[must_use]
pub fn nt_password_hash(password: &str) -> [u8; 16] {
    let mut md4 = Md4::new();
    for unit in password.encode_utf16() {
        md4.update(unit.to_le_bytes());
    }
    md4.finalize().into()
}

/// HashNtPasswordHash: MD4 of the NT hash (RFC 2759 §8.4).
#[must_use]
pub fn hash_nt_password_hash(hash: &NtHash) -> [u8; 16] {
    Md4::digest(hash.0).into()
}

/// The user name that enters ChallengeHash: any "DOMAIN\" prefix removed (RFC 2759 §8.2).
#[must_use]
pub fn strip_domain(username: &str) -> &str {
    username
        .rsplit_once('\\')
        .map_or(username, |(_, user)| user)
}

/// ChallengeHash (RFC 2759 §8.2). `username` must already be stripped of its domain.
#[must_use]
pub fn challenge_hash(
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    username: &str,
) -> [u8; 8] {
    let digest = Sha1::new()
        .chain_update(peer_challenge)
        .chain_update(authenticator_challenge)
        .chain_update(username.as_bytes())
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// ChallengeResponse: the challenge DES-encrypted under the three 7-byte thirds of the
/// zero-padded hash (RFC 2759 §8.5).
#[must_use]
pub fn challenge_response(challenge: &[u8; 8], hash: &NtHash) -> [u8; 24] {
    let mut padded = [0u8; 21];
    padded[..16].copy_from_slice(&hash.0);
    let mut out = [0u8; 24];
    for (key, block) in padded.chunks_exact(7).zip(out.chunks_exact_mut(8)) {
        let cipher = Des::new(&expand_des_key(key).into());
        let mut data = (*challenge).into();
        cipher.encrypt_block(&mut data);
        block.copy_from_slice(&data);
    }
    out
}

/// GenerateNTResponse (RFC 2759 §8.1), from the stored NT hash instead of the password.
#[must_use]
pub fn generate_nt_response(
    authenticator_challenge: &[u8; 16],
    peer_challenge: &[u8; 16],
    username: &str,
    hash: &NtHash,
) -> [u8; 24] {
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, username);
    challenge_response(&challenge, hash)
}

/// GenerateAuthenticatorResponse (RFC 2759 §8.7): the 20 bytes behind "S=".
#[must_use]
pub fn generate_authenticator_response(
    hash: &NtHash,
    nt_response: &[u8; 24],
    peer_challenge: &[u8; 16],
    authenticator_challenge: &[u8; 16],
    username: &str,
) -> [u8; 20] {
    let hash_hash = hash_nt_password_hash(hash);
    let digest = Sha1::new()
        .chain_update(hash_hash)
        .chain_update(nt_response)
        .chain_update(AUTH_MAGIC1)
        .finalize();
    let challenge = challenge_hash(peer_challenge, authenticator_challenge, username);
    Sha1::new()
        .chain_update(digest)
        .chain_update(challenge)
        .chain_update(AUTH_MAGIC2)
        .finalize()
        .into()
}

/// The "S=<40 uppercase hex>" form of an authenticator response (RFC 2759 §5).
#[must_use]
pub fn format_authenticator_response(response: &[u8; 20]) -> String {
    format!("S={}", hex::encode_upper(response))
}

/// GetMasterKey (RFC 3079 §3.4).
#[must_use]
pub fn master_key(hash: &NtHash, nt_response: &[u8; 24]) -> [u8; 16] {
    let digest = Sha1::new()
        .chain_update(hash_nt_password_hash(hash))
        .chain_update(nt_response)
        .chain_update(MASTER_KEY_MAGIC)
        .finalize();
    first_16(&digest)
}

/// Which side derives a start key, and for which direction (RFC 3079 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySide {
    /// The authenticator (the SSTP server).
    Server,
    /// The authenticated peer (the SSTP client).
    Client,
}

/// GetAsymmetricStartKey with a 16-byte key (RFC 3079 §3.4): the MasterSendKey (`send`) or
/// MasterReceiveKey of `side`.
#[must_use]
pub fn asymmetric_start_key(master_key: &[u8; 16], send: bool, side: KeySide) -> [u8; 16] {
    // The client's send key is the server's receive key, and vice versa.
    let magic = match (send, side) {
        (true, KeySide::Client) | (false, KeySide::Server) => START_KEY_MAGIC2,
        (false, KeySide::Client) | (true, KeySide::Server) => START_KEY_MAGIC3,
    };
    let digest = Sha1::new()
        .chain_update(master_key)
        .chain_update(SHS_PAD1)
        .chain_update(magic)
        .chain_update(SHS_PAD2)
        .finalize();
    first_16(&digest)
}

/// The HLAK of an MS-CHAPv2 session ([MS-SSTP] §3.2.5.2): the server's MasterReceiveKey ‖
/// MasterSendKey, which is the client's MasterSendKey ‖ MasterReceiveKey.
#[must_use]
pub fn hlak(hash: &NtHash, nt_response: &[u8; 24], side: KeySide) -> Hlak {
    let master = master_key(hash, nt_response);
    let (first, second) = match side {
        KeySide::Server => (false, true),
        KeySide::Client => (true, false),
    };
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&asymmetric_start_key(&master, first, side));
    out[16..].copy_from_slice(&asymmetric_start_key(&master, second, side));
    Hlak(out)
}

/// Spreads 56 key bits over 8 bytes, leaving the DES parity bits (ignored) at zero
/// (RFC 2759 §8.6 DesEncrypt "MakeKey").
fn expand_des_key(key7: &[u8]) -> [u8; 8] {
    let mut bits = 0u64;
    for byte in key7.iter().take(7) {
        bits = (bits << 8) | u64::from(*byte);
    }
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        let shift = 49 - 7 * i;
        // Masked to 7 bits, then moved above the parity bit: fits a byte.
        *byte = (((bits >> shift) & 0x7F) as u8) << 1;
    }
    out
}

fn first_16(digest: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// RFC 2759 §8.7 Magic1.
const AUTH_MAGIC1: &[u8; 39] = b"Magic server to client signing constant";
/// RFC 2759 §8.7 Magic2.
const AUTH_MAGIC2: &[u8; 41] = b"Pad to make it do more than one iteration";
/// RFC 3079 §3.4 GetMasterKey Magic1.
const MASTER_KEY_MAGIC: &[u8; 27] = b"This is the MPPE Master Key";
/// RFC 3079 §3.4 GetAsymmetricStartKey Magic2.
const START_KEY_MAGIC2: &[u8; 84] =
    b"On the client side, this is the send key; on the server side, it is the receive key.";
/// RFC 3079 §3.4 GetAsymmetricStartKey Magic3.
const START_KEY_MAGIC3: &[u8; 84] =
    b"On the client side, this is the receive key; on the server side, it is the send key.";
/// RFC 3079 §3.4 SHSpad1.
const SHS_PAD1: [u8; 40] = [0x00; 40];
/// RFC 3079 §3.4 SHSpad2.
const SHS_PAD2: [u8; 40] = [0xF2; 40];

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2759 §9.2 and RFC 3079 §3.5.3 share these inputs.
    const USER: &str = "User";
    const PASSWORD: &str = "clientPass";
    const AUTH_CHALLENGE: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
    const PEER_CHALLENGE: &str = "21402324255E262A28295F2B3A337C7E";
    const NT_RESPONSE: &str = "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF";

    fn bytes<const N: usize>(hex_str: &str) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(hex_str, &mut out).unwrap();
        out
    }

    fn hash() -> NtHash {
        NtHash::from_password(PASSWORD)
    }

    #[test]
    fn rfc2759_nt_password_hash_and_its_hash() {
        assert_eq!(hash().0, bytes::<16>("44EBBA8D5312B8D611474411F56989AE"));
        assert_eq!(
            hash_nt_password_hash(&hash()),
            bytes::<16>("41C00C584BD2D91C4017A2A12FA59F3F")
        );
    }

    #[test]
    fn rfc2759_challenge_hash() {
        let challenge = challenge_hash(&bytes(PEER_CHALLENGE), &bytes(AUTH_CHALLENGE), USER);
        assert_eq!(challenge, bytes::<8>("D02E4386BCE91226"));
    }

    #[test]
    fn rfc2759_nt_response() {
        let response = generate_nt_response(
            &bytes(AUTH_CHALLENGE),
            &bytes(PEER_CHALLENGE),
            USER,
            &hash(),
        );
        assert_eq!(response, bytes::<24>(NT_RESPONSE));
    }

    #[test]
    fn rfc2759_authenticator_response() {
        let response = generate_authenticator_response(
            &hash(),
            &bytes(NT_RESPONSE),
            &bytes(PEER_CHALLENGE),
            &bytes(AUTH_CHALLENGE),
            USER,
        );
        assert_eq!(
            format_authenticator_response(&response),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
    }

    #[test]
    fn rfc3079_master_key_and_server_start_keys() {
        let master = master_key(&hash(), &bytes(NT_RESPONSE));
        assert_eq!(master, bytes::<16>("FDECE3717A8C838CB388E527AE3CDD31"));
        assert_eq!(
            asymmetric_start_key(&master, true, KeySide::Server),
            bytes::<16>("8B7CDC149B993A1BA118CB153F56DCCB")
        );
        assert_eq!(
            asymmetric_start_key(&master, false, KeySide::Server),
            bytes::<16>("D5F0E9521E3EA9589645E86051C82226")
        );
    }

    #[test]
    fn server_and_client_hlak_agree_and_are_receive_key_then_send_key() {
        let nt_response = bytes(NT_RESPONSE);
        let server = hlak(&hash(), &nt_response, KeySide::Server);
        let client = hlak(&hash(), &nt_response, KeySide::Client);
        assert_eq!(server, client);
        let mut expected = [0u8; 32];
        expected[..16].copy_from_slice(&bytes::<16>("D5F0E9521E3EA9589645E86051C82226"));
        expected[16..].copy_from_slice(&bytes::<16>("8B7CDC149B993A1BA118CB153F56DCCB"));
        assert_eq!(server.0, expected);
    }

    #[test]
    fn domain_prefix_is_stripped_for_the_challenge_hash() {
        assert_eq!(strip_domain("CORP\\alice"), "alice");
        assert_eq!(strip_domain("alice"), "alice");
        assert_eq!(strip_domain("a\\b\\carol"), "carol");
    }
}
