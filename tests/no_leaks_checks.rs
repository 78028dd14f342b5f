//! Health checks leak nothing: a check is a connection like any other, with
//! a slab entry, a socket, a timer and a buffer, and each must be given
//! back when the check times out.
//!
//! This lives apart from `no_leaks.rs` because that file counts the
//! process's file descriptors, and a test running beside it would move the
//! count.

mod support;

use std::time::Duration;

use support::*;

/// Health checks are connections too: against an upstream that accepts and
/// never answers, fifty checks time out in a second, and each gives back its
/// slab entry, its socket, its timer and its buffer. At any moment the loop
/// holds at most one check (one per upstream) and three timers (each
/// upstream's schedule, plus the check's own deadline).
#[test]
fn timed_out_health_checks_release_everything() {
    let mute = Upstream::silent("mute");
    let proxy = start_proxy_with(&[mute.addr], |cfg| {
        metrics_on(cfg);
        cfg.health = Some(ferroxy::config::HealthConfig {
            path: Some("/healthz".to_string()),
            interval_ms: 20,
            timeout_ms: 15,
            fails: 1,
            passes: 1,
            max_fails: 0,
            fail_timeout_ms: 1000,
        });
    });
    let (mut most_connections, mut most_timers, mut most_buffered) = (0, 0, 0);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let stats = proxy.stats();
        most_connections = most_connections.max(stats.connections);
        most_timers = most_timers.max(stats.timers);
        most_buffered = most_buffered.max(stats.buffer_bytes);
        std::thread::sleep(Duration::from_millis(2));
    }
    let series = format!(
        "ferroxy_upstream_health_checks_failed_total{{upstream=\"{}\"}}",
        mute.addr
    );
    let failed = metric_value(&scrape_text(&proxy), &series).unwrap_or(0.0);
    assert!(
        failed >= 20.0,
        "checks should time out every 20 ms: {failed}"
    );
    assert!(
        most_connections <= 1,
        "one check in flight at most: {most_connections}"
    );
    assert!(most_timers <= 3, "timers bounded: {most_timers}");
    // A check holds its request and, only while bytes are in, a buffer
    // from the pool: never more than one buffer's worth.
    assert!(
        most_buffered <= 16_384 + 1024,
        "buffer bytes: {most_buffered}"
    );
}
