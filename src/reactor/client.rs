//! The client's phases, as the reactor drives them: `ReadingHead` ->
//! `Exchanging` -> back to `ReadingHead` (keep-alive), or -> `Tunnel`
//! (after a 101), or -> `Closing` (after a final answer). A request for a
//! static root goes `ReadingHead` -> `Static` instead (`handlers.rs`).
//!
//! The exchange itself ([`crate::exchange::Exchange`]) only moves bytes and
//! reports [`Failure`]s; here each failure becomes a decision: a retry, an
//! answer of the proxy's own (400, 502, ...), or a closed connection.
//!
//! Lessons: `05-state-machines`, `07-parsing-heads`, `11-body-framing`.
//!
//! Over 500 lines, on purpose: the whole life of a client connection, and
//! every decision a [`Failure`] leads to, reads top to bottom in one file.

use std::io;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use slab::Slab;
use socket2::SockRef;

use super::{Gone, Progress, Reactor, client_in, exchange_in, resilience};
use crate::access_log::{self, AccessLine};
use crate::admin;
use crate::buffer::{Buffer, BufferPool};
use crate::conn::{
    ClientPhase, Closing, Conn, Io, ReadOutcome, Role, Tunnel, Upstream, UpstreamPhase,
    WriteOutcome, read_into, write_two, write_two_before_fin,
};
use crate::exchange::{Exchange, Failure, ResponseState};
use crate::health::Outcome;
use crate::http::errors::{error_response_len, write_error_response};
use crate::http::request::{RequestError, RequestHead, parse_request};
use crate::metrics::ErrorKind;
use crate::splice::Pipe;

/// After a final answer, how much of what a client still sends we read and
/// throw away before closing anyway (see [`Closing`]).
const LINGER_LIMIT: usize = 1024 * 1024;

impl Reactor {
    /// `ReadingHead`: read until a whole request head is in, then start
    /// its exchange, or refuse it.
    pub(super) fn read_head(&mut self, key: usize, budget: &mut usize) -> Progress {
        let limits = self.settings.head_limits;
        let now = self.now;
        let (io, client) = client_in(&mut self.conns, key)?;
        if !client.inbuf.is_empty() {
            match parse_request(client.inbuf.filled(), &limits) {
                Ok(Some(head)) if client.admin => {
                    client.inbuf.consume(head.len);
                    return self.serve_admin(key, head);
                }
                Ok(Some(head)) => {
                    client.inbuf.consume(head.len);
                    trace!(
                        "connection {key}: {} {} -> exchanging",
                        head.method, head.target
                    );
                    return self.dispatch(key, head);
                }
                Err(e) => return self.refuse(key, e),
                Ok(None) => {}
            }
        }
        if client.eof {
            if !client.inbuf.is_empty() {
                debug!(
                    "client {} closed in the middle of a request head",
                    client.peer
                );
            }
            self.close(key);
            return Err(Gone);
        }
        let read = read_into(
            &mut io.socket,
            &mut io.ready,
            &mut client.inbuf,
            &mut self.buffers,
        );
        note_handshake(io, client.peer, &mut self.metrics);
        match read {
            ReadOutcome::Data(n) => {
                *budget = budget.saturating_sub(n);
                // A kept-alive connection was idle (keepalive_ms); from its
                // first byte on, the head must arrive in client_header_ms.
                client.head_started_ms.get_or_insert(now);
                Ok(true)
            }
            ReadOutcome::Eof => {
                client.eof = true;
                Ok(true)
            }
            ReadOutcome::Blocked => Ok(false),
            ReadOutcome::Failed(e) => {
                debug!("client {} read failed: {e}", client.peer);
                self.close(key);
                Err(Gone)
            }
        }
    }

    /// A bad request: answer with its status and close (the upstream never
    /// hears of it).
    fn refuse(&mut self, key: usize, e: RequestError) -> Progress {
        let (_, client) = client_in(&mut self.conns, key)?;
        warn!(
            "refused request from {}: {} ({})",
            client.peer,
            e.describe(),
            e.status()
        );
        self.refuse_without_head(key, e.status());
        Ok(true)
    }

    /// Answer `status` to a request whose head never parsed (malformed, or
    /// not complete in time), log it, and close.
    pub(super) fn refuse_without_head(&mut self, key: usize, status: u16) {
        self.refuse_with(key, None, status, &[], Some(ErrorKind::BadRequest));
    }

