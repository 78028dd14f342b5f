//! The sans-IO rules of serving a file: given what the file system said about
//! a file and what the request asked for, decide the answer and write its head.
//! Nothing here touches a disk or a socket, so every rule is a plain function
//! a test can call with made-up metadata.
//!
//! Two ideas carry the module:
//!
//! * Conditional requests (RFC 9110 section 13). A client that already holds a
//!   copy sends a validator back: the `ETag` we gave it (`If-None-Match`) or
//!   the `Last-Modified` date (`If-Modified-Since`). If the file is unchanged
//!   we answer `304 Not Modified` with no body and the client reuses its copy.
//!   The entity tag wins over the date because it is exact, while a date has
//!   one-second resolution.
//! * Range requests (RFC 9110 section 14). `Range: bytes=a-b` asks for a slice
//!   (resuming a download, seeking in a video); the answer is
//!   `206 Partial Content`, or `416 Range Not Satisfiable` when the slice
//!   starts past the end. `If-Range` makes that safe: "send the slice only if
//!   the file is still the one I started with, otherwise send all of it".
//!   A Range we cannot understand is ignored, which is always safe: the
//!   client simply gets the whole file.
//!
//! Dates travel as IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); the calendar
//! arithmetic is written by hand to show there is no magic in it.
//!
//! Lesson: lessons/16-static-files.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the file system told us about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub len: u64,
    pub modified_secs: i64,
    pub modified_nanos: u32,
    pub inode: u64,
}

/// Extension to media type. Text types name their charset so a browser does
/// not have to guess (and guess wrong) from the bytes.
#[rustfmt::skip]
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"), ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"), ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json; charset=utf-8"), ("txt", "text/plain; charset=utf-8"),
    ("xml", "application/xml; charset=utf-8"), ("svg", "image/svg+xml; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"), ("csv", "text/csv; charset=utf-8"),
    ("map", "application/json"),
    ("png", "image/png"), ("jpg", "image/jpeg"), ("jpeg", "image/jpeg"), ("gif", "image/gif"),
    ("webp", "image/webp"), ("ico", "image/x-icon"), ("avif", "image/avif"),
    ("wasm", "application/wasm"), ("pdf", "application/pdf"),
    ("woff", "font/woff"), ("woff2", "font/woff2"), ("ttf", "font/ttf"), ("otf", "font/otf"),
    ("mp4", "video/mp4"), ("webm", "video/webm"),
    ("mp3", "audio/mpeg"), ("ogg", "audio/ogg"), ("wav", "audio/wav"),
    ("zip", "application/zip"), ("gz", "application/gzip"), ("tar", "application/x-tar"),
];

/// `Content-Type` by extension (case-insensitive), default
/// "application/octet-stream".
pub fn content_type(path: &str) -> &'static str {
    // Only the last path segment has an extension: "a.d/README" has none.
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    // A linear scan with `eq_ignore_ascii_case` avoids lowercasing into a
    // new String for every request; the table is small.
    TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or("application/octet-stream", |&(_, t)| t)
}

