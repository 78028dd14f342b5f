//! The access log: one line per request, at `info`, on the `ferroxy::access`
//! log target. Level `info` shows it, `warn` hides it; errors and timeouts
//! are logged separately at `warn` and show at either.
//!
//! The format is stable (scripts may rely on it): nginx's `combined`, then
//! the upstream's part as `key=value` fields.
//!
//! ```text
//! 127.0.0.1 - - [22/Nov/2026:06:16:23 +0000] "GET /anything HTTP/1.1" 200 379 "-" "curl/7.88.1" upstream=127.0.0.1:9001 upstream_status=200 request_time=0.001 upstream_connect_time=0.000 upstream_header_time=0.001 bytes_in=0
//! ```
//!
//! | field | meaning |
//! | --- | --- |
//! | `[...]` | when the line was written, UTC |
//! | `"GET /x HTTP/1.1"` | the request line as received (`"-"` when no head was ever parsed) |
//! | status | what the client got; `0` if the connection ended before any status |
//! | bytes | bytes sent to the client, heads included |
//! | `"referer" "user-agent"` | as sent, `"-"` if absent; `"` and control bytes escaped as `\xHH` |
//! | `upstream` | the upstream's address, `-` when the proxy answered alone |
//! | `upstream_status` | what the upstream answered, `-` if it never did (a 502 of ours, say) |
//! | `request_time` | seconds from the complete request head to the last byte |
//! | `upstream_connect_time` | seconds until the upstream connection was ready (about 0 when reused) |
//! | `upstream_header_time` | seconds until the upstream's response head arrived |
//! | `bytes_in` | request body bytes sent upstream |
//! | `tls` | the TLS version (`TLSv1.3`), only on requests over TLS |
//!
//! Lesson: `lessons/13-measuring`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::head::Version;
use crate::http::request::RequestHead;

/// Everything one access line says.
pub struct AccessLine<'a> {
    pub client: SocketAddr,
    /// The request, when its head parsed.
    pub request: Option<&'a RequestHead>,
    pub status: u16,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub upstream: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    pub request_time: Duration,
    pub connect_time: Option<Duration>,
    pub header_time: Option<Duration>,
    /// The TLS version, for a request that came over TLS.
    pub tls: Option<&'a str>,
}

/// Write `line` to the log, if `info` is on for the access target.
pub fn log(line: &AccessLine<'_>) {
    if log::log_enabled!(target: "ferroxy::access", log::Level::Info) {
        log::info!(target: "ferroxy::access", "{}", format_line(line, SystemTime::now()));
    }
}

/// The line itself, for a given wall-clock time (so tests can pin it).
pub fn format_line(line: &AccessLine<'_>, at: SystemTime) -> String {
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{} - - [{}] ", line.client.ip(), clf_time(at));
    match line.request {
        Some(request) => {
            let version = match request.version {
                Version::Http10 => "HTTP/1.0",
                Version::Http11 => "HTTP/1.1",
            };
            s.push('"');
            escape_into(&mut s, request.method.as_bytes());
            s.push(' ');
            escape_into(&mut s, request.target.as_bytes());
            let _ = write!(s, " {version}\"");
        }
        None => s.push_str("\"-\""),
    }
    let _ = write!(s, " {} {} ", line.status, line.bytes_out);
    for name in ["Referer", "User-Agent"] {
        let value = line.request.and_then(|r| r.header(name));
        match value {
            Some(value) if !value.is_empty() => {
                s.push('"');
                escape_into(&mut s, value);
                s.push_str("\" ");
            }
            _ => s.push_str("\"-\" "),
        }
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
    let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
    let _ = write!(
        s,
        "upstream={} upstream_status={} request_time={} upstream_connect_time={} upstream_header_time={} bytes_in={}",
        dash(line.upstream.map(|a| a.to_string())),
        dash(line.upstream_status.map(|c| c.to_string())),
        secs(line.request_time),
        dash(line.connect_time.map(secs)),
        dash(line.header_time.map(secs)),
        line.bytes_in
    );
    if let Some(version) = line.tls {
        let _ = write!(s, " tls={version}");
    }
    s
}

/// Bytes as nginx logs them: printable ASCII as is, `"`, `\` and anything
/// else as `\xHH`, so a line never breaks and fields never run together.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

/// Common Log Format time, UTC: `22/Nov/2026:06:16:23 +0000`.
fn clf_time(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`). Also the static files' dates.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
