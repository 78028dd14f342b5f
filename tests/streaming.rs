//! Streaming in bounded memory, and backpressure (lessons 8 and 9).
//!
//! The proxy never holds a body: it holds at most one buffer of
//! `limits.buffer_bytes` per direction per connection and moves bytes on as
//! the other side takes them. So 256 MiB through the proxy must cost it no
//! more memory than 256 bytes would, and a client that stops reading must
//! make the upstream stop writing (the proxy stops reading from it) instead
//! of making the proxy buffer the difference.

mod support;

use std::time::{Duration, Instant};

use ferroxy::reactor::ProxyHandle;
use support::*;

const BODY: u64 = 256 << 20;

/// The buffer memory a proxy with one client and one upstream connection
/// may hold: each connection has at most a head buffer (`max_header_bytes`)
/// and a body buffer per direction (`buffer_bytes`), so
/// 2 × (2 × buffer_bytes + max_header_bytes) ≤ 4 × (buffer_bytes + max_header_bytes).
fn buffer_bound() -> usize {
    let config = config_for(&[]);
    4 * (config.limits.buffer_bytes + config.limits.max_header_bytes)
}

/// RSS may grow a little (thread stacks, allocator arenas, the test's own
/// 64 KiB read buffers), but nowhere near the body size.
const RSS_GROWTH_LIMIT: u64 = 64 << 20;

fn assert_bounded_memory(proxy: &ProxyHandle, rss_growth: u64, story: &str) {
    let stats = proxy.stats();
    assert!(
        stats.peak_buffer_bytes <= buffer_bound(),
        "{story}: peak_buffer_bytes = {} exceeds {} = 4 × (buffer_bytes + max_header_bytes), \
         the most one client and one upstream connection should ever hold \
         (a head buffer and one body buffer per direction each): the proxy buffered a body",
        stats.peak_buffer_bytes,
        buffer_bound()
    );
    assert!(
        rss_growth < RSS_GROWTH_LIMIT,
        "{story}: the process grew by {} MiB while {} MiB went through: memory grows with body size",
        rss_growth >> 20,
        BODY >> 20
    );
}

/// 256 MiB uploaded through the proxy with the default 16 KiB buffers: the
/// upstream receives every byte in order, while the proxy's buffer memory
/// stays under its fixed bound and the process does not grow with the body.
#[test]
fn upload_256_mib_in_bounded_memory() {
    let upstream = Upstream::sink("sink");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    let rss_before = rss_bytes();
    let mut rss_peak = rss_before;

    client.send(
        format!("POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: {BODY}\r\n\r\n")
            .as_bytes(),
    );
    let mut sent = 0u64;
    while sent < BODY {
        let len = (BODY - sent).min(PATTERN_CHUNK as u64) as usize;
        client.send(pattern(sent, len));
        sent += len as u64;
        if sent.is_multiple_of(16 << 20) {
            rss_peak = rss_peak.max(rss_bytes());
        }
    }
    let resp = client
        .read_response("POST")
        .expect("an answer after the upload");

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.body_text(),
        format!("received={BODY} pattern=true"),
        "the upstream should receive all 256 MiB, unaltered"
    );
    rss_peak = rss_peak.max(rss_bytes());
    assert_bounded_memory(
        &proxy,
        rss_peak.saturating_sub(rss_before),
        "256 MiB upload",
    );
}

/// 256 MiB downloaded through the proxy: the client receives every byte in
/// order, with the same memory bounds.
#[test]
fn download_256_mib_in_bounded_memory() {
    let upstream = Upstream::big_body("big", BODY);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    let rss_before = rss_bytes();
    let mut rss_peak = rss_before;

    client.send(&get("/download"));
    let resp = client.read_head().expect("the download's head");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let mut received = 0u64;
    let mut first_bad = None;
    client
        .read_body_with("GET", &resp, &mut |data| {
            if first_bad.is_none() && !matches_pattern(received, data) {
                first_bad = Some(received);
            }
            received += data.len() as u64;
            if received % (16 << 20) < data.len() as u64 {
                rss_peak = rss_peak.max(rss_bytes());
            }
        })
        .expect("the whole body");

    assert_eq!(received, BODY, "the client should receive all 256 MiB");
    assert_eq!(
        first_bad, None,
        "the body was altered (first bad slice at this offset)"
    );
    rss_peak = rss_peak.max(rss_bytes());
    assert_bounded_memory(
        &proxy,
        rss_peak.saturating_sub(rss_before),
        "256 MiB download",
    );
}

