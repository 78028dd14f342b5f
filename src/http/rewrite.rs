//! The heads ferroxy sends on: the request toward the upstream and the
//! response toward the client, rewritten per the contract's forwarding rules.
//!
//! Hop-by-hop headers (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`,
//! `Trailer`, `Upgrade`, and every header named in `Connection`) describe one
//! TCP connection, not the message, so they stop here; the proxy then says
//! what it wants for its own connection.

use std::net::IpAddr;

use crate::http::head::{RequestHead, ResponseHead, Version};

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

/// Append to `out` the head to send upstream for `req`: always `HTTP/1.1`,
/// origin-form target, hop-by-hop headers removed, `Host` kept,
/// `X-Forwarded-For` joined and appended, `X-Forwarded-Proto` overwritten,
/// `Via: 1.1 ferroxy` added (appended to any existing Via). `Expect` is kept
/// on 1.1 requests. For an upgrade request, `Upgrade: <proto>` and
/// `Connection: upgrade` are sent.
pub fn write_request_head(req: &RequestHead, ctx: &ForwardContext<'_>, out: &mut Vec<u8>) {
    let _ = (req, ctx, out);
    todo!()
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
pub fn write_response_head(resp: &ResponseHead, client: &ClientSide, out: &mut Vec<u8>) {
    let _ = (resp, client, out);
    todo!()
}
