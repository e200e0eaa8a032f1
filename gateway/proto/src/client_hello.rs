//! Sans-IO reader of the name a TLS client asked for: the `server_name` extension (RFC 6066 §3)
//! of the ClientHello (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2), read from the first bytes of a
//! connection before the TLS library sees them.
//!
//! The listener uses it to say *why* a handshake is refused when a client sends a name the TLS
//! library will not accept, such as `sstpc --tls-ext HOST:PORT`, which puts the whole `HOST:PORT`
//! string in the SNI. It only reads: the bytes are handed on unchanged. Rewriting them is not an
//! option, because both sides hash the ClientHello exactly as sent into the handshake transcript
//! (RFC 8446 §4.4.1, RFC 5246 §7.4.9): a server that parsed different bytes from the ones the
//! client hashed derives other keys and fails at the first encrypted message.
//!
//! [`scan`] looks at the bytes received so far: "need more", "here is the ClientHello", or "not a
//! ClientHello this reader understands" (then the TLS library gets the bytes and produces its own
//! error). A ClientHello may be split over several records and any number of reads; the reader
//! gives up beyond [`MAX_HELLO_LEN`] bytes of handshake message or [`MAX_BUFFERED`] bytes of
//! records. It never panics on input: the cargo-fuzz target `client_hello` runs it.

/// TLS record content type `handshake` (RFC 8446 §5.1).
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type `client_hello` (RFC 8446 §4).
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Extension type `server_name` (RFC 6066 §3).
const EXTENSION_SERVER_NAME: u16 = 0;
/// `NameType` `host_name` (RFC 6066 §3).
const NAME_TYPE_HOST_NAME: u8 = 0;
/// Record header: type, legacy version, length.
const RECORD_HEADER_LEN: usize = 5;
/// Handshake header: type, 24-bit length.
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record payload a peer may send (RFC 8446 §5.1: 2^14).
const MAX_RECORD_LEN: usize = 1 << 14;

/// The longest ClientHello (header included) this reader assembles; real ones are well under
/// 2 KiB, post-quantum key shares included.
pub const MAX_HELLO_LEN: usize = 1 << 14;
/// The most record bytes this reader buffers while assembling one (a ClientHello cut into
/// many tiny records costs 5 bytes of header each).
pub const MAX_BUFFERED: usize = MAX_HELLO_LEN + 4096;

/// What the bytes received so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// The start of a ClientHello: read more (up to [`MAX_BUFFERED`] bytes in all).
    NeedMore,
    /// A complete ClientHello.
    Hello(ClientHello),
    /// Not a ClientHello this reader understands (another protocol, a malformed or oversized
    /// message): pass the bytes on as they are and let the TLS library answer.
    NotHello,
}

/// What a complete ClientHello asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the `server_name` extension, as sent (`None`: no such extension or
    /// no `host_name` entry in it).
    pub server_name: Option<Vec<u8>>,
    /// Bytes of the records that carry the ClientHello, from the start of the input.
    pub len: usize,
}

/// Reads the ClientHello at the start of `buf` (the first bytes of a TLS connection).
pub fn scan(buf: &[u8]) -> Scan {
    let mut message = Vec::new();
    let mut pos = 0;
    loop {
        if pos + RECORD_HEADER_LEN > MAX_BUFFERED {
            return Scan::NotHello;
        }
        let Some(header) = buf.get(pos..pos + RECORD_HEADER_LEN) else {
            return Scan::NeedMore;
        };
        // Every TLS version since SSL 3.0 writes major version 3 in the record header.
        if header[0] != CONTENT_HANDSHAKE || header[1] != 3 {
            return Scan::NotHello;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let start = pos + RECORD_HEADER_LEN;
        if len == 0 || len > MAX_RECORD_LEN || start + len > MAX_BUFFERED {
            return Scan::NotHello;
        }
        let Some(payload) = buf.get(start..start + len) else {
            return Scan::NeedMore;
        };
        message.extend_from_slice(payload);
        pos = start + len;
        let Some(&[kind, a, b, c]) = message.get(..HANDSHAKE_HEADER_LEN) else {
            continue;
        };
        if kind != HANDSHAKE_CLIENT_HELLO {
            return Scan::NotHello;
        }
        let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
        if HANDSHAKE_HEADER_LEN + body_len > MAX_HELLO_LEN {
            return Scan::NotHello;
        }
        if let Some(body) = message.get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN + body_len) {
            return match server_name(body) {
                Some(server_name) => Scan::Hello(ClientHello {
                    server_name,
                    len: pos,
                }),
                None => Scan::NotHello,
            };
        }
    }
}

