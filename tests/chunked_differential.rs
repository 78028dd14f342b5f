//! Two chunked decoders that must agree.
//!
//! ferroxy's [`ChunkedDecoder`](ferroxy::http::chunked::ChunkedDecoder) is a
//! byte-at-a-time state machine, because bytes arrive in arbitrary pieces
//! and it must never buffer a line. That shape is fast and allocation-free,
//! but hard to check by reading: twenty states, and a rule like "no
//! whitespace before CRLF" spread over all of them.
//!
//! So this story writes RFC 9112 section 7.1 a second time in the shape that
//! is easy to check by reading: a recursive-descent parser over the whole
//! body at once, one function per rule of the grammar, with ferroxy's
//! stricter choices spelled out where they apply (16 hex digits at most, no
//! whitespace before a line's CR, no bare LF anywhere, a 4096-byte size line
//! and a 16384-byte trailer section). Then it generates twenty thousand
//! bodies from fixed seeds, valid ones and ones broken on purpose, feeds
//! each to ferroxy's decoder in random pieces and one byte at a time, and
//! asks both for the same answer: which bytes are data and which framing,
//! where the body ends (or that it needs more), and for a broken body the
//! offending byte and the reason.
//!
//! Where the two disagree, one of them is wrong, and the failure message
//! prints the seed and the input so the case replays exactly. The feeding
//! and the comparison are those of the `chunked_split` fuzz target
//! (`fuzz/properties.rs`), so the fuzzer and this story judge alike.

#[path = "../fuzz/properties.rs"]
mod properties;
#[path = "support/xorshift.rs"]
mod xorshift;

use ferroxy::http::chunked::{MAX_SIZE_LINE_BYTES, MAX_TRAILER_BYTES};
use ferroxy::http::framing::{BodyFraming, FramingError};
use properties::{Classified, Ending, check_same_classification, feed};
use xorshift::XorShift;

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

/// Why the model stopped before the end of a body.
#[derive(Debug)]
enum Stop {
    /// The input ran out inside the body.
    NeedMore,
    /// The byte at `at` cannot be there, for this reason (ferroxy's words).
    Bad { at: usize, why: &'static str },
}

const BARE_LF: &str = "bare LF in chunked framing";
const WHITESPACE_BEFORE_CR: &str = "whitespace before CRLF in chunk size line";

/// `tchar` (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// VCHAR or obs-text: what a quoted string or a field value may hold
/// besides whitespace.
fn is_vchar_or_obs(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// A cursor over the whole body, and the data ranges found so far (every
/// other byte before the end is framing).
struct Model<'a> {
    input: &'a [u8],
    pos: usize,
    data: Vec<(usize, usize)>,
    /// Inside a size line, where whitespace before the CR is refused.
    in_size_line: bool,
}

impl Model<'_> {
    fn peek(&self) -> Result<u8, Stop> {
        self.input.get(self.pos).copied().ok_or(Stop::NeedMore)
    }

    /// The byte at the cursor breaks the grammar for reason `why`. Two rules
    /// come before any grammar: an LF that does not end a CRLF is a bare LF
    /// wherever it is, and a CR right after whitespace on a size line is
    /// whitespace before CRLF whether or not the grammar wanted a CR there.
    fn unexpected(&self, why: &'static str) -> Stop {
        let b = self.input[self.pos];
        let why = if b == b'\n' {
            BARE_LF
        } else if b == b'\r' && self.in_size_line && self.after_ws() {
            WHITESPACE_BEFORE_CR
        } else {
            why
        };
        Stop::Bad { at: self.pos, why }
    }

    fn after_ws(&self) -> bool {
        self.pos > 0 && is_ws(self.input[self.pos - 1])
    }

    fn skip_ws(&mut self) -> Result<(), Stop> {
        while is_ws(self.peek()?) {
            self.pos += 1;
        }
        Ok(())
    }

    /// `chunked-body = *chunk last-chunk trailer-section CRLF`: the offset
    /// just past the body.
    fn body(&mut self) -> Result<usize, Stop> {
        loop {
            let size = self.limited(MAX_SIZE_LINE_BYTES, "chunk size line too long", |m| {
                m.size_line()
            })?;
            if size == 0 {
                break;
            }
            self.chunk_data(size)?;
        }
        self.limited(
            MAX_TRAILER_BYTES,
            "chunked trailer section too large",
            Model::trailer_section,
        )?;
        Ok(self.pos)
    }

