//! Time in the reactor: which deadline each connection is under, the one
//! timer per connection that covers it, and what happens when it passes.
//!
//! Deadlines are not stored; they are derived from the connection's state
//! and a few timestamps ([`Reactor::deadline_of`]), so they can never
//! disagree with the state. A connection keeps at most one timer in the
//! wheel, for its earliest deadline; see [`crate::timeouts`] for why re-arming
//! is lazy.
//!
//! | phase | deadlines |
//! | --- | --- |
//! | new connection, head not complete | `client_header_ms` from accept (a TLS handshake included) |
//! | kept-alive, idle | `keepalive_ms`; from the first byte, `client_header_ms` |
//! | queued for a connection slot | `connect_ms` from queueing (503) |
//! | connecting | `connect_ms` (504) |
//! | waiting for the response head | `total_ms` from the request head (504, or 408 while the client still sends its body) |
//! | upstream expected to send | `read_ms` since it last did (504 before the head, close after) |
//! | client sending its body | `read_ms` since it last did (408, or close) |
//! | either side not taking our bytes | `write_ms` since it last did |
//! | tunnel | `tunnel_idle_ms` since the last byte either way |
//! | closing | a short linger, then close |
//! | idle pooled upstream connection | `keepalive_ms` |
//!
//! Lesson: `lessons/10-timers`.

use log::{trace, warn};

use super::client::upstream_label;
use super::{Reactor, exchange_in};
use crate::conn::{ArmedTimer, ClientPhase, Conn, Role, UpstreamPhase};
use crate::exchange::ResponseState;
use crate::health::Outcome;
use crate::timeouts::{Earliest, LINGER_MS, TimeoutKind};
use crate::token::ConnId;

/// What a timer in the wheel is for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Due {
    /// A connection's earliest deadline (one timer per connection).
    Conn(ConnId),
    /// Time to check an upstream again (`health.interval_ms`); `round`
    /// says which schedule it belongs to (see `Reactor::check_round`).
    Check {
        group: usize,
        upstream: usize,
        round: u64,
    },
    /// Close the static files kept open and unused (`src/files/cache.rs`).
    FileSweep,
}

