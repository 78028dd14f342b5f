//! Signals: a graceful shutdown (SIGTERM, SIGINT) and a config reload
//! (SIGHUP), both handled inside the loop.
//!
//! A signal handler may run between any two instructions of the program, so
//! it can do almost nothing safely. `signal-hook-mio` makes the handler write
//! one byte to a pipe that the poll loop watches: the signal then arrives as
//! an ordinary event, and everything below is ordinary code.
//!
//! Lesson: `lessons/14-whole-proxy`.

use std::io;

use log::{error, info, warn};
use mio::Interest;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::{Reactor, Settings};
use crate::config::{Config, ConfigError};
use crate::conn::{ClientPhase, Role, UpstreamPhase};
use crate::group::{Regrouped, flat_upstreams, regroup};

impl Reactor {
    /// Route SIGTERM, SIGINT and SIGHUP into the loop.
    pub(super) fn listen_for_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        self.poll
            .registry()
            .register(&mut signals, crate::token::SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    pub(super) fn on_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let pending: Vec<i32> = signals.pending().collect();
        for signal in pending {
            match signal {
                SIGHUP => self.reload(),
                _ if self.draining_until.is_some() => {
                    // A second SIGTERM/SIGINT: the operator means it.
                    warn!(
                        "second stop signal: exiting with {} connections open",
                        self.conns.len()
                    );
                    self.draining_until = Some(self.now);
                }
                _ => self.begin_drain(),
            }
        }
    }

