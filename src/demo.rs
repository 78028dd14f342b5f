//! `ferroxy --demo`: small built-in HTTP/1.1 upstreams, so a newcomer can
//! `curl` at once and each lesson has knobs to turn.
//!
//! What a demo upstream answers (every response carries `X-Upstream: <name>`,
//! so the proxy's balancing shows in `curl -v`):
//!
//! | path | answer |
//! | --- | --- |
//! | `/bytes/N` | N bytes with `Content-Length`, written 64 KiB at a time |
//! | `/chunked/N` | N bytes, `Transfer-Encoding: chunked`, chunks of at most 8 KiB |
//! | `/delay/MS` | the echo below, after MS milliseconds (at most 60000) |
//! | `/status/CODE` | that status (200..=599) with a short text body; 204 and 304 have none |
//! | anything else | `200`, the request echoed as JSON: `upstream`, `method`, `target`, `version`, `headers`, `body_bytes` |
//!
//! Body bytes follow [`pattern_byte`] (`abc...zabc...`), so a test can check
//! every byte that came through the proxy without keeping a copy.
//!
//! Where it sits: *outside* the proxy. It is a fixture that plays the
//! upstream servers, for `ferroxy --demo`, for the lessons and for tests.
//!
//! NB: it is built the way the proxy is *not*: std blocking sockets and one
//! thread per connection. That is the simplest server that can be correct,
//! and it is lesson 2's subject: every idle keep-alive connection costs a
//! whole thread (stack, scheduler entry) just to wait. The proxy serves
//! thousands of connections from one `mio` loop instead (lesson 3).
//!
//! What it does not do: TLS, `Date` headers, ranges, compression, or any
//! limit on the number of connections. Request framing is strict (both
//! `Content-Length` and `Transfer-Encoding`, duplicate lengths, bad chunk
//! sizes: 400 and close) so that a proxy bug shows up as a 400 here rather
//! than being papered over.
//!
//! Over 500 lines, on purpose: a whole small HTTP server (its own head
//! and chunked parsing, on purpose independent of the proxy's, so the two
//! cannot share a bug) in one file a reader can skip.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A connection idle this long between requests (or stalled inside one) is
/// closed: nginx's `keepalive_timeout` default (75 s). Longer than the
/// proxy's default `keepalive_ms` (60 s), so with the seed config the proxy,
/// not the upstream, closes an idle pooled connection (no race); the pool
/// must still cope with an upstream that closes first (lesson 12).
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The largest request head accepted (more: 431 and close).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header fields per request head (more: 431), as in the contract.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line, and most trailer lines.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 100;
/// `/delay/MS` waits at most this long, so a typo cannot park a thread for hours.
const MAX_DELAY_MS: u64 = 60_000;
/// `/bytes/N` writes this much per `write` call.
const WRITE_BLOCK: usize = 64 * 1024;
/// `/chunked/N` puts at most this much data in one chunk.
const CHUNK_BYTES: usize = 8 * 1024;

/// The byte at `offset` in every body a demo upstream sends: `a` to `z`,
/// repeating. A test can check any byte of a huge body by its position.
pub fn pattern_byte(offset: u64) -> u8 {
    b'a' + (offset % 26) as u8
}

