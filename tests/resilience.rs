//! Upstream resilience over real sockets: weights, least_conn, ip_hash,
//! passive ejection and its half-open probe, active health checks, fail
//! open, retries under the rule and the budget, and the rate limit.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use ferroxy::config::{Balancing, HealthConfig, RateLimitConfig, RateLimitPer};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn weights(config: &mut ferroxy::config::Config, weights: &[u32]) {
    for (upstream, &w) in config.upstreams.iter_mut().zip(weights) {
        upstream.weight = w;
    }
}

/// Passive ejection only (no `path`): `max_fails` in `fail_timeout_ms`.
fn passive(max_fails: u32, fail_timeout_ms: u64) -> HealthConfig {
    HealthConfig {
        path: None,
        interval_ms: 2000,
        timeout_ms: 1000,
        fails: 3,
        passes: 2,
        max_fails,
        fail_timeout_ms,
    }
}

/// Active checks every 50 ms; passive ejection off.
fn active(fails: u32, passes: u32, timeout_ms: u64) -> HealthConfig {
    HealthConfig {
        path: Some("/healthz".to_string()),
        interval_ms: 50,
        timeout_ms,
        fails,
        passes,
        max_fails: 0,
        fail_timeout_ms: 10_000,
    }
}

/// One GET on a fresh connection; which upstream answered (or the status).
fn who_answers(proxy: SocketAddr, target: &str) -> String {
    let resp = Client::connect(proxy).request(&get(target));
    match resp.header("X-Upstream") {
        Some(label) if resp.status == 200 => label.to_string(),
        _ => format!("status {}", resp.status),
    }
}

fn upstream_series(name: &str, addr: SocketAddr) -> String {
    format!("{name}{{upstream=\"{addr}\"}}")
}

fn metric(proxy: &ferroxy::reactor::ProxyHandle, series: &str) -> f64 {
    metric_value(&scrape_text(proxy), series).unwrap_or_else(|| panic!("no sample {series}"))
}

/// Weights 5, 1, 1 over sockets: the heavy upstream gets five in seven,
/// spread out, never five in a row.
#[test]
fn weights_are_shares_not_bursts() {
    let (a, b, c) = (
        Upstream::echo("a"),
        Upstream::echo("b"),
        Upstream::echo("c"),
    );
    let proxy = start_proxy_with(&[a.addr, b.addr, c.addr], |cfg| weights(cfg, &[5, 1, 1]));
    let order: Vec<String> = (0..7)
        .map(|i| who_answers(proxy.local_addr(), &format!("/{i}")))
        .collect();
    assert_eq!(order.join(" "), "a a b a c a a");
}

/// least_conn: while one upstream holds a slow request, new requests go to
/// the one with nothing in flight.
#[test]
fn least_conn_sends_new_requests_past_a_busy_upstream() {
    let busy = Upstream::by_target("busy");
    let free = Upstream::echo("free");
    let proxy = start_proxy_with(&[busy.addr, free.addr], |cfg| {
        cfg.balancing = Balancing::LeastConn;
    });
    // Nothing in flight anywhere: the tie goes to the first.
    let mut slow = Client::connect(proxy.local_addr());
    slow.send(&get("/delay/800"));
    assert!(
        wait_until(WAIT, || busy.request_count() == 1),
        "the slow request should reach the first upstream"
    );
    for i in 0..4 {
        assert_eq!(
            who_answers(proxy.local_addr(), &format!("/quick/{i}")),
            "free",
            "request {i}: the busy upstream has one in flight, the other none"
        );
    }
    assert_eq!(slow.read_response("GET").map(|r| r.status), Ok(200));
}

/// ip_hash: one client address, one upstream, request after request.
#[test]
fn ip_hash_keeps_a_client_on_one_upstream() {
    let ups = [
        Upstream::echo("a"),
        Upstream::echo("b"),
        Upstream::echo("c"),
    ];
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let proxy = start_proxy_with(&addrs, |cfg| cfg.balancing = Balancing::IpHash);
    let first = who_answers(proxy.local_addr(), "/0");
    for i in 1..8 {
        assert_eq!(who_answers(proxy.local_addr(), &format!("/{i}")), first);
    }
}

