//! Static files: a `root` route answered from the poll loop, as the
//! contract's "Static files" paragraph says, row by row. Each test builds
//! its own little site in a temp directory, starts a proxy whose default
//! upstream is an echo server (so anything that leaks through to it shows),
//! and asks over a real socket.

mod support;

use std::time::Duration;

use ferroxy::config::Config;
use support::*;

/// A proxy with `/assets/` served from `site`, and the echo upstream.
fn proxy_for(site: &TempSite, upstream: &Upstream) -> ferroxy::reactor::ProxyHandle {
    proxy_with(site, upstream, |_| {})
}

fn proxy_with(
    site: &TempSite,
    upstream: &Upstream,
    tweak: impl FnOnce(&mut Config),
) -> ferroxy::reactor::ProxyHandle {
    let root = site.dir.join("public");
    std::fs::create_dir_all(&root).expect("the root");
    start_proxy_with(&[upstream.addr], |cfg| {
        cfg.routes = vec![static_route("/assets/", &root)];
        tweak(cfg);
    })
}

fn ask(proxy: &ferroxy::reactor::ProxyHandle, raw: &[u8]) -> Response {
    Client::connect(proxy.local_addr()).request(raw)
}

fn get_with(target: &str, extra: &[&str]) -> Vec<u8> {
    let request_line = format!("GET {target} HTTP/1.1");
    let mut lines = vec![request_line.as_str(), "Host: test.local"];
    lines.extend_from_slice(extra);
    head(&lines)
}

/// The story of one file: its bytes, its type by extension, its length,
/// when it changed and a strong tag for it; and the upstream never hears
/// of the request.
#[test]
fn a_file_comes_with_type_length_date_and_a_strong_etag() {
    let site = TempSite::new("basic");
    site.file("public/css/site.css", b"body { color: teal }\n");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);

    let resp = ask(&proxy, &get("/assets/css/site.css"));
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(resp.body, b"body { color: teal }\n");
    assert_eq!(resp.header("Content-Type"), Some("text/css; charset=utf-8"));
    assert_eq!(resp.header("Content-Length"), Some("21"));
    assert_eq!(resp.header("Accept-Ranges"), Some("bytes"));
    let etag = resp.header("ETag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"),
        "a strong tag: {etag}"
    );
    let modified = resp.header("Last-Modified").expect("Last-Modified");
    assert!(
        ferroxy::files::rules::parse_http_date(modified).is_some(),
        "an HTTP date: {modified}"
    );
    assert_eq!(
        upstream.request_count(),
        0,
        "a static answer touches no upstream"
    );

    let again = ask(&proxy, &get("/assets/css/site.css"));
    assert_eq!(
        again.header("ETag"),
        Some(etag),
        "the same file, the same tag"
    );
}

/// Content types come from the extension, whatever its case; an unknown
/// one is plain bytes.
#[test]
fn content_type_follows_the_extension() {
    let site = TempSite::new("types");
    for name in ["a.html", "b.JS", "c.png", "d.json", "e.unknownext", "f.svg"] {
        site.file(&format!("public/{name}"), b"x");
    }
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    for (name, expected) in [
        ("a.html", "text/html; charset=utf-8"),
        ("b.JS", "text/javascript; charset=utf-8"),
        ("c.png", "image/png"),
        ("d.json", "application/json; charset=utf-8"),
        ("e.unknownext", "application/octet-stream"),
        ("f.svg", "image/svg+xml; charset=utf-8"),
    ] {
        let resp = ask(&proxy, &get(&format!("/assets/{name}")));
        assert_eq!(resp.header("Content-Type"), Some(expected), "{name}");
    }
}

