//! Stories of the TLS listener (`tls.listen`): the same proxy behind a
//! handshake. Certificates are made at test time (`support::tls`), and
//! the client is a real rustls client that verifies what it gets.
//!
//! Lesson: `lessons/17-tls`.

mod support;

use std::time::{Duration, Instant};

use rustls::version::{TLS12, TLS13};
use rustls::{HandshakeKind, ProtocolVersion};
use support::tls::{TestCert, client_config, tls_section};
use support::*;

fn tls_addr(proxy: &ferroxy::reactor::ProxyHandle) -> std::net::SocketAddr {
    proxy.tls_addr().expect("the TLS listener should be on")
}

fn failures(text: &str, reason: &str) -> f64 {
    let series = format!("ferroxy_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    metric_value(text, &series).unwrap_or(-1.0)
}

fn handshakes(text: &str, version: &str) -> f64 {
    let series = format!("ferroxy_tls_handshakes_total{{version=\"{version}\"}}");
    metric_value(text, &series).unwrap_or(-1.0)
}

/// A request over TLS gets the same answer as over the plain listener, and
/// the upstream learns it came over TLS: `X-Forwarded-Proto: https`
/// (the plain listener's requests still say `http`). ALPN settles on
/// `http/1.1`.
#[test]
fn a_request_over_tls_is_proxied_with_forwarded_proto_https() {
    let cert = TestCert::new("basic", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);

    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    let session = client.tls_session().expect("a TLS session");
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]), "ALPN");
    let resp = client.request(&get("/over-tls"));
    assert_eq!(resp.status, 200);
    let seen = upstream.complete_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/over-tls");
    assert_eq!(seen[0].header("X-Forwarded-Proto"), Some("https"));

    let mut plain = Client::connect(proxy.local_addr());
    assert_eq!(plain.request(&get("/plain")).status, 200);
    let seen = upstream.complete_requests();
    assert_eq!(seen[1].header("X-Forwarded-Proto"), Some("http"));
}

/// TLS 1.2 and 1.3 are both spoken, each counted by version; a second
/// connection resumes the first's session (a ticket: no certificate
/// signature), and is counted as resumed.
#[test]
fn tls_12_and_13_both_work_and_sessions_resume() {
    let cert = TestCert::new("versions", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.tls = Some(tls_section(&[&cert]));
        metrics_on(c);
    });
    for (version, wire) in [
        (&TLS12, ProtocolVersion::TLSv1_2),
        (&TLS13, ProtocolVersion::TLSv1_3),
    ] {
        // One config per version: its session store holds the ticket.
        let trust = client_config(&[&cert], &[version]);
        for round in 0..2 {
            let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
            let session = client.tls_session().unwrap();
            assert_eq!(session.protocol_version(), Some(wire));
            let kind = session.handshake_kind();
            let expected = if round == 0 {
                HandshakeKind::Full
            } else {
                HandshakeKind::Resumed
            };
            assert_eq!(kind, Some(expected), "{wire:?}, connection {round}");
            assert_eq!(client.request(&get("/")).status, 200);
        }
    }
    let text = scrape_text(&proxy);
    assert_eq!(handshakes(&text, "TLSv1.2"), 2.0, "{text}");
    assert_eq!(handshakes(&text, "TLSv1.3"), 2.0, "{text}");
    assert_eq!(
        metric_value(&text, "ferroxy_tls_resumed_handshakes_total"),
        Some(2.0)
    );
}

/// Two certificates: each SNI name gets its own; a client that sends no
/// name (it connects by IP address) gets the first, the default; a name
/// neither covers also gets the default, which the client then rejects,
/// and the proxy counts the client's alert.
#[test]
fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let first = TestCert::new("sni-a", &["a.test", "127.0.0.1"]);
    let second = TestCert::new("sni-b", &["b.test", "*.wild.test"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.tls = Some(tls_section(&[&first, &second]));
        metrics_on(c);
    });
    let trust = client_config(&[&first, &second], &[]);
    let served = |name: &str| {
        let client = Client::connect_tls(tls_addr(&proxy), &trust, name);
        let certs = client.tls_session().unwrap().peer_certificates().unwrap();
        certs[0].clone()
    };
    assert_eq!(served("a.test"), first.der);
    assert_eq!(served("b.test"), second.der);
    assert_eq!(served("x.wild.test"), second.der, "a wildcard name");
    assert_eq!(served("127.0.0.1"), first.der, "no SNI: the default");

    let refused = Client::try_connect_tls(tls_addr(&proxy), &trust, "other.test");
    let err = refused.err().expect("a certificate not valid for the name");
    assert!(err.contains("not valid for name"), "{err}");
    assert!(wait_until(Duration::from_secs(2), || failures(
        &scrape_text(&proxy),
        "alert"
    ) == 1.0));
    assert_eq!(upstream.connections(), 0, "no request was ever made");
}

