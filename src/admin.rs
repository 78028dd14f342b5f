//! The metrics listener's three pages: `GET /metrics` (Prometheus text),
//! `GET /metrics.json` (the same figures for scripts) and `GET /` (a small
//! self-refreshing HTML panel for a person).
//!
//! Sans-IO: a parsed request head in, a complete HTTP response out. The
//! reactor reads and parses admin requests exactly like proxy requests (same
//! limits, same 400/431/408), then asks [`answer`] instead of forwarding.
//! Anything but these three paths is 404; anything but GET/HEAD is 405; every
//! answer closes the connection. The listener is not a way in.
//!
//! The HTML panel itself is drawn in `src/panel.rs`.
//!
//! Lesson: `lessons/13-measuring`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::http::errors::write_error_response;
use crate::http::head::origin_form;
use crate::http::request::RequestHead;
use crate::metrics::{
    ErrorKind, Gauges, Histogram, LATENCY_BUCKETS_US, Metrics, TIMEOUT_KINDS, timeout_label,
};
use crate::panel;
use crate::series::Series;

/// Append the whole response to `request` to `out`; returns its status.
pub fn answer(
    request: &RequestHead,
    metrics: &Metrics,
    gauges: &Gauges,
    series: &Series,
    out: &mut Vec<u8>,
) -> u16 {
    let target = origin_form(&request.target);
    let path = target.split('?').next().unwrap_or("");
    let page = match path {
        "/metrics" => Page::Prometheus,
        "/metrics.json" => Page::Json,
        "/" => Page::Panel,
        _ => {
            write_error_response(404, &[], out);
            return 404;
        }
    };
    if request.method != "GET" && request.method != "HEAD" {
        write_error_response(405, &["Allow: GET, HEAD"], out);
        return 405;
    }
    let (content_type, body) = match page {
        Page::Prometheus => (
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus(metrics, gauges),
        ),
        Page::Json => ("application/json", json(metrics, gauges)),
        Page::Panel => (
            "text/html; charset=utf-8",
            panel::panel(metrics, gauges, series),
        ),
    };
    let _ = write!(
        Sink(out),
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if request.method == "GET" {
        out.extend_from_slice(body.as_bytes());
    }
    200
}

enum Page {
    Prometheus,
    Json,
    Panel,
}

/// `fmt::Write` into a byte vector.
struct Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn class_label(class: usize) -> &'static str {
    ["none", "1xx", "2xx", "3xx", "4xx", "5xx"][class.min(5)]
}

