//! Shared fixtures for the end-to-end stories in `tests/`.
//!
//! Every story file says `mod support;` and finds three kinds of things here:
//!
//! - **A proxy** on `127.0.0.1:0` in front of some upstreams: [`start_proxy`]
//!   and [`start_proxy_with`] (which lets a story tweak the [`Config`]).
//! - **A tiny blocking HTTP client**, [`Client`], that sends raw bytes (so a
//!   story can send deliberately broken requests) and reads one response at a
//!   time, framed by `Content-Length`, `chunked` or close.
//! - **Fake upstreams**, [`Upstream`], each a listener on `127.0.0.1:0` with a
//!   thread per connection, recording what reached it (connections, request
//!   heads, body lengths, raw bytes) so a story can assert what the upstream
//!   actually got. Some of them lie, hang up or stall on purpose.
//!
//! Threads are fine here: the fixtures stand in for the outside world. The
//! proxy under test is the one that must live on a single poll loop.
//!
//! Every wait is bounded. Client sockets give up after [`IO_TIMEOUT`];
//! fixture threads wake every [`FIXTURE_POLL`] to look at their stop flag and
//! all exit when their [`Upstream`] is dropped. A proxy bug therefore fails a
//! story with a message instead of hanging `cargo test`.
//!
//! Everything talks to loopback only.

#![allow(dead_code)]

pub mod tls;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ferroxy::config::{Balancing, Config, Limits, Logging, Timeouts, UpstreamConfig};
use ferroxy::reactor::{self, ProxyHandle, Stats};

/// How long a client waits for any single read or write before failing the
/// story. Long enough for a loaded CI machine, short enough to notice a hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::expect_closed`] waits for the proxy to close. A proxy
/// that forgets to close would otherwise cost each story the full
/// [`IO_TIMEOUT`].
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a fixture thread blocked in `read`/`write` wakes up to check
/// whether the story is over.
pub const FIXTURE_POLL: Duration = Duration::from_millis(50);

/// A fixture connection gives up after this long whatever happens, so a
/// forgotten upstream can never keep the test process alive.
const FIXTURE_MAX_LIFETIME: Duration = Duration::from_secs(120);

/// The `Host` the stories send unless they are testing `Host` itself.
pub const HOST: &str = "test.local";

/// The most request/response head bytes a fixture accepts before calling the
/// peer broken. Far above the proxy's own limit on purpose: we want to see
/// what the proxy sends, not refuse it first.
const FIXTURE_HEAD_LIMIT: usize = 1 << 20;

/// The first bytes of everything an upstream receives are kept for
/// inspection; beyond that only the count grows (a 256 MiB upload must not
/// cost 256 MiB of test memory).
const RAW_KEEP: usize = 1 << 20;

/// Body bytes of each request an upstream keeps (the count is exact anyway).
const BODY_KEEP: usize = 1 << 20;

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// The configuration every story starts from: listen on an ephemeral
/// loopback port, the given upstreams in order, the contract's defaults for
/// everything else, and quiet logs.
///
/// Built as a struct literal (rather than parsed JSON) so a learner sees
/// every knob in one place.
pub fn config_for(upstreams: &[SocketAddr]) -> Config {
    Config {
        listen: "127.0.0.1:0".to_string(),
        upstreams: upstreams
            .iter()
            .map(|addr| UpstreamConfig {
                host: addr.ip().to_string(),
                port: addr.port(),
                weight: 1,
            })
            .collect(),
        timeouts: Timeouts {
            connect_ms: 1000,
            read_ms: 15_000,
            write_ms: 15_000,
            total_ms: 30_000,
            client_header_ms: 10_000,
            keepalive_ms: 60_000,
            tunnel_idle_ms: 300_000,
        },
        limits: Limits {
            max_client_conns: 1000,
            max_conns_per_upstream: 100,
            max_header_bytes: 16_384,
            buffer_bytes: 16_384,
            max_idle_per_upstream: 32,
        },
        logging: Logging {
            level: "warn".to_string(),
        },
        metrics: None,
        workers: 1,
        balancing: Balancing::RoundRobin,
        retries: 0,
        health: None,
        rate_limit: None,
        upstream_groups: Default::default(),
        routes: Vec::new(),
        tls: None,
    }
}

/// Start a proxy in front of `upstreams` (in config order) with the default
/// configuration. Dropping the handle stops it.
pub fn start_proxy(upstreams: &[SocketAddr]) -> ProxyHandle {
    start_proxy_with(upstreams, |_| {})
}

/// Like [`start_proxy`], but `tweak` may change the configuration first,
/// e.g. `|c| c.limits.buffer_bytes = 4096`.
pub fn start_proxy_with(upstreams: &[SocketAddr], tweak: impl FnOnce(&mut Config)) -> ProxyHandle {
    let mut config = config_for(upstreams);
    tweak(&mut config);
    reactor::start(&config).unwrap_or_else(|e| panic!("the proxy failed to start: {e}"))
}

/// Poll `condition` every 10 ms until it holds or `timeout` passes; say
/// whether it held. The loop is bounded by the timeout.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Poll the proxy's [`Stats`] until `condition` holds (`Ok`) or `timeout`
/// passes (`Err` with the last snapshot, for the assertion message).
pub fn wait_for_stats(
    proxy: &ProxyHandle,
    timeout: Duration,
    condition: impl Fn(&Stats) -> bool,
) -> Result<Stats, Stats> {
    let mut last = proxy.stats();
    if wait_until(timeout, || {
        last = proxy.stats();
        condition(&last)
    }) {
        Ok(last)
    } else {
        Err(last)
    }
}

/// An address nothing listens on: bind an ephemeral port, then let it go.
/// Connecting there is refused at once (no timeout involved).
pub fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a throwaway port");
    listener
        .local_addr()
        .expect("local_addr of a throwaway port")
}

/// Resident memory of this test process, from `/proc/self/status` (VmRSS).
/// The proxy runs on a thread of this process, so its memory is in here too.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value in kB");
    kib * 1024
}

/// Open file descriptors of this process (sockets, the poll instance, ...).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
}

/// The largest send (`wmem`) and receive (`rmem`) buffer the kernel may give
/// a TCP socket, from `/proc/sys/net/ipv4/tcp_{w,r}mem` (third number). Used
/// to reason about how many bytes can hide in socket buffers on loopback.
pub fn tcp_buffer_maxima() -> (u64, u64) {
    fn third(path: &str, fallback: u64) -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().nth(2).and_then(|n| n.parse().ok()))
            .unwrap_or(fallback)
    }
    (
        third("/proc/sys/net/ipv4/tcp_wmem", 4 << 20),
        third("/proc/sys/net/ipv4/tcp_rmem", 6 << 20),
    )
}

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/// Bodies are a repeating pattern whose period (251, a prime) does not divide
/// any buffer size, so a dropped, duplicated or reordered slice shows up as a
/// mismatch at a known offset.
const PATTERN_PERIOD: usize = 251;

/// The longest slice [`pattern`] hands out at once.
pub const PATTERN_CHUNK: usize = 64 * 1024;

fn pattern_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..PATTERN_PERIOD + PATTERN_CHUNK)
            .map(|i| (i % PATTERN_PERIOD) as u8)
            .collect()
    })
}

/// The pattern bytes at `offset..offset + len` (`len <= PATTERN_CHUNK`),
/// without allocating: body streams of hundreds of MiB are written from this.
pub fn pattern(offset: u64, len: usize) -> &'static [u8] {
    assert!(len <= PATTERN_CHUNK, "pattern slices are at most 64 KiB");
    let start = (offset % PATTERN_PERIOD as u64) as usize;
    &pattern_table()[start..start + len]
}