/// A client that offers only `h2` cannot be served (ferroxy speaks
/// HTTP/1.1): the handshake fails with `no_application_protocol`.
#[test]
fn a_client_offering_only_h2_is_refused_in_the_handshake() {
    let cert = TestCert::new("alpn", &["localhost"]);
    let proxy = start_proxy_with(&[dead_addr()], |c| {
        c.tls = Some(tls_section(&[&cert]));
        metrics_on(c);
    });
    let mut config = (*client_config(&[&cert], &[])).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let result =
        Client::try_connect_tls(tls_addr(&proxy), &std::sync::Arc::new(config), "localhost");
    assert!(result.is_err(), "an h2-only client must not get a session");
    assert!(wait_until(Duration::from_secs(2), || failures(
        &scrape_text(&proxy),
        "no_alpn"
    ) == 1.0));
}

/// A client that connects and says nothing, and one that stops half-way
/// through its ClientHello: `client_header_ms` bounds the handshake too.
/// Both are closed in time, counted as `timeout`, and no upstream hears
/// of them.
#[test]
fn the_handshake_must_finish_within_client_header_ms() {
    let cert = TestCert::new("deadline", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.tls = Some(tls_section(&[&cert]));
        c.timeouts.client_header_ms = 300;
        metrics_on(c);
    });
    let mut silent = Client::connect(tls_addr(&proxy));
    let mut halfway = Client::connect(tls_addr(&proxy));
    // The first bytes of a TLS record carrying a ClientHello: a handshake
    // record header that promises 512 bytes, and 5 of them.
    halfway.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]);
    let started = Instant::now();
    silent.expect_closed().expect("the silent client is closed");
    halfway
        .expect_closed()
        .expect("the half-way client is closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "closed too late: {waited:?}"
    );
    let text = scrape_text(&proxy);
    assert_eq!(failures(&text, "timeout"), 2.0, "{text}");
    assert_eq!(upstream.connections(), 0);
    assert!(
        wait_for_stats(&proxy, Duration::from_secs(2), |s| s.client_connections
            == 0)
        .is_ok()
    );
}

/// Plain HTTP sent to the TLS port, and bytes that are nothing at all:
/// each is closed at once, with no plaintext answer, counted by reason,
/// and never forwarded.
#[test]
fn plain_http_and_garbage_on_the_tls_port_are_closed_unforwarded() {
    let cert = TestCert::new("garbage", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| {
        c.tls = Some(tls_section(&[&cert]));
        metrics_on(c);
    });
    let mut http = Client::connect(tls_addr(&proxy));
    http.send(&get("/"));
    let (answer, _) = http.read_until_close();
    assert!(
        !contains(&answer, b"HTTP/1.1"),
        "no plaintext answer: {answer:?}"
    );

    let mut garbage = Client::connect(tls_addr(&proxy));
    // A handshake record whose message is no ClientHello.
    garbage.send(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0x00, 0x00, 0x00]);
    let _ = garbage.read_until_close();

    let text = scrape_text(&proxy);
    assert_eq!(failures(&text, "not_tls"), 1.0, "{text}");
    assert_eq!(
        failures(&text, "bad_message") + failures(&text, "misbehaved"),
        1.0,
        "{text}"
    );
    assert_eq!(upstream.connections(), 0);
}

