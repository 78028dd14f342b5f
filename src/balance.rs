//! Which upstream gets the next request: round-robin.
//!
//! Sans-IO: the balancer only counts. The reactor asks it for an index into
//! the config's upstream list; when a connect fails it asks for the next one,
//! so a dead upstream costs a retry, not an error (lesson `12-keepalive-and-pool`).

/// Round-robin over `count` upstreams.
#[derive(Debug)]
pub struct RoundRobin {
    count: usize,
    next: usize,
}

impl RoundRobin {
    pub fn new(count: usize) -> RoundRobin {
        assert!(count > 0, "the config guarantees at least one upstream");
        RoundRobin { count, next: 0 }
    }

    /// The upstream for a new request.
    pub fn pick(&mut self) -> usize {
        let chosen = self.next;
        self.next = (self.next + 1) % self.count;
        chosen
    }

    /// The upstream to try after `index` failed to connect.
    pub fn after(&self, index: usize) -> usize {
        (index + 1) % self.count
    }
}
