//! Observability, seen from outside (lesson 13): what `/metrics`,
//! `/metrics.json` and the `/` panel say after traffic we chose, and whether
//! what they say is well formed.
//!
//! - **Exact counts.** Each story sends known traffic (so many 200s, so many
//!   malformed requests, one refused upstream set, one upstream too slow),
//!   scrapes once, and checks every figure that traffic decides: by code, by
//!   class, by upstream, errors, timeouts, bytes, the histogram's count, the
//!   gauges. "Non-zero" is not a check; the number is.
//! - **The format, read strictly.** [`read_exposition`] below is a reader of
//!   the Prometheus text format (version 0.0.4) that refuses anything a
//!   scraper could misread, and a little more (no timestamps, no comments
//!   other than HELP and TYPE, counters named `_total`). Every scrape in this
//!   file goes through it, and [`the_strict_reader_refuses_what_it_should`]
//!   shows it is not a reader that accepts everything.
//! - **The listener's manners.** Three pages, 404 for anything else, 405
//!   for anything but GET and HEAD, the same 400 as the proxy port for a
//!   malformed request, and never a byte forwarded upstream.
//! - **The arithmetic, sans-IO.** `Histogram::quantile_us` and
//!   `RateWindow`, with numbers worked by hand.
//!
//! Everything talks to loopback only.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use ferroxy::admin;
use ferroxy::metrics::{Gauges, Histogram, LATENCY_BUCKETS_US, Metrics, RateWindow};
use ferroxy::reactor::ProxyHandle;
use support::*;

// ---------------------------------------------------------------------------
// A strict reader of the exposition format
// ---------------------------------------------------------------------------

/// `(name, value)` pairs, unescaped, in the order sent.
type Labels = Vec<(String, String)>;

/// One sample line: `name{label="value",...} value`, labels unescaped.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A family: its `# HELP` and `# TYPE`.
#[derive(Clone, Debug)]
struct Family {
    name: String,
    kind: String,
}

/// A whole scrape, read and checked.
#[derive(Debug, Default)]
struct Exposition {
    families: Vec<Family>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Every series of metric `name` (a sample name, e.g. `..._bucket`).
    fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The series of `name` with exactly these labels (in any order):
    /// one, if the scrape is sound.
    fn find(&self, name: &str, labels: &[(String, String)]) -> Vec<&Sample> {
        let mut wanted = labels.to_vec();
        wanted.sort();
        self.series(name)
            .into_iter()
            .filter(|s| {
                let mut have = s.labels.clone();
                have.sort();
                have == wanted
            })
            .collect()
    }

    /// The value of the one series `name{labels}`. Fails the story,
    /// listing the series there are, if it is absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match self.find(name, &labels).as_slice() {
            [one] => one.value,
            found => panic!(
                "expected one series {name}{labels:?}, found {}; the series of {name} are:\n{}",
                found.len(),
                self.series(name)
                    .iter()
                    .map(|s| format!("  {:?} {}", s.labels, s.value))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// The sum over every series of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.series(name).iter().map(|s| s.value).sum()
    }

    fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}

/// Read a whole `/metrics` body, refusing anything doubtful. The rules:
///
/// - every line ends in LF (the last one too); no CR, no blank line;
/// - a line is `# HELP name text`, `# TYPE name counter|gauge|histogram`, or
///   a sample `name{label="value",...} value` (no timestamp); any other `#`
///   line is refused;
/// - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
///   `[a-zA-Z_][a-zA-Z0-9_]*` and do not start with `__`; label values are
///   quoted and use only the escapes `\\`, `\"` and `\n` (HELP text: `\\`
///   and `\n`); values are decimal floats, `+Inf`, `-Inf` or `NaN`;
/// - each family has exactly one HELP and one TYPE, both before its first
///   sample, and its samples are all together; counters are named `_total`
///   and never negative; no series appears twice;
/// - a histogram has `_bucket` series whose `le` bounds increase and end in
///   `+Inf`, cumulative (never decreasing) counts, and `_sum` and `_count`,
///   the `+Inf` bucket equal to `_count`.
fn read_exposition(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix('\n')
        .ok_or("the exposition must end with a newline")?;
    let mut expo = Exposition::default();
    let mut helps: HashSet<String> = HashSet::new();
    let mut kinds: HashMap<String, String> = HashMap::new();
    let mut sampled: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen_series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();

    for (i, line) in body.split('\n').enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if line.is_empty() {
            return Err(fail("blank line"));
        }
        if line.contains('\r') {
            return Err(fail("CR in a line (lines end in LF alone)"));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| fail("HELP without text"))?;
            check_metric_name(name).map_err(|e| fail(&e))?;
            check_help_text(help).map_err(|e| fail(&e))?;
            if !helps.insert(name.to_string()) {
                return Err(fail("a second HELP for this family"));
            }
            if sampled.contains(name) {
                return Err(fail("HELP after samples of its family"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| fail("TYPE without a type"))?;
            check_metric_name(name).map_err(|e| fail(&e))?;
            if !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(fail("type is not counter, gauge or histogram"));
            }
            if kinds.contains_key(name) {
                return Err(fail("a second TYPE for this family"));
            }
            if sampled.contains(name) {
                return Err(fail("TYPE after samples of its family"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(fail("a counter's name must end in _total"));
            }
            kinds.insert(name.to_string(), kind.to_string());
            expo.families.push(Family {
                name: name.to_string(),
                kind: kind.to_string(),
            });
        } else if line.starts_with('#') {
            return Err(fail("a comment that is neither HELP nor TYPE"));
        } else {
            let sample = read_sample(line).map_err(|e| fail(&e))?;
            let family = family_of(&sample.name, &kinds);
            let kind = kinds
                .get(&family)
                .ok_or_else(|| fail("sample before its family's TYPE"))?;
            if !helps.contains(&family) {
                return Err(fail("sample before its family's HELP"));
            }
            if kind == "histogram" && sample.name == family {
                return Err(fail(
                    "a histogram's samples are _bucket, _sum and _count, never the bare name",
                ));
            }
            if current.as_deref() != Some(family.as_str()) {
                if !sampled.insert(family.clone()) {
                    return Err(fail("samples of this family are not all together"));
                }
                current = Some(family.clone());
            }
            let has_le = sample.labels.iter().any(|(k, _)| k == "le");
            if sample.name.ends_with("_bucket") && kind == "histogram" {
                if !has_le {
                    return Err(fail("a histogram bucket without `le`"));
                }
            } else if has_le {
                return Err(fail("`le` on something that is not a histogram bucket"));
            }
            if kind == "counter" && !(sample.value >= 0.0 && sample.value.is_finite()) {
                return Err(fail("a counter must be finite and not negative"));
            }
            let mut key = sample.labels.clone();
            key.sort();
            if !seen_series.insert((sample.name.clone(), key)) {
                return Err(fail("the same series twice"));
            }
            expo.samples.push(sample);
        }
    }
    for name in &helps {
        if !kinds.contains_key(name) {
            return Err(format!("family {name} has a HELP but no TYPE"));
        }
    }
    for family in &expo.families {
        if !helps.contains(&family.name) {
            return Err(format!("family {} has a TYPE but no HELP", family.name));
        }
        if family.kind == "histogram" {
            check_histogram(&expo, &family.name)?;
        }
    }
    Ok(expo)
}

/// `x_bucket`, `x_sum`, `x_count` belong to histogram `x`; anything else is
/// its own family.
fn family_of(name: &str, kinds: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && kinds.get(base).map(String::as_str) == Some("histogram")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

fn check_histogram(expo: &Exposition, name: &str) -> Result<(), String> {
    let fail = |why: String| format!("histogram {name}: {why}");
    // Group the buckets by their labels other than `le` (ferroxy has one
    // group, but a reader should not assume it).
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for sample in expo.series(&format!("{name}_bucket")) {
        let mut others: Vec<(String, String)> = sample
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        others.sort();
        let le = &sample.labels.iter().find(|(k, _)| k == "le").unwrap().1;
        let bound = read_value(le).map_err(|e| fail(format!("le={le:?}: {e}")))?;
        match groups.iter_mut().find(|(g, _)| *g == others) {
            Some((_, buckets)) => buckets.push((bound, sample.value)),
            None => groups.push((others, vec![(bound, sample.value)])),
        }
    }
    if groups.is_empty() {
        return Err(fail("no _bucket series".to_string()));
    }
    for (labels, buckets) in groups {
        for pair in buckets.windows(2) {
            if pair[1].0 <= pair[0].0 {
                return Err(fail(format!(
                    "le bounds must increase: {} then {}",
                    pair[0].0, pair[1].0
                )));
            }
            if pair[1].1 < pair[0].1 {
                return Err(fail(format!(
                    "buckets must be cumulative: le={} has {}, le={} has {}",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                )));
            }
        }
        let (last_bound, last_count) = *buckets.last().unwrap();
        if last_bound != f64::INFINITY {
            return Err(fail(format!(
                "the last bucket must be le=\"+Inf\", not {last_bound}"
            )));
        }
        let with = |suffix: &str| -> Result<f64, String> {
            let found: Vec<&Sample> = expo
                .series(&format!("{name}{suffix}"))
                .into_iter()
                .filter(|s| {
                    let mut l = s.labels.clone();
                    l.sort();
                    l == labels
                })
                .collect();
            match found.as_slice() {
                [one] => Ok(one.value),
                _ => Err(fail(format!(
                    "{} {suffix} series for {labels:?}",
                    found.len()
                ))),
            }
        };
        let count = with("_count")?;
        with("_sum")?;
        if count != last_count {
            return Err(fail(format!(
                "the +Inf bucket ({last_count}) must equal _count ({count})"
            )));
        }
    }
    Ok(())
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid metric name"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{name:?} is not a valid label name"));
    }
    if name.starts_with("__") {
        return Err(format!(
            "label names starting with __ are reserved: {name:?}"
        ));
    }
    Ok(())
}

