//! PPP frames as carried by SSTP: one frame per SSTP data packet, no HDLC.
//!
//! See RFC 1661 §2 (frame format), §6.5/§6.6 (PFC, ACFC) and [MS-SSTP] §2.2.3.

use std::fmt;

crate::wire_enum! {
    /// A PPP protocol number (RFC 1661 §2). Unknown values round-trip unchanged.
    #[derive(PartialOrd, Ord)]
    pub struct Protocol(pub u16);
    debug = "Protocol(0x{:04X})", named = "{}(0x{:04X})";
    /// Internet Protocol version 4 (RFC 1332).
    pub const IPV4 = 0x0021, "IPv4";
    /// Multilink PPP (RFC 1990); we never negotiate it.
    pub const MP = 0x003D, "MP";
    /// Internet Protocol version 6 (RFC 5072).
    pub const IPV6 = 0x0057, "IPv6";
    /// IP Control Protocol (RFC 1332).
    pub const IPCP = 0x8021, "IPCP";
    /// Encryption Control Protocol (RFC 1968); rejected.
    pub const ECP = 0x8053, "ECP";
    /// IPv6 Control Protocol (RFC 5072).
    pub const IPV6CP = 0x8057, "IPv6CP";
    /// Compression Control Protocol (RFC 1962); rejected, MPPE is pointless inside TLS.
    pub const CCP = 0x80FD, "CCP";
    /// Link Control Protocol (RFC 1661).
    pub const LCP = 0xC021, "LCP";
    /// Password Authentication Protocol (RFC 1334).
    pub const PAP = 0xC023, "PAP";
    /// Callback Control Protocol (Microsoft CBCP); rejected.
    pub const CBCP = 0xC029, "CBCP";
    /// Challenge Handshake Authentication Protocol (RFC 1994), carrying MS-CHAPv2.
    pub const CHAP = 0xC223, "CHAP";
    /// Extensible Authentication Protocol (RFC 3748); not supported.
    pub const EAP = 0xC227, "EAP";
}

impl Protocol {
    /// True for network-layer data protocols (0x0000-0x3FFF, RFC 1661 §2), such as IPv4 and
    /// IPv6. These go to the data path, never to [`crate::Server::handle_frame`].
    #[must_use]
    pub fn is_network_data(self) -> bool {
        self.0 < 0x4000
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One decoded PPP frame, borrowing the input buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The protocol field.
    pub protocol: Protocol,
    /// Everything after the protocol field (no padding is stripped; there is no FCS in SSTP).
    pub information: &'a [u8],
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Frames carry user traffic and credentials: print only the length.
        f.debug_struct("Frame")
            .field("protocol", &self.protocol)
            .field("len", &self.information.len())
            .finish()
    }
}

/// Why a byte string is not a PPP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame ends before its protocol field does.
    #[error("frame too short for a protocol field")]
    Truncated,
    /// A 2-byte protocol field whose low octet is even: no PPP protocol number has that
    /// (RFC 1661 §2). An odd first octet is always read as a PFC-compressed 1-byte field.
    #[error("invalid protocol field 0x{0:04X}")]
    InvalidProtocol(u16),
}

/// Decodes one PPP frame, accepting both the full header (`FF 03` + 2-byte protocol) and the
/// compressed forms a peer may use once ACFC/PFC are acknowledged (RFC 1661 §6.5, §6.6).
///
/// This is the data-path hot function: it never allocates.
pub fn decode_frame(data: &[u8]) -> Result<Frame<'_>, FrameError> {
    let rest = match data {
        [ALL_STATIONS, UI, rest @ ..] => rest,
        _ => data,
    };
    match rest {
        // PFC: a protocol number whose first octet is odd was sent as a single octet.
        [first, information @ ..] if first & 1 == 1 => Ok(Frame {
            protocol: Protocol(u16::from(*first)),
            information,
        }),
        [hi, lo, information @ ..] => {
            let value = u16::from_be_bytes([*hi, *lo]);
            if lo & 1 == 0 {
                return Err(FrameError::InvalidProtocol(value));
            }
            Ok(Frame {
                protocol: Protocol(value),
                information,
            })
        }
        _ => Err(FrameError::Truncated),
    }
}

/// Appends one PPP frame to `out`, always in the uncompressed form (`FF 03` + 2-byte protocol),
/// which every peer must accept whatever it negotiated.
pub fn encode_frame(protocol: Protocol, information: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER_LEN + information.len());
    out.extend_from_slice(&[ALL_STATIONS, UI]);
    out.extend_from_slice(&protocol.0.to_be_bytes());
    out.extend_from_slice(information);
}

/// Which header compression the server acknowledged for the frames we send (RFC 1661 §6.5,
/// §6.6). Only a client asking for it (the Windows profile) ever gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameCompression {
    /// Protocol-Field-Compression: protocols below 0x0100 may go as one octet.
    pub protocol_field: bool,
    /// Address-and-Control-Field-Compression: `FF 03` may be left out (never for LCP).
    pub address_control: bool,
}