impl Reactor {
    /// The earliest deadline connection `key` is under now, and its kind.
    pub(super) fn deadline_of(&self, key: usize) -> Option<(u64, TimeoutKind)> {
        let t = &self.settings.timeouts;
        let conn = self.conns.get(key)?;
        let mut earliest = Earliest::default();
        let client = match &conn.role {
            Role::Upstream(up) => {
                // An active upstream's deadlines are its client's.
                if up.phase == UpstreamPhase::Idle {
                    earliest.consider(up.parked_ms + t.keepalive_ms, TimeoutKind::Keepalive);
                }
                return earliest.get();
            }
            Role::Check(check) => {
                let timeout = self
                    .groups
                    .get(check.group)
                    .and_then(|g| g.health.checks())
                    .map_or(0, |h| h.timeout_ms);
                earliest.consider(check.started_ms + timeout, TimeoutKind::HealthCheck);
                return earliest.get();
            }
            Role::Client(client) => client,
        };
        match &client.phase {
            // A new connection's head must be complete client_header_ms
            // after accept, however it trickles in; a kept-alive one may
            // idle for keepalive_ms, then its head gets client_header_ms
            // from its first byte.
            ClientPhase::ReadingHead => match (client.served, client.head_started_ms) {
                (0, _) => earliest.consider(
                    client.since_ms + t.client_header_ms,
                    TimeoutKind::ClientHeader,
                ),
                (_, Some(started)) => {
                    earliest.consider(started + t.client_header_ms, TimeoutKind::ClientHeader)
                }
                (_, None) => {
                    earliest.consider(client.since_ms + t.keepalive_ms, TimeoutKind::Keepalive)
                }
            },
            ClientPhase::Exchanging(ex) => {
                // Its own timeouts: a reload does not reach a request under way.
                let t = &ex.timeouts;
                if let Some(since) = ex.queued_since_ms {
                    earliest.consider(since + t.connect_ms, TimeoutKind::Queue);
                }
                if matches!(ex.response, ResponseState::AwaitingHead) {
                    earliest.consider(ex.started_ms + t.total_ms, TimeoutKind::Total);
                }
                let upstream = ex.upstream.and_then(|k| self.conns.get(k));
                if let Some(Conn {
                    io: uio,
                    role: Role::Upstream(up),
                }) = upstream
                {
                    if up.phase == UpstreamPhase::Connecting {
                        earliest
                            .consider(ex.connect_started_ms + t.connect_ms, TimeoutKind::Connect);
                    } else {
                        // The upstream owes us bytes once the request is out
                        // (before that, it may rightly wait for the body).
                        let expecting = ex.request_complete() || ex.response_started();
                        // A full buffer or a loaded pipe: it is the client
                        // that owes progress now (write_ms), not the upstream.
                        let room = !up.inbuf.is_full() && ex.pipe_held() == 0;
                        if expecting && !up.eof && room {
                            let since = uio.last_read_ms.max(uio.last_write_ms).max(ex.linked_ms);
                            earliest.consider(since + t.read_ms, TimeoutKind::UpstreamRead);
                        }
                        if !uio.ready.writable && ex.request_bytes_waiting() {
                            let since = uio.last_write_ms.max(ex.linked_ms);
                            earliest.consider(since + t.write_ms, TimeoutKind::Write);
                        }
                    }
                    let client_owed =
                        !client.out.is_empty() || !up.inbuf.is_empty() || ex.pipe_held() > 0;
                    if !conn.io.ready.writable && client_owed {
                        let since = conn.io.last_write_ms.max(ex.started_ms);
                        earliest.consider(since + t.write_ms, TimeoutKind::Write);
                    }
                }
                if !ex.request_body_done() && !client.eof && !client.inbuf.is_full() {
                    let since = conn.io.last_read_ms.max(ex.started_ms);
                    earliest.consider(since + t.read_ms, TimeoutKind::ClientBody);
                }
            }
            ClientPhase::Tunnel(tunnel) => {
                let mut last = tunnel
                    .since_ms
                    .max(conn.io.last_read_ms)
                    .max(conn.io.last_write_ms);
                if let Some(upstream) = self.conns.get(tunnel.upstream) {
                    last = last
                        .max(upstream.io.last_read_ms)
                        .max(upstream.io.last_write_ms);
                }
                earliest.consider(last + t.tunnel_idle_ms, TimeoutKind::TunnelIdle);
            }
            // A file is written as fast as the client reads it: only
            // `write_ms` bounds it, from the last byte it took.
            ClientPhase::Static(serve) => {
                if !conn.io.ready.writable {
                    let since = conn.io.last_write_ms.max(serve.started_ms);
                    earliest.consider(since + t.write_ms, TimeoutKind::Write);
                }
            }
            ClientPhase::Closing(closing) => {
                if !client.out.is_empty() && !conn.io.ready.writable {
                    let since = conn.io.last_write_ms.max(closing.since_ms);
                    earliest.consider(since + t.write_ms, TimeoutKind::Write);
                }
                earliest.consider(closing.since_ms + LINGER_MS, TimeoutKind::Linger);
            }
        }
        earliest.get()
    }

    /// Make sure connection `key` has a timer no later than its earliest
    /// deadline. Lazy: a timer that is *earlier* than needed stays (it will
    /// fire, find nothing due, and be set again), so a deadline that keeps
    /// moving later costs no wheel operation at all.
    pub(super) fn arm_timer(&mut self, key: usize) {
        let Some((deadline, kind)) = self.deadline_of(key) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(armed) = conn.io.timer {
            if armed.deadline_ms <= deadline {
                return;
            }
            self.timers.cancel(armed.id);
            trace!(
                "connection {key}: timer at {} ms cancelled (an earlier deadline came)",
                armed.deadline_ms
            );
        }
        trace!(
            "connection {key}: timer set for {} at {deadline} ms",
            kind.config_key()
        );
        let id = self.timers.insert(deadline, Due::Conn(conn.io.id));
        conn.io.timer = Some(ArmedTimer {
            id,
            deadline_ms: deadline,
        });
    }

    /// Fire every timer due by now.
    pub(super) fn expire_timers(&mut self) {
        let mut due = Vec::new();
        self.timers.expire(self.now, |timer| due.push(timer));
        for timer in due {
            let id = match timer {
                Due::Conn(id) => id,
                Due::Check {
                    group,
                    upstream,
                    round,
                } => {
                    self.check_due(group, upstream, round);
                    continue;
                }
                Due::FileSweep => {
                    self.sweep_files();
                    continue;
                }
            };
            // The generation check: a timer for a connection that closed
            // (and whose slot a new connection took) does nothing.
            if !self.is_current(id) {
                continue;
            }
            self.conns[id.key].io.timer = None;
            match self.deadline_of(id.key) {
                Some((at, kind)) if at <= self.now => {
                    trace!(
                        "connection {}: timer fired, {} is due",
                        id.key,
                        kind.config_key()
                    );
                    self.timed_out(id.key, kind)
                }
                // Moved later since the timer was set: set it again.
                _ => {
                    trace!("connection {}: timer fired early, nothing due yet", id.key);
                    self.arm_timer(id.key)
                }
            }
        }
    }

