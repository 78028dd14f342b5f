//! Static files: serving a `root` route from the poll loop.
//!
//! Three ideas, one file each:
//!
//! - **A path is a security boundary** (this file). A request names a file
//!   by a string the client wrote; the proxy must never open anything
//!   outside the route's `root`, whatever `..`, symlinks or encodings the
//!   string holds. String checks (`src/route.rs` resolves dot-segments and
//!   refuses disguised separators) are the first wall; the kernel is the
//!   second: every file is opened with `openat2(2)` relative to the root's
//!   directory descriptor with `RESOLVE_BENEATH`, so a symlink that points
//!   out of the root fails to resolve (`EXDEV`) instead of being followed.
//!   Where `openat2` is missing (Linux before 5.6, or a seccomp filter), a
//!   walk opens one component at a time with `O_NOFOLLOW`: stricter (no
//!   symlinks at all), and just as unable to leave the root.
//! - **What to answer** (`rules.rs`, sans-IO): conditional requests (304),
//!   ranges (206, 416), the head's fields.
//! - **How to send it** (`reply.rs`): `sendfile(2)` from the file to the
//!   socket, no copy through user space, under the same backpressure,
//!   turn budget and `write_ms` as a proxied body.
//!
//! Lesson: `lessons/16-static-files`.

pub mod cache;
pub mod reply;
pub mod rules;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::{Mode, fstat, fstatat};
use std::sync::Arc;

use cache::{Kind, OpenFiles, Stat};

use crate::config::Config;

/// The directories of the static routes, held open for the life of the
/// config: every file is opened *relative to* one of them (see
/// [`open_beneath`]), never by a path string from the root of the disk.
#[derive(Default)]
pub struct Roots {
    dirs: Vec<OwnedFd>,
    /// Files kept open for the next request (`cache.rs`).
    pub open_files: OpenFiles,
}

impl Roots {
    /// Open each `root` of `config.routes`, in route order (the order
    /// `crate::route::Router` numbers them in).
    pub fn open(config: &Config) -> io::Result<Roots> {
        let mut dirs = Vec::new();
        for route in &config.routes {
            if let Some(root) = &route.root {
                dirs.push(open_dir(root).map_err(|e| {
                    io::Error::new(e.kind(), format!("root {}: {e}", root.display()))
                })?);
            }
        }
        Ok(Roots {
            dirs,
            open_files: OpenFiles::default(),
        })
    }

    /// Open `rel` beneath root `root` (`""` is the root itself), or take
    /// the descriptor kept from last time if the path still names that
    /// same, unchanged file (see `cache.rs`).
    pub fn open_file(
        &mut self,
        root: usize,
        rel: &[u8],
        now_ms: u64,
    ) -> io::Result<(Arc<File>, Stat)> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        let dir = self
            .dirs
            .get(root)
            .ok_or_else(|| io::Error::other("no such static root"))?
            .as_fd();
        if self.open_files.contains(root, rel) {
            let path = Path::new(std::ffi::OsStr::from_bytes(rel));
            match fstatat(dir, path, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    let stat = Stat::from_nix(&st);
                    if let Some(file) = self.open_files.hit(root, rel, &stat, now_ms) {
                        return Ok((file, stat));
                    }
                }
                Err(_) => self.open_files.forget(root, rel),
            }
        }
        let file = open_beneath(dir, rel)?;
        let stat = Stat::from_nix(&fstat(&file)?);
        let file = Arc::new(file);
        if stat.kind != Kind::Other {
            self.open_files
                .keep(root, rel, Arc::clone(&file), stat, now_ms);
        }
        Ok((file, stat))
    }
}

/// A directory, opened only to be a starting point (`O_PATH`: no reading,
/// no permission needed beyond search).
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(open(path, flags, Mode::empty())?)
}

/// How a file is opened for serving: read-only, never becoming the
/// controlling terminal, and non-blocking, so that a FIFO someone left in
/// the root cannot hang the loop in `open` waiting for a writer.
fn read_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY
}

/// `openat2` answered `ENOSYS` once: do not ask again.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Open `rel` (a path below `dir`, without a leading `/`) for reading,
/// never resolving outside `dir`. The kernel's refusal comes back as it
/// is: `EXDEV` for a path that would leave `dir` under `openat2`, `ELOOP`
/// (or `ENOTDIR`) for a symlink under the walk; the caller answers 404.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &[u8]) -> io::Result<File> {
    let path = Path::new(std::ffi::OsStr::from_bytes(rel));
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        // No magic links (`/proc/self/fd/N`): they jump anywhere.
        let how = OpenHow::new()
            .flags(read_flags())
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(dir, path, how) {
            Ok(fd) => return Ok(File::from(fd)),
            // Not in this kernel, or filtered: the walk does the same job.
            Err(Errno::ENOSYS) | Err(Errno::EPERM) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                log::info!("openat2 is not available here: static files use the O_NOFOLLOW walk");
            }
            // EAGAIN: a concurrent rename inside the root; the walk is
            // not fooled by it either.
            Err(Errno::EAGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    open_beneath_by_walk(dir, rel)
}

/// The fallback: one component at a time, each with `O_NOFOLLOW`, so no
/// symlink is ever followed, and `..` is refused outright (the router has
/// already resolved every dot-segment, so one here is an attack).
pub fn open_beneath_by_walk(dir: BorrowedFd<'_>, rel: &[u8]) -> io::Result<File> {
    let parts: Vec<&[u8]> = rel
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.iter().any(|p| *p == b"..") {
        return Err(Errno::EXDEV.into());
    }
    let Some((last, dirs)) = parts.split_last() else {
        // The root itself.
        return Ok(File::from(openat(dir, ".", read_flags(), Mode::empty())?));
    };
    let mut current: Option<OwnedFd> = None;
    for part in dirs {
        let at = current.as_ref().map_or(dir, AsFd::as_fd);
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = openat(at, std::ffi::OsStr::from_bytes(part), flags, Mode::empty())?;
        current = Some(next);
    }
    let at = current.as_ref().map_or(dir, AsFd::as_fd);
    let flags = read_flags() | OFlag::O_NOFOLLOW;
    let fd = openat(at, std::ffi::OsStr::from_bytes(last), flags, Mode::empty())?;
    Ok(File::from(fd))
}
