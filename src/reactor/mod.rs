//! The reactor: one `mio::Poll` loop that owns every socket.
//!
//! [`Reactor::run`] is the whole program in one screen: wait for readiness
//! (or the next deadline), route each event to its connection by token, let
//! that connection move as far as it can without blocking, fire the timers
//! that are due, and go back to waiting. Nothing here ever blocks, so one
//! thread serves every connection. Nothing here parses HTTP (that is
//! [`crate::http`]) or decides what a request needs next (that is
//! [`crate::exchange`]).
//!
//! The reactor is the only code that calls `register`, `reregister`,
//! `accept`, `connect` or closes a socket. It is one struct, [`Reactor`],
//! whose methods are split by concern:
//!
//! - this file: the loop, accepting, dispatching events, registering and
//!   closing connections (`Reactor::drive` moves a client and the
//!   upstream serving it together, whichever side the event was for);
//! - `client.rs`: the client's phases, from request head to lingering close;
//! - `handlers.rs`: where a request goes (a group, a static root), and the
//!   static answer's phase;
//! - `upstream.rs`: getting an upstream connection (pool, connect, queue),
//!   and giving it back;
//! - `time.rs`: deadlines, the timer wheel, what each timeout does;
//! - `lifecycle.rs`: signals: graceful shutdown and config reload.
//!
//! Lessons: `03-poll-loop`, `04-edge-triggered`, `06-slab-and-tokens`,
//! `09-backpressure`, `10-timers`, `14-whole-proxy`.
//!
//! Over 500 lines, on purpose: the loop, its dispatch and the one place
//! sockets are registered and closed read best as one file; the rest of the
//! reactor's methods already live in the four files above.

mod client;
mod checks;
mod handlers;
mod lifecycle;
mod resilience;
mod time;
mod upstream;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::buffer::{Buffer, BufferPool};
use crate::config::{Config, RateLimitConfig, RateLimitPer, Timeouts};
use crate::conn::{Client, ClientPhase, Conn, Io, Outbox, Readiness, Role, UpstreamPhase};
use crate::exchange::Exchange;
use crate::files::Roots;
use crate::group::{UpstreamGroup, build_groups, flat_upstreams};
use crate::http::errors::write_error_response;
use crate::http::head::HeadLimits;
use crate::metrics::{ErrorKind, Gauges, Metrics, RateWindow};
use crate::rate_limit::{Per, RateLimiter};
use crate::retry::RetryBudget;
use crate::route::Router;
use crate::series::Series;
use crate::timer::TimerWheel;
use crate::tls::TlsAcceptor;
use crate::token::{ADMIN_LISTENER, ConnId, LISTENER, SIGNALS, TLS_LISTENER, WAKER};
use crate::transport::{TlsStream, Transport};
use time::Due;

/// Bytes one connection may read per turn before the others get theirs.
/// Without a budget, one fast download keeps the loop busy with a single
/// socket while a thousand small requests wait. 256 KiB is about 0.25 ms of
/// copying at 1 GB/s: short enough to stay fair, and large enough that a
/// bulk transfer does not pay a `poll` per 64 KiB (1 MiB bodies moved 2x
/// faster than with 64 KiB on the referee's setup).
const TURN_BUDGET: usize = 256 * 1024;

/// Connections the metrics listener serves at once (beyond: refused).
/// Kept apart from `max_client_conns`, so the figures stay readable while
/// the proxy itself is full.
const MAX_ADMIN_CONNS: usize = 64;

/// Spare buffers kept for reuse (16 KiB each by default: 4 MiB).
const SPARE_BUFFERS: usize = 256;

/// After `accept` failed for want of descriptors or memory, how long until
/// the next try (sooner if a connection closes and frees a descriptor).
/// nginx waits 500 ms (`accept_mutex_delay`); a tenth of a second keeps the
/// clients already in the backlog from waiting that long.
const ACCEPT_RETRY_MS: u64 = 100;

/// How many events one `poll` call can return.
const EVENTS_PER_POLL: usize = 1024;

/// Timer wheel geometry: 1 ms ticks, 4096 slots (one revolution is about
/// 4 s; longer deadlines wait their turn in their slot).
const WHEEL_TICK_MS: u64 = 1;
const WHEEL_SLOTS: usize = 4096;

/// A snapshot of what the loop is holding, for tests and (later) metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slab entries: every open socket the loop owns (listener excluded).
    pub connections: usize,
    pub client_connections: usize,
    pub upstream_connections: usize,
    /// Upstream connections parked in the idle pool.
    pub idle_upstream_connections: usize,
    /// Requests waiting for a connection slot (`max_conns_per_upstream`).
    pub queued_requests: usize,
    /// Timers in the wheel.
    pub timers: usize,
    /// Bytes of buffer memory held right now, all connections together.
    pub buffer_bytes: usize,
    /// Bytes in spare buffers waiting in the pool for the next transfer.
    pub spare_buffer_bytes: usize,
    /// The most `buffer_bytes` has ever been.
    pub peak_buffer_bytes: usize,
    /// Requests that reached the end of their exchange (any status).
    pub requests: u64,
    /// Static files kept open for the next request (`src/files/cache.rs`).
    pub open_files: usize,
}

