//! Time: every deadline the proxy keeps, one story each.
//!
//! The proxy keeps one timer per connection, for the earliest of the
//! deadlines its phase is under (the table in `src/reactor/time.rs`):
//! `connect_ms` while connecting, `read_ms` while a peer owes bytes,
//! `write_ms` while a peer does not take ours, `total_ms` until the response
//! head, `client_header_ms` for a request head, `keepalive_ms` between
//! requests and for pooled connections, `tunnel_idle_ms` in a tunnel.
//!
//! Each story sets the timeout it is about to a few hundred milliseconds
//! (the others stay long, so only one can fire) and measures when the proxy
//! acts. The machine is small and shared, so the bounds are generous: an
//! answer must come no earlier than the timeout and within [`SLACK`] of it.

mod support;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::*;

/// How late after its deadline a timeout may act and still pass.
const SLACK: Duration = Duration::from_millis(1500);

/// How early it may seem to act: the proxy's clock reads whole
/// milliseconds, so a deadline can look a millisecond or two early.
const ROUNDING: Duration = Duration::from_millis(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `elapsed` is no earlier than `timeout` (less clock rounding) and no later
/// than `timeout + SLACK`.
fn assert_fired_on_time(elapsed: Duration, timeout: Duration, story: &str) {
    assert!(
        elapsed + ROUNDING >= timeout,
        "{story}: the proxy acted after {elapsed:?}, before the {timeout:?} timeout had passed"
    );
    assert!(
        elapsed <= timeout + SLACK,
        "{story}: the proxy acted only after {elapsed:?}, far past the {timeout:?} timeout"
    );
}

// ---------------------------------------------------------------------------
// Helpers only these stories need
// ---------------------------------------------------------------------------

unsafe extern "C" {
    /// `listen(2)` from the C library std already links. Called on a
    /// socket that is already listening, it only changes the backlog.
    fn listen(fd: i32, backlog: i32) -> i32;
}

/// A loopback listener whose accept queue is full and never drained: the
/// kernel drops every further SYN, so a connect to it neither succeeds nor
/// fails, it hangs. This is how `connect_ms` is tested without ever
/// touching an address outside this machine.
struct HangingListener {
    addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

fn hanging_listener() -> HangingListener {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hanging listener");
    // SAFETY: a plain syscall on a descriptor this function owns.
    let rc = unsafe { listen(listener.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(fd, 0) failed");
    let addr = listener.local_addr().unwrap();
    // Connect (and never accept) until a connect hangs: from then on the
    // queue is full. With a backlog of 0 that takes one or two.
    let mut fillers = Vec::new();
    for _ in 0..32 {
        match TcpStream::connect_timeout(&addr, ms(200)) {
            Ok(stream) => fillers.push(stream),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return HangingListener {
                    addr,
                    _listener: listener,
                    _fillers: fillers,
                };
            }
            Err(e) => panic!("filling the accept queue of {addr} failed: {e}"),
        }
    }
    panic!(
        "{} connects to {addr} all succeeded: the accept queue never filled",
        fillers.len()
    );
}

/// Writes `bytes` to the proxy one at a time, `pause` apart, on its own
/// thread, until they run out, a write fails, or it is stopped: a client
/// that trickles while the story reads the answer.
struct Trickler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Trickler {
    fn start(client: &Client, bytes: Vec<u8>, pause: Duration) -> Trickler {
        let mut stream = client
            .stream()
            .try_clone()
            .expect("clone the client socket");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = 0;
                for byte in &bytes {
                    if stop.load(Ordering::SeqCst) || stream.write_all(&[*byte]).is_err() {
                        break;
                    }
                    sent += 1;
                    thread::sleep(pause);
                }
                sent
            })
        };
        Trickler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and say how many bytes went out.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Trickler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Streams pattern bytes to the proxy as fast as it takes them, on its own
/// thread, until `total` are out, a write fails, or it is stopped: an upload
/// that runs while the story reads the answer.
struct Uploader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Uploader {
    fn start(client: &Client, total: u64) -> Uploader {
        let mut stream = client
            .stream()
            .try_clone()
            .expect("clone the client socket");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = 0u64;
                while sent < total && !stop.load(Ordering::SeqCst) {
                    let n = (total - sent).min(PATTERN_CHUNK as u64) as usize;
                    // Blocks while the proxy does not read; the socket's
                    // write timeout (IO_TIMEOUT) bounds each write.
                    match stream.write(pattern(sent, n)) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => sent += k as u64,
                    }
                }
                sent
            })
        };
        Uploader {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// connect_ms
// ---------------------------------------------------------------------------

/// The upstream's accept queue is full, so the proxy's connect hangs. After
/// `connect_ms` the proxy gives up and answers 504 Gateway Timeout (not 502:
/// nothing refused, it just took too long), and lets the half-open socket go.
#[test]
fn connect_ms_hanging_connect_gets_504() {
    let hanging = hanging_listener();
    let proxy = start_proxy_with(&[hanging.addr], |c| c.timeouts.connect_ms = 300);
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let resp = client.request(&get("/"));
    let elapsed = started.elapsed();

    assert_error_answer(&resp, 504, "connect never completes");
    assert_fired_on_time(elapsed, ms(300), "connect_ms");
    client.expect_closed().expect("504 then close");
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.upstream_connections == 0);
    assert!(
        stats.is_ok(),
        "after the 504 the hanging connect must be closed too: {stats:?}"
    );
    drop(client);
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.connections == 0);
    assert!(stats.is_ok(), "nothing may be left open: {stats:?}");
}

