//! ferroxy: a small reverse proxy on one mio loop, written to be read.
//!
//! The modules below are listed in reading order: from what the user writes,
//! through the plain data structures (no sockets), to the one loop that
//! drives them. Each names the lesson in `lessons/` that explains it.
//!
//! ```text
//!   events --> reactor --(bytes)--> http (parse, rewrite, framing)
//!                 |  \--(which?)--> balance, pool
//!                 \----(moves)----> exchange, conn, buffer
//! ```

// What the user writes and sees.
/// Command-line flags (`--config`, `--check`, `--demo`, ...).
pub mod cli;
/// `config.json` as serde structs; errors that name the field.
pub mod config;

// Sans-IO building blocks: plain structs fed bytes, tested without sockets.
/// Round-robin choice of upstream (lesson 12).
pub mod balance;
/// Fixed-capacity byte buffer with partial reads and writes (lesson 08).
pub mod buffer;
/// HTTP/1.1 heads, rewriting, body framing, chunked decoding (lessons 07, 11).
pub mod http;
/// Per-upstream LIFO pool of idle keep-alive connections (lesson 12).
pub mod pool;

// The reactor and the state it drives.
/// One line per request (lesson 14).
pub mod access_log;
/// A socket, its readiness, its role; the byte pumps (lessons 04, 05, 08).
pub mod conn;
/// One request and its response as a state machine (lesson 05).
pub mod exchange;
/// The `mio::Poll` loop: accept, dispatch, backpressure (lessons 03, 09, 14).
pub mod reactor;
/// Hashed timer wheel: O(1) insert and cancel, sleep until the next deadline (lesson 10).
pub mod timer;
/// Slab key + generation packed into a mio `Token` (lesson 06).
pub mod token;

// For newcomers.
/// Built-in demo upstreams for `--demo` (lesson 01 onward).
pub mod demo;