/// A flaky upstream fails twice within the window and is ejected: for
/// `fail_timeout_ms` it gets nothing. Then one request probes it (half-open);
/// it has recovered, so it is back in rotation.
#[test]
fn ejected_upstream_is_probed_by_one_request_then_returns() {
    let sick = Arc::new(AtomicBool::new(true));
    let flaky = Upstream::flaky("flaky", sick.clone());
    let steady = Upstream::echo("steady");
    let proxy = start_proxy_with(&[flaky.addr, steady.addr], |cfg| {
        metrics_on(cfg);
        cfg.health = Some(passive(2, 600));
    });
    let up = upstream_series("ferroxy_upstream_up", flaky.addr);
    // Round robin: every other request meets the flaky one and gets 502
    // (no retries configured), until two failures eject it.
    let mut failures = 0;
    for i in 0..4 {
        if who_answers(proxy.local_addr(), &format!("/{i}")) != "steady" {
            failures += 1;
        }
    }
    assert_eq!(failures, 2, "two failures, then ejected");
    assert_eq!(metric(&proxy, &up), 0.0, "ejected upstreams are down");
    let seen = flaky.request_count();
    for i in 0..6 {
        assert_eq!(
            who_answers(proxy.local_addr(), &format!("/out/{i}")),
            "steady"
        );
    }
    assert_eq!(
        flaky.request_count(),
        seen,
        "an ejected upstream gets nothing"
    );
    assert_eq!(
        metric(
            &proxy,
            &upstream_series("ferroxy_upstream_ejections_total", flaky.addr)
        ),
        1.0
    );

    sick.store(false, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(700));
    let answers: Vec<String> = (0..4)
        .map(|i| who_answers(proxy.local_addr(), &format!("/back/{i}")))
        .collect();
    assert!(
        answers.iter().filter(|a| *a == "flaky").count() >= 1,
        "after fail_timeout_ms one request probes it, and it is back: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a == "flaky" || a == "steady"),
        "{answers:?}"
    );
    assert_eq!(metric(&proxy, &up), 1.0);
}

/// The half-open probe fails: the upstream is ejected again at once, and
/// only that one request paid for finding out.
#[test]
fn a_failed_probe_ejects_again() {
    let sick = Arc::new(AtomicBool::new(true));
    let flaky = Upstream::flaky("flaky", sick);
    let steady = Upstream::echo("steady");
    let proxy = start_proxy_with(&[flaky.addr, steady.addr], |cfg| {
        cfg.health = Some(passive(1, 300));
    });
    assert_ne!(
        who_answers(proxy.local_addr(), "/1"),
        "steady",
        "the first one meets it"
    );
    thread::sleep(Duration::from_millis(350));
    let before = flaky.request_count();
    let answers: Vec<String> = (0..6)
        .map(|i| who_answers(proxy.local_addr(), &format!("/{i}")))
        .collect();
    assert_eq!(
        flaky.request_count(),
        before + 1,
        "exactly one probe: {answers:?}"
    );
    assert_eq!(answers.iter().filter(|a| *a != "steady").count(), 1);
}

/// Every upstream is down: requests are still tried on them (fail open),
/// and the one that works again serves.
#[test]
fn when_every_upstream_is_down_requests_are_still_tried() {
    let sick = Arc::new(AtomicBool::new(true));
    let only = Upstream::flaky("only", sick.clone());
    let proxy = start_proxy_with(&[only.addr], |cfg| {
        cfg.health = Some(passive(1, 60_000));
    });
    assert_eq!(who_answers(proxy.local_addr(), "/1"), "status 502");
    sick.store(false, Ordering::SeqCst);
    assert_eq!(
        who_answers(proxy.local_addr(), "/2"),
        "only",
        "ejected for a minute, but it is all there is: tried anyway"
    );
}

/// Active checks find the sick upstream before any user does, and see it
/// recover.
#[test]
fn active_checks_take_an_upstream_out_and_put_it_back() {
    let sick = Arc::new(AtomicBool::new(true));
    let flaky = Upstream::flaky("flaky", sick.clone());
    let steady = Upstream::echo("steady");
    let proxy = start_proxy_with(&[flaky.addr, steady.addr], |cfg| {
        metrics_on(cfg);
        cfg.health = Some(active(2, 2, 500));
    });
    let up = upstream_series("ferroxy_upstream_up", flaky.addr);
    assert!(
        wait_until(WAIT, || metric(&proxy, &up) == 0.0),
        "two failed checks mark it down"
    );
    for i in 0..6 {
        assert_eq!(who_answers(proxy.local_addr(), &format!("/{i}")), "steady");
    }
    assert!(
        flaky
            .requests()
            .iter()
            .all(|r| r.target == "/healthz" && r.method == "GET"),
        "only checks reached it"
    );
    let failed = upstream_series("ferroxy_upstream_health_checks_failed_total", flaky.addr);
    assert!(metric(&proxy, &failed) >= 2.0);

    sick.store(false, Ordering::SeqCst);
    assert!(
        wait_until(WAIT, || metric(&proxy, &up) == 1.0),
        "two passed checks mark it up"
    );
    let answers: Vec<String> = (0..4)
        .map(|i| who_answers(proxy.local_addr(), &format!("/{i}")))
        .collect();
    assert!(answers.contains(&"flaky".to_string()), "{answers:?}");
}

