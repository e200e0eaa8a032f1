//! Why decoding failed: [`DecodeError`], for packets and control messages. Framing errors (the
//! header) are [`crate::wire::FramingError`]; which STATUS_INFO a server answers an error with is
//! server policy and lives in the server.

use crate::wire::{AttributeId, FramingError, MessageType, Status};

/// Why a whole packet or control message could not be decoded. The state machines map each
/// variant to the STATUS_INFO the spec asks for (the server's `nak_status`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header itself is invalid.
    #[error("bad framing")]
    Framing(#[from] FramingError),
    /// The buffer is shorter or longer than the header's length field.
    #[error("packet length {declared} does not match the {actual} bytes given")]
    LengthMismatch {
        /// The length field.
        declared: u16,
        /// The bytes handed in.
        actual: usize,
    },
    /// The message type is not one of the nine the spec defines.
    #[error("unknown message type {0:?}")]
    UnknownMessageType(MessageType),
    /// Fewer attributes than the NumAttributes field announced.
    #[error("{found} attributes present, {declared} announced")]
    AttributeCount {
        /// NumAttributes.
        declared: u16,
        /// How many could be read.
        found: u16,
    },
    /// Bytes after the last announced attribute.
    #[error("trailing bytes after the last attribute")]
    TrailingBytes,
    /// An attribute id the spec does not define.
    #[error("unrecognized attribute {0:?}")]
    UnrecognizedAttribute(AttributeId),
    /// An attribute whose length field is impossible or wrong for its type.
    #[error("attribute {0:?} has an invalid length")]
    InvalidAttributeLength(AttributeId),
    /// The same attribute twice where only one is allowed.
    #[error("duplicate attribute {0:?}")]
    DuplicateAttribute(AttributeId),
    /// A mandatory attribute is absent.
    #[error("required attribute {0:?} missing")]
    MissingAttribute(AttributeId),
    /// A known attribute in a message that does not allow it.
    #[error("attribute {attribute:?} not allowed in {message:?}")]
    AttributeNotAllowed {
        /// The message.
        message: MessageType,
        /// The attribute.
        attribute: AttributeId,
    },
    /// A STATUS_INFO with a non-zero status in a message that must not report errors.
    #[error("status info {0:?} not allowed in this message")]
    StatusInfoNotAllowed(Status),
}
