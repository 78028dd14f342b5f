//! Long bodies go socket -> pipe -> socket with `splice(2)` (`src/splice.rs`)
//! instead of through the proxy's buffer. These stories check the bytes
//! arrive exactly, that framing still decides where a body ends, and that a
//! body cut short still ends the client connection.

mod support;

use support::*;

const LONG: u64 = 8 << 20;

/// Reads one response to GET and returns (status, bytes received, intact).
fn download(client: &mut Client, target: &str) -> (u16, u64, bool) {
    client.send(&get(target));
    let resp = client.read_head().expect("a response head");
    let mut received = 0u64;
    let mut intact = true;
    let _ = client.read_body_with("GET", &resp, &mut |data| {
        intact &= matches_pattern(received, data);
        received += data.len() as u64;
    });
    (resp.status, received, intact)
}

/// The end of a spliced body meets a client that is slow to take it (a
/// 4 KiB receive buffer): the last fill takes the body's final bytes into
/// the pipe, and the client's socket takes only part of them. As far as
/// the framing goes the body is complete, but the pipe still holds its
/// tail: the answer is not done, and the pipe not dropped, until the pipe
/// is empty.
#[test]
fn the_tail_left_in_the_pipe_still_reaches_a_slow_client() {
    let upstream = Upstream::big_body("big", LONG);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect_with_receive_buffer(proxy.local_addr(), 4096);
    for i in 0..3 {
        let (status, received, intact) = download(&mut client, &format!("/big/{i}"));
        assert_eq!(status, 200, "download {i}");
        assert_eq!(
            received, LONG,
            "download {i}: the bytes still in the pipe were lost"
        );
        assert!(intact, "download {i} was altered on the way");
    }
}

/// Three 8 MiB bodies, one after another on one keep-alive connection:
/// each goes through the pipe, arrives byte for byte, and the connection
/// (and the pooled upstream connection) carry on to the next request, with
/// no buffer memory held for the bodies.
#[test]
fn long_bodies_arrive_exactly_and_the_connection_carries_on() {
    let upstream = Upstream::big_body("big", LONG);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    for i in 0..3 {
        let (status, received, intact) = download(&mut client, &format!("/big/{i}"));
        assert_eq!(status, 200, "download {i}");
        assert_eq!(received, LONG, "download {i} should be 8 MiB exactly");
        assert!(intact, "download {i} was altered on the way");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "the upstream connection should be pooled and reused after a spliced body"
    );
    let peak = proxy.stats().peak_buffer_bytes;
    assert!(
        peak <= 4 * 16_384 + 4096,
        "spliced bodies should not pass through buffers: peak {peak} bytes"
    );
}

