//! The chunked transfer-coding decoder (RFC 9112 section 7.1), as a byte-level
//! state machine that tracks chunk boundaries while the bytes themselves pass
//! through untouched. Used by [`crate::http::framing::BodyReader`].
//!
//! Before working on this file, read RFC 9112 section 7.1. A chunked body is
//!
//! ```text
//! 5;name=value\r\n      size line: hex size, optional extensions   (Framing)
//! hello                 exactly `size` bytes of content              (Data)
//! \r\n                  end of this chunk's data                     (Framing)
//! 0\r\n                 the last chunk                               (Framing)
//! Expires: never\r\n    optional trailer fields                      (Framing)
//! \r\n                  end of the body                              (Framing)
//! ```
//!
//! Where it sits in the loop: the reactor steps it over the bytes that follow
//! a chunked head, forwards `Framing` and `Data` runs as they come (or only
//! the `Data` for an HTTP/1.0 client), and stops at `Done`. It never copies
//! or buffers: all it keeps between calls is a few integers and which part of
//! the grammar comes next, so a size line split across two reads costs
//! nothing and the caller never has to hold a whole line.
//!
//! What it does not do: it never decodes extensions or trailers into values
//! (they are validated, then passed through), and never looks past `Done`.
//!
//! Strict: bare LF, a size that is not hex or overflows, a missing CRLF after
//! chunk data, an overlong size line or trailer section are all errors. Each
//! is a place where two decoders have disagreed about where a chunk ends,
//! which is how request smuggling through chunked bodies works.
//!
//! Lesson: `lessons/11-body-framing`.

use crate::http::framing::{FramingError, Step, clamp_to_input};
use crate::http::head::is_tchar;

/// A size line (digits, extensions, CRLF) longer than this is refused. Real
/// ones are a few bytes; the limit bounds the work an endless line can cause.
pub const MAX_SIZE_LINE_BYTES: usize = 4096;

/// The trailer section (every trailer field and the final CRLF) is refused
/// past this many bytes, like an oversized head.
pub const MAX_TRAILER_BYTES: usize = 16384;

/// 16 hex digits are 64 bits: one more cannot fit in a u64 (leading zeros
/// included: there is no reason to send them and every reason to bound them).
const MAX_SIZE_DIGITS: u32 = 16;

/// Decoder state; see the module doc.
#[derive(Debug)]
pub struct ChunkedDecoder {
    expecting: Expecting,
    /// Bytes of the current size line, or of the trailer section so far.
    line_bytes: usize,
    /// The chunk size being read, then the data bytes still to come.
    size: u64,
    size_digits: u32,
    /// Last byte seen on the size line was SP/HTAB: a CR now would mean
    /// whitespace before the line end, which the grammar does not allow.
    after_whitespace: bool,
    /// Set on the first error; every later call repeats it.
    failed: Option<&'static str>,
}

