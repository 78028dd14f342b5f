//! Limits: how many clients the proxy holds, how many connections it opens
//! to each upstream, and how big a request head may be.
//!
//! - `max_client_conns`: the connection over the limit is answered 503 with
//!   `Connection: close` at once, without waiting for its request, and a
//!   slot is free again as soon as a client leaves.
//! - `max_conns_per_upstream`: a request over the limit waits in a FIFO
//!   queue for a connection to free up, and gets 503 if none does within
//!   `connect_ms`. The upstream never sees more than the limit.
//! - `max_header_bytes`: a request head over it is 431, then close.
//! - The process's descriptor limit (`ulimit -n`): when `accept` runs out,
//!   the clients left in the backlog are accepted as soon as a connection
//!   closes.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use ferroxy::reactor::ProxyHandle;
use support::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Connect a client and wait until the proxy has accepted it, so the next
/// connection is certainly the next in line.
fn connect_accepted(proxy: &ProxyHandle, expected_clients: usize) -> Client {
    let client = Client::connect(proxy.local_addr());
    let stats = wait_for_stats(proxy, ms(2000), |s| {
        s.client_connections == expected_clients
    });
    assert!(
        stats.is_ok(),
        "the proxy should now hold {expected_clients} clients: {stats:?}"
    );
    client
}

/// A connection over `max_client_conns`: it must get the 503 at once (no
/// request needed) and then be closed. Returns how long the 503 took.
fn expect_refused(proxy: &ProxyHandle, story: &str) -> Duration {
    let started = Instant::now();
    let mut extra = Client::connect(proxy.local_addr());
    let resp = extra
        .read_response("GET")
        .unwrap_or_else(|e| panic!("{story}: the extra connection got no 503: {e}"));
    let elapsed = started.elapsed();
    assert_error_answer(&resp, 503, story);
    extra
        .expect_closed()
        .unwrap_or_else(|e| panic!("{story}: the extra connection must be closed: {e}"));
    elapsed
}

/// Send `get(target)` on each client first, then read every answer: the
/// requests are in flight together.
fn requests_together(clients: &mut [Client], target: &str) -> Vec<Response> {
    for client in clients.iter_mut() {
        client.send(&get(target));
    }
    clients
        .iter_mut()
        .map(|c| {
            c.read_response("GET")
                .unwrap_or_else(|e| panic!("no answer to {target}: {e}"))
        })
        .collect()
}

/// Run `count` clients on their own threads, each sending `get(target)` on
/// a fresh connection; their statuses in no particular order.
fn concurrent_statuses(proxy: &ProxyHandle, count: usize, target: &str) -> Vec<u16> {
    let addr = proxy.local_addr();
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let target = format!("{target}{i}");
            thread::spawn(move || Client::connect(addr).request(&get(&target)).status)
        })
        .collect();
    threads
        .into_iter()
        .map(|t| {
            t.join()
                .expect("a client thread failed (see its panic above)")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// max_client_conns
// ---------------------------------------------------------------------------

/// Three clients fill `max_client_conns = 3`; they have sent nothing yet,
/// but they hold their slots. A fourth connection is answered 503 with
/// `Connection: close` at once (not after some timeout) and closed, while
/// the three still get served.
#[test]
fn max_client_conns_extra_connection_gets_503_at_once() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_client_conns = 3);
    let mut held: Vec<Client> = (1..=3).map(|n| connect_accepted(&proxy, n)).collect();

    let took = expect_refused(&proxy, "fourth connection over max_client_conns = 3");
    assert!(
        took < ms(1000),
        "the 503 must come at once, it took {took:?}"
    );
    assert_eq!(
        upstream.connections(),
        0,
        "a refused connection must not reach the upstream"
    );
    for resp in requests_together(&mut held, "/held") {
        assert_eq!(
            resp.status, 200,
            "the clients within the limit must still be served:\n{}",
            resp.raw_head
        );
    }
}

