//! Stories about [`ferroxy::rate_limit`]: token buckets with time passed in
//! by hand (milliseconds), so every refill is exact.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferroxy::rate_limit::{MAX_TRACKED_ADDRESSES, Per, RateLimiter, TokenBucket};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test addresses are well formed")
}

/// The n-th of many distinct addresses (documentation-only ranges would be
/// too small; these are never dialled, only used as table keys).
fn nth_address(n: u32) -> IpAddr {
    if n.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    } else {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            (n >> 16) as u16,
            n as u16,
        ))
    }
}

/// A quiet client may send `burst` requests at once; the next one, in the
/// same millisecond, is refused.
#[test]
fn burst_then_refusal() {
    let mut limiter = RateLimiter::new(10, 3, Per::ClientIp);
    let client = ip("192.0.2.7");
    for n in 1..=3 {
        assert_eq!(
            limiter.check(client, 1_000),
            Ok(()),
            "request {n} of the burst"
        );
    }
    assert!(
        limiter.check(client, 1_000).is_err(),
        "the 4th has no token"
    );
}

/// After the burst is spent, tokens come back at `rps`: 10 rps is one
/// token every 100 ms, and not a moment sooner.
#[test]
fn refill_at_rps() {
    let mut limiter = RateLimiter::new(10, 2, Per::Global);
    let client = ip("192.0.2.7");
    assert_eq!(limiter.check(client, 0), Ok(()));
    assert_eq!(limiter.check(client, 0), Ok(()));
    assert!(
        limiter.check(client, 99).is_err(),
        "0.99 of a token is none"
    );
    assert_eq!(limiter.check(client, 100), Ok(()), "one token after 100 ms");
    assert!(limiter.check(client, 100).is_err());
    assert_eq!(limiter.check(client, 300), Ok(()), "200 ms: two tokens...");
    assert_eq!(limiter.check(client, 300), Ok(()));
    assert!(limiter.check(client, 300).is_err(), "...and only two");
    assert_eq!(limiter.check(client, 10_000), Ok(()), "a long rest...");
    assert_eq!(limiter.check(client, 10_000), Ok(()));
    assert!(
        limiter.check(client, 10_000).is_err(),
        "...refills to burst, no more"
    );
}

/// Asked every millisecond, an integer bucket must still refill: 3 rps for
/// one second in 1 ms steps is exactly 3 tokens, none lost to rounding.
/// (The burst is 3 so the cap never clips a part-token on the way.)
#[test]
fn refill_in_tiny_steps_loses_nothing() {
    let mut bucket = TokenBucket::new(3, 3, 0);
    for _ in 0..3 {
        assert_eq!(bucket.take(3, 3, 0), Ok(()));
    }
    assert!(bucket.take(3, 3, 0).is_err(), "empty now");
    let mut granted = Vec::new();
    for now in 1..=1_000 {
        if bucket.take(3, 3, now).is_ok() {
            granted.push(now);
        }
    }
    assert_eq!(
        granted,
        [334, 667, 1000],
        "3 rps over 1000 ms, asked every ms"
    );
}

/// The bucket says how long until one token, in milliseconds, rounded up.
#[test]
fn bucket_reports_ms_until_next_token() {
    let mut bucket = TokenBucket::new(3, 1, 0);
    assert_eq!(bucket.take(3, 1, 0), Ok(()));
    assert_eq!(bucket.take(3, 1, 0), Err(334), "1000 / 3 rounded up");
    assert_eq!(
        bucket.take(3, 1, 300),
        Err(34),
        "900 milli-tokens after 300 ms"
    );
}

/// `Retry-After` is whole seconds and never 0 (0 would invite an instant
/// retry): 1 rps burst 1 refused in the same ms waits 1 s; refused 200 ms
/// later (800 ms to go) still says 1, not 0.
#[test]
fn retry_after_is_whole_seconds_at_least_one() {
    let mut limiter = RateLimiter::new(1, 1, Per::ClientIp);
    let client = ip("192.0.2.7");
    assert_eq!(limiter.check(client, 5_000), Ok(()));
    assert_eq!(limiter.check(client, 5_000), Err(1), "1000 ms to go");
    assert_eq!(
        limiter.check(client, 5_200),
        Err(1),
        "800 ms rounds up to 1 s"
    );
    assert_eq!(
        limiter.check(client, 5_999),
        Err(1),
        "1 ms rounds up to 1 s"
    );
    assert_eq!(
        limiter.check(client, 6_000),
        Ok(()),
        "obeying it finds a token"
    );

    let mut fast = RateLimiter::new(1_000, 1, Per::Global);
    assert_eq!(fast.check(client, 0), Ok(()));
    assert_eq!(
        fast.check(client, 0),
        Err(1),
        "1 ms to go is still 1 s, never 0"
    );
}

