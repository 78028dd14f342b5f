//! Static files leak nothing: every file the proxy opens to answer a
//! request is closed again, on every path: a whole answer, a 304, a range,
//! a refusal, a client that vanishes halfway through a big file. The
//! only descriptors left are those the open-file cache says it keeps.
//!
//! One test in this file on purpose: it counts the whole process's file
//! descriptors, and another test running beside it would move the count.

mod support;

use std::io::Write;
use std::time::Duration;

use support::*;

/// The story: note the descriptors once the proxy is up, put a few hundred
/// static requests of every outcome through it, wait for the clients to be
/// gone, and count again: the same number. Then shut down: back to what the
/// process had before the proxy started.
#[test]
fn every_static_path_closes_its_file() {
    let baseline = open_fd_count();
    let site = TempSite::new("noleaks");
    site.file("secret.txt", b"secret");
    site.file("public/small.txt", b"small file");
    site.file("public/dir/index.html", b"<p>index</p>");
    site.mkdir("public/empty");
    site.file("public/big.bin", &pattern_bytes(8 * 1024 * 1024));
    site.symlink("public/out.txt", "../secret.txt");
    let upstream = Upstream::echo("up");
    let root = site.dir.join("public");
    let proxy = start_proxy_with(&[upstream.addr], |cfg| {
        cfg.routes = vec![static_route("/s/", &root)];
    });
    let addr = proxy.local_addr();
    let running = wait_until(Duration::from_secs(2), || open_fd_count() > baseline);
    assert!(running, "the proxy's own descriptors should show");
    let with_proxy = open_fd_count();

    let small = get("/s/small.txt");
    let etag = Client::connect(addr)
        .request(&small)
        .header("ETag")
        .expect("a tag")
        .to_string();
    let inm = format!("If-None-Match: {etag}");
    let requests: Vec<Vec<u8>> = vec![
        small.clone(),
        get("/s/dir/"),
        get("/s/dir"),
        get("/s/empty/"),
        get("/s/missing.txt"),
        get("/s/out.txt"),
        get("/s/../secret.txt"),
        head(&["GET /s/small.txt HTTP/1.1", "Host: test.local", &inm]),
        head(&[
            "GET /s/small.txt HTTP/1.1",
            "Host: test.local",
            "Range: bytes=2-4",
        ]),
        head(&[
            "GET /s/small.txt HTTP/1.1",
            "Host: test.local",
            "Range: bytes=99-",
        ]),
        head(&["HEAD /s/big.bin HTTP/1.1", "Host: test.local"]),
        head(&["DELETE /s/small.txt HTTP/1.1", "Host: test.local"]),
    ];
    for round in 0..20 {
        for raw in &requests {
            let mut client = Client::connect(addr);
            client.send(raw);
            let method = if raw.starts_with(b"HEAD") {
                "HEAD"
            } else {
                "GET"
            };
            assert!(client.read_response(method).is_ok(), "round {round}");
        }
        // Keep-alive: the same requests on one connection, pipelined.
        let mut client = Client::connect(addr);
        client.send(&[small.clone(), get("/s/dir/"), small.clone()].concat());
        for _ in 0..3 {
            assert!(client.read_response("GET").is_ok());
        }
        // A download abandoned halfway: the client reads a little and goes.
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        client.write_all(&get("/s/big.bin")).expect("send");
        let mut some = [0u8; 65536];
        let _ = std::io::Read::read(&mut client, &mut some);
        drop(client);
    }

    let settled = wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.client_connections == 0 && s.buffer_bytes == 0
    });
    assert!(settled.is_ok(), "every client should be gone: {settled:?}");
    // The only files still open are the ones the cache keeps for the next
    // request (files/cache.rs), and it says how many: one per path served.
    let kept = proxy.stats().open_files;
    assert!(
        (1..=6).contains(&kept),
        "small.txt, big.bin, dir, dir/, dir/index.html and empty/ may be kept: {kept}"
    );
    let back = wait_until(Duration::from_secs(2), || {
        open_fd_count() == with_proxy + proxy.stats().open_files
    });
    assert!(
        back,
        "with every client gone the process has {} descriptors open, {} before the traffic \
         and {} kept files: files (or sockets) left open",
        open_fd_count(),
        with_proxy,
        proxy.stats().open_files
    );
    assert_eq!(
        upstream.request_count(),
        0,
        "nothing here was for the upstream"
    );

    proxy.shutdown();
    drop(upstream);
    let clean = wait_until(Duration::from_secs(2), || open_fd_count() == baseline);
    assert!(
        clean,
        "after shutdown {} descriptors are open, {} before the proxy started",
        open_fd_count(),
        baseline
    );
}
