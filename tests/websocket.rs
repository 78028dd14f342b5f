//! Upgrades (WebSocket): after the upstream's 101 the proxy stops speaking
//! HTTP and becomes a byte tunnel both ways, with the same bounded buffers
//! and backpressure as a body. Only an upgrade the client asked for and the
//! upstream accepted becomes a tunnel.

mod support;

use std::io::Write;
use std::thread;
use std::time::Duration;

use support::*;

/// Upgrade, then talk: the client gets the 101 with Upgrade and
/// `Connection: upgrade`, the upstream's unprompted greeting arrives, and
/// every message the client sends comes back unchanged, including bytes
/// that look like an HTTP request (inside a tunnel nothing is parsed).
#[test]
fn upgrade_opens_a_tunnel_both_ways() {
    let upstream = Upstream::websocket("ws");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&websocket_upgrade_request());
    let resp = client.read_head().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.raw_head);
    assert!(
        resp.has_token("Upgrade", "websocket") && resp.has_token("Connection", "upgrade"),
        "a 101 needs Upgrade and Connection: upgrade to reach the client:\n{}",
        resp.raw_head
    );
    let req = &upstream.requests()[0];
    assert!(
        req.has_token("Upgrade", "websocket") && req.has_token("Connection", "upgrade"),
        "the upgrade request must reach the upstream with Upgrade and Connection: upgrade:\n{}",
        req.raw_head
    );
    assert_eq!(
        req.header("Sec-WebSocket-Key"),
        Some("dGhlIHNhbXBsZSBub25jZQ=="),
        "end-to-end handshake fields must pass:\n{}",
        req.raw_head
    );

    let greeting = client
        .read_exact_bytes(WS_GREETING.len())
        .expect("the upstream's greeting");
    assert_eq!(
        greeting, WS_GREETING,
        "upstream → client bytes should flow unprompted"
    );

    for i in 0..10 {
        let message = format!("message {i}\n");
        client.send(message.as_bytes());
        let back = client
            .read_exact_bytes(message.len())
            .expect("the echo of a message");
        assert_eq!(back, message.as_bytes(), "message {i} came back altered");
    }
    let looks_like_http = get("/not-a-request");
    client.send(&looks_like_http);
    let back = client
        .read_exact_bytes(looks_like_http.len())
        .expect("the echo of HTTP-looking bytes");
    assert_eq!(
        back, looks_like_http,
        "bytes in a tunnel must pass untouched, even ones that look like HTTP"
    );
    assert_eq!(
        upstream.request_count(),
        1,
        "the tunnel's bytes must not be parsed as new requests"
    );
}

/// 32 MiB each way through the tunnel at once (a writer thread sends while
/// the test reads the echo): everything arrives in order, the proxy's
/// buffers stay bounded, and when the client half-closes, the close travels
/// through the tunnel and back.
#[test]
fn large_messages_both_ways_with_backpressure() {
    const SIZE: u64 = 32 << 20;
    let upstream = Upstream::websocket("ws");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&websocket_upgrade_request());
    let resp = client.read_head().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.raw_head);
    client
        .read_exact_bytes(WS_GREETING.len())
        .expect("the greeting");

    let mut writer = client
        .stream()
        .try_clone()
        .expect("clone the client socket");
    let sender = thread::spawn(move || -> Result<(), String> {
        let mut sent = 0u64;
        while sent < SIZE {
            let len = (SIZE - sent).min(PATTERN_CHUNK as u64) as usize;
            writer
                .write_all(pattern(sent, len))
                .map_err(|e| format!("sending into the tunnel failed at {sent}: {e}"))?;
            sent += len as u64;
        }
        writer
            .shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())
    });
    let mut received = 0u64;
    let mut intact = true;
    let read = client.read_exact_with(SIZE, &mut |data| {
        intact &= matches_pattern(received, data);
        received += data.len() as u64;
    });
    let sent = sender.join().expect("the writer thread");

    assert_eq!(sent, Ok(()), "the client could not send 32 MiB");
    assert_eq!(
        read,
        Ok(()),
        "the client should get 32 MiB back (got {received})"
    );
    assert!(intact, "the echoed bytes were altered");
    let stats = proxy.stats();
    let config = config_for(&[]);
    let bound = 4 * (config.limits.buffer_bytes + config.limits.max_header_bytes);
    assert!(
        stats.peak_buffer_bytes <= bound,
        "a tunnel should use the same bounded buffers as a body: peak {} > {bound}",
        stats.peak_buffer_bytes
    );
    let (rest, end) = client.read_until_close();
    assert!(
        rest.is_empty() && end.is_ok(),
        "the client's half-close should travel through the tunnel and come back as a close: \
         {} extra bytes, {end:?}",
        rest.len()
    );
}

