//! Signals, on the real binary: what an operator does to a running proxy.
//!
//! - SIGTERM or SIGINT: stop accepting, close idle connections, let
//!   requests in flight finish (for at most `total_ms`), exit 0.
//! - SIGHUP: read the config file again; new requests follow the new
//!   upstreams, timeouts and limits, open connections are not dropped, and
//!   a broken file is logged and changes nothing.
//!
//! Each story runs `ferroxy --config <temp file>` as a child process
//! ([`ProxyProcess`], killed whatever happens) in front of fake upstreams
//! in this test process, and sends signals with `kill(1)`.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How long a log line or an exit may take to show up.
const WAIT: Duration = Duration::from_secs(5);

/// Whether a new connection to `proxy` is refused (nobody listens).
fn connection_refused(proxy: &ProxyProcess) -> bool {
    TcpStream::connect_timeout(&proxy.addr, ms(1000)).is_err()
}

fn upstream_of(resp: &Response) -> &str {
    resp.header("X-Upstream").unwrap_or("<no X-Upstream>")
}

// ---------------------------------------------------------------------------
// SIGTERM and SIGINT
// ---------------------------------------------------------------------------

/// A graceful stop. One client is idle between requests, another waits for
/// a slow answer when SIGTERM arrives. The proxy stops listening (a new
/// connection is refused), closes the idle client without a word, lets the
/// slow request finish (200, whole body, `Connection: close`), and once it
/// has, exits with status 0.
#[test]
fn sigterm_lets_a_slow_request_finish_and_exits_0() {
    let upstream = Upstream::by_target("up");
    let config = config_json(&[upstream.addr], |_| {});
    let mut proxy = ProxyProcess::start("sigterm-slow", &config);

    let mut idle = Client::connect(proxy.addr);
    let resp = idle.request(&get("/first"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);

    let mut slow = Client::connect(proxy.addr);
    let sent = Instant::now();
    slow.send(&get("/delay/1500"));
    assert!(
        wait_until(WAIT, || upstream.request_count() == 2),
        "the slow request must reach the upstream before the signal"
    );

    proxy.signal("TERM");
    assert!(
        proxy.wait_for_log("shutting down", 1, WAIT),
        "SIGTERM must start a graceful shutdown; stderr:\n{}",
        proxy.stderr()
    );

    idle.expect_closed()
        .expect("an idle keep-alive client must be closed quietly at shutdown");
    assert!(
        connection_refused(&proxy),
        "after SIGTERM the proxy must not accept new connections"
    );

    let resp = slow
        .read_response("GET")
        .expect("the request in flight must be allowed to finish");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(upstream_of(&resp), "up");
    assert!(
        sent.elapsed() >= ms(1500),
        "the slow answer cannot have come before its delay"
    );
    assert!(
        resp.has_token("Connection", "close"),
        "the last response before shutdown must say Connection: close:\n{}",
        resp.raw_head
    );
    slow.expect_closed()
        .expect("after its last response the client is closed");
    // Like any client told `Connection: close`, close our side too, so the
    // proxy's lingering close ends now rather than after its linger time.
    drop(slow);
    drop(idle);

    let status = proxy.wait_exit(WAIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "after draining, the proxy must exit with status 0 ({status:?}); stderr:\n{}",
        proxy.stderr()
    );
}

/// SIGINT (Ctrl-C) is the same graceful stop. With nothing in flight the
/// proxy exits 0 at once, and its open idle client is simply closed.
#[test]
fn sigint_on_an_idle_proxy_exits_0_at_once() {
    let upstream = Upstream::echo("up");
    let config = config_json(&[upstream.addr], |_| {});
    let mut proxy = ProxyProcess::start("sigint-idle", &config);
    let mut idle = Client::connect(proxy.addr);
    let resp = idle.request(&get("/only"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);

    let signalled = Instant::now();
    proxy.signal("INT");
    let status = proxy.wait_exit(WAIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIGINT must stop the proxy with status 0 ({status:?}); stderr:\n{}",
        proxy.stderr()
    );
    assert!(
        signalled.elapsed() < ms(2000),
        "with nothing in flight the exit must be prompt, took {:?}",
        signalled.elapsed()
    );
    idle.expect_closed()
        .expect("the idle client is closed when the proxy exits");
}

/// The drain is bounded. A download that streams a little every 100 ms
/// (so neither `read_ms` nor `write_ms` will end it) is in progress when
/// SIGTERM arrives. The proxy waits `total_ms` (700) for it, no longer, and
/// then exits 0 anyway; the client sees its download cut short.
#[test]
fn sigterm_drain_is_bounded_by_total_ms() {
    let upstream = Upstream::start("endless", |conn| {
        if conn.read_request().is_none() {
            return;
        }
        if !conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n") {
            return;
        }
        let mut sent = 0;
        while conn.write(pattern(sent, 100)) && conn.sleep(ms(100)) {
            sent += 100;
        }
    });
    let config = config_json(&[upstream.addr], |c| c["timeouts"]["total_ms"] = 700.into());
    let mut proxy = ProxyProcess::start("sigterm-bounded", &config);

    let mut client = Client::connect(proxy.addr);
    client.send(&get("/endless"));
    let resp = client
        .read_head()
        .expect("the head of the endless download");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);

    let signalled = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(ms(700) + WAIT);
    let took = signalled.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "a drain that runs out of time still exits 0 ({status:?}); stderr:\n{}",
        proxy.stderr()
    );
    assert!(
        took + ms(20) >= ms(700),
        "the proxy must give the download total_ms to finish, it exited after {took:?}"
    );
    assert!(
        took <= ms(700) + ms(2000),
        "the drain must be bounded by total_ms, it took {took:?}"
    );
    let mut got = 0u64;
    let end = client.read_body_with("GET", &resp, &mut |d| got += d.len() as u64);
    assert!(
        end.is_err(),
        "the unfinished download must end early at exit (got {got} bytes)"
    );
}

