//! `TlsSession` without sockets: a rustls client on one side, the
//! session on the other, and an in-memory "socket" between them that can
//! be told to refuse writes. Each test pins down one promise the reactor's
//! pumps rely on (see `src/tls/session.rs`).
//!
//! Lesson: `lessons/17-tls`.

mod support;

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use ferroxy::config::TlsConfig;
use ferroxy::tls::TlsAcceptor;
use ferroxy::tls::certs::CertStore;
use ferroxy::tls::session::{SEND_BUFFER_LIMIT, TlsSession};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;
use support::tls::{TestCert, client_config};

/// A non-blocking socket in memory: what the client sent waits in
/// `incoming`; what the session writes lands in `outgoing`, at most
/// `room` bytes until the test makes more (a full send buffer).
struct MemSocket {
    incoming: VecDeque<u8>,
    outgoing: Vec<u8>,
    room: usize,
    reads: usize,
}

impl MemSocket {
    fn new() -> MemSocket {
        MemSocket {
            incoming: VecDeque::new(),
            outgoing: Vec::new(),
            room: usize::MAX,
            reads: 0,
        }
    }
}

impl Read for MemSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.incoming.read(buf)
    }
}

impl Write for MemSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.outgoing.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Pair {
    client: ClientConnection,
    server: TlsSession,
    socket: MemSocket,
    _cert: TestCert,
}

fn pair() -> Pair {
    let cert = TestCert::new("session", &["localhost"]);
    let acceptor = TlsAcceptor::new(&TlsConfig {
        listen: "127.0.0.1:0".to_string(),
        certificates: vec![cert.files.clone()],
    })
    .expect("the acceptor");
    let config = client_config(&[&cert], &[]);
    let client = ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    Pair {
        client,
        server: acceptor.session().expect("a session"),
        socket: MemSocket::new(),
        _cert: cert,
    }
}

impl Pair {
    /// Client records to the server's socket.
    fn client_sends(&mut self) {
        let mut out = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut out).unwrap();
        }
        self.socket.incoming.extend(out);
    }

    /// What the server wrote, to the client.
    fn client_receives(&mut self) {
        let bytes = std::mem::take(&mut self.socket.outgoing);
        let mut slice = &bytes[..];
        while !slice.is_empty() {
            self.client.read_tls(&mut slice).unwrap();
            self.client.process_new_packets().unwrap();
        }
    }

    fn server_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.server.read(&mut self.socket, buf)
    }

    fn handshake(&mut self) {
        for _ in 0..10 {
            if !self.client.is_handshaking() && !self.server.is_handshaking() {
                return;
            }
            self.client_sends();
            let mut buf = [0u8; 1024];
            match self.server_read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("no plaintext during the handshake: {other:?}"),
            }
            self.client_receives();
        }
        panic!("the handshake did not finish in 10 rounds");
    }
}

