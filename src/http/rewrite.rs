//! The heads ferroxy sends on: the request toward the upstream and the
//! response toward the client, rewritten per the contract's forwarding rules.
//!
//! Hop-by-hop headers (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`,
//! `Trailer`, `Upgrade`, and every header named in `Connection`) describe one
//! TCP connection, not the message, so they stop here; the proxy then says
//! what it wants for its own connection.
//!
//! Where it sits in the loop: once [`crate::http::head`] has a valid head,
//! the reactor calls [`write_request_head`] (or [`write_response_head`]) to
//! append the bytes to send into the peer's outgoing buffer; the body bytes
//! that follow are forwarded as they were received. Nothing here re-parses:
//! the head was validated once, and this only re-emits its fields.
//!
//! What it does not do: it never touches the body, so `Content-Length` goes
//! on exactly as received and `Transfer-Encoding` (validated to be exactly
//! `chunked`) goes on spelled `chunked`, except toward an HTTP/1.0 client,
//! which never sees one.
//!
//! This runs once per request and response, so it writes straight into `out`
//! with `extend_from_slice` and allocates nothing per header.
//!
//! Lesson: `lessons/07-parsing-heads` (and `lessons/11-body-framing` for why
//! the framing headers never change meaning on the way).

use std::io::Write;
use std::net::IpAddr;

use crate::http::errors;
use crate::http::head::{Fields, Header, Version, list_elements, split_absolute_form};
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;

/// What the request rewrite needs to know beyond the head itself.
#[derive(Clone, Copy, Debug)]
pub struct ForwardContext<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// `X-Forwarded-Proto` value ("http").
    pub proto: &'static str,
    /// `Host` to send when an HTTP/1.0 client sent none (the upstream's
    /// `host:port`).
    pub default_host: &'a str,
}

/// The proxy's own `Via` entry (RFC 9110 section 7.6.3): protocol version
/// and a pseudonym. It lets a loop of proxies be seen in the headers.
const VIA_ENTRY: &[u8] = b"1.1 ferroxy";

/// Headers that describe one connection and are never forwarded (RFC 9110
/// section 7.6.1, plus the non-standard but common `Keep-Alive` and
/// `Proxy-Connection`).
const HOP_BY_HOP: [&str; 6] = [
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
];

/// Headers a `Connection` field may name but that we never strip because of
/// it. Dropping `Content-Length` or `Transfer-Encoding` would change how the
/// body is framed (a smuggling tool: `Connection: Content-Length`); dropping
/// `Host` would change where the request goes; and the `X-Forwarded-*`/`Via`
/// headers are the proxy's own, which a client must not be able to erase
/// from what the upstream sees.
const NEVER_STRIPPED_BY_NOMINATION: [&str; 6] = [
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "Via",
];

