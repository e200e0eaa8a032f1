//! The nine control messages: decoding with the spec's attribute rules, and encoding.
//!
//! See [MS-SSTP] §2.2.2 and §2.2.9–§2.2.15.

use crate::{
    attribute::{Attribute, CryptoBinding, CryptoBindingRequest, StatusInfo, split_attributes},
    error::DecodeError,
    wire::{
        AttributeId, CONTROL_HEADER_LEN, EncapsulatedProtocol, HEADER_LEN, Header, MessageType,
        Status,
    },
};

/// One of the nine control messages, decoded and checked against §2.2.9–§2.2.15.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// CALL_CONNECT_REQUEST with its single ENCAPSULATED_PROTOCOL_ID (any value; the server
    /// decides whether it is supported).
    CallConnectRequest(EncapsulatedProtocol),
    /// CALL_CONNECT_ACK with its CRYPTO_BINDING_REQ.
    CallConnectAck(CryptoBindingRequest),
    /// CALL_CONNECT_NAK: one STATUS_INFO per rejected attribute.
    CallConnectNak(Vec<StatusInfo>),
    /// CALL_CONNECTED with its CRYPTO_BINDING.
    CallConnected(CryptoBinding),
    /// CALL_ABORT with its optional STATUS_INFO.
    CallAbort(Option<StatusInfo>),
    /// CALL_DISCONNECT with its optional STATUS_INFO.
    CallDisconnect(Option<StatusInfo>),
    /// CALL_DISCONNECT_ACK.
    CallDisconnectAck,
    /// ECHO_REQUEST.
    EchoRequest,
    /// ECHO_RESPONSE.
    EchoResponse,
}

