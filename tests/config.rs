//! `config.json` from the user's side: the seed file works, and every
//! mistake comes back as one readable line, `error: <what>, <where>`,
//! that names the field to fix.

use std::path::Path;

use ferroxy::config::{Config, ConfigError};

/// The contract's seed file, exactly as shipped.
const SEED: &str = include_str!("../config.json");

/// The seed with one piece of text swapped, so each test shows its mistake.
fn seed_with(from: &str, to: &str) -> String {
    assert!(SEED.contains(from), "test setup: seed has no {from:?}");
    SEED.replacen(from, to, 1)
}

fn parse_err(text: &str) -> ConfigError {
    match Config::parse(text, "config.json") {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    }
}

/// The seed file parses, and every optional field takes the documented
/// default, so a newcomer's first run needs nothing beyond it.
#[test]
fn seed_file_parses_with_defaults() {
    let config = Config::parse(SEED, "config.json").expect("the seed file must parse");
    assert_eq!(config.listen_addr().to_string(), "127.0.0.1:8080", "listen");
    assert_eq!(
        config.upstream_addrs(),
        vec![
            "127.0.0.1:9001".parse().unwrap(),
            "127.0.0.1:9002".parse().unwrap()
        ],
        "upstreams resolve in file order"
    );
    assert_eq!(
        config.timeouts.client_header_ms, 10_000,
        "client_header_ms default"
    );
    assert_eq!(config.timeouts.keepalive_ms, 60_000, "keepalive_ms default");
    assert_eq!(
        config.limits.max_header_bytes, 16_384,
        "max_header_bytes default"
    );
    assert_eq!(config.limits.buffer_bytes, 16_384, "buffer_bytes default");
    assert_eq!(
        config.limits.max_idle_per_upstream, 32,
        "max_idle_per_upstream default"
    );
    assert_eq!(
        config.log_level(),
        log::LevelFilter::Info,
        "level from the file"
    );
}

/// Leaving out `logging` altogether is fine: it defaults to `info`.
#[test]
fn logging_section_is_optional() {
    let text = seed_with(",\n  \"logging\": { \"level\": \"info\" }", "");
    let config = Config::parse(&text, "config.json").expect("no logging section");
    assert_eq!(config.logging.level, "info", "default level");
}

/// The optional knobs, when given, override their defaults.
#[test]
fn optional_fields_override_defaults() {
    let text = seed_with(
        "\"total_ms\": 30000",
        "\"total_ms\": 30000, \"client_header_ms\": 500, \"keepalive_ms\": 700",
    );
    let text = text.replacen(
        "\"max_conns_per_upstream\": 100",
        "\"max_conns_per_upstream\": 100, \"max_header_bytes\": 2048, \
         \"buffer_bytes\": 4096, \"max_idle_per_upstream\": 0",
        1,
    );
    let config = Config::parse(&text, "config.json").expect("optional fields");
    assert_eq!(config.timeouts.client_header_ms, 500, "client_header_ms");
    assert_eq!(config.timeouts.keepalive_ms, 700, "keepalive_ms");
    assert_eq!(config.limits.max_header_bytes, 2048, "max_header_bytes");
    assert_eq!(config.limits.buffer_bytes, 4096, "buffer_bytes");
    assert_eq!(
        config.limits.max_idle_per_upstream, 0,
        "0 idle connections is allowed: it turns the pool off"
    );
}

/// The error prints as the one line `--check` shows: `error: <what>, <where>`.
#[test]
fn error_displays_as_one_line() {
    let err = ConfigError {
        what: "timeouts.connect_ms: must be greater than 0".to_string(),
        location: "config.json".to_string(),
    };
    assert_eq!(
        err.to_string(),
        "error: timeouts.connect_ms: must be greater than 0, config.json"
    );
}

/// A file without `upstreams` says which field is missing, in serde's words.
#[test]
fn missing_upstreams_is_named() {
    let text = r#"{
  "listen": "127.0.0.1:8080",
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 1000, "max_conns_per_upstream": 100 }
}"#;
    let err = parse_err(text);
    assert!(
        err.what.contains("missing field `upstreams`"),
        "what should name the missing field: {err}"
    );
    assert!(
        err.location.starts_with("config.json line "),
        "location: {err}"
    );
}

/// A field missing inside a section is named with its section.
#[test]
fn missing_nested_field_names_its_section() {
    let err = parse_err(&seed_with("\"read_ms\": 15000, ", ""));
    assert_eq!(
        err.what, "timeouts: missing field `read_ms`",
        "what should name section and field: {err}"
    );
}

/// Port 70000 does not fit a u16; the error names the exact upstream and
/// repeats the bad value so the user can find it.
#[test]
fn port_out_of_range_names_path_and_value() {
    let err = parse_err(&seed_with("9001", "70000"));
    assert!(err.what.starts_with("upstreams[0].port: "), "path: {err}");
    assert!(err.what.contains("70000"), "the bad value: {err}");
    assert_eq!(err.location, "config.json line 4 column 40", "where: {err}");
}