/// Conditional requests: a matching `If-None-Match` or a current
/// `If-Modified-Since` gives 304 with no body; a tag that does not match
/// wins over a date that would.
#[test]
fn conditional_requests_get_304() {
    let site = TempSite::new("conditional");
    site.file("public/page.html", b"<p>hello</p>");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    let first = ask(&proxy, &get("/assets/page.html"));
    let etag = first.header("ETag").expect("ETag").to_string();
    let modified = first.header("Last-Modified").expect("date").to_string();

    let inm = format!("If-None-Match: {etag}");
    let resp = ask(&proxy, &get_with("/assets/page.html", &[&inm]));
    assert_eq!(resp.status, 304, "{}", resp.raw_head);
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("ETag"), Some(etag.as_str()));

    let listed = format!("If-None-Match: \"other\", {etag}");
    assert_eq!(
        ask(&proxy, &get_with("/assets/page.html", &[&listed])).status,
        304
    );
    assert_eq!(
        ask(
            &proxy,
            &get_with("/assets/page.html", &["If-None-Match: *"])
        )
        .status,
        304
    );

    let ims = format!("If-Modified-Since: {modified}");
    assert_eq!(
        ask(&proxy, &get_with("/assets/page.html", &[&ims])).status,
        304
    );

    let old = "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT";
    let resp = ask(&proxy, &get_with("/assets/page.html", &[old]));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"<p>hello</p>");

    let both = ask(
        &proxy,
        &get_with("/assets/page.html", &["If-None-Match: \"stale\"", &ims]),
    );
    assert_eq!(both.status, 200, "If-None-Match decides when present");
}

/// Ranges: one range is a 206 with `Content-Range`; past the end is a 416
/// saying how long the file is; several ranges, or an `If-Range` for
/// another version, get the whole file.
#[test]
fn ranges_give_206_416_or_the_whole_file() {
    let site = TempSite::new("ranges");
    site.file("public/digits.txt", b"0123456789");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);

    let resp = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=2-5"]),
    );
    assert_eq!(resp.status, 206, "{}", resp.raw_head);
    assert_eq!(resp.body, b"2345");
    assert_eq!(resp.header("Content-Range"), Some("bytes 2-5/10"));
    assert_eq!(resp.header("Content-Length"), Some("4"));

    let tail = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=-3"]),
    );
    assert_eq!((tail.status, tail.body.as_slice()), (206, &b"789"[..]));
    let open = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=7-"]),
    );
    assert_eq!((open.status, open.body.as_slice()), (206, &b"789"[..]));
    let clamped = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=8-100"]),
    );
    assert_eq!(clamped.header("Content-Range"), Some("bytes 8-9/10"));

    let past = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=10-"]),
    );
    assert_eq!(past.status, 416, "{}", past.raw_head);
    assert_eq!(past.header("Content-Range"), Some("bytes */10"));

    let several = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=0-1,4-5"]),
    );
    assert_eq!((several.status, several.body.len()), (200, 10));

    let stale = ask(
        &proxy,
        &get_with(
            "/assets/digits.txt",
            &["Range: bytes=0-1", "If-Range: \"another-version\""],
        ),
    );
    assert_eq!((stale.status, stale.body.len()), (200, 10));

    let etag = ask(&proxy, &get("/assets/digits.txt"))
        .header("ETag")
        .expect("tag")
        .to_string();
    let if_range = format!("If-Range: {etag}");
    let fresh = ask(
        &proxy,
        &get_with("/assets/digits.txt", &["Range: bytes=0-1", &if_range]),
    );
    assert_eq!((fresh.status, fresh.body.as_slice()), (206, &b"01"[..]));
}

/// HEAD gets the GET's head and no body, and the connection stays usable;
/// other methods get 405 with `Allow`.
#[test]
fn head_has_no_body_and_other_methods_get_405() {
    let site = TempSite::new("methods");
    site.file("public/a.txt", b"some text");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);

    let mut client = Client::connect(proxy.local_addr());
    client.send(&head(&["HEAD /assets/a.txt HTTP/1.1", "Host: test.local"]));
    let resp = client.read_response("HEAD").expect("a HEAD answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Length"), Some("9"));
    assert!(resp.body.is_empty());
    let next = client.request(&get("/assets/a.txt"));
    assert_eq!(next.body, b"some text", "keep-alive after HEAD");

    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let line = format!("{method} /assets/a.txt HTTP/1.1");
        let resp = ask(
            &proxy,
            &head(&[&line, "Host: test.local", "Content-Length: 0"]),
        );
        assert_error_answer(&resp, 405, method);
        assert_eq!(resp.header("Allow"), Some("GET, HEAD"), "{method}");
    }
    assert_eq!(upstream.request_count(), 0);
}

