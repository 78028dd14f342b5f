//! The panel's time series (lesson 13), sans-IO: a clock and running totals
//! go in, per-second samples and three SVG charts come out.
//!
//! - **Sampling.** At most one sample a second, each the difference of two
//!   readings of cumulative counters, like Prometheus's `rate()`.
//! - **A second's p99.** Taken from the difference of two cumulative
//!   histograms, so a fast second after a slow one shows as fast.
//! - **The ring.** Fixed capacity; the newest [`SERIES_SECONDS`] samples,
//!   oldest first; totals that go backwards do not panic.
//! - **The charts.** Three ids, an empty state, a line made of numbers and
//!   nothing a browser would run or fetch.

use ferroxy::metrics::Histogram;
use ferroxy::series::{SERIES_SECONDS, Sample, Series, charts_html};

/// A histogram holding `n` requests of `micros` each.
fn latencies(n: u64, micros: u64) -> Histogram {
    let mut h = Histogram::default();
    for _ in 0..n {
        h.record(micros);
    }
    h
}

/// A series fed one sample a second for `seconds` seconds, `rps` requests
/// and `errors` errors each second, all answered in 2 ms.
fn steady(seconds: u64, rps: u64, errors: u64) -> Series {
    let mut series = Series::new();
    let mut latency = Histogram::default();
    for t in 0..=seconds {
        series.offer(t * 1000, t * rps, t * errors, &latency);
        for _ in 0..rps {
            latency.record(2_000);
        }
    }
    series
}

fn all(series: &Series) -> Vec<Sample> {
    series.samples().collect()
}

/// The loop offers every turn, many times a second; one reading alone has
/// no interval, and a sample is kept only once 1000 ms have passed.
#[test]
fn a_sample_is_kept_at_most_once_a_second() {
    let mut series = Series::new();
    let none = Histogram::default();
    assert!(series.is_empty());
    series.offer(0, 0, 0, &none);
    assert!(series.is_empty(), "the first reading is only a baseline");
    series.offer(500, 5, 0, &none);
    series.offer(999, 9, 0, &none);
    assert_eq!(series.len(), 0, "less than a second has passed");
    series.offer(1000, 10, 0, &none);
    assert_eq!(series.len(), 1);
    series.offer(1999, 19, 0, &none);
    assert_eq!(series.len(), 1, "a second is counted from the last sample");
    series.offer(2000, 20, 0, &none);
    assert_eq!(
        all(&series).iter().map(|s| s.at_ms).collect::<Vec<_>>(),
        [1000, 2000]
    );
}

/// Requests per second is the counter's increase over the interval divided
/// by its length, so a two-second gap (the loop slept) averages over both;
/// errors are the increase in the interval.
#[test]
fn requests_per_second_comes_from_the_deltas() {
    let mut series = Series::new();
    let none = Histogram::default();
    series.offer(10_000, 100, 7, &none);
    series.offer(11_000, 150, 9, &none);
    series.offer(13_000, 250, 9, &none);
    series.offer(14_250, 500, 12, &none);
    let samples = all(&series);
    let rps: Vec<f64> = samples.iter().map(|s| s.requests_per_second).collect();
    assert_eq!(rps, [50.0, 50.0, 200.0]);
    let errors: Vec<u64> = samples.iter().map(|s| s.errors).collect();
    assert_eq!(errors, [2, 0, 3]);
}

/// A slow second (2 s answers) then a fast one (under 1 ms): the cumulative
/// p99 is still slow, but the second sample's p99 is that second's alone.
/// A second with no requests has no p99 at all.
#[test]
fn p99_covers_only_its_own_second() {
    let mut series = Series::new();
    let mut latency = Histogram::default();
    series.offer(0, 0, 0, &latency);
    for _ in 0..100 {
        latency.record(2_000_000);
    }
    series.offer(1000, 100, 0, &latency);
    for _ in 0..100 {
        latency.record(800);
    }
    series.offer(2000, 200, 0, &latency);
    series.offer(3000, 200, 0, &latency);

    let cumulative_ms = latency.quantile_us(0.99).unwrap() / 1000.0;
    assert!(
        cumulative_ms > 1000.0,
        "since start, p99 is slow: {cumulative_ms}"
    );
    let p99: Vec<Option<f64>> = all(&series).iter().map(|s| s.p99_ms).collect();
    let slow = p99[0].expect("the slow second has a p99");
    let fast = p99[1].expect("the fast second has a p99");
    assert!((1000.0..=2500.0).contains(&slow), "slow second: {slow} ms");
    assert!(
        (0.5..=1.0).contains(&fast),
        "the fast second shows as fast: {fast} ms"
    );
    assert_eq!(p99[2], None, "no requests, no p99");
}