/// A client that connects and waits before its ClientHello: the proxy's
/// first read (right after accept) finds nothing, and the hello arrives
/// with a later READABLE. The read that takes it must also send the
/// answer flight: no WRITABLE edge is coming to prompt a write.
#[test]
fn a_late_client_hello_is_answered_by_the_read_that_takes_it() {
    let cert = TestCert::new("late-hello", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let tcp = std::net::TcpStream::connect(tls_addr(&proxy)).expect("connect");
    std::thread::sleep(Duration::from_millis(100));
    let mut client = Client::tls_over(tcp, &trust, "localhost");
    assert_eq!(client.request(&get("/late")).status, 200);
}

/// A client with a tiny receive window reads 2 MiB slowly: the socket is
/// full whenever the proxy writes, so records wait in the session between
/// WRITABLE edges, up to the last ones, after the exchange has ended
/// (`Reactor::flush_transport` is there for those). The body must arrive
/// whole.
#[test]
fn records_left_in_the_session_go_out_on_the_next_writable() {
    let cert = TestCert::new("flush", &["localhost"]);
    let upstream = Upstream::big_body("big", 2 << 20);
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&tls_addr(&proxy).into()).unwrap();
    let mut client = Client::tls_over(socket.into(), &trust, "localhost");
    client.send(&get("/download"));
    let resp = client.read_head().expect("the head");
    // Slowly, so the socket is full whenever the proxy writes: its last
    // write leaves records in the session.
    let mut received = 0u64;
    client
        .read_body_with("GET", &resp, &mut |d| {
            received += d.len() as u64;
            std::thread::sleep(Duration::from_millis(1));
        })
        .expect("the whole body, its last records included");
    assert_eq!(received, 2 << 20);
}

