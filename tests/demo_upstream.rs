//! The demo upstream on its own, spoken to with plain std sockets on
//! 127.0.0.1: each knob, keep-alive, request bodies, `100-continue`, and
//! the refusals. Every test stops by itself: sockets have read timeouts.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferroxy::demo::{DemoUpstream, pattern_byte};

/// Long enough for a slow CI machine, short enough that a hang fails fast.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

fn start(name: &str) -> DemoUpstream {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    DemoUpstream::start(addr, name).expect("demo upstream starts on 127.0.0.1:0")
}

/// A minimal HTTP/1.1 client that keeps leftover bytes between responses,
/// so keep-alive and pipelining can be checked exactly.
struct Client {
    stream: TcpStream,
    unread: Vec<u8>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Sizes of the chunks, when the body was chunked.
    chunks: Vec<usize>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Client {
    fn connect(demo: &DemoUpstream) -> Client {
        let stream = TcpStream::connect(demo.local_addr()).expect("connect to the demo");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        Client {
            stream,
            unread: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the demo");
    }

    fn get(&mut self, target: &str) -> Response {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: demo\r\n\r\n").as_bytes());
        self.response()
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).expect("read from the demo");
        self.unread.extend_from_slice(&chunk[..n]);
        n
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.unread.len() < n {
            assert!(self.fill() > 0, "connection closed inside a body");
        }
        self.unread.drain(..n).collect()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(lf) = self.unread.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.unread[..lf]).into_owned();
                self.unread.drain(..lf + 2);
                return line;
            }
            assert!(self.fill() > 0, "connection closed inside a chunked body");
        }
    }

    fn head(&mut self) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = parsed
                .parse(&self.unread)
                .expect("a well-formed response head")
            {
                let response = Response {
                    status: parsed.code.unwrap_or(0),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                    chunks: Vec::new(),
                };
                self.unread.drain(..len);
                return response;
            }
            assert!(self.fill() > 0, "connection closed before a response head");
        }
    }

    /// A full response, body framed the way its head says.
    fn response(&mut self) -> Response {
        let mut response = self.head();
        if matches!(response.status, 204 | 304) {
            return response;
        }
        if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("hex chunk size");
                if size == 0 {
                    assert_eq!(self.line(), "", "no trailers after the last chunk");
                    break;
                }
                response.chunks.push(size);
                let data = self.take(size);
                response.body.extend_from_slice(&data);
                assert_eq!(self.line(), "", "CRLF after chunk data");
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("numeric Content-Length");
            response.body = self.take(length);
        } else {
            while self.fill() > 0 {}
            response.body = std::mem::take(&mut self.unread);
        }
        response
    }

    /// True when the demo has closed its side (FIN or reset) and sent
    /// nothing more.
    fn closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        }
    }
}

fn assert_pattern(body: &[u8], what: &str) {
    if let Some(i) = (0..body.len()).find(|&i| body[i] != pattern_byte(i as u64)) {
        panic!(
            "{what}: byte {i} is {:?}, pattern says {:?}",
            body[i] as char,
            pattern_byte(i as u64) as char
        );
    }
}

// ---- the echo --------------------------------------------------------------

/// A plain GET comes back as JSON describing it: the upstream's name,
/// method, target, version, headers in order, and no body.
#[test]
fn echo_describes_the_request() {
    let demo = start("upstream-1");
    let mut client = Client::connect(&demo);
    client.send(b"GET /hello?x=1 HTTP/1.1\r\nHost: demo\r\nX-Trace: abc\r\n\r\n");
    let response = client.response();

    assert_eq!(response.status, 200, "echo is a 200");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "echo is JSON"
    );
    let json = response.json();
    assert_eq!(json["upstream"], "upstream-1", "which upstream answered");
    assert_eq!(json["method"], "GET", "method");
    assert_eq!(json["target"], "/hello?x=1", "target, query included");
    assert_eq!(json["version"], "HTTP/1.1", "version");
    assert_eq!(
        json["headers"],
        serde_json::json!([["Host", "demo"], ["X-Trace", "abc"]]),
        "headers, in order and as sent"
    );
    assert_eq!(json["body_bytes"], 0, "no body");
}

