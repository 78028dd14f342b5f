//! One TLS session as byte pumps: plaintext in and out on one side,
//! records to and from a socket on the other.
//!
//! rustls does no I/O of its own. It is a state machine fed and drained by
//! four calls: `read_tls` (records from the socket into rustls),
//! `process_new_packets` (decrypt them; move the handshake on),
//! `reader()` (the plaintext they held) and `write_tls` (records rustls
//! wants sent: handshake messages, alerts, session tickets, and our own
//! encrypted bytes). [`TlsSession`] strings them together so that a TLS
//! connection reads and writes like a TCP one, with the same contract the
//! reactor's pumps rely on (`src/conn.rs`):
//!
//! - a read that returns fewer bytes than asked has emptied the socket
//!   (it saw `WouldBlock`, or a short socket read). Plaintext rustls still
//!   holds is never left behind a short read, or the edge-triggered loop
//!   would wait for an edge that already came;
//! - a write returns how many plaintext bytes rustls took (its buffers are
//!   bounded, so under backpressure that may be fewer than offered).
//!
//! The subtle part is that reading can make rustls want to *write*: the
//! server's handshake flight answers the ClientHello, tickets follow the
//! client's Finished, an alert answers garbage. So every read ends with a
//! flush, and what a full socket buffer refused stays in rustls until the
//! next WRITABLE edge, when the reactor calls [`TlsSession::flush`] before
//! anything else (lesson `17-tls`).
//!
//! Generic over the socket (`Read + Write`): the tests run a session
//! against a rustls client through in-memory pipes, no sockets.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection};

/// Most bytes of unsent records rustls may hold for one connection (its
/// default is 64 KiB). Two full records: enough to keep the socket busy,
/// and the bound on what a slow reader costs us here.
pub const SEND_BUFFER_LIMIT: usize = 32 * 1024;

/// What a finished handshake was, for the metrics and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub version: &'static str,
    pub resumed: bool,
}

/// One server-side TLS session.
pub struct TlsSession {
    conn: ServerConnection,
    /// The handshake's end was already reported (see [`Self::handshake_news`]).
    reported: bool,
    /// Why the session failed, as a metrics label and a line for the log,
    /// once it has.
    failure: Option<(&'static str, String)>,
    close_notify_sent: bool,
    /// The stream's end was seen after bytes that were returned: the next
    /// read returns it (see `crate::conn::Incoming`).
    end_pending: bool,
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsSession, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        Ok(TlsSession {
            conn,
            reported: false,
            failure: None,
            close_notify_sent: false,
            end_pending: false,
        })
    }

    /// Still handshaking: no request byte can have arrived yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Records are waiting to be written to the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Why the session failed (a metrics label, and what happened), if it
    /// did.
    pub fn failure(&self) -> Option<(&'static str, &str)> {
        self.failure
            .as_ref()
            .map(|(label, why)| (*label, why.as_str()))
    }

    /// Note why the session is ending, unless a reason is known already
    /// (the reactor's: `timeout`).
    pub fn note_failure(&mut self, label: &'static str, why: String) {
        self.failure.get_or_insert((label, why));
    }

