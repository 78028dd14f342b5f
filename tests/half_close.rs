//! Half-close: a client that says "I have sent everything" (`shutdown(Write)`,
//! a TCP FIN) after its request is still listening, and must still receive
//! the whole response. A proxy that treats `read() == 0` as "the client is
//! gone" and closes both ways cuts the answer short; one that closes with
//! unread data can turn the close into a reset that destroys it.

mod support;

use support::*;

/// A small answer still arrives after the client's FIN, and then the proxy
/// closes (the client will send nothing more).
#[test]
fn small_response_after_client_half_close() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/half"));
    client.shutdown_write();
    let resp = client
        .read_response("GET")
        .expect("the answer after a half-close");

    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(resp.header("X-Echo-Target"), Some("/half"));
    if let Err(e) = client.expect_closed() {
        panic!("after answering a half-closed client the proxy should close: {e}");
    }
}

/// An 8 MiB answer (hundreds of buffer-fulls, so the proxy goes round its
/// loop many times after seeing the FIN) arrives whole.
#[test]
fn multi_mib_response_after_client_half_close() {
    const SIZE: u64 = 8 << 20;
    let upstream = Upstream::big_body("big", SIZE);
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&get("/big"));
    client.shutdown_write();
    let resp = client.read_head().expect("the head after a half-close");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    let mut received = 0u64;
    let mut intact = true;
    let outcome = client.read_body_with("GET", &resp, &mut |data| {
        intact &= matches_pattern(received, data);
        received += data.len() as u64;
    });

    assert_eq!(
        outcome.map(|_| received),
        Ok(SIZE),
        "the half-closed client should get all 8 MiB"
    );
    assert!(intact, "the body was altered");
}

/// An upload followed by a FIN: the 4 MiB body reaches the upstream and the
/// answer comes back.
#[test]
fn upload_then_half_close() {
    const SIZE: usize = 4 << 20;
    let upstream = Upstream::sink("sink");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&post("/upload", &pattern_bytes(SIZE)));
    client.shutdown_write();
    let resp = client
        .read_response("POST")
        .expect("the answer to a half-closed upload");

    assert_eq!(
        resp.body_text(),
        format!("received={SIZE} pattern=true"),
        "the whole upload should reach the upstream"
    );
}

/// Three pipelined requests, then the FIN: all three are answered, in
/// order, before the proxy closes.
#[test]
fn pipelined_requests_then_half_close() {
    let upstream = Upstream::echo("a");
    let proxy = start_proxy(&[upstream.addr]);
    let mut client = Client::connect(proxy.local_addr());

    client.send(&[get("/one"), get("/bytes/100000"), get("/three")].concat());
    client.shutdown_write();

    let first = client.read_response("GET").expect("answer 1");
    let second = client.read_response("GET").expect("answer 2");
    let third = client.read_response("GET").expect("answer 3");
    assert_eq!(first.header("X-Echo-Target"), Some("/one"));
    assert_eq!(
        second.body.len(),
        100_000,
        "the middle answer should be whole"
    );
    assert_eq!(third.header("X-Echo-Target"), Some("/three"));
    if let Err(e) = client.expect_closed() {
        panic!("after the last answer the proxy should close: {e}");
    }
}