/// A running demo upstream. Dropping it stops it: the listener closes (new
/// connects are refused) and open connections are shut down, much like
/// killing an upstream process.
pub struct DemoUpstream {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

/// What the accept thread and the connection threads share.
struct Shared {
    name: String,
    stopping: AtomicBool,
    /// A clone of every open connection's socket, so `drop` can shut them
    /// down while their threads are blocked in `read`.
    open: Mutex<HashMap<u64, TcpStream>>,
    connections_accepted: AtomicU64,
    requests_served: AtomicU64,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        // Nothing panics while holding this lock, but if something ever
        // did, the map is still usable: take it rather than panic too.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl DemoUpstream {
    /// Start a demo upstream on `addr` (must be loopback; port 0 picks a
    /// free port), naming itself `name` in its answers.
    ///
    /// Fails with `InvalidInput` for a non-loopback address: the demo has
    /// no limits and echoes whatever it is sent, so it must not be
    /// reachable from other machines.
    pub fn start(addr: SocketAddr, name: &str) -> io::Result<DemoUpstream> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("demo upstreams listen on loopback only; {addr} is not loopback"),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            connections_accepted: AtomicU64::new(0),
            requests_served: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_connections(listener, accept_shared))?;
        Ok(DemoUpstream {
            local_addr,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The name it answers with in `X-Upstream` and the echo's `upstream`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Connections accepted so far. With `requests_served` this shows
    /// keep-alive at work: many requests, few connections.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::SeqCst)
    }

    /// Responses started so far, refusals (400, 431, ...) included.
    pub fn requests_served(&self) -> u64 {
        self.shared.requests_served.load(Ordering::SeqCst)
    }
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept thread is blocked in `accept`, and a blocking accept
        // has no portable "cancel". So we wake it the ordinary way: connect.
        // It sees `stopping`, returns, and the listener closes with it.
        let woke = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1)).is_ok();
        if let Some(accept_thread) = self.accept_thread.take() {
            // Without the wake-up connect, joining could wait forever; the
            // thread then ends at its next accept instead.
            if woke {
                let _ = accept_thread.join();
            }
        }
        // After the join no new connection is registered, so this reaches
        // them all: their blocked reads return and their threads end.
        for stream in self.shared.open().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_connections(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id: u64 = 0;
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(err) => {
                // E.g. out of file descriptors: retrying at once would spin
                // the CPU, so back off a little (nginx pauses accept too).
                log::warn!("{}: accept failed: {err}", shared.name);
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.connections_accepted.fetch_add(1, Ordering::SeqCst);
        let id = next_id;
        next_id += 1;
        if let Ok(clone) = stream.try_clone() {
            shared.open().insert(id, clone);
        }
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("{}-conn-{id}", shared.name))
            .spawn(move || {
                serve_connection(stream, &conn_shared);
                conn_shared.open().remove(&id);
            });
        if let Err(err) = spawned {
            // The closure, and the stream in it, is dropped: the peer sees
            // the connection close, which is all we can offer.
            log::warn!("{}: cannot spawn a connection thread: {err}", shared.name);
            shared.open().remove(&id);
        }
    }
}

/// Why a connection stops being served.
enum Stop {
    /// The socket failed, timed out or closed: nothing more can be said.
    Io(io::Error),
    /// The peer sent something we refuse: answer `status` and close.
    Refuse(u16, String),
}

impl From<io::Error> for Stop {
    fn from(err: io::Error) -> Stop {
        Stop::Io(err)
    }
}

fn refuse(status: u16, why: impl Into<String>) -> Stop {
    Stop::Refuse(status, why.into())
}

/// One client connection: the socket plus bytes read but not yet used (the
/// rest of a read that went past the head, or a pipelined next request).
struct Conn {
    stream: TcpStream,
    unread: Vec<u8>,
}

impl Conn {
    /// Read once more from the socket into `unread`; 0 means end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.stream.read(&mut chunk) {
                // A signal landed mid-read (a debugger or `strace -p`
                // attaching does this): nothing went wrong, read again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.unread.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// `fill`, but end of stream is an error: used where more must come.
    fn fill_more(&mut self) -> io::Result<()> {
        match self.fill()? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}

/// A request head, copied out of the read buffer.
struct Request {
    method: String,
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (what httparse reports).
    minor_version: u8,
    headers: Vec<(String, String)>,
}

impl Request {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (`Connection`, `Expect`) lists `token`.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    fn version(&self) -> &'static str {
        if self.minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    // Heads and small bodies go out in one write, but streamed bodies are
    // several: without this, Nagle's algorithm can hold back a last small
    // segment until the peer's delayed ACK (up to 40 ms on Linux).
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    let mut conn = Conn {
        stream,
        unread: Vec::new(),
    };
    loop {
        match serve_one_request(&mut conn, shared) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(Stop::Io(err)) => {
                log::debug!("{}: connection ends: {err}", shared.name);
                return;
            }
            Err(Stop::Refuse(status, why)) => {
                log::debug!("{}: refusing request: {status} {why}", shared.name);
                shared.requests_served.fetch_add(1, Ordering::SeqCst);
                let reply = Reply::text(status, why);
                let rules = ReplyRules {
                    http10: false,
                    keep_alive: false,
                    head_only: false,
                };
                if reply.send(&mut conn, shared, rules).is_err() {
                    return;
                }
                break;
            }
        }
    }
    close_gently(conn);
}