/// What the next byte must be: each state is named for what it waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expecting {
    /// Hex digits of the chunk size, then `;`, whitespace or CR.
    SizeDigits,
    /// Whitespace after the size: more of it, or `;`.
    SizeWhitespace,
    /// After `;`: whitespace, then an extension name.
    ExtensionName,
    /// Inside an extension name.
    ExtensionNameRest,
    /// After an extension name and whitespace: `=`, `;` or more whitespace.
    ExtensionAfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtensionValue,
    /// Inside a token value.
    ExtensionTokenRest,
    /// Inside a quoted-string value.
    ExtensionQuoted,
    /// After a backslash in a quoted string.
    ExtensionQuotedEscape,
    /// After a value: `;`, whitespace or CR.
    ExtensionAfterValue,
    /// The LF of the size line's CRLF.
    SizeLineLf,
    /// `size` bytes of chunk data.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// Start of a trailer line: a field name, or CR for the end.
    TrailerLineStart,
    /// Inside a trailer field name, up to `:`.
    TrailerName,
    /// A trailer field value, up to CR.
    TrailerValue,
    /// The LF ending a trailer field.
    TrailerLf,
    /// The LF of the final CRLF.
    FinalLf,
    /// The body is complete.
    Done,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            expecting: Expecting::SizeDigits,
            line_bytes: 0,
            size: 0,
            size_digits: 0,
            after_whitespace: false,
            failed: None,
        }
    }

    /// Same contract as [`crate::http::framing::BodyReader::step`].
    ///
    /// Framing bytes are classified one at a time until chunk data starts,
    /// the body ends, or the input runs out; so a `Framing(n)` may be part of
    /// a size line, and the next call carries on from the byte after it.
    /// An error is reported as soon as the offending byte is seen (framing
    /// bytes before it in the same input are not reported first), and sticks.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, FramingError> {
        if let Some(why) = self.failed {
            return Err(FramingError::BadChunk(why));
        }
        match self.expecting {
            Expecting::Done => return Ok(Step::Done),
            _ if input.is_empty() => return Ok(Step::NeedMore),
            Expecting::Data => {
                let n = clamp_to_input(self.size, input.len());
                // n <= size by construction: no underflow.
                self.size -= n as u64;
                if self.size == 0 {
                    self.expecting = Expecting::DataCr;
                }
                return Ok(Step::Data(n));
            }
            _ => {}
        }
        let mut classified = 0;
        for &byte in input {
            if let Err(why) = self.framing_byte(byte) {
                self.failed = Some(why);
                return Err(FramingError::BadChunk(why));
            }
            classified += 1;
            if matches!(self.expecting, Expecting::Data | Expecting::Done) {
                break;
            }
        }
        Ok(Step::Framing(classified))
    }

    /// The last chunk and its trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.expecting == Expecting::Done
    }

    /// Advance over one framing byte.
    fn framing_byte(&mut self, b: u8) -> Result<(), &'static str> {
        use Expecting::*;
        if b == b'\n' && !matches!(self.expecting, SizeLineLf | DataLf | TrailerLf | FinalLf) {
            // Some decoders end a line at a bare LF, others do not: the same
            // bytes would be two different bodies.
            return Err("bare LF in chunked framing");
        }
        if self.in_size_line() {
            self.line_bytes += 1;
            if self.line_bytes > MAX_SIZE_LINE_BYTES {
                return Err("chunk size line too long");
            }
            if b == b'\r' && self.after_whitespace {
                return Err("whitespace before CRLF in chunk size line");
            }
            self.after_whitespace = b == b' ' || b == b'\t';
        } else if self.in_trailers() {
            self.line_bytes += 1;
            if self.line_bytes > MAX_TRAILER_BYTES {
                return Err("chunked trailer section too large");
            }
        }

        let is_ws = b == b' ' || b == b'\t';
        self.expecting = match (self.expecting, b) {
            (SizeDigits, _) if b.is_ascii_hexdigit() => {
                self.size_digits += 1;
                if self.size_digits > MAX_SIZE_DIGITS {
                    return Err("chunk size overflows");
                }
                let digit = u64::from(hex_value(b));
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or("chunk size overflows")?;
                SizeDigits
            }
            (SizeDigits, _) if self.size_digits == 0 => return Err("chunk size is not hex"),
            (SizeDigits, b';') | (SizeWhitespace, b';') => ExtensionName,
            (SizeDigits, b'\r') => SizeLineLf,
            (SizeDigits, _) | (SizeWhitespace, _) if is_ws => SizeWhitespace,
            (SizeDigits, _) => return Err("invalid byte after chunk size"),
            (SizeWhitespace, _) => return Err("invalid byte after chunk size"),

            (ExtensionName, _) if is_ws => ExtensionName,
            (ExtensionName, _) if is_tchar(b) => ExtensionNameRest,
            (ExtensionName, _) => return Err("invalid chunk extension name"),
            (ExtensionNameRest, _) if is_tchar(b) => ExtensionNameRest,
            (ExtensionNameRest | ExtensionAfterName, b'=') => ExtensionValue,
            (ExtensionNameRest | ExtensionAfterName, b';') => ExtensionName,
            (ExtensionNameRest, b'\r') => SizeLineLf,
            (ExtensionNameRest | ExtensionAfterName, _) if is_ws => ExtensionAfterName,
            (ExtensionNameRest | ExtensionAfterName, _) => {
                return Err("invalid byte in chunk extension");
            }
            (ExtensionValue, _) if is_ws => ExtensionValue,
            (ExtensionValue, b'"') => ExtensionQuoted,
            (ExtensionValue, _) if is_tchar(b) => ExtensionTokenRest,
            (ExtensionValue, _) => return Err("invalid chunk extension value"),
            (ExtensionTokenRest, _) if is_tchar(b) => ExtensionTokenRest,
            (ExtensionTokenRest | ExtensionAfterValue, b';') => ExtensionName,
            (ExtensionTokenRest | ExtensionAfterValue, b'\r') => SizeLineLf,
            (ExtensionTokenRest | ExtensionAfterValue, _) if is_ws => ExtensionAfterValue,
            (ExtensionTokenRest | ExtensionAfterValue, _) => {
                return Err("invalid byte in chunk extension");
            }
            (ExtensionQuoted, b'"') => ExtensionAfterValue,
            (ExtensionQuoted, b'\\') => ExtensionQuotedEscape,
            // qdtext: HTAB, SP, VCHAR except `"` and `\`, obs-text. A CR
            // inside quotes is where lenient decoders have been fooled.
            (ExtensionQuoted, _) if is_ws || is_visible_or_obs_text(b) => ExtensionQuoted,
            (ExtensionQuoted, _) => return Err("invalid byte in quoted chunk extension"),
            (ExtensionQuotedEscape, _) if is_ws || is_visible_or_obs_text(b) => ExtensionQuoted,
            (ExtensionQuotedEscape, _) => return Err("invalid escape in chunk extension"),

            (SizeLineLf, b'\n') => {
                self.line_bytes = 0;
                self.size_digits = 0;
                self.after_whitespace = false;
                if self.size == 0 {
                    TrailerLineStart
                } else {
                    Data
                }
            }
            (SizeLineLf, _) => return Err("CR without LF in chunk size line"),

            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err("chunk data overruns its size (missing CRLF)"),
            (DataLf, b'\n') => SizeDigits,
            (DataLf, _) => return Err("missing LF after chunk data"),

            (TrailerLineStart, b'\r') => FinalLf,
            (TrailerLineStart, _) if is_ws => return Err("obs-fold in chunked trailer"),
            (TrailerLineStart, _) if is_tchar(b) => TrailerName,
            (TrailerLineStart, _) => return Err("invalid chunked trailer field name"),
            (TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerName, _) => return Err("invalid chunked trailer field name"),
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_ws || is_visible_or_obs_text(b) => TrailerValue,
            (TrailerValue, _) => return Err("invalid byte in chunked trailer value"),
            (TrailerLf, b'\n') => TrailerLineStart,
            (TrailerLf, _) => return Err("CR without LF in chunked trailer"),
            (FinalLf, b'\n') => Done,
            (FinalLf, _) => return Err("CR without LF at end of chunked body"),

            // `step` never feeds framing bytes in these states.
            (Data | Done, _) => return Err("internal: framing byte in data state"),
        };
        Ok(())
    }

    fn in_size_line(&self) -> bool {
        use Expecting::*;
        matches!(
            self.expecting,
            SizeDigits
                | SizeWhitespace
                | ExtensionName
                | ExtensionNameRest
                | ExtensionAfterName
                | ExtensionValue
                | ExtensionTokenRest
                | ExtensionQuoted
                | ExtensionQuotedEscape
                | ExtensionAfterValue
                | SizeLineLf
        )
    }

    fn in_trailers(&self) -> bool {
        use Expecting::*;
        matches!(
            self.expecting,
            TrailerLineStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        )
    }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// VCHAR (0x21-0x7E) or obs-text (0x80-0xFF): what may appear in a field
/// value or quoted string besides whitespace. Excludes CTLs, NUL and DEL.
fn is_visible_or_obs_text(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}
