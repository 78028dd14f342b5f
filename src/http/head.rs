//! Request and response heads: parse with httparse, then validate strictly.
//!
//! Where it sits in the loop: after every read into a connection's buffer the
//! reactor calls [`parse_request`] (client side) or [`parse_response`]
//! (upstream side) on the bytes buffered so far. The answer is one of three
//! things: `Ok(None)` ("incomplete: read more"), `Ok(Some(head))`, or
//! `Err(e)` ("invalid: answer `e.status()` and close"). Incomplete is not an
//! error: a head may arrive one byte per `read`.
//!
//! What it does not do: it never holds state between calls (the reactor just
//! calls again with more bytes; re-scanning a few KiB is cheaper than the
//! bookkeeping an incremental parser needs, and nginx's parser is a good read
//! if you want the incremental version), never reads the body, and never
//! decides what to forward: that is [`crate::http::rewrite`].
//!
//! Strict by default (see the contract's "our decisions" table): when two
//! parsers could disagree about where a message ends, we refuse rather than
//! guess, because that disagreement is how requests get smuggled. httparse
//! does the tokenising; the rules it leaves to its caller (bare LF, duplicate
//! lengths, `Transfer-Encoding` obfuscation, `Host`) are checked here.
//!
//! Lesson: `lessons/07-parsing-heads` (and `lessons/11-body-framing` for how
//! the head decides the body's framing).

use std::borrow::Cow;

use std::mem::MaybeUninit;

use crate::http::framing::BodyFraming;

/// HTTP versions ferroxy speaks. Anything else is a malformed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One header field as received: name as sent (case kept), raw value bytes
/// with surrounding whitespace trimmed. A view into the head's [`Fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl Header<'_> {
    /// The name is `name`, ASCII case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// A head's fields, in order, as received.
///
/// Stored in one block of bytes (every name and value, one after the
/// other) and a list of where each one is, rather than as a `String` and a
/// `Vec` per field: a request and its answer carry eight fields or so, and
/// their sixteen small copies were most of the 25 allocations a proxied
/// request cost (lesson `13-measuring`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

/// Where one field's name and value sit in [`Fields`]'s bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

impl Fields {
    /// Room for `count` fields whose names and values take `bytes` in all.
    pub fn with_capacity(count: usize, bytes: usize) -> Fields {
        Fields {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(count),
        }
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let middle = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans.push(Span {
            name: (start, middle),
            value: (middle, self.bytes.len()),
        });
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The field at `index`, counting from 0 in the order received.
    pub fn get(&self, index: usize) -> Option<Header<'_>> {
        self.spans.get(index).map(|span| self.view(span))
    }

    pub fn iter(&self) -> FieldIter<'_> {
        FieldIter {
            bytes: &self.bytes,
            spans: self.spans.iter(),
        }
    }

    fn view(&self, span: &Span) -> Header<'_> {
        view(&self.bytes, span)
    }
}

fn view<'a>(bytes: &'a [u8], span: &Span) -> Header<'a> {
    Header {
        name: bytes.get(span.name.0..span.name.1).unwrap_or_default(),
        value: bytes.get(span.value.0..span.value.1).unwrap_or_default(),
    }
}

/// The fields of a [`Fields`], in order.
pub struct FieldIter<'a> {
    bytes: &'a [u8],
    spans: std::slice::Iter<'a, Span>,
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        self.spans.next().map(|span| view(self.bytes, span))
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = Header<'a>;
    type IntoIter = FieldIter<'a>;

    fn into_iter(self) -> FieldIter<'a> {
        self.iter()
    }
}

