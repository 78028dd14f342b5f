//! Getting an exchange its upstream connection, and giving it back.
//!
//! In order of preference: an idle pooled connection to the chosen upstream;
//! a new connection, if that upstream is under `max_conns_per_upstream`; the
//! same for the other upstreams in turn; and when every upstream is at its
//! limit, a place in the chosen upstream's FIFO queue, served as soon as a
//! connection closes or goes idle (503 after `connect_ms` of waiting).
//!
//! Lessons: `12-keepalive-and-pool`, `10-timers` (the connect timeout).

use std::io::{self, Read};

use log::{debug, info, trace, warn};
use mio::net::TcpStream;

use super::client::describe;
use super::{Progress, Reactor, client_in, exchange_in};
use crate::buffer::Buffer;
use crate::conn::{Conn, Role, Upstream, UpstreamPhase};
use crate::exchange::Failure;
use crate::health::Outcome;
use crate::transport::Transport;

impl Reactor {
    /// Give the exchange a connection, preferring upstream `index` (see the
    /// module doc for the order), or queue it.
    pub(super) fn assign_upstream(&mut self, key: usize, index: usize) -> Progress {
        let g = exchange_in(&mut self.conns, key)?.group;
        let Some(group) = self.groups.get(g) else {
            return self.fail(key, 502, "its upstream group is gone (reload)");
        };
        let count = group.len();
        let limit = self.settings.max_conns_per_upstream;
        for candidate in (0..count).map(|k| (index + k) % count) {
            // Overflow goes only to upstreams in rotation that this request
            // has not tried: a full upstream is no excuse to hit a down one.
            if candidate != index {
                let tried = exchange_in(&mut self.conns, key)?.tried.contains(candidate);
                if tried || !self.groups[g].health.is_up(candidate) {
                    continue;
                }
            }
            if let Some(idle) = self.groups[g].pool.take(candidate) {
                let ex = exchange_in(&mut self.conns, key)?;
                ex.upstream_index = candidate;
                ex.tried.insert(candidate);
                return self.link(key, idle, true);
            }
            if self.groups[g].open[candidate] < limit {
                exchange_in(&mut self.conns, key)?.tried.insert(candidate);
                return self.connect_upstream(key, candidate);
            }
        }
        let now = self.now;
        let ex = exchange_in(&mut self.conns, key)?;
        ex.upstream_index = index;
        ex.queued_since_ms = Some(now);
        let id = self.conns[key].io.id;
        let queue = &mut self.groups[g].waiting[index];
        queue.push_back(id);
        debug!(
            "connection {key}: every upstream at max_conns_per_upstream ({limit}); queued ({} waiting)",
            queue.len()
        );
        Ok(false)
    }

    /// At the end of a turn in which connections closed or went idle: hand
    /// the freed slots to the queued requests, oldest first.
    pub(super) fn serve_queues(&mut self) {
        if !std::mem::take(&mut self.slots_freed) {
            return;
        }
        // By index, not by iterator: serving a request borrows the reactor.
        for g in 0..self.groups.len() {
            for index in 0..self.groups[g].len() {
                self.serve_queue(g, index);
            }
        }
    }

    /// Hand freed slots of upstream `index` of group `g` to its queue.
    fn serve_queue(&mut self, g: usize, index: usize) {
        while let Some(&id) = self.groups[g].waiting[index].front() {
            if !self.is_queued(id) {
                // Closed, or timed out, while waiting.
                self.groups[g].waiting[index].pop_front();
                continue;
            }
            let group = &mut self.groups[g];
            let idle = group.pool.take(index);
            let room = group.open[index] < self.settings.max_conns_per_upstream;
            if idle.is_none() && !room {
                break;
            }
            group.waiting[index].pop_front();
            if let Ok(ex) = exchange_in(&mut self.conns, id.key) {
                ex.queued_since_ms = None;
                ex.upstream_index = index;
            }
            let linked = match idle {
                Some(idle) => self.link(id.key, idle, true),
                None => self.connect_upstream(id.key, index),
            };
            if linked.is_ok() {
                self.drive(id.key);
            }
        }
    }

