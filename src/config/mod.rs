//! What the user writes: `config.json` as serde structs.
//!
//! Every field beyond the contract's seed file is optional with a default, and
//! unknown fields are refused by name, so a typo never passes silently. A bad
//! file gives one line: `error: <what>, <where>` (see [`ConfigError`]).
//!
//! Where it sits: read once at start (and again on reload, later); the
//! reactor only ever sees a validated [`Config`]. Reading happens in two
//! passes, form (serde: syntax, names, types) then meaning
//! ([`Config::parse`] explains), and both report in the same shape.
//! Lesson 14 (the whole proxy: startup, reload) is where this file is read.
//!
//! What it does not do: open sockets or keep resolved addresses. Hosts are
//! resolved when asked ([`Config::upstream_addrs`]), so a `Config` stays
//! plain data that a test can build from a string.
//!
//! Over 500 lines, on purpose: every field of the file, its default and its
//! checks read in one place, next to `config.json`; only the routing part,
//! which has rules of its own, lives in `routes.rs`.

mod routes;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use routes::{DEFAULT_GROUP, GroupConfig, GroupView, Groups, RouteConfig};

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
    /// The metrics/admin listener; off when absent.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Reactor threads, each its own single poll loop on its own
    /// `SO_REUSEPORT` listener (the kernel spreads new connections).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// How the next request picks among `upstreams` (see `src/balance.rs`).
    #[serde(default)]
    pub balancing: Balancing,
    /// How many *other* upstreams a failed request may be tried on, under
    /// the contract's retry rule (see `src/retry.rs`).
    #[serde(default)]
    pub retries: usize,
    /// Active checks and passive ejection; off when absent.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Token buckets per client address or for all; off when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Named groups of upstreams besides `default` (see `routes.rs`).
    #[serde(default)]
    pub upstream_groups: Groups,
    /// Path prefixes sent to a group or served from a directory.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// A second listener that terminates TLS (see `src/tls`); off when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `tls`: where to listen, and the certificates (the first is the default).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener, e.g. "127.0.0.1:8443".
    pub listen: String,
    pub certificates: Vec<CertificateConfig>,
}

/// One certificate chain (PEM, leaf first) and its private key (PEM).
/// Relative paths are taken from the working directory, like `root`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balancing {
    /// Smooth weighted round-robin, nginx's: never a burst to one upstream.
    #[default]
    RoundRobin,
    /// Fewest requests in flight relative to weight.
    LeastConn,
    /// A client address stays on one upstream (consistent hashing).
    IpHash,
}

impl Balancing {
    pub fn name(self) -> &'static str {
        match self {
            Balancing::RoundRobin => "round_robin",
            Balancing::LeastConn => "least_conn",
            Balancing::IpHash => "ip_hash",
        }
    }
}

/// `health`: active checks run only when `path` is set; passive ejection
/// runs whenever the section is present and `max_fails` is not 0.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `GET path` every `interval_ms`; 2xx or 3xx passes.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// One check, connect included, must finish in this.
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// Failed checks in a row that mark an upstream down.
    #[serde(default = "default_fails")]
    pub fails: u32,
    /// Passed checks in a row that mark it up again.
    #[serde(default = "default_passes")]
    pub passes: u32,
    /// Failed requests within `fail_timeout_ms` that eject it (0: never).
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// The window for `max_fails`, and how long an ejection lasts.
    #[serde(default = "default_fail_timeout_ms")]
    pub fail_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tokens added per second.
    pub rps: u32,
    /// Most tokens a bucket holds: the burst allowed after a quiet spell.
    /// Defaults to `rps` (one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub per: RateLimitPer,
}

