//! The command line, two ways: `parse_args` as a pure function (every rule,
//! no process), then the real binary for what only a process shows: exit
//! status, and which of stdout and stderr the words go to.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};

use ferroxy::cli::{Command, DEFAULT_CONFIG, USAGE, parse_args};

fn parse(args: &[&str]) -> Result<Command, String> {
    parse_args(args.iter().map(|a| a.to_string()))
}

fn run_default(demo: bool) -> Command {
    Command::Run {
        config: PathBuf::from(DEFAULT_CONFIG),
        demo,
        trace: false,
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
        trace: false,
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
        trace: false,
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
            demo: false,
            trace: false,
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

// ---- the binary ------------------------------------------------------------

/// The seed config shipped with the crate.
const SEED: &str = include_str!("../config.json");

fn ferroxy(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_ferroxy"))
        .args(args)
        .output()
        .expect("the ferroxy binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A scratch directory of this test's own, so parallel tests never share
/// files; removed when the test ends (also when it fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ferroxy-cli-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a scratch config");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_arg(path: &Path) -> String {
    format!("--config={}", path.display())
}

/// Asserts the shape scripts rely on: exit 1, nothing on stdout, exactly one
/// stderr line `error: ...` that contains `needle`.
fn assert_config_error(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "exit 1; stderr: {err}");
    assert_eq!(stdout(output), "", "nothing on stdout");
    assert_eq!(
        err.lines().count(),
        1,
        "exactly one line on stderr: {err:?}"
    );
    assert!(err.starts_with("error: "), "starts with `error: `: {err:?}");
    assert!(err.contains(needle), "names {needle:?}: {err:?}");
}

/// `--version` prints the crate version on stdout and exits 0.
#[test]
fn binary_prints_its_version() {
    for flag in ["--version", "-V"] {
        let output = ferroxy(&[flag]);
        assert!(output.status.success(), "{flag} exits 0");
        assert_eq!(
            stdout(&output),
            format!("ferroxy {}\n", env!("CARGO_PKG_VERSION")),
            "{flag} output"
        );
    }
}

/// `--help` prints USAGE on stdout and exits 0.
#[test]
fn binary_prints_help() {
    for flag in ["--help", "-h"] {
        let output = ferroxy(&[flag]);
        assert!(output.status.success(), "{flag} exits 0");
        assert_eq!(stdout(&output), USAGE, "{flag} prints USAGE");
    }
}

/// `--check` on the shipped seed config: exit 0, a summary on stdout.
#[test]
fn binary_checks_the_seed_config() {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/config.json");
    let output = ferroxy(&["--check", "--config", seed]);
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "exit 0; stderr: {}",
        stderr(&output)
    );
    for needle in [
        "listen      127.0.0.1:8080",
        "127.0.0.1:9001",
        "127.0.0.1:9002",
        "connect_ms 1000",
        "max_client_conns 1000",
        "level info",
    ] {
        assert!(out.contains(needle), "summary lacks {needle:?}:\n{out}");
    }
    assert!(
        out.ends_with(&format!("{seed}: ok\n")),
        "ends saying the file is ok:\n{out}"
    );
}

/// `--check` on broken files: exit 1 and one `error:` line naming what to fix.
#[test]
fn binary_check_reports_bad_files_in_one_line() {
    let scratch = Scratch::new("bad-files");
    let cases = [
        (
            "port.json",
            SEED.replacen("9001", "70000", 1),
            "upstreams[0].port",
        ),
        (
            "type.json",
            SEED.replacen("\"connect_ms\": 1000", "\"connect_ms\": \"fast\"", 1),
            "timeouts.connect_ms",
        ),
        (
            "typo.json",
            SEED.replacen("\"listen\"", "\"listne\"", 1),
            "listne",
        ),
        (
            "level.json",
            SEED.replacen("\"info\"", "\"loud\"", 1),
            "logging.level",
        ),
        ("syntax.json", SEED.replacen(",", "", 1), "line 3 column"),
    ];
    for (name, text, needle) in cases {
        let path = scratch.write(name, &text);
        let output = ferroxy(&["--check", &path_arg(&path)]);
        assert_config_error(&output, needle);
        assert!(
            stderr(&output).contains(&path.display().to_string()),
            "{name}: the error names the file"
        );
    }
}

/// A config file that is not there is the same kind of error, not a panic.
#[test]
fn binary_check_reports_a_missing_file() {
    let scratch = Scratch::new("missing");
    let path = scratch.0.join("absent.json");
    let output = ferroxy(&["--check", &path_arg(&path)]);
    assert_config_error(&output, "cannot read the config file");
}

/// Running (not checking) with a bad file stops before the proxy starts,
/// with the same one line and exit 1.
#[test]
fn binary_run_with_a_bad_file_exits_1() {
    let scratch = Scratch::new("run-bad");
    let path = scratch.write("bad.json", &SEED.replacen("9002", "0", 1));
    let output = ferroxy(&[&path_arg(&path)]);
    assert_config_error(&output, "upstreams[1].port");
}

/// `--demo` refuses a non-loopback upstream address before starting
/// anything (0.0.0.0 here: nothing is ever sent anywhere).
#[test]
fn binary_demo_refuses_non_loopback_upstreams() {
    let scratch = Scratch::new("demo-remote");
    let path = scratch.write(
        "remote.json",
        &SEED.replacen(
            "\"host\": \"127.0.0.1\", \"port\": 9002",
            "\"host\": \"0.0.0.0\", \"port\": 9002",
            1,
        ),
    );
    let output = ferroxy(&["--demo", &path_arg(&path)]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "exit 1; stderr: {err}");
    assert!(
        err.contains("error: --demo starts upstreams on loopback addresses only")
            && err.contains("upstreams[1] is 0.0.0.0:9002"),
        "names the address and the rule: {err}"
    );
}

/// A usage mistake exits 2 (not 1: the config was never looked at).
#[test]
fn binary_unknown_flag_exits_2() {
    let output = ferroxy(&["--frobnicate"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "exit 2; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(
        err.starts_with("error: unknown option `--frobnicate`") && err.contains("--help"),
        "names the flag, suggests --help: {err:?}"
    );
}

/// `--trace` narrates the reactor; it combines with `--demo` and
/// `--config`, but not with `--check`, which starts nothing to narrate.
#[test]
fn trace_runs_with_narration() {
    assert_eq!(
        parse(&["--demo", "--trace"]),
        Ok(Command::Run {
            config: PathBuf::from(DEFAULT_CONFIG),
            demo: true,
            trace: true,
        }),
        "--demo --trace"
    );
    assert!(
        parse(&["--check", "--trace"]).is_err(),
        "--check --trace must be refused"
    );
}

/// `--check` names a route whose group does not exist, or whose root is
/// not a directory, in one line; a good one is listed in the summary.
#[test]
fn binary_check_names_bad_routes() {
    let scratch = Scratch::new("routes");
    let with = |routes: &str| {
        SEED.replacen(
            "\"logging\"",
            &format!("\"routes\": {routes},\n  \"logging\""),
            1,
        )
    };
    let missing = scratch.write(
        "missing-group.json",
        &with(r#"[ { "prefix": "/api/", "group": "apl" } ]"#),
    );
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&missing)]),
        "routes[0].group: no upstream group is named \"apl\" (known: default)",
    );
    let not_dir = scratch.write(
        "not-a-dir.json",
        &with(&format!(
            r#"[ {{ "prefix": "/s/", "root": {:?} }} ]"#,
            scratch.0.join("missing-group.json")
        )),
    );
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&not_dir)]),
        "routes[0].root: ",
    );
    let good = scratch.write(
        "good.json",
        &with(&format!(
            r#"[ {{ "prefix": "/s/", "root": {:?} }} ]"#,
            scratch.0
        )),
    );
    let output = ferroxy(&["--check", &path_arg(&good)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("/s/ -> static files from"),
        "{}",
        stdout(&output)
    );
}

