//! Sans-IO SSTP ([MS-SSTP]): the wire codec, the HTTP preamble, crypto binding, and the
//! per-connection state machines for server and client.
//!
//! [MS-SSTP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-sstp/
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod attribute;
pub mod crypto_binding;
pub mod deframer;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod packet;

pub use attribute::{
    Attribute, AttributeId, CryptoBinding, CryptoBindingRequest, EncapsulatedProtocol,
    HashProtocol, HashProtocolSet, Status, StatusInfo,
};
pub use crypto_binding::{BindingError, CertHashes};
pub use deframer::{Deframer, Frame};
pub use packet::{ControlMessage, DecodeError, FramingError, Header, MessageType, Packet};