    /// A deadline passed: act on it, log it, and let the connection move
    /// (an answer of ours may now be written).
    fn timed_out(&mut self, key: usize, kind: TimeoutKind) {
        self.metrics.record_timeout(kind);
        let what = kind.config_key();
        let (peer, role) = match &self.conns[key].role {
            Role::Client(c) => (c.peer.to_string(), "client"),
            Role::Upstream(u) => (u.addr.to_string(), "upstream"),
            Role::Check(_) => {
                self.check_failed(key, "no answer within health.timeout_ms");
                return;
            }
        };
        let upstream = exchange_in(&mut self.conns, key)
            .map(|ex| upstream_label(ex))
            .unwrap_or_else(|_| "-".to_string());
        let can_answer = exchange_in(&mut self.conns, key).is_ok_and(|ex| ex.can_answer_error());
        let sending_body =
            exchange_in(&mut self.conns, key).is_ok_and(|ex| !ex.request_body_done());
        let context = format!("{role} connection {key} ({peer})");
        // Answers of ours log through `fail` (one line, with the upstream);
        // quiet closes log here.
        let answer = |this: &mut Reactor, status: u16, what_happened: &str| {
            this.fail(
                key,
                status,
                &format!("timeout {what}: {what_happened} on {context}"),
            )
        };
        let outcome = match kind {
            // Answered above: checks never get this far.
            TimeoutKind::HealthCheck => return,
            TimeoutKind::Keepalive => {
                warn!("timeout {what}: closing idle {context}");
                self.close(key);
                return;
            }
            TimeoutKind::Linger | TimeoutKind::TunnelIdle => {
                warn!("timeout {what}: closing {context}, upstream {upstream}");
                let upstream = self.linked_upstream(key);
                if let Some(upstream) = upstream {
                    self.close(upstream);
                }
                self.close(key);
                return;
            }
            TimeoutKind::ClientHeader
                if self.conns[key]
                    .io
                    .socket
                    .tls()
                    .is_some_and(|t| t.is_handshaking()) =>
            {
                // No session to say 408 in: the handshake itself was late.
                // `close` counts and logs the failure.
                if let Some(tls) = self.conns[key].io.socket.tls_mut() {
                    let why = format!(
                        "not done within client_header_ms ({} ms)",
                        self.settings.timeouts.client_header_ms
                    );
                    tls.note_failure("timeout", why);
                }
                self.close(key);
                return;
            }
            TimeoutKind::ClientHeader => {
                warn!("timeout {what}: request head incomplete, answering 408 on {context}");
                self.refuse_without_head(key, 408);
                Ok(true)
            }
            TimeoutKind::Queue => answer(self, 503, "no connection slot freed"),
            TimeoutKind::Connect => {
                self.report_attempt(key, Outcome::Failure);
                match self.retry_elsewhere(key, &format!("timeout {what}"), false) {
                    Some(progress) => progress,
                    None => answer(self, 504, "connect did not complete"),
                }
            }
            TimeoutKind::Total if sending_body => {
                answer(self, 408, "client still sending its body")
            }
            TimeoutKind::Total => {
                // No retry: the request's whole time is spent.
                self.report_attempt(key, Outcome::Failure);
                answer(self, 504, "no response head")
            }
            TimeoutKind::ClientBody if can_answer => {
                answer(self, 408, "client stalled sending its body")
            }
            TimeoutKind::UpstreamRead if can_answer => {
                self.report_attempt(key, Outcome::Failure);
                match self.retry_elsewhere(key, &format!("timeout {what}"), true) {
                    Some(progress) => progress,
                    None => answer(self, 504, "upstream sent nothing"),
                }
            }
            TimeoutKind::Write if can_answer => {
                self.report_attempt(key, Outcome::Failure);
                answer(self, 504, "upstream stopped reading the request")
            }
            TimeoutKind::Write if self.is_serving_file(key) => {
                warn!("timeout {what}: client stopped reading a static answer on {context}");
                self.abort_static(key, &format!("timeout {what}"))
            }
            TimeoutKind::ClientBody | TimeoutKind::UpstreamRead | TimeoutKind::Write => {
                warn!(
                    "timeout {what}: response already under way, closing {context}, upstream {upstream}"
                );
                self.abort(key, &format!("timeout {what}"))
            }
        };
        if outcome.is_ok() {
            self.drive(key);
        }
    }
}