// ---------------------------------------------------------------------------
// read_ms
// ---------------------------------------------------------------------------

/// The upstream accepts the request and never says a word. After `read_ms`
/// of silence the client gets 504, and the upstream connection is closed
/// (it is never pooled: a late answer would land on the next request).
#[test]
fn read_ms_silent_upstream_gets_504() {
    let upstream = Upstream::silent("silent");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.read_ms = 300);
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let resp = client.request(&get("/nothing-comes-back"));
    let elapsed = started.elapsed();

    assert_error_answer(&resp, 504, "silent upstream");
    assert_fired_on_time(elapsed, ms(300), "read_ms before the head");
    assert_eq!(
        upstream.request_count(),
        1,
        "the request must have reached the upstream"
    );
    assert!(
        wait_until(ms(2000), || upstream.open_connections() == 0),
        "the proxy must close its connection to the silent upstream"
    );
    assert!(
        wait_for_stats(&proxy, ms(2000), |s| s.idle_upstream_connections == 0).is_ok(),
        "a timed-out upstream connection must not be pooled"
    );
}

/// The upstream sends its head and part of the body, then stalls. The head
/// is already with the client, so no error answer is possible any more:
/// after `read_ms` without a byte the proxy closes the client connection,
/// and the client sees a body shorter than its `Content-Length`.
#[test]
fn read_ms_upstream_stalling_mid_body_closes_the_client() {
    upstream_stalls_mid_body(100_000, 1000);
}

/// The same stall in a body long enough to travel by `splice(2)`: the
/// pipe's reads count as reads, so `read_ms` is measured from the last
/// bytes spliced.
#[test]
fn read_ms_upstream_stalling_mid_spliced_body_closes_the_client() {
    upstream_stalls_mid_body(4 << 20, 512 << 10);
}

/// An upstream that promises `length` body bytes, sends `sent`, and goes
/// silent; `read_ms` is 300 ms.
fn upstream_stalls_mid_body(length: u64, sent: u64) {
    let upstream = Upstream::start("stalls", move |conn| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
        if conn.read_request().is_some() && conn.write(head.as_bytes()) && conn.write_pattern(sent)
        {
            // The rest is still owed; wait for the proxy to give up.
            conn.drain_to_eof();
        }
    });
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.read_ms = 300);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/stalls"));
    let resp = client
        .read_head()
        .expect("the head arrives before the stall");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let body = client
        .read_exact_bytes(sent as usize)
        .expect("the body bytes sent before the stall arrive");
    assert!(matches_pattern(0, &body), "the body bytes were mangled");

    let stalled = Instant::now();
    let (rest, end) = client.read_until_close();
    let elapsed = stalled.elapsed();
    assert!(
        end.is_ok(),
        "the proxy must close the client after read_ms of upstream silence: {end:?}"
    );
    assert!(
        rest.is_empty(),
        "nothing may follow the stall, got {} bytes",
        rest.len()
    );
    assert_fired_on_time(elapsed, ms(300), "read_ms after the head");
    assert!(
        wait_until(ms(2000), || upstream.open_connections() == 0),
        "the stalled upstream connection must be closed too"
    );
    let left = wait_for_stats(&proxy, ms(2000), |s| s.connections == 0 && s.timers == 0);
    assert!(left.is_ok(), "nothing may be left in the slab: {left:?}");
}

