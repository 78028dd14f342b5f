//! Keep-alive on both sides, and the upstream pool (lesson 12).
//!
//! A client connection carries many requests; an upstream connection, once
//! its response ended cleanly, waits in a per-upstream pool for the next
//! request from any client. The hard part is the pooled connection the
//! upstream has meanwhile closed: it must be dropped as soon as the close
//! arrives, and if a request still meets one, only an idempotent request may
//! be replayed on a fresh connection.

mod support;

use std::thread;
use std::time::Duration;

use support::*;

/// 100 requests one after the other on one client connection all travel
/// over the same single upstream connection.
#[test]
fn hundred_requests_share_one_upstream_connection() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    for i in 0..100 {
        let resp = client.request(&get(&format!("/seq/{i}")));
        assert_eq!(
            resp.header("X-Echo-Target"),
            Some(format!("/seq/{i}").as_str()),
            "request {i} got someone else's answer:\n{}",
            resp.raw_head
        );
    }

    assert_eq!(
        upstream.connections(),
        1,
        "100 sequential requests should reuse one upstream connection"
    );
    assert_eq!(upstream.request_count(), 100);
}

/// The pool is per upstream, not per client: a second client's request goes
/// over the connection the first client's request left idle.
#[test]
fn pooled_connection_serves_the_next_client() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);

    let mut first = Client::connect(proxy.local_addr());
    assert_eq!(first.request(&get("/first")).status, 200);
    drop(first);
    let parked = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
        s.idle_upstream_connections == 1
    });
    assert!(
        parked.is_ok(),
        "after a clean response the upstream connection should be pooled: {parked:?}"
    );

    let mut second = Client::connect(proxy.local_addr());
    let resp = second.request(&get("/second"));
    assert_eq!(resp.header("X-Upstream-Conn"), Some("1"));
    assert_eq!(
        upstream.connections(),
        1,
        "the second client should reuse the pooled connection"
    );
}

/// An HTTP/1.0 client that asks for `Connection: keep-alive` gets it: the
/// answer says `Connection: keep-alive`, is framed by Content-Length, and
/// the connection carries further requests. Without the header a 1.0
/// connection closes after one answer.
#[test]
fn http10_keep_alive() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);

    let mut client = Client::connect(proxy.local_addr());
    for i in 0..3 {
        let resp = client.request(&head(&[
            &format!("GET /ka/{i} HTTP/1.0"),
            "Host: test.local",
            "Connection: keep-alive",
        ]));
        assert_eq!(resp.status, 200, "request {i}:\n{}", resp.raw_head);
        assert!(
            resp.has_token("Connection", "keep-alive"),
            "an HTTP/1.0 keep-alive client must be told Connection: keep-alive:\n{}",
            resp.raw_head
        );
        assert!(
            resp.header("Content-Length").is_some(),
            "a kept-alive HTTP/1.0 answer needs a Content-Length:\n{}",
            resp.raw_head
        );
    }

    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&head(&["GET /once HTTP/1.0", "Host: test.local"]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    if let Err(e) = client.expect_closed() {
        panic!("a plain HTTP/1.0 connection ends after one answer: {e}");
    }
}

/// `Connection: close` from a 1.1 client: the answer says close and the
/// proxy closes. The upstream connection is unaffected and stays pooled.
#[test]
fn connection_close_is_honoured() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);

    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&head(&[
        "GET / HTTP/1.1",
        "Host: test.local",
        "Connection: close",
    ]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert!(
        resp.has_token("Connection", "close"),
        "the answer should announce the close:\n{}",
        resp.raw_head
    );
    if let Err(e) = client.expect_closed() {
        panic!("the proxy should close after Connection: close: {e}");
    }

    let mut client = Client::connect(proxy.local_addr());
    assert_eq!(client.request(&get("/next")).status, 200);
    assert_eq!(
        upstream.connections(),
        1,
        "the client's Connection: close is hop-by-hop: the upstream connection stays pooled"
    );
}

/// An upstream answering 404 and 500 is not a broken connection: both
/// sides stay alive and the next request goes over the same connections.
#[test]
fn error_statuses_keep_connections_alive() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    for (target, status) in [("/status/404", 404), ("/status/500", 500), ("/ok", 200)] {
        let resp = client.request(&get(target));
        assert_eq!(resp.status, status, "{target}:\n{}", resp.raw_head);
    }
    assert_eq!(
        upstream.connections(),
        1,
        "an error status from the upstream must not cost the upstream connection"
    );
}

/// The upstream closes a pooled connection after 200 ms idle (as real
/// servers' keep-alive timeouts do). The proxy notices the close on the
/// idle socket and drops it at once, and the next request simply goes over
/// a fresh connection.
#[test]
fn idle_pooled_connection_closed_by_upstream_is_dropped() {
    let upstream = Upstream::closing_when_idle("a", Duration::from_millis(200));
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    assert_eq!(client.request(&get("/first")).status, 200);
    let parked = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
        s.idle_upstream_connections == 1
    });
    assert!(
        parked.is_ok(),
        "the upstream connection should be pooled first: {parked:?}"
    );
    assert!(
        wait_until(Duration::from_secs(3), || upstream.open_connections() == 0),
        "the fixture should have closed its idle connection"
    );
    let dropped = wait_for_stats(&proxy, Duration::from_millis(500), |s| {
        s.idle_upstream_connections == 0
    });
    assert!(
        dropped.is_ok(),
        "within 500 ms of the upstream's close the pooled connection should be gone: {dropped:?}"
    );

    let resp = client.request(&get("/second"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.header("X-Upstream-Conn"),
        Some("2"),
        "the second request needs a fresh connection"
    );
}

