//! The reactor: one `mio::Poll` loop that owns every socket.
//!
//! [`Reactor::run`] is the whole program in one screen: wait for readiness,
//! route each event to its connection by token, let that connection move as
//! far as it can without blocking, and go back to waiting. Nothing here ever
//! blocks, so one thread serves every connection; nothing here parses HTTP
//! (that is [`crate::http`]) or decides what a request needs next (that is
//! [`crate::exchange`]). This file is the only one that calls `register`,
//! `reregister`, `accept`, `connect` or closes a socket.
//!
//! A client connection and the upstream connection serving it are driven
//! together by [`Reactor::drive`], whichever of the two the event was for:
//! a byte arriving on one side is usually a byte to write on the other.
//!
//! Lessons: `03-poll-loop`, `04-edge-triggered`, `06-slab-and-tokens`,
//! `09-backpressure`, `14-whole-proxy`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use log::{debug, error, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::access_log::{self, AccessLine};
use crate::balance::RoundRobin;
use crate::buffer::Buffer;
use crate::config::Config;
use crate::conn::{
    Client, ClientPhase, Closing, Conn, Io, Outbox, ReadOutcome, Readiness, Role, Tunnel, Upstream,
    UpstreamPhase, WriteOutcome, read_into, write_two,
};
use crate::exchange::{Exchange, Failure, ResponseState};
use crate::http::errors::write_error_response;
use crate::http::head::{HeadLimits, RequestError, parse_request};
use crate::pool::IdlePool;
use crate::token::{ConnId, LISTENER, WAKER};

/// Bytes one connection may read per turn before the others get theirs.
/// Without a budget, one fast download keeps the loop busy with a single
/// socket while a thousand small requests wait.
const TURN_BUDGET: usize = 64 * 1024;

/// After a final answer, how much of what a client still sends we read and
/// throw away before closing anyway (see [`Closing`]).
const LINGER_LIMIT: usize = 1024 * 1024;

/// How many events one `poll` call can return.
const EVENTS_PER_POLL: usize = 1024;

/// A snapshot of what the loop is holding, for tests and (later) metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slab entries: every open socket the loop owns (listener excluded).
    pub connections: usize,
    pub client_connections: usize,
    pub upstream_connections: usize,
    /// Upstream connections parked in the idle pool.
    pub idle_upstream_connections: usize,
    /// Bytes of buffer memory held right now, all connections together.
    pub buffer_bytes: usize,
    /// The most `buffer_bytes` has ever been.
    pub peak_buffer_bytes: usize,
    /// Requests that reached the end of their exchange (any status).
    pub requests: u64,
}

/// The client connection was closed during this step: stop driving it.
struct Gone;

/// What a step did: `Ok(true)` moved something (try again), `Ok(false)`
/// must wait for readiness, `Err(Gone)` closed the client.
type Step = Result<bool, Gone>;

/// Settings the loop reads on every request, taken from the config once.
struct Settings {
    buffer_bytes: usize,
    /// Client buffers must hold a whole request head.
    client_buffer_bytes: usize,
    head_limits: HeadLimits,
    max_client_conns: usize,
}

/// The loop and everything it owns.
pub struct Reactor {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    /// Stamped into each new connection's token (see [`crate::token`]).
    next_generation: u32,
    upstream_addrs: Vec<SocketAddr>,
    /// `host:port` per upstream, for an HTTP/1.0 request without `Host`.
    upstream_hosts: Vec<String>,
    balancer: RoundRobin,
    pool: IdlePool,
    settings: Settings,
    /// Connections that used up their turn's budget with work left.
    ready: VecDeque<ConnId>,
    clients: usize,
    stats: Stats,
    shared_stats: Option<Arc<Mutex<Stats>>>,
    stop: Arc<AtomicBool>,
}

