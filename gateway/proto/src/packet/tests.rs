use super::*;
use crate::{
    attribute::{Attribute, CryptoBinding, CryptoBindingRequest, StatusInfo},
    wire::{AttributeId, EncapsulatedProtocol, HashProtocol, HashProtocolSet, Status},
};

fn encoded(message: &ControlMessage) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode(&mut out);
    out
}

#[test]
fn connect_request_matches_the_spec_example_bytes() {
    let bytes = encoded(&ControlMessage::CallConnectRequest(
        EncapsulatedProtocol::PPP,
    ));
    assert_eq!(
        bytes,
        [0x10, 0x01, 0x00, 0x0e, 0, 1, 0, 1, 0, 1, 0, 6, 0, 1]
    );
}

#[test]
fn every_control_message_round_trips_with_its_spec_length() {
    let binding = CryptoBinding {
        hash_protocol: HashProtocol::SHA256,
        nonce: [7; 32],
        cert_hash: [8; 32],
        compound_mac: [9; 32],
    };
    let cases = [
        (
            ControlMessage::CallConnectRequest(EncapsulatedProtocol::PPP),
            14,
        ),
        (
            ControlMessage::CallConnectAck(CryptoBindingRequest {
                hash_protocols: HashProtocolSet::BOTH,
                nonce: [1; 32],
            }),
            48,
        ),
        (
            ControlMessage::CallConnectNak(vec![StatusInfo {
                attribute: AttributeId::ENCAPSULATED_PROTOCOL_ID,
                status: Status::VALUE_NOT_SUPPORTED,
                value: vec![0, 2],
            }]),
            22,
        ),
        (ControlMessage::CallConnected(binding), 112),
        (ControlMessage::CallAbort(Some(StatusInfo::no_error())), 20),
        (ControlMessage::CallAbort(None), 8),
        (
            ControlMessage::CallDisconnect(Some(StatusInfo::no_error())),
            20,
        ),
        (ControlMessage::CallDisconnectAck, 8),
        (ControlMessage::EchoRequest, 8),
        (ControlMessage::EchoResponse, 8),
    ];
    for (message, len) in cases {
        let bytes = encoded(&message);
        assert_eq!(bytes.len(), len, "{message:?}");
        assert_eq!(Packet::decode(&bytes), Ok(Packet::Control(message)));
    }
}

#[test]
fn data_packet_round_trips() {
    let mut out = Vec::new();
    encode_data(&[0xff, 0x03, 0x00, 0x21, 0x45], &mut out).expect("fits");
    assert_eq!(out, [0x10, 0x00, 0x00, 0x09, 0xff, 0x03, 0x00, 0x21, 0x45]);
    assert_eq!(
        Packet::decode(&out),
        Ok(Packet::Data(&[0xff, 0x03, 0x00, 0x21, 0x45]))
    );
}

#[test]
fn data_payload_above_4091_bytes_is_refused() {
    let mut out = Vec::new();
    assert_eq!(
        encode_data(&[0; MAX_PAYLOAD_LEN + 1], &mut out),
        Err(TooLarge(4092))
    );
    assert!(encode_data(&[0; MAX_PAYLOAD_LEN], &mut out).is_ok());
}

#[test]
fn unknown_message_type_is_reported_with_its_value() {
    let bytes = [0x10, 0x01, 0x00, 0x08, 0x00, 0x42, 0x00, 0x00];
    assert_eq!(
        Packet::decode(&bytes),
        Err(DecodeError::UnknownMessageType(MessageType(0x42)))
    );
}

#[test]
fn call_connected_without_binding_is_a_missing_attribute() {
    let bytes = [0x10, 0x01, 0x00, 0x08, 0x00, 0x04, 0x00, 0x00];
    assert_eq!(
        Packet::decode(&bytes),
        Err(DecodeError::MissingAttribute(AttributeId::CRYPTO_BINDING))
    );
}

#[test]
fn connect_request_with_error_status_info_maps_to_status_info_not_supported() {
    let mut body = vec![0, 1, 0, 2];
    Attribute::EncapsulatedProtocolId(EncapsulatedProtocol::PPP).encode(&mut body);
    Attribute::StatusInfo(StatusInfo::new(
        AttributeId::NO_ERROR,
        Status::NEGOTIATION_TIMEOUT,
    ))
    .encode(&mut body);
    let err = ControlMessage::decode(&body).expect_err("status info with an error");
    assert_eq!(
        crate::server::nak_status(&err),
        Some(StatusInfo::new(
            AttributeId::STATUS_INFO,
            Status::STATUS_INFO_NOT_SUPPORTED_IN_MSG
        ))
    );
}

#[test]
fn duplicate_protocol_attribute_maps_to_duplicate_attribute() {
    let mut body = vec![0, 1, 0, 2];
    for _ in 0..2 {
        Attribute::EncapsulatedProtocolId(EncapsulatedProtocol::PPP).encode(&mut body);
    }
    let err = ControlMessage::decode(&body).expect_err("duplicate");
    assert_eq!(
        crate::server::nak_status(&err),
        Some(StatusInfo::new(
            AttributeId::ENCAPSULATED_PROTOCOL_ID,
            Status::DUPLICATE_ATTRIBUTE
        ))
    );
}

#[test]
fn header_rejects_wrong_version_and_impossible_lengths() {
    assert_eq!(
        Header::parse([0x11, 0, 0, 8]),
        Err(FramingError::Version(0x11))
    );
    assert_eq!(
        Header::parse([0x10, 0, 0, 3]),
        Err(FramingError::TooShort {
            length: 3,
            control: false
        })
    );
    assert_eq!(
        Header::parse([0x10, 1, 0, 7]),
        Err(FramingError::TooShort {
            length: 7,
            control: true
        })
    );
    assert_eq!(
        Header::parse([0x10, 0xfe, 0xff, 0xff]),
        Ok(Header {
            control: false,
            length: 4095
        })
    );
}