/// The upstream answers one request per connection, then reads the next
/// and hangs up without a word. To the proxy each pooled connection looks
/// alive until it is used. GET, HEAD, DELETE and OPTIONS (idempotent,
/// no body) are replayed once on a fresh connection, so the client never
/// sees the failure.
#[test]
fn idempotent_request_retried_after_dead_pooled_connection() {
    let upstream = Upstream::close_after_requests("a", 1);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    assert_eq!(client.request(&get("/warm-up")).status, 200);
    for method in ["GET", "HEAD", "DELETE", "OPTIONS", "GET"] {
        let parked = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
            s.idle_upstream_connections == 1
        });
        assert!(
            parked.is_ok(),
            "a pooled connection should be waiting: {parked:?}"
        );
        let resp = client.request(&head(&[
            &format!("{method} /retry HTTP/1.1"),
            "Host: test.local",
        ]));
        assert_eq!(
            resp.status, 200,
            "{method} on a dead pooled connection should be retried on a fresh one:\n{}",
            resp.raw_head
        );
    }
    assert_eq!(
        upstream.connections(),
        6,
        "one connection for the warm-up, one fresh retry connection per request"
    );
}

/// The same dead pooled connection under a POST: it may already have been
/// acted on, so it is not replayed. The client gets 502 and the upstream
/// saw the POST exactly once.
#[test]
fn non_idempotent_request_on_dead_pooled_connection_is_502() {
    let upstream = Upstream::close_after_requests("a", 1);
    let proxy = start_proxy(&[upstream.addr]);

    let mut client = Client::connect(proxy.local_addr());
    assert_eq!(client.request(&post("/order", b"first")).status, 200);
    let parked = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
        s.idle_upstream_connections == 1
    });
    assert!(
        parked.is_ok(),
        "a pooled connection should be waiting: {parked:?}"
    );

    client.send(&post("/order", b"second"));
    let resp = client
        .read_response("POST")
        .expect("an answer to the second POST");
    assert_error_answer(&resp, 502, "POST on a dead pooled connection");
    thread::sleep(Duration::from_millis(50));
    let seconds = upstream
        .requests()
        .iter()
        .filter(|r| r.body == b"second")
        .count();
    assert_eq!(
        seconds, 1,
        "the POST must not be replayed on a new connection"
    );
    assert_eq!(upstream.connections(), 1, "no retry connection for a POST");
}

/// `limits.max_idle_per_upstream = 2`: after five concurrent requests
/// (five upstream connections), only two are kept idle. The bound is hard:
/// the three others are closed as their responses end, not a while later,
/// so the pool is never seen holding more than two.
#[test]
fn pool_keeps_at_most_max_idle_per_upstream() {
    let upstream = Upstream::slow("a", Duration::from_millis(300));
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_idle_per_upstream = 2);
    let addr = proxy.local_addr();

    let clients: Vec<_> = (0..5)
        .map(|i| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.request(&get(&format!("/c/{i}"))).status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client thread"), 200);
    }

    assert_eq!(
        upstream.connections(),
        5,
        "five concurrent requests need five upstream connections"
    );
    // Every response is in, so every connection has been parked or closed;
    // the upstream sees the closes within a scheduling blip, never a second.
    let mut most_idle = 0;
    let settled = wait_until(Duration::from_millis(250), || {
        most_idle = most_idle.max(proxy.stats().idle_upstream_connections);
        upstream.open_connections() == 2
    });
    assert!(
        settled,
        "the three connections beyond the pool limit should close at once; {} still open",
        upstream.open_connections()
    );
    assert!(most_idle <= 2, "the pool held {most_idle} idle connections");
    assert_eq!(proxy.stats().idle_upstream_connections, 2, "two kept");
}

/// `limits.max_client_conns = 2`: a third client connection is answered
/// 503 with `Connection: close` at once and closed; the two admitted ones
/// keep working, and once one leaves a new client gets in.
#[test]
fn max_client_conns_refuses_the_extra_connection_with_503() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_client_conns = 2);

    let mut first = Client::connect(proxy.local_addr());
    let mut second = Client::connect(proxy.local_addr());
    assert_eq!(first.request(&get("/1")).status, 200);
    assert_eq!(second.request(&get("/2")).status, 200);

    let mut third = Client::connect(proxy.local_addr());
    let resp = third
        .read_response("GET")
        .expect("the extra connection should get a 503 without asking");
    assert_error_answer(&resp, 503, "a connection over max_client_conns");
    if let Err(e) = third.expect_closed() {
        panic!("the refused connection should be closed: {e}");
    }
    assert_eq!(
        first.request(&get("/1-again")).status,
        200,
        "admitted clients keep working"
    );

    drop(first);
    let freed = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
        s.client_connections == 1
    });
    assert!(freed.is_ok(), "the first client should be gone: {freed:?}");
    let mut fourth = Client::connect(proxy.local_addr());
    assert_eq!(
        fourth.request(&get("/4")).status,
        200,
        "once a slot is free a new client is served"
    );
}