/// Appends one PPP frame to `out` with the header compression the peer acknowledged: no
/// `FF 03` with ACFC, a one-octet protocol with PFC when the protocol is below 0x0100. LCP
/// frames always carry the full header (RFC 1661 §6.5, §6.6).
pub fn encode_frame_compressed(
    protocol: Protocol,
    information: &[u8],
    compression: FrameCompression,
    out: &mut Vec<u8>,
) {
    if protocol == Protocol::LCP {
        return encode_frame(protocol, information, out);
    }
    out.reserve(HEADER_LEN + information.len());
    if !compression.address_control {
        out.extend_from_slice(&[ALL_STATIONS, UI]);
    }
    match u8::try_from(protocol.0) {
        Ok(short) if compression.protocol_field => out.push(short),
        _ => out.extend_from_slice(&protocol.0.to_be_bytes()),
    }
    out.extend_from_slice(information);
}

/// Length of the uncompressed header written by [`encode_frame`].
pub(crate) const HEADER_LEN: usize = 4;
/// HDLC All-Stations address (RFC 1662 §3.1), kept by PPP over SSTP.
const ALL_STATIONS: u8 = 0xFF;
/// HDLC Unnumbered Information control field (RFC 1662 §3.1).
const UI: u8 = 0x03;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_header_frame_decodes_to_its_protocol_and_payload() {
        let frame = decode_frame(&[0xFF, 0x03, 0xC0, 0x21, 1, 2, 3]).unwrap();
        assert_eq!(frame.protocol, Protocol::LCP);
        assert_eq!(frame.information, &[1, 2, 3]);
    }

    #[test]
    fn address_and_control_fields_may_be_omitted() {
        let frame = decode_frame(&[0x00, 0x21, 0x45]).unwrap();
        assert_eq!(frame.protocol, Protocol::IPV4);
        assert_eq!(frame.information, &[0x45]);
    }

    #[test]
    fn odd_first_octet_is_a_compressed_one_byte_protocol() {
        let frame = decode_frame(&[0x21, 0x45, 0x00]).unwrap();
        assert_eq!(frame.protocol, Protocol::IPV4);
        assert_eq!(frame.information, &[0x45, 0x00]);
        let frame = decode_frame(&[0xFF, 0x03, 0x57, 0x60]).unwrap();
        assert_eq!(frame.protocol, Protocol::IPV6);
        assert_eq!(frame.information, &[0x60]);
    }

    #[test]
    fn even_low_protocol_octet_is_rejected() {
        assert_eq!(
            decode_frame(&[0xFF, 0x03, 0x00, 0x20]),
            Err(FrameError::InvalidProtocol(0x0020))
        );
    }

    #[test]
    fn short_inputs_are_errors_not_panics() {
        for input in [&[][..], &[0xFF, 0x03], &[0xFF, 0x03, 0xC0], &[0x00]] {
            assert_eq!(decode_frame(input), Err(FrameError::Truncated), "{input:?}");
        }
    }

    #[test]
    fn encode_always_writes_the_uncompressed_header_and_round_trips() {
        let mut out = vec![9];
        encode_frame(Protocol::IPV4, &[0x45, 0x00], &mut out);
        assert_eq!(out, [9, 0xFF, 0x03, 0x00, 0x21, 0x45, 0x00]);
        let frame = decode_frame(&out[1..]).unwrap();
        assert_eq!(frame.protocol, Protocol::IPV4);
        assert_eq!(frame.information, &[0x45, 0x00]);
    }

    #[test]
    fn compressed_encoding_leaves_out_what_was_acked_but_never_for_lcp() {
        let both = FrameCompression {
            protocol_field: true,
            address_control: true,
        };
        let mut out = Vec::new();
        encode_frame_compressed(Protocol::IPV4, &[0x45], both, &mut out);
        assert_eq!(out, [0x21, 0x45]);
        out.clear();
        encode_frame_compressed(Protocol::IPCP, &[1], both, &mut out);
        assert_eq!(
            out,
            [0x80, 0x21, 1],
            "a two-octet protocol stays two octets"
        );
        out.clear();
        encode_frame_compressed(Protocol::LCP, &[9], both, &mut out);
        assert_eq!(out, [0xFF, 0x03, 0xC0, 0x21, 9]);
        out.clear();
        let acfc_only = FrameCompression {
            protocol_field: false,
            address_control: true,
        };
        encode_frame_compressed(Protocol::IPV6, &[0x60], acfc_only, &mut out);
        assert_eq!(out, [0x00, 0x57, 0x60]);
        for frame in [&[0x21, 0x45][..], &[0x00, 0x57, 0x60]] {
            assert!(decode_frame(frame).is_ok());
        }
    }

    #[test]
    fn protocol_debug_names_known_values_and_shows_hex_for_unknown() {
        assert_eq!(format!("{:?}", Protocol::CCP), "CCP(0x80FD)");
        assert_eq!(format!("{:?}", Protocol(0x1234)), "Protocol(0x1234)");
    }
}
