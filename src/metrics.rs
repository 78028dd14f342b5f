//! Metrics: what the proxy has done, as plain counters and one fixed-bucket
//! histogram, owned by the loop.
//!
//! One thread owns every connection, so it can own the counters too: no
//! atomics, no lock, no allocation and no syscall on the request path, just
//! `+= 1`. The cost moves to the reader: a scrape of `/metrics` renders
//! everything at once (see `src/admin.rs`), which is cheap because it is
//! rare.
//!
//! Counters only go up; a rate (requests per second) is the difference of
//! two readings divided by the time between them. Latency goes into a
//! histogram with fixed buckets: recording is one comparison loop and one
//! increment, and percentiles are estimated afterwards from the bucket
//! counts (exactly as Prometheus's `histogram_quantile` does), never by
//! keeping every sample.
//!
//! Lesson: `lessons/13-measuring`.

use std::net::SocketAddr;

use serde::Serialize;

use crate::timeouts::TimeoutKind;

/// Upper bounds of the latency buckets, in microseconds (the last bucket,
/// `+Inf`, is implicit). Roughly 1-2.5-5 steps from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A histogram with the fixed buckets above.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub counts: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.counts[bucket] += 1;
        self.sum_us += micros;
        self.count += 1;
    }

    /// Estimate the `q` quantile (0.0..=1.0) in microseconds, by linear
    /// interpolation inside the bucket where it falls. `None` when empty.
    /// An estimate in the `+Inf` bucket is reported as the last finite bound.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS_US.get(i) else {
                    return Some(*LATENCY_BUCKETS_US.last()? as f64);
                };
                let lower = if i == 0 { 0 } else { LATENCY_BUCKETS_US[i - 1] };
                let within = (rank - below as f64) / n as f64;
                return Some(lower as f64 + (upper - lower) as f64 * within);
            }
            below += n;
        }
        LATENCY_BUCKETS_US.last().map(|&b| b as f64)
    }
}

/// Why something went wrong, for `ferroxy_errors_total{kind=...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A request refused as malformed or over a limit (4xx of our own).
    BadRequest,
    /// An upstream refused (or failed) the connection.
    UpstreamRefused,
    /// An upstream connection failed after connecting (reset, closed early).
    UpstreamReset,
    /// An upstream sent a response head we could not accept (502).
    UpstreamBadResponse,
    /// An upstream body ended before its framing said.
    UpstreamTruncated,
    /// The client went away in the middle of an exchange.
    ClientAborted,
    /// A connection over `max_client_conns` (503).
    OverClientLimit,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::BadRequest,
        ErrorKind::UpstreamRefused,
        ErrorKind::UpstreamReset,
        ErrorKind::UpstreamBadResponse,
        ErrorKind::UpstreamTruncated,
        ErrorKind::ClientAborted,
        ErrorKind::OverClientLimit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UpstreamRefused => "upstream_refused",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamBadResponse => "upstream_bad_response",
            ErrorKind::UpstreamTruncated => "upstream_truncated",
            ErrorKind::ClientAborted => "client_aborted",
            ErrorKind::OverClientLimit => "over_client_limit",
        }
    }
}

/// Every timeout kind, in a fixed order for the counters.
pub const TIMEOUT_KINDS: [TimeoutKind; 11] = [
    TimeoutKind::Connect,
    TimeoutKind::UpstreamRead,
    TimeoutKind::ClientBody,
    TimeoutKind::Write,
    TimeoutKind::Total,
    TimeoutKind::ClientHeader,
    TimeoutKind::Keepalive,
    TimeoutKind::TunnelIdle,
    TimeoutKind::Queue,
    TimeoutKind::Linger,
    TimeoutKind::HealthCheck,
];

/// Label for a timeout kind in metrics (`connect`, `upstream_read`, ...).
pub fn timeout_label(kind: TimeoutKind) -> &'static str {
    match kind {
        TimeoutKind::Connect => "connect",
        TimeoutKind::UpstreamRead => "upstream_read",
        TimeoutKind::ClientBody => "client_body",
        TimeoutKind::Write => "write",
        TimeoutKind::Total => "total",
        TimeoutKind::ClientHeader => "client_header",
        TimeoutKind::Keepalive => "keepalive",
        TimeoutKind::TunnelIdle => "tunnel_idle",
        TimeoutKind::Queue => "queue",
        TimeoutKind::Linger => "linger",
        TimeoutKind::HealthCheck => "health_check",
    }
}

/// Counters for one upstream.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpstreamCounters {
    pub address: String,
    /// The upstream group it belongs to (`default` for `upstreams`).
    pub group: String,
    /// Exchanges it served (any status).
    pub requests: u64,
    /// Connections opened to it.
    pub connects: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Times health took it out of rotation (checks or ejection).
    pub ejections: u64,
    /// Active health checks that passed, and that failed.
    pub checks_passed: u64,
    pub checks_failed: u64,
}

