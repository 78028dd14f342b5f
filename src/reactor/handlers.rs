//! The one place a request meets its handler: a group to proxy to, or a
//! static root (the metrics listener's requests never get here: they are
//! told apart by the listener they came in on, in `read_head`).
//!
//! [`Reactor::dispatch`] asks `src/route.rs` where the request goes. A
//! proxied request becomes an exchange (`client.rs`); a static one is
//! planned by `src/files` and then pumped here, in the client's `Static`
//! phase, until its last byte is out. Everything this file does with a
//! file is call `src/files`: the reactor only dispatches.
//!
//! Lesson: `lessons/16-static-files`.

use std::time::{Duration, Instant};

use log::{info, trace, warn};

use super::{Gone, Progress, Reactor, client_in};
use crate::access_log::{self, AccessLine};
use crate::conn::{ClientPhase, Closing, Conn, Role, StaticServe};
use crate::files::reply::{FileRequest, Plan, Pump, plan};
use crate::http::request::RequestHead;
use crate::metrics::ErrorKind;
use crate::route::Handler;

impl Reactor {
    /// A request head arrived: send it where its route says.
    pub(super) fn dispatch(&mut self, key: usize, head: RequestHead) -> Progress {
        match self.router.handler(&head.target) {
            Handler::Group(group) => self.begin_exchange(key, head, group),
            Handler::Static {
                root,
                rest,
                disguised_separator,
            } => {
                let now = self.now;
                let Some(Conn {
                    role: Role::Client(client),
                    ..
                }) = self.conns.get_mut(key)
                else {
                    return Err(Gone);
                };
                let planned = plan(
                    &mut FileRequest {
                        roots: &mut self.roots,
                        root,
                        rest: &rest,
                        disguised_separator,
                        head: &head,
                        now_ms: now,
                    },
                    &mut client.out,
                );
                match planned {
                    Plan::Reply(reply) => {
                        let nodelay = client.nodelay;
                        self.arm_file_sweep();
                        // As for a proxied answer: no Nagle delay on the last
                        // segment of a kept-alive connection.
                        if reply.keep_alive && !nodelay {
                            let (io, client) = client_in(&mut self.conns, key)?;
                            let _ = io.socket.tcp().set_nodelay(true);
                            client.nodelay = true;
                        }
                        let (_, client) = client_in(&mut self.conns, key)?;
                        client.head_started_ms = None;
                        client.phase = ClientPhase::Static(Box::new(StaticServe {
                            reply,
                            request: head,
                            started: Instant::now(),
                            started_ms: self.now,
                        }));
                        Ok(true)
                    }
                    Plan::Refuse {
                        status,
                        headers,
                        why,
                        suspicious,
                    } => {
                        self.arm_file_sweep();
                        self.refuse_routed(key, &head, status, &headers, &why, suspicious)
                    }
                }
            }
            Handler::Refuse(status, why) => self.refuse_routed(key, &head, status, &[], why, true),
        }
    }

    /// An answer of our own to a request that parsed (a traversal attempt,
    /// a missing file, a redirect...): log it and close, as every answer of
    /// the proxy's own does.
    fn refuse_routed(
        &mut self,
        key: usize,
        head: &RequestHead,
        status: u16,
        headers: &[String],
        why: &str,
        suspicious: bool,
    ) -> Progress {
        let (_, client) = client_in(&mut self.conns, key)?;
        let peer = client.peer;
        if suspicious {
            warn!(
                "refused {} {} from {peer}: {why} ({status})",
                head.method, head.target
            );
        } else if status == 301 {
            trace!("{} {}: {status} ({why})", head.method, head.target);
        } else {
            info!(
                "{} {} from {peer}: {status}, {why}",
                head.method, head.target
            );
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let error = (status == 400).then_some(ErrorKind::BadRequest);
        self.refuse_with(key, Some(head), status, &headers, error);
        Ok(true)
    }

    /// `Static`: write the head and send the file; then wait for the next
    /// request (keep-alive) or close.
    pub(super) fn serve_static(&mut self, key: usize, budget: &mut usize) -> Progress {
        let (io, client) = client_in(&mut self.conns, key)?;
        let ClientPhase::Static(serve) = &mut client.phase else {
            return Ok(true);
        };
        match serve
            .reply
            .pump(&mut io.socket, &mut io.ready, &mut client.out, budget)
        {
            Pump::Moved => Ok(true),
            Pump::Blocked => Ok(false),
            Pump::Done => self.finish_static(key),
            Pump::Failed(why) => {
                self.metrics.record_error(ErrorKind::ClientAborted);
                self.abort_static(key, &why)
            }
        }
    }

    fn finish_static(&mut self, key: usize) -> Progress {
        self.log_static(key);
        let now = self.now;
        let (_, client) = client_in(&mut self.conns, key)?;
        let ClientPhase::Static(serve) =
            std::mem::replace(&mut client.phase, ClientPhase::ReadingHead)
        else {
            return Ok(true);
        };
        client.served += 1;
        client.since_ms = now;
        client.head_started_ms = (!client.inbuf.is_empty()).then_some(now);
        if !serve.reply.keep_alive || (client.eof && client.inbuf.is_empty()) {
            // A body it sent is still unread: linger, so the close cannot
            // turn into a reset that eats the answer.
            client.phase = ClientPhase::Closing(Closing {
                since_ms: now,
                fin_sent: false,
                discarded: 0,
            });
        }
        Ok(true)
    }

    /// The client stopped reading (`write_ms`) or its socket failed: the
    /// answer cannot be finished, so the connection goes, file and all.
    pub(super) fn abort_static(&mut self, key: usize, why: &str) -> Progress {
        if let Ok((_, client)) = client_in(&mut self.conns, key) {
            warn!("closing connection from {}: {why}", client.peer);
        }
        self.log_static(key);
        self.close(key);
        Err(Gone)
    }

    /// Kept files are closed after a while unused (`files/cache.rs`): one
    /// timer in the wheel while any are kept, so an idle proxy lets go too.
    fn arm_file_sweep(&mut self) {
        if !self.file_sweep_armed && !self.roots.open_files.is_empty() {
            self.file_sweep_armed = true;
            let at = self.now + crate::files::cache::IDLE_MS;
            self.timers.insert(at, super::time::Due::FileSweep);
        }
    }

    /// The sweep timer fired.
    pub(super) fn sweep_files(&mut self) {
        self.file_sweep_armed = false;
        self.roots.open_files.sweep(self.now);
        self.arm_file_sweep();
    }

    pub(super) fn is_serving_file(&self, key: usize) -> bool {
        matches!(
            self.conns.get(key).map(|c| &c.role),
            Some(crate::conn::Role::Client(client)) if matches!(client.phase, ClientPhase::Static(_))
        )
    }

    fn log_static(&mut self, key: usize) {
        let now = self.now;
        let Ok((io, client)) = client_in(&mut self.conns, key) else {
            return;
        };
        let peer = client.peer;
        let ClientPhase::Static(serve) = &client.phase else {
            return;
        };
        let reply = &serve.reply;
        access_log::log(&AccessLine {
            client: peer,
            request: Some(&serve.request),
            status: reply.status,
            bytes_out: reply.bytes_out,
            bytes_in: 0,
            upstream: None,
            upstream_status: None,
            request_time: Duration::from_millis(now.saturating_sub(serve.started_ms)),
            connect_time: None,
            header_time: None,
            tls: io.socket.tls_version(),
        });
        self.metrics.record_request(
            reply.status,
            None,
            serve.started.elapsed().as_micros() as u64,
            0,
            reply.bytes_out,
        );
        self.stats.requests += 1;
    }
}
