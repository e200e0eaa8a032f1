//! Bodies of the cargo-fuzz targets under `gateway/fuzz`, kept here so they build with the
//! crate and the committed seed corpus can be replayed by an ordinary test on stable.
//!
//! Each function must never panic, whatever the input; the assertions inside check invariants
//! that hold for any input.

use crate::deframer::Deframer;
use crate::http::RequestParser;
use crate::packet::{ControlMessage, HEADER_LEN, MAX_PACKET_LEN, Packet};

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