/// Everything counted since start.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// Requests counted, all statuses together.
    pub requests: u64,
    /// Requests by final status code, index = code (0 = no status: the
    /// client went away first).
    #[serde(skip)]
    pub by_status: Vec<u64>,
    pub upstreams: Vec<UpstreamCounters>,
    pub accepted_connections: u64,
    /// Request body bytes sent to upstreams.
    pub bytes_in: u64,
    /// Bytes sent to clients (heads included).
    pub bytes_out: u64,
    #[serde(skip)]
    pub timeouts: [u64; TIMEOUT_KINDS.len()],
    #[serde(skip)]
    pub errors: [u64; ErrorKind::ALL.len()],
    pub latency: Histogram,
    /// Requests sent again to another upstream (`retries`).
    pub retries: u64,
    /// Retries the retry budget refused.
    pub retry_budget_refusals: u64,
    /// Requests answered 429 by `rate_limit`.
    pub rate_limited: u64,
    /// The TLS listener's handshakes.
    pub tls: TlsCounters,
}

/// Handshakes on the TLS listener (`src/tls`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsCounters {
    /// Completed, by version, in the order of [`TLS_VERSIONS`].
    pub handshakes: [u64; TLS_VERSIONS.len()],
    /// Of those, resumed (a ticket or a cached session: no certificate
    /// signature).
    pub resumed: u64,
    /// Failed, by reason, in the order of
    /// [`crate::tls::session::FAILURE_REASONS`].
    pub failures: [u64; crate::tls::session::FAILURE_REASONS.len()],
}

/// The versions the TLS listener offers, as the metrics label them.
pub const TLS_VERSIONS: [&str; 2] = ["TLSv1.2", "TLSv1.3"];

impl TlsCounters {
    pub fn record_handshake(&mut self, version: &str, resumed: bool) {
        if let Some(i) = TLS_VERSIONS.iter().position(|&v| v == version) {
            self.handshakes[i] += 1;
        }
        self.resumed += u64::from(resumed);
    }

    pub fn record_failure(&mut self, reason: &str) {
        let reasons = crate::tls::session::FAILURE_REASONS;
        let i = reasons
            .iter()
            .position(|&r| r == reason)
            .unwrap_or(reasons.len() - 1);
        self.failures[i] += 1;
    }

    fn add(&mut self, other: &TlsCounters) {
        for (mine, theirs) in self.handshakes.iter_mut().zip(&other.handshakes) {
            *mine += theirs;
        }
        self.resumed += other.resumed;
        for (mine, theirs) in self.failures.iter_mut().zip(&other.failures) {
            *mine += theirs;
        }
    }
}

impl Metrics {
    /// `upstreams`: every group's upstreams, as (group, address), in the
    /// reactor's flat order (see `UpstreamGroup::first`).
    pub fn new(upstreams: &[(String, SocketAddr)]) -> Metrics {
        Metrics {
            requests: 0,
            by_status: vec![0; 600],
            upstreams: upstreams
                .iter()
                .map(|(group, addr)| UpstreamCounters {
                    address: addr.to_string(),
                    group: group.clone(),
                    ..UpstreamCounters::default()
                })
                .collect(),
            accepted_connections: 0,
            bytes_in: 0,
            bytes_out: 0,
            timeouts: [0; TIMEOUT_KINDS.len()],
            errors: [0; ErrorKind::ALL.len()],
            latency: Histogram::default(),
            retries: 0,
            retry_budget_refusals: 0,
            rate_limited: 0,
            tls: TlsCounters::default(),
        }
    }

    /// A reload changed an upstream list: keep the counters of upstreams
    /// that stay (by group and address), start the new ones at zero.
    pub fn set_upstreams(&mut self, upstreams: &[(String, SocketAddr)]) {
        let old = std::mem::take(&mut self.upstreams);
        self.upstreams = upstreams
            .iter()
            .map(|(group, addr)| {
                let address = addr.to_string();
                old.iter()
                    .find(|u| u.address == address && &u.group == group)
                    .cloned()
                    .unwrap_or(UpstreamCounters {
                        address,
                        group: group.clone(),
                        ..UpstreamCounters::default()
                    })
            })
            .collect();
    }

    /// One exchange ended (or one request was refused): `upstream` is its
    /// index in the current list, if it reached one.
    pub fn record_request(
        &mut self,
        status: u16,
        upstream: Option<usize>,
        micros: u64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.requests += 1;
        if let Some(slot) = self.by_status.get_mut(status as usize) {
            *slot += 1;
        }
        if let Some(counters) = upstream.and_then(|i| self.upstreams.get_mut(i)) {
            counters.requests += 1;
        }
        self.latency.record(micros);
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
    }

    pub fn record_timeout(&mut self, kind: TimeoutKind) {
        if let Some(i) = TIMEOUT_KINDS.iter().position(|&k| k == kind) {
            self.timeouts[i] += 1;
        }
    }

