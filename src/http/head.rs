//! Request and response heads: parse with httparse, then validate strictly.
//!
//! `parse_request` answers one of three things for the bytes read so far:
//! `Ok(None)` ("incomplete: read more"), `Ok(Some(head))`, or `Err(e)`
//! ("invalid: answer `e.status()` and close"). Incomplete is not an error:
//! a head may arrive one byte per `read`.
//!
//! Strict by default (see the contract's "our decisions" table): when two
//! parsers could disagree about where a message ends, we refuse rather than
//! guess, because that disagreement is how requests get smuggled.

use crate::http::framing::BodyFraming;

/// HTTP versions ferroxy speaks. Anything else is a malformed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One header field as received: name as sent (case kept), raw value bytes
/// with surrounding whitespace trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// Size limits that bound how much a peer can make us hold for a head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// The whole head, request line and final CRLFCRLF included.
    pub max_head_bytes: usize,
    /// More fields than this is 431 (requests) / 502 (responses).
    pub max_fields: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: 16384,
            max_fields: 100,
        }
    }
}

/// A complete, validated request head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Method token exactly as sent (methods are case-sensitive).
    pub method: String,
    /// Request target as sent (origin-form `/p?q`, absolute-form, or `*`).
    pub target: String,
    pub version: Version,
    /// Every field in order, as received.
    pub headers: Vec<Header>,
    /// Bytes of input the head occupied, the final CRLFCRLF included.
    pub len: usize,
    /// How the body that follows is delimited: `Empty`, `Length` or `Chunked`.
    pub body: BodyFraming,
    /// The client wants the connection kept open after this exchange
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// The protocol the client asks to upgrade to (`Upgrade` named in
    /// `Connection`), e.g. `websocket`. `h2c` is never offered: it is stripped.
    pub upgrade: Option<String>,
}

impl RequestHead {
    /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 9.2.2): safe to
    /// replay on another connection if no response byte was seen.
    pub fn is_idempotent(&self) -> bool {
        todo!()
    }

    /// HEAD: the response has no body whatever its headers say.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }
}

/// Why a request was refused; each maps to one status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// 400: unparseable or ambiguous. The string says what, for the log.
    Malformed(&'static str),
    /// 405: `CONNECT` (ferroxy is not a forward proxy).
    MethodNotAllowed,
    /// 414: the request line alone does not fit in `max_head_bytes`.
    UriTooLong,
    /// 417: `Expect` with anything but `100-continue`.
    ExpectationFailed,
    /// 431: the head does not fit, or has more than `max_fields` fields.
    HeadTooLarge,
    /// 501: a `Transfer-Encoding` coding other than `chunked`.
    NotImplemented,
}

impl RequestError {
    pub fn status(&self) -> u16 {
        todo!()
    }

    /// Short reason for the log line, e.g. "duplicate Content-Length".
    pub fn describe(&self) -> &'static str {
        todo!()
    }
}

/// Parse and validate a request head from the start of `input`.
///
/// - `Ok(None)`: incomplete; read more. Returns `Err(UriTooLong)` or
///   `Err(HeadTooLarge)` instead once `input.len() >= max_head_bytes` without
///   a complete head (414 when no CRLF has been seen yet).
/// - `Ok(Some(head))`: complete and valid; the body starts at `head.len`.
/// - `Err(e)`: refuse with `e.status()` and close.
pub fn parse_request(
    input: &[u8],
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, RequestError> {
    let _ = (input, limits);
    todo!()
}

/// A complete, validated response head from an upstream.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<Header>,
    /// Bytes of input the head occupied.
    pub len: usize,
    /// `Empty` for HEAD requests, 1xx, 204, 304; else `Length`, `Chunked`
    /// or `UntilClose`.
    pub body: BodyFraming,
    /// The upstream allows reusing this connection after the body
    /// (1.1 without `Connection: close`, or 1.0 with `keep-alive`, and the
    /// body is not delimited by close).
    pub keep_alive: bool,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.headers, name)
    }

    /// 100-199: an interim response; a final one follows on the same connection.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Why an upstream response was refused: always 502 to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    Malformed(&'static str),
    HeadTooLarge,
}

impl ResponseError {
    pub fn describe(&self) -> &'static str {
        todo!()
    }
}

/// Parse and validate a response head. `request_was_head` makes the body
/// `Empty` whatever the headers say. Same three answers as `parse_request`.
pub fn parse_response(
    input: &[u8],
    request_was_head: bool,
    limits: &HeadLimits,
) -> Result<Option<ResponseHead>, ResponseError> {
    let _ = (input, request_was_head, limits);
    todo!()
}

/// First value of `name` (ASCII case-insensitive) in `headers`.
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}
