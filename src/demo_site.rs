//! `ferroxy --demo`'s static site: a few files in a fresh temp directory,
//! served by a route the demo adds, so a newcomer can `curl` a file at
//! once and watch `sendfile`, ranges and 304s work (lesson 16).
//!
//! The route is `/static/`, unless the config already routes that prefix;
//! the directory is removed when the demo ends. A SIGHUP re-reads the file
//! only, so after a reload the demo route is gone unless `config.json`
//! names it: the demo adds to the config, it does not rewrite it.

use std::io;
use std::path::PathBuf;

use crate::config::{Config, RouteConfig};

/// Where the demo mounts its site.
pub const PREFIX: &str = "/static/";

const INDEX: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>ferroxy demo</title>
<link rel=\"stylesheet\" href=\"style.css\"></head>
<body><h1>Served by ferroxy from its poll loop</h1>
<p>This page, <a href=\"style.css\">style.css</a>, <a href=\"hello.txt\">hello.txt</a>
and <a href=\"big.bin\">big.bin</a> (1 MiB) come from a static route, sent with sendfile(2).</p>
<p>Try: <code>curl -i http://127.0.0.1:8080/static/hello.txt</code>, then again with
<code>-H 'Range: bytes=0-4'</code>, or with <code>-H 'If-None-Match: ...'</code> and the ETag you got.</p>
</body></html>
";

const STYLE: &str = "body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }\ncode { background: #eee; padding: 0 .2em; }\n";

/// The demo site's directory, removed on drop.
pub struct DemoSite {
    pub dir: PathBuf,
}

impl DemoSite {
    /// Write the site and add its route to `config` (not if `PREFIX` is
    /// routed already: the user's route wins, and `None` says so).
    pub fn add_to(config: &mut Config) -> io::Result<Option<DemoSite>> {
        let taken = config
            .routes
            .iter()
            .any(|r| r.prefix.trim_end_matches('/') == PREFIX.trim_end_matches('/'));
        if taken {
            return Ok(None);
        }
        let dir = std::env::temp_dir().join(format!("ferroxy-demo-site-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let site = DemoSite { dir };
        std::fs::write(site.dir.join("index.html"), INDEX)?;
        std::fs::write(site.dir.join("style.css"), STYLE)?;
        std::fs::write(site.dir.join("hello.txt"), "Hello from a file on disk.\n")?;
        let big: Vec<u8> = (0..1u64 << 20).map(crate::demo::pattern_byte).collect();
        std::fs::write(site.dir.join("big.bin"), big)?;
        config.routes.push(RouteConfig {
            prefix: PREFIX.to_string(),
            group: None,
            root: Some(site.dir.clone()),
        });
        Ok(Some(site))
    }
}

impl Drop for DemoSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