fn check_help_text(help: &str) -> Result<(), String> {
    if help.trim().is_empty() {
        return Err("empty HELP text".to_string());
    }
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("HELP text may only escape \\\\ and \\n".to_string());
        }
    }
    Ok(())
}

/// One sample line, labels unescaped.
fn read_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("a sample needs a value after its name")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let mut chars = inside.char_indices().peekable();
        loop {
            // A label name, then `="`.
            let start = chars.peek().map(|&(i, _)| i).ok_or("unclosed {")?;
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            let label = &inside[start..end];
            check_label_name(label)?;
            if chars.next().map(|(_, c)| c) != Some('=')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err(format!("label {label} must be followed by =\"value\""));
            }
            // The quoted value, with its three escapes.
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err(format!("unterminated value of label {label}")),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => {
                            return Err(format!(
                                "label {label}: bad escape \\{}",
                                other.map(String::from).unwrap_or_default()
                            ));
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
            if labels.iter().any(|(k, _)| k == label) {
                return Err(format!("label {label} twice in one sample"));
            }
            labels.push((label.to_string(), value));
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    rest = &inside[i + 1..];
                    break;
                }
                _ => return Err("labels must be separated by , and closed by }".to_string()),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or("exactly one space between a series and its value")?;
    if value.contains(' ') {
        return Err("one value and nothing after it (no timestamps here)".to_string());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: read_value(value)?,
    })
}

/// A value as Go's `ParseFloat` would take it, minus its exotic forms:
/// `[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?`, `+Inf`, `-Inf`, `NaN`.
fn read_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let bad = || format!("{text:?} is not a number");
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return Err(bad());
        }
    }
    text.parse().map_err(|_| bad())
}

/// Scrape `/metrics` and read it strictly; a format error fails the story
/// with the whole scrape, so the bad line can be seen in context.
fn scrape_strictly(proxy: &ProxyHandle) -> (Exposition, String) {
    let text = scrape_text(proxy);
    match read_exposition(&text) {
        Ok(expo) => (expo, text),
        Err(e) => panic!("/metrics is not well formed: {e}\nthe whole scrape:\n{text}"),
    }
}

