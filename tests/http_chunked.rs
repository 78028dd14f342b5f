//! The chunked decoder, driven the way the reactor drives it: bytes arrive in
//! pieces, each `step` result is consumed exactly, and the decoder must give
//! the same answer whether the body arrives whole, one byte per read, or cut
//! at random places.

use ferroxy::http::chunked::{ChunkedDecoder, MAX_SIZE_LINE_BYTES, MAX_TRAILER_BYTES};
use ferroxy::http::framing::{FramingError, Step};

#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// How a drive ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `Done` after this many bytes; anything after them was never looked at.
    Done {
        consumed: usize,
    },
    Failed(FramingError),
    /// All input consumed without `Done`.
    Starved,
}

/// What the decoder said about every byte it consumed.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    data: Vec<u8>,
    /// One letter per consumed byte: `D` for data, `F` for framing.
    labels: String,
    end: End,
}

/// Feed `input` to a fresh decoder, making bytes available up to each cut in
/// turn (the last cut must be `input.len()`), consuming exactly what each
/// step reports, like the reactor with a buffer.
fn drive(input: &[u8], cuts: &[usize]) -> Run {
    let mut decoder = ChunkedDecoder::new();
    let mut run = Run {
        data: Vec::new(),
        labels: String::new(),
        end: End::Starved,
    };
    let mut cuts = cuts.iter().copied();
    let mut available = 0;
    let mut consumed = 0;
    loop {
        match decoder.step(&input[consumed..available]) {
            Ok(Step::Data(n)) | Ok(Step::Framing(n)) if n == 0 || consumed + n > available => {
                panic!(
                    "step reported {n} bytes with {} available",
                    available - consumed
                )
            }
            Ok(Step::Data(n)) => {
                run.data.extend_from_slice(&input[consumed..consumed + n]);
                run.labels.extend(std::iter::repeat_n('D', n));
                consumed += n;
            }
            Ok(Step::Framing(n)) => {
                run.labels.extend(std::iter::repeat_n('F', n));
                consumed += n;
            }
            Ok(Step::NeedMore) => {
                assert_eq!(
                    consumed, available,
                    "NeedMore while unclassified bytes were available"
                );
                match cuts.next() {
                    Some(cut) => available = cut,
                    None => return run,
                }
            }
            Ok(Step::Done) => {
                assert!(decoder.is_done(), "Done but is_done() is false");
                assert_eq!(decoder.step(b"more"), Ok(Step::Done), "Done must stick");
                run.end = End::Done { consumed };
                return run;
            }
            Err(e) => {
                assert_eq!(
                    decoder.step(b"0\r\n\r\n"),
                    Err(e.clone()),
                    "an error must stick"
                );
                run.end = End::Failed(e);
                return run;
            }
        }
    }
}

fn whole(input: &[u8]) -> Run {
    drive(input, &[input.len()])
}

fn byte_by_byte(input: &[u8]) -> Run {
    let cuts: Vec<usize> = (1..=input.len()).collect();
    drive(input, &cuts)
}

