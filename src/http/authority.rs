//! The authority grammar: is a `Host` value (or the authority of an
//! absolute-form target) a valid RFC 3986 `uri-host [":" port]`? A plain
//! function of bytes, kept apart from the request rules because it is a
//! small grammar of its own, with its own table of cases in
//! `tests/http_request_heads.rs`.
//!
//! Why so strict: the `Host` is where a request goes, and what a cache
//! keys it under. A value two components split differently (`a.com:80@b.com`,
//! `a..com`, `[::1]x`) sends them to different places.
//!
//! Lesson: `lessons/07-parsing-heads`.

use std::net::Ipv6Addr;

/// `uri-host [ ":" port ]` (RFC 3986 section 3.2.2 and 3.2.3), checked to
/// the letter (the module doc says why):
///
/// - a bracketed IP literal: an IPv6 address or `vX.` IPvFuture;
/// - or a reg-name (which covers IPv4): unreserved, sub-delims and `%HH`,
///   in dot-separated labels, none empty, a single trailing dot allowed;
/// - then an optional port: one or more digits, at most 65535.
///
/// Userinfo (`user@host`) is refused: RFC 9110 section 4.2.4 deprecates it
/// and it is a favourite of phishing URLs.
pub(crate) fn is_valid_authority(authority: &[u8]) -> bool {
    let (host_ok, after_host) = match authority.strip_prefix(b"[") {
        Some(literal) => match literal.iter().position(|&b| b == b']') {
            Some(close) => (is_ip_literal(&literal[..close]), &literal[close + 1..]),
            None => return false,
        },
        None => {
            let end = authority
                .iter()
                .position(|&b| b == b':')
                .unwrap_or(authority.len());
            (is_reg_name(&authority[..end]), &authority[end..])
        }
    };
    let port_ok = match after_host.strip_prefix(b":") {
        Some(port) => is_port(port),
        None => after_host.is_empty(),
    };
    host_ok && port_ok
}

/// The inside of `[...]`: `IPv6address` (std's parser is exactly RFC 4291's
/// text form, with no zone id, as RFC 3986 has none) or `IPvFuture`.
fn is_ip_literal(inside: &[u8]) -> bool {
    if let Some(future) = inside.strip_prefix(b"v").or(inside.strip_prefix(b"V")) {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inside).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, non-empty, with
/// no empty label: `.`, `.a`, `a..b` are refused, `a.b.` (fully qualified)
/// is not.
fn is_reg_name(name: &[u8]) -> bool {
    let labels = name.strip_suffix(b".").unwrap_or(name);
    if labels.is_empty() || labels.split(|&b| b == b'.').any(<[u8]>::is_empty) {
        return false;
    }
    let mut rest = labels;
    while let Some((&b, after)) = rest.split_first() {
        rest = match b {
            b'%' => match after {
                [high, low, more @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    more
                }
                _ => return false,
            },
            _ if is_unreserved(b) || is_sub_delim(b) => after,
            _ => return false,
        };
    }
    true
}

/// `port = *DIGIT` in RFC 3986, but an empty port after a colon says
/// nothing a client meant to say, and a value over 65535 names no port.
fn is_port(port: &[u8]) -> bool {
    !port.is_empty()
        && port
            .iter()
            .try_fold(0u32, |value, &b| {
                let value = value * 10 + u32::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
                (value <= 65535).then_some(value)
            })
            .is_some()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}
