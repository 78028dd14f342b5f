//! The soak: a minute of everything at once, then a look for what is left.
//!
//! Dozens of short stories can pass while a proxy still leaks a socket per
//! thousand aborted uploads, or a timer per hanging upstream. This one runs
//! many clients for a while (`FERROXY_SOAK_SECS`, default 60), each mixing
//! good, slow, hanging, aborted, malformed and slowloris traffic, plus an
//! upstream that lies about its body length. Afterwards the proxy must be
//! alive, hold nothing but its idle pool (and nothing at all once the
//! upstreams are gone), and this process's descriptors and memory must be
//! back near where they started.
//!
//! Ignored by default (it takes a minute); run it with
//! `cargo test --release -- --ignored soak`. It has this file to itself so
//! no other story opens descriptors while it counts them.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Client threads driving traffic together.
const WORKERS: usize = 12;

/// The kinds of traffic, in the order a worker cycles through them.
const KINDS: [&str; 10] = [
    "good",
    "good",
    "upload",
    "chunked",
    "slow",
    "hanging",
    "aborted",
    "malformed",
    "slowloris",
    "lying",
];

/// The read_ms the soak proxy uses: a hanging request costs this long.
const READ_MS: u64 = 300;
const CLIENT_HEADER_MS: u64 = 500;

unsafe extern "C" {
    /// glibc: give freed heap memory back to the kernel, in every arena.
    fn malloc_trim(pad: usize) -> i32;
}

/// Resident memory once freed heap memory has been handed back. The fake
/// upstreams live in this process and keep what they receive until they
/// are dropped; without the trim, memory they freed would still count
/// (glibc keeps freed memory for reuse) and hide or fake a proxy leak.
fn settled_rss_bytes() -> u64 {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        malloc_trim(0);
    }
    rss_bytes()
}

/// Tallies shared by the workers.
#[derive(Default)]
struct Tally {
    done: [AtomicU64; KINDS.len()],
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, kind: usize, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.done[kind].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let mut failures = self.failures.lock().unwrap();
                // Enough to diagnose, bounded however broken the proxy is.
                if failures.len() < 50 {
                    failures.push(format!("{}: {e}", KINDS[kind]));
                }
            }
        }
    }

    fn total(&self) -> u64 {
        self.done.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

fn expect_status(resp: &Response, status: u16) -> Result<(), String> {
    if resp.status == status {
        Ok(())
    } else {
        Err(format!("expected {status}, got:\n{}", resp.raw_head))
    }
}

/// A keep-alive GET on the worker's long-lived connection (opened again if
/// the proxy closed it): `/bytes/N` arrives whole and unmangled.
fn good(conn: &mut Option<Client>, addr: std::net::SocketAddr, round: u64) -> Result<(), String> {
    let client = conn.get_or_insert_with(|| Client::connect(addr));
    let n = [0u64, 1000, 100_000][(round % 3) as usize];
    let outcome = client
        .try_send(&get(&format!("/bytes/{n}")))
        .and_then(|_| client.read_response("GET"))
        .and_then(|resp| {
            expect_status(&resp, 200)?;
            if resp.body.len() as u64 != n || !matches_pattern(0, &resp.body) {
                return Err(format!(
                    "/bytes/{n}: got {} bytes, or mangled",
                    resp.body.len()
                ));
            }
            Ok(())
        });
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

/// A 64 KiB upload, echoed back as its length.
fn upload(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr);
    client.try_send(&post("/upload", &pattern_bytes(64 * 1024)))?;
    let resp = client.read_response("POST")?;
    expect_status(&resp, 200)?;
    match resp.header("X-Echo-Body-Length") {
        Some("65536") => Ok(()),
        other => Err(format!("the upstream saw a body of {other:?} bytes")),
    }
}

fn chunked(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr);
    client.try_send(&get("/chunked/50000"))?;
    let resp = client.read_response("GET")?;
    expect_status(&resp, 200)?;
    if resp.body.len() != 50_000 || !matches_pattern(0, &resp.body) {
        return Err(format!(
            "chunked body of {} bytes, or mangled",
            resp.body.len()
        ));
    }
    Ok(())
}

fn slow(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr);
    client.try_send(&get("/delay/100"))?;
    expect_status(&client.read_response("GET")?, 200)
}

/// The upstream never answers: 504 after read_ms.
fn hanging(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr);
    client.try_send(&get("/hang"))?;
    expect_status(&client.read_response("GET")?, 504)
}

/// The client gives up half way: an upload cut short, or a download
/// abandoned after its head. Nothing to check but that nothing is left.
fn aborted(addr: std::net::SocketAddr, round: u64) -> Result<(), String> {
    let mut client = Client::connect(addr);
    if round.is_multiple_of(2) {
        let mut partial =
            format!("POST /abandoned HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\n")
                .into_bytes();
        partial.extend_from_slice(pattern(0, 1000));
        client.try_send(&partial)?;
    } else {
        client.try_send(&get("/bytes/5000000"))?;
        expect_status(&client.read_head()?, 200)?;
    }
    Ok(())
}

/// Requests the proxy must refuse with 400.
fn malformed(addr: std::net::SocketAddr, round: u64) -> Result<(), String> {
    let bad: &[u8] = match round % 3 {
        0 => b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        1 => b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        _ => b"NOT A REQUEST\r\n\r\n",
    };
    let mut client = Client::connect(addr);
    let resp = client.request_refused(bad)?;
    expect_status(&resp, 400)
}

