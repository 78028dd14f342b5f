//! The properties the fuzz targets check, in one copy shared by the
//! libFuzzer targets (`fuzz/fuzz_targets/*.rs`) and the ordinary replay test
//! (`tests/fuzz_corpus.rs`), both with `#[path = ...] mod properties;`.
//!
//! Each function takes arbitrary bytes and panics (with a message saying
//! which promise broke) if ferroxy's sans-IO HTTP code misbehaves on them:
//! a panic inside ferroxy, or an answer that contradicts another answer.
//! A panic is what libFuzzer records as a crash, and what `cargo test`
//! reports as a failure, so the same bytes fail in both places.

// Each fuzz target uses one of these functions; the replay test uses all.
#![allow(dead_code)]

use ferroxy::http::framing::{BodyFraming, BodyReader, FramingError, Step};
use ferroxy::http::head::{HeadLimits, Version, find_header, origin_form};
use ferroxy::http::request::{RequestHead, parse_request};
use ferroxy::http::response::parse_response;
use ferroxy::http::rewrite::{ForwardContext, write_request_head};

/// Limits small enough that fuzzed inputs hit them often: the 414/431
/// paths get exercised as much as the happy one.
const SMALL: HeadLimits = HeadLimits {
    max_head_bytes: 64,
    max_fields: 4,
};

/// For the re-parse of a rewritten head: the proxy adds fields and may
/// lengthen the head, and that alone must never be why it is refused.
const GENEROUS: HeadLimits = HeadLimits {
    max_head_bytes: 1 << 20,
    max_fields: 1000,
};

/// `parse_request` never panics, and an accepted head is self-delimiting:
/// its own bytes, cut at `head.len`, parse to the same request. The reactor
/// relies on that: it consumes `head.len` bytes and hands the rest to the
/// body reader, so a `len` that pointed anywhere else would shift the body.
pub fn request_head(data: &[u8]) {
    for limits in [HeadLimits::default(), SMALL] {
        if let Ok(Some(head)) = parse_request(data, &limits) {
            assert!(head.len <= data.len(), "head.len past the input");
            let again = parse_request(&data[..head.len], &limits);
            let Ok(Some(again)) = again else {
                panic!("the head's own bytes do not parse again: {again:?}");
            };
            assert_eq!(again.len, head.len, "len moved on re-parse");
            assert_eq!(again.method, head.method, "method moved on re-parse");
            assert_eq!(again.target, head.target, "target moved on re-parse");
            assert_eq!(again.body, head.body, "body framing moved on re-parse");
        }
    }
}

/// The response-side twin of [`request_head`], for both answers to "was
/// the request a HEAD?" (which changes the framing, never the head's end).
pub fn response_head(data: &[u8]) {
    for request_was_head in [false, true] {
        for limits in [HeadLimits::default(), SMALL] {
            if let Ok(Some(head)) = parse_response(data, request_was_head, &limits) {
                assert!(head.len <= data.len(), "head.len past the input");
                let again = parse_response(&data[..head.len], request_was_head, &limits);
                let Ok(Some(again)) = again else {
                    panic!("the head's own bytes do not parse again: {again:?}");
                };
                assert_eq!(again.len, head.len, "len moved on re-parse");
                assert_eq!(again.status, head.status, "status moved on re-parse");
                assert_eq!(again.body, head.body, "body framing moved on re-parse");
            }
        }
    }
}

/// How one feeding of a body ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The body ended before this offset; the bytes from here are not its.
    Done(usize),
    /// Every byte was classified and the body wants more.
    NeedMore,
    /// `step` refused the input that started at `from`, for this reason.
    Failed { from: usize, why: FramingError },
}

/// A body as the reader saw it: one label per classified byte (`b'D'` for
/// data, `b'F'` for framing) and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    pub labels: Vec<u8>,
    pub ending: Ending,
}