/// A directory is served by its `index.html`, never listed; without one it
/// is a 404; named without its slash, it is redirected to the slash.
#[test]
fn directories_serve_index_html_and_redirect_to_the_slash() {
    let site = TempSite::new("dirs");
    site.file("public/docs/index.html", b"<h1>docs</h1>");
    site.file("public/bare/file.txt", b"x");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);

    let resp = ask(&proxy, &get("/assets/docs/"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"<h1>docs</h1>");
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );

    let listing = ask(&proxy, &get("/assets/bare/"));
    assert_error_answer(&listing, 404, "a directory without index.html");
    assert!(!listing.body_text().contains("file.txt"), "never a listing");

    let redirect = ask(&proxy, &get("/assets/docs?lang=en"));
    assert_error_answer(&redirect, 301, "no slash");
    assert_eq!(redirect.header("Location"), Some("/assets/docs/?lang=en"));

    let root = ask(&proxy, &get("/assets"));
    assert_eq!(root.status, 301);
    assert_eq!(root.header("Location"), Some("/assets/"));
}

/// Every way of spelling "outside the root" fails, with 400 or 404, and
/// never shows the secret next door, nor reaches the upstream.
#[test]
fn traversal_attempts_never_leave_the_root() {
    let site = TempSite::new("traversal");
    site.file("secret.txt", b"TOP SECRET");
    site.file("public/ok.txt", b"fine");
    site.file("public/sub/x.txt", b"x");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);

    for target in [
        "/assets/../secret.txt",
        "/assets/sub/../../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/%2E%2e/secret.txt",
        "/assets/.%2e/secret.txt",
        "/assets/%2e%2e%2fsecret.txt",
        "/assets/..%2fsecret.txt",
        "/assets/..%5csecret.txt",
        "/assets/..\\secret.txt",
        "/assets/sub%2f..%2f..%2fsecret.txt",
        "/assets/ok.txt%00.png",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "/assets/../../../../../../etc/passwd",
        "/../secret.txt",
        "/assets/%zz",
    ] {
        let resp = ask(&proxy, &get(target));
        assert!(
            resp.status == 400 || resp.status == 404,
            "{target}: expected 400 or 404, got\n{}",
            resp.raw_head
        );
        assert!(
            !resp.body_text().contains("SECRET") && !resp.body_text().contains("root:"),
            "{target} leaked"
        );
    }
    assert_eq!(upstream.request_count(), 0, "none of them was forwarded");
}

/// Symlinks are resolved by the kernel beneath the root: one that stays
/// inside works, one that points out (relative or absolute) is a 404.
#[test]
fn a_symlink_out_of_the_root_is_not_followed() {
    let site = TempSite::new("symlinks");
    site.file("secret.txt", b"TOP SECRET");
    site.file("public/real.txt", b"real");
    site.mkdir("public/dir");
    site.symlink("public/inside.txt", "real.txt");
    site.symlink("public/dir/up.txt", "../real.txt");
    site.symlink("public/out.txt", "../secret.txt");
    let absolute = site.dir.join("secret.txt");
    site.symlink(
        "public/abs.txt",
        absolute.to_str().expect("a UTF-8 temp path"),
    );
    site.symlink("public/escape", "..");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);

    assert_eq!(ask(&proxy, &get("/assets/inside.txt")).body, b"real");
    assert_eq!(ask(&proxy, &get("/assets/dir/up.txt")).body, b"real");
    for target in [
        "/assets/out.txt",
        "/assets/abs.txt",
        "/assets/escape/secret.txt",
    ] {
        let resp = ask(&proxy, &get(target));
        assert_error_answer(&resp, 404, target);
        assert!(!resp.body_text().contains("SECRET"), "{target} leaked");
    }
}

