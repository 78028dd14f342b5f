//! Connections: one slab entry per socket, and the byte pumps that move data
//! through them.
//!
//! A [`Conn`] is a socket ([`Io`]) plus its role: a [`Client`] (accepted from
//! the listener) or an [`Upstream`] (opened by the proxy). A client serving a
//! request and the upstream connection serving it name each other by slab
//! key. An idle pooled upstream connection is simply an `Upstream` in the
//! [`UpstreamPhase::Idle`] phase with no client.
//!
//! Readiness is kept here, not asked of the kernel. mio on Linux is
//! edge-triggered: an event says "something changed", once. So `readable` and
//! `writable` are set by events and cleared only when the socket says
//! `WouldBlock` (or a short read/write proves it drained). Until then the
//! reactor may keep going without waiting for another event, which is what
//! lets a transfer resume the moment backpressure lifts
//! (lesson `04-edge-triggered`).
//!
//! The pumps ([`read_into`], [`write_two`]) take any `Read`/`Write`, so a
//! test can script `Ok(3)`, `WouldBlock`, `Ok(0)` and short writes.
//! [`write_two_before_fin`] is the pump for a connection's last bytes: it
//! lets the FIN of the close that follows leave in the same segment
//! (lesson `13-measuring`).

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

use mio::Interest;
use mio::net::TcpStream;

use crate::buffer::{Buffer, BufferPool};
use crate::exchange::Exchange;
use crate::timer::TimerId;
use crate::token::ConnId;
use crate::transport::Transport;

/// What we know of a socket's readiness, kept in userspace because the
/// kernel tells us only of changes (edge-triggered).
#[derive(Debug, Default)]
pub struct Readiness {
    /// The last event said readable and no read has hit `WouldBlock` since.
    pub readable: bool,
    /// Same for writes.
    pub writable: bool,
    /// An event said the peer has closed its sending side (FIN or RST).
    /// Then a short read does not mean "drained": the EOF is still to be
    /// read, and no further edge will come to announce it.
    pub peer_closed: bool,
    /// Waiting in the reactor's ready queue (so it is queued once, not
    /// once per turn it ran out of budget).
    pub queued: bool,
    /// Reads and writes that moved bytes, so far. The reactor notes the
    /// time whenever these move: that is "progress" for the read and write
    /// timeouts, without the pumps ever reading a clock.
    pub reads: u64,
    pub writes: u64,
}

/// One socket the loop owns.
pub struct Conn {
    pub io: Io,
    pub role: Role,
}

/// The socket and what we know about it.
pub struct Io {
    /// Plain TCP or TLS (`src/transport.rs`); the pumps read and write
    /// plaintext either way.
    pub socket: Transport,
    pub id: ConnId,
    /// What the socket is registered for right now (`None`: not registered).
    /// Cached so `reregister`, an `epoll_ctl` syscall, runs only on a change.
    pub registered: Option<Interest>,
    pub ready: Readiness,
    /// Buffer bytes this connection was last counted as holding
    /// (see `Reactor::settle`).
    pub accounted: usize,
    /// This connection's one timer in the wheel, if armed.
    pub timer: Option<ArmedTimer>,
    /// When a read / a write last moved bytes (reactor clock, ms).
    pub last_read_ms: u64,
    pub last_write_ms: u64,
    /// `ready.reads` / `ready.writes` when last looked at.
    pub seen_reads: u64,
    pub seen_writes: u64,
}

/// A timer in the wheel and the deadline it was set for.
#[derive(Clone, Copy, Debug)]
pub struct ArmedTimer {
    pub id: TimerId,
    pub deadline_ms: u64,
}

pub enum Role {
    Client(Client),
    Upstream(Upstream),
    /// An active health check in flight (`src/reactor/checks.rs`).
    Check(HealthCheck),
}

