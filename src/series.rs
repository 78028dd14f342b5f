//! The last five minutes, one sample a second: requests per second, p99
//! latency and errors, drawn as three small charts on the metrics panel.
//!
//! Sans-IO: the reactor calls [`Series::offer`] once per loop turn with the
//! clock and the running totals from [`crate::metrics::Metrics`]; nothing
//! here reads a clock or a socket, so a test passes the time in.
//! [`charts_html`] turns the samples into inline SVG for `src/panel.rs`'s
//! panel. This is a glance for a person, not storage: Prometheus keeps its
//! own, far longer history from `/metrics`.
//!
//! Three ideas, each where the loop's rules meet measuring:
//!
//! - **A ring buffer.** The loop must not allocate as it runs: a proxy up
//!   for a month should hold the memory it held after a minute, and an
//!   allocation is one more way for a turn of the loop to be slow. So the
//!   samples live in a fixed array of [`SERIES_SECONDS`] slots, reserved
//!   once, and when it is full each new sample overwrites the oldest.
//! - **Deltas of cumulative counters.** The counters only ever go up, and
//!   nothing resets them each second (that would be work on the request
//!   path, and would break `/metrics`, whose counters must never go down).
//!   A second's figure is the difference of two readings:
//!   `(total now - total then) / (now - then)`. That is what Prometheus's
//!   `rate()` computes from two scrapes.
//! - **A second's p99 from histogram differences.** The cumulative
//!   histogram's p99 covers everything since start: after an hour of fast
//!   answers, a slow minute barely moves it. Percentiles do not subtract,
//!   but histograms do: bucket by bucket, the counts now minus the counts a
//!   second ago are the histogram of that second alone, and its p99 is that
//!   second's (in PromQL, `histogram_quantile` over `rate()` of the buckets).
//!
//! Lesson: `lessons/13-measuring`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::metrics::{Histogram, LATENCY_BUCKETS_US};

/// How many samples the ring holds: five minutes at one a second.
pub const SERIES_SECONDS: usize = 300;

/// The histogram's bucket count, `+Inf` included.
const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// One interval of traffic, usually a second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// When the interval ended, on the loop's clock (ms).
    pub at_ms: u64,
    pub requests_per_second: f64,
    /// p99 of the requests that ended in the interval; `None` if none did.
    pub p99_ms: Option<f64>,
    /// Errors counted in the interval.
    pub errors: u64,
}

/// The totals when the last sample was taken: the next sample is the
/// difference from these. A fixed array, copied in place, so keeping it
/// costs no allocation.
#[derive(Clone, Debug)]
struct Reading {
    at_ms: u64,
    requests: u64,
    errors: u64,
    latency_counts: [u64; BUCKETS],
    latency_sum_us: u64,
}

/// A ring of the last [`SERIES_SECONDS`] samples.
#[derive(Clone, Debug)]
pub struct Series {
    ring: [Sample; SERIES_SECONDS],
    /// The slot the next sample goes into.
    next: usize,
    len: usize,
    /// `None` until the first offer: one reading alone has no interval.
    last: Option<Reading>,
}

impl Default for Series {
    fn default() -> Series {
        Series::new()
    }
}

impl Series {
    pub fn new() -> Series {
        Series {
            ring: [Sample::default(); SERIES_SECONDS],
            next: 0,
            len: 0,
            last: None,
        }
    }

