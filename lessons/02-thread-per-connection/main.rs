//! Lesson 02: one thread per connection, and what that costs.
//!
//! The server is lesson 01's, with one change: each accepted connection gets
//! a thread of its own, so a slow client blocks only its own thread. Every
//! `read` and `write` still blocks; the kernel's scheduler now does the
//! juggling that lesson 01 could not. (`serve_connection` is copied from
//! lesson 01 unchanged but for its comments; `serve` is the fix, and the
//! rest of this file is the `--idle` experiment.)
//!
//! Two modes:
//!
//! - `lesson02_threads [PORT]` (default 7002): serve `hello` on 127.0.0.1.
//! - `lesson02_threads --idle N` (N at most 20000): start the server on a
//!   free loopback port, hold N idle keep-alive connections to it from a
//!   child process, and print this process's threads, resident memory (RSS)
//!   and virtual memory before and after. That is the price of "one thread
//!   per connection" when most connections are doing nothing, which is what
//!   keep-alive connections mostly do. The server and the clients each hold
//!   N sockets, so raise the descriptor limit first: `ulimit -n 20000` (or
//!   more, if `ulimit -Hn` allows).
//!
//! Shortcuts as in lesson 01: request bodies are not read, no timeouts, and
//! here also no limit on the number of threads.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const MAX_HEAD_BYTES: usize = 8 * 1024;
const BODY: &[u8] = b"hello\n";
/// `--idle` refuses more than this: enough to make the point, bounded so a
/// typo cannot exhaust the machine.
const MAX_IDLE: usize = 20_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lesson02_threads: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => serve_on(7002),
        [port] => serve_on(parse(port, "PORT")?),
        ["--idle", n] => idle_experiment(parse(n, "N")?),
        // Internal: the child process `--idle` starts to play the clients.
        ["--hold", n, addr] => hold_idle_clients(parse(n, "N")?, parse(addr, "ADDR")?),
        _ => Err(invalid(
            "usage: lesson02_threads [PORT] | lesson02_threads --idle N".into(),
        )),
    }
}

fn serve_on(port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("lesson 02: thread-per-connection server on http://127.0.0.1:{port}/");
    serve(listener, &Arc::new(AtomicUsize::new(0)));
    Ok(())
}

