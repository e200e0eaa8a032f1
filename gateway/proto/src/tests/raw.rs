//! A scripted raw peer against the server: malformed and out-of-order input, each asserting the
//! close reason and exactly what the server wrote.

use std::time::Duration;

use crate::{
    AttributeId, CloseReason, ControlMessage, DecodeError, Deframer, FramingError, MessageType,
    Packet, ServerEvent, Status, StatusInfo, http,
};

mod peer;

use peer::{CONNECT_REQUEST, RawClient, abort, control, is_connect_ack, status};

#[test]
fn a_zero_length_packet_drops_the_connection_without_a_word() {
    let mut raw = RawClient::after_http();
    raw.send(&[0x10, 0x00, 0x00, 0x00, 0x10, 0x00]);
    assert!(raw.server.is_closed());
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::Framing(FramingError::TooShort {
            length: 0,
            control: false
        }))
    );
    assert_eq!(raw.control_written(), vec![]);
    assert_eq!(raw.server.poll_timeout(), None);
}

#[test]
fn a_wrong_version_or_a_short_control_packet_drops_the_connection_silently() {
    for (bytes, err) in [
        (&[0x20, 0x01, 0x00, 0x08][..], FramingError::Version(0x20)),
        (
            &[0x10, 0x01, 0x00, 0x05][..],
            FramingError::TooShort {
                length: 5,
                control: true,
            },
        ),
    ] {
        let mut raw = RawClient::after_connect_request();
        let before = raw.control_written();
        raw.send(bytes);
        assert_eq!(raw.closed_reason(), Some(&CloseReason::Framing(err)));
        assert_eq!(
            raw.control_written(),
            before,
            "nothing is sent after a framing error"
        );
    }
}

#[test]
fn an_unknown_message_type_aborts_with_invalid_frame_received() {
    let mut raw = RawClient::after_connect_request();
    raw.send(&control(MessageType(0x42), &[], 0));
    let written = raw.control_written();
    assert_eq!(
        written.last(),
        Some(&abort(
            AttributeId::NO_ERROR,
            Status::INVALID_FRAME_RECEIVED
        ))
    );
    raw.run_until_closed();
    // No CALL_ABORT came back: the server gives up after TIMER_VAL_ABORT_STATE_TIMER_1.
    assert_eq!(raw.now - raw.start, Duration::from_secs(3));
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::InvalidMessage(
            DecodeError::UnknownMessageType(MessageType(0x42))
        ))
    );
}

#[test]
fn the_peers_abort_answer_shortens_the_wait_to_one_second() {
    let mut raw = RawClient::after_connect_request();
    raw.send(&control(MessageType(0x42), &[], 0));
    raw.send(&control(MessageType::CALL_ABORT, &[], 0));
    raw.run_until_closed();
    assert_eq!(raw.now - raw.start, Duration::from_secs(1));
}

#[test]
fn an_unknown_attribute_in_connect_request_is_nakked_as_unrecognized() {
    let mut raw = RawClient::after_http();
    raw.send(&control(
        MessageType::CALL_CONNECT_REQUEST,
        &[0, 0x7f, 0, 4],
        1,
    ));
    assert_eq!(
        raw.control_written(),
        vec![ControlMessage::CallConnectNak(vec![status(
            AttributeId(0x7f),
            Status::UNRECOGNIZED_ATTRIBUTE
        )])]
    );
    assert!(!raw.server.is_closed());
    raw.send(&CONNECT_REQUEST);
    assert!(
        raw.control_written().iter().any(is_connect_ack),
        "a corrected request is accepted"
    );
}

#[test]
fn an_attribute_longer_than_its_packet_is_nakked_as_invalid_length() {
    let mut raw = RawClient::after_http();
    raw.send(&control(
        MessageType::CALL_CONNECT_REQUEST,
        &[0, 1, 0, 0x20, 0, 1],
        1,
    ));
    assert_eq!(
        raw.control_written(),
        vec![ControlMessage::CallConnectNak(vec![status(
            AttributeId::ENCAPSULATED_PROTOCOL_ID,
            Status::INVALID_ATTRIB_VALUE_LENGTH
        )])]
    );
}

