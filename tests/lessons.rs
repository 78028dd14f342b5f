//! Keeps `lessons/` honest: the course is half the product, and a lesson
//! that sends a reader to a function that was renamed last month is worse
//! than no lesson.
//!
//! What is checked, for `lessons/README.md` and every `lessons/*/README.md`:
//!
//! - every backticked `src/...rs` or `tests/...rs` path names a file that
//!   exists;
//! - every backticked item name a lesson ties to such a path is defined in
//!   that file (the convention is in `lessons/README.md`, "For
//!   contributors", and in [`references`] below);
//! - every lesson has the sections a reader relies on, and answers folded
//!   in `<details>`;
//! - relative links resolve, lesson directories follow the plan, and a
//!   lesson's `main.rs` is built as a Cargo `[[example]]`.
//!
//! No regex crate: the markdown and Rust scanning below is deliberately
//! small, and [`the_rust_scanner_finds_every_kind_of_item`] and
//! [`a_path_governs_names_until_the_next_path`] pin down what it does.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The course, in order. Directory names are `NN-slug`; the code's module
/// docs point at these names.
const PLANNED: [&str; 17] = [
    "01-blocking-echo",
    "02-thread-per-connection",
    "03-poll-loop",
    "04-edge-triggered",
    "05-state-machines",
    "06-slab-and-tokens",
    "07-parsing-heads",
    "08-buffers-and-partial-writes",
    "09-backpressure",
    "10-timers",
    "11-body-framing",
    "12-keepalive-and-pool",
    "13-measuring",
    "14-whole-proxy",
    "15-resilience",
    "16-static-files",
    "17-tls",
];

/// Every lesson has these `##` headings, in this order (a heading may say
/// more after them, e.g. "## Try it: one request under strace").
const REQUIRED_SECTIONS: [&str; 6] = [
    "The idea",
    "The naive version",
    "Where it lives",
    "Try it",
    "Check yourself",
    "Summary",
];

// ----- the tests -------------------------------------------------------------

/// A reader follows "`src/conn.rs`" to the file. If the file was moved or
/// split, every lesson naming the old path fails here, with the lesson and
/// the line that needs updating.
#[test]
fn every_file_a_lesson_names_exists() {
    let mut failures = Vec::new();
    for lesson in lesson_files() {
        for reference in references(&read(&lesson)) {
            if !root().join(&reference.path).is_file() {
                failures.push(format!(
                    "{} line {}: `{}` does not exist",
                    rel(&lesson),
                    reference.line,
                    reference.path
                ));
            }
        }
    }
    assert_no_failures("files named by lessons", failures);
}

/// A lesson says "`src/reactor.rs`: `Reactor::drive` ..." and the reader
/// searches that file for `fn drive`. Rename the method, move it to another
/// file, or misspell it in the lesson, and this test names the lesson, the
/// path and the item.
#[test]
fn every_item_a_lesson_ties_to_a_file_is_defined_there() {
    let mut indexes: HashMap<String, ItemIndex> = HashMap::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for lesson in lesson_files() {
        for reference in references(&read(&lesson)) {
            let file = root().join(&reference.path);
            if !file.is_file() {
                continue; // reported by every_file_a_lesson_names_exists
            }
            let index = indexes
                .entry(reference.path.clone())
                .or_insert_with(|| ItemIndex::of(&read(&file)));
            for name in &reference.names {
                checked += 1;
                if !index.defines(name) {
                    failures.push(format!(
                        "{} line {}: `{}` does not define `{}` ({})",
                        rel(&lesson),
                        reference.line,
                        reference.path,
                        name,
                        what_was_looked_for(name)
                    ));
                }
            }
        }
    }
    assert_no_failures("items named by lessons", failures);
    if lesson_dirs().next().is_some() {
        assert!(
            checked > 0,
            "lessons exist but not one item reference was found: is the convention still followed?"
        );
    }
}

