//! Request heads: what `parse_request` accepts, what it refuses and with which
//! status, following the contract's "our decisions" table row by row.
//!
//! Most stories are tables: one line per input, so a new smuggling trick is
//! one more line.

use ferroxy::http::framing::BodyFraming;
use ferroxy::http::head::{HeadLimits, Version, has_token, list_elements, origin_form};
use ferroxy::http::request::{RequestError, RequestHead, parse_request};

/// A head from its lines: joined with CRLF, ended by the empty line.
fn head(lines: &[&str]) -> Vec<u8> {
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

fn parse(input: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse_request(input, &HeadLimits::default())
}

fn accepted(input: &[u8]) -> RequestHead {
    match parse(input) {
        Ok(Some(req)) => req,
        other => panic!(
            "expected {:?} to be accepted, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn refused(input: &[u8]) -> RequestError {
    match parse(input) {
        Err(e) => e,
        other => panic!(
            "expected {:?} to be refused, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

/// A plain GET gives back its method, target, version and fields exactly as
/// sent (names keep their case, values lose surrounding whitespace), and
/// `len` covers the whole head so the body would start right after it.
#[test]
fn a_simple_get_is_parsed_as_sent() {
    let input = head(&[
        "GET /a/b?c=d HTTP/1.1",
        "Host: example.com",
        "X-Mixed-Case:   spaced value \t",
    ]);
    let req = accepted(&input);
    assert_eq!(req.method, "GET", "method");
    assert_eq!(req.target, "/a/b?c=d", "target");
    assert_eq!(req.version, Version::Http11, "version");
    assert_eq!(
        req.len,
        input.len(),
        "len must cover the whole head, CRLFCRLF included"
    );
    assert_eq!(req.headers.len(), 2, "field count");
    let second = req.headers.get(1).expect("a second field");
    assert_eq!(second.name, b"X-Mixed-Case", "field name case must be kept");
    assert_eq!(
        second.value, b"spaced value",
        "value whitespace must be trimmed"
    );
    assert_eq!(
        req.header("x-mixed-case"),
        Some(&b"spaced value"[..]),
        "lookup is case-insensitive"
    );
    assert_eq!(
        req.body,
        BodyFraming::Empty,
        "no length and no chunked means no body"
    );
    assert!(req.keep_alive, "HTTP/1.1 keeps the connection by default");
    assert!(!req.expect_continue, "no Expect sent");
    assert_eq!(req.upgrade, None, "no upgrade asked for");
    assert!(!req.is_head(), "GET is not HEAD");
}

/// A head that arrives one byte per read is "incomplete" at every prefix,
/// never an error, and complete with the same `len` once the last byte is in.
#[test]
fn a_head_arriving_byte_by_byte_is_incomplete_until_its_last_byte() {
    let input = head(&[
        "POST /upload HTTP/1.1",
        "Host: example.com",
        "Content-Length: 5",
    ]);
    for end in 0..input.len() {
        assert_eq!(
            parse(&input[..end]).map(|r| r.is_some()),
            Ok(false),
            "prefix of {end} bytes must be incomplete, not an error or a head"
        );
    }
    let req = accepted(&input);
    assert_eq!(req.len, input.len(), "len after the last byte");
}

/// Bytes after the head (a body, or a pipelined request) are not part of
/// it: `len` stops at the empty line and the body framing says what follows.
#[test]
fn the_body_starts_at_len_and_pipelined_bytes_are_left_alone() {
    let mut input = head(&["POST /p HTTP/1.1", "Host: h", "Content-Length: 5"]);
    let head_len = input.len();
    input.extend_from_slice(b"helloGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    let req = accepted(&input);
    assert_eq!(
        req.len, head_len,
        "len must end at the first head's empty line"
    );
    assert_eq!(
        req.body,
        BodyFraming::Length(5),
        "framing from Content-Length"
    );
    assert_eq!(
        &input[req.len..req.len + 5],
        b"hello",
        "the body follows the head"
    );
}

/// Empty lines before the request line are skipped (RFC 9112 section 2.2:
/// some clients send a stray CRLF after a POST body) and counted in `len`.
#[test]
fn empty_lines_before_the_request_line_are_skipped() {
    let mut input = b"\r\n\r\n".to_vec();
    input.extend_from_slice(&head(&["GET / HTTP/1.1", "Host: h"]));
    let req = accepted(&input);
    assert_eq!(req.target, "/", "the request after the empty lines");
    assert_eq!(req.len, input.len(), "len includes the skipped empty lines");
}

/// Every malformed or ambiguous input in the contract's table is refused
/// with 400, whole, and never accepted at any prefix (a prefix is either
/// incomplete or already the same 400).
#[test]
fn malformed_and_ambiguous_requests_are_refused_with_400() {
    let cases: &[(&str, &[u8])] = &[
        // Line endings and field syntax.
        ("bare LF ending the request line", b"GET / HTTP/1.1\nHost: h\r\n\r\n"),
        ("bare LF ending a field", b"GET / HTTP/1.1\r\nHost: h\n\r\n"),
        ("bare LF as the final empty line", b"GET / HTTP/1.1\r\nHost: h\r\n\n"),
        ("all bare LF", b"GET / HTTP/1.1\nHost: h\n\n"),
        ("bare CR inside a value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"),
        ("obs-fold continuation line", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
        ("obs-fold with a tab", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        ("tab before colon", b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"),
        ("invalid byte in a field name", b"GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n\r\n"),
        ("empty field name", b"GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n"),
        ("field line without a colon", b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"),
        ("NUL in a field name", b"GET / HTTP/1.1\r\nHost: h\r\nX\0: a\r\n\r\n"),
        // Request line.
        ("HTTP/1.10", b"GET / HTTP/1.10\r\nHost: h\r\n\r\n"),
        ("HTTP/1 without a minor", b"GET / HTTP/1\r\nHost: h\r\n\r\n"),
        ("HTTP/x.y", b"GET / HTTP/x.y\r\nHost: h\r\n\r\n"),
        ("lower-case version", b"GET / http/1.1\r\nHost: h\r\n\r\n"),
        ("missing version", b"GET /\r\nHost: h\r\n\r\n"),
        ("two spaces in the request line", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("space inside the target", b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("relative target", b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("authority-form target on GET", b"GET h:80 HTTP/1.1\r\nHost: h:80\r\n\r\n"),
        ("asterisk target on GET", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("https absolute-form", b"GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        // Host.
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nX: 1\r\n\r\n"),
        ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        ("two Host fields on HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("empty Host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        ("Host with a path", b"GET / HTTP/1.1\r\nHost: h/evil\r\n\r\n"),
        ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n"),
        ("Host with a non-numeric port", b"GET / HTTP/1.1\r\nHost: h:http\r\n\r\n"),
        ("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
        ("absolute-form naming another host", b"GET http://other/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("absolute-form naming another port", b"GET http://h:81/ HTTP/1.1\r\nHost: h:80\r\n\r\n"),
        ("absolute-form with userinfo", b"GET http://u@h/ HTTP/1.1\r\nHost: u@h\r\n\r\n"),
        ("absolute-form with empty authority", b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("absolute-form with an empty label", b"GET http://a..b/ HTTP/1.1\r\nHost: a..b\r\n\r\n"),
        // TRACE.
        ("TRACE with a Content-Length body", b"TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"),
        ("TRACE with a chunked body", b"TRACE / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
        // Content-Length.
        ("duplicate identical Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
        ("differing Content-Lengths", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        ("Content-Length list", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"),
        ("Content-Length with a plus sign", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"),
        ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
        ("Content-Length with an inner space", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 0\r\n\r\n"),
        ("empty Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"),
        ("hex Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n"),
        ("Content-Length over u64", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n"),
        // Transfer-Encoding.
        ("both Content-Length and chunked", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("both, Transfer-Encoding first", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
        ("both, with an unknown coding", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("Transfer-Encoding repeated", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("chunked followed by junk", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked x\r\n\r\n"),
        ("xchunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"),
        ("chunked, chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        ("chunked not last", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ("chunked with a parameter", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"),
        ("chunked with a trailing comma", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n"),
        ("empty Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"),
        ("unknown coding", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: brotli-ish\r\n\r\n"),
        ("empty element in a list", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n"),
        ("vertical tab around chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0bchunked\r\n\r\n"),
        // Upgrade.
        ("Upgrade protocol that is not a token", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: web socket\r\n\r\n"),
    ];
    for (story, input) in cases {
        match parse(input) {
            Err(e @ RequestError::Malformed(_)) => {
                assert_eq!(e.status(), 400, "{story}: Malformed must be 400");
                assert!(!e.describe().is_empty(), "{story}: the log needs a reason");
            }
            other => panic!("{story}: expected 400 Malformed, got {other:?}"),
        }
        for end in 0..input.len() {
            match parse(&input[..end]) {
                Ok(None) | Err(RequestError::Malformed(_)) => {}
                other => panic!("{story}: prefix of {end} bytes gave {other:?}"),
            }
        }
    }
}

/// A bare LF is refused as soon as it arrives, even before the head is
/// complete: nothing the client adds can make that head valid.
#[test]
fn a_bare_lf_is_refused_before_the_head_is_complete() {
    let partial = b"GET / HTTP/1.1\r\nHost: h\nX-More: ";
    assert!(
        matches!(parse(partial), Err(RequestError::Malformed(_))),
        "a bare LF in an incomplete head must already be 400"
    );
}

/// Transfer codings we can name but do not implement get 501 (the request
/// was understood, we just cannot do it), whereas garbage gets 400.
#[test]
fn known_but_unsupported_transfer_codings_are_501() {
    for coding in [
        "gzip",
        "GZIP",
        "deflate",
        "compress",
        "x-gzip",
        "x-compress",
        "identity",
        "gzip, chunked",
        "deflate ,gzip,chunked",
        "x-gzip,chunked",
    ] {
        let input = head(&[
            "POST / HTTP/1.1",
            "Host: h",
            &format!("Transfer-Encoding: {coding}"),
        ]);
        let e = refused(&input);
        assert_eq!(
            e,
            RequestError::NotImplemented,
            "Transfer-Encoding: {coding}"
        );
        assert_eq!(e.status(), 501, "NotImplemented is 501");
    }
}

/// Exactly `chunked`, in any case and with surrounding whitespace, frames
/// the body as chunked.
#[test]
fn transfer_encoding_chunked_in_any_case_is_chunked() {
    for value in [
        "chunked",
        "Chunked",
        "CHUNKED",
        " chunked",
        "chunked\t",
        "\t chunked  ",
    ] {
        let input = head(&[
            "POST / HTTP/1.1",
            "Host: h",
            &format!("Transfer-Encoding:{value}"),
        ]);
        assert_eq!(
            accepted(&input).body,
            BodyFraming::Chunked,
            "Transfer-Encoding:{value:?}"
        );
    }
}

/// Content-Length is 1*DIGIT: leading zeros are still digits, 0 is
/// `Length(0)` (the framing says what was sent), and u64::MAX fits.
#[test]
fn valid_content_lengths_frame_the_body_by_length() {
    let cases: &[(&str, BodyFraming)] = &[
        ("0", BodyFraming::Length(0)),
        ("5", BodyFraming::Length(5)),
        ("007", BodyFraming::Length(7)),
        ("18446744073709551615", BodyFraming::Length(u64::MAX)),
    ];
    for (value, expected) in cases {
        let input = head(&[
            "POST / HTTP/1.1",
            "Host: h",
            &format!("Content-Length: {value}"),
        ]);
        assert_eq!(accepted(&input).body, *expected, "Content-Length: {value}");
    }
}

/// CONNECT asks for a tunnel to anywhere: ferroxy is not a forward proxy,
/// so 405, whatever the target looks like.
#[test]
fn connect_is_405() {
    for input in [
        head(&["CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"]),
        head(&["CONNECT / HTTP/1.1", "Host: h"]),
    ] {
        let e = refused(&input);
        assert_eq!(
            e,
            RequestError::MethodNotAllowed("CONNECT is not supported"),
            "{:?}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(e.status(), 405, "MethodNotAllowed is 405");
    }
}

/// Methods are case-sensitive: `connect` is some other (unknown) method,
/// forwarded like any extension method when its target is valid.
#[test]
fn methods_are_case_sensitive_and_unknown_ones_pass() {
    let req = accepted(&head(&["connect / HTTP/1.1", "Host: h"]));
    assert_eq!(req.method, "connect", "method kept as sent");
    let req = accepted(&head(&["PURGE /cache HTTP/1.1", "Host: h"]));
    assert_eq!(req.method, "PURGE", "extension method kept");
}

/// HTTP/1.0 may omit Host (it predates it); HTTP/1.1 may not.
#[test]
fn http10_may_omit_host() {
    let req = accepted(&head(&["GET / HTTP/1.0"]));
    assert_eq!(req.version, Version::Http10, "version");
    assert_eq!(req.header("Host"), None, "no Host invented by the parser");
}

/// Absolute-form targets are accepted when they name the same authority as
/// Host (ASCII case-insensitively), and `origin_form` gives the path the
/// upstream will see.
#[test]
fn absolute_form_targets_must_agree_with_host() {
    let cases: &[(&str, &str, &str)] = &[
        ("http://example.com/a?b", "example.com", "/a?b"),
        ("HTTP://Example.COM/a", "example.com", "/a"),
        ("http://example.com:8080/", "EXAMPLE.com:8080", "/"),
        ("http://example.com", "example.com", "/"),
        ("http://example.com?q=1", "example.com", "/?q=1"),
        ("http://[::1]:8080/x", "[::1]:8080", "/x"),
        ("http://127.0.0.1/x", "127.0.0.1", "/x"),
    ];
    for (target, host, path) in cases {
        let req = accepted(&head(&[
            &format!("GET {target} HTTP/1.1"),
            &format!("Host: {host}"),
        ]));
        assert_eq!(req.target, *target, "target kept as sent");
        assert_eq!(origin_form(&req.target), *path, "origin form of {target}");
    }
}

/// `origin_form` leaves origin-form and `*` alone.
#[test]
fn origin_form_leaves_other_forms_alone() {
    for target in ["/", "/a?b", "*", "/http://x"] {
        assert_eq!(origin_form(target), target, "origin_form({target:?})");
    }
}

/// `*` is the target of a server-wide OPTIONS, and only of that.
#[test]
fn asterisk_is_only_for_options() {
    let req = accepted(&head(&["OPTIONS * HTTP/1.1", "Host: h"]));
    assert_eq!(req.target, "*", "target");
    assert!(
        matches!(
            refused(&head(&["POST * HTTP/1.1", "Host: h"])),
            RequestError::Malformed(_)
        ),
        "POST * must be 400"
    );
}

/// `Expect: 100-continue` on HTTP/1.1 sets `expect_continue`; on HTTP/1.0
/// it is ignored (a 1.0 client cannot read a 100); any other expectation is
/// 417 whatever the version.
#[test]
fn expect_is_100_continue_or_417() {
    let cases: &[(&str, &str, Result<bool, RequestError>)] = &[
        ("HTTP/1.1", "100-continue", Ok(true)),
        ("HTTP/1.1", "100-Continue", Ok(true)),
        ("HTTP/1.0", "100-continue", Ok(false)),
        ("HTTP/1.1", "200-ok", Err(RequestError::ExpectationFailed)),
        (
            "HTTP/1.1",
            "100-continue, foo",
            Err(RequestError::ExpectationFailed),
        ),
        ("HTTP/1.1", "", Err(RequestError::ExpectationFailed)),
        ("HTTP/1.0", "foo", Err(RequestError::ExpectationFailed)),
    ];
    for (version, value, expected) in cases {
        let input = head(&[
            &format!("POST / {version}"),
            "Host: h",
            "Content-Length: 1",
            &format!("Expect: {value}"),
        ]);
        let got = parse(&input).map(|r| r.map(|r| r.expect_continue));
        match expected {
            Ok(flag) => assert_eq!(got, Ok(Some(*flag)), "{version} Expect: {value:?}"),
            Err(e) => {
                assert_eq!(got, Err(e.clone()), "{version} Expect: {value:?}");
                assert_eq!(e.status(), 417, "ExpectationFailed is 417");
            }
        }
    }
}

/// Keep-alive: HTTP/1.1 unless `close` is listed; HTTP/1.0 only with
/// `keep-alive`. `Connection` is a token list, maybe over several lines.
#[test]
fn keep_alive_follows_version_and_connection_tokens() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("HTTP/1.1", &[], true),
        ("HTTP/1.1", &["Connection: close"], false),
        ("HTTP/1.1", &["Connection: Close"], false),
        ("HTTP/1.1", &["Connection: keep-alive, close"], false),
        (
            "HTTP/1.1",
            &["Connection: x-foo", "Connection: close"],
            false,
        ),
        ("HTTP/1.1", &["Connection: closed"], true),
        ("HTTP/1.1", &["Connection: keep-alive"], true),
        ("HTTP/1.0", &[], false),
        ("HTTP/1.0", &["Connection: keep-alive"], true),
        ("HTTP/1.0", &["Connection: Keep-Alive"], true),
        ("HTTP/1.0", &["Connection: x-foo,keep-alive"], true),
        (
            "HTTP/1.0",
            &["Connection: x-foo", "Connection: keep-alive"],
            true,
        ),
        ("HTTP/1.0", &["Connection: keep-alive, close"], false),
    ];
    for (version, connection, expected) in cases {
        let mut lines = vec![format!("GET / {version}"), "Host: h".to_owned()];
        lines.extend(connection.iter().map(|l| l.to_string()));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(
            accepted(&head(&lines)).keep_alive,
            *expected,
            "{version} with {connection:?}"
        );
    }
}

/// An upgrade is offered only when `Upgrade` is present and `Connection`
/// names it, never for h2c (stripped: a cleartext HTTP/2 tunnel past our
/// rules), and never on HTTP/1.0. The protocol is kept as spelled.
#[test]
fn upgrade_needs_connection_upgrade_and_is_never_h2c() {
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        (
            "HTTP/1.1",
            &["Connection: Upgrade", "Upgrade: websocket"],
            Some("websocket"),
        ),
        (
            "HTTP/1.1",
            &["Connection: keep-alive, upgrade", "Upgrade: WebSocket"],
            Some("WebSocket"),
        ),
        ("HTTP/1.1", &["Upgrade: websocket"], None),
        ("HTTP/1.1", &["Connection: upgrade"], None),
        ("HTTP/1.1", &["Connection: upgrade", "Upgrade: h2c"], None),
        ("HTTP/1.1", &["Connection: upgrade", "Upgrade: H2C"], None),
        (
            "HTTP/1.1",
            &["Connection: upgrade", "Upgrade: h2c, websocket"],
            Some("websocket"),
        ),
        (
            "HTTP/1.1",
            &["Connection: upgrade", "Upgrade: h2c", "Upgrade: foo/2"],
            Some("foo/2"),
        ),
        (
            "HTTP/1.0",
            &["Connection: upgrade", "Upgrade: websocket"],
            None,
        ),
    ];
    for (version, fields, expected) in cases {
        let mut lines = vec![format!("GET /ws {version}"), "Host: h".to_owned()];
        lines.extend(fields.iter().map(|l| l.to_string()));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(
            accepted(&head(&lines)).upgrade.as_deref(),
            *expected,
            "{version} with {fields:?}"
        );
    }
}

/// An upgrade request may carry a body; it is framed like any other.
#[test]
fn an_upgrade_request_with_a_body_is_accepted() {
    let req = accepted(&head(&[
        "POST /ws HTTP/1.1",
        "Host: h",
        "Connection: upgrade",
        "Upgrade: websocket",
        "Content-Length: 3",
    ]));
    assert_eq!(req.upgrade.as_deref(), Some("websocket"), "upgrade kept");
    assert_eq!(req.body, BodyFraming::Length(3), "body framed by length");
    let req = accepted(&head(&[
        "POST /ws HTTP/1.1",
        "Host: h",
        "Connection: upgrade",
        "Upgrade: websocket",
        "Transfer-Encoding: chunked",
    ]));
    assert_eq!(req.body, BodyFraming::Chunked, "body framed as chunked");
}

/// The head limit: while the request line alone fills it, 414; once the
/// request line is done and the fields fill it, 431; a head that completes
/// exactly at the limit is fine; a head that completes only past it is 431
/// (414 if even its request line does not fit).
#[test]
fn heads_over_the_limit_are_414_or_431() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_fields: 100,
    };
    let long_target = format!("GET /{} HTTP/1.1", "a".repeat(100));
    let cases: Vec<(&str, Vec<u8>, Result<bool, RequestError>)> = vec![
        (
            "request line still coming at the limit",
            long_target.as_bytes()[..64].to_vec(),
            Err(RequestError::UriTooLong),
        ),
        (
            "request line never ends within the limit",
            head(&[&long_target, "Host: h"]),
            Err(RequestError::UriTooLong),
        ),
        (
            "fields still coming at the limit",
            {
                let mut v = b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: ".to_vec();
                v.resize(64, b'x');
                v
            },
            Err(RequestError::HeadTooLarge),
        ),
        (
            "complete head past the limit",
            head(&[
                "GET / HTTP/1.1",
                "Host: h",
                &format!("X: {}", "y".repeat(60)),
            ]),
            Err(RequestError::HeadTooLarge),
        ),
        (
            "one byte under the limit",
            {
                let mut v = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
                v.resize(63 - 4, b'z');
                v.extend_from_slice(b"\r\n\r\n");
                v
            },
            Ok(true),
        ),
        (
            "exactly at the limit",
            {
                let mut v = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
                v.resize(64 - 4, b'z');
                v.extend_from_slice(b"\r\n\r\n");
                v
            },
            Ok(true),
        ),
        (
            "incomplete, under the limit",
            b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec(),
            Ok(false),
        ),
    ];
    for (story, input, expected) in cases {
        let got = parse_request(&input, &limits).map(|r| r.is_some());
        assert_eq!(got, expected, "{story} ({} bytes)", input.len());
        if let Err(e) = got {
            assert_eq!(
                e.status(),
                if e == RequestError::UriTooLong {
                    414
                } else {
                    431
                },
                "{story}: status"
            );
        }
    }
}

/// A complete head within the limit is accepted even when more bytes (a
/// body) follow past the limit: only the head counts.
#[test]
fn bytes_after_the_head_do_not_count_toward_the_limit() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_fields: 100,
    };
    let mut input = head(&["POST / HTTP/1.1", "Host: h", "Content-Length: 100"]);
    let head_len = input.len();
    input.extend_from_slice(&[b'b'; 100]);
    let req = parse_request(&input, &limits)
        .expect("valid")
        .expect("complete");
    assert_eq!(req.len, head_len, "head length");
}

/// Exactly `max_fields` fields are fine; one more is 431, whether or not
/// the head has ended yet.
#[test]
fn more_fields_than_the_limit_is_431() {
    let limits = HeadLimits {
        max_head_bytes: 16384,
        max_fields: 100,
    };
    let mut lines = vec!["GET / HTTP/1.1".to_owned(), "Host: h".to_owned()];
    lines.extend((1..100).map(|i| format!("X-{i}: {i}")));
    let at_limit: Vec<&str> = lines.iter().map(String::as_str).collect();
    let req = parse_request(&head(&at_limit), &limits)
        .expect("100 fields are allowed")
        .expect("complete");
    assert_eq!(req.headers.len(), 100, "all 100 fields kept");

    lines.push("X-One-Too-Many: 1".to_owned());
    let over: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = head(&over);
    assert_eq!(
        parse_request(&input, &limits).map(|r| r.is_some()),
        Err(RequestError::HeadTooLarge),
        "101 fields"
    );
    let unfinished = &input[..input.len() - 2];
    assert_eq!(
        parse_request(unfinished, &limits).map(|r| r.is_some()),
        Err(RequestError::HeadTooLarge),
        "101 fields, head not yet ended"
    );
}

/// `max_fields` above the parser's stack slots still works (the slots move
/// to the heap), and a small `max_fields` is enforced exactly.
#[test]
fn max_fields_is_honoured_above_and_below_the_default() {
    let mut lines = vec!["GET / HTTP/1.1".to_owned(), "Host: h".to_owned()];
    lines.extend((1..150).map(|i| format!("X-{i}: {i}")));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = head(&lines);
    let big = HeadLimits {
        max_head_bytes: 16384,
        max_fields: 150,
    };
    assert_eq!(
        parse_request(&input, &big).map(|r| r.map(|r| r.headers.len())),
        Ok(Some(150)),
        "150 fields under a 150 limit"
    );
    let small = HeadLimits {
        max_head_bytes: 16384,
        max_fields: 1,
    };
    assert_eq!(
        parse_request(&head(&["GET / HTTP/1.1", "Host: h"]), &small).map(|r| r.is_some()),
        Ok(true),
        "1 field under a 1 limit"
    );
    assert_eq!(
        parse_request(&head(&["GET / HTTP/1.1", "Host: h", "X: 1"]), &small).map(|r| r.is_some()),
        Err(RequestError::HeadTooLarge),
        "2 fields under a 1 limit"
    );
}

/// Idempotent methods are the ones RFC 9110 names; a retry may replay them.
#[test]
fn idempotent_methods_are_the_rfc_list() {
    let cases = [
        ("GET", true),
        ("HEAD", true),
        ("PUT", true),
        ("DELETE", true),
        ("OPTIONS", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
        ("PURGE", false),
    ];
    for (method, expected) in cases {
        let target = if method == "OPTIONS" { "*" } else { "/" };
        let req = accepted(&head(&[&format!("{method} {target} HTTP/1.1"), "Host: h"]));
        assert_eq!(req.is_idempotent(), expected, "{method}");
    }
    assert!(
        accepted(&head(&["HEAD / HTTP/1.1", "Host: h"])).is_head(),
        "HEAD is HEAD"
    );
}

/// Each error maps to one status code and has a log description.
#[test]
fn every_request_error_has_a_status_and_a_description() {
    let cases = [
        (RequestError::Malformed("duplicate Content-Length"), 400),
        (
            RequestError::MethodNotAllowed("CONNECT is not supported"),
            405,
        ),
        (RequestError::UriTooLong, 414),
        (RequestError::ExpectationFailed, 417),
        (RequestError::HeadTooLarge, 431),
        (RequestError::NotImplemented, 501),
    ];
    for (e, status) in cases {
        assert_eq!(e.status(), status, "{e:?}");
        assert!(!e.describe().is_empty(), "{e:?} needs a description");
    }
    assert_eq!(
        RequestError::Malformed("duplicate Content-Length").describe(),
        "duplicate Content-Length",
        "Malformed describes itself"
    );
}

/// The list helpers split on commas, trim whitespace, and match tokens
/// case-insensitively across several lines of the same field.
#[test]
fn list_helpers_split_and_match_tokens() {
    let elements: Vec<&[u8]> = list_elements(b" a ,b,, c\t").collect();
    assert_eq!(
        elements,
        vec![&b"a"[..], b"b", b"", b"c"],
        "elements, empty ones kept"
    );
    let req = accepted(&head(&[
        "GET / HTTP/1.1",
        "Host: h",
        "Connection: x-a",
        "connection: Close",
    ]));
    assert!(
        has_token(&req.headers, "Connection", "close"),
        "close on the second line"
    );
    assert!(
        has_token(&req.headers, "CONNECTION", "X-A"),
        "x-a on the first line"
    );
    assert!(
        !has_token(&req.headers, "Connection", "clos"),
        "no prefix match"
    );
}

/// The bare-LF check reads eight bytes at a time, so a CRLF may straddle
/// two words (CR last in one, LF first in the next). Shift a field so its
/// line end falls at every alignment: a CRLF is always fine, a lone LF
/// always refused, wherever it lands.
#[test]
fn bare_lf_found_at_every_alignment() {
    for pad in 0..24 {
        let filler = "x".repeat(pad);
        let good = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {filler}\r\nAccept: */*\r\n\r\n");
        let parsed = parse_request(good.as_bytes(), &HeadLimits::default());
        assert!(
            matches!(parsed, Ok(Some(_))),
            "CRLF after {pad} pad bytes must parse, got {parsed:?}"
        );
        let bare = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {filler}\nAccept: */*\r\n\r\n");
        let refused = parse_request(bare.as_bytes(), &HeadLimits::default());
        assert!(
            matches!(refused, Err(RequestError::Malformed(_))),
            "a bare LF after {pad} pad bytes must be refused, got {refused:?}"
        );
    }
}

/// `Host` is checked against RFC 3986's `uri-host [":" port]` to the letter:
/// a name two components split differently is two destinations.
#[test]
fn host_must_be_a_valid_uri_host_and_port() {
    let valid = [
        "example.com",
        "example.com.",
        "EXAMPLE.com:8080",
        "127.0.0.1",
        "127.0.0.1:0",
        "h:65535",
        "h:080",
        "[::1]",
        "[::1]:8080",
        "[2001:db8::ffff:1.2.3.4]",
        "[v1.fe80::a+en1]",
        "xn--bcher-kva.example",
        "a%20b",
        "a-b_c~d!$&'()*+,;=",
    ];
    for host in valid {
        let req = accepted(&head(&["GET / HTTP/1.1", &format!("Host: {host}")]));
        assert_eq!(
            req.header("Host"),
            Some(host.as_bytes()),
            "{host} kept as sent"
        );
    }
    let invalid = [
        ".",
        "..",
        ".example.com",
        "a..b",
        "example.com..",
        "h:",
        "h:65536",
        "h:99999999999999999999",
        "h:-1",
        "h:8 0",
        "h:80:80",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[]",
        "[1.2.3.4]",
        "[::g]",
        "[fe80::1%25eth0]",
        "[v1]",
        "[v.x]",
        "user@h",
        "user:pass@h",
        "a%2",
        "a%zz",
        "h\"x",
        "h<x>",
        "h x",
        "h/evil",
        "h?q",
        "h#f",
        "h\\x",
        ":80",
    ];
    for host in invalid {
        let input = head(&["GET / HTTP/1.1", &format!("Host: {host}")]);
        match parse(&input) {
            Err(RequestError::Malformed(why)) => {
                assert!(why.contains("Host"), "{host:?}: refused, but why {why:?}")
            }
            other => panic!("Host {host:?}: expected 400, got {other:?}"),
        }
    }
}

/// RFC 9110 section 2.5: a later HTTP/1.x is read as HTTP/1.1, which it
/// must be compatible with; other majors are another protocol: 505.
#[test]
fn later_minor_versions_are_http11_and_other_majors_are_505() {
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        let req = accepted(&head(&[&format!("GET /p?q {version}"), "Host: h"]));
        assert_eq!(req.version, Version::Http11, "{version} read as 1.1");
        assert_eq!(req.target, "/p?q", "{version}: target kept");
        assert!(req.keep_alive, "{version}: 1.1 keep-alive default");
        let post = accepted(&head(&[
            &format!("POST / {version}"),
            "Host: h",
            "Transfer-Encoding: chunked",
        ]));
        assert_eq!(
            post.body,
            BodyFraming::Chunked,
            "{version}: 1.1 framing rules"
        );
    }
    for version in [
        "HTTP/2.0", "HTTP/2", "HTTP/3.0", "HTTP/3", "HTTP/0.9", "HTTP/9.9",
    ] {
        let input = head(&[&format!("GET / {version}"), "Host: h"]);
        let e = refused(&input);
        assert_eq!(e, RequestError::VersionNotSupported, "{version}");
        assert_eq!(e.status(), 505, "{version}");
        // A version split across reads is not refused before its line ends.
        let line_end = input.iter().position(|&b| b == b'\r').unwrap_or(0);
        for end in 0..line_end {
            assert!(
                matches!(
                    parse(&input[..end]),
                    Ok(None) | Err(RequestError::Malformed(_))
                ),
                "{version}: a prefix of {end} bytes"
            );
        }
    }
}

/// TRACE echoes the request, credentials added on the way included: 405,
/// as nginx does. With a body it is worse than unneeded: 400.
#[test]
fn trace_is_405_and_trace_with_a_body_is_400() {
    let plain = refused(&head(&["TRACE / HTTP/1.1", "Host: h"]));
    assert_eq!(plain.status(), 405, "{plain:?}");
    assert!(plain.describe().contains("TRACE"), "{plain:?}");
    let empty_length = refused(&head(&["TRACE / HTTP/1.1", "Host: h", "Content-Length: 0"]));
    assert_eq!(
        empty_length.status(),
        405,
        "Content-Length: 0 carries no body"
    );
    let with_body = refused(&head(&["TRACE / HTTP/1.1", "Host: h", "Content-Length: 3"]));
    assert_eq!(with_body, RequestError::Malformed("TRACE with a body"));
}

/// Every protocol offered, over one list or several lines, is kept in order
/// (h2c left out), so the upstream can choose among them.
#[test]
fn every_offered_upgrade_is_kept_as_one_list() {
    let req = accepted(&head(&[
        "GET /ws HTTP/1.1",
        "Host: h",
        "Connection: upgrade",
        "Upgrade: foo/2, h2c",
        "Upgrade: websocket",
    ]));
    assert_eq!(req.upgrade.as_deref(), Some("foo/2, websocket"));
    let only_h2c = accepted(&head(&[
        "GET / HTTP/1.1",
        "Host: h",
        "Connection: upgrade",
        "Upgrade: h2c",
    ]));
    assert_eq!(only_h2c.upgrade, None, "nothing left to offer");
}
