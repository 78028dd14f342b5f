//! The small, complete responses ferroxy itself answers with (400, 408, 502,
//! 504, ...). Each has `Content-Length` and `Connection: close`, so any client
//! can tell where it ends.
//!
//! Where it sits in the loop: when a request is refused (a
//! [`crate::http::request::RequestError`], a timeout, no upstream) the reactor
//! appends one of these to the client's outgoing buffer, flushes it, and
//! closes. Why always close: after an error we may not know where the
//! client's next request starts (a refused body is still on the wire), and
//! guessing is how a leftover body gets parsed as a request.
//!
//! Lesson: `lessons/07-parsing-heads` (the 400/431/414 answers).

/// Reason phrase for a status code ferroxy produces (or "Unknown").
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Append a complete error response to `out`: status line, `Content-Type:
/// text/plain`, `Content-Length`, `Connection: close`, `Via: 1.1 ferroxy`
/// and a one-line body naming the status (e.g. "502 Bad Gateway\n").
/// `extra_headers` are already-formatted lines without CRLF
/// (e.g. `Retry-After: 1`).
pub fn write_error_response(status: u16, extra_headers: &[&str], out: &mut Vec<u8>) {
    let reason = reason(status);
    let mut code = [0u8; 5];
    let code = write_decimal(u64::from(status), &mut code);
    // Body "{code} {reason}\n": its length is known without formatting it.
    let body_len = code.len() + 1 + reason.len() + 1;
    let mut length = [0u8; 20];
    let length = write_decimal(body_len as u64, &mut length);

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    out.extend_from_slice(length);
    out.extend_from_slice(b"\r\nConnection: close\r\nVia: 1.1 ferroxy\r\n");
    for line in extra_headers {
        // A CR or LF here would let the caller's text start a new header or
        // end the head early: a programming error, not peer input.
        debug_assert!(
            !line.contains(['\r', '\n']),
            "extra header line contains CR/LF: {line:?}"
        );
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// Format `n` in decimal into the end of `buf` and return the digits, without
/// the allocation and formatting machinery of `write!`. `buf` must hold the
/// digits: 20 bytes for any u64.
pub(crate) fn write_decimal(mut n: u64, buf: &mut [u8]) -> &[u8] {
    let mut start = buf.len();
    loop {
        if start == 0 {
            break;
        }
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

/// The size of [`write_error_response`]'s answer, for the access log.
pub fn error_response_len(status: u16, extra_headers: &[&str]) -> usize {
    let mut answer = Vec::new();
    write_error_response(status, extra_headers, &mut answer);
    answer.len()
}
