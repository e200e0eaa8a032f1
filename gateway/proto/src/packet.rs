//! SSTP packets: the 4-byte header, data packets, and decoding a whole packet.
//!
//! See [MS-SSTP] §2.2.1–§2.2.3. All integers are big-endian. Control messages live in
//! [`crate::control`].

use crate::control::ControlMessage;
// Defined in the wire layer; re-exported where they were first published.
pub use crate::{
    error::DecodeError,
    wire::{
        C_BIT, CONTROL_HEADER_LEN, FramingError, HEADER_LEN, Header, MAX_PACKET_LEN,
        MAX_PAYLOAD_LEN, MessageType, VERSION,
    },
};

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

#[cfg(test)]
mod tests;
