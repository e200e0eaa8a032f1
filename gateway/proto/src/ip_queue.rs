//! Received IP packets waiting for the owner, stored back to back in one buffer.
//!
//! One `Vec<u8>` per packet would cost an allocation per packet on the hottest path; instead
//! packets are appended to a single buffer (2-byte length prefix + bytes) that keeps its
//! capacity and is reset once the owner has drained it.

/// FIFO of IP packets in one reusable buffer.
#[derive(Debug, Default)]
pub(crate) struct IpQueue {
    buf: Vec<u8>,
    read: usize,
}

impl IpQueue {
    /// Queues a copy of `packet` (at most 4095 bytes: it came out of one SSTP packet).
    pub(crate) fn push(&mut self, packet: &[u8]) {
        if self.read == self.buf.len() {
            self.buf.clear();
            self.read = 0;
        }
        let Ok(len) = u16::try_from(packet.len()) else {
            return;
        };
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(packet);
    }

    /// The next packet, if any.
    pub(crate) fn pop(&mut self) -> Option<&[u8]> {
        let (&[hi, lo], rest) = self.buf.get(self.read..)?.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let packet = rest.get(..len)?;
        self.read += 2 + len;
        Some(packet)
    }

    /// The next packet, left in the queue.
    pub(crate) fn front(&self) -> Option<&[u8]> {
        let (&[hi, lo], rest) = self.buf.get(self.read..)?.split_first_chunk::<2>()?;
        rest.get(..usize::from(u16::from_be_bytes([hi, lo])))
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.read = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_out_in_order_and_the_buffer_is_reused() {
        let mut queue = IpQueue::default();
        queue.push(&[1, 2, 3]);
        queue.push(&[]);
        queue.push(&[4]);
        assert_eq!(queue.pop(), Some(&[1, 2, 3][..]));
        assert_eq!(queue.pop(), Some(&[][..]));
        assert_eq!(queue.pop(), Some(&[4][..]));
        assert_eq!(queue.pop(), None);
        let capacity = queue.buf.capacity();
        queue.push(&[5]);
        assert_eq!(queue.buf.len(), 3);
        assert_eq!(queue.buf.capacity(), capacity);
        assert_eq!(queue.pop(), Some(&[5][..]));
    }
}