impl<'a> FromIterator<(&'a str, &'a [u8])> for Fields {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a [u8])>>(fields: I) -> Fields {
        let mut all = Fields::default();
        for (name, value) in fields {
            all.push(name.as_bytes(), value);
        }
        all
    }
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
    /// The protocol the client asks to upgrade to (`Upgrade` named in
    /// `Connection`), e.g. `websocket`, spelled as the client sent it.
    /// `h2c` is never offered: it is stripped. Always `None` on HTTP/1.0,
    /// which has no upgrade mechanism (RFC 9110 section 7.8).
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
    /// The status code to answer with (then close the connection).
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::MethodNotAllowed => 405,
            RequestError::UriTooLong => 414,
            RequestError::ExpectationFailed => 417,
            RequestError::HeadTooLarge => 431,
            RequestError::NotImplemented => 501,
        }
    }

    /// Short reason for the log line, e.g. "duplicate Content-Length".
    pub fn describe(&self) -> &'static str {
        match self {
            RequestError::Malformed(why) => why,
            RequestError::MethodNotAllowed => "CONNECT is not supported",
            RequestError::UriTooLong => "request line over the head limit",
            RequestError::ExpectationFailed => "Expect other than 100-continue",
            RequestError::HeadTooLarge => "request head over the limit",
            RequestError::NotImplemented => "Transfer-Encoding other than chunked",
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
    let mut stack_slots = [const { MaybeUninit::uninit() }; STACK_FIELD_SLOTS];
    let mut heap_slots = Vec::new();
    let slots = field_slots(&mut stack_slots, &mut heap_slots, limits.max_fields);
    let mut parsed = httparse::Request::new(&mut []);

    let len = match parsed.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // Everything buffered so far belongs to the head, so a bare LF
            // in it can be refused now instead of after 16 KiB more.
            reject_bare_lf(window).map_err(RequestError::Malformed)?;
            if input.len() >= limits.max_head_bytes {
                return Err(if request_line_finished(window) {
                    RequestError::HeadTooLarge
                } else {
                    RequestError::UriTooLong
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(e) => return Err(RequestError::Malformed(describe_httparse_error(e))),
    };
    let head_bytes = window.get(..len).unwrap_or(window);
    reject_bare_lf(head_bytes).map_err(RequestError::Malformed)?;

    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(RequestError::Malformed("unsupported HTTP version")),
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

/// A complete, validated response head from an upstream.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Fields,
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
    /// Short reason for the log line.
    pub fn describe(&self) -> &'static str {
        match self {
            ResponseError::Malformed(why) => why,
            ResponseError::HeadTooLarge => "response head over the limit",
        }
    }
}

/// Parse and validate a response head. `request_was_head` makes the body
/// `Empty` whatever the headers say. Same three answers as `parse_request`.
///
/// Framing is checked on every response, even those that carry no body
/// (HEAD, 1xx, 204, 304): an upstream that sends both `Content-Length` and
/// `Transfer-Encoding` is confused about framing, and a confused upstream
/// connection is not one to keep reading from.
pub fn parse_response(
    input: &[u8],
    request_was_head: bool,
    limits: &HeadLimits,
) -> Result<Option<ResponseHead>, ResponseError> {
    let window = &input[..input.len().min(limits.max_head_bytes)];
    let mut stack_slots = [const { MaybeUninit::uninit() }; STACK_FIELD_SLOTS];
    let mut heap_slots = Vec::new();
    let slots = field_slots(&mut stack_slots, &mut heap_slots, limits.max_fields);
    let mut parsed = httparse::Response::new(&mut []);

    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, window, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            reject_bare_lf(window).map_err(ResponseError::Malformed)?;
            if input.len() >= limits.max_head_bytes {
                return Err(ResponseError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::HeadTooLarge),
        Err(e) => return Err(ResponseError::Malformed(describe_httparse_error(e))),
    };
    let head_bytes = window.get(..len).unwrap_or(window);
    reject_bare_lf(head_bytes).map_err(ResponseError::Malformed)?;

    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(ResponseError::Malformed("unsupported HTTP version")),
    };
    let status = match parsed.code {
        Some(code) if (100..=599).contains(&code) => code,
        _ => return Err(ResponseError::Malformed("status code outside 100-599")),
    };
    let reason = parsed.reason.unwrap_or("").to_owned();
    let headers = copy_fields(parsed.headers);

    let declared = response_framing(version, &headers)?;
    let body = if request_was_head || (100..200).contains(&status) || status == 204 || status == 304
    {
        BodyFraming::Empty
    } else {
        declared
    };
    let keep_alive = body != BodyFraming::UntilClose && wants_keep_alive(version, &headers);

    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        headers,
        len,
        body,
        keep_alive,
    }))
}

/// First value of `name` (ASCII case-insensitive) in `headers`.
pub fn find_header<'a>(headers: &'a Fields, name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.is(name)).map(|h| h.value)
}

/// The elements of a comma-separated field value (RFC 9110 section 5.6.1),
/// each with its surrounding whitespace trimmed. Empty elements (`a,,b`) are
/// yielded as empty slices so strict callers can refuse them.
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_whitespace)
}

/// Does any `name` field (there may be several lines) list `token`, ASCII
/// case-insensitively? E.g. `has_token(&resp.headers, "Connection", "close")`.
pub fn has_token(headers: &Fields, name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.is(name))
        .flat_map(|h| list_elements(h.value))
        .any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
}

/// The request target in origin-form, as it is sent upstream: absolute-form
/// `http://host/p?q` becomes `/p?q` (and `http://host?q` becomes `/?q`);
/// origin-form and `*` are returned unchanged. Routing and logging by path
/// should use this, so `GET http://h/admin` cannot slip past a `/admin` rule.
pub fn origin_form(target: &str) -> Cow<'_, str> {
    match split_absolute_form(target) {
        Some((_, rest)) if rest.starts_with('/') => Cow::Borrowed(rest),
        Some((_, rest)) => Cow::Owned(format!("/{rest}")),
        None => Cow::Borrowed(target),
    }
}