/// A client sends its head and part of its body, then stalls. After
/// `read_ms` without a byte from it the proxy answers 408 Request Timeout
/// (the client is the slow one, so never 504) and the upstream, which got
/// only part of the body, is hung up on.
#[test]
fn read_ms_client_stalling_its_body_gets_408() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.read_ms = 300);
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let mut request =
        format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(pattern(0, 100));
    client.send(&request);
    let resp = client
        .read_response("POST")
        .expect("an answer to the stalled upload");
    let elapsed = started.elapsed();

    assert_error_answer(&resp, 408, "client stalls in its body");
    assert_fired_on_time(elapsed, ms(300), "read_ms on the client body");
    assert!(
        upstream.complete_requests().is_empty(),
        "the upstream must not see a complete request: {:?}",
        upstream.requests()
    );
}

/// The upstream starts its answer (`HTTP/1.1 200 OK` and one field) and
/// then goes silent before the head is complete. Nothing has reached the
/// client yet (the proxy forwards whole heads only), so after `read_ms` it
/// can still say 504.
#[test]
fn read_ms_half_a_response_head_then_silence_gets_504() {
    let upstream = Upstream::start("half-head", |conn| {
        if conn.read_request().is_some() && conn.write(b"HTTP/1.1 200 OK\r\nX-Half: ") {
            conn.drain_to_eof();
        }
    });
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.read_ms = 300);
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let resp = client.request(&get("/half"));
    let elapsed = started.elapsed();

    assert_error_answer(&resp, 504, "half a response head, then silence");
    assert_fired_on_time(elapsed, ms(300), "read_ms inside the response head");
}

/// Twenty clients wait on a silent upstream at once: twenty timers in the
/// wheel, all due at about the same time. Every one of them fires: each
/// client gets its 504 on time, and nothing is left open afterwards.
#[test]
fn read_ms_fires_for_every_one_of_many_hanging_requests() {
    let upstream = Upstream::silent("silent");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.read_ms = 300);
    let addr = proxy.local_addr();

    let started = Instant::now();
    let waiters: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                let resp = client.request(&get(&format!("/hang/{i}")));
                (resp, started.elapsed())
            })
        })
        .collect();
    for (i, waiter) in waiters.into_iter().enumerate() {
        let (resp, elapsed) = waiter.join().expect("a waiting client failed");
        assert_error_answer(&resp, 504, &format!("hanging request {i} of 20"));
        assert!(
            elapsed <= ms(300) + SLACK,
            "hanging request {i}: the 504 came only after {elapsed:?}"
        );
    }
    assert_eq!(
        upstream.request_count(),
        20,
        "all twenty reached the upstream"
    );
    let stats = wait_for_stats(&proxy, ms(3000), |s| s.connections == 0 && s.timers == 0);
    assert!(
        stats.is_ok(),
        "after twenty timeouts nothing may be left, not even a timer: {stats:?}"
    );
}

// ---------------------------------------------------------------------------
// write_ms
// ---------------------------------------------------------------------------