/// A reader skims for "Where it lives" to find the code and for "Try it" to
/// find the experiment. Every lesson keeps the same sections in the same
/// order, folds its answers so they are not read by accident, names at
/// least one source file where it says the idea lives, and says what comes
/// next.
#[test]
fn every_lesson_has_the_sections_a_reader_relies_on() {
    let mut failures = Vec::new();
    for dir in lesson_dirs() {
        let lesson = dir.join("README.md");
        if !lesson.is_file() {
            failures.push(format!("{}: has no README.md", rel(&dir)));
            continue;
        }
        let text = read(&lesson);
        let headings: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| line.strip_prefix("## ").map(|h| (i, h.trim())))
            .collect();
        let mut last_found: Option<usize> = None;
        for section in REQUIRED_SECTIONS {
            let found = headings.iter().position(|(_, h)| h.starts_with(section));
            match (found, last_found) {
                (None, _) => failures.push(format!("{}: no `## {section}` section", rel(&lesson))),
                (Some(at), Some(before)) if at < before => failures.push(format!(
                    "{}: `## {section}` comes before a section it should follow",
                    rel(&lesson)
                )),
                (Some(at), _) => last_found = Some(at),
            }
        }
        let section_text = |name: &str| -> String {
            let Some(start) = headings.iter().position(|(_, h)| h.starts_with(name)) else {
                return String::new();
            };
            let from = headings[start].0 + 1;
            let to = headings.get(start + 1).map_or(usize::MAX, |(i, _)| *i);
            text.lines()
                .skip(from)
                .take(to.saturating_sub(from))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if !section_text("Check yourself").contains("<details>") {
            failures.push(format!(
                "{}: `## Check yourself` has no answers folded in <details>",
                rel(&lesson)
            ));
        }
        if references(&section_text("Where it lives")).is_empty() {
            failures.push(format!(
                "{}: `## Where it lives` names no `src/...rs` file",
                rel(&lesson)
            ));
        }
        if !text.contains("**Next") {
            failures.push(format!(
                "{}: no `**Next:**` line saying what comes after",
                rel(&lesson)
            ));
        }
    }
    assert_no_failures("lesson sections", failures);
}

/// The front page is the course's table of contents. Every lesson directory
/// must be one the plan knows (so `lessons/04-edge-trigered/` cannot hide),
/// and the front page must list the whole plan in order and link every
/// lesson that exists.
#[test]
fn the_front_page_lists_the_plan_and_links_every_lesson() {
    let front = root().join("lessons/README.md");
    let text = read(&front);
    let mut failures = Vec::new();
    // Each slug must appear after the previous one: the plan, in order.
    let mut from = 0;
    for slug in PLANNED {
        match text[from..].find(slug) {
            Some(at) => from += at + slug.len(),
            None if text.contains(slug) => failures.push(format!(
                "lessons/README.md: `{slug}` is listed out of order"
            )),
            None => failures.push(format!("lessons/README.md: lesson `{slug}` is not listed")),
        }
    }
    for dir in lesson_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !PLANNED.contains(&name.as_str()) {
            failures.push(format!(
                "lessons/{name}: not a planned lesson (add it to PLANNED in tests/lessons.rs and to lessons/README.md)"
            ));
        } else if !text.contains(&format!("({name}/README.md)")) {
            failures.push(format!(
                "lessons/README.md: lesson `{name}` exists but is not linked as ({name}/README.md)"
            ));
        }
    }
    assert_no_failures("the front page", failures);
}

