//! Stories about choosing an upstream and parking idle connections, told
//! without sockets: the balancer and the pool only count.

use ferroxy::balance::RoundRobin;
use ferroxy::pool::{EXCESS_GRACE_MS, IdlePool};

/// Two upstreams, a hundred picks: exactly fifty each, alternating.
#[test]
fn round_robin_alternates_evenly() {
    let mut rr = RoundRobin::new(2);
    let picks: Vec<usize> = (0..100).map(|_| rr.pick()).collect();
    assert_eq!(
        picks.iter().filter(|&&i| i == 0).count(),
        50,
        "50 of 100 to upstream 0"
    );
    assert!(
        picks.windows(2).all(|w| w[0] != w[1]),
        "picks must alternate"
    );
}

/// Failing over walks the list and wraps around.
#[test]
fn failover_wraps_around() {
    let rr = RoundRobin::new(3);
    assert_eq!(rr.after(0), 1);
    assert_eq!(rr.after(2), 0);
}

/// The pool is LIFO: the connection parked last is the warmest, so it is
/// reused first.
#[test]
fn pool_reuses_the_most_recent_connection() {
    let mut pool = IdlePool::new(2, 4);
    assert_eq!(pool.park(0, 10, 0), None);
    assert_eq!(pool.park(0, 11, 0), None);
    assert_eq!(pool.take(0), Some(11), "last in, first out");
    assert_eq!(pool.take(0), Some(10));
    assert_eq!(pool.take(0), None);
    assert_eq!(pool.take(1), None, "upstreams do not share connections");
}

/// A burst may park more than the limit; the excess, oldest first, is
/// trimmed only once it has been idle for the grace period, so connections
/// about to be reused are not closed and reopened.
#[test]
fn excess_is_trimmed_after_the_grace() {
    let mut pool = IdlePool::new(1, 2);
    pool.park(0, 1, 0);
    pool.park(0, 2, 0);
    pool.park(0, 3, 10);
    assert_eq!(pool.len(), 3, "a burst may exceed the limit for a moment");
    assert_eq!(pool.trim(0, 500), None, "not before the grace");
    assert_eq!(
        pool.next_trim(),
        Some(EXCESS_GRACE_MS),
        "the oldest is due first"
    );
    assert_eq!(
        pool.trim(0, EXCESS_GRACE_MS),
        Some(1),
        "then the oldest goes"
    );
    assert_eq!(
        pool.trim(0, EXCESS_GRACE_MS),
        None,
        "down to the limit, no further"
    );
    assert_eq!(pool.next_trim(), None);
    let mut none = IdlePool::new(1, 0);
    assert_eq!(
        none.park(0, 7, 0),
        Some(7),
        "with a limit of 0 nothing is kept"
    );
}

/// An idle connection the upstream closed is removed wherever it sits.
#[test]
fn closed_idle_connection_is_removed() {
    let mut pool = IdlePool::new(1, 8);
    for key in [1, 2, 3] {
        pool.park(0, key, 0);
    }
    assert!(pool.remove(0, 2));
    assert!(!pool.remove(0, 2), "already gone");
    assert_eq!(pool.drain_all(), vec![1, 3]);
    assert!(pool.is_empty());
}