/// Past capacity, each sample overwrites the oldest: the ring holds the
/// newest SERIES_SECONDS, still in time order.
#[test]
fn the_ring_keeps_the_newest_samples_oldest_first() {
    let extra = 50;
    let series = steady(SERIES_SECONDS as u64 + extra, 3, 0);
    assert_eq!(series.len(), SERIES_SECONDS);
    let at: Vec<u64> = series.samples().map(|s| s.at_ms).collect();
    assert_eq!(at.first(), Some(&((extra + 1) * 1000)), "the oldest kept");
    assert_eq!(
        at.last(),
        Some(&((SERIES_SECONDS as u64 + extra) * 1000)),
        "the newest"
    );
    assert!(
        at.windows(2).all(|w| w[1] == w[0] + 1000),
        "oldest first, none lost"
    );
    assert!(series.samples().all(|s| s.requests_per_second == 3.0));
}

/// Totals that go down (a worker restarted, a reload merged the figures
/// anew), or a clock that steps back, must not underflow: the interval
/// across the reset is skipped and measuring starts again from there.
#[test]
fn totals_that_go_backwards_start_afresh() {
    let mut series = Series::new();
    series.offer(0, 0, 0, &Histogram::default());
    series.offer(1000, 1000, 50, &latencies(1000, 2_000));
    series.offer(2000, 10, 1, &latencies(10, 2_000));
    assert_eq!(series.len(), 1, "no sample across the reset");
    series.offer(3000, 30, 4, &latencies(30, 2_000));
    series.offer(2500, 40, 4, &latencies(40, 2_000));
    let last = series.samples().last().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(
        last.requests_per_second, 20.0,
        "measured from the new reading"
    );
    assert_eq!(last.errors, 3);
    assert!(last.p99_ms.is_some());
}

/// Each chart has its id and a title, so the page and a test can find it.
#[test]
fn the_charts_have_their_ids_and_titles() {
    let html = charts_html(&steady(5, 10, 1));
    for id in ["chart-rps", "chart-p99", "chart-errors"] {
        assert_eq!(
            html.matches(&format!("<svg id=\"{id}\"")).count(),
            1,
            "{id} in {html}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("</svg>").count(), 3);
    assert_eq!(html.matches("<title>").count(), 3);
    assert!(html.contains("viewBox="));
}

/// Before the first sample each chart says so instead of drawing nothing.
#[test]
fn the_charts_say_when_there_are_no_samples() {
    let html = charts_html(&Series::new());
    assert_eq!(html.matches("no samples yet").count(), 3, "{html}");
    assert!(!html.contains("<polyline"));
    assert!(!html.contains("<rect"));
}

/// A few seconds of traffic draw a line of one point per sample for
/// requests/s and p99, bars for the seconds with errors, and labels with
/// the current value and the max.
#[test]
fn a_few_samples_draw_lines_and_bars() {
    let html = charts_html(&steady(4, 10, 2));
    assert!(!html.contains("no samples yet"));
    let lines = polyline_points(&html);
    assert_eq!(lines.len(), 2, "requests/s and p99: {html}");
    for points in &lines {
        assert_eq!(
            points.split(' ').count(),
            4,
            "one point per sample: {points}"
        );
    }
    assert_eq!(
        html.matches("<rect").count(),
        4,
        "one bar per second with errors"
    );
    assert!(html.contains("requests/s: 10.0 now"), "{html}");
    assert!(html.contains("max 10.0"), "{html}");
    assert!(html.contains("errors/s: 2 now"), "{html}");

    // One sample alone is a zero-length line, so that it shows as a dot.
    let one = charts_html(&steady(1, 10, 0));
    let lines = polyline_points(&one);
    assert_eq!(lines.len(), 2);
    let points: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0], points[1]);
}

/// The fragment goes into the page unescaped, so it must be only markup of
/// our own and numbers: no script, no event handler, nothing fetched, and
/// coordinates that are plain numbers.
#[test]
fn the_charts_hold_nothing_to_run_or_fetch() {
    for html in [
        charts_html(&Series::new()),
        charts_html(&steady(SERIES_SECONDS as u64 + 3, 7, 1)),
    ] {
        let lower = html.to_ascii_lowercase();
        for bad in [
            "<script",
            "javascript:",
            " on",
            "href",
            "src=",
            "url(",
            "http",
            "<foreign",
            "<image",
        ] {
            assert!(!lower.contains(bad), "{bad:?} in {html}");
        }
        for points in polyline_points(&html) {
            assert!(
                points
                    .chars()
                    .all(|c| c.is_ascii_digit() || ".,- ".contains(c)),
                "{points}"
            );
            for pair in points.split(' ') {
                let (x, y) = pair.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (0.0..=600.0).contains(&x) && (0.0..=120.0).contains(&y),
                    "{pair}"
                );
            }
        }
    }
}

/// The `points` attribute of every polyline, in order.
fn polyline_points(html: &str) -> Vec<String> {
    html.split("<polyline")
        .skip(1)
        .map(|rest| {
            let start = rest.find("points=\"").expect("a polyline has points") + "points=\"".len();
            let end = rest[start..].find('"').unwrap();
            rest[start..start + end].to_string()
        })
        .collect()
}