/// A string where a number belongs names the nested field and both types.
#[test]
fn wrong_type_names_nested_field() {
    let err = parse_err(&seed_with(
        "\"connect_ms\": 1000",
        "\"connect_ms\": \"fast\"",
    ));
    assert_eq!(
        err.what, "timeouts.connect_ms: invalid type: string \"fast\", expected u64",
        "what: {err}"
    );
}

/// Broken JSON (a forgotten comma) has no field to name, so the line and
/// column carry the message; serde's " at line .." is not repeated in `what`.
#[test]
fn syntax_error_gives_line_and_column() {
    let text = "{\n    \"listen\": \"127.0.0.1:8080\"\n      \"upstreams\": []\n}";
    let err = parse_err(text);
    assert_eq!(err.what, "expected `,` or `}`", "what: {err}");
    assert_eq!(err.location, "config.json line 3 column 7", "where: {err}");
}

/// A typo in a top-level key is refused by name rather than ignored.
#[test]
fn unknown_top_level_field_is_named() {
    let err = parse_err(&seed_with("\"listen\"", "\"listne\""));
    assert!(
        err.what.contains("unknown field `listne`"),
        "what should name the typo: {err}"
    );
    assert!(
        err.what.contains("`listen`"),
        "serde lists the expected names: {err}"
    );
}

/// A typo inside an upstream names its full path.
#[test]
fn unknown_nested_field_is_named_with_path() {
    let err = parse_err(&seed_with("9001 }", "9001, \"wieght\": 2 }"));
    assert!(
        err.what
            .starts_with("upstreams[0].wieght: unknown field `wieght`"),
        "what: {err}"
    );
}

/// Two JSON documents pasted into one file are refused, not half-read.
#[test]
fn trailing_text_is_refused() {
    let err = parse_err(&format!("{SEED}{{}}"));
    assert_eq!(err.what, "trailing characters", "what: {err}");
    assert!(err.location.contains(" line 11 "), "where: {err}");
}

/// An empty file is a syntax error too, with a position.
#[test]
fn empty_file_is_refused() {
    let err = parse_err("");
    assert!(err.what.contains("EOF"), "what: {err}");
}

/// `listen` must be an IP and port; a hostname is refused because the
/// listener binds exactly one address.
#[test]
fn listen_must_be_a_socket_address() {
    let err = parse_err(&seed_with("127.0.0.1:8080", "localhost:8080"));
    assert!(
        err.what.starts_with("listen: \"localhost:8080\""),
        "what: {err}"
    );
    assert_eq!(
        err.location, "config.json",
        "semantic errors point at the file"
    );
}

/// Port 0 on `listen` is fine (the OS picks one; tests rely on it).
#[test]
fn listen_port_zero_is_allowed() {
    let config =
        Config::parse(&seed_with("127.0.0.1:8080", "127.0.0.1:0"), "t").expect("listen on port 0");
    assert_eq!(config.listen_addr().port(), 0, "port 0 kept");
}

/// A proxy with nowhere to send requests is a mistake, not a config.
#[test]
fn empty_upstream_list_is_refused() {
    let text = r#"{
  "listen": "127.0.0.1:8080",
  "upstreams": [],
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 1000, "max_conns_per_upstream": 100 }
}"#;
    let err = parse_err(text);
    assert!(err.what.starts_with("upstreams: "), "what: {err}");
}

/// Port 0 cannot be connected to; the error names which upstream.
#[test]
fn upstream_port_zero_is_refused() {
    let err = parse_err(&seed_with("9002", "0"));
    assert!(err.what.starts_with("upstreams[1].port: 0 "), "what: {err}");
}

/// An empty host is refused before any lookup.
#[test]
fn empty_upstream_host_is_refused() {
    let err = parse_err(&seed_with(
        "\"127.0.0.1\", \"port\": 9002",
        "\"\", \"port\": 9002",
    ));
    assert_eq!(err.what, "upstreams[1].host: is empty", "what: {err}");
}

/// A host that cannot resolve is named. (A NUL byte fails inside the
/// standard library, so the test never asks a DNS server anything.)
#[test]
fn unresolvable_host_is_refused() {
    let err = parse_err(&seed_with(
        "\"127.0.0.1\", \"port\": 9001",
        "\"bad\\u0000host\", \"port\": 9001",
    ));
    assert!(
        err.what
            .starts_with("upstreams[0].host: \"bad\\0host\" does not resolve"),
        "what: {err}"
    );
}

/// "localhost" is resolved (from the hosts file) to a loopback address.
#[test]
fn localhost_upstream_resolves_to_loopback() {
    let text = seed_with(
        "\"127.0.0.1\", \"port\": 9001",
        "\"localhost\", \"port\": 9001",
    );
    let config = Config::parse(&text, "config.json").expect("localhost resolves");
    let first = config.upstream_addrs()[0];
    assert!(first.ip().is_loopback(), "localhost gave {first}");
    assert_eq!(first.port(), 9001, "port kept");
}

