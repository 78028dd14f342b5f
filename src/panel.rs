//! The metrics panel: `GET /` on the metrics listener, one HTML page drawn
//! on the server from the same snapshot as `/metrics.json`, refreshed by the
//! browser every 2 s (no script), readable at a glance while `wrk` runs.
//! The upstream table shows each upstream's health; the charts are the last
//! few minutes from `src/series.rs`.
//!
//! Lesson: `lessons/13-measuring`.

use std::fmt::Write as _;

use crate::admin::snapshot;
use crate::metrics::{Gauges, Metrics};
use crate::series::{SERIES_SECONDS, Series, charts_html};

/// Minimal HTML escaping for text we put in the page.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The panel: server-rendered, refreshed by the browser every 2 s (no
/// script needed), readable at a glance while `wrk` runs.
pub fn panel(metrics: &Metrics, gauges: &Gauges, series: &Series) -> String {
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
        ".state-up{color:#2a7a3a}.state-down{color:#b33;font-weight:600}.state-half-open{color:#b80;font-weight:600}",
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
    let _ = write!(
        s,
        "<div class=\"card wide\"><h2>The last {} minutes <span class=\"muted\">one point a second, {} so far</span></h2>{}</div>",
        SERIES_SECONDS / 60,
        series.len(),
        charts_html(series)
    );
    s.push_str("<div class=\"card wide\"><h2>Upstreams</h2><table><tr><th>group</th><th>address</th><th>state</th><th class=\"n\">share</th><th class=\"n\">active</th><th class=\"n\">idle</th><th class=\"n\">queued</th><th class=\"n\">ejections</th><th class=\"n\">checks pass/fail</th></tr>");
    for u in &snap.upstreams {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"state-{}\">{}</td><td class=\"n\">{:.0}% ({})</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}/{}</td></tr>",
            html(u.group),
            html(u.address),
            u.state,
            u.state,
            u.share * 100.0,
            u.requests,
            u.active,
            u.idle,
            u.queued,
            u.ejections,
            u.checks_passed,
            u.checks_failed
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
