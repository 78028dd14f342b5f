//! The command line, two ways: `parse_args` as a pure function (every rule,
//! no process), then the real binary for what only a process shows: exit
//! status, and which of stdout and stderr the words go to.

use std::path::PathBuf;

use ferroxy::cli::{Command, DEFAULT_CONFIG, USAGE, parse_args};

fn parse(args: &[&str]) -> Result<Command, String> {
    parse_args(args.iter().map(|a| a.to_string()))
}

fn run_default(demo: bool) -> Command {
    Command::Run {
        config: PathBuf::from(DEFAULT_CONFIG),
        demo,
    }
}

// ---- parse_args: pure ----------------------------------------------------

/// No arguments runs the proxy with ./config.json, as the contract says.
#[test]
fn no_arguments_runs_with_the_default_config() {
    assert_eq!(parse(&[]), Ok(run_default(false)), "bare `ferroxy`");
}

/// `--config PATH` and `--config=PATH` mean the same.
#[test]
fn config_path_in_both_spellings() {
    let expected = Ok(Command::Run {
        config: PathBuf::from("/etc/ferroxy.json"),
        demo: false,
    });
    assert_eq!(
        parse(&["--config", "/etc/ferroxy.json"]),
        expected,
        "two words"
    );
    assert_eq!(parse(&["--config=/etc/ferroxy.json"]), expected, "with =");
}

/// `--demo` combines with `--config` in either order.
#[test]
fn demo_with_and_without_config() {
    assert_eq!(parse(&["--demo"]), Ok(run_default(true)), "--demo alone");
    let expected = Ok(Command::Run {
        config: PathBuf::from("x.json"),
        demo: true,
    });
    assert_eq!(
        parse(&["--demo", "--config", "x.json"]),
        expected,
        "demo first"
    );
    assert_eq!(parse(&["--config=x.json", "--demo"]), expected, "demo last");
}

/// `--check` validates the default file, or the one named.
#[test]
fn check_with_and_without_config() {
    assert_eq!(
        parse(&["--check"]),
        Ok(Command::Check {
            config: PathBuf::from(DEFAULT_CONFIG)
        }),
        "default file"
    );
    assert_eq!(
        parse(&["--config", "y.json", "--check"]),
        Ok(Command::Check {
            config: PathBuf::from("y.json")
        }),
        "named file, flag after"
    );
}

/// Help and version in long and short form.
#[test]
fn help_and_version_flags() {
    assert_eq!(parse(&["--help"]), Ok(Command::Help), "--help");
    assert_eq!(parse(&["-h"]), Ok(Command::Help), "-h");
    assert_eq!(parse(&["--version"]), Ok(Command::Version), "--version");
    assert_eq!(parse(&["-V"]), Ok(Command::Version), "-V");
}

/// `--help` answers as soon as it is seen, so `ferroxy --check --help`
/// explains `--check` rather than running it...
#[test]
fn help_wins_over_later_arguments() {
    assert_eq!(
        parse(&["--check", "--help"]),
        Ok(Command::Help),
        "after --check"
    );
    assert_eq!(
        parse(&["--help", "--bogus"]),
        Ok(Command::Help),
        "before a typo"
    );
}

/// ...but a mistake earlier on the line is still reported first.
#[test]
fn an_earlier_mistake_beats_help() {
    assert!(parse(&["--bogus", "--help"]).is_err(), "typo before --help");
}

/// An unknown flag is named, and the message points to --help.
#[test]
fn unknown_flag_suggests_help() {
    let err = parse(&["--conifg", "x.json"]).expect_err("typo must be refused");
    assert!(err.contains("`--conifg`"), "names the flag: {err}");
    assert!(err.contains("--help"), "suggests --help: {err}");
}

/// A bare word is not silently taken as the config file: it could be a
/// typo for a flag, so the message shows the spelling that works.
#[test]
fn stray_argument_is_refused() {
    let err = parse(&["config.json"]).expect_err("positional argument");
    assert!(err.contains("--config config.json"), "shows the fix: {err}");
}

/// `--config` without a usable path says so, rather than eating the next
/// flag as a file name or reading a file called "".
#[test]
fn config_without_a_path_is_refused() {
    let err = parse(&["--config"]).expect_err("at the end");
    assert!(err.contains("needs a path"), "at the end: {err}");
    let err = parse(&["--config", "--check"]).expect_err("followed by a flag");
    assert!(err.contains("`--check`"), "names what came instead: {err}");
    let err = parse(&["--config="]).expect_err("empty");
    assert!(err.contains("empty"), "empty path: {err}");
}

/// A path that starts with `-` still works with `=`.
#[test]
fn dash_path_works_with_equals() {
    assert_eq!(
        parse(&["--config=-odd.json"]),
        Ok(Command::Run {
            config: PathBuf::from("-odd.json"),
            demo: false
        }),
        "--config=-odd.json"
    );
}

/// Two config files: which one? Refused rather than guessed.
#[test]
fn config_twice_is_refused() {
    let err = parse(&["--config", "a.json", "--config=b.json"]).expect_err("twice");
    assert!(err.contains("twice"), "{err}");
}

/// `--check` never starts anything, so `--demo` with it is a mistake.
#[test]
fn check_with_demo_is_refused() {
    let err = parse(&["--check", "--demo"]).expect_err("--check --demo");
    assert!(err.contains("--demo"), "{err}");
}

/// The help text mentions every flag and every config section.
#[test]
fn usage_lists_every_flag_and_config_field() {
    for word in [
        "--config PATH",
        "--config=PATH",
        "--check",
        "--demo",
        "--version",
        "-V",
        "--help",
        "-h",
        "listen",
        "upstreams",
        "connect_ms",
        "read_ms",
        "write_ms",
        "total_ms",
        "client_header_ms",
        "keepalive_ms",
        "max_client_conns",
        "max_conns_per_upstream",
        "max_header_bytes",
        "buffer_bytes",
        "max_idle_per_upstream",
        "logging.level",
        "/bytes/N",
        "/chunked/N",
        "/delay/MS",
        "/status/CODE",
    ] {
        assert!(USAGE.contains(word), "USAGE does not mention {word:?}");
    }
    assert!(
        USAGE.lines().all(|line| line.len() <= 80),
        "USAGE fits an 80-column terminal"
    );
}
