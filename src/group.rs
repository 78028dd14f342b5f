//! The upstreams a request may go to, and everything the proxy keeps per
//! upstream: balancer, health, idle pool, open-connection counts, the queue
//! of requests waiting for a slot.
//!
//! Plain data, no sockets: the reactor owns one and asks it
//! [`UpstreamGroup::choose`] for every attempt. Choosing is where balancing
//! and health meet:
//!
//! 1. the upstreams that are available (health) and not yet tried by this
//!    request are the candidates, and the balancer picks among them;
//! 2. if every upstream is down, health is ignored and all untried ones are
//!    candidates (fail open: a wrong health verdict must not become an
//!    outage); the caller logs it;
//! 3. if all have been tried, there is nothing left, unless the group has one
//!    upstream, which may then be tried again.
//!
//! Replaced as a whole when a reload changes the list, with health carried
//! over by address (`src/health.rs`).
//!
//! Lessons: `lessons/12-keepalive-and-pool`, `lessons/15-resilience`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::balance::{Balancer, Candidates};
use crate::config::{Config, ConfigError, DEFAULT_GROUP, GroupView, resolve_upstreams};
use crate::health::Health;
use crate::pool::IdlePool;
use crate::retry::Tried;
use crate::token::ConnId;

/// The balancer's answer for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    /// Every upstream is down; this one was chosen regardless.
    pub fail_open: bool,
    /// The upstream is half-open and this request is its probe.
    pub probe: bool,
}

pub struct UpstreamGroup {
    /// `default`, or its key in `upstream_groups`: the `group` label of
    /// its metrics and the word in its log lines.
    pub name: String,
    /// Its upstreams' place in the metrics' flat list: upstream `i` of this
    /// group is `metrics.upstreams[first + i]`.
    pub first: usize,
    pub addrs: Vec<SocketAddr>,
    /// `host:port` per upstream: the `Host` for an HTTP/1.0 request without
    /// one, and the stable key for health and the ip_hash ring.
    pub hosts: Vec<String>,
    pub balancer: Balancer,
    pub health: Health,
    pub pool: IdlePool,
    /// Open connections per upstream (connecting, active, idle), for
    /// `max_conns_per_upstream`.
    pub open: Vec<usize>,
    /// Requests waiting for a connection slot, per upstream, oldest first.
    pub waiting: Vec<VecDeque<ConnId>>,
    /// Bumped by each reload that changes the list; connections from an
    /// older list are closed instead of pooled or counted.
    pub generation: u64,
    /// `retries` from the config.
    pub retries: usize,
    /// The last choice had to ignore health (every upstream down); kept so
    /// the log says so once when it starts and once when it ends.
    pub failing_open: bool,
    /// An active health check of that upstream is in flight (one at a
    /// time: a slow check is not stacked on by the next interval).
    pub checking: Vec<bool>,
    /// Scratch space for [`UpstreamGroup::choose`], so choosing allocates
    /// nothing per request.
    allowed: Vec<bool>,
    active: Vec<usize>,
}

impl UpstreamGroup {
    /// `first` is where its upstreams start in the flat list the metrics
    /// keep (every group's upstreams, `default` first).
    pub fn new(
        group: &GroupView<'_>,
        addrs: Vec<SocketAddr>,
        max_idle_per_upstream: usize,
        first: usize,
        generation: u64,
    ) -> UpstreamGroup {
        let count = addrs.len();
        let hosts: Vec<String> = group
            .upstreams
            .iter()
            .map(|u| format!("{}:{}", u.host, u.port))
            .collect();
        let weights: Vec<u32> = group.upstreams.iter().map(|u| u.weight).collect();
        UpstreamGroup {
            name: group.name.to_string(),
            first,
            balancer: Balancer::new(group.balancing, &weights, &hosts),
            health: Health::new(group.health.cloned(), &hosts),
            pool: IdlePool::new(count, max_idle_per_upstream),
            open: vec![0; count],
            waiting: vec![VecDeque::new(); count],
            addrs,
            hosts,
            generation,
            retries: group.retries,
            failing_open: false,
            checking: vec![false; count],
            allowed: vec![false; count],
            active: vec![0; count],
        }
    }

    /// A reload that keeps the list: new balancing, weights, health
    /// settings and retries; the health verdicts stay.
    pub fn reconfigure(&mut self, group: &GroupView<'_>, first: usize) {
        let weights: Vec<u32> = group.upstreams.iter().map(|u| u.weight).collect();
        self.balancer = Balancer::new(group.balancing, &weights, &self.hosts);
        let old = std::mem::replace(&mut self.health, Health::new(None, &[]));
        self.health = Health::carry_over(old, group.health.cloned(), &self.hosts);
        self.retries = group.retries;
        self.first = first;
    }