/// Every timeout must be positive, optional ones included.
#[test]
fn zero_timeouts_are_refused() {
    let err = parse_err(&seed_with("\"total_ms\": 30000", "\"total_ms\": 0"));
    assert_eq!(
        err.what, "timeouts.total_ms: must be greater than 0",
        "{err}"
    );
    let err = parse_err(&seed_with(
        "\"total_ms\": 30000",
        "\"total_ms\": 1, \"keepalive_ms\": 0",
    ));
    assert_eq!(
        err.what, "timeouts.keepalive_ms: must be greater than 0",
        "{err}"
    );
}

/// Connection limits must allow at least one connection.
#[test]
fn zero_connection_limits_are_refused() {
    let err = parse_err(&seed_with(
        "\"max_client_conns\": 1000",
        "\"max_client_conns\": 0",
    ));
    assert!(err.what.starts_with("limits.max_client_conns: 0 "), "{err}");
    let err = parse_err(&seed_with(
        "\"max_conns_per_upstream\": 100",
        "\"max_conns_per_upstream\": 0",
    ));
    assert!(
        err.what.starts_with("limits.max_conns_per_upstream: 0 "),
        "{err}"
    );
}

/// Buffers and head limits under 1 KiB are refused; exactly 1024 is fine.
#[test]
fn tiny_buffers_are_refused() {
    let err = parse_err(&seed_with(
        "\"max_conns_per_upstream\": 100",
        "\"max_conns_per_upstream\": 100, \"buffer_bytes\": 1023",
    ));
    assert_eq!(
        err.what, "limits.buffer_bytes: 1023 is too small (at least 1024)",
        "{err}"
    );
    let err = parse_err(&seed_with(
        "\"max_conns_per_upstream\": 100",
        "\"max_conns_per_upstream\": 100, \"max_header_bytes\": 100",
    ));
    assert!(
        err.what.starts_with("limits.max_header_bytes: 100 "),
        "{err}"
    );
    let text = seed_with(
        "\"max_conns_per_upstream\": 100",
        "\"max_conns_per_upstream\": 100, \"max_header_bytes\": 1024, \"buffer_bytes\": 1024",
    );
    assert!(
        Config::parse(&text, "t").is_ok(),
        "1024 is the smallest allowed"
    );
}

/// Each level name maps to its `log` filter; anything else is refused.
#[test]
fn log_levels_map_and_typos_are_refused() {
    use log::LevelFilter::*;
    for (name, filter) in [
        ("off", Off),
        ("error", Error),
        ("warn", Warn),
        ("info", Info),
        ("debug", Debug),
        ("trace", Trace),
    ] {
        let text = seed_with("\"info\"", &format!("\"{name}\""));
        let config = Config::parse(&text, "t").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.log_level(), filter, "level {name}");
    }
    let err = parse_err(&seed_with("\"info\"", "\"loud\""));
    assert!(err.what.starts_with("logging.level: \"loud\" "), "{err}");
    let err = parse_err(&seed_with("\"info\"", "\"INFO\""));
    assert!(
        err.what.starts_with("logging.level: "),
        "only lower-case names: {err}"
    );
}

/// `load` of a file that is not there says so, naming the path as given.
#[test]
fn load_of_a_missing_file_is_a_clear_error() {
    let err = Config::load(Path::new("no/such/dir/ferroxy.json")).expect_err("missing file");
    assert!(err.what.starts_with("cannot read the config file"), "{err}");
    assert_eq!(err.location, "no/such/dir/ferroxy.json", "{err}");
}

/// `load` reads a real file and uses its path in positions.
#[test]
fn load_reads_the_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("ferroxy-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.json");
    let bad = dir.join("bad.json");
    std::fs::write(&good, SEED).expect("write good");
    std::fs::write(&bad, seed_with("9001", "70000")).expect("write bad");

    let config = Config::load(&good).expect("good file loads");
    let err = Config::load(&bad).expect_err("bad file");
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(config.upstreams.len(), 2, "upstreams from the file");
    assert_eq!(
        err.location,
        format!("{} line 4 column 40", bad.display()),
        "location names the file: {err}"
    );
}

/// The `--check` summary shows each setting by its key name, the resolved
/// upstream addresses, and the defaults in force.
#[test]
fn summary_shows_every_setting() {
    let text = seed_with(
        "\"127.0.0.1\", \"port\": 9002",
        "\"localhost\", \"port\": 9002",
    );
    let config = Config::parse(&text, "t").expect("parses");
    let summary = config.summary();
    for needle in [
        "listen      127.0.0.1:8080",
        "[0] 127.0.0.1:9001 -> 127.0.0.1:9001",
        "[1] localhost:9002 -> ",
        "connect_ms 1000",
        "total_ms 30000",
        "keepalive_ms 60000",
        "max_client_conns 1000",
        "buffer_bytes 16384",
        "level info",
    ] {
        assert!(
            summary.contains(needle),
            "summary lacks {needle:?}:\n{summary}"
        );
    }
    assert!(summary.lines().count() <= 24, "fits one screen:\n{summary}");
}
