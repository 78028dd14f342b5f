//! A fixed-capacity byte buffer: the only place body bytes wait inside the
//! proxy.
//!
//! Bytes read from one socket land here and leave when the peer socket
//! accepts them. Either side may move fewer bytes than asked (a *partial*
//! read or write), so the buffer keeps two cursors: `start` (next byte to
//! send) and `end` (next free byte). The capacity never grows: when the
//! buffer is full the reactor stops reading that socket, which is how
//! backpressure reaches the sender (lesson `09-backpressure`).
//!
//! Sans-IO in spirit: [`Buffer::read_from`] takes any `Read`, so tests can
//! script `Ok(3)`, `WouldBlock` and `Ok(0)`. Writing out is the pumps' job
//! (`conn::write_two`): they write `filled()`, then `consume` what went.
//!
//! Lesson: `lessons/08-buffers-and-partial-writes`.

use std::io::{self, Read};

/// Bytes in flight from one socket to another, at most `capacity` of them.
pub struct Buffer {
    bytes: Box<[u8]>,
    /// First byte not yet written on.
    start: usize,
    /// One past the last byte read in.
    end: usize,
}

impl Buffer {
    pub fn with_capacity(capacity: usize) -> Buffer {
        Buffer {
            bytes: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes waiting to be written on.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// No room for another byte: time to stop reading the source.
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// The waiting bytes, oldest first.
    pub fn filled(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Forget the first `n` waiting bytes (they were written, or skipped).
    pub fn consume(&mut self, n: usize) {
        assert!(
            n <= self.len(),
            "consume({n}) with only {} bytes",
            self.len()
        );
        self.start += n;
        if self.start == self.end {
            // Empty: rewind for free, so the next read gets the whole buffer.
            self.start = 0;
            self.end = 0;
        }
    }

    /// One `read` call into the free space. `Ok(0)` means end of stream
    /// (or, if the buffer is full, that nothing was asked for: check
    /// [`Buffer::is_full`] first). Errors, `WouldBlock` included, are the
    /// caller's to interpret.
    pub fn read_from<R: Read>(&mut self, source: &mut R) -> io::Result<usize> {
        if self.end == self.bytes.len() && self.start > 0 {
            // Slide the unsent tail to the front. Heads must be contiguous
            // for the parser, so a ring buffer would only move this copy
            // elsewhere; it happens at most once per buffer's worth of bytes.
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = source.read(&mut self.bytes[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Free space a `read_from` would offer right now (after sliding).
    pub fn space(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Drop everything waiting (the connection is being reset).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({}/{})", self.len(), self.capacity())
    }
}