    /// Stop accepting, close what is idle, let requests in flight finish
    /// (each then closes its client connection), for at most `total_ms`.
    fn begin_drain(&mut self) {
        for mut listener in [self.listener.take(), self.tls_listener.take()]
            .into_iter()
            .flatten()
        {
            let _ = self.poll.registry().deregister(&mut listener);
            // Dropped here: new connections are refused from now on.
        }
        let deadline = self.now + self.settings.timeouts.total_ms;
        self.draining_until = Some(deadline);
        let mut idle = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            match &mut conn.role {
                Role::Client(client) => match &mut client.phase {
                    ClientPhase::ReadingHead if client.inbuf.is_empty() => idle.push(key),
                    ClientPhase::Exchanging(ex) => ex.close_client = true,
                    _ => {}
                },
                Role::Upstream(up) if up.phase == UpstreamPhase::Idle => idle.push(key),
                Role::Upstream(_) => {}
                // Checks stop with the proxy: nothing waits for their answer.
                Role::Check(_) => idle.push(key),
            }
        }
        for key in &idle {
            self.close(*key);
        }
        info!(
            "shutting down: stopped accepting, closed {} idle connections, waiting up to {} ms for {} more",
            idle.len(),
            self.settings.timeouts.total_ms,
            self.conns.len()
        );
    }

    /// Shutting down and done: nothing left, or out of time.
    pub(super) fn drained(&self) -> bool {
        match self.draining_until {
            Some(until) => self.conns.is_empty() || self.now >= until,
            None => false,
        }
    }

    /// SIGHUP: read the config file again and apply what can change without
    /// dropping a connection. A broken file changes nothing.
    fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            warn!("SIGHUP: no config file to re-read");
            return;
        };
        match Config::load(&path) {
            Ok(config) => self.apply(&config),
            Err(e) => error!(
                "reload of {} failed, keeping the running config: {}, {}",
                path.display(),
                e.what,
                e.location
            ),
        }
    }

    /// Apply a new config to new requests. Open connections carry on as
    /// they are; connections to upstreams no longer listed are closed when
    /// their exchange ends instead of going back to the pool.
    pub(super) fn apply(&mut self, config: &Config) {
        if config.listen_addr() != self.listen_addr && config.listen_addr().port() != 0 {
            warn!(
                "reload: listen address {} -> {} needs a restart; still listening on {}",
                self.listen_addr, config.listen, self.listen_addr
            );
        }
        // Everything that can fail comes first, so a failure leaves the
        // running config whole.
        let roots = match crate::files::Roots::open(config) {
            Ok(roots) => roots,
            Err(e) => {
                error!(
                    "reload failed, keeping the running config: a static root cannot be opened ({e})"
                );
                return;
            }
        };
        if let Err(e) = self.apply_groups(config) {
            error!(
                "reload failed, keeping the running config: {}, {}",
                e.what, e.location
            );
            return;
        }
        // The kept files belong to the old roots' descriptors: they go too.
        self.roots = roots;
        self.router = crate::route::Router::from_config(config);
        self.rate_limiter = match (self.rate_limiter.take(), &config.rate_limit) {
            (Some(mut limiter), Some(settings)) => {
                // Buckets survive a reload, as health does.
                let per = super::rate_limit_per(settings);
                limiter.reconfigure(settings.rps, settings.burst(), per);
                Some(limiter)
            }
            (None, Some(settings)) => Some(super::rate_limiter_for(settings)),
            (_, None) => None,
        };
        // Checks follow the new list and settings, from now.
        self.schedule_checks();
        self.settings = Settings::from_config(config);
        self.buffers.resize(self.settings.client_buffer_bytes);
        if config.workers != self.workers {
            warn!(
                "reload: workers {} -> {} needs a restart; still {}",
                self.workers, config.workers, self.workers
            );
        }
        self.reload_tls(config);
        let metrics_listen = config.metrics.as_ref().map(|m| m.listen.clone());
        if metrics_listen != self.metrics_listen {
            warn!(
                "reload: metrics.listen changes need a restart; the metrics listener stays as it was"
            );
        }
        // `--trace` outlives reloads: the learner asked for the narration.
        if !self.trace {
            log::set_max_level(config.log_level());
        }
        let upstreams: Vec<String> = self
            .groups
            .iter()
            .flat_map(|g| g.addrs.iter().map(ToString::to_string))
            .collect();
        info!(
            "reloaded config: {} upstreams in {} groups ({}), {} routes; timeouts and limits apply to new requests",
            upstreams.len(),
            self.groups.len(),
            upstreams.join(", "),
            config.routes.len()
        );
    }

    /// The certificates are read again (`TlsAcceptor::reload`: a pair that
    /// fails keeps its old version). The listener itself stays as it is.
    fn reload_tls(&mut self, config: &Config) {
        match (&mut self.tls, &config.tls) {
            (Some(acceptor), Some(settings)) => {
                let moved = settings.listen.parse().ok() != self.tls_addr
                    && !settings.listen.ends_with(":0");
                if moved {
                    warn!(
                        "reload: tls.listen {} needs a restart; still on {}",
                        settings.listen,
                        self.tls_addr.map(|a| a.to_string()).unwrap_or_default()
                    );
                }
                acceptor.reload(settings);
            }
            (None, Some(_)) => warn!("reload: adding tls needs a restart; no TLS listener yet"),
            (Some(_), None) => {
                warn!("reload: removing tls needs a restart; the TLS listener stays as it was")
            }
            (None, None) => {}
        }
    }

    /// The groups of a reload (`group::regroup` decides which are kept,
    /// rebuilt or gone); here the connections follow: renumbered to their
    /// group's new place, idle ones of rebuilt pools closed, queued
    /// requests put in their new group's queues.
    fn apply_groups(&mut self, config: &Config) -> Result<(), ConfigError> {
        let Regrouped {
            remap,
            close,
            requeue,
        } = regroup(&mut self.groups, config, &mut self.next_list_generation)?;
        self.renumber_groups(&remap);
        for key in close {
            self.close(key);
        }
        let mut spread = vec![0usize; self.groups.len()];
        for (g, id) in requeue {
            // A queued request, spread over its group's new list.
            let count = self.groups[g].len();
            let index = spread[g] % count;
            spread[g] += 1;
            if let Ok(ex) = super::exchange_in(&mut self.conns, id.key) {
                ex.group = g;
                ex.upstream_index = index;
                // Indices of the old list mean nothing in the new one.
                ex.tried.clear();
                ex.tried.insert(index);
            }
            self.groups[g].waiting[index].push_back(id);
        }
        self.metrics.set_upstreams(&flat_upstreams(&self.groups));
        self.slots_freed = true;
        Ok(())
    }

    /// After a reload moved groups: every connection and request that names
    /// a group by its old place names it by its new one (`usize::MAX`: the
    /// group is gone, and any lookup finds nothing).
    fn renumber_groups(&mut self, remap: &[Option<usize>]) {
        let new = |old: usize| remap.get(old).copied().flatten().unwrap_or(usize::MAX);
        for (_, conn) in self.conns.iter_mut() {
            match &mut conn.role {
                Role::Upstream(up) => up.group = new(up.group),
                Role::Check(check) => check.group = new(check.group),
                Role::Client(client) => {
                    if let ClientPhase::Exchanging(ex) = &mut client.phase {
                        ex.group = new(ex.group);
                    }
                }
            }
        }
    }
}