impl Reactor {
    /// Bind the listener and set up the loop (nothing runs yet).
    pub fn bind(config: &Config) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen_addr())?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let upstream_addrs = config.upstream_addrs();
        let upstream_hosts = config
            .upstreams
            .iter()
            .map(|u| format!("{}:{}", u.host, u.port))
            .collect();
        let limits = &config.limits;
        Ok(Reactor {
            poll,
            listener,
            conns: Slab::with_capacity(1024),
            next_generation: 0,
            balancer: RoundRobin::new(upstream_addrs.len()),
            pool: IdlePool::new(upstream_addrs.len(), limits.max_idle_per_upstream),
            upstream_addrs,
            upstream_hosts,
            settings: Settings {
                buffer_bytes: limits.buffer_bytes,
                client_buffer_bytes: limits.buffer_bytes.max(limits.max_header_bytes),
                head_limits: HeadLimits {
                    max_head_bytes: limits.max_header_bytes,
                    ..HeadLimits::default()
                },
                max_client_conns: limits.max_client_conns,
            },
            ready: VecDeque::new(),
            clients: 0,
            stats: Stats::default(),
            shared_stats: None,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The loop. Returns when another thread sets the stop flag and wakes it.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            // Sleep until the kernel has news, unless some connection still
            // has work from its last turn: then only look, don't sleep.
            let timeout = if self.ready.is_empty() {
                None
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            trace!(
                "wake-up: {} events, {} ready",
                events.iter().count(),
                self.ready.len()
            );
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_clients(),
                    WAKER => {
                        if self.stop.load(Ordering::Acquire) {
                            info!("stopping: closing {} connections", self.conns.len());
                            return Ok(());
                        }
                    }
                    token => {
                        let Some(id) = ConnId::from_token(token) else {
                            continue;
                        };
                        self.on_event(id, event);
                    }
                }
            }
            // Only those queued before this point: a connection that uses
            // its budget again goes to the back, behind the next poll.
            for _ in 0..self.ready.len() {
                let Some(id) = self.ready.pop_front() else {
                    break;
                };
                if self.is_current(id) {
                    self.drive(id.key);
                }
            }
            self.publish_stats();
        }
    }

    /// The connection `id` names still exists (its slot was not reused).
    fn is_current(&self, id: ConnId) -> bool {
        self.conns.get(id.key).is_some_and(|c| c.io.id == id)
    }

    /// Accept every pending connection: the listener is edge-triggered
    /// too, so one event may stand for many clients.
    fn accept_clients(&mut self) {
        loop {
            let (socket, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: leave the rest in the backlog.
                    // NB: edge-triggered, they are only seen again when the
                    // next client arrives.
                    error!("accept failed: {e}");
                    return;
                }
            };
            if self.clients >= self.settings.max_client_conns {
                refuse_over_limit(socket, peer);
                continue;
            }
            // Heads and small bodies go out at once rather than waiting for
            // an ACK (Nagle's algorithm); writes are already coalesced.
            let _ = socket.set_nodelay(true);
            let client = Client {
                peer,
                inbuf: Buffer::with_capacity(self.settings.client_buffer_bytes),
                out: Outbox::default(),
                eof: false,
                phase: ClientPhase::ReadingHead,
            };
            match self.insert(socket, Role::Client(client)) {
                Ok(key) => {
                    self.clients += 1;
                    debug!("accepted {peer} as connection {key}");
                }
                Err(e) => error!("could not register client {peer}: {e}"),
            }
        }
    }

    /// Put a socket in the slab and register it, READABLE and WRITABLE
    /// (see [`Conn::desired_interest`] for why WRITABLE stays on).
    fn insert(&mut self, mut socket: TcpStream, role: Role) -> io::Result<usize> {
        let entry = self.conns.vacant_entry();
        let id = ConnId {
            key: entry.key(),
            generation: self.next_generation,
        };
        self.next_generation = self.next_generation.wrapping_add(1);
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut socket, id.token(), interest)?;
        let mut conn = Conn {
            io: Io {
                socket,
                id,
                registered: Some(interest),
                ready: Readiness::default(),
                accounted: 0,
            },
            role,
        };
        conn.io.accounted = conn.memory();
        self.stats.buffer_bytes += conn.io.accounted;
        entry.insert(conn);
        Ok(id.key)
    }

    /// Close a connection: out of the slab, out of the pool, socket closed.
    ///
    /// No `deregister`: closing the last descriptor of a socket removes it
    /// from epoll, and the generation in the token makes any event already
    /// queued for it harmless.
    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let conn = self.conns.remove(key);
        self.stats.buffer_bytes -= conn.io.accounted;
        match &conn.role {
            Role::Client(c) => {
                self.clients -= 1;
                trace!("closed client {} (connection {key})", c.peer);
            }
            Role::Upstream(u) => {
                if u.phase == UpstreamPhase::Idle {
                    self.pool.remove(u.index, key);
                }
                trace!("closed upstream connection {key} to {}", u.addr);
            }
        }
    }

    /// Record what an event says and let the connection pair move.
    fn on_event(&mut self, id: ConnId, event: &mio::event::Event) {
        let Some(conn) = self.conns.get_mut(id.key) else {
            return;
        };
        if conn.io.id != id {
            // The slot was freed and reused since this event was queued.
            trace!("stale event for {id:?}, dropped");
            return;
        }
        // Error and hang-up flags count as readiness: the next read or
        // write returns the error or the EOF, which is how we learn of it.
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.io.ready.readable = true;
        }
        if event.is_read_closed() || event.is_error() {
            conn.io.ready.peer_closed = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            conn.io.ready.writable = true;
        }
        match &conn.role {
            Role::Client(_) => self.drive(id.key),
            Role::Upstream(u) if u.phase == UpstreamPhase::Idle => self.check_idle(id.key),
            Role::Upstream(u) => match u.client {
                Some(client) => self.drive(client),
                None => self.close(id.key),
            },
        }
    }

    /// Move a client and its upstream as far as they go without blocking,
    /// at most [`TURN_BUDGET`] bytes read, then settle their interests.
    fn drive(&mut self, client: usize) {
        let mut budget = TURN_BUDGET;
        loop {
            let Some(Conn {
                role: Role::Client(c),
                ..
            }) = self.conns.get(client)
            else {
                return;
            };
            let step = match c.phase {
                ClientPhase::ReadingHead => self.read_head(client, &mut budget),
                ClientPhase::Exchanging(_) => self.exchange(client, &mut budget),
                ClientPhase::Tunnel(_) => self.tunnel(client, &mut budget),
                ClientPhase::Closing(_) => self.linger(client),
            };
            match step {
                Ok(true) if budget > 0 => continue,
                Ok(true) => {
                    // Out of budget with work left: finish next turn.
                    if let Some(conn) = self.conns.get(client) {
                        self.ready.push_back(conn.io.id);
                    }
                    break;
                }
                Ok(false) => break,
                Err(Gone) => return,
            }
        }
        let linked = self.linked_upstream(client);
        self.settle(client);
        if let Some(upstream) = linked {
            self.settle(upstream);
        }
    }

    /// The upstream connection a client is using, if any.
    fn linked_upstream(&self, client: usize) -> Option<usize> {
        match &self.conns.get(client)?.role {
            Role::Client(c) => match &c.phase {
                ClientPhase::Exchanging(ex) => ex.upstream,
                ClientPhase::Tunnel(t) => Some(t.upstream),
                _ => None,
            },
            Role::Upstream(_) => None,
        }
    }

    /// After a connection moved: register the interest its state calls for
    /// (only if it changed: each `reregister` is a syscall), and count its
    /// buffer memory.
    fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let wanted = conn.desired_interest();
        if conn.io.registered != Some(wanted) {
            trace!(
                "connection {key}: interest {:?} -> {wanted:?}",
                conn.io.registered
            );
            match self
                .poll
                .registry()
                .reregister(&mut conn.io.socket, conn.io.id.token(), wanted)
            {
                Ok(()) => conn.io.registered = Some(wanted),
                Err(e) => warn!("reregister of connection {key} failed: {e}"),
            }
        }
        let memory = conn.memory();
        self.stats.buffer_bytes = self.stats.buffer_bytes + memory - conn.io.accounted;
        conn.io.accounted = memory;
        self.stats.peak_buffer_bytes = self.stats.peak_buffer_bytes.max(self.stats.buffer_bytes);
    }

    fn publish_stats(&mut self) {
        let Some(shared) = &self.shared_stats else {
            return;
        };
        self.stats.connections = self.conns.len();
        self.stats.client_connections = self.clients;
        self.stats.upstream_connections = self.conns.len() - self.clients;
        self.stats.idle_upstream_connections = self.pool.len();
        if let Ok(mut published) = shared.lock() {
            *published = self.stats;
        }
    }

    // ----- the client's phases -------------------------------------------

    /// `ReadingHead`: read until a whole request head is in, then start
    /// its exchange, or refuse it.
    fn read_head(&mut self, key: usize, budget: &mut usize) -> Step {
        let limits = self.settings.head_limits;
        let (io, client) = client_in(&mut self.conns, key)?;
        if !client.inbuf.is_empty() {
            match parse_request(client.inbuf.filled(), &limits) {
                Ok(Some(head)) => {
                    client.inbuf.consume(head.len);
                    trace!(
                        "connection {key}: {} {} -> exchanging",
                        head.method, head.target
                    );
                    return self.begin_exchange(key, head);
                }
                Err(e) => return self.refuse(key, e),
                Ok(None) => {}
            }
        }
        if client.eof {
            if !client.inbuf.is_empty() {
                debug!(
                    "client {} closed in the middle of a request head",
                    client.peer
                );
            }
            self.close(key);
            return Err(Gone);
        }
        match read_into(&mut io.socket, &mut io.ready, &mut client.inbuf) {
            ReadOutcome::Data(n) => {
                *budget = budget.saturating_sub(n);
                Ok(true)
            }
            ReadOutcome::Eof => {
                client.eof = true;
                Ok(true)
            }
            ReadOutcome::Blocked => Ok(false),
            ReadOutcome::Failed(e) => {
                debug!("client {} read failed: {e}", client.peer);
                self.close(key);
                Err(Gone)
            }
        }
    }

    /// A bad request: answer with its status and close (the upstream never
    /// hears of it).
    fn refuse(&mut self, key: usize, e: RequestError) -> Step {
        let (_, client) = client_in(&mut self.conns, key)?;
        warn!(
            "refused request from {}: {} ({})",
            client.peer,
            e.describe(),
            e.status()
        );
        access_log::log(&AccessLine {
            client: client.peer,
            method: "-",
            target: "-",
            version: None,
            status: e.status(),
            upstream: None,
            bytes_in: 0,
            bytes_out: 0,
            elapsed: std::time::Duration::ZERO,
        });
        self.stats.requests += 1;
        self.answer_and_close(key, e.status());
        Ok(true)
    }

    /// Queue an error answer of the proxy's own and move to `Closing`.
    fn answer_and_close(&mut self, key: usize, status: u16) {
        if let Ok((_, client)) = client_in(&mut self.conns, key) {
            // Unread request bytes are moot now; `Closing` discards the rest.
            client.inbuf.clear();
            write_error_response(status, &[], client.out.compose());
            client.phase = ClientPhase::Closing(Closing {
                fin_sent: false,
                discarded: 0,
            });
        }
    }

    /// `Closing`: write the last answer, send FIN, and discard what the
    /// client still sends until it closes too.
    fn linger(&mut self, key: usize) -> Step {
        let (io, client) = client_in(&mut self.conns, key)?;
        let ClientPhase::Closing(closing) = &mut client.phase else {
            return Ok(false);
        };
        let mut progress = false;
        if !client.out.is_empty() {
            match write_two(&mut io.socket, &mut io.ready, client.out.pending(), &[]) {
                WriteOutcome::Wrote(n) => {
                    client.out.advance(n);
                    progress = true;
                }
                WriteOutcome::Blocked => {}
                WriteOutcome::Failed(_) => {
                    self.close(key);
                    return Err(Gone);
                }
            }
        }
        if client.out.is_empty() && !closing.fin_sent {
            let _ = io.socket.shutdown(Shutdown::Write);
            closing.fin_sent = true;
            progress = true;
        }
        if !client.eof {
            match read_into(&mut io.socket, &mut io.ready, &mut client.inbuf) {
                ReadOutcome::Data(n) => {
                    closing.discarded += n;
                    client.inbuf.clear();
                    progress = true;
                }
                ReadOutcome::Eof => {
                    client.eof = true;
                    progress = true;
                }
                ReadOutcome::Blocked => {}
                ReadOutcome::Failed(_) => {
                    self.close(key);
                    return Err(Gone);
                }
            }
        }
        if (closing.fin_sent && client.eof) || closing.discarded > LINGER_LIMIT {
            self.close(key);
            return Err(Gone);
        }
        Ok(progress)
    }

    // ----- one exchange ------------------------------------------------------

    /// A request head arrived: pick an upstream and get a connection to it.
    fn begin_exchange(&mut self, key: usize, head: crate::http::head::RequestHead) -> Step {
        let index = self.balancer.pick();
        let (_, client) = client_in(&mut self.conns, key)?;
        client.phase =
            ClientPhase::Exchanging(Box::new(Exchange::new(head, index, Instant::now())));
        self.assign_upstream(key, index)
    }

    /// Give the exchange a connection to upstream `index`: the most recent
    /// idle one from the pool, or a new one.
    fn assign_upstream(&mut self, key: usize, index: usize) -> Step {
        match self.pool.take(index) {
            Some(upstream) => {
                trace!("connection {key}: reusing idle upstream connection {upstream}");
                self.link(key, upstream, true)
            }
            None => self.connect_upstream(key, index),
        }
    }

    /// Start a non-blocking connect. It completes (or fails) later, when
    /// the socket reports WRITABLE: see [`Reactor::finish_connect`].
    fn connect_upstream(&mut self, key: usize, index: usize) -> Step {
        let addr = self.upstream_addrs[index];
        let socket = match TcpStream::connect(addr) {
            Ok(socket) => socket,
            Err(e) => return self.connect_failed(key, &e),
        };
        let _ = socket.set_nodelay(true);
        let upstream = Upstream {
            index,
            addr,
            inbuf: Buffer::with_capacity(self.settings.buffer_bytes),
            phase: UpstreamPhase::Connecting,
            client: Some(key),
            eof: false,
            requests: 0,
        };
        match self.insert(socket, Role::Upstream(upstream)) {
            Ok(upstream_key) => {
                trace!("connection {key}: connecting to {addr} as connection {upstream_key}");
                let ex = exchange_in(&mut self.conns, key)?;
                ex.upstream = Some(upstream_key);
                ex.reused = false;
                Ok(true)
            }
            Err(e) => self.connect_failed(key, &e),
        }
    }

    /// Link an upstream connection (connected or from the pool) to a
    /// client's exchange and compose the request head for it.
    fn link(&mut self, key: usize, upstream_key: usize, reused: bool) -> Step {
        let peer = client_in(&mut self.conns, key)?.1.peer;
        let Some(Conn {
            role: Role::Upstream(up),
            ..
        }) = self.conns.get_mut(upstream_key)
        else {
            return Ok(false);
        };
        up.phase = UpstreamPhase::Active;
        up.client = Some(key);
        up.requests += 1;
        let host = &self.upstream_hosts[up.index];
        let Some(Conn {
            role:
                Role::Client(Client {
                    phase: ClientPhase::Exchanging(ex),
                    ..
                }),
            ..
        }) = self.conns.get_mut(key)
        else {
            return Ok(false);
        };
        ex.upstream = Some(upstream_key);
        ex.reused = reused;
        ex.compose_request_head(peer.ip(), host);
        Ok(true)
    }

    /// Completing a non-blocking connect, the way mio documents it: on
    /// WRITABLE, `take_error` says whether it failed and `peer_addr` whether
    /// it is done (`NotConnected`: a spurious wake-up, keep waiting).
    fn finish_connect(&mut self, key: usize) -> Step {
        let Some(upstream_key) = exchange_in(&mut self.conns, key)?.upstream else {
            return Ok(false);
        };
        let Some(Conn {
            io,
            role: Role::Upstream(up),
        }) = self.conns.get_mut(upstream_key)
        else {
            return Ok(false);
        };
        if up.phase != UpstreamPhase::Connecting || !(io.ready.writable || io.ready.readable) {
            return Ok(false);
        }
        let result = match io.socket.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => io.socket.peer_addr().map(|_| ()),
        };
        match result {
            Ok(()) => {
                trace!("connection {key}: connected to {}", up.addr);
                self.link(key, upstream_key, false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                io.ready.writable = false;
                io.ready.readable = false;
                Ok(false)
            }
            Err(e) => {
                self.close(upstream_key);
                self.connect_failed(key, &e)
            }
        }
    }

    /// A connect failed. Nothing was sent, so any request may move on to
    /// the next upstream; when every upstream has refused, 502.
    fn connect_failed(&mut self, key: usize, e: &io::Error) -> Step {
        let upstream_count = self.upstream_addrs.len();
        let ex = exchange_in(&mut self.conns, key)?;
        let failed = ex.upstream_index;
        ex.upstream = None;
        ex.connect_failures += 1;
        warn!(
            "connect to upstream {} failed: {e}",
            self.upstream_addrs[failed]
        );
        if ex.connect_failures >= upstream_count {
            return self.fail(key, 502, "no upstream accepted the connection");
        }
        let next = self.balancer.after(failed);
        ex.upstream_index = next;
        self.assign_upstream(key, next)
    }

    /// `Exchanging`: move both directions of a request as far as they go.
    fn exchange(&mut self, key: usize, budget: &mut usize) -> Step {
        let mut progress = self.finish_connect(key)?;
        progress |= self.read_client(key, budget)?;
        let Some(upstream_key) = exchange_in(&mut self.conns, key)?.upstream else {
            return Ok(progress);
        };
        let Some((cio, client, uio, up)) = self.pair_mut(key, upstream_key) else {
            return Ok(progress);
        };
        if up.phase != UpstreamPhase::Active {
            return Ok(progress);
        }
        let ClientPhase::Exchanging(ex) = &mut client.phase else {
            return Ok(progress);
        };

        let sent = ex.forward_request(&mut client.inbuf, &mut uio.socket, &mut uio.ready);
        match sent {
            Ok(moved) => progress |= moved,
            Err(failure) => return self.handle_failure(key, failure),
        }

        if !up.eof {
            match read_into(&mut uio.socket, &mut uio.ready, &mut up.inbuf) {
                ReadOutcome::Data(n) => {
                    *budget = budget.saturating_sub(n);
                    progress = true;
                }
                ReadOutcome::Eof => {
                    up.eof = true;
                    progress = true;
                }
                ReadOutcome::Blocked => {}
                ReadOutcome::Failed(e) => {
                    return self.handle_failure(key, Failure::UpstreamRead(e));
                }
            }
        }

        let relayed = ex.forward_response(
            &mut up.inbuf,
            up.eof,
            &mut cio.socket,
            &mut cio.ready,
            &mut client.out,
        );
        match relayed {
            Ok(moved) => progress |= moved,
            Err(failure) => return self.handle_failure(key, failure),
        }

        let switching = match ex.response {
            ResponseState::Complete => false,
            ResponseState::Switching if client.out.is_empty() => true,
            _ => return Ok(progress),
        };
        if switching {
            self.begin_tunnel(key, upstream_key)
        } else {
            self.finish_exchange(key)
        }
    }

    /// The 101 reached the client: from now on, bytes are bytes.
    fn begin_tunnel(&mut self, key: usize, upstream_key: usize) -> Step {
        self.log_exchange(key);
        let (_, client) = client_in(&mut self.conns, key)?;
        debug!(
            "connection {key}: switching protocols, tunnel to upstream connection {upstream_key}"
        );
        client.phase = ClientPhase::Tunnel(Tunnel {
            upstream: upstream_key,
            upstream_shut: false,
            client_shut: false,
        });
        Ok(true)
    }

    /// Read request bytes from the client during an exchange: the rest of
    /// the body, or the next pipelined request (read ahead, up to the
    /// buffer's size).
    fn read_client(&mut self, key: usize, budget: &mut usize) -> Step {
        let (io, client) = client_in(&mut self.conns, key)?;
        if client.eof {
            return Ok(false);
        }
        match read_into(&mut io.socket, &mut io.ready, &mut client.inbuf) {
            ReadOutcome::Data(n) => {
                *budget = budget.saturating_sub(n);
                Ok(true)
            }
            ReadOutcome::Eof => {
                client.eof = true;
                let ClientPhase::Exchanging(ex) = &mut client.phase else {
                    return Ok(true);
                };
                if ex.request_body_done() {
                    // Half-close: the client has said all it will say, but
                    // still reads. It gets the whole response, then we close.
                    ex.close_client = true;
                    Ok(true)
                } else {
                    self.abort(key, "client closed before sending the whole request")
                }
            }
            ReadOutcome::Blocked => Ok(false),
            ReadOutcome::Failed(e) => self.abort(key, &format!("client read failed: {e}")),
        }
    }

    /// Decide what a [`Failure`] means for this exchange.
    fn handle_failure(&mut self, key: usize, failure: Failure) -> Step {
        let ex = exchange_in(&mut self.conns, key)?;
        let can_answer = ex.can_answer_error();
        match failure {
            Failure::BadRequestBody(e) if can_answer => {
                warn!("bad request body: {e:?}");
                self.fail(key, 400, "malformed request body")
            }
            Failure::BadRequestBody(e) => self.abort(
                key,
                &format!("bad request body after the response began: {e:?}"),
            ),
            Failure::UpstreamWrite(_) | Failure::UpstreamRead(_) | Failure::UpstreamClosedEarly
                if ex.can_retry() =>
            {
                self.retry(key, &failure)
            }
            Failure::UpstreamWrite(_) | Failure::UpstreamRead(_) | Failure::UpstreamClosedEarly
                if can_answer =>
            {
                self.fail(key, 502, &describe(&failure))
            }
            Failure::BadResponse(why) if can_answer => self.fail(key, 502, why),
            other => self.abort(key, &describe(&other)),
        }
    }

    /// A reused connection died before answering an idempotent request:
    /// send it again on a fresh connection, once.
    fn retry(&mut self, key: usize, failure: &Failure) -> Step {
        let ex = exchange_in(&mut self.conns, key)?;
        let old = ex.upstream;
        let index = ex.upstream_index;
        ex.reset_for_retry();
        info!(
            "retrying on a fresh connection: pooled connection failed ({})",
            describe(failure)
        );
        if let Some(old) = old {
            self.close(old);
        }
        self.connect_upstream(key, index)
    }

    /// The proxy answers the client itself (502, 400, ...) and closes it;
    /// the upstream connection, if any, is closed, never pooled.
    fn fail(&mut self, key: usize, status: u16, why: &str) -> Step {
        let ex = exchange_in(&mut self.conns, key)?;
        ex.status = status;
        let upstream = ex.upstream.take();
        let addr = self.upstream_addrs[ex.upstream_index];
        warn!("answering {status} (upstream {addr}): {why}");
        self.log_exchange(key);
        if let Some(upstream) = upstream {
            self.close(upstream);
        }
        self.answer_and_close(key, status);
        Ok(true)
    }

    /// Nothing sensible can be said to the client any more (the response
    /// has begun, or the client is gone): close both connections.
    fn abort(&mut self, key: usize, why: &str) -> Step {
        let upstream = self.linked_upstream(key);
        if let Ok((_, client)) = client_in(&mut self.conns, key) {
            warn!("closing connection from {}: {why}", client.peer);
        }
        if exchange_in(&mut self.conns, key).is_ok() {
            self.log_exchange(key);
        }
        if let Some(upstream) = upstream {
            self.close(upstream);
        }
        self.close(key);
        Err(Gone)
    }

    /// The response is complete: log it, return the upstream connection to
    /// the pool if it can be reused, and wait for the client's next request
    /// (or close).
    fn finish_exchange(&mut self, key: usize) -> Step {
        self.log_exchange(key);
        let (_, client) = client_in(&mut self.conns, key)?;
        let phase = std::mem::replace(&mut client.phase, ClientPhase::ReadingHead);
        let ClientPhase::Exchanging(ex) = phase else {
            return Ok(true);
        };
        if ex.close_client || client.eof {
            client.phase = ClientPhase::Closing(Closing {
                fin_sent: false,
                discarded: 0,
            });
        }
        if let Some(upstream) = ex.upstream {
            self.release_upstream(upstream, ex.upstream_reusable);
        }
        Ok(true)
    }

    /// Park a finished upstream connection, or close it.
    fn release_upstream(&mut self, key: usize, reusable: bool) {
        let Some(Conn {
            role: Role::Upstream(up),
            ..
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        up.client = None;
        let clean = up.inbuf.is_empty() && !up.eof;
        if !up.inbuf.is_empty() {
            // More bytes than its framing announced: the upstream is
            // confused, and whatever it sends next cannot be trusted.
            warn!(
                "upstream {} sent bytes past the end of its response; connection dropped",
                up.addr
            );
        }
        if !(reusable && clean) {
            self.close(key);
            return;
        }
        up.phase = UpstreamPhase::Idle;
        let index = up.index;
        if let Some(evicted) = self.pool.park(index, key) {
            self.close(evicted);
        }
        self.settle(key);
    }

    /// An event on an idle pooled connection: the upstream closed it or
    /// sent something unasked. Either way it must not carry a request.
    /// A spurious event reads `WouldBlock` and changes nothing.
    fn check_idle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut probe = [0u8; 1];
        match conn.io.socket.read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.io.ready.readable = false,
            Ok(0) => {
                debug!("idle upstream connection {key} closed by the upstream");
                self.close(key);
            }
            _ => {
                debug!("idle upstream connection {key} sent bytes or failed; dropped");
                self.close(key);
            }
        }
    }

    fn log_exchange(&mut self, key: usize) {
        let Ok((_, client)) = client_in(&mut self.conns, key) else {
            return;
        };
        let peer = client.peer;
        let ClientPhase::Exchanging(ex) = &client.phase else {
            return;
        };
        access_log::log(&AccessLine {
            client: peer,
            method: &ex.request.method,
            target: &ex.request.target,
            version: Some(ex.request.version),
            status: ex.status,
            upstream: self.upstream_addrs.get(ex.upstream_index).copied(),
            bytes_in: ex.request_body_bytes,
            bytes_out: ex.response_bytes,
            elapsed: ex.started.elapsed(),
        });
        self.stats.requests += 1;
    }

    // ----- the tunnel ---------------------------------------------------------

    /// `Tunnel`: copy bytes both ways with the same buffers and the same
    /// backpressure; pass each side's FIN on; close when both are done.
    fn tunnel(&mut self, key: usize, budget: &mut usize) -> Step {
        let Some(upstream_key) = self.linked_upstream(key) else {
            self.close(key);
            return Err(Gone);
        };
        let Some((cio, client, uio, up)) = self.pair_mut(key, upstream_key) else {
            self.close(key);
            return Err(Gone);
        };
        let ClientPhase::Tunnel(tunnel) = &mut client.phase else {
            return Ok(false);
        };
        let mut progress = false;
        let toward_upstream = pump(
            cio,
            &mut client.inbuf,
            &mut client.eof,
            uio,
            &mut tunnel.upstream_shut,
            budget,
        );
        let toward_client = pump(
            uio,
            &mut up.inbuf,
            &mut up.eof,
            cio,
            &mut tunnel.client_shut,
            budget,
        );
        for moved in [toward_upstream, toward_client] {
            match moved {
                Ok(moved) => progress |= moved,
                Err(e) => return self.abort(key, &format!("tunnel broke: {e}")),
            }
        }
        if tunnel.upstream_shut && tunnel.client_shut {
            debug!("connection {key}: tunnel closed by both sides");
            self.close(upstream_key);
            self.close(key);
            return Err(Gone);
        }
        Ok(progress)
    }

    // ----- borrowing helpers --------------------------------------------------

    /// Both ends of a client/upstream pair, borrowed at once.
    fn pair_mut(
        &mut self,
        client: usize,
        upstream: usize,
    ) -> Option<(&mut Io, &mut Client, &mut Io, &mut Upstream)> {
        let (c, u) = self.conns.get2_mut(client, upstream)?;
        match (c, u) {
            (
                Conn {
                    io: cio,
                    role: Role::Client(client),
                },
                Conn {
                    io: uio,
                    role: Role::Upstream(up),
                },
            ) => Some((cio, client, uio, up)),
            _ => None,
        }
    }
}

