//! Upstream failures: upstreams that are not there, hang up, or lie.
//!
//! Before the response head reached the client, the proxy can still answer
//! for itself: 502 Bad Gateway (a small complete answer, then close). After
//! the head went out it can only cut the connection, so the client sees the
//! truncation instead of a body that merely looks complete.

mod support;

use std::time::Duration;

use support::*;

/// Ask one GET through a proxy in front of `upstreams` and expect the
/// proxy's own 502, then a closed connection.
fn assert_bad_gateway(upstreams: &[std::net::SocketAddr], story: &str) {
    let proxy = start_proxy(upstreams);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/"));
    let resp = client
        .read_response("GET")
        .unwrap_or_else(|e| panic!("{story}: expected a 502 answer, got none: {e}"));
    assert_error_answer(&resp, 502, story);
    if let Err(e) = client.expect_closed() {
        panic!("{story}: after a 502 the proxy must close: {e}");
    }
}

/// Nothing listens on the upstream's port (we bound it, then let it go):
/// the connect is refused, and with no other upstream the answer is 502.
#[test]
fn unreachable_upstream_is_502() {
    assert_bad_gateway(&[dead_addr()], "the only upstream refuses connections");
}

/// Every upstream refuses: still one clean 502, not a hang.
#[test]
fn all_upstreams_refused_is_502() {
    assert_bad_gateway(
        &[dead_addr(), dead_addr()],
        "both upstreams refuse connections",
    );
}

/// The first upstream refuses the connection; nothing was sent yet, so the
/// proxy moves on to the next one and the client never notices. Round robin
/// means every other request starts at the dead one: all four must succeed.
#[test]
fn refused_upstream_is_skipped_for_the_next() {
    let live = Upstream::echo("live");
    let proxy = start_proxy(&[dead_addr(), live.addr]);

    for i in 0..4 {
        let mut client = Client::connect(proxy.local_addr());
        let resp = client.request(&get(&format!("/try/{i}")));
        assert_eq!(
            resp.status, 200,
            "request {i}: a refused connect should move on to the live upstream:\n{}",
            resp.raw_head
        );
        assert_eq!(resp.header("X-Upstream"), Some("live"));
    }
    assert_eq!(
        live.request_count(),
        4,
        "the live upstream should have served all four"
    );
}

/// The upstream reads the request and hangs up without a word: 502.
#[test]
fn upstream_closing_without_answer_is_502() {
    let upstream = Upstream::fixed_then_close("mute", b"");
    assert_bad_gateway(
        &[upstream.addr],
        "the upstream closed without sending anything",
    );
}

/// The upstream hangs up in the middle of its response head: 502 (the
/// client never sees half a head).
#[test]
fn upstream_head_cut_short_is_502() {
    let upstream = Upstream::fixed_then_close("cut", b"HTTP/1.1 200 OK\r\nContent-Le");
    assert_bad_gateway(
        &[upstream.addr],
        "the upstream closed in the middle of its head",
    );
}

/// Response heads that are not HTTP: no status line, a bad status code, a
/// field line without a colon. Each is 502.
#[test]
fn malformed_upstream_head_is_502() {
    let variants: [(&[u8], &str); 5] = [
        (b"Content-Length: 2\r\n\r\nok", "no status line"),
        (b"garbage\r\n\r\n", "a garbage status line"),
        (
            b"HTTP/1.1 abc Bad\r\nContent-Length: 2\r\n\r\nok",
            "a status code that is not a number",
        ),
        (
            b"HTTP/1.1 20 Short\r\nContent-Length: 2\r\n\r\nok",
            "a two-digit status code",
        ),
        (
            b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok",
            "a field line without a colon",
        ),
    ];
    for (raw, story) in variants {
        let upstream = Upstream::fixed_then_close("liar", raw);
        assert_bad_gateway(&[upstream.addr], story);
    }
}

/// A response with both Content-Length and Transfer-Encoding is ambiguous
/// (the response-side twin of request smuggling): 502, never a guess.
#[test]
fn upstream_with_content_length_and_transfer_encoding_is_502() {
    let upstream = Upstream::fixed(
        "liar",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_bad_gateway(
        &[upstream.addr],
        "the upstream sent Content-Length and Transfer-Encoding",
    );
}

/// Two different Content-Lengths in one response: 502.
#[test]
fn upstream_with_differing_content_lengths_is_502() {
    let upstream = Upstream::fixed(
        "liar",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
    assert_bad_gateway(
        &[upstream.addr],
        "the upstream sent two different Content-Lengths",
    );
}

/// The upstream sends more than its Content-Length said. The extra bytes are
/// not the start of the next response; they are garbage: dropped, and that
/// upstream connection is closed instead of pooled, so the next request
/// goes over a fresh one and gets its own clean answer.
#[test]
fn bytes_beyond_content_length_are_dropped_and_connection_not_reused() {
    let upstream = Upstream::fixed(
        "liar",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nextra!!",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    for i in 0..2 {
        let resp = client.request(&get(&format!("/{i}")));
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, b"hello".as_slice()),
            "request {i}: the client should get exactly the 5 promised bytes:\n{}{}",
            resp.raw_head,
            resp.body_text()
        );
    }
    assert!(
        client.leftover().is_empty(),
        "the extra bytes reached the client: {:?}",
        String::from_utf8_lossy(client.leftover())
    );
    assert_eq!(
        upstream.connections(),
        2,
        "the connection that over-sent must not be reused for the second request"
    );
}