/// One `GET health.path` to one upstream: connect, write the request, read
/// until the status line, close. Never pooled, never counted against
/// `max_conns_per_upstream`, never linked to a client.
pub struct HealthCheck {
    pub group: usize,
    pub upstream: usize,
    pub addr: SocketAddr,
    /// The upstream list it was started for (see `UpstreamGroup::generation`).
    pub list_generation: u64,
    pub started_ms: u64,
    pub connected: bool,
    /// The request, and how much of it is written.
    pub request: Vec<u8>,
    pub sent: usize,
    /// The start of the answer: only its status line matters.
    pub inbuf: Buffer,
}

/// A connection accepted from a client.
pub struct Client {
    pub peer: SocketAddr,
    /// Accepted on the metrics listener: its requests are answered from
    /// the metrics (`src/admin.rs`), never forwarded.
    pub admin: bool,
    /// Bytes read from the client not yet sent upstream: the request head
    /// while it arrives, then body bytes, then any pipelined requests.
    pub inbuf: Buffer,
    /// Bytes the proxy itself writes to the client ahead of body bytes:
    /// a rewritten response head, a relayed 1xx, or an error response.
    pub out: Outbox,
    /// The client sent FIN: it will send nothing more.
    pub eof: bool,
    pub phase: ClientPhase,
    /// When the current phase began (accept, end of the last exchange).
    pub since_ms: u64,
    /// When the first byte of the head being read arrived.
    pub head_started_ms: Option<u64>,
    /// Exchanges completed on this connection: more than none means the
    /// client is idle between requests, and `keepalive_ms` applies.
    pub served: u32,
    /// TCP_NODELAY is on (set once the client asks for keep-alive).
    pub nodelay: bool,
}

/// What a client connection is waiting for.
pub enum ClientPhase {
    /// Waiting for a complete request head (new or kept-alive connection).
    ReadingHead,
    /// A request is in flight; see [`Exchange`].
    Exchanging(Box<Exchange>),
    /// After a `101 Switching Protocols`: raw bytes both ways.
    Tunnel(Tunnel),
    /// Answering from a static root (`src/files`): head, then the file.
    Static(Box<StaticServe>),
    /// Writing a last answer (`out`), then closing gracefully.
    Closing(Closing),
}

/// A static answer in progress, and what the access log needs of it.
pub struct StaticServe {
    pub reply: crate::files::reply::FileReply,
    pub request: crate::http::request::RequestHead,
    pub started: std::time::Instant,
    pub started_ms: u64,
}

/// A byte tunnel between a client and an upstream (WebSocket, ...).
pub struct Tunnel {
    pub upstream: usize,
    pub since_ms: u64,
    /// FIN already passed on to the upstream / the client.
    pub upstream_shut: bool,
    pub client_shut: bool,
}

/// Closing after a final answer.
///
/// Closing a socket that still has unread bytes makes the kernel send RST,
/// and an RST can reach the client before it has read our answer, which it
/// then never sees. So, like nginx's lingering close: write the answer, send
/// FIN (`shutdown(Write)`), and read and discard until the client closes too.
pub struct Closing {
    pub since_ms: u64,
    pub fin_sent: bool,
    /// Bytes discarded so far; past `LINGER_LIMIT` we stop being polite.
    pub discarded: usize,
}

/// A connection the proxy opened to an upstream.
pub struct Upstream {
    /// Its group (see `crate::group`), and its index in that group's list.
    pub group: usize,
    pub index: usize,
    pub addr: SocketAddr,
    /// Bytes read from the upstream not yet written to the client.
    pub inbuf: Buffer,
    pub phase: UpstreamPhase,
    /// The client this connection serves (`None` while idle).
    pub client: Option<usize>,
    /// The upstream sent FIN.
    pub eof: bool,
    /// Requests this connection has carried (more than one: it was reused).
    pub requests: u32,
    /// When it was parked in the idle pool.
    pub parked_ms: u64,
    /// The upstream list it belongs to: after a reload changes the list,
    /// an old connection is closed rather than pooled.
    pub list_generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamPhase {
    /// Non-blocking connect in progress: waiting for WRITABLE.
    Connecting,
    /// Connected, carrying a request.
    Active,
    /// Parked in the idle pool.
    Idle,
}

impl Conn {
    /// Buffer memory this connection holds, for the budget accounting.
    pub fn memory(&self) -> usize {
        match &self.role {
            Role::Client(c) => {
                let exchange = match &c.phase {
                    ClientPhase::Exchanging(ex) => ex.memory(),
                    _ => 0,
                };
                c.inbuf.allocated() + c.out.capacity() + exchange
            }
            Role::Upstream(u) => u.inbuf.allocated(),
            Role::Check(c) => c.inbuf.allocated() + c.request.capacity(),
        }
    }