fn random_splits(input: &[u8], rng: &mut XorShift) -> Run {
    let pieces = rng.below(8);
    let mut cuts: Vec<usize> = (0..pieces).map(|_| rng.below(input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    drive(input, &cuts)
}

/// Drive `input` whole, byte by byte and at many random splits, check all
/// agree (for errors, on the data before the error and the error itself:
/// framing bytes just before an error may or may not be reported first),
/// and return the whole run.
fn drive_every_way(story: &str, input: &[u8], seed: u64) -> Run {
    let reference = whole(input);
    let mut rng = XorShift(seed);
    let mut others = vec![("byte by byte", byte_by_byte(input))];
    for _ in 0..200 {
        others.push(("random splits", random_splits(input, &mut rng)));
    }
    for (how, run) in others {
        if matches!(reference.end, End::Failed(_)) {
            assert_eq!(run.end, reference.end, "{story}: {how} ended differently");
            assert_eq!(
                run.data, reference.data,
                "{story}: {how} gave other data before the error"
            );
        } else {
            assert_eq!(
                run, reference,
                "{story}: {how} classified bytes differently"
            );
        }
    }
    reference
}

/// Valid chunked bodies, each followed by pipelined bytes that would be an
/// error if the decoder looked at them: the data comes out intact, `Done`
/// arrives exactly at the body's end, however the bytes are split.
#[test]
fn valid_bodies_decode_the_same_however_they_are_split() {
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        ("empty body", b"0\r\n\r\n", b""),
        (
            "two chunks",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        (
            "hex size, upper case",
            b"A\r\n0123456789\r\n0\r\n\r\n",
            b"0123456789",
        ),
        (
            "hex size, lower case",
            b"a\r\n0123456789\r\n0\r\n\r\n",
            b"0123456789",
        ),
        ("leading zeros", b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
        (
            "16 digits",
            b"0000000000000005\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "data containing CRLF and digits",
            b"7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n",
            b"\r\n0\r\n\r\n",
        ),
        (
            "extension without value",
            b"5;last\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "extension with token value",
            b"5;name=value\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "several extensions",
            b"5;a=1;b;c=x\r\nhello\r\n0;done\r\n\r\n",
            b"hello",
        ),
        (
            "extension with whitespace around ; and =",
            b"5 ; a = 1 ;b\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "quoted extension value",
            b"5;a=\"x y;z=\\\"q\\\"\"\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "empty quoted extension value",
            b"5;a=\"\"\r\nhello\r\n0\r\n\r\n",
            b"hello",
        ),
        (
            "one trailer",
            b"5\r\nhello\r\n0\r\nExpires: never\r\n\r\n",
            b"hello",
        ),
        (
            "several trailers",
            b"5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-Empty:\r\nX-Spaced:  a b \r\n\r\n",
            b"hello",
        ),
        ("trailer with obs-text", b"0\r\nX: caf\xc3\xa9\r\n\r\n", b""),
    ];
    for (i, (story, body, data)) in cases.iter().enumerate() {
        let mut input = body.to_vec();
        input.extend_from_slice(b"\nnot part of this body");
        let run = drive_every_way(story, &input, 0x5eed + i as u64);
        assert_eq!(
            run.end,
            End::Done {
                consumed: body.len()
            },
            "{story}: must end exactly at the body's end"
        );
        assert_eq!(run.data, *data, "{story}: data");
    }
}

/// Every broken framing in the contract's table is an error, found at the
/// same byte however the input is split, with no data reported past it.
#[test]
fn broken_framing_is_refused_however_it_is_split() {
    let long_extension = {
        let mut v = b"5;x=".to_vec();
        v.resize(MAX_SIZE_LINE_BYTES, b'a');
        v.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        v
    };
    let huge_trailer = {
        let mut v = b"0\r\nX: ".to_vec();
        v.resize(MAX_TRAILER_BYTES + 10, b'a');
        v.extend_from_slice(b"\r\n\r\n");
        v
    };
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("bare LF after the size", b"5\nhello\r\n0\r\n\r\n", b""),
        ("bare LF after the data", b"5\r\nhello\n0\r\n\r\n", b"hello"),
        (
            "bare LF after the last chunk",
            b"5\r\nhello\r\n0\n\r\n",
            b"hello",
        ),
        ("bare LF ending a trailer", b"0\r\nX: y\n\r\n", b""),
        ("bare LF as the final line", b"0\r\n\n", b""),
        ("bare LF in an extension", b"5;a\nhello\r\n0\r\n\r\n", b""),
        (
            "CR without LF after the size",
            b"5\rhello\r\n0\r\n\r\n",
            b"",
        ),
        ("empty size", b"\r\nhello\r\n0\r\n\r\n", b""),
        ("size not hex", b"g\r\nhello\r\n0\r\n\r\n", b""),
        ("size with a sign", b"+5\r\nhello\r\n0\r\n\r\n", b""),
        ("negative size", b"-5\r\nhello\r\n0\r\n\r\n", b""),
        ("size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n", b""),
        (
            "size with a space inside",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        ("space before the size", b" 5\r\nhello\r\n0\r\n\r\n", b""),
        ("space after the size", b"5 \r\nhello\r\n0\r\n\r\n", b""),
        (
            "17 hex digits",
            b"00000000000000005\r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        ("size over u64", b"10000000000000000\r\n", b""),
        ("data overrun", b"5\r\nhelloX\r\n0\r\n\r\n", b"hello"),
        (
            "data overrun by a CR only",
            b"5\r\nhello\r\r\n0\r\n\r\n",
            b"hello",
        ),
        ("missing CRLF after data", b"5\r\nhello0\r\n\r\n", b"hello"),
        (
            "CR then garbage after data",
            b"5\r\nhello\rX0\r\n\r\n",
            b"hello",
        ),
        ("empty extension", b"5;\r\nhello\r\n0\r\n\r\n", b""),
        ("extension without name", b"5;=x\r\nhello\r\n0\r\n\r\n", b""),
        (
            "extension with empty value",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        (
            "extension value with a space",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        (
            "whitespace before CRLF in an extension",
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        (
            "CR inside a quoted extension",
            b"5;a=\"x\r\nhello\"\r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        (
            "NUL inside a quoted extension",
            b"5;a=\"x\0\"\r\nhello\r\n0\r\n\r\n",
            b"",
        ),
        ("size line over the limit", &long_extension, b""),
        ("trailer section over the limit", &huge_trailer, b""),
        ("obs-fold in a trailer", b"0\r\nX: a\r\n b\r\n\r\n", b""),
        ("trailer without a colon", b"0\r\nNoColon\r\n\r\n", b""),
        ("space before a trailer colon", b"0\r\nX : a\r\n\r\n", b""),
        ("NUL in a trailer value", b"0\r\nX: a\0b\r\n\r\n", b""),
        (
            "CR without LF ending a trailer",
            b"0\r\nX: a\rb\r\n\r\n",
            b"",
        ),
        ("CR without LF ending the body", b"0\r\n\rX", b""),
    ];
    for (i, (story, input, data_before)) in cases.iter().enumerate() {
        let run = drive_every_way(story, input, 0xbad + i as u64);
        let End::Failed(FramingError::BadChunk(why)) = run.end else {
            panic!("{story}: expected BadChunk, got {:?}", run.end);
        };
        // The log must name the real problem: a bare LF is the classic
        // smuggling ingredient, so it is reported as such, not as some
        // later "invalid byte".
        if story.starts_with("bare LF") {
            assert!(why.contains("bare LF"), "{story}: reported as {why:?}");
        }
        assert_eq!(
            run.data, *data_before,
            "{story}: data reported before the error"
        );
    }
}

/// A size line exactly at the limit (CRLF included) is still fine: the
/// limit is a bound, not an off-by-one trap.
#[test]
fn a_size_line_exactly_at_the_limit_is_accepted() {
    let mut input = b"5;x=".to_vec();
    input.resize(MAX_SIZE_LINE_BYTES - 2, b'a');
    input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let run = whole(&input);
    assert_eq!(
        run.end,
        End::Done {
            consumed: input.len()
        },
        "size line of exactly {MAX_SIZE_LINE_BYTES} bytes"
    );
    assert_eq!(run.data, b"hello", "data");
}

/// 16 hex digits is the most a u64 holds; the largest value is accepted
/// (the reader then waits for that much data without overflowing).
#[test]
fn the_largest_chunk_size_does_not_overflow() {
    let input = b"FFFFFFFFFFFFFFFF\r\nabc";
    let run = whole(input);
    assert_eq!(run.end, End::Starved, "waits for more data");
    assert_eq!(run.data, b"abc", "all available bytes are data");
}

/// A body cut off mid-way just runs out of input: no error, no Done. The
/// close is what makes it an error (see `finish_at_eof` in the framing tests).
#[test]
fn an_unfinished_body_is_starved_not_failed() {
    for input in [
        &b"5\r\nhel"[..],
        b"5\r\nhello\r\n",
        b"5\r\nhello\r\n0\r\n",
        b"5\r\nhello\r\n0\r\nX: y\r\n",
        b"5;a=\"unterminated",
    ] {
        let run = drive_every_way("unfinished", input, 7);
        assert_eq!(
            run.end,
            End::Starved,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// A partial size line is classified as framing straight away (the decoder
/// remembers where it is); `NeedMore` comes only for empty input.
#[test]
fn partial_size_lines_are_framing_not_need_more() {
    let mut decoder = ChunkedDecoder::new();
    assert_eq!(decoder.step(b""), Ok(Step::NeedMore), "nothing to classify");
    assert_eq!(decoder.step(b"1"), Ok(Step::Framing(1)), "first digit");
    assert_eq!(
        decoder.step(b"0;ext"),
        Ok(Step::Framing(5)),
        "second digit and extension"
    );
    assert_eq!(
        decoder.step(b"\r\nabc"),
        Ok(Step::Framing(2)),
        "the line end, stopping where data starts"
    );
    assert_eq!(
        decoder.step(b"abc"),
        Ok(Step::Data(3)),
        "data up to what is there"
    );
    assert_eq!(
        decoder.step(b"defghijklmnop"),
        Ok(Step::Data(13)),
        "the rest of the 0x10 bytes"
    );
    assert_eq!(
        decoder.step(b"\r\n0\r\n\r\nNEXT"),
        Ok(Step::Framing(7)),
        "CRLF, last chunk, final CRLF"
    );
    assert_eq!(
        decoder.step(b"NEXT"),
        Ok(Step::Done),
        "pipelined bytes are not classified"
    );
    assert!(decoder.is_done(), "is_done after the final CRLF");
}

/// Random well-formed bodies (random chunk sizes, payload bytes, size
/// spellings, extensions and trailers), each split at random: the data that
/// comes out is always exactly the payload that went in.
#[test]
fn random_bodies_round_trip_at_random_splits() {
    let mut rng = XorShift(0x00c0_ffee);
    for iteration in 0..300 {
        let mut body = Vec::new();
        let mut payload = Vec::new();
        for _ in 0..rng.below(6) {
            let size = 1 + rng.below(300);
            let zeros = "0".repeat(rng.below(3));
            let hex = if rng.below(2) == 0 {
                format!("{zeros}{size:x}")
            } else {
                format!("{zeros}{size:X}")
            };
            body.extend_from_slice(hex.as_bytes());
            if rng.below(3) == 0 {
                body.extend_from_slice(b";ext=\"q;\\\"\"; flag");
            }
            body.extend_from_slice(b"\r\n");
            let chunk: Vec<u8> = (0..size)
                .map(|_| [b'\r', b'\n', b'0', b'a', 0, 0xff][rng.below(6)])
                .collect();
            body.extend_from_slice(&chunk);
            payload.extend_from_slice(&chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for t in 0..rng.below(3) {
            body.extend_from_slice(format!("X-Trailer-{t}: value {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        let body_len = body.len();
        body.extend_from_slice(b"GET / HTTP/1.1\r\n");

        let reference = whole(&body);
        assert_eq!(
            reference.end,
            End::Done { consumed: body_len },
            "iteration {iteration}: ends at the body's end"
        );
        assert_eq!(reference.data, payload, "iteration {iteration}: payload");
        for _ in 0..20 {
            assert_eq!(
                random_splits(&body, &mut rng),
                reference,
                "iteration {iteration}: split differently"
            );
        }
    }
}
