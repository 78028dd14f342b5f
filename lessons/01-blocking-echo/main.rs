//! Lesson 01: the simplest HTTP server that works, and why it is not enough.
//!
//! One thread. It accepts a connection, answers every request on it
//! (keep-alive) until the client leaves, and only then accepts the next one.
//! Every `read`, `write` and `accept` below *blocks*: the thread stops right
//! there until the kernel has something for it. While it waits on one
//! client, nobody else is served, not even a client whose request is already
//! sitting in the kernel's buffer.
//!
//! Run it: `cargo run --release --example lesson01_blocking -- 7001`, then
//! `curl -v http://127.0.0.1:7001/`. Stop it with Ctrl-C.
//!
//! Shortcuts, named so you do not copy them: request bodies are not read (a
//! `POST` body would be taken for the next request), the request line is not
//! validated, and there is no timeout, so a client that never finishes its
//! request holds the server forever. That last one is the point of the lesson.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

/// A request head larger than this is refused (the connection is closed):
/// without a limit, a client could make us buffer without end.
const MAX_HEAD_BYTES: usize = 8 * 1024;

const BODY: &[u8] = b"hello\n";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lesson01_blocking: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let port = port_from_args(7001)?;
    // 127.0.0.1 only: this server has no limits and must not be reachable
    // from other machines.
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("lesson 01: blocking server on http://127.0.0.1:{port}/ (one client at a time)");

    // `incoming()` calls `accept` in a loop. `accept` BLOCKS until a client
    // connects. Clients that connect while we are busy wait in the kernel's
    // accept backlog: their TCP handshake has completed, their request may
    // already be in our receive buffer, and we will not look at it until the
    // current client leaves.
    for accepted in listener.incoming() {
        match accepted {
            Ok(stream) => {
                if let Err(e) = serve_connection(stream) {
                    // A bad or vanished peer only costs its own connection.
                    eprintln!("connection ended: {e}");
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
    Ok(())
}

/// Answer requests on one connection until the client closes it or asks us
/// to (`Connection: close`). Returns only then: this is the whole problem.
fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    // Small answers should leave at once, not wait for the client's ACK of
    // the previous one (Nagle's algorithm).
    stream.set_nodelay(true)?;
    // Bytes read but not yet used: a head arrives in pieces, and the next
    // request may arrive in the same read as the end of this one.
    let mut unread: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Read until a whole head (up to the blank line) is here.
        let head_len = loop {
            if let Some(end) = find(&unread, b"\r\n\r\n") {
                break end + 4;
            }
            if unread.len() > MAX_HEAD_BYTES {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            // BLOCKS until the client sends something. A client that sent
            // half a request and went quiet keeps us here indefinitely, and
            // every other client waits with us.
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                // The client closed its side (EOF). Between requests that is
                // the normal end of a keep-alive connection.
                return Ok(());
            }
            unread.extend_from_slice(&chunk[..n]);
        };
        let keep_alive = wants_keep_alive(&unread[..head_len]);
        unread.drain(..head_len);

        // BLOCKS until the kernel has taken every byte into its send buffer.
        // A few dozen bytes always fit, but a large answer to a client that
        // does not read would stop us here too.
        stream.write_all(&response(keep_alive))?;
        if !keep_alive {
            return Ok(()); // dropping the stream closes the socket
        }
    }
}

/// The answer. `Connection: keep-alive` is said out loud because HTTP/1.0
/// clients (`ab` is one) only reuse a connection when the server does.
fn response(keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    out.extend_from_slice(BODY);
    out
}

/// Just enough HTTP: HTTP/1.1 keeps the connection open unless the client
/// says `Connection: close`; HTTP/1.0 closes it unless the client says
/// `Connection: keep-alive`. `close` wins over everything; anything
/// unreadable means close.
fn wants_keep_alive(head: &[u8]) -> bool {
    let Ok(head) = std::str::from_utf8(head) else {
        return false;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut keep_alive = request_line.ends_with("HTTP/1.1");
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    keep_alive && !close
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The port from the first argument, or `default`.
fn port_from_args(default: u16) -> io::Result<u16> {
    match std::env::args().nth(1) {
        None => Ok(default),
        Some(arg) => arg.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("usage: lesson01_blocking [PORT]; {arg:?} is not a port"),
            )
        }),
    }
}