/// A strong ETag: `"<inode hex>-<len hex>-<mtime in nanoseconds hex>"`.
pub fn etag(meta: &FileMeta) -> String {
    // Strong is honest here: a rewrite changes the mtime or the length, and a
    // file replaced by rename changes the inode. i128 keeps nanoseconds exact
    // far beyond the year 2262, where i64 nanoseconds would overflow.
    let nanos = i128::from(meta.modified_secs) * 1_000_000_000 + i128::from(meta.modified_nanos);
    format!("\"{:x}-{:x}-{:x}\"", meta.inode, meta.len, nanos)
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
pub fn http_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // Day 0 (1970-01-01) was a Thursday, index 4 when Sunday is 0.
    let weekday = DAYS[(days + 4).rem_euclid(7) as usize];
    format!(
        "{weekday}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        MONTHS[m as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses IMF-fixdate and the obsolete RFC 850 and asctime forms
/// (RFC 9110 5.6.7). None on anything else.
pub fn parse_http_date(s: &str) -> Option<i64> {
    // Bytes, not chars: slicing a &str at fixed offsets could panic on
    // non-ASCII input, slicing bytes cannot.
    let b = s.trim().as_bytes();
    if b.len() == 29 && b.get(3) == Some(&b',') {
        // "Sun, 06 Nov 1994 08:49:37 GMT"
        day_name(&b[..3], &DAYS)?;
        expect(
            b,
            &[(3, b','), (4, b' '), (7, b' '), (11, b' '), (16, b' ')],
        )?;
        (&b[25..] == b" GMT").then_some(())?;
        let year = i64::from(digits(&b[12..16])?);
        return assemble(year, month(&b[8..11])?, digits(&b[5..7])?, &b[17..25]);
    }
    if let Some(comma) = b.iter().position(|&c| c == b',') {
        // "Sunday, 06-Nov-94 08:49:37 GMT"
        day_name(&b[..comma], &LONG_DAYS)?;
        let r = &b[comma..];
        (r.len() == 24 && &r[20..] == b" GMT").then_some(())?;
        expect(r, &[(1, b' '), (4, b'-'), (8, b'-'), (11, b' ')])?;
        let year = two_digit_year(digits(&r[9..11])?);
        return assemble(year, month(&r[5..8])?, digits(&r[2..4])?, &r[12..20]);
    }
    if b.len() == 24 {
        // "Sun Nov  6 08:49:37 1994": the day is space-padded, not zero-padded.
        day_name(&b[..3], &DAYS)?;
        expect(b, &[(3, b' '), (7, b' '), (10, b' '), (19, b' ')])?;
        let day = if b[8] == b' ' { &b[9..10] } else { &b[8..10] };
        let year = i64::from(digits(&b[20..24])?);
        return assemble(year, month(&b[4..7])?, digits(day)?, &b[11..19]);
    }
    None
}

fn day_name(b: &[u8], names: &[&str; 7]) -> Option<()> {
    names.iter().any(|n| n.as_bytes() == b).then_some(())
}

fn month(b: &[u8]) -> Option<u32> {
    let i = MONTHS.iter().position(|m| m.as_bytes() == b)?;
    Some(i as u32 + 1)
}

fn expect(b: &[u8], at: &[(usize, u8)]) -> Option<()> {
    at.iter().all(|&(i, c)| b.get(i) == Some(&c)).then_some(())
}

/// A short run of ASCII digits (at most 4 here, so no overflow).
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
}

/// RFC 9110 5.6.7: a two-digit year that would land more than 50 years in
/// the future means the most recent past year with those digits.
fn two_digit_year(yy: u32) -> i64 {
    let (now_year, _, _) = civil_from_days(now_secs().div_euclid(86_400));
    let year = now_year - now_year.rem_euclid(100) + i64::from(yy);
    year - 100 * i64::from(year > now_year + 50)
}

/// Validates the fields and turns them into seconds since the epoch.
fn assemble(year: i64, month: u32, day: u32, time: &[u8]) -> Option<i64> {
    expect(time, &[(2, b':'), (5, b':')])?;
    let (h, m, s) = (
        digits(&time[..2])?,
        digits(&time[3..5])?,
        digits(&time[6..])?,
    );
    // Second 60 is a leap second, which the grammar allows.
    if h > 23 || m > 59 || s > 60 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let clock = i64::from(h * 3600 + m * 60 + s);
    Some(days_from_civil(year, month, day) * 86_400 + clock)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms: shift the year to start in March so the leap
// day falls at the end, then count 400-year eras of exactly 146 097 days.

// `civil_from_days` is the access log's (one copy of the calendar).
use crate::access_log::civil_from_days;

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now_secs() -> i64 {
    // A clock before 1970 is a broken clock; the epoch is a harmless answer.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The request fields that matter, as raw header values (None when absent).
#[derive(Clone, Copy, Debug, Default)]
pub struct Conditions<'a> {
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 304: the client's copy is current.
    NotModified,
    /// 200: the whole file.
    Whole,
    /// 206: bytes `start..=end` of the file.
    Partial { start: u64, end: u64 },
    /// 416: the range starts past the end of the file.
    Unsatisfiable,
}

/// Decides the answer in the order of RFC 9110 13.2.2. `is_get`: Range is
/// honoured only for GET (HEAD and others get Whole).
pub fn decide(is_get: bool, c: &Conditions, meta: &FileMeta, etag: &str) -> Answer {
    if let Some(inm) = c.if_none_match {
        if none_match_hits(inm, etag) {
            return Answer::NotModified;
        }
        // A present If-None-Match silences If-Modified-Since: the tag is the
        // more precise validator and it said "changed".
    } else if let Some(since) = c.if_modified_since.and_then(parse_http_date)
        && meta.modified_secs <= since
    {
        return Answer::NotModified;
    }
    match c.range {
        Some(range) if is_get && meta.len > 0 => {
            if c.if_range.is_some_and(|v| !if_range_holds(v, meta, etag)) {
                return Answer::Whole;
            }
            parse_range(range, meta.len)
        }
        _ => Answer::Whole,
    }
}

/// The opaque part of an entity tag: weak comparison ignores `W/`.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Weak comparison against each tag of a list (RFC 9110 8.8.3.2). The list
/// is walked tag by tag rather than split on commas, because a comma is a
/// legal character inside a quoted tag.
fn none_match_hits(value: &str, etag: &str) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    let ours = opaque(etag);
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let tag = opaque(rest);
        // Malformed input or the end of the list: nothing (more) can match.
        let Some(inner) = tag.strip_prefix('"') else {
            return false;
        };
        let Some(close) = inner.find('"') else {
            return false;
        };
        if tag[..close + 2] == *ours {
            return true;
        }
        rest = &inner[close + 1..];
    }
}

