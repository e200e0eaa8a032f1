//! Failures between the real client and server: each asserts the event reason and what went
//! on the wire.

use std::time::Duration;

use sstp_ppp::{AuthFailure, DownReason};

use super::{cert, client_config, pair::Pair, server_config};
use crate::{
    AttributeId, BindingError, CallConnectedTiming, CertHashes, ClientEvent, CloseReason,
    ControlMessage, HashProtocol, HashProtocolSet, MessageType, ServerEvent, Status, StatusInfo,
};

fn abort_with(attribute: AttributeId, status: Status) -> ControlMessage {
    ControlMessage::CallAbort(Some(StatusInfo::new(attribute, status)))
}

fn failed_login(username: &str, password: &str) -> Pair {
    let mut pair = Pair::with(client_config(username, password), server_config());
    pair.run_until_closed();
    pair
}

#[test]
fn a_wrong_password_fails_authentication_and_disconnects() {
    let pair = failed_login("alice", "wrong");
    assert!(pair.server_events.contains(&ServerEvent::AuthFailed {
        username: Some("alice".to_owned()),
        reason: AuthFailure::BadPassword,
    }));
    assert_eq!(
        pair.server_closed_reason(),
        Some(&CloseReason::Ppp(DownReason::AuthFailed(
            AuthFailure::BadPassword
        )))
    );
    assert!(
        pair.server_sent.contains(&ControlMessage::CallDisconnect(
            Some(StatusInfo::no_error())
        ))
    );
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Connected { .. }))
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::AuthFailed { .. }))
    );
    assert!(pair.pool.in_use().is_empty());
}

#[test]
fn an_unknown_user_fails_authentication_with_its_own_reason() {
    let pair = failed_login("mallory", "whatever");
    assert!(pair.server_events.contains(&ServerEvent::AuthFailed {
        username: Some("mallory".to_owned()),
        reason: AuthFailure::UnknownUser,
    }));
    assert_eq!(
        pair.server_closed_reason(),
        Some(&CloseReason::Ppp(DownReason::AuthFailed(
            AuthFailure::UnknownUser
        )))
    );
}

/// Runs to the end with `tamper` applied to the client's CALL_CONNECTED.
fn bad_binding(server: crate::ServerConfig, tamper: fn(&mut Vec<u8>)) -> Pair {
    let mut pair = Pair::with(client_config("alice", super::PASSWORD), server);
    pair.tamper = Some(Box::new(move |packet: &mut Vec<u8>| {
        if packet.len() == 112 && packet[4..6] == MessageType::CALL_CONNECTED.0.to_be_bytes() {
            tamper(packet);
        }
    }));
    pair.run_until_closed();
    pair
}

fn assert_binding_abort(pair: &Pair, err: BindingError) {
    let abort = abort_with(AttributeId::CRYPTO_BINDING, Status::VALUE_NOT_SUPPORTED);
    assert!(
        pair.server_sent.contains(&abort),
        "server sent {:?}",
        pair.server_sent
    );
    assert_eq!(
        pair.server_closed_reason(),
        Some(&CloseReason::CryptoBinding(err))
    );
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Connected { .. }))
    );
    assert!(matches!(
        pair.client_closed_reason(),
        Some(CloseReason::PeerAborted(Some(_)))
    ));
    assert!(pair.pool.in_use().is_empty());
}

#[test]
fn a_bad_compound_mac_aborts_with_crypto_binding_value_not_supported() {
    let pair = bad_binding(server_config(), |p| p[100] ^= 0x01);
    assert_binding_abort(&pair, BindingError::CompoundMac);
}

#[test]
fn a_wrong_nonce_aborts_with_crypto_binding_value_not_supported() {
    let pair = bad_binding(server_config(), |p| p[16] ^= 0x80);
    assert_binding_abort(&pair, BindingError::Nonce);
}

#[test]
fn a_hash_protocol_that_was_not_offered_is_refused() {
    let mut server = server_config();
    server.hash_protocols = HashProtocolSet::SHA256;
    let pair = bad_binding(server, |p| p[15] = HashProtocol::SHA1.0);
    assert_binding_abort(&pair, BindingError::HashProtocol(HashProtocol::SHA1));
}

#[test]
fn a_binding_to_another_certificate_is_refused() {
    let other = CertHashes::from_der(b"a man in the middle's certificate");
    let mut pair = Pair::with_cert(
        client_config("alice", super::PASSWORD),
        server_config(),
        other,
    );
    pair.run_until_closed();
    assert_binding_abort(&pair, BindingError::CertHash);
    assert_ne!(
        cert(),
        CertHashes::from_der(b"a man in the middle's certificate")
    );
}

#[test]
fn a_client_that_never_sends_call_connected_is_aborted_after_60_seconds() {
    let mut client = client_config("alice", super::PASSWORD);
    client.call_connected = CallConnectedTiming::Never;
    let mut pair = Pair::with(client, server_config());
    pair.run_until("server aborted", |p| {
        !p.server_sent
            .iter()
            .all(|m| !matches!(m, ControlMessage::CallAbort(_)))
    });
    // The whole exchange before that takes no virtual time: the timer ran from CONNECT_ACK.
    assert_eq!(pair.elapsed(), Duration::from_secs(60));
    assert!(pair.server_sent.contains(&abort_with(
        AttributeId::NO_ERROR,
        Status::NEGOTIATION_TIMEOUT
    )));
    pair.run_until_closed();
    assert_eq!(
        pair.server_closed_reason(),
        Some(&CloseReason::NegotiationTimeout)
    );
}

#[test]
fn a_peer_that_stops_answering_is_dropped_after_two_hello_intervals_without_abort() {
    let mut pair = Pair::new();
    pair.connect();
    let connected_at = pair.now;
    pair.client_muted = true;
    pair.run_until("server closed", |p| p.server.is_closed());
    assert_eq!(
        pair.server_closed_reason(),
        Some(&CloseReason::HelloTimeout)
    );
    assert_eq!(pair.now - connected_at, Duration::from_secs(120));
    assert_eq!(pair.server_sent.last(), Some(&ControlMessage::EchoRequest));
    assert!(
        !pair
            .server_sent
            .iter()
            .any(|m| matches!(m, ControlMessage::CallAbort(_)))
    );
    assert!(pair.pool.in_use().is_empty());
}