impl RateLimitConfig {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rps)
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitPer {
    #[default]
    ClientIp,
    Global,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address for `/metrics`, `/metrics.json` and the `/` panel, e.g.
    /// "127.0.0.1:9090". Keep it private: it tells anyone what the proxy does.
    pub listen: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
    /// Its share relative to the others (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
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
    /// An upgraded connection (WebSocket) with no byte either way for this
    /// long is closed. Not `read_ms`: a quiet WebSocket is normal.
    #[serde(default = "default_tunnel_idle_ms")]
    pub tunnel_idle_ms: u64,
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
fn default_workers() -> usize {
    1
}
fn default_tunnel_idle_ms() -> u64 {
    300_000
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
fn default_weight() -> u32 {
    1
}
fn default_interval_ms() -> u64 {
    2_000
}
fn default_check_timeout_ms() -> u64 {
    1_000
}
fn default_fails() -> u32 {
    3
}
fn default_passes() -> u32 {
    2
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout_ms() -> u64 {
    10_000
}
fn default_level() -> String {
    "info".to_string()
}

/// A weight above this is surely a typo, and keeps the balancer's sums small.
pub const MAX_WEIGHT: u32 = 1000;

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
    ///
    /// Errors name the file as given on the command line, so the user sees
    /// the same spelling they typed.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            what: format!("cannot read the config file ({err})"),
            location: origin.clone(),
        })?;
        Config::parse(&text, &origin)
    }

    /// Parse and validate JSON text; `origin` names it in errors.
    ///
    /// Two passes, one error shape. First serde checks the *form*: JSON
    /// syntax, field names, types, ranges a type already implies (a port
    /// is a `u16`). Then `validate` checks the *meaning*: the
    /// address parses, hosts resolve, numbers are usable.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut json = serde_json::Deserializer::from_str(text);
        // serde alone reports "invalid type ... at line 4 column 30" but not
        // *which* field; serde_path_to_error tracks the path while
        // deserializing so the message can say `timeouts.connect_ms`.
        let config: Config =
            serde_path_to_error::deserialize(&mut json).map_err(|err| form_error(&err, origin))?;
        // `from_str` stops after the first complete value; `end` refuses
        // anything but whitespace after it (e.g. two objects pasted together).
        json.end().map_err(|err| ConfigError {
            what: strip_position(&err),
            location: position(origin, &err),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// The listen address, parsed (validation guarantees it parses).
    ///
    /// # Panics
    /// On a `Config` that did not come through [`Config::parse`] or
    /// [`Config::load`] and has a malformed `listen`.
    pub fn listen_addr(&self) -> SocketAddr {
        match self.listen.parse() {
            Ok(addr) => addr,
            Err(err) => panic!(
                "listen {:?} is not an address ({err}): config not validated",
                self.listen
            ),
        }
    }

    /// Upstream addresses resolved, in config order (validation guarantees
    /// each resolves).
    ///
    /// Resolved on every call rather than stored: it happens at startup
    /// and on reload only, and an IP literal never touches DNS. When a
    /// name has several addresses the first is used, as the OS resolver
    /// orders them (nginx would balance over all of them; we keep one
    /// upstream = one address so the log lines stay easy to follow).
    ///
    /// # Panics
    /// If a host that resolved during validation no longer does (a DNS
    /// name that vanished between validation and this call). The reactor
    /// uses [`Config::try_upstream_addrs`], which cannot.
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        self.upstreams
            .iter()
            .map(|upstream| match upstream.resolve() {
                Ok(addr) => addr,
                Err(reason) => panic!(
                    "upstream {}:{} no longer resolves ({reason})",
                    upstream.host, upstream.port
                ),
            })
            .collect()
    }

    /// Upstream addresses resolved, or which one no longer resolves: a
    /// reload must not bring the loop down because a DNS name vanished in
    /// the moment between validating the file and applying it.
    pub fn try_upstream_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        resolve_upstreams(&self.upstreams, "")
    }
}

/// A group's upstream addresses, or which one no longer resolves (`at` is
/// the group's field prefix, as in the file).
pub fn resolve_upstreams(
    upstreams: &[UpstreamConfig],
    at: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    upstreams
        .iter()
        .enumerate()
        .map(|(i, upstream)| {
            upstream.resolve().map_err(|reason| ConfigError {
                what: format!(
                    "{at}upstreams[{i}].host: {:?} no longer resolves ({reason})",
                    upstream.host
                ),
                location: "reload".to_string(),
            })
        })
        .collect()
}

