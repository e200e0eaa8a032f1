//! Client side of the preamble: build the request, parse the server's response.

use super::{CONTENT_LENGTH, MAX_HEAD_LEN, METHOD, PATH, VERSION, find_head_end};

/// Appends the `SSTP_DUPLEX_POST` request a client sends first (§3.2.4.1).
///
/// `correlation_id` is written as given (Windows sends a braced GUID, new per attempt).
pub fn write_request(out: &mut Vec<u8>, host: &str, correlation_id: Option<&str>) {
    let mut head = format!(
        "{METHOD} {PATH} {VERSION}\r\nHost: {host}\r\nContent-Length: {CONTENT_LENGTH}\r\n"
    );
    if let Some(id) = correlation_id {
        head.push_str(&format!("SSTPCORRELATIONID: {id}\r\n"));
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
}

/// Incremental parser for the server's response.
#[derive(Debug, Default)]
pub struct ResponseParser {
    buf: Vec<u8>,
}

/// Why the server's response does not open an SSTP stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// A well-formed response with a status other than 200 (e.g. 404 from a non-SSTP server).
    #[error("server answered HTTP {0}")]
    Status(u16),
    /// Not an HTTP/1.1 status line.
    #[error("malformed HTTP response")]
    Malformed,
    /// No blank line within [`MAX_HEAD_LEN`] bytes.
    #[error("response head larger than 8 KiB")]
    HeadTooLarge,
}

impl ResponseParser {
    /// An empty parser.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The response head, once [`ResponseParser::feed`] found its end (before that, whatever
    /// has arrived).
    #[must_use]
    pub fn head(&self) -> &[u8] {
        &self.buf
    }

    /// Feeds the next chunk. Once the head is complete and says 200, returns the bytes that
    /// followed it (the start of the SSTP stream).
    ///
    /// # Errors
    /// A [`ResponseError`] for a non-200, malformed or oversized response.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, ResponseError> {
        let old_len = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let Some(head_len) = find_head_end(&self.buf, old_len) else {
            return if self.buf.len() > MAX_HEAD_LEN {
                Err(ResponseError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        let rest = self.buf.split_off(head_len);
        let status_line = self.buf.split(|b| *b == b'\r').next().unwrap_or_default();
        let status_line = std::str::from_utf8(status_line).map_err(|_| ResponseError::Malformed)?;
        let mut parts = status_line.splitn(3, ' ');
        // Windows rejects a response whose version is not 1.1 (RasSstp event 3); so do we.
        if parts.next() != Some(VERSION) {
            return Err(ResponseError::Malformed);
        }
        let code = parts
            .next()
            .filter(|c| c.len() == 3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or(ResponseError::Malformed)?;
        if code != 200 {
            return Err(ResponseError::Status(code));
        }
        Ok(Some(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Rejection, RequestParser, write_ok_response};

    #[test]
    fn the_client_request_is_accepted_by_the_server_parser() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "vpn.example.com",
            Some("{00000000-0000-0000-0000-000000000001}"),
        );
        let request = RequestParser::new()
            .feed(&out)
            .expect("valid")
            .expect("complete");
        assert_eq!(request.host.as_deref(), Some("vpn.example.com"));
    }

    #[test]
    fn a_200_response_yields_the_following_bytes() {
        let mut out = Vec::new();
        write_ok_response(&mut out);
        out.extend([0x10, 0x01]);
        assert_eq!(ResponseParser::new().feed(&out), Ok(Some(vec![0x10, 0x01])));
    }

    #[test]
    fn an_error_response_reports_its_status() {
        let mut out = Vec::new();
        Rejection::NotFound.write_response(&mut out);
        assert_eq!(
            ResponseParser::new().feed(&out),
            Err(ResponseError::Status(404))
        );
    }

    #[test]
    fn an_http_1_0_response_is_malformed() {
        let input = b"HTTP/1.0 200 OK\r\n\r\n";
        assert_eq!(
            ResponseParser::new().feed(input),
            Err(ResponseError::Malformed)
        );
    }
}