/// Check a scrape against the lines a story expects, written the way the
/// scrape writes them (`series value`), each optionally followed by
/// `# why`. `$A`, `$B`, ... in a line stand for `upstreams[0]`, `[1]`, ...
/// Every wrong line is reported at once, with its why and the whole scrape.
fn expect_lines(scrape: &(Exposition, String), upstreams: &[SocketAddr], expected: &str) {
    let (m, text) = scrape;
    let mut wrong = Vec::new();
    for line in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut line = line.to_string();
        for (i, addr) in upstreams.iter().enumerate() {
            line = line.replace(&format!("${}", (b'A' + i as u8) as char), &addr.to_string());
        }
        let (series, why) = line
            .split_once(" #")
            .map_or((line.as_str(), ""), |(s, w)| (s.trim(), w.trim()));
        let want = read_sample(series)
            .unwrap_or_else(|e| panic!("the story's own line {series:?} is malformed: {e}"));
        match m.find(&want.name, &want.labels).as_slice() {
            [one] if one.value == want.value => {}
            [one] => wrong.push(format!("{series}   <- scraped {}   # {why}", one.value)),
            _ => wrong.push(format!("{series}   <- no such series   # {why}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "the scrape does not say what the traffic should make it say:\n{}\n\nthe whole scrape:\n{text}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Exact counts after known traffic
// ---------------------------------------------------------------------------

/// Three requests the proxy must refuse with 400: two `Host`s, no `Host`,
/// two `Content-Length`s.
const MALFORMED: [&[u8]; 3] = [
    b"GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /no-host HTTP/1.1\r\n\r\n",
    b"POST /two-lengths HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
];

/// Bytes a response took on the wire (heads are ASCII, bodies framed by
/// `Content-Length` in these stories).
fn wire_len(resp: &Response) -> u64 {
    (resp.raw_head.len() + resp.body.len()) as u64
}

/// The main story. Three keep-alive clients take turns sending ten
/// requests (GETs, and POSTs with bodies) through a proxy in front of two
/// echo upstreams; three more clients each send a malformed request and are
/// refused with 400. Then, with the three keep-alive clients still
/// connected, one scrape must say exactly what happened: 10 x 200 and
/// 3 x 400, by code and by class; 5 requests to each upstream (round robin)
/// over one connection each, both now idle in the pool; 3 bad requests and
/// no other error or timeout; the request body bytes and the response bytes
/// the clients received, to the byte; 13 observations in the histogram; 3
/// client connections open, 6 accepted; and, every connection being idle,
/// no buffer memory held.
#[test]
fn one_scrape_counts_known_traffic_exactly() {
    let a = Upstream::echo("a");
    let b = Upstream::echo("b");
    let proxy = start_proxy_with(&[a.addr, b.addr], metrics_on);

    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(proxy.local_addr()))
        .collect();
    let mut bytes_to_clients = 0;
    let mut body_bytes_sent = 0;
    for i in 0..10 {
        let client = &mut clients[i % 3];
        let resp = if i % 2 == 0 {
            client.request(&get(&format!("/get/{i}")))
        } else {
            let body = vec![b'x'; 100 + i];
            body_bytes_sent += body.len() as u64;
            client.request(&post(&format!("/post/{i}"), &body))
        };
        assert_eq!(resp.status, 200, "request {i}:\n{}", resp.raw_head);
        bytes_to_clients += wire_len(&resp);
    }
    for raw in MALFORMED {
        let mut client = Client::connect(proxy.local_addr());
        let resp = client
            .request_refused(raw)
            .unwrap_or_else(|e| panic!("no answer to a malformed request: {e}"));
        assert_error_answer(&resp, 400, "a malformed request");
        bytes_to_clients += wire_len(&resp);
        client
            .expect_closed()
            .unwrap_or_else(|e| panic!("after a 400 the proxy must close: {e}"));
    }
    // The refused clients have hung up; wait until the proxy has noticed,
    // so the gauge counts only the three keep-alive clients.
    wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.client_connections == 3
    })
    .unwrap_or_else(|s| panic!("the proxy should hold 3 client connections: {s:?}"));

    let scrape = scrape_strictly(&proxy);
    expect_lines(
        &scrape,
        &[a.addr, b.addr],
        r#"
        ferroxy_requests_total{code="200",class="2xx"} 10        # ten requests passed
        ferroxy_requests_total{code="400",class="4xx"} 3         # three were malformed
        ferroxy_requests_by_class_total{class="none"} 0
        ferroxy_requests_by_class_total{class="1xx"} 0
        ferroxy_requests_by_class_total{class="2xx"} 10
        ferroxy_requests_by_class_total{class="3xx"} 0
        ferroxy_requests_by_class_total{class="4xx"} 3
        ferroxy_requests_by_class_total{class="5xx"} 0
        ferroxy_upstream_requests_total{upstream="$A"} 5         # round robin: requests 0, 2, 4...
        ferroxy_upstream_requests_total{upstream="$B"} 5         # ... and 1, 3, 5...
        ferroxy_upstream_connects_total{upstream="$A"} 1         # one connection each, reused
        ferroxy_upstream_connects_total{upstream="$B"} 1
        ferroxy_upstream_connect_failures_total{upstream="$A"} 0
        ferroxy_upstream_connect_failures_total{upstream="$B"} 0
        ferroxy_upstream_idle_connections{upstream="$A"} 1       # parked after its last answer
        ferroxy_upstream_idle_connections{upstream="$B"} 1
        ferroxy_upstream_active_connections{upstream="$A"} 0     # nothing in flight
        ferroxy_upstream_active_connections{upstream="$B"} 0
        ferroxy_upstream_queue_length{upstream="$A"} 0
        ferroxy_upstream_queue_length{upstream="$B"} 0
        ferroxy_errors_total{kind="bad_request"} 3               # the malformed three
        ferroxy_errors_total{kind="upstream_refused"} 0
        ferroxy_errors_total{kind="upstream_reset"} 0
        ferroxy_errors_total{kind="upstream_bad_response"} 0
        ferroxy_errors_total{kind="upstream_truncated"} 0
        ferroxy_errors_total{kind="client_aborted"} 0
        ferroxy_errors_total{kind="over_client_limit"} 0
        ferroxy_request_duration_seconds_bucket{le="+Inf"} 13    # one observation per request
        ferroxy_request_duration_seconds_count 13
        ferroxy_client_connections 3                             # the keep-alive three; scrapers do not count
        ferroxy_accepted_connections_total 6                     # 3 keep-alive + 3 refused
        ferroxy_buffer_bytes 0                                   # idle connections hold no buffer (lent only while bytes are in flight)
        "#,
    );
    let (m, text) = &scrape;
    assert_eq!(
        m.sum("ferroxy_requests_total"),
        13.0,
        "no code but 200 and 400 should appear:\n{text}"
    );
    assert_eq!(
        m.sum("ferroxy_timeouts_total"),
        0.0,
        "no timeout fired:\n{text}"
    );
    assert_eq!(
        m.value("ferroxy_bytes_total", &[("direction", "to_upstream")]),
        body_bytes_sent as f64,
        "to_upstream counts request body bytes: the POST bodies, exactly"
    );
    assert_eq!(
        m.value("ferroxy_bytes_total", &[("direction", "to_client")]),
        bytes_to_clients as f64,
        "to_client counts every byte the clients read, heads included"
    );
    assert!(
        m.value("ferroxy_request_duration_seconds_sum", &[]) > 0.0,
        "thirteen requests took some time"
    );
    assert_eq!(
        (a.request_count(), b.request_count()),
        (5, 5),
        "what the upstreams saw"
    );
    assert_eq!(
        (a.connections(), b.connections()),
        (1, 1),
        "connections the upstreams saw"
    );
    drop(clients);
}

/// Both upstreams refuse connections. One GET: the proxy tries each (two
/// connects, two refusals), then answers 502 itself.
#[test]
fn a_refused_upstream_set_counts_one_502_and_two_refusals() {
    let (d1, d2) = (dead_addr(), dead_addr());
    let proxy = start_proxy_with(&[d1, d2], metrics_on);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/"));
    let resp = client.read_response("GET").expect("an answer");
    assert_error_answer(&resp, 502, "every upstream refused");

    let scrape = scrape_strictly(&proxy);
    expect_lines(
        &scrape,
        &[d1, d2],
        r#"
        ferroxy_requests_total{code="502",class="5xx"} 1          # the proxy's own 502
        ferroxy_requests_by_class_total{class="5xx"} 1
        ferroxy_errors_total{kind="upstream_refused"} 2           # one refusal per upstream tried
        ferroxy_upstream_connects_total{upstream="$A"} 1          # each upstream tried once...
        ferroxy_upstream_connects_total{upstream="$B"} 1
        ferroxy_upstream_connect_failures_total{upstream="$A"} 1  # ... and refused
        ferroxy_upstream_connect_failures_total{upstream="$B"} 1
        ferroxy_request_duration_seconds_count 1                  # a 502 is observed too
        "#,
    );
    let (m, _) = &scrape;
    assert_eq!(m.sum("ferroxy_requests_total"), 1.0, "one request in all");
    assert_eq!(
        m.value("ferroxy_bytes_total", &[("direction", "to_client")]),
        wire_len(&resp) as f64,
        "to_client is the 502 answer, to the byte"
    );
}

/// The count the previous story leaves out, on its own so the rest of that
/// story keeps passing: a request no upstream accepted was forwarded to
/// none of them, so `ferroxy_upstream_requests_total` ("Requests
/// forwarded, by upstream") stays 0 for both, and the panel's share column
/// does not credit the last upstream tried with a 502 it never saw.
#[test]
fn a_request_no_upstream_accepted_is_forwarded_to_none() {
    let (d1, d2) = (dead_addr(), dead_addr());
    let proxy = start_proxy_with(&[d1, d2], metrics_on);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/"));
    let resp = client.read_response("GET").expect("an answer");
    assert_error_answer(&resp, 502, "every upstream refused");

    expect_lines(
        &scrape_strictly(&proxy),
        &[d1, d2],
        r#"
        ferroxy_upstream_requests_total{upstream="$A"} 0   # it refused the connection: nothing forwarded
        ferroxy_upstream_requests_total{upstream="$B"} 0   # likewise
        "#,
    );
}

/// An upstream that takes two seconds to answer, behind a proxy whose
/// `read_ms` is 200: the client gets 504, `upstream_read` counts one
/// timeout (and no other kind fires), and the histogram saw the request as
/// slow (nothing under 100 ms, at least 0.2 s in its sum).
#[test]
fn an_upstream_read_timeout_counts_one_504_and_one_timeout() {
    let slow = Upstream::slow("slow", Duration::from_secs(2));
    let proxy = start_proxy_with(&[slow.addr], |c| {
        metrics_on(c);
        c.timeouts.read_ms = 200;
    });
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/slow"));
    let resp = client.read_response("GET").expect("an answer");
    assert_error_answer(&resp, 504, "the upstream sent nothing within read_ms");

    let scrape = scrape_strictly(&proxy);
    expect_lines(
        &scrape,
        &[slow.addr],
        r#"
        ferroxy_requests_total{code="504",class="5xx"} 1          # the proxy's own 504
        ferroxy_timeouts_total{kind="upstream_read"} 1            # read_ms fired...
        ferroxy_timeouts_total{kind="connect"} 0                  # ... and nothing else
        ferroxy_timeouts_total{kind="client_body"} 0
        ferroxy_timeouts_total{kind="write"} 0
        ferroxy_timeouts_total{kind="total"} 0
        ferroxy_timeouts_total{kind="client_header"} 0
        ferroxy_timeouts_total{kind="keepalive"} 0
        ferroxy_timeouts_total{kind="tunnel_idle"} 0
        ferroxy_timeouts_total{kind="queue"} 0
        ferroxy_timeouts_total{kind="linger"} 0
        ferroxy_upstream_requests_total{upstream="$A"} 1          # it was forwarded there
        ferroxy_request_duration_seconds_bucket{le="0.1"} 0       # a 200 ms timeout is not under 100 ms
        ferroxy_request_duration_seconds_count 1
        "#,
    );
    let sum = scrape.0.value("ferroxy_request_duration_seconds_sum", &[]);
    assert!(
        sum >= 0.2,
        "the 504 took at least read_ms (0.2 s); the histogram's sum says {sum}"
    );
}

/// The gauges follow one request through: while a slow upstream holds it,
/// its upstream connection is active (and not idle) and one client is
/// connected, and nothing is counted yet; after the answer, the connection
/// is idle in the pool, nothing is active, and the request is counted.
#[test]
fn gauges_show_a_request_in_flight_and_then_a_pooled_connection() {
    let slow = Upstream::slow("slow", Duration::from_millis(400));
    let proxy = start_proxy_with(&[slow.addr], metrics_on);
    let mut client = Client::connect(proxy.local_addr());
    client.send(&get("/in-flight"));
    assert!(
        wait_until(Duration::from_secs(5), || slow.request_count() == 1),
        "the request should reach the upstream"
    );
    let during = scrape_strictly(&proxy);
    expect_lines(
        &during,
        &[slow.addr],
        r#"
        ferroxy_upstream_active_connections{upstream="$A"} 1   # carrying the request
        ferroxy_upstream_idle_connections{upstream="$A"} 0     # busy, not pooled
        ferroxy_client_connections 1                           # the waiting client
        ferroxy_request_duration_seconds_count 0               # a request is counted when it ends
        "#,
    );

    let resp = client.read_response("GET").expect("the slow answer");
    assert_eq!(resp.status, 200);
    expect_lines(
        &scrape_strictly(&proxy),
        &[slow.addr],
        r#"
        ferroxy_upstream_active_connections{upstream="$A"} 0   # the exchange is over
        ferroxy_upstream_idle_connections{upstream="$A"} 1     # parked for the next request
        ferroxy_requests_total{code="200",class="2xx"} 1       # now it is counted
        "#,
    );
}

/// `max_conns_per_upstream` is 1 and the only upstream is slow: a second
/// client's request waits for the slot, and the queue gauge says so. Both
/// are served in turn.
#[test]
fn a_request_waiting_for_a_slot_shows_in_the_queue_gauge() {
    let slow = Upstream::slow("slow", Duration::from_millis(500));
    let proxy = start_proxy_with(&[slow.addr], |c| {
        metrics_on(c);
        c.limits.max_conns_per_upstream = 1;
    });
    let mut first = Client::connect(proxy.local_addr());
    first.send(&get("/first"));
    assert!(
        wait_until(Duration::from_secs(5), || slow.request_count() == 1),
        "the first request should reach the upstream"
    );
    let mut second = Client::connect(proxy.local_addr());
    second.send(&get("/second"));
    wait_for_stats(&proxy, Duration::from_secs(5), |s| s.queued_requests == 1)
        .unwrap_or_else(|s| panic!("the second request should wait in the queue: {s:?}"));

    expect_lines(
        &scrape_strictly(&proxy),
        &[slow.addr],
        r#"
        ferroxy_upstream_queue_length{upstream="$A"} 1         # the second request waits
        ferroxy_upstream_active_connections{upstream="$A"} 1   # the only slot is busy
        "#,
    );
    for (client, name) in [(&mut first, "first"), (&mut second, "second")] {
        let resp = client.read_response("GET").expect("an answer");
        assert_eq!(
            resp.status, 200,
            "the {name} request should be served in turn"
        );
    }
}

/// `max_client_conns` is 2 and two clients hold it: a third is refused
/// with 503. The metrics listener has its own limit, so it still answers,
/// and it says why the third client was turned away.
#[test]
fn the_metrics_listener_answers_while_the_proxy_is_full() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], |c| {
        metrics_on(c);
        c.limits.max_client_conns = 2;
    });
    let _held: Vec<Client> = (0..2)
        .map(|_| Client::connect(proxy.local_addr()))
        .collect();
    wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.client_connections == 2
    })
    .unwrap_or_else(|s| panic!("the proxy should hold 2 clients: {s:?}"));
    let mut third = Client::connect(proxy.local_addr());
    let resp = third
        .read_response("GET")
        .expect("a 503 for the third client");
    assert_eq!(
        resp.status, 503,
        "over max_client_conns:\n{}",
        resp.raw_head
    );

    expect_lines(
        &scrape_strictly(&proxy),
        &[a.addr],
        r#"
        ferroxy_client_connections 2                       # the two held clients
        ferroxy_errors_total{kind="over_client_limit"} 1   # the third client
        ferroxy_accepted_connections_total 2               # a refused connection was not accepted
        "#,
    );
}
// ---------------------------------------------------------------------------
// The format, read strictly
// ---------------------------------------------------------------------------

