//! The reactor: one `mio::Poll` loop that owns every socket.
//! (Skeleton: the public API the binary and the tests use.)

use std::io;
use std::net::SocketAddr;

use crate::config::Config;

/// A snapshot of what the loop is holding, for tests and (later) metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slab entries: every open socket the loop owns (listener excluded).
    pub connections: usize,
    pub client_connections: usize,
    pub upstream_connections: usize,
    /// Upstream connections parked in the idle pool.
    pub idle_upstream_connections: usize,
    /// Bytes of buffer memory held right now, all connections together.
    pub buffer_bytes: usize,
    /// The most `buffer_bytes` has ever been.
    pub peak_buffer_bytes: usize,
    /// Requests that reached the end of their exchange (any status).
    pub requests: u64,
}

/// A proxy running on its own thread; dropped or `shutdown`, it stops.
pub struct ProxyHandle {}

impl ProxyHandle {
    /// Where it listens (useful with `"listen": "127.0.0.1:0"`).
    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }

    /// What the loop holds now (updated by the loop after every turn).
    pub fn stats(&self) -> Stats {
        todo!()
    }

    /// Stop the loop, close every socket, and wait for the thread.
    pub fn shutdown(self) {
        todo!()
    }
}

/// Bind the listener and run the loop on a new thread.
pub fn start(config: &Config) -> io::Result<ProxyHandle> {
    let _ = config;
    todo!()
}

/// Bind the listener and run the loop on this thread until stopped.
pub fn run(config: &Config) -> io::Result<()> {
    let _ = config;
    todo!()
}
