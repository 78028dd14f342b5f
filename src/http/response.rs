//! The response head: parse one from an upstream's bytes and decide how its
//! body is delimited. As strict as the request side: an upstream that frames
//! its body in a way two parsers could read differently is answered with 502
//! and its connection closed, because the bytes after a confused head could
//! be read by the client as a second response (response splitting).
//!
//! Lessons: `lessons/07-parsing-heads`, `lessons/11-body-framing`.

use std::mem::MaybeUninit;

use crate::http::framing::BodyFraming;
use crate::http::head::{
    Fields, HeadLimits, OtherVersion, STACK_FIELD_SLOTS, Version, as_http11, copy_fields,
    describe_httparse_error, field_slots, find_header, list_elements, other_version,
    parse_content_length, reject_bare_lf, trim_whitespace, wants_keep_alive,
};

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
/// `Empty` whatever the headers say. Same three answers as
/// [`crate::http::request::parse_request`].
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
    let at_limit = input.len() >= limits.max_head_bytes;
    match parse_http1(window, at_limit, request_was_head, limits) {
        Err(ResponseError::Malformed(INVALID_VERSION)) => {}
        answer => return answer,
    }
    match other_version(window, false) {
        Ok(None) => incomplete(window, at_limit),
        // RFC 9110 section 2.5, as on the request side: a later HTTP/1.x is
        // read as the 1.1 it must be compatible with.
        Ok(Some(OtherVersion::LaterMinor { minor_at })) => parse_http1(
            &as_http11(window, minor_at),
            at_limit,
            request_was_head,
            limits,
        ),
        Ok(Some(OtherVersion::OtherMajor)) | Err(()) => {
            Err(ResponseError::Malformed(INVALID_VERSION))
        }
    }
}

/// httparse's name for a version it does not know.
const INVALID_VERSION: &str = "invalid HTTP version";

/// [`parse_response`] for a head whose version httparse knows.
fn parse_http1(
    window: &[u8],
    at_limit: bool,
    request_was_head: bool,
    limits: &HeadLimits,
) -> Result<Option<ResponseHead>, ResponseError> {
    let mut stack_slots = [const { MaybeUninit::uninit() }; STACK_FIELD_SLOTS];
    let mut heap_slots = Vec::new();
    let slots = field_slots(&mut stack_slots, &mut heap_slots, limits.max_fields);
    let mut parsed = httparse::Response::new(&mut []);

    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, window, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(window, at_limit),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(ResponseError::Malformed(INVALID_VERSION)),
        Err(e) => return Err(ResponseError::Malformed(describe_httparse_error(e))),
    };
    let head_bytes = window.get(..len).unwrap_or(window);
    reject_bare_lf(head_bytes).map_err(ResponseError::Malformed)?;

    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(ResponseError::Malformed(INVALID_VERSION)),
    };
    let status = match parsed.code {
        Some(code) if (100..=599).contains(&code) => code,
        _ => return Err(ResponseError::Malformed("status code outside 100-599")),
    };
    // HTTP/1.0 has no interim responses (RFC 9110 section 15.2): a 1.0
    // upstream sending one is confused, and whatever follows it cannot be
    // trusted to be the final response.
    if version == Version::Http10 && (100..200).contains(&status) {
        return Err(ResponseError::Malformed("1xx from an HTTP/1.0 upstream"));
    }
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

/// The head is not complete yet: read more, unless the limit is reached.
fn incomplete(window: &[u8], at_limit: bool) -> Result<Option<ResponseHead>, ResponseError> {
    reject_bare_lf(window).map_err(ResponseError::Malformed)?;
    if at_limit {
        return Err(ResponseError::HeadTooLarge);
    }
    Ok(None)
}

/// How the upstream says its body is delimited (RFC 9112 section 6.3), before
/// HEAD/1xx/204/304 override it.
///
/// Stricter than RFC 9112 lets a recipient be, on purpose, because the
/// client behind us is the other parser: a `Transfer-Encoding` whose last
/// coding is not `chunked` would make the body run to the close, which a
/// client that believes a `Content-Length` further down, or a cache, would
/// cut differently; `chunked` twice would be decoded twice by one reader and
/// once by another; and several `Content-Length`s, even equal, mean someone
/// on the way merged or duplicated fields, so we answer 502 rather than
/// guess which of them framed the bytes we are about to read.
fn response_framing(version: Version, headers: &Fields) -> Result<BodyFraming, ResponseError> {
    let malformed = ResponseError::Malformed;
    let mut length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    for h in headers {
        if h.is("Content-Length") {
            if length.is_some() {
                return Err(malformed("more than one Content-Length"));
            }
            length =
                Some(parse_content_length(h.value).ok_or(malformed("invalid Content-Length"))?);
        } else if h.is("Transfer-Encoding") {
            if transfer_encoding.is_some() {
                return Err(malformed("Transfer-Encoding given more than once"));
            }
            transfer_encoding = Some(h.value);
        }
    }
    let Some(coding) = transfer_encoding else {
        return Ok(length.map_or(BodyFraming::UntilClose, BodyFraming::Length));
    };
    if length.is_some() {
        return Err(malformed("both Content-Length and Transfer-Encoding"));
    }
    // RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has
    // faulty framing.
    if version == Version::Http10 {
        return Err(malformed("Transfer-Encoding in an HTTP/1.0 response"));
    }
    if !trim_whitespace(coding).eq_ignore_ascii_case(b"chunked") {
        return Err(malformed("Transfer-Encoding other than chunked"));
    }
    Ok(BodyFraming::Chunked)
}

/// Did the client offer the protocol a 101 switches to? Every protocol in
/// the response's `Upgrade` (RFC 9110 section 7.8: the server lists what it
/// switches to, in layer order) must be one the client listed in `offered`,
/// by name (ASCII case-insensitive) and, where both name a version, by
/// version too. Otherwise the upstream is turning the connection into
/// something the client never asked for, and the proxy will not tunnel it.
pub fn switched_protocol_was_offered(offered: &str, headers: &Fields) -> bool {
    let mut switched_to = headers
        .iter()
        .filter(|h| h.is("Upgrade"))
        .flat_map(|h| list_elements(h.value))
        .peekable();
    if switched_to.peek().is_none() {
        return false;
    }
    switched_to.all(|chosen| {
        let (name, version) = split_protocol(chosen);
        !name.is_empty()
            && list_elements(offered.as_bytes()).any(|offer| {
                let (offered_name, offered_version) = split_protocol(offer);
                offered_name.eq_ignore_ascii_case(name)
                    && (version.is_none()
                        || offered_version.is_none()
                        || version == offered_version)
            })
    })
}

/// `name/version` into its parts; no `/` means no version.
fn split_protocol(protocol: &[u8]) -> (&[u8], Option<&[u8]>) {
    match protocol.iter().position(|&b| b == b'/') {
        Some(slash) => (&protocol[..slash], Some(&protocol[slash + 1..])),
        None => (protocol, None),
    }
}