impl Config {
    /// The log level as a `log` filter.
    ///
    /// # Panics
    /// On a `Config` that skipped validation and has an unknown level.
    pub fn log_level(&self) -> log::LevelFilter {
        match level_filter(&self.logging.level) {
            Some(level) => level,
            None => panic!(
                "logging.level {:?} is not a level: config not validated",
                self.logging.level
            ),
        }
    }

    /// The one-screen summary `--check` prints.
    ///
    /// Field names are spelled as in the file, so a reader can go from a
    /// line here to the key that set it; defaults appear too, because
    /// "what will it actually do" is the question `--check` answers.
    pub fn summary(&self) -> String {
        let t = &self.timeouts;
        let l = &self.limits;
        let mut out = String::new();
        out.push_str(&format!("listen      {}\n", self.listen));
        out.push_str(&format!("upstreams   {}\n", self.upstreams.len()));
        for (i, (upstream, addr)) in self.upstreams.iter().zip(self.upstream_addrs()).enumerate() {
            out.push_str(&format!(
                "  [{i}] {}:{} -> {addr}, weight {}\n",
                upstream.host, upstream.port, upstream.weight
            ));
        }
        out.push_str(&format!(
            "balancing   {}, retries {}\n",
            self.balancing.name(),
            self.retries
        ));
        match &self.health {
            Some(h) => {
                match &h.path {
                    Some(path) => out.push_str(&format!(
                        "health      GET {path} every {} ms (timeout_ms {}), down after {} fails, up after {} passes\n",
                        h.interval_ms, h.timeout_ms, h.fails, h.passes
                    )),
                    None => out.push_str("health      no active checks (no path)\n"),
                }
                out.push_str(&format!(
                    "            ejected after max_fails {} within fail_timeout_ms {}\n",
                    h.max_fails, h.fail_timeout_ms
                ));
            }
            None => out.push_str("health      off\n"),
        }
        match &self.rate_limit {
            Some(r) => out.push_str(&format!(
                "rate_limit  rps {}, burst {}, per {}\n",
                r.rps,
                r.burst(),
                match r.per {
                    RateLimitPer::ClientIp => "client_ip",
                    RateLimitPer::Global => "global",
                }
            )),
            None => out.push_str("rate_limit  off\n"),
        }
        match &self.tls {
            Some(tls) => {
                out.push_str(&format!("tls         listen {}\n", tls.listen));
                for (i, c) in tls.certificates.iter().enumerate() {
                    let default = if i == 0 { " (default)" } else { "" };
                    out.push_str(&format!(
                        "  [{i}] cert {}, key {}{default}\n",
                        c.cert.display(),
                        c.key.display()
                    ));
                }
            }
            None => out.push_str("tls         off\n"),
        }
        for (name, group) in &self.upstream_groups {
            out.push_str(&format!(
                "group       {name}: {} upstreams, balancing {}, retries {}, health {}\n",
                group.upstreams.len(),
                group.balancing.name(),
                group.retries,
                match &group.health {
                    Some(h) => match &h.path {
                        Some(path) => format!("GET {path} every {} ms", h.interval_ms),
                        None => "passive only".to_string(),
                    },
                    None => "off".to_string(),
                }
            ));
            for (i, upstream) in group.upstreams.iter().enumerate() {
                out.push_str(&format!(
                    "  [{i}] {}:{}, weight {}\n",
                    upstream.host, upstream.port, upstream.weight
                ));
            }
        }
        if self.routes.is_empty() {
            out.push_str("routes      none: every request goes to default\n");
        }
        for (i, route) in self.routes.iter().enumerate() {
            let to = match (&route.group, &route.root) {
                (Some(group), _) => format!("group {group}"),
                (None, Some(root)) => format!("static files from {}", root.display()),
                (None, None) => "nothing".to_string(),
            };
            let label = if i == 0 { "routes" } else { "" };
            out.push_str(&format!("{label:<12}{} -> {to}\n", route.prefix));
        }
        out.push_str(&format!(
            "timeouts    connect_ms {}, read_ms {}, write_ms {}, total_ms {}\n",
            t.connect_ms, t.read_ms, t.write_ms, t.total_ms
        ));
        out.push_str(&format!(
            "            client_header_ms {}, keepalive_ms {}, tunnel_idle_ms {}\n",
            t.client_header_ms, t.keepalive_ms, t.tunnel_idle_ms
        ));
        out.push_str(&format!(
            "limits      max_client_conns {}, max_conns_per_upstream {}, max_idle_per_upstream {}\n",
            l.max_client_conns, l.max_conns_per_upstream, l.max_idle_per_upstream
        ));
        out.push_str(&format!(
            "            max_header_bytes {}, buffer_bytes {}\n",
            l.max_header_bytes, l.buffer_bytes
        ));
        out.push_str(&format!("logging     level {}\n", self.logging.level));
        out.push_str(&format!("workers     {}\n", self.workers));
        match &self.metrics {
            Some(m) => out.push_str(&format!("metrics     http://{}/metrics\n", m.listen)),
            None => out.push_str("metrics     off\n"),
        }
        out
    }

