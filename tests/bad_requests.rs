//! Bad requests: every request row of the contract's "our decisions" table.
//!
//! ferroxy is strict: where two HTTP parsers could disagree about where a
//! message ends, it refuses instead of guessing, because that disagreement
//! is how requests get smuggled past a proxy. So every story here checks
//! four things:
//!
//! 1. the status the contract names,
//! 2. that it is a complete error answer (Content-Length, Connection: close),
//! 3. that the proxy then closes the connection (the bytes after a refused
//!    head cannot be trusted to be anything),
//! 4. that the upstream received nothing at all (or, for a body that goes
//!    bad half way, never a complete message).

mod support;

use std::thread;
use std::time::Duration;

use support::*;

/// A request smuggled after the refused one: if it ever reaches the
/// upstream, the proxy and the upstream disagreed about framing.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n";

/// Send `raw` (one bad request, then a smuggled one) on a fresh connection
/// and check the refusal: `status`, a proper error answer, the connection
/// closed, and not one byte at the upstream.
fn assert_refused(
    proxy_addr: std::net::SocketAddr,
    upstream: &Upstream,
    raw: &[u8],
    status: u16,
    story: &str,
) {
    let before = upstream.bytes_received();
    let mut client = Client::connect(proxy_addr);
    let resp = client
        .request_refused(&[raw, SMUGGLED].concat())
        .unwrap_or_else(|e| panic!("{story}: expected a {status} answer, got none: {e}"));
    assert_error_answer(&resp, status, story);
    if let Err(e) = client.expect_closed() {
        panic!("{story}: after a {status} the proxy must close: {e}");
    }
    // Anything the proxy wrongly forwarded would have been sent before the
    // answer; a moment lets it land so the count below is honest.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        upstream.bytes_received() - before,
        0,
        "{story}: a refused request must not reach the upstream, but it got:\n{}",
        String::from_utf8_lossy(&upstream.raw_received())
    );
}

/// One proxy in front of one echo upstream, for a story's variants.
fn setup() -> (Upstream, ferroxy::reactor::ProxyHandle) {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    (upstream, proxy)
}

/// Two Content-Length fields are refused even when they agree: another
/// parser might take the first, the last, or the sum.
#[test]
fn duplicate_content_length_even_identical() {
    let (upstream, proxy) = setup();
    for (values, story) in [
        (["5", "5"], "identical duplicate Content-Length"),
        (["5", "6"], "differing Content-Lengths"),
    ] {
        let raw = [
            head(&[
                "POST / HTTP/1.1",
                "Host: test.local",
                &format!("Content-Length: {}", values[0]),
                &format!("Content-Length: {}", values[1]),
            ]),
            b"hello!".to_vec(),
        ]
        .concat();
        assert_refused(proxy.local_addr(), &upstream, &raw, 400, story);
    }
}

/// Content-Length is digits only: no list, no sign, no inner spaces, no hex,
/// no overflow. Each of these is read differently by someone.
#[test]
fn content_length_with_list_sign_or_spaces() {
    let (upstream, proxy) = setup();
    for value in [
        "5, 5",
        "5,5",
        "+5",
        "-5",
        "5 5",
        "0x5",
        "5abc",
        "abc",
        "",
        "99999999999999999999999",
    ] {
        let raw = [
            head(&[
                "POST / HTTP/1.1",
                "Host: test.local",
                &format!("Content-Length: {value}"),
            ]),
            b"hello".to_vec(),
        ]
        .concat();
        assert_refused(
            proxy.local_addr(),
            &upstream,
            &raw,
            400,
            &format!("Content-Length: {value:?}"),
        );
    }
}

/// Content-Length and Transfer-Encoding together is the classic smuggling
/// vector (CL.TE / TE.CL): refused, never "fixed" by dropping one.
#[test]
fn content_length_and_transfer_encoding() {
    let (upstream, proxy) = setup();
    let raw = [
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Content-Length: 4",
            "Transfer-Encoding: chunked",
        ]),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "Content-Length with Transfer-Encoding",
    );

    let raw = [
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Transfer-Encoding: chunked",
            "Content-Length: 4",
        ]),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "Transfer-Encoding before Content-Length",
    );
}

