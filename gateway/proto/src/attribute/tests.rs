use super::*;

fn round_trip(attribute: Attribute) {
    let mut out = Vec::new();
    attribute.encode(&mut out);
    let raw = split_attributes(&out, 1).expect("one attribute");
    assert_eq!(raw.len(), 1);
    assert_eq!(Attribute::decode(raw[0]).expect("decodes"), attribute);
}

#[test]
fn every_attribute_round_trips() {
    round_trip(Attribute::EncapsulatedProtocolId(EncapsulatedProtocol::PPP));
    round_trip(Attribute::StatusInfo(StatusInfo {
        attribute: AttributeId::ENCAPSULATED_PROTOCOL_ID,
        status: Status::VALUE_NOT_SUPPORTED,
        value: vec![0, 2],
    }));
    round_trip(Attribute::CryptoBinding(CryptoBinding {
        hash_protocol: HashProtocol::SHA256,
        nonce: [1; 32],
        cert_hash: [2; 32],
        compound_mac: [3; 32],
    }));
    round_trip(Attribute::CryptoBindingRequest(CryptoBindingRequest {
        hash_protocols: HashProtocolSet::BOTH,
        nonce: [4; 32],
    }));
}

#[test]
fn encapsulated_protocol_with_a_wrong_length_is_an_invalid_length() {
    let raw = RawAttribute {
        id: AttributeId::ENCAPSULATED_PROTOCOL_ID,
        value: &[0, 1, 0],
    };
    assert_eq!(
        Attribute::decode(raw),
        Err(DecodeError::InvalidAttributeLength(
            AttributeId::ENCAPSULATED_PROTOCOL_ID
        ))
    );
}

#[test]
fn unknown_attribute_id_is_reported_with_its_value() {
    let raw = RawAttribute {
        id: AttributeId(0x7f),
        value: &[],
    };
    assert_eq!(
        Attribute::decode(raw),
        Err(DecodeError::UnrecognizedAttribute(AttributeId(0x7f)))
    );
}

#[test]
fn attribute_length_below_its_header_is_rejected_instead_of_looping() {
    let body = [0, 1, 0, 0];
    assert_eq!(
        split_attributes(&body, 1),
        Err(DecodeError::InvalidAttributeLength(
            AttributeId::ENCAPSULATED_PROTOCOL_ID
        ))
    );
}

#[test]
fn fewer_attributes_than_announced_is_a_count_error() {
    let body = [0, 1, 0, 6, 0, 1];
    assert_eq!(
        split_attributes(&body, 2),
        Err(DecodeError::AttributeCount {
            declared: 2,
            found: 1
        })
    );
}

#[test]
fn strongest_common_hash_prefers_sha256() {
    assert_eq!(
        HashProtocolSet::BOTH.strongest_common(HashProtocolSet::BOTH),
        Some(HashProtocol::SHA256)
    );
    assert_eq!(
        HashProtocolSet::SHA1.strongest_common(HashProtocolSet::BOTH),
        Some(HashProtocol::SHA1)
    );
    assert_eq!(
        HashProtocolSet(0x04).strongest_common(HashProtocolSet::BOTH),
        None
    );
}