/// A client asks for a large download, reads the head, then stops reading.
/// The bytes pile up in the socket buffers until the proxy can write no
/// more; `write_ms` later it closes the client and the upstream. A long
/// `read_ms` and `total_ms` show it is `write_ms` that acted.
#[test]
fn write_ms_client_that_stops_reading_is_cut_off() {
    let size = 1u64 << 30;
    let upstream = Upstream::big_body("big", size);
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.write_ms = 300;
        c.timeouts.read_ms = 20_000;
    });
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/big"));
    let resp = client.read_head().expect("the head of the big download");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);

    // Not reading now. Loopback buffers fill within milliseconds; then
    // write_ms runs out.
    let closed = wait_for_stats(&proxy, ms(300) + ms(4000), |s| s.connections == 0);
    assert!(
        closed.is_ok(),
        "a client that stopped reading must be cut off after write_ms: {closed:?}"
    );
    assert!(
        wait_until(ms(3000), || upstream.open_connections() == 0),
        "the upstream connection of the abandoned download must be closed too"
    );

    // What was buffered still arrives, then the close: far short of 1 GiB.
    let mut got = 0u64;
    let end = client.read_body_with("GET", &resp, &mut |d| got += d.len() as u64);
    assert!(
        end.is_err() && got < size,
        "the body must end early after the cut-off (got {got} bytes, {end:?})"
    );
}

/// An upstream reads the head of a large upload and then stops reading.
/// The proxy's writes to it block; after `write_ms` without progress the
/// client gets 504 (the response has not started, so it can still be told).
#[test]
fn write_ms_upstream_that_stops_reading_an_upload_gets_504() {
    let upstream = Upstream::start("deaf", |conn| {
        if conn.read_request_head().is_some() {
            // Never read the body; just wait until the story ends.
            while conn.sleep(ms(50)) {}
        }
    });
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.write_ms = 300;
        c.timeouts.read_ms = 20_000;
    });
    let mut client = Client::connect(proxy.local_addr());

    let size = 1u64 << 30;
    let started = Instant::now();
    client.send(
        format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n\r\n")
            .as_bytes(),
    );
    let uploader = Uploader::start(&client, size);
    let resp = client
        .read_response("POST")
        .expect("an answer to the upload nobody reads");
    let elapsed = started.elapsed();
    drop(uploader);

    assert_error_answer(&resp, 504, "upstream stops reading the upload");
    assert!(
        elapsed + ROUNDING >= ms(300) && elapsed <= ms(300) + ms(3000),
        "the 504 must come write_ms after the upload stalled, took {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------
// total_ms
// ---------------------------------------------------------------------------

/// An upstream dribbles its response head one byte every 50 ms. Each byte
/// resets `read_ms` (300), so that never fires; `total_ms` (800) bounds the
/// whole wait for the head and answers 504.
#[test]
fn total_ms_bounds_a_response_head_that_trickles_in() {
    let head = format!(
        "HTTP/1.1 200 OK\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(60)
    );
    let upstream = Upstream::fixed_dribbling("dribbler", head.as_bytes(), ms(50));
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.read_ms = 300;
        c.timeouts.total_ms = 800;
    });
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let resp = client.request(&get("/slow-head"));
    let elapsed = started.elapsed();

    assert_error_answer(&resp, 504, "response head trickles past total_ms");
    assert_fired_on_time(elapsed, ms(800), "total_ms");
}

/// A client sends its head, then trickles its body a byte every 50 ms.
/// `read_ms` (300) never fires, but `total_ms` (800) covers the request body
/// too: the client, still sending, is the slow one, so it gets 408, not 504.
#[test]
fn total_ms_408_while_the_client_still_trickles_its_body() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.read_ms = 300;
        c.timeouts.total_ms = 800;
    });
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    client.send(
        format!("POST /trickle HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000\r\n\r\n")
            .as_bytes(),
    );
    let trickler = Trickler::start(&client, pattern_bytes(1000), ms(50));
    let resp = client
        .read_response("POST")
        .expect("an answer to the trickled body");
    let elapsed = started.elapsed();
    let sent = trickler.stop();

    assert_error_answer(&resp, 408, "client trickles its body past total_ms");
    assert_fired_on_time(elapsed, ms(800), "total_ms with the body still coming");
    assert!(
        sent < 1000,
        "the body must not have been complete ({sent} bytes sent)"
    );
}