/// Where `openat2` is missing, the walk opens one component at a time with
/// `O_NOFOLLOW`: it never follows a symlink at all, and refuses `..`.
#[test]
fn the_fallback_walk_follows_no_symlink() {
    use std::os::fd::AsFd;
    let site = TempSite::new("walk");
    site.file("root/a/b.txt", b"b");
    site.file("outside.txt", b"out");
    site.symlink("root/link.txt", "a/b.txt");
    site.symlink("root/out.txt", "../outside.txt");
    site.symlink("root/dirlink", "a");
    let root = std::fs::File::open(site.dir.join("root")).expect("open the root");
    let walk = |rel: &str| ferroxy::files::open_beneath_by_walk(root.as_fd(), rel.as_bytes());

    let mut found = String::new();
    std::io::Read::read_to_string(
        &mut walk("a/b.txt").expect("a plain path opens"),
        &mut found,
    )
    .expect("read");
    assert_eq!(found, "b");
    for rel in [
        "link.txt",
        "out.txt",
        "dirlink/b.txt",
        "../outside.txt",
        "a/../../outside.txt",
    ] {
        assert!(walk(rel).is_err(), "{rel} must not open");
    }
}

/// Keep-alive and pipelining work across static answers: three requests
/// in one write get three answers, in order, on one connection.
#[test]
fn pipelined_static_requests_are_answered_in_order() {
    let site = TempSite::new("pipeline");
    site.file("public/1.txt", b"one");
    site.file("public/2.txt", b"two");
    site.file("public/3.txt", b"three");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    let mut client = Client::connect(proxy.local_addr());
    client.send(
        &[
            get("/assets/1.txt"),
            get("/assets/2.txt"),
            get("/assets/3.txt"),
        ]
        .concat(),
    );
    for expected in [&b"one"[..], b"two", b"three"] {
        let resp = client.read_response("GET").expect("an answer");
        assert_eq!(resp.body, expected);
    }
    // And a proxied request on the same connection still works.
    let proxied = client.request(&get("/elsewhere"));
    assert_eq!(proxied.header("X-Upstream"), Some("up"));
}

/// A GET that carries a body is answered, then the connection closes: the
/// body is never read as the next request.
#[test]
fn a_get_with_a_body_is_answered_then_closed() {
    let site = TempSite::new("getbody");
    site.file("public/a.txt", b"text");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    let mut client = Client::connect(proxy.local_addr());
    let mut raw = head(&[
        "GET /assets/a.txt HTTP/1.1",
        "Host: test.local",
        "Content-Length: 18",
    ]);
    raw.extend_from_slice(b"GET /x HTTP/1.1\r\n\r\n");
    client.send(&raw[..raw.len() - 1]);
    let resp = client.read_response("GET").expect("an answer");
    assert_eq!(resp.body, b"text");
    assert!(resp.has_token("Connection", "close"), "{}", resp.raw_head);
    assert!(client.expect_closed().is_ok());
    assert_eq!(upstream.request_count(), 0, "the body was not a request");
}

/// A 64 MiB file goes out through `sendfile`: the bytes arrive exact, and
/// the proxy holds no more buffer memory than it does for a small one.
#[test]
fn a_big_file_streams_without_buffering() {
    let site = TempSite::new("big");
    let size = 64 * 1024 * 1024;
    site.file("public/big.bin", &pattern_bytes(size));
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/assets/big.bin"));
    let head = client.read_head().expect("a head");
    assert_eq!(head.header("Content-Length"), Some("67108864"));
    let mut at = 0u64;
    while at < size as u64 {
        let chunk = client
            .read_exact_bytes(((size as u64 - at) as usize).min(1 << 20))
            .expect("body bytes");
        assert!(matches_pattern(at, &chunk), "bytes at {at} differ");
        at += chunk.len() as u64;
    }
    let stats = proxy.stats();
    assert!(
        stats.peak_buffer_bytes <= 64 * 1024,
        "a file body must not pass through our buffers: peak {} bytes",
        stats.peak_buffer_bytes
    );
}

