//! Rate limiting: token buckets, one per client address or one for all.
//!
//! **The idea.** A bucket holds up to `burst` tokens and gains `rps` tokens
//! a second. Each request takes one; a request that finds the bucket empty
//! is answered `429 Too Many Requests` with `Retry-After` and never reaches
//! an upstream. So a quiet client may send `burst` requests at once, and
//! after that no more than `rps` a second: bursts are forgiven, floods are
//! not. Nothing ticks in the background: a bucket is refilled lazily, when
//! it is next asked, from the time that passed since it was last seen.
//!
//! **Why integer milli-tokens.** `rps` tokens a second is exactly `rps`
//! milli-tokens a millisecond, so refilling is one multiplication with no
//! remainder to lose. A float bucket drifts by rounding error on every
//! refill; a whole-token bucket computing `elapsed * rps / 1000` would
//! throw the remainder away each time and, asked every millisecond, never
//! refill at all.
//!
//! **Why the table is bounded.** With `per: "client_ip"` the buckets live in
//! a table keyed by address. Source addresses are the attacker's to choose
//! (a botnet, or one host with a whole IPv6 /64), so a table that grew with
//! every new address would be a memory leak anyone can trigger. It holds at
//! most [`MAX_TRACKED_ADDRESSES`]; a new address beyond that evicts the
//! least recently seen one. LRU, because the addresses worth remembering
//! are the ones sending now; one seen long ago has probably refilled to full
//! anyway, and a full bucket is indistinguishable from a fresh one, so
//! forgetting it costs nothing. The table is a `HashMap` from address to a
//! slot in a `Vec` of nodes that also form a doubly linked list, newest to
//! oldest: find, move to front and evict are all O(1).
//!
//! What it does *not* do: an attacker with many addresses still gets a
//! burst per address (eviction hands a returning address a full bucket).
//! The per-address limit is for fairness between clients; against a
//! distributed flood, `per: "global"` is the blunt instrument.
//!
//! Sans-IO like the rest of the core: no sockets, no clock (time comes in as
//! milliseconds), so `tests/rate_limit.rs` runs every story exactly.
//!
//! Lesson: `lessons/15-resilience`.

use std::collections::HashMap;
use std::mem::size_of;
use std::net::IpAddr;

/// The most client addresses the per-IP table remembers: about 11 MiB when
/// full (`tests/rate_limit.rs` prints the figure).
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// One token, in the bucket's unit.
const MILLI: u64 = 1000;

/// What a bucket is shared by: the config's `rate_limit.per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    ClientIp,
    Global,
}

/// Tokens (in thousandths) and when they were last counted.
///
/// The bucket does not store `rps` and `burst`: the limiter passes them in,
/// so a reload changes the rate of every bucket without visiting them.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket. (`rps` does not matter for a full bucket; it is taken
    /// so that both methods read the same.)
    pub fn new(rps: u32, burst: u32, now_ms: u64) -> Self {
        let _ = rps;
        TokenBucket {
            milli_tokens: u64::from(burst) * MILLI,
            last_ms: now_ms,
        }
    }

    /// Take one token, or say how many milliseconds until there is one.
    pub fn take(&mut self, rps: u32, burst: u32, now_ms: u64) -> Result<(), u64> {
        self.refill(rps, burst, now_ms);
        if self.milli_tokens >= MILLI {
            self.milli_tokens -= MILLI;
            return Ok(());
        }
        let missing = MILLI - self.milli_tokens;
        // rps >= 1 is the config's promise; max(1) only keeps a broken
        // promise from dividing by zero.
        Err(missing.div_ceil(u64::from(rps.max(1))))
    }

    fn refill(&mut self, rps: u32, burst: u32, now_ms: u64) {
        // A clock that steps back (or two callers with slightly different
        // `now`) must not mint tokens: no time has passed, and `last_ms`
        // stays put so the same span is not counted twice on the way back up.
        let elapsed_ms = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let gained = elapsed_ms.saturating_mul(u64::from(rps));
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(gained)
            .min(u64::from(burst) * MILLI);
    }

    fn clamp(&mut self, burst: u32) {
        self.milli_tokens = self.milli_tokens.min(u64::from(burst) * MILLI);
    }
}

/// "No node": the end of the recency list. Links are `u32` because the
/// table never exceeds 100,000 nodes, and 8 bytes less per node is 800 KB
/// less at the bound.
const NIL: u32 = u32::MAX;

/// One remembered address: its bucket and its neighbours in recency order.
#[derive(Debug)]
struct Node {
    client: IpAddr,
    bucket: TokenBucket,
    newer: u32,
    older: u32,
}

/// The limiter the reactor asks before forwarding a request.
#[derive(Debug)]
pub struct RateLimiter {
    rps: u32,
    burst: u32,
    per: Per,
    max_addresses: usize,
    global: TokenBucket,
    // std's HashMap hashes with a random key per process (SipHash), so an
    // attacker cannot pick addresses that all land in one chain.
    index: HashMap<IpAddr, u32>,
    nodes: Vec<Node>,
    newest: u32,
    oldest: u32,
    // The largest `index.capacity()` seen. Removals can leave tombstones
    // that lower `capacity()` without freeing a byte, so the high-water
    // mark is the honest figure for `memory_bytes`. NB: evicting at the
    // bound is a remove and an insert each time; the tombstones make std's
    // map settle at twice the slots it needed while filling (262,144 for
    // 100,000 addresses, ~6.5 MB), where rehashing in place keeps it.
    index_capacity: usize,
}

