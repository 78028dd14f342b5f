//! The responses ferroxy writes itself: complete, self-delimiting, closing.

use ferroxy::http::errors::{reason, write_error_response};
use ferroxy::http::framing::BodyFraming;
use ferroxy::http::head::HeadLimits;
use ferroxy::http::response::parse_response;

/// Every status the proxy produces or relays has its RFC 9110 reason
/// phrase; anything else is "Unknown" rather than a panic or an empty line.
#[test]
fn reason_phrases_cover_every_status_we_use() {
    let cases = [
        (100, "Continue"),
        (101, "Switching Protocols"),
        (200, "OK"),
        (204, "No Content"),
        (304, "Not Modified"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (408, "Request Timeout"),
        (413, "Content Too Large"),
        (414, "URI Too Long"),
        (417, "Expectation Failed"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
        (505, "HTTP Version Not Supported"),
        (299, "Unknown"),
        (0, "Unknown"),
        (u16::MAX, "Unknown"),
    ];
    for (status, expected) in cases {
        assert_eq!(reason(status), expected, "reason({status})");
    }
}

/// A 502 is exactly this: status line, the four fixed fields, and a body
/// naming the status, with a Content-Length that matches it.
#[test]
fn an_error_response_is_complete_and_closes() {
    let mut out = Vec::new();
    write_error_response(502, &[], &mut out);
    assert_eq!(
        String::from_utf8(out).expect("ASCII"),
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 16\r\nConnection: close\r\nVia: 1.1 ferroxy\r\n\r\n502 Bad Gateway\n"
    );
}

/// Extra lines (Retry-After on a 429) come after the fixed fields, each
/// ended by CRLF, and the output is appended to what is already there.
#[test]
fn extra_headers_are_added_and_output_is_appended() {
    let mut out = b"previous response bytes".to_vec();
    write_error_response(429, &["Retry-After: 1", "X-Limit: 10"], &mut out);
    let text = String::from_utf8(out).expect("ASCII");
    assert!(
        text.starts_with("previous response bytesHTTP/1.1 429 Too Many Requests\r\n"),
        "appended: {text:?}"
    );
    assert!(
        text.ends_with(
            "Via: 1.1 ferroxy\r\nRetry-After: 1\r\nX-Limit: 10\r\n\r\n429 Too Many Requests\n"
        ),
        "extra headers then body: {text:?}"
    );
}

/// Every error response parses as a valid response whose Content-Length
/// is exactly the body that follows, and which does not offer keep-alive:
/// any client can tell where it ends and that the connection is over.
#[test]
fn every_error_response_is_self_delimiting() {
    for status in [
        400, 405, 408, 413, 414, 417, 429, 431, 500, 501, 502, 503, 504, 505, 599,
    ] {
        let mut out = Vec::new();
        write_error_response(status, &["Retry-After: 1"], &mut out);
        let resp = parse_response(&out, false, &HeadLimits::default())
            .unwrap_or_else(|e| panic!("{status}: our own error response is refused: {e:?}"))
            .unwrap_or_else(|| panic!("{status}: our own error response is incomplete"));
        assert_eq!(resp.status, status, "status");
        let body = &out[resp.len..];
        assert_eq!(
            resp.body,
            BodyFraming::Length(body.len() as u64),
            "{status}: Content-Length matches the body"
        );
        assert_eq!(
            body,
            format!("{status} {}\n", reason(status)).as_bytes(),
            "{status}: body names the status"
        );
        assert!(!resp.keep_alive, "{status}: Connection: close");
    }
}
