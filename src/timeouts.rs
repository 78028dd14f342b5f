//! Which timeout a connection is under, and what its expiry means.
//!
//! A connection may be under several deadlines at once: an exchange waits
//! for its upstream (`read_ms`) while the whole exchange is bounded
//! (`total_ms`) and the client may be slow to read (`write_ms`). The reactor
//! computes them all from the connection's state and a few timestamps, keeps
//! only the earliest in the timer wheel, and asks again when it fires.
//!
//! That makes re-arming lazy: a read moves the read deadline later by
//! storing one timestamp, nothing else. The wheel's timer then fires "early",
//! finds nothing due, and is set again for the new earliest deadline. nginx
//! does the same in spirit (it skips a re-arm when the deadline moved less
//! than a few hundred ms); here a deadline that moves *later* never touches
//! the wheel at all, and one that moves *earlier* costs an O(1) cancel and
//! insert, in memory, with no syscall.
//!
//! Lesson: `lessons/10-timers`.

/// A kind of timeout, named after its config key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// `connect_ms`: the upstream connect did not complete (504).
    Connect,
    /// `read_ms` on the upstream: no response byte for that long (504 before
    /// the head; a closed client connection after it).
    UpstreamRead,
    /// `read_ms` on the client: it stalled while sending its body (408).
    ClientBody,
    /// `write_ms`: a peer stopped reading what we write to it.
    Write,
    /// `total_ms`: no response head within the exchange's budget
    /// (504; 408 if the client is still sending its body).
    Total,
    /// `client_header_ms`: the request head did not arrive in time (408).
    ClientHeader,
    /// `keepalive_ms`: an idle client between requests, or an idle pooled
    /// upstream connection (closed quietly).
    Keepalive,
    /// `tunnel_idle_ms`: nothing either way through a tunnel.
    TunnelIdle,
    /// `connect_ms` again, while queued for a connection slot (503).
    Queue,
    /// The lingering close after a final answer ran out of patience.
    Linger,
    /// `health.timeout_ms`: an active health check took too long (it fails).
    HealthCheck,
}

impl TimeoutKind {
    /// The config key that set this deadline, for log lines.
    pub fn config_key(self) -> &'static str {
        match self {
            TimeoutKind::Connect | TimeoutKind::Queue => "connect_ms",
            TimeoutKind::UpstreamRead | TimeoutKind::ClientBody => "read_ms",
            TimeoutKind::Write => "write_ms",
            TimeoutKind::Total => "total_ms",
            TimeoutKind::ClientHeader => "client_header_ms",
            TimeoutKind::Keepalive => "keepalive_ms",
            TimeoutKind::TunnelIdle => "tunnel_idle_ms",
            TimeoutKind::Linger => "linger",
            TimeoutKind::HealthCheck => "health.timeout_ms",
        }
    }
}

/// How long a lingering close waits for the client to close its side.
pub const LINGER_MS: u64 = 5_000;

/// The earliest of several candidate deadlines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Earliest(Option<(u64, TimeoutKind)>);

impl Earliest {
    /// Take `at` into account. On a tie the first one considered wins, so
    /// callers list the more specific deadline first.
    pub fn consider(&mut self, at: u64, kind: TimeoutKind) {
        match self.0 {
            Some((best, _)) if best <= at => {}
            _ => self.0 = Some((at, kind)),
        }
    }

    pub fn get(self) -> Option<(u64, TimeoutKind)> {
        self.0
    }
}
