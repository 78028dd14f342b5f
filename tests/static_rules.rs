//! The sans-IO rules of serving a static file: types, validators, dates,
//! conditional requests, ranges and the response heads they produce.

use ferroxy::files::rules::*;

const META: FileMeta = FileMeta {
    len: 1000,
    modified_secs: 784_111_777,
    modified_nanos: 5,
    inode: 42,
};

fn tag() -> String {
    etag(&META)
}

fn with(c: Conditions) -> Answer {
    decide(true, &c, &META, &tag())
}

fn range(r: &str) -> Answer {
    with(Conditions {
        range: Some(r),
        ..Default::default()
    })
}

fn range_len(r: &str, len: u64) -> Answer {
    let meta = FileMeta { len, ..META };
    let c = Conditions {
        range: Some(r),
        ..Default::default()
    };
    decide(true, &c, &meta, &etag(&meta))
}

fn part(start: u64, end: u64) -> Answer {
    Answer::Partial { start, end }
}

/// Media types follow the extension, ignore its case, and name a charset only for text.
#[test]
fn content_types_by_extension() {
    assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
    assert_eq!(content_type("a/b/INDEX.HTM"), "text/html; charset=utf-8");
    assert_eq!(content_type("app.Js"), "text/javascript; charset=utf-8");
    assert_eq!(content_type("data.json"), "application/json; charset=utf-8");
    assert_eq!(content_type("logo.PNG"), "image/png");
    assert_eq!(content_type("photo.jpeg"), "image/jpeg");
    assert_eq!(content_type("photo.JPG"), "image/jpeg");
    assert_eq!(content_type("font.woff2"), "font/woff2");
    assert_eq!(content_type("mod.wasm"), "application/wasm");
    assert_eq!(content_type("x.tar.gz"), "application/gzip");
    for ext in ["css", "mjs", "txt", "xml", "svg", "md", "csv"] {
        let t = content_type(&format!("f.{ext}"));
        assert!(t.ends_with("; charset=utf-8"), "{ext}: {t}");
    }
    for ext in [
        "gif", "webp", "ico", "avif", "pdf", "woff", "ttf", "otf", "mp4", "webm", "mp3", "ogg",
        "wav", "zip", "map",
    ] {
        let t = content_type(&format!("f.{ext}"));
        assert_ne!(t, "application/octet-stream", "{ext}");
        assert!(!t.contains("charset"), "{ext}: {t}");
    }
    assert_eq!(content_type("README"), "application/octet-stream");
    assert_eq!(content_type("dir.d/README"), "application/octet-stream");
    assert_eq!(content_type("x.unknownext"), "application/octet-stream");
    assert_eq!(content_type(""), "application/octet-stream");
}

/// The ETag is strong, quoted, built from inode, length and mtime, and stable.
#[test]
fn etag_is_strong_and_stable() {
    let t = tag();
    assert!(t.starts_with('"') && t.ends_with('"') && !t.starts_with("W/"));
    assert_eq!(t, format!("\"2a-3e8-{:x}\"", 784_111_777_000_000_005u64));
    assert_eq!(t, etag(&META));
    assert_ne!(t, etag(&FileMeta { len: 999, ..META }));
    assert_ne!(t, etag(&FileMeta { inode: 43, ..META }));
    assert_ne!(
        t,
        etag(&FileMeta {
            modified_nanos: 6,
            ..META
        })
    );
}

