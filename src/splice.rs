//! Zero-copy relay of a large body: upstream socket -> pipe -> client
//! socket, with `splice(2)`.
//!
//! Through a buffer, every body byte is copied twice: from the kernel into
//! ours (`read`), and back (`write`). For a long body those copies are most
//! of the work. `splice` moves page references instead: from a socket into
//! a pipe, and from the pipe into another socket, without the bytes ever
//! entering user space. The pipe is the buffer now (up to 1 MiB, in the
//! kernel), and the same backpressure applies: when the client does not
//! take what the pipe holds, the proxy stops filling it.
//!
//! One subtlety decides the whole design. A non-blocking splice from a
//! socket into a pipe says `EAGAIN` when the socket is empty *or* when the
//! pipe is full, and the two need opposite reactions (wait for the socket;
//! wait for the client). So the pipe is only filled while it is empty and
//! only drained while it holds bytes: then each `EAGAIN` has one meaning.
//!
//! Used only for bodies framed by `Content-Length` or by close, with nothing
//! left in the buffers (chunked bodies must be looked at; see
//! `src/http/framing.rs`), and only when the body is long enough to repay
//! the pipe's two descriptors.
//!
//! Lesson: `lessons/13-measuring` (where the reactor bent for speed).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::unistd::pipe2;

use crate::conn::Readiness;

/// The capacity asked for each pipe, and so the most one splice moves.
///
/// A pipe starts with 64 KiB (16 page slots), and one splice moves at most
/// a pipeful: a 1 MiB body took 34 splices. Grown to 1 MiB (Linux's
/// default `pipe-max-size`, the most an unprivileged process may ask), the
/// same body takes about 4, and the client gets fewer, larger writes:
/// 1 MiB bodies at ten connections went from 1,650 to 2,081 MiB/s (HAProxy:
/// 1,885 in the same run; lesson `13-measuring`). It costs no user-space
/// memory: the pipe holds references to the socket's pages. What it may
/// hold in the kernel for a slow client, it holds instead of the upstream
/// socket's receive buffer, which would otherwise fill up the same way.
pub const PIPE_BYTES: usize = 1024 * 1024;

/// A pipe smaller than this is not worth its two descriptors and the
/// extra syscalls. The kernel hands out such pipes once the user's pipe
/// budget (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by default, not
/// enforced for root) is spent: then bodies take the buffer road.
const SMALLEST_USEFUL_PIPE: usize = 64 * 1024;

/// A body at least this long goes through a pipe rather than the buffer.
pub const SPLICE_THRESHOLD: u64 = 256 * 1024;

/// What one splice did.
#[derive(Debug)]
pub enum Moved {
    Bytes(usize),
    /// The source has nothing now, or the destination takes nothing now.
    Blocked,
    /// The source socket sent FIN.
    Eof,
    Failed(io::Error),
}

/// A pipe, how much it can hold, and how many body bytes it holds.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    held: usize,
}

impl Pipe {
    /// A pipe grown to [`PIPE_BYTES`] if the kernel allows, or as large as
    /// it is; an error if that is too small to be worth it.
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let capacity = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32)) {
            Ok(granted) => granted,
            // Over `pipe-max-size` or the user's pipe budget: keep its size.
            Err(_) => fcntl(&write, FcntlArg::F_GETPIPE_SZ).map_err(io::Error::from)?,
        };
        let capacity = usize::try_from(capacity).unwrap_or(0);
        if capacity < SMALLEST_USEFUL_PIPE {
            return Err(io::Error::other(format!(
                "the kernel gave a pipe of only {capacity} bytes"
            )));
        }
        Ok(Pipe {
            read,
            write,
            capacity,
            held: 0,
        })
    }

    /// How many bytes one fill may move.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes waiting in the pipe for the client.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Move up to `max` bytes from `socket` into the (empty) pipe.
    pub fn fill<S: AsFd>(&mut self, socket: &S, ready: &mut Readiness, max: usize) -> Moved {
        if self.held > 0 || max == 0 || !ready.readable {
            return Moved::Blocked;
        }
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        loop {
            return match splice(
                socket.as_fd(),
                None,
                self.write.as_fd(),
                None,
                max.min(self.capacity),
                flags,
            ) {
                Ok(0) => {
                    ready.readable = false;
                    Moved::Eof
                }
                Ok(n) => {
                    // No short-read shortcut here: a pipe counts pages, so a
                    // short splice does not prove the socket drained.
                    self.held = n;
                    ready.reads += 1;
                    Moved::Bytes(n)
                }
                // The pipe is empty, so EAGAIN can only mean the socket is.
                Err(Errno::EAGAIN) => {
                    ready.readable = false;
                    Moved::Blocked
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    ready.readable = false;
                    Moved::Failed(e.into())
                }
            };
        }
    }

    /// Move what the pipe holds into `socket`.
    pub fn drain<S: AsFd>(&mut self, socket: &S, ready: &mut Readiness) -> Moved {
        if self.held == 0 || !ready.writable {
            return Moved::Blocked;
        }
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        loop {
            return match splice(
                self.read.as_fd(),
                None,
                socket.as_fd(),
                None,
                self.held,
                flags,
            ) {
                Ok(n) => {
                    self.held -= n;
                    ready.writes += 1;
                    Moved::Bytes(n)
                }
                // The pipe holds bytes, so EAGAIN can only mean the socket
                // is full: wait for WRITABLE.
                Err(Errno::EAGAIN) => {
                    ready.writable = false;
                    Moved::Blocked
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    ready.writable = false;
                    Moved::Failed(e.into())
                }
            };
        }
    }
}
