//! Open files kept for the next request for the same path.
//!
//! Serving a small file costs seven syscalls, and three of them are
//! `openat2`, `statx` and `close`: the same work for every request of the
//! same file. Here the descriptor and what `fstat` said stay, keyed by the
//! path below the root. A hit is checked with one `fstatat` of the path
//! (no symlink followed): same device, inode, size and modification time,
//! and the kept descriptor is used; anything else (a change in place, a
//! rename over it, a removal) and the path is opened afresh, beneath the
//! root, as on a miss. So a hit costs one syscall instead of three and
//! answers are never stale: unlike nginx's `open_file_cache`, which trusts
//! an entry for `open_file_cache_valid` (60 s), nothing is served from an
//! older file than the one at the path now.
//!
//! Measured by `benches/static.sh` (4 KiB file, one loop, loopback): seven
//! syscalls per request before, five after (see the README).
//!
//! Bounded: at most [`CAPACITY`] descriptors per loop, the least recently
//! used pushed out first, and an entry unused for [`IDLE_MS`] is closed by
//! [`OpenFiles::sweep`]: a removed file's disk space is not held forever.
//!
//! Plain data: time is passed in, and the syscalls are the caller's.
//!
//! Lesson: `lessons/16-static-files`.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

/// Descriptors kept per loop.
pub const CAPACITY: usize = 256;

/// An entry not used for this long is closed.
pub const IDLE_MS: u64 = 10_000;

/// What `fstat` says about a file, in the terms the comparison needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A FIFO, a socket, a device: never served.
    Other,
}

impl Stat {
    pub fn from_nix(st: &nix::sys::stat::FileStat) -> Stat {
        let kind = match st.st_mode & nix::libc::S_IFMT {
            nix::libc::S_IFREG => Kind::File,
            nix::libc::S_IFDIR => Kind::Dir,
            _ => Kind::Other,
        };
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            len: st.st_size.max(0) as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            kind,
        }
    }
}

struct Entry {
    file: Arc<File>,
    stat: Stat,
    used_ms: u64,
}

/// The kept descriptors, per static root, by path below the root.
#[derive(Default)]
pub struct OpenFiles {
    roots: Vec<HashMap<Vec<u8>, Entry>>,
    count: usize,
}

impl OpenFiles {
    /// The kept file for `rel` of `root`, if `now_stat` (what the path
    /// says now) is the same file, unchanged. A stale entry is dropped.
    pub fn hit(
        &mut self,
        root: usize,
        rel: &[u8],
        now_stat: &Stat,
        now_ms: u64,
    ) -> Option<Arc<File>> {
        let map = self.roots.get_mut(root)?;
        let entry = map.get_mut(rel)?;
        if entry.stat != *now_stat {
            map.remove(rel);
            self.count -= 1;
            return None;
        }
        entry.used_ms = now_ms;
        Some(Arc::clone(&entry.file))
    }

    /// An entry exists for `rel`: only then is the path worth a `fstatat`
    /// (a path never served is a miss without a syscall).
    pub fn contains(&self, root: usize, rel: &[u8]) -> bool {
        self.roots.get(root).is_some_and(|m| m.contains_key(rel))
    }

    pub fn forget(&mut self, root: usize, rel: &[u8]) {
        if let Some(map) = self.roots.get_mut(root)
            && map.remove(rel).is_some()
        {
            self.count -= 1;
        }
    }

    /// Keep `file` for the next request of `rel`, pushing out the least
    /// recently used entry when full.
    pub fn keep(&mut self, root: usize, rel: &[u8], file: Arc<File>, stat: Stat, now_ms: u64) {
        self.forget(root, rel);
        if self.count >= CAPACITY {
            // O(CAPACITY), only when full: cheaper than keeping an order.
            let oldest = self
                .roots
                .iter()
                .enumerate()
                .flat_map(|(r, m)| m.iter().map(move |(k, e)| (e.used_ms, r, k)))
                .min_by_key(|(used, _, _)| *used)
                .map(|(_, r, k)| (r, k.clone()));
            if let Some((r, k)) = oldest {
                self.forget(r, &k);
            }
        }
        if self.roots.len() <= root {
            self.roots.resize_with(root + 1, HashMap::new);
        }
        self.roots[root].insert(
            rel.to_vec(),
            Entry {
                file,
                stat,
                used_ms: now_ms,
            },
        );
        self.count += 1;
    }

    /// Close entries unused for [`IDLE_MS`]. Returns how many are left.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        for map in &mut self.roots {
            map.retain(|_, e| now_ms.saturating_sub(e.used_ms) < IDLE_MS);
        }
        self.count = self.roots.iter().map(HashMap::len).sum();
        self.count
    }

    /// Descriptors held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}