/// Reading the ClientHello is what makes the server want to write its
/// flight. The read itself sends it: nothing waits for a later write that
/// the reactor, with no response to send, would never make.
#[test]
fn a_read_that_makes_the_session_want_to_write_flushes_it() {
    let mut p = pair();
    p.client_sends();
    let mut buf = [0u8; 1024];
    let read = p.server_read(&mut buf);
    assert_eq!(read.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    assert!(
        !p.socket.outgoing.is_empty(),
        "the server's flight left with the read"
    );
    assert!(!p.server.wants_write(), "nothing of it is held back");
    p.client_receives();
    p.handshake();
    assert_eq!(
        p.server.handshake_news().map(|h| h.version),
        Some("TLSv1.3")
    );
    assert_eq!(p.server.handshake_news(), None, "reported once");
}

/// When the socket refuses the flight (a full send buffer), it waits in
/// the session, and `flush` (what the reactor calls on WRITABLE) sends it.
#[test]
fn a_flight_the_socket_refused_waits_for_flush() {
    let mut p = pair();
    p.client_sends();
    p.socket.room = 0;
    let mut buf = [0u8; 1024];
    let _ = p.server_read(&mut buf);
    assert!(p.socket.outgoing.is_empty());
    assert!(p.server.wants_write(), "the flight is held, not lost");
    p.socket.room = usize::MAX;
    assert!(p.server.flush(&mut p.socket).unwrap(), "flushed whole");
    assert!(!p.socket.outgoing.is_empty());
    p.client_receives();
    p.handshake();
}

/// The edge-triggered rule across TLS: a read that returns less than the
/// buffer has emptied the socket. 48 KiB of requests read 10 KiB at a
/// time: every read but the last is full, and after the short one no byte
/// is left in the socket or the session.
#[test]
fn a_short_read_means_everything_was_read() {
    let mut p = pair();
    p.handshake();
    let sent: Vec<u8> = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    p.client.writer().write_all(&sent).unwrap();
    p.client_sends();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 10 * 1024];
    loop {
        let n = p.server_read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    assert_eq!(got, sent);
    assert!(
        p.socket.incoming.is_empty(),
        "a short read left socket bytes behind"
    );
    let again = p.server_read(&mut buf);
    assert_eq!(
        again.unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "and none in rustls"
    );
}

/// Under backpressure a write takes what rustls's bounded buffer holds and
/// then says WouldBlock: a client that never reads costs at most
/// `SEND_BUFFER_LIMIT` here, not the size of the response.
#[test]
fn writes_are_bounded_when_the_socket_is_full() {
    let mut p = pair();
    p.handshake();
    p.socket.room = 0;
    let body = vec![b'x'; 1 << 20];
    let mut taken = 0;
    loop {
        match p
            .server
            .write_vectored(&mut p.socket, &[IoSlice::new(&body[taken..])])
        {
            Ok(n) => taken += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        assert!(taken <= body.len());
    }
    assert!(
        taken <= SEND_BUFFER_LIMIT,
        "rustls took {taken} bytes while the socket was full"
    );
    assert!(taken > 0);
}

/// Each side's close_notify: the server's reaches the client before its
/// FIN; the client's makes the server's read return 0, the end of stream.
#[test]
fn close_notify_both_ways() {
    let mut p = pair();
    p.handshake();
    assert!(p.server.close_notify(&mut p.socket).unwrap());
    p.client_receives();
    let mut buf = [0u8; 16];
    assert_eq!(
        p.client.reader().read(&mut buf).unwrap(),
        0,
        "clean close at the client"
    );

    let mut p = pair();
    p.handshake();
    p.client.send_close_notify();
    p.client_sends();
    assert_eq!(p.server_read(&mut buf).unwrap(), 0);
}

/// The last bytes and the end of the stream in the same records: the read
/// that returns the bytes is short, yet does not claim the socket is
/// drained, and the next read returns the end.
#[test]
fn an_end_that_came_with_the_last_bytes_is_not_lost() {
    let mut p = pair();
    p.handshake();
    p.client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    p.client.send_close_notify();
    p.client_sends();
    let mut buf = [0u8; 256];
    let n = p.server_read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    // What `Transport::short_read_drains` reports: not drained.
    assert!(p.server.end_pending(), "the end is remembered");
    assert_eq!(
        p.server_read(&mut buf).unwrap(),
        0,
        "the next read returns the end"
    );
    assert!(!p.server.end_pending());
}

/// Plain HTTP where a ClientHello belongs: an error, and the reason the
/// metrics will count.
#[test]
fn plain_http_fails_as_not_tls() {
    let mut p = pair();
    p.socket
        .incoming
        .extend(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let err = p.server_read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(p.server.failure().map(|f| f.0), Some("not_tls"));
    assert!(p.server.is_handshaking());
}

/// A reload reads every pair again. One that no longer loads keeps what
/// was loaded before (a renewal gone wrong must not take the site down);
/// the others take their new files; nothing loading at all changes
/// nothing.
#[test]
fn a_reload_keeps_the_old_version_of_a_broken_pair() {
    let mut first = TestCert::new("reload-a", &["a.test"]);
    let mut second = TestCert::new("reload-b", &["b.test"]);
    let entries = vec![first.files.clone(), second.files.clone()];
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let store = CertStore::load(&entries, &provider).expect("both load");
    let old_first = store.certs[0].key.cert[0].clone();

    first.renew(&["a.test"]);
    second.renew(&["b.test"]);
    std::fs::write(&first.files.key, "not a key").unwrap();
    let reloaded = store.reload(&entries, &provider).expect("one still loads");
    assert_eq!(reloaded.certs.len(), 2);
    assert_eq!(
        reloaded.certs[0].key.cert[0], old_first,
        "the broken pair kept its old version"
    );
    assert_eq!(
        reloaded.certs[1].key.cert[0], second.der,
        "the good pair took its new file"
    );

    std::fs::write(&second.files.cert, "not a certificate").unwrap();
    let fresh = CertStore::load(&entries[..1], &provider);
    assert!(fresh.is_err(), "at start, a broken pair is an error");
    let empty = CertStore { certs: Vec::new() };
    assert!(
        empty.reload(&entries, &provider).is_none(),
        "nothing loads: nothing changes"
    );
}

/// A key that is not the certificate's is refused when loaded, not at the
/// first handshake.
#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let one = TestCert::new("mismatch-a", &["a.test"]);
    let other = TestCert::new("mismatch-b", &["a.test"]);
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let err = ferroxy::tls::certs::load_pair(&one.files.cert, &other.files.key, &provider)
        .expect_err("a mismatched pair");
    assert!(err.contains("do not make a usable pair"), "{err}");
}