/// The client connection at `key` (borrowing only the slab, so the rest of
/// the reactor stays usable).
fn client_in(conns: &mut Slab<Conn>, key: usize) -> Result<(&mut Io, &mut Client), Gone> {
    match conns.get_mut(key) {
        Some(Conn {
            io,
            role: Role::Client(client),
        }) => Ok((io, client)),
        _ => Err(Gone),
    }
}

/// The exchange in flight on client connection `key`.
fn exchange_in(conns: &mut Slab<Conn>, key: usize) -> Result<&mut Exchange, Gone> {
    match &mut client_in(conns, key)?.1.phase {
        ClientPhase::Exchanging(ex) => Ok(ex),
        _ => Err(Gone),
    }
}

/// Tunnel one direction: read from `from` into `buf`, write `buf` to `to`,
/// and once `from` has closed and `buf` is empty, send FIN to `to`.
fn pump(
    from: &mut Io,
    buf: &mut Buffer,
    from_eof: &mut bool,
    to: &mut Io,
    to_shut: &mut bool,
    budget: &mut usize,
) -> io::Result<bool> {
    let mut progress = false;
    if !*from_eof {
        match read_into(&mut from.socket, &mut from.ready, buf) {
            ReadOutcome::Data(n) => {
                *budget = budget.saturating_sub(n);
                progress = true;
            }
            ReadOutcome::Eof => {
                *from_eof = true;
                progress = true;
            }
            ReadOutcome::Blocked => {}
            ReadOutcome::Failed(e) => return Err(e),
        }
    }
    if !buf.is_empty() {
        match write_two(&mut to.socket, &mut to.ready, buf.filled(), &[]) {
            WriteOutcome::Wrote(n) => {
                buf.consume(n);
                progress = true;
            }
            WriteOutcome::Blocked => {}
            WriteOutcome::Failed(e) => return Err(e),
        }
    }
    if *from_eof && buf.is_empty() && !*to_shut {
        // Half-close: pass the FIN on, keep the other direction open.
        let _ = to.socket.shutdown(Shutdown::Write);
        *to_shut = true;
        progress = true;
    }
    Ok(progress)
}