/// A client that asks for a big file and never reads is cut off after
/// `write_ms`: its socket, slab entry and file are let go, and it is logged
/// as a timeout.
#[test]
fn a_client_that_stops_reading_is_cut_off_after_write_ms() {
    let site = TempSite::new("stall");
    site.file("public/big.bin", &pattern_bytes(32 * 1024 * 1024));
    let upstream = Upstream::echo("up");
    let proxy = proxy_with(&site, &upstream, |cfg| cfg.timeouts.write_ms = 300);
    let mut client = Client::connect_with_receive_buffer(proxy.local_addr(), 4096);
    client.send(&get("/assets/big.bin"));
    let serving = wait_for_stats(&proxy, Duration::from_secs(2), |s| {
        s.client_connections == 1
    });
    assert!(
        serving.is_ok(),
        "the request should be in progress: {serving:?}"
    );
    let started = std::time::Instant::now();
    // One timer may stay: the open-file cache's sweep (files/cache.rs).
    let settled = wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.connections == 0 && s.timers <= 1
    });
    assert!(
        settled.is_ok(),
        "the stalled client should be closed: {settled:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed by write_ms (300 ms), not at once: {:?}",
        started.elapsed()
    );
    let (bytes, _) = client.read_until_close();
    assert!(
        bytes.len() < 32 * 1024 * 1024,
        "it never got the whole file"
    );
}

/// Longest prefix wins, by whole segments: `/assets/api/` goes to its
/// group even though `/assets/` is a static route, and `/assetsx` is
/// nobody's (so it goes to `default`).
#[test]
fn the_longest_prefix_wins_by_whole_segments() {
    let site = TempSite::new("prefixes");
    site.file("public/a.txt", b"static");
    let upstream = Upstream::echo("default");
    let api = Upstream::echo("api");
    let proxy = proxy_with(&site, &upstream, |cfg| {
        cfg.upstream_groups.insert(
            "api".to_string(),
            ferroxy::config::GroupConfig {
                upstreams: vec![ferroxy::config::UpstreamConfig {
                    host: "127.0.0.1".to_string(),
                    port: api.addr.port(),
                    weight: 1,
                }],
                balancing: Default::default(),
                health: None,
                retries: 0,
            },
        );
        cfg.routes.push(group_route("/assets/api", "api"));
    });
    assert_eq!(ask(&proxy, &get("/assets/a.txt")).body, b"static");
    let to_api = ask(&proxy, &get("/assets/api/users"));
    assert_eq!(to_api.header("X-Upstream"), Some("api"));
    assert_eq!(
        to_api.header("X-Echo-Target"),
        Some("/assets/api/users"),
        "target kept"
    );
    assert_eq!(
        ask(&proxy, &get("/assets/api")).header("X-Upstream"),
        Some("api")
    );
    let apix = ask(&proxy, &get("/assets/apix"));
    assert_eq!(
        apix.status, 404,
        "/assets/apix is a file name under /assets/"
    );
    assert_eq!(
        ask(&proxy, &get("/assetsx")).header("X-Upstream"),
        Some("default")
    );
}

