//! The access log: one line per request, at `info`, on the `ferroxy::access`
//! target.
//!
//! Format (stable; scripts may split on spaces):
//!
//! ```text
//! 127.0.0.1:51234 "GET /anything HTTP/1.1" 200 upstream=127.0.0.1:9001 in=0 out=312 time=1.234ms
//! ```
//!
//! `in` is request body bytes sent upstream, `out` response bytes sent to
//! the client (heads included); `upstream=-` when the proxy answered itself.

use std::net::SocketAddr;
use std::time::Duration;

use crate::http::head::Version;

/// Everything one access line says.
pub struct AccessLine<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    pub version: Option<Version>,
    pub status: u16,
    pub upstream: Option<SocketAddr>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed: Duration,
}

pub fn log(line: &AccessLine<'_>) {
    if !log::log_enabled!(target: "ferroxy::access", log::Level::Info) {
        return;
    }
    let version = match line.version {
        Some(Version::Http10) => "HTTP/1.0",
        Some(Version::Http11) => "HTTP/1.1",
        None => "-",
    };
    let upstream = match line.upstream {
        Some(addr) => addr.to_string(),
        None => "-".to_string(),
    };
    log::info!(
        target: "ferroxy::access",
        "{} \"{} {} {}\" {} upstream={} in={} out={} time={:.3}ms",
        line.client,
        line.method,
        line.target,
        version,
        line.status,
        upstream,
        line.bytes_in,
        line.bytes_out,
        line.elapsed.as_secs_f64() * 1000.0
    );
}