/// Links rot like names do. A relative link from a lesson must reach a real
/// file, with one allowance: lessons are written on several branches at
/// once, so a link into a planned lesson directory that this checkout does
/// not have yet is accepted, as long as the directory name is a planned one
/// (a typo in the slug still fails).
#[test]
fn relative_links_in_lessons_resolve() {
    let mut failures = Vec::new();
    for lesson in lesson_files() {
        let dir = lesson.parent().unwrap();
        for (line, target) in relative_links(&read(&lesson)) {
            let target_path = target.split('#').next().unwrap_or("");
            if target_path.is_empty() {
                continue; // an anchor in the same page
            }
            let resolved = normalize(&dir.join(target_path));
            if resolved.exists() {
                continue;
            }
            let lessons_dir = root().join("lessons");
            let planned_elsewhere = resolved
                .strip_prefix(&lessons_dir)
                .ok()
                .and_then(|rest| rest.components().next())
                .map(|first| first.as_os_str().to_string_lossy().to_string())
                .is_some_and(|slug| {
                    PLANNED.contains(&slug.as_str()) && !lessons_dir.join(&slug).exists()
                });
            if !planned_elsewhere {
                failures.push(format!(
                    "{} line {line}: link target `{target}` does not exist",
                    rel(&lesson)
                ));
            }
        }
    }
    assert_no_failures("links in lessons", failures);
}

/// A lesson may ship a runnable program as `lessons/NN-slug/main.rs`. It is
/// only kept compiling if Cargo builds it, so it must be declared as an
/// `[[example]]` whose `path` points at it (CI builds examples with
/// `cargo clippy --all-targets`).
#[test]
fn every_lesson_program_is_a_cargo_example() {
    let manifest = read(&root().join("Cargo.toml"));
    let example_paths = example_paths(&manifest);
    let mut failures = Vec::new();
    for dir in lesson_dirs() {
        let program = dir.join("main.rs");
        if program.is_file() {
            let wanted = rel(&program);
            if !example_paths.contains(&wanted) {
                failures.push(format!(
                    "{wanted}: no [[example]] in Cargo.toml with path = \"{wanted}\""
                ));
            }
        }
    }
    assert_no_failures("lesson programs", failures);
}

/// The checker is only as good as its reading of Rust. This source holds
/// one of each kind of definition a lesson may name, plus traps: a name
/// that only appears in a comment or a string, a call of a function defined
/// elsewhere, and an `impl Trait for Type` whose methods belong to `Type`.
#[test]
fn the_rust_scanner_finds_every_kind_of_item() {
    let source = r##"
        //! Mentions `fn ghost` in a doc comment only.
        use std::fmt;
        pub const BUDGET: usize = 64 * 1024;
        static COUNTER: u32 = 0;
        pub type Step = Result<bool, Gone>;
        struct Gone;
        pub mod nested { pub fn inner() {} }
        pub struct Io<S> { pub socket: S, pub(crate) peer_closed: bool, accounted: usize }
        pub enum Phase { ReadingHead, Exchanging(Box<u8>), Closing { fin_sent: bool } }
        pub trait Pump { fn pump(&mut self) -> usize; }
        impl<S: fmt::Debug> Io<S> {
            pub const LIMIT: usize = 3;
            pub fn read_into(&mut self) -> Step { let c = '{'; let s = "fn phantom() {"; other(); Ok(true) }
            fn lifetimes<'a>(&'a self) -> &'a str { r#"fn raw_phantom"# }
        }
        impl fmt::Display for Phase {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "{{") }
        }
        fn free() -> impl Iterator<Item = &'static u8> { std::iter::empty() }
    "##;
    let index = ItemIndex::of(source);
    for name in [
        "BUDGET",
        "COUNTER",
        "Step",
        "Gone",
        "nested",
        "inner",
        "Io",
        "socket",
        "peer_closed",
        "Io::peer_closed",
        "Io::LIMIT",
        "Io::read_into",
        "Io::lifetimes",
        "read_into",
        "Phase",
        "ReadingHead",
        "Phase::Exchanging",
        "Phase::Closing",
        "fin_sent",
        "Phase::fmt",
        "Pump",
        "Pump::pump",
        "free",
    ] {
        assert!(index.defines(name), "the scanner missed `{name}`");
    }
    for name in [
        "ghost",
        "phantom",
        "raw_phantom",
        "other",
        "Io::fmt",
        "Phase::read_into",
        "Reactor",
        "str",
    ] {
        assert!(
            !index.defines(name),
            "the scanner invented `{name}` (it is not defined in the source)"
        );
    }
}