/// Every kind of answer says who sent it, so round-robin shows in `curl -v`.
#[test]
fn every_response_names_its_upstream() {
    let demo = start("upstream-7");
    assert_eq!(demo.name(), "upstream-7", "name()");
    let mut client = Client::connect(&demo);
    for target in [
        "/",
        "/bytes/3",
        "/chunked/3",
        "/delay/1",
        "/status/503",
        "/status/204",
        "/bytes/oops",
    ] {
        let response = client.get(target);
        assert_eq!(
            response.header("x-upstream"),
            Some("upstream-7"),
            "X-Upstream on {target} ({})",
            response.status
        );
    }
}

/// An absolute-form target is routed by its path, like an origin-form one.
#[test]
fn absolute_form_target_is_routed_by_path() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let response = client.get("http://demo:9001/bytes/4?q");
    assert_eq!(response.body, b"abcd", "routed to /bytes/4");
}

// ---- the knobs -------------------------------------------------------------

/// `/bytes/N` sends exactly N bytes of the pattern, with Content-Length.
/// N spans several 64 KiB writes and does not end on a pattern boundary.
#[test]
fn bytes_sends_exactly_n_pattern_bytes() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let n = 3 * 64 * 1024 + 5;
    let response = client.get(&format!("/bytes/{n}"));
    assert_eq!(response.status, 200, "status");
    assert_eq!(
        response.header("content-length"),
        Some(n.to_string().as_str()),
        "Content-Length is N"
    );
    assert_eq!(response.body.len(), n, "body length");
    assert_pattern(&response.body, "/bytes body");

    let empty = client.get("/bytes/0");
    assert_eq!(empty.header("content-length"), Some("0"), "/bytes/0 length");
    assert!(empty.body.is_empty(), "/bytes/0 has no body");
}

/// `/bytes/N` streams: asking for a terabyte gets an immediate head and a
/// steady flow of bytes, not an allocation of N.
#[test]
fn huge_bytes_are_streamed_not_buffered() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"GET /bytes/1000000000000 HTTP/1.1\r\nHost: demo\r\n\r\n");
    let head = client.head();
    assert_eq!(
        head.header("content-length"),
        Some("1000000000000"),
        "promises the whole terabyte"
    );
    let first = client.take(1024 * 1024);
    assert_pattern(&first, "first MiB of a terabyte");
    // Dropping the client mid-body must just end that connection's thread.
}

/// `/chunked/N` sends N pattern bytes as chunks of at most 8 KiB.
#[test]
fn chunked_sends_small_chunks() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let n = 20_000;
    let response = client.get(&format!("/chunked/{n}"));
    assert_eq!(
        response.header("transfer-encoding"),
        Some("chunked"),
        "chunked framing"
    );
    assert_eq!(response.header("content-length"), None, "no Content-Length");
    assert_eq!(response.body.len(), n, "body length");
    assert_pattern(&response.body, "/chunked body");
    assert!(
        response.chunks.iter().all(|&size| size <= 8192),
        "chunks at most 8 KiB: {:?}",
        response.chunks
    );
    assert!(
        response.chunks.len() >= 3,
        "several chunks: {:?}",
        response.chunks
    );

    let empty = client.get("/chunked/0");
    assert!(
        empty.body.is_empty() && empty.chunks.is_empty(),
        "/chunked/0 is only the last chunk"
    );
}

/// An HTTP/1.0 client cannot read chunked, so `/chunked/N` ends its body by
/// closing: the one knob that shows close-delimited framing.
#[test]
fn chunked_to_http10_ends_at_close() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"GET /chunked/10000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = client.response();
    assert_eq!(
        response.header("transfer-encoding"),
        None,
        "no chunked to 1.0"
    );
    assert_eq!(response.header("content-length"), None, "no length either");
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "says it will close"
    );
    assert_eq!(response.body.len(), 10_000, "whole body before the close");
    assert_pattern(&response.body, "close-delimited body");
}

/// `/delay/MS` waits at least MS before the echo.
#[test]
fn delay_waits_then_echoes() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let started = Instant::now();
    let response = client.get("/delay/200");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "answered after {waited:?}"
    );
    assert_eq!(response.json()["target"], "/delay/200", "then echoes");
}

/// `/status/CODE` answers that status with a short text body.
#[test]
fn status_answers_that_code() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    for code in [200, 302, 404, 418, 503, 599] {
        let response = client.get(&format!("/status/{code}"));
        assert_eq!(response.status, code, "/status/{code}");
        assert!(
            String::from_utf8_lossy(&response.body).starts_with(&code.to_string()),
            "body names the code: {:?}",
            response.body
        );
    }
}