#[test]
fn a_truncated_connect_request_aborts_with_invalid_frame_received() {
    let mut raw = RawClient::after_http();
    raw.send(&control(MessageType::CALL_CONNECT_REQUEST, &[], 1));
    assert_eq!(
        raw.control_written(),
        vec![abort(AttributeId::NO_ERROR, Status::INVALID_FRAME_RECEIVED)]
    );
    raw.run_until_closed();
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::InvalidMessage(DecodeError::AttributeCount {
            declared: 1,
            found: 0
        }))
    );
}

#[test]
fn an_unsupported_protocol_is_nakked_three_times_then_aborted() {
    let mut raw = RawClient::after_http();
    let bad = control(MessageType::CALL_CONNECT_REQUEST, &[0, 1, 0, 6, 0, 2], 1);
    for _ in 0..4 {
        raw.send(&bad);
    }
    let nak = ControlMessage::CallConnectNak(vec![StatusInfo {
        attribute: AttributeId::ENCAPSULATED_PROTOCOL_ID,
        status: Status::VALUE_NOT_SUPPORTED,
        value: vec![0, 2],
    }]);
    let retry = abort(AttributeId::STATUS_INFO, Status::RETRY_COUNT_EXCEEDED);
    assert_eq!(
        raw.control_written(),
        vec![nak.clone(), nak.clone(), nak, retry]
    );
    raw.run_until_closed();
    assert_eq!(raw.closed_reason(), Some(&CloseReason::RetryCountExceeded));
}

#[test]
fn call_connected_without_crypto_binding_aborts_with_attrib_not_supported_in_msg() {
    let mut raw = RawClient::after_connect_request();
    raw.send(&control(MessageType::CALL_CONNECTED, &[], 0));
    assert_eq!(
        raw.control_written().last(),
        Some(&abort(
            AttributeId::STATUS_INFO,
            Status::ATTRIB_NOT_SUPPORTED_IN_MSG
        ))
    );
    raw.run_until_closed();
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::InvalidMessage(DecodeError::MissingAttribute(
            AttributeId::CRYPTO_BINDING
        )))
    );
}

#[test]
fn an_unknown_attribute_in_call_connected_aborts_with_attrib_not_supported_in_msg() {
    let mut raw = RawClient::after_connect_request();
    raw.send(&control(MessageType::CALL_CONNECTED, &[0, 0x09, 0, 4], 1));
    assert_eq!(
        raw.control_written().last(),
        Some(&abort(
            AttributeId::STATUS_INFO,
            Status::ATTRIB_NOT_SUPPORTED_IN_MSG
        ))
    );
}

#[test]
fn an_echo_before_the_call_is_connected_is_unexpected() {
    let mut raw = RawClient::after_http();
    raw.send(&control(MessageType::ECHO_REQUEST, &[], 0));
    assert_eq!(
        raw.control_written(),
        vec![abort(
            AttributeId::NO_ERROR,
            Status::UNACCEPTED_FRAME_RECEIVED
        )]
    );
    raw.run_until_closed();
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::UnexpectedMessage(MessageType::ECHO_REQUEST))
    );
}

#[test]
fn a_peer_abort_is_answered_and_the_call_closes_one_second_later() {
    let mut raw = RawClient::after_connect_request();
    let info = status(AttributeId::NO_ERROR, Status::NEGOTIATION_TIMEOUT);
    let mut attr = Vec::new();
    crate::Attribute::StatusInfo(info.clone()).encode(&mut attr);
    raw.send(&control(MessageType::CALL_ABORT, &attr, 1));
    assert_eq!(
        raw.control_written().last(),
        Some(&ControlMessage::CallAbort(Some(StatusInfo::no_error())))
    );
    raw.run_until_closed();
    assert_eq!(raw.now - raw.start, Duration::from_secs(1));
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::PeerAborted(Some(info)))
    );
}

#[test]
fn no_connect_request_within_60_seconds_of_accept_aborts_with_negotiation_timeout() {
    let mut raw = RawClient::after_http();
    assert!(raw.step());
    assert_eq!(raw.now - raw.start, Duration::from_secs(60));
    assert_eq!(
        raw.control_written(),
        vec![abort(AttributeId::NO_ERROR, Status::NEGOTIATION_TIMEOUT)]
    );
}

