//! The small, complete responses ferroxy itself answers with (400, 408, 502,
//! 504, ...). Each has `Content-Length` and `Connection: close`, so any client
//! can tell where it ends.

/// Reason phrase for a status code ferroxy produces (or "Unknown").
pub fn reason(status: u16) -> &'static str {
    let _ = status;
    todo!()
}

/// Append a complete error response to `out`: status line, `Content-Type:
/// text/plain`, `Content-Length`, `Connection: close`, `Via: 1.1 ferroxy`
/// and a one-line body naming the status (e.g. "502 Bad Gateway\n").
/// `extra_headers` are already-formatted lines without CRLF
/// (e.g. `Retry-After: 1`).
pub fn write_error_response(status: u16, extra_headers: &[&str], out: &mut Vec<u8>) {
    let _ = (status, extra_headers, out);
    todo!()
}
