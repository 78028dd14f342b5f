//! The request head: parse one from the client's bytes and apply every rule
//! a request must meet before it is forwarded (target and `Host`, version,
//! method, body framing, `Expect`, `Upgrade`). The pieces both directions
//! share (fields, limits, bare-LF check) are in [`crate::http::head`].
//!
//! Each refusal names the attack or the confusion it stops, next to the
//! check; the contract's "our decisions" table lists them all, and
//! `lessons/07-parsing-heads` walks through them.
//!
//! A little over 500 lines, on purpose: every rule stays beside the comment
//! naming what it stops, and all of them are one pass over one head.

use std::mem::MaybeUninit;

use crate::http::authority::is_valid_authority;
use crate::http::framing::BodyFraming;
use crate::http::head::{
    Fields, HeadLimits, OtherVersion, STACK_FIELD_SLOTS, Version, as_http11, copy_fields,
    describe_httparse_error, field_slots, find_header, has_token, is_tchar, list_elements,
    other_version, parse_content_length, reject_bare_lf, split_absolute_form, trim_whitespace,
    wants_keep_alive,
};

/// A complete, validated request head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Method token exactly as sent (methods are case-sensitive).
    pub method: String,
    /// Request target as sent (origin-form `/p?q`, absolute-form, or `*`).
    pub target: String,
    pub version: Version,
    /// Every field in order, as received.
    pub headers: Fields,
    /// Bytes of input the head occupied, the final CRLFCRLF included.
    pub len: usize,
    /// How the body that follows is delimited: `Empty`, `Length` or `Chunked`.
    /// `Content-Length: 0` is reported as `Length(0)` (not `Empty`), so the
    /// framing says what the client sent; both read as "no body bytes".
    pub body: BodyFraming,
    /// The client wants the connection kept open after this exchange
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// The protocols the client offers to upgrade to (`Upgrade` named in
    /// `Connection`), as one list in the client's order and spelling, e.g.
    /// `websocket` or `foo/2, websocket`. `h2c` is never offered: it is
    /// stripped. Always `None` on HTTP/1.0, which has no upgrade mechanism
    /// (RFC 9110 section 7.8).
    pub upgrade: Option<String>,
}

impl RequestHead {
    /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 9.2.2): safe to
    /// replay on another connection if no response byte was seen.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        )
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
    /// 405: `CONNECT` (ferroxy is not a forward proxy) or `TRACE`. The
    /// string names the method, for the log.
    MethodNotAllowed(&'static str),
    /// 414: the request line alone does not fit in `max_head_bytes`.
    UriTooLong,
    /// 417: `Expect` with anything but `100-continue`.
    ExpectationFailed,
    /// 431: the head does not fit, or has more than `max_fields` fields.
    HeadTooLarge,
    /// 501: a `Transfer-Encoding` coding other than `chunked`.
    NotImplemented,
    /// 505: a request line in another major version (`HTTP/2.0`, `HTTP/0.9`).
    VersionNotSupported,
}

impl RequestError {
    /// The status code to answer with (then close the connection).
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::MethodNotAllowed(_) => 405,
            RequestError::UriTooLong => 414,
            RequestError::ExpectationFailed => 417,
            RequestError::HeadTooLarge => 431,
            RequestError::NotImplemented => 501,
            RequestError::VersionNotSupported => 505,
        }
    }

    /// Short reason for the log line, e.g. "duplicate Content-Length".
    pub fn describe(&self) -> &'static str {
        match self {
            RequestError::Malformed(why) => why,
            RequestError::MethodNotAllowed(why) => why,
            RequestError::UriTooLong => "request line over the head limit",
            RequestError::ExpectationFailed => "Expect other than 100-continue",
            RequestError::HeadTooLarge => "request head over the limit",
            RequestError::NotImplemented => "Transfer-Encoding other than chunked",
            RequestError::VersionNotSupported => "HTTP major version other than 1",
        }
    }
}

