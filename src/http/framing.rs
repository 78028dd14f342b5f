//! Body framing: which bytes after a head belong to its body.
//!
//! A [`BodyReader`] is fed the bytes that follow the head and classifies them
//! run by run as `Data` (body content), `Framing` (chunk-size lines, CRLFs,
//! trailers) or `Done`. The reactor passes both kinds through unchanged to a
//! peer that understands chunked, and writes only `Data` when it must
//! de-chunk for an HTTP/1.0 client. Bytes after `Done` belong to the next
//! message (pipelining) and are never classified by this reader.
//!
//! Where it sits in the loop: the head parser ([`crate::http::head`]) says
//! how the body is framed; the reactor makes a `BodyReader` from that and,
//! each time bytes are in the buffer, calls [`BodyReader::step`], forwards
//! (or drops) exactly the bytes reported, and consumes them from the buffer.
//! When the peer closes it asks [`BodyReader::finish_at_eof`] whether that
//! close ended the body or cut it short.
//!
//! What it does not do: it never copies, buffers or rewrites bytes, so memory
//! per connection does not grow with body size; it never reads a socket; and
//! it has no opinion about timeouts (a stalled body is the reactor's 408).
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
///
/// Small and allocation-free: a counter for `Length`, a few integers for
/// chunked. One lives in each direction of each exchange.
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
    /// A reader for a body framed as `framing` (from the head's `body`).
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::Empty => ReaderState::Empty,
            BodyFraming::Length(remaining) => ReaderState::Length { remaining },
            BodyFraming::Chunked => ReaderState::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => ReaderState::UntilClose { closed: false },
        };
        BodyReader { state }
    }

    /// Classify the next run of `input` (the bytes that follow what earlier
    /// steps reported).
    ///
    /// `NeedMore` only when `input` is empty (or, for chunked, nothing in it
    /// can be classified yet). After `Done` every call answers `Done` and
    /// never looks at `input`: those bytes are the next pipelined message.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, FramingError> {
        match &mut self.state {
            ReaderState::Empty => Ok(Step::Done),
            ReaderState::Length { remaining } => {
                if *remaining == 0 {
                    return Ok(Step::Done);
                }
                if input.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = clamp_to_input(*remaining, input.len());
                // n <= remaining by construction, so this cannot underflow.
                *remaining -= n as u64;
                Ok(Step::Data(n))
            }
            ReaderState::Chunked(decoder) => decoder.step(input),
            ReaderState::UntilClose { closed: true } => Ok(Step::Done),
            ReaderState::UntilClose { closed: false } => {
                if input.is_empty() {
                    Ok(Step::NeedMore)
                } else {
                    Ok(Step::Data(input.len()))
                }
            }
        }
    }

    /// How many body bytes may still pass without being looked at (the
    /// zero-copy path, `src/splice.rs`): what a `Content-Length` has left,
    /// or no limit until a close-delimited body ends. `None` for framings
    /// whose bytes must be read to know where they end (chunked), or when
    /// nothing is left.
    pub fn unexamined_room(&self) -> Option<u64> {
        match self.state {
            ReaderState::Length { remaining } if remaining > 0 => Some(remaining),
            ReaderState::UntilClose { closed: false } => Some(u64::MAX),
            _ => None,
        }
    }

    /// `n` body bytes went past without being classified (at most
    /// [`BodyReader::unexamined_room`]).
    pub fn passed_unexamined(&mut self, n: u64) {
        if let ReaderState::Length { remaining } = &mut self.state {
            *remaining = remaining.saturating_sub(n);
        }
    }

    /// The sender closed. `Ok` when that ends the body cleanly (UntilClose,
    /// or already done), `Err(Truncated)` otherwise.
    ///
    /// Call it only after every buffered byte has been stepped through: for
    /// a close-delimited body the close *is* the end, so bytes still waiting
    /// in the buffer would be lost from the body if the reader said `Done`
    /// first.
    pub fn finish_at_eof(&mut self) -> Result<(), FramingError> {
        if let ReaderState::UntilClose { closed } = &mut self.state {
            *closed = true;
        }
        if self.is_done() {
            Ok(())
        } else {
            Err(FramingError::Truncated)
        }
    }

    /// The body ends when its sender closes: nothing in the bytes marks the
    /// end, so a receiver cannot tell a cut-off body from a whole one.
    pub fn is_close_delimited(&self) -> bool {
        matches!(self.state, ReaderState::UntilClose { .. })
    }

    /// The body is complete (`step` would return `Done`).
    pub fn is_done(&self) -> bool {
        match &self.state {
            ReaderState::Empty => true,
            ReaderState::Length { remaining } => *remaining == 0,
            ReaderState::Chunked(decoder) => decoder.is_done(),
            ReaderState::UntilClose { closed } => *closed,
        }
    }
}

/// `min(remaining, available)` across u64 and usize without truncating a
/// large `remaining` on a 32-bit target.
pub(crate) fn clamp_to_input(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}
