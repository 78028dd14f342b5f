//! Stories about parking idle connections, told without sockets: the pool
//! only counts.

use ferroxy::pool::IdlePool;

// The balancer's stories (smooth weighted round-robin, least_conn, ip_hash)
// are in tests/balancer.rs.

/// The pool is LIFO: the connection parked last is the warmest, so it is
/// reused first.
#[test]
fn pool_reuses_the_most_recent_connection() {
    let mut pool = IdlePool::new(2, 4);
    assert_eq!(pool.park(0, 10), None);
    assert_eq!(pool.park(0, 11), None);
    assert_eq!(pool.take(0), Some(11), "last in, first out");
    assert_eq!(pool.take(0), Some(10));
    assert_eq!(pool.take(0), None);
    assert_eq!(pool.take(1), None, "upstreams do not share connections");
}

/// `max_idle_per_upstream` is a hard bound: parking one more than the limit
/// hands back the oldest for the caller to close, at once, so the pool never
/// holds more, not even for the rest of a turn.
#[test]
fn parking_over_the_limit_evicts_the_oldest_at_once() {
    let mut pool = IdlePool::new(2, 2);
    assert_eq!(pool.park(0, 1), None);
    assert_eq!(pool.park(0, 2), None);
    assert_eq!(pool.park(0, 3), Some(1), "full: the oldest goes");
    assert_eq!(pool.len_of(0), 2, "never over the limit");
    assert_eq!(pool.park(1, 9), None, "each upstream has its own limit");
    assert_eq!(
        pool.take(0),
        Some(3),
        "the newest stays, and is taken first"
    );
    assert_eq!(pool.take(0), Some(2));
    let mut none = IdlePool::new(1, 0);
    assert_eq!(
        none.park(0, 7),
        Some(7),
        "with a limit of 0 nothing is kept"
    );
    assert_eq!(none.len(), 0);
}

/// A reload that lowers the limit closes the excess at once, oldest first.
#[test]
fn lowering_the_limit_hands_back_the_excess() {
    let mut pool = IdlePool::new(2, 4);
    for key in [1, 2, 3, 4] {
        pool.park(0, key);
    }
    pool.park(1, 5);
    assert_eq!(pool.set_max_per_upstream(2), vec![1, 2]);
    assert_eq!(pool.len(), 3, "two for upstream 0, one for upstream 1");
    assert_eq!(
        pool.set_max_per_upstream(0),
        vec![3, 4, 5],
        "0 turns it off"
    );
}

/// An idle connection the upstream closed is removed wherever it sits.
#[test]
fn closed_idle_connection_is_removed() {
    let mut pool = IdlePool::new(1, 8);
    for key in [1, 2, 3] {
        pool.park(0, key);
    }
    assert!(pool.remove(0, 2));
    assert!(!pool.remove(0, 2), "already gone");
    assert_eq!(pool.drain_all(), vec![1, 3]);
    assert!(pool.is_empty());
}