/// The convention, run on a small lesson: a path governs the backticked
/// names after it in its paragraph or list item (nested items included),
/// up to the next path; names
/// before any path, qualified by a lowercase path (`mio::...`), written as
/// code rather than a bare name, or inside a fenced block are not tied to a
/// file.
#[test]
fn a_path_governs_names_until_the_next_path() {
    let lesson = "\
# A lesson

`Unbound` comes before any path, so it is prose.

- `src/reactor.rs`: `Reactor::drive` calls
  `settle` and `mio::Registry::reregister` (foreign, qualified) and
  `epoll_ctl(2)` (not a bare name); `src/conn.rs` then `read_into`.
- `src/token.rs` + `ConnId`, `TOKEN_BITS`, but not `x == 0` or `Ok(0)`.
  1. A nested item belongs to its parent: `ConnId::token`.
- `Outside` is a new item again.

```rust
`src/fenced.rs` `Fenced` is inside a code block
```
";
    let found = references(lesson);
    let pairs: Vec<(&str, Vec<&str>)> = found
        .iter()
        .map(|r| {
            (
                r.path.as_str(),
                r.names.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("src/reactor.rs", vec!["Reactor::drive", "settle"]),
            ("src/conn.rs", vec!["read_into"]),
            (
                "src/token.rs",
                vec!["ConnId", "TOKEN_BITS", "ConnId::token"]
            ),
        ]
    );
    assert_eq!(
        found[0].line, 5,
        "line of the list item that names the path"
    );
}

// ----- reading lessons ---------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `path` relative to the crate root, with `/`, as lessons and failure
/// messages write it.
fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// `lessons/NN-slug/` directories, sorted.
fn lesson_dirs() -> impl Iterator<Item = PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("lessons"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
}

/// The front page and every lesson's README, sorted.
fn lesson_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("lessons/README.md")];
    files.extend(
        lesson_dirs()
            .map(|d| d.join("README.md"))
            .filter(|p| p.is_file()),
    );
    files
}

fn assert_no_failures(what: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} problem(s) with {what}:\n  {}\n(convention: lessons/README.md, \"For contributors\")",
        failures.len(),
        failures.join("\n  ")
    );
}

/// One paragraph, list item (with its nested items) or heading of a
/// markdown file, fenced code blocks left out, with the line it starts on
/// (1-based).
struct Block {
    line: usize,
    text: String,
    /// For a list item, the indentation of its marker.
    item_indent: Option<usize>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut in_fence = false;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let fence = trimmed.starts_with("```") || trimmed.starts_with("~~~");
        if fence || in_fence || trimmed.is_empty() {
            if fence {
                in_fence = !in_fence;
            }
            blocks.extend(current.take());
            continue;
        }
        let list_item = trimmed.starts_with("- ")
            || trimmed.starts_with("* ")
            || trimmed.starts_with("+ ")
            || starts_numbered_item(trimmed);
        let nested = list_item
            && current
                .as_ref()
                .and_then(|b| b.item_indent)
                .is_some_and(|outer| indent > outer);
        let starts_block =
            trimmed.starts_with('#') || trimmed.starts_with('|') || (list_item && !nested);
        if starts_block {
            blocks.extend(current.take());
        }
        match &mut current {
            Some(block) => {
                block.text.push(' ');
                block.text.push_str(trimmed);
            }
            None => {
                current = Some(Block {
                    line: i + 1,
                    text: trimmed.to_string(),
                    item_indent: list_item.then_some(indent),
                })
            }
        }
        if trimmed.starts_with('#') {
            blocks.extend(current.take());
        }
    }
    blocks.extend(current);
    blocks
}