    /// Take client `key` out of the queue it waits in, if any (it timed out
    /// or closed): the queue must not keep it until a slot frees.
    pub(super) fn leave_queue(&mut self, key: usize) {
        let Ok(ex) = exchange_in(&mut self.conns, key) else {
            return;
        };
        if ex.queued_since_ms.take().is_none() || ex.upstream.is_some() {
            return;
        }
        let queue = self
            .groups
            .get_mut(ex.group)
            .and_then(|g| g.waiting.get_mut(ex.upstream_index));
        if let Some(queue) = queue {
            queue.retain(|id| id.key != key);
        }
    }

    /// `id` is a client still waiting in a queue.
    fn is_queued(&mut self, id: crate::token::ConnId) -> bool {
        self.is_current(id)
            && exchange_in(&mut self.conns, id.key)
                .is_ok_and(|ex| ex.queued_since_ms.is_some() && ex.upstream.is_none())
    }

    /// Start a non-blocking connect. It completes (or fails) later, when
    /// the socket reports WRITABLE: see [`Reactor::finish_connect`].
    pub(super) fn connect_upstream(&mut self, key: usize, index: usize) -> Progress {
        let g = exchange_in(&mut self.conns, key)?.group;
        let Some(group) = self.groups.get(g) else {
            return self.fail(key, 502, "its upstream group is gone (reload)");
        };
        let (addr, first, generation) = (group.addrs[index], group.first, group.generation);
        let now = self.now;
        {
            let ex = exchange_in(&mut self.conns, key)?;
            ex.upstream_index = index;
            ex.upstream_addr = Some(addr);
            ex.connect_started_ms = now;
        }
        self.metrics.record_connect(first + index, false);
        let socket = match TcpStream::connect(addr) {
            Ok(socket) => socket,
            Err(e) => return self.connect_failed(key, &e),
        };
        let _ = socket.set_nodelay(true);
        let upstream = Upstream {
            group: g,
            index,
            addr,
            inbuf: Buffer::with_capacity(self.settings.buffer_bytes),
            phase: UpstreamPhase::Connecting,
            client: Some(key),
            eof: false,
            requests: 0,
            parked_ms: now,
            list_generation: generation,
        };
        match self.insert(Transport::Plain(socket), Role::Upstream(upstream), true) {
            Ok(upstream_key) => {
                self.groups[g].open[index] += 1;
                debug!("connection {key}: connecting to {addr} as connection {upstream_key}");
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
    pub(super) fn link(&mut self, key: usize, upstream_key: usize, reused: bool) -> Progress {
        let peer = client_in(&mut self.conns, key)?.1.peer;
        let now = self.now;
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
        debug!(
            "connection {key}: upstream connection {upstream_key} to {}, {}, request {} on it",
            up.addr,
            if reused {
                "reused from the pool"
            } else {
                "new"
            },
            up.requests
        );
        let addr = up.addr;
        let Some(host) = self
            .groups
            .get(up.group)
            .and_then(|g| g.hosts.get(up.index))
        else {
            return Ok(false);
        };
        let ex = exchange_in(&mut self.conns, key)?;
        ex.upstream = Some(upstream_key);
        ex.upstream_addr = Some(addr);
        ex.reused = reused;
        ex.linked_ms = now;
        ex.connected_ms = Some(now);
        ex.compose_request_head(peer.ip(), host);
        Ok(true)
    }

    /// Completing a non-blocking connect, the way mio documents it: on
    /// WRITABLE, `take_error` says whether it failed and `peer_addr` whether
    /// it is done (`NotConnected`: a spurious wake-up, keep waiting).
    pub(super) fn finish_connect(&mut self, key: usize) -> Progress {
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
        let result = match io.socket.tcp().take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => io.socket.tcp().peer_addr().map(|_| ()),
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
    /// an upstream it has not tried (a free move, not one of `retries`:
    /// a refusal costs the upstream nothing); when every upstream has been
    /// tried, `retries` may allow one more round, else 502.
    fn connect_failed(&mut self, key: usize, e: &io::Error) -> Progress {
        self.report_attempt(key, Outcome::Failure);
        let ex = exchange_in(&mut self.conns, key)?;
        let failed = ex.upstream_index;
        ex.upstream = None;
        let Some(group) = self.groups.get(ex.group) else {
            return self.fail(key, 502, "its upstream group is gone (reload)");
        };
        let (first, count) = (group.first, group.len());
        if let Some(counters) = self.metrics.upstreams.get_mut(first + failed) {
            counters.connect_failures += 1;
        }
        self.metrics
            .record_error(crate::metrics::ErrorKind::UpstreamRefused);
        warn!(
            "connect to upstream {} failed: {e}",
            super::client::upstream_label(ex)
        );
        let all_tried = ex.tried.count() >= count;
        let moved = if all_tried {
            self.retry_elsewhere(key, &format!("connect failed: {e}"), false)
        } else {
            self.start_attempt(key)
        };
        match moved {
            Some(progress) => progress,
            None => self.fail(key, 502, "no upstream accepted the connection"),
        }
    }

    /// A reused connection died before answering an idempotent request:
    /// send it again on a fresh connection, once.
    pub(super) fn retry(&mut self, key: usize, failure: &Failure) -> Progress {
        let ex = exchange_in(&mut self.conns, key)?;
        let old = ex.upstream;
        let index = ex.upstream_index;
        let count = self.groups.get(ex.group).map_or(0, |g| g.len());
        ex.reset_for_retry();
        info!(
            "retrying on a fresh connection: pooled connection failed ({})",
            describe(failure)
        );
        if let Some(old) = old {
            self.close(old);
        }
        if index < count {
            self.connect_upstream(key, index)
        } else {
            // The list changed under a reload: choose afresh.
            match self.start_attempt(key) {
                Some(progress) => progress,
                None => self.fail(key, 502, "no upstream to try"),
            }
        }
    }

    /// Park a finished upstream connection, or close it.
    pub(super) fn release_upstream(&mut self, key: usize, reusable: bool) {
        let now = self.now;
        let draining = self.draining_until.is_some();
        let Some(Conn {
            io,
            role: Role::Upstream(up),
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        up.client = None;
        let mut clean = up.inbuf.is_empty() && !up.eof;
        if clean && reusable && io.ready.readable {
            // The socket was not read until it said WouldBlock (a spliced
            // body takes exactly its length, and a read that filled the
            // buffer proves nothing), so bytes past the end may be waiting,
            // and no new event will announce them: they arrived while the
            // body was moving. One probe read settles it.
            let mut probe = [0u8; 1];
            clean = match io.socket.read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    io.ready.readable = false;
                    true
                }
                Ok(0) => {
                    up.eof = true;
                    false
                }
                Ok(_) => {
                    warn!(
                        "upstream {} sent bytes past the end of its response; connection dropped",
                        up.addr
                    );
                    false
                }
                Err(_) => false,
            };
        } else if !up.inbuf.is_empty() {
            // More bytes than its framing announced: the upstream is
            // confused, and whatever it sends next cannot be trusted.
            warn!(
                "upstream {} sent bytes past the end of its response; connection dropped",
                up.addr
            );
        }
        let current = self.groups.get(up.group).map(|g| g.generation) == Some(up.list_generation);
        if !reusable || !clean || !current || draining {
            self.close(key);
            return;
        }
        up.phase = UpstreamPhase::Idle;
        up.parked_ms = now;
        let (g, index) = (up.group, up.index);
        if let Some(evicted) = self.groups[g].pool.park(index, key) {
            // The pool is off (the limit is 0: `key` itself came back), or
            // full, and its oldest connection makes room for this one.
            debug!("idle upstream connection {evicted} over max_idle_per_upstream: closed");
            self.close(evicted);
            if evicted == key {
                return;
            }
        }
        // A queued request may take it at the end of this turn.
        self.slots_freed = true;
        self.settle(key);
    }

    /// An event on an idle pooled connection: the upstream closed it or
    /// sent something unasked. Either way it must not carry a request.
    /// A spurious event reads `WouldBlock` and changes nothing.
    pub(super) fn check_idle(&mut self, key: usize) {
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
}
