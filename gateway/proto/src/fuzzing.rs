//! Bodies of the cargo-fuzz targets under `gateway/fuzz`, kept here so they build with the
//! crate and the committed seed corpus can be replayed by an ordinary test on stable.
//!
//! Each function must never panic, whatever the input; the assertions inside check invariants
//! that hold for any input.

use std::time::Instant;

use crate::control::ControlMessage;
use crate::deframer::Deframer;
use crate::http::RequestParser;
use crate::packet::{HEADER_LEN, MAX_PACKET_LEN, Packet};
use crate::{ServerConnection, ServerEvent};

/// Feeds `data` to a deframer in chunks whose sizes come from the data itself, and decodes
/// every packet. Checks that packets come out whole and within the size limits.
pub fn sstp_deframer(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let mut deframer = Deframer::new();
    let (a, b) = data.split_at(usize::from(split).min(data.len()));
    for chunk in [a, b] {
        let result = deframer.feed(chunk, |frame| {
            assert!(frame.bytes.len() >= HEADER_LEN && frame.bytes.len() <= MAX_PACKET_LEN);
            assert_eq!(frame.bytes.len(), usize::from(frame.header.length));
            let _ = Packet::decode(frame.bytes);
        });
        if result.is_err() {
            return;
        }
    }
}

/// Decodes `data` as a control packet body; whatever decodes must re-encode to an equivalent
/// message.
pub fn sstp_control(data: &[u8]) {
    if let Ok(message) = ControlMessage::decode(data) {
        let mut out = Vec::new();
        message.encode(&mut out);
        assert_eq!(Packet::decode(&out), Ok(Packet::Control(message)));
    }
}

/// Feeds `data` to the request parser in two chunks; a rejection must produce a response.
pub fn http_preamble(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let (a, b) = data.split_at(usize::from(split).min(data.len()));
    let mut parser = RequestParser::new();
    for chunk in [a, b] {
        match parser.feed(chunk) {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(rejection) => {
                let mut out = Vec::new();
                rejection.write_response(&mut out);
                assert!(out.ends_with(b"\r\n\r\n"));
                return;
            }
        }
    }
}

/// Drives a whole [`crate::ServerConnection`] with `data` as the client's byte stream.
///
/// Layout: byte 0 bit 0 set prepends a valid HTTP request (so the fuzzer reaches SSTP
/// quickly); byte 1 is the chunk size; the rest is the stream. Afterwards the clock runs
/// through every timer. Checks that `Closed` is reported at most once and is the last event.
pub fn server_session(data: &[u8]) {
    let Some((&[flags, chunk], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut input = Vec::new();
    if flags & 1 == 1 {
        crate::http::write_request(&mut input, "fuzz", None);
    }
    input.extend_from_slice(stream);
    let start = Instant::now();
    let mut server = session::server(start);
    let mut closed = 0;
    let mut out = Vec::new();
    let mut check = |server: &mut ServerConnection, out: &mut Vec<u8>| {
        server.poll_transmit(out);
        out.clear();
        while server.poll_ip().is_some() {}
        while let Some(event) = server.poll_event() {
            assert_eq!(closed, 0, "event after Closed: {event:?}");
            if matches!(event, ServerEvent::Closed { .. }) {
                closed += 1;
            }
        }
    };
    for piece in input.chunks(usize::from(chunk.max(1))) {
        server.handle_input(start, piece);
        check(&mut server, &mut out);
    }
    for _ in 0..64 {
        let Some(next) = server.poll_timeout() else {
            break;
        };
        server.handle_timeout(next);
        check(&mut server, &mut out);
    }
    assert_eq!(server.is_closed(), closed == 1);
}

/// A fixed server for [`server_session`]: one user, one address, a deterministic generator.
pub(crate) mod session {
    use std::{net::Ipv4Addr, sync::Arc, time::Instant};

    use sstp_ppp::{AddressAllocator, AuthPolicy, Lookup, NtHash, UserLookup, fuzzing::XorShift};

    use crate::{CertHashes, ServerConfig, ServerConnection};

    struct OneUser;

    impl UserLookup for OneUser {
        fn lookup(&self, username: &str) -> Lookup {
            if username == "alice" {
                Lookup::Found(NtHash::from_password("password"))
            } else {
                Lookup::Unknown
            }
        }
    }

    struct OneAddress;

    impl AddressAllocator for OneAddress {
        fn allocate(&mut self, _username: &str) -> Result<Ipv4Addr, sstp_ppp::Refusal> {
            Ok(Ipv4Addr::new(10, 0, 0, 2))
        }

        fn release(&mut self, _addr: Ipv4Addr) {}
    }

    pub(crate) fn server(now: Instant) -> ServerConnection {
        let ppp = sstp_ppp::ServerConfig {
            auth: AuthPolicy {
                mschapv2: true,
                pap: true,
            },
            server_name: "fuzz".to_owned(),
            local_ipv4: Ipv4Addr::new(10, 0, 0, 1),
            dns: [None, None],
            mru: 1500,
            ipv6: true,
            timers: sstp_ppp::Timers::default(),
        };
        ServerConnection::new(
            Arc::new(ServerConfig::new(Arc::new(ppp))),
            CertHashes::from_der(b"fuzz"),
            Arc::new(OneUser),
            Box::new(OneAddress),
            Box::new(XorShift(0x9e37_79b9_7f4a_7c15)),
            now,
        )
    }
}

/// Parses `data` as a PROXY protocol header; a complete header must lie within the input and
/// be at least as long as the shortest possible header.
pub fn proxy_header(data: &[u8]) {
    if let Ok(Some(header)) = crate::proxy_protocol::parse(data) {
        assert!(header.len <= data.len());
        assert!(header.len >= 15, "shorter than `PROXY UNKNOWN\\r\\n`");
    }
}

/// Reads `data` as the first bytes of a TLS connection. A ClientHello found lies within the
/// input and the buffering cap, reads the same from exactly its own bytes, and every shorter
/// prefix of it asks for more; "need more" is only said below the cap.
pub fn client_hello(data: &[u8]) {
    use crate::client_hello::{MAX_BUFFERED, Scan, host_part, scan};
    match scan(data) {
        Scan::Hello(hello) => {
            assert!(hello.len <= data.len() && hello.len <= MAX_BUFFERED);
            assert_eq!(scan(&data[..hello.len]), Scan::Hello(hello.clone()));
            for cut in [0, hello.len / 2, hello.len.saturating_sub(1)] {
                assert_eq!(scan(&data[..cut]), Scan::NeedMore, "prefix of {cut} bytes");
            }
            if let Some(name) = &hello.server_name {
                assert!(host_part(name).len() <= name.len());
            }
        }
        Scan::NeedMore => assert!(data.len() < MAX_BUFFERED),
        Scan::NotHello => {}
    }
}
