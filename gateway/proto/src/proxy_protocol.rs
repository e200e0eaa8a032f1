//! Sans-IO parser for the PROXY protocol header (HAProxy, "The PROXY protocol", versions 1
//! and 2) that a load balancer puts before the TLS bytes to tell us the client's address.
//!
//! [`parse`] looks at the bytes received so far: it says "need more", "here is the header and
//! its length", or why the bytes can never become a header. It never panics on input: the cargo-fuzz target
//! `proxy_header` (gateway/fuzz) runs it, and the unit tests feed it random bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client address; `None` for `UNKNOWN` (v1) or `LOCAL`/non-TCP (v2), where the
    /// connection's own peer address stands.
    pub source: Option<SocketAddr>,
    /// Bytes the header occupies; the TLS stream starts right after.
    pub len: usize,
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Neither the v1 nor the v2 signature.
    #[error("no PROXY protocol signature")]
    NoSignature,
    /// A v1 line longer than the spec's 107 bytes, or without CRLF.
    #[error("PROXY v1 line too long")]
    TooLong,
    /// A v1 line that does not parse.
    #[error("malformed PROXY v1 line")]
    MalformedV1,
    /// A v2 header with a bad version, command or address block.
    #[error("malformed PROXY v2 header")]
    MalformedV2,
}

/// Spec §2.1: "PROXY" + space.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Spec §2.1: the longest v1 line, CRLF included.
const V1_MAX_LEN: usize = 107;
/// Spec §2.2: the 12-byte v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Spec §2.2: signature + version/command + family + 2-byte length.
const V2_HEADER_LEN: usize = 16;
/// Spec §2.2: the version nibble of v2.
const V2_VERSION: u8 = 0x2;
/// Spec §2.2: commands.
const V2_CMD_LOCAL: u8 = 0x0;
const V2_CMD_PROXY: u8 = 0x1;
/// Spec §2.2: address family + transport: TCP over IPv4 and over IPv6.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
/// Spec §2.2: address block sizes for TCP4 and TCP6.
const V2_TCP4_LEN: usize = 12;
const V2_TCP6_LEN: usize = 36;

