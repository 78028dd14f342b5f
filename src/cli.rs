//! The command line: turn `argv` into a [`Command`], nothing more.
//!
//! Where it sits: the first thing `main` does, before any file is read or
//! socket opened. [`parse_args`] is pure (strings in, a value out), so
//! every rule here is a unit test in `tests/cli.rs`; what each command then
//! *does* lives in `src/main.rs`.
//!
//! Hand-rolled rather than clap: the project's dependency card keeps the
//! crate list short, and six flags fit in one `match`. A larger program
//! would want clap's generated help and shell completions.
//!
//! Lesson 14 (the whole proxy: startup) walks from here into the loop.

use std::path::PathBuf;

/// The file read when `--config` is not given, relative to the working
/// directory (as `nginx` reads its default from a fixed place).
pub const DEFAULT_CONFIG: &str = "./config.json";

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the proxy in the foreground; with `demo`, also start the
    /// built-in demo upstreams on the config's upstream addresses; with
    /// `trace`, log at `trace` whatever the config says.
    Run {
        config: PathBuf,
        demo: bool,
        trace: bool,
    },
    /// Validate the config, print a summary, exit (like `nginx -t`).
    Check { config: PathBuf },
    /// Print the version and exit.
    Version,
    /// Print [`USAGE`] and exit.
    Help,
}

/// `ferroxy --help`.
pub const USAGE: &str = "\
ferroxy: a small HTTP/1.1 reverse proxy on one poll loop, written to be read

USAGE:
    ferroxy [--config PATH] [--demo] [--trace]
                                        run the proxy in the foreground
    ferroxy --check [--config PATH]     validate the config, print a summary
    ferroxy --version | --help

OPTIONS:
    --config PATH, --config=PATH
                     config file to read (default: ./config.json)
    --check          validate the config and print what it means; exit 0 if
                     good, else print `error: <what>, <where>` and exit 1
    --trace          narrate the reactor for a learner: every wake-up and its
                     events, state change, interest change and timer, one
                     short line each (the `trace` log level, whatever the
                     config says); follow a single curl through the loop
    --demo           also start one built-in demo upstream on each upstream
                     address of the config (loopback only), so `curl` works
                     at once; try /bytes/N, /chunked/N, /delay/MS,
                     /status/CODE, or any other path for a JSON echo
    -V, --version    print the version
    -h, --help       print this help

CONFIG (JSON; unknown fields are errors):
    listen           \"127.0.0.1:8080\": address the proxy listens on
    upstreams        [{ \"host\": \"127.0.0.1\", \"port\": 9001 }, ...]
    timeouts         connect_ms, read_ms, write_ms, total_ms (required);
                     client_header_ms (10000), keepalive_ms (60000)
    limits           max_client_conns, max_conns_per_upstream (required);
                     max_header_bytes (16384), buffer_bytes (16384),
                     max_idle_per_upstream (32)
    logging.level    off, error, warn, info (default), debug, trace

Logs go to stderr. SIGINT/SIGTERM stop gracefully; SIGHUP re-reads the
config. Exit status: 0 ok, 1 bad config or runtime error, 2 usage error.
";

/// Parse the arguments *after* the program name (`env::args().skip(1)`).
///
/// Rules, in the spirit of "refuse rather than guess":
/// - `--help` and `--version` answer as soon as they are seen; a mistake
///   earlier on the line is still reported first.
/// - `--config` may be given once; its value is the next argument or the
///   text after `=`. A next argument that starts with `-` is taken as a
///   forgotten value, not as a path (use `--config=-odd-name` for that).
/// - `--check --demo` is refused: `--check` never starts anything.
/// - Anything else is an error whose message suggests `--help`.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config: Option<PathBuf> = None;
    let mut check = false;
    let mut demo = false;
    let mut trace = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--check" => {
                check = true;
                continue;
            }
            "--demo" => {
                demo = true;
                continue;
            }
            "--trace" => {
                trace = true;
                continue;
            }
            "--config" => match args.next() {
                Some(next) if !next.starts_with('-') => next,
                Some(next) => {
                    return Err(format!(
                        "--config needs a path, but the next argument is `{next}`"
                    ));
                }
                None => return Err("--config needs a path".to_string()),
            },
            other => match other.strip_prefix("--config=") {
                Some(path) => path.to_string(),
                None if other.starts_with('-') => {
                    return Err(format!("unknown option `{other}` (try `ferroxy --help`)"));
                }
                None => {
                    return Err(format!(
                        "unexpected argument `{other}`; to name a config file use \
                         `--config {other}` (try `ferroxy --help`)"
                    ));
                }
            },
        };
        // Only `--config` reaches this point.
        if value.is_empty() {
            return Err("--config needs a path, got an empty one".to_string());
        }
        if config.is_some() {
            return Err("--config given twice; which file did you mean?".to_string());
        }
        config = Some(PathBuf::from(value));
    }

    let config = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match (check, demo || trace) {
        (true, true) => Err(
            "--check only validates the config; it cannot be combined with --demo or --trace"
                .to_string(),
        ),
        (true, false) => Ok(Command::Check { config }),
        (false, _) => Ok(Command::Run {
            config,
            demo,
            trace,
        }),
    }
}
