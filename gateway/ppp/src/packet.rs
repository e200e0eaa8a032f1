//! The control-packet format shared by LCP, the NCPs and the authentication protocols
//! (Code, Identifier, Length, Data; RFC 1661 §5), and the option TLVs inside Configure packets
//! (RFC 1661 §6).

use crate::error::PacketError;

crate::wire_enum! {
    /// A control-packet code (RFC 1661 §5). LCP uses 1-13, the NCPs 1-7.
    pub(crate) struct Code(pub(crate) u8);
    debug = "Code({})";
    pub(crate) const CONFIGURE_REQUEST = 1, "CONFIGURE_REQUEST";
    pub(crate) const CONFIGURE_ACK = 2, "CONFIGURE_ACK";
    pub(crate) const CONFIGURE_NAK = 3, "CONFIGURE_NAK";
    pub(crate) const CONFIGURE_REJECT = 4, "CONFIGURE_REJECT";
    pub(crate) const TERMINATE_REQUEST = 5, "TERMINATE_REQUEST";
    pub(crate) const TERMINATE_ACK = 6, "TERMINATE_ACK";
    pub(crate) const CODE_REJECT = 7, "CODE_REJECT";
    pub(crate) const PROTOCOL_REJECT = 8, "PROTOCOL_REJECT";
    pub(crate) const ECHO_REQUEST = 9, "ECHO_REQUEST";
    pub(crate) const ECHO_REPLY = 10, "ECHO_REPLY";
    pub(crate) const DISCARD_REQUEST = 11, "DISCARD_REQUEST";
    /// RFC 1570 §2.1; Windows sends "MSRASV5.20" and its host name.
    pub(crate) const IDENTIFICATION = 12, "IDENTIFICATION";
    /// RFC 1570 §2.2.
    pub(crate) const TIME_REMAINING = 13, "TIME_REMAINING";
}

/// A parsed control packet borrowing its input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet<'a> {
    pub(crate) code: Code,
    pub(crate) id: u8,
    /// Data, cut at the Length field: bytes beyond it are padding (RFC 1661 §5).
    pub(crate) data: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses the information field of a control-protocol frame.
    pub(crate) fn parse(information: &'a [u8]) -> Result<Self, PacketError> {
        let [code, id, hi, lo, ..] = *information else {
            return Err(PacketError::Truncated);
        };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if length < PACKET_HEADER_LEN {
            return Err(PacketError::BadLength);
        }
        let data = information
            .get(PACKET_HEADER_LEN..length)
            .ok_or(PacketError::Truncated)?;
        Ok(Self {
            code: Code(code),
            id,
            data,
        })
    }
}

/// Encodes a control packet (without the PPP frame header) into `out`.
pub(crate) fn encode_packet(code: Code, id: u8, data: &[u8], out: &mut Vec<u8>) {
    // Callers bound data by the peer's MRU or by their own option set, both far below 65535.
    let length = u16::try_from(PACKET_HEADER_LEN + data.len()).unwrap_or(u16::MAX);
    out.push(code.0);
    out.push(id);
    out.extend_from_slice(&length.to_be_bytes());
    let room = usize::from(length) - PACKET_HEADER_LEN;
    out.extend_from_slice(data.get(..room).unwrap_or(data));
}

/// One Configure option: type and value (the value excludes the 2-byte TLV header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigOption<'a> {
    pub(crate) kind: u8,
    pub(crate) value: &'a [u8],
}

impl ConfigOption<'_> {
    /// Appends the option in wire form.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        write_option(self.kind, self.value, out);
    }
}

/// Appends one option TLV. Values are short and fixed by the callers (at most a few bytes).
pub(crate) fn write_option(kind: u8, value: &[u8], out: &mut Vec<u8>) {
    let len = u8::try_from(value.len() + OPTION_HEADER_LEN).unwrap_or(u8::MAX);
    out.push(kind);
    out.push(len);
    out.extend_from_slice(
        value
            .get(..usize::from(len) - OPTION_HEADER_LEN)
            .unwrap_or(value),
    );
}

