//! Fuzz-ish: random bytes and random mutations of valid messages thrown at
//! every parser. Nothing a peer sends may panic the proxy, so these tests
//! only assert that nothing panics, plus the invariants that must hold
//! whatever the input. Bounded and seeded, so they run in a second and a
//! failure replays. (A real fuzzer, cargo-fuzz, would find more; this keeps
//! the guarantee in plain `cargo test`.)

use std::net::{IpAddr, Ipv4Addr};

use ferroxy::http::chunked::ChunkedDecoder;
use ferroxy::http::framing::{BodyFraming, BodyReader, Step};
use ferroxy::http::head::HeadLimits;
use ferroxy::http::request::parse_request;
use ferroxy::http::response::parse_response;
use ferroxy::http::rewrite::{ClientSide, ForwardContext, write_request_head, write_response_head};

#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// Iterations per test: a quick default for `cargo test`; set
/// `FERROXY_FUZZ_ITERATIONS=5000000` for a longer hunt before a release.
fn iterations(default: usize) -> usize {
    std::env::var("FERROXY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes that matter to HTTP parsers, so mutations hit interesting places
/// far more often than uniformly random bytes would.
const SPICY: &[u8] = b"\r\n \t:;,=\"\\/0123456789aAfF\0\x7f\x80\xff-+*?#@[]";

const REQUEST_SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\n\r\nhello",
    b"PUT http://h:8/x?y HTTP/1.1\r\nHost: h:8\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: [::1]:80\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.0 a\r\n\r\n",
    b"OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
];

const RESPONSE_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close, x-b\r\nX-B: 2\r\n\r\n5;e=\"v\"\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"HTTP/1.0 404\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
];

fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        let spicy = SPICY[rng.below(SPICY.len())];
        match rng.below(6) {
            0 if at < bytes.len() => bytes[at] = spicy,
            1 => bytes.insert(at, spicy),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => {
                let end = (at + rng.below(16)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            4 if at < bytes.len() => bytes[at] = rng.next() as u8,
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn random_bytes(rng: &mut XorShift) -> Vec<u8> {
    let len = rng.below(200);
    (0..len)
        .map(|_| {
            if rng.below(2) == 0 {
                SPICY[rng.below(SPICY.len())]
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

fn limits(rng: &mut XorShift) -> HeadLimits {
    match rng.below(4) {
        0 => HeadLimits {
            max_head_bytes: 1 + rng.below(120),
            max_fields: rng.below(4),
        },
        1 => HeadLimits {
            max_head_bytes: 16384,
            max_fields: 150,
        },
        _ => HeadLimits::default(),
    }
}

/// Step a body reader over `input` to the end, checking every answer stays
/// inside the input; the body bytes never outnumber the input bytes.
fn step_through(mut reader: BodyReader, input: &[u8], rng: &mut XorShift) {
    let mut consumed = 0;
    let mut available = 0;
    loop {
        match reader.step(&input[consumed..available]) {
            Ok(Step::Data(n)) | Ok(Step::Framing(n)) => {
                assert!(
                    n > 0 && consumed + n <= available,
                    "step reported {n} of {} bytes",
                    available - consumed
                );
                consumed += n;
            }
            Ok(Step::NeedMore) if available < input.len() => {
                available = (available + 1 + rng.below(32)).min(input.len());
            }
            Ok(Step::NeedMore) => {
                let _ = reader.finish_at_eof();
                return;
            }
            Ok(Step::Done) | Err(_) => return,
        }
    }
}

/// Mutated and random request heads never panic the parser; whatever it
/// accepts has a `len` inside the input and rewrites into a head that our
/// own parser accepts again (the rewrite cannot turn a valid request into
/// an invalid or ambiguous one), and its body steps through without panic.
#[test]
fn request_parsing_never_panics_and_accepted_heads_rewrite_cleanly() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let ctx = ForwardContext {
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proto: "http",
        default_host: "127.0.0.1:9001",
    };
    let mut accepted = 0;
    for iteration in 0..iterations(50_000) {
        let input = if iteration % 5 == 0 {
            random_bytes(&mut rng)
        } else {
            mutate(REQUEST_SEEDS[rng.below(REQUEST_SEEDS.len())], &mut rng)
        };
        let limits = limits(&mut rng);
        let Ok(Some(req)) = parse_request(&input, &limits) else {
            continue;
        };
        accepted += 1;
        assert!(
            req.len <= input.len() && req.len <= limits.max_head_bytes,
            "len {} out of bounds",
            req.len
        );
        let mut out = Vec::new();
        write_request_head(&req, &ctx, &mut out);
        match parse_request(
            &out,
            &HeadLimits {
                max_head_bytes: out.len(),
                max_fields: 1000,
            },
        ) {
            Ok(Some(again)) => assert_eq!(
                again.body,
                req.body,
                "framing changed by the rewrite of {:?}",
                String::from_utf8_lossy(&input)
            ),
            other => panic!(
                "{:?} was accepted but its rewrite {:?} gives {other:?}",
                String::from_utf8_lossy(&input),
                String::from_utf8_lossy(&out)
            ),
        }
        step_through(BodyReader::new(req.body), &input[req.len..], &mut rng);
    }
    assert!(
        accepted > 1000,
        "the mutations should leave many heads valid; only {accepted} were"
    );
}

/// Mutated and random response heads never panic the parser, and whatever
/// it accepts rewrites and steps through its body without panic.
#[test]
fn response_parsing_never_panics() {
    let mut rng = XorShift(0xfeed_f00d);
    for iteration in 0..iterations(50_000) {
        let input = if iteration % 5 == 0 {
            random_bytes(&mut rng)
        } else {
            mutate(RESPONSE_SEEDS[rng.below(RESPONSE_SEEDS.len())], &mut rng)
        };
        let limits = limits(&mut rng);
        let Ok(Some(resp)) = parse_response(&input, rng.below(4) == 0, &limits) else {
            continue;
        };
        assert!(resp.len <= input.len(), "len {} out of bounds", resp.len);
        assert!(
            (100..=599).contains(&resp.status),
            "status {} accepted",
            resp.status
        );
        assert!(
            !(resp.keep_alive && resp.body == BodyFraming::UntilClose),
            "keep-alive with a close-delimited body"
        );
        let client = ClientSide {
            version: ferroxy::http::head::Version::Http10,
            keep_alive: rng.below(2) == 0,
            dechunk: resp.body == BodyFraming::Chunked,
        };
        let mut out = Vec::new();
        write_response_head(&resp, &client, &mut out);
        assert!(
            out.ends_with(b"\r\n\r\n"),
            "a relayed head ends with the empty line"
        );
        step_through(BodyReader::new(resp.body), &input[resp.len..], &mut rng);
    }
}

/// Mutated chunked bodies and random bytes never panic the decoder, and it
/// never claims more bytes than it was given.
#[test]
fn chunked_decoding_never_panics() {
    let seeds: &[&[u8]] = &[
        b"5\r\nhello\r\n0\r\n\r\n",
        b"A;a=\"q\\\"\" ; b\r\n0123456789\r\n0;x\r\nT: v\r\nU:\r\n\r\n",
        b"FFFFFFFFFFFFFFFF\r\nabc",
    ];
    let mut rng = XorShift(0xc0ff_ee00);
    for iteration in 0..iterations(50_000) {
        let input = if iteration % 4 == 0 {
            random_bytes(&mut rng)
        } else {
            mutate(seeds[rng.below(seeds.len())], &mut rng)
        };
        step_through(BodyReader::new(BodyFraming::Chunked), &input, &mut rng);
        let mut decoder = ChunkedDecoder::new();
        let _ = decoder.step(&input);
    }
}