/// Feed `body` to a fresh reader the way the reactor does: the bytes arrive
/// in pieces ending at each of `piece_ends` (then at `body.len()`), and after
/// each arrival the reader is stepped over what is buffered and not yet
/// consumed, consuming exactly the bytes each step reports.
pub fn feed(framing: BodyFraming, body: &[u8], piece_ends: &[usize]) -> Classified {
    let mut reader = BodyReader::new(framing);
    let mut labels = Vec::with_capacity(body.len());
    let mut pos = 0;
    // Every step that does not end the loop consumes at least one byte, and
    // each arrival ends with at most one `NeedMore`: past this bound the
    // reader is spinning.
    let mut steps_left = body.len() + piece_ends.len() + 2;
    let ends = piece_ends.iter().copied().chain([body.len()]);
    for available in ends {
        let available = available.clamp(pos, body.len());
        loop {
            assert!(steps_left > 0, "the reader keeps stepping without progress");
            steps_left -= 1;
            let input = &body[pos..available];
            let (label, n) = match reader.step(input) {
                Ok(Step::Data(n)) => (b'D', n),
                Ok(Step::Framing(n)) => (b'F', n),
                Ok(Step::NeedMore) => break,
                Ok(Step::Done) => {
                    return Classified {
                        labels,
                        ending: Ending::Done(pos),
                    };
                }
                Err(why) => {
                    return Classified {
                        labels,
                        ending: Ending::Failed { from: pos, why },
                    };
                }
            };
            assert!(
                n > 0 && n <= input.len(),
                "step reported {n} bytes of an input of {}",
                input.len()
            );
            labels.resize(labels.len() + n, label);
            pos += n;
        }
    }
    assert_eq!(pos, body.len(), "NeedMore left bytes unclassified");
    Classified {
        labels,
        ending: Ending::NeedMore,
    }
}