    /// Run `rule` on a part of the body that may take at most `limit`
    /// bytes. Whatever `rule` found at or past the first byte over the limit
    /// is replaced by "too long" there: a decoder that holds no line cannot
    /// know how the line would have gone on, only that it went on too long.
    /// The exception is a bare LF on that very byte, which is checked first.
    fn limited<T>(
        &mut self,
        limit: usize,
        too_long: &'static str,
        rule: impl FnOnce(&mut Self) -> Result<T, Stop>,
    ) -> Result<T, Stop> {
        let over = self.pos + limit;
        let answer = rule(self);
        let too_long = Stop::Bad {
            at: over,
            why: too_long,
        };
        match answer {
            Ok(_) if self.pos > over => Err(too_long),
            Err(Stop::NeedMore) if self.input.len() > over => Err(too_long),
            Err(Stop::Bad { at, why }) if at > over || (at == over && why != BARE_LF) => {
                Err(too_long)
            }
            answer => answer,
        }
    }

    /// `chunk-size [chunk-ext] CRLF`, with `chunk-size = 1*16HEXDIG`.
    fn size_line(&mut self) -> Result<u64, Stop> {
        self.in_size_line = true;
        let size = self.chunk_size()?;
        self.chunk_extensions()?;
        self.crlf("CR without LF in chunk size line")?;
        self.in_size_line = false;
        Ok(size)
    }

    fn chunk_size(&mut self) -> Result<u64, Stop> {
        let mut size = 0u64;
        let mut digits = 0;
        while let Some(digit) = (self.peek()? as char).to_digit(16) {
            digits += 1;
            if digits > 16 {
                return Err(Stop::Bad {
                    at: self.pos,
                    why: "chunk size overflows",
                });
            }
            size = size * 16 + u64::from(digit);
            self.pos += 1;
        }
        if digits == 0 {
            return Err(self.unexpected("chunk size is not hex"));
        }
        Ok(size)
    }

    /// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, ending at the
    /// line's CR (which is left for [`Model::crlf`]).
    fn chunk_extensions(&mut self) -> Result<(), Stop> {
        // Right after the size, only `;` or the line end may follow, and
        // the reason differs from the one inside an extension.
        self.skip_ws()?;
        match self.peek()? {
            b';' => {}
            b'\r' if !self.after_ws() => return Ok(()),
            _ => return Err(self.unexpected("invalid byte after chunk size")),
        }
        loop {
            // At a `;`.
            self.pos += 1;
            self.skip_ws()?;
            self.token("invalid chunk extension name")?;
            self.skip_ws()?;
            if self.peek()? == b'=' {
                self.pos += 1;
                self.skip_ws()?;
                if self.peek()? == b'"' {
                    self.quoted_string()?;
                } else {
                    self.token("invalid chunk extension value")?;
                }
                self.skip_ws()?;
            }
            match self.peek()? {
                b';' => continue,
                b'\r' if !self.after_ws() => return Ok(()),
                _ => return Err(self.unexpected("invalid byte in chunk extension")),
            }
        }
    }

    /// `1*tchar`; `why` if there is not even one.
    fn token(&mut self, why: &'static str) -> Result<(), Stop> {
        if !is_tchar(self.peek()?) {
            return Err(self.unexpected(why));
        }
        while is_tchar(self.peek()?) {
            self.pos += 1;
        }
        Ok(())
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, at the opening quote.
    fn quoted_string(&mut self) -> Result<(), Stop> {
        self.pos += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    let b = self.peek()?;
                    if !(is_ws(b) || is_vchar_or_obs(b)) {
                        return Err(self.unexpected("invalid escape in chunk extension"));
                    }
                }
                b if is_ws(b) || is_vchar_or_obs(b) => {}
                _ => return Err(self.unexpected("invalid byte in quoted chunk extension")),
            }
            self.pos += 1;
        }
    }

    /// CR LF, at the CR; `why` when the LF is missing.
    fn crlf(&mut self, why: &'static str) -> Result<(), Stop> {
        debug_assert_eq!(self.input.get(self.pos), Some(&b'\r'));
        self.pos += 1;
        if self.peek()? != b'\n' {
            return Err(Stop::Bad { at: self.pos, why });
        }
        self.pos += 1;
        Ok(())
    }

    /// `chunk-data CRLF`: exactly `size` bytes, whatever they are.
    fn chunk_data(&mut self, size: u64) -> Result<(), Stop> {
        let start = self.pos;
        let available = (self.input.len() - start) as u64;
        if available < size {
            self.data.push((start, self.input.len()));
            self.pos = self.input.len();
            return Err(Stop::NeedMore);
        }
        self.pos += size as usize;
        self.data.push((start, self.pos));
        if self.peek()? != b'\r' {
            return Err(self.unexpected("chunk data overruns its size (missing CRLF)"));
        }
        self.crlf("missing LF after chunk data")
    }

    /// `*( field-line CRLF ) CRLF` after the last chunk, with
    /// `field-line = token ":" *( SP / HTAB / VCHAR / obs-text )`.
    fn trailer_section(&mut self) -> Result<(), Stop> {
        loop {
            match self.peek()? {
                b'\r' => return self.crlf("CR without LF at end of chunked body"),
                b if is_ws(b) => return Err(self.unexpected("obs-fold in chunked trailer")),
                _ => {}
            }
            self.token("invalid chunked trailer field name")?;
            if self.peek()? != b':' {
                return Err(self.unexpected("invalid chunked trailer field name"));
            }
            self.pos += 1;
            loop {
                match self.peek()? {
                    b'\r' => break,
                    b if is_ws(b) || is_vchar_or_obs(b) => self.pos += 1,
                    _ => return Err(self.unexpected("invalid byte in chunked trailer value")),
                }
            }
            self.crlf("CR without LF in chunked trailer")?;
        }
    }
}

