//! The chunked transfer-coding decoder (RFC 9112 section 7.1), as a byte-level
//! state machine that tracks chunk boundaries while the bytes themselves pass
//! through untouched. Used by [`crate::http::framing::BodyReader`].
//!
//! Strict: bare LF, a size that is not hex or overflows, a missing CRLF after
//! chunk data, an overlong size line or trailer section are all errors.

use crate::http::framing::{FramingError, Step};

/// Decoder state; see the module doc.
#[derive(Debug)]
pub struct ChunkedDecoder {
    // fields are the implementer's choice
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        todo!()
    }

    /// Same contract as [`crate::http::framing::BodyReader::step`].
    pub fn step(&mut self, input: &[u8]) -> Result<Step, FramingError> {
        let _ = input;
        todo!()
    }

    pub fn is_done(&self) -> bool {
        todo!()
    }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}
