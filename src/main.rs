//! The `ferroxy` binary: command line -> config -> logger -> loop.
//!
//! Deliberately thin: every decision worth testing lives in the library
//! (`cli::parse_args`, `Config::load`, `reactor::run`); this file only wires
//! them together and turns failures into an exit status.
//!
//! Exit status, as scripts expect from `nginx -t` and friends:
//! 0 done, 1 bad config or runtime failure, 2 the command line itself was wrong.

use std::path::Path;
use std::process::ExitCode;

use ferroxy::cli::{self, Command, USAGE};
use ferroxy::config::Config;
use ferroxy::demo::DemoUpstream;
use ferroxy::demo_site::DemoSite;
use ferroxy::demo_tls::DemoTls;

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };

    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("ferroxy {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            demo,
            trace,
        } => run(&config, demo, trace),
    }
}

/// `--check`: the summary on stdout (for a human), the error on stderr as
/// one line (for a script to grep).
fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            // The certificates are files of their own: load them too, so
            // a key that does not match its certificate fails here.
            if let Some(tls) = &config.tls
                && let Err(e) = ferroxy::tls::TlsAcceptor::new(tls)
            {
                eprintln!("error: {e}, {}", path.display());
                return ExitCode::from(1);
            }
            print!("{}", config.summary());
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(1)
        }
    }
}

fn run(path: &Path, demo: bool, trace: bool) -> ExitCode {
    let mut config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(1);
        }
    };

    // The logger comes after the config because the config picks its level.
    // Errors before this point are printed with eprintln, in the same
    // `error: ...` shape, so a user sees one style either way.
    // The logger itself lets everything through; the global max level does
    // the filtering, so a reload (SIGHUP) can raise or lower it.
    if let Err(err) = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Trace)
        .init()
    {
        eprintln!("error: cannot start the logger ({err})");
        return ExitCode::from(1);
    }
    // `--trace` narrates the loop; when off, each trace! in the reactor is
    // one comparison against this level, and nothing else.
    log::set_max_level(if trace {
        log::LevelFilter::Trace
    } else {
        config.log_level()
    });

    // Held until the loop returns: dropping a DemoUpstream stops it.
    let _demos = if demo {
        match start_demos(&config) {
            Ok(demos) => demos,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(1);
            }
        }
    } else {
        Vec::new()
    };
    // Also held until the loop returns: its drop removes the directory.
    let _site = if demo {
        match DemoSite::add_to(&mut config) {
            Ok(Some(site)) => {
                log::info!(
                    "demo static site: http://{}{} served from {}",
                    config.listen,
                    ferroxy::demo_site::PREFIX,
                    site.dir.display()
                );
                Some(site)
            }
            Ok(None) => None,
            Err(err) => {
                eprintln!("error: cannot write the demo site ({err})");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };

    // Also held until the loop returns: its drop removes the certificate.
    let _tls = if demo {
        match DemoTls::add_to(&mut config) {
            Ok(Some(tls)) => {
                log::info!(
                    "demo TLS on a self-signed certificate: curl -k https://{}/",
                    tls.listen
                );
                Some(tls)
            }
            Ok(None) => None,
            Err(err) => {
                eprintln!("error: cannot make the demo certificate ({err})");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };

    match ferroxy::reactor::run(&config, Some(path), trace) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// One demo upstream per configured upstream, named `upstream-1`, ... in
/// config order, so `X-Upstream` in a response maps back to the file.
///
/// Every address is checked before any is started: a demo is a toy with no
/// limits or authentication, and must never answer anyone but this machine.
fn start_demos(config: &Config) -> Result<Vec<DemoUpstream>, String> {
    let addrs = config.upstream_addrs();
    for (i, addr) in addrs.iter().enumerate() {
        if !addr.ip().is_loopback() {
            return Err(format!(
                "--demo starts upstreams on loopback addresses only, but upstreams[{i}] is {addr}"
            ));
        }
    }
    let mut demos = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.into_iter().enumerate() {
        let name = format!("upstream-{}", i + 1);
        let demo = DemoUpstream::start(addr, &name).map_err(|err| {
            format!("cannot start demo upstream {name} on {addr} (upstreams[{i}]): {err}")
        })?;
        log::info!("demo upstream {name} listening on {}", demo.local_addr());
        demos.push(demo);
    }
    Ok(demos)
}