/// Over `max_client_conns`: a best-effort 503 on the new socket, then close.
/// It is non-blocking and brand new, so the small answer fits its buffer.
fn refuse_over_limit(mut socket: TcpStream, peer: SocketAddr) {
    use std::io::Write;
    let mut answer = Vec::new();
    write_error_response(503, &[], &mut answer);
    let _ = socket.write(&answer);
    let _ = socket.shutdown(Shutdown::Write);
    warn!("refused {peer}: max_client_conns reached (503)");
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::BadRequestBody(e) => format!("bad request body: {e:?}"),
        Failure::UpstreamWrite(e) => format!("writing to the upstream failed: {e}"),
        Failure::UpstreamRead(e) => format!("reading from the upstream failed: {e}"),
        Failure::UpstreamClosedEarly => "upstream closed without responding".to_string(),
        Failure::BadResponse(why) => format!("bad response from upstream: {why}"),
        Failure::UpstreamTruncated => "upstream response ended before its framing said".to_string(),
        Failure::ClientWrite(e) => format!("writing to the client failed: {e}"),
    }
}

/// A proxy running on its own thread; dropped or `shutdown`, it stops.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    stats: Arc<Mutex<Stats>>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ProxyHandle {
    /// Where it listens (useful with `"listen": "127.0.0.1:0"`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the loop holds now (updated by the loop after every turn).
    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Stop the loop, close every socket, and wait for the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!("proxy loop failed: {e}"),
                Err(_) => error!("proxy loop panicked"),
            }
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Bind the listener and run the loop on a new thread.
pub fn start(config: &Config) -> io::Result<ProxyHandle> {
    let mut reactor = Reactor::bind(config)?;
    let local_addr = reactor.local_addr()?;
    let waker = Arc::new(Waker::new(reactor.poll.registry(), WAKER)?);
    let stats = Arc::new(Mutex::new(Stats::default()));
    reactor.shared_stats = Some(stats.clone());
    let stop = reactor.stop.clone();
    let thread = std::thread::Builder::new()
        .name("ferroxy-reactor".into())
        .spawn(move || reactor.run())?;
    Ok(ProxyHandle {
        local_addr,
        stats,
        stop,
        waker,
        thread: Some(thread),
    })
}

/// Bind the listener and run the loop on this thread until stopped.
pub fn run(config: &Config) -> io::Result<()> {
    let mut reactor = Reactor::bind(config)?;
    info!("ferroxy listening on http://{}", reactor.local_addr()?);
    reactor.run()
}