/// The first input byte picks the framing and how many split points follow
/// (each one byte: the gap to the next split); the rest is the body.
/// Splitting must change nothing: every byte gets the same label, the body
/// ends at the same place, and a refusal gives the same reason about the
/// same byte, whether the bytes came at once, in the chosen pieces, or one
/// at a time.
pub fn chunked_split(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (framing, rest) = if control & 1 == 0 {
        (BodyFraming::Chunked, rest)
    } else {
        // A length from the next two bytes, so it both ends inside inputs
        // and runs past them.
        let (length, rest) = match rest {
            [hi, lo, rest @ ..] => (u64::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (0, rest),
        };
        (BodyFraming::Length(length), rest)
    };
    let split_count = usize::from(control >> 1 & 0x1f).min(rest.len());
    let (gaps, body) = rest.split_at(split_count);
    let mut piece_ends = Vec::with_capacity(gaps.len());
    let mut end = 0;
    for &gap in gaps {
        end += usize::from(gap);
        piece_ends.push(end);
    }
    let bytewise: Vec<usize> = (1..body.len()).collect();

    let whole = feed(framing, body, &[]);
    let split = feed(framing, body, &piece_ends);
    let one_by_one = feed(framing, body, &bytewise);
    check_same_classification(&one_by_one, &whole, &[], body.len());
    check_same_classification(&one_by_one, &split, &piece_ends, body.len());
}

/// `other` classified the body as `exact` (fed one byte at a time, so its
/// `Failed { from }` is the offending byte itself) did. A feeding that
/// brought several bytes in one piece learns of a refusal only for the
/// whole piece (the decoder does not report the framing bytes before the
/// offending one in the same input), so its refusal may start earlier,
/// but never after the offending byte nor in a piece that ends before it.
pub fn check_same_classification(
    exact: &Classified,
    other: &Classified,
    piece_ends: &[usize],
    len: usize,
) {
    match (&exact.ending, &other.ending) {
        (
            Ending::Failed { from: at, why },
            Ending::Failed {
                from,
                why: other_why,
            },
        ) => {
            assert_eq!(why, other_why, "refused for another reason");
            assert!(from <= at, "refused after the offending byte {at}: {from}");
            // The piece `other` was stepping over when it refused.
            let piece_end = piece_ends
                .iter()
                .copied()
                .map(|e| e.min(len))
                .find(|&e| e > *from)
                .unwrap_or(len);
            assert!(
                *at < piece_end,
                "refused at {from}, in a piece ending at {piece_end}, \
                 before reaching the offending byte {at}"
            );
            assert_eq!(
                other.labels[..],
                exact.labels[..*from],
                "bytes before the refusal classified differently"
            );
        }
        (ending, other_ending) => {
            assert_eq!(ending, other_ending, "the body ends differently");
            assert_eq!(other.labels, exact.labels, "bytes classified differently");
        }
    }
}

/// What the proxy forwards for an accepted request is itself a request that
/// ferroxy (and so, we hope, a strict upstream) accepts, and means the same
/// thing: same method, the target in origin-form, same body framing, same
/// `Host`, spoken as HTTP/1.1. If the rewritten head were refused, or read
/// differently, the upstream would see another request than the one we
/// checked.
pub fn request_rewrite(data: &[u8]) {
    let Ok(Some(head)) = parse_request(data, &HeadLimits::default()) else {
        return;
    };
    let ctx = ForwardContext {
        client_ip: "127.0.0.1".parse().expect("a literal IPv4 address"),
        proto: "http",
        default_host: "127.0.0.1:9",
    };
    let mut out = Vec::new();
    write_request_head(&head, &ctx, &mut out);
    let reparsed = parse_request(&out, &GENEROUS);
    let Ok(Some(again)) = reparsed else {
        panic!(
            "the rewritten head is refused: {reparsed:?}\n  input: {:?}\n  rewritten: {:?}",
            String::from_utf8_lossy(&data[..head.len]),
            String::from_utf8_lossy(&out),
        );
    };
    assert_eq!(
        again.len,
        out.len(),
        "the rewritten head has bytes after it"
    );
    assert_eq!(again.method, head.method, "method changed");
    assert_eq!(again.target, origin_form(&head.target), "target changed");
    assert_eq!(again.body, head.body, "body framing changed");
    assert_eq!(again.version, Version::Http11, "not forwarded as HTTP/1.1");
    assert_eq!(
        find_header(&again.headers, "Host"),
        Some(expected_host(&head, ctx.default_host)),
        "Host changed"
    );
}

/// The `Host` the upstream should see: the client's, or for an HTTP/1.0
/// request without one, the absolute-form target's authority, or the
/// upstream's own name.
fn expected_host<'a>(head: &'a RequestHead, default_host: &'a str) -> &'a [u8] {
    if let Some(host) = head.header("Host") {
        return host;
    }
    let target = head.target.as_str();
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("http://") => {
            let after = &target[7..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            &after.as_bytes()[..end]
        }
        _ => default_host.as_bytes(),
    }
}

/// A router with a static route `/s/` and a group route `/api`, built once.
fn static_router() -> &'static ferroxy::route::Router {
    static ROUTER: std::sync::OnceLock<ferroxy::route::Router> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        let root = std::env::temp_dir();
        let text = format!(
            r#"{{ "listen": "127.0.0.1:0",
                 "upstreams": [ {{ "host": "127.0.0.1", "port": 9 }} ],
                 "upstream_groups": {{ "api": {{ "upstreams": [ {{ "host": "127.0.0.1", "port": 10 }} ] }} }},
                 "routes": [ {{ "prefix": "/s/", "root": {root:?} }}, {{ "prefix": "/api", "group": "api" }} ],
                 "timeouts": {{ "connect_ms": 1, "read_ms": 1, "write_ms": 1, "total_ms": 1 }},
                 "limits": {{ "max_client_conns": 1, "max_conns_per_upstream": 1 }} }}"#
        );
        let config = ferroxy::config::Config::parse(&text, "fuzz").expect("the fuzz config is valid");
        ferroxy::route::Router::from_config(&config)
    })
}

