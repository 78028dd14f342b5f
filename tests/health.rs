//! Upstream health as bookkeeping: requests and checks reported, verdicts
//! read back, time passed in by hand.

use ferroxy::config::HealthConfig;
use ferroxy::health::{Health, Outcome, Transition};

fn settings(max_fails: u32, fail_timeout_ms: u64) -> HealthConfig {
    HealthConfig {
        path: Some("/healthz".to_string()),
        interval_ms: 1000,
        timeout_ms: 500,
        fails: 3,
        passes: 2,
        max_fails,
        fail_timeout_ms,
    }
}

fn keys() -> Vec<String> {
    vec!["127.0.0.1:9001".to_string(), "127.0.0.1:9002".to_string()]
}

#[test]
fn max_fails_within_the_window_ejects_then_one_probe_is_let_through() {
    let mut h = Health::new(Some(settings(3, 10_000)), &keys());
    assert_eq!(h.report(0, Outcome::Failure, 0), None);
    assert_eq!(h.report(0, Outcome::Failure, 100), None);
    assert!(matches!(
        h.report(0, Outcome::Failure, 200),
        Some(Transition::Down(_))
    ));
    assert!(!h.available(0, 200));
    assert!(!h.is_up(0));
    assert!(h.available(1, 200), "the other upstream is untouched");
    assert!(!h.available(0, 10_199), "ejected for fail_timeout_ms");
    // Half-open: one request, and only one, until it reports.
    assert!(h.available(0, 10_200));
    assert_eq!(h.state_name(0, 10_200), "half-open");
    assert!(h.on_pick(0, 10_200), "the first request is the probe");
    assert!(!h.available(0, 10_201), "no second request while it probes");
    assert_eq!(h.report(0, Outcome::Success, 10_300), Some(Transition::Up));
    assert!(h.available(0, 10_300));
    assert!(h.is_up(0));
}

#[test]
fn failures_spread_wider_than_the_window_never_eject() {
    let mut h = Health::new(Some(settings(2, 1_000)), &keys());
    for t in [0, 1_500, 3_000, 4_500] {
        assert_eq!(h.report(0, Outcome::Failure, t), None, "at {t} ms");
        assert!(h.available(0, t));
    }
}

#[test]
fn a_failed_probe_opens_the_circuit_again() {
    let mut h = Health::new(Some(settings(1, 1_000)), &keys());
    assert!(h.report(0, Outcome::Failure, 0).is_some());
    assert!(h.on_pick(0, 1_000));
    assert!(matches!(
        h.report(0, Outcome::Failure, 1_050),
        Some(Transition::Down(_))
    ));
    assert!(!h.available(0, 2_049));
    assert!(h.available(0, 2_050));
}

#[test]
fn an_abandoned_probe_lets_the_next_request_probe() {
    let mut h = Health::new(Some(settings(1, 1_000)), &keys());
    h.report(0, Outcome::Failure, 0);
    assert!(h.on_pick(0, 1_000));
    assert_eq!(h.report(0, Outcome::Abandoned, 1_010), None);
    assert!(h.available(0, 1_010));
    assert!(h.on_pick(0, 1_010));
}

#[test]
fn max_fails_zero_turns_passive_ejection_off() {
    let mut h = Health::new(Some(settings(0, 1_000)), &keys());
    for t in 0..10 {
        assert_eq!(h.report(0, Outcome::Failure, t), None);
    }
    assert!(h.available(0, 10));
}

#[test]
fn without_a_health_section_nothing_is_ever_ejected() {
    let mut h = Health::new(None, &keys());
    for t in 0..10 {
        assert_eq!(h.report(0, Outcome::Failure, t), None);
        assert_eq!(h.check_result(0, false), None);
    }
    assert!(h.available(0, 10));
}

#[test]
fn checks_need_fails_in_a_row_to_go_down_and_passes_in_a_row_to_come_up() {
    let mut h = Health::new(Some(settings(3, 10_000)), &keys());
    assert_eq!(h.check_result(0, false), None);
    assert_eq!(h.check_result(0, false), None);
    assert_eq!(h.check_result(0, true), None, "a pass breaks the run");
    assert_eq!(h.check_result(0, false), None);
    assert_eq!(h.check_result(0, false), None);
    assert!(matches!(
        h.check_result(0, false),
        Some(Transition::Down(_))
    ));
    assert!(!h.available(0, 0));
    assert_eq!(h.state_name(0, 0), "down");
    assert_eq!(h.check_result(0, true), None);
    assert_eq!(h.check_result(0, true), Some(Transition::Up));
    assert!(h.available(0, 0));
}

#[test]
fn checks_coming_up_also_close_an_open_circuit() {
    let mut h = Health::new(Some(settings(1, 60_000)), &keys());
    for _ in 0..3 {
        h.check_result(0, false);
    }
    h.report(0, Outcome::Failure, 0);
    h.check_result(0, true);
    assert_eq!(h.check_result(0, true), Some(Transition::Up));
    assert!(h.available(0, 1), "no need to wait out fail_timeout_ms");
}

#[test]
fn a_reload_keeps_the_verdict_of_upstreams_that_stay_and_new_ones_start_up() {
    let mut h = Health::new(Some(settings(1, 60_000)), &keys());
    h.report(0, Outcome::Failure, 0);
    for _ in 0..3 {
        h.check_result(1, false);
    }
    let new_keys = vec![
        "127.0.0.1:9003".to_string(),
        "127.0.0.1:9002".to_string(),
        "127.0.0.1:9001".to_string(),
    ];
    let h = Health::carry_over(h, Some(settings(1, 60_000)), &new_keys);
    assert!(h.available(0, 1), "9003 is new: up");
    assert!(!h.available(1, 1), "9002 stays down by its checks");
    assert!(!h.available(2, 1), "9001 stays ejected");
}