fn starts_numbered_item(line: &str) -> bool {
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && line[digits..].starts_with(". ")
}

/// The contents of the inline code spans in `text`, in order.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
        let open_end = i + run;
        let mut j = open_end;
        let mut closed = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let close_run = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                if close_run == run {
                    closed = Some(j);
                    break;
                }
                j += close_run;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(close) => {
                spans.push(text[open_end..close].trim());
                i = close + run;
            }
            None => i = open_end,
        }
    }
    spans
}

/// A source file a lesson names, and the item names it ties to it.
#[derive(Debug)]
struct Reference {
    /// Line of the paragraph or list item that names the file.
    line: usize,
    path: String,
    names: Vec<String>,
}

/// The convention (also in lessons/README.md, "For contributors"):
///
/// 1. A backticked path `src/...rs` or `tests/...rs` names a file.
/// 2. It *governs* the backticked names after it in the same paragraph or
///    list item (with its nested items), up to the next backticked path.
/// 3. A governed name is one of `Type::member`, `CamelCase`,
///    `SCREAMING_CASE` or `snake_case`, and must be defined in that file.
/// 4. Anything else in backticks is prose: code with spaces, calls or
///    punctuation (`read() == 0`, `epoll_ctl(2)`), names qualified by a
///    lowercase path (`mio::Poll::poll`), Rust's keywords and prelude
///    (`None`, `Ok`, `true`), and everything in fenced code blocks.
fn references(markdown: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    for block in blocks(markdown) {
        let mut current: Option<Reference> = None;
        for span in code_spans(&block.text) {
            if is_source_path(span) {
                found.extend(current.take());
                current = Some(Reference {
                    line: block.line,
                    path: span.to_string(),
                    names: Vec::new(),
                });
            } else if let Some(reference) = &mut current
                && is_item_name(span)
            {
                reference.names.push(span.to_string());
            }
        }
        found.extend(current);
    }
    found
}

fn is_source_path(span: &str) -> bool {
    (span.starts_with("src/") || span.starts_with("tests/"))
        && span.ends_with(".rs")
        && !span.contains(char::is_whitespace)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s != "_"
}

const NOT_ITEMS: [&str; 30] = [
    "as", "break", "const", "crate", "else", "enum", "false", "fn", "for", "if", "impl", "let",
    "loop", "match", "mod", "move", "mut", "pub", "return", "self", "Self", "struct", "true",
    "use", "while", "None", "Some", "Ok", "Err", "async",
];

fn is_item_name(span: &str) -> bool {
    let parts: Vec<&str> = span.split("::").collect();
    match parts.as_slice() {
        [name] => is_identifier(name) && !NOT_ITEMS.contains(name),
        [ty, member] => {
            is_identifier(ty)
                && is_identifier(member)
                && ty.starts_with(|c: char| c.is_ascii_uppercase())
                && !NOT_ITEMS.contains(ty)
        }
        _ => false,
    }
}

fn what_was_looked_for(name: &str) -> &'static str {
    if name.contains("::") {
        "looked for a method, associated const, field or variant of that type"
    } else if name.starts_with(|c: char| c.is_ascii_uppercase()) {
        if name.chars().all(|c| !c.is_ascii_lowercase()) {
            "looked for a const or static"
        } else {
            "looked for a struct, enum, trait, type alias or enum variant"
        }
    } else {
        "looked for a fn, mod or struct field"
    }
}

/// Inline links `[text](target)` that are not URLs or mail links, with
/// their line. Fenced code is skipped.
fn relative_links(markdown: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    let mut in_fence = false;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            if !target.contains("://") && !target.starts_with("mailto:") {
                links.push((i + 1, target.to_string()));
            }
            rest = &after[end..];
        }
    }
    links
}