/// The listeners a client may arrive on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    Plain,
    Tls,
    /// The metrics listener: answered from the metrics, never forwarded.
    Admin,
}

/// The client connection was closed during this step: stop driving it.
struct Gone;

/// What a step did: `Ok(true)` moved something (try again), `Ok(false)`
/// must wait for readiness, `Err(Gone)` closed the client.
type Progress = Result<bool, Gone>;

/// Settings the loop reads on every request, taken from the config (at
/// start, and again on reload).
struct Settings {
    buffer_bytes: usize,
    /// Client buffers must hold a whole request head.
    client_buffer_bytes: usize,
    head_limits: HeadLimits,
    max_client_conns: usize,
    max_conns_per_upstream: usize,
    timeouts: Timeouts,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        let limits = &config.limits;
        Settings {
            buffer_bytes: limits.buffer_bytes,
            client_buffer_bytes: limits.buffer_bytes.max(limits.max_header_bytes),
            head_limits: HeadLimits {
                max_head_bytes: limits.max_header_bytes,
                ..HeadLimits::default()
            },
            max_client_conns: limits.max_client_conns,
            max_conns_per_upstream: limits.max_conns_per_upstream,
            timeouts: config.timeouts.clone(),
        }
    }
}

/// The reactor's limiter for a `rate_limit` section.
fn rate_limiter_for(settings: &RateLimitConfig) -> RateLimiter {
    RateLimiter::new(settings.rps, settings.burst(), rate_limit_per(settings))
}

fn rate_limit_per(settings: &RateLimitConfig) -> Per {
    match settings.per {
        RateLimitPer::ClientIp => Per::ClientIp,
        RateLimitPer::Global => Per::Global,
    }
}

/// With several workers: where each shares a copy of its figures, so the
/// one that owns the metrics listener can add them all up when scraped.
/// Written at most every [`SHARE_EVERY_MS`] by each worker, read only on a
/// scrape: never on the request path.
struct SharedFigures {
    workers: Vec<Mutex<(Metrics, Gauges)>>,
}

/// How often a worker copies its figures for the metrics listener.
const SHARE_EVERY_MS: u64 = 100;

/// The loop and everything it owns.
pub struct Reactor {
    poll: Poll,
    /// `None` once shutting down: no new connections.
    listener: Option<TcpListener>,
    listen_addr: SocketAddr,
    /// The metrics listener (`metrics.listen`), on this same loop.
    admin_listener: Option<TcpListener>,
    /// The TLS listener (`tls.listen`), on this same loop, and what starts
    /// its sessions. `tls_listener` is `None` once shutting down.
    tls_listener: Option<TcpListener>,
    tls_addr: Option<SocketAddr>,
    tls: Option<TlsAcceptor>,
    admin_clients: usize,
    conns: Slab<Conn>,
    /// Stamped into each new connection's token (see [`crate::token`]).
    next_generation: u32,
    /// Every upstream group, `default` (the top-level `upstreams`) first,
    /// in the order of `Config::groups`.
    groups: Vec<UpstreamGroup>,
    /// Stamped into each group when it is built: a connection whose
    /// `list_generation` no group has any more belongs to a list a reload
    /// replaced (unique across groups, so a renumbered group never
    /// matches an old connection either).
    next_list_generation: u64,
    /// Which handler each request goes to (`src/route.rs`).
    router: Router,
    /// The static routes' directories, held open (`src/files`), and the
    /// files kept open for the next request.
    roots: Roots,
    /// A `Due::FileSweep` timer is in the wheel.
    file_sweep_armed: bool,
    /// Requests and retries in flight (see `src/retry.rs`).
    retry_budget: RetryBudget,
    /// `rate_limit`, when configured.
    rate_limiter: Option<RateLimiter>,
    settings: Settings,
    /// Connections that used up their turn's budget with work left.
    ready: VecDeque<ConnId>,
    clients: usize,
    /// Where every connection's buffer memory comes from and returns to.
    buffers: BufferPool,
    metrics: Metrics,
    rate: RateWindow,
    /// The panel's last few minutes, sampled once a second by the worker
    /// that owns the metrics listener (all workers' figures added up).
    series: Series,
    series_due_ms: u64,
    /// With several workers: this worker's index and the figures shared
    /// among them (see [`SharedFigures`]).
    shared_figures: Option<(usize, Arc<SharedFigures>)>,
    /// `metrics.requests + accepted_connections` when last shared, and when.
    shared_at: (u64, u64),
    /// The reactor's clock: milliseconds since `epoch`, read once per turn
    /// (reading it per event would cost nothing in syscalls, thanks to the
    /// vDSO, but one value per turn keeps every decision in a turn
    /// consistent).
    epoch: Instant,
    now: u64,
    timers: TimerWheel<Due>,
    /// Bumped when the health-check schedule is redrawn (start, reload):
    /// a check timer of an older round does nothing.
    check_round: u64,
    /// Health checks in flight (slab entries of role `Check`).
    checks_open: usize,
    /// A connection slot or an idle connection was freed this turn: the
    /// waiting queues get a look at the end of it.
    slots_freed: bool,
    /// `accept` ran out of descriptors (or memory) with clients still in
    /// the backlog: try again at this time (see [`Reactor::retry_accept`]).
    accept_retry_at: Option<u64>,
    /// The same shortage, remembered until the backlog is drained, so it
    /// is logged once when it starts and once when it ends.
    accept_stalled: bool,
    /// Shutting down: exit when no connection is left, or at this time.
    draining_until: Option<u64>,
    config_path: Option<PathBuf>,
    /// `--trace`: the log level stays `trace` whatever a reload says.
    trace: bool,
    /// What the config said at start for what a reload cannot change.
    workers: usize,
    metrics_listen: Option<String>,
    signals: Option<Signals>,
    stats: Stats,
    shared_stats: Option<Arc<Mutex<Stats>>>,
    stop: Arc<AtomicBool>,
}

