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

/// How long connections beyond `max_idle_per_upstream` may stay idle. A
/// burst of responses finishing in one turn parks more connections than the
/// limit for a moment; closing them at once would only mean connecting
/// again for the requests that follow them a millisecond later (at 500
/// concurrent clients that was one `connect` per request). The limit bounds
/// connections left idle, so the excess closes once it has sat this long.
pub const EXCESS_GRACE_MS: u64 = 1000;

/// Idle connection keys, one LIFO stack per upstream, with when each was
/// parked (oldest at the bottom).
#[derive(Debug)]
pub struct IdlePool {
    per_upstream: Vec<Vec<(usize, u64)>>,
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
        self.per_upstream
            .get_mut(upstream)?
            .pop()
            .map(|(key, _)| key)
    }

    /// Park `key` at `now_ms`. With a limit of 0 the pool is off and `key`
    /// comes straight back, for the caller to close. Over the limit it is
    /// kept for now: see [`IdlePool::trim`].
    pub fn park(&mut self, upstream: usize, key: usize, now_ms: u64) -> Option<usize> {
        if self.max_per_upstream == 0 {
            return Some(key);
        }
        match self.per_upstream.get_mut(upstream) {
            Some(stack) => {
                stack.push((key, now_ms));
                None
            }
            None => Some(key),
        }
    }

    /// The oldest connection beyond the limit that has been idle for
    /// [`EXCESS_GRACE_MS`] by `now_ms`, taken out for the caller to close.
    pub fn trim(&mut self, upstream: usize, now_ms: u64) -> Option<usize> {
        let max = self.max_per_upstream;
        let stack = self.per_upstream.get_mut(upstream)?;
        match stack.first() {
            Some(&(key, parked)) if stack.len() > max && parked + EXCESS_GRACE_MS <= now_ms => {
                stack.remove(0);
                Some(key)
            }
            _ => None,
        }
    }

    /// When the next [`IdlePool::trim`] will find something to close.
    pub fn next_trim(&self) -> Option<u64> {
        self.per_upstream
            .iter()
            .filter(|stack| stack.len() > self.max_per_upstream)
            .filter_map(|stack| stack.first().map(|&(_, parked)| parked + EXCESS_GRACE_MS))
            .min()
    }

    /// A reload changed the limit: applies from the next `trim` on.
    pub fn set_max_per_upstream(&mut self, max: usize) {
        self.max_per_upstream = max;
    }

    /// Forget `key` (it closed while idle). Returns whether it was here.
    pub fn remove(&mut self, upstream: usize, key: usize) -> bool {
        let Some(stack) = self.per_upstream.get_mut(upstream) else {
            return false;
        };
        match stack.iter().position(|&(k, _)| k == key) {
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
            .map(|(key, _)| key)
            .collect()
    }
}