/// The upstream promised 100 bytes (Content-Length), sent 15 and hung up.
/// The head already went to the client, so the proxy can only close: the
/// client sees a short body and a closed connection, never a complete-
/// looking response.
#[test]
fn upstream_closing_mid_body_truncates_the_client() {
    let upstream = Upstream::fixed_then_close(
        "quitter",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part-of-it",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/"));
    let resp = client
        .read_head()
        .expect("the head went out before the cut");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let (body, _) = client.read_until_close();
    assert!(
        body.len() < 100,
        "the client should see fewer than the 100 promised bytes, got {}",
        body.len()
    );
    assert!(
        b"only-part-of-it".starts_with(&body)
            || body.starts_with(b"f\r\nonly-part-of-it")
            || body.is_empty(),
        "the client got bytes the upstream never sent: {:?}",
        String::from_utf8_lossy(&body)
    );
}

/// The same for a chunked response cut after its first chunk: the client
/// must not receive a last chunk (`0\r\n\r\n`) the upstream never sent,
/// which would make the truncated body look complete.
#[test]
fn upstream_closing_mid_chunked_body_is_not_completed() {
    let upstream = Upstream::fixed_then_close(
        "quitter",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/"));
    let resp = client
        .read_head()
        .expect("the head went out before the cut");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let (body, _) = client.read_until_close();
    assert!(
        !contains(&body, b"0\r\n\r\n"),
        "the proxy completed a chunked body the upstream cut short: {:?}",
        String::from_utf8_lossy(&body)
    );
}

/// The upstream answers (413) as soon as it sees the head, without reading
/// the 1 MiB body. The answer is relayed with `Connection: close` (the
/// client's unsent body makes the connection unusable), and that upstream
/// connection, with an unread body in it, is never pooled.
#[test]
fn upstream_answering_before_the_body_is_relayed_with_close() {
    let upstream = Upstream::answer_before_body(
        "impatient",
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large",
    );
    let proxy = start_proxy(&[upstream.addr]);

    let mut client = Client::connect(proxy.local_addr());
    client.send(&head(&[
        "POST /upload HTTP/1.1",
        "Host: test.local",
        "Content-Length: 1048576",
    ]));
    client.send(&pattern_bytes(64 * 1024));
    let resp = client
        .read_response("POST")
        .expect("the early answer should be relayed");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (413, b"too large".as_slice()),
        "{}",
        resp.raw_head
    );
    assert!(
        resp.has_token("Connection", "close"),
        "an answer that came before the whole request body must carry Connection: close:\n{}",
        resp.raw_head
    );
    drop(client);

    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&get("/next"));
    assert_eq!(resp.status, 413, "{}", resp.raw_head);
    assert_eq!(
        upstream.connections(),
        2,
        "the upstream connection with an unread body in it must not be pooled"
    );
}

/// A response head the proxy would have to hold whole but cannot: over
/// `max_header_bytes` (here 20 KiB of fields) or more than 100 fields. The
/// upstream is broken as far as the client is concerned: 502.
#[test]
fn oversized_upstream_head_is_502() {
    let big_field = format!("X-Big: {}\r\n", "v".repeat(20 * 1024));
    let many_fields: String = (0..101).map(|i| format!("X-F{i}: {i}\r\n")).collect();
    for (fields, story) in [
        (big_field, "a 20 KiB response head"),
        (many_fields, "a response head with 101 fields"),
    ] {
        let raw = format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\nok");
        let upstream = Upstream::fixed("bloated", raw.as_bytes());
        assert_bad_gateway(&[upstream.addr], story);
    }
}

/// The response side is as strict as the request side: every framing a
/// client (or a cache between us and it) could read differently is 502, and
/// the upstream connection that sent it is closed, never pooled.
#[test]
fn ambiguous_response_framing_is_502_and_the_connection_closed() {
    let variants: [(&[u8], &str); 7] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "two identical Content-Lengths",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
            "a Content-Length list",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            "Transfer-Encoding: gzip",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "Transfer-Encoding: gzip, chunked",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "chunked twice",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "two Transfer-Encoding lines",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\nhello",
            "Transfer-Encoding: xchunked",
        ),
    ];
    for (raw, story) in variants {
        assert_bad_gateway_and_upstream_closed(raw, story);
    }
}