/// `a/b/../c` -> `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The `path = "..."` of every `[[example]]` table in a Cargo manifest.
fn example_paths(manifest: &str) -> HashSet<String> {
    let mut paths = HashSet::new();
    let mut in_example = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_example = line == "[[example]]";
            continue;
        }
        if in_example && let Some(value) = line.strip_prefix("path") {
            let value = value.trim_start().trim_start_matches('=').trim();
            paths.insert(value.trim_matches('"').to_string());
        }
    }
    paths
}

// ----- reading Rust ----------------------------------------------------------

/// What a Rust file defines, by name: enough to answer "is `Type::member`
/// (or `name`) defined here?" without a parser crate.
#[derive(Default)]
struct ItemIndex {
    /// Every defined name: items at any depth, methods, fields, variants.
    names: HashSet<String>,
    /// Type -> its methods, associated consts and types (from `impl` and
    /// `trait` blocks), fields and variants.
    members: HashMap<String, HashSet<String>>,
}

impl ItemIndex {
    fn defines(&self, name: &str) -> bool {
        match name.split_once("::") {
            Some((ty, member)) => self.members.get(ty).is_some_and(|m| m.contains(member)),
            None => self.names.contains(name),
        }
    }

    fn of(source: &str) -> ItemIndex {
        let tokens = tokens(&strip_comments_and_literals(source));
        let mut index = ItemIndex::default();
        // One entry per open delimiter; for `{`, what the block belongs to.
        let mut stack: Vec<(char, Scope)> = Vec::new();
        // The block the next `{` opens, set by an item keyword.
        let mut pending: Option<(usize, Scope)> = None;
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i].as_str();
            let next = tokens.get(i + 1).map(String::as_str).unwrap_or("");
            let prev = if i == 0 { "" } else { tokens[i - 1].as_str() };
            if prev == "'" {
                // A lifetime (`'static`, `'a`), not a keyword or a name.
                i += 1;
                continue;
            }
            let inside = match stack.last() {
                Some(('{', scope)) => Some(scope.clone()),
                _ => None,
            };
            match token {
                "{" => {
                    let scope = match (pending.take(), &inside) {
                        (Some((depth, scope)), _) if depth == stack.len() => scope,
                        // `Variant { field: T }` inside an enum: fields too.
                        (_, Some(Scope::Enum(ty))) if is_identifier(prev) => {
                            Scope::Struct(format!("{ty}::{prev}"))
                        }
                        _ => Scope::Other,
                    };
                    stack.push(('{', scope));
                }
                "(" | "[" => stack.push((token.chars().next().unwrap(), Scope::Other)),
                "}" | ")" | "]" => {
                    stack.pop();
                }
                ";" if pending.as_ref().is_some_and(|(d, _)| *d == stack.len()) => {
                    pending = None;
                }
                "struct" | "enum" | "union" | "trait" if is_identifier(next) => {
                    index.names.insert(next.to_string());
                    let scope = match token {
                        "enum" => Scope::Enum(next.to_string()),
                        "trait" => Scope::Impl(next.to_string()),
                        _ => Scope::Struct(next.to_string()),
                    };
                    pending = Some((stack.len(), scope));
                    i += 1;
                }
                "impl" if matches!(prev, "" | "}" | ";" | "{" | "]" | "unsafe") => {
                    if let Some(ty) = impl_self_type(&tokens[i + 1..]) {
                        pending = Some((stack.len(), Scope::Impl(ty)));
                    }
                }
                "fn" | "const" | "static" | "type" | "mod"
                    if is_identifier(next) && !NOT_ITEMS.contains(&next) =>
                {
                    index.names.insert(next.to_string());
                    if let Some(Scope::Impl(ty)) = &inside {
                        index.member(ty, next);
                    }
                    i += 1;
                }
                "macro_rules" if next == "!" => {
                    if let Some(name) = tokens.get(i + 2) {
                        index.names.insert(name.clone());
                    }
                }
                _ if is_identifier(token) => match &inside {
                    // `name: Type` directly inside a struct's braces.
                    Some(Scope::Struct(ty)) if next == ":" && prev != "::" => {
                        index.names.insert(token.to_string());
                        index.member(ty, token);
                    }
                    // A variant starts the enum or follows a comma at its top
                    // level (attributes were skipped as bracket groups).
                    Some(Scope::Enum(ty)) if matches!(prev, "{" | "," | "]") && token != "pub" => {
                        index.names.insert(token.to_string());
                        index.member(ty, token);
                    }
                    _ => {}
                },
                _ => {}
            }
            i += 1;
        }
        index
    }

    fn member(&mut self, ty: &str, name: &str) {
        self.members
            .entry(ty.to_string())
            .or_default()
            .insert(name.to_string());
    }
}