/// Once the response head is out, `total_ms` no longer applies: a download
/// that takes three times `total_ms`, with a byte batch every 100 ms (well
/// inside `read_ms`), arrives whole.
#[test]
fn total_ms_does_not_cut_a_long_download() {
    const PIECES: u64 = 15;
    const PIECE: u64 = 1000;
    let upstream = Upstream::start("steady", |conn| {
        if conn.read_request().is_none() {
            return;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            PIECES * PIECE
        );
        if !conn.write(head.as_bytes()) {
            return;
        }
        for i in 0..PIECES {
            if !(conn.sleep(ms(100)) && conn.write(pattern(i * PIECE, PIECE as usize))) {
                return;
            }
        }
    });
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.read_ms = 1000;
        c.timeouts.total_ms = 500;
    });
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let resp = client.request(&get("/long-download"));
    let elapsed = started.elapsed();

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.body.len() as u64,
        PIECES * PIECE,
        "the download was cut short"
    );
    assert!(matches_pattern(0, &resp.body), "the body was mangled");
    assert!(
        elapsed > ms(1000),
        "the story needs a download longer than total_ms; it took {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------
// client_header_ms
// ---------------------------------------------------------------------------

/// A slowloris client sends a request head a byte every 50 ms and never
/// finishes it. After `client_header_ms` it gets 408 and is closed; the
/// upstream never hears of it.
#[test]
fn client_header_ms_slowloris_gets_408_and_close() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.client_header_ms = 400);
    let mut client = Client::connect(proxy.local_addr());

    let started = Instant::now();
    let mut endless = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").into_bytes();
    endless.extend(std::iter::repeat_n(b'a', 200));
    let trickler = Trickler::start(&client, endless, ms(50));
    let resp = client
        .read_response("GET")
        .expect("a 408 for the slowloris");
    let elapsed = started.elapsed();
    trickler.stop();

    assert_error_answer(&resp, 408, "slowloris");
    assert_fired_on_time(elapsed, ms(400), "client_header_ms");
    client
        .expect_closed()
        .expect("the slowloris connection must be closed after the 408");
    assert_eq!(
        upstream.connections(),
        0,
        "the upstream must never be contacted"
    );
}

/// A client connects and sends nothing at all. It holds a connection slot,
/// so it too gets 408 after `client_header_ms`, then the close.
#[test]
fn client_header_ms_empty_connection_gets_408() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.client_header_ms = 300);
    let started = Instant::now();
    let mut client = Client::connect(proxy.local_addr());

    let resp = client
        .read_response("GET")
        .expect("a 408 for the silent client");
    let elapsed = started.elapsed();

    assert_error_answer(&resp, 408, "silent new connection");
    assert_fired_on_time(elapsed, ms(300), "client_header_ms on an empty connection");
    client.expect_closed().expect("close after the 408");
    drop(client);
    assert!(
        wait_for_stats(&proxy, ms(2000), |s| s.connections == 0).is_ok(),
        "the connection must be gone from the proxy"
    );
}

/// The head deadline of a new connection runs from accept, not from the
/// first byte: a slowloris that waits most of `client_header_ms` before its
/// first byte must not win a fresh `client_header_ms` by doing so. Here it
/// waits 600 of 800 ms, then trickles; the 408 must come about 200 ms
/// after its first byte, certainly before 800 ms have passed since then.
#[test]
fn client_header_ms_counts_from_accept_not_from_the_first_byte() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.client_header_ms = 800);
    let connected = Instant::now();
    let mut client = Client::connect(proxy.local_addr());
    assert!(
        wait_for_stats(&proxy, ms(2000), |s| s.client_connections == 1).is_ok(),
        "the proxy must accept the connection"
    );

    thread::sleep(ms(600));
    let first_byte = Instant::now();
    let mut endless = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").into_bytes();
    endless.extend(std::iter::repeat_n(b'a', 200));
    let trickler = Trickler::start(&client, endless, ms(50));
    let resp = client
        .read_response("GET")
        .expect("a 408 for the late slowloris");
    let since_first_byte = first_byte.elapsed();
    let since_connect = connected.elapsed();
    trickler.stop();

    assert_error_answer(&resp, 408, "late slowloris");
    assert!(
        since_first_byte < ms(800),
        "client_header_ms must count from accept: the 408 came {since_connect:?} after \
         connecting but {since_first_byte:?} after the first byte, a fresh 800 ms"
    );
}