    /// A reload that changed the list: carry health over from `old`.
    pub fn inherit_health(&mut self, old: Health) {
        let settings = self.health.settings().cloned();
        self.health = Health::carry_over(old, settings, &self.hosts);
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Requests in flight on upstream `i`: its connections not idle.
    pub fn in_flight(&self, i: usize) -> usize {
        self.open
            .get(i)
            .map_or(0, |&open| open.saturating_sub(self.pool.len_of(i)))
    }

    /// Choose the upstream for an attempt (see the module doc), or `None`
    /// when every upstream has been tried.
    pub fn choose(&mut self, client: IpAddr, tried: &Tried, now_ms: u64) -> Option<Choice> {
        let count = self.addrs.len();
        for i in 0..count {
            self.active[i] = self.in_flight(i);
            self.allowed[i] = !tried.contains(i) && self.health.available(i, now_ms);
        }
        let mut fail_open = false;
        if !self.allowed.contains(&true) {
            let none_available = (0..count).all(|i| !self.health.available(i, now_ms));
            if none_available {
                fail_open = true;
                for i in 0..count {
                    self.allowed[i] = !tried.contains(i);
                }
            }
            if count == 1 {
                self.allowed[0] = true;
            }
        }
        let index = self.balancer.pick(&Candidates {
            allowed: &self.allowed,
            active: &self.active,
            client,
        })?;
        let probe = self.health.on_pick(index, now_ms);
        Some(Choice {
            index,
            fail_open,
            probe,
        })
    }
}

/// Every group of `config`, `default` first, each stamped with the next
/// generation (unique across groups: see `Upstream::list_generation`).
pub fn build_groups(
    config: &Config,
    generation: &mut u64,
) -> Result<Vec<UpstreamGroup>, ConfigError> {
    let mut first = 0;
    let mut groups = Vec::new();
    for view in config.groups() {
        let addrs = resolve_upstreams(view.upstreams, &field_prefix(view.name))?;
        let count = addrs.len();
        groups.push(UpstreamGroup::new(
            &view,
            addrs,
            config.limits.max_idle_per_upstream,
            first,
            *generation,
        ));
        *generation += 1;
        first += count;
    }
    Ok(groups)
}

/// (group, address) of every upstream, in the metrics' flat order.
pub fn flat_upstreams(groups: &[UpstreamGroup]) -> Vec<(String, SocketAddr)> {
    groups
        .iter()
        .flat_map(|g| g.addrs.iter().map(|addr| (g.name.clone(), *addr)))
        .collect()
}

/// How a group's fields are spelled in the file: `` for `default`,
/// `upstream_groups.api.` for another.
fn field_prefix(name: &str) -> String {
    match name {
        DEFAULT_GROUP => String::new(),
        name => format!("upstream_groups.{name}."),
    }
}

/// What a reload did to the groups, for the reactor to carry out on the
/// connections.
pub struct Regrouped {
    /// Old place -> new place of each group that is still there (by name).
    pub remap: Vec<Option<usize>>,
    /// Idle connections to close: of pools rebuilt, shrunk or gone.
    pub close: Vec<usize>,
    /// Queued requests, and the new group whose queue they go to.
    pub requeue: Vec<(usize, ConnId)>,
}

/// Replace `groups` by the groups of `config`, matched by name. A group
/// whose list is unchanged is kept (its pool, counts and queue stay; its
/// balancing, health settings and retries are renewed). A group whose list
/// changed is rebuilt: health carries over by address, its idle connections
/// close, its queue moves over, and its open connections, stamped with the
/// old generation, close when their exchange ends. A group gone sends its
/// queued requests to `default`. Every list is resolved before anything
/// changes: on an error `groups` is left as it was.
pub fn regroup(
    groups: &mut Vec<UpstreamGroup>,
    config: &Config,
    next_generation: &mut u64,
) -> Result<Regrouped, ConfigError> {
    let views = config.groups();
    let mut resolved = Vec::with_capacity(views.len());
    for view in &views {
        resolved.push(resolve_upstreams(view.upstreams, &field_prefix(view.name))?);
    }
    let max_idle = config.limits.max_idle_per_upstream;
    let mut old: Vec<Option<UpstreamGroup>> =
        std::mem::take(groups).into_iter().map(Some).collect();
    let mut done = Regrouped {
        remap: vec![None; old.len()],
        close: Vec::new(),
        requeue: Vec::new(),
    };
    let mut first = 0;
    for (new_index, (view, addrs)) in views.iter().zip(resolved).enumerate() {
        let found = old
            .iter()
            .position(|g| g.as_ref().is_some_and(|g| g.name == view.name));
        if let Some(i) = found {
            done.remap[i] = Some(new_index);
        }
        let group = match found.and_then(|i| old[i].take()) {
            Some(mut kept) if kept.addrs == addrs && kept.hosts.len() == view.upstreams.len() => {
                kept.reconfigure(view, first);
                done.close.extend(kept.pool.set_max_per_upstream(max_idle));
                kept
            }
            previous => {
                let mut fresh = UpstreamGroup::new(view, addrs, max_idle, first, *next_generation);
                *next_generation += 1;
                if let Some(UpstreamGroup {
                    mut pool,
                    waiting,
                    health,
                    ..
                }) = previous
                {
                    // Upstreams that stay keep their verdicts; new ones start up.
                    fresh.inherit_health(health);
                    done.close.extend(pool.drain_all());
                    done.requeue
                        .extend(waiting.into_iter().flatten().map(|id| (new_index, id)));
                }
                fresh
            }
        };
        first += group.len();
        groups.push(group);
    }
    for gone in old.into_iter().flatten() {
        let UpstreamGroup {
            mut pool, waiting, ..
        } = gone;
        done.close.extend(pool.drain_all());
        done.requeue
            .extend(waiting.into_iter().flatten().map(|id| (0, id)));
    }
    Ok(done)
}
