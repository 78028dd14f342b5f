//! Which upstream gets the next request.
//!
//! Sans-IO: the balancer only counts. The reactor hands it which upstreams
//! may take a request now (health, and the upstreams this request already
//! tried, decide that: see `src/health.rs`) and how many requests each has in
//! flight; the balancer answers with an index into the config's list.
//!
//! Three strategies, the contract's `balancing`:
//!
//! - **`round_robin`** is *smooth* weighted round-robin, nginx's algorithm.
//!   Each pick, every candidate's `current` grows by its weight; the largest
//!   wins and pays back the total. Weights 5,1,1 give `a a b a c a a`: the
//!   heavy upstream gets its five in seven, but never five in a row, so a
//!   weight is a share, not a burst.
//! - **`least_conn`** picks the fewest requests in flight *relative to
//!   weight* (`active / weight`, compared by cross-multiplying so no float
//!   is needed), ties broken round-robin so equal upstreams share evenly.
//! - **`ip_hash`** keeps a client address on one upstream with a hash ring
//!   (consistent hashing): each upstream owns many points on a circle, a
//!   client goes to the first point after its own hash. When an upstream is
//!   down its points are skipped, so only *its* clients move (to the next
//!   point's owner); everybody else stays put. Points are placed by hashing
//!   the upstream's address, so a reload that adds an upstream moves only
//!   the share the newcomer takes.
//!
//! Lessons: `lessons/12-keepalive-and-pool`, `lessons/15-resilience`.

use std::net::IpAddr;

use crate::config::Balancing;

/// Points each unit of weight owns on the ip_hash ring. More points spread
/// the shares more evenly (160 is what libketama uses); the ring is
/// searched by bisection, so its size costs a few comparisons.
const POINTS_PER_WEIGHT: u32 = 160;

/// What the balancer may choose from for one pick.
pub struct Candidates<'a> {
    /// `allowed[i]`: upstream `i` may take this request (healthy, not tried).
    pub allowed: &'a [bool],
    /// Requests in flight per upstream, for `least_conn`.
    pub active: &'a [usize],
    /// The client's address, for `ip_hash`.
    pub client: IpAddr,
}

#[derive(Debug)]
pub struct Balancer {
    strategy: Balancing,
    weights: Vec<u32>,
    /// Smooth round-robin's running scores.
    current: Vec<i64>,
    /// Where `least_conn` starts looking, so ties rotate.
    next: usize,
    /// `(point, upstream)` sorted by point: the ip_hash ring.
    ring: Vec<(u64, usize)>,
}

impl Balancer {
    /// `keys` name the upstreams stably (their `host:port`): ring points are
    /// derived from them, not from their position in the list.
    pub fn new(strategy: Balancing, weights: &[u32], keys: &[String]) -> Balancer {
        assert!(!weights.is_empty(), "the config guarantees an upstream");
        assert_eq!(weights.len(), keys.len());
        let ring = if strategy == Balancing::IpHash {
            build_ring(weights, keys)
        } else {
            Vec::new()
        };
        Balancer {
            strategy,
            weights: weights.iter().map(|&w| w.max(1)).collect(),
            current: vec![0; weights.len()],
            next: 0,
            ring,
        }
    }

    /// The upstream for a request, or `None` when nothing is allowed.
    pub fn pick(&mut self, c: &Candidates) -> Option<usize> {
        match self.strategy {
            Balancing::RoundRobin => self.smooth_weighted(c.allowed),
            Balancing::LeastConn => self.least_conn(c.allowed, c.active),
            Balancing::IpHash => self.on_ring(c.allowed, c.client),
        }
    }

    fn smooth_weighted(&mut self, allowed: &[bool]) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, &weight) in self.weights.iter().enumerate() {
            if !allowed.get(i).copied().unwrap_or(false) {
                continue;
            }
            self.current[i] += i64::from(weight);
            total += i64::from(weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.current[chosen] -= total;
        Some(chosen)
    }

    fn least_conn(&mut self, allowed: &[bool], active: &[usize]) -> Option<usize> {
        let count = self.weights.len();
        let mut best: Option<usize> = None;
        for i in (0..count).map(|k| (self.next + k) % count) {
            if !allowed.get(i).copied().unwrap_or(false) {
                continue;
            }
            // a/wa < b/wb  <=>  a*wb < b*wa: no division, no float.
            let load = |j: usize| active.get(j).copied().unwrap_or(0) as u128;
            let fewer = |j: usize, k: usize| {
                load(j) * u128::from(self.weights[k]) < load(k) * u128::from(self.weights[j])
            };
            // Strictly fewer only: the first of equals (from `next`) wins.
            if best.is_none_or(|b| fewer(i, b)) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.next = (chosen + 1) % count;
        Some(chosen)
    }

    fn on_ring(&self, allowed: &[bool], client: IpAddr) -> Option<usize> {
        let point = hash_address(client);
        let start = self.ring.partition_point(|&(p, _)| p < point);
        let len = self.ring.len();
        (0..len)
            .map(|k| self.ring[(start + k) % len].1)
            .find(|&i| allowed.get(i).copied().unwrap_or(false))
    }
}

fn build_ring(weights: &[u32], keys: &[String]) -> Vec<(u64, usize)> {
    let mut ring = Vec::new();
    for (i, (key, &weight)) in keys.iter().zip(weights).enumerate() {
        for n in 0..weight.max(1) * POINTS_PER_WEIGHT {
            ring.push((mix(fnv1a(key.as_bytes()) ^ u64::from(n)), i));
        }
    }
    // Ties (vanishingly rare) are broken by index so the ring is the same
    // whatever order the points were made in.
    ring.sort_unstable();
    ring
}

/// Where a client address lands on the ring. An IPv4-mapped IPv6 address
/// is the IPv4 client it stands for.
fn hash_address(client: IpAddr) -> u64 {
    match client.to_canonical() {
        IpAddr::V4(v4) => mix(fnv1a(&v4.octets())),
        IpAddr::V6(v6) => mix(fnv1a(&v6.octets())),
    }
}

/// FNV-1a: tiny, and the same on every machine and Rust version (the
/// standard library's hasher promises neither), so a client keeps its
/// upstream across restarts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: FNV alone leaves nearby inputs (points 1, 2, 3
/// of one upstream) close together on the ring; this scatters them.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
