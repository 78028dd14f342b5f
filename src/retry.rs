//! When a failed request may be tried on another upstream, and how many
//! such retries the proxy lets itself have at once.
//!
//! The rule (the contract's): a refused or failed *connect* sent nothing, so
//! any request may move on; once request bytes went out, only an idempotent
//! method may be sent again (a POST might already have run); once any byte
//! of a response reached the client, never. We add one condition the rule
//! implies: the body must not have started, because body bytes are streamed
//! through a bounded buffer and are gone once sent, so there is nothing left
//! to replay.
//!
//! The budget is what keeps retries from making an outage worse. When a
//! cluster is slow, every request times out, every request is retried, and
//! the load doubles exactly when the upstreams can least take it: a retry
//! storm. So retries *in flight* may never exceed 20% of requests in flight
//! (at least one, so a quiet proxy can still retry). Past that, the failure
//! is answered as it is (502 or 504), counted and logged as a refusal. The
//! idea is Envoy's and Finagle's retry budgets.
//!
//! Sans-IO: counters and a set, unit-tested in `tests/retry.rs`.
//! Lesson: `lessons/15-resilience`.

/// Retries in flight may be this share of requests in flight (percent).
pub const BUDGET_PERCENT: usize = 20;

/// The upstreams one request has tried, by index. A request never goes to
/// the same upstream twice in one attempt chain unless it is the only one.
///
/// A bit set without allocation for the first 128 upstreams (every config
/// anyone writes by hand); a list beyond.
#[derive(Clone, Debug, Default)]
pub struct Tried {
    bits: u128,
    beyond: Vec<usize>,
}

impl Tried {
    pub fn insert(&mut self, index: usize) {
        if index < 128 {
            self.bits |= 1 << index;
        } else if !self.beyond.contains(&index) {
            self.beyond.push(index);
        }
    }

    pub fn contains(&self, index: usize) -> bool {
        if index < 128 {
            self.bits & (1 << index) != 0
        } else {
            self.beyond.contains(&index)
        }
    }

    pub fn count(&self) -> usize {
        self.bits.count_ones() as usize + self.beyond.len()
    }

    pub fn clear(&mut self) {
        self.bits = 0;
        self.beyond.clear();
    }
}

/// What the request has done so far, for the rule.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// Any request byte (head or body) was written to the upstream.
    pub request_sent: bool,
    /// Any body byte was written (nothing left to replay).
    pub body_sent: bool,
    pub idempotent: bool,
    /// Any response byte reached the client, or its head was composed.
    pub response_started: bool,
}

/// The rule alone: may this attempt be repeated elsewhere?
pub fn may_resend(attempt: Attempt) -> bool {
    !attempt.response_started && !attempt.body_sent && (!attempt.request_sent || attempt.idempotent)
}

/// Requests and retries in flight: the retry budget.
#[derive(Clone, Debug, Default)]
pub struct RetryBudget {
    requests: usize,
    retries: usize,
}

impl RetryBudget {
    pub fn request_started(&mut self) {
        self.requests += 1;
    }

    /// A request ended; `retrying` if it held a retry from the budget.
    pub fn request_ended(&mut self, retrying: bool) {
        self.requests = self.requests.saturating_sub(1);
        if retrying {
            self.retries = self.retries.saturating_sub(1);
        }
    }

    /// Take a retry from the budget, if there is room. A request holds at
    /// most one however often it is retried: the budget counts requests
    /// being retried, so the caller takes one only on the first retry.
    pub fn try_take(&mut self) -> bool {
        if self.retries < self.limit() {
            self.retries += 1;
            true
        } else {
            false
        }
    }

    /// Retries allowed in flight now.
    pub fn limit(&self) -> usize {
        (self.requests * BUDGET_PERCENT / 100).max(1)
    }

    pub fn requests(&self) -> usize {
        self.requests
    }

    pub fn retries(&self) -> usize {
        self.retries
    }
}