    /// The buffer bytes arrive into (the client's requests, or the
    /// upstream's responses).
    pub fn inbuf(&mut self) -> &mut Buffer {
        match &mut self.role {
            Role::Client(c) => &mut c.inbuf,
            Role::Upstream(u) => &mut u.inbuf,
            Role::Check(c) => &mut c.inbuf,
        }
    }

    /// The interest this connection should be registered with now.
    ///
    /// WRITABLE is always on: edge-triggered, it costs nothing until a write
    /// has filled the socket buffer (the kernel only signals "writable again"
    /// after that), and keeping it on means a slow reader never needs an
    /// `epoll_ctl`. READABLE is dropped when there is nowhere to put the
    /// bytes: that is backpressure (lesson `09-backpressure`).
    pub fn desired_interest(&self) -> Interest {
        let wants_read = match &self.role {
            Role::Client(c) => !c.eof && !c.inbuf.is_full(),
            Role::Upstream(u) => !u.eof && !u.inbuf.is_full(),
            Role::Check(c) => !c.inbuf.is_full(),
        };
        if wants_read {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::WRITABLE
        }
    }
}

/// Bytes the proxy composed itself (a head, an error answer), written out
/// ahead of any body bytes and possibly over several partial writes.
#[derive(Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outbox {
    /// What is still to be written.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    pub fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// The buffer to compose into (appends after what is pending).
    pub fn compose(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// `n` bytes were written. Of a write of `out.pending()` followed by
    /// body bytes, returns how many of the `n` were body bytes.
    pub fn advance(&mut self, n: usize) -> usize {
        let mine = n.min(self.bytes.len() - self.sent);
        self.sent += mine;
        if self.sent == self.bytes.len() {
            // Keep the allocation: the next head on this connection reuses it.
            self.bytes.clear();
            self.sent = 0;
        }
        n - mine
    }

    /// Drop what is pending (the peer is gone, or a retry will recompose).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
    }