/// Append to `out` the head to send upstream for `req`: always `HTTP/1.1`,
/// origin-form target, hop-by-hop headers removed, `Host` kept,
/// `X-Forwarded-For` joined and appended, `X-Forwarded-Proto` overwritten,
/// `Via: 1.1 ferroxy` added (appended to any existing Via). `Expect` is kept
/// on 1.1 requests. For an upgrade request, `Upgrade: <every offered
/// protocol, in order>` and `Connection: upgrade` are sent.
///
/// The fields the proxy adds (`X-Forwarded-For`, `X-Forwarded-Proto`, `Via`,
/// then `Upgrade`/`Connection`) come after the client's, which keep their
/// order. A request without `Host` (HTTP/1.0 only) gets one first: the
/// absolute-form target's authority if it had one, else `ctx.default_host`.
/// No `Connection` header is sent otherwise: HTTP/1.1 keep-alive is the
/// default, which is what the upstream pool wants.
pub fn write_request_head(req: &RequestHead, ctx: &ForwardContext<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    let absolute = split_absolute_form(&req.target);
    match absolute {
        Some((_, rest)) => {
            if !rest.starts_with('/') {
                out.push(b'/');
            }
            out.extend_from_slice(rest.as_bytes());
        }
        None => out.extend_from_slice(req.target.as_bytes()),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    if !req.headers.iter().any(|h| is_named(h, "Host")) {
        let host = absolute.map_or(ctx.default_host, |(authority, _)| authority);
        write_field(out, b"Host", host.as_bytes());
    }

    let is_http10 = req.version == Version::Http10;
    for h in &req.headers {
        let rewritten_by_proxy = is_named(h, "X-Forwarded-For")
            || is_named(h, "X-Forwarded-Proto")
            || is_named(h, "Via");
        // An HTTP/1.0 client cannot read a 100 Continue, so the upstream
        // must not wait for us to relay one (head.rs already ignores it).
        let unanswerable_expect = is_http10 && is_named(h, "Expect");
        if rewritten_by_proxy || unanswerable_expect || is_hop_by_hop(h, &req.headers) {
            continue;
        }
        // The parser let through only `chunked` in some case and spacing;
        // the upstream gets the one spelling no server can misread.
        if is_named(h, "Transfer-Encoding") {
            write_field(out, b"Transfer-Encoding", b"chunked");
            continue;
        }
        write_field(out, h.name, h.value);
    }

    out.extend_from_slice(b"X-Forwarded-For: ");
    if write_joined(out, &req.headers, "X-Forwarded-For") {
        out.extend_from_slice(b", ");
    }
    write_ip(out, ctx.client_ip);
    out.extend_from_slice(b"\r\n");

    write_field(out, b"X-Forwarded-Proto", ctx.proto.as_bytes());
    write_via(out, &req.headers);

    if let Some(protocol) = &req.upgrade {
        write_field(out, b"Upgrade", protocol.as_bytes());
        write_field(out, b"Connection", b"upgrade");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the proxy will treat the client connection for this response.
#[derive(Clone, Copy, Debug)]
pub struct ClientSide {
    pub version: Version,
    /// The proxy will keep the client connection open after this response
    /// (`Connection: close` is sent when false; `Connection: keep-alive`
    /// when true for an HTTP/1.0 client).
    pub keep_alive: bool,
    /// The body is chunked but the client is HTTP/1.0: `Transfer-Encoding`
    /// is dropped and the proxy writes only the data (close-delimited).
    pub dechunk: bool,
}

/// Append to `out` the head to send to the client for `resp`: status line
/// `HTTP/1.1 <code> <reason>`, hop-by-hop headers removed, `Via: 1.1 ferroxy`
/// added, the proxy's own `Connection` choice. A 101 keeps `Upgrade` and
/// sends `Connection: upgrade`.
///
/// An empty reason phrase is filled in from [`errors::reason`]. Interim
/// responses other than 101 (100 Continue, 103 Early Hints) get no
/// `Connection` header at all: a `close` there would tell the client to
/// give up before the final response arrives; the final response carries
/// the proxy's choice.
pub fn write_response_head(resp: &ResponseHead, client: &ClientSide, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = [0u8; 20];
    out.extend_from_slice(errors::write_decimal(u64::from(resp.status), &mut digits));
    out.push(b' ');
    if resp.reason.is_empty() {
        out.extend_from_slice(errors::reason(resp.status).as_bytes());
    } else {
        out.extend_from_slice(resp.reason.as_bytes());
    }
    out.extend_from_slice(b"\r\n");

    // HTTP/1.0 has no Transfer-Encoding (RFC 9112 section 6.1): a 1.0
    // client never sees one, whether its body is de-chunked or there is no
    // body at all (HEAD, 204, 304), because it would read the field as
    // describing bytes that are not there.
    let client_is_http10 = client.version == Version::Http10;
    for h in &resp.headers {
        if is_named(h, "Transfer-Encoding") {
            if !(client.dechunk || client_is_http10) {
                // Checked to be exactly `chunked`; sent in one spelling.
                write_field(out, b"Transfer-Encoding", b"chunked");
            }
            continue;
        }
        if is_named(h, "Via") || is_hop_by_hop(h, &resp.headers) {
            continue;
        }
        write_field(out, h.name, h.value);
    }
    write_via(out, &resp.headers);

    if resp.status == 101 {
        out.extend_from_slice(b"Upgrade: ");
        write_joined(out, &resp.headers, "Upgrade");
        out.extend_from_slice(b"\r\n");
        write_field(out, b"Connection", b"upgrade");
    } else if resp.is_informational() {
        // No Connection header on interim responses: see the doc above.
    } else if !client.keep_alive {
        write_field(out, b"Connection", b"close");
    } else if client.version == Version::Http10 {
        // HTTP/1.0 closes by default: say explicitly that we will not.
        write_field(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

fn is_named(h: Header<'_>, name: &str) -> bool {
    h.is(name)
}

/// One of the fixed hop-by-hop headers, or named in a `Connection` field of
/// the same message (and not one we refuse to strip that way).
fn is_hop_by_hop(h: Header<'_>, headers: &Fields) -> bool {
    if HOP_BY_HOP.iter().any(|name| is_named(h, name)) {
        return true;
    }
    if NEVER_STRIPPED_BY_NOMINATION
        .iter()
        .any(|name| is_named(h, name))
    {
        return false;
    }
    headers
        .iter()
        .filter(|c| is_named(*c, "Connection"))
        .flat_map(|c| list_elements(c.value))
        .any(|nominated| nominated.eq_ignore_ascii_case(h.name))
}

/// The address as `Display` writes it. An IPv4 address by hand: four
/// passes through the formatting machinery were about 470 instructions, a
/// fortieth of a whole proxied request (lesson `13-measuring`).
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Write every non-empty `name` value, joined with ", " (several lines of a
/// list field mean the same as one line, RFC 9110 section 5.3). Returns
/// whether anything was written.
fn write_joined(out: &mut Vec<u8>, headers: &Fields, name: &str) -> bool {
    let mut wrote = false;
    for h in headers
        .iter()
        .filter(|h| is_named(*h, name) && !h.value.is_empty())
    {
        if wrote {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(h.value);
        wrote = true;
    }
    wrote
}

/// `Via: <earlier hops>, 1.1 ferroxy`: the list records every proxy on the
/// path in order, so ours goes last.
fn write_via(out: &mut Vec<u8>, headers: &Fields) {
    out.extend_from_slice(b"Via: ");
    if write_joined(out, headers, "Via") {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(VIA_ENTRY);
    out.extend_from_slice(b"\r\n");
}