    /// Offer the running totals. Cheap to call every turn: unless a second
    /// has passed since the last sample, this is one subtraction and one
    /// comparison. An idle loop may sleep for many seconds in `poll`; the
    /// sample then covers the whole gap, as an average over it.
    pub fn offer(
        &mut self,
        now_ms: u64,
        requests_total: u64,
        errors_total: u64,
        latency: &Histogram,
    ) {
        if let Some(last) = &self.last {
            if now_ms.saturating_sub(last.at_ms) < 1000 {
                return;
            }
            // A total that went down (a worker restarted, a reload merged
            // the workers' figures anew) makes this interval's difference
            // meaningless. Prometheus assumes such a counter restarted from
            // zero; we cannot know that, so we skip the interval and measure
            // from the new reading.
            let went_back = requests_total < last.requests
                || errors_total < last.errors
                || latency
                    .counts
                    .iter()
                    .zip(&last.latency_counts)
                    .any(|(now, then)| now < then);
            if !went_back {
                let elapsed = now_ms - last.at_ms;
                let mut interval = Histogram::default();
                for ((delta, now), then) in interval
                    .counts
                    .iter_mut()
                    .zip(&latency.counts)
                    .zip(&last.latency_counts)
                {
                    *delta = now.saturating_sub(*then);
                }
                // Counted from the buckets rather than `latency.count`, so
                // the rank `quantile_us` looks for is always inside them.
                interval.count = interval.counts.iter().sum();
                interval.sum_us = latency.sum_us.saturating_sub(last.latency_sum_us);
                let requests = requests_total.saturating_sub(last.requests);
                self.push(Sample {
                    at_ms: now_ms,
                    requests_per_second: requests as f64 * 1000.0 / elapsed as f64,
                    p99_ms: interval.quantile_us(0.99).map(|us| us / 1000.0),
                    errors: errors_total.saturating_sub(last.errors),
                });
            }
        }
        self.last = Some(Reading {
            at_ms: now_ms,
            requests: requests_total,
            errors: errors_total,
            latency_counts: latency.counts,
            latency_sum_us: latency.sum_us,
        });
    }

