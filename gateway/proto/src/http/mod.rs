//! The HTTP preamble that opens every SSTP connection. See [MS-SSTP] §3.2.4.1 and §4.1.
//!
//! The client sends one `SSTP_DUPLEX_POST` request with an "infinite" Content-Length, the server
//! answers `200 OK` the same way, and from the blank line on both directions carry only SSTP
//! packets. Bytes that arrive after the blank line in the same chunk belong to SSTP and are kept.

mod client;
mod server;

pub use client::{ResponseError, ResponseParser, write_request};
pub use server::{Rejection, RequestParser, SstpRequest, write_ok_response};

/// The method of the SSTP request.
pub const METHOD: &str = "SSTP_DUPLEX_POST";
/// The fixed SSTP resource. See [MS-SSTP] §3.2.4.1.
pub const PATH: &str = "/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/";
/// The only HTTP version SSTP uses.
pub const VERSION: &str = "HTTP/1.1";
/// ULONGLONG_MAX: both sides announce a body that never ends.
pub const CONTENT_LENGTH: &str = "18446744073709551615";
/// Cap on the request or response head (request line plus headers). Real clients send about
/// 200 bytes; the cap bounds the memory an unauthenticated peer can make us hold.
pub const MAX_HEAD_LEN: usize = 8 * 1024;

/// The length of the head (through the blank line) in `buf`, once complete. `old_len` is how
/// much of `buf` was searched before; the search restarts three bytes earlier so a CRLFCRLF
/// split across chunks is found without rescanning everything.
fn find_head_end(buf: &[u8], old_len: usize) -> Option<usize> {
    let from = old_len.saturating_sub(3);
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}