/// Known instants format as IMF-fixdate, including a leap day and a date past 2038.
#[test]
fn http_date_known_values() {
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(http_date(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 GMT");
    assert_eq!(http_date(2_147_483_648), "Tue, 19 Jan 2038 03:14:08 GMT");
    assert_eq!(http_date(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
    assert_eq!(http_date(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
}

/// Parsing what we format gives back the same second, across centuries.
#[test]
fn http_date_round_trips() {
    let mut x: i64 = -2_208_988_800; // 1900
    while x < 32_503_680_000 {
        // 3000
        assert_eq!(parse_http_date(&http_date(x)), Some(x), "{}", http_date(x));
        x += 7_777_777;
    }
    for x in [
        0,
        1,
        59,
        86_399,
        86_400,
        951_868_799,
        2_147_483_647,
        2_147_483_648,
    ] {
        assert_eq!(parse_http_date(&http_date(x)), Some(x));
    }
}

/// All three date forms of RFC 9110 5.6.7 are accepted; anything else is not.
#[test]
fn http_date_three_forms_and_garbage() {
    let t = Some(784_111_777);
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
    assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
    assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
    assert_eq!(parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT "), t);
    for bad in [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 00:00:00 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08.49.37 GMT",
        "Sun, 0x Nov 1994 08:49:37 GMT",
        "Sund, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94  ",
        "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        "1994-11-06T08:49:37Z",
        "784111777",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad:?}");
    }
}

/// If-None-Match compares weakly across a list, `*` matches, a miss sends the file.
#[test]
fn if_none_match() {
    let t = tag();
    let inm = |v: &str| {
        with(Conditions {
            if_none_match: Some(v),
            ..Default::default()
        })
    };
    assert_eq!(inm(&t), Answer::NotModified);
    assert_eq!(inm("\"other\""), Answer::Whole);
    assert_eq!(inm(&format!("\"a\", \"b,c\",{t}")), Answer::NotModified);
    assert_eq!(inm("\"a\", \"b\""), Answer::Whole);
    assert_eq!(inm(&format!("W/{t}")), Answer::NotModified);
    assert_eq!(inm("*"), Answer::NotModified);
    assert_eq!(inm(" * "), Answer::NotModified);
    assert_eq!(inm(""), Answer::Whole);
    assert_eq!(inm("garbage"), Answer::Whole);
    assert_eq!(inm(&t[..t.len() - 1]), Answer::Whole);
}

/// A present If-None-Match that misses silences If-Modified-Since.
#[test]
fn if_none_match_overrides_if_modified_since() {
    let fresh = http_date(META.modified_secs + 10);
    let c = Conditions {
        if_none_match: Some("\"other\""),
        if_modified_since: Some(&fresh),
        ..Default::default()
    };
    assert_eq!(with(c), Answer::Whole);
    let c = Conditions {
        if_modified_since: Some(&fresh),
        ..Default::default()
    };
    assert_eq!(with(c), Answer::NotModified);
}

/// If-Modified-Since: unchanged since then is 304, changed or garbage sends the file.
#[test]
fn if_modified_since() {
    let ims = |v: &str| {
        with(Conditions {
            if_modified_since: Some(v),
            ..Default::default()
        })
    };
    let s = META.modified_secs;
    assert_eq!(ims(&http_date(s - 1)), Answer::Whole);
    assert_eq!(ims(&http_date(s)), Answer::NotModified);
    assert_eq!(ims(&http_date(s + 1)), Answer::NotModified);
    assert_eq!(ims("Sunday, 06-Nov-94 08:49:37 GMT"), Answer::NotModified);
    assert_eq!(ims("not a date"), Answer::Whole);
    assert_eq!(ims(""), Answer::Whole);
}

/// Every single-range form, with clamping, and the 416 cases.
#[test]
fn range_forms() {
    assert_eq!(range("bytes=0-99"), part(0, 99));
    assert_eq!(range("bytes=10-10"), part(10, 10));
    assert_eq!(range("bytes=500-"), part(500, 999));
    assert_eq!(range("bytes=0-"), part(0, 999));
    assert_eq!(range("bytes=-100"), part(900, 999));
    assert_eq!(range("bytes=-1000"), part(0, 999));
    assert_eq!(range("bytes=-5000"), part(0, 999));
    assert_eq!(range("bytes=900-5000"), part(900, 999));
    assert_eq!(range("bytes=999-999"), part(999, 999));
    assert_eq!(range("bytes=-0"), Answer::Unsatisfiable);
    assert_eq!(range("bytes=1000-"), Answer::Unsatisfiable);
    assert_eq!(range("bytes=1000-2000"), Answer::Unsatisfiable);
    assert_eq!(range("bytes=5000-"), Answer::Unsatisfiable);
}

/// Ranges we do not understand are ignored, so the whole file is sent.
#[test]
fn range_invalid_is_ignored() {
    for bad in [
        "bytes=5-2",
        "bytes=0-1,5-6",
        "bytes=0-1,",
        "items=0-1",
        "bytes 0-1",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=a-5",
        "bytes=1-b",
        "bytes=+1-5",
        "bytes=1-5-",
        "bytes=1 2-5",
        "",
        "bytes=\u{e9}-1",
    ] {
        assert_eq!(range(bad), Answer::Whole, "{bad:?}");
    }
}

/// The unit is case-insensitive and whitespace around tokens is allowed.
#[test]
fn range_case_and_spaces() {
    assert_eq!(range("Bytes=0-9"), part(0, 9));
    assert_eq!(range("BYTES=0-9"), part(0, 9));
    assert_eq!(range(" bytes = 0 - 9 "), part(0, 9));
    assert_eq!(range("bytes=\t-10"), part(990, 999));
}

/// Numbers too long for u64 neither overflow nor panic.
#[test]
fn range_huge_numbers() {
    let huge = "99999999999999999999999999";
    assert_eq!(range(&format!("bytes={huge}-")), Answer::Unsatisfiable);
    assert_eq!(
        range(&format!("bytes={huge}-{huge}")),
        Answer::Unsatisfiable
    );
    assert_eq!(range(&format!("bytes=5-{huge}")), part(5, 999));
    assert_eq!(range(&format!("bytes=-{huge}")), part(0, 999));
    assert_eq!(range("bytes=18446744073709551615-"), Answer::Unsatisfiable);
    assert_eq!(
        range_len("bytes=0-18446744073709551615", u64::MAX),
        part(0, u64::MAX - 1)
    );
}

/// An empty file ignores Range; a one-byte file serves its byte.
#[test]
fn range_on_tiny_files() {
    assert_eq!(range_len("bytes=0-0", 0), Answer::Whole);
    assert_eq!(range_len("bytes=-5", 0), Answer::Whole);
    assert_eq!(range_len("bytes=0-0", 1), part(0, 0));
    assert_eq!(range_len("bytes=-5", 1), part(0, 0));
    assert_eq!(range_len("bytes=1-", 1), Answer::Unsatisfiable);
}

/// If-Range lets a slice through only for a strong tag match or the exact date.
#[test]
fn if_range() {
    let t = tag();
    let ir = |v: &str| {
        with(Conditions {
            range: Some("bytes=0-9"),
            if_range: Some(v),
            ..Default::default()
        })
    };
    assert_eq!(ir(&t), part(0, 9));
    assert_eq!(ir(&format!("W/{t}")), Answer::Whole);
    assert_eq!(ir("\"other\""), Answer::Whole);
    assert_eq!(ir(&http_date(META.modified_secs)), part(0, 9));
    assert_eq!(ir(&http_date(META.modified_secs - 1)), Answer::Whole);
    assert_eq!(ir(&http_date(META.modified_secs + 1)), Answer::Whole);
    assert_eq!(ir("garbage"), Answer::Whole);
    // A weak ETag of our own can never satisfy If-Range either.
    let weak = format!("W/{t}");
    let c = Conditions {
        range: Some("bytes=0-9"),
        if_range: Some(&weak),
        ..Default::default()
    };
    assert_eq!(decide(true, &c, &META, &weak), Answer::Whole);
}

/// HEAD (and any non-GET) ignores Range but still honours validators.
#[test]
fn head_ignores_range() {
    let t = tag();
    let c = Conditions {
        range: Some("bytes=0-9"),
        ..Default::default()
    };
    assert_eq!(decide(false, &c, &META, &t), Answer::Whole);
    let c = Conditions {
        if_none_match: Some(&t),
        range: Some("bytes=0-9"),
        ..Default::default()
    };
    assert_eq!(decide(false, &c, &META, &t), Answer::NotModified);
}

/// A 304 wins over a Range request.
#[test]
fn not_modified_beats_range() {
    let t = tag();
    let c = Conditions {
        if_none_match: Some(&t),
        range: Some("bytes=0-9"),
        ..Default::default()
    };
    assert_eq!(with(c), Answer::NotModified);
}

/// Parses a head with httparse and returns (status, reason, headers in order).
fn parse(head: &Head) -> (u16, String, Vec<(String, String)>) {
    assert!(head.bytes.ends_with(b"\r\n\r\n"));
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let status = res.parse(&head.bytes).expect("valid head");
    assert_eq!(status, httparse::Status::Complete(head.bytes.len()));
    let code = res.code.expect("code");
    assert_eq!(code, head.status);
    let fields = res
        .headers
        .iter()
        .map(|h| {
            let v = std::str::from_utf8(h.value).expect("utf-8 value");
            (h.name.to_string(), v.to_string())
        })
        .collect();
    (code, res.reason.unwrap_or("").to_string(), fields)
}

fn names(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(n, _)| n.as_str()).collect()
}

fn value<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name}"))
}

fn date_is_now(fields: &[(String, String)]) {
    let date = parse_http_date(value(fields, "Date")).expect("Date parses");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    assert!((now - date).abs() < 60);
}

/// A 200 head names type, length, validators and range support; HEAD gets no body.
#[test]
fn head_200() {
    let t = tag();
    let head = response_head(Answer::Whole, &META, &t, "text/plain", true, true);
    let (code, reason, f) = parse(&head);
    assert_eq!((code, reason.as_str()), (200, "OK"));
    assert_eq!(
        names(&f),
        [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "ETag",
            "Accept-Ranges",
            "Connection"
        ]
    );
    assert_eq!(value(&f, "Server"), "ferroxy");
    date_is_now(&f);
    assert_eq!(value(&f, "Content-Type"), "text/plain");
    assert_eq!(value(&f, "Content-Length"), "1000");
    assert_eq!(value(&f, "Last-Modified"), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(value(&f, "ETag"), t);
    assert_eq!(value(&f, "Accept-Ranges"), "bytes");
    assert_eq!(value(&f, "Connection"), "keep-alive");
    assert_eq!(head.body, Some((0, 1000)));

    let head = response_head(Answer::Whole, &META, &t, "text/plain", false, false);
    let (_, _, f2) = parse(&head);
    assert_eq!(names(&f2), names(&f));
    assert_eq!(value(&f2, "Content-Length"), "1000");
    assert_eq!(value(&f2, "Connection"), "close");
    assert_eq!(head.body, None);

    let empty = FileMeta { len: 0, ..META };
    let head = response_head(Answer::Whole, &empty, &t, "text/plain", true, true);
    assert_eq!(value(&parse(&head).2, "Content-Length"), "0");
    assert_eq!(head.body, Some((0, 0)));
}

/// A 206 head gives the part's length and its Content-Range; the body is that slice.
#[test]
fn head_206() {
    let t = tag();
    let head = response_head(part(10, 19), &META, &t, "image/png", true, false);
    let (code, reason, f) = parse(&head);
    assert_eq!((code, reason.as_str()), (206, "Partial Content"));
    assert_eq!(
        names(&f),
        [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "ETag",
            "Accept-Ranges",
            "Content-Range",
            "Connection"
        ]
    );
    assert_eq!(value(&f, "Content-Length"), "10");
    assert_eq!(value(&f, "Content-Range"), "bytes 10-19/1000");
    assert_eq!(value(&f, "Content-Type"), "image/png");
    assert_eq!(value(&f, "Connection"), "close");
    assert_eq!(head.body, Some((10, 20)));
    let head = response_head(part(10, 19), &META, &t, "image/png", false, false);
    assert_eq!(head.body, None);
}

/// A 304 head carries only the validators: no length, no type, no body.
#[test]
fn head_304() {
    let t = tag();
    let head = response_head(Answer::NotModified, &META, &t, "text/plain", true, true);
    let (code, reason, f) = parse(&head);
    assert_eq!((code, reason.as_str()), (304, "Not Modified"));
    assert_eq!(
        names(&f),
        ["Server", "Date", "ETag", "Last-Modified", "Connection"]
    );
    assert_eq!(value(&f, "ETag"), t);
    assert_eq!(value(&f, "Last-Modified"), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(head.body, None);
}

/// A 416 head tells the real size and has an empty body.
#[test]
fn head_416() {
    let t = tag();
    let head = response_head(Answer::Unsatisfiable, &META, &t, "text/plain", true, true);
    let (code, reason, f) = parse(&head);
    assert_eq!((code, reason.as_str()), (416, "Range Not Satisfiable"));
    assert_eq!(
        names(&f),
        [
            "Server",
            "Date",
            "Content-Range",
            "Content-Length",
            "Connection"
        ]
    );
    assert_eq!(value(&f, "Content-Range"), "bytes */1000");
    assert_eq!(value(&f, "Content-Length"), "0");
    assert_eq!(head.body, None);
}

/// A Partial that does not fit the file is refused rather than written as a lying head.
#[test]
fn head_rejects_impossible_partial() {
    let t = tag();
    for a in [part(5, 2), part(0, 1000)] {
        let head = response_head(a, &META, &t, "text/plain", true, true);
        assert_eq!(head.status, 416);
        assert_eq!(head.body, None);
    }
}

/// decide and response_head compose: the body range is exactly the asked bytes.
#[test]
fn decide_then_head() {
    let t = tag();
    let c = Conditions {
        range: Some("bytes=-10"),
        ..Default::default()
    };
    let head = response_head(decide(true, &c, &META, &t), &META, &t, "x/y", true, true);
    assert_eq!(head.status, 206);
    assert_eq!(head.body, Some((990, 1000)));
    assert_eq!(
        value(&parse(&head).2, "Content-Range"),
        "bytes 990-999/1000"
    );
}
