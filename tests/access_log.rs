//! The access log line (lesson 13), tested sans-IO through
//! `ferroxy::access_log::format_line` with a pinned clock.
//!
//! The format is a promise to scripts (`src/access_log.rs` says it is
//! stable), so these stories compare whole lines, byte for byte: the
//! documented example, the clock, every field's `-` case, and the escaping
//! that keeps one request on one line whatever bytes a client sends.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferroxy::access_log::{AccessLine, format_line};
use ferroxy::http::framing::BodyFraming;
use ferroxy::http::head::{HeadLimits, Version};
use ferroxy::http::request::{RequestHead, parse_request};

/// 2026-11-22 06:16:23 UTC, the moment of the example in `src/access_log.rs`.
const EXAMPLE_SECS: u64 = 1_795_328_183;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A request head as the parser makes it from these exact bytes.
fn parsed(raw: &[u8]) -> RequestHead {
    parse_request(raw, &HeadLimits::default())
        .unwrap_or_else(|e| panic!("{:?} should parse: {e:?}", String::from_utf8_lossy(raw)))
        .expect("a complete head")
}

/// A request head built by hand, for bytes the parser would refuse: the
/// formatter must not rely on the parser to keep lines clean.
fn built(method: &str, target: &str, headers: &[(&str, &[u8])]) -> RequestHead {
    RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: Version::Http11,
        headers: headers.iter().copied().collect(),
        len: 0,
        body: BodyFraming::Empty,
        keep_alive: true,
        expect_continue: false,
        upgrade: None,
    }
}

/// The line of a plain proxied request, with every field given; stories
/// change what they are about.
fn proxied(request: &RequestHead) -> AccessLine<'_> {
    AccessLine {
        client: addr("127.0.0.1:50312"),
        request: Some(request),
        status: 200,
        bytes_out: 379,
        bytes_in: 0,
        upstream: Some(addr("127.0.0.1:9001")),
        upstream_status: Some(200),
        request_time: Duration::from_micros(1_234),
        connect_time: Some(Duration::from_micros(40)),
        header_time: Some(Duration::from_micros(1_100)),
        tls: None,
    }
}