/// The model's answer for `input`, in the shape [`feed`] gives for the
/// decoder under test, as if fed one byte at a time (so a refusal is at the
/// offending byte itself).
fn reference(input: &[u8]) -> Classified {
    let mut model = Model {
        input,
        pos: 0,
        data: Vec::new(),
        in_size_line: false,
    };
    let (end, ending) = match model.body() {
        Ok(done) => (done, Ending::Done(done)),
        Err(Stop::NeedMore) => (input.len(), Ending::NeedMore),
        Err(Stop::Bad { at, why }) => (
            at,
            Ending::Failed {
                from: at,
                why: FramingError::BadChunk(why),
            },
        ),
    };
    let mut labels = vec![b'F'; end];
    for (start, stop) in model.data {
        for label in labels.iter_mut().take(stop.min(end)).skip(start) {
            *label = b'D';
        }
    }
    Classified { labels, ending }
}

// ---------------------------------------------------------------------------
// Generating bodies
// ---------------------------------------------------------------------------

/// Bytes that sit on grammar boundaries: most interesting mutations use one.
const INTERESTING: &[u8] = b"\r\n \t;=\"\\:0fFgx,\x00\x7f\x80\xff";

fn pick(rng: &mut XorShift, from: &[u8]) -> u8 {
    from[rng.below(from.len())]
}

fn token(rng: &mut XorShift, out: &mut Vec<u8>) {
    const TCHARS: &[u8] = b"abcXYZ019!#$%&'*+-.^_`|~";
    for _ in 0..1 + rng.below(6) {
        out.push(pick(rng, TCHARS));
    }
}

fn bws(rng: &mut XorShift, out: &mut Vec<u8>) {
    for _ in 0..rng.below(3).saturating_sub(1) {
        out.push(pick(rng, b" \t"));
    }
}