/// Traffic of every sort a scrape can describe (200s, an upstream's 404,
/// 502s from an upstream that hangs up, a 400), then every line of the
/// scrape read strictly. The families the contract names are all there,
/// with the types a scraper expects.
#[test]
fn every_line_of_a_busy_scrape_reads_strictly() {
    let a = Upstream::echo("a");
    let hangs_up = Upstream::fixed_then_close("hangs-up", b"");
    let proxy = start_proxy_with(&[a.addr, hangs_up.addr], metrics_on);
    for i in 0..6 {
        let target = if i == 2 {
            "/status/404".to_string()
        } else {
            format!("/busy/{i}")
        };
        let mut client = Client::connect(proxy.local_addr());
        client.send(&get(&target));
        let resp = client.read_response("GET").expect("an answer");
        let want = match i % 2 {
            0 if i == 2 => 404,
            0 => 200,
            _ => 502,
        };
        assert_eq!(
            resp.status, want,
            "request {i} ({target}):\n{}",
            resp.raw_head
        );
    }
    let mut bad = Client::connect(proxy.local_addr());
    let resp = bad.request_refused(MALFORMED[0]).expect("a 400");
    assert_eq!(resp.status, 400);

    let (m, text) = scrape_strictly(&proxy);
    for (name, kind) in [
        ("ferroxy_requests_total", "counter"),
        ("ferroxy_requests_by_class_total", "counter"),
        ("ferroxy_upstream_requests_total", "counter"),
        ("ferroxy_upstream_connects_total", "counter"),
        ("ferroxy_upstream_connect_failures_total", "counter"),
        ("ferroxy_upstream_active_connections", "gauge"),
        ("ferroxy_upstream_idle_connections", "gauge"),
        ("ferroxy_upstream_queue_length", "gauge"),
        ("ferroxy_client_connections", "gauge"),
        ("ferroxy_accepted_connections_total", "counter"),
        ("ferroxy_bytes_total", "counter"),
        ("ferroxy_buffer_bytes", "gauge"),
        ("ferroxy_timeouts_total", "counter"),
        ("ferroxy_errors_total", "counter"),
        ("ferroxy_request_duration_seconds", "histogram"),
        ("ferroxy_uptime_seconds", "gauge"),
    ] {
        let family = m
            .family(name)
            .unwrap_or_else(|| panic!("no family {name} in the scrape:\n{text}"));
        assert_eq!(family.kind, kind, "{name} should be a {kind}");
    }
    assert_eq!(
        m.value(
            "ferroxy_requests_total",
            &[("code", "404"), ("class", "4xx")]
        ),
        1.0,
        "the upstream's 404"
    );
    assert_eq!(
        m.value(
            "ferroxy_requests_total",
            &[("code", "400"), ("class", "4xx")]
        ),
        1.0,
        "our own 400, a separate code"
    );
    assert_eq!(
        m.value(
            "ferroxy_requests_total",
            &[("code", "502"), ("class", "5xx")]
        ),
        3.0,
        "the upstream that hangs up"
    );
}