#[derive(Clone, Debug)]
enum Scope {
    /// `impl Type` / `impl Trait for Type` / `trait Type`: methods, consts.
    Impl(String),
    /// `struct Type { ... }`: fields.
    Struct(String),
    /// `enum Type { ... }`: variants.
    Enum(String),
    Other,
}

/// The type an `impl` header is for: after `for` if there is one, else the
/// first path after the generics; the last segment before `<`, `where`, `{`.
fn impl_self_type(header: &[String]) -> Option<String> {
    let mut angle = 0i32;
    let mut end = header.len();
    let mut after_for = None;
    for (i, token) in header.iter().enumerate() {
        match token.as_str() {
            "<" => angle += 1,
            ">" => angle -= 1,
            "{" | ";" | "where" if angle == 0 => {
                end = i;
                break;
            }
            "for" if angle == 0 => after_for = Some(i + 1),
            _ => {}
        }
    }
    let mut start = after_for.unwrap_or(0);
    // Skip `impl<...>` generics.
    if after_for.is_none() && header.first().is_some_and(|t| t == "<") {
        let mut depth = 0;
        for (i, token) in header.iter().enumerate() {
            match token.as_str() {
                "<" => depth += 1,
                ">" => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                start = i + 1;
                break;
            }
        }
    }
    let mut ty = None;
    for token in &header[start..end] {
        match token.as_str() {
            "<" => break,
            t if is_identifier(t) && t != "dyn" && t != "mut" => ty = Some(t.to_string()),
            _ => {}
        }
    }
    ty
}

/// Identifiers, `::`, and single punctuation characters.
fn tokens(clean: &str) -> Vec<String> {
    let chars: Vec<char> = clean.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".to_string());
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// `source` with comments, string literals and char literals blanked out
/// (newlines kept), so braces and words inside them are not read as code.
fn strip_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let is_ident = |at: usize| chars[at].is_ascii_alphanumeric() || chars[at] == '_';
        // `r"..."` and `br"..."` start raw strings; `for"` does not.
        let prev_is_ident =
            i > 0 && is_ident(i - 1) && !(chars[i - 1] == 'b' && (i < 2 || !is_ident(i - 2)));
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && !prev_is_ident
            && matches!(next, Some('"') | Some('#'))
            && raw_string_end(&chars, i + 1).is_some()
        {
            let end = raw_string_end(&chars, i + 1).unwrap();
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{..}'.
            let mut j = i + 2;
            if j < chars.len() {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.extend(chars[i..(j + 1).min(chars.len())].iter().map(|&c| blank(c)));
            i = j + 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            // Lifetimes ('a) fall through here and stay as `'` + identifier.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// For a raw string starting at `chars[at]` (after the `r`): `#`* then `"`,
/// the index just past its closing `"` + the same number of `#`.
fn raw_string_end(chars: &[char], at: usize) -> Option<usize> {
    let hashes = chars[at..].iter().take_while(|&&c| c == '#').count();
    if chars.get(at + hashes) != Some(&'"') {
        return None;
    }
    let mut i = at + hashes + 1;
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    None
}
