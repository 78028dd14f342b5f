//! Routing, sans-IO: which handler a target gets (`src/route.rs`), and the
//! config checks for `upstream_groups` and `routes`. No sockets: a router
//! is built from a config string and asked.

use ferroxy::config::Config;
use ferroxy::route::{Handler, Router, decode_path};

const SEED: &str = r#""listen": "127.0.0.1:8080",
  "upstreams": [ { "host": "127.0.0.1", "port": 9001 } ],
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 1000, "max_conns_per_upstream": 100 }"#;

fn config(extra: &str) -> Result<Config, String> {
    Config::parse(&format!("{{ {SEED}, {extra} }}"), "test.json").map_err(|e| e.to_string())
}

fn router(extra: &str) -> Router {
    Router::from_config(&config(extra).expect("a valid config"))
}

fn groups_and_routes() -> Router {
    let root = std::env::temp_dir();
    router(&format!(
        r#""upstream_groups": {{
             "api": {{ "upstreams": [ {{ "host": "127.0.0.1", "port": 9101 }} ] }},
             "v2": {{ "upstreams": [ {{ "host": "127.0.0.1", "port": 9102 }} ], "balancing": "least_conn" }}
           }},
           "routes": [
             {{ "prefix": "/api", "group": "api" }},
             {{ "prefix": "/api/v2/", "group": "v2" }},
             {{ "prefix": "/assets/", "root": {root:?} }}
           ]"#
    ))
}

/// Groups are numbered `default` first, then by name: api = 1, v2 = 2.
fn group_of(router: &Router, target: &str) -> Option<usize> {
    match router.handler(target) {
        Handler::Group(g) => Some(g),
        _ => None,
    }
}

/// A prefix matches itself and what lies below it, never a longer name:
/// `/api` takes `/api`, `/api/` and `/api/x`, not `/apix`.
#[test]
fn a_prefix_matches_whole_segments() {
    let r = groups_and_routes();
    for target in ["/api", "/api/", "/api/x", "/api?q=1", "/api/x/y?z"] {
        assert_eq!(group_of(&r, target), Some(1), "{target}");
    }
    for target in ["/apix", "/ap", "/", "/x/api", "/API"] {
        assert_eq!(group_of(&r, target), Some(0), "{target} is default's");
    }
}

/// Longest prefix first, whatever the file's order.
#[test]
fn the_longest_prefix_wins() {
    let r = groups_and_routes();
    assert_eq!(group_of(&r, "/api/v2/users"), Some(2));
    assert_eq!(group_of(&r, "/api/v2"), Some(2));
    assert_eq!(group_of(&r, "/api/v3"), Some(1));
}

/// Matching happens on the decoded path with dot-segments resolved: the
/// path the request really names.
#[test]
fn routes_match_the_decoded_resolved_path() {
    let r = groups_and_routes();
    assert_eq!(group_of(&r, "/x/../api/y"), Some(1));
    assert_eq!(group_of(&r, "/%61pi/y"), Some(1), "%61 is 'a'");
    assert_eq!(group_of(&r, "/api/./v2/x"), Some(2));
    assert_eq!(group_of(&r, "/api/v2/../x"), Some(1));
    assert_eq!(
        group_of(&r, "http://example.com/api/x"),
        Some(1),
        "absolute form"
    );
    assert_eq!(group_of(&r, "*"), Some(0), "OPTIONS *");
}

/// A static route hands over the path below its prefix; the prefix alone
/// hands over nothing (the handler redirects it to the slash).
#[test]
fn a_static_route_replaces_its_prefix() {
    let r = groups_and_routes();
    match r.handler("/assets/css/a.css?v=3") {
        Handler::Static { root, rest, .. } => {
            assert_eq!(root, 0);
            assert_eq!(rest, b"/css/a.css");
        }
        other => panic!("expected a static handler, got {other:?}"),
    }
    match r.handler("/assets") {
        Handler::Static { rest, .. } => assert!(rest.is_empty()),
        other => panic!("expected a static handler, got {other:?}"),
    }
    match r.handler("/assets/a%2fb") {
        Handler::Static {
            disguised_separator,
            ..
        } => assert!(disguised_separator, "an encoded slash is flagged"),
        other => panic!("expected a static handler, got {other:?}"),
    }
}

/// `..` may not climb out of a static route, nor above `/`; a broken
/// `%`-escape or an encoded NUL is no path at all. All 400.
#[test]
fn paths_that_cannot_be_are_refused() {
    let r = groups_and_routes();
    for target in [
        "/assets/../etc/passwd",
        "/assets/%2e%2e/x",
        "/assets/css/../../x",
        "/..",
        "/a/../../b",
        "/x%zz",
        "/x%4",
        "/x%00y",
    ] {
        assert!(
            matches!(r.handler(target), Handler::Refuse(400, _)),
            "{target}: {:?}",
            r.handler(target)
        );
    }
    // Dot-segments that stay inside are fine.
    assert!(matches!(
        r.handler("/assets/css/../img/a.png"),
        Handler::Static { .. }
    ));
}

