//! Tokens: how an event from the kernel finds its connection.
//!
//! mio hands back the `Token` we registered a socket with. Ours packs the
//! connection's slab key *and a generation*: `token = generation << 32 | key`.
//! Slab keys are reused as soon as an entry is freed, so an event (or, later,
//! a timer) meant for a connection that closed a moment ago would otherwise
//! land on whichever new connection took its key. The generation tells them
//! apart: an event whose generation does not match the entry's is stale and
//! is dropped.
//!
//! Lesson: `lessons/06-slab-and-tokens`.

use mio::Token;

/// The listening socket.
pub const LISTENER: Token = Token(usize::MAX);
/// The waker other threads use to stop the loop.
pub const WAKER: Token = Token(usize::MAX - 1);
/// Signals (SIGTERM, SIGINT, SIGHUP), delivered through a pipe.
pub const SIGNALS: Token = Token(usize::MAX - 2);
/// The metrics/admin listener.
pub const ADMIN_LISTENER: Token = Token(usize::MAX - 3);
/// The TLS listener (`tls.listen`).
pub const TLS_LISTENER: Token = Token(usize::MAX - 4);

// The generation takes the upper 32 bits of the token.
const _: () = assert!(
    usize::BITS >= 64,
    "tokens pack key and generation into 64 bits"
);

/// A connection's slab key plus the generation it was created in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: usize,
    pub generation: u32,
}

impl ConnId {
    pub fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.key)
    }

    /// The connection a token names; `None` for the listener, the waker
    /// and the signal pipe.
    pub fn from_token(token: Token) -> Option<ConnId> {
        if token == LISTENER || token == WAKER || token == SIGNALS || token == ADMIN_LISTENER {
            return None;
        }
        Some(ConnId {
            key: token.0 & 0xFFFF_FFFF,
            generation: (token.0 >> 32) as u32,
        })
    }
}