/// The example in `src/access_log.rs`, reproduced: a curl GET, proxied to
/// 9001, answered 200. The documented line is exactly what the code writes
/// (if one changes, the other must).
#[test]
fn a_proxied_request_gives_the_documented_line() {
    let request = parsed(
        b"GET /anything HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    );
    let line = format_line(&proxied(&request), at(EXAMPLE_SECS));
    assert_eq!(
        line,
        "127.0.0.1 - - [22/Nov/2026:06:16:23 +0000] \"GET /anything HTTP/1.1\" 200 379 \"-\" \
         \"curl/7.88.1\" upstream=127.0.0.1:9001 upstream_status=200 request_time=0.001 \
         upstream_connect_time=0.000 upstream_header_time=0.001 bytes_in=0"
    );
}

/// Common Log Format time in UTC, checked against `date -u` on dates a
/// hand-written calendar gets wrong: the epoch, a leap day (2000 is leap,
/// divisible by 400), 2100 (not leap: Feb 28 is followed by Mar 1), a year's
/// last second and the next. Fractions of a second are dropped, not
/// rounded.
#[test]
fn the_time_is_utc_in_common_log_format() {
    let request = parsed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    for (secs, want) in [
        (0, "[01/Jan/1970:00:00:00 +0000]"),
        (951_827_696, "[29/Feb/2000:12:34:56 +0000]"),
        (4_107_542_399, "[28/Feb/2100:23:59:59 +0000]"),
        (4_107_542_400, "[01/Mar/2100:00:00:00 +0000]"),
        (1_704_067_199, "[31/Dec/2023:23:59:59 +0000]"),
        (1_704_067_200, "[01/Jan/2024:00:00:00 +0000]"),
    ] {
        let line = format_line(&proxied(&request), at(secs));
        assert!(
            line.starts_with(&format!("127.0.0.1 - - {want} ")),
            "at {secs} s after the epoch the line should start with {want}:\n{line}"
        );
    }
    let late = at(1_704_067_199) + Duration::from_millis(999);
    let line = format_line(&proxied(&request), late);
    assert!(
        line.contains("[31/Dec/2023:23:59:59 +0000]"),
        "23:59:59.999 is still 23:59:59:\n{line}"
    );
}

/// The proxy refused a request whose head never parsed (a 400, a 408):
/// there is no request line, no Referer, no User-Agent, no upstream. Each
/// missing field is a `-`, so the line keeps its shape and a script's
/// field count stays right.
#[test]
fn a_request_whose_head_never_parsed_is_all_dashes() {
    let line = AccessLine {
        client: addr("127.0.0.1:50400"),
        request: None,
        status: 400,
        bytes_out: 139,
        bytes_in: 0,
        upstream: None,
        upstream_status: None,
        request_time: Duration::ZERO,
        connect_time: None,
        header_time: None,
        tls: None,
    };
    assert_eq!(
        format_line(&line, at(EXAMPLE_SECS)),
        "127.0.0.1 - - [22/Nov/2026:06:16:23 +0000] \"-\" 400 139 \"-\" \"-\" upstream=- \
         upstream_status=- request_time=0.000 upstream_connect_time=- upstream_header_time=- \
         bytes_in=0"
    );
}

/// Our own 502 after the upstream hung up: the line names the upstream
/// that was tried and how long the connect took, but it never answered, so
/// `upstream_status` and `upstream_header_time` are `-`. The client got 502
/// while the upstream said nothing: the two statuses are kept apart.
#[test]
fn our_own_502_names_the_upstream_but_not_an_upstream_status() {
    let request = parsed(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
    let line = AccessLine {
        status: 502,
        bytes_out: 155,
        bytes_in: 5,
        upstream_status: None,
        header_time: None,
        tls: None,
        request_time: Duration::from_millis(3),
        connect_time: Some(Duration::from_millis(1)),
        ..proxied(&request)
    };
    assert_eq!(
        format_line(&line, at(EXAMPLE_SECS)),
        "127.0.0.1 - - [22/Nov/2026:06:16:23 +0000] \"POST /orders HTTP/1.1\" 502 155 \"-\" \"-\" \
         upstream=127.0.0.1:9001 upstream_status=- request_time=0.003 upstream_connect_time=0.001 \
         upstream_header_time=- bytes_in=5"
    );
}

/// A client that went away before any status: status `0`, as the module
/// documents (nginx writes 499 here; ferroxy does not invent a code).
#[test]
fn a_client_gone_before_any_status_is_status_zero() {
    let request = parsed(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    let line = AccessLine {
        status: 0,
        bytes_out: 0,
        upstream_status: None,
        header_time: None,
        tls: None,
        ..proxied(&request)
    };
    let text = format_line(&line, at(EXAMPLE_SECS));
    assert!(
        text.contains(
            "\"GET /big HTTP/1.1\" 0 0 \"-\" \"-\" upstream=127.0.0.1:9001 upstream_status=- "
        ),
        "status 0 and 0 bytes:\n{text}"
    );
}

/// HTTP/1.0 is written as such; an IPv6 client is its bare address (as
/// nginx writes `$remote_addr`), an IPv6 upstream is bracketed with its
/// port; Referer and User-Agent are quoted as sent, an empty one is `-`.
#[test]
fn versions_addresses_and_optional_fields_are_written_as_they_are() {
    let request = parsed(
        b"GET /old HTTP/1.0\r\nReferer: http://example.test/from?a=1\r\nUser-Agent: \r\n\r\n",
    );
    let line = AccessLine {
        client: addr("[::1]:40000"),
        upstream: Some(addr("[::1]:9002")),
        ..proxied(&request)
    };
    let text = format_line(&line, at(EXAMPLE_SECS));
    assert_eq!(
        text,
        "::1 - - [22/Nov/2026:06:16:23 +0000] \"GET /old HTTP/1.0\" 200 379 \
         \"http://example.test/from?a=1\" \"-\" upstream=[::1]:9002 upstream_status=200 \
         request_time=0.001 upstream_connect_time=0.000 upstream_header_time=0.001 bytes_in=0"
    );
}

/// Durations are seconds with three decimals, rounded to the nearest
/// millisecond; long ones keep their whole seconds.
#[test]
fn durations_are_seconds_rounded_to_the_millisecond() {
    let request = parsed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    for (micros, want) in [
        (0, "0.000"),
        (400, "0.000"),
        (600, "0.001"),
        (1_234_567, "1.235"),
        (61_000_000, "61.000"),
    ] {
        let line = AccessLine {
            request_time: Duration::from_micros(micros),
            ..proxied(&request)
        };
        let text = format_line(&line, at(EXAMPLE_SECS));
        assert!(
            text.contains(&format!(" request_time={want} ")),
            "{micros} us should be written request_time={want}:\n{text}"
        );
    }
}

/// What a client sends goes into the line, so it must not be able to forge
/// one: a `"` would close the quoted field early, a backslash could fake an
/// escape, a tab or DEL is invisible, and bytes over 0x7f are not ASCII.
/// Each is written `\xHH` (nginx's escaping); spaces and everything else
/// printable stay as they are.
#[test]
fn quotes_backslashes_and_control_bytes_are_escaped() {
    let request = built(
        "GET",
        "/a\"b\\c d",
        &[
            ("Referer", b"say \"hi\"\\"),
            ("User-Agent", b"tab\there del\x7f caf\xc3\xa9"),
        ],
    );
    let text = format_line(&proxied(&request), at(EXAMPLE_SECS));
    for want in [
        "\"GET /a\\x22b\\x5Cc d HTTP/1.1\"",
        "\"say \\x22hi\\x22\\x5C\"",
        "\"tab\\x09here del\\x7F caf\\xC3\\xA9\"",
    ] {
        assert!(
            text.contains(want),
            "the line should contain {want}:\n{text}"
        );
    }
}

/// The whole promise of the escaping, checked for every byte value in
/// every client-controlled field at once: the line is printable ASCII
/// only (no CR or LF can split it), and it has exactly six `"`, the ones
/// around the request line, the Referer and the User-Agent.
#[test]
fn no_byte_a_client_sends_can_break_the_line_or_its_quoting() {
    for byte in 0..=255u8 {
        let evil = [b'<', byte, b'>'];
        let target = format!("/{}", String::from_utf8_lossy(&evil));
        let request = built(
            &String::from_utf8_lossy(&evil),
            &target,
            &[("Referer", &evil), ("User-Agent", &evil)],
        );
        let text = format_line(&proxied(&request), at(EXAMPLE_SECS));
        assert!(
            text.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "byte 0x{byte:02X} let a non-printable byte into the line: {text:?}"
        );
        assert_eq!(
            text.matches('"').count(),
            6,
            "byte 0x{byte:02X} changed the line's quoting: {text}"
        );
    }
}