/// Close after a final response without losing it.
///
/// If the kernel closes a socket whose receive buffer still holds unread
/// bytes (the rest of a refused request, say), it sends RST, and an RST can
/// make the peer discard our response before reading it. So: send FIN,
/// then read and drop whatever still arrives, briefly. nginx calls this
/// `lingering_close`.
fn close_gently(conn: Conn) {
    let Conn { mut stream, .. } = conn;
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(2);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Read one request, answer it. `Ok(true)`: the connection stays open for
/// the next request; `Ok(false)`: close it (cleanly, the answer is out).
fn serve_one_request(conn: &mut Conn, shared: &Shared) -> Result<bool, Stop> {
    let Some(request) = read_head(conn)? else {
        return Ok(false);
    };
    let framing = request_framing(&request)?;

    let keep_alive = if request.minor_version == 0 {
        request.has_token("connection", "keep-alive")
    } else {
        !request.has_token("connection", "close")
    };

    // The client is waiting for permission to send its body. RFC 9110 says
    // an HTTP/1.0 client cannot mean it, and with no body there is nothing
    // to permit, so only then.
    if request.minor_version == 1
        && !matches!(framing, Framing::NoBody)
        && request.has_token("expect", "100-continue")
    {
        conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    // Read the whole body before answering, whatever the answer: a reply
    // sent while the request is still arriving is legal but is a harder
    // case for a proxy, and not what these knobs are for.
    let body_bytes = match framing {
        Framing::NoBody => 0,
        Framing::Length(n) => {
            discard(conn, n)?;
            n
        }
        Framing::Chunked => discard_chunked(conn)?,
    };

    let reply = route(&request, body_bytes, &shared.name);
    log::debug!(
        "{}: {} {} -> {}",
        shared.name,
        request.method,
        request.target,
        reply.status
    );
    shared.requests_served.fetch_add(1, Ordering::SeqCst);
    let rules = ReplyRules {
        http10: request.minor_version == 0,
        keep_alive,
        head_only: request.method == "HEAD",
    };
    Ok(reply.send(conn, shared, rules)?)
}

/// Read until a complete head is buffered. `Ok(None)`: the peer closed or
/// went idle between requests, which is the normal end of a connection.
fn read_head(conn: &mut Conn) -> Result<Option<Request>, Stop> {
    loop {
        if !conn.unread.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&conn.unread) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let request = Request {
                        method: parsed.method.unwrap_or_default().to_string(),
                        target: parsed.path.unwrap_or_default().to_string(),
                        minor_version: parsed.version.unwrap_or(1),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    conn.unread.drain(..head_len);
                    return Ok(Some(request));
                }
                // Not an error: the rest of the head is still on its way.
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(refuse(431, "more than 100 header fields"));
                }
                Err(err) => return Err(refuse(400, format!("malformed request head: {err}"))),
            }
            if conn.unread.len() >= MAX_HEAD_BYTES {
                return Err(refuse(431, "request head over 64 KiB"));
            }
        }
        match conn.fill() {
            Ok(0) if conn.unread.is_empty() => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(_) => {}
            // A read timeout is how an idle keep-alive connection ends.
            Err(err) if conn.unread.is_empty() && is_timeout(&err) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
    }
}

fn is_timeout(err: &io::Error) -> bool {
    // Unix reports an expired SO_RCVTIMEO as WouldBlock, Windows as TimedOut.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// How the request body is delimited (RFC 9112 section 6).
enum Framing {
    NoBody,
    Length(u64),
    Chunked,
}

fn request_framing(request: &Request) -> Result<Framing, Stop> {
    let encodings: Vec<&str> = request.values("transfer-encoding").collect();
    let lengths: Vec<&str> = request.values("content-length").collect();
    if !encodings.is_empty() {
        // Both present is the classic request-smuggling setup: two parsers
        // that pick different ones disagree on where the next request starts.
        if !lengths.is_empty() {
            return Err(refuse(400, "both Content-Length and Transfer-Encoding"));
        }
        if encodings.len() != 1 || !encodings[0].trim().eq_ignore_ascii_case("chunked") {
            return Err(refuse(501, "only Transfer-Encoding: chunked is understood"));
        }
        return Ok(Framing::Chunked);
    }
    match lengths.as_slice() {
        [] => Ok(Framing::NoBody),
        [one] => match parse_decimal(one) {
            Some(0) => Ok(Framing::NoBody),
            Some(n) => Ok(Framing::Length(n)),
            None => Err(refuse(400, "Content-Length is not a number")),
        },
        _ => Err(refuse(400, "more than one Content-Length")),
    }
}

/// Digits only: no sign, no spaces, no lists. `u64::from_str` alone would
/// accept a leading `+`.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Read and drop exactly `n` body bytes.
fn discard(conn: &mut Conn, mut n: u64) -> Result<(), Stop> {
    while n > 0 {
        if conn.unread.is_empty() {
            conn.fill_more()?;
        }
        let take = conn
            .unread
            .len()
            .min(usize::try_from(n).unwrap_or(usize::MAX));
        conn.unread.drain(..take);
        n -= take as u64;
    }
    Ok(())
}

/// Read a chunked body to its end, dropping the data; returns its length.
///
/// ```text
/// 1a;name=value\r\n     chunk size in hex, optional extensions
/// <26 bytes>\r\n
/// 0\r\n                 last chunk
/// Trailer: value\r\n    optional trailer fields
/// \r\n
/// ```
fn discard_chunked(conn: &mut Conn) -> Result<u64, Stop> {
    let mut total: u64 = 0;
    loop {
        let line = read_line(conn)?;
        let size_text = line
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_end_matches([' ', '\t']);
        let size = match size_text.len() {
            1..=16 if size_text.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u64::from_str_radix(size_text, 16).map_err(|_| refuse(400, "bad chunk size"))?
            }
            _ => return Err(refuse(400, format!("bad chunk size line {line:?}"))),
        };
        if size == 0 {
            for _ in 0..MAX_TRAILERS {
                if read_line(conn)?.is_empty() {
                    return Ok(total);
                }
            }
            return Err(refuse(400, "too many trailer fields"));
        }
        discard(conn, size)?;
        if !read_line(conn)?.is_empty() {
            return Err(refuse(400, "chunk data longer than its size"));
        }
        total = total.saturating_add(size);
    }
}

