//! ferroxy: a small reverse proxy on one mio loop, written to be read.
//!
//! The modules below are listed in reading order: from what the user writes,
//! through the plain data structures (no sockets), to the one loop that
//! drives them. Each names the lesson in `lessons/` that explains it.
//!
//! ```text
//!   events --> reactor --(bytes)--> http (parse, rewrite, framing)
//!                 |  \--(which?)--> balance, pool
//!                 |  \--(when?)---> timer, timeouts
//!                 \----(moves)----> exchange, conn, buffer
//! ```

// What the user writes and sees.
// `config.json` as serde structs; errors that name the field.
pub mod config;
// Command-line flags (`--config`, `--check`, `--demo`, ...).
pub mod cli;

// Sans-IO building blocks: plain structs fed bytes or ticks, tested without sockets.
// Fixed-capacity byte buffer with partial reads and writes (lesson 08).
pub mod buffer;
// HTTP/1.1 heads, rewriting, body framing, chunked decoding (lessons 07, 11).
pub mod http;
// Which upstream: smooth weighted round-robin, least_conn, ip_hash (lessons 12, 15).
pub mod balance;
// Per-upstream health: passive ejection, half-open probes, active-check thresholds (lesson 15).
pub mod health;
// When a failed request may go elsewhere, and the retry budget (lesson 15).
pub mod retry;
// Token buckets per client address or global, in a bounded table (lesson 15).
pub mod rate_limit;
// Per-upstream LIFO pool of idle keep-alive connections (lesson 12).
pub mod pool;
// The upstreams of a group and their bookkeeping; choosing one for an attempt (lessons 12, 15).
pub mod group;
// Hashed timer wheel: O(1) insert and cancel, sleep until the next deadline (lesson 10).
pub mod timer;
// Which deadline a connection is under; lazy re-arming (lesson 10).
pub mod timeouts;
// Which handler a request goes to: a route's group, a static root, or `default` (lesson 16).
pub mod route;
// Static files: escape-proof opening, conditional and range rules, sendfile (lesson 16).
pub mod files;

// The reactor and the state it drives.
// Slab key + generation packed into a mio `Token` (lesson 06).
pub mod token;
// A socket, its readiness, its role; the byte pumps (lessons 04, 05, 08).
pub mod conn;
// Plain TCP or TLS, one type behind the pumps (lesson 17).
pub mod transport;
// TLS termination: certificates by SNI, the rustls record layer as pumps (lesson 17).
pub mod tls;
// One request and its response as a state machine (lesson 05).
pub mod exchange;
// Zero-copy relay of long bodies with splice(2) (lesson 13).
pub mod splice;
// The `mio::Poll` loop: accept, dispatch, timers, signals, backpressure (lessons 03, 09, 10, 14).
pub mod reactor;
// Counters and a latency histogram owned by the loop (lesson 13).
pub mod metrics;
// The last few minutes of requests/s, p99 and errors, one sample a second (lesson 13).
pub mod series;
// The metrics listener's pages: Prometheus text, JSON (lesson 13).
pub mod admin;
// The HTML panel: figures, upstream health, the last minutes charted (lesson 13).
pub mod panel;
// One line per request (lesson 14).
pub mod access_log;

// For newcomers.
// Built-in demo upstreams for `--demo` (lesson 01 onward).
pub mod demo;
// The static site `--demo` serves at `/static/` (lesson 16).
pub mod demo_site;
// `--demo`'s TLS listener on a self-signed certificate (lesson 17).
pub mod demo_tls;