/// `--check` loads the certificates too: a missing file, a key that is not
/// the certificate's, an empty list and a bad address each fail with the
/// field named; a good pair is summarized, the first marked default.
#[test]
fn binary_check_loads_the_tls_certificates() {
    let scratch = Scratch::new("tls");
    let write_pair = |name: &str| {
        let made = ferroxy::demo_tls::self_signed(&["localhost"]).expect("a certificate");
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        made.write_to(&dir).expect("write the pair")
    };
    let (one, other) = (write_pair("one"), write_pair("other"));
    let with =
        |tls: String| SEED.replacen("\"logging\"", &format!("\"tls\": {tls},\n  \"logging\""), 1);
    let pair = |cert: &Path, key: &Path| {
        format!(
            r#"{{ "listen": "127.0.0.1:8443", "certificates": [ {{ "cert": {cert:?}, "key": {key:?} }} ] }}"#
        )
    };
    let missing = scratch.write(
        "missing.json",
        &with(pair(&scratch.0.join("nope.pem"), &one.key)),
    );
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&missing)]),
        "tls.certificates[0]: cannot read",
    );
    let mismatched = scratch.write("mismatched.json", &with(pair(&one.cert, &other.key)));
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&mismatched)]),
        "do not make a usable pair",
    );
    let empty = scratch.write(
        "empty.json",
        &with(r#"{ "listen": "127.0.0.1:8443", "certificates": [] }"#.to_string()),
    );
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&empty)]),
        "tls.certificates: ",
    );
    let bad_listen = scratch.write(
        "listen.json",
        &with(pair(&one.cert, &one.key).replace("127.0.0.1:8443", "localhost")),
    );
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&bad_listen)]),
        "tls.listen: ",
    );
    let typo = scratch.write(
        "typo.json",
        &with(pair(&one.cert, &one.key).replace("\"certificates\"", "\"certs\"")),
    );
    assert_config_error(
        &ferroxy(&["--check", &path_arg(&typo)]),
        "unknown field `certs`",
    );

    let good = scratch.write("good.json", &with(pair(&one.cert, &one.key)));
    let output = ferroxy(&["--check", &path_arg(&good)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("tls         listen 127.0.0.1:8443"), "{out}");
    assert!(out.contains("(default)"), "{out}");
}