    /// An answer of the proxy's own, before any upstream is involved: one
    /// access line, the request counted (`error` too, if given), the answer
    /// queued, and the connection closing. `request` is `None` when the
    /// head never parsed.
    pub(super) fn refuse_with(
        &mut self,
        key: usize,
        request: Option<&RequestHead>,
        status: u16,
        extra_headers: &[&str],
        error: Option<ErrorKind>,
    ) {
        let now = self.now;
        let Ok((io, client)) = client_in(&mut self.conns, key) else {
            return;
        };
        let waited = now.saturating_sub(client.head_started_ms.unwrap_or(client.since_ms));
        let bytes_out = error_response_len(status, extra_headers) as u64;
        // The metrics listener's own refusals are not proxy traffic.
        let admin = client.admin;
        access_log::log(&AccessLine {
            client: client.peer,
            request,
            status,
            bytes_out,
            bytes_in: 0,
            upstream: None,
            upstream_status: None,
            request_time: Duration::from_millis(waited),
            connect_time: None,
            header_time: None,
            tls: io.socket.tls_version(),
        });
        if !admin {
            self.stats.requests += 1;
            self.metrics
                .record_request(status, None, waited * 1000, 0, bytes_out);
            if let Some(error) = error {
                self.metrics.record_error(error);
            }
        }
        self.answer_and_close(key, status, extra_headers);
    }

    /// A request on the metrics listener: answer it from the metrics, and
    /// close (see `src/admin.rs`).
    fn serve_admin(&mut self, key: usize, head: RequestHead) -> Progress {
        let (metrics, gauges) = self.figures();
        let now = self.now;
        let (_, client) = client_in(&mut self.conns, key)?;
        let before = client.out.pending().len();
        let status = admin::answer(&head, &metrics, &gauges, &self.series, client.out.compose());
        access_log::log(&AccessLine {
            client: client.peer,
            request: Some(&head),
            status,
            bytes_out: (client.out.pending().len() - before) as u64,
            bytes_in: 0,
            upstream: None,
            upstream_status: None,
            request_time: Duration::ZERO,
            connect_time: None,
            header_time: None,
            tls: None,
        });
        client.inbuf.clear();
        client.phase = ClientPhase::Closing(Closing {
            since_ms: now,
            fin_sent: false,
            discarded: 0,
        });
        Ok(true)
    }

    /// Queue an error answer of the proxy's own (with `extra_headers`, such
    /// as `Retry-After` or `Location`) and move to `Closing`.
    pub(super) fn answer_and_close(&mut self, key: usize, status: u16, extra_headers: &[&str]) {
        let now = self.now;
        if let Ok((_, client)) = client_in(&mut self.conns, key) {
            // Unread request bytes are moot now; `Closing` discards the rest.
            client.inbuf.clear();
            write_error_response(status, extra_headers, client.out.compose());
            trace!("connection {key}: answering {status} -> closing");
            client.phase = ClientPhase::Closing(Closing {
                since_ms: now,
                fin_sent: false,
                discarded: 0,
            });
        }
    }

    /// `Closing`: write the last answer, send FIN, and discard what the
    /// client still sends until it closes too.
    pub(super) fn linger(&mut self, key: usize) -> Progress {
        let (io, client) = client_in(&mut self.conns, key)?;
        let ClientPhase::Closing(closing) = &mut client.phase else {
            return Ok(false);
        };
        let mut progress = false;
        if !client.out.is_empty() {
            // The shutdown below follows as soon as `out` is empty.
            match write_two_before_fin(&mut io.socket, &mut io.ready, client.out.pending(), &[]) {
                WriteOutcome::Wrote(n) => {
                    client.out.advance(n);
                    progress = true;
                }
                WriteOutcome::Blocked => {}
                WriteOutcome::Failed(_) => {
                    self.close(key);
                    return Err(Gone);
                }
            }
        }
        // On TLS, close_notify goes first; a full socket makes both wait.
        if client.out.is_empty() && !closing.fin_sent && io.socket.shutdown_write() {
            closing.fin_sent = true;
            progress = true;
        }
        if !client.eof {
            match read_into(
                &mut io.socket,
                &mut io.ready,
                &mut client.inbuf,
                &mut self.buffers,
            ) {
                ReadOutcome::Data(n) => {
                    closing.discarded += n;
                    client.inbuf.clear();
                    progress = true;
                }
                ReadOutcome::Eof => {
                    client.eof = true;
                    progress = true;
                }
                ReadOutcome::Blocked => {}
                ReadOutcome::Failed(_) => {
                    self.close(key);
                    return Err(Gone);
                }
            }
        }
        if (closing.fin_sent && client.eof) || closing.discarded > LINGER_LIMIT {
            self.close(key);
            return Err(Gone);
        }
        Ok(progress)
    }