/// Parse and validate a request head from the start of `input`.
///
/// - `Ok(None)`: incomplete; read more. Returns `Err(UriTooLong)` or
///   `Err(HeadTooLarge)` instead once `input.len() >= max_head_bytes` without
///   a complete head (414 when no CRLF has been seen yet).
/// - `Ok(Some(head))`: complete and valid; the body starts at `head.len`.
/// - `Err(e)`: refuse with `e.status()` and close.
///
/// Only the first `max_head_bytes` of `input` are ever looked at, so a peer
/// cannot make one call cost more than the limit, however much it sent.
pub fn parse_request(
    input: &[u8],
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, RequestError> {
    let window = &input[..input.len().min(limits.max_head_bytes)];
    let at_limit = input.len() >= limits.max_head_bytes;
    match parse_http1(window, at_limit, limits) {
        Err(RequestError::Malformed(INVALID_VERSION)) => {}
        answer => return answer,
    }
    // httparse knows only HTTP/1.0 and 1.1; the rest of the answer is ours.
    match other_version(window, true) {
        Ok(None) => incomplete(window, at_limit),
        // The copy says HTTP/1.1, so this second pass cannot come back here.
        Ok(Some(OtherVersion::LaterMinor { minor_at })) => {
            parse_http1(&as_http11(window, minor_at), at_limit, limits)
        }
        // 505 names the problem; a client that speaks HTTP/2 can retry in 1.1.
        Ok(Some(OtherVersion::OtherMajor)) => Err(RequestError::VersionNotSupported),
        Err(()) => Err(RequestError::Malformed(INVALID_VERSION)),
    }
}

/// httparse's name for a version it does not know; [`parse_request`] looks
/// closer at those before it answers.
const INVALID_VERSION: &str = "invalid HTTP version";

/// [`parse_request`] for a head whose version httparse knows.
fn parse_http1(
    window: &[u8],
    at_limit: bool,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, RequestError> {
    let mut stack_slots = [const { MaybeUninit::uninit() }; STACK_FIELD_SLOTS];
    let mut heap_slots = Vec::new();
    let slots = field_slots(&mut stack_slots, &mut heap_slots, limits.max_fields);
    let mut parsed = httparse::Request::new(&mut []);

    let len = match parsed.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(window, at_limit),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(RequestError::Malformed(INVALID_VERSION)),
        Err(e) => return Err(RequestError::Malformed(describe_httparse_error(e))),
    };
    let head_bytes = window.get(..len).unwrap_or(window);
    reject_bare_lf(head_bytes).map_err(RequestError::Malformed)?;

    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(RequestError::Malformed(INVALID_VERSION)),
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(RequestError::Malformed("incomplete request line"));
    };
    let headers = copy_fields(parsed.headers);

    let rules = check_request(method, target, version, &headers)?;
    Ok(Some(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers,
        len,
        body: rules.body,
        keep_alive: rules.keep_alive,
        expect_continue: rules.expect_continue,
        upgrade: rules.upgrade,
    }))
}

/// The head is not complete yet: read more, unless the limit is reached.
fn incomplete(window: &[u8], at_limit: bool) -> Result<Option<RequestHead>, RequestError> {
    // Everything buffered so far belongs to the head, so a bare LF in it can
    // be refused now instead of after 16 KiB more.
    reject_bare_lf(window).map_err(RequestError::Malformed)?;
    if at_limit {
        return Err(if request_line_finished(window) {
            RequestError::HeadTooLarge
        } else {
            RequestError::UriTooLong
        });
    }
    Ok(None)
}

/// Has the request line ended (a LF after any leading empty lines, which a
/// server skips before the request line, RFC 9112 section 2.2)? Decides 414
/// (the target alone is too long) against 431 (the fields are).
fn request_line_finished(window: &[u8]) -> bool {
    let mut rest = window;
    while let Some(after) = rest.strip_prefix(b"\r\n") {
        rest = after;
    }
    rest.contains(&b'\n')
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// What the request's fields decided, beyond the fields themselves.
struct RequestRules {
    body: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: Option<String>,
}

/// The fields a request's validity hangs on, gathered in one pass.
#[derive(Default)]
struct FramingFields<'a> {
    hosts: FirstTwo<'a>,
    content_lengths: FirstTwo<'a>,
    transfer_encodings: FirstTwo<'a>,
    /// Every one is checked, but a request rarely has any: an empty `Vec`
    /// allocates nothing.
    expects: Vec<&'a [u8]>,
}

impl<'a> FramingFields<'a> {
    fn gather(headers: &'a Fields) -> Self {
        let mut fields = FramingFields::default();
        for h in headers {
            if h.is("Host") {
                fields.hosts.push(h.value);
            } else if h.is("Content-Length") {
                fields.content_lengths.push(h.value);
            } else if h.is("Transfer-Encoding") {
                fields.transfer_encodings.push(h.value);
            } else if h.is("Expect") {
                fields.expects.push(h.value);
            }
        }
        fields
    }
}

/// The values of a field the rules allow at most once. The first two are
/// kept, which is enough to tell "once" from "repeated", and the rest only
/// counted, so gathering them never allocates (every request has a Host).
#[derive(Default)]
struct FirstTwo<'a> {
    values: [&'a [u8]; 2],
    count: usize,
}