    /// The negotiated version ("TLSv1.3"), once known.
    pub fn version(&self) -> Option<&'static str> {
        self.conn.protocol_version().map(version_name)
    }

    /// The name the client asked for (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// The handshake finished since the last call: what it was. Returns
    /// `Some` once per session.
    pub fn handshake_news(&mut self) -> Option<Handshake> {
        if self.reported || self.conn.is_handshaking() {
            return None;
        }
        self.reported = true;
        Some(Handshake {
            version: self.version().unwrap_or("unknown"),
            resumed: self.conn.handshake_kind() == Some(HandshakeKind::Resumed),
        })
    }

    /// Read plaintext into `buf`: what rustls holds, then as many records
    /// from `socket` as it takes to fill `buf` or empty the socket.
    /// `Ok(0)` is the end of the stream (close_notify, or the socket's
    /// EOF); `WouldBlock` means nothing is here yet.
    pub fn read<S: Read + Write>(&mut self, socket: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        let mut socket_drained = false;
        loop {
            // All the plaintext rustls holds, until it says "no more yet"
            // or "no more ever": an end that came in the same records as
            // the last bytes is learnt now, not lost behind a short read.
            loop {
                match self.conn.reader().read(&mut buf[filled..]) {
                    // close_notify: a clean end of the stream.
                    Ok(0) => return Ok(self.ended(filled)),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            return Ok(filled);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The TCP stream ended without close_notify. For a
                    // client that is a plain close (HTTP frames its own
                    // requests).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Ok(self.ended(filled));
                    }
                    Err(e) => return Err(e),
                }
            }
            if socket_drained {
                return blocked_unless(filled);
            }
            let mut counted = ShortReadProbe {
                inner: socket,
                short: false,
            };
            match self.conn.read_tls(&mut counted) {
                Ok(_) => socket_drained = counted.short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return blocked_unless(filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.note_failure("io_error", e.to_string());
                    return Err(e);
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.note_failure(failure_reason(&e), e.to_string());
                // rustls has queued an alert that says why: send it if
                // the socket takes it now, never wait for it.
                let _ = self.flush(socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // The handshake may have moved, or tickets may be due: say it
            // now, not when the next request happens to need a write.
            self.flush(socket)?;
        }
    }

    /// The end of the stream is known and not yet returned by a read.
    pub fn end_pending(&self) -> bool {
        self.end_pending
    }

    /// The stream ended (after `filled` more bytes): during the handshake,
    /// that is how it failed.
    fn ended(&mut self, filled: usize) -> usize {
        if self.conn.is_handshaking() {
            self.note_failure("eof", "the client closed during the handshake".to_string());
        }
        // Returned with bytes, the end is still news for the next read.
        self.end_pending = filled > 0;
        filled
    }

    /// Hand `bufs` to rustls to encrypt, then write out what the socket
    /// takes. Returns the plaintext bytes taken; `WouldBlock` when rustls's
    /// bounded buffer is full and the socket takes nothing.
    pub fn write_vectored<S: Write>(
        &mut self,
        socket: &mut S,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        // Older records first: this may make room under the buffer limit.
        self.flush(socket)?;
        let taken = self.conn.writer().write_vectored(bufs)?;
        self.flush(socket)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Write the records rustls holds. `Ok(true)`: none left; `Ok(false)`:
    /// the socket is full, the rest waits for WRITABLE.
    pub fn flush<S: Write>(&mut self, socket: &mut S) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.note_failure("io_error", e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Queue close_notify (once) and flush. `Ok(true)` once everything,
    /// the alert included, has reached the socket.
    pub fn close_notify<S: Write>(&mut self, socket: &mut S) -> io::Result<bool> {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.conn.send_close_notify();
        }
        self.flush(socket)
    }
}

fn blocked_unless(filled: usize) -> io::Result<usize> {
    if filled > 0 {
        Ok(filled)
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Wraps the socket for one `read_tls`, noting whether the read came back
/// short: a stream socket that returns less than asked has been emptied,
/// so a second read would only cost a syscall to hear `WouldBlock`.
struct ShortReadProbe<'a, S> {
    inner: &'a mut S,
    short: bool,
}

impl<S: Read> Read for ShortReadProbe<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// "TLSv1.3", as nginx's `$ssl_protocol` writes it.
pub fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1.0",
        _ => "unknown",
    }
}

/// Every reason a handshake is counted as failed for (the metrics label),
/// `other` last. Besides those of [`failure_reason`]: `eof` (the client
/// closed first), `timeout` (not done within `client_header_ms`), `io_error`
/// (the socket failed, a reset say).
pub const FAILURE_REASONS: [&str; 11] = [
    "not_tls",
    "bad_message",
    "incompatible",
    "no_alpn",
    "alert",
    "misbehaved",
    "decrypt",
    "eof",
    "timeout",
    "io_error",
    "other",
];

/// A failed handshake's reason, as a short label for metrics and logs.
pub fn failure_reason(e: &rustls::Error) -> &'static str {
    use rustls::{Error, InvalidMessage};
    match e {
        // The first bytes were not a TLS record at all: typically plain
        // HTTP sent to the TLS port.
        Error::InvalidMessage(InvalidMessage::InvalidContentType)
        | Error::InvalidMessage(InvalidMessage::UnknownProtocolVersion) => "not_tls",
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. } => "bad_message",
        Error::PeerIncompatible(_) => "incompatible",
        Error::NoApplicationProtocol => "no_alpn",
        // The client refused us: usually our certificate (unknown CA,
        // wrong name, expired).
        Error::AlertReceived(_) => "alert",
        Error::PeerMisbehaved(_) => "misbehaved",
        Error::DecryptError => "decrypt",
        _ => "other",
    }
}