/// One CRLF-terminated line (without the CRLF), for chunked framing. A bare
/// LF is refused: accepting it is one of the parser differences smuggling
/// attacks are built on.
fn read_line(conn: &mut Conn) -> Result<String, Stop> {
    loop {
        if let Some(lf) = conn.unread.iter().position(|&b| b == b'\n') {
            if lf == 0 || conn.unread[lf - 1] != b'\r' {
                return Err(refuse(400, "bare LF in chunked framing"));
            }
            let line = String::from_utf8_lossy(&conn.unread[..lf - 1]).into_owned();
            conn.unread.drain(..=lf);
            return Ok(line);
        }
        if conn.unread.len() > MAX_CHUNK_LINE {
            return Err(refuse(400, "chunk-size or trailer line too long"));
        }
        conn.fill_more()?;
    }
}

/// How the request wants its answer, whatever the answer is.
#[derive(Clone, Copy)]
struct ReplyRules {
    /// The client speaks HTTP/1.0: no chunked, keep-alive only on request.
    http10: bool,
    keep_alive: bool,
    /// `HEAD`: the head a `GET` would get, and no body.
    head_only: bool,
}

/// What to send back, decided before any byte is written.
struct Reply {
    status: u16,
    body: ReplyBody,
}

enum ReplyBody {
    /// No body and no `Content-Length` (204, 304).
    Nothing,
    /// A small body held in memory.
    Small {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
    /// `/bytes/N`: `Content-Length: N`, pattern bytes.
    Pattern(u64),
    /// `/chunked/N`: N pattern bytes, chunked (or until close for HTTP/1.0).
    ChunkedPattern(u64),
}

impl Reply {
    fn text(status: u16, message: impl Into<String>) -> Reply {
        let mut bytes = message.into().into_bytes();
        bytes.push(b'\n');
        Reply {
            status,
            body: ReplyBody::Small {
                content_type: "text/plain; charset=utf-8",
                bytes,
            },
        }
    }

    /// Write head and body. Returns whether the connection may stay open,
    /// which a close-delimited body rules out whatever the client wanted.
    fn send(&self, conn: &mut Conn, shared: &Shared, rules: ReplyRules) -> io::Result<bool> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nX-Upstream: {}\r\n",
            self.status,
            crate::http::errors::reason(self.status),
            shared.name
        );
        let mut keep_alive = rules.keep_alive;
        match &self.body {
            ReplyBody::Nothing => {}
            ReplyBody::Small {
                content_type,
                bytes,
            } => {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    bytes.len()
                ));
            }
            ReplyBody::Pattern(n) => {
                head.push_str(&format!(
                    "Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n"
                ));
            }
            ReplyBody::ChunkedPattern(_) => {
                head.push_str("Content-Type: application/octet-stream\r\n");
                if rules.http10 {
                    // An HTTP/1.0 client cannot read chunked (RFC 9112
                    // section 6.1), so the body ends when we close.
                    keep_alive = false;
                } else {
                    head.push_str("Transfer-Encoding: chunked\r\n");
                }
            }
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        } else if rules.http10 {
            // HTTP/1.0 closes by default: say that we will not.
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");

        let mut out = head.into_bytes();
        if rules.head_only {
            conn.stream.write_all(&out)?;
            return Ok(keep_alive);
        }
        match &self.body {
            ReplyBody::Nothing => conn.stream.write_all(&out)?,
            ReplyBody::Small { bytes, .. } => {
                out.extend_from_slice(bytes);
                conn.stream.write_all(&out)?;
            }
            ReplyBody::Pattern(n) => {
                conn.stream.write_all(&out)?;
                write_pattern(&mut conn.stream, *n, WRITE_BLOCK, |stream, data| {
                    stream.write_all(data)
                })?;
            }
            ReplyBody::ChunkedPattern(n) if rules.http10 => {
                conn.stream.write_all(&out)?;
                write_pattern(&mut conn.stream, *n, CHUNK_BYTES, |stream, data| {
                    stream.write_all(data)
                })?;
            }
            ReplyBody::ChunkedPattern(n) => {
                conn.stream.write_all(&out)?;
                // One write per chunk (size line, data, CRLF together) so a
                // reader sees whole chunks arrive, not three small pieces.
                let mut frame = Vec::with_capacity(CHUNK_BYTES + 16);
                write_pattern(&mut conn.stream, *n, CHUNK_BYTES, |stream, data| {
                    frame.clear();
                    frame.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    frame.extend_from_slice(data);
                    frame.extend_from_slice(b"\r\n");
                    stream.write_all(&frame)
                })?;
                conn.stream.write_all(b"0\r\n\r\n")?;
            }
        }
        Ok(keep_alive)
    }
}