    /// A request head arrived: pick an upstream and get a connection to it.
    pub(super) fn begin_exchange(
        &mut self,
        key: usize,
        head: RequestHead,
        group: usize,
    ) -> Progress {
        let draining = self.draining_until.is_some();
        let now = self.now;
        let (io, client) = client_in(&mut self.conns, key)?;
        client.head_started_ms = None;
        // On a kept-alive connection the last small segment of a response
        // must not wait for the ACK of the one before (Nagle's algorithm
        // meeting the client's delayed ACK: up to 40 ms). A connection that
        // closes after its answer needs no such setting: closing flushes,
        // so, like nginx, we spare it the setsockopt.
        if head.keep_alive && !client.nodelay {
            let _ = io.socket.tcp().set_nodelay(true);
            client.nodelay = true;
        }
        let timeouts = self.settings.timeouts.clone();
        let mut exchange = Exchange::new(head, 0, timeouts, Instant::now(), now);
        exchange.group = group;
        exchange.over_tls = !io.socket.is_plain();
        exchange.in_flight = true;
        self.retry_budget.request_started();
        // Shutting down: serve this one, then close.
        exchange.close_client |= draining;
        // Body bytes that came with the head are judged before any upstream
        // is involved: broken framing is a 400 with nothing sent anywhere.
        let classified = exchange.classify_request_body(&client.inbuf);
        client.phase = ClientPhase::Exchanging(Box::new(exchange));
        if let Err(failure) = classified {
            return self.handle_failure(key, failure);
        }
        if let Err(seconds) = self.rate_limited(key) {
            self.metrics.rate_limited += 1;
            let retry_after = format!("Retry-After: {seconds}");
            return self.fail_with(key, 429, &[&retry_after], "rate_limit: no token left");
        }
        match self.start_attempt(key) {
            Some(progress) => progress,
            None => self.fail(key, 502, "no upstream to try"),
        }
    }