/// Half a head, then nothing: 408 after client_header_ms.
fn slowloris(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr);
    client.try_send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").as_bytes())?;
    expect_status(&client.read_response("GET")?, 408)
}

/// The upstream promises 2000 bytes, sends 1000 and hangs up: the client
/// gets the head and then a close before the body is complete.
fn lying(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut client = Client::connect(addr);
    client.try_send(&get("/truncate/1000"))?;
    let resp = client.read_head()?;
    expect_status(&resp, 200)?;
    match client.read_body_with("GET", &resp, &mut |_| {}) {
        Err(_) => Ok(()),
        Ok(_) => Err("a truncated body was passed off as complete".to_string()),
    }
}

/// A minute (or `FERROXY_SOAK_SECS`) of mixed traffic from twelve clients,
/// then the checks: the proxy still answers; once the clients are gone it
/// holds only idle pooled connections, and once the upstreams are gone,
/// nothing (no connection, timer or buffer); this process's descriptors
/// and resident memory are back near their baseline.
#[test]
#[ignore = "runs for a minute: cargo test --release -- --ignored soak"]
fn soak_mixed_traffic_leaves_nothing_behind() {
    let secs: u64 = std::env::var("FERROXY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let a = Upstream::by_target("A");
    let b = Upstream::by_target("B");
    let proxy = start_proxy_with(&[a.addr, b.addr], |c| {
        c.timeouts.read_ms = READ_MS;
        c.timeouts.client_header_ms = CLIENT_HEADER_MS;
        c.timeouts.connect_ms = 2000;
    });
    let addr = proxy.local_addr();

    // Warm up (allocator, pool, thread machinery), then take the baseline.
    for _ in 0..20 {
        let resp = Client::connect(addr).request(&get("/bytes/100000"));
        assert_eq!(resp.status, 200, "warm-up: {}", resp.raw_head);
    }
    let base_fds = open_fd_count();
    let base_rss = settled_rss_bytes();

    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let tally = tally.clone();
            thread::spawn(move || {
                let mut conn = None;
                let mut round = w as u64;
                while Instant::now() < deadline {
                    let kind = (round as usize) % KINDS.len();
                    let outcome = match KINDS[kind] {
                        "good" => good(&mut conn, addr, round / 10),
                        "upload" => upload(addr),
                        "chunked" => chunked(addr),
                        "slow" => slow(addr),
                        "hanging" => hanging(addr),
                        "aborted" => aborted(addr, round / 10),
                        "malformed" => malformed(addr, round / 10),
                        "slowloris" => slowloris(addr),
                        "lying" => lying(addr),
                        other => unreachable!("no such kind {other}"),
                    };
                    tally.record(kind, outcome);
                    round += 1;
                }
            })
        })
        .collect();
    // Meanwhile: keep the fake upstreams from hoarding what they received
    // (they live in this process, so their log would count as our memory).
    while Instant::now() < deadline {
        a.forget_requests();
        b.forget_requests();
        thread::sleep(ms(500));
    }
    for worker in workers {
        worker.join().expect("a soak worker panicked");
    }

    let failures = tally.failures.lock().unwrap().clone();
    let per_kind: Vec<String> = KINDS
        .iter()
        .zip(&tally.done)
        .map(|(k, n)| format!("{k} {}", n.load(Ordering::Relaxed)))
        .collect();
    println!(
        "soak: {} exchanges in {secs} s ({})",
        tally.total(),
        per_kind.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} exchanges went wrong, first ones:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        tally.total() >= 1000 || secs < 30,
        "a soak of {secs} s should drive thousands of exchanges, drove {}",
        tally.total()
    );

    // Alive: a fresh client is served.
    let resp = Client::connect(addr).request(&get("/after-the-soak"));
    assert_eq!(
        resp.status, 200,
        "the proxy must still serve:\n{}",
        resp.raw_head
    );

    // Clients gone: only idle pooled connections remain.
    let settled = wait_for_stats(&proxy, ms(10_000), |s| {
        s.client_connections == 0
            && s.queued_requests == 0
            && s.upstream_connections == s.idle_upstream_connections
    });
    println!("soak: after the clients left: {settled:?}");
    assert!(
        settled.is_ok(),
        "with every client gone only idle pooled connections may remain: {settled:?}"
    );

    // Upstreams gone: their pooled connections close, and nothing is left.
    drop(a);
    drop(b);
    let empty = wait_for_stats(&proxy, ms(10_000), |s| {
        s.connections == 0 && s.timers == 0 && s.buffer_bytes == 0
    });
    println!("soak: after the upstreams stopped: {empty:?}");
    assert!(
        empty.is_ok(),
        "with the upstreams gone the proxy must hold no connection, timer or buffer: {empty:?}"
    );

    // Descriptors: the upstream listeners are gone too, so at most the
    // baseline (a few more allowed for sockets the kernel is still tearing
    // down on the fixture side).
    let fds_ok = wait_until(ms(5000), || open_fd_count() <= base_fds + 4);
    let fds = open_fd_count();
    let rss = settled_rss_bytes();
    println!(
        "soak: fds {base_fds} -> {fds}, RSS {} -> {} MiB",
        base_rss >> 20,
        rss >> 20
    );
    assert!(
        fds_ok,
        "file descriptors leaked: {base_fds} before the soak, {fds} after"
    );
    // Memory: thread stacks and allocator arenas come and go, so allow
    // some growth, but nothing like a per-request leak over thousands.
    let allowed = 32 << 20;
    assert!(
        rss <= base_rss + allowed,
        "resident memory grew from {} to {} MiB over the soak",
        base_rss >> 20,
        rss >> 20
    );
}
