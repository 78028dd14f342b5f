//! Body framing: where a message ends, in both directions (lesson 11).
//!
//! A body is delimited by Content-Length, by chunked encoding, or (responses
//! only) by the upstream closing. Interim 1xx answers come before the final
//! one. An HTTP/1.0 client cannot read chunked. Pipelined requests are
//! answered in order. Each story checks that the bytes that arrive are
//! exactly the bytes that were sent and that the connection is left in the
//! right state.

mod support;

use std::time::Duration;

use support::*;

/// A chunked upload (200 KiB in 1000-byte chunks, then a trailer field)
/// reaches the upstream as a complete message with every byte and the
/// trailer.
#[test]
fn chunked_request_body_reaches_upstream_whole() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    let body = pattern_bytes(200 * 1024);

    let resp = client.request(
        &[
            head(&[
                "POST /upload HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: chunked",
            ]),
            chunked_encode(&body, 1000, &[("X-Checksum", "abc123")]),
        ]
        .concat(),
    );

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let seen = upstream.complete_requests();
    assert_eq!(
        seen.len(),
        1,
        "the upstream should get one complete message"
    );
    assert_eq!(
        seen[0].body_len,
        body.len() as u64,
        "every body byte should arrive"
    );
    assert!(seen[0].body_is_pattern, "the body arrived altered");
    assert_eq!(
        seen[0].trailers,
        [("X-Checksum".to_string(), "abc123".to_string())],
        "the request trailer should reach the upstream"
    );
}

/// A chunked response of 1 MiB in chunks from 1 byte to 64 KiB reaches an
/// HTTP/1.1 client intact, and the connection stays usable.
#[test]
fn chunked_response_reaches_client_whole() {
    let upstream = Upstream::chunked("a", 1 << 20, &[]);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(resp.body.len(), 1 << 20, "the whole body should arrive");
    assert!(matches_pattern(0, &resp.body), "the body arrived altered");

    let resp = client.request(&get("/again"));
    assert_eq!(
        resp.body.len(),
        1 << 20,
        "a second chunked response on the same connection should arrive whole"
    );
}

/// Trailer fields after a chunked response body reach an HTTP/1.1 client.
#[test]
fn response_trailers_reach_http11_client() {
    let upstream = Upstream::chunked("a", 5000, &[("X-Checksum", "deadbeef")]);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));

    assert!(
        resp.chunked,
        "a chunked response to an HTTP/1.1 client can stay chunked"
    );
    assert_eq!(resp.body.len(), 5000);
    assert_eq!(
        resp.trailers,
        [("X-Checksum".to_string(), "deadbeef".to_string())],
        "the trailer should reach the client"
    );
}

/// An upstream response with neither Content-Length nor chunked ends when
/// the upstream closes. The client still gets every byte, and a body it can
/// find the end of.
#[test]
fn close_delimited_response() {
    let body = pattern_bytes(100 * 1024);
    let upstream = Upstream::fixed_then_close(
        "a",
        &[head(&["HTTP/1.1 200 OK", "X-Framing: close"]), body.clone()].concat(),
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.body.len(),
        body.len(),
        "the close-delimited body should arrive whole"
    );
    assert!(matches_pattern(0, &resp.body), "the body arrived altered");
    if resp.header("Content-Length").is_none() && !resp.chunked {
        assert!(
            resp.has_token("Connection", "close"),
            "a body relayed close-delimited means the proxy will close: it must say \
             Connection: close:\n{}",
            resp.raw_head
        );
    }
}

/// `Expect: 100-continue`: the client sends only the head and waits; the
/// upstream's 100 Continue is relayed; then the body goes up and the final
/// answer comes back.
#[test]
fn expect_100_continue() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&head(&[
        "PUT /file HTTP/1.1",
        "Host: test.local",
        "Expect: 100-continue",
        "Content-Length: 11",
    ]));
    let interim = client
        .read_head()
        .expect("the upstream's 100 Continue should be relayed before the body is sent");
    assert_eq!(
        interim.status, 100,
        "first answer should be 100 Continue:\n{}",
        interim.raw_head
    );
    client.send(b"hello world");
    let resp = client
        .read_response("PUT")
        .expect("a final answer after the body");

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let seen = upstream.complete_requests();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].has_token("Expect", "100-continue"),
        "Expect should be forwarded:\n{}",
        seen[0].raw_head
    );
    assert_eq!(
        seen[0].body, b"hello world",
        "the body should follow the 100"
    );
}

