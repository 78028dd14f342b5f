//! The heads ferroxy forwards: the request toward the upstream and the
//! response toward the client. Each story parses a real head, rewrites it,
//! and compares the exact bytes, so a reader sees precisely what goes on the
//! wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferroxy::http::head::{HeadLimits, Version};
use ferroxy::http::request::{RequestHead, parse_request};
use ferroxy::http::response::{ResponseHead, parse_response};
use ferroxy::http::rewrite::{ClientSide, ForwardContext, write_request_head, write_response_head};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn ctx() -> ForwardContext<'static> {
    ForwardContext {
        client_ip: CLIENT,
        proto: "http",
        default_host: "127.0.0.1:9001",
    }
}

/// A head from its lines: joined with CRLF, ended by the empty line.
fn head(lines: &[&str]) -> Vec<u8> {
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

fn request(lines: &[&str]) -> RequestHead {
    let input = head(lines);
    match parse_request(&input, &HeadLimits::default()) {
        Ok(Some(req)) => req,
        other => panic!("test request {lines:?} must parse, got {other:?}"),
    }
}

fn response(lines: &[&str], request_was_head: bool) -> ResponseHead {
    let input = head(lines);
    match parse_response(&input, request_was_head, &HeadLimits::default()) {
        Ok(Some(resp)) => resp,
        other => panic!("test response {lines:?} must parse, got {other:?}"),
    }
}

fn forwarded(req: &RequestHead, ctx: &ForwardContext<'_>) -> String {
    let mut out = Vec::new();
    write_request_head(req, ctx, &mut out);
    String::from_utf8(out).expect("test heads are ASCII")
}

fn relayed(resp: &ResponseHead, client: ClientSide) -> String {
    let mut out = Vec::new();
    write_response_head(resp, &client, &mut out);
    String::from_utf8(out).expect("test heads are ASCII")
}

const KEEP_ALIVE_11: ClientSide = ClientSide {
    version: Version::Http11,
    keep_alive: true,
    dechunk: false,
};

/// A plain request keeps its line and fields in order and gains the
/// proxy's three: X-Forwarded-For, X-Forwarded-Proto, Via.
#[test]
fn a_plain_request_gains_the_proxy_headers() {
    let req = request(&[
        "GET /a?b HTTP/1.1",
        "Host: example.com",
        "Accept: */*",
        "User-Agent: test",
    ]);
    assert_eq!(
        forwarded(&req, &ctx()),
        "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: test\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.1 ferroxy\r\n\r\n"
    );
}

/// The output is appended: whatever was in the buffer stays in front.
#[test]
fn the_head_is_appended_to_the_buffer() {
    let req = request(&["GET / HTTP/1.1", "Host: h"]);
    let mut out = b"earlier bytes|".to_vec();
    write_request_head(&req, &ctx(), &mut out);
    assert!(
        out.starts_with(b"earlier bytes|GET / HTTP/1.1\r\n"),
        "appended after existing bytes: {:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Absolute-form targets go upstream in origin-form (an origin server need
/// not understand absolute-form); `*` stays `*`.
#[test]
fn targets_are_sent_in_origin_form() {
    let cases = [
        ("GET http://h/a/b?c HTTP/1.1", "GET /a/b?c HTTP/1.1\r\n"),
        ("GET http://h HTTP/1.1", "GET / HTTP/1.1\r\n"),
        ("GET http://h?q=1 HTTP/1.1", "GET /?q=1 HTTP/1.1\r\n"),
        ("OPTIONS * HTTP/1.1", "OPTIONS * HTTP/1.1\r\n"),
        ("GET /plain HTTP/1.1", "GET /plain HTTP/1.1\r\n"),
    ];
    for (line, expected) in cases {
        let out = forwarded(&request(&[line, "Host: h"]), &ctx());
        assert!(out.starts_with(expected), "{line} became {out:?}");
    }
}

/// HTTP/1.0 requests go upstream as HTTP/1.1 (we speak 1.1 to the pool);
/// without Host they get the upstream's address, or the authority of an
/// absolute-form target; their Expect is dropped (a 1.0 client cannot read
/// a 100 Continue) and their `Connection: keep-alive` with it.
#[test]
fn http10_requests_are_upgraded_to_http11_upstream() {
    let req = request(&[
        "GET /x HTTP/1.0",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "Accept: */*",
    ]);
    assert_eq!(
        forwarded(&req, &ctx()),
        "GET /x HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nAccept: */*\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.1 ferroxy\r\n\r\n"
    );
    let req = request(&["GET http://origin.example:8080/y HTTP/1.0"]);
    assert!(
        forwarded(&req, &ctx()).starts_with("GET /y HTTP/1.1\r\nHost: origin.example:8080\r\n"),
        "the target's authority is the Host"
    );
    let req = request(&["GET /z HTTP/1.0", "Host: given"]);
    assert!(
        forwarded(&req, &ctx()).starts_with("GET /z HTTP/1.1\r\nHost: given\r\n"),
        "a sent Host is kept"
    );
}

/// `Expect: 100-continue` from an HTTP/1.1 client is passed on, so the
/// upstream can answer 100 (or refuse early).
#[test]
fn http11_expect_is_kept() {
    let req = request(&[
        "PUT /f HTTP/1.1",
        "Host: h",
        "Expect: 100-continue",
        "Content-Length: 3",
    ]);
    let out = forwarded(&req, &ctx());
    assert!(
        out.contains("\r\nExpect: 100-continue\r\n"),
        "Expect kept: {out:?}"
    );
    assert!(
        out.contains("\r\nContent-Length: 3\r\n"),
        "Content-Length kept: {out:?}"
    );
}

/// Hop-by-hop headers and every header `Connection` names stop at the proxy.
#[test]
fn hop_by_hop_headers_are_not_forwarded() {
    let req = request(&[
        "GET / HTTP/1.1",
        "Host: h",
        "Connection: keep-alive, X-Secret",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "Trailer: X-Sum",
        "Upgrade: websocket",
        "X-Secret: s3cr3t",
        "connection: x-other",
        "X-Other: 1",
        "X-Kept: yes",
    ]);
    assert_eq!(
        forwarded(&req, &ctx()),
        "GET / HTTP/1.1\r\nHost: h\r\nX-Kept: yes\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.1 ferroxy\r\n\r\n"
    );
}

/// `Connection` may not strip Host, the framing headers or the proxy's own:
/// `Connection: Content-Length` is a smuggling trick (the upstream would
/// see a body with no length), and a client must not erase X-Forwarded-For.
#[test]
fn connection_cannot_strip_protected_headers() {
    let req = request(&[
        "POST / HTTP/1.1",
        "Host: h",
        "Connection: Host, Content-Length, Transfer-Encoding, X-Forwarded-For, X-Forwarded-Proto, Via",
        "Content-Length: 2",
        "X-Forwarded-For: 10.0.0.1",
        "Via: 1.0 edge",
    ]);
    assert_eq!(
        forwarded(&req, &ctx()),
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\
         X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.0 edge, 1.1 ferroxy\r\n\r\n"
    );
    let req = request(&[
        "POST / HTTP/1.1",
        "Host: h",
        "Connection: transfer-encoding",
        "Transfer-Encoding: chunked",
    ]);
    assert!(
        forwarded(&req, &ctx()).contains("\r\nTransfer-Encoding: chunked\r\n"),
        "chunked must survive nomination"
    );
}

/// X-Forwarded-For over several lines is joined, then the client appended;
/// X-Forwarded-Proto from the client is replaced (it could lie); Via
/// entries are joined and ours goes last.
#[test]
fn forwarding_headers_are_joined_appended_and_overwritten() {
    let req = request(&[
        "GET / HTTP/1.1",
        "Host: h",
        "X-Forwarded-For: 203.0.113.1, 203.0.113.2",
        "X-Forwarded-Proto: https",
        "Via: 1.1 a",
        "X-Forwarded-For: 203.0.113.3",
        "X-Forwarded-For:",
        "Via: 1.1 b",
    ]);
    assert_eq!(
        forwarded(&req, &ctx()),
        "GET / HTTP/1.1\r\nHost: h\r\n\
         X-Forwarded-For: 203.0.113.1, 203.0.113.2, 203.0.113.3, 192.0.2.7\r\n\
         X-Forwarded-Proto: http\r\nVia: 1.1 a, 1.1 b, 1.1 ferroxy\r\n\r\n"
    );
}

/// The client's IPv4 address is written by hand, not by `Display`; it must
/// read the same for every octet width.
#[test]
fn ipv4_clients_are_written_as_display_writes_them() {
    for octets in [
        [0, 0, 0, 0],
        [255, 255, 255, 255],
        [10, 20, 3, 100],
        [1, 99, 100, 9],
    ] {
        let ip = IpAddr::V4(Ipv4Addr::from(octets));
        let ctx = ForwardContext {
            client_ip: ip,
            proto: "http",
            default_host: "x",
        };
        let out = forwarded(&request(&["GET / HTTP/1.1", "Host: h"]), &ctx);
        assert!(
            out.contains(&format!("\r\nX-Forwarded-For: {ip}\r\n")),
            "{ip}: {out:?}"
        );
    }
}

/// An IPv6 client appears in X-Forwarded-For in its plain text form.
#[test]
fn an_ipv6_client_is_forwarded_plainly() {
    let ctx = ForwardContext {
        client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
        proto: "http",
        default_host: "x",
    };
    let out = forwarded(&request(&["GET / HTTP/1.1", "Host: h"]), &ctx);
    assert!(out.contains("\r\nX-Forwarded-For: ::1\r\n"), "{out:?}");
}

/// An upgrade request keeps exactly one protocol and says `Connection:
/// upgrade` itself; an h2c upgrade is stripped like any hop-by-hop header.
#[test]
fn upgrades_are_forwarded_and_h2c_is_stripped() {
    let req = request(&[
        "GET /ws HTTP/1.1",
        "Host: h",
        "Connection: Upgrade",
        "Upgrade: h2c, websocket",
        "Sec-WebSocket-Key: k",
    ]);
    assert_eq!(
        forwarded(&req, &ctx()),
        "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n\
         X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.1 ferroxy\r\n\
         Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    );
    let req = request(&[
        "GET / HTTP/1.1",
        "Host: h",
        "Connection: Upgrade, HTTP2-Settings",
        "Upgrade: h2c",
        "HTTP2-Settings: AAA",
    ]);
    let out = forwarded(&req, &ctx());
    assert!(
        !out.to_ascii_lowercase().contains("upgrade"),
        "no trace of the h2c upgrade: {out:?}"
    );
    assert!(
        !out.contains("HTTP2-Settings"),
        "nominated HTTP2-Settings dropped: {out:?}"
    );
}

/// Every forwarded request head parses back to the same request: the
/// rewrite never produces something our own parser (or a strict upstream)
/// would refuse.
#[test]
fn forwarded_requests_parse_back() {
    let requests: &[&[&str]] = &[
        &["GET / HTTP/1.1", "Host: h"],
        &[
            "GET http://h:1/p?q HTTP/1.1",
            "Host: h:1",
            "Connection: close",
        ],
        &[
            "POST /u HTTP/1.0",
            "Content-Length: 3",
            "Connection: keep-alive",
        ],
        &[
            "PUT /c HTTP/1.1",
            "Host: h",
            "Transfer-Encoding: chunked",
            "Expect: 100-continue",
        ],
        &[
            "GET /ws HTTP/1.1",
            "Host: h",
            "Connection: upgrade",
            "Upgrade: websocket",
        ],
        &[
            "OPTIONS * HTTP/1.1",
            "Host: h",
            "X-Forwarded-For: 1.2.3.4",
            "Via: 1.0 x",
        ],
    ];
    for lines in requests {
        let original = request(lines);
        let out = forwarded(&original, &ctx());
        let again = parse_request(out.as_bytes(), &HeadLimits::default())
            .unwrap_or_else(|e| panic!("{lines:?} forwarded as {out:?} is refused: {e:?}"))
            .unwrap_or_else(|| panic!("{lines:?} forwarded as {out:?} is incomplete"));
        assert_eq!(again.method, original.method, "{lines:?}: method");
        assert_eq!(again.body, original.body, "{lines:?}: body framing");
        assert_eq!(again.upgrade, original.upgrade, "{lines:?}: upgrade");
        assert_eq!(
            again.expect_continue, original.expect_continue,
            "{lines:?}: expect"
        );
        assert_eq!(
            again.version,
            Version::Http11,
            "{lines:?}: always HTTP/1.1 upstream"
        );
        assert!(
            again.keep_alive,
            "{lines:?}: the upstream connection is always offered for reuse"
        );
    }
}

/// A plain response keeps its status, reason and fields, gains Via, and
/// says nothing about the connection when HTTP/1.1 keep-alive holds.
#[test]
fn a_plain_response_gains_via() {
    let resp = response(
        &[
            "HTTP/1.1 200 OK",
            "Content-Type: text/plain",
            "Content-Length: 5",
        ],
        false,
    );
    assert_eq!(
        relayed(&resp, KEEP_ALIVE_11),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nVia: 1.1 ferroxy\r\n\r\n"
    );
}

/// The proxy's own connection choice: `close` when it will close,
/// `keep-alive` for an HTTP/1.0 client it keeps, nothing for 1.1 keep-alive.
/// The upstream's `Connection` never leaks through.
#[test]
fn the_connection_header_is_the_proxys_choice() {
    let resp = response(
        &[
            "HTTP/1.0 200 OK",
            "Connection: keep-alive",
            "Keep-Alive: timeout=5",
            "Content-Length: 0",
        ],
        false,
    );
    let cases = [
        (
            ClientSide {
                version: Version::Http11,
                keep_alive: true,
                dechunk: false,
            },
            "",
        ),
        (
            ClientSide {
                version: Version::Http11,
                keep_alive: false,
                dechunk: false,
            },
            "Connection: close\r\n",
        ),
        (
            ClientSide {
                version: Version::Http10,
                keep_alive: true,
                dechunk: false,
            },
            "Connection: keep-alive\r\n",
        ),
        (
            ClientSide {
                version: Version::Http10,
                keep_alive: false,
                dechunk: false,
            },
            "Connection: close\r\n",
        ),
    ];
    for (client, connection) in cases {
        assert_eq!(
            relayed(&resp, client),
            format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 ferroxy\r\n{connection}\r\n"),
            "{client:?}"
        );
    }
}

/// Hop-by-hop and nominated headers stop at the proxy on the way back too,
/// but a nominated Content-Length or Transfer-Encoding does not.
#[test]
fn response_hop_by_hop_headers_are_not_relayed() {
    let resp = response(
        &[
            "HTTP/1.1 200 OK",
            "Connection: X-Internal, Content-Length",
            "Keep-Alive: timeout=5",
            "Trailer: X-Sum",
            "X-Internal: debug",
            "Content-Length: 2",
            "Cache-Control: no-store",
        ],
        false,
    );
    assert_eq!(
        relayed(&resp, KEEP_ALIVE_11),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\nVia: 1.1 ferroxy\r\n\r\n"
    );
}

/// For an HTTP/1.0 client the proxy de-chunks: Transfer-Encoding goes, the
/// body will be close-delimited, so the connection closes.
#[test]
fn dechunking_for_http10_drops_transfer_encoding() {
    let resp = response(
        &[
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked",
            "Via: 1.1 upstream-lb",
        ],
        false,
    );
    let client = ClientSide {
        version: Version::Http10,
        keep_alive: false,
        dechunk: true,
    };
    assert_eq!(
        relayed(&resp, client),
        "HTTP/1.1 200 OK\r\nVia: 1.1 upstream-lb, 1.1 ferroxy\r\nConnection: close\r\n\r\n"
    );
    let kept = relayed(&resp, KEEP_ALIVE_11);
    assert!(
        kept.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "chunked kept for a 1.1 client: {kept:?}"
    );
}

/// A 101 keeps the upstream's Upgrade and says `Connection: upgrade`,
/// whatever the keep-alive choice (the connection becomes a tunnel).
#[test]
fn switching_protocols_keeps_upgrade() {
    let resp = response(
        &[
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: abc",
        ],
        false,
    );
    let client = ClientSide {
        version: Version::Http11,
        keep_alive: false,
        dechunk: false,
    };
    assert_eq!(
        relayed(&resp, client),
        "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\nVia: 1.1 ferroxy\r\n\
         Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    );
}

/// Other interim responses carry no Connection header: a `close` on a 100
/// Continue would tell the client to stop before the final answer.
#[test]
fn interim_responses_carry_no_connection_choice() {
    let resp = response(&["HTTP/1.1 100 Continue"], false);
    let client = ClientSide {
        version: Version::Http11,
        keep_alive: false,
        dechunk: false,
    };
    assert_eq!(
        relayed(&resp, client),
        "HTTP/1.1 100 Continue\r\nVia: 1.1 ferroxy\r\n\r\n"
    );
}

/// An upstream that sent no reason phrase gets ours, and the status line is
/// always HTTP/1.1 (the version the proxy speaks), even from a 1.0 upstream.
#[test]
fn an_empty_reason_is_filled_in_and_the_version_is_ours() {
    let resp = response(&["HTTP/1.0 404", "Content-Length: 0"], false);
    assert!(
        relayed(&resp, KEEP_ALIVE_11).starts_with("HTTP/1.1 404 Not Found\r\n"),
        "status line: {:?}",
        relayed(&resp, KEEP_ALIVE_11)
    );
    let resp = response(&["HTTP/1.1 299", "Content-Length: 0"], false);
    assert!(
        relayed(&resp, KEEP_ALIVE_11).starts_with("HTTP/1.1 299 Unknown\r\n"),
        "unknown status"
    );
    let resp = response(&["HTTP/1.1 200 Fine Thanks", "Content-Length: 0"], false);
    assert!(
        relayed(&resp, KEEP_ALIVE_11).starts_with("HTTP/1.1 200 Fine Thanks\r\n"),
        "the upstream's reason kept"
    );
}

/// Every relayed response head parses back with the same status and framing.
#[test]
fn relayed_responses_parse_back() {
    let responses: &[&[&str]] = &[
        &["HTTP/1.1 200 OK", "Content-Length: 5"],
        &[
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked",
            "Connection: close",
        ],
        &["HTTP/1.0 200 OK"],
        &["HTTP/1.1 304 Not Modified", "ETag: \"x\""],
    ];
    for lines in responses {
        let original = response(lines, false);
        let out = relayed(&original, KEEP_ALIVE_11);
        let again = parse_response(out.as_bytes(), false, &HeadLimits::default())
            .unwrap_or_else(|e| panic!("{lines:?} relayed as {out:?} is refused: {e:?}"))
            .unwrap_or_else(|| panic!("{lines:?} relayed as {out:?} is incomplete"));
        assert_eq!(again.status, original.status, "{lines:?}: status");
        assert_eq!(again.body, original.body, "{lines:?}: body framing");
    }
}
