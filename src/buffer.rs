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
///
/// The memory itself comes from a [`BufferPool`] only while bytes are in
/// flight: an idle keep-alive connection holds no buffer at all, which is
/// what lets ten thousand of them fit in a few MiB.
pub struct Buffer {
    /// `None` while empty and detached (see [`Buffer::attach`]).
    bytes: Option<Box<[u8]>>,
    /// How much of the storage this buffer may use.
    limit: usize,
    /// First byte not yet written on.
    start: usize,
    /// One past the last byte read in.
    end: usize,
}

impl Buffer {
    /// A buffer of `capacity` bytes, with no memory yet.
    pub fn with_capacity(capacity: usize) -> Buffer {
        Buffer {
            bytes: None,
            limit: capacity,
            start: 0,
            end: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Bytes of memory this buffer holds right now (0 when detached).
    pub fn allocated(&self) -> usize {
        self.bytes.as_ref().map_or(0, |b| b.len())
    }

    /// Make sure there is memory to read into, taking it from `pool`.
    pub fn attach(&mut self, pool: &mut BufferPool) {
        if self.bytes.is_none() {
            self.bytes = Some(pool.take(self.limit));
        }
    }

    /// Give the memory back to `pool` if nothing is waiting in it.
    pub fn detach_if_empty(&mut self, pool: &mut BufferPool) {
        if self.is_empty()
            && let Some(bytes) = self.bytes.take()
        {
            pool.give_back(bytes);
        }
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
        match &self.bytes {
            Some(bytes) => &bytes[self.start..self.end],
            None => &[],
        }
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
    /// caller's to interpret. Call [`Buffer::attach`] first: a detached
    /// buffer reads nothing and says `WouldBlock`.
    pub fn read_from<R: Read>(&mut self, source: &mut R) -> io::Result<usize> {
        let limit = self.limit;
        let Some(bytes) = self.bytes.as_mut() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        if self.end == limit && self.start > 0 {
            // Slide the unsent tail to the front. Heads must be contiguous
            // for the parser, so a ring buffer would only move this copy
            // elsewhere; it happens at most once per buffer's worth of bytes.
            bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = source.read(&mut bytes[self.end..limit])?;
        self.end += n;
        Ok(n)
    }

    /// Exactly what the next `read_from` offers the socket: the tail after
    /// `end`, or, when the tail is used up and bytes were consumed from the
    /// front, everything free (it slides first). A read that returns fewer
    /// bytes than this has emptied the socket; see `conn::read_into`.
    pub fn space(&self) -> usize {
        if self.end == self.limit && self.start > 0 {
            self.limit - self.len()
        } else {
            self.limit - self.end
        }
    }

    /// Drop everything waiting (the connection is being reset).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

/// Free buffers, all of one size, reused instead of freed and allocated
/// again. Owned by the loop, so taking and giving back are a `Vec` pop and
/// push: no lock, and no `malloc` once warm.
#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    free: Vec<Box<[u8]>>,
    /// Beyond this many free buffers, returned ones are really freed: a
    /// burst of ten thousand transfers should not pin their memory forever.
    max_free: usize,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes, keeping at most `max_free` spare.
    pub fn new(size: usize, max_free: usize) -> BufferPool {
        BufferPool {
            size,
            free: Vec::new(),
            max_free,
        }
    }

    /// A buffer of at least `limit` bytes (the pool's size, or `limit` if a
    /// reload made buffers bigger than the pool's).
    pub fn take(&mut self, limit: usize) -> Box<[u8]> {
        if limit <= self.size
            && let Some(bytes) = self.free.pop()
        {
            return bytes;
        }
        vec![0; self.size.max(limit)].into_boxed_slice()
    }

    /// Return a buffer; one of another size (from before a reload) is
    /// simply freed.
    pub fn give_back(&mut self, bytes: Box<[u8]>) {
        if bytes.len() == self.size && self.free.len() < self.max_free {
            self.free.push(bytes);
        }
    }

    /// Bytes held by spare buffers.
    pub fn spare_bytes(&self) -> usize {
        self.free.len() * self.size
    }

    /// A reload changed the size: spares of the old size go.
    pub fn resize(&mut self, size: usize) {
        if size != self.size {
            self.size = size;
            self.free.clear();
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({}/{})", self.len(), self.capacity())
    }
}
