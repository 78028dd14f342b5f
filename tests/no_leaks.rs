//! No leaks: after any mix of traffic, good and bad, the proxy holds nothing
//! it should have let go.
//!
//! This file has exactly one test on purpose: it counts the process's open
//! file descriptors, and any other test running beside it in the same
//! process would open and close sockets of its own.

mod support;

use std::time::Duration;

use support::*;

/// Requests the proxy refuses; the barrage cycles through them.
fn bad_requests() -> Vec<Vec<u8>> {
    vec![
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Content-Length: 5",
            "Content-Length: 5",
        ]),
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Content-Length: 4",
            "Transfer-Encoding: chunked",
        ]),
        head(&["GET / HTTP/1.1"]),
        head(&["GET / HTTP/1.1", "Host: test.local", "X-Folded: a", " b"]),
        head(&["CONNECT test.local:443 HTTP/1.1", "Host: test.local:443"]),
        head(&["GET / HTTP/1.1", "Host: test.local", "Expect: foo"]),
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Transfer-Encoding: gzip",
        ]),
        [
            head(&[
                "POST / HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: chunked",
            ]),
            b"zz\r\nhello\r\n".to_vec(),
        ]
        .concat(),
        head(&[&format!("GET /{} HTTP/1.1", "a".repeat(17_000)), "Host: x"]),
        b"\0\0\0 not http at all\r\n\r\n".to_vec(),
    ]
}

/// The story: note how many file descriptors the process has, start an
/// upstream and a proxy, and put a few hundred exchanges of every kind
/// through it: plain requests, keep-alive runs, pipelined bursts, refused
/// requests, clients that vanish mid-upload or mid-download, upstreams that
/// hang up mid-body, half-closes, HTTP/1.0, and connections that say
/// nothing at all. Then the proxy must settle to holding only idle pooled
/// upstream connections, drop those once the upstream goes away, hold no
/// buffer memory, and after shutdown the process must be back to the file
/// descriptors it started with.
#[test]
fn barrage_of_good_and_bad_traffic_leaves_nothing_behind() {
    let baseline = open_fd_count();
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let addr = proxy.local_addr();

    // Plain requests, on fresh connections, half of them asking to close.
    for i in 0..60 {
        let mut client = Client::connect(addr);
        let raw = if i % 2 == 0 {
            get(&format!("/plain/{i}"))
        } else {
            head(&[
                &format!("GET /plain/{i} HTTP/1.1"),
                "Host: test.local",
                "Connection: close",
            ])
        };
        assert_eq!(client.request(&raw).status, 200, "plain request {i}");
    }

    // Keep-alive runs mixing body framings.
    for i in 0..20 {
        let mut client = Client::connect(addr);
        for raw in [
            get("/bytes/1000"),
            get("/chunked/3000"),
            post("/p", b"some body"),
            head(&["HEAD /bytes/10 HTTP/1.1", "Host: test.local"]),
            get("/status/204"),
        ] {
            assert_eq!(client.request(&raw).status / 100, 2, "keep-alive run {i}");
        }
    }

    // Pipelined bursts.
    for i in 0..10 {
        let mut client = Client::connect(addr);
        let burst: Vec<u8> = (0..10)
            .flat_map(|j| get(&format!("/pipe/{i}/{j}")))
            .collect();
        client.send(&burst);
        for j in 0..10 {
            let resp = client
                .read_response("GET")
                .unwrap_or_else(|e| panic!("burst {i}, answer {j}: {e}"));
            assert_eq!(resp.status, 200, "burst {i}, answer {j}");
        }
    }

    // Refused requests.
    let bad = bad_requests();
    for i in 0..50 {
        let mut client = Client::connect(addr);
        let resp = client.request_refused(&bad[i % bad.len()]);
        assert!(
            resp.as_ref().is_ok_and(|r| r.status >= 400),
            "bad request {i} should be refused: {resp:?}"
        );
    }

    // Clients that vanish half way through an upload.
    for _ in 0..20 {
        let mut client = Client::connect(addr);
        client.send(&head(&[
            "POST /upload HTTP/1.1",
            "Host: test.local",
            "Content-Length: 100000",
        ]));
        client.send(&pattern_bytes(1000));
    }

    // Clients that vanish half way through a 4 MiB download.
    for _ in 0..20 {
        let mut client = Client::connect(addr);
        client.send(&get("/bytes/4194304"));
        let resp = client.read_head().expect("the download's head");
        assert_eq!(resp.status, 200);
    }

    // The upstream hangs up half way through its body.
    for _ in 0..10 {
        let mut client = Client::connect(addr);
        client.send(&get("/truncate/100000"));
        let _ = client.read_until_close();
    }

    // Half-closes and HTTP/1.0.
    for i in 0..10 {
        let mut client = Client::connect(addr);
        client.send(&get(&format!("/half/{i}")));
        client.shutdown_write();
        assert_eq!(
            client.read_response("GET").map(|r| r.status),
            Ok(200),
            "half-close {i}"
        );
        let mut client = Client::connect(addr);
        assert_eq!(
            client.request(b"GET /old HTTP/1.0\r\n\r\n").status,
            200,
            "HTTP/1.0 request {i}"
        );
    }

    // Connections that say nothing at all, or half a head.
    for i in 0..10 {
        let mut client = Client::connect(addr);
        if i % 2 == 0 {
            client.send(b"GET /never-fin");
        }
    }

    let settled = wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.client_connections == 0 && s.connections == s.idle_upstream_connections
    });
    assert!(
        settled.is_ok(),
        "once every client is gone the proxy should hold only idle pooled upstream \
         connections: {settled:?}"
    );

    drop(upstream);
    let empty = wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.connections == 0 && s.buffer_bytes == 0
    });
    assert!(
        empty.is_ok(),
        "once the upstream closed its connections the pool should empty and no buffer \
         memory should be held: {empty:?}"
    );
    assert!(
        proxy.stats().requests >= 300,
        "the barrage should have completed a few hundred exchanges: {:?}",
        proxy.stats()
    );

    proxy.shutdown();
    let back = wait_until(Duration::from_secs(2), || open_fd_count() == baseline);
    assert!(
        back,
        "after shutdown the process has {} file descriptors open, {} before the proxy started: \
         sockets (or the poll instance) leaked",
        open_fd_count(),
        baseline
    );
}