    fn push(&mut self, sample: Sample) {
        self.ring[self.next] = sample;
        self.next = (self.next + 1) % SERIES_SECONDS;
        self.len = (self.len + 1).min(SERIES_SECONDS);
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        // Once the ring is full the oldest sample is the one `next` is
        // about to overwrite; before that, it is slot 0.
        let oldest = (self.next + SERIES_SECONDS - self.len) % SERIES_SECONDS;
        (0..self.len).map(move |i| self.ring[(oldest + i) % SERIES_SECONDS])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// The charts' geometry, in viewBox units: two per second across, so the
// whole window is 600 wide, and the labels sit above the plot.
const UNITS_PER_SECOND: f64 = 2.0;
const WIDTH: f64 = SERIES_SECONDS as f64 * UNITS_PER_SECOND;
const HEIGHT: f64 = 120.0;
const PLOT_TOP: f64 = 26.0;
const PLOT_BOTTOM: f64 = 114.0;

/// What one chart shows of a sample, and how.
struct Chart {
    id: &'static str,
    title: &'static str,
    label: &'static str,
    decimals: usize,
    value: fn(&Sample) -> Option<f64>,
    bars: bool,
    colour: &'static str,
}

const CHARTS: [Chart; 3] = [
    Chart {
        id: "chart-rps",
        title: "Requests per second, last 5 minutes",
        label: "requests/s",
        decimals: 1,
        value: |s| Some(s.requests_per_second),
        bars: false,
        colour: "#4a7",
    },
    Chart {
        id: "chart-p99",
        title: "p99 latency of each second (ms), last 5 minutes",
        label: "p99 ms",
        decimals: 2,
        value: |s| s.p99_ms,
        bars: false,
        colour: "#47a",
    },
    Chart {
        id: "chart-errors",
        title: "Errors per second, last 5 minutes",
        label: "errors/s",
        decimals: 0,
        value: |s| Some(s.errors as f64),
        bars: true,
        colour: "#c44",
    },
];

/// Three inline SVG charts, one after the other, for the panel. Only
/// numbers and fixed strings go in, so nothing needs escaping; no script
/// and nothing fetched, because the panel refreshes itself with a meta
/// refresh and must work offline.
pub fn charts_html(series: &Series) -> String {
    let mut s = String::with_capacity(2048 + series.len() * 3 * 24);
    for chart in &CHARTS {
        draw(&mut s, series, chart);
    }
    s
}

fn draw(s: &mut String, series: &Series, chart: &Chart) {
    let _ = write!(
        s,
        "<svg id=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" \
         style=\"display:block;max-width:40rem\" font-family=\"system-ui,sans-serif\" font-size=\"13\">\
         <title>{}</title>\
         <line x1=\"0\" y1=\"{PLOT_BOTTOM}\" x2=\"{WIDTH}\" y2=\"{PLOT_BOTTOM}\" stroke=\"#ccc\"/>",
        chart.id, chart.title
    );
    // x is time, not sample index: newest at the right edge, and a gap the
    // loop slept through shows as a gap, not as squeezed-together seconds.
    let newest = series.samples().last().map_or(0, |sample| sample.at_ms);
    let point = |sample: &Sample| {
        let value = (chart.value)(sample).filter(|v| v.is_finite())?;
        let back = newest.saturating_sub(sample.at_ms) as f64 / 1000.0;
        let x = WIDTH - back * UNITS_PER_SECOND;
        (x >= 0.0).then_some((x, value))
    };
    let points = || series.samples().filter_map(|sample| point(&sample));
    let max = points().map(|(_, v)| v).fold(0.0, f64::max);
    let now = series.samples().last().and_then(|sample| point(&sample));
    let now = now.map_or("-".to_string(), |(_, v)| format!("{v:.*}", chart.decimals));
    let _ = write!(
        s,
        "<text x=\"0\" y=\"16\" fill=\"#555\">{}: {now} now</text>",
        chart.label
    );
    if series.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#777\">no samples yet</text></svg>",
            WIDTH / 2.0,
            (PLOT_TOP + PLOT_BOTTOM) / 2.0
        );
        return;
    }
    let _ = write!(
        s,
        "<text x=\"{WIDTH}\" y=\"16\" text-anchor=\"end\" fill=\"#555\">max {max:.*}</text>",
        chart.decimals
    );
    // An all-zero chart still draws its line along the bottom.
    let scale = if max > 0.0 { max } else { 1.0 };
    let y_of = |v: f64| PLOT_BOTTOM - v / scale * (PLOT_BOTTOM - PLOT_TOP);
    if chart.bars {
        for (x, v) in points().filter(|&(_, v)| v > 0.0) {
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{UNITS_PER_SECOND}\" height=\"{:.1}\" fill=\"{}\"/>",
                (x - UNITS_PER_SECOND).max(0.0),
                y_of(v),
                PLOT_BOTTOM - y_of(v),
                chart.colour
            );
        }
        s.push_str("</svg>");
        return;
    }
    // A second without a value (no request, so no p99) breaks the line
    // rather than drawing a slope through a second nobody measured.
    let mut run = Run::default();
    for sample in series.samples() {
        let Some((x, v)) = point(&sample) else {
            run.end(s);
            continue;
        };
        let y = y_of(v);
        if run.points == 0 {
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\" \
                 stroke-linecap=\"round\" points=\"{x:.1},{y:.1}",
                chart.colour
            );
            run.first = (x, y);
        } else {
            let _ = write!(s, " {x:.1},{y:.1}");
        }
        run.points += 1;
    }
    run.end(s);
    s.push_str("</svg>");
}

/// The polyline being written: how many points so far, and the first.
#[derive(Default)]
struct Run {
    points: usize,
    first: (f64, f64),
}

impl Run {
    /// A polyline of one point draws nothing, so a lone point is repeated:
    /// a zero-length segment with round caps shows as a dot.
    fn end(&mut self, s: &mut String) {
        if self.points == 1 {
            let _ = write!(s, " {:.1},{:.1}", self.first.0, self.first.1);
        }
        if self.points > 0 {
            s.push_str("\"/>");
        }
        self.points = 0;
    }
}
