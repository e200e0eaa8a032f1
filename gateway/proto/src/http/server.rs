//! Server side of the preamble: parse the client's request, answer 200 or an HTTP error.

use super::{CONTENT_LENGTH, MAX_HEAD_LEN, METHOD, PATH, VERSION, find_head_end};

/// Incremental parser for the client's `SSTP_DUPLEX_POST` request.
#[derive(Debug, Default)]
pub struct RequestParser {
    buf: Vec<u8>,
    /// Set once the request line was checked, so it is checked once.
    request_line_ok: bool,
}

/// An accepted request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SstpRequest {
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The `SSTPCORRELATIONID` header, if any (a GUID, usually in braces).
    pub correlation_id: Option<String>,
    /// Bytes that followed the blank line: the start of the SSTP stream.
    pub rest: Vec<u8>,
}

/// Why a request was refused. Each maps to an HTTP status; the connection is closed after the
/// response (§4.1: the error response is the last data on the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not parseable as HTTP/1.x (bad request line, header line without a colon, non-UTF-8).
    #[error("malformed HTTP request")]
    Malformed,
    /// A method other than `SSTP_DUPLEX_POST`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A path other than the SSTP resource.
    #[error("path not found")]
    NotFound,
    /// An HTTP version other than 1.1.
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// No blank line within [`MAX_HEAD_LEN`] bytes.
    #[error("request head larger than 8 KiB")]
    HeaderTooLarge,
    /// A valid request, but the server has no room for another session right now.
    #[error("the server is full")]
    Busy,
}

impl Rejection {
    /// The HTTP status code sent for this rejection.
    #[must_use]
    pub fn status_code(self) -> u16 {
        match self {
            Self::Malformed => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::HeaderTooLarge => 431,
            Self::VersionNotSupported => 505,
            Self::Busy => 503,
        }
    }

    fn reason_phrase(self) -> &'static str {
        match self {
            Self::Malformed => "Bad Request",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::HeaderTooLarge => "Request Header Fields Too Large",
            Self::VersionNotSupported => "HTTP Version Not Supported",
            Self::Busy => "Service Unavailable",
        }
    }

    /// Appends the complete error response: status line, `Connection: close`, no body.
    pub fn write_response(self, out: &mut Vec<u8>) {
        let head = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status_code(),
            self.reason_phrase()
        );
        out.extend_from_slice(head.as_bytes());
        if self == Self::MethodNotAllowed {
            // RFC 9110 §15.5.6: a 405 names the allowed methods.
            out.extend_from_slice(format!("Allow: {METHOD}\r\n").as_bytes());
        }
        if self == Self::Busy {
            // RFC 9110 §10.2.3: when to try again (sessions end at human pace).
            out.extend_from_slice(
                format!("Retry-After: {BUSY_RETRY_AFTER_SECONDS}\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
    }
}

/// The `Retry-After` of a 503.
const BUSY_RETRY_AFTER_SECONDS: u32 = 30;

/// Appends the `200 OK` that opens the SSTP stream (§4.1).
pub fn write_ok_response(out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!("{VERSION} 200 OK\r\nContent-Length: {CONTENT_LENGTH}\r\n\r\n").as_bytes(),
    );
}

impl RequestParser {
    /// An empty parser.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk. Returns the request once its head is complete.
    ///
    /// # Errors
    /// A [`Rejection`] as soon as the request line is known to be wrong or the head grows past
    /// [`MAX_HEAD_LEN`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<SstpRequest>, Rejection> {
        let old_len = self.buf.len();
        self.buf.extend_from_slice(bytes);
        if !self.request_line_ok {
            let from = old_len.saturating_sub(1);
            let tail = self.buf.get(from..).unwrap_or_default();
            if let Some(end) = tail.windows(2).position(|w| w == b"\r\n") {
                check_request_line(self.buf.get(..from + end).unwrap_or_default())?;
                self.request_line_ok = true;
            }
        }
        let Some(head_len) = find_head_end(&self.buf, old_len) else {
            return if self.buf.len() > MAX_HEAD_LEN {
                Err(if self.request_line_ok {
                    Rejection::HeaderTooLarge
                } else {
                    Rejection::Malformed
                })
            } else {
                Ok(None)
            };
        };
        if head_len > MAX_HEAD_LEN {
            return Err(Rejection::HeaderTooLarge);
        }
        let rest = self.buf.split_off(head_len);
        let mut request = parse_headers(&self.buf)?;
        request.rest = rest;
        Ok(Some(request))
    }
}