/// An upstream that accepts the check and never answers: the check's own
/// `timeout_ms` fails it, and the loop carries on.
#[test]
fn a_hanging_health_check_times_out() {
    let mute = Upstream::silent("mute");
    let steady = Upstream::echo("steady");
    let proxy = start_proxy_with(&[mute.addr, steady.addr], |cfg| {
        metrics_on(cfg);
        cfg.health = Some(active(1, 1, 100));
    });
    let up = upstream_series("ferroxy_upstream_up", mute.addr);
    assert!(wait_until(WAIT, || metric(&proxy, &up) == 0.0));
    let text = scrape_text(&proxy);
    assert!(
        metric_value(&text, "ferroxy_timeouts_total{kind=\"health_check\"}").unwrap_or(0.0) >= 1.0,
        "the check timed out:\n{text}"
    );
    assert_eq!(who_answers(proxy.local_addr(), "/"), "steady");
}

/// The first checks are spread over the interval: with four upstreams and
/// a one-second interval, the first check of each lands about 250 ms after
/// the last.
#[test]
fn first_checks_are_spread_over_the_interval() {
    let ups: Vec<Upstream> = (0..4).map(|i| Upstream::echo(&format!("u{i}"))).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let started = std::time::Instant::now();
    let _proxy = start_proxy_with(&addrs, |cfg| {
        let mut health = active(1, 1, 500);
        health.interval_ms = 1000;
        cfg.health = Some(health);
    });
    let mut firsts = Vec::new();
    for u in &ups {
        assert!(wait_until(WAIT, || u.request_count() >= 1));
        firsts.push(started.elapsed());
    }
    assert!(
        firsts[3] >= Duration::from_millis(600),
        "the fourth upstream's first check should wait ~750 ms, not come at once: {firsts:?}"
    );
}

/// `retries: 1`: a GET that met an upstream hanging up without an answer
/// is sent to the other upstream; the client never knows.
#[test]
fn retries_send_an_idempotent_request_elsewhere() {
    let sick = Arc::new(AtomicBool::new(true));
    let flaky = Upstream::flaky("flaky", sick);
    let steady = Upstream::echo("steady");
    let proxy = start_proxy_with(&[flaky.addr, steady.addr], |cfg| {
        metrics_on(cfg);
        cfg.retries = 1;
    });
    for i in 0..4 {
        assert_eq!(who_answers(proxy.local_addr(), &format!("/{i}")), "steady");
    }
    assert_eq!(flaky.request_count(), 2, "every other request met it first");
    assert_eq!(metric(&proxy, "ferroxy_retries_total"), 2.0);
}

