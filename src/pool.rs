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

/// Idle connection keys, one LIFO stack per upstream.
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

    /// Park `key`. When the stack is full the *oldest* connection is
    /// returned for the caller to close (with a limit of 0, `key` itself).
    pub fn park(&mut self, upstream: usize, key: usize) -> Option<usize> {
        let max = self.max_per_upstream;
        let Some(stack) = self.per_upstream.get_mut(upstream) else {
            return Some(key);
        };
        if max == 0 {
            return Some(key);
        }
        stack.push(key);
        if stack.len() > max {
            Some(stack.remove(0))
        } else {
            None
        }
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

    /// A reload changed the limit: applies from the next `park` on.
    pub fn set_max_per_upstream(&mut self, max: usize) {
        self.max_per_upstream = max;
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

    /// Every parked key (to close them all at shutdown).
    pub fn drain_all(&mut self) -> Vec<usize> {
        self.per_upstream
            .iter_mut()
            .flat_map(std::mem::take)
            .collect()
    }
}
