//! Upstream groups over sockets: each group balances, pools, checks and
//! counts on its own, and a reload can add a group and a route to it
//! without dropping anything.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ferroxy::config::{Balancing, Config, GroupConfig, HealthConfig, UpstreamConfig};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn upstream(addr: SocketAddr) -> UpstreamConfig {
    UpstreamConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        weight: 1,
    }
}

fn group(addrs: &[SocketAddr], balancing: Balancing, health: Option<HealthConfig>) -> GroupConfig {
    GroupConfig {
        upstreams: addrs.iter().copied().map(upstream).collect(),
        balancing,
        health,
        retries: 0,
    }
}

fn add_group(cfg: &mut Config, name: &str, g: GroupConfig, prefix: &str) {
    cfg.upstream_groups.insert(name.to_string(), g);
    cfg.routes.push(group_route(prefix, name));
}

fn who(addr: SocketAddr, target: &str) -> String {
    let resp = Client::connect(addr).request(&get(target));
    resp.header("X-Upstream").unwrap_or("-").to_string()
}

/// `/api` requests go round-robin over the api group only; everything else
/// goes to `default`. Each group's upstreams are counted under their own
/// `group` label, and `default`'s keep the labels they always had.
#[test]
fn each_group_balances_and_counts_on_its_own() {
    let home = Upstream::echo("home");
    let api1 = Upstream::echo("api1");
    let api2 = Upstream::echo("api2");
    let proxy = start_proxy_with(&[home.addr], |cfg| {
        metrics_on(cfg);
        add_group(
            cfg,
            "api",
            group(&[api1.addr, api2.addr], Balancing::RoundRobin, None),
            "/api/",
        );
    });
    let addr = proxy.local_addr();
    let answers: Vec<String> = (0..4).map(|i| who(addr, &format!("/api/{i}"))).collect();
    assert_eq!(answers, ["api1", "api2", "api1", "api2"]);
    assert_eq!(who(addr, "/"), "home");
    assert_eq!(who(addr, "/apix"), "home");
    assert_eq!(home.request_count(), 2);

    let text = scrape_text(&proxy);
    let api = |a: SocketAddr| {
        format!("ferroxy_upstream_requests_total{{upstream=\"{a}\",group=\"api\"}}")
    };
    assert_eq!(metric_value(&text, &api(api1.addr)), Some(2.0), "{text}");
    assert_eq!(metric_value(&text, &api(api2.addr)), Some(2.0));
    let home_series = format!(
        "ferroxy_upstream_requests_total{{upstream=\"{}\"}}",
        home.addr
    );
    assert_eq!(metric_value(&text, &home_series), Some(2.0));
}

/// One upstream may serve two groups: each group has its own pool of idle
/// connections to it, and its own series.
#[test]
fn the_same_address_in_two_groups_has_two_pools() {
    let shared = Upstream::echo("shared");
    let proxy = start_proxy_with(&[shared.addr], |cfg| {
        metrics_on(cfg);
        add_group(
            cfg,
            "api",
            group(&[shared.addr], Balancing::LeastConn, None),
            "/api",
        );
    });
    let addr = proxy.local_addr();
    assert_eq!(who(addr, "/x"), "shared");
    assert_eq!(who(addr, "/api/x"), "shared");
    let pooled = wait_for_stats(&proxy, WAIT, |s| s.idle_upstream_connections == 2);
    assert!(pooled.is_ok(), "one idle connection per group: {pooled:?}");
    let text = scrape_text(&proxy);
    let idle_api = format!(
        "ferroxy_upstream_idle_connections{{upstream=\"{}\",group=\"api\"}}",
        shared.addr
    );
    let idle_default = format!(
        "ferroxy_upstream_idle_connections{{upstream=\"{}\"}}",
        shared.addr
    );
    assert_eq!(metric_value(&text, &idle_api), Some(1.0), "{text}");
    assert_eq!(metric_value(&text, &idle_default), Some(1.0));
    // A second request of each group reuses its own group's connection.
    assert_eq!(who(addr, "/api/y"), "shared");
    assert_eq!(who(addr, "/y"), "shared");
    assert_eq!(
        shared.connections(),
        2,
        "both reused their pooled connection"
    );
}

/// A group's health checks are its own: the api group's dead upstream is
/// marked down and skipped, while `default` has no checks at all.
#[test]
fn a_groups_health_checks_take_only_its_upstream_out() {
    let home = Upstream::echo("home");
    let good = Upstream::echo("good");
    let dead = dead_addr();
    let proxy = start_proxy_with(&[home.addr], |cfg| {
        metrics_on(cfg);
        let checks = HealthConfig {
            path: Some("/healthz".to_string()),
            interval_ms: 50,
            timeout_ms: 200,
            fails: 1,
            passes: 1,
            max_fails: 0,
            fail_timeout_ms: 1000,
        };
        add_group(
            cfg,
            "api",
            group(&[dead, good.addr], Balancing::RoundRobin, Some(checks)),
            "/api",
        );
    });
    let series = format!("ferroxy_upstream_up{{upstream=\"{dead}\",group=\"api\"}}");
    let down = wait_until(WAIT, || {
        metric_value(&scrape_text(&proxy), &series) == Some(0.0)
    });
    assert!(down, "the dead upstream of api should be down");
    let addr = proxy.local_addr();
    for i in 0..4 {
        assert_eq!(who(addr, &format!("/api/{i}")), "good", "request {i}");
    }
    assert_eq!(who(addr, "/"), "home");
    assert!(
        home.requests().iter().all(|r| r.target != "/healthz"),
        "default has no checks"
    );
    let checked = wait_until(WAIT, || {
        good.requests().iter().any(|r| r.target == "/healthz")
    });
    assert!(checked, "the api group checks its good upstream too");
}

/// SIGHUP may add a group and a route to it: new requests follow the new
/// route, the old groups keep their pooled connections.
#[test]
fn a_reload_adds_a_group_and_its_route() {
    let home = Upstream::echo("home");
    let api = Upstream::echo("api");
    let proxy = ProxyProcess::start("groups-reload", &config_json(&[home.addr], |_| {}));
    let addr = proxy.addr;
    assert_eq!(who(addr, "/api/x"), "home");
    proxy.rewrite_config(&config_json(&[home.addr], |c| {
        c["upstream_groups"] = serde_json::json!({
            "api": { "upstreams": [ { "host": "127.0.0.1", "port": api.addr.port() } ] }
        });
        c["routes"] = serde_json::json!([ { "prefix": "/api", "group": "api" } ]);
    }));
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("reloaded config", 1, WAIT),
        "{}",
        proxy.stderr()
    );
    assert_eq!(who(addr, "/api/x"), "api");
    assert_eq!(who(addr, "/other"), "home");
    assert_eq!(
        home.connections(),
        1,
        "default's pooled connection survived the reload"
    );

    // And a reload that removes it again sends /api back to default.
    proxy.rewrite_config(&config_json(&[home.addr], |_| {}));
    proxy.signal("HUP");
    assert!(proxy.wait_for_log("reloaded config", 2, WAIT));
    assert_eq!(who(addr, "/api/x"), "home");
}
