//! SSTP packets: the 4-byte header, data packets, and decoding a whole packet.
//!
//! See [MS-SSTP] §2.2.1–§2.2.3. All integers are big-endian. Control messages live in
//! [`crate::control`].

use crate::{
    attribute::{AttributeId, Status, StatusInfo},
    control::ControlMessage,
};

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

/// Why a whole packet or control message could not be decoded. The state machines map each
/// variant to the STATUS_INFO the spec asks for (see [`DecodeError::nak_status`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header itself is invalid.
    #[error("bad framing")]
    Framing(#[from] FramingError),
    /// The buffer is shorter or longer than the header's length field.
    #[error("packet length {declared} does not match the {actual} bytes given")]
    LengthMismatch {
        /// The length field.
        declared: u16,
        /// The bytes handed in.
        actual: usize,
    },
    /// The message type is not one of the nine the spec defines.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(MessageType),
    /// Fewer attributes than the NumAttributes field announced.
    #[error("{found} attributes present, {declared} announced")]
    AttributeCount {
        /// NumAttributes.
        declared: u16,
        /// How many could be read.
        found: u16,
    },
    /// Bytes after the last announced attribute.
    #[error("trailing bytes after the last attribute")]
    TrailingBytes,
    /// An attribute id the spec does not define.
    #[error("unrecognized attribute {0:?}")]
    UnrecognizedAttribute(AttributeId),
    /// An attribute whose length field is impossible or wrong for its type.
    #[error("attribute {0:?} has an invalid length")]
    InvalidAttributeLength(AttributeId),
    /// The same attribute twice where only one is allowed.
    #[error("duplicate attribute {0:?}")]
    DuplicateAttribute(AttributeId),
    /// A mandatory attribute is absent.
    #[error("required attribute {0:?} missing")]
    MissingAttribute(AttributeId),
    /// A known attribute in a message that does not allow it.
    #[error("attribute {attribute:?} not allowed in {message:?}")]
    AttributeNotAllowed {
        /// The message.
        message: MessageType,
        /// The attribute.
        attribute: AttributeId,
    },
    /// A STATUS_INFO with a non-zero status in a message that must not report errors.
    #[error("status info {0:?} not allowed in this message")]
    StatusInfoNotAllowed(Status),
}

impl DecodeError {
    /// The STATUS_INFO a server puts in a CALL_CONNECT_NAK for a bad CALL_CONNECT_REQUEST, or
    /// `None` when the spec asks for an abort instead (§3.3.5.2.2).
    ///
    /// A missing ENCAPSULATED_PROTOCOL_ID is reported with that attribute's id, as §2.2.8 says;
    /// §3.3.5.2.2 names STATUS_INFO instead, but naming the missing attribute is more useful.
    #[must_use]
    pub fn nak_status(&self) -> Option<StatusInfo> {
        let (attribute, status) = match *self {
            Self::UnrecognizedAttribute(id) => (id, Status::UNRECOGNIZED_ATTRIBUTE),
            Self::InvalidAttributeLength(id) => (id, Status::INVALID_ATTRIB_VALUE_LENGTH),
            Self::DuplicateAttribute(id) => (id, Status::DUPLICATE_ATTRIBUTE),
            Self::MissingAttribute(id) => (id, Status::REQUIRED_ATTRIBUTE_MISSING),
            Self::AttributeNotAllowed { attribute, .. } => {
                (attribute, Status::UNRECOGNIZED_ATTRIBUTE)
            }
            Self::StatusInfoNotAllowed(_) => (
                AttributeId::STATUS_INFO,
                Status::STATUS_INFO_NOT_SUPPORTED_IN_MSG,
            ),
            _ => return None,
        };
        Some(StatusInfo::new(attribute, status))
    }
}

/// A whole SSTP packet as it came off the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A data packet: exactly one PPP frame.
    Data(&'a [u8]),
    /// A control packet.
    Control(ControlMessage),
}

impl<'a> Packet<'a> {
    /// Decodes one whole packet (header included), e.g. as handed out by the deframer.
    ///
    /// # Errors
    /// A [`DecodeError`] naming what is wrong; never panics.
    pub fn decode(packet: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((header, body)) = packet.split_first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::LengthMismatch {
                declared: 0,
                actual: packet.len(),
            });
        };
        let header = Header::parse(*header)?;
        if usize::from(header.length) != packet.len() {
            return Err(DecodeError::LengthMismatch {
                declared: header.length,
                actual: packet.len(),
            });
        }
        if header.control {
            ControlMessage::decode(body).map(Self::Control)
        } else {
            Ok(Self::Data(body))
        }
    }
}

/// Appends a data packet carrying `ppp_frame` to `out`.
///
/// # Errors
/// [`TooLarge`] when the frame does not fit the 12-bit length (more than 4091 bytes).
pub fn encode_data(ppp_frame: &[u8], out: &mut Vec<u8>) -> Result<(), TooLarge> {
    write_data_header(ppp_frame.len(), out)?;
    out.extend_from_slice(ppp_frame);
    Ok(())
}

/// Appends only the header of a data packet whose payload of `payload_len` bytes the caller
/// writes next; lets the data path build header and payload in one buffer without a copy.
///
/// # Errors
/// [`TooLarge`] when the payload exceeds [`MAX_PAYLOAD_LEN`].
pub fn write_data_header(payload_len: usize, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    let length = payload_len
        .checked_add(HEADER_LEN)
        .filter(|n| *n <= MAX_PACKET_LEN)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(TooLarge(payload_len))?;
    Header {
        control: false,
        length,
    }
    .encode(out);
    Ok(())
}

/// A payload too large for one SSTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload of {0} bytes exceeds the SSTP maximum of 4091")]
pub struct TooLarge(pub usize);

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

#[cfg(test)]
mod tests;
