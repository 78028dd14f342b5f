//! Active health checks: the loop as a client on its own schedule.
//!
//! No thread and no blocking call: a check is one more slab entry, of role
//! [`Role::Check`], driven by readiness events like any connection, with
//! its `health.timeout_ms` deadline in the same timer wheel. The schedule is
//! in the wheel too: one [`Due::Check`] timer per upstream of every group, which starts a
//! check and sets the next one `interval_ms` later.
//!
//! The first checks are spread over one interval (upstream `i` of `n` at
//! `i * interval / n`), so a proxy with fifty upstreams does not open fifty
//! connections in the same millisecond every two seconds: no thundering
//! herd, for the upstreams or for the loop.
//!
//! A check is `GET path HTTP/1.1` with `Connection: close`; it passes on a
//! 2xx or 3xx status line and fails on a refused connect, a timeout, a
//! close before the status line, or any other status. Its verdict goes to
//! `src/health.rs`, which decides when a run of them changes anything.
//!
//! Lesson: `lessons/15-resilience`.

use std::io::{self, Write};

use log::{debug, warn};
use mio::net::TcpStream;

use super::Reactor;
use super::time::Due;
use crate::buffer::Buffer;
use crate::conn::{Conn, HealthCheck, Role};
use crate::transport::Transport;

/// Enough for any status line; the rest of the answer is not read.
const CHECK_BUFFER_BYTES: usize = 1024;

impl Reactor {
    /// Draw the check schedule afresh (at start, and after a reload):
    /// timers of the old round are ignored when they fire.
    pub(super) fn schedule_checks(&mut self) {
        self.check_round += 1;
        for (group_index, group) in self.groups.iter().enumerate() {
            let Some(interval) = group.health.checks().map(|h| h.interval_ms) else {
                continue;
            };
            let count = group.len() as u64;
            for upstream in 0..group.len() {
                let offset = interval * upstream as u64 / count.max(1);
                self.timers.insert(
                    self.now + offset,
                    Due::Check {
                        group: group_index,
                        upstream,
                        round: self.check_round,
                    },
                );
            }
        }
    }

    /// A check timer fired: check `upstream` of `group` now and come back
    /// in one interval. A check still in flight is left alone (its own
    /// timeout ends it); a stale round, or a proxy shutting down, does
    /// nothing.
    pub(super) fn check_due(&mut self, group_index: usize, upstream: usize, round: u64) {
        if round != self.check_round || self.draining_until.is_some() {
            return;
        }
        let Some(group) = self.groups.get(group_index) else {
            return;
        };
        let Some(settings) = group.health.checks().cloned() else {
            return;
        };
        self.timers.insert(
            self.now + settings.interval_ms,
            Due::Check {
                group: group_index,
                upstream,
                round,
            },
        );
        if group.checking.get(upstream).copied().unwrap_or(true) {
            return;
        }
        let (Some(addr), Some(host), Some(path)) = (
            group.addrs.get(upstream).copied(),
            group.hosts.get(upstream),
            settings.path.as_deref(),
        ) else {
            return;
        };
        let generation = group.generation;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ferroxy-health-check\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        let socket = match TcpStream::connect(addr) {
            Ok(socket) => socket,
            Err(e) => {
                let why = format!("connect failed: {e}");
                self.check_finished(group_index, upstream, false, &why);
                return;
            }
        };
        let check = HealthCheck {
            group: group_index,
            upstream,
            addr,
            list_generation: generation,
            started_ms: self.now,
            connected: false,
            request,
            sent: 0,
            inbuf: Buffer::with_capacity(CHECK_BUFFER_BYTES),
        };
        match self.insert(Transport::Plain(socket), Role::Check(check), true) {
            Ok(key) => {
                self.checks_open += 1;
                self.groups[group_index].checking[upstream] = true;
                debug!("health check of {addr}: connecting as connection {key}");
                self.arm_timer(key);
            }
            Err(e) => self.check_finished(group_index, upstream, false, &format!("no socket: {e}")),
        }
    }

    /// Readiness on a check: move it, then account for it like any
    /// connection (its buffer goes back to the pool while it waits).
    pub(super) fn drive_check(&mut self, key: usize) {
        self.step_check(key);
        self.settle(key);
    }

    /// Finish the connect, write the request, read until the status line
    /// is in.
    fn step_check(&mut self, key: usize) {
        let Some(Conn {
            io,
            role: Role::Check(check),
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        if !check.connected {
            // The same test as an upstream connect (`finish_connect`).
            match io.socket.tcp().take_error() {
                Ok(Some(e)) | Err(e) => {
                    return self.check_failed(key, &format!("connect failed: {e}"));
                }
                Ok(None) => {}
            }
            match io.socket.tcp().peer_addr() {
                Ok(_) => check.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.check_failed(key, &format!("connect failed: {e}")),
            }
        }
        while check.sent < check.request.len() {
            match io.socket.write(&check.request[check.sent..]) {
                Ok(n) => check.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.check_failed(key, &format!("write failed: {e}")),
            }
        }
        check.inbuf.attach(&mut self.buffers);
        loop {
            if check.inbuf.is_full() {
                return self.check_failed(key, "no status line in the first 1 KiB");
            }
            match check.inbuf.read_from(&mut io.socket) {
                Ok(0) => {
                    let verdict = status_of(check.inbuf.filled());
                    return self.check_verdict(
                        key,
                        verdict.and_then(|s| s.ok_or("closed before answering")),
                    );
                }
                Ok(_) => {
                    if let Some(verdict) = status_of(check.inbuf.filled()).transpose() {
                        return self.check_verdict(key, verdict);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.check_failed(key, &format!("read failed: {e}")),
            }
        }
    }

    fn check_verdict(&mut self, key: usize, verdict: Result<u16, &str>) {
        match verdict {
            Ok(status) if (200..400).contains(&status) => {
                self.check_done(key, true, &format!("status {status}"))
            }
            Ok(status) => self.check_done(key, false, &format!("status {status}")),
            Err(why) => self.check_failed(key, why),
        }
    }

    pub(super) fn check_failed(&mut self, key: usize, why: &str) {
        self.check_done(key, false, why);
    }

    /// Close the check and hand its verdict to health, if the list it was
    /// started for is still the current one.
    fn check_done(&mut self, key: usize, passed: bool, why: &str) {
        let Some(Conn {
            role: Role::Check(check),
            ..
        }) = self.conns.get(key)
        else {
            return;
        };
        let (group, upstream) = (check.group, check.upstream);
        let (generation, addr) = (check.list_generation, check.addr);
        self.close(key);
        if self.groups.get(group).map(|g| g.generation) != Some(generation) {
            warn!("health check of {addr} ended after a reload: verdict dropped");
            return;
        }
        self.check_finished(group, upstream, passed, why);
    }
}

/// The status code of a status line at the start of `bytes`: `Ok(None)`
/// while the line is incomplete, `Err` if it is not a status line.
fn status_of(bytes: &[u8]) -> Result<Option<u16>, &'static str> {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &bytes[..end];
    let code = line
        .strip_prefix(b"HTTP/1.")
        .filter(|rest| rest.len() >= 5 && rest[0].is_ascii_digit() && rest[1] == b' ')
        .map(|rest| &rest[2..5])
        .filter(|code| code.iter().all(u8::is_ascii_digit))
        .ok_or("not an HTTP/1.x status line")?;
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Ok(Some(status))
}
