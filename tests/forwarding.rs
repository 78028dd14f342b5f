//! Forwarding: what a well-formed request and its response look like on the
//! far side of the proxy (contract: "Forwarding").
//!
//! Each story sends one request through a proxy in front of fake upstreams
//! that record exactly what reached them, then checks both what the upstream
//! got and what the client got back.

mod support;

use support::*;

/// A GET goes upstream as an HTTP/1.1 origin-form request with its Host
/// kept, and the upstream's answer comes back to the client with status,
/// headers and body intact, plus `Via: 1.1 ferroxy`.
#[test]
fn get_round_trip() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/hello?name=world"));

    assert_eq!(
        resp.status, 200,
        "the upstream's 200 should reach the client:\n{}",
        resp.raw_head
    );
    assert_eq!(
        resp.version, "HTTP/1.1",
        "the proxy always answers HTTP/1.1"
    );
    assert_eq!(
        resp.header("X-Upstream"),
        Some("a"),
        "the upstream's own headers must be relayed"
    );
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "the upstream should see exactly one request");
    let req = &seen[0];
    assert_eq!(
        (
            req.method.as_str(),
            req.target.as_str(),
            req.version.as_str()
        ),
        ("GET", "/hello?name=world", "HTTP/1.1"),
        "the request line should arrive unchanged:\n{}",
        req.raw_head
    );
    assert_eq!(req.headers_named("Host"), [HOST], "Host must be kept, once");
    assert_eq!(
        resp.body_text(),
        req.raw_head,
        "the echo body (the head the upstream saw) must arrive byte for byte"
    );
    assert!(
        resp.header_list("Via").contains(&"1.1 ferroxy".to_string()),
        "the response should carry Via: 1.1 ferroxy, got:\n{}",
        resp.raw_head
    );
}

/// A POST body of 100 KiB (bigger than the proxy's 16 KiB buffer) reaches the
/// upstream byte for byte, framed by its Content-Length.
#[test]
fn post_body_arrives_intact() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    let body = pattern_bytes(100 * 1024);

    let resp = client.request(&post("/upload", &body));

    assert_eq!(resp.status, 200, "POST should succeed:\n{}", resp.raw_head);
    let seen = upstream.complete_requests();
    assert_eq!(seen.len(), 1, "the upstream should see one complete POST");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].header("Content-Length"),
        Some("102400"),
        "the request framing should still say 100 KiB"
    );
    assert_eq!(
        seen[0].body_len,
        body.len() as u64,
        "every body byte should arrive"
    );
    assert!(seen[0].body_is_pattern, "the body arrived altered");
    assert_eq!(resp.header("X-Echo-Body-Length"), Some("102400"));
}

/// Hop-by-hop headers describe the client's TCP connection, not the message,
/// so none of them reach the upstream: Connection, Keep-Alive,
/// Proxy-Connection, TE, Trailer, Upgrade (without an upgrade), and any
/// header the client named in Connection. End-to-end headers pass.
#[test]
fn request_hop_by_hop_headers_are_not_forwarded() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&head(&[
        "GET /hop HTTP/1.1",
        "Host: test.local",
        "Connection: keep-alive, X-Client-Hop",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "Trailer: X-Checksum",
        "Upgrade: foo/1",
        "X-Client-Hop: only-for-the-proxy",
        "X-End-To-End: please-forward",
    ]));

    assert_eq!(
        resp.status, 200,
        "the request should go through:\n{}",
        resp.raw_head
    );
    let req = &upstream.requests()[0];
    for hop in [
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "X-Client-Hop",
    ] {
        assert!(
            req.header(hop).is_none(),
            "hop-by-hop header {hop} was forwarded to the upstream:\n{}",
            req.raw_head
        );
    }
    assert!(
        !req.has_token("Connection", "X-Client-Hop") && !req.has_token("Connection", "keep-alive"),
        "the client's Connection header must not be forwarded as is:\n{}",
        req.raw_head
    );
    assert_eq!(
        req.header("X-End-To-End"),
        Some("please-forward"),
        "end-to-end headers must pass:\n{}",
        req.raw_head
    );
}