impl RateLimiter {
    pub fn new(rps: u32, burst: u32, per: Per) -> RateLimiter {
        RateLimiter::with_capacity(rps, burst, per, MAX_TRACKED_ADDRESSES)
    }

    /// A limiter whose table holds `max_addresses` (at least 1, at most
    /// [`MAX_TRACKED_ADDRESSES`]); small tables make eviction testable.
    pub fn with_capacity(rps: u32, burst: u32, per: Per, max_addresses: usize) -> RateLimiter {
        RateLimiter {
            rps,
            burst,
            per,
            max_addresses: max_addresses.clamp(1, MAX_TRACKED_ADDRESSES),
            // Full at time 0 is the same as full at any later time.
            global: TokenBucket::new(rps, burst, 0),
            // Nothing preallocated: an idle proxy should not pay 8 MiB.
            index: HashMap::new(),
            nodes: Vec::new(),
            newest: NIL,
            oldest: NIL,
            index_capacity: 0,
        }
    }

    /// `Ok(())`: a token was taken, forward the request. `Err(seconds)`:
    /// answer `429` with `Retry-After: seconds` (whole seconds, at least 1,
    /// rounded up so a client that obeys it finds a token waiting).
    pub fn check(&mut self, client: IpAddr, now_ms: u64) -> Result<(), u64> {
        let (rps, burst) = (self.rps, self.burst);
        let bucket = match self.per {
            Per::Global => &mut self.global,
            Per::ClientIp => {
                // ::ffff:1.2.3.4 is 1.2.3.4 arriving on a dual-stack socket;
                // without this one client would own two buckets.
                let slot = self.touch(client.to_canonical(), now_ms);
                &mut self.nodes[slot].bucket
            }
        };
        bucket
            .take(rps, burst, now_ms)
            .map_err(|wait_ms| wait_ms.div_ceil(1000).max(1))
    }

    /// A reload changed the settings. Same `per`: every client keeps what it
    /// has earned or spent, but no more than the new `burst`. A different
    /// `per`: the old buckets mean nothing now, so start afresh (and give
    /// the table's memory back).
    pub fn reconfigure(&mut self, rps: u32, burst: u32, per: Per) {
        if per == self.per {
            self.global.clamp(burst);
            for node in &mut self.nodes {
                node.bucket.clamp(burst);
            }
            self.rps = rps;
            self.burst = burst;
        } else {
            *self = RateLimiter::with_capacity(rps, burst, per, self.max_addresses);
        }
    }

    /// Addresses in the table (always 0 for [`Per::Global`]).
    pub fn tracked(&self) -> usize {
        self.index.len()
    }

    /// Heap bytes held by the table, from capacities rather than lengths.
    pub fn memory_bytes(&self) -> usize {
        hash_table_bytes::<IpAddr, u32>(self.index_capacity)
            + self.nodes.capacity() * size_of::<Node>()
    }

    /// The slot of `client`'s node, now at the front of the recency list:
    /// found, new, or recycled from the least recently seen address.
    fn touch(&mut self, client: IpAddr, now_ms: u64) -> usize {
        if let Some(&slot) = self.index.get(&client) {
            self.unlink(slot);
            self.link_newest(slot);
            return slot as usize;
        }
        let fresh = TokenBucket::new(self.rps, self.burst, now_ms);
        let slot = if self.nodes.len() < self.max_addresses {
            self.grow_nodes();
            self.nodes.push(Node {
                client,
                bucket: fresh,
                newer: NIL,
                older: NIL,
            });
            (self.nodes.len() - 1) as u32
        } else {
            // Full, so the list is not empty and `oldest` is a real node.
            let slot = self.oldest;
            self.unlink(slot);
            let node = &mut self.nodes[slot as usize];
            self.index.remove(&node.client);
            node.client = client;
            node.bucket = fresh;
            slot
        };
        self.link_newest(slot);
        self.index.insert(client, slot);
        self.index_capacity = self.index_capacity.max(self.index.capacity());
        slot as usize
    }

    /// Double as a `Vec` would, but never past the bound: a plain `push`
    /// at 65,536 nodes would reserve room for 131,072.
    fn grow_nodes(&mut self) {
        if self.nodes.len() == self.nodes.capacity() {
            let room = self.max_addresses - self.nodes.len();
            self.nodes
                .reserve_exact(self.nodes.capacity().max(16).min(room));
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Node { newer, older, .. } = self.nodes[slot as usize];
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o as usize].newer = newer,
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let previous = self.newest;
        let node = &mut self.nodes[slot as usize];
        node.newer = NIL;
        node.older = previous;
        match previous {
            NIL => self.oldest = slot,
            p => self.nodes[p as usize].newer = slot,
        }
        self.newest = slot;
    }
}

/// Bytes behind a std `HashMap` of this capacity. std's table (hashbrown)
/// has a power-of-two number of slots and keeps an eighth of them empty
/// (`capacity()` reports the usable 7/8, or slots - 1 below 8 slots); each
/// slot costs one entry plus one control byte, and 16 more control bytes
/// let SIMD probing run off the end.
fn hash_table_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let slots = if capacity < 8 {
        capacity + 1
    } else {
        capacity / 7 * 8
    };
    slots * (size_of::<(K, V)>() + 1) + 16
}