/// An interim 103 Early Hints from the upstream reaches an HTTP/1.1 client
/// before the final 200.
#[test]
fn interim_1xx_relayed_to_http11() {
    let upstream = Upstream::fixed(
        "a",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));

    assert_eq!(
        resp.interim.len(),
        1,
        "the 103 should be relayed to an HTTP/1.1 client"
    );
    assert_eq!(resp.interim[0].status, 103);
    assert_eq!(
        resp.interim[0].header("Link"),
        Some("</style.css>; rel=preload"),
        "the 103's fields should be relayed"
    );
    assert_eq!((resp.status, resp.body.as_slice()), (200, b"ok".as_slice()));
}

/// HTTP/1.0 has no interim answers: a 1.0 client gets only the final one.
#[test]
fn interim_1xx_not_sent_to_http10() {
    let upstream = Upstream::fixed(
        "a",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&head(&["GET / HTTP/1.0", "Host: test.local"]));
    let first = client.read_head().expect("an answer");

    assert_eq!(
        first.status, 200,
        "an HTTP/1.0 client must not see a 1xx:\n{}",
        first.raw_head
    );
}

/// An HTTP/1.0 client cannot read chunked: a chunked upstream response
/// reaches it de-chunked, delimited by the close of the connection (no
/// Transfer-Encoding, no Content-Length), even if it asked for keep-alive.
#[test]
fn http10_client_never_gets_chunked() {
    let upstream = Upstream::chunked("a", 100 * 1024, &[("X-Checksum", "x")]);
    let proxy = start_proxy(&[upstream.addr]);

    for keep_alive in [false, true] {
        let mut client = Client::connect(proxy.local_addr());
        let mut lines = vec!["GET / HTTP/1.0", "Host: test.local"];
        if keep_alive {
            lines.push("Connection: keep-alive");
        }
        client.send(&head(&lines));
        let resp = client.read_head().expect("an answer");
        let story = if keep_alive {
            "HTTP/1.0 keep-alive client"
        } else {
            "HTTP/1.0 client"
        };
        assert_eq!(resp.status, 200, "{story}:\n{}", resp.raw_head);
        assert!(
            resp.header("Transfer-Encoding").is_none(),
            "{story}: got Transfer-Encoding:\n{}",
            resp.raw_head
        );
        assert!(
            resp.header("Content-Length").is_none(),
            "{story}: a de-chunked body is close-delimited, so no Content-Length:\n{}",
            resp.raw_head
        );
        assert!(
            !resp.has_token("Connection", "keep-alive"),
            "{story}: a close-delimited answer must not promise keep-alive:\n{}",
            resp.raw_head
        );
        let (body, end) = client.read_until_close();
        assert!(
            end.is_ok(),
            "{story}: the body should end with a clean close: {end:?}"
        );
        assert_eq!(
            body.len(),
            100 * 1024,
            "{story}: the de-chunked body should be exactly the data (no chunk framing)"
        );
        assert!(
            matches_pattern(0, &body),
            "{story}: the de-chunked body is altered"
        );
    }
}

/// Twenty requests sent in one write (GETs, a HEAD, POSTs with bodies, a
/// chunked response) are answered one by one, in the order they were sent.
#[test]
fn pipelined_burst_answered_in_order() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let mut burst = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let target = format!("/p/{i}");
        let (raw, method) = match i % 5 {
            0 => (get(&target), "GET"),
            1 => (post(&target, format!("body {i}").as_bytes()), "POST"),
            2 => (
                head(&[&format!("HEAD {target} HTTP/1.1"), "Host: test.local"]),
                "HEAD",
            ),
            3 => (get(&format!("/chunked/{}", 1000 + i)), "GET"),
            _ => (get(&format!("/bytes/{}", 20_000 + i)), "GET"),
        };
        burst.extend_from_slice(&raw);
        expected.push((i, method));
    }
    client.send(&burst);

    for (i, method) in expected {
        let resp = client
            .read_response(method)
            .unwrap_or_else(|e| panic!("response {i} of the burst: {e}"));
        assert_eq!(resp.status, 200, "response {i}:\n{}", resp.raw_head);
        match i % 5 {
            3 => assert_eq!(
                resp.body.len(),
                1000 + i,
                "response {i} is out of order or truncated"
            ),
            4 => assert_eq!(
                resp.body.len(),
                20_000 + i,
                "response {i} is out of order or truncated"
            ),
            _ => assert_eq!(
                resp.header("X-Echo-Target"),
                Some(format!("/p/{i}").as_str()),
                "response {i} answers the wrong request:\n{}",
                resp.raw_head
            ),
        }
        if i % 5 == 1 {
            assert_eq!(
                resp.header("X-Echo-Body-Length"),
                Some(format!("body {i}").len().to_string().as_str()),
                "POST {i}'s body went astray"
            );
        }
    }
    assert!(
        client.leftover().is_empty(),
        "stray bytes after the last response"
    );
}