/// A client cannot make the proxy drop the headers that frame or route the
/// message by naming them in Connection: Host, Content-Length,
/// Transfer-Encoding and the proxy's own X-Forwarded-For,
/// X-Forwarded-Proto and Via are never stripped by nomination.
#[test]
fn connection_cannot_nominate_end_to_end_headers() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(
        &[
            head(&[
                "POST /nominate HTTP/1.1",
                "Host: test.local",
                "Content-Length: 5",
                "X-Forwarded-For: 203.0.113.9",
                "Via: 1.0 earlier",
                "Connection: Host, Content-Length, X-Forwarded-For, X-Forwarded-Proto, Via",
            ]),
            b"hello".to_vec(),
        ]
        .concat(),
    );
    assert_eq!(
        resp.status, 200,
        "the request should go through:\n{}",
        resp.raw_head
    );
    let req = &upstream.complete_requests()[0];
    assert_eq!(
        req.header("Host"),
        Some(HOST),
        "Host was stripped:\n{}",
        req.raw_head
    );
    assert_eq!(
        req.header("Content-Length"),
        Some("5"),
        "Content-Length was stripped:\n{}",
        req.raw_head
    );
    assert_eq!(req.body, b"hello", "the body must arrive with its framing");
    assert_eq!(
        req.header_list("X-Forwarded-For"),
        ["203.0.113.9", "127.0.0.1"],
        "X-Forwarded-For was stripped instead of appended:\n{}",
        req.raw_head
    );
    assert_eq!(
        req.header("X-Forwarded-Proto"),
        Some("http"),
        "X-Forwarded-Proto was stripped"
    );
    assert_eq!(
        req.header_list("Via"),
        ["1.0 earlier", "1.1 ferroxy"],
        "Via was stripped instead of appended:\n{}",
        req.raw_head
    );

    // And the same for Transfer-Encoding: the chunked body still arrives whole.
    let resp = client.request(
        &[
            head(&[
                "POST /nominate-te HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: chunked",
                "Connection: Transfer-Encoding",
            ]),
            chunked_encode(b"hello world", 4, &[]),
        ]
        .concat(),
    );
    assert_eq!(
        resp.status, 200,
        "the chunked request should go through:\n{}",
        resp.raw_head
    );
    let seen = upstream.complete_requests();
    assert_eq!(
        seen.len(),
        2,
        "the chunked request should reach the upstream complete"
    );
    assert_eq!(
        seen[1].body, b"hello world",
        "Transfer-Encoding was stripped:\n{}",
        seen[1].raw_head
    );
}

/// X-Forwarded-For records the hops: what the client sent (over any number
/// of lines) is joined with ", " and the client's address appended; with no
/// incoming value it is just the client's address.
#[test]
fn x_forwarded_for_is_appended_with_the_client_address() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.request(&get("/none"));
    client.request(&head(&[
        "GET /one HTTP/1.1",
        "Host: test.local",
        "X-Forwarded-For: 203.0.113.7",
    ]));
    client.request(&head(&[
        "GET /several HTTP/1.1",
        "Host: test.local",
        "X-Forwarded-For: 198.51.100.1",
        "X-Forwarded-For: 198.51.100.2, 198.51.100.3",
    ]));

    let seen = upstream.requests();
    assert_eq!(seen.len(), 3);
    let expected = [
        "127.0.0.1",
        "203.0.113.7, 127.0.0.1",
        "198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1",
    ];
    for (req, want) in seen.iter().zip(expected) {
        assert_eq!(
            req.headers_named("X-Forwarded-For"),
            [want],
            "for {} the upstream should get exactly one X-Forwarded-For line:\n{}",
            req.target,
            req.raw_head
        );
    }
}

/// X-Forwarded-Proto says how the client reached the proxy; the proxy knows
/// better than the client, so a client's value is overwritten, never kept.
#[test]
fn x_forwarded_proto_is_overwritten() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.request(&head(&[
        "GET / HTTP/1.1",
        "Host: test.local",
        "X-Forwarded-Proto: https",
    ]));
    client.request(&get("/"));

    for req in upstream.requests() {
        assert_eq!(
            req.headers_named("X-Forwarded-Proto"),
            ["http"],
            "the upstream should get exactly X-Forwarded-Proto: http:\n{}",
            req.raw_head
        );
    }
}

/// Via lists every intermediary: the proxy appends `1.1 ferroxy` after what
/// the client sent (or sends just that).
#[test]
fn via_is_appended_on_the_request() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.request(&get("/"));
    client.request(&head(&[
        "GET / HTTP/1.1",
        "Host: test.local",
        "Via: 1.0 fred, 1.1 p.example",
    ]));

    let seen = upstream.requests();
    assert_eq!(
        seen[0].header_list("Via"),
        ["1.1 ferroxy"],
        "Via missing:\n{}",
        seen[0].raw_head
    );
    assert_eq!(
        seen[1].header_list("Via"),
        ["1.0 fred", "1.1 p.example", "1.1 ferroxy"],
        "1.1 ferroxy should be appended after the existing Via entries:\n{}",
        seen[1].raw_head
    );
}