/// 204 and 304 carry no body and no length, and the connection goes on:
/// the next request's answer is not mistaken for a body.
#[test]
fn status_204_and_304_have_no_body() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    for code in [204, 304] {
        let response = client.get(&format!("/status/{code}"));
        assert_eq!(response.status, code, "status");
        assert_eq!(response.header("content-length"), None, "{code}: no length");
        let next = client.get("/bytes/2");
        assert_eq!(
            next.body, b"ab",
            "after {code}, the next response is intact"
        );
    }
    assert_eq!(demo.connections_accepted(), 1, "all on one connection");
}

/// A 1xx is never sent as a final answer, nor anything outside 200..=599
/// or not a number: those are 400, and the connection stays usable.
#[test]
fn status_out_of_range_is_a_400() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    for target in [
        "/status/100",
        "/status/101",
        "/status/199",
        "/status/600",
        "/status/70000",
        "/status/abc",
        "/status/",
        "/bytes/-1",
        "/bytes/+1",
        "/chunked/1e3",
        "/delay/soon",
    ] {
        let response = client.get(target);
        assert_eq!(response.status, 400, "{target}");
    }
    assert_eq!(client.get("/bytes/1").body, b"a", "connection still works");
}

/// HEAD gets the head GET would get, and no body; the connection goes on.
#[test]
fn head_gets_the_head_without_a_body() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"HEAD /bytes/5000 HTTP/1.1\r\nHost: demo\r\n\r\n");
    let head = client.head();
    assert_eq!(
        head.header("content-length"),
        Some("5000"),
        "length as for GET"
    );
    client.send(b"HEAD /chunked/5000 HTTP/1.1\r\nHost: demo\r\n\r\n");
    let head = client.head();
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "TE as for GET"
    );
    assert_eq!(
        client.get("/bytes/3").body,
        b"abc",
        "no body bytes were sent"
    );
}

// ---- connections -----------------------------------------------------------

/// HTTP/1.1 keeps the connection open by default: three requests, one
/// connection, three answers.
#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    for i in 1..=3 {
        let response = client.get(&format!("/bytes/{i}"));
        assert_eq!(response.body.len(), i, "request {i}");
        assert_eq!(response.header("connection"), None, "no Connection header");
    }
    assert_eq!(demo.connections_accepted(), 1, "one connection");
    assert_eq!(demo.requests_served(), 3, "three requests");
}

/// `Connection: close` gets its answer, says so, and then the demo closes.
#[test]
fn connection_close_is_honoured() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 200, "answered");
    assert_eq!(response.header("connection"), Some("close"), "announces it");
    assert!(client.closed_by_peer(), "then closes");
}

/// HTTP/1.0 closes after one answer unless the client asks for keep-alive.
#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.json()["version"], "HTTP/1.0", "echo sees 1.0");
    assert_eq!(response.header("connection"), Some("close"), "1.0 default");
    assert!(client.closed_by_peer(), "closed after one answer");

    let mut client = Client::connect(&demo);
    client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = client.response();
    assert_eq!(
        response.header("connection"),
        Some("keep-alive"),
        "keep-alive confirmed to a 1.0 client"
    );
    client.send(b"GET /bytes/2 HTTP/1.0\r\n\r\n");
    assert_eq!(
        client.response().body,
        b"ab",
        "second request on the same connection"
    );
}

/// Two requests in one write (pipelining) get two answers, in order.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(
        b"GET /bytes/1 HTTP/1.1\r\nHost: d\r\n\r\nGET /status/404 HTTP/1.1\r\nHost: d\r\n\r\n",
    );
    assert_eq!(client.response().body, b"a", "first answer");
    assert_eq!(client.response().status, 404, "second answer");
}

// ---- request bodies --------------------------------------------------------

/// A Content-Length body is read, counted and dropped; the connection is
/// ready for the next request right after it.
#[test]
fn content_length_body_is_counted() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let body = vec![b'x'; 100_000];
    client.send(b"POST /upload HTTP/1.1\r\nHost: d\r\nContent-Length: 100000\r\n\r\n");
    client.send(&body);
    let response = client.response();
    assert_eq!(response.json()["method"], "POST", "method");
    assert_eq!(response.json()["body_bytes"], 100_000, "every byte counted");
    assert_eq!(
        client.get("/bytes/1").body,
        b"a",
        "next request still parses"
    );
}

