//! Lesson 03: the same `hello` server as lessons 01 and 02, on one thread,
//! with one `mio::Poll` loop. No read or write here ever waits: sockets are
//! non-blocking, and the only place the thread sleeps is `poll`, which wakes
//! it when *any* registered socket is ready. This is the skeleton of
//! `Reactor::run` in `src/reactor/mod.rs`, without the proxying, the timers
//! and the limits.
//!
//! Run it: `cargo run --release --example lesson03_poll -- 7003`.
//!
//! Shortcuts: request bodies are not read, no timeouts (an idle client is
//! kept forever, at the cost of a slab entry, not a thread), and a client
//! that sends requests without reading the answers is simply closed once
//! `MAX_PENDING_OUT` bytes are waiting for it (lesson 09 does better).

use std::io::{self, Read, Write};
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token. Connections use their slab key as token, and a slab
/// key never gets near `usize::MAX`, so the two cannot collide.
const LISTENER: Token = Token(usize::MAX);
const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_PENDING_OUT: usize = 64 * 1024;
const BODY: &[u8] = b"hello\n";

/// What the loop keeps per connection: everything a thread in lesson 02 kept
/// on its stack (where it was in the conversation) now lives in this struct.
struct Connection {
    socket: TcpStream,
    /// Bytes read but not yet answered: a partial head, or pipelined heads.
    unread: Vec<u8>,
    /// Answers the socket did not take yet (its send buffer was full).
    unsent: Vec<u8>,
    /// The last answer said `Connection: close` (or the peer sent EOF):
    /// close once `unsent` is empty.
    closing: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lesson03_poll: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        None => 7003,
        Some(arg) => arg
            .parse()
            .map_err(|_| io::Error::other("usage: lesson03_poll [PORT]"))?,
    };
    // `Poll` is epoll on Linux (kqueue on macOS): a set of sockets the
    // kernel watches for us. `Events` is where one `poll` call puts its news.
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(([127, 0, 0, 1], port).into())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Connection> = Slab::new();
    eprintln!("lesson 03: poll loop on http://127.0.0.1:{port}/ (one thread, every client)");

    loop {
        // The only place this thread ever waits: until at least one socket
        // is ready (no timeout: nothing else could wake us anyway).
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue; // a signal arrived (a debugger, say); just wait again
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => accept_all(&listener, &poll, &mut conns),
                Token(key) => {
                    // `get_mut` and not `[key]`: an event may name a connection
                    // closed earlier in this same batch. Lesson 06 shows why
                    // the real reactor also stamps a generation into tokens.
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    if !conn.on_ready() {
                        // Dropping the socket closes it, which also removes it
                        // from epoll: no `deregister` needed.
                        conns.remove(key);
                    }
                }
            }
        }
    }
}

/// One READABLE event on the listener may stand for many waiting clients:
/// registrations are edge-triggered, so accept until `WouldBlock`, or the
/// rest would sit in the backlog with no further event to announce them.
fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Connection>) {
    loop {
        let (mut socket, _peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("accept failed: {e}"); // e.g. out of descriptors
                return;
            }
        };
        let _ = socket.set_nodelay(true);
        let entry = conns.vacant_entry();
        // READABLE and WRITABLE, once, for good. Edge-triggered WRITABLE costs
        // nothing while we are not writing: the kernel only reports it when
        // a full send buffer gets room again, which is exactly when we want
        // to resume a partial write. (`Conn::desired_interest` in
        // `src/conn.rs` makes the same choice.)
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = poll
            .registry()
            .register(&mut socket, Token(entry.key()), interest)
        {
            eprintln!("register failed: {e}");
            continue;
        }
        entry.insert(Connection {
            socket,
            unread: Vec::new(),
            unsent: Vec::new(),
            closing: false,
        });
    }
}

impl Connection {
    /// Do everything the socket allows now, without waiting. Called for any
    /// event: readable, writable, hang-up, error, or spurious (then every
    /// call just says `WouldBlock`, and nothing happens). Returns false when
    /// the connection should be closed.
    fn on_ready(&mut self) -> bool {
        // 1. Read until `WouldBlock`. Edge-triggered: the kernel said
        //    "readable" once; if we stop before draining, it will not say it
        //    again for the bytes already there.
        let mut chunk = [0u8; 4096];
        while !self.closing {
            match self.socket.read(&mut chunk) {
                Ok(0) => self.closing = true, // EOF: answer what we have, then close
                Ok(n) => {
                    self.unread.extend_from_slice(&chunk[..n]);
                    if !self.answer_complete_heads() {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false, // reset by peer, etc.
            }
        }
        // 2. Write what is pending, now: we may have just produced answers,
        //    and no WRITABLE event will come for a send buffer that was never
        //    full. Stop at `WouldBlock` and keep the rest; the WRITABLE event
        //    that follows when the buffer drains brings us back here.
        while !self.unsent.is_empty() {
            match self.socket.write(&self.unsent) {
                Ok(0) => return false,
                Ok(n) => {
                    self.unsent.drain(..n); // a partial write: keep the rest
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        !(self.closing && self.unsent.is_empty())
    }

    /// Queue an answer for every complete head in `unread`. False: this
    /// client is misbehaving (head too long, or not reading its answers).
    fn answer_complete_heads(&mut self) -> bool {
        while let Some(end) = self.unread.windows(4).position(|w| w == b"\r\n\r\n") {
            let keep_alive = wants_keep_alive(&self.unread[..end]);
            self.unread.drain(..end + 4);
            let connection = if keep_alive { "keep-alive" } else { "close" };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                BODY.len()
            );
            self.unsent.extend_from_slice(head.as_bytes());
            self.unsent.extend_from_slice(BODY);
            if !keep_alive {
                // Anything after this request is ignored. NB: closing a socket
                // with unread bytes makes the kernel send RST, which can
                // destroy our answer in flight; the real proxy lingers
                // (`Closing` in `src/conn.rs`). Here, clients that say
                // `close` send nothing after it.
                self.closing = true;
                return true;
            }
        }
        self.unread.len() <= MAX_HEAD_BYTES && self.unsent.len() <= MAX_PENDING_OUT
    }
}

/// Lessons 01 and 02's rule: HTTP/1.1 keeps the connection unless told
/// `close`; HTTP/1.0 closes unless told `keep-alive`; unreadable means close.
fn wants_keep_alive(head: &[u8]) -> bool {
    let Ok(head) = std::str::from_utf8(head) else {
        return false;
    };
    let mut lines = head.split("\r\n");
    let mut keep_alive = lines.next().unwrap_or_default().ends_with("HTTP/1.1");
    let mut close = false;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        if name.trim().eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    keep_alive && !close
}