/// A proxy that has done nothing yet still gives a well-formed scrape:
/// families without samples keep their HELP and TYPE, the histogram has
/// all its buckets at zero.
#[test]
fn an_idle_proxys_scrape_reads_strictly() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    let (m, _) = scrape_strictly(&proxy);
    assert!(
        m.series("ferroxy_requests_total").is_empty(),
        "no request, no code"
    );
    assert_eq!(
        m.series("ferroxy_request_duration_seconds_bucket").len(),
        LATENCY_BUCKETS_US.len() + 1,
        "every bucket, +Inf included, is there from the start"
    );
    assert_eq!(m.sum("ferroxy_request_duration_seconds_bucket"), 0.0);
}

/// The exposition text built straight from `Metrics` (sans-IO), with an
/// upstream name no socket address could have: a quote, a backslash and a
/// newline. They are escaped so that the strict reader gets the very same
/// string back, and the line never breaks.
#[test]
fn label_values_are_escaped_so_a_reader_gets_them_back() {
    let weird = "up\"stream\\one\ntwo";
    let mut metrics = Metrics::new(&[]);
    metrics.upstreams.push(ferroxy::metrics::UpstreamCounters {
        address: weird.to_string(),
        requests: 7,
        ..Default::default()
    });
    let gauges = Gauges {
        upstream_active: vec![0],
        upstream_idle: vec![0],
        upstream_queued: vec![0],
        ..Default::default()
    };
    let text = admin::prometheus(&metrics, &gauges);
    let m = read_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        m.value("ferroxy_upstream_requests_total", &[("upstream", weird)]),
        7.0,
        "the escaped label read back"
    );
}

/// Every status a request can end with (0 for "no status", 100 to 599)
/// and one observation in every latency bucket, +Inf included: the text
/// still reads strictly, codes fall in the right classes, and the bucket
/// bounds are printed as exact decimals (`0.0005`, not `0.00050000001`).
#[test]
fn every_code_and_every_bucket_reads_strictly() {
    let mut metrics = Metrics::new(&[]);
    for code in std::iter::once(0).chain(100..600) {
        metrics.record_request(code, None, 1, 0, 0);
    }
    for bound in LATENCY_BUCKETS_US {
        metrics.latency.record(bound);
    }
    metrics.latency.record(u64::MAX / 2);
    let text = admin::prometheus(&metrics, &Gauges::default());
    let m = read_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        m.value(
            "ferroxy_requests_total",
            &[("code", "0"), ("class", "none")]
        ),
        1.0,
        "no status"
    );
    assert_eq!(
        m.value(
            "ferroxy_requests_total",
            &[("code", "599"), ("class", "5xx")]
        ),
        1.0,
        "the last code"
    );
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        assert_eq!(
            m.value("ferroxy_requests_by_class_total", &[("class", class)]),
            100.0,
            "100 codes a class"
        );
    }
    let les: Vec<&str> = m
        .series("ferroxy_request_duration_seconds_bucket")
        .iter()
        .map(|s| s.labels[0].1.as_str())
        .collect();
    assert_eq!(
        les,
        [
            "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
            "1", "2.5", "5", "10", "+Inf"
        ],
        "bucket bounds, in seconds, exactly"
    );
    for (i, sample) in m
        .series("ferroxy_request_duration_seconds_bucket")
        .iter()
        .enumerate()
    {
        // 500 requests at 1 us went in the first bucket too.
        let want = (501 + i + 1) as f64;
        assert_eq!(
            sample.value, want,
            "le={}: an observation exactly on a bound counts in that bucket",
            sample.labels[0].1
        );
    }
}

/// The reader is only worth something if it refuses things. Each of these
/// small texts breaks one rule, and the reader must say which.
#[test]
fn the_strict_reader_refuses_what_it_should() {
    let head = "# HELP x_total X.\n# TYPE x_total counter\n";
    let cases: [(String, &str); 20] = [
        (format!("{head}x_total 1"), "end with a newline"),
        (format!("{head}\nx_total 1\n"), "blank line"),
        ("x_total 1\n".to_string(), "TYPE"),
        ("# TYPE x_total counter\nx_total 1\n".to_string(), "HELP"),
        (format!("{head}# TYPE x_total counter\n"), "second TYPE"),
        (format!("{head}x_total 1\n# HELP x_total again\n"), "second HELP"),
        ("# HELP x X.\n# TYPE x counter\n".to_string(), "_total"),
        ("# HELP x X.\n# TYPE x summary\n".to_string(), "counter, gauge or histogram"),
        (format!("{head}# just a comment\n"), "neither HELP nor TYPE"),
        (format!("{head}1x_total 1\n"), "not a valid metric name"),
        (format!("{head}x_total{{a=b}} 1\n"), "=\"value\""),
        (format!("{head}x_total{{a=\"\\t\"}} 1\n"), "bad escape"),
        (format!("{head}x_total{{__a=\"v\"}} 1\n"), "reserved"),
        (format!("{head}x_total{{a=\"v\",}} 1\n"), "not a valid label name"),
        (format!("{head}x_total inf\n"), "not a number"),
        (format!("{head}x_total 1 1700000000\n"), "no timestamps"),
        (format!("{head}x_total 1\nx_total 2\n"), "same series twice"),
        (
            format!("{head}x_total{{a=\"1\"}} 1\n# HELP y Y.\n# TYPE y gauge\ny 1\nx_total{{a=\"2\"}} 1\n"),
            "not all together",
        ),
        (
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"
                .to_string(),
            "cumulative",
        ),
        (
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"
                .to_string(),
            "must equal _count",
        ),
    ];
    for (text, why) in cases {
        match read_exposition(&text) {
            Ok(_) => panic!("the reader accepted a text that breaks a rule ({why}):\n{text}"),
            Err(e) => assert!(
                e.contains(why),
                "refused for the wrong reason: wanted {why:?}, got {e:?}\n{text}"
            ),
        }
    }
    let good = "# HELP h H \\\\ and \\n.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5e0\nh_count 2\n";
    read_exposition(good).unwrap_or_else(|e| panic!("a well-formed text was refused: {e}\n{good}"));
}

