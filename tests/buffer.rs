//! Stories about [`ferroxy::buffer::Buffer`]: partial reads, partial writes
//! and a capacity that never grows. The reader and writer here are scripted,
//! so each story is exact and needs no socket.

use std::collections::VecDeque;
use std::io::{self, Write};

use ferroxy::buffer::{Buffer, BufferPool};

#[path = "support/scripted.rs"]
mod scripted;
use scripted::ScriptedReader;

/// A writer that accepts at most `accept` bytes per call, then says WouldBlock.
struct ShortWriter {
    accept: usize,
    calls_before_block: usize,
    written: Vec<u8>,
}

impl Write for ShortWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.calls_before_block == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.calls_before_block -= 1;
        let n = bytes.len().min(self.accept);
        self.written.extend_from_slice(&bytes[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the reactor's pumps do: write what is waiting, consume what went.
fn write_out(buf: &mut Buffer, dst: &mut impl Write) -> io::Result<usize> {
    let n = dst.write(buf.filled())?;
    buf.consume(n);
    Ok(n)
}

/// Bytes arrive three at a time and leave two at a time: nothing is lost,
/// nothing is repeated, and the order holds.
#[test]
fn partial_reads_and_writes_keep_order() {
    let mut pool = BufferPool::new(8, 4);
    let mut buf = Buffer::with_capacity(8);
    buf.attach(&mut pool);
    let mut src = ScriptedReader(VecDeque::from(vec![
        Ok(b"abc".to_vec()),
        Ok(b"def".to_vec()),
    ]));
    let mut dst = ShortWriter {
        accept: 2,
        calls_before_block: 100,
        written: Vec::new(),
    };
    assert_eq!(buf.read_from(&mut src).unwrap(), 3);
    assert_eq!(
        write_out(&mut buf, &mut dst).unwrap(),
        2,
        "a short write moves 2"
    );
    assert_eq!(buf.filled(), b"c", "the unwritten byte waits");
    assert_eq!(buf.read_from(&mut src).unwrap(), 3);
    while !buf.is_empty() {
        write_out(&mut buf, &mut dst).unwrap();
    }
    assert_eq!(dst.written, b"abcdef");
}

/// A full buffer offers no space; once drained from the front, the next read
/// slides the tail down and the whole capacity is usable again.
#[test]
fn full_buffer_slides_when_drained_from_the_front() {
    let mut pool = BufferPool::new(4, 4);
    let mut buf = Buffer::with_capacity(4);
    buf.attach(&mut pool);
    let mut src = ScriptedReader(VecDeque::from(vec![Ok(b"123456".to_vec())]));
    assert_eq!(buf.read_from(&mut src).unwrap(), 4);
    assert!(buf.is_full(), "4 of 4 bytes: full, stop reading the source");
    assert_eq!(buf.space(), 0);
    buf.consume(3);
    assert_eq!(buf.space(), 3, "three bytes left from the front");
    assert_eq!(buf.read_from(&mut src).unwrap(), 2);
    assert_eq!(buf.filled(), b"456");
    assert_eq!(buf.capacity(), 4, "capacity never grows");
}

/// WouldBlock is passed up untouched: it is the reactor's cue to wait for
/// the next readiness event, not an error.
#[test]
fn would_block_is_returned_to_the_caller() {
    let mut pool = BufferPool::new(4, 4);
    let mut buf = Buffer::with_capacity(4);
    buf.attach(&mut pool);
    let mut src = ScriptedReader(VecDeque::from(vec![Err(io::ErrorKind::WouldBlock.into())]));
    let err = buf.read_from(&mut src).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(buf.is_empty());

    buf.read_from(&mut ScriptedReader(VecDeque::from(vec![
        Ok(b"xy".to_vec()),
    ])))
    .unwrap();
    let mut blocked = ShortWriter {
        accept: 10,
        calls_before_block: 0,
        written: Vec::new(),
    };
    let err = write_out(&mut buf, &mut blocked).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(
        buf.filled(),
        b"xy",
        "nothing is consumed by a blocked write"
    );
}

/// A buffer holds memory only while bytes wait in it: it takes a block
/// from the pool when a read may come, and gives it back once drained, so
/// an idle connection costs no buffer at all.
#[test]
fn memory_only_while_bytes_wait() {
    let mut pool = BufferPool::new(16, 4);
    let mut buf = Buffer::with_capacity(16);
    assert_eq!(buf.allocated(), 0, "a new buffer holds no memory");
    buf.attach(&mut pool);
    assert_eq!(buf.allocated(), 16);
    buf.read_from(&mut ScriptedReader(VecDeque::from(vec![Ok(
        b"abc".to_vec()
    )])))
    .unwrap();
    buf.detach_if_empty(&mut pool);
    assert_eq!(buf.allocated(), 16, "bytes still wait: the memory stays");
    buf.consume(3);
    buf.detach_if_empty(&mut pool);
    assert_eq!(buf.allocated(), 0, "drained: the memory goes back");
    assert_eq!(
        pool.spare_bytes(),
        16,
        "and waits in the pool for the next read"
    );
    buf.attach(&mut pool);
    assert_eq!(pool.spare_bytes(), 0, "the next read reuses it");
}