/// `per: "global"`: one bucket for everyone, and no table at all.
#[test]
fn global_shares_one_bucket_across_addresses() {
    let mut limiter = RateLimiter::new(1, 2, Per::Global);
    assert_eq!(limiter.check(ip("192.0.2.1"), 0), Ok(()));
    assert_eq!(limiter.check(ip("192.0.2.2"), 0), Ok(()));
    assert!(
        limiter.check(ip("2001:db8::3"), 0).is_err(),
        "a third address finds the shared bucket empty"
    );
    assert_eq!(limiter.tracked(), 0, "global keeps no per-address table");
}

/// `per: "client_ip"`: one client spending its burst leaves others alone.
#[test]
fn per_ip_buckets_are_separate() {
    let mut limiter = RateLimiter::new(1, 1, Per::ClientIp);
    let (noisy, quiet) = (ip("192.0.2.1"), ip("192.0.2.2"));
    assert_eq!(limiter.check(noisy, 0), Ok(()));
    assert!(
        limiter.check(noisy, 0).is_err(),
        "noisy has spent its burst"
    );
    assert_eq!(limiter.check(quiet, 0), Ok(()), "quiet has its own bucket");
    assert_eq!(limiter.tracked(), 2);
}

/// A dual-stack socket reports 1.2.3.4 as ::ffff:1.2.3.4; both spellings
/// are one client and must share one bucket.
#[test]
fn ipv4_mapped_ipv6_shares_the_ipv4_bucket() {
    let mut limiter = RateLimiter::new(1, 1, Per::ClientIp);
    assert_eq!(limiter.check(ip("1.2.3.4"), 0), Ok(()));
    assert!(
        limiter.check(ip("::ffff:1.2.3.4"), 0).is_err(),
        "the mapped spelling must not get a second bucket"
    );
    assert_eq!(limiter.tracked(), 1);
}

/// A table of 3: A, B, C spend their tokens, A is seen again (refused, but
/// seen), then D arrives. B is the least recently seen and is forgotten;
/// when B returns it starts with a full bucket, while A kept its empty one.
#[test]
fn least_recently_seen_is_evicted_and_returns_full() {
    let mut limiter = RateLimiter::with_capacity(1, 1, Per::ClientIp, 3);
    let [a, b, c, d] = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"].map(ip);
    for client in [a, b, c] {
        assert_eq!(limiter.check(client, 0), Ok(()));
    }
    assert!(
        limiter.check(a, 0).is_err(),
        "A is empty, and now recently seen"
    );
    assert_eq!(limiter.check(d, 0), Ok(()), "D is new: full bucket");
    assert_eq!(limiter.tracked(), 3, "the table holds 3, not 4");

    assert_eq!(
        limiter.check(b, 0),
        Ok(()),
        "B was evicted: back with a full bucket"
    );
    assert!(
        limiter.check(a, 0).is_err(),
        "A was kept, empty bucket and all"
    );
    assert!(limiter.check(d, 0).is_err(), "D was kept");
    assert_eq!(limiter.check(c, 0), Ok(()), "C was oldest when B came back");
    assert_eq!(limiter.tracked(), 3);
}