/// A client sends its last request and its close_notify in one segment,
/// without a FIN: the end of the stream sits in the same records as the
/// request. The proxy answers, sees the end, and closes at once (not after
/// `keepalive_ms`).
#[test]
fn a_close_notify_that_arrives_with_the_last_request_ends_the_connection() {
    let cert = TestCert::new("close-notify", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    client.send_with_close_notify(&get("/last"));
    let resp = client.read_response("GET").expect("the answer");
    assert_eq!(resp.status, 200);
    client
        .expect_closed()
        .expect("closed once the answer is out");
}

/// One TLS connection carries a hundred requests one after the other,
/// then a pipelined burst of twenty sent in one write: every answer, in
/// order, on one upstream connection.
#[test]
fn keep_alive_and_pipelining_over_tls() {
    let cert = TestCert::new("keepalive", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    for i in 0..100 {
        let resp = client.request(&get(&format!("/seq/{i}")));
        assert_eq!(resp.status, 200);
    }
    let burst: Vec<u8> = (0..20).flat_map(|i| get(&format!("/burst/{i}"))).collect();
    client.send(&burst);
    for i in 0..20 {
        let resp = client.read_response("GET").expect("a pipelined answer");
        assert_eq!(resp.status, 200);
        assert!(
            resp.body_text().contains(&format!("/burst/{i}")),
            "answer {i} out of order"
        );
    }
    assert_eq!(upstream.connections(), 1);
}

/// 32 MiB up and 64 MiB down through TLS, checked byte for byte; the
/// proxy's buffers stay within their bound whatever the body size.
#[test]
fn large_bodies_stream_both_ways_over_tls() {
    let cert = TestCert::new("bodies", &["localhost"]);
    let sink = Upstream::sink("sink");
    let big = Upstream::big_body("big", 64 << 20);
    let trust = client_config(&[&cert], &[]);

    let proxy = start_proxy_with(&[sink.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    let size: usize = 32 << 20;
    client.send(&head(&[
        "POST /upload HTTP/1.1",
        "Host: t",
        &format!("Content-Length: {size}"),
    ]));
    let mut sent = 0;
    while sent < size {
        let n = (size - sent).min(64 << 10);
        client.send(pattern(sent as u64, n));
        sent += n;
    }
    let resp = client.read_response("POST").expect("the sink's answer");
    assert_eq!(resp.body_text(), format!("received={size} pattern=true"));

    let proxy = start_proxy_with(&[big.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    client.send(&get("/download"));
    let resp = client.read_head().expect("the head");
    let (mut received, mut intact) = (0u64, true);
    client
        .read_body_with("GET", &resp, &mut |data| {
            intact &= matches_pattern(received, data);
            received += data.len() as u64;
        })
        .expect("the whole body");
    assert_eq!(received, 64 << 20);
    assert!(intact, "the body was altered");
    let bound = 4 * (16_384 + 16_384);
    assert!(
        proxy.stats().peak_buffer_bytes <= bound,
        "{:?}",
        proxy.stats()
    );
}

/// A TLS client that stops reading: backpressure reaches the upstream
/// through rustls's bounded buffer exactly as through a plain socket, and
/// the body arrives whole once the client reads again.
#[test]
fn a_slow_tls_reader_stalls_the_upstream() {
    let cert = TestCert::new("slow", &["localhost"]);
    let body: u64 = 192 << 20;
    let upstream = Upstream::big_body("big", body);
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    client.send(&get("/download"));
    std::thread::sleep(Duration::from_secs(1));
    let mut stalled_at = upstream.bytes_written();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = upstream.bytes_written();
        if now == stalled_at || Instant::now() > deadline {
            break;
        }
        stalled_at = now;
    }
    assert!(
        stalled_at < 32 << 20,
        "the upstream wrote {} MiB to a client that reads nothing",
        stalled_at >> 20
    );
    let resp = client.read_head().expect("the head after the pause");
    let mut received = 0u64;
    client
        .read_body_with("GET", &resp, &mut |d| received += d.len() as u64)
        .expect("the whole body after the pause");
    assert_eq!(received, body);
}

/// Static files over TLS cannot go by `sendfile` (the kernel would send
/// them unencrypted): they are read and written through the session, and
/// arrive whole, ranges included.
#[test]
fn static_files_are_served_over_tls() {
    let cert = TestCert::new("static", &["localhost"]);
    let site = TempSite::new("tls-static");
    let bytes = pattern_bytes(3 << 20);
    site.file("big.bin", &bytes);
    let proxy = start_proxy_with(&[dead_addr()], |c| {
        c.tls = Some(tls_section(&[&cert]));
        c.routes = vec![static_route("/files/", &site.dir)];
    });
    let trust = client_config(&[&cert], &[]);
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    let resp = client.request(&get("/files/big.bin"));
    assert_eq!(resp.status, 200);
    assert!(
        resp.body == bytes,
        "the file arrived altered ({} bytes)",
        resp.body.len()
    );
    let resp = client.request(&head(&[
        "GET /files/big.bin HTTP/1.1",
        "Host: t",
        "Range: bytes=1000000-1000099",
    ]));
    assert_eq!(resp.status, 206);
    assert_eq!(resp.body, &bytes[1_000_000..1_000_100]);
}

/// A WebSocket upgrade over TLS: after the 101 the tunnel carries bytes
/// both ways through the session.
#[test]
fn a_websocket_tunnel_runs_over_tls() {
    let cert = TestCert::new("ws", &["localhost"]);
    let upstream = Upstream::websocket("ws");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let mut client = Client::connect_tls(tls_addr(&proxy), &trust, "localhost");
    client.send(&websocket_upgrade_request());
    let resp = client.read_head().expect("the 101");
    assert_eq!(resp.status, 101);
    let greeting = client
        .read_exact_bytes(WS_GREETING.len())
        .expect("the greeting");
    assert_eq!(greeting, WS_GREETING);
    client.send(b"ping over tls");
    assert_eq!(
        client.read_exact_bytes(13).expect("the echo"),
        b"ping over tls"
    );
}

/// Idle TLS keep-alive connections hold none of the proxy's buffers, and
/// once the clients leave, every slab entry and timer is gone.
#[test]
fn idle_tls_connections_hold_no_buffers_and_nothing_leaks() {
    let cert = TestCert::new("idle", &["localhost"]);
    let upstream = Upstream::echo("a");
    let proxy = start_proxy_with(&[upstream.addr], |c| c.tls = Some(tls_section(&[&cert])));
    let trust = client_config(&[&cert], &[]);
    let mut clients: Vec<Client> = (0..20)
        .map(|_| Client::connect_tls(tls_addr(&proxy), &trust, "localhost"))
        .collect();
    for client in &mut clients {
        assert_eq!(client.request(&get("/")).status, 200);
    }
    assert!(
        wait_for_stats(&proxy, Duration::from_secs(2), |s| s.client_connections
            == 20
            && s.buffer_bytes == 0)
        .is_ok(),
        "20 idle TLS clients should hold no buffer: {:?}",
        proxy.stats()
    );
    drop(clients);
    assert!(
        wait_for_stats(&proxy, Duration::from_secs(3), |s| s.client_connections
            == 0
            && s.connections == s.idle_upstream_connections
            && s.timers == s.idle_upstream_connections)
        .is_ok(),
        "everything of the TLS clients released: {:?}",
        proxy.stats()
    );
}

/// Where the binary's TLS listener is, from its startup line.
fn logged_tls_addr(proxy: &ProxyProcess) -> std::net::SocketAddr {
    let marker = "and on https://";
    assert!(
        proxy.wait_for_log(marker, 1, Duration::from_secs(5)),
        "{}",
        proxy.stderr()
    );
    proxy
        .stderr()
        .lines()
        .find_map(|l| {
            l[l.find(marker)? + marker.len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("the TLS address in the startup line")
}

/// A certificate renewal: new files, then SIGHUP. New connections get the
/// new certificate; a connection opened before carries on with the old
/// session. Then a renewal gone wrong (a key file that is not a key): the
/// reload says so, and the last good certificate stays. The access log
/// names the TLS version of each request.
#[test]
fn sighup_reloads_certificates_and_a_broken_one_keeps_the_old() {
    let mut cert = TestCert::new("hup", &["localhost"]);
    let upstream = Upstream::echo("a");
    let (cert_path, key_path) = (cert.files.cert.clone(), cert.files.key.clone());
    let config = config_json(&[upstream.addr], |c| {
        c["tls"] = serde_json::json!({
            "listen": "127.0.0.1:0",
            "certificates": [ { "cert": cert_path, "key": key_path } ]
        });
    });
    let proxy = ProxyProcess::start("tls-hup", &config);
    let addr = logged_tls_addr(&proxy);
    let old_trust = client_config(&[&cert], &[]);
    let old_der = cert.der.clone();
    let mut before = Client::connect_tls(addr, &old_trust, "localhost");
    assert_eq!(before.request(&get("/before")).status, 200);

    cert.renew(&["localhost"]);
    let new_trust = client_config(&[&cert], &[]);
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("reloaded config", 1, Duration::from_secs(5)),
        "{}",
        proxy.stderr()
    );
    let mut after = Client::connect_tls(addr, &new_trust, "localhost");
    assert_eq!(after.request(&get("/after")).status, 200);
    // A fresh config (no ticket to resume with: resuming skips the
    // certificate) that trusts only the old certificate is refused now.
    let only_old = support::tls::client_config_trusting(std::slice::from_ref(&old_der), &[]);
    assert!(
        Client::try_connect_tls(addr, &only_old, "localhost").is_err(),
        "new connections get the new certificate"
    );
    assert_eq!(
        before.request(&get("/still")).status,
        200,
        "the open connection carries on"
    );

    std::fs::write(&cert.files.key, "not a key\n").unwrap();
    proxy.signal("HUP");
    assert!(
        proxy.wait_for_log("reloaded config", 2, Duration::from_secs(5)),
        "{}",
        proxy.stderr()
    );
    assert!(
        proxy.stderr().contains("keeping the one loaded before"),
        "the broken pair is logged: {}",
        proxy.stderr()
    );
    let mut kept = Client::connect_tls(addr, &new_trust, "localhost");
    assert_eq!(
        kept.request(&get("/kept")).status,
        200,
        "the last good certificate stays"
    );

    assert!(proxy.wait_for_log("\"GET /kept HTTP/1.1\" 200", 1, Duration::from_secs(2)));
    let line = proxy
        .stderr()
        .lines()
        .find(|l| l.contains("GET /kept"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.ends_with(" tls=TLSv1.3"),
        "the access line names the version: {line}"
    );
}

/// `--demo` also listens with TLS, on a certificate it made for loopback,
/// and prints the `curl -k` line to try it.
#[test]
fn the_demo_listens_with_tls_on_a_self_signed_certificate() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    };
    let (a, b) = (free(), free());
    let mut proxy = ProxyProcess::start_demo("demo-tls", &config_json(&[a, b], |_| {}));
    let addr = logged_tls_addr(&proxy);
    assert!(
        proxy.stderr().contains(&format!("curl -k https://{addr}/")),
        "the curl line: {}",
        proxy.stderr()
    );
    let dir = std::env::temp_dir().join(format!("ferroxy-demo-tls-{}", proxy.pid()));
    let pem = std::fs::read(dir.join("cert.pem")).expect("the demo's certificate");
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM")
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut client = Client::connect_tls(addr, &std::sync::Arc::new(config), "127.0.0.1");
    let resp = client.request(&get("/static/hello.txt"));
    assert_eq!(resp.status, 200, "{}", proxy.stderr());
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(5)).is_some());
    assert!(
        !dir.exists(),
        "the demo's certificate is removed when it stops"
    );
}