    pub fn record_error(&mut self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|&k| k == kind) {
            self.errors[i] += 1;
        }
    }

    pub fn record_connect(&mut self, upstream: usize, failed: bool) {
        if let Some(counters) = self.upstreams.get_mut(upstream) {
            counters.connects += 1;
            if failed {
                counters.connect_failures += 1;
            }
        }
    }

    /// Requests counted so far.
    pub fn requests_total(&self) -> u64 {
        self.requests
    }

    /// `(code, count)` for every code seen, ascending.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.by_status
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(code, &n)| (code as u16, n))
    }

    /// Add another worker's counters to these (upstreams matched by
    /// group and address: each worker reloads on its own, so their lists may differ
    /// for a moment).
    pub fn add(&mut self, other: &Metrics) {
        self.requests += other.requests;
        for (mine, theirs) in self.by_status.iter_mut().zip(&other.by_status) {
            *mine += theirs;
        }
        for theirs in &other.upstreams {
            if let Some(mine) = self
                .upstreams
                .iter_mut()
                .find(|u| u.address == theirs.address && u.group == theirs.group)
            {
                mine.requests += theirs.requests;
                mine.connects += theirs.connects;
                mine.connect_failures += theirs.connect_failures;
                mine.ejections += theirs.ejections;
                mine.checks_passed += theirs.checks_passed;
                mine.checks_failed += theirs.checks_failed;
            }
        }
        self.accepted_connections += other.accepted_connections;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (mine, theirs) in self.timeouts.iter_mut().zip(&other.timeouts) {
            *mine += theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(&other.errors) {
            *mine += theirs;
        }
        for (mine, theirs) in self.latency.counts.iter_mut().zip(&other.latency.counts) {
            *mine += theirs;
        }
        self.latency.sum_us += other.latency.sum_us;
        self.latency.count += other.latency.count;
        self.retries += other.retries;
        self.retry_budget_refusals += other.retry_budget_refusals;
        self.rate_limited += other.rate_limited;
        self.tls.add(&other.tls);
    }

    /// Count per status class: index 0 = no status, 1 = 1xx ... 5 = 5xx.
    pub fn by_class(&self) -> [u64; 6] {
        let mut classes = [0u64; 6];
        for (code, n) in self.statuses() {
            classes[(code / 100).min(5) as usize] += n;
        }
        classes
    }
}

impl Gauges {
    /// Add another worker's gauges (per-upstream figures by position).
    pub fn add(&mut self, other: &Gauges) {
        self.client_connections += other.client_connections;
        self.buffer_bytes += other.buffer_bytes;
        self.requests_per_second += other.requests_per_second;
        for (mine, theirs) in [
            (&mut self.upstream_active, &other.upstream_active),
            (&mut self.upstream_idle, &other.upstream_idle),
            (&mut self.upstream_queued, &other.upstream_queued),
        ] {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        // Each worker keeps its own health verdicts: an upstream is shown
        // up only if every worker has it up, and the worst state is named.
        for (m, t) in self.upstream_up.iter_mut().zip(&other.upstream_up) {
            *m &= t;
        }
        for (m, t) in self.upstream_state.iter_mut().zip(&other.upstream_state) {
            if *t != "up" {
                *m = t;
            }
        }
    }
}

/// What the loop holds right now (gauges), read at scrape time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Gauges {
    pub uptime_seconds: f64,
    pub client_connections: usize,
    /// Per upstream, in config order.
    pub upstream_active: Vec<usize>,
    pub upstream_idle: Vec<usize>,
    pub upstream_queued: Vec<usize>,
    /// Health: in rotation (`ferroxy_upstream_up`), and as a word
    /// (`up`, `down`, `half-open`).
    pub upstream_up: Vec<bool>,
    pub upstream_state: Vec<&'static str>,
    pub buffer_bytes: usize,
    /// Requests per second over the last few seconds.
    pub requests_per_second: f64,
}

/// Requests per second over the last ten seconds or so. A reading of the
/// request counter is kept at most once a second, in a fixed ring: no
/// allocation after start, one comparison per loop turn.
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    /// `(ms, total)` readings, oldest first once full.
    samples: [(u64, u64); 11],
    next: usize,
    len: usize,
}

impl RateWindow {
    /// Offer a reading; kept only if a second has passed since the last.
    pub fn sample(&mut self, now_ms: u64, total: u64) {
        if self.len > 0 {
            let last = (self.next + self.samples.len() - 1) % self.samples.len();
            if now_ms < self.samples[last].0 + 1000 {
                return;
            }
        }
        self.samples[self.next] = (now_ms, total);
        self.next = (self.next + 1) % self.samples.len();
        self.len = (self.len + 1).min(self.samples.len());
    }

    /// The rate from the oldest reading kept to `(now_ms, total)`.
    pub fn per_second(&self, now_ms: u64, total: u64) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        let oldest = (self.next + self.samples.len() - self.len) % self.samples.len();
        let (then, then_total) = self.samples[oldest];
        let elapsed = now_ms.saturating_sub(then);
        if elapsed == 0 {
            return 0.0;
        }
        total.saturating_sub(then_total) as f64 * 1000.0 / elapsed as f64
    }
}