/// `limits.max_conns_per_upstream = 1`: three clients ask at once of a slow
/// upstream. The requests queue for the one allowed connection instead of
/// opening more; all three are answered, one after the other.
#[test]
fn max_conns_per_upstream_queues_requests() {
    let upstream = Upstream::slow("a", Duration::from_millis(100));
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_conns_per_upstream = 1);
    let addr = proxy.local_addr();

    let clients: Vec<_> = (0..3)
        .map(|i| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                client.request(&get(&format!("/q/{i}"))).status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(
            c.join().expect("client thread"),
            200,
            "a queued request should be served once the connection frees"
        );
    }
    assert_eq!(
        upstream.peak_open_connections(),
        1,
        "max_conns_per_upstream = 1, but the upstream saw {} connections open at once",
        upstream.peak_open_connections()
    );
}

/// The retry after a dead pooled connection happens once, not in a loop:
/// here the pooled connection is dead *and* the fresh one the proxy opens
/// for the retry hangs up too, so the client gets 502 after exactly one
/// retry.
#[test]
fn retry_happens_only_once() {
    // Connection 1 answers one request, then hangs up on the next; every
    // later connection hangs up on its first request.
    let upstream = Upstream::start("flaky", |conn| {
        if conn.index == 1 {
            let Some(req) = conn.read_request() else {
                return;
            };
            let body = "first";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Echo-Target: {}\r\n\r\n{body}",
                body.len(),
                req.target
            );
            if !conn.write(answer.as_bytes()) {
                return;
            }
        }
        let _ = conn.read_request();
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    assert_eq!(client.request(&get("/warm-up")).status, 200);
    let parked = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
        s.idle_upstream_connections == 1
    });
    assert!(
        parked.is_ok(),
        "a pooled connection should be waiting: {parked:?}"
    );
    client.send(&get("/doomed"));
    let resp = client.read_response("GET").expect("an answer");

    assert_error_answer(&resp, 502, "a GET whose retry also failed");
    assert_eq!(
        upstream.connections(),
        2,
        "exactly one retry connection: the pooled one, then one fresh one"
    );
}

/// The upstream answers with `Connection: close` and hangs up. That is
/// about the upstream connection only (hop-by-hop): it is not pooled, the
/// header does not reach the client, and the client's connection stays
/// open for its next request, which goes over a fresh upstream connection.
#[test]
fn upstream_connection_close_is_not_pooled_and_client_stays_open() {
    let upstream = Upstream::start("closer", |conn| {
        if conn.read_request().is_some() {
            conn.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
            conn.shutdown_write();
            conn.sleep(Duration::from_millis(20));
        }
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    for i in 0..3 {
        let resp = client.request(&get(&format!("/{i}")));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, b"ok".as_slice()),
            "request {i} on the same client connection:\n{}",
            resp.raw_head
        );
        assert!(
            !resp.has_token("Connection", "close"),
            "the upstream's Connection: close is hop-by-hop; the client connection stays open:\n{}",
            resp.raw_head
        );
    }
    assert_eq!(
        upstream.connections(),
        3,
        "a connection the upstream closed must never be reused"
    );
}

/// An HTTP/1.0 client that reads slowly, and an answer (200 KiB, below the
/// splice threshold) too big for the socket buffers to take at once. The
/// proxy writes it in pieces; the last ones, those that end the
/// connection, go with `MSG_MORE`, so the kernel holds their tail back for
/// the FIN. The close must still push out every byte, and the FIN after
/// them.
#[test]
fn the_last_bytes_before_a_close_are_all_delivered() {
    const BODY: u64 = 200 << 10;
    let upstream = Upstream::big_body("big", BODY);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&head(&["GET /big HTTP/1.0", "Host: test.local"]));
    // Let the proxy fill the socket buffers and wait for WRITABLE.
    thread::sleep(Duration::from_millis(100));

    let (raw, end) = client.read_until_close();
    if let Err(e) = end {
        panic!("the proxy must close after an HTTP/1.0 answer: {e}");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let body = &raw[split..];
    assert_eq!(
        body.len() as u64,
        BODY,
        "every body byte must arrive before the FIN"
    );
    assert!(matches_pattern(0, body), "the body was altered");
}

/// The same for an answer of the proxy's own: a 400 for a malformed
/// request is written, then the write side is shut down; the answer must
/// arrive whole, followed by end of stream.
#[test]
fn an_error_answer_arrives_whole_before_the_close() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    let resp = client.read_response("GET").expect("an answer");
    assert_error_answer(&resp, 400, "a request with two Host fields");
    if let Err(e) = client.expect_closed() {
        panic!("the proxy closes after its 400: {e}");
    }
}