/// `max_client_conns = 4` and limit + 5 = 9 connections. Exactly four are
/// held: the five extra ones get 503 at once. The four send a slow request
/// together and are served side by side (four upstream connections at
/// once). Then two leave; their slots come back, so two newcomers are
/// served, and the one after them is refused again.
#[test]
fn max_client_conns_serves_exactly_the_limit_and_gives_slots_back() {
    let upstream = Upstream::slow("slow", ms(300));
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_client_conns = 4);

    let mut held: Vec<Client> = (1..=4).map(|n| connect_accepted(&proxy, n)).collect();
    for extra in 1..=5 {
        expect_refused(&proxy, &format!("extra connection {extra} of 5"));
    }
    let stats = proxy.stats();
    assert_eq!(
        stats.client_connections, 4,
        "exactly the limit may be held: {stats:?}"
    );

    for resp in requests_together(&mut held, "/together") {
        assert_eq!(resp.status, 200, "{}", resp.raw_head);
    }
    assert_eq!(
        upstream.peak_open_connections(),
        4,
        "the four clients within the limit must be served concurrently"
    );

    // Two leave: their slots are given back.
    held.truncate(2);
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.client_connections == 2);
    assert!(stats.is_ok(), "two clients left: {stats:?}");
    let mut newcomers: Vec<Client> = (3..=4).map(|n| connect_accepted(&proxy, n)).collect();
    for resp in requests_together(&mut newcomers, "/newcomer") {
        assert_eq!(
            resp.status, 200,
            "a freed slot must serve a new client:\n{}",
            resp.raw_head
        );
    }
    expect_refused(&proxy, "full again after the newcomers");

    drop(held);
    drop(newcomers);
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.client_connections == 0);
    assert!(
        stats.is_ok(),
        "every client slot must be given back: {stats:?}"
    );
}

// ---------------------------------------------------------------------------
// max_conns_per_upstream
// ---------------------------------------------------------------------------

/// With `max_conns_per_upstream = 1` every request must wait its turn for
/// the one connection. Six clients ask one after another (each request is
/// in the proxy before the next is sent), while the first is still being
/// answered: the upstream receives them in exactly that order (first in,
/// first out) on a single connection, and all six get 200.
#[test]
fn max_conns_per_upstream_queue_is_first_in_first_out() {
    let upstream = Upstream::slow("slow", ms(200));
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.limits.max_conns_per_upstream = 1;
        c.timeouts.connect_ms = 10_000;
    });

    let mut clients = Vec::new();
    for i in 0..6usize {
        let mut client = Client::connect(proxy.local_addr());
        client.send(&get(&format!("/q/{i}")));
        // In the proxy: queued, or already at the upstream.
        let arrived = wait_until(ms(3000), || {
            proxy.stats().queued_requests + upstream.request_count() > i
        });
        assert!(
            arrived,
            "request {i} never reached the queue: {:?}",
            proxy.stats()
        );
        clients.push(client);
    }
    let queued = proxy.stats().queued_requests;
    assert!(
        queued >= 1,
        "with one slot and a slow upstream, requests must be waiting: {queued} queued"
    );

    for (i, client) in clients.iter_mut().enumerate() {
        let resp = client
            .read_response("GET")
            .unwrap_or_else(|e| panic!("queued request {i} got no answer: {e}"));
        assert_eq!(resp.status, 200, "queued request {i}:\n{}", resp.raw_head);
    }
    let order: Vec<String> = upstream.requests().into_iter().map(|r| r.target).collect();
    let expected: Vec<String> = (0..6).map(|i| format!("/q/{i}")).collect();
    assert_eq!(order, expected, "the queue must be first in, first out");
    assert_eq!(
        upstream.peak_open_connections(),
        1,
        "the upstream must never see more than max_conns_per_upstream"
    );
    assert_eq!(
        proxy.stats().queued_requests,
        0,
        "the queue must be empty at the end"
    );
}

/// Twelve clients at once against a slow upstream limited to three
/// connections, with plenty of `connect_ms` to wait: the upstream never
/// has more than three connections open, and every request ends in 200.
#[test]
fn max_conns_per_upstream_is_never_exceeded_and_the_queue_drains() {
    let upstream = Upstream::slow("slow", ms(150));
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.limits.max_conns_per_upstream = 3;
        c.timeouts.connect_ms = 10_000;
    });

    let statuses = concurrent_statuses(&proxy, 12, "/many/");

    assert!(
        statuses.iter().all(|s| *s == 200),
        "every queued request must be served: {statuses:?}"
    );
    let peak = upstream.peak_open_connections();
    assert!(
        (1..=3).contains(&peak),
        "the upstream saw {peak} connections at once; the limit is 3"
    );
    assert_eq!(
        upstream.request_count(),
        12,
        "every request reached the upstream"
    );
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.queued_requests == 0);
    assert!(stats.is_ok(), "the queue must drain: {stats:?}");
    assert!(
        proxy.stats().upstream_connections <= 3,
        "the proxy holds more upstream connections than allowed: {:?}",
        proxy.stats()
    );
}