/// For an absolute-form target (`http://authority/rest`), its authority and
/// everything after it; `None` for any other form. The scheme is matched
/// ASCII case-insensitively, as URI schemes are.
pub(crate) fn split_absolute_form(target: &str) -> Option<(&str, &str)> {
    const SCHEME: &str = "http://";
    let scheme = target.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let after_scheme = &target[SCHEME.len()..];
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    Some(after_scheme.split_at(authority_end))
}

/// `tchar` from RFC 9110 section 5.6.2: the bytes allowed in a token
/// (field names, methods, coding names, chunk extension names).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Trim spaces and tabs (OWS) from both ends.
pub(crate) fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(&[])
}

// ---------------------------------------------------------------------------
// Shared by requests and responses
// ---------------------------------------------------------------------------

/// Header slots for httparse. Up to this many live on the stack (about 3 KiB),
/// so the common case allocates nothing before the head is known complete.
const STACK_FIELD_SLOTS: usize = 100;

/// The slots httparse parses into: the stack array when `max_fields` fits,
/// else `heap` grown to size. httparse reports `TooManyHeaders` when it runs
/// out of slots, which is exactly the `max_fields` limit: no counting of our
/// own. The slots are left uninitialised (httparse writes each before use):
/// filling 100 of them for a head of five fields cost more than the parse.
fn field_slots<'s, 'b>(
    stack: &'s mut [MaybeUninit<httparse::Header<'b>>; STACK_FIELD_SLOTS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
    max_fields: usize,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    if max_fields <= STACK_FIELD_SLOTS {
        &mut stack[..max_fields]
    } else {
        heap.resize_with(max_fields, MaybeUninit::uninit);
        heap
    }
}

/// Every LF in a head must end a CRLF. httparse accepts a bare LF as a line
/// end (RFC 9112 allows that leniency), but a server behind us may not: if we
/// see two lines where it sees one, a header we validated is not the header
/// it acts on. Refusing bare LF makes both agree.
fn reject_bare_lf(head: &[u8]) -> Result<(), &'static str> {
    // Eight bytes at a time, with no branch per byte: mark every LF byte
    // and every CR byte of the word (high bit of that byte set), shift the
    // CR marks one byte up (a CR's mark lands on the byte after it, carrying
    // the last CR of the previous word in), and any LF mark left uncovered
    // is a bare LF. Heads are full of LFs, so a "does this word hold an
    // LF?" test alone would still fall back to bytes most of the time.
    let mut cr_before = 0u64; // high bit set: the previous byte was a CR
    let mut words = head.chunks_exact(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let lf = bytes_equal_to(word, b'\n');
        let cr = bytes_equal_to(word, b'\r');
        if lf & !((cr << 8) | cr_before) != 0 {
            return Err("bare LF in head");
        }
        cr_before = cr >> 56;
    }
    let rest = words.remainder();
    let mut previous_cr = cr_before != 0;
    for &b in rest {
        if b == b'\n' && !previous_cr {
            return Err("bare LF in head");
        }
        previous_cr = b == b'\r';
    }
    Ok(())
}

/// The high bit of each byte of `word` that equals `byte`, exactly (no
/// false positives from borrows, unlike the shorter "has a zero byte" trick).
fn bytes_equal_to(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (0x0101_0101_0101_0101 * byte as u64);
    // A byte of x is zero exactly when neither its low 7 bits (carried into
    // the high bit by adding 0x7f) nor its own high bit are set.
    !(((x & LOW7) + LOW7) | x) & !LOW7
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

fn describe_httparse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "invalid header field name (or obs-fold, or space before colon)"
        }
        httparse::Error::HeaderValue => "invalid byte in header field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid request line",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

