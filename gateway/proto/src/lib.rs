//! Sans-IO SSTP ([MS-SSTP]): the wire codec, the HTTP preamble, crypto binding, and the
//! per-connection state machines for server ([`ServerConnection`]) and client
//! ([`ClientConnection`]), each combined with its `sstp-ppp` peer.
//!
//! # I/O contract
//!
//! This crate does no I/O and never reads the clock. One connection object serves one TLS
//! stream; the owner moves bytes and time in and out:
//!
//! - **Input**: every chunk of plaintext read from TLS goes to `handle_input(now, bytes)`, in
//!   order, whatever its size (packets may span chunks; a chunk may hold many packets).
//! - **Output**: `poll_transmit(&mut out)` appends every byte to write to TLS (HTTP response,
//!   control messages, PPP frames, IP data). Write them in order.
//! - **Time**: `now` is an input. `poll_timeout()` says when `handle_timeout(now)` is due.
//! - **Data path**: `poll_ip()` yields IP packets from the peer (borrowed from an internal
//!   buffer: no allocation per packet); `send_ip(packet)` queues one for the peer. IP flows only
//!   once the call is connected (crypto binding verified) and IPCP/IPv6CP is up. The server
//!   applies its packet policy first ([`ip_policy`]: no spoofed IPv4 source, DHCPINFORM
//!   answered in the tunnel) and counts what it kept back (`take_ip_policy()`).
//! - **Outcomes**: `poll_event()` reports progress (HTTP accepted, authenticated, connected,
//!   IPv4 up...) and exactly one final `Closed { reason }`.
//! - The certificate hashes of the TLS leaf and the randomness are inputs too.
//!
//! # Call order
//!
//! 1. `ServerConnection::new(.., now)` when TLS is accepted (the client: when the TLS
//!    handshake is done, which queues the HTTP request).
//! 2. Whenever bytes arrive, `handle_input`; whenever the deadline passes, `handle_timeout`;
//!    when IP packets arrive for the peer, `send_ip`; to end the call gracefully (SIGTERM),
//!    `disconnect`; when TLS/TCP fails, `transport_closed`.
//! 3. After every input: drain `poll_event` and `poll_ip` until `None`, write what
//!    `poll_transmit` appended, then re-read `poll_timeout`.
//! 4. Once `is_closed()` is true (after `Closed` was reported), write the last
//!    `poll_transmit` bytes and close the transport.
//!
//! Failures follow the spec: a framing error drops the connection without a word (§3.1.5.1),
//! an unacceptable message starts the CALL_ABORT handshake, PPP going down starts the
//! CALL_DISCONNECT handshake, and a silent peer is dropped after the hello timer (§3.1.2.3).
//!
//! [MS-SSTP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-sstp/
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod attribute;
mod client;
pub mod client_hello;
mod common;
mod config;
mod connection;
pub mod control;
pub mod crypto_binding;
pub mod deframer;
mod error;
mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ip_policy;
mod ip_queue;
pub mod packet;
mod profile;
pub mod proxy_protocol;
mod server;
pub mod wire;

#[cfg(test)]
mod tests;

pub use attribute::{
    Attribute, AttributeId, CryptoBinding, CryptoBindingRequest, EncapsulatedProtocol,
    HashProtocol, HashProtocolSet, Status, StatusInfo,
};
pub use client::ClientConnection;
pub use config::{CallConnectedTiming, ClientConfig, ServerConfig, Timers};
pub use connection::Connection;
pub use control::ControlMessage;
pub use crypto_binding::{BindingError, CertHashes};
pub use deframer::{Deframer, Frame};
pub use event::{ClientEvent, CloseReason, SendError, ServerEvent};
pub use ip_policy::IpPolicyCounts;
pub use packet::{DecodeError, FramingError, Header, MessageType, Packet};
pub use profile::{ClientProfile, GuidStyle, Recorded, RecordedPacket, UnknownProfile};
pub use server::ServerConnection;