/// An attacker with 250,000 source addresses: the default table never holds
/// more than 100,000, and its memory stays bounded (the figure is printed
/// for `cargo test -- --nocapture`). The newest addresses are remembered
/// (their buckets stay empty); the first ones were forgotten.
#[test]
fn table_is_bounded_under_a_flood_of_addresses() {
    let mut limiter = RateLimiter::new(1, 1, Per::ClientIp);
    assert!(
        limiter.memory_bytes() < 1024,
        "nothing preallocated at start"
    );
    for n in 0..250_000 {
        assert_eq!(
            limiter.check(nth_address(n), 0),
            Ok(()),
            "address {n} is new"
        );
        assert!(
            limiter.tracked() <= MAX_TRACKED_ADDRESSES,
            "over the bound at {n}"
        );
    }
    assert_eq!(limiter.tracked(), MAX_TRACKED_ADDRESSES);
    let bytes = limiter.memory_bytes();
    println!(
        "rate_limit: {} addresses tracked in {} bytes ({:.2} MiB, {} bytes each)",
        limiter.tracked(),
        bytes,
        bytes as f64 / (1024.0 * 1024.0),
        bytes / MAX_TRACKED_ADDRESSES,
    );
    assert!(bytes < 16 * 1024 * 1024, "{bytes} bytes for the full table");

    assert!(
        limiter.check(nth_address(249_999), 0).is_err(),
        "newest is remembered"
    );
    assert!(
        limiter.check(nth_address(150_000), 0).is_err(),
        "oldest kept is remembered"
    );
    assert_eq!(
        limiter.check(nth_address(0), 0),
        Ok(()),
        "the first was forgotten"
    );
    assert_eq!(limiter.tracked(), MAX_TRACKED_ADDRESSES);
    assert_eq!(
        limiter.memory_bytes(),
        bytes,
        "churn at the bound allocates nothing"
    );
}

/// A reload with the same `per` keeps every bucket, but no bucket may hold
/// more than the new `burst`; the new `rps` applies from then on.
#[test]
fn reconfigure_keeps_buckets_and_clamps_to_the_new_burst() {
    let mut limiter = RateLimiter::new(1, 5, Per::ClientIp);
    let (spent, saved) = (ip("192.0.2.1"), ip("192.0.2.2"));
    assert_eq!(limiter.check(spent, 0), Ok(()));
    assert!(limiter.check(spent, 0).is_ok() && limiter.check(spent, 0).is_ok());
    assert!(limiter.check(spent, 0).is_ok() && limiter.check(spent, 0).is_ok());
    assert!(limiter.check(spent, 0).is_err(), "spent used all 5");
    assert_eq!(limiter.check(saved, 0), Ok(()), "saved has 4 left");

    limiter.reconfigure(10, 2, Per::ClientIp);
    assert_eq!(limiter.tracked(), 2, "same per: the table survives");
    assert!(limiter.check(spent, 0).is_err(), "a reload is not a refill");
    assert_eq!(limiter.check(saved, 0), Ok(()));
    assert_eq!(limiter.check(saved, 0), Ok(()));
    assert!(
        limiter.check(saved, 0).is_err(),
        "4 tokens clamped to the new burst of 2"
    );
    assert_eq!(
        limiter.check(spent, 100),
        Ok(()),
        "new rps: 10/s is one per 100 ms"
    );
}

/// A reload that changes `per` starts afresh: the old buckets meant
/// something else, and the table's memory is given back.
#[test]
fn reconfigure_changing_per_starts_afresh() {
    let mut limiter = RateLimiter::new(1, 1, Per::ClientIp);
    let client = ip("192.0.2.1");
    assert_eq!(limiter.check(client, 0), Ok(()));
    assert!(limiter.check(client, 0).is_err());

    limiter.reconfigure(1, 1, Per::Global);
    assert_eq!(limiter.tracked(), 0);
    assert_eq!(limiter.memory_bytes(), 0, "the table is freed");
    assert_eq!(limiter.check(client, 0), Ok(()), "a fresh global bucket");

    limiter.reconfigure(1, 1, Per::ClientIp);
    assert_eq!(limiter.check(client, 0), Ok(()), "and a fresh per-IP one");
}

/// A clock that steps back must neither panic nor mint tokens: the span
/// walked back is not counted again on the way forward.
#[test]
fn time_going_backwards_mints_nothing() {
    let mut limiter = RateLimiter::new(1, 1, Per::ClientIp);
    let client = ip("192.0.2.1");
    assert_eq!(limiter.check(client, 10_000), Ok(()));
    assert!(limiter.check(client, 0).is_err(), "back to 0: no tokens");
    assert!(limiter.check(client, 9_000).is_err());
    assert!(
        limiter.check(client, 10_999).is_err(),
        "999 ms after the last token"
    );
    assert_eq!(
        limiter.check(client, 11_000),
        Ok(()),
        "1 s after, as if never back"
    );

    let mut bucket = TokenBucket::new(1, 1, 5_000);
    assert_eq!(bucket.take(1, 1, 5_000), Ok(()));
    assert_eq!(
        bucket.take(1, 1, 0),
        Err(1_000),
        "nothing gained from going back"
    );
}