/// A client asks for a large body and then reads nothing for a second. The
/// proxy's buffer fills, it stops reading from the upstream, the kernel
/// buffers in between fill, and the upstream's writes block: the upstream
/// has written only what fits in socket buffers plus the proxy's bounded
/// buffers, far less than the body. Then the client reads, and everything
/// arrives intact.
#[test]
fn slow_reader_backpressure_reaches_the_upstream() {
    let body: u64 = 192 << 20;
    let upstream = Upstream::big_body("big", body);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/download"));
    std::thread::sleep(Duration::from_secs(1));
    // Wait for the upstream to stall: no progress over 200 ms (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stalled_at = upstream.bytes_written();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = upstream.bytes_written();
        if now == stalled_at || Instant::now() > deadline {
            stalled_at = now;
            break;
        }
        stalled_at = now;
    }
    let bound: u64 = 32 << 20;
    assert!(
        stalled_at < bound,
        "with the client not reading, the upstream wrote {} MiB: the proxy kept reading \
         from the upstream instead of applying backpressure (expected < {} MiB: loopback \
         socket buffers hold a few MiB, the proxy {} KiB)",
        stalled_at >> 20,
        bound >> 20,
        buffer_bound() >> 10
    );
    assert!(
        proxy.stats().peak_buffer_bytes <= buffer_bound(),
        "a stalled reader made the proxy buffer more than its bound: {:?}",
        proxy.stats()
    );

    let resp = client.read_head().expect("the head after the pause");
    let mut received = 0u64;
    let mut intact = true;
    client
        .read_body_with("GET", &resp, &mut |data| {
            intact &= matches_pattern(received, data);
            received += data.len() as u64;
        })
        .expect("the whole body after the pause");
    assert_eq!(
        received, body,
        "after the pause the client should get everything"
    );
    assert!(intact, "the body was altered");
}

/// The chunked path has its own code (the decoder tracks chunk boundaries as
/// bytes pass): 64 MiB uploaded chunked and 64 MiB downloaded chunked must
/// stay within the same buffer bound as Content-Length bodies.
#[test]
fn chunked_bodies_in_bounded_memory() {
    const SIZE: u64 = 64 << 20;
    let sink = Upstream::sink("sink");
    let proxy = start_proxy(&[sink.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&head(&[
        "POST /upload HTTP/1.1",
        "Host: test.local",
        "Transfer-Encoding: chunked",
    ]));
    let mut sent = 0u64;
    while sent < SIZE {
        let len = (SIZE - sent).min(PATTERN_CHUNK as u64) as usize;
        client.send(format!("{len:x}\r\n").as_bytes());
        client.send(pattern(sent, len));
        client.send(b"\r\n");
        sent += len as u64;
    }
    client.send(b"0\r\n\r\n");
    let resp = client
        .read_response("POST")
        .expect("an answer after the chunked upload");
    assert_eq!(
        resp.body_text(),
        format!("received={SIZE} pattern=true"),
        "the upstream should receive all 64 MiB of the chunked upload, unaltered"
    );
    let peak = proxy.stats().peak_buffer_bytes;
    assert!(
        peak <= buffer_bound(),
        "chunked upload: peak_buffer_bytes = {peak} exceeds 4 × (buffer_bytes + max_header_bytes) = {}",
        buffer_bound()
    );

    let chunked = Upstream::chunked("chunked", SIZE, &[]);
    let proxy = start_proxy(&[chunked.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/download"));
    let resp = client.read_head().expect("the chunked download's head");
    let mut received = 0u64;
    let mut intact = true;
    client
        .read_body_with("GET", &resp, &mut |data| {
            intact &= matches_pattern(received, data);
            received += data.len() as u64;
        })
        .expect("the whole chunked body");
    assert_eq!(received, SIZE, "the client should receive all 64 MiB");
    assert!(intact, "the chunked download was altered");
    let peak = proxy.stats().peak_buffer_bytes;
    assert!(
        peak <= buffer_bound(),
        "chunked download: peak_buffer_bytes = {peak} exceeds 4 × (buffer_bytes + max_header_bytes) = {}",
        buffer_bound()
    );
}