/// A valid chunked body, possibly followed by the next message's bytes.
fn valid_body(rng: &mut XorShift) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(4) {
        let size = 1 + rng.below(40);
        let digits = format!("{size:x}");
        let zeros = rng.below(3).min(16 - digits.len());
        out.extend(std::iter::repeat_n(b'0', zeros));
        for d in digits.bytes() {
            let upper = rng.below(2) == 0;
            out.push(if upper { d.to_ascii_uppercase() } else { d });
        }
        for _ in 0..rng.below(3) {
            bws(rng, &mut out);
            out.push(b';');
            bws(rng, &mut out);
            token(rng, &mut out);
            if rng.below(2) == 0 {
                bws(rng, &mut out);
                out.push(b'=');
                bws(rng, &mut out);
                if rng.below(2) == 0 {
                    token(rng, &mut out);
                } else {
                    out.push(b'"');
                    for _ in 0..rng.below(6) {
                        match rng.below(4) {
                            0 => out.extend_from_slice(&[b'\\', pick(rng, b"\"\\ a\x80")]),
                            1 => out.push(pick(rng, b" \tA~\x80\xff")),
                            _ => out.push(b'a' + rng.below(26) as u8),
                        }
                    }
                    out.push(b'"');
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        // Chunk data is anything, CR and LF included: they must count as
        // data, not framing.
        for _ in 0..size {
            out.push(if rng.below(8) == 0 {
                pick(rng, INTERESTING)
            } else {
                rng.next() as u8
            });
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend(std::iter::repeat_n(b'0', 1 + rng.below(3)));
    if rng.below(4) == 0 {
        out.extend_from_slice(b";last");
    }
    out.extend_from_slice(b"\r\n");
    for _ in 0..rng.below(3) {
        token(rng, &mut out);
        out.push(b':');
        for _ in 0..rng.below(8) {
            out.push(pick(rng, b" \tabc~\x80\xff:;"));
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if rng.below(2) == 0 {
        out.extend_from_slice(b"GET /next HTTP/1.1\r\n");
    }
    out
}

/// A body broken in one of the ways decoders have disagreed about.
fn mutate(rng: &mut XorShift, body: &mut Vec<u8>) {
    let at = rng.below(body.len());
    match rng.below(9) {
        0 => body[at] = pick(rng, INTERESTING),
        1 => body[at] = rng.next() as u8,
        2 => body.insert(at, pick(rng, INTERESTING)),
        3 => {
            body.remove(at);
        }
        4 => body.truncate(at),
        // A bare LF: a CRLF loses its CR.
        5 => {
            if let Some(cr) = find_from(body, at, b"\r\n") {
                body.remove(cr);
            }
        }
        // Whitespace before a CRLF.
        6 => {
            if let Some(cr) = find_from(body, at, b"\r\n") {
                body.insert(cr, pick(rng, b" \t"));
            }
        }
        // A size with more digits than a u64 holds, or just at the edge.
        7 => {
            let digits: &[u8] = match rng.below(3) {
                0 => b"10000000000000000",
                1 => b"ffffffffffffffff",
                _ => b"00000000000000001",
            };
            body.splice(0..0, digits.iter().copied());
        }
        // A CR inside a quoted extension, where lenient decoders have
        // ended the line.
        _ => {
            body.splice(0..0, b"1;a=\"x\ry\"\r\nz\r\n".iter().copied());
        }
    }
}

fn find_from(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A body whose size line or trailer section is a few bytes either side of
/// its limit: off-by-one errors live exactly there.
fn near_a_limit(rng: &mut XorShift) -> Vec<u8> {
    let slack = rng.below(7) as isize - 3;
    let mut out = Vec::new();
    if rng.below(2) == 0 {
        // "1;" + name + CRLF = MAX_SIZE_LINE_BYTES + slack.
        let name = (MAX_SIZE_LINE_BYTES as isize - 4 + slack) as usize;
        out.extend_from_slice(b"1;");
        out.extend(std::iter::repeat_n(b'n', name));
        out.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    } else {
        // One trailer line; the section is its bytes plus the final CRLF.
        let value = (MAX_TRAILER_BYTES as isize - 6 + slack) as usize;
        out.extend_from_slice(b"0\r\nT:");
        out.extend(std::iter::repeat_n(b'v', value));
        out.extend_from_slice(b"\r\n\r\n");
    }
    if rng.below(3) == 0 {
        let at = out.len() - rng.below(8) - 1;
        out[at] = pick(rng, INTERESTING);
    }
    out
}

// ---------------------------------------------------------------------------
// The stories
// ---------------------------------------------------------------------------

/// Both decoders on `input`: the decoder under test one byte at a time must
/// give the model's answer exactly, and in `rng`'s pieces the same answer
/// as far as it can know it (see [`check_same_classification`]). Returns
/// how the body ended, with a refusal's offset left out, so a story can
/// count which endings its inputs reached.
fn agree(input: &[u8], rng: &mut XorShift, case: &str) -> Ending {
    let expected = reference(input);
    let bytewise: Vec<usize> = (1..input.len()).collect();
    let mut piece_ends = Vec::new();
    let mut end = 0;
    while end < input.len() {
        end += 1 + rng.below(12);
        piece_ends.push(end);
    }
    let outcome = std::panic::catch_unwind(|| {
        let one_by_one = feed(BodyFraming::Chunked, input, &bytewise);
        assert_eq!(one_by_one, expected, "one byte at a time");
        let pieces = feed(BodyFraming::Chunked, input, &piece_ends);
        check_same_classification(&expected, &pieces, &piece_ends, input.len());
        let whole = feed(BodyFraming::Chunked, input, &[]);
        check_same_classification(&expected, &whole, &[], input.len());
    });
    if let Err(panic) = outcome {
        eprintln!(
            "{case}: decoder and model disagree on {:?}\n  model: {:?}\n  pieces end at {piece_ends:?}",
            String::from_utf8_lossy(input).escape_debug().to_string(),
            expected.ending,
        );
        std::panic::resume_unwind(panic);
    }
    match expected.ending {
        Ending::Failed { why, .. } => Ending::Failed { from: 0, why },
        ending => ending,
    }
}

/// Every reason the decoder can give, bar the "internal" one it never
/// should. A differential test that never reaches a reason says nothing
/// about it, so the generated bodies must reach them all.
const EVERY_REASON: [&str; 20] = [
    BARE_LF,
    WHITESPACE_BEFORE_CR,
    "chunk size line too long",
    "chunked trailer section too large",
    "chunk size overflows",
    "chunk size is not hex",
    "invalid byte after chunk size",
    "invalid chunk extension name",
    "invalid byte in chunk extension",
    "invalid chunk extension value",
    "invalid byte in quoted chunk extension",
    "invalid escape in chunk extension",
    "CR without LF in chunk size line",
    "chunk data overruns its size (missing CRLF)",
    "missing LF after chunk data",
    "obs-fold in chunked trailer",
    "invalid chunked trailer field name",
    "invalid byte in chunked trailer value",
    "CR without LF in chunked trailer",
    "CR without LF at end of chunked body",
];

#[test]
fn valid_bodies_are_read_alike_however_they_arrive() {
    let mut rng = XorShift(0x5eed_0001);
    for case in 0..5_000 {
        let body = valid_body(&mut rng);
        assert!(
            matches!(reference(&body).ending, Ending::Done(_)),
            "the generator made an invalid body: {:?}",
            String::from_utf8_lossy(&body)
        );
        agree(&body, &mut rng, &format!("valid case {case}"));
    }
}

#[test]
fn broken_bodies_are_refused_at_the_same_byte_for_the_same_reason() {
    let mut rng = XorShift(0x5eed_0002);
    let mut reached = Vec::new();
    for case in 0..14_000 {
        let mut body = valid_body(&mut rng);
        for _ in 0..1 + rng.below(3) {
            if !body.is_empty() {
                mutate(&mut rng, &mut body);
            }
        }
        reached.push(agree(&body, &mut rng, &format!("broken case {case}")));
    }
    let limits = [
        "chunk size line too long",
        "chunked trailer section too large",
    ];
    for why in EVERY_REASON.iter().filter(|why| !limits.contains(why)) {
        assert!(
            reached.contains(&refusal(why)),
            "no broken body was refused for {why:?}: the mutations miss a case"
        );
    }
}

/// The ending of a body refused for `why`, wherever: [`Ending`]'s equality
/// is too exact for "was this reason reached?", so offsets are zeroed.
fn refusal(why: &'static str) -> Ending {
    Ending::Failed {
        from: 0,
        why: FramingError::BadChunk(why),
    }
}

#[test]
fn lines_at_their_limits_are_cut_at_the_same_byte() {
    let mut rng = XorShift(0x5eed_0003);
    let mut reached = Vec::new();
    for case in 0..200 {
        let body = near_a_limit(&mut rng);
        reached.push(agree(&body, &mut rng, &format!("limit case {case}")));
    }
    for why in [
        "chunk size line too long",
        "chunked trailer section too large",
    ] {
        assert!(reached.contains(&refusal(why)), "no body went past {why:?}");
    }
    assert!(
        reached
            .iter()
            .any(|ending| matches!(ending, Ending::Done(_))),
        "no body just inside a limit was read to its end"
    );
}

#[test]
fn the_model_says_what_the_rfc_and_ferroxy_say_on_hand_written_bodies() {
    let refused = |input: &[u8]| match reference(input).ending {
        Ending::Failed {
            from,
            why: FramingError::BadChunk(why),
        } => (from, why),
        other => panic!(
            "{:?} was not refused: {other:?}",
            String::from_utf8_lossy(input)
        ),
    };
    assert_eq!(
        reference(b"5;a=\"b c\"\r\nhello\r\n0\r\nT: v\r\n\r\nX").ending,
        Ending::Done(29)
    );
    assert_eq!(refused(b"5\nhello"), (1, BARE_LF));
    assert_eq!(refused(b"5 \r\n"), (2, WHITESPACE_BEFORE_CR));
    assert_eq!(refused(b"5;a=\"b \r\n"), (7, WHITESPACE_BEFORE_CR));
    assert_eq!(
        refused(b"10000000000000000\r\n"),
        (16, "chunk size overflows")
    );
    assert_eq!(
        refused(b"2\r\nabc\r\n"),
        (5, "chunk data overruns its size (missing CRLF)")
    );
    assert_eq!(
        refused(b"0\r\n x\r\n\r\n"),
        (3, "obs-fold in chunked trailer")
    );
    for input in [&b"5;a=\"b c\"\r\nhel"[..], b"0\r\nT: v\r\n", b""] {
        assert_eq!(reference(input).ending, Ending::NeedMore);
    }
}
