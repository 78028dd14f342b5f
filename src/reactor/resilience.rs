//! The reactor's side of resilience: each attempt of a request gets its
//! upstream from the group (balancer + health), reports how it went, and a
//! failed one may be sent elsewhere under the retry rule and budget. Also
//! the rate limit, the first thing a new request meets.
//!
//! The decisions live in sans-IO modules (`src/group.rs`, `src/health.rs`,
//! `src/retry.rs`, `src/rate_limit.rs`); this file only carries facts
//! between them and the connections, and logs and counts every decision.
//!
//! Lesson: `lessons/15-resilience`.

use log::{info, warn};

use super::{Progress, Reactor, client_in, exchange_in};
use crate::exchange::Exchange;
use crate::group::UpstreamGroup;
use crate::health::{Outcome, Transition};
use crate::metrics::Metrics;
use crate::retry::RetryBudget;

impl Reactor {
    /// Choose an upstream for exchange `key`'s next attempt and get it a
    /// connection. `None`: every upstream has been tried.
    pub(super) fn start_attempt(&mut self, key: usize) -> Option<Progress> {
        let now = self.now;
        let peer = client_in(&mut self.conns, key).ok()?.1.peer;
        let ex = exchange_in(&mut self.conns, key).ok()?;
        let group = self.groups.get_mut(ex.group)?;
        let choice = group.choose(peer.ip(), &ex.tried, now)?;
        let addr = group.addrs[choice.index];
        if choice.fail_open && !group.failing_open {
            warn!(
                "every upstream of group {} is down: trying them anyway (fail open) rather than refuse all",
                group.name
            );
        } else if !choice.fail_open && group.failing_open {
            info!(
                "an upstream of group {} is up again: no longer failing open",
                group.name
            );
        }
        group.failing_open = choice.fail_open;
        if choice.probe {
            info!("upstream {addr} is half-open: connection {key}'s request probes it");
        }
        ex.tried.insert(choice.index);
        ex.probe = choice.probe;
        ex.health_reported = false;
        Some(self.assign_upstream(key, choice.index))
    }

    /// Tell health how exchange `key`'s current attempt went, once.
    pub(super) fn report_attempt(&mut self, key: usize, outcome: Outcome) {
        let now = self.now;
        if let Ok(ex) = exchange_in(&mut self.conns, key) {
            report(&mut self.groups, &mut self.metrics, ex, outcome, now);
        }
    }

    /// The current attempt failed after `why`; if the retry rule, the
    /// `retries` setting and the budget all allow, send the request to
    /// another upstream. `None`: the caller answers the failure.
    /// `request_sent`: the attempt got a connection (a failed or timed-out
    /// connect sent nothing).
    pub(super) fn retry_elsewhere(
        &mut self,
        key: usize,
        why: &str,
        request_sent: bool,
    ) -> Option<Progress> {
        let ex = exchange_in(&mut self.conns, key).ok()?;
        let group = self.groups.get(ex.group)?;
        let (retries, count) = (group.retries, group.len());
        if retries == 0 || ex.retries_used >= retries || !ex.may_resend(request_sent) {
            return None;
        }
        // Somewhere left to go? (The only upstream of a group may be tried
        // again; otherwise never the same one twice.)
        if count > 1 && ex.tried.count() >= count {
            return None;
        }
        let what = format!("{} {}", ex.request.method, ex.request.target);
        if !ex.holds_retry {
            if !self.retry_budget.try_take() {
                self.metrics.retry_budget_refusals += 1;
                warn!(
                    "not retrying {what} ({why}): retry budget spent ({} retries in flight for {} requests)",
                    self.retry_budget.retries(),
                    self.retry_budget.requests()
                );
                return None;
            }
            ex.holds_retry = true;
        }
        ex.retries_used += 1;
        self.metrics.retries += 1;
        info!(
            "retrying {what} on another upstream ({why}): retry {} of {retries}",
            ex.retries_used
        );
        let old = ex.upstream.take();
        ex.reset_for_retry();
        if let Some(old) = old {
            self.close(old);
        }
        self.start_attempt(key)
    }

