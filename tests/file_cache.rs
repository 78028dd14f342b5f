//! The open-file cache (`src/files/cache.rs`), sans-IO: time is passed in,
//! files are temp files, nothing is served.

use std::fs::File;
use std::sync::Arc;

use ferroxy::files::cache::{CAPACITY, IDLE_MS, Kind, OpenFiles, Stat};

fn stat(ino: u64, len: u64) -> Stat {
    Stat {
        dev: 1,
        ino,
        len,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        kind: Kind::File,
    }
}

fn some_file() -> Arc<File> {
    Arc::new(File::open("/dev/null").expect("/dev/null opens"))
}

/// A hit needs the same file, unchanged: another inode, size or time is a
/// miss, and the stale entry goes.
#[test]
fn only_the_same_unchanged_file_is_a_hit() {
    let mut cache = OpenFiles::default();
    cache.keep(0, b"a.txt", some_file(), stat(7, 10), 0);
    assert!(cache.hit(0, b"a.txt", &stat(7, 10), 1).is_some());
    assert!(
        cache.hit(1, b"a.txt", &stat(7, 10), 1).is_none(),
        "another root"
    );
    assert!(cache.hit(0, b"a.txt", &stat(7, 11), 2).is_none(), "grew");
    assert!(!cache.contains(0, b"a.txt"), "dropped once stale");
    cache.keep(0, b"a.txt", some_file(), stat(7, 10), 3);
    assert!(
        cache.hit(0, b"a.txt", &stat(8, 10), 4).is_none(),
        "renamed over"
    );
    assert_eq!(cache.len(), 0);
}

/// Never more than CAPACITY descriptors; the least recently used goes.
#[test]
fn the_cache_is_bounded_and_pushes_out_the_least_recently_used() {
    let mut cache = OpenFiles::default();
    for i in 0..CAPACITY as u64 {
        cache.keep(0, format!("{i}").as_bytes(), some_file(), stat(i, 1), i);
    }
    assert_eq!(cache.len(), CAPACITY);
    // Touch the oldest, so the second oldest is the one to go.
    assert!(cache.hit(0, b"0", &stat(0, 1), 10_000).is_some());
    cache.keep(0, b"new", some_file(), stat(9999, 1), 10_001);
    assert_eq!(cache.len(), CAPACITY);
    assert!(cache.contains(0, b"0"));
    assert!(!cache.contains(0, b"1"));
    assert!(cache.contains(0, b"new"));
}

/// The sweep closes what was not used for IDLE_MS.
#[test]
fn the_sweep_closes_idle_entries() {
    let mut cache = OpenFiles::default();
    cache.keep(0, b"old", some_file(), stat(1, 1), 0);
    cache.keep(2, b"recent", some_file(), stat(2, 1), IDLE_MS);
    assert_eq!(cache.sweep(IDLE_MS + 1), 1);
    assert!(!cache.contains(0, b"old"));
    assert!(cache.contains(2, b"recent"));
    assert_eq!(cache.sweep(10 * IDLE_MS), 0);
    assert!(cache.is_empty());
}