/// A request whose head and chunked body arrive one byte per write (so
/// every read the proxy does ends mid-token) is parsed exactly as if it
/// came in one piece.
#[test]
fn request_dribbling_in_byte_by_byte() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let raw = [
        head(&[
            "POST /dribble HTTP/1.1",
            "Host: test.local",
            "Transfer-Encoding: chunked",
        ]),
        chunked_encode(b"hello, world", 5, &[]),
    ]
    .concat();
    client.send_dribbling(&raw, Duration::from_millis(1));
    let resp = client.read_response("POST").expect("an answer");

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let seen = upstream.complete_requests();
    assert_eq!(seen.len(), 1, "one complete request should arrive");
    assert_eq!(seen[0].target, "/dribble");
    assert_eq!(seen[0].body, b"hello, world");
}

/// An upstream response whose head and body arrive one byte per write is
/// relayed whole.
#[test]
fn response_dribbling_in_byte_by_byte() {
    let upstream = Upstream::fixed_dribbling(
        "slowpoke",
        b"HTTP/1.1 200 OK\r\nX-Dribbled: yes\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
        Duration::from_millis(1),
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(&get("/"));

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(resp.header("X-Dribbled"), Some("yes"));
    assert_eq!(resp.body_text(), "hello, world");
}

/// Chunk extensions (`5;name=value`) are legal and ignored by meaning, and
/// an empty chunked body (just the last chunk) is a complete message.
#[test]
fn chunk_extensions_and_empty_chunked_body() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(
        &[
            head(&[
                "POST /ext HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: chunked",
            ]),
            b"5;name=value\r\nhello\r\n0;last\r\n\r\n".to_vec(),
        ]
        .concat(),
    );
    assert_eq!(resp.status, 200, "chunk extensions:\n{}", resp.raw_head);
    let resp = client.request(
        &[
            head(&[
                "POST /empty HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: chunked",
            ]),
            b"0\r\n\r\n".to_vec(),
        ]
        .concat(),
    );
    assert_eq!(resp.status, 200, "empty chunked body:\n{}", resp.raw_head);

    let seen = upstream.complete_requests();
    assert_eq!(seen.len(), 2, "both requests should arrive complete");
    assert_eq!(seen[0].body, b"hello", "the extension must not become data");
    assert_eq!(seen[1].body_len, 0);
}

/// Transfer-coding names are case-insensitive (RFC 9112 section 7):
/// `Transfer-Encoding: Chunked` is chunked, not an obfuscation.
#[test]
fn transfer_coding_name_is_case_insensitive() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    let resp = client.request(
        &[
            head(&[
                "POST /case HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: Chunked",
            ]),
            chunked_encode(b"case", 2, &[]),
        ]
        .concat(),
    );

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(upstream.complete_requests()[0].body, b"case");
}

/// HTTP/1.0 has no `Transfer-Encoding`: a 1.0 client never sees one, not
/// even on a HEAD (or 204, 304) answer where no body follows, because it
/// would take the field to describe bytes that are not there.
#[test]
fn an_http10_client_never_sees_transfer_encoding() {
    let upstream = Upstream::fixed(
        "chunky",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let heads = Upstream::fixed(
        "heads",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let no_content = Upstream::fixed(
        "none",
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for (addr, method, story) in [
        (upstream.addr, "GET", "GET of a chunked body"),
        (heads.addr, "HEAD", "HEAD of a chunked resource"),
        (no_content.addr, "GET", "a 204 naming chunked"),
    ] {
        let proxy = start_proxy(&[addr]);
        let mut client = Client::connect(proxy.local_addr());
        client.send(format!("{method} / HTTP/1.0\r\n\r\n").as_bytes());
        let resp = client.read_head().expect("an answer");
        assert!(
            !resp
                .raw_head
                .to_ascii_lowercase()
                .contains("transfer-encoding"),
            "{story}: an HTTP/1.0 client saw Transfer-Encoding:\n{}",
            resp.raw_head
        );
        let (body, _) = client.read_until_close();
        let expected: &[u8] = if method == "GET" && resp.status == 200 {
            b"hello"
        } else {
            b""
        };
        assert_eq!(
            body,
            expected,
            "{story}: body {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}