/// HTTP/1.0 has no Transfer-Encoding; a 1.0 request carrying one is refused
/// (an HTTP/1.0 hop would ignore it and frame the body differently).
#[test]
fn transfer_encoding_in_http10() {
    let (upstream, proxy) = setup();
    let raw = [
        head(&[
            "POST / HTTP/1.0",
            "Host: test.local",
            "Transfer-Encoding: chunked",
        ]),
        b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
    ]
    .concat();
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "Transfer-Encoding in an HTTP/1.0 request",
    );
}

/// Disguised `chunked`: junk after it, junk glued to it, a vertical tab, or
/// chunked applied twice. Some parsers see "chunked" in each, some do not.
#[test]
fn transfer_encoding_obfuscations() {
    let (upstream, proxy) = setup();
    let body = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
    let variants: [(&[&str], &str); 6] = [
        (
            &["Transfer-Encoding: chunked x"],
            "chunked followed by junk",
        ),
        (&["Transfer-Encoding: xchunked"], "xchunked"),
        (&["Transfer-Encoding: chunkedx"], "chunkedx"),
        (
            &["Transfer-Encoding: chunked\x0b"],
            "chunked with a vertical tab",
        ),
        (&["Transfer-Encoding: chunked, chunked"], "chunked, chunked"),
        (
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            "two Transfer-Encoding lines",
        ),
    ];
    for (fields, story) in variants {
        let mut lines = vec!["POST / HTTP/1.1", "Host: test.local"];
        lines.extend_from_slice(fields);
        let raw = [head(&lines), body.clone()].concat();
        assert_refused(proxy.local_addr(), &upstream, &raw, 400, story);
    }
}

