//! One static answer on its way: the head the proxy composed, then the
//! file's bytes, sent by `sendfile(2)`.
//!
//! [`plan`] turns a routed request into a [`FileReply`] (or a refusal):
//! open the file beneath its root, look at it (`fstat`), and let
//! `rules.rs` decide between 200, 206, 304 and 416. [`FileReply::pump`]
//! then moves it the way the proxied bodies move: as far as the socket
//! takes without blocking, at most the turn's budget, and when the socket
//! is full it stops and waits for WRITABLE, so a slow reader costs one
//! open file and no memory at all. `sendfile` copies from the page cache
//! to the socket inside the kernel: no buffer of ours holds the bytes.
//!
//! Lesson: `lessons/16-static-files`.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::errno::Errno;

use super::Roots;
use super::cache::Kind;
use super::rules::{self, Conditions, FileMeta};
use crate::conn::{Outbox, Outgoing, Readiness, WriteOutcome, write_two, write_two_before_fin};
use crate::http::framing::BodyFraming;
use crate::http::head::find_header;
use crate::http::request::RequestHead;

/// Bytes one `sendfile` call may move: the turn budget usually says less.
const MAX_SENDFILE: usize = 1 << 20;

/// Bytes read from the file per write when `sendfile` cannot be used (TLS):
/// one TLS record's worth, on the stack.
const COPY_PIECE: usize = 16 * 1024;

/// A routed request for a file: where it was routed, and what it asked.
pub struct FileRequest<'a> {
    pub roots: &'a mut Roots,
    pub root: usize,
    /// The resolved path below the route's prefix (see `route::Handler`).
    pub rest: &'a [u8],
    pub disguised_separator: bool,
    pub head: &'a RequestHead,
    /// The reactor's clock, for the open-file cache.
    pub now_ms: u64,
}

/// The answer to a file request.
pub enum Plan {
    Reply(FileReply),
    /// An answer of the proxy's own, with its extra headers (`Allow`,
    /// `Location`) and, for the log, why.
    Refuse {
        status: u16,
        headers: Vec<String>,
        why: String,
        /// Someone may be probing (a symlink out of the root): log loudly.
        suspicious: bool,
    },
}

/// A static answer being written: `head` first (in the client's outbox),
/// then `[offset, end)` of `file`.
pub struct FileReply {
    pub status: u16,
    file: Option<Arc<File>>,
    offset: u64,
    end: u64,
    /// Bytes of the head and the body written so far (for the access log).
    pub bytes_out: u64,
    /// The client may send another request afterwards.
    pub keep_alive: bool,
}

/// What one pump did.
#[derive(Debug)]
pub enum Pump {
    /// Bytes moved; call again.
    Moved,
    /// The socket is full (or the budget spent): wait.
    Blocked,
    /// Everything is written.
    Done,
    /// The client's socket failed, or the file shrank under us.
    Failed(String),
}

/// Decide the answer to a routed request and prepare it. The head goes
/// into `out`; the reply says what follows.
pub fn plan(req: &mut FileRequest<'_>, out: &mut Outbox) -> Plan {
    let head = req.head;
    let refuse = |status: u16, why: &str| Plan::Refuse {
        status,
        headers: Vec::new(),
        why: why.to_string(),
        suspicious: status == 400,
    };
    if head.method != "GET" && head.method != "HEAD" {
        return Plan::Refuse {
            status: 405,
            headers: vec!["Allow: GET, HEAD".to_string()],
            why: format!("{} on a static route", head.method),
            suspicious: false,
        };
    }
    if req.disguised_separator {
        return refuse(400, "an encoded slash or a backslash in a static path");
    }
    if req.rest.is_empty() {
        // The route's prefix itself: it is a directory, and a directory is
        // named with its slash, or relative links inside it break.
        return redirect_with_slash(head);
    }
    let rel = below_root(req.rest);
    let (mut file, mut meta) = match req.roots.open_file(req.root, rel, req.now_ms) {
        Ok(found) => found,
        Err(e) => return refusal_for(&e, req.rest),
    };
    let is_index = meta.kind == Kind::Dir;
    if is_index {
        if !req.rest.ends_with(b"/") {
            return redirect_with_slash(head);
        }
        // Opened from the root again, not from the directory: a symlink
        // `index.html -> ../x/index.html` may stay inside the root.
        let index = [rel, b"index.html"].concat();
        match req.roots.open_file(req.root, &index, req.now_ms) {
            Ok((f, m)) if m.kind == Kind::File => (file, meta) = (f, m),
            Ok(_) => return refuse(404, "index.html is not a regular file"),
            Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => {
                return refuse(404, "a directory without index.html (never listed)");
            }
            Err(e) => return refusal_for(&e, req.rest),
        }
    } else if meta.kind != Kind::File {
        return refuse(404, "not a regular file (a FIFO, a device...)");
    }
    let facts = FileMeta {
        len: meta.len,
        modified_secs: meta.mtime,
        modified_nanos: meta.mtime_nsec.clamp(0, 999_999_999) as u32,
        inode: meta.ino,
    };
    let etag = rules::etag(&facts);
    let text =
        |name: &str| find_header(&head.headers, name).and_then(|v| std::str::from_utf8(v).ok());
    let conditions = Conditions {
        if_none_match: text("if-none-match"),
        if_modified_since: text("if-modified-since"),
        range: text("range"),
        if_range: text("if-range"),
    };
    let answer = rules::decide(head.method == "GET", &conditions, &facts, &etag);
    let path = if is_index {
        "index.html"
    } else {
        std::str::from_utf8(rel).unwrap_or("")
    };
    // A body the client sent with its GET is not read: the connection
    // closes after the answer (`Closing` discards what it still sends).
    let keep_alive =
        head.keep_alive && matches!(head.body, BodyFraming::Empty | BodyFraming::Length(0));
    let content_type = rules::content_type(path);
    let reply_head = rules::response_head(
        answer,
        &facts,
        &etag,
        content_type,
        !head.is_head(),
        keep_alive,
    );
    out.compose().extend_from_slice(&reply_head.bytes);
    let (offset, end) = reply_head.body.unwrap_or((0, 0));
    Plan::Reply(FileReply {
        status: reply_head.status,
        file: (end > offset).then_some(file),
        offset,
        end,
        bytes_out: 0,
        keep_alive,
    })
}