/// Splits an option list into TLVs, failing on any malformed length (RFC 1661 §6: Length
/// counts the header, so it is at least 2, and must not run past the packet).
pub(crate) fn parse_options(mut data: &[u8]) -> Result<Vec<ConfigOption<'_>>, PacketError> {
    let mut options = Vec::new();
    while !data.is_empty() {
        let [kind, len, ..] = *data else {
            return Err(PacketError::BadOption);
        };
        let len = usize::from(len);
        if len < OPTION_HEADER_LEN {
            return Err(PacketError::BadOption);
        }
        let value = data
            .get(OPTION_HEADER_LEN..len)
            .ok_or(PacketError::BadOption)?;
        options.push(ConfigOption { kind, value });
        data = data.get(len..).unwrap_or_default();
    }
    Ok(options)
}

/// Code, Identifier and Length (RFC 1661 §5).
pub(crate) const PACKET_HEADER_LEN: usize = 4;
/// Type and Length of a Configure option (RFC 1661 §6).
const OPTION_HEADER_LEN: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_their_rfc_names_in_traces_and_unknown_ones_their_number() {
        assert_eq!(
            format!("{:?}", Code::TERMINATE_REQUEST),
            "TERMINATE_REQUEST"
        );
        assert_eq!(format!("{:?}", Code(42)), "Code(42)");
        assert_eq!(Code(1), Code::CONFIGURE_REQUEST);
    }

    #[test]
    fn packet_data_stops_at_the_length_field_and_ignores_padding() {
        let packet = Packet::parse(&[1, 7, 0, 6, 0xAA, 0xBB, 0xCC, 0xDD]).unwrap();
        assert_eq!(packet.code, Code::CONFIGURE_REQUEST);
        assert_eq!(packet.id, 7);
        assert_eq!(packet.data, &[0xAA, 0xBB]);
    }

    #[test]
    fn packet_whose_length_runs_past_the_frame_is_rejected() {
        assert_eq!(
            Packet::parse(&[1, 7, 0, 9, 0]).unwrap_err(),
            PacketError::Truncated
        );
        assert_eq!(
            Packet::parse(&[1, 7, 0, 3]).unwrap_err(),
            PacketError::BadLength
        );
        assert_eq!(Packet::parse(&[1, 7]).unwrap_err(), PacketError::Truncated);
    }

    #[test]
    fn options_parse_and_malformed_lengths_fail() {
        let options = parse_options(&[1, 4, 0x05, 0xDC, 7, 2]).unwrap();
        assert_eq!(options.len(), 2);
        assert_eq!(options[0].kind, 1);
        assert_eq!(options[0].value, &[0x05, 0xDC]);
        assert_eq!(options[1].value, &[] as &[u8]);
        assert!(parse_options(&[1, 1]).is_err());
        assert!(parse_options(&[1, 5, 0]).is_err());
        assert!(parse_options(&[1]).is_err());
    }

    #[test]
    fn encoded_packet_round_trips() {
        let mut out = Vec::new();
        encode_packet(Code::ECHO_REPLY, 3, &[1, 2, 3, 4], &mut out);
        assert_eq!(out, [10, 3, 0, 8, 1, 2, 3, 4]);
        let packet = Packet::parse(&out).unwrap();
        assert_eq!(packet.data, &[1, 2, 3, 4]);
    }
}

/// Encoded PPP frames waiting for `poll_transmit`, in order.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    frames: std::collections::VecDeque<Vec<u8>>,
    /// False once the lower layer is gone: nothing more may be sent.
    closed: bool,
}

impl Outbox {
    /// Queues one control packet wrapped in a PPP frame header.
    pub(crate) fn push(&mut self, protocol: crate::Protocol, code: Code, id: u8, data: &[u8]) {
        if self.closed {
            return;
        }
        let mut packet = Vec::with_capacity(PACKET_HEADER_LEN + data.len());
        encode_packet(code, id, data, &mut packet);
        self.push_raw(protocol, &packet);
    }

    /// Queues a frame whose information field is already encoded.
    pub(crate) fn push_raw(&mut self, protocol: crate::Protocol, information: &[u8]) {
        if self.closed {
            return;
        }
        let mut frame = Vec::with_capacity(crate::frame::HEADER_LEN + information.len());
        crate::encode_frame(protocol, information, &mut frame);
        tracing::trace!(%protocol, len = frame.len(), "PPP frame queued");
        self.frames.push_back(frame);
    }

    /// The next frame to send.
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// Drops queued frames and refuses new ones: the transport is gone.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.frames.clear();
    }
}