impl Reactor {
    /// Bind the listener and set up the loop (nothing runs yet).
    pub fn bind(config: &Config) -> io::Result<Reactor> {
        Reactor::bind_worker(config, false, true)
    }

    /// The same for one of several workers: `shared_port` binds with
    /// `SO_REUSEPORT`, so each worker has its own listener on one address
    /// and the kernel spreads new connections over them; only the worker
    /// with `metrics` opens the metrics listener.
    fn bind_worker(config: &Config, shared_port: bool, metrics: bool) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let mut listener = listen(config.listen_addr(), shared_port)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let listen_addr = listener.local_addr()?;
        let mut next_list_generation = 0;
        let groups = build_groups(config, &mut next_list_generation)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.what))?;
        let roots = Roots::open(config)?;
        let (tls_listener, tls) = match &config.tls {
            Some(settings) => {
                let addr = settings.listen.parse().map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("tls.listen: {e}"))
                })?;
                let acceptor = TlsAcceptor::new(settings)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let mut listener = listen(addr, shared_port)?;
                poll.registry()
                    .register(&mut listener, TLS_LISTENER, Interest::READABLE)?;
                (Some(listener), Some(acceptor))
            }
            None => (None, None),
        };
        let tls_addr = match &tls_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let admin_listener = match &config.metrics {
            Some(settings) if metrics => {
                let addr = settings.listen.parse().map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("metrics.listen: {e}"))
                })?;
                let mut admin = TcpListener::bind(addr)?;
                poll.registry()
                    .register(&mut admin, ADMIN_LISTENER, Interest::READABLE)?;
                Some(admin)
            }
            _ => None,
        };
        Ok(Reactor {
            poll,
            listener: Some(listener),
            listen_addr,
            admin_listener,
            tls_listener,
            tls_addr,
            tls,
            admin_clients: 0,
            buffers: BufferPool::new(
                Settings::from_config(config).client_buffer_bytes,
                SPARE_BUFFERS,
            ),
            metrics: Metrics::new(&flat_upstreams(&groups)),
            rate: RateWindow::default(),
            series: Series::new(),
            series_due_ms: 0,
            shared_figures: None,
            shared_at: (0, 0),
            conns: Slab::with_capacity(1024),
            next_generation: 0,
            groups,
            next_list_generation,
            router: Router::from_config(config),
            roots,
            file_sweep_armed: false,
            retry_budget: RetryBudget::default(),
            rate_limiter: config.rate_limit.as_ref().map(rate_limiter_for),
            settings: Settings::from_config(config),
            ready: VecDeque::new(),
            clients: 0,
            epoch: Instant::now(),
            now: 0,
            timers: TimerWheel::new(WHEEL_TICK_MS, WHEEL_SLOTS, 0),
            check_round: 0,
            checks_open: 0,
            slots_freed: false,
            accept_retry_at: None,
            accept_stalled: false,
            draining_until: None,
            config_path: None,
            trace: false,
            workers: config.workers,
            metrics_listen: config.metrics.as_ref().map(|m| m.listen.clone()),
            signals: None,
            stats: Stats::default(),
            shared_stats: None,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Where the TLS listener listens, if it is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Where the metrics listener listens, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The loop. Returns when shutdown has drained every connection, or
    /// when another thread sets the stop flag and wakes it.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        self.schedule_checks();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = self.epoch.elapsed().as_millis() as u64;
            trace!(
                "wake-up at {} ms: {} events, {} ready, {} timers",
                self.now,
                events.iter().count(),
                self.ready.len(),
                self.timers.len()
            );
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_clients(Listener::Plain),
                    TLS_LISTENER => self.accept_clients(Listener::Tls),
                    ADMIN_LISTENER => self.accept_clients(Listener::Admin),
                    SIGNALS => self.on_signals(),
                    WAKER if self.stop.load(Ordering::Acquire) => {
                        info!("stopping: closing {} connections", self.conns.len());
                        return Ok(());
                    }
                    token => {
                        if let Some(id) = ConnId::from_token(token) {
                            self.on_event(id, event);
                        }
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
                    self.conns[id.key].io.ready.queued = false;
                    self.drive(id.key);
                }
            }
            self.expire_timers();
            self.retry_accept();
            self.serve_queues();
            self.rate.sample(self.now, self.metrics.requests);
            self.sample_series();
            self.share_figures();
            if self.drained() {
                info!("shutdown complete");
                return Ok(());
            }
            self.publish_stats();
        }
    }

    /// How long `poll` may sleep: not at all while some connection still has
    /// work from its last turn; else until the next deadline; else forever.
    /// So a proxy with no connection left (idle pooled ones included, which
    /// expire after `keepalive_ms`) makes no syscalls at all.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.next_deadline(),
            self.accept_retry_at,
            self.draining_until,
            self.share_due(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(Duration::from_millis(next.saturating_sub(self.now)))
    }

    /// The connection `id` names still exists (its slot was not reused).
    fn is_current(&self, id: ConnId) -> bool {
        self.conns.get(id.key).is_some_and(|c| c.io.id == id)
    }

    /// Accept every pending connection: the listener is edge-triggered
    /// too, so one event may stand for many clients.
    fn accept_clients(&mut self, which: Listener) {
        let admin = which == Listener::Admin;
        loop {
            let listener = match which {
                Listener::Plain => &self.listener,
                Listener::Tls => &self.tls_listener,
                Listener::Admin => &self.admin_listener,
            };
            let Some(listener) = listener else {
                return;
            };
            let (socket, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A client that failed while it waited in the backlog (the
                // kernel reports its error here): the next may be fine.
                Err(e) if died_in_backlog(&e) => {
                    debug!("accept: a waiting client failed ({e}); next");
                    continue;
                }
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or kernel memory.
                    // The clients still in the backlog will raise no new
                    // edge (they are not news to an edge-triggered
                    // listener), so without a retry of our own they would
                    // wait for the next client to arrive, maybe forever.
                    if !self.accept_stalled {
                        self.accept_stalled = true;
                        error!(
                            "accept failed: {e}; clients wait in the backlog until a \
                             connection closes (or {ACCEPT_RETRY_MS} ms pass)"
                        );
                    }
                    self.accept_retry_at = Some(self.now + ACCEPT_RETRY_MS);
                    return;
                }
            };
            let (open, limit) = if admin {
                (self.admin_clients, MAX_ADMIN_CONNS)
            } else {
                (self.clients, self.settings.max_client_conns)
            };
            if open >= limit && which == Listener::Tls {
                // No session yet to say 503 in: the client sees a close.
                self.metrics.record_error(ErrorKind::OverClientLimit);
                warn!("refused {peer} on the TLS listener: max_client_conns ({limit}) reached");
                continue;
            }
            if open >= limit {
                let bytes = refuse_over_limit(socket, peer, limit);
                self.metrics.record_error(ErrorKind::OverClientLimit);
                if !admin {
                    self.metrics.record_request(503, None, 0, 0, bytes);
                }
                crate::access_log::log(&crate::access_log::AccessLine {
                    client: peer,
                    request: None,
                    status: 503,
                    bytes_out: bytes,
                    bytes_in: 0,
                    upstream: None,
                    upstream_status: None,
                    request_time: Duration::ZERO,
                    connect_time: None,
                    header_time: None,
                    tls: None,
                });
                continue;
            }
            if !admin {
                self.metrics.accepted_connections += 1;
            }
            // TCP_NODELAY is set later, and only for a client that wants
            // keep-alive (see `Reactor::begin_exchange`).
            let client = Client {
                peer,
                admin,
                inbuf: Buffer::with_capacity(self.settings.client_buffer_bytes),
                out: Outbox::default(),
                eof: false,
                phase: ClientPhase::ReadingHead,
                since_ms: self.now,
                head_started_ms: None,
                served: 0,
                nodelay: false,
            };
            let transport = match (which, &self.tls) {
                (Listener::Tls, Some(tls)) => match tls.session() {
                    Ok(session) => Transport::Tls(Box::new(TlsStream {
                        tcp: socket,
                        session,
                    })),
                    Err(e) => {
                        error!("no TLS session for {peer}: {e}");
                        continue;
                    }
                },
                _ => Transport::Plain(socket),
            };
            match self.insert(transport, Role::Client(client), false) {
                Ok(key) => {
                    if admin {
                        self.admin_clients += 1;
                    } else {
                        self.clients += 1;
                    }
                    debug!("accepted {peer} as connection {key}");
                    // A client usually sends its request right after
                    // connecting, so it is often here already: read it now
                    // rather than after another trip through epoll_wait.
                    // The socket is registered only after this first try
                    // (in settle), so an event queued at registration
                    // cannot announce bytes this read already took. The
                    // client_header_ms clock starts now either way.
                    self.conns[key].io.ready.readable = true;
                    self.drive(key);
                }
                Err(e) => error!("could not register client {peer}: {e}"),
            }
        }
    }

    /// Accept again after `accept` ran short of descriptors, once its retry
    /// time has come ([`Reactor::close`] brings it forward: a closed
    /// connection has just freed a descriptor). Another failure sets a new
    /// retry time.
    fn retry_accept(&mut self) {
        if self.accept_retry_at.is_none_or(|at| at > self.now) {
            return;
        }
        self.accept_retry_at = None;
        self.accept_clients(Listener::Plain);
        self.accept_clients(Listener::Tls);
        self.accept_clients(Listener::Admin);
        if self.accept_retry_at.is_none() && self.accept_stalled {
            self.accept_stalled = false;
            info!("accepting again: the backlog is drained");
        }
    }

    /// Put a socket in the slab and, with `register`, register it READABLE
    /// and WRITABLE (see [`Conn::desired_interest`] for why WRITABLE stays
    /// on); without, the first `settle` registers it. It is never
    /// deregistered: closing it is enough (see [`Reactor::close`]).
    fn insert(&mut self, mut socket: Transport, role: Role, register: bool) -> io::Result<usize> {
        let entry = self.conns.vacant_entry();
        let id = ConnId {
            key: entry.key(),
            generation: self.next_generation,
        };
        self.next_generation = self.next_generation.wrapping_add(1);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if register {
            self.poll
                .registry()
                .register(&mut socket, id.token(), interest)?;
        }
        let mut conn = Conn {
            io: Io {
                socket,
                id,
                registered: register.then_some(interest),
                ready: Readiness::default(),
                accounted: 0,
                timer: None,
                last_read_ms: self.now,
                last_write_ms: self.now,
                seen_reads: 0,
                seen_writes: 0,
            },
            role,
        };
        conn.io.accounted = conn.memory();
        self.stats.buffer_bytes += conn.io.accounted;
        entry.insert(conn);
        Ok(id.key)
    }

    /// Close a connection: out of the slab, the pool and the timer wheel;
    /// its upstream slot given back; its socket closed.
    ///
    /// No `deregister`: closing the last descriptor of a socket removes it
    /// from epoll, and the generation in the token makes any event already
    /// queued for it harmless.
    fn close(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        self.leave_queue(key);
        if self.accept_retry_at.is_some() {
            // This close frees a descriptor: retry at the end of the turn.
            self.accept_retry_at = Some(self.now);
        }
        let mut conn = self.conns.remove(key);
        self.stats.buffer_bytes -= conn.io.accounted;
        conn.inbuf().clear();
        conn.inbuf().detach_if_empty(&mut self.buffers);
        if let Some(timer) = conn.io.timer {
            self.timers.cancel(timer.id);
        }
        if let Role::Client(c) = &mut conn.role
            && let ClientPhase::Exchanging(ex) = &mut c.phase
        {
            // Closed mid-exchange without an answer of its own.
            resilience::exchange_ended(
                &mut self.retry_budget,
                &mut self.groups,
                &mut self.metrics,
                ex,
                self.now,
            );
        }
        match &conn.role {
            Role::Client(c) => {
                if c.admin {
                    self.admin_clients -= 1;
                } else {
                    self.clients -= 1;
                }
                if let Some(tls) = conn.io.socket.tls()
                    && tls.is_handshaking()
                {
                    // However it ended (a bad record, the client's EOF, the
                    // handshake deadline), this is the one place it is
                    // counted and logged.
                    let (reason, why) = tls.failure().unwrap_or(("other", "closed"));
                    self.metrics.tls.record_failure(reason);
                    warn!("TLS handshake with {} failed ({reason}): {why}", c.peer);
                }
                conn.io.socket.say_goodbye();
                trace!("closed client {} (connection {key})", c.peer);
            }
            Role::Check(check) => {
                self.checks_open -= 1;
                if let Some(group) = self.groups.get_mut(check.group)
                    && check.list_generation == group.generation
                    && let Some(checking) = group.checking.get_mut(check.upstream)
                {
                    *checking = false;
                }
                trace!("closed health check connection {key} to {}", check.addr);
            }
            Role::Upstream(u) => {
                if let Some(group) = self.groups.get_mut(u.group)
                    && u.list_generation == group.generation
                {
                    if u.phase == UpstreamPhase::Idle {
                        group.pool.remove(u.index, key);
                    }
                    if let Some(open) = group.open.get_mut(u.index) {
                        *open = open.saturating_sub(1);
                    }
                    self.slots_freed = true;
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
        trace!(
            "event for connection {} ({}): readable {} writable {} closed {}",
            id.key,
            match &conn.role {
                Role::Client(_) => "client",
                Role::Upstream(_) => "upstream",
                Role::Check(_) => "health check",
            },
            event.is_readable(),
            event.is_writable(),
            event.is_read_closed()
        );
        match &conn.role {
            Role::Client(_) => self.drive(id.key),
            Role::Check(_) => self.drive_check(id.key),
            // Idle pooled connections stay registered WRITABLE too (changing
            // that would cost an epoll_ctl on every park and reuse); a
            // writable edge alone says nothing about them.
            Role::Upstream(u) if u.phase == UpstreamPhase::Idle => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.check_idle(id.key);
                }
            }
            Role::Upstream(u) => match u.client {
                Some(client) => self.drive(client),
                None => self.close(id.key),
            },
        }
    }

    /// Move a client and its upstream as far as they go without blocking,
    /// at most [`TURN_BUDGET`] bytes read, then settle their interests and
    /// timers.
    fn drive(&mut self, client: usize) {
        let mut budget = TURN_BUDGET;
        if !self.flush_transport(client) {
            return;
        }
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
                ClientPhase::Static(_) => self.serve_static(client, &mut budget),
            };
            match step {
                Ok(true) if budget > 0 => continue,
                Ok(true) => {
                    // Out of budget with work left: finish next turn (once,
                    // however many events it gets meanwhile).
                    if let Some(conn) = self.conns.get_mut(client)
                        && !conn.io.ready.queued
                    {
                        conn.io.ready.queued = true;
                        self.ready.push_back(conn.io.id);
                    }
                    break;
                }
                Ok(false) => break,
                // Normally the client was closed. If it is still there, a
                // step bailed out on a phase it did not expect: settle it
                // anyway, so it keeps its interest and its timer.
                Err(Gone) if !self.conns.contains(client) => return,
                Err(Gone) => {
                    debug!("connection {client}: step ended early; settling");
                    break;
                }
            }
        }
        let linked = self.linked_upstream(client);
        if let Some(upstream) = linked {
            self.settle(upstream);
        }
        self.settle(client);
    }

    /// Before the pumps: records a TLS session still holds from a write the
    /// socket refused go first (this event may be the WRITABLE they waited
    /// for). Returns `false` if that closed the client.
    fn flush_transport(&mut self, client: usize) -> bool {
        let Some(io) = self.conns.get_mut(client).map(|c| &mut c.io) else {
            return false;
        };
        if io.socket.is_flushed() || !io.ready.writable {
            return true;
        }
        match io.socket.flush() {
            Ok(done) => {
                io.ready.writable = done;
                true
            }
            Err(e) => {
                debug!("connection {client}: TLS write failed: {e}");
                self.close(client);
                false
            }
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
            Role::Upstream(_) | Role::Check(_) => None,
        }
    }

    /// After a connection moved: note the time of any progress, register
    /// the interest its state calls for (only if it changed: each
    /// `reregister` is a syscall), count its buffer memory, and make sure a
    /// timer covers its earliest deadline.
    fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let io = &mut conn.io;
        if io.ready.reads != io.seen_reads {
            io.seen_reads = io.ready.reads;
            io.last_read_ms = self.now;
        }
        if io.ready.writes != io.seen_writes {
            io.seen_writes = io.ready.writes;
            io.last_write_ms = self.now;
        }
        // Memory only while bytes are in flight: an empty buffer goes back
        // to the pool, and an idle client keeps no head buffer either.
        conn.inbuf().detach_if_empty(&mut self.buffers);
        if let Role::Client(client) = &mut conn.role
            && matches!(client.phase, ClientPhase::ReadingHead)
        {
            client.out.release_if_empty();
        }
        let wanted = conn.desired_interest();
        if conn.io.registered != Some(wanted) {
            trace!(
                "connection {key}: interest {:?} -> {wanted:?}",
                conn.io.registered
            );
            let registry = self.poll.registry();
            let token = conn.io.id.token();
            let done = match conn.io.registered {
                None => registry.register(&mut conn.io.socket, token, wanted),
                Some(_) => registry.reregister(&mut conn.io.socket, token, wanted),
            };
            match done {
                Ok(()) => conn.io.registered = Some(wanted),
                Err(e) => warn!("registering connection {key} failed: {e}"),
            }
        }
        let memory = conn.memory();
        self.stats.buffer_bytes = self.stats.buffer_bytes + memory - conn.io.accounted;
        conn.io.accounted = memory;
        self.stats.peak_buffer_bytes = self.stats.peak_buffer_bytes.max(self.stats.buffer_bytes);
        self.arm_timer(key);
    }

    /// With several workers: figures changed and not yet shared are due
    /// `SHARE_EVERY_MS` after the last share (so an idle worker still
    /// shares its last requests, then sleeps for good).
    fn share_due(&self) -> Option<u64> {
        self.shared_figures.as_ref()?;
        let (shared_count, shared_ms) = self.shared_at;
        let count = self.metrics.requests + self.metrics.accepted_connections;
        (count != shared_count).then_some(shared_ms + SHARE_EVERY_MS)
    }

    fn share_figures(&mut self) {
        let Some(due) = self.share_due() else {
            return;
        };
        if self.now < due {
            return;
        }
        let gauges = self.own_gauges();
        let Some((index, shared)) = &self.shared_figures else {
            return;
        };
        if let Some(slot) = shared.workers.get(*index)
            && let Ok(mut figures) = slot.lock()
        {
            // clone_from reuses the copy's allocations: no malloc once warm.
            figures.0.clone_from(&self.metrics);
            figures.1 = gauges;
        }
        self.shared_at = (
            self.metrics.requests + self.metrics.accepted_connections,
            self.now,
        );
    }

    /// Once a second, if this worker serves the panel: one sample of the
    /// whole proxy's figures for its charts.
    fn sample_series(&mut self) {
        if self.admin_listener.is_none() || self.now < self.series_due_ms {
            return;
        }
        self.series_due_ms = self.now + 1000;
        let (metrics, _) = self.figures();
        let errors = metrics.by_class()[5];
        self.series
            .offer(self.now, metrics.requests, errors, &metrics.latency);
    }

    /// What the metrics pages show: this worker's figures, plus every other
    /// worker's last shared copy.
    fn figures(&self) -> (Metrics, Gauges) {
        let mut metrics = self.metrics.clone();
        let mut gauges = self.own_gauges();
        if let Some((index, shared)) = &self.shared_figures {
            for (n, slot) in shared.workers.iter().enumerate() {
                if n == *index {
                    continue;
                }
                if let Ok(figures) = slot.lock() {
                    metrics.add(&figures.0);
                    gauges.add(&figures.1);
                }
            }
        }
        (metrics, gauges)
    }

    /// The gauges of this worker, read off the loop's state.
    fn own_gauges(&self) -> Gauges {
        let mut gauges = Gauges {
            uptime_seconds: self.epoch.elapsed().as_secs_f64(),
            client_connections: self.clients,
            buffer_bytes: self.stats.buffer_bytes,
            requests_per_second: self.rate.per_second(self.now, self.metrics.requests),
            ..Gauges::default()
        };
        // In the metrics' flat order: group by group.
        for group in &self.groups {
            for i in 0..group.len() {
                let idle = group.pool.len_of(i);
                gauges
                    .upstream_active
                    .push(group.open[i].saturating_sub(idle));
                gauges.upstream_idle.push(idle);
                gauges.upstream_queued.push(group.waiting[i].len());
                gauges.upstream_up.push(group.health.is_up(i));
                gauges
                    .upstream_state
                    .push(group.health.state_name(i, self.now));
            }
        }
        gauges
    }

    fn publish_stats(&mut self) {
        let Some(shared) = &self.shared_stats else {
            return;
        };
        self.stats.connections = self.conns.len();
        self.stats.client_connections = self.clients;
        self.stats.upstream_connections =
            self.conns.len() - self.clients - self.admin_clients - self.checks_open;
        self.stats.idle_upstream_connections = self.groups.iter().map(|g| g.pool.len()).sum();
        self.stats.open_files = self.roots.open_files.len();
        self.stats.queued_requests = self
            .groups
            .iter()
            .flat_map(|g| g.waiting.iter().map(VecDeque::len))
            .sum();
        self.stats.timers = self.timers.len();
        self.stats.spare_buffer_bytes = self.buffers.spare_bytes();
        if let Ok(mut published) = shared.lock() {
            *published = self.stats;
        }
    }
}