impl FileReply {
    /// Write the head, then send the file, as far as the socket and the
    /// budget allow.
    pub fn pump<S: Outgoing>(
        &mut self,
        socket: &mut S,
        ready: &mut Readiness,
        out: &mut Outbox,
        budget: &mut usize,
    ) -> Pump {
        if !out.is_empty() {
            // MSG_MORE when file bytes follow: the head waits a moment for
            // them, and they leave in the same segment.
            let written = if self.file.is_some() {
                write_two_before_fin(socket, ready, out.pending(), &[])
            } else {
                write_two(socket, ready, out.pending(), &[])
            };
            match written {
                WriteOutcome::Wrote(n) => {
                    out.advance(n);
                    self.bytes_out += n as u64;
                    if !out.is_empty() {
                        return Pump::Moved;
                    }
                }
                WriteOutcome::Blocked => return Pump::Blocked,
                WriteOutcome::Failed(e) => return Pump::Failed(format!("write failed: {e}")),
            }
        }
        let Some(file) = &self.file else {
            return Pump::Done;
        };
        if self.offset >= self.end {
            return Pump::Done;
        }
        if !ready.writable || *budget == 0 {
            return Pump::Blocked;
        }
        let want = (self.end - self.offset).min(MAX_SENDFILE as u64) as usize;
        let want = want.min(*budget);
        // A short count below must mean "the socket is full", so the copy
        // is never offered more than it takes in one piece.
        let want = match socket.raw_fd() {
            Some(_) => want,
            None => want.min(COPY_PIECE),
        };
        let mut offset = self.offset as i64;
        loop {
            let sent = match socket.raw_fd() {
                Some(fd) => {
                    nix::sys::sendfile::sendfile64(fd, file.as_fd(), Some(&mut offset), want)
                }
                None => copy_through(socket, file, &mut offset, want),
            };
            return match sent {
                Ok(0) => Pump::Failed("the file is shorter than when it was opened".to_string()),
                Ok(n) => {
                    // As with a short write: the socket buffer is full.
                    if n < want {
                        ready.writable = false;
                    }
                    ready.writes += 1;
                    self.offset = offset as u64;
                    self.bytes_out += n as u64;
                    *budget = budget.saturating_sub(n);
                    if self.offset >= self.end {
                        Pump::Done
                    } else {
                        Pump::Moved
                    }
                }
                Err(Errno::EAGAIN) => {
                    ready.writable = false;
                    Pump::Blocked
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    ready.writable = false;
                    Pump::Failed(format!("sendfile failed: {e}"))
                }
            };
        }
    }
}

/// What `sendfile` does, for a socket that must see the bytes first (a TLS
/// connection encrypts them): read a piece of the file at `offset` and
/// write it. What the socket does not take is read again next time (the
/// read is positional), so nothing is held between calls.
fn copy_through<S: Outgoing>(
    socket: &mut S,
    file: &File,
    offset: &mut i64,
    want: usize,
) -> Result<usize, Errno> {
    use std::os::unix::fs::FileExt;
    let mut piece = [0u8; COPY_PIECE];
    let want = want.min(COPY_PIECE);
    let as_errno = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock => Errno::EAGAIN,
        io::ErrorKind::Interrupted => Errno::EINTR,
        _ => e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
    };
    let read = file
        .read_at(&mut piece[..want], *offset as u64)
        .map_err(as_errno)?;
    if read == 0 {
        return Ok(0);
    }
    let n = socket.write(&piece[..read]).map_err(as_errno)?;
    *offset += n as i64;
    Ok(n)
}

/// Why a file could not be opened, as an answer. An escape (a symlink out
/// of the root) is a 404 like a missing file: the client learns nothing
/// about what lies outside.
fn refusal_for(e: &io::Error, rest: &[u8]) -> Plan {
    let shown = String::from_utf8_lossy(rest);
    let (status, why, suspicious) = match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG => {
            (404, format!("no file {shown}"), false)
        }
        Errno::EXDEV | Errno::ELOOP => (
            404,
            format!("{shown} resolves outside the root (a symlink); refused"),
            true,
        ),
        Errno::EACCES | Errno::EPERM => (403, format!("{shown}: permission denied"), false),
        _ => (500, format!("{shown}: {e}"), true),
    };
    Plan::Refuse {
        status,
        headers: Vec::new(),
        why,
        suspicious,
    }
}

/// 301 to the same path with a slash added (the query kept).
fn redirect_with_slash(head: &RequestHead) -> Plan {
    let target = crate::http::head::origin_form(&head.target);
    let (path, query) = match target.find('?') {
        Some(i) => (&target[..i], &target[i..]),
        None => (&target[..], ""),
    };
    Plan::Refuse {
        status: 301,
        headers: vec![format!("Location: {path}/{query}")],
        why: "a directory without its trailing slash".to_string(),
        suspicious: false,
    }
}

/// `/css/a.css` -> `css/a.css`: the path relative to the root's
/// descriptor (`openat2` refuses an absolute one under `RESOLVE_BENEATH`).
fn below_root(rest: &[u8]) -> &[u8] {
    let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
    &rest[start..]
}