    /// The second pass: everything serde's types cannot say.
    ///
    /// Stops at the first problem, like a compiler that reports one error
    /// at a time: a user fixes one line and runs `--check` again.
    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let fail = |what: String| ConfigError {
            what,
            location: origin.to_string(),
        };

        if let Err(err) = self.listen.parse::<SocketAddr>() {
            return Err(fail(format!(
                "listen: {:?} is not an address like \"127.0.0.1:8080\" ({err})",
                self.listen
            )));
        }

        if let Some(metrics) = &self.metrics
            && let Err(err) = metrics.listen.parse::<SocketAddr>()
        {
            return Err(fail(format!(
                "metrics.listen: {:?} is not an address like \"127.0.0.1:9090\" ({err})",
                metrics.listen
            )));
        }

        if let Some(tls) = &self.tls {
            if let Err(err) = tls.listen.parse::<SocketAddr>() {
                return Err(fail(format!(
                    "tls.listen: {:?} is not an address like \"127.0.0.1:8443\" ({err})",
                    tls.listen
                )));
            }
            if tls.certificates.is_empty() {
                return Err(fail(
                    "tls.certificates: name at least one { \"cert\": ..., \"key\": ... }"
                        .to_string(),
                ));
            }
        }

        if !(1..=64).contains(&self.workers) {
            return Err(fail(format!(
                "workers: {} is out of range (1 to 64; one per core is plenty)",
                self.workers
            )));
        }

        for group in self.groups() {
            validate_group(&group).map_err(fail)?;
        }
        self.validate_routes().map_err(fail)?;
        if let Some(r) = &self.rate_limit {
            if r.rps == 0 {
                return Err(fail(
                    "rate_limit.rps: must be greater than 0 (remove rate_limit to turn it off)"
                        .to_string(),
                ));
            }
            if r.burst == Some(0) {
                return Err(fail(
                    "rate_limit.burst: must be at least 1, or no request could pass".to_string(),
                ));
            }
        }

        // A zero timeout would fire on the very next turn of the loop: no
        // request could ever succeed, so it is refused rather than obeyed.
        let t = &self.timeouts;
        for (name, value) in [
            ("connect_ms", t.connect_ms),
            ("read_ms", t.read_ms),
            ("write_ms", t.write_ms),
            ("total_ms", t.total_ms),
            ("client_header_ms", t.client_header_ms),
            ("keepalive_ms", t.keepalive_ms),
            ("tunnel_idle_ms", t.tunnel_idle_ms),
        ] {
            if value == 0 {
                return Err(fail(format!("timeouts.{name}: must be greater than 0")));
            }
        }

        let l = &self.limits;
        for (name, value, least) in [
            ("max_client_conns", l.max_client_conns, 1),
            ("max_conns_per_upstream", l.max_conns_per_upstream, 1),
            // Below 1 KiB a plain browser request head no longer fits, and
            // buffers that small turn every body into thousands of syscalls.
            ("max_header_bytes", l.max_header_bytes, 1024),
            ("buffer_bytes", l.buffer_bytes, 1024),
        ] {
            if value < least {
                return Err(fail(format!(
                    "limits.{name}: {value} is too small (at least {least})"
                )));
            }
        }
        // `max_idle_per_upstream` may be 0: that simply turns the pool off.