/// Errors `accept(2)` reports for one connection that died in the backlog,
/// not for the listener (Linux passes the new socket's pending network
/// error on, says its man page): the next waiting client may be fine, so
/// the loop goes on at once.
fn died_in_backlog(e: &io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Over `max_client_conns`: a best-effort 503 on the new socket, then close.
/// It is non-blocking and brand new, so the small answer fits its buffer.
/// Returns the bytes written, for the access line.
fn refuse_over_limit(mut socket: TcpStream, peer: SocketAddr, limit: usize) -> u64 {
    use std::io::Write;
    let mut answer = Vec::new();
    write_error_response(503, &[], &mut answer);
    let written = socket.write(&answer).unwrap_or(0);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    warn!("refused {peer}: max_client_conns ({limit}) reached, answered 503");
    written as u64
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

/// A proxy running on its own thread; dropped or `shutdown`, it stops.
pub struct ProxyHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
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

    /// Where the TLS listener listens, when `tls` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Where the metrics listener listens, when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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

/// Bind the listener and run the loop on a new thread (for tests and
/// embedding: no signal handling, stopped through the handle).
pub fn start(config: &Config) -> io::Result<ProxyHandle> {
    let mut reactor = Reactor::bind(config)?;
    let local_addr = reactor.local_addr();
    let tls_addr = reactor.tls_addr();
    let admin_addr = reactor.admin_addr();
    let waker = Arc::new(Waker::new(reactor.poll.registry(), WAKER)?);
    let stats = Arc::new(Mutex::new(Stats::default()));
    reactor.shared_stats = Some(stats.clone());
    let stop = reactor.stop.clone();
    let thread = std::thread::Builder::new()
        .name("ferroxy-reactor".into())
        .spawn(move || reactor.run())?;
    Ok(ProxyHandle {
        local_addr,
        tls_addr,
        admin_addr,
        stats,
        stop,
        waker,
        thread: Some(thread),
    })
}

/// Bind the listener and run the loop on this thread: the binary's way.
/// SIGTERM and SIGINT shut down gracefully; SIGHUP re-reads `config_path`;
/// `trace` keeps the log level at `trace` across reloads.
///
/// With `workers` > 1, as many loops run, each on its own thread with its
/// own `SO_REUSEPORT` listener, sharing nothing: no lock, no queue, no
/// shared pool between them (each has its own upstream connections). Every
/// worker receives the signals and drains or reloads itself.
pub fn run(config: &Config, config_path: Option<&Path>, trace: bool) -> io::Result<()> {
    let workers = config.workers.max(1);
    if workers > 1 {
        // With SO_REUSEPORT a second copy of ferroxy could bind the same
        // port and silently share its traffic: check it is free first.
        drop(listen(config.listen_addr(), false)?);
    }
    let mut first = Reactor::bind_worker(config, workers > 1, true)?;
    first.trace = trace;
    let shared = (workers > 1).then(|| {
        Arc::new(SharedFigures {
            workers: (0..workers)
                .map(|_| {
                    Mutex::new((
                        Metrics::new(&flat_upstreams(&first.groups)),
                        Gauges::default(),
                    ))
                })
                .collect(),
        })
    });
    first.shared_figures = shared.clone().map(|s| (0, s));
    first.config_path = config_path.map(Path::to_path_buf);
    first.listen_for_signals()?;
    info!("ferroxy listening on http://{}", first.local_addr());
    if let Some(tls) = first.tls_addr() {
        info!("and on https://{tls} (TLS)");
    }
    if let Some(admin) = first.admin_addr() {
        info!("metrics on http://{admin}/metrics, panel on http://{admin}/");
    }
    // The others bind the very address the first got (a port of 0 became
    // a real port).
    let mut same_port = config.clone();
    same_port.listen = first.local_addr().to_string();
    if let (Some(tls), Some(addr)) = (&mut same_port.tls, first.tls_addr()) {
        tls.listen = addr.to_string();
    }
    let mut threads = Vec::new();
    for n in 1..workers {
        let mut worker = Reactor::bind_worker(&same_port, true, false)?;
        worker.trace = trace;
        // One set of ticket keys for all: a session resumes on any worker.
        worker.tls = first.tls.as_ref().map(TlsAcceptor::sibling);
        worker.shared_figures = shared.clone().map(|s| (n, s));
        worker.config_path = config_path.map(Path::to_path_buf);
        worker.listen_for_signals()?;
        let thread = std::thread::Builder::new()
            .name(format!("ferroxy-worker-{n}"))
            .spawn(move || worker.run())?;
        threads.push(thread);
    }
    if workers > 1 {
        info!("{workers} workers, each its own poll loop on its own listener");
    }
    let result = first.run();
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!("a worker failed: {e}"),
            Err(_) => error!("a worker panicked"),
        }
    }
    result
}

/// A non-blocking listener on `addr`; with `shared_port`, several may
/// listen on the same address (`SO_REUSEPORT`), one per worker.
fn listen(addr: SocketAddr, shared_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting must not wait for old connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if shared_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}