    /// A new request meets the rate limit. `Err(seconds)`: refused, retry
    /// after that long.
    pub(super) fn rate_limited(&mut self, key: usize) -> Result<(), u64> {
        let Some(limiter) = &mut self.rate_limiter else {
            return Ok(());
        };
        let Ok((_, client)) = client_in(&mut self.conns, key) else {
            return Ok(());
        };
        limiter.check(client.peer.ip(), self.now)
    }

    /// An active health check of upstream `index` of `group` finished.
    pub(super) fn check_finished(&mut self, group: usize, index: usize, passed: bool, why: &str) {
        let Some(group) = self.groups.get_mut(group) else {
            return;
        };
        let Some(addr) = group.addrs.get(index).copied() else {
            return;
        };
        let who = upstream_name(group, addr);
        if let Some(counters) = self.metrics.upstreams.get_mut(group.first + index) {
            if passed {
                counters.checks_passed += 1;
            } else {
                counters.checks_failed += 1;
            }
        }
        if passed {
            log::debug!("health check of {who} passed ({why})");
        } else {
            info!("health check of {who} failed: {why}");
        }
        if let Some(change) = group.health.check_result(index, passed) {
            log_transition(&mut self.metrics, group.first + index, &who, &change);
        }
    }
}

/// An exchange is over (answered, aborted, or its client gone): give back
/// its places in the retry budget, and free a half-open probe that never
/// learned anything. A free function, so the reactor can call it while it
/// holds the exchange inside its slab.
pub(super) fn exchange_ended(
    budget: &mut RetryBudget,
    groups: &mut [UpstreamGroup],
    metrics: &mut Metrics,
    ex: &mut Exchange,
    now: u64,
) {
    if std::mem::take(&mut ex.in_flight) {
        budget.request_ended(std::mem::take(&mut ex.holds_retry));
    }
    report(groups, metrics, ex, Outcome::Abandoned, now);
}

/// Report `outcome` for the attempt `ex` is on, unless already reported.
/// Abandoned attempts matter only to a probe (the next request may probe).
pub(super) fn report(
    groups: &mut [UpstreamGroup],
    metrics: &mut Metrics,
    ex: &mut Exchange,
    outcome: Outcome,
    now: u64,
) {
    if ex.health_reported || (outcome == Outcome::Abandoned && !ex.probe) {
        return;
    }
    ex.health_reported = true;
    let index = ex.upstream_index;
    let Some(group) = groups.get_mut(ex.group) else {
        return;
    };
    // A reload may have renumbered the list since the attempt began: the
    // verdict belongs to the address, and is dropped if it is gone.
    let (Some(addr), Some(current)) = (ex.upstream_addr, group.addrs.get(index)) else {
        return;
    };
    if addr != *current {
        return;
    }
    if let Some(change) = group.health.report(index, outcome, now) {
        let who = upstream_name(group, addr);
        log_transition(metrics, group.first + index, &who, &change);
    }
}

/// `127.0.0.1:9001`, or `127.0.0.1:9101 (group api)` outside `default`.
pub(super) fn upstream_name(group: &UpstreamGroup, addr: std::net::SocketAddr) -> String {
    if group.name == crate::config::DEFAULT_GROUP {
        addr.to_string()
    } else {
        format!("{addr} (group {})", group.name)
    }
}

/// `flat`: the upstream's place in the metrics' flat list.
fn log_transition(metrics: &mut Metrics, flat: usize, addr: &str, change: &Transition) {
    match change {
        Transition::Down(reason) => {
            if let Some(counters) = metrics.upstreams.get_mut(flat) {
                counters.ejections += 1;
            }
            warn!("upstream {addr} is down: {reason}");
        }
        Transition::Up => info!("upstream {addr} is up again"),
    }
}