/// On the way back, too, hop-by-hop headers stop at the proxy (the
/// upstream's Connection, Keep-Alive, Proxy-Connection, Upgrade, Trailer and
/// what its Connection names), end-to-end headers pass, and Via gets
/// `1.1 ferroxy` after the upstream's own entry.
#[test]
fn response_hop_by_hop_headers_are_removed_and_via_added() {
    let upstream = Upstream::fixed(
        "liar",
        &[
            head(&[
                "HTTP/1.1 200 OK",
                "Connection: keep-alive, X-Upstream-Hop",
                "Keep-Alive: timeout=5, max=100",
                "Proxy-Connection: keep-alive",
                "Upgrade: h2c",
                "Trailer: X-Never",
                "X-Upstream-Hop: secret",
                "Via: 1.1 backend",
                "X-End-To-End: kept",
                "Content-Length: 2",
            ]),
            b"ok".to_vec(),
        ]
        .concat(),
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(resp.body, b"ok");
    for hop in [
        "Keep-Alive",
        "Proxy-Connection",
        "Upgrade",
        "Trailer",
        "X-Upstream-Hop",
    ] {
        assert!(
            resp.header(hop).is_none(),
            "hop-by-hop response header {hop} reached the client:\n{}",
            resp.raw_head
        );
    }
    assert!(
        !resp.has_token("Connection", "X-Upstream-Hop"),
        "the upstream's Connection header reached the client:\n{}",
        resp.raw_head
    );
    assert_eq!(
        resp.header("X-End-To-End"),
        Some("kept"),
        "end-to-end header lost"
    );
    assert_eq!(
        resp.header_list("Via"),
        ["1.1 backend", "1.1 ferroxy"],
        "Via should list the upstream, then the proxy:\n{}",
        resp.raw_head
    );
}

/// An upstream that still speaks HTTP/1.0 is answered to the client as
/// HTTP/1.1: the proxy speaks for itself on the client connection.
#[test]
fn http10_upstream_response_goes_out_as_http11() {
    let upstream = Upstream::fixed("old", b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));

    assert_eq!(
        resp.version, "HTTP/1.1",
        "the status line must say HTTP/1.1:\n{}",
        resp.raw_head
    );
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, b"old".as_slice())
    );
}

/// An HTTP/1.0 client's request goes upstream as HTTP/1.1. It sent no Host
/// (1.0 does not require one), so the proxy supplies the upstream's
/// `host:port`, which every HTTP/1.1 request needs.
#[test]
fn http10_request_goes_upstream_as_http11_with_a_host() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(b"GET /old-client HTTP/1.0\r\n\r\n");
    let resp = client
        .read_response("GET")
        .expect("an answer to an HTTP/1.0 request");

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let req = &upstream.requests()[0];
    assert_eq!(
        req.version, "HTTP/1.1",
        "the upstream should get HTTP/1.1:\n{}",
        req.raw_head
    );
    assert_eq!(
        req.headers_named("Host"),
        [upstream.addr.to_string().as_str()],
        "an HTTP/1.1 request needs a Host; the proxy should send the upstream's:\n{}",
        req.raw_head
    );
}

/// `Upgrade: h2c` asks to switch the *proxy's* connection to HTTP/2
/// cleartext, which ferroxy does not speak: it is stripped (with the
/// HTTP2-Settings the Connection header names), and the request is served as
/// ordinary HTTP/1.1.
#[test]
fn h2c_upgrade_is_stripped() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&head(&[
        "GET / HTTP/1.1",
        "Host: test.local",
        "Connection: Upgrade, HTTP2-Settings",
        "Upgrade: h2c",
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
    ]));

    assert_eq!(
        resp.status, 200,
        "an h2c offer is ignored, not refused:\n{}",
        resp.raw_head
    );
    let req = &upstream.requests()[0];
    assert!(
        req.header("Upgrade").is_none(),
        "Upgrade: h2c reached the upstream:\n{}",
        req.raw_head
    );
    assert!(
        req.header("HTTP2-Settings").is_none(),
        "HTTP2-Settings (named in Connection) reached the upstream:\n{}",
        req.raw_head
    );
    assert!(
        !req.has_token("Connection", "upgrade"),
        "the upstream was asked to upgrade:\n{}",
        req.raw_head
    );
}

