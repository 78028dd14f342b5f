//! Which handler a request goes to: the one place that decides.
//!
//! A request is proxied to an upstream group or served from a static
//! `root`. `routes` are matched by path prefix, longest first, on the
//! *decoded* path with dot-segments resolved, because that is the path
//! the request names: `/api/%2e%2e/admin` and `/api/../admin` both mean
//! `/admin`, and a router that matched the raw text would send them where
//! the upstream will not look.
//!
//! A prefix matches whole segments: `/api` (or `/api/`) matches `/api`,
//! `/api/` and `/api/x`, never `/apix`. What no route matches goes to the
//! group `default`.
//!
//! Two refusals live here, because they are about the path itself:
//! a `%` not followed by two hex digits, or an encoded NUL, is a 400, and
//! so is a path whose `..` segments climb above `/` or out of a static
//! route's prefix (`/assets/../secret`): that is a traversal attempt,
//! never a different route. Everything else is the handler's business.
//!
//! Plain data, no sockets: fed a request target, it answers a [`Handler`].
//!
//! Lesson: `lessons/16-static-files`.

use crate::config::Config;

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Proxy it to the upstream group with this index (0 is `default`).
    Group(usize),
    /// Serve a file from static root `root`; `rest` is the resolved,
    /// decoded path below the route's prefix: `""` for the prefix itself
    /// (no trailing slash), else starting with `/`.
    Static {
        root: usize,
        rest: Vec<u8>,
        /// The raw path held `%2F`, `%5C` or `\`: a separator in disguise,
        /// which a file server must refuse.
        disguised_separator: bool,
    },
    /// Refuse with this status, for this reason (logged).
    Refuse(u16, &'static str),
}

#[derive(Clone, Debug)]
enum Target {
    Group(usize),
    Root(usize),
}

#[derive(Clone, Debug)]
struct Route {
    /// Without its trailing slash: `/api/` and `/api` are one prefix.
    prefix: String,
    target: Target,
}

/// The routes, longest prefix first.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// A path decoded and resolved, or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedPath {
    /// Percent-decoded, dot-segments resolved.
    pub resolved: Vec<u8>,
    /// Percent-decoded only, as the client wrote its segments.
    pub decoded: Vec<u8>,
    pub disguised_separator: bool,
}

impl Router {
    /// The routes of a validated config. Static roots are numbered in
    /// route order, skipping group routes (the reactor opens them in the
    /// same order: see `crate::files::Roots`).
    pub fn from_config(config: &Config) -> Router {
        let mut roots = 0;
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|route| {
                let target = match (&route.group, &route.root) {
                    (Some(group), _) => Target::Group(config.group_index(group)?),
                    (None, Some(_)) => {
                        roots += 1;
                        Target::Root(roots - 1)
                    }
                    (None, None) => return None,
                };
                Some(Route {
                    prefix: route.prefix.trim_end_matches('/').to_string(),
                    target,
                })
            })
            .collect();
        // Stable: among equal lengths (impossible after validation) the
        // file's order would win.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Router { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The handler for a request target (origin-form, absolute-form or `*`).
    pub fn handler(&self, target: &str) -> Handler {
        // Without routes there is nothing to decide, and nothing to decode:
        // the common case pays nothing for the feature.
        if self.routes.is_empty() || target == "*" {
            return Handler::Group(0);
        }
        let path = match decode_path(path_of(target)) {
            Ok(path) => path,
            Err(why) => return Handler::Refuse(400, why),
        };
        // A static route the *unresolved* path is under must still hold the
        // resolved one: `..` may not walk out of a root.
        if let Some(route) = self.matching(&path.decoded)
            && let Target::Root(_) = route.target
            && !under(&path.resolved, &route.prefix)
        {
            return Handler::Refuse(400, "dot-segments leave a static route");
        }
        match self.matching(&path.resolved) {
            None => Handler::Group(0),
            Some(Route {
                target: Target::Group(group),
                ..
            }) => Handler::Group(*group),
            Some(Route {
                prefix,
                target: Target::Root(root),
            }) => Handler::Static {
                root: *root,
                rest: path.resolved[prefix.len()..].to_vec(),
                disguised_separator: path.disguised_separator,
            },
        }
    }

    fn matching(&self, path: &[u8]) -> Option<&Route> {
        self.routes.iter().find(|r| under(path, &r.prefix))
    }
}

/// `path` is `prefix` or below it, by whole segments.
fn under(path: &[u8], prefix: &str) -> bool {
    let prefix = prefix.as_bytes();
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// The path part of a request target: no query, no fragment, no scheme
/// and authority for the absolute form.
fn path_of(target: &str) -> &str {
    let mut path = target;
    if let Some(after) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        path = after.find('/').map_or("/", |i| &after[i..]);
    }
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// Percent-decode `path` and resolve its dot-segments (RFC 3986 5.2.4),
/// refusing what cannot be a path.
pub fn decode_path(path: &str) -> Result<DecodedPath, &'static str> {
    let raw = path.as_bytes();
    let mut decoded = Vec::with_capacity(raw.len());
    let mut disguised_separator = false;
    let mut i = 0;
    while i < raw.len() {
        let byte = match raw[i] {
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .ok_or("a '%' without two hex digits")?;
                let value = hex_value(hex[0])
                    .zip(hex_value(hex[1]))
                    .map(|(hi, lo)| hi << 4 | lo)
                    .ok_or("a '%' without two hex digits")?;
                disguised_separator |= value == b'/' || value == b'\\';
                i += 3;
                value
            }
            b => {
                disguised_separator |= b == b'\\';
                i += 1;
                b
            }
        };
        if byte == 0 {
            return Err("a NUL byte in the path");
        }
        decoded.push(byte);
    }
    if !decoded.starts_with(b"/") {
        return Err("the path does not start with '/'");
    }
    let resolved = resolve_dots(&decoded).ok_or("dot-segments climb above '/'")?;
    Ok(DecodedPath {
        resolved,
        decoded,
        disguised_separator,
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `/a/./b/../c` -> `/a/c`; a trailing `.` or `..` keeps the trailing
/// slash (`/a/b/..` -> `/a/`). `None` if `..` would climb above `/`, which
/// browsers never send: only someone probing does.
fn resolve_dots(path: &[u8]) -> Option<Vec<u8>> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut parts = path[1..].split(|&b| b == b'/').peekable();
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            b"." => trailing_slash = last,
            b".." => {
                segments.pop()?;
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}