/// `len` pattern bytes starting at offset 0, as an owned buffer.
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(PATTERN_CHUNK);
        out.extend_from_slice(pattern(out.len() as u64, n));
    }
    out
}

/// Whether `data` is exactly the pattern bytes at `offset..`.
pub fn matches_pattern(offset: u64, data: &[u8]) -> bool {
    data.chunks(PATTERN_CHUNK)
        .enumerate()
        .all(|(i, chunk)| chunk == pattern(offset + (i * PATTERN_CHUNK) as u64, chunk.len()))
}

/// Encode `data` as a chunked body with chunks of at most `chunk_size`
/// bytes, the last chunk and the given trailer fields.
pub fn chunked_encode(data: &[u8], chunk_size: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(chunk_size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A request head from its lines: `head(&["GET / HTTP/1.1", "Host: x"])` is
/// `"GET / HTTP/1.1\r\nHost: x\r\n\r\n"`. Stories spell heads line by line
/// so the bytes on the wire are plain to see.
pub fn head(lines: &[&str]) -> Vec<u8> {
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// A plain `GET target HTTP/1.1` with `Host: test.local`.
pub fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes()
}

/// A `POST target HTTP/1.1` with `Content-Length` and the body.
pub fn post(target: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The method of a raw request (its first token), so the client knows a
/// `HEAD` response has no body.
pub fn method_of(raw_request: &[u8]) -> String {
    let end = raw_request
        .iter()
        .position(|b| *b == b' ')
        .unwrap_or(raw_request.len());
    String::from_utf8_lossy(&raw_request[..end]).into_owned()
}

// ---------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------

/// Header fields in order, names as sent. Small helpers answer the questions
/// the stories ask ("is there exactly one of these?", "does it list close?").
pub trait Fields {
    fn fields(&self) -> &[(String, String)];

    /// The first value of `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.fields()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, one per field line.
    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.fields()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every comma-separated element of every `name` line, trimmed; so
    /// `Via: a` + `Via: b, c` gives `[a, b, c]`.
    fn header_list(&self, name: &str) -> Vec<String> {
        self.headers_named(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Whether `name` lists `token` (case-insensitive), e.g.
    /// `has_token("Connection", "close")`.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_list(name)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// Split a head (ending in CRLFCRLF) into its start line and fields. Strict,
/// because we are checking what the *proxy* produced: lines end in CRLF, no
/// bare CR or LF, no obs-fold, field names are tokens.
fn parse_head(raw: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
    let text = String::from_utf8_lossy(raw);
    let body = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| format!("head does not end in CRLFCRLF: {text:?}"))?;
    let mut lines = body.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    if start.contains(['\r', '\n']) {
        return Err(format!("bare CR or LF in start line {start:?}"));
    }
    let mut fields = Vec::new();
    for line in lines {
        if line.contains(['\r', '\n']) {
            return Err(format!("bare CR or LF in field line {line:?}"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(format!("obs-fold line {line:?}"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("field line without a colon: {line:?}"))?;
        let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(format!("invalid field name {name:?}"));
        }
        fields.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    Ok((start, fields))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `haystack` contains `needle` anywhere.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

// ---------------------------------------------------------------------------
// Wire: a buffered, bounded reader/writer both sides share
// ---------------------------------------------------------------------------

/// A socket plus the bytes read from it but not consumed yet. Both the
/// client and the fake upstreams read HTTP through this, so "how do I find
/// the end of a head, a chunk, a body" is written once.
///
/// On the client side a socket timeout is a failure ("the proxy went
/// silent"). On the fixture side the socket times out every
/// [`FIXTURE_POLL`] just to look at the stop flag, then keeps waiting.
struct Wire {
    stream: tls::WireStream,
    pending: Vec<u8>,
    /// Fixture side only: stop waiting when this is set.
    stop: Option<Arc<AtomicBool>>,
    /// Fixture side only: where received and written bytes are counted.
    log: Option<Arc<Log>>,
    born: Instant,
}

impl Wire {
    fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => {
                    if let Some(log) = &self.log {
                        log.record_received(&buf[..n]);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => match &self.stop {
                    Some(stop) => {
                        if stop.load(Ordering::SeqCst) || self.born.elapsed() > FIXTURE_MAX_LIFETIME
                        {
                            return Err("fixture stopped".to_string());
                        }
                    }
                    None => {
                        return Err(format!(
                            "timed out: nothing arrived for {IO_TIMEOUT:?} (the proxy went silent)"
                        ));
                    }
                },
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Read more bytes into `pending`; `Ok(0)` is end of stream.
    fn fill(&mut self) -> Result<usize, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.read_raw(&mut buf)?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// The next head, CRLFCRLF included. `Ok(None)`: the peer closed
    /// cleanly before sending a single byte of it.
    fn read_head_bytes(&mut self, limit: usize) -> Result<Option<Vec<u8>>, String> {
        let mut searched = 0;
        loop {
            if let Some(pos) = find(&self.pending[searched..], b"\r\n\r\n") {
                let end = searched + pos + 4;
                return Ok(Some(self.pending.drain(..end).collect()));
            }
            searched = self.pending.len().saturating_sub(3);
            if self.pending.len() > limit {
                return Err(format!("no end of head within {limit} bytes"));
            }
            if self.fill()? == 0 {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(format!(
                        "connection closed in the middle of a head: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ))
                };
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF). A bare LF is an error:
    /// this is how the fixtures stay as strict as the contract.
    fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(lf) = self.pending.iter().position(|b| *b == b'\n') {
                if lf == 0 || self.pending[lf - 1] != b'\r' {
                    return Err(format!(
                        "bare LF in {:?}",
                        String::from_utf8_lossy(&self.pending[..=lf])
                    ));
                }
                let line: Vec<u8> = self.pending.drain(..=lf).collect();
                return Ok(line[..line.len() - 2].to_vec());
            }
            if self.pending.len() > 8192 {
                return Err("line longer than 8 KiB".to_string());
            }
            if self.fill()? == 0 {
                return Err("connection closed in the middle of a line".to_string());
            }
        }
    }

    /// Exactly `n` bytes, handed to `on_data` as they come.
    fn read_exact_with(&mut self, n: u64, on_data: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        let mut left = n;
        if !self.pending.is_empty() && left > 0 {
            let k = (self.pending.len() as u64).min(left) as usize;
            on_data(&self.pending[..k]);
            self.pending.drain(..k);
            left -= k as u64;
        }
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = (buf.len() as u64).min(left) as usize;
            let got = self.read_raw(&mut buf[..want])?;
            if got == 0 {
                return Err(format!(
                    "connection closed with {left} of {n} body bytes still missing"
                ));
            }
            on_data(&buf[..got]);
            left -= got as u64;
        }
        Ok(())
    }

    fn read_exact_vec(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(n);
        self.read_exact_with(n as u64, &mut |d| out.extend_from_slice(d))?;
        Ok(out)
    }

    /// A strict chunked body; returns the trailer fields.
    fn read_chunked_with(
        &mut self,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Vec<(String, String)>, String> {
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let size_text = line.split(';').next().unwrap_or_default();
            if size_text.is_empty()
                || size_text.len() > 15
                || !size_text.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(format!("bad chunk size line {line:?}"));
            }
            let size = u64::from_str_radix(size_text, 16).expect("checked hex, at most 15 digits");
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let line = self.read_line()?;
                    if line.is_empty() {
                        return Ok(trailers);
                    }
                    let line = String::from_utf8_lossy(&line).into_owned();
                    let (name, value) = line
                        .split_once(':')
                        .ok_or_else(|| format!("trailer line without a colon: {line:?}"))?;
                    trailers.push((name.to_string(), value.trim().to_string()));
                }
            }
            self.read_exact_with(size, on_data)?;
            let end = self.read_exact_vec(2)?;
            if end != b"\r\n" {
                return Err(format!("chunk data not followed by CRLF but by {end:?}"));
            }
        }
    }

    /// Everything until the peer closes.
    fn read_to_eof_with(&mut self, on_data: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        if !self.pending.is_empty() {
            on_data(&self.pending);
            self.pending.clear();
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read_raw(&mut buf)? {
                0 => return Ok(()),
                n => on_data(&buf[..n]),
            }
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(0) => return Err("write returned 0".to_string()),
                Ok(n) => {
                    if let Some(log) = &self.log {
                        log.bytes_written.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    data = &data[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => match &self.stop {
                    Some(stop) => {
                        if stop.load(Ordering::SeqCst) || self.born.elapsed() > FIXTURE_MAX_LIFETIME
                        {
                            return Err("fixture stopped".to_string());
                        }
                    }
                    None => {
                        return Err(format!(
                            "timed out: could not write for {IO_TIMEOUT:?} (the proxy stopped reading)"
                        ));
                    }
                },
                Err(e) => return Err(format!("write failed: {e}")),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// One response as the client saw it.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// `HTTP/1.1` (what the proxy must always say).
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, for assertion messages.
    pub raw_head: String,
    pub body: Vec<u8>,
    /// Whether the body came `Transfer-Encoding: chunked`.
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// 1xx responses that arrived before this one, in order.
    pub interim: Vec<Response>,
}

impl Fields for Response {
    fn fields(&self) -> &[(String, String)] {
        &self.headers
    }
}

impl Response {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a response body is delimited, decided like RFC 9112 section 6.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The framing of `resp`, answering `method`.
pub fn response_framing(method: &str, resp: &Response) -> Result<Framing, String> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&resp.status)
        || resp.status == 204
        || resp.status == 304
    {
        return Ok(Framing::NoBody);
    }
    if resp.header("Transfer-Encoding").is_some() {
        if resp.header("Content-Length").is_some() {
            return Err(format!(
                "the proxy sent both Content-Length and Transfer-Encoding:\n{}",
                resp.raw_head
            ));
        }
        let codings = resp.header_list("Transfer-Encoding");
        return Ok(
            if codings
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
            {
                Framing::Chunked
            } else {
                Framing::UntilClose
            },
        );
    }
    let lengths = resp.headers_named("Content-Length");
    match lengths.as_slice() {
        [] => Ok(Framing::UntilClose),
        [one] => one
            .parse()
            .map(Framing::Length)
            .map_err(|_| format!("bad Content-Length {one:?} from the proxy")),
        _ => Err(format!(
            "the proxy sent several Content-Length fields:\n{}",
            resp.raw_head
        )),
    }
}

/// A blocking HTTP/1.1 client that does exactly what a story tells it:
/// raw bytes out, one response at a time in. Reads and writes time out after
/// [`IO_TIMEOUT`].
pub struct Client {
    wire: Wire,
}

impl Client {
    /// Connect to the proxy (or anything) on loopback.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("could not connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// [`Client::connect`] with the socket's receive buffer set to `bytes`
    /// before connecting, so the window it offers stays small and the
    /// proxy's writes to it keep coming up short.
    pub fn connect_with_receive_buffer(addr: SocketAddr, bytes: usize) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket.set_recv_buffer_size(bytes).expect("set SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("could not connect to {addr}: {e}"));
        Client::from_stream(socket.into())
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client::over(tls::WireStream::Tcp(stream))
    }

    /// Connect to the proxy's TLS listener and finish the handshake,
    /// checking the certificate for `name`; a failure fails the story.
    pub fn connect_tls(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, name: &str) -> Client {
        Client::try_connect_tls(addr, config, name)
            .unwrap_or_else(|e| panic!("TLS to {addr} as {name:?} failed: {e}"))
    }

    /// [`Client::connect_tls`], reporting a failure instead.
    pub fn try_connect_tls(
        addr: SocketAddr,
        config: &Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<Client, String> {
        tls::connect_tls(addr, config, name).map(Client::over)
    }

    /// TLS only: send `bytes` and close_notify in one segment, no FIN.
    pub fn send_with_close_notify(&mut self, bytes: &[u8]) {
        self.wire
            .stream
            .send_with_close_notify(bytes)
            .expect("send the request and close_notify");
    }

    /// A TLS client on a socket of the story's making (see
    /// [`tls::handshake_over`]).
    pub fn tls_over(tcp: TcpStream, config: &Arc<rustls::ClientConfig>, name: &str) -> Client {
        tls::handshake_over(tcp, config, name)
            .map(Client::over)
            .unwrap_or_else(|e| panic!("TLS as {name:?} failed: {e}"))
    }

    /// The TLS session, on a TLS client.
    pub fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        self.wire.stream.session()
    }

    fn over(stream: tls::WireStream) -> Client {
        Client {
            wire: Wire {
                stream,
                pending: Vec::new(),
                stop: None,
                log: None,
                born: Instant::now(),
            },
        }
    }

    /// The socket, for what the helpers do not cover.
    pub fn stream(&self) -> &TcpStream {
        self.wire.stream.tcp()
    }

    /// Send bytes; a failure fails the story.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.wire.write_all(bytes) {
            panic!("sending {} bytes to the proxy failed: {e}", bytes.len());
        }
    }

    /// Send bytes one at a time with `pause` between them: every read the
    /// proxy does returns a single byte, so its parsers must cope with any
    /// split.
    pub fn send_dribbling(&mut self, bytes: &[u8], pause: Duration) {
        for (i, byte) in bytes.iter().enumerate() {
            if let Err(e) = self.wire.write_all(std::slice::from_ref(byte)) {
                panic!(
                    "sending byte {i} of {} to the proxy failed: {e}",
                    bytes.len()
                );
            }
            thread::sleep(pause);
        }
    }

    /// Send bytes and report failure instead of panicking: a proxy that
    /// refuses a request may rightly close before reading all of it.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wire.write_all(bytes)
    }

    /// Half-close: "I have sent everything" (TCP FIN), still reading.
    pub fn shutdown_write(&mut self) {
        self.wire
            .stream
            .shutdown_write()
            .expect("shutdown(Write) on the client socket");
    }

    /// The next response head, 1xx included, without its body.
    pub fn read_head(&mut self) -> Result<Response, String> {
        let raw = self
            .wire
            .read_head_bytes(FIXTURE_HEAD_LIMIT)?
            .ok_or_else(|| "the proxy closed the connection without answering".to_string())?;
        let (start, headers) = parse_head(&raw)?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let code = parts.next().unwrap_or_default();
        let reason = parts.next().unwrap_or_default().to_string();
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..1000).contains(c) && code.len() == 3)
            .ok_or_else(|| format!("bad status line from the proxy: {start:?}"))?;
        Ok(Response {
            version,
            status,
            reason,
            headers,
            raw_head: String::from_utf8_lossy(&raw).into_owned(),
            ..Response::default()
        })
    }

    /// Stream the body of `resp` (the answer to `method`) into `on_data`
    /// without keeping it; returns the trailers. This is how the streaming
    /// stories read hundreds of MiB without holding them.
    pub fn read_body_with(
        &mut self,
        method: &str,
        resp: &Response,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Vec<(String, String)>, String> {
        match response_framing(method, resp)? {
            Framing::NoBody => Ok(Vec::new()),
            Framing::Length(n) => self.wire.read_exact_with(n, on_data).map(|_| Vec::new()),
            Framing::Chunked => self.wire.read_chunked_with(on_data),
            Framing::UntilClose => self.wire.read_to_eof_with(on_data).map(|_| Vec::new()),
        }
    }

    /// The next final response to `method` with its body; 1xx responses
    /// before it are collected in `interim`.
    pub fn read_response(&mut self, method: &str) -> Result<Response, String> {
        let mut interim = Vec::new();
        // Bounded: a proxy that sends endless 1xx fails the story.
        for _ in 0..100 {
            let mut resp = self.read_head()?;
            if (100..200).contains(&resp.status) && resp.status != 101 {
                interim.push(resp);
                continue;
            }
            let mut body = Vec::new();
            resp.trailers =
                self.read_body_with(method, &resp, &mut |d| body.extend_from_slice(d))?;
            resp.chunked = response_framing(method, &resp)? == Framing::Chunked;
            resp.body = body;
            resp.interim = interim;
            return Ok(resp);
        }
        Err("more than 100 interim responses".to_string())
    }

    /// Send a raw request and read its response; any failure fails the story.
    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        let method = method_of(raw);
        self.read_response(&method).unwrap_or_else(|e| {
            panic!(
                "no proper response to {:?}: {e}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            )
        })
    }

    /// Send a request the proxy should refuse and read its answer. Sending
    /// may fail part way (the proxy may answer and close before reading
    /// everything); only the answer matters.
    pub fn request_refused(&mut self, raw: &[u8]) -> Result<Response, String> {
        let _ = self.try_send(raw);
        self.read_response(&method_of(raw))
    }

    /// Exactly `n` raw bytes (e.g. from a tunnel after a 101).
    pub fn read_exact_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        self.wire.read_exact_vec(n)
    }

    /// Stream exactly `n` raw bytes into `on_data`.
    pub fn read_exact_with(
        &mut self,
        n: u64,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        self.wire.read_exact_with(n, on_data)
    }

    /// Everything until the proxy closes (or resets, or goes silent); the
    /// second value says how it ended.
    pub fn read_until_close(&mut self) -> (Vec<u8>, Result<(), String>) {
        let mut out = Vec::new();
        let end = self
            .wire
            .read_to_eof_with(&mut |d| out.extend_from_slice(d));
        (out, end)
    }

    /// The proxy must close this connection now: the next read sees end of
    /// stream (or a reset) within [`CLOSE_TIMEOUT`], with no bytes before.
    pub fn expect_closed(&mut self) -> Result<(), String> {
        if !self.wire.pending.is_empty() {
            return Err(format!(
                "expected the connection to close, but more bytes came: {:?}",
                String::from_utf8_lossy(&self.wire.pending)
            ));
        }
        self.wire
            .stream
            .tcp()
            .set_read_timeout(Some(CLOSE_TIMEOUT))
            .unwrap();
        let mut buf = [0u8; 4096];
        let outcome = loop {
            match self.wire.stream.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    break Err(format!(
                        "expected the connection to close, but more bytes came: {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // On TLS: the TCP stream ended without close_notify.
                Err(e) if is_reset(&e) || e.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
                Err(e) if is_timeout(&e) => {
                    break Err(format!(
                        "expected the connection to close, but it was still open after {CLOSE_TIMEOUT:?}"
                    ));
                }
                Err(e) => break Err(format!("read failed while waiting for close: {e}")),
            }
        };
        self.wire
            .stream
            .tcp()
            .set_read_timeout(Some(IO_TIMEOUT))
            .unwrap();
        outcome
    }

    /// Bytes already read but not consumed by a response (should be none
    /// between responses).
    pub fn leftover(&self) -> &[u8] {
        &self.wire.pending
    }
}

/// Assert that `resp` is one of the proxy's own error answers: the status,
/// a `Content-Length` that matches the body, and `Connection: close`.
pub fn assert_error_answer(resp: &Response, status: u16, story: &str) {
    assert_eq!(
        resp.status, status,
        "{story}: expected the proxy to answer {status}, got:\n{}",
        resp.raw_head
    );
    let length = resp.header("Content-Length").unwrap_or_else(|| {
        panic!(
            "{story}: an error answer must carry Content-Length, got:\n{}",
            resp.raw_head
        )
    });
    assert_eq!(
        length.parse::<usize>().ok(),
        Some(resp.body.len()),
        "{story}: Content-Length does not match the error body"
    );
    assert!(
        resp.has_token("Connection", "close"),
        "{story}: an error answer must say Connection: close, got:\n{}",
        resp.raw_head
    );
}

// ---------------------------------------------------------------------------
// Fake upstreams
// ---------------------------------------------------------------------------

/// One request as an upstream saw it.
#[derive(Clone, Debug, Default)]
pub struct SeenRequest {
    /// Which upstream connection (1 = the first accepted) it came on.
    pub connection: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The head exactly as received.
    pub raw_head: String,
    /// The first [`BODY_KEEP`] body bytes.
    pub body: Vec<u8>,
    /// Every body byte counted.
    pub body_len: u64,
    /// Whether the body was exactly the test pattern from offset 0.
    pub body_is_pattern: bool,
    pub trailers: Vec<(String, String)>,
    /// The whole message arrived, correctly framed. `false` when the body
    /// was cut short or malformed (or not read at all).
    pub complete: bool,
    /// Why the message is not complete, if it is not.
    pub problem: Option<String>,
}

impl Fields for SeenRequest {
    fn fields(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// What an upstream saw, shared between its threads and the story.
#[derive(Default)]
struct Log {
    connections: AtomicUsize,
    open_connections: AtomicUsize,
    peak_open_connections: AtomicUsize,
    bytes_received: AtomicU64,
    bytes_written: AtomicU64,
    raw: Mutex<Vec<u8>>,
    requests: Mutex<Vec<SeenRequest>>,
}

impl Log {
    fn record_received(&self, data: &[u8]) {
        self.bytes_received
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        let mut raw = self.raw.lock().unwrap();
        let room = RAW_KEEP.saturating_sub(raw.len());
        raw.extend_from_slice(&data[..room.min(data.len())]);
    }
}

/// One accepted connection, handed to an upstream's behaviour.
pub struct UpConn {
    wire: Wire,
    /// 1 for the first connection this upstream accepted, and so on.
    pub index: usize,
    /// The upstream's label, echoed in `X-Upstream`.
    pub label: String,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
}

impl UpConn {
    /// Whether the story is over.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Read the next whole request (answering `Expect: 100-continue` with a
    /// 100 first) and record it. `None` when the peer closed, the fixture
    /// stopped, or the message was malformed or cut short (recorded with
    /// `complete == false`).
    pub fn read_request(&mut self) -> Option<SeenRequest> {
        self.read_request_inner(true)
    }

    /// Read only the next request head and record it (`complete == false`:
    /// the body was not read). For upstreams that answer early.
    pub fn read_request_head(&mut self) -> Option<SeenRequest> {
        self.read_request_inner(false)
    }

    fn read_request_inner(&mut self, with_body: bool) -> Option<SeenRequest> {
        let raw = match self.wire.read_head_bytes(FIXTURE_HEAD_LIMIT) {
            Ok(Some(raw)) => raw,
            Ok(None) => return None,
            Err(problem) => {
                self.record(SeenRequest {
                    connection: self.index,
                    raw_head: String::from_utf8_lossy(&self.wire.pending).into_owned(),
                    problem: Some(problem),
                    ..SeenRequest::default()
                });
                return None;
            }
        };
        let mut req = SeenRequest {
            connection: self.index,
            raw_head: String::from_utf8_lossy(&raw).into_owned(),
            body_is_pattern: true,
            ..SeenRequest::default()
        };
        match parse_head(&raw) {
            Ok((start, headers)) => {
                let parts: Vec<&str> = start.split(' ').collect();
                if let [method, target, version] = parts.as_slice() {
                    req.method = method.to_string();
                    req.target = target.to_string();
                    req.version = version.to_string();
                    req.headers = headers;
                } else {
                    req.problem = Some(format!("bad request line {start:?}"));
                }
            }
            Err(problem) => req.problem = Some(problem),
        }
        if req.problem.is_some() {
            self.record(req);
            return None;
        }
        if !with_body {
            self.record(req.clone());
            return Some(req);
        }
        if req.has_token("Expect", "100-continue")
            && self
                .wire
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            self.record(req);
            return None;
        }
        let mut body = Vec::new();
        let mut body_len = 0u64;
        let mut is_pattern = true;
        let mut on_data = |d: &[u8]| {
            is_pattern &= matches_pattern(body_len, d);
            body_len += d.len() as u64;
            let room = BODY_KEEP.saturating_sub(body.len());
            body.extend_from_slice(&d[..room.min(d.len())]);
        };
        let outcome = if req.header("Transfer-Encoding").is_some() {
            if req.has_token("Transfer-Encoding", "chunked") {
                self.wire
                    .read_chunked_with(&mut on_data)
                    .map(|trailers| req.trailers = trailers)
            } else {
                Err("Transfer-Encoding without chunked".to_string())
            }
        } else if let Some(length) = req.header("Content-Length") {
            match length.parse::<u64>() {
                Ok(n) => self.wire.read_exact_with(n, &mut on_data),
                Err(_) => Err(format!("bad Content-Length {length:?}")),
            }
        } else {
            Ok(())
        };
        req.body = body;
        req.body_len = body_len;
        req.body_is_pattern = is_pattern;
        match outcome {
            Ok(()) => {
                req.complete = true;
                self.record(req.clone());
                Some(req)
            }
            Err(problem) => {
                req.problem = Some(problem);
                self.record(req);
                None
            }
        }
    }

    fn record(&self, req: SeenRequest) {
        self.log.requests.lock().unwrap().push(req);
    }

    /// Write bytes toward the proxy; `false` if that failed or the story is
    /// over.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.wire.write_all(bytes).is_ok()
    }

    /// Stream `n` pattern bytes; `false` if the proxy stopped taking them.
    pub fn write_pattern(&mut self, n: u64) -> bool {
        let mut sent = 0u64;
        while sent < n {
            let len = (n - sent).min(PATTERN_CHUNK as u64) as usize;
            if !self.write(pattern(sent, len)) {
                return false;
            }
            sent += len as u64;
        }
        true
    }

    /// Send FIN: "that was everything" (close-delimited bodies end so).
    /// Make the coming close a reset (RST) instead of a FIN: `SO_LINGER`
    /// with a zero timeout, as an upstream that crashes looks on the wire.
    /// Takes effect when the behaviour returns and the socket is dropped.
    pub fn reset_on_close(&mut self) {
        socket2::SockRef::from(self.wire.stream.tcp())
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER on a fake upstream");
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.wire.stream.tcp().shutdown(Shutdown::Write);
    }

    /// Raw bytes from the proxy (for tunnels): `Some(0)` at end of stream,
    /// `None` on error or stop.
    pub fn read_some(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.wire.pending.is_empty() {
            let n = self.wire.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.wire.pending[..n]);
            self.wire.pending.drain(..n);
            return Some(n);
        }
        self.wire.read_raw(buf).ok()
    }

    /// Read and drop everything until the proxy closes.
    pub fn drain_to_eof(&mut self) {
        let _ = self.wire.read_to_eof_with(&mut |_| {});
    }

    /// Sleep `d` in small steps; `false` if the story ended meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            if self.stopped() {
                return false;
            }
            thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
        }
        !self.stopped()
    }

    /// Wait up to `within` for the proxy to send anything (or close). `true`
    /// if bytes arrived (or the connection ended), `false` if it stayed
    /// silent: an idle connection.
    pub fn wait_for_activity(&mut self, within: Duration) -> bool {
        if !self.wire.pending.is_empty() {
            return true;
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && !self.stopped() {
            let mut buf = [0u8; 4096];
            match self.wire.stream.read(&mut buf) {
                Ok(n) => {
                    self.log.record_received(&buf[..n]);
                    self.wire.pending.extend_from_slice(&buf[..n]);
                    return true;
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// A fake upstream: a loopback listener whose every connection runs
/// `behaviour` on its own thread, and a log of what arrived.
///
/// Dropping it stops everything: the accept loop is woken by a last
/// connection, connection threads see the stop flag within
/// [`FIXTURE_POLL`], and all are joined.
pub struct Upstream {
    pub addr: SocketAddr,
    pub label: String,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Start an upstream that runs `behaviour` for each accepted connection.
    /// The connection closes when `behaviour` returns.
    pub fn start(label: &str, behaviour: impl Fn(&mut UpConn) + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake upstream");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let stop = Arc::new(AtomicBool::new(false));
        let behaviour = Arc::new(behaviour);
        let accept_thread = {
            let (log, stop, label) = (log.clone(), stop.clone(), label.to_string());
            thread::Builder::new()
                .name(format!("upstream-{label}"))
                .spawn(move || {
                    let mut workers: Vec<JoinHandle<()>> = Vec::new();
                    // Bounded: Drop sets `stop` and then connects once to
                    // wake this `accept`.
                    while !stop.load(Ordering::SeqCst) {
                        let Ok((stream, _)) = listener.accept() else {
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        stream.set_read_timeout(Some(FIXTURE_POLL)).unwrap();
                        stream.set_write_timeout(Some(FIXTURE_POLL)).unwrap();
                        stream.set_nodelay(true).unwrap();
                        let index = log.connections.fetch_add(1, Ordering::SeqCst) + 1;
                        let open = log.open_connections.fetch_add(1, Ordering::SeqCst) + 1;
                        log.peak_open_connections.fetch_max(open, Ordering::SeqCst);
                        let mut conn = UpConn {
                            wire: Wire {
                                stream: tls::WireStream::Tcp(stream),
                                pending: Vec::new(),
                                stop: Some(stop.clone()),
                                log: Some(log.clone()),
                                born: Instant::now(),
                            },
                            index,
                            label: label.clone(),
                            log: log.clone(),
                            stop: stop.clone(),
                        };
                        let behaviour = behaviour.clone();
                        workers.retain(|w| !w.is_finished());
                        workers.push(thread::spawn(move || {
                            behaviour(&mut conn);
                            conn.log.open_connections.fetch_sub(1, Ordering::SeqCst);
                        }));
                    }
                    drop(listener);
                    for worker in workers {
                        let _ = worker.join();
                    }
                })
                .expect("spawn the upstream accept thread")
        };
        Upstream {
            addr,
            label: label.to_string(),
            log,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    /// Connections accepted and not yet closed by this side.
    pub fn open_connections(&self) -> usize {
        self.log.open_connections.load(Ordering::SeqCst)
    }

    /// The most connections that were open at the same time.
    pub fn peak_open_connections(&self) -> usize {
        self.log.peak_open_connections.load(Ordering::SeqCst)
    }

    /// Every request head seen, complete or not, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.log.requests.lock().unwrap().clone()
    }

    /// Requests whose whole message arrived correctly framed.
    pub fn complete_requests(&self) -> Vec<SeenRequest> {
        self.requests().into_iter().filter(|r| r.complete).collect()
    }

    /// How many request heads arrived.
    pub fn request_count(&self) -> usize {
        self.log.requests.lock().unwrap().len()
    }

    /// Every byte received, all connections together.
    pub fn bytes_received(&self) -> u64 {
        self.log.bytes_received.load(Ordering::SeqCst)
    }

    /// Every byte this upstream managed to write (heads included).
    pub fn bytes_written(&self) -> u64 {
        self.log.bytes_written.load(Ordering::SeqCst)
    }

    /// The first MiB of everything received, all connections concatenated.
    pub fn raw_received(&self) -> Vec<u8> {
        self.log.raw.lock().unwrap().clone()
    }

    /// Stop now (the same as dropping it): every connection is closed.
    pub fn stop(self) {}

    /// Drop the recorded requests and raw bytes (counters stay). A long
    /// run calls this now and then, so the memory it measures is the
    /// proxy's, not this log's.
    pub fn forget_requests(&self) {
        *self.log.requests.lock().unwrap() = Vec::new();
        *self.log.raw.lock().unwrap() = Vec::new();
    }

    // --- The behaviours -------------------------------------------------

    /// Answers every request (keep-alive) like the demo upstream:
    /// `/bytes/N` → N pattern bytes with `Content-Length`; `/chunked/N` →
    /// N pattern bytes chunked; `/status/CODE` → that status;
    /// `/truncate/N` → promises 2N bytes, sends N and hangs up; anything
    /// else → 200 whose body is the request head as received, with
    /// `X-Echo-Method`, `X-Echo-Target` and `X-Echo-Body-Length`.
    /// Every answer carries `X-Upstream: <label>` and
    /// `X-Upstream-Conn: <connection index>`.
    pub fn echo(label: &str) -> Upstream {
        Upstream::start(label, |conn| {
            while let Some(req) = conn.read_request() {
                if !serve_echo(conn, &req) {
                    return;
                }
            }
        })
    }

    /// Answers every request on a connection with the same canned bytes,
    /// keeping the connection open: the way to make an upstream lie
    /// (`Content-Length` and `Transfer-Encoding`, a bad status line, bytes
    /// beyond its `Content-Length`, a stray 1xx...).
    pub fn fixed(label: &str, raw_response: &[u8]) -> Upstream {
        let raw = raw_response.to_vec();
        Upstream::start(label, move |conn| {
            while conn.read_request().is_some() {
                if !conn.write(&raw) {
                    return;
                }
            }
        })
    }

    /// Like [`Upstream::fixed`], but writes its answer one byte at a time
    /// with `pause` between bytes: the proxy must parse a response head
    /// that arrives in pieces.
    pub fn fixed_dribbling(label: &str, raw_response: &[u8], pause: Duration) -> Upstream {
        let raw = raw_response.to_vec();
        Upstream::start(label, move |conn| {
            while conn.read_request().is_some() {
                for byte in &raw {
                    if !(conn.write(std::slice::from_ref(byte)) && conn.sleep(pause)) {
                        return;
                    }
                }
            }
        })
    }

    /// Reads one request, writes the canned bytes, and closes: for close-
    /// delimited bodies, heads cut short, bodies cut short, and an upstream
    /// that hangs up without a word (`b""`).
    pub fn fixed_then_close(label: &str, raw_response: &[u8]) -> Upstream {
        let raw = raw_response.to_vec();
        Upstream::start(label, move |conn| {
            if conn.read_request().is_some() {
                conn.write(&raw);
                conn.shutdown_write();
                // Let the FIN go out before the socket is dropped, so the
                // proxy sees "closed after these bytes", not a reset.
                conn.sleep(Duration::from_millis(20));
            }
        })
    }

    /// Answers as soon as the request *head* arrived, before reading its
    /// body, then reads and drops whatever comes until the proxy closes.
    pub fn answer_before_body(label: &str, raw_response: &[u8]) -> Upstream {
        let raw = raw_response.to_vec();
        Upstream::start(label, move |conn| {
            if conn.read_request_head().is_some() && conn.write(&raw) {
                conn.drain_to_eof();
            }
        })
    }

    /// Answers every request with `n` pattern bytes (`Content-Length`),
    /// written as fast as the proxy takes them; [`Upstream::bytes_written`]
    /// shows how far it got, which is how the slow-reader story sees
    /// backpressure reach the upstream.
    pub fn big_body(label: &str, n: u64) -> Upstream {
        Upstream::start(label, move |conn| {
            while conn.read_request().is_some() {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
                if !(conn.write(head.as_bytes()) && conn.write_pattern(n)) {
                    return;
                }
            }
        })
    }

    /// Answers every request with `n` pattern bytes, chunked (chunks of
    /// assorted sizes, 1 byte to 64 KiB), then the given trailer fields.
    pub fn chunked(label: &str, n: u64, trailers: &[(&str, &str)]) -> Upstream {
        let trailers: Vec<(String, String)> = trailers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Upstream::start(label, move |conn| {
            while conn.read_request().is_some() {
                if !write_chunked_pattern(conn, n, &trailers, "") {
                    return;
                }
            }
        })
    }

    /// Reads uploads of any size (counting, checking the pattern, keeping
    /// only the first MiB) and answers `received=N pattern=true|false`.
    pub fn sink(label: &str) -> Upstream {
        Upstream::start(label, |conn| {
            while let Some(req) = conn.read_request() {
                let body = format!("received={} pattern={}", req.body_len, req.body_is_pattern);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if !(conn.write(head.as_bytes()) && conn.write(body.as_bytes())) {
                    return;
                }
            }
        })
    }

    /// Like [`Upstream::echo`], but waits `delay` before each answer.
    pub fn slow(label: &str, delay: Duration) -> Upstream {
        Upstream::start(label, move |conn| {
            while let Some(req) = conn.read_request() {
                if !(conn.sleep(delay) && serve_echo(conn, &req)) {
                    return;
                }
            }
        })
    }

    /// On each connection, answers the first `n` requests (echo,
    /// keep-alive), then reads the next one and hangs up without a word.
    /// To the proxy its pooled connection looked alive until it was used:
    /// the "dead pooled connection" of the retry stories.
    pub fn close_after_requests(label: &str, n: usize) -> Upstream {
        Upstream::start(label, move |conn| {
            for _ in 0..n {
                let Some(req) = conn.read_request() else {
                    return;
                };
                if !serve_echo(conn, &req) {
                    return;
                }
            }
            let _ = conn.read_request();
        })
    }

    /// Echo, but a connection left idle for `idle` after an answer is
    /// closed by the upstream, as real servers' keep-alive timeouts do.
    pub fn closing_when_idle(label: &str, idle: Duration) -> Upstream {
        Upstream::start(label, move |conn| {
            while let Some(req) = conn.read_request() {
                if !serve_echo(conn, &req) || !conn.wait_for_activity(idle) {
                    return;
                }
            }
        })
    }

    /// A WebSocket-ish server: to a request asking `Upgrade: websocket` it
    /// answers 101, sends [`WS_GREETING`] at once, then echoes every byte
    /// back until the proxy closes. Anything else gets 426.
    pub fn websocket(label: &str) -> Upstream {
        Upstream::start(label, |conn| {
            let Some(req) = conn.read_request() else {
                return;
            };
            if !req.has_token("Upgrade", "websocket") {
                let body = "this endpoint only speaks websocket\n";
                let answer = format!(
                    "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write(answer.as_bytes());
                return;
            }
            let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
            if !(conn.write(head.as_bytes()) && conn.write(WS_GREETING)) {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            while let Some(n) = conn.read_some(&mut buf) {
                if n == 0 || !conn.write(&buf[..n]) {
                    break;
                }
            }
            conn.shutdown_write();
            conn.sleep(Duration::from_millis(20));
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

/// What [`Upstream::websocket`] sends right after its 101, before echoing,
/// so a story can see bytes flow upstream → client unprompted.
pub const WS_GREETING: &[u8] = b"hello from upstream\n";

/// Answer `req` the way [`Upstream::echo`] describes; `false` when the
/// connection should end (the client asked to close, or a write failed).
fn serve_echo(conn: &mut UpConn, req: &SeenRequest) -> bool {
    let close = req.has_token("Connection", "close");
    let mut common = format!(
        "X-Upstream: {}\r\nX-Upstream-Conn: {}\r\n",
        conn.label, conn.index
    );
    if close {
        common.push_str("Connection: close\r\n");
    }
    let is_head = req.method == "HEAD";
    let number = |prefix: &str| -> Option<u64> { req.target.strip_prefix(prefix)?.parse().ok() };
    let ok = if let Some(n) = number("/bytes/") {
        let head = format!("HTTP/1.1 200 OK\r\n{common}Content-Length: {n}\r\n\r\n");
        conn.write(head.as_bytes()) && (is_head || conn.write_pattern(n))
    } else if let Some(n) = number("/chunked/") {
        if is_head {
            let head = format!("HTTP/1.1 200 OK\r\n{common}Transfer-Encoding: chunked\r\n\r\n");
            conn.write(head.as_bytes())
        } else {
            write_chunked_pattern(conn, n, &[], &common)
        }
    } else if let Some(code) = number("/status/") {
        let body = if code == 204 || code == 304 || is_head {
            String::new()
        } else {
            format!("status {code}\n")
        };
        let length = if code == 204 || code == 304 {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", format!("status {code}\n").len())
        };
        let head = format!("HTTP/1.1 {code} Status\r\n{common}{length}\r\n{body}");
        conn.write(head.as_bytes())
    } else if let Some(n) = number("/truncate/") {
        let head = format!(
            "HTTP/1.1 200 OK\r\n{common}Content-Length: {}\r\n\r\n",
            2 * n
        );
        conn.write(head.as_bytes());
        conn.write_pattern(n);
        conn.shutdown_write();
        conn.sleep(Duration::from_millis(20));
        false
    } else {
        let body = req.raw_head.as_bytes();
        let head = format!(
            "HTTP/1.1 200 OK\r\n{common}X-Echo-Method: {}\r\nX-Echo-Target: {}\r\nX-Echo-Body-Length: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            req.method,
            req.target,
            req.body_len,
            body.len()
        );
        conn.write(head.as_bytes()) && (is_head || conn.write(body))
    };
    ok && !close
}

/// Write a 200 with `n` pattern bytes chunked in assorted sizes, then the
/// trailers. `extra` is more header lines (each ending in CRLF).
fn write_chunked_pattern(
    conn: &mut UpConn,
    n: u64,
    trailers: &[(String, String)],
    extra: &str,
) -> bool {
    let announce = if trailers.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = trailers.iter().map(|(n, _)| n.as_str()).collect();
        format!("Trailer: {}\r\n", names.join(", "))
    };
    let head = format!("HTTP/1.1 200 OK\r\n{extra}{announce}Transfer-Encoding: chunked\r\n\r\n");
    if !conn.write(head.as_bytes()) {
        return false;
    }
    const SIZES: [u64; 6] = [1, 2, 1000, 16_384, 65_536, 3];
    let mut sent = 0u64;
    let mut i = 0;
    while sent < n {
        let len = SIZES[i % SIZES.len()].min(n - sent) as usize;
        i += 1;
        let mut chunk = format!("{len:x}\r\n").into_bytes();
        chunk.extend_from_slice(pattern(sent, len));
        chunk.extend_from_slice(b"\r\n");
        if !conn.write(&chunk) {
            return false;
        }
        sent += len as u64;
    }
    let mut last = b"0\r\n".to_vec();
    for (name, value) in trailers {
        last.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    last.extend_from_slice(b"\r\n");
    conn.write(&last)
}

// ---------------------------------------------------------------------------
// More fake upstreams: silent, and answering by target
// ---------------------------------------------------------------------------

impl Upstream {
    /// Accepts, reads one request, and never answers: it just holds the
    /// connection (reading and dropping anything more) until the proxy
    /// closes it: the upstream of the `read_ms` stories.
    pub fn silent(label: &str) -> Upstream {
        Upstream::start(label, |conn| {
            if conn.read_request_head().is_some() {
                conn.drain_to_eof();
            }
        })
    }

    /// An upstream whose health a story flips. While `sick` is set it
    /// answers `/healthz` with 503 and hangs up on every other request
    /// without a word (a 502-class failure for the proxy); otherwise it is
    /// [`Upstream::echo`], and `/healthz` is 200.
    pub fn flaky(label: &str, sick: Arc<AtomicBool>) -> Upstream {
        Upstream::start(label, move |conn| {
            while let Some(req) = conn.read_request() {
                let ill = sick.load(Ordering::SeqCst);
                if req.target == "/healthz" {
                    let status = if ill {
                        "503 Service Unavailable"
                    } else {
                        "200 OK"
                    };
                    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                    if !conn.write(answer.as_bytes()) {
                        return;
                    }
                    continue;
                }
                if ill || !serve_echo(conn, &req) {
                    return;
                }
            }
        })
    }

    /// [`Upstream::echo`] with two more targets, for stories that mix
    /// fast, slow and hanging requests on one upstream:
    /// `/delay/MS...` answers like echo after MS milliseconds, and `/hang`
    /// never answers, holding the connection until the proxy closes it.
    pub fn by_target(label: &str) -> Upstream {
        Upstream::start(label, |conn| {
            while let Some(req) = conn.read_request() {
                if req.target.starts_with("/hang") {
                    conn.drain_to_eof();
                    return;
                }
                if let Some(rest) = req.target.strip_prefix("/delay/") {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let ms = digits.parse().unwrap_or(0);
                    if !conn.sleep(Duration::from_millis(ms)) {
                        return;
                    }
                }
                if !serve_echo(conn, &req) {
                    return;
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// A `config.json` text for the binary, equal to [`config_for`] (listen on
/// an ephemeral loopback port, the contract's defaults) but logging at
/// `info`, so timeouts, shutdown and reload all show up on stderr. `tweak`
/// edits the JSON, e.g. `|c| c["timeouts"]["read_ms"] = 300.into()`.
pub fn config_json(upstreams: &[SocketAddr], tweak: impl FnOnce(&mut serde_json::Value)) -> String {
    let upstreams: Vec<serde_json::Value> = upstreams
        .iter()
        .map(|a| serde_json::json!({ "host": a.ip().to_string(), "port": a.port() }))
        .collect();
    let mut config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "upstreams": upstreams,
        "timeouts": {
            "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000,
            "client_header_ms": 10000, "keepalive_ms": 60000, "tunnel_idle_ms": 300000
        },
        "limits": {
            "max_client_conns": 1000, "max_conns_per_upstream": 100,
            "max_header_bytes": 16384, "buffer_bytes": 16384, "max_idle_per_upstream": 32
        },
        "logging": { "level": "info" }
    });
    tweak(&mut config);
    serde_json::to_string_pretty(&config).expect("a JSON value serializes")
}

/// How long [`ProxyProcess::start`] waits for the "listening on" line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `ferroxy` binary running as a child process with `--config` a temp
/// file, its stderr collected on a thread. For the stories that need what
/// only the binary has: signals, the config file, the log on stderr.
///
/// Dropping it kills the child (if it is still running), waits for it and
/// removes the config file, whichever way the story ended.
pub struct ProxyProcess {
    child: std::process::Child,
    /// Where the proxy listens (read from its startup line).
    pub addr: SocketAddr,
    config_path: std::path::PathBuf,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    exit: Option<std::process::ExitStatus>,
}

impl ProxyProcess {
    /// Write `config_text` to a fresh temp file and run
    /// `ferroxy --config FILE`; return once it printed its listen address.
    /// `name` goes into the temp file's name, to tell stories apart.
    pub fn start(name: &str, config_text: &str) -> ProxyProcess {
        ProxyProcess::start_limited(name, config_text, None, false)
    }

    /// [`ProxyProcess::start`] with `--demo`: demo upstreams on the
    /// config's upstream addresses, and the demo's static site.
    pub fn start_demo(name: &str, config_text: &str) -> ProxyProcess {
        ProxyProcess::start_limited(name, config_text, None, true)
    }

    /// [`ProxyProcess::start`] with the child's descriptor limit lowered
    /// to `fds` (`ulimit -n` in a shell that then `exec`s the proxy, so
    /// the pid is the proxy's).
    pub fn start_with_fd_limit(name: &str, config_text: &str, fds: u32) -> ProxyProcess {
        ProxyProcess::start_limited(name, config_text, Some(fds), false)
    }

    fn start_limited(name: &str, config_text: &str, fds: Option<u32>, demo: bool) -> ProxyProcess {
        use std::io::BufRead;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let config_path = std::env::temp_dir().join(format!(
            "ferroxy-{name}-{}-{}.json",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&config_path, config_text).expect("write the temp config file");
        let binary = env!("CARGO_BIN_EXE_ferroxy");
        let mut command = match fds {
            None => std::process::Command::new(binary),
            Some(fds) => {
                let mut sh = std::process::Command::new("sh");
                sh.args([
                    "-c",
                    "ulimit -n \"$0\" && exec \"$@\"",
                    &fds.to_string(),
                    binary,
                ]);
                sh
            }
        };
        if demo {
            command.arg("--demo");
        }
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the ferroxy binary");
        let pipe = child.stderr.take().expect("the child's stderr pipe");
        let stderr = Arc::new(Mutex::new(String::new()));
        // Ends when the child exits and the pipe closes.
        let reader = {
            let stderr = stderr.clone();
            thread::spawn(move || {
                for line in io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut all = stderr.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            })
        };
        let mut process = ProxyProcess {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            config_path,
            stderr,
            reader: Some(reader),
            exit: None,
        };
        let marker = "listening on http://";
        let mut addr = None;
        let started = wait_until(STARTUP_TIMEOUT, || {
            let text = process.stderr();
            addr = text.lines().find_map(|l| {
                let rest = &l[l.find(marker)? + marker.len()..];
                rest.split_whitespace().next()?.parse().ok()
            });
            addr.is_some() || process.has_exited()
        });
        match addr {
            Some(addr) if started => process.addr = addr,
            _ => panic!(
                "ferroxy did not print its listen address within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                process.stderr()
            ),
        }
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`"TERM"`, `"INT"`, `"HUP"`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Replace the config file's contents (for SIGHUP stories).
    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("rewrite the temp config file");
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait up to `timeout` until stderr holds `needle` at least `times`
    /// times; say whether it did.
    pub fn wait_for_log(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().matches(needle).count() >= times)
    }

    /// Whether the child has exited (remembering its status).
    pub fn has_exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait on the child");
        }
        self.exit.is_some()
    }

    /// Wait up to `timeout` for the child to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_until(timeout, || self.has_exited());
        if self.exit.is_some() {
            // The pipe is closed: let the reader finish so stderr is whole.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
        self.exit
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

// ---------------------------------------------------------------------------
// The metrics listener
// ---------------------------------------------------------------------------

/// A config tweak that turns the metrics listener on, on an ephemeral
/// loopback port: `start_proxy_with(&addrs, metrics_on)`. Find the port
/// with `proxy.metrics_addr()`.
pub fn metrics_on(config: &mut Config) {
    config.metrics = Some(ferroxy::config::MetricsConfig {
        listen: "127.0.0.1:0".to_string(),
    });
}

/// The address of the proxy's metrics listener; the story fails if it is
/// off.
pub fn metrics_addr(proxy: &ProxyHandle) -> SocketAddr {
    proxy
        .metrics_addr()
        .expect("the metrics listener should be on (start the proxy with `metrics_on`)")
}

/// `GET path` on the metrics listener, on a connection of its own (the
/// listener closes after every answer, so a scrape is one request).
pub fn scrape(proxy: &ProxyHandle, path: &str) -> Response {
    Client::connect(metrics_addr(proxy)).request(&get(path))
}

/// The body of `GET /metrics`, after checking it answered 200 with the
/// Prometheus text content type.
pub fn scrape_text(proxy: &ProxyHandle) -> String {
    let resp = scrape(proxy, "/metrics");
    assert_eq!(
        resp.status, 200,
        "GET /metrics should answer 200, got:\n{}",
        resp.raw_head
    );
    let content_type = resp.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "GET /metrics should be Prometheus text (text/plain; version=0.0.4), got {content_type:?}"
    );
    String::from_utf8(resp.body).expect("the Prometheus text is UTF-8")
}

/// The handshake a WebSocket client sends (RFC 6455 section 4.1).
pub fn websocket_upgrade_request() -> Vec<u8> {
    head(&[
        "GET /chat HTTP/1.1",
        "Host: test.local",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ])
}

/// The value of one sample in Prometheus text, e.g.
/// `metric_value(&text, "ferroxy_upstream_up{upstream=\"127.0.0.1:9001\"}")`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

// ---------------------------------------------------------------------------
// Static sites
// ---------------------------------------------------------------------------

/// A directory of files for a static route, removed when dropped. Each
/// gets its own name under the system's temp directory, so tests running
/// side by side never share one.
pub struct TempSite {
    pub dir: std::path::PathBuf,
}

impl TempSite {
    pub fn new(story: &str) -> TempSite {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferroxy-site-{story}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the site directory");
        TempSite { dir }
    }

    /// Write `bytes` at `rel` (parent directories made as needed).
    pub fn file(&self, rel: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create a directory in the site");
        }
        std::fs::write(&path, bytes).expect("write a file in the site");
        path
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.dir.join(rel)).expect("create a directory in the site");
    }

    pub fn symlink(&self, rel: &str, points_to: &str) {
        std::os::unix::fs::symlink(points_to, self.dir.join(rel)).expect("make a symlink");
    }
}

impl Drop for TempSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A route `prefix` -> static files from `root`.
pub fn static_route(prefix: &str, root: &std::path::Path) -> ferroxy::config::RouteConfig {
    ferroxy::config::RouteConfig {
        prefix: prefix.to_string(),
        group: None,
        root: Some(root.to_path_buf()),
    }
}

/// A route `prefix` -> upstream group `group`.
pub fn group_route(prefix: &str, group: &str) -> ferroxy::config::RouteConfig {
    ferroxy::config::RouteConfig {
        prefix: prefix.to_string(),
        group: Some(group.to_string()),
        root: None,
    }
}