/// The text exposition format (version 0.0.4): per metric family a HELP
/// line, a TYPE line, then its samples.
pub fn prometheus(metrics: &Metrics, gauges: &Gauges) -> String {
    let mut s = String::with_capacity(8 * 1024);

    family(
        &mut s,
        "ferroxy_requests_total",
        "counter",
        "Requests answered, by status code (code 0: the connection ended before any status).",
    );
    for (code, n) in metrics.statuses() {
        let _ = writeln!(
            s,
            "ferroxy_requests_total{{code=\"{code}\",class=\"{}\"}} {n}",
            class_label((code / 100) as usize)
        );
    }
    family(
        &mut s,
        "ferroxy_requests_by_class_total",
        "counter",
        "Requests answered, by status class.",
    );
    for (class, n) in metrics.by_class().iter().enumerate() {
        let _ = writeln!(
            s,
            "ferroxy_requests_by_class_total{{class=\"{}\"}} {n}",
            class_label(class)
        );
    }

    family(
        &mut s,
        "ferroxy_upstream_requests_total",
        "counter",
        "Requests forwarded, by upstream.",
    );
    for u in &metrics.upstreams {
        let _ = writeln!(
            s,
            "ferroxy_upstream_requests_total{{{}}} {}",
            upstream_labels(u),
            u.requests
        );
    }
    family(
        &mut s,
        "ferroxy_upstream_connects_total",
        "counter",
        "Connections opened to each upstream.",
    );
    for u in &metrics.upstreams {
        let _ = writeln!(
            s,
            "ferroxy_upstream_connects_total{{{}}} {}",
            upstream_labels(u),
            u.connects
        );
    }
    family(
        &mut s,
        "ferroxy_upstream_connect_failures_total",
        "counter",
        "Connects to each upstream that failed.",
    );
    for u in &metrics.upstreams {
        let _ = writeln!(
            s,
            "ferroxy_upstream_connect_failures_total{{{}}} {}",
            upstream_labels(u),
            u.connect_failures
        );
    }
    for (name, help, value) in [
        (
            "ferroxy_upstream_ejections_total",
            "Times health took each upstream out of rotation (checks or passive ejection).",
            (|u| u.ejections) as fn(&crate::metrics::UpstreamCounters) -> u64,
        ),
        (
            "ferroxy_upstream_health_checks_passed_total",
            "Active health checks of each upstream that passed.",
            |u| u.checks_passed,
        ),
        (
            "ferroxy_upstream_health_checks_failed_total",
            "Active health checks of each upstream that failed.",
            |u| u.checks_failed,
        ),
    ] {
        family(&mut s, name, "counter", help);
        for u in &metrics.upstreams {
            let _ = writeln!(s, "{name}{{{}}} {}", upstream_labels(u), value(u));
        }
    }
    family(
        &mut s,
        "ferroxy_upstream_up",
        "gauge",
        "1 while the upstream is in rotation, 0 while health has it down or half-open.",
    );
    for (u, up) in metrics.upstreams.iter().zip(&gauges.upstream_up) {
        let _ = writeln!(
            s,
            "ferroxy_upstream_up{{{}}} {}",
            upstream_labels(u),
            u8::from(*up)
        );
    }
    for (name, help, n) in [
        (
            "ferroxy_retries_total",
            "Requests sent again to another upstream (retries).",
            metrics.retries,
        ),
        (
            "ferroxy_retry_budget_refusals_total",
            "Retries refused because retries in flight reached 20% of requests in flight.",
            metrics.retry_budget_refusals,
        ),
        (
            "ferroxy_rate_limited_total",
            "Requests answered 429 by rate_limit.",
            metrics.rate_limited,
        ),
    ] {
        family(&mut s, name, "counter", help);
        let _ = writeln!(s, "{name} {n}");
    }
    for (name, help, values) in [
        (
            "ferroxy_upstream_active_connections",
            "Upstream connections carrying a request or connecting.",
            &gauges.upstream_active,
        ),
        (
            "ferroxy_upstream_idle_connections",
            "Upstream connections idle in the pool.",
            &gauges.upstream_idle,
        ),
        (
            "ferroxy_upstream_queue_length",
            "Requests waiting for a connection slot (max_conns_per_upstream).",
            &gauges.upstream_queued,
        ),
    ] {
        family(&mut s, name, "gauge", help);
        for (u, value) in metrics.upstreams.iter().zip(values.iter()) {
            let _ = writeln!(s, "{name}{{{}}} {value}", upstream_labels(u));
        }
    }

    tls_families(&mut s, &metrics.tls);

    family(
        &mut s,
        "ferroxy_client_connections",
        "gauge",
        "Open client connections.",
    );
    let _ = writeln!(
        s,
        "ferroxy_client_connections {}",
        gauges.client_connections
    );
    family(
        &mut s,
        "ferroxy_accepted_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        s,
        "ferroxy_accepted_connections_total {}",
        metrics.accepted_connections
    );
    family(
        &mut s,
        "ferroxy_bytes_total",
        "counter",
        "Bytes forwarded: request bodies to upstreams, responses (heads included) to clients.",
    );
    let _ = writeln!(
        s,
        "ferroxy_bytes_total{{direction=\"to_upstream\"}} {}",
        metrics.bytes_in
    );
    let _ = writeln!(
        s,
        "ferroxy_bytes_total{{direction=\"to_client\"}} {}",
        metrics.bytes_out
    );
    family(
        &mut s,
        "ferroxy_buffer_bytes",
        "gauge",
        "Buffer memory held by all connections.",
    );
    let _ = writeln!(s, "ferroxy_buffer_bytes {}", gauges.buffer_bytes);

    family(
        &mut s,
        "ferroxy_timeouts_total",
        "counter",
        "Timeouts that fired, by kind (named after their config key).",
    );
    for (kind, n) in TIMEOUT_KINDS.iter().zip(metrics.timeouts.iter()) {
        let _ = writeln!(
            s,
            "ferroxy_timeouts_total{{kind=\"{}\"}} {n}",
            timeout_label(*kind)
        );
    }
    family(
        &mut s,
        "ferroxy_errors_total",
        "counter",
        "Errors, by kind.",
    );
    for (kind, n) in ErrorKind::ALL.iter().zip(metrics.errors.iter()) {
        let _ = writeln!(s, "ferroxy_errors_total{{kind=\"{}\"}} {n}", kind.label());
    }

    family(
        &mut s,
        "ferroxy_request_duration_seconds",
        "histogram",
        "Time from a complete request head to the last response byte.",
    );
    let mut cumulative = 0u64;
    for (bound, n) in LATENCY_BUCKETS_US.iter().zip(metrics.latency.counts.iter()) {
        cumulative += n;
        let _ = writeln!(
            s,
            "ferroxy_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
            seconds(*bound)
        );
    }
    let _ = writeln!(
        s,
        "ferroxy_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        metrics.latency.count
    );
    let _ = writeln!(
        s,
        "ferroxy_request_duration_seconds_sum {}",
        metrics.latency.sum_us as f64 / 1e6
    );
    let _ = writeln!(
        s,
        "ferroxy_request_duration_seconds_count {}",
        metrics.latency.count
    );

    family(
        &mut s,
        "ferroxy_uptime_seconds",
        "gauge",
        "Seconds since the proxy started.",
    );
    let _ = writeln!(s, "ferroxy_uptime_seconds {:.3}", gauges.uptime_seconds);
    s
}

