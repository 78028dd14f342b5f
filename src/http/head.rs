//! What request and response heads share: the fields as received, the
//! limits, and the checks both sides make after httparse has tokenised a
//! head. The request's own rules are in [`crate::http::request`], the
//! response's in [`crate::http::response`].
//!
//! Where it sits in the loop: after every read into a connection's buffer the
//! reactor calls [`crate::http::request::parse_request`] (client side) or
//! [`crate::http::response::parse_response`] (upstream side) on the bytes
//! buffered so far. The answer is one of three things: `Ok(None)`
//! ("incomplete: read more"), `Ok(Some(head))`, or `Err(e)` ("invalid:
//! answer with `e` and close"). Incomplete is not an error: a head may arrive
//! one byte per `read`.
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
//! does the tokenising; the rules it leaves to its caller (bare LF, versions
//! it does not know, duplicate lengths, `Transfer-Encoding` obfuscation,
//! `Host`) are checked by ferroxy.
//!
//! Lesson: `lessons/07-parsing-heads` (and `lessons/11-body-framing` for how
//! the head decides the body's framing).

use std::borrow::Cow;
use std::mem::MaybeUninit;

/// HTTP versions ferroxy speaks. `HTTP/1.x` with x above 1 is read as
/// HTTP/1.1 (see [`other_version`]); any other version is refused.
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
    ///
    /// `#[inline]`: called some 100 times per proxied request (every field
    /// against every hop-by-hop name). Once `src/files` called it too, the
    /// compiler stopped inlining it, and a proxied request cost 3,300 more
    /// instructions (callgrind, 17,629 -> 20,924); inlined, the length check
    /// against a constant name settles most calls in two instructions.
    #[inline]
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
pub(crate) const STACK_FIELD_SLOTS: usize = 100;

/// The slots httparse parses into: the stack array when `max_fields` fits,
/// else `heap` grown to size. httparse reports `TooManyHeaders` when it runs
/// out of slots, which is exactly the `max_fields` limit: no counting of our
/// own. The slots are left uninitialised (httparse writes each before use):
/// filling 100 of them for a head of five fields cost more than the parse.
pub(crate) fn field_slots<'s, 'b>(
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
pub(crate) fn reject_bare_lf(head: &[u8]) -> Result<(), &'static str> {
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

pub(crate) fn describe_httparse_error(e: httparse::Error) -> &'static str {
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

pub(crate) fn copy_fields(fields: &[httparse::Header<'_>]) -> Fields {
    let bytes = fields.iter().map(|f| f.name.len() + f.value.len()).sum();
    let mut copy = Fields::with_capacity(fields.len(), bytes);
    for f in fields {
        copy.push(f.name.as_bytes(), trim_whitespace(f.value));
    }
    copy
}

/// `Content-Length = 1*DIGIT`, and it must fit in a u64. No sign, no spaces
/// inside, no list: `+5`, `5 5` and `5, 5` are all refused by the caller.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
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
pub(crate) fn wants_keep_alive(version: Version, headers: &Fields) -> bool {
    if has_token(headers, "Connection", "close") {
        return false;
    }
    match version {
        Version::Http11 => true,
        Version::Http10 => has_token(headers, "Connection", "keep-alive"),
    }
}

/// A version httparse refuses (it knows only `HTTP/1.0` and `HTTP/1.1`), as
/// read by hand from the start line: what [`other_version`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OtherVersion {
    /// `HTTP/1.x` with x from 2 to 9. RFC 9110 section 2.5: a recipient
    /// treats a later minor version of its major as the highest it knows, so
    /// it is read as HTTP/1.1. `minor_at` is where its minor digit sits in
    /// the input, so the caller can read the head with a `1` there.
    LaterMinor { minor_at: usize },
    /// `HTTP/0.x`, `HTTP/2.0`, `HTTP/3`...: another protocol altogether.
    OtherMajor,
}

/// The version of the first line of `window` (after the empty lines a
/// server skips): the last word of a request line, the first word of a
/// status line. `Ok(None)` while that line is incomplete; `Err` when the
/// word is not `HTTP/` DIGIT [`.` DIGIT] at all (then it is no HTTP we know,
/// and 400 or 502 says so).
///
/// Only called after httparse has said "version": the common case never
/// pays for this second look.
pub(crate) fn other_version(window: &[u8], is_request: bool) -> Result<Option<OtherVersion>, ()> {
    let mut start = 0;
    while window[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let Some(line_len) = window[start..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let line = &window[start..start + line_len];
    let (word, word_at) = if is_request {
        let space = line.iter().rposition(|&b| b == b' ').ok_or(())?;
        (&line[space + 1..], start + space + 1)
    } else {
        let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        (&line[..end], start)
    };
    let digits = word.strip_prefix(b"HTTP/").ok_or(())?;
    match digits {
        [major] if major.is_ascii_digit() && *major != b'1' => Ok(Some(OtherVersion::OtherMajor)),
        [b'1', b'.', minor] if minor.is_ascii_digit() && *minor >= b'2' => {
            Ok(Some(OtherVersion::LaterMinor {
                minor_at: word_at + 7,
            }))
        }
        [major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1' =>
        {
            Ok(Some(OtherVersion::OtherMajor))
        }
        _ => Err(()),
    }
}

/// `input` with its version's minor digit made `1`: how a later HTTP/1.x
/// head is read as the HTTP/1.1 it is compatible with. A copy, because the
/// buffer is not ours to change; only such rare heads pay for it.
pub(crate) fn as_http11(input: &[u8], minor_at: usize) -> Vec<u8> {
    let mut copy = input.to_vec();
    if let Some(minor) = copy.get_mut(minor_at) {
        *minor = b'1';
    }
    copy
}