// ---------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------

/// A reload moves traffic from upstream A to upstream B. A slow request
/// already at A when SIGHUP arrives finishes there; a keep-alive client
/// stays connected and its next request goes to B, as do new clients; A's
/// connections are closed once their requests end (not pooled).
#[test]
fn sighup_sends_new_requests_to_new_upstreams_without_dropping_connections() {
    let a = Upstream::by_target("A");
    let b = Upstream::by_target("B");
    let mut proxy = ProxyProcess::start("sighup-switch", &config_json(&[a.addr], |_| {}));

    let mut keepalive = Client::connect(proxy.addr);
    let resp = keepalive.request(&get("/before"));
    assert_eq!(upstream_of(&resp), "A", "{}", resp.raw_head);
    let mut slow = Client::connect(proxy.addr);
    slow.send(&get("/delay/1000"));
    assert!(
        wait_until(WAIT, || a.request_count() == 2),
        "the slow request must reach A before the reload"
    );

    proxy.rewrite_config(&config_json(&[b.addr], |_| {}));
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("reloaded config", 1, WAIT),
        "SIGHUP must reload the config; stderr:\n{}",
        proxy.stderr()
    );

    let resp = slow
        .read_response("GET")
        .expect("the request in flight survives the reload");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(upstream_of(&resp), "A", "it was already at A");

    let resp = keepalive.request(&get("/after"));
    assert_eq!(
        upstream_of(&resp),
        "B",
        "the kept-alive client's next request must follow the new config:\n{}",
        resp.raw_head
    );
    let resp = Client::connect(proxy.addr).request(&get("/new-client"));
    assert_eq!(upstream_of(&resp), "B", "{}", resp.raw_head);

    assert_eq!(a.request_count(), 2, "A must get nothing after the reload");
    assert_eq!(
        b.request_count(),
        2,
        "B gets both requests after the reload"
    );
    assert!(
        wait_until(WAIT, || a.open_connections() == 0),
        "connections to the removed upstream A must be closed, not pooled"
    );
    assert!(!proxy.has_exited(), "a reload must not stop the proxy");
}

/// A broken config file on SIGHUP is logged, and the running config stays:
/// requests keep going to A, on old and new connections. Fixing the file
/// and sending SIGHUP again then applies it.
#[test]
fn sighup_with_a_broken_file_keeps_the_old_config() {
    let a = Upstream::by_target("A");
    let b = Upstream::by_target("B");
    let mut proxy = ProxyProcess::start("sighup-broken", &config_json(&[a.addr], |_| {}));
    let mut keepalive = Client::connect(proxy.addr);
    assert_eq!(upstream_of(&keepalive.request(&get("/one"))), "A");

    proxy.rewrite_config("{ \"listen\": \"127.0.0.1:0\", \"upstreams\": [ oops");
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("keeping the running config", 1, WAIT),
        "a broken file must be logged as such; stderr:\n{}",
        proxy.stderr()
    );
    assert!(!proxy.has_exited(), "a broken file must not stop the proxy");
    assert_eq!(
        upstream_of(&keepalive.request(&get("/two"))),
        "A",
        "the old config must stay in force"
    );
    assert_eq!(
        upstream_of(&Client::connect(proxy.addr).request(&get("/three"))),
        "A",
        "new connections too use the old config"
    );

    proxy.rewrite_config(&config_json(&[b.addr], |_| {}));
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("reloaded config", 1, WAIT),
        "a fixed file must reload; stderr:\n{}",
        proxy.stderr()
    );
    assert_eq!(
        upstream_of(&keepalive.request(&get("/four"))),
        "B",
        "after the fix the new upstream must apply"
    );
    assert_eq!(b.request_count(), 1);
}

/// Timeouts come from the file too: SIGHUP with `read_ms` lowered from 15 s
/// to 300 ms, and the next request to an upstream that never answers gets
/// 504 after 300 ms.
#[test]
fn sighup_applies_new_timeouts() {
    let upstream = Upstream::by_target("up");
    let mut proxy = ProxyProcess::start("sighup-timeouts", &config_json(&[upstream.addr], |_| {}));

    proxy.rewrite_config(&config_json(&[upstream.addr], |c| {
        c["timeouts"]["read_ms"] = 300.into();
    }));
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("reloaded config", 1, WAIT),
        "SIGHUP must reload the config; stderr:\n{}",
        proxy.stderr()
    );

    let mut client = Client::connect(proxy.addr);
    let started = Instant::now();
    let resp = client.request(&get("/hang"));
    let elapsed = started.elapsed();
    assert_error_answer(&resp, 504, "read_ms after a reload");
    assert!(
        elapsed + ms(20) >= ms(300) && elapsed <= ms(300) + ms(1500),
        "the reloaded read_ms (300 ms) must apply, the 504 took {elapsed:?}"
    );
    assert!(!proxy.has_exited(), "the proxy keeps running");
}