/// A long body delimited by the upstream's close, not by a length: the
/// pipe runs until the FIN, and the client gets every byte, then a close.
#[test]
fn long_close_delimited_body_arrives_whole() {
    let upstream = Upstream::start("until-close", |conn| {
        if conn.read_request().is_some() {
            let _ = conn.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                && conn.write_pattern(LONG);
        }
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    let (status, received, intact) = download(&mut client, "/until-close");
    assert_eq!(status, 200);
    assert_eq!(received, LONG, "every byte up to the upstream's close");
    assert!(intact, "the body was altered on the way");
}

/// The upstream promises 8 MiB and closes after 1 MiB. The proxy cannot
/// say so in the response any more, so it closes the client connection:
/// the client sees a short body and a close, never a complete-looking one.
#[test]
fn long_body_cut_short_closes_the_client() {
    let upstream = Upstream::start("liar", |conn| {
        if conn.read_request().is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LONG}\r\n\r\n");
            let _ = conn.write(head.as_bytes()) && conn.write_pattern(1 << 20);
        }
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/liar"));
    let resp = client
        .read_head()
        .expect("the head went out before the cut");
    let mut received = 0u64;
    let outcome = client.read_body_with("GET", &resp, &mut |data| received += data.len() as u64);
    assert!(outcome.is_err(), "the body must not look complete");
    assert!(
        received < LONG,
        "the client got {received} of {LONG} bytes and then a close"
    );
    assert!(
        wait_for_stats(&proxy, std::time::Duration::from_secs(3), |s| s.connections
            == 0)
        .is_ok(),
        "both connections should be closed and freed"
    );
}

/// A pipe starts with room for 64 KiB, and one splice moves at most a
/// pipeful. `Pipe::new` grows it to 1 MiB (as far as the kernel's
/// `pipe-max-size` allows), so 112 KiB waiting in a socket go into the pipe
/// in one splice instead of two.
#[test]
fn one_fill_takes_more_than_a_default_pipeful() {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use ferroxy::conn::Readiness;
    use ferroxy::splice::{Moved, PIPE_BYTES, Pipe};

    // Under the 128 KiB a fresh loopback socket takes before its reader reads.
    const WAITING: usize = 112 << 10;
    let max_size: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(PIPE_BYTES);
    let mut pipe = Pipe::new().expect("a pipe");
    assert_eq!(
        pipe.capacity(),
        PIPE_BYTES.min(max_size).max(64 << 10),
        "the pipe should be grown to PIPE_BYTES (or pipe-max-size)"
    );

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let mut sender =
        TcpStream::connect(listener.local_addr().expect("its address")).expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    sender
        .write_all(&pattern_bytes(WAITING))
        .expect("write 112 KiB");
    // Wait until all of it sits in the receiving socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut peeked = vec![0u8; WAITING];
    while receiver.peek(&mut peeked).expect("peek") < WAITING {
        assert!(
            Instant::now() < deadline,
            "112 KiB never arrived over loopback"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut ready = Readiness {
        readable: true,
        ..Readiness::default()
    };
    let moved = pipe.fill(&receiver, &mut ready, WAITING);
    let Moved::Bytes(n) = moved else {
        panic!("the fill moved nothing: {moved:?}");
    };
    if pipe.capacity() >= WAITING {
        assert_eq!(n, WAITING, "one splice should take all 112 KiB");
    }
    assert!(
        n > 64 << 10,
        "only {n} bytes: no more than a default pipe holds"
    );
}

/// A lying upstream sends more than its `Content-Length`, past a body long
/// enough to be spliced. The splice takes exactly the promised bytes; the
/// extra ones (here a whole fake response) stay in the upstream socket.
/// The story makes sure they are already there long before the last fill:
/// an honest 8 MiB answer first lets the upstream socket's receive buffer
/// grow, then a client with a 4 KiB receive buffer pauses before reading,
/// which keeps the pipe full, so the event that announced the extra bytes
/// is long spent when the body ends. That connection must not be pooled, or the next request would be
/// answered by the fake.
#[test]
fn bytes_beyond_a_spliced_body_are_never_the_next_answer() {
    const HONEST: u64 = 8 << 20;
    const BODY: usize = 600 << 10;
    // Counted across connections: the third answer is "honest" on
    // whichever connection asks.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = Upstream::start("liar", move |conn| {
        while conn.read_request().is_some() {
            let sent = match answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 {
                1 => {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {HONEST}\r\n\r\n");
                    conn.write(head.as_bytes()) && conn.write_pattern(HONEST)
                }
                2 => {
                    let mut raw =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
                    raw.extend_from_slice(&pattern_bytes(BODY));
                    raw.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nextra!!");
                    conn.write(&raw)
                }
                _ => conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhonest"),
            };
            if !sent {
                return;
            }
        }
    });
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect_with_receive_buffer(proxy.local_addr(), 4096);

    let (status, received, intact) = download(&mut client, "/honest");
    assert_eq!((status, received), (200, HONEST), "the honest answer");
    assert!(intact, "the honest body was altered");
    // Not reading for a moment: the pipe stays full and everything the
    // liar sends lands in the upstream socket meanwhile.
    client.send(&get("/liar"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let resp = client.read_head().expect("the lying answer's head");
    let (status, mut received, mut intact) = (resp.status, 0u64, true);
    let _ = client.read_body_with("GET", &resp, &mut |data| {
        intact &= matches_pattern(received, data);
        received += data.len() as u64;
    });
    assert_eq!(
        (status, received),
        (200, BODY as u64),
        "the lying answer, cut to its length"
    );
    assert!(intact, "the lying body was altered");
    let resp = client.request(&get("/next"));
    let body = resp.body_text();
    assert!(
        body == "honest",
        "the next request must get its own answer, not the liar's extra bytes; it got \
         {} bytes starting {:?}",
        body.len(),
        body.chars().take(16).collect::<String>()
    );
    assert_eq!(
        upstream.connections(),
        2,
        "the connection that over-sent must not be reused"
    );
}