/// One slot, taken by a request the upstream answers after 2 s. The next
/// request waits in the queue; no slot frees within `connect_ms` (300), so
/// it gets 503, on time, while the first still gets its 200.
#[test]
fn queued_request_gets_503_after_connect_ms() {
    let upstream = Upstream::by_target("scripted");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.limits.max_conns_per_upstream = 1;
        c.timeouts.connect_ms = 300;
    });

    let mut slow = Client::connect(proxy.local_addr());
    slow.send(&get("/delay/2000"));
    assert!(
        wait_until(ms(2000), || upstream.request_count() == 1),
        "the slow request must reach the upstream"
    );

    let mut waiting = Client::connect(proxy.local_addr());
    let started = Instant::now();
    let resp = waiting.request(&get("/waits"));
    let elapsed = started.elapsed();
    assert_error_answer(&resp, 503, "queued past connect_ms");
    assert!(
        elapsed + ms(20) >= ms(300) && elapsed <= ms(300) + ms(1500),
        "the 503 must come connect_ms after queueing, took {elapsed:?}"
    );
    assert_eq!(
        upstream.request_count(),
        1,
        "the refused request must never reach the upstream"
    );

    let resp = slow
        .read_response("GET")
        .expect("the slow request's answer");
    assert_eq!(
        resp.status, 200,
        "the slot holder must be served:\n{}",
        resp.raw_head
    );
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.queued_requests == 0);
    assert!(
        stats.is_ok(),
        "the queue must be empty at the end: {stats:?}"
    );
}

/// `Stats::queued_requests` counts requests waiting for a slot. A request
/// that gave up waiting (503 after `connect_ms`) waits no more, so it must
/// not be counted, even while the slot is still taken.
#[test]
fn queued_requests_stat_forgets_a_request_that_timed_out() {
    let upstream = Upstream::by_target("scripted");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.limits.max_conns_per_upstream = 1;
        c.timeouts.connect_ms = 300;
    });

    let mut slow = Client::connect(proxy.local_addr());
    slow.send(&get("/delay/3000"));
    assert!(
        wait_until(ms(2000), || upstream.request_count() == 1),
        "the slow request must reach the upstream"
    );
    let mut waiting = Client::connect(proxy.local_addr());
    let resp = waiting.request(&get("/waits"));
    assert_error_answer(&resp, 503, "queued past connect_ms");
    drop(waiting);

    let stats = wait_for_stats(&proxy, ms(1000), |s| s.queued_requests == 0);
    assert!(
        stats.is_ok(),
        "a request answered 503 is no longer queued, yet the stats count it \
         while the slot is still taken: {stats:?}"
    );
}

/// Ten clients at once; two slots; each answer takes 400 ms; a queued
/// request may wait 600 ms. Some are served, the rest run out of time, and
/// none is left hanging: every one ends in 200 or 503, the upstream never
/// sees more than two connections, and the queue ends empty.
#[test]
fn every_queued_request_ends_in_200_or_503() {
    let upstream = Upstream::slow("slow", ms(400));
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.limits.max_conns_per_upstream = 2;
        c.timeouts.connect_ms = 600;
    });

    let statuses = concurrent_statuses(&proxy, 10, "/crowd/");

    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        ok + refused,
        10,
        "every request must end in 200 or 503: {statuses:?}"
    );
    assert!(ok >= 2, "the first two must be served: {statuses:?}");
    assert!(
        refused >= 1,
        "10 x 400 ms over 2 slots cannot all fit in 600 ms: {statuses:?}"
    );
    assert!(
        upstream.peak_open_connections() <= 2,
        "the upstream saw {} connections at once; the limit is 2",
        upstream.peak_open_connections()
    );
    let stats = wait_for_stats(&proxy, ms(2000), |s| s.queued_requests == 0);
    assert!(
        stats.is_ok(),
        "the queue must be empty at the end: {stats:?}"
    );
}

// ---------------------------------------------------------------------------
// max_header_bytes
// ---------------------------------------------------------------------------

