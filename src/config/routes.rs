//! `upstream_groups` and `routes`: the part of the config that says where
//! a request goes.
//!
//! The top-level `upstreams` (with `balancing`, `health`, `retries`) is the
//! group named `default`; `upstream_groups` adds named ones. A group that
//! does not set `balancing`, `health` or `retries` gets their defaults
//! (round-robin, no health, no retries): settings are not inherited from
//! `default`, as an nginx `upstream` block inherits nothing from another.
//!
//! [`Config::groups`] lists every group the same way, `default` first, so
//! the reactor builds all of them with one piece of code.
//!
//! Lesson: `lessons/16-static-files`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Balancing, Config, HealthConfig, UpstreamConfig};

/// The name the top-level `upstreams` go by.
pub const DEFAULT_GROUP: &str = "default";

/// One entry of `upstream_groups`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub balancing: Balancing,
    #[serde(default)]
    pub health: Option<HealthConfig>,
    #[serde(default)]
    pub retries: usize,
}

/// One entry of `routes`: a path prefix and where its requests go, either
/// a `group` or a `root` directory of static files (exactly one of them).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub root: Option<PathBuf>,
}

/// Any group, the default one included, seen the same way.
#[derive(Clone, Copy, Debug)]
pub struct GroupView<'a> {
    pub name: &'a str,
    pub upstreams: &'a [UpstreamConfig],
    pub balancing: Balancing,
    pub health: Option<&'a HealthConfig>,
    pub retries: usize,
}

pub type Groups = BTreeMap<String, GroupConfig>;

impl Config {
    /// Every group, `default` first, then `upstream_groups` by name. A
    /// group's position here is its index everywhere else (the reactor's
    /// groups, a route's target).
    pub fn groups(&self) -> Vec<GroupView<'_>> {
        let mut all = vec![GroupView {
            name: DEFAULT_GROUP,
            upstreams: &self.upstreams,
            balancing: self.balancing,
            health: self.health.as_ref(),
            retries: self.retries,
        }];
        all.extend(self.upstream_groups.iter().map(|(name, g)| GroupView {
            name,
            upstreams: &g.upstreams,
            balancing: g.balancing,
            health: g.health.as_ref(),
            retries: g.retries,
        }));
        all
    }

    /// The index of the group called `name` in [`Config::groups`].
    pub fn group_index(&self, name: &str) -> Option<usize> {
        if name == DEFAULT_GROUP {
            return Some(0);
        }
        self.upstream_groups
            .keys()
            .position(|k| k == name)
            .map(|i| i + 1)
    }

    /// Group names and route entries make sense: the checks serde cannot
    /// make. Upstream lists and health sections of named groups are checked
    /// by the same code as the top-level ones (see `Config::validate`).
    pub(super) fn validate_routes(&self) -> Result<(), String> {
        for name in self.upstream_groups.keys() {
            if name == DEFAULT_GROUP {
                return Err(format!(
                    "upstream_groups.{name}: \"default\" is the top-level upstreams; pick another name"
                ));
            }
            let fine = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !fine {
                return Err(format!(
                    "upstream_groups: {name:?} is not a usable name (letters, digits, '_', '-', '.')"
                ));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            let prefix = route.prefix.as_str();
            if !prefix.starts_with('/') || prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(format!(
                    "{at}.prefix: {prefix:?} must start with '/' and hold no spaces or control bytes"
                ));
            }
            if prefix.contains('%') || prefix.split('/').any(|s| s == "." || s == "..") {
                return Err(format!(
                    "{at}.prefix: {prefix:?} is matched against the decoded, resolved path; \
                     write it without %-escapes or dot-segments"
                ));
            }
            // "/api" and "/api/" match the same requests (see src/route.rs).
            let key = prefix.trim_end_matches('/');
            if seen.contains(&key) {
                return Err(format!("{at}.prefix: {prefix:?} is already routed"));
            }
            seen.push(key);
            match (&route.group, &route.root) {
                (Some(group), None) => {
                    if self.group_index(group).is_none() {
                        return Err(format!(
                            "{at}.group: no upstream group is named {group:?} (known: {})",
                            self.groups()
                                .iter()
                                .map(|g| g.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                (None, Some(root)) => {
                    if !root.is_dir() {
                        return Err(format!("{at}.root: {} is not a directory", root.display()));
                    }
                }
                _ => {
                    return Err(format!("{at}: name exactly one of \"group\" or \"root\""));
                }
            }
        }
        Ok(())
    }
}