/// A transfer coding ferroxy does not implement (gzip) is 501 Not
/// Implemented: the request may be fine, the proxy just cannot frame it.
#[test]
fn transfer_encoding_other_than_chunked_is_not_implemented() {
    let (upstream, proxy) = setup();
    for value in ["gzip", "gzip, chunked"] {
        let raw = [
            head(&[
                "POST / HTTP/1.1",
                "Host: test.local",
                &format!("Transfer-Encoding: {value}"),
            ]),
            b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        assert_refused(
            proxy.local_addr(),
            &upstream,
            &raw,
            501,
            &format!("Transfer-Encoding: {value}"),
        );
    }
}

/// A chunked body that goes bad half way: the head (and some chunks) may
/// already be on their way upstream, but the upstream must never receive a
/// complete message, the client gets 400 and the connection closes. The
/// smuggled request behind it never reaches the upstream either.
#[test]
fn malformed_chunked_body() {
    let (upstream, proxy) = setup();
    let variants: [(&[u8], &str); 8] = [
        (b"5\nhello\r\n0\r\n\r\n", "bare LF after the chunk size"),
        (b"5\r\nhello\n0\r\n\r\n", "bare LF after the chunk data"),
        (b"zz\r\nhello\r\n0\r\n\r\n", "chunk size that is not hex"),
        (
            b"fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            "chunk size that overflows 64 bits",
        ),
        (
            b"5\r\nhelloEXTRA\r\n0\r\n\r\n",
            "more data than the chunk size (missing CRLF)",
        ),
        (b"5\r\nhello0\r\n\r\n", "CRLF missing after the chunk data"),
        (b"-5\r\nhello\r\n0\r\n\r\n", "negative chunk size"),
        (b"0x5\r\nhello\r\n0\r\n\r\n", "chunk size with a 0x prefix"),
    ];
    for (body, story) in variants {
        let complete_before = upstream.complete_requests().len();
        let mut client = Client::connect(proxy.local_addr());
        let raw = [
            head(&[
                "POST /chunked-body HTTP/1.1",
                "Host: test.local",
                "Transfer-Encoding: chunked",
            ]),
            body.to_vec(),
            SMUGGLED.to_vec(),
        ]
        .concat();
        let resp = client
            .request_refused(&raw)
            .unwrap_or_else(|e| panic!("{story}: expected a 400 answer, got none: {e}"));
        assert_error_answer(&resp, 400, story);
        if let Err(e) = client.expect_closed() {
            panic!("{story}: after a 400 the proxy must close: {e}");
        }
        thread::sleep(Duration::from_millis(50));
        let complete = upstream.complete_requests();
        assert_eq!(
            complete.len(),
            complete_before,
            "{story}: the upstream received a complete message: {:?}",
            complete.last()
        );
        let raw_seen = upstream.raw_received();
        assert!(
            !contains(&raw_seen, b"/smuggled"),
            "{story}: the smuggled request reached the upstream:\n{}",
            String::from_utf8_lossy(&raw_seen)
        );
    }
}

/// obs-fold (a field line starting with whitespace continues the previous
/// one) is obsolete and parsed differently everywhere: 400.
#[test]
fn obs_fold() {
    let (upstream, proxy) = setup();
    let raw = head(&[
        "GET / HTTP/1.1",
        "Host: test.local",
        "X-Folded: first",
        " second",
    ]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "obs-fold with a space",
    );
    let raw = head(&[
        "GET / HTTP/1.1",
        "Host: test.local",
        "X-Folded: first",
        "\tsecond",
    ]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "obs-fold with a tab",
    );
    // Whitespace between the request line and the first field (RFC 9112
    // 2.2): refuse it, or ignore that line (and then Host is missing).
    let raw = head(&["GET / HTTP/1.1", " Host: test.local"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "whitespace before the first field line",
    );
}

/// `Name : value`: whitespace between the field name and the colon is
/// forbidden (RFC 9112 5.1) because `Transfer-Encoding : chunked` is a
/// smuggling trick.
#[test]
fn space_before_colon() {
    let (upstream, proxy) = setup();
    let raw = head(&["GET / HTTP/1.1", "Host: test.local", "X-Spaced : 1"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "space before the colon",
    );
    let raw = [
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Transfer-Encoding : chunked",
        ]),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "Transfer-Encoding with a space before the colon",
    );
    let raw = head(&["GET / HTTP/1.1", "Host: test.local", "X-Tabbed\t: 1"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "a tab before the colon",
    );
}

/// NUL or a bare CR inside a field value, and a field name that is not a
/// token: each is refused rather than passed on to a parser that might
/// split the line there.
#[test]
fn invalid_bytes_in_fields() {
    let (upstream, proxy) = setup();
    let variants = [
        ("X-Nul: a\0b", "NUL in a value"),
        ("X-Cr: a\rb", "bare CR in a value"),
        ("X@Bad: 1", "invalid field name X@Bad"),
        ("X(Bad): 1", "invalid field name X(Bad)"),
        (": no-name", "empty field name"),
    ];
    for (field, story) in variants {
        let raw = head(&["GET / HTTP/1.1", "Host: test.local", field]);
        assert_refused(proxy.local_addr(), &upstream, &raw, 400, story);
    }
}

/// Host decides where a request goes: an HTTP/1.1 request needs exactly
/// one, and an absolute-form target must agree with it.
#[test]
fn host_missing_duplicated_or_contradicted() {
    let (upstream, proxy) = setup();
    let raw = head(&["GET / HTTP/1.1", "Accept: */*"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "HTTP/1.1 without Host",
    );
    let raw = head(&["GET / HTTP/1.1", "Host: test.local", "Host: other.local"]);
    assert_refused(proxy.local_addr(), &upstream, &raw, 400, "two Host fields");
    let raw = head(&["GET / HTTP/1.1", "Host: test.local", "Host: test.local"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "two identical Host fields",
    );
    let raw = head(&["GET http://evil.local/ HTTP/1.1", "Host: test.local"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        400,
        "absolute-form host differs from Host",
    );
}

/// A request line longer than the whole head limit is 414 URI Too Long.
#[test]
fn request_line_over_the_limit() {
    let (upstream, proxy) = setup();
    let target = format!("/{}", "a".repeat(17_000));
    let raw = head(&[&format!("GET {target} HTTP/1.1"), "Host: test.local"]);
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &raw,
        414,
        "a 17000-byte request line",
    );
}

/// A head (request line fine) whose fields add up to more than
/// `max_header_bytes` (16 KiB) is 431 Request Header Fields Too Large.
#[test]
fn head_over_the_limit() {
    let (upstream, proxy) = setup();
    let filler = "v".repeat(500);
    let fields: Vec<String> = (0..40).map(|i| format!("X-Filler-{i}: {filler}")).collect();
    let mut lines = vec!["GET / HTTP/1.1", "Host: test.local"];
    lines.extend(fields.iter().map(String::as_str));
    let raw = head(&lines);
    assert!(raw.len() > 16_384, "the story needs a head over 16 KiB");
    assert_refused(proxy.local_addr(), &upstream, &raw, 431, "a 20 KiB head");
}

/// More than 100 fields is 431, however small they are; exactly 100 is
/// fine.
#[test]
fn more_than_100_fields() {
    let (upstream, proxy) = setup();
    let fields: Vec<String> = (0..100).map(|i| format!("X-F{i}: {i}")).collect();
    let mut lines = vec!["GET / HTTP/1.1", "Host: test.local"];
    lines.extend(fields.iter().map(String::as_str));
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &head(&lines),
        431,
        "101 fields (Host + 100)",
    );

    lines.pop();
    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&head(&lines));
    assert_eq!(
        resp.status, 200,
        "exactly 100 fields is within the limit:\n{}",
        resp.raw_head
    );
    assert_eq!(
        upstream.complete_requests().len(),
        1,
        "the 100-field request should reach the upstream"
    );
}

/// The only expectation HTTP/1.1 defines is `100-continue`; anything else
/// is 417 Expectation Failed.
#[test]
fn unknown_expectation() {
    let (upstream, proxy) = setup();
    let raw = [
        head(&[
            "POST / HTTP/1.1",
            "Host: test.local",
            "Expect: foo",
            "Content-Length: 5",
        ]),
        b"hello".to_vec(),
    ]
    .concat();
    assert_refused(proxy.local_addr(), &upstream, &raw, 417, "Expect: foo");
}

/// CONNECT would turn the reverse proxy into an open tunnel: 405.
#[test]
fn connect_is_not_allowed() {
    let (upstream, proxy) = setup();
    let raw = head(&["CONNECT test.local:443 HTTP/1.1", "Host: test.local:443"]);
    assert_refused(proxy.local_addr(), &upstream, &raw, 405, "CONNECT");
}

/// Bytes that are not an HTTP request line at all: 400.
#[test]
fn garbage_request_line() {
    let (upstream, proxy) = setup();
    for (raw, story) in [
        (head(&["HELLO"]), "a request line with one word"),
        (
            head(&["GET / HTTP/1.1 extra", "Host: test.local"]),
            "a request line with four words",
        ),
        (
            head(&["GET / SPDY/3", "Host: test.local"]),
            "an unknown protocol",
        ),
        (
            head(&["G\0T / HTTP/1.1", "Host: test.local"]),
            "NUL in the method",
        ),
    ] {
        assert_refused(proxy.local_addr(), &upstream, &raw, 400, story);
    }
}

/// `Host` must be RFC 3986 `uri-host [":" port]`: a name a cache, a router
/// and the upstream could each split differently is refused outright.
#[test]
fn host_that_is_not_a_valid_uri_host() {
    let (upstream, proxy) = setup();
    for host in [
        "..",
        ".",
        "a..b",
        ".test.local",
        "test.local:",
        "test.local:65536",
        "test.local:8o",
        "[::1",
        "[::1]x",
        "[not-ipv6]",
        "user@test.local",
        "a%zz",
        "a b",
    ] {
        let raw = head(&["GET / HTTP/1.1", &format!("Host: {host}")]);
        assert_refused(
            proxy.local_addr(),
            &upstream,
            &raw,
            400,
            &format!("Host: {host}"),
        );
    }
    // The valid forms still pass.
    for host in ["test.local.", "127.0.0.1:65535", "[::1]:8080", "[v1.x]"] {
        let mut client = Client::connect(proxy.local_addr());
        let resp = client.request(&head(&["GET / HTTP/1.1", &format!("Host: {host}")]));
        assert_eq!(
            resp.status, 200,
            "Host: {host} is valid:\n{}",
            resp.raw_head
        );
    }
}

/// RFC 9110 section 2.5: `HTTP/1.2` is a later minor version of a major we
/// speak, so it is handled (and forwarded) as HTTP/1.1; another major is a
/// protocol we do not speak at all: 505.
#[test]
fn later_minor_version_is_http11_and_other_majors_are_505() {
    let (upstream, proxy) = setup();
    let mut client = Client::connect(proxy.local_addr());
    let resp = client.request(&head(&["GET /v HTTP/1.2", "Host: test.local"]));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let seen = upstream.requests();
    let last = seen.last().expect("the request reached the upstream");
    assert_eq!(
        (last.target.as_str(), last.version.as_str()),
        ("/v", "HTTP/1.1"),
        "forwarded as HTTP/1.1:\n{}",
        last.raw_head
    );
    // Read as 1.1: the connection stays open for the next request.
    assert_eq!(client.request(&get("/again")).status, 200);

    for version in ["HTTP/2.0", "HTTP/3.0", "HTTP/2", "HTTP/0.9"] {
        let raw = head(&[&format!("GET / {version}"), "Host: test.local"]);
        assert_refused(proxy.local_addr(), &upstream, &raw, 505, version);
    }
}

/// TRACE echoes the request back, credentials added on the way included
/// (cross-site tracing), so it is refused like nginx does, with 405. A
/// TRACE with a body is worse: RFC 9110 forbids the body, a server that
/// ignores it reads it as the next request. 400.
#[test]
fn trace_is_405_and_trace_with_a_body_is_400() {
    let (upstream, proxy) = setup();
    let plain = head(&["TRACE / HTTP/1.1", "Host: test.local"]);
    assert_refused(proxy.local_addr(), &upstream, &plain, 405, "TRACE");
    let with_length = [
        head(&["TRACE / HTTP/1.1", "Host: test.local", "Content-Length: 5"]),
        b"hello".to_vec(),
    ]
    .concat();
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &with_length,
        400,
        "TRACE with Content-Length",
    );
    let chunked = [
        head(&[
            "TRACE / HTTP/1.1",
            "Host: test.local",
            "Transfer-Encoding: chunked",
        ]),
        b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
    ]
    .concat();
    assert_refused(
        proxy.local_addr(),
        &upstream,
        &chunked,
        400,
        "TRACE with a chunked body",
    );
}

/// `Chunked` and `CHUNKED` are `chunked` (codings are case-insensitive), and
/// the upstream gets the one spelling every server reads the same way.
#[test]
fn chunked_in_another_case_is_forwarded_as_chunked() {
    let (upstream, proxy) = setup();
    for spelling in ["Chunked", "CHUNKED", " chunked "] {
        upstream.forget_requests();
        let mut client = Client::connect(proxy.local_addr());
        let raw = [
            head(&[
                "POST /c HTTP/1.1",
                "Host: test.local",
                &format!("Transfer-Encoding:{spelling}"),
            ]),
            b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        let resp = client.request(&raw);
        assert_eq!(resp.status, 200, "{spelling:?}: {}", resp.raw_head);
        let seen = upstream.requests();
        let req = seen.last().expect("forwarded");
        assert!(req.complete, "{spelling:?}: {:?}", req.problem);
        assert_eq!(req.body, b"hello", "{spelling:?}");
        assert!(
            req.raw_head.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{spelling:?} must go upstream as `Transfer-Encoding: chunked`:\n{}",
            req.raw_head
        );
    }
}

/// A chunk size whose digits already overflow 64 bits is refused as soon as
/// they arrive, even while the request waits for an upstream connection:
/// here the only slot (`max_conns_per_upstream = 1`) is busy for two
/// seconds, and the 400 must not wait for it.
#[test]
fn overflowing_chunk_size_is_refused_at_once_even_while_queued() {
    let upstream = Upstream::slow("busy", Duration::from_secs(2));
    let proxy = start_proxy_with(&[upstream.addr], |c| c.limits.max_conns_per_upstream = 1);
    let addr = proxy.local_addr();
    let occupant = thread::spawn(move || Client::connect(addr).request(&get("/slow")).status);
    assert!(
        wait_until(Duration::from_secs(2), || upstream.connections() == 1),
        "the first request should take the only upstream slot"
    );

    let started = std::time::Instant::now();
    let mut client = Client::connect(addr);
    let raw = [
        head(&[
            "POST /queued HTTP/1.1",
            "Host: test.local",
            "Transfer-Encoding: chunked",
        ]),
        b"10000000000000000".to_vec(),
    ]
    .concat();
    let resp = client
        .request_refused(&raw)
        .expect("a 400 for the overflowing chunk size");
    let waited = started.elapsed();
    assert_error_answer(&resp, 400, "chunk size that overflows, while queued");
    assert!(
        waited < Duration::from_millis(1000),
        "the 400 took {waited:?}: it waited for the upstream slot"
    );
    assert_eq!(occupant.join().expect("occupant thread"), 200);
    assert_eq!(
        upstream.connections(),
        1,
        "the refused request never connected"
    );
}