/// A GET whose head is about `size` bytes, padded with one `X-Pad` field.
fn get_with_head_size(size: usize) -> Vec<u8> {
    let start = format!("GET /padded HTTP/1.1\r\nHost: {HOST}\r\nX-Pad: ");
    let pad = size.saturating_sub(start.len() + 4);
    let mut out = start.into_bytes();
    out.extend(std::iter::repeat_n(b'p', pad));
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// `limits.max_header_bytes = 2048`: a 1500-byte head is forwarded, a
/// 3000-byte head gets 431 Request Header Fields Too Large and a close,
/// and never reaches the upstream.
#[test]
fn head_over_max_header_bytes_gets_431() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_header_bytes = 2048);

    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&get_with_head_size(1500));
    assert_eq!(
        resp.status, 200,
        "a head under max_header_bytes must pass:\n{}",
        resp.raw_head
    );

    let mut client = Client::connect(proxy.local_addr());
    let resp = client
        .request_refused(&get_with_head_size(3000))
        .expect("an answer to the oversized head");
    assert_error_answer(&resp, 431, "head over max_header_bytes");
    client.expect_closed().expect("431, then close");
    assert_eq!(
        upstream.request_count(),
        1,
        "only the small request may reach the upstream"
    );
}

/// The same limit when the head comes in 100-byte pieces and never ends:
/// the proxy must not wait for an end of head that will not come, nor
/// buffer without bound. Once 2048 bytes are in without an end, 431.
#[test]
fn head_growing_past_max_header_bytes_in_pieces_gets_431() {
    let upstream = Upstream::echo("echo");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_header_bytes = 2048);
    let mut client = Client::connect(proxy.local_addr());

    let mut sent = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n").into_bytes();
    client.send(&sent);
    let mut refused = false;
    for i in 0..40 {
        let line = format!("X-Field-{i:02}: {}\r\n", "v".repeat(84));
        if client.try_send(line.as_bytes()).is_err() {
            refused = true;
            break;
        }
        sent.extend_from_slice(line.as_bytes());
        thread::sleep(ms(10));
    }
    let resp = client.read_response("GET").unwrap_or_else(|e| {
        panic!(
            "no 431 after {} head bytes (send refused: {refused}): {e}",
            sent.len()
        )
    });
    assert_error_answer(&resp, 431, "head growing in pieces");
    assert_eq!(
        upstream.connections(),
        0,
        "the upstream must not be contacted"
    );
}

/// The proxy runs under `ulimit -n 16` and more clients connect than it has
/// descriptors for: `accept` fails with EMFILE and the rest wait in the
/// kernel's backlog. The listener is edge-triggered, and those clients are
/// not news any more: no event will ever announce them again. The story:
/// the clients that were accepted leave, and the waiting one must be
/// accepted (and then answered), without any new client arriving to wake
/// the listener.
#[test]
fn clients_left_in_the_backlog_are_accepted_when_descriptors_free_up() {
    let upstream = Upstream::echo("a");
    let proxy =
        ProxyProcess::start_with_fd_limit("emfile", &config_json(&[upstream.addr], |_| {}), 16);

    // Connect until the proxy says it ran out (about nine fit).
    let mut accepted = Vec::new();
    while !proxy.wait_for_log("accept failed", 1, ms(100)) {
        assert!(
            accepted.len() < 32,
            "32 clients and no accept failure under ulimit -n 16:\n{}",
            proxy.stderr()
        );
        accepted.push(Client::connect(proxy.addr));
    }
    let mut waiting = Client::connect(proxy.addr);

    drop(accepted);
    assert!(
        proxy.wait_for_log("accepting again", 1, ms(5000)),
        "the client in the backlog was never accepted:\n{}",
        proxy.stderr()
    );
    // Sent only now: had it come with the connection, the proxy could have
    // read it the moment the first descriptor came free, and found none
    // left for the upstream socket (a 502, fair but not this story).
    thread::sleep(ms(100));
    waiting.send(&get("/from-the-backlog"));
    let resp = waiting.read_response("GET").unwrap_or_else(|e| {
        panic!(
            "the client from the backlog was never served: {e}\n{}",
            proxy.stderr()
        )
    });
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        proxy.stderr().matches("accept failed").count(),
        1,
        "one shortage, one error line:\n{}",
        proxy.stderr()
    );
}