/// Send `n` pattern bytes in pieces of at most `piece`, never holding more
/// than one piece: N may be far larger than memory.
fn write_pattern(
    stream: &mut TcpStream,
    n: u64,
    piece: usize,
    mut write_piece: impl FnMut(&mut TcpStream, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    // One block long enough to start at any offset modulo 26.
    let block: Vec<u8> = (0..(piece + 26) as u64).map(pattern_byte).collect();
    let mut sent: u64 = 0;
    while sent < n {
        let len = usize::try_from(n - sent).unwrap_or(usize::MAX).min(piece);
        let start = (sent % 26) as usize;
        write_piece(stream, &block[start..start + len])?;
        sent += len as u64;
    }
    Ok(())
}

/// Pick the answer from the path (the query string is ignored).
fn route(request: &Request, body_bytes: u64, name: &str) -> Reply {
    let path = path_of(&request.target);
    if let Some(arg) = path.strip_prefix("/bytes/") {
        return match parse_decimal(arg) {
            Some(n) => Reply {
                status: 200,
                body: ReplyBody::Pattern(n),
            },
            None => Reply::text(400, "/bytes/N: N must be a number of bytes"),
        };
    }
    if let Some(arg) = path.strip_prefix("/chunked/") {
        return match parse_decimal(arg) {
            Some(n) => Reply {
                status: 200,
                body: ReplyBody::ChunkedPattern(n),
            },
            None => Reply::text(400, "/chunked/N: N must be a number of bytes"),
        };
    }
    if let Some(arg) = path.strip_prefix("/delay/") {
        return match parse_decimal(arg) {
            Some(ms) => {
                thread::sleep(Duration::from_millis(ms.min(MAX_DELAY_MS)));
                echo(request, body_bytes, name)
            }
            None => Reply::text(400, "/delay/MS: MS must be a number of milliseconds"),
        };
    }
    if let Some(arg) = path.strip_prefix("/status/") {
        return match parse_decimal(arg).and_then(|code| u16::try_from(code).ok()) {
            // A 1xx is an interim answer; sent as the final one it would
            // leave the client waiting for a response that never comes.
            Some(code @ 200..=599) => status_reply(code),
            _ => Reply::text(400, "/status/CODE: CODE must be 200 to 599"),
        };
    }
    echo(request, body_bytes, name)
}

fn status_reply(code: u16) -> Reply {
    match code {
        // These never have a body (RFC 9110 sections 15.3.5 and 15.4.5).
        204 | 304 => Reply {
            status: code,
            body: ReplyBody::Nothing,
        },
        _ => Reply::text(
            code,
            format!("{code} {}", crate::http::errors::reason(code)),
        ),
    }
}

fn echo(request: &Request, body_bytes: u64, name: &str) -> Reply {
    let headers: Vec<[&str; 2]> = request
        .headers
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    let json = serde_json::json!({
        "upstream": name,
        "method": request.method,
        "target": request.target,
        "version": request.version(),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut bytes = json.to_string().into_bytes();
    bytes.push(b'\n');
    Reply {
        status: 200,
        body: ReplyBody::Small {
            content_type: "application/json",
            bytes,
        },
    }
}

/// The path of an origin-form (`/a?b`) or absolute-form
/// (`http://host/a?b`) target, without the query.
fn path_of(target: &str) -> &str {
    let after_authority = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => target,
    };
    after_authority
        .split(['?', '#'])
        .next()
        .unwrap_or(after_authority)
}
