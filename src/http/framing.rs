//! Body framing: which bytes after a head belong to its body.
//!
//! A [`BodyReader`] is fed the bytes that follow the head and classifies them
//! run by run as `Data` (body content), `Framing` (chunk-size lines, CRLFs,
//! trailers) or `Done`. The reactor passes both kinds through unchanged to a
//! peer that understands chunked, and writes only `Data` when it must
//! de-chunk for an HTTP/1.0 client. Bytes after `Done` belong to the next
//! message (pipelining) and are never classified by this reader.
//!
//! Lesson: `lessons/11-body-framing`.

use crate::http::chunked::ChunkedDecoder;

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all (GET without length, HEAD responses, 1xx/204/304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// What the next run of input is. The reader assumes the caller consumes
/// exactly the reported bytes before calling [`BodyReader::step`] again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The next `n` bytes (n > 0) are body content.
    Data(usize),
    /// The next `n` bytes (n > 0) are chunked framing (size lines, CRLFs,
    /// extensions, trailers, the last chunk).
    Framing(usize),
    /// Nothing can be classified until more bytes arrive.
    NeedMore,
    /// The body is complete; the input's remaining bytes are not part of it.
    Done,
}

/// Why a body's framing is broken: 400 on a request (before its head went
/// upstream) or a closed connection once streaming has begun.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// Bad chunk size, bare LF, missing CRLF, overlong line, ...
    BadChunk(&'static str),
    /// The peer closed before the body was complete.
    Truncated,
}

/// Tracks one body through its framing.
#[derive(Debug)]
pub struct BodyReader {
    state: ReaderState,
}

#[derive(Debug)]
enum ReaderState {
    Empty,
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
    UntilClose { closed: bool },
}

impl BodyReader {
    pub fn new(framing: BodyFraming) -> Self {
        let _ = framing;
        let _ = ReaderState::Empty;
        todo!()
    }

    /// Classify the next run of `input` (the bytes that follow what earlier
    /// steps reported).
    pub fn step(&mut self, input: &[u8]) -> Result<Step, FramingError> {
        let _ = input;
        todo!()
    }

    /// The sender closed. `Ok` when that ends the body cleanly (UntilClose,
    /// or already done), `Err(Truncated)` otherwise.
    pub fn finish_at_eof(&mut self) -> Result<(), FramingError> {
        todo!()
    }

    /// The body is complete (`step` would return `Done`).
    pub fn is_done(&self) -> bool {
        todo!()
    }
}