        if level_filter(&self.logging.level).is_none() {
            return Err(fail(format!(
                "logging.level: {:?} is not one of off, error, warn, info, debug, trace",
                self.logging.level
            )));
        }
        Ok(())
    }
}

/// `upstreams`, `balancing`'s weights and `health` of one group; field
/// names are spelled as in the file (`upstreams[1].port` for the default
/// group, `upstream_groups.api.upstreams[1].port` for another).
fn validate_group(group: &GroupView<'_>) -> Result<(), String> {
    let at = match group.name {
        DEFAULT_GROUP => String::new(),
        name => format!("upstream_groups.{name}."),
    };
    if group.upstreams.is_empty() {
        return Err(format!(
            "{at}upstreams: the list is empty; the proxy needs at least one upstream"
        ));
    }
    for (i, upstream) in group.upstreams.iter().enumerate() {
        // Port 0 means "any free port" when binding; as a destination
        // it cannot be connected to, so it is always a mistake here.
        if upstream.port == 0 {
            return Err(format!(
                "{at}upstreams[{i}].port: 0 is not a port an upstream can listen on"
            ));
        }
        if upstream.host.is_empty() {
            return Err(format!("{at}upstreams[{i}].host: is empty"));
        }
        if let Err(reason) = upstream.resolve() {
            return Err(format!(
                "{at}upstreams[{i}].host: {:?} does not resolve ({reason})",
                upstream.host
            ));
        }
        if !(1..=MAX_WEIGHT).contains(&upstream.weight) {
            return Err(format!(
                "{at}upstreams[{i}].weight: {} is out of range (1 to {MAX_WEIGHT})",
                upstream.weight
            ));
        }
    }
    if let Some(h) = group.health {
        if let Some(path) = &h.path
            && (!path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            return Err(format!(
                "{at}health.path: {path:?} must start with '/' and hold no spaces or control bytes"
            ));
        }
        for (name, value) in [
            ("interval_ms", h.interval_ms),
            ("timeout_ms", h.timeout_ms),
            ("fails", u64::from(h.fails)),
            ("passes", u64::from(h.passes)),
            ("fail_timeout_ms", h.fail_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{at}health.{name}: must be greater than 0"));
            }
        }
    }
    Ok(())
}

impl UpstreamConfig {
    /// The first address `host:port` resolves to. An IP literal is parsed
    /// without asking DNS; "localhost" comes from /etc/hosts.
    fn resolve(&self) -> Result<SocketAddr, String> {
        match (self.host.as_str(), self.port).to_socket_addrs() {
            Ok(mut addrs) => addrs.next().ok_or_else(|| "no addresses found".to_string()),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Only the exact lower-case names: the file is read by people who will
/// grep for these words, so one spelling is kinder than several.
fn level_filter(level: &str) -> Option<log::LevelFilter> {
    use log::LevelFilter;
    match level {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Turn a serde error into ours: the field path leads `what` (unless the
/// problem is the whole document, e.g. a missing top-level field), the
/// line and column go to `location`.
fn form_error(err: &serde_path_to_error::Error<serde_json::Error>, origin: &str) -> ConfigError {
    let path = err.path().to_string();
    let message = strip_position(err.inner());
    // A syntax error has no field to name: the path is wherever the parser
    // happened to be, which only confuses ("upstreams[1]: expected `,`").
    let names_a_field = path != "." && !err.inner().is_syntax() && !err.inner().is_eof();
    ConfigError {
        what: if names_a_field {
            format!("{path}: {message}")
        } else {
            message
        },
        location: position(origin, err.inner()),
    }
}

/// serde_json's Display ends in " at line L column C"; we move that to
/// `location`, so strip it from the message.
fn strip_position(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match full.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => full,
    }
}

fn position(origin: &str, err: &serde_json::Error) -> String {
    // serde_json reports line 0 for errors not tied to a place in the text.
    if err.line() == 0 {
        origin.to_string()
    } else {
        format!("{origin} line {} column {}", err.line(), err.column())
    }
}