fn check_request_line(line: &[u8]) -> Result<(), Rejection> {
    let line = std::str::from_utf8(line).map_err(|_| Rejection::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    if method.is_empty() || !version.starts_with("HTTP/") {
        return Err(Rejection::Malformed);
    }
    if method != METHOD {
        return Err(Rejection::MethodNotAllowed);
    }
    // The `tenantid` query is for front-end proxies; a server SHOULD ignore it (§3.2.4.1).
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if !path.eq_ignore_ascii_case(PATH) {
        return Err(Rejection::NotFound);
    }
    if version != VERSION {
        return Err(Rejection::VersionNotSupported);
    }
    Ok(())
}

fn parse_headers(head: &[u8]) -> Result<SstpRequest, Rejection> {
    let head = std::str::from_utf8(head).map_err(|_| Rejection::Malformed)?;
    let mut request = SstpRequest {
        host: None,
        correlation_id: None,
        rest: Vec::new(),
    };
    // Skip the request line (already checked) and stop at the blank line.
    for line in head.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Rejection::Malformed);
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(Rejection::Malformed);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            request.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sstpcorrelationid") {
            request.correlation_id = Some(value.to_owned());
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS_REQUEST: &str = "SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n\
        Host: vpn.example.com\r\nContent-Length: 18446744073709551615\r\n\
        SSTPCORRELATIONID: {8C4F2B9A-0F3C-4E5B-9D6A-1B2C3D4E5F60}\r\n\r\n";

    #[test]
    fn a_windows_request_is_accepted_and_headers_are_captured() {
        let mut parser = RequestParser::new();
        let request = parser
            .feed(WINDOWS_REQUEST.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(request.host.as_deref(), Some("vpn.example.com"));
        assert_eq!(
            request.correlation_id.as_deref(),
            Some("{8C4F2B9A-0F3C-4E5B-9D6A-1B2C3D4E5F60}")
        );
        assert!(request.rest.is_empty());
    }

    #[test]
    fn bytes_after_the_blank_line_are_kept_for_sstp() {
        let mut input = WINDOWS_REQUEST.as_bytes().to_vec();
        input.extend([0x10, 0x01, 0x00, 0x0e]);
        let request = RequestParser::new()
            .feed(&input)
            .expect("valid")
            .expect("complete");
        assert_eq!(request.rest, [0x10, 0x01, 0x00, 0x0e]);
    }

    #[test]
    fn a_request_fed_byte_by_byte_completes_exactly_at_the_blank_line() {
        let mut parser = RequestParser::new();
        let bytes = WINDOWS_REQUEST.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            let result = parser.feed(std::slice::from_ref(b)).expect("valid");
            assert_eq!(result.is_some(), i == bytes.len() - 1);
        }
    }

    #[test]
    fn header_names_are_case_insensitive_and_tenantid_is_ignored() {
        let request = "SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/?tenantid=acme HTTP/1.1\r\n\
            HOST: a\r\nsstpCorrelationId: b\r\n\r\n";
        let parsed = RequestParser::new()
            .feed(request.as_bytes())
            .expect("valid")
            .expect("done");
        assert_eq!(
            (parsed.host.as_deref(), parsed.correlation_id.as_deref()),
            (Some("a"), Some("b"))
        );
    }

    #[test]
    fn wrong_method_path_and_version_are_refused_with_their_status() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", Rejection::MethodNotAllowed, 405),
            (
                "SSTP_DUPLEX_POST /other/ HTTP/1.1\r\n\r\n",
                Rejection::NotFound,
                404,
            ),
            (
                "SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.0\r\n\r\n",
                Rejection::VersionNotSupported,
                505,
            ),
            ("\x16\x03\x01 garbage\r\n", Rejection::Malformed, 400),
        ];
        for (input, rejection, code) in cases {
            assert_eq!(
                RequestParser::new().feed(input.as_bytes()),
                Err(rejection),
                "{input:?}"
            );
            assert_eq!(rejection.status_code(), code);
        }
    }

    #[test]
    fn the_request_line_is_judged_before_the_headers_end() {
        assert_eq!(
            RequestParser::new().feed(b"GET / HTTP/1.1\r\nHost"),
            Err(Rejection::MethodNotAllowed)
        );
    }

    #[test]
    fn an_endless_header_is_refused_with_431_at_8_kib() {
        let mut parser = RequestParser::new();
        let line = format!("SSTP_DUPLEX_POST {PATH} HTTP/1.1\r\n");
        assert_eq!(parser.feed(line.as_bytes()), Ok(None));
        let filler = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut result = Ok(None);
        for _ in 0..200 {
            result = parser.feed(filler);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Rejection::HeaderTooLarge));
    }

    #[test]
    fn a_header_line_without_colon_is_malformed() {
        let input = format!("SSTP_DUPLEX_POST {PATH} HTTP/1.1\r\nnonsense\r\n\r\n");
        assert_eq!(
            RequestParser::new().feed(input.as_bytes()),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn error_responses_close_the_connection_and_have_no_body() {
        let mut out = Vec::new();
        Rejection::MethodNotAllowed.write_response(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: SSTP_DUPLEX_POST\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_busy_refusal_is_a_503_with_retry_after() {
        let mut out = Vec::new();
        Rejection::Busy.write_response(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn the_ok_response_announces_an_endless_body() {
        let mut out = Vec::new();
        write_ok_response(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n"
        );
    }
}