impl<'a> FirstTwo<'a> {
    fn push(&mut self, value: &'a [u8]) {
        if let Some(slot) = self.values.get_mut(self.count) {
            *slot = value;
        }
        self.count += 1;
    }

    /// The first values: all of them while there are at most two.
    fn as_slice(&self) -> &[&'a [u8]] {
        &self.values[..self.count.min(2)]
    }

    fn len(&self) -> usize {
        self.count
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

fn check_request(
    method: &str,
    target: &str,
    version: Version,
    headers: &Fields,
) -> Result<RequestRules, RequestError> {
    // Before the target check: CONNECT's authority-form target would
    // otherwise be "malformed", and 405 tells the client more.
    if method == "CONNECT" {
        return Err(RequestError::MethodNotAllowed("CONNECT is not supported"));
    }
    let fields = FramingFields::gather(headers);
    check_target_and_host(method, target, version, fields.hosts.as_slice())?;
    let body = request_framing(version, &fields)?;
    if method == "TRACE" {
        return Err(refuse_trace(body));
    }
    let expect_continue = check_expect(version, &fields.expects)?;
    let upgrade = requested_upgrade(version, headers)?;
    Ok(RequestRules {
        body,
        keep_alive: wants_keep_alive(version, headers),
        expect_continue,
        upgrade,
    })
}

/// The target must be origin-form (`/path?query`), absolute-form
/// (`http://authority/path`) or `*` for OPTIONS. HTTP/1.1 needs exactly one
/// `Host` (RFC 9112 section 3.2); HTTP/1.0 may have none but never several.
/// Several `Host`s, or an absolute-form target naming another host than
/// `Host`, leave two plausible destinations: we refuse instead of picking one
/// (RFC 9112 would let a proxy prefer the target; a cache or WAF in front of
/// us may have keyed on `Host`).
fn check_target_and_host(
    method: &str,
    target: &str,
    version: Version,
    hosts: &[&[u8]],
) -> Result<(), RequestError> {
    let host = match (hosts, version) {
        ([], Version::Http11) => {
            return Err(RequestError::Malformed("HTTP/1.1 request without Host"));
        }
        ([], Version::Http10) => None,
        ([host], _) => Some(*host),
        _ => return Err(RequestError::Malformed("more than one Host")),
    };
    if let Some(host) = host
        && !is_valid_authority(host)
    {
        return Err(RequestError::Malformed("invalid Host"));
    }

    if target.starts_with('/') {
        return Ok(());
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(RequestError::Malformed("target * is only for OPTIONS"))
        };
    }
    let Some((authority, _)) = split_absolute_form(target) else {
        return Err(RequestError::Malformed(
            "request target is not origin-form or absolute-form",
        ));
    };
    if !is_valid_authority(authority.as_bytes()) {
        return Err(RequestError::Malformed(
            "invalid authority in absolute-form target",
        ));
    }
    match host {
        Some(host) if !host.eq_ignore_ascii_case(authority.as_bytes()) => Err(
            RequestError::Malformed("absolute-form target and Host name different hosts"),
        ),
        _ => Ok(()),
    }
}

/// TRACE asks the server to echo the request back, and what it echoes
/// includes whatever the proxies on the way added (credentials, internal
/// addresses): cross-site tracing. Like nginx, we refuse it with 405. One
/// with a body is worse than unneeded (RFC 9110 section 9.3.8 forbids it): a
/// server that ignores the body reads it as the next request, so it is 400.
fn refuse_trace(body: BodyFraming) -> RequestError {
    match body {
        BodyFraming::Empty | BodyFraming::Length(0) => {
            RequestError::MethodNotAllowed("TRACE is not allowed")
        }
        _ => RequestError::Malformed("TRACE with a body"),
    }
}

/// Decide how the request body is delimited (RFC 9112 section 6), refusing
/// every input where two careful parsers could reach different answers.
fn request_framing(
    version: Version,
    fields: &FramingFields<'_>,
) -> Result<BodyFraming, RequestError> {
    let malformed = RequestError::Malformed;
    if !fields.transfer_encodings.is_empty() {
        // HTTP/1.0 has no Transfer-Encoding: a 1.0 server behind us would
        // read the chunk framing as body bytes (RFC 9112 section 6.1).
        if version == Version::Http10 {
            return Err(malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // Two lines could be combined ("gzip, chunked") or the first one
        // believed; refuse rather than pick.
        if fields.transfer_encodings.len() > 1 {
            return Err(malformed("Transfer-Encoding given more than once"));
        }
        // The classic smuggling setup: we frame by one, the upstream by
        // the other.
        if !fields.content_lengths.is_empty() {
            return Err(malformed("both Content-Length and Transfer-Encoding"));
        }
        return classify_request_transfer_encoding(fields.transfer_encodings.values[0]);
    }
    match fields.content_lengths.as_slice() {
        [] => Ok(BodyFraming::Empty),
        [value] => parse_content_length(value)
            .map(BodyFraming::Length)
            .ok_or(malformed("invalid Content-Length")),
        // Even identical repeats: RFC 9110 lets a recipient merge them, but
        // a parser that takes the last of "5" and "50" would not, and the
        // merge rule is one more thing to get wrong.
        _ => Err(malformed("duplicate Content-Length")),
    }
}

/// Transfer codings we can name but do not implement: refused with 501, so
/// the client learns the request was well-formed but asks too much.
const KNOWN_CODINGS: [&[u8]; 6] = [
    b"gzip",
    b"x-gzip",
    b"deflate",
    b"compress",
    b"x-compress",
    b"identity",
];

/// Exactly `chunked` (any case, surrounding OWS) is what we forward. A
/// well-formed list of codings we know is 501. Everything else, including
/// `chunked, chunked`, `xchunked`, `chunked;x`, or an empty value, is an
/// obfuscation attempt or a broken client: 400.
fn classify_request_transfer_encoding(value: &[u8]) -> Result<BodyFraming, RequestError> {
    if trim_whitespace(value).eq_ignore_ascii_case(b"chunked") {
        return Ok(BodyFraming::Chunked);
    }
    let codings: Vec<&[u8]> = list_elements(value).collect();
    let last = codings.len().saturating_sub(1);
    let well_formed = codings.iter().enumerate().all(|(i, coding)| {
        KNOWN_CODINGS
            .iter()
            .any(|known| coding.eq_ignore_ascii_case(known))
            || (i == last && coding.eq_ignore_ascii_case(b"chunked"))
    });
    if well_formed {
        Err(RequestError::NotImplemented)
    } else {
        Err(RequestError::Malformed("invalid Transfer-Encoding"))
    }
}

/// `Expect: 100-continue` is the only expectation defined (RFC 9110 section
/// 10.1.1). An HTTP/1.0 client cannot understand a 100 response, so its
/// 100-continue is ignored; any other expectation is 417 whatever the
/// version, since we cannot meet it.
fn check_expect(version: Version, expects: &[&[u8]]) -> Result<bool, RequestError> {
    if expects.is_empty() {
        return Ok(false);
    }
    let only_continue = expects.iter().all(|value| {
        !value.is_empty() && list_elements(value).all(|e| e.eq_ignore_ascii_case(b"100-continue"))
    });
    if !only_continue {
        return Err(RequestError::ExpectationFailed);
    }
    Ok(version == Version::Http11)
}

/// Every protocol the client offers in `Upgrade` (several lines are one
/// list), in order and spelled as sent, joined into one list; `None` when it
/// offers none, or when `Connection` does not nominate `upgrade` (an
/// `Upgrade` not named in `Connection` is a stray hop-by-hop header, RFC
/// 9110 section 7.8). `h2c` is left out: an HTTP/2 cleartext upgrade
/// through a proxy that only speaks HTTP/1.1 is a known way to tunnel past
/// its rules.
fn requested_upgrade(version: Version, headers: &Fields) -> Result<Option<String>, RequestError> {
    if version == Version::Http10 || !has_token(headers, "Connection", "upgrade") {
        return Ok(None);
    }
    let mut offered = String::new();
    for h in headers.iter().filter(|h| h.is("Upgrade")) {
        for protocol in list_elements(h.value) {
            if !is_valid_protocol(protocol) {
                return Err(RequestError::Malformed("invalid Upgrade"));
            }
            let name = protocol.split(|&b| b == b'/').next().unwrap_or(protocol);
            if name.eq_ignore_ascii_case(b"h2c") {
                continue;
            }
            if !offered.is_empty() {
                offered.push_str(", ");
            }
            // Tokens are ASCII, so this is a plain copy.
            offered.push_str(&String::from_utf8_lossy(protocol));
        }
    }
    Ok((!offered.is_empty()).then_some(offered))
}

/// `protocol = protocol-name ["/" protocol-version]`, both tokens.
fn is_valid_protocol(protocol: &[u8]) -> bool {
    let mut parts = protocol.splitn(2, |&b| b == b'/');
    let is_token = |part: &[u8]| !part.is_empty() && part.iter().all(|&b| is_tchar(b));
    parts.next().is_some_and(is_token) && parts.next().is_none_or(is_token)
}