    /// Free the memory if nothing is pending (an idle connection keeps
    /// none; the next head allocates it again, once).
    pub fn release_if_empty(&mut self) {
        if self.is_empty() && self.bytes.capacity() > 0 {
            self.bytes = Vec::new();
            self.sent = 0;
        }
    }

    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// What one read did.
#[derive(Debug)]
pub enum ReadOutcome {
    Data(usize),
    /// The peer sent FIN.
    Eof,
    /// Nothing to read now (or no room to read into).
    Blocked,
    Failed(io::Error),
}

/// A source of bytes that can say whether a short read emptied it.
///
/// On a TCP socket it always does (see `read_into`). A TLS session may
/// have seen the peer's close_notify in the same records as the last
/// bytes it returned: those bytes come back short, and the end of stream
/// is still to be read, with no edge to announce it (lesson `17-tls`).
pub trait Incoming: Read {
    fn short_read_drains(&self) -> bool {
        true
    }
}

impl Incoming for TcpStream {}

/// Read once from `socket` into `buf`, keeping `readable` true while the
/// socket may still hold bytes (or an EOF, when `peer_closed`). The buffer
/// takes its memory from `pool` now, when bytes may actually arrive.
pub fn read_into<S: Incoming>(
    socket: &mut S,
    ready: &mut Readiness,
    buf: &mut Buffer,
    pool: &mut BufferPool,
) -> ReadOutcome {
    if !ready.readable || buf.is_full() {
        return ReadOutcome::Blocked;
    }
    buf.attach(pool);
    let asked = buf.space();
    loop {
        return match buf.read_from(socket) {
            Ok(0) => {
                // EOF: no further read can return anything else, and no
                // further edge will come to say so.
                ready.readable = false;
                ReadOutcome::Eof
            }
            Ok(n) => {
                // A stream socket that returns fewer bytes than asked has
                // just been emptied: a read now would only say WouldBlock.
                // Any byte that arrives later raises a new edge. (Not so
                // the FIN that came with these bytes: see `peer_closed`.)
                if n < asked && !ready.peer_closed && socket.short_read_drains() {
                    ready.readable = false;
                }
                ready.reads += 1;
                ReadOutcome::Data(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.readable = false;
                ReadOutcome::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                ready.readable = false;
                ReadOutcome::Failed(e)
            }
        };
    }
}

/// What one write did.
#[derive(Debug)]
pub enum WriteOutcome {
    Wrote(usize),
    Blocked,
    Failed(io::Error),
}

/// Write `first` then `second` in one `writev` (a response head and the
/// first body bytes leave in one syscall and, with `TCP_NODELAY`, one
/// segment). Clears `writable` when the socket buffer fills.
pub fn write_two<S: Write>(
    socket: &mut S,
    ready: &mut Readiness,
    first: &[u8],
    second: &[u8],
) -> WriteOutcome {
    write_counted(ready, first.len() + second.len(), || {
        if first.is_empty() {
            socket.write(second)
        } else if second.is_empty() {
            socket.write(first)
        } else {
            socket.write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
        }
    })
}

/// [`write_two`] for the last bytes a connection will ever send: the caller
/// shuts down or closes the socket as soon as they are all written, and
/// the kernel may hold back their last partial segment for the FIN.
pub fn write_two_before_fin<S: Outgoing>(
    socket: &mut S,
    ready: &mut Readiness,
    first: &[u8],
    second: &[u8],
) -> WriteOutcome {
    write_counted(ready, first.len() + second.len(), || {
        socket.write_vectored_before_fin(&[IoSlice::new(first), IoSlice::new(second)])
    })
}

/// What both pumps share: one write attempt (retried on EINTR) and what it
/// says about the socket.
fn write_counted(
    ready: &mut Readiness,
    total: usize,
    mut attempt: impl FnMut() -> io::Result<usize>,
) -> WriteOutcome {
    if total == 0 || !ready.writable {
        return WriteOutcome::Blocked;
    }
    loop {
        return match attempt() {
            Ok(n) => {
                // A short write means the send buffer is full; the kernel
                // will raise WRITABLE when it drains.
                if n < total {
                    ready.writable = false;
                }
                ready.writes += 1;
                WriteOutcome::Wrote(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready.writable = false;
                WriteOutcome::Blocked
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                ready.writable = false;
                WriteOutcome::Failed(e)
            }
        };
    }
}

/// A socket that can be told "the FIN comes next".
///
/// An answer on a connection that then closes costs two segments if the
/// answer leaves at once and the close sends its FIN after it: the client
/// wakes for the bytes, then again for the FIN, and ACKs each. Written
/// with `MSG_MORE`, the answer's last partial segment waits in the send
/// queue, and the close (or `shutdown`) that follows sends it with the
/// FIN set: one segment, one wake-up, one ACK. HTTP/1.0 clients and
/// `Connection: close` answers take this road (lesson `13-measuring`).
///
/// `MSG_MORE` promises more data: bytes written this way wait until the
/// socket is shut down or closed, so only a write followed by one may
/// use it.
pub trait Outgoing: Write {
    /// `write_vectored`, announcing that a FIN follows. By default just
    /// `write_vectored`, which is all a scripted test socket needs.
    fn write_vectored_before_fin(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored(bufs)
    }

    /// The descriptor, if bytes written to it leave as they are: only then
    /// may the kernel copy into it for us (`sendfile`). Not so a TLS
    /// connection, nor a scripted test socket.
    fn raw_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Outgoing for TcpStream {
    fn write_vectored_before_fin(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(&*self).send_vectored_with_flags(bufs, nix::libc::MSG_MORE)
    }

    fn raw_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}
