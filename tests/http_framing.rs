//! `BodyReader`: one body through its framing (empty, length, chunked,
//! until close), as the reactor drives it, including what a close means.

use ferroxy::http::framing::{BodyFraming, BodyReader, FramingError, Step};

#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// Step `reader` over `input` arriving in the given pieces, consuming what
/// each step reports. Returns the data bytes and how many bytes were
/// consumed when `Done` came (None if it never did).
fn collect(
    reader: &mut BodyReader,
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, Option<usize>), FramingError> {
    let mut data = Vec::new();
    let mut cuts = cuts.iter().copied();
    let (mut available, mut consumed) = (0, 0);
    loop {
        match reader.step(&input[consumed..available])? {
            Step::Data(n) => {
                assert!(
                    n > 0 && consumed + n <= available,
                    "Data({n}) with {} available",
                    available - consumed
                );
                data.extend_from_slice(&input[consumed..consumed + n]);
                consumed += n;
            }
            Step::Framing(n) => {
                assert!(
                    n > 0 && consumed + n <= available,
                    "Framing({n}) with {} available",
                    available - consumed
                );
                consumed += n;
            }
            Step::NeedMore => match cuts.next() {
                Some(cut) => available = cut,
                None => return Ok((data, None)),
            },
            Step::Done => return Ok((data, Some(consumed))),
        }
    }
}

/// No body at all: `Done` at once, without looking at the input (which is
/// the next request), and a close afterwards is clean.
#[test]
fn an_empty_body_is_done_at_once() {
    let mut reader = BodyReader::new(BodyFraming::Empty);
    assert!(reader.is_done(), "nothing to wait for");
    assert_eq!(
        reader.step(b"GET / HTTP/1.1\r\n"),
        Ok(Step::Done),
        "pipelined bytes are not body"
    );
    assert_eq!(
        reader.finish_at_eof(),
        Ok(()),
        "a close after no body is clean"
    );
}

/// `Content-Length: 0` is the same as no body.
#[test]
fn a_zero_length_body_is_done_at_once() {
    let mut reader = BodyReader::new(BodyFraming::Length(0));
    assert!(reader.is_done(), "zero bytes to wait for");
    assert_eq!(reader.step(b"next"), Ok(Step::Done), "nothing is body");
}

/// A length-framed body is data up to its length and not a byte more; the
/// rest of the buffer is the next message.
#[test]
fn a_length_body_takes_exactly_its_length() {
    let mut reader = BodyReader::new(BodyFraming::Length(10));
    assert_eq!(reader.step(b""), Ok(Step::NeedMore), "empty input");
    assert_eq!(
        reader.step(b"hello"),
        Ok(Step::Data(5)),
        "all five available bytes"
    );
    assert!(!reader.is_done(), "five more to come");
    assert_eq!(
        reader.step(b"worldGET /"),
        Ok(Step::Data(5)),
        "only the remaining five"
    );
    assert!(reader.is_done(), "all ten seen");
    assert_eq!(
        reader.step(b"GET /"),
        Ok(Step::Done),
        "the pipelined request is not body"
    );
}

/// A length body gives the same data however the bytes are split.
#[test]
fn a_length_body_is_the_same_at_any_split() {
    let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let mut input = body.clone();
    input.extend_from_slice(b"NEXT REQUEST");
    let mut rng = XorShift(42);
    for iteration in 0..300 {
        let mut cuts: Vec<usize> = (0..rng.below(10))
            .map(|_| rng.below(input.len() + 1))
            .collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut reader = BodyReader::new(BodyFraming::Length(1000));
        let got = collect(&mut reader, &input, &cuts).expect("length bodies cannot be malformed");
        assert_eq!(
            got,
            (body.clone(), Some(1000)),
            "iteration {iteration}, cuts {cuts:?}"
        );
    }
}

/// A declared length larger than memory (or than usize on 32-bit) is fine:
/// the reader only ever reports what is in the buffer.
#[test]
fn a_huge_length_never_overflows() {
    let mut reader = BodyReader::new(BodyFraming::Length(u64::MAX));
    assert_eq!(
        reader.step(&[0u8; 4096]),
        Ok(Step::Data(4096)),
        "a full buffer of data"
    );
    assert!(!reader.is_done(), "far from done");
}

/// A close before the declared length arrived is a truncated body, which
/// the reactor must not pass off as complete.
#[test]
fn a_close_before_the_length_is_truncated() {
    let mut reader = BodyReader::new(BodyFraming::Length(10));
    assert_eq!(reader.step(b"hello"), Ok(Step::Data(5)), "half the body");
    assert_eq!(
        reader.finish_at_eof(),
        Err(FramingError::Truncated),
        "close at half"
    );
    assert!(!reader.is_done(), "still not done");
}

/// A close-delimited body is every byte until the close, which ends it
/// cleanly; after the close the reader is done.
#[test]
fn an_until_close_body_ends_at_the_close() {
    let mut reader = BodyReader::new(BodyFraming::UntilClose);
    assert_eq!(reader.step(b""), Ok(Step::NeedMore), "empty input");
    assert_eq!(
        reader.step(b"anything at all\r\n0\r\n\r\n"),
        Ok(Step::Data(22)),
        "every byte is data"
    );
    assert!(!reader.is_done(), "only a close ends it");
    assert_eq!(reader.finish_at_eof(), Ok(()), "the close is the end");
    assert!(reader.is_done(), "done after the close");
    assert_eq!(reader.step(b""), Ok(Step::Done), "done sticks");
}

/// Chunked through the reader: framing and data alternate, `Done` comes at
/// the final CRLF, and a close before that is truncation while a close after
/// it is clean.
#[test]
fn a_chunked_body_through_the_reader() {
    let input = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\nNEXT";
    let mut rng = XorShift(7);
    for iteration in 0..200 {
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(input.len() + 1))
            .collect();
        cuts.push(input.len());
        cuts.sort_unstable();
        let mut reader = BodyReader::new(BodyFraming::Chunked);
        let got = collect(&mut reader, input, &cuts);
        assert_eq!(
            got,
            Ok((b"abcde".to_vec(), Some(input.len() - 4))),
            "iteration {iteration}, cuts {cuts:?}"
        );
        assert!(reader.is_done(), "done at the end");
        assert_eq!(
            reader.finish_at_eof(),
            Ok(()),
            "a close after the end is clean"
        );
    }

    let mut reader = BodyReader::new(BodyFraming::Chunked);
    assert_eq!(reader.step(b"3\r\nab"), Ok(Step::Framing(3)), "size line");
    assert_eq!(reader.step(b"ab"), Ok(Step::Data(2)), "part of the chunk");
    assert_eq!(
        reader.finish_at_eof(),
        Err(FramingError::Truncated),
        "close mid-chunk"
    );
}

/// A broken chunked body is an error from the reader, and stays one.
#[test]
fn a_broken_chunked_body_is_an_error_that_sticks() {
    let mut reader = BodyReader::new(BodyFraming::Chunked);
    let first = reader.step(b"zz\r\n");
    assert!(
        matches!(first, Err(FramingError::BadChunk(_))),
        "bad size, got {first:?}"
    );
    assert_eq!(reader.step(b"0\r\n\r\n"), first, "the error sticks");
}
