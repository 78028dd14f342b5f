//! The idle pool: upstream connections kept open between requests.
//!
//! Opening a TCP connection costs a round trip and a few syscalls on each
//! side; reusing one costs nothing. After a response that was framed
//! correctly and did not say `Connection: close`, the reactor parks the
//! upstream connection here, per upstream, and the next request to that
//! upstream takes the most recently parked one (LIFO: the warmest, and the
//! least likely to have been closed by the upstream's own idle timeout).
//!
//! Sans-IO bookkeeping only: the pool holds slab keys; the sockets stay in
//! the reactor's slab, registered as they were (READABLE and WRITABLE, so
//! parking and reusing cost no `epoll_ctl`), because any readable event on an
//! idle connection means the upstream closed it (or broke protocol) and it
//! must go at once (lesson `12-keepalive-and-pool`).

/// Idle connection keys, one LIFO stack per upstream (oldest at the bottom).
///
/// `max_idle_per_upstream` is a hard bound, checked where it could be
/// broken: parking one more than the limit evicts the oldest, so the pool
/// never holds more, not even for a moment. (An earlier version let a burst
/// overshoot for a second to save reconnects at 500 clients; the contract
/// says a bound is a bound, and nginx's `keepalive 32` evicts the same way.)
#[derive(Debug)]
pub struct IdlePool {
    per_upstream: Vec<Vec<usize>>,
    max_per_upstream: usize,
}

impl IdlePool {
    pub fn new(upstreams: usize, max_per_upstream: usize) -> IdlePool {
        IdlePool {
            per_upstream: vec![Vec::new(); upstreams],
            max_per_upstream,
        }
    }

    /// The most recently parked connection to `upstream`, if any.
    pub fn take(&mut self, upstream: usize) -> Option<usize> {
        self.per_upstream.get_mut(upstream)?.pop()
    }

    /// Park `key`. Returns the connection the caller must close, if any:
    /// the oldest idle one when the pool for `upstream` is full, or `key`
    /// itself when the pool is off (a limit of 0) or the upstream unknown.
    /// The oldest goes rather than the newest because it is the likeliest
    /// to be closed soon by the upstream's own idle timeout.
    pub fn park(&mut self, upstream: usize, key: usize) -> Option<usize> {
        if self.max_per_upstream == 0 {
            return Some(key);
        }
        let Some(stack) = self.per_upstream.get_mut(upstream) else {
            return Some(key);
        };
        let evicted = (stack.len() >= self.max_per_upstream).then(|| stack.remove(0));
        stack.push(key);
        evicted
    }

    /// A reload changed the limit. Returns the connections now over it,
    /// oldest first, for the caller to close at once.
    pub fn set_max_per_upstream(&mut self, max: usize) -> Vec<usize> {
        self.max_per_upstream = max;
        let mut excess = Vec::new();
        for stack in &mut self.per_upstream {
            let over = stack.len().saturating_sub(max);
            excess.extend(stack.drain(..over));
        }
        excess
    }

    /// Forget `key` (it closed while idle). Returns whether it was here.
    pub fn remove(&mut self, upstream: usize, key: usize) -> bool {
        let Some(stack) = self.per_upstream.get_mut(upstream) else {
            return false;
        };
        match stack.iter().position(|&k| k == key) {
            Some(at) => {
                stack.remove(at);
                true
            }
            None => false,
        }
    }

    /// Idle connections to one upstream.
    pub fn len_of(&self, upstream: usize) -> usize {
        self.per_upstream.get(upstream).map_or(0, Vec::len)
    }

    /// Idle connections, all upstreams together.
    pub fn len(&self) -> usize {
        self.per_upstream.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every parked key (to close them all at shutdown or reload).
    pub fn drain_all(&mut self) -> Vec<usize> {
        self.per_upstream
            .iter_mut()
            .flat_map(std::mem::take)
            .collect()
    }
}
