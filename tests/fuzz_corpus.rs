//! The fuzzers' findings, kept as ordinary tests.
//!
//! `fuzz/` is a cargo-fuzz crate (its own workspace, nightly only) with four
//! coverage-guided targets over the sans-IO HTTP code: `request_head`,
//! `response_head`, `chunked_split` and `request_rewrite`. What each one
//! checks lives in one file, `fuzz/properties.rs`, which the targets and this
//! test both include; so a property means the same thing under libFuzzer and
//! under `cargo test`.
//!
//! What CI keeps is the corpus, not the fuzzer: `fuzz/corpus/<target>/` holds
//! a minimised set of inputs (found by libFuzzer, then reduced with
//! `cargo fuzz cmin` to the smallest files that still reach every edge it
//! reached), and `fuzz/seeds/<target>/` the hand-written inputs the fuzzer
//! started from: valid heads and bodies, and the classic smuggling attempts
//! (CL+TE, obs-fold, bare LF, doubled Transfer-Encoding). Seeds are kept
//! apart because `cmin` would drop them once smaller files cover the same
//! code, and they are the inputs a reader recognises. Replaying them here costs well under a second
//! and catches a change that breaks a property on any input the fuzzer once
//! needed to cover that code. `fuzz/regressions/<target>/`, when it exists,
//! holds minimised inputs that once crashed a target; each one is also a
//! named story below, so the failure has a name and not only a file.
//!
//! To fuzz further (nightly toolchain and `cargo install cargo-fuzz`):
//!
//! ```text
//! cd fuzz
//! cargo +nightly fuzz run request_head corpus/request_head seeds/request_head -- \
//!     -max_len=4096 -timeout=5 -runs=10000000
//! cargo +nightly fuzz cmin request_head corpus/request_head -- -use_counters=0
//! ```
//!
//! (`-use_counters=0` minimises by edges alone, not by how often each edge
//! ran: a few hundred small files instead of a few thousand.)
//!
//! and commit what `cmin` leaves. A crash lands in `fuzz/artifacts/<target>/`
//! (ignored by git): shrink it with `cargo +nightly fuzz tmin <target>
//! <file>`, copy the result to `fuzz/regressions/<target>/`, and fix the
//! code, not the property.

#[path = "../fuzz/properties.rs"]
mod properties;

use std::fs;
use std::path::{Path, PathBuf};

/// Every file in `fuzz/<kind>/<target>/`, sorted so a failure names the same
/// file on every run. A missing directory is no files: `regressions/` only
/// exists once something has been found.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// Run `property` on every kept input of `target`, naming the file that
/// breaks it. The corpus must be there: an empty replay would pass while
/// checking nothing, e.g. after a rename of the directory.
fn replay(target: &str, property: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    let seeds = inputs("seeds", target);
    for (kind, found) in [("corpus", &corpus), ("seeds", &seeds)] {
        assert!(
            !found.is_empty(),
            "fuzz/{kind}/{target}/ is empty or missing: nothing would be checked"
        );
    }
    let regressions = inputs("regressions", target);
    for (path, bytes) in corpus.iter().chain(&seeds).chain(&regressions) {
        let outcome = std::panic::catch_unwind(|| property(bytes));
        if let Err(panic) = outcome {
            eprintln!("{} ({} bytes): {:?}", path.display(), bytes.len(), bytes);
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn every_kept_request_head_parses_the_same_when_cut_at_its_length() {
    replay("request_head", properties::request_head);
}

#[test]
fn every_kept_response_head_parses_the_same_when_cut_at_its_length() {
    replay("response_head", properties::response_head);
}

#[test]
fn every_kept_body_is_classified_the_same_however_it_is_split() {
    replay("chunked_split", properties::chunked_split);
}

#[test]
fn every_kept_request_is_forwarded_as_a_request_that_means_the_same() {
    replay("request_rewrite", properties::request_rewrite);
}

// The properties on a few inputs written by hand, so a reader sees what each
// target is fed without opening the binary corpus files.

#[test]
fn a_pipelined_request_is_cut_at_the_end_of_its_own_head() {
    properties::request_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\n");
}

#[test]
fn a_chunked_body_split_inside_its_size_line_and_extension_is_the_same_body() {
    // Control byte: chunked (low bit 0), four split points of 1, 2, 3, 4
    // bytes, so the pieces end inside `5;a=`, inside the quoted value, in
    // the data and in the trailer.
    let mut input = vec![4 << 1, 1, 2, 3, 4];
    input.extend_from_slice(b"5;a=\"x y\"\r\nhello\r\n0\r\nT: v\r\n\r\nNEXT");
    properties::chunked_split(&input);
}

#[test]
fn an_http10_request_without_host_is_forwarded_with_its_target_authority_as_host() {
    properties::request_rewrite(b"GET http://example.com:8080?q HTTP/1.0\r\n\r\n");
}

#[test]
fn every_kept_static_path_stays_beneath_its_root() {
    replay("static_path", properties::static_path);
}

#[test]
fn no_first_flight_a_client_sends_breaks_a_tls_session() {
    replay("tls_handshake", properties::tls_handshake);
}