/// Parses a header at the start of `buf`: `Ok(None)` means more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..n) == V2_SIGNATURE.get(..n) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf.get(..n) == V1_PREFIX.get(..n) {
        return parse_v1(buf);
    }
    Err(ProxyError::NoSignature)
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&window[..end]).map_err(|_| ProxyError::MalformedV1)?;
    let mut fields = line.split(' ');
    let (Some("PROXY"), Some(proto)) = (fields.next(), fields.next()) else {
        return Err(ProxyError::MalformedV1);
    };
    let source = match proto {
        "UNKNOWN" => None,
        "TCP4" | "TCP6" => {
            let parts: Vec<&str> = fields.collect();
            let [src, dst, sport, _dport] = parts.as_slice() else {
                return Err(ProxyError::MalformedV1);
            };
            let src: IpAddr = src.parse().map_err(|_| ProxyError::MalformedV1)?;
            let _: IpAddr = dst.parse().map_err(|_| ProxyError::MalformedV1)?;
            if (proto == "TCP4") != src.is_ipv4() {
                return Err(ProxyError::MalformedV1);
            }
            let sport: u16 = sport.parse().map_err(|_| ProxyError::MalformedV1)?;
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(ProxyError::MalformedV1),
    };
    Ok(Some(ProxyHeader {
        source,
        len: end + 2,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let Some(head) = buf.get(..V2_HEADER_LEN) else {
        return Ok(None);
    };
    let (ver_cmd, family) = (head[12], head[13]);
    let body_len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if ver_cmd >> 4 != V2_VERSION {
        return Err(ProxyError::MalformedV2);
    }
    let Some(body) = buf.get(V2_HEADER_LEN..V2_HEADER_LEN + body_len) else {
        return Ok(None);
    };
    let len = V2_HEADER_LEN + body_len;
    let source = match (ver_cmd & 0x0F, family) {
        (V2_CMD_LOCAL, _) => None,
        (V2_CMD_PROXY, V2_TCP4) => {
            let a = body.get(..V2_TCP4_LEN).ok_or(ProxyError::MalformedV2)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        (V2_CMD_PROXY, V2_TCP6) => {
            let a = body.get(..V2_TCP6_LEN).ok_or(ProxyError::MalformedV2)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        // UDP or UNIX sockets: not a TCP client address; the peer address stands.
        (V2_CMD_PROXY, _) => None,
        _ => return Err(ProxyError::MalformedV2),
    };
    Ok(Some(ProxyHeader { source, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_tcp4_line_gives_the_client_address_and_its_length() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\n\x16\x03\x01";
        let header = parse(line).unwrap().unwrap();
        assert_eq!(header.source, Some("192.0.2.7:51000".parse().unwrap()));
        assert_eq!(&line[header.len..], b"\x16\x03\x01");
    }

    #[test]
    fn a_v1_line_arriving_in_pieces_needs_more_until_the_crlf() {
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
        for cut in 0..line.len() - 1 {
            assert_eq!(parse(&line[..cut]), Ok(None), "cut at {cut}");
        }
        let header = parse(line).unwrap().unwrap();
        assert_eq!(header.source, Some("[2001:db8::1]:4000".parse().unwrap()));
    }

    #[test]
    fn v1_unknown_keeps_the_peer_address() {
        let header = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(
            header,
            ProxyHeader {
                source: None,
                len: 15
            }
        );
    }

    #[test]
    fn malformed_and_overlong_v1_lines_are_refused() {
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4\r\n"),
            Err(ProxyError::MalformedV1)
        );
        assert_eq!(
            parse(b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n"),
            Err(ProxyError::MalformedV1)
        );
        assert_eq!(parse(&[b'P'; 200]), Err(ProxyError::NoSignature));
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'x'; 150]);
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
    }

    #[test]
    fn a_tls_client_hello_is_not_a_proxy_header() {
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Err(ProxyError::NoSignature));
    }

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[0x20 | cmd, family]);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_v2_tcp4_header_gives_the_client_address_and_skips_tlvs() {
        let mut body = vec![203, 0, 113, 9, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB];
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0xAA]); // a TLV after the addresses
        let bytes = v2(1, V2_TCP4, &body);
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let header = parse(&bytes).unwrap().unwrap();
        assert_eq!(header.source, Some("203.0.113.9:50000".parse().unwrap()));
        assert_eq!(header.len, bytes.len());
    }

    #[test]
    fn a_v2_local_header_and_a_v2_tcp6_header_parse() {
        assert_eq!(parse(&v2(0, 0, &[])).unwrap().unwrap().source, None);
        let mut body = vec![0u8; 36];
        body[0] = 0x20;
        body[1] = 0x01;
        body[32] = 0x12;
        body[33] = 0x34;
        let header = parse(&v2(1, V2_TCP6, &body)).unwrap().unwrap();
        assert_eq!(header.source, Some("[2001::]:4660".parse().unwrap()));
    }

    #[test]
    fn bad_v2_versions_commands_and_short_address_blocks_are_refused() {
        let mut bad_version = v2(1, V2_TCP4, &[0; 12]);
        bad_version[12] = 0x11;
        assert_eq!(parse(&bad_version), Err(ProxyError::MalformedV2));
        assert_eq!(
            parse(&v2(5, V2_TCP4, &[0; 12])),
            Err(ProxyError::MalformedV2)
        );
        assert_eq!(
            parse(&v2(1, V2_TCP4, &[0; 4])),
            Err(ProxyError::MalformedV2)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x1234_5678_9abc_def0_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|i| (state >> ((i % 8) * 8)) as u8).collect();
            if state.is_multiple_of(3) {
                let mut with_sig = V2_SIGNATURE.to_vec();
                with_sig.append(&mut buf);
                buf = with_sig;
            }
            let _ = parse(&buf);
        }
    }
}