    /// `Exchanging`: move both directions of a request as far as they go.
    pub(super) fn exchange(&mut self, key: usize, budget: &mut usize) -> Progress {
        // Each sub-step may end the exchange (a 502, a retry elsewhere...);
        // then the phase has changed and `drive` must dispatch on the new one.
        let mut progress = self.finish_connect(key)?;
        if !self.is_exchanging(key) {
            return Ok(true);
        }
        progress |= self.read_client(key, budget)?;
        let now = self.now;
        let (_, client) = client_in(&mut self.conns, key)?;
        let ClientPhase::Exchanging(ex) = &mut client.phase else {
            return Ok(true);
        };
        // Upstream or not, what the client sent is classified now (see
        // `Exchange::classify_request_body`).
        if let Err(failure) = ex.classify_request_body(&client.inbuf) {
            return self.handle_failure(key, failure);
        }
        let Some(upstream_key) = ex.upstream else {
            return Ok(progress);
        };
        let Some((cio, client, uio, up)) = pair_in(&mut self.conns, key, upstream_key) else {
            return Ok(progress);
        };
        if up.phase != UpstreamPhase::Active {
            return Ok(progress);
        }
        let ClientPhase::Exchanging(ex) = &mut client.phase else {
            return Ok(progress);
        };

        match ex.forward_request(&mut client.inbuf, &mut uio.socket, &mut uio.ready) {
            Ok(moved) => progress |= moved,
            Err(failure) => return self.handle_failure(key, failure),
        }
        let body_cut_short = client.eof
            && !ex.request_body_done()
            && client.inbuf.is_empty()
            && !ex.request_bytes_waiting();
        if body_cut_short {
            self.metrics.record_error(ErrorKind::ClientAborted);
            return self.abort(key, "client closed before sending the whole request");
        }

        // Splicing: the body goes socket to pipe to socket, never into the
        // buffer, so the buffered read below must not take it first.
        if !up.eof && ex.pipe.is_none() {
            match read_into(
                &mut uio.socket,
                &mut uio.ready,
                &mut up.inbuf,
                &mut self.buffers,
            ) {
                ReadOutcome::Data(n) => {
                    *budget = budget.saturating_sub(n);
                    progress = true;
                }
                ReadOutcome::Eof => {
                    up.eof = true;
                    progress = true;
                }
                ReadOutcome::Blocked => {}
                ReadOutcome::Failed(e) => {
                    return self.handle_failure(key, Failure::UpstreamRead(e));
                }
            }
        }

        let relayed = ex.forward_response(
            &mut up.inbuf,
            up.eof,
            &mut cio.socket,
            &mut cio.ready,
            &mut client.out,
        );
        match relayed {
            Ok(moved) => progress |= moved,
            Err(failure) => return self.handle_failure(key, failure),
        }
        if ex.response_started() && ex.response_head_ms.is_none() {
            ex.response_head_ms = Some(now);
            // A well-formed head is the upstream's proof of health (its own
            // 5xx included: it answered).
            resilience::report(
                &mut self.groups,
                &mut self.metrics,
                ex,
                Outcome::Success,
                now,
            );
        }
        // splice hands bytes to the kernel as they are: plain sockets only.
        let plain = cio.socket.is_plain() && uio.socket.is_plain();
        if plain && ex.pipe.is_none() && ex.may_splice(&up.inbuf, &client.out) {
            match Pipe::new() {
                Ok(pipe) => ex.pipe = Some(pipe),
                // Out of descriptors, say: the buffer path still works.
                Err(e) => debug!("connection {key}: no pipe for splice ({e}); using the buffer"),
            }
        }
        if ex.pipe.is_some()
            && let (Some(up_tcp), Some(client_tcp)) = (uio.socket.plain(), cio.socket.plain())
        {
            let spliced = ex.splice_body(
                up_tcp,
                &mut uio.ready,
                &mut up.eof,
                client_tcp,
                &mut cio.ready,
                budget,
            );
            match spliced {
                Ok(moved) => progress |= moved,
                Err(failure) => return self.handle_failure(key, failure),
            }
        }

        let switching = match ex.response {
            ResponseState::Complete => false,
            ResponseState::Switching if client.out.is_empty() => true,
            _ => return Ok(progress),
        };
        if switching {
            self.begin_tunnel(key, upstream_key)
        } else {
            self.finish_exchange(key)
        }
    }

    /// The 101 reached the client: from now on, bytes are bytes.
    fn begin_tunnel(&mut self, key: usize, upstream_key: usize) -> Progress {
        self.log_exchange(key);
        let now = self.now;
        let (_, client) = client_in(&mut self.conns, key)?;
        debug!(
            "connection {key}: switching protocols, tunnel to upstream connection {upstream_key}"
        );
        client.phase = ClientPhase::Tunnel(Tunnel {
            upstream: upstream_key,
            since_ms: now,
            upstream_shut: false,
            client_shut: false,
        });
        Ok(true)
    }

    /// Read request bytes from the client during an exchange: the rest of
    /// the body, or the next pipelined request (read ahead, up to the
    /// buffer's size).
    fn read_client(&mut self, key: usize, budget: &mut usize) -> Progress {
        let (io, client) = client_in(&mut self.conns, key)?;
        if client.eof {
            return Ok(false);
        }
        match read_into(
            &mut io.socket,
            &mut io.ready,
            &mut client.inbuf,
            &mut self.buffers,
        ) {
            ReadOutcome::Data(n) => {
                *budget = budget.saturating_sub(n);
                Ok(true)
            }
            ReadOutcome::Eof => {
                // Half-close: the client has said all it will say, but may
                // still read. Whether it said enough is decided once the
                // bytes already read are classified (see `exchange`): the
                // last body bytes and the FIN often arrive together.
                client.eof = true;
                Ok(true)
            }
            ReadOutcome::Blocked => Ok(false),
            ReadOutcome::Failed(e) => {
                self.metrics.record_error(ErrorKind::ClientAborted);
                self.abort(key, &format!("client read failed: {e}"))
            }
        }
    }