/// Accept forever; every connection is served on a thread of its own.
/// `open` counts connections being served (the `--idle` mode watches it).
fn serve(listener: TcpListener, open: &Arc<AtomicUsize>) {
    for accepted in listener.incoming() {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors (EMFILE), typically. Retrying at
                // once would spin a core; back off a little, as nginx does.
                eprintln!("accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        open.fetch_add(1, Ordering::SeqCst);
        let open_here = Arc::clone(open);
        // `thread::spawn` would panic when the system refuses a thread
        // (EAGAIN at a few thousand threads on a small machine, or a
        // `ulimit -u`); the `Builder` returns the error instead. Each thread
        // reserves a 2 MiB stack (Rust's default) of address space.
        let spawned = thread::Builder::new().spawn(move || {
            if let Err(e) = serve_connection(stream) {
                eprintln!("connection ended: {e}");
            }
            open_here.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            // The closure, and the stream in it, is dropped: the client sees
            // its connection closed, which is all we can do for it.
            eprintln!("cannot start a thread for a new connection: {e}");
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Lesson 01's loop, unchanged: blocking reads and writes, keep-alive. It now
/// blocks only its own thread.
fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut unread: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_len = loop {
            if let Some(end) = find(&unread, b"\r\n\r\n") {
                break end + 4;
            }
            if unread.len() > MAX_HEAD_BYTES {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            // BLOCKS this thread (only) until the client sends something.
            // An idle keep-alive client parks a whole thread right here.
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(());
            }
            unread.extend_from_slice(&chunk[..n]);
        };
        let keep_alive = wants_keep_alive(&unread[..head_len]);
        unread.drain(..head_len);
        stream.write_all(&response(keep_alive))?;
        if !keep_alive {
            return Ok(());
        }
    }
}

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

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it
/// unless told `keep-alive`. `close` wins; anything unreadable means close.
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ----- the idle experiment ---------------------------------------------------

/// Serve on a free loopback port, let a child process open `n` connections
/// and leave them idle, and show what they cost this process.
///
/// The clients live in another process so that the figures below are the
/// server's alone, and so each process needs only `n` descriptors, not 2n.
fn idle_experiment(n: usize) -> io::Result<()> {
    if n == 0 || n > MAX_IDLE {
        return Err(invalid(format!("--idle N: N must be 1 to {MAX_IDLE}")));
    }
    check_fd_limit(n)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    let server_open = Arc::clone(&open);
    thread::Builder::new().spawn(move || serve(listener, &server_open))?;
    thread::sleep(Duration::from_millis(100)); // let the accept thread settle
    let before = Sample::take()?;
    let overflows_before = listen_overflows();

    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--hold", &n.to_string(), &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // The child prints one line once every connection is open (or exits
    // with an error, which ends its stdout).
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    if !line.starts_with("connected") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other(
            "the client process could not open its connections",
        ));
    }
    let served_all = wait_until(Duration::from_secs(120), || {
        open.load(Ordering::SeqCst) >= n
    });
    let opening = started.elapsed();
    thread::sleep(Duration::from_millis(200)); // let new threads reach `read`
    let during = Sample::take()?;
    let overflows = listen_overflows().saturating_sub(overflows_before);

    // Closing the child's stdin tells it to exit, which closes its sockets:
    // every server thread's `read` returns 0 and the thread ends.
    let closing_started = Instant::now();
    drop(child.stdin.take());
    let _ = child.wait();
    // A thread has finished serving before it has finished exiting (its
    // stack is unmapped on the way out): wait until the threads are gone.
    wait_until(Duration::from_secs(120), || {
        open.load(Ordering::SeqCst) == 0
            && Sample::take().is_ok_and(|now| now.threads <= before.threads)
    });
    let closing = closing_started.elapsed();
    let after = Sample::take()?;

    println!("thread per connection, {n} idle keep-alive clients (this process only):");
    println!();
    println!(
        "{:<24} {:>8} {:>12} {:>14}",
        "", "threads", "RSS", "virtual"
    );
    before.print("before");
    during.print(&format!("{n} idle clients"));
    after.print("after they left");
    let per = |a: u64, b: u64| (b.saturating_sub(a) as f64) / n as f64;
    println!();
    println!(
        "per idle connection: {:.1} KiB resident, {:.0} KiB virtual",
        per(before.rss_kib, during.rss_kib),
        per(before.virtual_kib, during.virtual_kib)
    );
    println!(
        "opening them (connect, accept, spawn) took {:.1} s; their threads exiting took {:.1} s",
        opening.as_secs_f64(),
        closing.as_secs_f64()
    );
    println!(
        "kernel stacks (whole machine, not in RSS): {} MiB before, {} MiB with the clients",
        before.kernel_stack_kib / 1024,
        during.kernel_stack_kib / 1024
    );
    println!(
        "listen queue overflows meanwhile: {overflows} (each one: a client's SYN dropped, retried after 1 s)"
    );
    if !served_all {
        println!(
            "NB: only {} of {n} connections were being served (see the errors above)",
            open.load(Ordering::SeqCst)
        );
    }
    Ok(())
}

/// The child's side: open `n` connections to `addr`, say so, and hold them,
/// sending nothing, until stdin closes.
fn hold_idle_clients(n: usize, addr: SocketAddr) -> io::Result<()> {
    if !addr.ip().is_loopback() || n > MAX_IDLE {
        return Err(invalid(format!(
            "--hold: loopback only, at most {MAX_IDLE}"
        )));
    }
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect(addr) {
            Ok(stream) => clients.push(stream),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "client {i} of {n} could not connect: {e} (is `ulimit -n` high enough?)"
                    ),
                ));
            }
        }
    }
    println!("connected {}", clients.len());
    io::stdout().flush()?;
    // Blocks until the parent closes our stdin (or dies).
    let mut sink = Vec::new();
    io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

/// What `/proc/self/status` says about this process, plus the memory the
/// kernel holds for all threads' kernel-side stacks (`/proc/meminfo`: the
/// whole machine, so other work shows up in it too).
struct Sample {
    threads: u64,
    rss_kib: u64,
    virtual_kib: u64,
    kernel_stack_kib: u64,
}

impl Sample {
    fn take() -> io::Result<Sample> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        Ok(Sample {
            threads: field(&status, "Threads:"),
            rss_kib: field(&status, "VmRSS:"),
            virtual_kib: field(&status, "VmSize:"),
            kernel_stack_kib: field(&meminfo, "KernelStack:"),
        })
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<24} {:>8} {:>9} MiB {:>11} MiB",
            self.threads,
            self.rss_kib / 1024,
            self.virtual_kib / 1024
        );
    }
}

/// The number after `name` in lines like `VmRSS:     2048 kB` or
/// `Threads: 3`; 0 if there is none.
fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// `TcpExt: ListenOverflows` from `/proc/net/netstat` (this network
/// namespace): connection attempts dropped because a listener's accept
/// queue was full. 0 if unreadable.
fn listen_overflows() -> u64 {
    let Ok(netstat) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    // Pairs of lines: `TcpExt: Name1 Name2 ...` then `TcpExt: 1 2 ...`.
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// Fail early, with the fix, if this process may not open `n` sockets.
fn check_fd_limit(n: usize) -> io::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    // `Max open files            1024                 1048576              files`
    let soft: Option<u64> = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok());
    match soft {
        Some(soft) if soft < n as u64 + 64 => Err(invalid(format!(
            "{n} connections need more than {soft} open files: run `ulimit -n {}` first (at most `ulimit -Hn`)",
            (n + 1024).max(20_000)
        ))),
        _ => Ok(()),
    }
}

/// Poll `done` every 10 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> io::Result<T> {
    text.parse()
        .map_err(|_| invalid(format!("{what}: cannot understand {text:?}")))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