/// The open-file cache never serves an old file: a change in place, a
/// rename over the path, a removal, each is seen by the very next request.
#[test]
fn a_changed_file_is_never_served_stale() {
    let site = TempSite::new("fresh");
    let path = site.file("public/v.txt", b"version 1");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    let mut client = Client::connect(proxy.local_addr());
    let first = client.request(&get("/assets/v.txt"));
    assert_eq!(first.body, b"version 1");
    assert_eq!(client.request(&get("/assets/v.txt")).body, b"version 1");
    assert!(
        proxy.stats().open_files >= 1,
        "the file is kept for next time"
    );

    std::fs::write(&path, b"version 2, longer").expect("rewrite in place");
    let second = client.request(&get("/assets/v.txt"));
    assert_eq!(second.body, b"version 2, longer");
    assert_ne!(second.header("ETag"), first.header("ETag"));

    let fresh = site.file("public/v.txt.new", b"version 3");
    std::fs::rename(&fresh, &path).expect("rename over");
    assert_eq!(client.request(&get("/assets/v.txt")).body, b"version 3");

    std::fs::remove_file(&path).expect("remove");
    let gone = Client::connect(proxy.local_addr()).request(&get("/assets/v.txt"));
    assert_eq!(gone.status, 404);
}

/// `ferroxy --demo` serves a small static site at `/static/`, from a
/// directory it writes and removes again: a newcomer can `curl` a file at
/// once.
#[test]
fn the_demo_serves_a_static_site() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    };
    let (a, b) = (free(), free());
    let mut proxy = ProxyProcess::start_demo("demo-site", &config_json(&[a, b], |_| {}));
    let addr = proxy.addr;
    let page = Client::connect(addr).request(&get("/static/"));
    assert_eq!(page.status, 200, "{}", proxy.stderr());
    assert!(
        page.body_text().contains("sendfile"),
        "the demo's index page"
    );
    let hello = Client::connect(addr).request(&get("/static/hello.txt"));
    assert_eq!(
        hello.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    let part = Client::connect(addr).request(&get_with("/static/big.bin", &["Range: bytes=0-9"]));
    assert_eq!((part.status, part.body.len()), (206, 10));
    let proxied = Client::connect(addr).request(&get("/anything"));
    assert!(
        proxied.header("X-Upstream").is_some(),
        "the demo upstreams still answer"
    );

    let logged = proxy.stderr();
    let dir = logged
        .lines()
        .find_map(|l| l.split("served from ").nth(1))
        .map(|d| std::path::PathBuf::from(d.trim()))
        .expect("the log names the site's directory");
    assert!(dir.is_dir());
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(5)).is_some());
    assert!(!dir.exists(), "the demo removes its site when it stops");
}

/// Fairness: a client pulling a big file does not hold the loop. It gets
/// at most the turn budget per turn and, when its socket is full, nothing
/// until it drains (backpressure), so another client's small requests are
/// answered in between, promptly, while the download is still going.
#[test]
fn a_big_download_does_not_starve_small_requests() {
    let site = TempSite::new("fair");
    let size = 128 * 1024 * 1024;
    site.file("public/big.bin", &pattern_bytes(size));
    site.file("public/small.txt", b"small");
    let upstream = Upstream::echo("up");
    let proxy = proxy_for(&site, &upstream);
    let addr = proxy.local_addr();
    let downloader = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        client.send(&get("/assets/big.bin"));
        let head = client.read_head().expect("a head");
        let mut left = size;
        while left > 0 {
            let n = left.min(1 << 20);
            client.read_exact_bytes(n).expect("body bytes");
            left -= n;
            // A reader a little slower than the disk: the download lasts
            // at least 128 ms, long enough to ask small things meanwhile.
            std::thread::sleep(Duration::from_millis(1));
        }
        (head.status, std::time::Instant::now())
    });
    assert!(wait_until(Duration::from_secs(2), || proxy
        .stats()
        .client_connections
        >= 1));
    let mut client = Client::connect(addr);
    let mut answered = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = std::time::Instant::now();
        assert_eq!(client.request(&get("/assets/small.txt")).body, b"small");
        slowest = slowest.max(started.elapsed());
        answered.push(std::time::Instant::now());
    }
    let (status, download_done) = downloader.join().expect("the downloader");
    assert_eq!(status, 200);
    let during = answered.iter().filter(|at| **at < download_done).count();
    assert_eq!(
        during, 50,
        "every small request was answered while the download ran"
    );
    assert!(
        slowest < Duration::from_millis(50),
        "a small request waited {slowest:?} behind the download"
    );
}