/// Between requests a kept-alive client is under `keepalive_ms` (long
/// here); once it starts its next head, `client_header_ms` applies from
/// that first byte. A client that trickles its second head gets 408 about
/// `client_header_ms` after it began, not `keepalive_ms`.
#[test]
fn client_header_ms_applies_to_the_next_head_on_a_kept_alive_connection() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.client_header_ms = 400;
        c.timeouts.keepalive_ms = 60_000;
    });
    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&get("/first"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);

    thread::sleep(ms(200));
    let started = Instant::now();
    let mut endless = format!("GET /second HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").into_bytes();
    endless.extend(std::iter::repeat_n(b'a', 200));
    let trickler = Trickler::start(&client, endless, ms(50));
    let resp = client
        .read_response("GET")
        .expect("a 408 for the second, trickled head");
    let elapsed = started.elapsed();
    trickler.stop();

    assert_error_answer(&resp, 408, "kept-alive slowloris");
    assert_fired_on_time(elapsed, ms(400), "client_header_ms on the second head");
    assert_eq!(
        upstream.request_count(),
        1,
        "only the first request reached the upstream"
    );
}

// ---------------------------------------------------------------------------
// keepalive_ms
// ---------------------------------------------------------------------------

/// After a request, a keep-alive client goes quiet. After `keepalive_ms`
/// the proxy closes the connection quietly: no 408, no bytes at all (the
/// client asked for nothing; a stray answer would be read as the response
/// to its next request).
#[test]
fn keepalive_ms_idle_client_is_closed_quietly() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.keepalive_ms = 400);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/one"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let idle_since = Instant::now();
    client
        .expect_closed()
        .expect("an idle keep-alive client must be closed without a word");
    assert_fired_on_time(idle_since.elapsed(), ms(400), "keepalive_ms");
}

/// A pooled upstream connection left idle longer than `keepalive_ms` is
/// closed by the proxy (the upstream would close it anyway, and a request
/// sent just as it does would fail).
#[test]
fn keepalive_ms_idle_pooled_upstream_connection_is_closed() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.keepalive_ms = 400);

    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&get("/one"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let parked = Instant::now();
    drop(client);

    let pooled = wait_for_stats(&proxy, ms(300), |s| s.idle_upstream_connections == 1);
    assert!(
        pooled.is_ok(),
        "the upstream connection must be pooled after the answer: {pooled:?}"
    );
    assert!(
        wait_until(ms(400) + SLACK, || upstream.open_connections() == 0),
        "the idle pooled connection must be closed after keepalive_ms"
    );
    let elapsed = parked.elapsed();
    assert!(
        elapsed + ROUNDING >= ms(400),
        "the pooled connection was closed after {elapsed:?}, before keepalive_ms"
    );
    let stats = wait_for_stats(&proxy, ms(1000), |s| s.connections == 0);
    assert!(stats.is_ok(), "nothing may be left open: {stats:?}");
}

// ---------------------------------------------------------------------------
// tunnel_idle_ms
// ---------------------------------------------------------------------------

/// Open a tunnel through `proxy` and read the upstream's greeting.
fn open_tunnel(proxy: &ferroxy::reactor::ProxyHandle) -> Client {
    let mut client = Client::connect(proxy.local_addr());
    client.send(&websocket_upgrade_request());
    let resp = client.read_head().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.raw_head);
    let greeting = client
        .read_exact_bytes(WS_GREETING.len())
        .expect("the upstream's greeting through the tunnel");
    assert_eq!(greeting, WS_GREETING);
    client
}

/// A WebSocket often sits quiet: a chat nobody types in. The tunnel stays
/// quiet for three times `read_ms`, which would kill an HTTP exchange, and
/// is still open: the next message goes through and comes back.
#[test]
fn tunnel_quiet_longer_than_read_ms_survives() {
    let upstream = Upstream::websocket("ws");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.read_ms = 200;
        c.timeouts.write_ms = 200;
        c.timeouts.total_ms = 200;
        c.timeouts.tunnel_idle_ms = 5000;
    });
    let mut client = open_tunnel(&proxy);

    thread::sleep(ms(700));
    client.send(b"still there?");
    let echo = client
        .read_exact_bytes(12)
        .expect("a tunnel quiet for 3 x read_ms must still carry bytes");
    assert_eq!(echo, b"still there?");
}