/// HTTP/1.0 has no interim responses. A 1.0 upstream sending `100 Continue`
/// (or a `101`) is confused about the protocol it speaks, so the proxy does
/// not wait for a final answer behind it: 502, and the connection closed.
#[test]
fn a_1xx_from_an_http10_upstream_is_502_and_the_connection_closed() {
    for (raw, story) in [
        (
            &b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            "100 from HTTP/1.0",
        ),
        (
            &b"HTTP/1.0 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
            "103 from HTTP/1.0",
        ),
    ] {
        assert_bad_gateway_and_upstream_closed(raw, story);
    }
}

/// A later minor version in a status line is HTTP/1.1 (RFC 9110 2.5); the
/// answer is relayed as one.
#[test]
fn an_http12_status_line_is_relayed_as_http11() {
    let upstream = Upstream::fixed("new", b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&get("/"));
    assert_eq!((resp.status, resp.body.as_slice()), (200, b"ok".as_slice()));
    assert!(
        resp.raw_head.starts_with("HTTP/1.1 200"),
        "{}",
        resp.raw_head
    );
}

/// A close-delimited body has no end marker: its end *is* the close. If
/// the upstream resets in the middle of one, a FIN to the client would look
/// exactly like the end of a complete body, so the proxy resets the client
/// connection too.
#[test]
fn upstream_reset_inside_a_close_delimited_body_resets_the_client() {
    let upstream = Upstream::start("crasher", |conn| {
        if conn.read_request().is_some() {
            conn.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart of the body");
            conn.sleep(Duration::from_millis(100));
            conn.reset_on_close();
        }
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/"));
    let resp = client
        .read_head()
        .expect("the head went out before the cut");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let (body, end) = client.read_until_close();
    assert!(
        b"part of the body".starts_with(&body),
        "bytes the upstream never sent: {:?}",
        String::from_utf8_lossy(&body)
    );
    assert_reset(end);
}

/// The same for an HTTP/1.0 client of a chunked upstream: the proxy
/// de-chunks, so the client's body is close-delimited, and a cut chunked
/// body must reach it as a reset, not a clean end.
#[test]
fn chunked_body_cut_for_an_http10_client_resets_it() {
    let upstream = Upstream::fixed_then_close(
        "quitter",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = client
        .read_head()
        .expect("the head went out before the cut");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert!(
        !resp
            .raw_head
            .to_ascii_lowercase()
            .contains("transfer-encoding"),
        "an HTTP/1.0 client never sees Transfer-Encoding:\n{}",
        resp.raw_head
    );
    let (body, end) = client.read_until_close();
    assert!(
        b"hello".starts_with(&body),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    assert_reset(end);
}

/// With length or chunked framing a close is already visibly short, so
/// an upstream *reset* gives the client a closed connection before the
/// body's end: fewer bytes than promised, and no last chunk.
#[test]
fn upstream_reset_inside_a_length_or_chunked_body_is_visibly_short() {
    for (raw, story) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part"[..],
            "Content-Length",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..],
            "chunked",
        ),
    ] {
        let raw = raw.to_vec();
        let upstream = Upstream::start("crasher", move |conn| {
            if conn.read_request().is_some() {
                conn.write(&raw);
                conn.sleep(Duration::from_millis(100));
                conn.reset_on_close();
            }
        });
        let proxy = start_proxy(&[upstream.addr]);
        let mut client = Client::connect(proxy.local_addr());
        client.send(&get("/"));
        let resp = client
            .read_head()
            .expect("the head went out before the cut");
        assert_eq!(resp.status, 200, "{story}: {}", resp.raw_head);
        let (body, _) = client.read_until_close();
        assert!(body.len() < 100, "{story}: {} bytes", body.len());
        assert!(
            !contains(&body, b"0\r\n\r\n"),
            "{story}: the proxy completed a body the upstream cut: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// An upstream answering `raw` with the socket it keeps open (only the
/// proxy can close it): the proxy's own 502, and that connection closed.
fn assert_bad_gateway_and_upstream_closed(raw: &[u8], story: &str) {
    let upstream = Upstream::fixed("liar", raw);
    assert_bad_gateway(&[upstream.addr], story);
    assert!(
        wait_until(Duration::from_secs(2), || upstream.open_connections() == 0),
        "{story}: the proxy must close that upstream connection"
    );
}

/// How the client's read ended must be a reset: a clean FIN would make
/// the cut body look complete.
fn assert_reset(end: Result<(), String>) {
    let how = end.expect_err("a clean FIN would make the cut body look complete");
    assert!(
        how.contains("reset"),
        "the client should see a reset, got: {how}"
    );
}