fn copy_fields(fields: &[httparse::Header<'_>]) -> Fields {
    let bytes = fields.iter().map(|f| f.name.len() + f.value.len()).sum();
    let mut copy = Fields::with_capacity(fields.len(), bytes);
    for f in fields {
        copy.push(f.name.as_bytes(), trim_whitespace(f.value));
    }
    copy
}

/// `Content-Length = 1*DIGIT`, and it must fit in a u64. No sign, no spaces
/// inside, no list: `+5`, `5 5` and `5, 5` are all refused by the caller.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |total, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        total.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes unless
/// told `keep-alive` (RFC 9112 section 9.3).
fn wants_keep_alive(version: Version, headers: &Fields) -> bool {
    if has_token(headers, "Connection", "close") {
        return false;
    }
    match version {
        Version::Http11 => true,
        Version::Http10 => has_token(headers, "Connection", "keep-alive"),
    }
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
        return Err(RequestError::MethodNotAllowed);
    }
    let fields = FramingFields::gather(headers);
    check_target_and_host(method, target, version, fields.hosts.as_slice())?;
    let body = request_framing(version, &fields)?;
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

/// `uri-host [ ":" port ]` (RFC 3986 section 3.2): a bracketed IP literal or a
/// non-empty reg-name/IPv4 of unreserved, sub-delims and `%`, then an
/// optional all-digit port. Userinfo (`user@host`) is refused: RFC 9110
/// section 4.2.4 deprecates it and it is a favourite of phishing URLs.
fn is_valid_authority(authority: &[u8]) -> bool {
    let (host_ok, after_host) = if let Some(literal) = authority.strip_prefix(b"[") {
        match literal.iter().position(|&b| b == b']') {
            Some(close) => {
                let inside = &literal[..close];
                let ok = !inside.is_empty()
                    && inside
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                (ok, &literal[close + 1..])
            }
            None => (false, &[][..]),
        }
    } else {
        let end = authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len());
        let name = &authority[..end];
        let ok = !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
        (ok, &authority[end..])
    };
    let port_ok = match after_host.strip_prefix(b":") {
        Some(port) => port.iter().all(u8::is_ascii_digit),
        None => after_host.is_empty(),
    };
    host_ok && port_ok
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

/// The first protocol in `Upgrade` other than `h2c`, when `Connection`
/// nominates `upgrade` (an `Upgrade` not named in `Connection` is a stray
/// hop-by-hop header, RFC 9110 section 7.8). `h2c` is skipped because an
/// HTTP/2 cleartext upgrade through a proxy that only speaks HTTP/1.1 is a
/// known way to tunnel past its rules. Spelled as the client sent it.
fn requested_upgrade(version: Version, headers: &Fields) -> Result<Option<String>, RequestError> {
    if version == Version::Http10 || !has_token(headers, "Connection", "upgrade") {
        return Ok(None);
    }
    let mut chosen = None;
    for h in headers.iter().filter(|h| h.is("Upgrade")) {
        for protocol in list_elements(h.value) {
            if !is_valid_protocol(protocol) {
                return Err(RequestError::Malformed("invalid Upgrade"));
            }
            let name = protocol.split(|&b| b == b'/').next().unwrap_or(protocol);
            if chosen.is_none() && !name.eq_ignore_ascii_case(b"h2c") {
                chosen = Some(String::from_utf8_lossy(protocol).into_owned());
            }
        }
    }
    Ok(chosen)
}

/// `protocol = protocol-name ["/" protocol-version]`, both tokens.
fn is_valid_protocol(protocol: &[u8]) -> bool {
    let mut parts = protocol.splitn(2, |&b| b == b'/');
    let is_token = |part: &[u8]| !part.is_empty() && part.iter().all(|&b| is_tchar(b));
    parts.next().is_some_and(is_token) && parts.next().is_none_or(is_token)
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// How the upstream says its body is delimited (RFC 9112 section 6.3), before
/// HEAD/1xx/204/304 override it.
fn response_framing(version: Version, headers: &Fields) -> Result<BodyFraming, ResponseError> {
    let malformed = ResponseError::Malformed;
    let mut length: Option<u64> = None;
    let mut saw_transfer_encoding = false;
    let mut final_coding: &[u8] = &[];
    for h in headers {
        if h.is("Content-Length") {
            // Identical repeats, on several lines or as a list, are merged
            // (RFC 9110 section 8.6): upstreams behind other proxies do send
            // them, and the answer is unambiguous.
            for element in list_elements(h.value) {
                let n = parse_content_length(element).ok_or(malformed("invalid Content-Length"))?;
                if length.is_some_and(|earlier| earlier != n) {
                    return Err(malformed("differing Content-Lengths"));
                }
                length = Some(n);
            }
        } else if h.is("Transfer-Encoding") {
            saw_transfer_encoding = true;
            // Several lines are one list; only the last coding decides.
            if let Some(last) = list_elements(h.value).last() {
                final_coding = last;
            }
        }
    }
    if saw_transfer_encoding {
        if length.is_some() {
            return Err(malformed("both Content-Length and Transfer-Encoding"));
        }
        // RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding
        // has faulty framing. We refuse it rather than guess.
        if version == Version::Http10 {
            return Err(malformed("Transfer-Encoding in an HTTP/1.0 response"));
        }
        // Chunked last: its end is marked. Anything else: read until close
        // (RFC 9112 section 6.3, rule 4).
        return Ok(if final_coding.eq_ignore_ascii_case(b"chunked") {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    Ok(length.map_or(BodyFraming::UntilClose, BodyFraming::Length))
}
