//! `workers`: several poll loops, each on its own `SO_REUSEPORT` listener.
//! Told on the real binary, because workers are threads of the process.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child process however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Nanoseconds of CPU a thread of `pid` has used, by thread name
/// (`schedstat`'s first field: exact, unlike the 10 ms ticks of `stat`).
fn thread_cpu_ns(pid: u32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            return stat.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// Two workers share one port: many short connections all get answers,
/// and the second worker's thread did part of the work (the kernel spread
/// the connections over both listeners).
#[test]
fn two_workers_share_the_port_and_the_load() {
    let upstream = support::Upstream::echo("echo");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };
    let config = format!(
        r#"{{ "listen": "127.0.0.1:{port}",
  "upstreams": [{{ "host": "127.0.0.1", "port": {} }}],
  "timeouts": {{ "connect_ms": 1000, "read_ms": 5000, "write_ms": 5000, "total_ms": 10000 }},
  "limits": {{ "max_client_conns": 1000, "max_conns_per_upstream": 100 }},
  "logging": {{ "level": "warn" }},
  "workers": 2 }}"#,
        upstream.addr.port()
    );
    let path = std::env::temp_dir().join(format!("ferroxy-workers-{}.json", std::process::id()));
    std::fs::write(&path, config).expect("write the config");
    let child = Command::new(env!("CARGO_BIN_EXE_ferroxy"))
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferroxy");
    let proxy = Running(child);
    let pid = proxy.0.id();

    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ferroxy did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut answered = 0;
    for i in 0..400 {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let request = format!("GET /n/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).expect("send");
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        if reply.starts_with("HTTP/1.1 200") {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 400,
        "every connection should be answered, by either worker"
    );

    let first = thread_cpu_ns(pid, "ferroxy").expect("the first worker thread exists");
    let second = thread_cpu_ns(pid, "ferroxy-worker-").expect("a second worker thread exists");
    // Idle, a worker's loop sleeps in epoll_wait and uses next to no CPU;
    // serving a share of 400 connections takes milliseconds.
    assert!(
        second > 1_000_000,
        "the second worker should have served some of 400 connections \
         (CPU: first {first} ns, second {second} ns)"
    );
    let _ = std::fs::remove_file(&path);
}
