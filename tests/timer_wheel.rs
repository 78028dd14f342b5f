//! Stories about [`ferroxy::timer::TimerWheel`], with time passed in by hand:
//! no clock, no sleeping, every step exact.

use std::collections::BTreeMap;

use ferroxy::timer::{TimerId, TimerWheel};

#[path = "support/xorshift.rs"]
mod xorshift;
use xorshift::XorShift;

/// A timer fires when its deadline passes, not before, and only once.
#[test]
fn fires_once_when_due() {
    let mut wheel = TimerWheel::new(10, 64, 0);
    wheel.insert(250, "read timeout");
    let mut fired = Vec::new();
    wheel.expire(249, |v| fired.push(v));
    assert!(fired.is_empty(), "nothing is due at 249 ms");
    wheel.expire(250, |v| fired.push(v));
    assert_eq!(fired, vec!["read timeout"]);
    wheel.expire(10_000, |v| fired.push(v));
    assert_eq!(fired.len(), 1, "a timer fires once");
    assert!(wheel.is_empty());
}

/// The reactor sleeps until `next_deadline`: it must be the earliest
/// timer's exact deadline, and `None` when nothing waits (an idle proxy
/// sleeps forever rather than ticking).
#[test]
fn next_deadline_is_the_earliest() {
    let mut wheel = TimerWheel::new(10, 64, 0);
    assert_eq!(
        wheel.next_deadline(),
        None,
        "no timers: sleep until an event"
    );
    wheel.insert(5_000, 'a');
    wheel.insert(1_234, 'b');
    wheel.insert(99_999, 'c');
    assert_eq!(wheel.next_deadline(), Some(1_234));
}

/// Deadlines several revolutions away (64 slots x 10 ms = 640 ms per
/// revolution here) wait in their slot while the hand passes over them.
#[test]
fn far_deadlines_survive_revolutions() {
    let mut wheel = TimerWheel::new(10, 64, 0);
    wheel.insert(5_005, "far");
    wheel.insert(5, "near");
    let mut fired = Vec::new();
    for now in (0..5_000).step_by(7) {
        wheel.expire(now, |v| fired.push(v));
    }
    assert_eq!(fired, vec!["near"], "the far timer must not fire early");
    assert_eq!(wheel.next_deadline(), Some(5_005));
    wheel.expire(5_005, |v| fired.push(v));
    assert_eq!(fired, vec!["near", "far"]);
}

/// Cancelling is O(1) and exact; a handle kept after its timer fired
/// cannot cancel the timer that reused its slot.
#[test]
fn stale_handles_cancel_nothing() {
    let mut wheel = TimerWheel::new(1, 64, 0);
    let first = wheel.insert(10, 1);
    wheel.expire(10, |_| {});
    let second = wheel.insert(20, 2);
    assert_eq!(wheel.cancel(first), None, "the first timer already fired");
    assert_eq!(wheel.len(), 1, "the second timer is untouched");
    assert_eq!(wheel.cancel(second), Some(2));
    assert_eq!(
        wheel.cancel(second),
        None,
        "cancel twice: nothing the second time"
    );
}

/// A deadline already in the past fires at the next expire.
#[test]
fn past_deadline_fires_next() {
    let mut wheel = TimerWheel::new(10, 64, 1_000);
    wheel.insert(3, "late");
    let mut fired = Vec::new();
    wheel.expire(1_000, |v| fired.push(v));
    assert_eq!(fired, vec!["late"]);
}

/// Random inserts, cancels and clock moves, checked step by step against
/// the obvious model: a `BTreeMap` ordered by deadline. The wheel and the
/// model must agree on what fires and on the next deadline, always.
#[test]
fn agrees_with_a_sorted_model() {
    let mut rng = XorShift(0x5eed_f00d_dead_beef);
    for round in 0..200 {
        let tick = 1 + rng.below_u64(20);
        let slots = 64 << rng.below_u64(3);
        let mut now = rng.below_u64(1_000_000);
        let mut wheel = TimerWheel::new(tick, slots as usize, now);
        // model: (deadline, serial) -> value; handles: serial -> id
        let mut model: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        let mut handles: Vec<(u64, u64, TimerId)> = Vec::new();
        for serial in 0..400u64 {
            match rng.below_u64(10) {
                0..=4 => {
                    // Mostly near deadlines, some beyond a revolution.
                    let span = if rng.below_u64(4) == 0 { 50_000 } else { 2_000 };
                    let deadline = now + rng.below_u64(span);
                    let id = wheel.insert(deadline, serial);
                    model.insert((deadline, serial), serial);
                    handles.push((deadline, serial, id));
                }
                5..=6 if !handles.is_empty() => {
                    let at = rng.below_u64(handles.len() as u64) as usize;
                    let (deadline, serial, id) = handles.swap_remove(at);
                    let expected = model.remove(&(deadline, serial));
                    assert_eq!(
                        wheel.cancel(id),
                        expected,
                        "round {round}: cancel of {serial}"
                    );
                }
                _ => {
                    now += rng.below_u64(3_000);
                    let mut fired = Vec::new();
                    wheel.expire(now, |v| fired.push(v));
                    let mut due: Vec<u64> = Vec::new();
                    while let Some((&(deadline, serial), _)) = model.iter().next() {
                        if deadline > now {
                            break;
                        }
                        model.remove(&(deadline, serial));
                        due.push(serial);
                    }
                    fired.sort_unstable();
                    due.sort_unstable();
                    assert_eq!(fired, due, "round {round}: what fired at {now}");
                }
            }
            let expected_next = model.keys().next().map(|&(deadline, _)| deadline);
            assert_eq!(
                wheel.next_deadline(),
                expected_next,
                "round {round}: next deadline at {now}"
            );
            assert_eq!(wheel.len(), model.len(), "round {round}: timers waiting");
        }
    }
}
