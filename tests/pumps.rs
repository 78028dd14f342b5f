//! Stories about the byte pumps in `src/conn.rs` (`read_into`, `write_two`)
//! and the readiness they remember between events, with scripted sockets:
//! each story is exact and needs no network. The last story uses a real
//! loopback socket, because what it shows is the kernel's part.

use std::collections::VecDeque;
use std::io::{self, Write};

use ferroxy::buffer::{Buffer, BufferPool};
use ferroxy::conn::{
    ReadOutcome, Readiness, WriteOutcome, read_into, write_two, write_two_before_fin,
};

#[path = "support/scripted.rs"]
mod scripted;
use scripted::ScriptedReader;

fn readable() -> Readiness {
    Readiness {
        readable: true,
        ..Readiness::default()
    }
}

/// A read that returns fewer bytes than offered has emptied the socket:
/// `readable` is cleared without a second read that would only say
/// WouldBlock. One syscall saved per wake-up.
#[test]
fn short_read_means_drained() {
    let mut pool = BufferPool::new(64, 1);
    let mut buf = Buffer::with_capacity(64);
    let mut ready = readable();
    let mut socket = ScriptedReader(VecDeque::from(vec![Ok(b"GET / HTTP/1.1\r\n".to_vec())]));
    let outcome = read_into(&mut socket, &mut ready, &mut buf, &mut pool);
    assert!(matches!(outcome, ReadOutcome::Data(16)), "got {outcome:?}");
    assert!(!ready.readable, "16 of 64 bytes: the socket is drained");
}

/// Data and FIN in one event: the short read must *not* clear `readable`,
/// or the EOF would never be read (no further edge comes for it).
#[test]
fn fin_that_came_with_the_data_is_still_read() {
    let mut pool = BufferPool::new(64, 1);
    let mut buf = Buffer::with_capacity(64);
    let mut ready = Readiness {
        peer_closed: true,
        ..readable()
    };
    let mut socket = ScriptedReader(VecDeque::from(vec![Ok(b"last bytes".to_vec())]));
    let first = read_into(&mut socket, &mut ready, &mut buf, &mut pool);
    assert!(matches!(first, ReadOutcome::Data(10)), "got {first:?}");
    assert!(ready.readable, "the peer closed: the EOF is still to read");
    let second = read_into(&mut socket, &mut ready, &mut buf, &mut pool);
    assert!(matches!(second, ReadOutcome::Eof), "got {second:?}");
}

/// When only the tail after the waiting bytes is offered, filling it
/// exactly is not a short read: the socket may hold more.
#[test]
fn filling_the_offered_tail_is_not_a_short_read() {
    let mut pool = BufferPool::new(10, 1);
    let mut buf = Buffer::with_capacity(10);
    let mut ready = readable();
    let mut socket = ScriptedReader(VecDeque::from(vec![
        Ok(b"12345678".to_vec()),
        Ok(b"abcdef".to_vec()),
    ]));
    read_into(&mut socket, &mut ready, &mut buf, &mut pool);
    ready.readable = true;
    buf.consume(3);
    assert_eq!(
        buf.space(),
        2,
        "the next read is offered the 2-byte tail only"
    );
    let outcome = read_into(&mut socket, &mut ready, &mut buf, &mut pool);
    assert!(matches!(outcome, ReadOutcome::Data(2)), "got {outcome:?}");
    assert!(ready.readable, "2 of 2 offered: the socket may hold more");
}

/// A writer that takes at most `room` bytes, then says WouldBlock.
struct Tight {
    room: usize,
    taken: Vec<u8>,
}

impl Write for Tight {
    /// Gathers like `writev` on a socket: as much of all slices as fits.
    fn write_vectored(&mut self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let all: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        self.write(&all)
    }
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = bytes.len().min(self.room);
        self.room -= n;
        self.taken.extend_from_slice(&bytes[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A head and body bytes leave in one write; when the socket takes only
/// part, `writable` is cleared (the send buffer is full) and the caller
/// keeps the rest for the next WRITABLE edge.
#[test]
fn short_write_means_the_send_buffer_is_full() {
    let mut ready = Readiness {
        writable: true,
        ..Readiness::default()
    };
    let mut socket = Tight {
        room: 10,
        taken: Vec::new(),
    };
    let outcome = write_two(&mut socket, &mut ready, b"HEAD\r\n", b"body bytes");
    assert!(
        matches!(outcome, WriteOutcome::Wrote(10)),
        "got {outcome:?}"
    );
    assert!(!ready.writable, "10 of 16 bytes: wait for WRITABLE");
    assert_eq!(socket.taken, b"HEAD\r\nbody");
    let blocked = write_two(&mut socket, &mut ready, b"", b" bytes");
    assert!(
        matches!(blocked, WriteOutcome::Blocked),
        "not writable: no syscall at all"
    );
}

/// `write_two_before_fin` on a real socket: the bytes are accepted at once,
/// but the kernel keeps them in the send queue (`MSG_MORE`) until the
/// shutdown, which sends them together with the FIN. The peer sees nothing,
/// then everything and end of stream in one go. That is why only the last
/// write before a close may use it.
#[test]
fn the_last_write_waits_for_the_fin() {
    use std::io::Read;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::Duration;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let sender = TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (mut receiver, _) = listener.accept().expect("accept");
    let mut sender = mio::net::TcpStream::from_std(sender);
    let mut ready = Readiness {
        writable: true,
        ..Readiness::default()
    };

    let outcome = write_two_before_fin(&mut sender, &mut ready, b"HTTP/1.0 200 OK\r\n\r\n", b"bye");
    assert!(
        matches!(outcome, WriteOutcome::Wrote(22)),
        "got {outcome:?}"
    );
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("a read timeout");
    let mut buf = [0u8; 64];
    let early = receiver.read(&mut buf);
    assert!(
        early.is_err(),
        "the bytes should wait in the send queue for the FIN, but {early:?} arrived first"
    );

    sender.shutdown(Shutdown::Write).expect("shutdown");
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut got = Vec::new();
    receiver
        .read_to_end(&mut got)
        .expect("the bytes, then end of stream");
    assert_eq!(got, b"HTTP/1.0 200 OK\r\n\r\nbye");
}