/// Round robin: 100 requests (each on its own client connection) alternate
/// between the two upstreams, exactly 50 each.
#[test]
fn round_robin_splits_evenly() {
    let a = Upstream::echo("a");
    let b = Upstream::echo("b");
    let proxy = start_proxy(&[a.addr, b.addr]);

    let mut served_by = Vec::new();
    for i in 0..100 {
        let mut client = Client::connect(proxy.local_addr());
        let resp = client.request(&get(&format!("/rr/{i}")));
        assert_eq!(resp.status, 200, "request {i}:\n{}", resp.raw_head);
        served_by.push(resp.header("X-Upstream").unwrap_or("?").to_string());
    }

    assert_eq!(
        (a.request_count(), b.request_count()),
        (50, 50),
        "round robin should split 100 requests 50/50; order was {served_by:?}"
    );
    assert!(
        served_by.windows(2).all(|w| w[0] != w[1]),
        "round robin should alternate; order was {served_by:?}"
    );
}

/// A HEAD response has headers that describe a body it never carries: the
/// proxy must relay Content-Length (or Transfer-Encoding: chunked) and not
/// wait for a body, so the next request on the connection works.
#[test]
fn head_response_has_no_body() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&head(&["HEAD /bytes/1000 HTTP/1.1", "Host: test.local"]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.header("Content-Length"),
        Some("1000"),
        "HEAD keeps the Content-Length of the body it would have had:\n{}",
        resp.raw_head
    );

    let resp = client.request(&head(&["HEAD /chunked/1000 HTTP/1.1", "Host: test.local"]));
    assert_eq!(
        resp.status, 200,
        "a HEAD to a chunked resource:\n{}",
        resp.raw_head
    );

    let resp = client.request(&get("/after-head"));
    assert_eq!(
        (resp.status, resp.header("X-Echo-Target")),
        (200, Some("/after-head")),
        "the request after two HEADs should get its own answer (no stray body bytes):\n{}",
        resp.raw_head
    );
    assert!(
        client.leftover().is_empty(),
        "stray bytes after the responses: {:?}",
        client.leftover()
    );
}

/// 204 No Content and 304 Not Modified never have a body: the proxy relays
/// them without one, adds no Content-Length or Transfer-Encoding to a 204,
/// and keeps the connection usable.
#[test]
fn no_body_for_204_and_304() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/status/204"));
    assert_eq!(resp.status, 204, "{}", resp.raw_head);
    assert!(
        resp.header("Content-Length").is_none() && resp.header("Transfer-Encoding").is_none(),
        "a 204 must not carry Content-Length or Transfer-Encoding (RFC 9110 8.6, 9112 6.1):\n{}",
        resp.raw_head
    );
    let resp = client.request(&get("/status/304"));
    assert_eq!(resp.status, 304, "{}", resp.raw_head);
    assert!(
        resp.header("Transfer-Encoding").is_none(),
        "a 304 must not be chunked:\n{}",
        resp.raw_head
    );

    let resp = client.request(&get("/after"));
    assert_eq!(
        resp.header("X-Echo-Target"),
        Some("/after"),
        "the request after 204 and 304 should get its own answer:\n{}",
        resp.raw_head
    );
}

/// A request in absolute form (`GET http://host/path`) goes upstream in
/// origin form (`GET /path`), its Host kept; an empty path becomes `/`.
#[test]
fn absolute_form_target_becomes_origin_form() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let cases = [
        ("http://test.local/path?q=1", "test.local", "/path?q=1"),
        ("http://test.local:8080/p", "test.local:8080", "/p"),
        ("http://test.local", "test.local", "/"),
    ];
    for (target, host, _) in cases {
        let resp = client.request(&head(&[
            &format!("GET {target} HTTP/1.1"),
            &format!("Host: {host}"),
        ]));
        assert_eq!(resp.status, 200, "GET {target}:\n{}", resp.raw_head);
    }

    let seen = upstream.requests();
    for (req, (target, host, origin)) in seen.iter().zip(cases) {
        assert_eq!(
            req.target, origin,
            "GET {target} should go upstream as GET {origin}:\n{}",
            req.raw_head
        );
        assert_eq!(
            req.headers_named("Host"),
            [host],
            "Host should be kept:\n{}",
            req.raw_head
        );
    }
}