    /// Decide what a [`Failure`] means for this exchange.
    fn handle_failure(&mut self, key: usize, failure: Failure) -> Progress {
        self.metrics.record_error(match &failure {
            Failure::BadRequestBody(_) => ErrorKind::BadRequest,
            Failure::UpstreamWrite(_) | Failure::UpstreamRead(_) | Failure::UpstreamClosedEarly => {
                ErrorKind::UpstreamReset
            }
            Failure::BadResponse(_) => ErrorKind::UpstreamBadResponse,
            Failure::UpstreamTruncated => ErrorKind::UpstreamTruncated,
            Failure::ClientWrite(_) => ErrorKind::ClientAborted,
        });
        let ex = exchange_in(&mut self.conns, key)?;
        let can_answer = ex.can_answer_error();
        match failure {
            Failure::BadRequestBody(e) if can_answer => {
                warn!("bad request body: {e:?}");
                self.fail(key, 400, "malformed request body")
            }
            Failure::BadRequestBody(e) => self.abort(
                key,
                &format!("bad request body after the response began: {e:?}"),
            ),
            Failure::UpstreamWrite(_) | Failure::UpstreamRead(_) | Failure::UpstreamClosedEarly
                if ex.can_retry() =>
            {
                self.retry(key, &failure)
            }
            Failure::UpstreamWrite(_)
            | Failure::UpstreamRead(_)
            | Failure::UpstreamClosedEarly
            | Failure::BadResponse(_)
                if can_answer =>
            {
                let why = describe(&failure);
                self.report_attempt(key, Outcome::Failure);
                if let Some(progress) = self.retry_elsewhere(key, &why, true) {
                    return progress;
                }
                self.fail(key, 502, &why)
            }
            other => self.abort(key, &describe(&other)),
        }
    }

    /// The proxy answers the client itself (502, 400, 504, ...) and closes
    /// it; the upstream connection, if any, is closed, never pooled.
    pub(super) fn fail(&mut self, key: usize, status: u16, why: &str) -> Progress {
        self.fail_with(key, status, &[], why)
    }

    /// [`Reactor::fail`] with extra header lines (`Retry-After: 1`).
    pub(super) fn fail_with(
        &mut self,
        key: usize,
        status: u16,
        extra_headers: &[&str],
        why: &str,
    ) -> Progress {
        self.leave_queue(key);
        let ex = exchange_in(&mut self.conns, key)?;
        ex.status = status;
        ex.response_bytes += error_response_len(status, extra_headers) as u64;
        let upstream = ex.upstream.take();
        let addr = upstream_label(ex);
        warn!("answering {status} (upstream {addr}): {why}");
        self.log_exchange(key);
        if let Some(upstream) = upstream {
            self.close(upstream);
        }
        self.answer_and_close(key, status, extra_headers);
        Ok(true)
    }

    /// Nothing sensible can be said to the client any more (the response
    /// has begun, or the client is gone): close both connections.
    pub(super) fn abort(&mut self, key: usize, why: &str) -> Progress {
        let upstream = self.linked_upstream(key);
        if let Ok((io, client)) = client_in(&mut self.conns, key) {
            let reset = matches!(&client.phase, ClientPhase::Exchanging(ex) if ex.client_reads_until_close());
            if reset {
                // A body that ends at the close must not end here: with
                // SO_LINGER 0 the close sends RST, which every client reports
                // as an error, instead of a FIN it would take for the end.
                let _ = SockRef::from(io.socket.tcp()).set_linger(Some(Duration::ZERO));
                warn!("resetting connection from {}: {why}", client.peer);
            } else {
                warn!("closing connection from {}: {why}", client.peer);
            }
        }
        if exchange_in(&mut self.conns, key).is_ok() {
            self.log_exchange(key);
        }
        if let Some(upstream) = upstream {
            self.close(upstream);
        }
        self.close(key);
        Err(Gone)
    }