// ---------------------------------------------------------------------------
// The other pages, and the listener's manners
// ---------------------------------------------------------------------------

/// After mixed traffic, `/metrics.json` is JSON, and it says what the text
/// says: the same totals, codes, classes, per-upstream figures, errors,
/// timeouts, bytes and gauges. Its percentiles lie inside the histogram
/// bucket the text puts them in.
#[test]
fn metrics_json_agrees_with_the_text() {
    let a = Upstream::echo("a");
    let b = Upstream::echo("b");
    let proxy = start_proxy_with(&[a.addr, b.addr], metrics_on);
    let mut keep = Client::connect(proxy.local_addr());
    for i in 0..7 {
        let target = if i == 3 {
            "/status/404".to_string()
        } else {
            format!("/json/{i}")
        };
        keep.request(&get(&target));
    }
    let _ = Client::connect(proxy.local_addr()).request_refused(MALFORMED[1]);
    wait_for_stats(&proxy, Duration::from_secs(5), |s| {
        s.client_connections == 1
    })
    .unwrap_or_else(|s| panic!("one client should remain: {s:?}"));

    let (m, text) = scrape_strictly(&proxy);
    let resp = scrape(&proxy, "/metrics.json");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    let j: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("/metrics.json is not JSON: {e}\n{}", resp.body_text()));
    let num = |v: &serde_json::Value, what: &str| -> f64 {
        v.as_f64()
            .unwrap_or_else(|| panic!("{what} should be a number in /metrics.json, is {v}"))
    };
    let agree = |json: f64, text_value: f64, what: &str| {
        assert_eq!(
            json, text_value,
            "{what}: /metrics.json says {json}, /metrics says {text_value}\n{text}"
        );
    };

    agree(
        num(&j["requests_total"], "requests_total"),
        m.sum("ferroxy_requests_total"),
        "requests in all",
    );
    agree(
        8.0,
        m.sum("ferroxy_requests_total"),
        "7 + 1 requests were sent",
    );
    let by_status = j["by_status"].as_object().expect("by_status is an object");
    assert_eq!(
        by_status.len(),
        m.series("ferroxy_requests_total").len(),
        "the same codes"
    );
    for s in m.series("ferroxy_requests_total") {
        let code = &s.labels.iter().find(|(k, _)| k == "code").unwrap().1;
        agree(
            num(&by_status[code], code),
            s.value,
            &format!("code {code}"),
        );
    }
    for s in m.series("ferroxy_requests_by_class_total") {
        let class = &s.labels[0].1;
        agree(
            num(&j["by_class"][class], class),
            s.value,
            &format!("class {class}"),
        );
    }
    let upstreams = j["upstreams"].as_array().expect("upstreams is an array");
    assert_eq!(upstreams.len(), 2, "two upstreams");
    for u in upstreams {
        let addr = u["address"].as_str().expect("an address");
        for (field, family) in [
            ("requests", "ferroxy_upstream_requests_total"),
            ("connects", "ferroxy_upstream_connects_total"),
            (
                "connect_failures",
                "ferroxy_upstream_connect_failures_total",
            ),
            ("active", "ferroxy_upstream_active_connections"),
            ("idle", "ferroxy_upstream_idle_connections"),
            ("queued", "ferroxy_upstream_queue_length"),
        ] {
            agree(
                num(&u[field], field),
                m.value(family, &[("upstream", addr)]),
                &format!("{addr} {field}"),
            );
        }
    }
    for s in m.series("ferroxy_errors_total") {
        agree(
            num(&j["errors"][&s.labels[0].1], "an error"),
            s.value,
            &format!("errors {}", s.labels[0].1),
        );
    }
    for s in m.series("ferroxy_timeouts_total") {
        agree(
            num(&j["timeouts"][&s.labels[0].1], "a timeout"),
            s.value,
            &format!("timeouts {}", s.labels[0].1),
        );
    }
    agree(
        num(&j["bytes_to_upstream"], "bytes"),
        m.value("ferroxy_bytes_total", &[("direction", "to_upstream")]),
        "bytes to upstream",
    );
    agree(
        num(&j["bytes_to_client"], "bytes"),
        m.value("ferroxy_bytes_total", &[("direction", "to_client")]),
        "bytes to client",
    );
    agree(
        num(&j["client_connections"], "clients"),
        m.value("ferroxy_client_connections", &[]),
        "client connections",
    );
    agree(
        num(&j["accepted_connections"], "accepted"),
        m.value("ferroxy_accepted_connections_total", &[]),
        "accepted",
    );
    let count = m.value("ferroxy_request_duration_seconds_count", &[]);
    agree(
        num(&j["latency_ms"]["count"], "latency count"),
        count,
        "latency observations",
    );

    // Each percentile must fall in the bucket where its rank lies.
    let buckets: Vec<(f64, f64)> = m
        .series("ferroxy_request_duration_seconds_bucket")
        .iter()
        .map(|s| (read_value(&s.labels[0].1).unwrap(), s.value))
        .collect();
    for (key, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let ms = num(&j["latency_ms"][key], key);
        let rank = q * count;
        let i = buckets.iter().position(|&(_, c)| c >= rank).unwrap();
        let lower = if i == 0 {
            0.0
        } else {
            buckets[i - 1].0 * 1000.0
        };
        let upper = buckets[i].0 * 1000.0;
        assert!(
            ms >= lower - 0.01 && ms <= upper + 0.01,
            "{key} = {ms} ms should lie in the bucket ({lower} ms, {upper} ms] where rank {rank} of {count} falls"
        );
    }
}

/// `GET /` is a page for a person: HTML, refreshed by the browser itself
/// (a refresh meta, no script), showing the figures (the request total and
/// each upstream's address), and linking to the machine-readable pages.
#[test]
fn the_panel_is_a_self_refreshing_html_page() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    for i in 0..3 {
        Client::connect(proxy.local_addr()).request(&get(&format!("/panel/{i}")));
    }
    let resp = scrape(&proxy, "/");
    assert_eq!(resp.status, 200, "GET /:\n{}", resp.raw_head);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        resp.header("Cache-Control"),
        Some("no-store"),
        "a stale panel would lie"
    );
    let html = resp.body_text();
    for needle in [
        "<!doctype html>",
        "<meta http-equiv=\"refresh\" content=\"2\">",
        "3 requests in all",
        &a.addr.to_string(),
        "href=\"/metrics\"",
        "href=\"/metrics.json\"",
    ] {
        assert!(
            html.contains(needle),
            "the panel should contain {needle:?}:\n{html}"
        );
    }
    assert!(!html.contains("<script"), "the panel needs no script");
}