#[test]
fn an_http_request_that_never_ends_is_dropped_after_60_seconds() {
    let mut raw = RawClient::new();
    raw.send(b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n");
    raw.run_until_closed();
    assert_eq!(raw.now - raw.start, Duration::from_secs(60));
    assert_eq!(raw.closed_reason(), Some(&CloseReason::NegotiationTimeout));
    assert!(raw.wire.is_empty());
}

#[test]
fn http_with_another_method_path_or_an_endless_header_gets_an_http_error() {
    let endless = {
        let mut r =
            b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n".to_vec();
        r.extend(b"X: y\r\n".repeat(2000));
        r
    };
    let cases: [(&[u8], http::Rejection, &str); 3] = [
        (
            b"POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n\r\n",
            http::Rejection::MethodNotAllowed,
            "HTTP/1.1 405 ",
        ),
        (
            b"SSTP_DUPLEX_POST /index.html HTTP/1.1\r\n\r\n",
            http::Rejection::NotFound,
            "HTTP/1.1 404 ",
        ),
        (&endless, http::Rejection::HeaderTooLarge, "HTTP/1.1 431 "),
    ];
    for (request, rejection, status_line) in cases {
        let mut raw = RawClient::new();
        raw.send(request);
        assert!(raw.server.is_closed());
        assert_eq!(
            raw.closed_reason(),
            Some(&CloseReason::HttpRejected(rejection))
        );
        let (head, messages) = raw.written();
        assert!(head.starts_with(status_line), "{head}");
        assert!(head.contains("Connection: close\r\n"));
        assert!(messages.is_empty());
    }
}

#[test]
fn a_busy_server_answers_a_valid_request_with_503_and_nothing_else() {
    let mut raw = RawClient::new();
    raw.server.set_busy(true);
    let mut request = Vec::new();
    http::write_request(&mut request, "vpn.example.com", None);
    // A pipelined CALL_CONNECT_REQUEST must not start SSTP on a refused connection.
    request.extend_from_slice(&CONNECT_REQUEST);
    raw.send(&request);
    assert!(raw.server.is_closed());
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::HttpRejected(http::Rejection::Busy))
    );
    let (head, messages) = raw.written();
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.contains("Retry-After: 30\r\n"), "{head}");
    assert!(messages.is_empty());
    assert!(
        !raw.events
            .iter()
            .any(|e| matches!(e, ServerEvent::HttpAccepted { .. }))
    );

    // Room again before the request completes: served as usual.
    let mut raw = RawClient::new();
    raw.server.set_busy(true);
    raw.server.set_busy(false);
    raw.send(&request);
    assert!(!raw.server.is_closed());
    assert!(raw.written().0.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn data_packets_before_connect_request_are_dropped_silently() {
    let mut raw = RawClient::after_http();
    raw.send(&[0x10, 0x00, 0x00, 0x08, 0xff, 0x03, 0xc0, 0x21]);
    assert_eq!(raw.control_written(), vec![]);
    assert!(!raw.server.is_closed());
}

#[test]
fn a_lost_transport_closes_at_once_without_sending() {
    let mut raw = RawClient::after_connect_request();
    let before = raw.wire.len();
    raw.server.transport_closed();
    raw.collect();
    assert_eq!(raw.closed_reason(), Some(&CloseReason::TransportClosed));
    assert_eq!(raw.wire.len(), before);
}

#[test]
fn a_second_call_connected_while_the_first_waits_for_authentication_aborts() {
    let mut raw = RawClient::after_connect_request();
    let bogus = crate::CryptoBinding {
        hash_protocol: crate::HashProtocol::SHA256,
        nonce: [0; 32],
        cert_hash: [0; 32],
        compound_mac: [0; 32],
    };
    let mut packet = Vec::new();
    ControlMessage::CallConnected(bogus).encode(&mut packet);
    raw.send(&packet);
    assert!(
        !raw.control_written()
            .iter()
            .any(|m| matches!(m, ControlMessage::CallAbort(_)))
    );
    raw.send(&packet);
    assert_eq!(
        raw.control_written().last(),
        Some(&abort(
            AttributeId::NO_ERROR,
            Status::UNACCEPTED_FRAME_RECEIVED
        ))
    );
}

#[test]
fn a_connect_request_pipelined_with_the_http_request_is_answered() {
    let mut raw = RawClient::new();
    let mut bytes = Vec::new();
    http::write_request(&mut bytes, "vpn.example.com", None);
    bytes.extend_from_slice(&CONNECT_REQUEST);
    raw.send(&bytes);
    let (head, messages) = raw.written();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(messages.first().is_some_and(is_connect_ack));
}

/// Trap #22: a client that writes the HTTP request, CALL_CONNECT_REQUEST and its first LCP
/// Configure-Request in one go, with the reserved bits of every length field set (the
/// edgetunnel-family client ORs 0x8000 in; §2.2.1 says they MUST be ignored), gets each one
/// answered.
#[test]
fn pipelined_http_connect_request_and_lcp_request_with_reserved_bits_are_all_answered() {
    let mut raw = RawClient::new();
    let mut bytes = Vec::new();
    http::write_request(
        &mut bytes,
        "vpn.example.com",
        Some("{62DFA5C0-E2E9-4C4F-9C0D-3A3B3C3D3E3F}"),
    );
    let mut connect = CONNECT_REQUEST.to_vec();
    connect[2] |= 0x80;
    bytes.extend_from_slice(&connect);
    // LCP Configure-Request id 1: MRU 4091, Magic.
    let lcp = [
        0xFF, 0x03, 0xC0, 0x21, 0x01, 0x01, 0x00, 0x0E, 0x01, 0x04, 0x0F, 0xFB, 0x05, 0x06, 0x11,
        0x22, 0x33, 0x44,
    ];
    let len = u16::try_from(4 + lcp.len()).unwrap() | 0xF000;
    bytes.extend_from_slice(&[0x10, 0xFE]);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&lcp);
    raw.send(&bytes);
    let (head, messages) = raw.written();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(messages.first().is_some_and(is_connect_ack));
    let end = raw.wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut lcp_answers = Vec::new();
    Deframer::new()
        .feed(&raw.wire[end..], |f| {
            if let Ok(Packet::Data(frame)) = Packet::decode(f.bytes)
                && frame[2..4] == [0xC0, 0x21]
            {
                lcp_answers.push((frame[4], frame[5]));
            }
        })
        .unwrap();
    assert!(
        lcp_answers.contains(&(2, 1)),
        "Configure-Ack of id 1: {lcp_answers:?}"
    );
    assert!(
        lcp_answers.iter().any(|(code, _)| *code == 1),
        "the server's own request"
    );
    assert_eq!(raw.closed_reason(), None);
}