    /// The response is complete: log it, return the upstream connection to
    /// the pool if it can be reused, and wait for the client's next request
    /// (or close).
    fn finish_exchange(&mut self, key: usize) -> Progress {
        self.log_exchange(key);
        let now = self.now;
        let (_, client) = client_in(&mut self.conns, key)?;
        let phase = std::mem::replace(&mut client.phase, ClientPhase::ReadingHead);
        let ClientPhase::Exchanging(ex) = phase else {
            return Ok(true);
        };
        client.served += 1;
        client.since_ms = now;
        // A pipelined request already (partly) here is a head in progress.
        client.head_started_ms = (!client.inbuf.is_empty()).then_some(now);
        // A client that half-closed is done once no request of its is left.
        let closing = ex.close_client || (client.eof && client.inbuf.is_empty());
        // Every byte it sent was read and answered: closing now cannot turn
        // into a reset that eats the answer, so no lingering is needed (as
        // nginx, which lingers only when client data may be left unread).
        let nothing_unread = client.inbuf.is_empty() && ex.request_complete();
        if closing && !nothing_unread {
            trace!("connection {key}: response complete -> closing (lingering)");
            client.phase = ClientPhase::Closing(Closing {
                since_ms: now,
                fin_sent: false,
                discarded: 0,
            });
        } else if !closing {
            trace!("connection {key}: response complete -> reading head (keep-alive)");
        }
        if let Some(upstream) = ex.upstream {
            self.release_upstream(upstream, ex.upstream_reusable);
        }
        if closing && nothing_unread {
            trace!("connection {key}: response complete -> closed");
            self.close(key);
            return Err(Gone);
        }
        Ok(true)
    }

    pub(super) fn log_exchange(&mut self, key: usize) {
        let now = self.now;
        let Ok((io, client)) = client_in(&mut self.conns, key) else {
            return;
        };
        let peer = client.peer;
        let tls = io.socket.tls_version();
        let ClientPhase::Exchanging(ex) = &mut client.phase else {
            return;
        };
        resilience::exchange_ended(
            &mut self.retry_budget,
            &mut self.groups,
            &mut self.metrics,
            ex,
            now,
        );
        // Its place in the metrics' list (a reload may have renumbered it),
        // if a connection to it was ever made: a refused connect forwarded
        // nothing.
        let group = self.groups.get(ex.group);
        let upstream = group
            .filter(|g| {
                ex.connected_ms.is_some()
                    && ex.upstream_addr.is_some()
                    && g.addrs.get(ex.upstream_index) == ex.upstream_addr.as_ref()
            })
            .map(|g| g.first + ex.upstream_index);
        self.metrics.record_request(
            ex.status,
            upstream,
            ex.started.elapsed().as_micros() as u64,
            ex.request_body_bytes,
            ex.response_bytes,
        );
        let since_start =
            |ms: Option<u64>| ms.map(|ms| Duration::from_millis(ms.saturating_sub(ex.started_ms)));
        access_log::log(&AccessLine {
            client: peer,
            request: Some(&ex.request),
            status: ex.status,
            bytes_out: ex.response_bytes,
            bytes_in: ex.request_body_bytes,
            upstream: ex.upstream_addr,
            upstream_status: ex.upstream_status,
            // All three on the reactor's millisecond clock, so they agree
            // (the latency histogram keeps the exact Instant).
            request_time: Duration::from_millis(now.saturating_sub(ex.started_ms)),
            connect_time: since_start(ex.connected_ms),
            header_time: since_start(ex.response_head_ms),
            tls,
        });
        self.stats.requests += 1;
    }

    /// `Tunnel`: copy bytes both ways with the same buffers and the same
    /// backpressure; pass each side's FIN on; close when both are done.
    pub(super) fn tunnel(&mut self, key: usize, budget: &mut usize) -> Progress {
        let Some(upstream_key) = self.linked_upstream(key) else {
            self.close(key);
            return Err(Gone);
        };
        let Some((cio, client, uio, up)) = pair_in(&mut self.conns, key, upstream_key) else {
            self.close(key);
            return Err(Gone);
        };
        let ClientPhase::Tunnel(tunnel) = &mut client.phase else {
            return Ok(false);
        };
        let mut progress = false;
        let buffers = &mut self.buffers;
        let toward_upstream = pump(
            cio,
            &mut client.inbuf,
            &mut client.eof,
            uio,
            &mut tunnel.upstream_shut,
            budget,
            buffers,
        );
        let toward_client = pump(
            uio,
            &mut up.inbuf,
            &mut up.eof,
            cio,
            &mut tunnel.client_shut,
            budget,
            buffers,
        );
        for moved in [toward_upstream, toward_client] {
            match moved {
                Ok(moved) => progress |= moved,
                Err(e) => return self.abort(key, &format!("tunnel broke: {e}")),
            }
        }
        if tunnel.upstream_shut && tunnel.client_shut {
            info!("connection {key}: tunnel closed by both sides");
            self.close(upstream_key);
            self.close(key);
            return Err(Gone);
        }
        Ok(progress)
    }

