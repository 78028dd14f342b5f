//! A connection's transport: plain TCP, or TLS over TCP. One type behind
//! the byte pumps.
//!
//! The pumps in `src/conn.rs` take any `Read` / `Write`; a [`Transport`]
//! is both, so the reactor moves a client's bytes the same way whichever
//! listener it came from. Three things differ, and each has one method:
//!
//! - [`Transport::plain`]: only a plain socket may hand bytes to the
//!   kernel's zero-copy paths (`splice`, `sendfile`). Those would send the
//!   bytes as they are, and on a TLS connection they must be encrypted
//!   first. So the fast paths ask for the plain socket, and get `None` on
//!   TLS;
//! - [`Transport::flush`]: rustls may hold records a full socket refused
//!   (see `src/tls/session.rs`); the reactor calls this before its pumps
//!   whenever the socket may take them (it is known writable);
//! - [`Transport::shutdown_write`]: TLS says goodbye with close_notify
//!   before the FIN, and both may have to wait for WRITABLE.
//!
//! Upstream connections and health checks are always plain.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::conn::{Incoming, Outgoing};
use crate::tls::session::TlsSession;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A TCP socket and the TLS session that runs over it.
pub struct TlsStream {
    pub tcp: TcpStream,
    pub session: TlsSession,
}

impl Transport {
    /// The TCP socket underneath (for socket options and errors).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => &tls.tcp,
        }
    }

    /// The socket, if bytes written to it go out as they are.
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            Transport::Plain(tcp) => Some(tcp),
            Transport::Tls(_) => None,
        }
    }

    pub fn is_plain(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// The negotiated TLS version ("TLSv1.3") once the handshake is done,
    /// for the access log; `None` on plain TCP.
    pub fn tls_version(&self) -> Option<&'static str> {
        self.tls()
            .filter(|s| !s.is_handshaking())
            .and_then(TlsSession::version)
    }

    /// The TLS session, if there is one.
    pub fn tls(&self) -> Option<&TlsSession> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(&tls.session),
        }
    }

    pub fn tls_mut(&mut self) -> Option<&mut TlsSession> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(&mut tls.session),
        }
    }

    /// Write what the transport itself still holds (TLS records refused by
    /// a full socket). `Ok(true)`: nothing is left. Plain TCP holds nothing.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(tls) => tls.session.flush(&mut tls.tcp),
        }
    }

    /// Nothing written is still held back by the transport.
    pub fn is_flushed(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(tls) => !tls.session.wants_write(),
        }
    }

    /// End our sending side: on TLS, close_notify first. Returns `true`
    /// once the FIN is on its way (or the socket is past caring);
    /// `false`: the socket is full, call again on WRITABLE.
    pub fn shutdown_write(&mut self) -> bool {
        match self {
            Transport::Plain(tcp) => {
                let _ = tcp.shutdown(Shutdown::Write);
                true
            }
            Transport::Tls(tls) => match tls.session.close_notify(&mut tls.tcp) {
                Ok(false) => false,
                Ok(true) | Err(_) => {
                    let _ = tls.tcp.shutdown(Shutdown::Write);
                    true
                }
            },
        }
    }

    /// Before the socket is dropped: a TLS peer is owed a close_notify,
    /// sent if the socket takes it right now (never waited for).
    pub fn say_goodbye(&mut self) {
        if let Transport::Tls(tls) = self
            && !tls.session.is_handshaking()
        {
            let _ = tls.session.close_notify(&mut tls.tcp);
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.session.read(&mut tls.tcp, buf),
        }
    }
}

impl Incoming for Transport {
    fn short_read_drains(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(tls) => !tls.session.end_pending(),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write_vectored(bufs),
            Transport::Tls(tls) => tls.session.write_vectored(&mut tls.tcp, bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Transport::flush(self).map(|_| ())
    }
}

impl Outgoing for Transport {
    fn write_vectored_before_fin(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write_vectored_before_fin(bufs),
            // The records leave as rustls writes them; close_notify and
            // the FIN follow from `shutdown_write`.
            Transport::Tls(tls) => tls.session.write_vectored(&mut tls.tcp, bufs),
        }
    }

    fn raw_fd(&self) -> Option<BorrowedFd<'_>> {
        self.plain().map(|tcp| tcp.as_fd())
    }
}

/// mio registers the TCP socket underneath: readiness is the socket's,
/// whatever runs over it.
impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        tcp_mut(self).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        tcp_mut(self).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        tcp_mut(self).deregister(registry)
    }
}

fn tcp_mut(transport: &mut Transport) -> &mut TcpStream {
    match transport {
        Transport::Plain(tcp) => tcp,
        Transport::Tls(tls) => &mut tls.tcp,
    }
}