/// A POST that reached an upstream is never sent again: it may have run.
#[test]
fn a_post_that_was_sent_is_never_retried() {
    let sick = Arc::new(AtomicBool::new(true));
    let flaky = Upstream::flaky("flaky", sick);
    let steady = Upstream::echo("steady");
    let proxy = start_proxy_with(&[flaky.addr, steady.addr], |cfg| cfg.retries = 1);
    let statuses: Vec<u16> = (0..2)
        .map(|_| {
            Client::connect(proxy.local_addr())
                .request(&head(&[
                    "POST /order HTTP/1.1",
                    "Host: x",
                    "Content-Length: 0",
                ]))
                .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(flaky.request_count(), 1);
    assert_eq!(
        steady.request_count(),
        1,
        "the failed POST did not go on to it"
    );
}

/// A refused connect sent nothing: even a POST moves on, retries or not.
#[test]
fn a_refused_connect_moves_on_even_for_a_post() {
    let steady = Upstream::echo("steady");
    let proxy = start_proxy(&[dead_addr(), steady.addr]);
    for _ in 0..2 {
        let resp = Client::connect(proxy.local_addr()).request(&head(&[
            "POST /order HTTP/1.1",
            "Host: x",
            "Content-Length: 0",
        ]));
        assert_eq!(resp.status, 200);
    }
}

/// Ten requests fail at once on a cluster where every upstream hangs up:
/// retrying them all would double the load on a sick cluster. The budget
/// lets retries in flight reach 20% of requests in flight, so most
/// failures are answered as they are, and counted.
#[test]
fn the_retry_budget_stops_a_retry_storm() {
    let slow_fail = |label: &str| {
        Upstream::start(label, |conn| {
            if conn.read_request().is_some() {
                conn.sleep(Duration::from_millis(300));
            }
        })
    };
    let (a, b) = (slow_fail("a"), slow_fail("b"));
    let proxy = start_proxy_with(&[a.addr, b.addr], |cfg| {
        metrics_on(cfg);
        cfg.retries = 1;
    });
    let mut clients: Vec<Client> = (0..10)
        .map(|i| {
            let mut c = Client::connect(proxy.local_addr());
            c.send(&get(&format!("/{i}")));
            c
        })
        .collect();
    for c in &mut clients {
        assert_eq!(c.read_response("GET").map(|r| r.status), Ok(502));
    }
    let text = scrape_text(&proxy);
    let retries = metric_value(&text, "ferroxy_retries_total").unwrap_or(-1.0);
    let refused = metric_value(&text, "ferroxy_retry_budget_refusals_total").unwrap_or(-1.0);
    assert_eq!(
        retries + refused,
        10.0,
        "each first failure was retried or refused"
    );
    assert!(
        (1.0..=2.0).contains(&retries),
        "at most 20% of 10 in flight may retry: {retries} retried, {refused} refused"
    );
}

/// 2 tokens of burst, 1 per second: the third request in a row is 429 with
/// `Retry-After`, and never reaches the upstream.
#[test]
fn rate_limit_answers_429_with_retry_after() {
    let up = Upstream::echo("up");
    let proxy = start_proxy_with(&[up.addr], |cfg| {
        metrics_on(cfg);
        cfg.rate_limit = Some(RateLimitConfig {
            rps: 1,
            burst: Some(2),
            per: RateLimitPer::ClientIp,
        });
    });
    let mut statuses = Vec::new();
    for i in 0..4 {
        let resp = Client::connect(proxy.local_addr()).request(&get(&format!("/{i}")));
        if resp.status == 429 {
            assert_error_answer(&resp, 429, "over the rate limit");
            assert_eq!(resp.header("Retry-After"), Some("1"));
        }
        statuses.push(resp.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(
        up.request_count(),
        2,
        "refused requests never reach the upstream"
    );
    assert_eq!(metric(&proxy, "ferroxy_rate_limited_total"), 2.0);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        who_answers(proxy.local_addr(), "/later"),
        "up",
        "a token refilled"
    );
}

/// A passive ejection survives SIGHUP: the ejected upstream stays out,
/// and the newcomer starts up.
#[test]
fn health_survives_a_reload() {
    let sick = Arc::new(AtomicBool::new(true));
    let flaky = Upstream::flaky("flaky", sick);
    let steady = Upstream::echo("steady");
    let newcomer = Upstream::echo("newcomer");
    let health = |c: &mut serde_json::Value| {
        c["health"] = serde_json::json!({ "max_fails": 1, "fail_timeout_ms": 60000 });
    };
    let proxy = ProxyProcess::start(
        "health-reload",
        &config_json(&[flaky.addr, steady.addr], health),
    );
    let addr = proxy.addr;
    assert_ne!(
        who_answers(addr, "/1"),
        "steady",
        "the first request meets the flaky one"
    );
    assert!(proxy.wait_for_log("is down", 1, WAIT));
    proxy.rewrite_config(&config_json(
        &[flaky.addr, steady.addr, newcomer.addr],
        health,
    ));
    proxy.signal("HUP");
    assert!(proxy.wait_for_log("reloaded config", 1, WAIT));
    let seen = flaky.request_count();
    let answers: Vec<String> = (0..6)
        .map(|i| who_answers(addr, &format!("/{i}")))
        .collect();
    assert_eq!(
        flaky.request_count(),
        seen,
        "still ejected after the reload: {answers:?}"
    );
    assert!(answers.contains(&"newcomer".to_string()), "{answers:?}");
}
