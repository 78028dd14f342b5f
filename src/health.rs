//! Is an upstream fit for traffic? Two witnesses, one verdict per upstream.
//!
//! - **Passive ejection** watches real requests. `max_fails` failed attempts
//!   (a refused connect, a 502-class failure, a timeout) within
//!   `fail_timeout_ms` eject the upstream for `fail_timeout_ms`. Then it is
//!   *half-open*: exactly one request is let through as a probe. If the
//!   probe succeeds the upstream is back; if it fails, ejected again. This is
//!   the circuit breaker: closed (traffic flows), open (ejected), half-open
//!   (one trial), and it means a dead upstream costs one failed request per
//!   `fail_timeout_ms` instead of one in every N.
//! - **Active checks** (`health.path`) ask on their own schedule: `fails`
//!   failed checks in a row mark the upstream down, `passes` passed checks in
//!   a row mark it up. They find a dead upstream before any user does, and
//!   a recovered one before any user risks it.
//!
//! An upstream takes requests only when neither witness objects. This
//! module only keeps the books: it never opens a socket and never reads a
//! clock (time comes in as milliseconds), so every transition is a unit test
//! (`tests/health.rs`). The reactor runs the checks (`src/reactor/checks.rs`)
//! and reports what requests did.
//!
//! Two rules from users' complaints about other proxies:
//! - **Fail open.** When every upstream of a group is down, refusing all
//!   traffic turns a partial outage (maybe the checks are wrong) into a
//!   total one; the balancer then ignores health, and the log says so.
//! - **State survives a reload.** Entries are keyed by address, and
//!   [`Health::carry_over`] keeps the verdict of every upstream that stays.
//!
//! Lesson: `lessons/15-resilience`.

use crate::config::HealthConfig;

/// A change of verdict, for the log and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Out of rotation; the reason says which witness and why.
    Down(String),
    /// Back in rotation.
    Up,
}

/// How an attempt on an upstream ended, as far as its health goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived and was well-formed.
    Success,
    /// Refused connect, reset, malformed response or timeout.
    Failure,
    /// Neither (the client went away first): no evidence either way.
    Abandoned,
}

#[derive(Clone, Debug, Default)]
struct UpstreamHealth {
    key: String,
    /// Passive: failures in the current window and when it opened.
    fails: u32,
    window_start_ms: u64,
    /// Passive: ejected until then (then half-open).
    ejected_until_ms: Option<u64>,
    /// Half-open and its one probe is in flight: no other request yet.
    probing: bool,
    /// Active: the last verdict, and the run of results agreeing against it.
    checks_down: bool,
    check_run: u32,
}

/// Everything health knows, one entry per upstream, in config order.
#[derive(Debug)]
pub struct Health {
    upstreams: Vec<UpstreamHealth>,
    settings: Option<HealthConfig>,
}

impl Health {
    /// Fresh state: every upstream starts up. `keys` name upstreams stably
    /// (`host:port`), for [`Health::carry_over`].
    pub fn new(settings: Option<HealthConfig>, keys: &[String]) -> Health {
        Health {
            upstreams: keys
                .iter()
                .map(|key| UpstreamHealth {
                    key: key.clone(),
                    ..UpstreamHealth::default()
                })
                .collect(),
            settings,
        }
    }

    /// After a reload: the same verdicts for upstreams that stay (matched
    /// by key), new ones start up. A probe in flight on the old list is
    /// forgotten: its answer will be reported against the old generation
    /// and dropped, so the next request may probe again.
    pub fn carry_over(old: Health, settings: Option<HealthConfig>, keys: &[String]) -> Health {
        let mut fresh = Health::new(settings, keys);
        for entry in &mut fresh.upstreams {
            if let Some(before) = old.upstreams.iter().find(|u| u.key == entry.key) {
                *entry = UpstreamHealth {
                    probing: false,
                    ..before.clone()
                };
            }
        }
        fresh
    }

    pub fn settings(&self) -> Option<&HealthConfig> {
        self.settings.as_ref()
    }

    /// Active checks are configured.
    pub fn checks(&self) -> Option<&HealthConfig> {
        self.settings.as_ref().filter(|h| h.path.is_some())
    }