/// Without routes every request is `default`'s, and nothing is decoded:
/// even a path a router would refuse goes through untouched.
#[test]
fn without_routes_everything_goes_to_default() {
    let r = router(r#""workers": 1"#);
    assert!(r.is_empty());
    assert_eq!(r.handler("/x%zz/../.."), Handler::Group(0));
}

/// Dot-segment resolution, RFC 3986 5.2.4, on decoded bytes.
#[test]
fn dot_segments_resolve_like_rfc_3986() {
    for (raw, resolved) in [
        ("/a/b/c/./../../g", "/a/g"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a//b", "/a//b"),
        ("/", "/"),
        ("/%2e/a", "/a"),
        ("/a%2Fb", "/a/b"),
    ] {
        let path = decode_path(raw).expect("decodes");
        assert_eq!(String::from_utf8_lossy(&path.resolved), resolved, "{raw}");
    }
    assert!(decode_path("/a/../..").is_err());
    assert!(decode_path("relative").is_err());
}

/// `--check` names what is wrong: a route to a missing group, a root that
/// is not a directory, a route with both or neither target, a duplicate
/// prefix, a group named `default`, a group's own bad upstream.
#[test]
fn config_mistakes_in_groups_and_routes_name_the_field() {
    let file = std::env::temp_dir().join("ferroxy-routes-test-not-a-dir.txt");
    std::fs::write(&file, b"x").expect("a file");
    for (extra, expected) in [
        (
            r#""routes": [ { "prefix": "/api", "group": "nope" } ]"#.to_string(),
            "routes[0].group: no upstream group is named \"nope\"",
        ),
        (
            format!(r#""routes": [ {{ "prefix": "/s/", "root": {file:?} }} ]"#),
            "routes[0].root: ",
        ),
        (
            r#""routes": [ { "prefix": "/s/", "root": "/definitely/not/here" } ]"#.to_string(),
            "is not a directory",
        ),
        (
            r#""routes": [ { "prefix": "/s/" } ]"#.to_string(),
            "routes[0]: name exactly one of \"group\" or \"root\"",
        ),
        (
            r#""routes": [ { "prefix": "/a", "group": "default" }, { "prefix": "/a/", "group": "default" } ]"#
                .to_string(),
            "routes[1].prefix: \"/a/\" is already routed",
        ),
        (
            r#""routes": [ { "prefix": "api", "group": "default" } ]"#.to_string(),
            "routes[0].prefix: \"api\" must start with '/'",
        ),
        (
            r#""upstream_groups": { "default": { "upstreams": [ { "host": "127.0.0.1", "port": 1 } ] } }"#
                .to_string(),
            "upstream_groups.default:",
        ),
        (
            r#""upstream_groups": { "api": { "upstreams": [ { "host": "127.0.0.1", "port": 0 } ] } }"#
                .to_string(),
            "upstream_groups.api.upstreams[0].port",
        ),
        (
            r#""upstream_groups": { "api": { "upstreams": [] } }"#.to_string(),
            "upstream_groups.api.upstreams: the list is empty",
        ),
        (
            r#""upstream_groups": { "api": { "upstreams": [ { "host": "127.0.0.1", "port": 1 } ], "retry": 1 } }"#
                .to_string(),
            "unknown field `retry`",
        ),
        (
            r#""routes": [ { "prefix": "/a", "group": "default", "rooot": "/" } ]"#.to_string(),
            "unknown field `rooot`",
        ),
    ] {
        let err = config(&extra).expect_err(&extra);
        assert!(err.contains(expected), "{extra}\n  gave: {err}\n  wanted: {expected}");
    }
    let _ = std::fs::remove_file(file);
}

/// A group's own `health` and `retries` are its own: nothing is inherited
/// from the top level.
#[test]
fn groups_keep_their_own_settings() {
    let cfg = config(
        r#""retries": 2, "health": { "max_fails": 5 },
           "upstream_groups": { "api": { "upstreams": [ { "host": "127.0.0.1", "port": 9101, "weight": 3 } ],
                                         "balancing": "ip_hash" } }"#,
    )
    .expect("valid");
    let groups = cfg.groups();
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0].name, groups[0].retries), ("default", 2));
    assert!(groups[0].health.is_some());
    assert_eq!((groups[1].name, groups[1].retries), ("api", 0));
    assert!(groups[1].health.is_none());
    assert_eq!(groups[1].balancing, ferroxy::config::Balancing::IpHash);
    assert_eq!(cfg.group_index("api"), Some(1));
    let summary = cfg.summary();
    assert!(
        summary.contains("group       api: 1 upstreams, balancing ip_hash"),
        "{summary}"
    );
}