impl ControlMessage {
    /// The wire message type.
    #[must_use]
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::CallConnectRequest(_) => MessageType::CALL_CONNECT_REQUEST,
            Self::CallConnectAck(_) => MessageType::CALL_CONNECT_ACK,
            Self::CallConnectNak(_) => MessageType::CALL_CONNECT_NAK,
            Self::CallConnected(_) => MessageType::CALL_CONNECTED,
            Self::CallAbort(_) => MessageType::CALL_ABORT,
            Self::CallDisconnect(_) => MessageType::CALL_DISCONNECT,
            Self::CallDisconnectAck => MessageType::CALL_DISCONNECT_ACK,
            Self::EchoRequest => MessageType::ECHO_REQUEST,
            Self::EchoResponse => MessageType::ECHO_RESPONSE,
        }
    }

    /// Decodes the body of a control packet (everything after the 4-byte SSTP header).
    ///
    /// # Errors
    /// A [`DecodeError`] naming what is wrong; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let Some((&[t0, t1, n0, n1], rest)) = body.split_first_chunk::<4>() else {
            return Err(DecodeError::LengthMismatch {
                declared: CONTROL_HEADER_LEN as u16,
                actual: body.len() + HEADER_LEN,
            });
        };
        let message = MessageType(u16::from_be_bytes([t0, t1]));
        if message.name().is_none() {
            return Err(DecodeError::UnknownMessageType(message));
        }
        let raw = split_attributes(rest, u16::from_be_bytes([n0, n1]))?;
        let attributes = raw
            .into_iter()
            .map(Attribute::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_attributes(message, attributes)
    }

    fn from_attributes(message: MessageType, attrs: Vec<Attribute>) -> Result<Self, DecodeError> {
        let not_allowed = |a: &Attribute| DecodeError::AttributeNotAllowed {
            message,
            attribute: a.id(),
        };
        match message {
            MessageType::CALL_CONNECT_REQUEST => {
                let mut protocol = None;
                for a in &attrs {
                    match a {
                        Attribute::EncapsulatedProtocolId(p) if protocol.is_none() => {
                            protocol = Some(*p)
                        }
                        Attribute::EncapsulatedProtocolId(_) => {
                            return Err(DecodeError::DuplicateAttribute(a.id()));
                        }
                        Attribute::StatusInfo(s) if s.status != Status::NO_ERROR => {
                            return Err(DecodeError::StatusInfoNotAllowed(s.status));
                        }
                        Attribute::StatusInfo(_) => {}
                        _ => return Err(not_allowed(a)),
                    }
                }
                protocol
                    .map(Self::CallConnectRequest)
                    .ok_or(DecodeError::MissingAttribute(
                        AttributeId::ENCAPSULATED_PROTOCOL_ID,
                    ))
            }
            MessageType::CALL_CONNECT_ACK => single(
                message,
                attrs,
                AttributeId::CRYPTO_BINDING_REQ,
                |a| match a {
                    Attribute::CryptoBindingRequest(r) => Some(Self::CallConnectAck(r)),
                    _ => None,
                },
            ),
            MessageType::CALL_CONNECTED => {
                single(message, attrs, AttributeId::CRYPTO_BINDING, |a| match a {
                    Attribute::CryptoBinding(b) => Some(Self::CallConnected(b)),
                    _ => None,
                })
            }
            MessageType::CALL_CONNECT_NAK => {
                let mut infos = Vec::with_capacity(attrs.len());
                for a in attrs {
                    match a {
                        Attribute::StatusInfo(s) => infos.push(s),
                        other => return Err(not_allowed(&other)),
                    }
                }
                if infos.is_empty() {
                    return Err(DecodeError::MissingAttribute(AttributeId::STATUS_INFO));
                }
                Ok(Self::CallConnectNak(infos))
            }
            MessageType::CALL_ABORT | MessageType::CALL_DISCONNECT => {
                let mut attrs = attrs.into_iter();
                let info = match (attrs.next(), attrs.next()) {
                    (None, _) => None,
                    (Some(Attribute::StatusInfo(s)), None) => Some(s),
                    (Some(Attribute::StatusInfo(_)), Some(_)) => {
                        return Err(DecodeError::DuplicateAttribute(AttributeId::STATUS_INFO));
                    }
                    (Some(other), _) => return Err(not_allowed(&other)),
                };
                Ok(if message == MessageType::CALL_ABORT {
                    Self::CallAbort(info)
                } else {
                    Self::CallDisconnect(info)
                })
            }
            _ => {
                if let Some(a) = attrs.first() {
                    return Err(not_allowed(a));
                }
                Ok(match message {
                    MessageType::CALL_DISCONNECT_ACK => Self::CallDisconnectAck,
                    MessageType::ECHO_REQUEST => Self::EchoRequest,
                    _ => Self::EchoResponse,
                })
            }
        }
    }

    /// Appends the whole control packet, SSTP header included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        Header {
            control: true,
            length: 0,
        }
        .encode(out);
        out.extend_from_slice(&self.message_type().0.to_be_bytes());
        let count_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let mut count: u16 = 0;
        let mut put = |a: Attribute, out: &mut Vec<u8>| {
            a.encode(out);
            count += 1;
        };
        match self {
            Self::CallConnectRequest(p) => put(Attribute::EncapsulatedProtocolId(*p), out),
            Self::CallConnectAck(r) => put(Attribute::CryptoBindingRequest(r.clone()), out),
            Self::CallConnectNak(infos) => {
                for info in infos {
                    put(Attribute::StatusInfo(info.clone()), out);
                }
            }
            Self::CallConnected(b) => put(Attribute::CryptoBinding(b.clone()), out),
            Self::CallAbort(info) | Self::CallDisconnect(info) => {
                if let Some(info) = info {
                    put(Attribute::StatusInfo(info.clone()), out);
                }
            }
            Self::CallDisconnectAck | Self::EchoRequest | Self::EchoResponse => {}
        }
        patch_length(out, start);
        if let Some(slot) = out.get_mut(count_at..count_at + 2) {
            slot.copy_from_slice(&count.to_be_bytes());
        }
    }
}

/// A control message is built with a zero length field first; fill in the real one.
fn patch_length(out: &mut [u8], start: usize) {
    let len = out.len().saturating_sub(start);
    // Control messages this crate writes are at most a few hundred bytes.
    let len = u16::try_from(len).unwrap_or(u16::MAX) & 0x0fff;
    if let Some(slot) = out.get_mut(start + 2..start + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

fn single(
    message: MessageType,
    attrs: Vec<Attribute>,
    wanted: AttributeId,
    pick: impl Fn(Attribute) -> Option<ControlMessage>,
) -> Result<ControlMessage, DecodeError> {
    let mut found = None;
    for a in attrs {
        match a {
            Attribute::StatusInfo(s) if s.status != Status::NO_ERROR => {
                return Err(DecodeError::StatusInfoNotAllowed(s.status));
            }
            Attribute::StatusInfo(_) => {}
            a if a.id() == wanted && found.is_some() => {
                return Err(DecodeError::DuplicateAttribute(wanted));
            }
            a if a.id() == wanted => found = pick(a),
            a => {
                return Err(DecodeError::AttributeNotAllowed {
                    message,
                    attribute: a.id(),
                });
            }
        }
    }
    found.ok_or(DecodeError::MissingAttribute(wanted))
}