/// Quiet past `tunnel_idle_ms`, though, and the tunnel is closed, both
/// sides: the client sees the close, the upstream sees its connection end.
#[test]
fn tunnel_quiet_past_tunnel_idle_ms_is_closed() {
    let upstream = Upstream::websocket("ws");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.timeouts.read_ms = 10_000;
        c.timeouts.tunnel_idle_ms = 400;
    });
    let mut client = open_tunnel(&proxy);

    let quiet_since = Instant::now();
    client
        .expect_closed()
        .expect("a tunnel idle past tunnel_idle_ms must be closed");
    assert_fired_on_time(quiet_since.elapsed(), ms(400), "tunnel_idle_ms");
    assert!(
        wait_until(ms(2000), || upstream.open_connections() == 0),
        "the upstream side of the idle tunnel must be closed too"
    );
}

/// "Idle" means no byte either way. An upstream that pushes a tick every
/// 150 ms to a client that never says anything keeps the tunnel alive well
/// past `tunnel_idle_ms` (500): traffic in one direction is traffic.
#[test]
fn tunnel_with_traffic_one_way_only_is_not_idle() {
    let upstream = Upstream::start("ticker", |conn| {
        if conn.read_request().is_none() {
            return;
        }
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        if !conn.write(head.as_bytes()) {
            return;
        }
        while conn.write(b"tick\n") && conn.sleep(ms(150)) {}
    });
    let proxy = start_proxy_with(&[upstream.addr], |c| c.timeouts.tunnel_idle_ms = 500);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&websocket_upgrade_request());
    let resp = client.read_head().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.raw_head);

    let started = Instant::now();
    let mut ticks = 0;
    while started.elapsed() < ms(1500) {
        let tick = client.read_exact_bytes(5).unwrap_or_else(|e| {
            panic!(
                "the tunnel died after {ticks} ticks ({:?}): {e}",
                started.elapsed()
            )
        });
        assert_eq!(tick, b"tick\n");
        ticks += 1;
    }
    assert!(ticks >= 5, "only {ticks} ticks in 1.5 s");
}

// ---------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------

/// The line in `log` that contains `needle`, for assertions.
fn log_line<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines().find(|l| l.contains(needle))
}

/// Every timeout is logged with what an operator needs to find it: the
/// kind, spelled as the config key that set it (`timeout read_ms`), the
/// connection (with the client's address) and the upstream. Seen on the
/// real binary's stderr, for a `read_ms` and a `client_header_ms`.
#[test]
fn timeouts_are_logged_with_kind_connection_and_upstream() {
    let upstream = Upstream::silent("silent");
    let config = config_json(&[upstream.addr], |c| {
        c["timeouts"]["read_ms"] = 300.into();
        c["timeouts"]["client_header_ms"] = 300.into();
    });
    let proxy = ProxyProcess::start("timeout-log", &config);

    let mut waiting = Client::connect(proxy.addr);
    let waiting_addr = waiting.stream().local_addr().unwrap();
    let resp = waiting.request(&get("/never-answered"));
    assert_error_answer(&resp, 504, "silent upstream (binary)");

    let mut mute = Client::connect(proxy.addr);
    let mute_addr = mute.stream().local_addr().unwrap();
    let resp = mute
        .read_response("GET")
        .expect("a 408 for the mute client");
    assert_error_answer(&resp, 408, "mute client (binary)");

    assert!(
        proxy.wait_for_log("timeout client_header_ms", 1, ms(3000)),
        "no `timeout client_header_ms` in the log:\n{}",
        proxy.stderr()
    );
    let log = proxy.stderr();
    let read = log_line(&log, "timeout read_ms")
        .unwrap_or_else(|| panic!("no `timeout read_ms` line in the log:\n{log}"));
    assert!(
        read.contains("connection") && read.contains(&waiting_addr.to_string()),
        "the read_ms line must name the client connection ({waiting_addr}): {read}"
    );
    assert!(
        read.contains(&upstream.addr.to_string()),
        "the read_ms line must name the upstream ({}): {read}",
        upstream.addr
    );
    let header = log_line(&log, "timeout client_header_ms").unwrap();
    assert!(
        header.contains("connection") && header.contains(&mute_addr.to_string()),
        "the client_header_ms line must name the client connection ({mute_addr}): {header}"
    );
}
