//! Sans-IO PPP for SSTP: frames, the RFC 1661 option automaton, LCP, MS-CHAPv2 and PAP, IPCP
//! and IPv6CP, for both a [`Server`] and a [`Client`].
//!
//! # I/O contract
//!
//! This crate does no I/O and never reads the clock. SSTP carries exactly one PPP frame per
//! data packet with no HDLC framing, so the unit of input and output is one whole frame:
//!
//! - Input: [`decode_frame`] each SSTP data packet. IPv4/IPv6 frames
//!   ([`Protocol::is_network_data`]) go straight to the data path; every other frame goes to
//!   `handle_frame(now, protocol, information)`.
//! - Output: `poll_transmit` yields whole encoded frames (always `FF 03` + 2-byte protocol);
//!   wrap each in an SSTP data packet.
//! - Time: `now` is an input. `poll_timeout` says when `handle_timeout(now)` is next due.
//! - Randomness (challenges, magic numbers, interface identifiers) comes from the injected
//!   `rand_core` 0.10 `Rng`, so tests are deterministic with a seeded generator.
//!
//! # Call order
//!
//! 1. `new`, then `lower_up(now)` once the SSTP layer is connected: LCP sends its
//!    Configure-Request.
//! 2. Whenever a frame arrives, `handle_frame`; whenever the deadline passes, `handle_timeout`.
//! 3. After every input, drain `poll_transmit` and `poll_event` until they return `None`, then
//!    re-read `poll_timeout`.
//! 4. Events arrive in protocol order: `Authenticated` (or `AuthFailed`), then `Ipv4Up` /
//!    `Ipv6Up`, and finally exactly one `Down`. After `Down`, send what `poll_transmit` still
//!    holds (a Terminate-Ack, say) and end the SSTP session.
//! 5. `close(now, reason)` starts an orderly LCP termination; `lower_down()` reports that the
//!    transport is gone (no more output; the server gives its address back).
//!
//! The link follows RFC 1661 §3.2: LCP must be Opened before authentication, and IPCP/IPv6CP
//! start only after authentication succeeded. Frames of other protocols before LCP is Opened
//! are dropped; after it, unknown ones (CCP, EAP, ...) get an LCP Protocol-Reject.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod auth;
mod ccp;
mod client;
mod config;
pub mod dhcp_inform;
mod error;
mod event;
mod frame;
mod fsm;
mod ipcp;
pub mod ipv4;
mod ipv6cp;
mod lcp;
mod link;
mod packet;
mod server;
mod wire_enum;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

pub use auth::{AuthFailure, AuthMethod, Hlak, NtHash};
pub use client::Client;
pub use config::{
    AddressAllocator, AuthPolicy, ClientConfig, LinkProfile, Lookup, Refusal, ServerConfig, Timers,
    UserLookup,
};
pub use error::NtHashError;
pub use event::{ClientEvent, DownReason, ServerEvent};
pub use frame::{
    Frame, FrameCompression, FrameError, Protocol, decode_frame, encode_frame,
    encode_frame_compressed,
};
pub use server::Server;

/// The SSTP session task owns a `Server` (or `Client`) and may move across threads.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Server>();
    assert_send::<Client>();
};