/// Routing and the static rules never panic, and a static handler is
/// never handed a path that could leave its root: no `..` or `.` segment,
/// no NUL, and either empty or starting with `/`. The input is lines: the
/// target, then `Range`, `If-Range`, `If-None-Match`, `If-Modified-Since`.
pub fn static_path(data: &[u8]) {
    use ferroxy::files::rules::{
        Conditions, FileMeta, decide, etag, parse_http_date, response_head,
    };
    use ferroxy::route::Handler;
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("");
    if let Handler::Static { rest, .. } = static_router().handler(target) {
        assert!(
            rest.is_empty() || rest.starts_with(b"/"),
            "{target:?} -> {rest:?}"
        );
        assert!(
            !rest.contains(&0),
            "{target:?}: NUL reached the file server"
        );
        for segment in rest.split(|&b| b == b'/') {
            assert!(
                segment != b".." && segment != b".",
                "{target:?}: a dot-segment reached the file server: {:?}",
                String::from_utf8_lossy(&rest)
            );
        }
    }
    let mut field = || lines.next().filter(|l| !l.is_empty());
    let conditions = Conditions {
        range: field(),
        if_range: field(),
        if_none_match: field(),
        if_modified_since: field(),
    };
    for len in [0, 1, 10, u64::MAX / 2] {
        let meta = FileMeta {
            len,
            modified_secs: 1_700_000_000,
            modified_nanos: 5,
            inode: 42,
        };
        let tag = etag(&meta);
        for is_get in [true, false] {
            let answer = decide(is_get, &conditions, &meta, &tag);
            let head = response_head(answer, &meta, &tag, "text/plain", is_get, true);
            if let Some((start, end)) = head.body {
                assert!(
                    start <= end && end <= len,
                    "{answer:?}: body {start}..{end} of {len}"
                );
            }
        }
    }
    if let Some(date) = conditions.if_modified_since {
        let _ = parse_http_date(date);
    }
}

/// One acceptor for every input: a certificate made once, its files in a
/// temp directory of this process.
fn tls_acceptor() -> &'static ferroxy::tls::TlsAcceptor {
    static ACCEPTOR: std::sync::OnceLock<ferroxy::tls::TlsAcceptor> = std::sync::OnceLock::new();
    ACCEPTOR.get_or_init(|| {
        let made = ferroxy::demo_tls::self_signed(&["localhost"]).expect("a certificate");
        let dir = std::env::temp_dir().join(format!("ferroxy-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let entry = made.write_to(&dir).expect("the certificate files");
        let settings = ferroxy::config::TlsConfig {
            listen: "127.0.0.1:0".to_string(),
            certificates: vec![entry],
        };
        ferroxy::tls::TlsAcceptor::new(&settings).expect("the acceptor")
    })
}

/// A client's first bytes, whatever they are, fed to a fresh session in
/// pieces (the first byte picks the piece size): the session never
/// panics, never returns more than asked, never finishes a handshake with
/// no client behind it (no keys: no plaintext can come), and a failure
/// carries one of the labels the metrics know.
pub fn tls_handshake(data: &[u8]) {
    use std::io::{self, Read, Write};
    struct Socket<'a> {
        incoming: &'a [u8],
        piece: usize,
        written: usize,
    }
    impl Read for Socket<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.incoming.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.piece).min(self.incoming.len());
            buf[..n].copy_from_slice(&self.incoming[..n]);
            self.incoming = &self.incoming[n..];
            Ok(n)
        }
    }
    impl Write for Socket<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut socket = Socket {
        incoming: rest,
        piece: usize::from(first).max(1),
        written: 0,
    };
    let mut session = tls_acceptor().session().expect("a session");
    let mut buf = [0u8; 512];
    // Bounded: each round consumes input or ends.
    for _ in 0..=rest.len() + 1 {
        match session.read(&mut socket, &mut buf) {
            Ok(n) => {
                assert!(n <= buf.len());
                assert_eq!(n, 0, "plaintext from a client that has no keys");
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.incoming.is_empty() {
                    break;
                }
            }
            Err(_) => {
                let (label, _) = session.failure().expect("a failure says why");
                assert!(
                    ferroxy::tls::session::FAILURE_REASONS.contains(&label),
                    "{label}"
                );
                break;
            }
        }
    }
    assert!(
        session.is_handshaking(),
        "a handshake finished with no client"
    );
}
