//! The leaf of the wire layer: every SSTP identifier (message types, attribute ids, statuses,
//! protocols, hash algorithms), the 4-byte header and the length limits (see [MS-SSTP] §2.2). It
//! imports nothing else of this crate, so attributes, control messages and packets build on it
//! without import cycles (as rustls's `msgs::enums` and quinn's `coding`).

use std::fmt;

sstp_ppp::wire_enum! {
    /// A control message type. Unknown values are kept so they can be logged and reported.
    ///
    /// See [MS-SSTP] §2.2.2.
    pub struct MessageType(pub u16);
    debug = "MessageType({:#06x})";
    /// `SSTP_MSG_CALL_CONNECT_REQUEST`, client to server.
    pub const CALL_CONNECT_REQUEST = 0x0001, "CALL_CONNECT_REQUEST";
    /// `SSTP_MSG_CALL_CONNECT_ACK`, server to client.
    pub const CALL_CONNECT_ACK = 0x0002, "CALL_CONNECT_ACK";
    /// `SSTP_MSG_CALL_CONNECT_NAK`, server to client.
    pub const CALL_CONNECT_NAK = 0x0003, "CALL_CONNECT_NAK";
    /// `SSTP_MSG_CALL_CONNECTED`, client to server.
    pub const CALL_CONNECTED = 0x0004, "CALL_CONNECTED";
    /// `SSTP_MSG_CALL_ABORT`, both directions.
    pub const CALL_ABORT = 0x0005, "CALL_ABORT";
    /// `SSTP_MSG_CALL_DISCONNECT`, both directions.
    pub const CALL_DISCONNECT = 0x0006, "CALL_DISCONNECT";
    /// `SSTP_MSG_CALL_DISCONNECT_ACK`, both directions.
    pub const CALL_DISCONNECT_ACK = 0x0007, "CALL_DISCONNECT_ACK";
    /// `SSTP_MSG_ECHO_REQUEST`, both directions.
    pub const ECHO_REQUEST = 0x0008, "ECHO_REQUEST";
    /// `SSTP_MSG_ECHO_RESPONSE`, both directions.
    pub const ECHO_RESPONSE = 0x0009, "ECHO_RESPONSE";
}

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

/// The 4-byte SSTP header. See [MS-SSTP] §2.2.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The C bit: control packet (true) or data packet (false).
    pub control: bool,
    /// Total packet length, header included.
    pub length: u16,
}

impl Header {
    /// Parses and validates a header: version 0x10, 4 <= length <= 4095, and control packets at
    /// least 8 bytes long. Reserved bits are ignored as the spec requires.
    ///
    /// # Errors
    /// A [`FramingError`]; the spec treats every one of them as fatal (§3.1.5.1).
    pub fn parse(bytes: [u8; HEADER_LEN]) -> Result<Self, FramingError> {
        let [version, flags, hi, lo] = bytes;
        if version != VERSION {
            return Err(FramingError::Version(version));
        }
        let control = flags & C_BIT != 0;
        let length = u16::from_be_bytes([hi & 0x0f, lo]);
        let min = if control {
            CONTROL_HEADER_LEN
        } else {
            HEADER_LEN
        };
        if usize::from(length) < min {
            return Err(FramingError::TooShort { length, control });
        }
        Ok(Self { control, length })
    }

    /// Appends the header to `out`.
    pub fn encode(self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(if self.control { C_BIT } else { 0 });
        out.extend_from_slice(&(self.length & 0x0fff).to_be_bytes());
    }
}

/// Why a byte stream cannot be cut into SSTP packets. Always fatal: the connection is dropped
/// without sending anything (§3.1.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The version byte is not 0x10.
    #[error("unsupported SSTP version {0:#04x}")]
    Version(u8),
    /// The length field is below the header size (4, or 8 for control packets).
    #[error("SSTP length {length} too short (control: {control})")]
    TooShort {
        /// The length field.
        length: u16,
        /// The C bit.
        control: bool,
    },
}

/// The only SSTP version: major 1, minor 0. See [MS-SSTP] §2.2.1.
pub const VERSION: u8 = 0x10;
/// The C bit in the second header byte. See [MS-SSTP] §2.2.1.
pub const C_BIT: u8 = 0x01;
/// Size of the SSTP header. See [MS-SSTP] §2.2.1.
pub const HEADER_LEN: usize = 4;
/// Header plus MessageType and NumAttributes. See [MS-SSTP] §2.2.2.
pub const CONTROL_HEADER_LEN: usize = 8;
/// The 12-bit length field caps every packet at 4095 bytes. See [MS-SSTP] §3.1.5.2.
pub const MAX_PACKET_LEN: usize = 4095;
/// Largest data payload (one PPP frame): 4095 - 4. See [MS-SSTP] §3.1.5.2.
pub const MAX_PAYLOAD_LEN: usize = MAX_PACKET_LEN - HEADER_LEN;