/// Microseconds as a decimal number of seconds, without float noise
/// (`0.0005`, not `0.0005000000000000001`).
fn seconds(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A metric family's HELP and TYPE lines.
fn family(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

/// The TLS listener's handshakes: done by version, resumed, failed by
/// reason (every label always present, so a rate never starts from a gap).
fn tls_families(s: &mut String, tls: &crate::metrics::TlsCounters) {
    family(
        s,
        "ferroxy_tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by protocol version.",
    );
    for (version, n) in crate::metrics::TLS_VERSIONS.iter().zip(&tls.handshakes) {
        let _ = writeln!(
            s,
            "ferroxy_tls_handshakes_total{{version=\"{version}\"}} {n}"
        );
    }
    family(
        s,
        "ferroxy_tls_resumed_handshakes_total",
        "counter",
        "TLS handshakes that resumed an earlier session (ticket or cache).",
    );
    let _ = writeln!(s, "ferroxy_tls_resumed_handshakes_total {}", tls.resumed);
    family(
        s,
        "ferroxy_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by reason.",
    );
    for (reason, n) in crate::tls::session::FAILURE_REASONS
        .iter()
        .zip(&tls.failures)
    {
        let _ = writeln!(
            s,
            "ferroxy_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// The TLS part of the JSON page.
#[derive(Serialize)]
pub struct TlsSnapshot {
    pub handshakes: BTreeMap<&'static str, u64>,
    pub resumed: u64,
    pub handshake_failures: BTreeMap<&'static str, u64>,
}

impl TlsSnapshot {
    fn of(tls: &crate::metrics::TlsCounters) -> TlsSnapshot {
        TlsSnapshot {
            handshakes: crate::metrics::TLS_VERSIONS
                .iter()
                .copied()
                .zip(tls.handshakes.iter().copied())
                .collect(),
            resumed: tls.resumed,
            handshake_failures: crate::tls::session::FAILURE_REASONS
                .iter()
                .copied()
                .zip(tls.failures.iter().copied())
                .collect(),
        }
    }
}

/// The figures the JSON page and the panel show.
#[derive(Serialize)]
pub struct Snapshot<'a> {
    pub uptime_seconds: f64,
    pub requests_total: u64,
    pub requests_per_second: f64,
    pub by_status: BTreeMap<String, u64>,
    pub by_class: BTreeMap<&'static str, u64>,
    pub upstreams: Vec<UpstreamSnapshot<'a>>,
    pub client_connections: usize,
    pub accepted_connections: u64,
    pub bytes_to_upstream: u64,
    pub bytes_to_client: u64,
    pub buffer_bytes: usize,
    pub timeouts: BTreeMap<&'static str, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    pub latency_ms: Latency,
    pub retries: u64,
    pub retry_budget_refusals: u64,
    pub rate_limited: u64,
    pub tls: TlsSnapshot,
}

#[derive(Serialize)]
pub struct UpstreamSnapshot<'a> {
    pub address: &'a str,
    pub group: &'a str,
    pub requests: u64,
    /// Fraction of all forwarded requests (0..1).
    pub share: f64,
    pub connects: u64,
    pub connect_failures: u64,
    pub active: usize,
    pub idle: usize,
    pub queued: usize,
    /// `up`, `down` or `half-open`.
    pub state: &'static str,
    pub ejections: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
}

#[derive(Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Latency {
    fn of(h: &Histogram) -> Latency {
        let ms = |q| h.quantile_us(q).map(|us| (us / 10.0).round() / 100.0);
        Latency {
            count: h.count,
            mean: (h.count > 0).then(|| (h.sum_us as f64 / h.count as f64 / 10.0).round() / 100.0),
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
        }
    }
}

pub fn snapshot<'a>(metrics: &'a Metrics, gauges: &Gauges) -> Snapshot<'a> {
    let forwarded: u64 = metrics.upstreams.iter().map(|u| u.requests).sum();
    let at = |v: &Vec<usize>, i: usize| v.get(i).copied().unwrap_or(0);
    Snapshot {
        uptime_seconds: gauges.uptime_seconds,
        requests_total: metrics.requests_total(),
        requests_per_second: gauges.requests_per_second,
        by_status: metrics
            .statuses()
            .map(|(c, n)| (c.to_string(), n))
            .collect(),
        by_class: metrics
            .by_class()
            .iter()
            .enumerate()
            .map(|(class, &n)| (class_label(class), n))
            .collect(),
        upstreams: metrics
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| UpstreamSnapshot {
                address: &u.address,
                group: &u.group,
                requests: u.requests,
                share: if forwarded == 0 {
                    0.0
                } else {
                    u.requests as f64 / forwarded as f64
                },
                connects: u.connects,
                connect_failures: u.connect_failures,
                active: at(&gauges.upstream_active, i),
                idle: at(&gauges.upstream_idle, i),
                queued: at(&gauges.upstream_queued, i),
                state: gauges.upstream_state.get(i).copied().unwrap_or("up"),
                ejections: u.ejections,
                checks_passed: u.checks_passed,
                checks_failed: u.checks_failed,
            })
            .collect(),
        client_connections: gauges.client_connections,
        accepted_connections: metrics.accepted_connections,
        bytes_to_upstream: metrics.bytes_in,
        bytes_to_client: metrics.bytes_out,
        buffer_bytes: gauges.buffer_bytes,
        timeouts: TIMEOUT_KINDS
            .iter()
            .zip(metrics.timeouts.iter())
            .map(|(k, &n)| (timeout_label(*k), n))
            .collect(),
        errors: ErrorKind::ALL
            .iter()
            .zip(metrics.errors.iter())
            .map(|(k, &n)| (k.label(), n))
            .collect(),
        latency_ms: Latency::of(&metrics.latency),
        retries: metrics.retries,
        retry_budget_refusals: metrics.retry_budget_refusals,
        rate_limited: metrics.rate_limited,
        tls: TlsSnapshot::of(&metrics.tls),
    }
}

pub fn json(metrics: &Metrics, gauges: &Gauges) -> String {
    serde_json::to_string_pretty(&snapshot(metrics, gauges)).unwrap_or_else(|_| "{}".to_string())
}

/// `upstream="127.0.0.1:9001"` for the top-level upstreams (the series
/// every scrape had before groups existed, unchanged), and
/// `upstream="127.0.0.1:9101",group="api"` for a named group's: the same
/// address may serve two groups, and each is its own series.
fn upstream_labels(u: &crate::metrics::UpstreamCounters) -> String {
    if u.group.is_empty() || u.group == crate::config::DEFAULT_GROUP {
        format!("upstream=\"{}\"", label(&u.address))
    } else {
        format!(
            "upstream=\"{}\",group=\"{}\"",
            label(&u.address),
            label(&u.group)
        )
    }
}