/// The `host_name` in a ClientHello body; `None` when the body is malformed.
fn server_name(body: &[u8]) -> Option<Option<Vec<u8>>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        // RFC 5246 §7.4.1.2: a TLS 1.2 ClientHello may end before the extensions.
        return Some(None);
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return None;
    }
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        let mut ext = Reader(data);
        let mut list = Reader(ext.vec16()?);
        if !ext.0.is_empty() {
            return None;
        }
        // The first entry. RFC 6066 allows one name per type and defines only host_name;
        // other name types have no defined length, so nothing after one can be read.
        if !list.0.is_empty() && list.take(1)?[0] == NAME_TYPE_HOST_NAME {
            return Some(Some(list.vec16()?.to_vec()));
        }
        return Some(None);
    }
    Some(None)
}

/// The host in a name given as a URL or `host:port` (what `sstpc --tls-ext` sends):
/// `https://gw.example.com:8443/path` and `gw.example.com:8443` give `gw.example.com`,
/// `[2001:db8::1]:443` gives `2001:db8::1`; anything else comes back as it is.
pub fn host_part(name: &[u8]) -> &[u8] {
    let mut host = name;
    if let Some(at) = find(host, b"://") {
        host = &host[at + 3..];
    }
    if let Some(slash) = host.iter().position(|&c| c == b'/') {
        host = &host[..slash];
    }
    if let Some(rest) = host.strip_prefix(b"[") {
        if let Some(end) = rest.iter().position(|&c| c == b']') {
            return &rest[..end];
        }
        return host;
    }
    // One colon followed by digits is a port; more colons are an IPv6 address.
    if let Some(colon) = host.iter().position(|&c| c == b':') {
        let port = &host[colon + 1..];
        if !port.is_empty() && port.iter().all(u8::is_ascii_digit) {
            return &host[..colon];
        }
    }
    host
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A cursor over bytes; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.take(1)?[0];
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body with the given extensions block (`None`: none at all).
    fn body(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[0x11; 32]); // random
        b.extend_from_slice(&[0x20]); // session id, 32 bytes
        b.extend_from_slice(&[0x22; 32]);
        b.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two suites
        b.extend_from_slice(&[0x01, 0x00]); // null compression
        if let Some(ext) = extensions {
            b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
            b.extend_from_slice(ext);
        }
        b
    }

    /// The `server_name` extension carrying one host_name.
    fn sni_extension(name: &[u8]) -> Vec<u8> {
        let n = u16::try_from(name.len()).unwrap();
        let mut e = vec![0x00, 0x00];
        e.extend_from_slice(&(n + 5).to_be_bytes()); // extension length
        e.extend_from_slice(&(n + 3).to_be_bytes()); // server_name_list length
        e.push(0x00); // host_name
        e.extend_from_slice(&n.to_be_bytes());
        e.extend_from_slice(name);
        e
    }

    /// A handshake message of type `client_hello` around `body`.
    fn message(body: &[u8]) -> Vec<u8> {
        let n = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut m = vec![0x01, n[1], n[2], n[3]];
        m.extend_from_slice(body);
        m
    }

    /// `message` cut into records of at most `size` bytes of payload.
    fn records(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(size) {
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    fn hello_with_sni(name: &[u8]) -> Vec<u8> {
        let mut ext = vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]; // ec_point_formats first
        ext.extend_from_slice(&sni_extension(name));
        ext.extend_from_slice(&[0x00, 0x17, 0x00, 0x00]); // extended_master_secret last
        records(&message(&body(Some(&ext))), MAX_RECORD_LEN)
    }

    #[test]
    fn exact_bytes_of_a_hello_with_host_port_sni_give_the_name_as_sent() {
        // Record header, handshake header, then the body: every length field written out.
        let mut wire = vec![
            0x16, 0x03, 0x01, 0x00, 0x6f, // handshake record, 111 bytes
            0x01, 0x00, 0x00, 0x6b, // client_hello, 107 bytes
            0x03, 0x03, // legacy_version TLS 1.2
        ];
        wire.extend_from_slice(&[0xaa; 32]); // random
        wire.extend_from_slice(&[0x00]); // empty session id
        wire.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
        wire.extend_from_slice(&[0x01, 0x00]); // null compression
        wire.extend_from_slice(&[0x00, 0x40]); // extensions: 64 bytes
        wire.extend_from_slice(&[0x00, 0x00, 0x00, 0x17]); // server_name, 23 bytes
        wire.extend_from_slice(&[0x00, 0x15, 0x00, 0x00, 0x12]); // list 21, host_name 18
        wire.extend_from_slice(b"gw.example.com:443");
        wire.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]); // versions: 1.3
        wire.extend_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]); // sig algs
        wire.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]); // x25519
        wire.extend_from_slice(&[0x00, 0x33, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x1d, 0x00, 0x04]);
        wire.extend_from_slice(&[0x01, 0x02, 0x03, 0x04]); // a (short) key share
        assert_eq!(wire.len(), 5 + 0x6f);
        assert_eq!(
            scan(&wire),
            Scan::Hello(ClientHello {
                server_name: Some(b"gw.example.com:443".to_vec()),
                len: wire.len(),
            })
        );
    }

    /// ClientHellos captured from OpenSSL 3.0 (`openssl s_client -servername ...`, what sstpc
    /// links), committed as seeds of the fuzz target.
    #[test]
    fn captured_openssl_hellos_give_the_names_they_were_sent_with() {
        let seeds: [(&[u8], Option<&[u8]>); 5] = [
            (
                include_bytes!("../../fuzz/corpus/client_hello/openssl_sni_host_port"),
                Some(b"localhost:8443"),
            ),
            (
                include_bytes!("../../fuzz/corpus/client_hello/host_port_in_16_byte_records"),
                Some(b"localhost:8443"),
            ),
            (
                include_bytes!("../../fuzz/corpus/client_hello/openssl_sni_dns"),
                Some(b"vpn.example.com"),
            ),
            (
                include_bytes!("../../fuzz/corpus/client_hello/openssl_tls12_sni_url"),
                Some(b"https://gw.test:443/"),
            ),
            (
                include_bytes!("../../fuzz/corpus/client_hello/openssl_no_sni"),
                None,
            ),
        ];
        for (wire, name) in seeds {
            let Scan::Hello(hello) = scan(wire) else {
                panic!("not read as a ClientHello: {name:?}");
            };
            assert_eq!(hello.server_name.as_deref(), name);
            assert_eq!(hello.len, wire.len());
        }
        let truncated = include_bytes!("../../fuzz/corpus/client_hello/truncated");
        assert_eq!(scan(truncated), Scan::NeedMore);
    }

    #[test]
    fn a_hello_split_over_records_and_reads_is_assembled() {
        let wire = records(&message(&body(Some(&sni_extension(b"localhost:8443")))), 7);
        for cut in 0..wire.len() {
            assert_eq!(scan(&wire[..cut]), Scan::NeedMore, "cut at {cut}");
        }
        let mut more = wire.clone();
        more.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]); // what follows stays out
        for input in [&wire, &more] {
            assert_eq!(
                scan(input),
                Scan::Hello(ClientHello {
                    server_name: Some(b"localhost:8443".to_vec()),
                    len: wire.len(),
                })
            );
        }
    }

    #[test]
    fn no_extensions_or_no_server_name_means_no_name() {
        for wire in [
            records(&message(&body(None)), MAX_RECORD_LEN),
            records(
                &message(&body(Some(&[0x00, 0x17, 0x00, 0x00]))),
                MAX_RECORD_LEN,
            ),
        ] {
            assert!(matches!(
                scan(&wire),
                Scan::Hello(ClientHello {
                    server_name: None,
                    ..
                })
            ));
        }
        let name = hello_with_sni(b"vpn.example.com");
        assert!(
            matches!(scan(&name), Scan::Hello(ClientHello { server_name: Some(n), .. }) if n == b"vpn.example.com")
        );
    }

    #[test]
    fn other_protocols_and_broken_lengths_are_not_a_hello() {
        assert_eq!(scan(b"GET / HTTP/1.1\r\n"), Scan::NotHello);
        assert_eq!(scan(b"SSTP_DUPLEX_POST"), Scan::NotHello);
        assert_eq!(scan(&[0x17, 0x03, 0x03, 0x00, 0x10]), Scan::NotHello); // application data
        assert_eq!(scan(&[0x16, 0x03, 0x01, 0x00, 0x00]), Scan::NotHello); // empty record
        assert_eq!(scan(&[0x16, 0x03, 0x01, 0x40, 0x01]), Scan::NotHello); // 2^14 + 1
        let mut wire = hello_with_sni(b"localhost");
        wire[5] = 2; // a ServerHello
        assert_eq!(scan(&wire), Scan::NotHello);
        // An extensions block one byte longer than what follows.
        let mut broken = message(&body(Some(&sni_extension(b"a"))));
        let ext_len = broken.len() - sni_extension(b"a").len() - 2;
        broken[ext_len + 1] += 1;
        assert_eq!(scan(&records(&broken, 100)), Scan::NotHello);
        // A server_name list length that disagrees with the extension's.
        let mut ext = sni_extension(b"localhost");
        ext[5] += 1;
        assert_eq!(
            scan(&records(&message(&body(Some(&ext))), 100)),
            Scan::NotHello
        );
    }

    #[test]
    fn buffering_is_bounded() {
        // A handshake message announced longer than the cap.
        assert_eq!(
            scan(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00]),
            Scan::NotHello
        );
        // A hello within the cap but cut into 1-byte records: 6 bytes of record per byte.
        let big = message(&body(Some(&sni_extension(&[b'a'; 3500]))));
        let wire = records(&big, 1);
        assert!(wire.len() > MAX_BUFFERED);
        assert_eq!(scan(&wire), Scan::NotHello);
        assert_eq!(scan(&wire[..MAX_BUFFERED - 3]), Scan::NeedMore);
        assert_eq!(scan(&wire[..MAX_BUFFERED + 3]), Scan::NotHello);
    }

    #[test]
    fn the_host_part_drops_scheme_port_and_path() {
        for (name, host) in [
            (&b"gw.example.com:8443"[..], &b"gw.example.com"[..]),
            (b"https://gw.example.com:443/", b"gw.example.com"),
            (b"https://gw.example.com/sra", b"gw.example.com"),
            (b"10.0.2.2:40011", b"10.0.2.2"),
            (b"[2001:db8::1]:443", b"2001:db8::1"),
            (b"2001:db8::1", b"2001:db8::1"),
            (b"gw.example.com", b"gw.example.com"),
            (b"gw.example.com:", b"gw.example.com:"),
            (b"gw:abc", b"gw:abc"),
            (b"[unterminated", b"[unterminated"),
            (b"", b""),
        ] {
            assert_eq!(host_part(name), host, "{:?}", String::from_utf8_lossy(name));
        }
    }
}
