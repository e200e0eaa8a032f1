//! Cuts the decrypted byte stream into whole SSTP packets.
//!
//! TLS hands bytes over in arbitrary chunks: a packet may span several chunks and a chunk may
//! hold many packets. Whole packets inside a chunk are handed out in place (no copy); only a
//! packet cut by a chunk boundary is gathered in an internal buffer of at most 4095 bytes.
//!
//! A framing error (bad version or an impossible length) poisons the deframer: the spec
//! requires the connection to be dropped without sending anything (§3.1.5.1), and nothing after
//! the bad header can be trusted to be a packet boundary.

use crate::packet::{FramingError, HEADER_LEN, Header, MAX_PACKET_LEN};

/// Incremental SSTP packet delineation.
#[derive(Debug, Default)]
pub struct Deframer {
    /// Bytes of a packet cut by a chunk boundary.
    partial: Vec<u8>,
    /// The header of the packet in `partial`, once its four bytes are in.
    partial_header: Option<Header>,
    /// Set by the first framing error; every later call returns it.
    failed: Option<FramingError>,
}

/// One whole packet handed out by the [`Deframer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub header: Header,
    /// The whole packet, header included (what [`crate::Packet::decode`] takes).
    pub bytes: &'a [u8],
}

impl Frame<'_> {
    /// The packet without its 4-byte header.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }
}

impl Deframer {
    /// A deframer with an empty buffer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `input` and calls `on_frame` for every packet it completes, in stream order.
    ///
    /// # Errors
    /// The first [`FramingError`]; packets before it were already handed out, nothing after it
    /// is, and every later call fails with the same error.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<(), FramingError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if !self.partial.is_empty() {
            input = match self.complete_partial(input, &mut on_frame) {
                Ok(Some(rest)) => rest,
                Ok(None) => return Ok(()),
                Err(err) => return Err(self.fail(err)),
            };
        }
        while let Some((header_bytes, _)) = input.split_first_chunk::<HEADER_LEN>() {
            let header = Header::parse(*header_bytes).map_err(|err| self.fail(err))?;
            let Some((bytes, rest)) = input.split_at_checked(usize::from(header.length)) else {
                break;
            };
            on_frame(Frame { header, bytes });
            input = rest;
        }
        self.partial.extend_from_slice(input);
        Ok(())
    }

    /// Whether a partial packet is waiting for more bytes.
    #[must_use]
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Tops up the buffered partial packet from `input`. Returns the unused rest of `input`
    /// once the buffered packet was handed out, or `None` when `input` ran out first.
    fn complete_partial<'a>(
        &mut self,
        mut input: &'a [u8],
        on_frame: &mut impl FnMut(Frame<'_>),
    ) -> Result<Option<&'a [u8]>, FramingError> {
        loop {
            let want = self
                .partial_header
                .map_or(HEADER_LEN, |h| usize::from(h.length));
            let missing = want.saturating_sub(self.partial.len());
            let (take, rest) = input.split_at(missing.min(input.len()));
            self.partial.extend_from_slice(take);
            input = rest;
            if self.partial.len() < want {
                return Ok(None);
            }
            match self.partial_header {
                None => {
                    let Some(bytes) = self.partial.first_chunk::<HEADER_LEN>() else {
                        return Ok(None);
                    };
                    self.partial_header = Some(Header::parse(*bytes)?);
                }
                Some(header) => {
                    on_frame(Frame {
                        header,
                        bytes: &self.partial,
                    });
                    self.partial.clear();
                    self.partial_header = None;
                    return Ok(Some(input));
                }
            }
        }
    }

    fn fail(&mut self, err: FramingError) -> FramingError {
        self.failed = Some(err);
        self.partial = Vec::new();
        err
    }
}

// The buffer never holds more than one packet.
const _: () = assert!(MAX_PACKET_LEN < 4096);

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(deframer: &mut Deframer, input: &[u8]) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut frames = Vec::new();
        deframer.feed(input, |f| frames.push(f.bytes.to_vec()))?;
        Ok(frames)
    }

    fn echo_request() -> Vec<u8> {
        vec![0x10, 0x01, 0x00, 0x08, 0x00, 0x08, 0x00, 0x00]
    }

    fn data(len: usize) -> Vec<u8> {
        let mut p = vec![0x10, 0x00];
        p.extend_from_slice(&u16::try_from(len).expect("small").to_be_bytes());
        p.resize(len, 0xab);
        p
    }

    #[test]
    fn many_packets_in_one_chunk_come_out_in_order() {
        let mut stream = echo_request();
        stream.extend(data(1400));
        stream.extend(echo_request());
        let frames = collect(&mut Deframer::new(), &stream).expect("valid");
        assert_eq!(frames, vec![echo_request(), data(1400), echo_request()]);
    }

    #[test]
    fn a_packet_fed_one_byte_at_a_time_comes_out_once_whole() {
        let packet = data(300);
        let mut deframer = Deframer::new();
        let mut frames = Vec::new();
        for byte in &packet {
            frames.extend(collect(&mut deframer, std::slice::from_ref(byte)).expect("valid"));
        }
        assert_eq!(frames, vec![packet]);
        assert!(!deframer.has_partial());
    }

    #[test]
    fn a_chunk_boundary_inside_the_header_is_handled() {
        let mut stream = data(10);
        stream.extend(data(20));
        let mut deframer = Deframer::new();
        let mut frames = collect(&mut deframer, &stream[..12]).expect("valid");
        frames.extend(collect(&mut deframer, &stream[12..]).expect("valid"));
        assert_eq!(frames, vec![data(10), data(20)]);
    }

    #[test]
    fn any_chunking_of_a_stream_yields_the_same_packets() {
        let packets: Vec<Vec<u8>> = (0..200).map(|i| data(4 + (i * 37) % 1500)).collect();
        let stream = packets.concat();
        // A fixed linear congruential sequence of chunk sizes between 1 and 700 bytes.
        let mut seed: u32 = 12345;
        let mut deframer = Deframer::new();
        let mut frames = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let size = (seed >> 16) as usize % 700 + 1;
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            frames.extend(collect(&mut deframer, chunk).expect("valid"));
            rest = tail;
        }
        assert_eq!(frames, packets);
    }

    #[test]
    fn a_zero_length_packet_is_a_framing_error_not_a_loop() {
        let err = collect(&mut Deframer::new(), &[0x10, 0x00, 0x00, 0x00, 0x10]);
        assert_eq!(
            err,
            Err(FramingError::TooShort {
                length: 0,
                control: false
            })
        );
    }

    #[test]
    fn a_control_packet_shorter_than_eight_bytes_is_rejected() {
        let err = collect(&mut Deframer::new(), &[0x10, 0x01, 0x00, 0x04]);
        assert_eq!(
            err,
            Err(FramingError::TooShort {
                length: 4,
                control: true
            })
        );
    }

    #[test]
    fn a_wrong_version_poisons_the_deframer() {
        let mut deframer = Deframer::new();
        assert_eq!(
            collect(&mut deframer, &[0x20, 0, 0, 8]),
            Err(FramingError::Version(0x20))
        );
        assert_eq!(
            collect(&mut deframer, &echo_request()),
            Err(FramingError::Version(0x20))
        );
    }

    #[test]
    fn packets_before_a_framing_error_are_still_handed_out() {
        let mut stream = echo_request();
        stream.extend([0x10, 0x00, 0x00, 0x02]);
        let mut frames = Vec::new();
        let result = Deframer::new().feed(&stream, |f| frames.push(f.bytes.to_vec()));
        assert!(result.is_err());
        assert_eq!(frames, vec![echo_request()]);
    }
}