/// A chunked body, with a chunk extension and a trailer, sent in awkward
/// pieces, is decoded and counted.
#[test]
fn chunked_request_body_is_counted() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let pieces: [&[u8]; 6] = [
        b"PUT /x HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5;name=va",
        b"lue\r\nhel",
        b"lo\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r",
        b"\nX-Checksum: 1\r\n",
        b"\r\n",
    ];
    for piece in pieces {
        client.send(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    let response = client.response();
    assert_eq!(response.json()["body_bytes"], 5 + 26, "5 + 0x1A bytes");
    assert_eq!(
        client.get("/bytes/1").body,
        b"a",
        "next request still parses"
    );
}

/// `Expect: 100-continue`: the demo says `100 Continue` before the client
/// sends its body, then answers once the body is in.
#[test]
fn expect_100_continue_gets_an_interim_answer_first() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"POST / HTTP/1.1\r\nHost: d\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    let interim = client.head();
    assert_eq!(interim.status, 100, "100 Continue before the body is sent");
    client.send(b"data");
    let response = client.response();
    assert_eq!(response.status, 200, "then the final answer");
    assert_eq!(response.json()["body_bytes"], 4, "with the body counted");
}

/// No body, nothing to continue: the final answer comes straight away.
#[test]
fn expect_100_continue_without_a_body_gets_no_interim() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"GET / HTTP/1.1\r\nHost: d\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(client.response().status, 200, "final answer only");
}

// ---- refusals --------------------------------------------------------------

/// Each malformed request gets a 400-class answer with `Connection: close`,
/// then the connection closes; and the demo keeps serving others.
#[test]
fn bad_requests_are_refused_and_closed() {
    let demo = start("u");
    let cases: [(&[u8], u16); 9] = [
        (b"this is not http\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"\x00\xff\xfe garbage \x01\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
            400,
        ),
    ];
    for (request, status) in cases {
        let mut client = Client::connect(&demo);
        client.send(request);
        let response = client.response();
        let shown = String::from_utf8_lossy(request);
        assert_eq!(response.status, status, "for {shown:?}");
        assert_eq!(
            response.header("connection"),
            Some("close"),
            "for {shown:?}"
        );
        assert!(client.closed_by_peer(), "closed after {shown:?}");
    }
    let mut client = Client::connect(&demo);
    assert_eq!(client.get("/").status, 200, "still serving after all that");
}

/// A chunk carrying more data than its size line said is refused.
#[test]
fn chunk_overrun_is_refused() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n");
    assert_eq!(client.response().status, 400, "overrun chunk");
}

/// More than 100 header fields: 431, as the contract has the proxy do.
#[test]
fn too_many_header_fields_get_431() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    let mut request = String::from("GET / HTTP/1.1\r\n");
    for i in 0..101 {
        request.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    client.send(request.as_bytes());
    assert_eq!(client.response().status, 431, "101 fields");
}

/// A head that never ends is cut off at 64 KiB with a 431.
#[test]
fn oversized_head_gets_431() {
    let demo = start("u");
    let mut client = Client::connect(&demo);
    client.send(b"GET / HTTP/1.1\r\nX-Long: ");
    client.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(client.response().status, 431, "head over 64 KiB");
}

// ---- lifecycle -------------------------------------------------------------

/// The demo refuses to listen anywhere but loopback, before binding.
#[test]
fn non_loopback_address_is_refused() {
    let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = match DemoUpstream::start(addr, "u") {
        Ok(_) => panic!("0.0.0.0 must be refused"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "kind: {err}");
    assert!(err.to_string().contains("loopback"), "message: {err}");
}

/// Dropping a demo upstream is like killing it: new connects are refused
/// and an open keep-alive connection is closed.
#[test]
fn drop_stops_listening_and_closes_connections() {
    let demo = start("u");
    let addr = demo.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "bound: {addr}");
    let mut client = Client::connect(&demo);
    assert_eq!(client.get("/").status, 200, "serving before the drop");

    drop(demo);

    assert!(
        client.closed_by_peer(),
        "open connection closed by the drop"
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "nothing listens on {addr} any more"
    );
}
