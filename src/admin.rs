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
//! Lesson: `lessons/13-measuring`.
//!
//! A little over 500 lines: three pages and the formatting each needs, kept
//! together because they render the same figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::http::errors::write_error_response;
use crate::http::head::origin_form;
use crate::http::request::RequestHead;
use crate::metrics::{
    ErrorKind, Gauges, Histogram, LATENCY_BUCKETS_US, Metrics, TIMEOUT_KINDS, timeout_label,
};

/// Append the whole response to `request` to `out`; returns its status.
pub fn answer(request: &RequestHead, metrics: &Metrics, gauges: &Gauges, out: &mut Vec<u8>) -> u16 {
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
        Page::Panel => ("text/html; charset=utf-8", panel(metrics, gauges)),
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
    let family = |s: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} {kind}");
    };

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
            "ferroxy_upstream_requests_total{{upstream=\"{}\"}} {}",
            label(&u.address),
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
            "ferroxy_upstream_connects_total{{upstream=\"{}\"}} {}",
            label(&u.address),
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
            "ferroxy_upstream_connect_failures_total{{upstream=\"{}\"}} {}",
            label(&u.address),
            u.connect_failures
        );
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
            let _ = writeln!(s, "{name}{{upstream=\"{}\"}} {value}", label(&u.address));
        }
    }

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
}

#[derive(Serialize)]
pub struct UpstreamSnapshot<'a> {
    pub address: &'a str,
    pub requests: u64,
    /// Fraction of all forwarded requests (0..1).
    pub share: f64,
    pub connects: u64,
    pub connect_failures: u64,
    pub active: usize,
    pub idle: usize,
    pub queued: usize,
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
    }
}

pub fn json(metrics: &Metrics, gauges: &Gauges) -> String {
    serde_json::to_string_pretty(&snapshot(metrics, gauges)).unwrap_or_else(|_| "{}".to_string())
}

/// Minimal HTML escaping for text we put in the page.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The panel: server-rendered, refreshed by the browser every 2 s (no
/// script needed), readable at a glance while `wrk` runs.
pub fn panel(metrics: &Metrics, gauges: &Gauges) -> String {
    let snap = snapshot(metrics, gauges);
    let fmt_ms = |v: Option<f64>| v.map_or("-".to_string(), |ms| format!("{ms:.2} ms"));
    let mut s = String::with_capacity(8 * 1024);
    s.push_str(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"2\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>ferroxy</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}",
        "h1{font-size:1.3rem;margin:0 0 1rem}h2{font-size:1rem;margin:0 0 .5rem;color:#555}",
        ".grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:1rem}",
        ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem}",
        ".big{font-size:1.8rem;font-weight:600}.muted{color:#777;font-size:.85rem}",
        "table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.15rem .4rem;font-size:.9rem}",
        "th{color:#555;font-weight:500}.n{text-align:right;font-variant-numeric:tabular-nums}",
        ".bar{background:#4a7;height:.6rem;border-radius:3px}",
        // A table wider than its card scrolls inside it, never under the
        // next card; the upstream table gets a whole row.
        ".card{min-width:0;overflow-x:auto}.wide{grid-column:1/-1}.wide table{width:auto}",
        "</style></head><body>"
    ));
    let _ = write!(
        s,
        "<h1>ferroxy <span class=\"muted\">up {:.0} s &middot; refreshes every 2 s</span></h1><div class=\"grid\">",
        snap.uptime_seconds
    );
    let _ = write!(
        s,
        "<div class=\"card\"><h2>Requests per second</h2><div class=\"big\" id=\"rps\">{:.1}</div>\
         <div class=\"muted\">{} requests in all</div></div>",
        snap.requests_per_second, snap.requests_total
    );
    let _ = write!(
        s,
        "<div class=\"card\"><h2>Latency</h2><table><tr><th>p50</th><td class=\"n\">{}</td></tr>\
         <tr><th>p95</th><td class=\"n\">{}</td></tr><tr><th>p99</th><td class=\"n\">{}</td></tr></table></div>",
        fmt_ms(snap.latency_ms.p50),
        fmt_ms(snap.latency_ms.p95),
        fmt_ms(snap.latency_ms.p99)
    );
    let _ = write!(
        s,
        "<div class=\"card\"><h2>Connections</h2><div class=\"big\">{}</div>\
         <div class=\"muted\">client connections open; {} accepted in all; {} KiB buffered</div></div>",
        snap.client_connections,
        snap.accepted_connections,
        snap.buffer_bytes / 1024
    );
    s.push_str("<div class=\"card\"><h2>Status mix</h2><table>");
    let total = snap.requests_total.max(1) as f64;
    for (code, n) in &snap.by_status {
        let _ = write!(
            s,
            "<tr><th>{}</th><td class=\"n\">{n}</td><td style=\"width:50%\"><div class=\"bar\" style=\"width:{:.0}%\"></div></td></tr>",
            html(code),
            *n as f64 * 100.0 / total
        );
    }
    if snap.by_status.is_empty() {
        s.push_str("<tr><td class=\"muted\">no requests yet</td></tr>");
    }
    s.push_str("</table></div>");
    s.push_str("<div class=\"card wide\"><h2>Upstreams</h2><table><tr><th>address</th><th class=\"n\">share</th><th class=\"n\">active</th><th class=\"n\">idle</th><th class=\"n\">queued</th></tr>");
    for u in &snap.upstreams {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{:.0}% ({})</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            html(u.address),
            u.share * 100.0,
            u.requests,
            u.active,
            u.idle,
            u.queued
        );
    }
    s.push_str("</table></div>");
    s.push_str("<div class=\"card\"><h2>Timeouts and errors</h2><table>");
    let mut any = false;
    for (kind, n) in snap.timeouts.iter().filter(|(_, n)| **n > 0) {
        any = true;
        let _ = write!(
            s,
            "<tr><th>timeout {kind}</th><td class=\"n\">{n}</td></tr>"
        );
    }
    for (kind, n) in snap.errors.iter().filter(|(_, n)| **n > 0) {
        any = true;
        let _ = write!(s, "<tr><th>{kind}</th><td class=\"n\">{n}</td></tr>");
    }
    if !any {
        s.push_str("<tr><td class=\"muted\">none</td></tr>");
    }
    s.push_str("</table></div></div>");
    s.push_str("<p class=\"muted\">Also: <a href=\"/metrics\">/metrics</a> (Prometheus), <a href=\"/metrics.json\">/metrics.json</a></p></body></html>\n");
    s
}
