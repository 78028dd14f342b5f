//! Response heads from upstreams: how `parse_response` frames the body,
//! decides keep-alive, and which heads it refuses (502 to the client).

use ferroxy::http::framing::BodyFraming;
use ferroxy::http::head::{Fields, HeadLimits, Version};
use ferroxy::http::response::{
    ResponseError, ResponseHead, parse_response, switched_protocol_was_offered,
};

/// A head from its lines: joined with CRLF, ended by the empty line.
fn head(lines: &[&str]) -> Vec<u8> {
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

fn accepted(input: &[u8], request_was_head: bool) -> ResponseHead {
    match parse_response(input, request_was_head, &HeadLimits::default()) {
        Ok(Some(resp)) => resp,
        other => panic!(
            "expected {:?} to be accepted, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

/// A plain 200 gives back its version, status, reason and fields, with
/// `len` covering the head so the body starts right after it.
#[test]
fn a_simple_response_is_parsed_as_sent() {
    let input = head(&["HTTP/1.1 200 OK", "Content-Length: 5", "X-Case: v"]);
    let resp = accepted(&input, false);
    assert_eq!(resp.version, Version::Http11, "version");
    assert_eq!(resp.status, 200, "status");
    assert_eq!(resp.reason, "OK", "reason");
    assert_eq!(resp.len, input.len(), "len covers the head");
    assert_eq!(
        resp.headers.get(1).map(|h| h.name),
        Some(&b"X-Case"[..]),
        "field name case kept"
    );
    assert_eq!(
        resp.header("x-case"),
        Some(&b"v"[..]),
        "case-insensitive lookup"
    );
    assert_eq!(resp.body, BodyFraming::Length(5), "framed by length");
    assert!(resp.keep_alive, "1.1 with a length can be reused");
    assert!(!resp.is_informational(), "200 is final");
}

/// A status line without a reason phrase is valid (RFC 9112 section 4).
#[test]
fn the_reason_phrase_may_be_missing() {
    for input in [&b"HTTP/1.1 204\r\n\r\n"[..], b"HTTP/1.1 204 \r\n\r\n"] {
        let resp = accepted(input, false);
        assert_eq!(
            resp.status,
            204,
            "status of {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            resp.reason,
            "",
            "empty reason of {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// A response head arriving byte by byte is incomplete at every prefix.
#[test]
fn a_head_arriving_byte_by_byte_is_incomplete_until_its_last_byte() {
    let input = head(&["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"]);
    for end in 0..input.len() {
        assert_eq!(
            parse_response(&input[..end], false, &HeadLimits::default()).map(|r| r.is_some()),
            Ok(false),
            "prefix of {end} bytes must be incomplete"
        );
    }
    assert_eq!(
        accepted(&input, false).len,
        input.len(),
        "complete at the end"
    );
}

/// How the body is delimited: HEAD, 1xx, 204 and 304 never have one;
/// otherwise chunked-last is chunked, other codings read until close, a
/// length is a length (identical repeats merged), and nothing at all means
/// until close.
#[test]
fn body_framing_follows_rfc_9112_section_6_3() {
    let cases: &[(&str, &[&str], bool, BodyFraming)] = &[
        (
            "HTTP/1.1 200 OK",
            &["Content-Length: 10"],
            false,
            BodyFraming::Length(10),
        ),
        (
            "HTTP/1.1 200 OK",
            &["Content-Length: 0"],
            false,
            BodyFraming::Length(0),
        ),
        (
            "HTTP/1.1 200 OK",
            &["Transfer-Encoding: chunked"],
            false,
            BodyFraming::Chunked,
        ),
        (
            "HTTP/1.1 200 OK",
            &["Transfer-Encoding: CHUNKED"],
            false,
            BodyFraming::Chunked,
        ),
        ("HTTP/1.1 200 OK", &[], false, BodyFraming::UntilClose),
        ("HTTP/1.0 200 OK", &[], false, BodyFraming::UntilClose),
        (
            "HTTP/1.1 204 No Content",
            &["Content-Length: 10"],
            false,
            BodyFraming::Empty,
        ),
        (
            "HTTP/1.1 304 Not Modified",
            &["Content-Length: 10"],
            false,
            BodyFraming::Empty,
        ),
        (
            "HTTP/1.1 304 Not Modified",
            &["Transfer-Encoding: chunked"],
            false,
            BodyFraming::Empty,
        ),
        ("HTTP/1.1 100 Continue", &[], false, BodyFraming::Empty),
        (
            "HTTP/1.1 103 Early Hints",
            &["Link: </a>"],
            false,
            BodyFraming::Empty,
        ),
        (
            "HTTP/1.1 101 Switching Protocols",
            &["Upgrade: websocket", "Connection: upgrade"],
            false,
            BodyFraming::Empty,
        ),
        (
            "HTTP/1.1 200 OK",
            &["Content-Length: 10"],
            true,
            BodyFraming::Empty,
        ),
        (
            "HTTP/1.1 200 OK",
            &["Transfer-Encoding: chunked"],
            true,
            BodyFraming::Empty,
        ),
        ("HTTP/1.1 200 OK", &[], true, BodyFraming::Empty),
        (
            "HTTP/1.1 404 Not Found",
            &["Content-Length: 3"],
            false,
            BodyFraming::Length(3),
        ),
        (
            "HTTP/1.1 599 Custom",
            &["Content-Length: 3"],
            false,
            BodyFraming::Length(3),
        ),
    ];
    for (status_line, fields, was_head, expected) in cases {
        let mut lines = vec![*status_line];
        lines.extend_from_slice(fields);
        let resp = accepted(&head(&lines), *was_head);
        assert_eq!(
            resp.body, *expected,
            "{status_line} {fields:?} (request was HEAD: {was_head})"
        );
    }
}

/// The upstream connection can be reused after this response only if the
/// version and `Connection` allow it and the body does not end by close.
#[test]
fn keep_alive_needs_the_right_version_tokens_and_a_delimited_body() {
    let cases: &[(&str, &[&str], bool)] = &[
        ("HTTP/1.1 200 OK", &["Content-Length: 1"], true),
        ("HTTP/1.1 200 OK", &["Transfer-Encoding: chunked"], true),
        ("HTTP/1.1 204 No Content", &[], true),
        (
            "HTTP/1.1 200 OK",
            &["Content-Length: 1", "Connection: close"],
            false,
        ),
        (
            "HTTP/1.1 200 OK",
            &["Content-Length: 1", "Connection: foo, Close"],
            false,
        ),
        ("HTTP/1.1 200 OK", &[], false),
        ("HTTP/1.0 200 OK", &["Content-Length: 1"], false),
        (
            "HTTP/1.0 200 OK",
            &["Content-Length: 1", "Connection: keep-alive"],
            true,
        ),
        ("HTTP/1.0 200 OK", &["Connection: keep-alive"], false),
    ];
    for (status_line, fields, expected) in cases {
        let mut lines = vec![*status_line];
        lines.extend_from_slice(fields);
        assert_eq!(
            accepted(&head(&lines), false).keep_alive,
            *expected,
            "{status_line} {fields:?}"
        );
    }
}

/// What the contract says is 502: both CL and TE, differing or invalid
/// lengths, no status line, a bad status; plus the same line-level
/// strictness as requests (bare LF, obs-fold, space before colon, NUL).
#[test]
fn malformed_upstream_heads_are_refused() {
    let cases: &[(&str, &[u8])] = &[
        (
            "both Content-Length and Transfer-Encoding",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "both, on a 304",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "differing Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        ),
        (
            "differing Content-Lengths in a list",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        ),
        (
            "non-numeric Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        ),
        (
            "negative Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "empty Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        ),
        (
            "Content-Length over u64",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        ),
        (
            "Transfer-Encoding in an HTTP/1.0 response",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        ("no status line", b"hello\r\n\r\n"),
        ("HTTP/2 status line", b"HTTP/2 200 OK\r\n\r\n"),
        ("HTTP/3.0 status line", b"HTTP/3.0 200 OK\r\n\r\n"),
        ("HTTP/0.9 status line", b"HTTP/0.9 200 OK\r\n\r\n"),
        ("HTTP/1.10", b"HTTP/1.10 200 OK\r\n\r\n"),
        // The response side is as strict as the request side.
        (
            "two identical Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
        ),
        (
            "a Content-Length list",
            b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
        ),
        (
            "differing Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
        ),
        (
            "Transfer-Encoding gzip",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ),
        (
            "gzip, chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ),
        (
            "chunked, gzip",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ),
        (
            "chunked twice in a list",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        ),
        (
            "two Transfer-Encoding lines",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "identity",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
        ),
        (
            "xchunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n",
        ),
        (
            "chunked with a parameter",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
        ),
        (
            "empty Transfer-Encoding",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n",
        ),
        (
            "framing checked on a 204 too",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "100 from an HTTP/1.0 upstream",
            b"HTTP/1.0 100 Continue\r\n\r\n",
        ),
        (
            "101 from an HTTP/1.0 upstream",
            b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            "103 from an HTTP/1.0 upstream",
            b"HTTP/1.0 103 Early Hints\r\n\r\n",
        ),
        ("status below 100", b"HTTP/1.1 099 Odd\r\n\r\n"),
        ("status 000", b"HTTP/1.1 000 Odd\r\n\r\n"),
        ("status above 599", b"HTTP/1.1 600 Odd\r\n\r\n"),
        ("four-digit status", b"HTTP/1.1 2000 OK\r\n\r\n"),
        ("two-digit status", b"HTTP/1.1 20 OK\r\n\r\n"),
        ("status glued to reason", b"HTTP/1.1 200OK\r\n\r\n"),
        (
            "bare LF after the status line",
            b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        ),
        (
            "bare LF as the empty line",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
        ),
        (
            "obs-fold",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "space before colon",
            b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
        ),
        (
            "NUL in a value",
            b"HTTP/1.1 200 OK\r\nX: a\0\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (story, input) in cases {
        match parse_response(input, false, &HeadLimits::default()) {
            Err(e @ ResponseError::Malformed(_)) => {
                assert!(!e.describe().is_empty(), "{story}: the log needs a reason")
            }
            other => panic!("{story}: expected Malformed, got {other:?}"),
        }
    }
}

/// An upstream head that does not fit, or has too many fields, is refused
/// as too large rather than buffered without bound.
#[test]
fn oversized_upstream_heads_are_refused() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_fields: 3,
    };
    let mut partial = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    partial.resize(64, b'x');
    assert_eq!(
        parse_response(&partial, false, &limits).map(|r| r.is_some()),
        Err(ResponseError::HeadTooLarge),
        "an incomplete head reaching the limit"
    );
    assert_eq!(
        parse_response(&partial[..63], false, &limits).map(|r| r.is_some()),
        Ok(false),
        "one byte under the limit is still just incomplete"
    );
    let many = head(&["HTTP/1.1 200 OK", "A: 1", "B: 2", "C: 3", "D: 4"]);
    assert_eq!(
        parse_response(&many, false, &limits).map(|r| r.is_some()),
        Err(ResponseError::HeadTooLarge),
        "four fields over a limit of three"
    );
    assert!(
        !ResponseError::HeadTooLarge.describe().is_empty(),
        "HeadTooLarge needs a description"
    );
}

/// Interim responses are recognised so the reactor can relay them and wait
/// for the final one on the same connection.
#[test]
fn interim_responses_are_informational() {
    for (status_line, expected) in [
        ("HTTP/1.1 100 Continue", true),
        ("HTTP/1.1 103 Early Hints", true),
        ("HTTP/1.1 199 X", true),
        ("HTTP/1.1 200 OK", false),
    ] {
        assert_eq!(
            accepted(&head(&[status_line]), false).is_informational(),
            expected,
            "{status_line}"
        );
    }
}

/// A 100 Continue followed at once by the final response: the first parse
/// stops at the end of the interim head, and the final head parses from there.
#[test]
fn an_interim_response_and_the_final_one_parse_in_sequence() {
    let mut input = head(&["HTTP/1.1 100 Continue"]);
    let interim_len = input.len();
    input.extend_from_slice(&head(&["HTTP/1.1 201 Created", "Content-Length: 2"]));
    input.extend_from_slice(b"ok");
    let interim = accepted(&input, false);
    assert_eq!(
        (interim.status, interim.len),
        (100, interim_len),
        "interim head first"
    );
    let final_head = accepted(&input[interim.len..], false);
    assert_eq!(final_head.status, 201, "then the final head");
    assert_eq!(
        final_head.body,
        BodyFraming::Length(2),
        "with its own framing"
    );
}

/// RFC 9110 section 2.5 holds for responses too: `HTTP/1.2` is read as 1.1.
#[test]
fn a_later_minor_version_response_is_read_as_http11() {
    let input = b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let resp = parse_response(input, false, &HeadLimits::default())
        .expect("accepted")
        .expect("complete");
    assert_eq!(resp.version, Version::Http11);
    assert_eq!(resp.body, BodyFraming::Length(2));
    assert_eq!(resp.len, input.len() - 2, "head length unchanged");
    assert!(resp.keep_alive, "1.1 rules");
}

/// A 101 may only switch to what the client offered: every protocol in the
/// response's `Upgrade`, by name and (where both give one) version.
#[test]
fn a_101_must_switch_to_an_offered_protocol() {
    let fields = |upgrade: &[&str]| -> Fields {
        upgrade.iter().map(|v| ("Upgrade", v.as_bytes())).collect()
    };
    let cases: &[(&str, &[&str], bool)] = &[
        ("websocket", &["websocket"], true),
        ("websocket", &["WebSocket"], true),
        ("foo/2, websocket", &["websocket"], true),
        ("foo/2, websocket", &["foo/2"], true),
        ("foo", &["foo/2"], true),
        ("foo/2", &["foo"], true),
        ("foo/2", &["foo/3"], false),
        ("websocket", &["h2c"], false),
        ("websocket", &["websocket, tls/1.0"], false),
        ("websocket", &["websocket", "other"], false),
        ("websocket", &[], false),
        ("websocket", &[""], false),
    ];
    for (offered, answered, expected) in cases {
        assert_eq!(
            switched_protocol_was_offered(offered, &fields(answered)),
            *expected,
            "offered {offered:?}, switched to {answered:?}"
        );
    }
}