/// A 101 the client never asked for (a plain GET) must not turn the
/// connection into a tunnel: 502.
#[test]
fn unasked_for_101_is_502() {
    let upstream = Upstream::fixed(
        "rogue",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/plain"));
    let resp = client.read_response("GET").expect("an answer");
    assert_error_answer(&resp, 502, "a 101 to a request that asked for no upgrade");
    if let Err(e) = client.expect_closed() {
        panic!("after the 502 the proxy must close: {e}");
    }
}

/// The upstream declines the upgrade, with a 426 or with a plain 200. The
/// answer is relayed as an ordinary response and no tunnel opens: the
/// client's next bytes are read as HTTP (so garbage gets the proxy's 400 or
/// a close), never passed raw to the upstream.
#[test]
fn refused_upgrade_is_an_ordinary_response() {
    for (answer, status, body) in [
        (
            &b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 12\r\n\r\nnot for you\n"[..],
            426,
            &b"not for you\n"[..],
        ),
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"[..],
            200,
            &b"plain"[..],
        ),
    ] {
        let upstream = Upstream::fixed("refuser", answer);
        let proxy = start_proxy(&[upstream.addr]);
        let mut client = Client::connect(proxy.local_addr());

        let resp = client.request(&websocket_upgrade_request());
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (status, body),
            "the refusal should be relayed as is:\n{}",
            resp.raw_head
        );

        let _ = client.try_send(b"NOT-HTTP tunnel bytes\r\n\r\n");
        // Closing the connection instead of answering is fine too.
        if let Ok(resp) = client.read_response("GET") {
            assert_error_answer(
                &resp,
                400,
                "garbage after a refused upgrade is a bad request, not tunnel data",
            );
        }
        thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !contains(&upstream.raw_received(), b"NOT-HTTP"),
            "after a refused upgrade ({status}) the client's bytes were tunneled to the upstream"
        );
    }
}

/// The upstream ends the conversation: after its 101 it says "bye" and
/// closes. The close travels through the tunnel to the client, and the
/// proxy lets go of both sockets.
#[test]
fn upstream_closing_the_tunnel_closes_the_client() {
    let upstream = Upstream::start("leaver", |conn| {
        if conn.read_request().is_some() {
            conn.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nbye",
            );
            conn.shutdown_write();
            // Stay until the proxy closes its side too.
            conn.drain_to_eof();
        }
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&websocket_upgrade_request());
    let resp = client.read_head().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.raw_head);
    let (rest, end) = client.read_until_close();
    assert_eq!(
        rest, b"bye",
        "the upstream's last bytes should arrive before the close"
    );
    assert!(
        end.is_ok(),
        "the tunnel should end with a clean close: {end:?}"
    );

    drop(client);
    let gone = wait_for_stats(&proxy, Duration::from_secs(2), |s| s.connections == 0);
    assert!(
        gone.is_ok(),
        "once both sides closed, the proxy should hold no connection: {gone:?}"
    );
}

/// A client may offer several protocols, in one `Upgrade` or over several
/// lines. The upstream chooses among them, so it must see all of them, in
/// the client's order, as one list (h2c still left out).
#[test]
fn several_offered_protocols_reach_the_upstream_as_one_list() {
    let upstream = Upstream::websocket("ws");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&head(&[
        "GET /chat HTTP/1.1",
        "Host: test.local",
        "Upgrade: foo/2, h2c",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]));
    let resp = client.read_head().expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.raw_head);
    let req = &upstream.requests()[0];
    let upgrades: Vec<&str> = req
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Upgrade"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(
        upgrades,
        ["foo/2, websocket"],
        "one Upgrade line, every offer in order:\n{}",
        req.raw_head
    );
}

/// A 101 may only switch to something the client offered. An upstream that
/// answers a websocket offer by switching to another protocol would get a
/// raw tunnel the client never agreed to: 502, never a tunnel.
#[test]
fn a_101_to_a_protocol_not_offered_is_502() {
    for answer in [
        "Upgrade: h2c",
        "Upgrade: websocket, tls/1.3",
        "Upgrade: foo",
    ] {
        let raw =
            format!("HTTP/1.1 101 Switching Protocols\r\n{answer}\r\nConnection: Upgrade\r\n\r\n");
        let upstream = Upstream::fixed("rogue", raw.as_bytes());
        let proxy = start_proxy(&[upstream.addr]);
        let mut client = Client::connect(proxy.local_addr());
        client.send(&websocket_upgrade_request());
        let resp = client.read_response("GET").expect("an answer");
        assert_error_answer(&resp, 502, &format!("101 with {answer}"));
        if let Err(e) = client.expect_closed() {
            panic!("{answer}: after the 502 the proxy must close: {e}");
        }
    }
}