/// If-Range (RFC 9110 13.1.5): an entity tag must match strongly, because a
/// weak tag promises "equivalent", not "byte-identical", and splicing a slice
/// of one file onto another corrupts it. A date must match exactly.
fn if_range_holds(value: &str, meta: &FileMeta, etag: &str) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        !value.starts_with("W/") && !etag.starts_with("W/") && value == etag
    } else {
        parse_http_date(value) == Some(meta.modified_secs)
    }
}

/// One `bytes=` range-spec (RFC 9110 14.1.2). Anything we do not understand,
/// including several ranges (multipart answers are out of scope), yields
/// Whole: ignoring a Range header is always a correct answer.
fn parse_range(value: &str, len: u64) -> Answer {
    let spec = value
        .split_once('=')
        .filter(|(unit, spec)| unit.trim().eq_ignore_ascii_case("bytes") && !spec.contains(','));
    let Some((first, last)) = spec.and_then(|(_, spec)| spec.split_once('-')) else {
        return Answer::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    // An open end, like a suffix, runs to the last byte: u64::MAX is clamped below.
    let (start, end) = if first.is_empty() {
        match position(last) {
            // "The last 0 bytes" is a valid request for nothing.
            Some(0) => return Answer::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), u64::MAX),
            None => return Answer::Whole,
        }
    } else {
        let end = if last.is_empty() {
            Some(u64::MAX)
        } else {
            position(last)
        };
        match (position(first), end) {
            (Some(start), Some(end)) if end >= start => (start, end),
            _ => return Answer::Whole,
        }
    };
    if start >= len {
        return Answer::Unsatisfiable;
    }
    Answer::Partial {
        start,
        end: end.min(len - 1), // callers guarantee len > 0
    }
}

/// A byte position: ASCII digits only. Too many digits saturate at u64::MAX,
/// which is past the end of any file: a huge start is unsatisfiable, a huge
/// end clamps to the last byte, and no arithmetic can overflow.
fn position(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, c| {
        n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    }))
}

/// The whole response head for an answer, ready to write, and the byte
/// range of the file to send after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub bytes: Vec<u8>,
    /// `(start, end exclusive)`; None for 304, 416 and HEAD requests.
    pub body: Option<(u64, u64)>,
}

/// Writes the head for `answer`. `send_body` is false for HEAD, which gets the
/// same fields as GET (RFC 9110 9.3.2) but no bytes after them.
pub fn response_head(
    answer: Answer,
    meta: &FileMeta,
    etag: &str,
    content_type: &str,
    send_body: bool,
    keep_alive: bool,
) -> Head {
    // A range that does not fit the file would make a head that lies about
    // its body; refusing it is the only answer that cannot corrupt a client.
    let answer = match answer {
        Answer::Partial { start, end } if start > end || end >= meta.len => Answer::Unsatisfiable,
        other => other,
    };
    let (status, range) = match answer {
        Answer::NotModified => (304, None),
        Answer::Whole => (200, Some((0, meta.len))),
        Answer::Partial { start, end } => (206, Some((start, end + 1))),
        Answer::Unsatisfiable => (416, None),
    };
    let mut h = String::with_capacity(320);
    // Writing into a String cannot fail; `let _` only discards fmt's Result.
    let _ = write!(
        h,
        "HTTP/1.1 {status} {}\r\nServer: ferroxy\r\nDate: {}\r\n",
        reason(status),
        http_date(now_secs())
    );
    let modified = http_date(meta.modified_secs);
    match answer {
        Answer::NotModified => {
            // 304 carries the validators so the client can refresh its cache
            // entry, but no length: there is no body to describe.
            let _ = write!(h, "ETag: {etag}\r\nLast-Modified: {modified}\r\n");
        }
        Answer::Unsatisfiable => {
            // `*/len` tells the client how big the file really is.
            let _ = write!(
                h,
                "Content-Range: bytes */{}\r\nContent-Length: 0\r\n",
                meta.len
            );
        }
        Answer::Whole | Answer::Partial { .. } => {
            let (start, end) = range.unwrap_or((0, meta.len));
            let _ = write!(
                h,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Last-Modified: {modified}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n",
                end - start
            );
            if let Answer::Partial { start, end } = answer {
                let _ = write!(h, "Content-Range: bytes {start}-{end}/{}\r\n", meta.len);
            }
        }
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(h, "Connection: {connection}\r\n\r\n");
    Head {
        status,
        bytes: h.into_bytes(),
        body: range.filter(|_| send_body),
    }
}

/// The shared reason table, plus the two statuses only file serving needs
/// (the table answers "Unknown" for them).
fn reason(status: u16) -> &'static str {
    match status {
        206 => "Partial Content",
        416 => "Range Not Satisfiable",
        _ => crate::http::errors::reason(status),
    }
}