/// Text the panel shows is HTML-escaped: an upstream named like markup
/// appears as text, not as markup (sans-IO, straight from `Metrics`).
#[test]
fn the_panel_escapes_what_it_shows() {
    let mut metrics = Metrics::new(&[]);
    metrics.upstreams.push(ferroxy::metrics::UpstreamCounters {
        address: "<b>&\"x\"</b>".to_string(),
        ..Default::default()
    });
    let html = ferroxy::panel::panel(
        &metrics,
        &Gauges::default(),
        &ferroxy::series::Series::new(),
    );
    assert!(
        html.contains("&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;"),
        "escaped address missing:\n{html}"
    );
    assert!(
        !html.contains("<b>&"),
        "the address went in as markup:\n{html}"
    );
}

/// Only three paths exist. Anything else (a browser's `/favicon.ico`, a
/// trailing slash, a longer name) is a complete 404 that closes; a query
/// string does not change the path.
#[test]
fn other_paths_are_404() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    for path in [
        "/favicon.ico",
        "/metrics/",
        "/metricsx",
        "/metrics.json/x",
        "/index.html",
        "//",
    ] {
        let mut client = Client::connect(metrics_addr(&proxy));
        let resp = client.request(&get(path));
        assert_error_answer(&resp, 404, &format!("GET {path} on the metrics listener"));
        client
            .expect_closed()
            .unwrap_or_else(|e| panic!("after a 404 the listener must close: {e}"));
    }
    let resp = scrape(&proxy, "/metrics?format=whatever");
    assert_eq!(resp.status, 200, "a query string does not change the path");
}

/// The pages are read-only: any method but GET and HEAD is 405 with
/// `Allow: GET, HEAD`. HEAD gets the head of the page and no body.
#[test]
fn methods_other_than_get_and_head_are_405() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    for (method, path) in [
        ("POST", "/metrics"),
        ("PUT", "/"),
        ("DELETE", "/metrics.json"),
        ("OPTIONS", "/metrics"),
    ] {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n");
        let mut client = Client::connect(metrics_addr(&proxy));
        let resp = client.request(raw.as_bytes());
        let story = format!("{method} {path} on the metrics listener");
        assert_error_answer(&resp, 405, &story);
        assert_eq!(
            resp.header("Allow"),
            Some("GET, HEAD"),
            "{story}: a 405 says what is allowed"
        );
    }
    let mut client = Client::connect(metrics_addr(&proxy));
    let resp = client.request(format!("HEAD /metrics HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    assert_eq!(resp.status, 200, "HEAD /metrics:\n{}", resp.raw_head);
    assert!(
        resp.header("Content-Length").is_some_and(|n| n != "0"),
        "HEAD says how long the page is"
    );
    client
        .expect_closed()
        .unwrap_or_else(|e| panic!("HEAD: no body, then close: {e}"));
}

/// A malformed request to the metrics listener is read by the same parser
/// as on the proxy port and refused the same way: the same 400, then close.
#[test]
fn a_malformed_request_on_the_metrics_port_is_400_like_the_proxy_port() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    for raw in MALFORMED {
        let mut on_metrics = Client::connect(metrics_addr(&proxy));
        let admin = on_metrics
            .request_refused(raw)
            .expect("an answer on the metrics port");
        assert_error_answer(&admin, 400, "a malformed request on the metrics port");
        on_metrics
            .expect_closed()
            .unwrap_or_else(|e| panic!("after a 400 the listener must close: {e}"));
        let mut on_proxy = Client::connect(proxy.local_addr());
        let proxied = on_proxy
            .request_refused(raw)
            .expect("an answer on the proxy port");
        assert_eq!(
            (admin.raw_head.as_str(), admin.body_text()),
            (proxied.raw_head.as_str(), proxied.body_text()),
            "the same request should get the same answer on both ports"
        );
    }
}

/// Scraping is not traffic: the listener's own requests, good or bad, do
/// not show in the proxy's request, connection or error counts (or a
/// dashboard polling every second would count itself).
#[test]
fn requests_to_the_metrics_listener_are_not_counted_as_traffic() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    for path in ["/metrics", "/metrics.json", "/", "/nope"] {
        scrape(&proxy, path);
    }
    let _ = Client::connect(metrics_addr(&proxy)).request_refused(MALFORMED[0]);
    let (m, text) = scrape_strictly(&proxy);
    assert_eq!(
        m.sum("ferroxy_requests_total"),
        0.0,
        "scrapes counted as requests:\n{text}"
    );
    assert_eq!(
        m.sum("ferroxy_errors_total"),
        0.0,
        "scrapes counted as errors:\n{text}"
    );
    assert_eq!(
        m.value("ferroxy_accepted_connections_total", &[]),
        0.0,
        "scrapers are not clients"
    );
    assert_eq!(
        m.value("ferroxy_request_duration_seconds_count", &[]),
        0.0,
        "nor observations"
    );
}

/// The listener is not a way in. Requests that would be forwarded on the
/// proxy port (a path the upstream serves, an absolute-form URL naming the
/// upstream, a POST with a body, a WebSocket upgrade) get the listener's
/// own answers, and the upstream sees no connection at all.
#[test]
fn the_metrics_listener_never_forwards_anything_upstream() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    let requests: Vec<(Vec<u8>, u16)> = vec![
        (get("/anything"), 404),
        (
            head(&[
                &format!("GET http://{}/metrics HTTP/1.1", a.addr),
                &format!("Host: {}", a.addr),
            ]),
            200,
        ),
        (
            head(&[
                &format!("GET http://{}/x HTTP/1.1", a.addr),
                &format!("Host: {}", a.addr),
            ]),
            404,
        ),
        (
            head(&["GET /metrics HTTP/1.1", &format!("Host: {}", a.addr)]),
            200,
        ),
        (post("/", b"hello upstream"), 405),
        (
            head(&[
                "GET / HTTP/1.1",
                &format!("Host: {HOST}"),
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ]),
            200,
        ),
    ];
    for (raw, want) in &requests {
        let mut client = Client::connect(metrics_addr(&proxy));
        let resp = client.request(raw);
        assert_eq!(
            resp.status,
            *want,
            "{:?} on the metrics port:\n{}",
            String::from_utf8_lossy(raw),
            resp.raw_head
        );
    }
    let (m, _) = scrape_strictly(&proxy);
    assert_eq!(
        a.connections(),
        0,
        "the upstream was connected to from the metrics listener"
    );
    assert_eq!(
        a.request_count(),
        0,
        "the upstream got a request from the metrics listener"
    );
    assert_eq!(
        m.value(
            "ferroxy_upstream_connects_total",
            &[("upstream", &a.addr.to_string())]
        ),
        0.0,
        "no connect"
    );
}