    /// May upstream `i` take a request now?
    pub fn available(&self, i: usize, now_ms: u64) -> bool {
        let Some(u) = self.upstreams.get(i) else {
            return false;
        };
        if u.checks_down {
            return false;
        }
        match u.ejected_until_ms {
            None => true,
            Some(until) => now_ms >= until && !u.probing,
        }
    }

    /// The verdict for the `ferroxy_upstream_up` gauge: fully in rotation
    /// (half-open is not: it gets one probe, not traffic).
    pub fn is_up(&self, i: usize) -> bool {
        self.upstreams
            .get(i)
            .is_some_and(|u| !u.checks_down && u.ejected_until_ms.is_none())
    }

    /// A short word for the panel: `up`, `down` or `half-open`.
    pub fn state_name(&self, i: usize, now_ms: u64) -> &'static str {
        match self.upstreams.get(i) {
            Some(u) if u.checks_down => "down",
            Some(u) => match u.ejected_until_ms {
                None => "up",
                Some(until) if now_ms >= until => "half-open",
                Some(_) => "down",
            },
            None => "-",
        }
    }

    /// A request was sent to upstream `i`. Returns `true` if it is the
    /// half-open probe (the caller logs it and must report its outcome).
    pub fn on_pick(&mut self, i: usize, now_ms: u64) -> bool {
        let Some(u) = self.upstreams.get_mut(i) else {
            return false;
        };
        let half_open = u.ejected_until_ms.is_some_and(|until| now_ms >= until);
        if half_open && !u.probing {
            u.probing = true;
            return true;
        }
        false
    }

    /// What a request's attempt on upstream `i` came to.
    pub fn report(&mut self, i: usize, outcome: Outcome, now_ms: u64) -> Option<Transition> {
        let Some(settings) = &self.settings else {
            return None;
        };
        let (max_fails, fail_timeout_ms) = (settings.max_fails, settings.fail_timeout_ms);
        let u = self.upstreams.get_mut(i)?;
        if max_fails == 0 {
            return None;
        }
        let was_probing = std::mem::take(&mut u.probing);
        match outcome {
            Outcome::Abandoned => {
                // The probe proved nothing: the next request probes again.
                None
            }
            Outcome::Success => {
                if u.ejected_until_ms.take().is_some() {
                    u.fails = 0;
                    Some(Transition::Up)
                } else {
                    None
                }
            }
            Outcome::Failure if was_probing || u.ejected_until_ms.is_some() => {
                // A failed probe (or a request that was already on its way
                // when the upstream got ejected): open the circuit again.
                u.ejected_until_ms = Some(now_ms + fail_timeout_ms);
                u.fails = 0;
                was_probing.then(|| {
                    Transition::Down(format!(
                        "the half-open probe failed; ejected for another {fail_timeout_ms} ms"
                    ))
                })
            }
            Outcome::Failure => {
                if u.fails == 0 || now_ms >= u.window_start_ms + fail_timeout_ms {
                    u.fails = 0;
                    u.window_start_ms = now_ms;
                }
                u.fails += 1;
                if u.fails < max_fails {
                    return None;
                }
                u.fails = 0;
                u.ejected_until_ms = Some(now_ms + fail_timeout_ms);
                Some(Transition::Down(format!(
                    "{max_fails} failed attempts within {fail_timeout_ms} ms; ejected for {fail_timeout_ms} ms"
                )))
            }
        }
    }

    /// An active check of upstream `i` passed or failed.
    pub fn check_result(&mut self, i: usize, passed: bool) -> Option<Transition> {
        let (fails, passes) = match &self.settings {
            Some(s) => (s.fails, s.passes),
            None => return None,
        };
        let u = self.upstreams.get_mut(i)?;
        // A result that agrees with the verdict ends any run against it.
        if passed != u.checks_down {
            u.check_run = 0;
            return None;
        }
        u.check_run += 1;
        let needed = if passed { passes } else { fails };
        if u.check_run < needed {
            return None;
        }
        u.check_run = 0;
        u.checks_down = !passed;
        Some(if passed {
            if u.ejected_until_ms.is_some() {
                // Checks and requests agree it is fine again.
                u.ejected_until_ms = None;
                u.fails = 0;
            }
            Transition::Up
        } else {
            Transition::Down(format!("{fails} health checks failed in a row"))
        })
    }
}