    /// Connection `key` is a client in the `Exchanging` phase.
    fn is_exchanging(&mut self, key: usize) -> bool {
        exchange_in(&mut self.conns, key).is_ok()
    }
}

/// A TLS handshake that finished during this read is counted, once. Only
/// reading a head can finish one: the first request follows it.
fn note_handshake(io: &mut Io, peer: std::net::SocketAddr, metrics: &mut crate::metrics::Metrics) {
    let Some(session) = io.socket.tls_mut() else {
        return;
    };
    let Some(done) = session.handshake_news() else {
        return;
    };
    metrics.tls.record_handshake(done.version, done.resumed);
    debug!(
        "TLS handshake with {}: {}{}, SNI {}",
        peer,
        done.version,
        if done.resumed { " (resumed)" } else { "" },
        session.server_name().unwrap_or("-")
    );
}

/// Both ends of a client/upstream pair, borrowed at once (borrowing only
/// the slab, so the buffer pool stays usable).
fn pair_in(
    conns: &mut Slab<Conn>,
    client: usize,
    upstream: usize,
) -> Option<(&mut Io, &mut crate::conn::Client, &mut Io, &mut Upstream)> {
    let (c, u) = conns.get2_mut(client, upstream)?;
    match (c, u) {
        (
            Conn {
                io: cio,
                role: Role::Client(client),
            },
            Conn {
                io: uio,
                role: Role::Upstream(up),
            },
        ) => Some((cio, client, uio, up)),
        _ => None,
    }
}

/// Tunnel one direction: read from `from` into `buf`, write `buf` to `to`,
/// and once `from` has closed and `buf` is empty, send FIN to `to`.
fn pump(
    from: &mut Io,
    buf: &mut Buffer,
    from_eof: &mut bool,
    to: &mut Io,
    to_shut: &mut bool,
    budget: &mut usize,
    buffers: &mut BufferPool,
) -> io::Result<bool> {
    let mut progress = false;
    if !*from_eof {
        match read_into(&mut from.socket, &mut from.ready, buf, buffers) {
            ReadOutcome::Data(n) => {
                *budget = budget.saturating_sub(n);
                progress = true;
            }
            ReadOutcome::Eof => {
                *from_eof = true;
                progress = true;
            }
            ReadOutcome::Blocked => {}
            ReadOutcome::Failed(e) => return Err(e),
        }
    }
    if !buf.is_empty() {
        match write_two(&mut to.socket, &mut to.ready, buf.filled(), &[]) {
            WriteOutcome::Wrote(n) => {
                buf.consume(n);
                progress = true;
            }
            WriteOutcome::Blocked => {}
            WriteOutcome::Failed(e) => return Err(e),
        }
    }
    // Half-close: pass the FIN on, keep the other direction open (on
    // TLS, close_notify first, which may wait for WRITABLE).
    if *from_eof && buf.is_empty() && !*to_shut && to.socket.shutdown_write() {
        *to_shut = true;
        progress = true;
    }
    Ok(progress)
}

/// The upstream an exchange was using, for log lines.
pub(super) fn upstream_label(ex: &Exchange) -> String {
    match ex.upstream_addr {
        Some(addr) => addr.to_string(),
        None => "-".to_string(),
    }
}

pub(super) fn describe(failure: &Failure) -> String {
    match failure {
        Failure::BadRequestBody(e) => format!("bad request body: {e:?}"),
        Failure::UpstreamWrite(e) => format!("writing to the upstream failed: {e}"),
        Failure::UpstreamRead(e) => format!("reading from the upstream failed: {e}"),
        Failure::UpstreamClosedEarly => "upstream closed without responding".to_string(),
        Failure::BadResponse(why) => format!("bad response from upstream: {why}"),
        Failure::UpstreamTruncated => "upstream response ended before its framing said".to_string(),
        Failure::ClientWrite(e) => format!("writing to the client failed: {e}"),
    }
}
