//! What the user writes: `config.json` as serde structs.
//!
//! Every field beyond the contract's seed file is optional with a default, and
//! unknown fields are refused by name, so a typo never passes silently. A bad
//! file gives one line: `error: <what>, <where>` (see [`ConfigError`]).
//!
//! Where it sits: read once at start (and again on reload, later); the
//! reactor only ever sees a validated [`Config`].

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on, e.g. "127.0.0.1:8080".
    pub listen: String,
    pub upstreams: Vec<UpstreamConfig>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    #[serde(default)]
    pub logging: Logging,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
}

/// All in milliseconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect_ms: u64,
    pub read_ms: u64,
    pub write_ms: u64,
    pub total_ms: u64,
    #[serde(default = "default_client_header_ms")]
    pub client_header_ms: u64,
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_client_conns: usize,
    pub max_conns_per_upstream: usize,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Per direction, per connection: the most body bytes the proxy holds.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
    #[serde(default = "default_max_idle_per_upstream")]
    pub max_idle_per_upstream: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// off, error, warn, info, debug, trace.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: default_level(),
        }
    }
}

fn default_client_header_ms() -> u64 {
    10_000
}
fn default_keepalive_ms() -> u64 {
    60_000
}
fn default_max_header_bytes() -> usize {
    16_384
}
fn default_buffer_bytes() -> usize {
    16_384
}
fn default_max_idle_per_upstream() -> usize {
    32
}
fn default_level() -> String {
    "info".to_string()
}

/// A config problem, printed as `error: {what}, {location}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong, naming the field: "timeouts.connect_ms: invalid type:
    /// string \"fast\", expected u64".
    pub what: String,
    /// Where: "config.json line 4 column 30", or just the path.
    pub location: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error: {}, {}", self.what, self.location)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let _ = path;
        todo!()
    }

    /// Parse and validate JSON text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let _ = (text, origin);
        todo!()
    }

    /// The listen address, parsed (validation guarantees it parses).
    pub fn listen_addr(&self) -> SocketAddr {
        todo!()
    }

    /// Upstream addresses resolved, in config order (validation guarantees
    /// each resolves).
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        todo!()
    }

    /// The log level as a `log` filter.
    pub fn log_level(&self) -> log::LevelFilter {
        todo!()
    }

    /// The one-screen summary `--check` prints.
    pub fn summary(&self) -> String {
        todo!()
    }
}