/// Trap #21 (SPEC <4>): Windows always puts a Status Info in CALL_DISCONNECT.
#[test]
fn a_call_disconnect_with_status_info_is_acknowledged() {
    let mut raw = RawClient::after_connect_request();
    let mut attr = Vec::new();
    crate::Attribute::StatusInfo(status(AttributeId::NO_ERROR, Status::NO_ERROR)).encode(&mut attr);
    raw.send(&control(MessageType::CALL_DISCONNECT, &attr, 1));
    assert_eq!(
        raw.control_written().last(),
        Some(&ControlMessage::CallDisconnectAck)
    );
    raw.run_until_closed();
    assert_eq!(raw.closed_reason(), Some(&CloseReason::PeerDisconnected));
}

/// Trap #23 (SPEC §3.2.4.1 <7>): any query on the SSTP path is ignored, `tenantid` or not.
#[test]
fn query_strings_on_the_sstp_path_are_ignored() {
    for query in ["?tenantid=acme", "?", "?a=1&b=2", "?tenantid=%7Bx%7D&x=y"] {
        let mut raw = RawClient::new();
        let request = format!(
            "SSTP_DUPLEX_POST /sra_{{BA195980-CD49-458b-9E23-C84EE0ADCD75}}/{query} HTTP/1.1\r\n\
             Host: vpn.example.com\r\nContent-Length: 18446744073709551615\r\n\r\n"
        );
        raw.send(request.as_bytes());
        raw.send(&CONNECT_REQUEST);
        let (head, messages) = raw.written();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{query}: {head}");
        assert!(messages.first().is_some_and(is_connect_ack), "{query}");
    }
}

/// Trap #12 (sorz/sstp-server ceb22845, 0a9d3c26): an ECHO_REQUEST that arrives while the call
/// is being torn down is ignored, neither answered nor fatal.
#[test]
fn an_echo_during_a_disconnect_is_ignored() {
    let mut raw = RawClient::after_connect_request();
    raw.send(&control(MessageType::CALL_DISCONNECT, &[], 0));
    let before = raw.control_written().len();
    raw.send(&control(MessageType::ECHO_REQUEST, &[], 0));
    assert_eq!(raw.control_written().len(), before, "no answer");
    raw.run_until_closed();
    assert_eq!(raw.closed_reason(), Some(&CloseReason::PeerDisconnected));
}
