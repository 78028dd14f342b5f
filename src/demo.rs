//! `ferroxy --demo`: two built-in upstreams so a newcomer can `curl` at once.
//! (Skeleton.)

use std::io;
use std::net::SocketAddr;

/// A running demo upstream.
pub struct DemoUpstream {}

impl DemoUpstream {
    /// Start a demo upstream on `addr` (must be loopback), naming itself
    /// `name` in its answers.
    pub fn start(addr: SocketAddr, name: &str) -> io::Result<DemoUpstream> {
        let _ = (addr, name);
        todo!()
    }

    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }
}