/// The metrics listener closes after every answer, even when the request
/// asked for keep-alive: one request per scrape, no idle scrapers held.
#[test]
fn the_metrics_listener_closes_after_each_answer() {
    let a = Upstream::echo("a");
    let proxy = start_proxy_with(&[a.addr], metrics_on);
    let mut client = Client::connect(metrics_addr(&proxy));
    let resp = client.request(&head(&[
        "GET /metrics HTTP/1.1",
        &format!("Host: {HOST}"),
        "Connection: keep-alive",
    ]));
    assert_eq!(resp.status, 200);
    assert!(
        resp.has_token("Connection", "close"),
        "the answer says it closes:\n{}",
        resp.raw_head
    );
    client.expect_closed().unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------
// The arithmetic, sans-IO
// ---------------------------------------------------------------------------

/// An observation exactly on a bound counts in that bucket (`le` is "less
/// than or equal"); one microsecond more goes in the next.
#[test]
fn an_observation_on_a_bound_belongs_to_that_bucket() {
    let mut h = Histogram::default();
    h.record(500);
    h.record(501);
    h.record(10_000_001);
    assert_eq!(h.counts[0], 1, "500 us is le 0.0005 s");
    assert_eq!(h.counts[1], 1, "501 us is le 0.001 s");
    assert_eq!(
        h.counts[LATENCY_BUCKETS_US.len()],
        1,
        "over 10 s is +Inf only"
    );
    assert_eq!((h.count, h.sum_us), (3, 10_001_002));
}

/// A hundred requests that all took exactly 3 ms. The histogram only knows
/// "between 2.5 and 5 ms", so the median is interpolated to the middle of
/// that bucket: 3.75 ms, 25% off. The error is at most the bucket's width;
/// that is the price of fixed buckets.
#[test]
fn quantiles_interpolate_inside_a_bucket() {
    let mut h = Histogram::default();
    assert_eq!(h.quantile_us(0.5), None, "no observations, no median");
    for _ in 0..100 {
        h.record(3_000);
    }
    assert_eq!(
        h.quantile_us(0.5),
        Some(3_750.0),
        "halfway through (2.5 ms, 5 ms]"
    );
    assert_eq!(
        h.quantile_us(0.99),
        Some(4_975.0),
        "99% of the way through the bucket"
    );
    assert_eq!(h.quantile_us(0.0), Some(2_500.0), "the bucket's lower edge");
}

/// Ninety fast requests (0.2 ms) and ten stalls (3 s): the mean (300 ms)
/// describes no request at all; p50 stays in the fast bucket, p95 and p99
/// land in the stalls' bucket (2.5 s, 5 s]. Percentiles show the stall the
/// mean smears out.
#[test]
fn percentiles_show_what_the_mean_hides() {
    let mut h = Histogram::default();
    for _ in 0..90 {
        h.record(200);
    }
    for _ in 0..10 {
        h.record(3_000_000);
    }
    let mean = h.sum_us as f64 / h.count as f64;
    assert_eq!(
        mean, 300_180.0,
        "the mean: no request took anything like it"
    );
    let p50 = h.quantile_us(0.5).unwrap();
    assert!(
        p50 <= 500.0,
        "p50 should be in the first bucket, is {p50} us"
    );
    assert_eq!(
        h.quantile_us(0.95),
        Some(3_750_000.0),
        "p95: rank 95 is the 5th of 10 stalls"
    );
    assert_eq!(
        h.quantile_us(0.99),
        Some(4_750_000.0),
        "p99: the 9th of 10 stalls"
    );
}

/// Everything over the last bound: the estimate cannot say how far over,
/// so it reports the last finite bound (10 s), a floor, not a value.
#[test]
fn a_quantile_past_the_last_bound_is_the_last_bound() {
    let mut h = Histogram::default();
    h.record(60_000_000);
    assert_eq!(h.quantile_us(0.5), Some(10_000_000.0));
}

/// A steady 100 requests a second, offered every 250 ms for 20 s: the
/// window keeps one reading a second, the last eleven, and the rate is 100
/// whenever it is read. Then traffic stops: ten seconds later the window
/// holds only quiet readings and the rate is 0.
#[test]
fn the_rate_window_reads_a_steady_rate_and_forgets_old_traffic() {
    let mut window = RateWindow::default();
    assert_eq!(window.per_second(0, 0), 0.0, "nothing sampled yet");
    for step in 0..=80u64 {
        let now = step * 250;
        let total = now / 10; // 100 a second
        window.sample(now, total);
        if step >= 4 {
            let rate = window.per_second(now, total);
            assert!(
                (rate - 100.0).abs() < 1e-9,
                "at {now} ms the rate should be 100/s, is {rate}"
            );
        }
    }
    let total = 80 * 250 / 10;
    for step in 81..=160u64 {
        window.sample(step * 250, total);
    }
    assert_eq!(
        window.per_second(40_000, total),
        0.0,
        "ten quiet seconds later"
    );
}

// ---------------------------------------------------------------------------
// Several workers
// ---------------------------------------------------------------------------

/// Kills the child process however the story ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address").port()
}

/// `workers: 2` runs two loops on one port (`SO_REUSEPORT`), and the
/// kernel spreads connections over them. Forty connections of one request
/// each (the chance that all forty land on one worker is 2^-39): the one
/// metrics listener must count all forty, not only those of the worker that
/// happens to own it (each worker shares a copy of its figures at most
/// every 100 ms). Told on the real binary, as workers are threads of the
/// process.
#[test]
fn with_two_workers_the_metrics_count_every_workers_requests() {
    let upstream = Upstream::echo("echo");
    let (port, metrics_port) = (free_port(), free_port());
    let config = format!(
        r#"{{ "listen": "127.0.0.1:{port}",
  "upstreams": [{{ "host": "127.0.0.1", "port": {} }}],
  "timeouts": {{ "connect_ms": 1000, "read_ms": 5000, "write_ms": 5000, "total_ms": 10000 }},
  "limits": {{ "max_client_conns": 1000, "max_conns_per_upstream": 100 }},
  "logging": {{ "level": "warn" }},
  "metrics": {{ "listen": "127.0.0.1:{metrics_port}" }},
  "workers": 2 }}"#,
        upstream.addr.port()
    );
    let path = std::env::temp_dir().join(format!(
        "ferroxy-metrics-workers-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, config).expect("write the config");
    let _proxy = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_ferroxy"))
            .arg("--config")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the ferroxy binary"),
    );
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(proxy).is_ok()
                && std::net::TcpStream::connect(metrics).is_ok()
        }),
        "the binary should start listening"
    );
    // Read once at start (and on SIGHUP, which this story does not send).
    let _ = std::fs::remove_file(&path);
    // The probe connections above were accepted and closed without a
    // request: they count as connections, not requests.
    for i in 0..40 {
        let resp = Client::connect(proxy).request(&get(&format!("/w/{i}")));
        assert_eq!(resp.status, 200, "request {i}:\n{}", resp.raw_head);
    }
    assert_eq!(
        upstream.request_count(),
        40,
        "the upstream saw every request"
    );

    // Each worker shares its figures at most every 100 ms (off the request
    // path), so a scrape right after the traffic may lag by that much.
    let mut text = String::new();
    let complete = wait_until(Duration::from_secs(3), || {
        let resp = Client::connect(metrics).request(&get("/metrics"));
        text = String::from_utf8(resp.body).expect("UTF-8");
        let m = read_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        m.sum("ferroxy_requests_total") == 40.0
    });
    assert!(
        complete,
        "within a moment the scrape should count the requests of both workers:\n{text}"
    );
}
