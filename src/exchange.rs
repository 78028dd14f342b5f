//! One exchange: a request and its response, from the parsed request head to
//! the last response byte.
//!
//! The client connection holds an [`Exchange`] while a request is in flight.
//! Both directions run at once, because either may block on the other: the
//! request body flows client -> upstream ([`Exchange::forward_request`])
//! while the response flows upstream -> client
//! ([`Exchange::forward_response`]). Each call moves what it can and returns;
//! it never waits. When it cannot go on it returns a [`Failure`], and the
//! reactor decides what that means (a retry, a 502, or a closed connection),
//! because only the reactor can open sockets or close them.
//!
//! Written with async/await, this would be one function:
//!
//! ```text
//! let upstream = connect().await;  write(head).await;  copy(body).await;
//! let resp = read_head().await;    write(resp).await;  copy(resp_body).await;
//! ```
//!
//! Here every `.await` is a state ([`ResponseState`], the request body's
//! [`BodyReader`]) that a readiness event resumes (lesson
//! `05-state-machines`).
//!
//! Over 500 lines, on purpose: both directions share one state (what was
//! sent decides whether a retry is safe and whether the upstream may be
//! pooled); split in two, each half would reach into the other's fields.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use std::os::fd::AsFd;

use crate::buffer::Buffer;
use crate::config::Timeouts;
use crate::conn::{Outbox, Outgoing, Readiness, WriteOutcome, write_two, write_two_before_fin};
use crate::http::framing::{BodyFraming, BodyReader, FramingError, Step};
use crate::http::head::{HeadLimits, Version};
use crate::http::request::RequestHead;
use crate::http::response::{parse_response, switched_protocol_was_offered};
use crate::http::rewrite::{ClientSide, ForwardContext, write_request_head, write_response_head};
use crate::retry::{Attempt, Tried, may_resend};
use crate::splice::{Moved, Pipe, SPLICE_THRESHOLD};

/// Room for what a rewrite adds to a head (`Via`, `X-Forwarded-*`,
/// `Connection`), so composing it allocates once.
const FIELDS_WE_ADD: usize = 160;

/// Where the response is.
#[derive(Debug)]
pub enum ResponseState {
    /// Waiting for the upstream's (final) response head.
    AwaitingHead,
    /// Relaying the body. `pending` bytes at the front of the upstream
    /// buffer are classified and not yet written; with `dechunk`, chunk
    /// framing is dropped instead of relayed (HTTP/1.0 client).
    Body {
        reader: BodyReader,
        pending: usize,
        dechunk: bool,
    },
    /// A `101 Switching Protocols` is being relayed; once it is out, the
    /// connection becomes a tunnel.
    Switching,
    /// Every response byte reached the client.
    Complete,
}

/// Why an exchange cannot go on; the reactor decides what to do about it.
#[derive(Debug)]
pub enum Failure {
    /// The request body's chunked framing is broken (400).
    BadRequestBody(FramingError),
    /// Writing to the upstream failed (it closed or reset).
    UpstreamWrite(io::Error),
    /// Reading from the upstream failed.
    UpstreamRead(io::Error),
    /// The upstream closed without sending a byte of response.
    UpstreamClosedEarly,
    /// The upstream's response head is unusable (502).
    BadResponse(&'static str),
    /// The upstream's body ended before its framing said it would.
    UpstreamTruncated,
    /// Writing to the client failed (it closed or reset).
    ClientWrite(io::Error),
}

/// A request in flight and everything needed to finish, retry or log it.
pub struct Exchange {
    pub started: Instant,
    /// The same moment, and later ones, on the reactor's millisecond clock.
    pub started_ms: u64,
    /// When the current upstream connection began connecting.
    pub connect_started_ms: u64,
    /// When it was linked (connected, or taken from the pool).
    pub linked_ms: u64,
    /// Waiting for a free slot under `max_conns_per_upstream`, since then.
    pub queued_since_ms: Option<u64>,
    /// The timeouts in force when the request arrived: a reload (SIGHUP)
    /// applies to new requests, never to one already under way.
    pub timeouts: Timeouts,
    pub request: RequestHead,
    /// Slab key of the upstream connection serving it, once there is one.
    pub upstream: Option<usize>,
    /// Index of the chosen upstream in its group's list.
    pub upstream_index: usize,
    /// The upstream group the request was routed to (`src/route.rs`);
    /// `upstream_index` and `tried` count within it.
    pub group: usize,
    /// The client came over TLS: `X-Forwarded-Proto: https`.
    pub over_tls: bool,
    /// Its address (kept here: a reload may renumber the list meanwhile).
    pub upstream_addr: Option<SocketAddr>,
    /// The upstream connection came from the idle pool.
    pub reused: bool,
    /// Already retried once on a fresh connection.
    pub retried: bool,
    /// Upstreams this request was sent to (or tried to connect to).
    pub tried: Tried,
    /// Times it was sent again to another upstream (`retries`).
    pub retries_used: usize,
    /// It holds one of the retry budget's places (see `src/retry.rs`).
    pub holds_retry: bool,
    /// This attempt is the half-open probe of its upstream.
    pub probe: bool,
    /// This attempt's outcome was reported to health already.
    pub health_reported: bool,
    /// Counted in the retry budget's requests in flight.
    pub in_flight: bool,
    /// The request head as it goes upstream.
    pub request_head: Outbox,
    request_body: BodyReader,
    /// Classified request bytes at the front of the client buffer, not yet
    /// written upstream.
    request_pending: usize,
    /// The upstream stopped accepting the request body after it answered:
    /// the rest is not sent, and both connections close afterwards.
    request_abandoned: bool,
    /// Request bytes (head excluded) written upstream.
    pub request_body_bytes: u64,
    pub response: ResponseState,
    /// The final status sent to the client (or 0 before there is one).
    pub status: u16,
    /// The status the upstream itself answered (its final head), if any.
    pub upstream_status: Option<u16>,
    /// When the final response head arrived (reactor clock, ms).
    pub response_head_ms: Option<u64>,
    /// When the upstream connection was ready (connected, or reused).
    pub connected_ms: Option<u64>,
    /// Bytes written to the client: heads and body.
    pub response_bytes: u64,
    /// The client connection closes after this response.
    pub close_client: bool,
    /// The upstream connection may go back to the pool afterwards.
    pub upstream_reusable: bool,
    /// A long body relayed with `splice(2)` instead of the buffer (see
    /// `src/splice.rs`).
    pub pipe: Option<Pipe>,
}

impl Exchange {
    pub fn new(
        request: RequestHead,
        upstream_index: usize,
        timeouts: Timeouts,
        started: Instant,
        now_ms: u64,
    ) -> Exchange {
        let request_body = BodyReader::new(request.body);
        let close_client = !request.keep_alive;
        Exchange {
            started,
            started_ms: now_ms,
            connect_started_ms: now_ms,
            linked_ms: now_ms,
            queued_since_ms: None,
            timeouts,
            request,
            upstream: None,
            upstream_index,
            group: 0,
            over_tls: false,
            upstream_addr: None,
            reused: false,
            retried: false,
            tried: Tried::default(),
            retries_used: 0,
            holds_retry: false,
            probe: false,
            health_reported: false,
            in_flight: false,
            request_head: Outbox::default(),
            request_body,
            request_pending: 0,
            request_abandoned: false,
            request_body_bytes: 0,
            response: ResponseState::AwaitingHead,
            status: 0,
            upstream_status: None,
            response_head_ms: None,
            connected_ms: None,
            response_bytes: 0,
            close_client,
            upstream_reusable: false,
            pipe: None,
        }
    }

    /// The rest of the body can go through a pipe: a body long enough,
    /// framed by length or close (never chunked, never de-chunked), and
    /// nothing of it waiting in the buffer or behind the head.
    pub fn may_splice(&self, upstream_in: &Buffer, out: &Outbox) -> bool {
        match &self.response {
            ResponseState::Body {
                reader,
                pending: 0,
                dechunk: false,
            } => {
                upstream_in.is_empty()
                    && out.is_empty()
                    && reader
                        .unexamined_room()
                        .is_some_and(|room| room >= SPLICE_THRESHOLD)
            }
            _ => false,
        }
    }

    /// Body bytes in the pipe, not yet taken by the client.
    pub fn pipe_held(&self) -> usize {
        self.pipe.as_ref().map_or(0, Pipe::held)
    }

    /// Relay the body through the pipe: fill it from the upstream while it
    /// is empty, drain it into the client while it is not, until the body
    /// ends, a side would block, or `budget` bytes have come in.
    pub fn splice_body<U: AsFd, C: AsFd>(
        &mut self,
        upstream: &U,
        upstream_ready: &mut Readiness,
        upstream_eof: &mut bool,
        client: &C,
        client_ready: &mut Readiness,
        budget: &mut usize,
    ) -> Result<bool, Failure> {
        let Exchange {
            response,
            pipe: Some(pipe),
            response_bytes,
            ..
        } = self
        else {
            return Ok(false);
        };
        let ResponseState::Body { reader, .. } = response else {
            return Ok(false);
        };
        let mut progress = false;
        let finished = loop {
            if pipe.held() > 0 {
                match pipe.drain(client, client_ready) {
                    Moved::Bytes(n) => {
                        *response_bytes += n as u64;
                        progress = true;
                        continue;
                    }
                    Moved::Failed(e) => return Err(Failure::ClientWrite(e)),
                    Moved::Blocked | Moved::Eof => break false,
                }
            }
            let Some(room) = reader.unexamined_room() else {
                break reader.is_done();
            };
            if *budget == 0 {
                break false;
            }
            // A fill may overshoot what is left of the budget, by up to a
            // pipeful: it moves page references, far cheaper than copying.
            let max = room.min(pipe.capacity() as u64) as usize;
            match pipe.fill(upstream, upstream_ready, max) {
                Moved::Bytes(n) => {
                    reader.passed_unexamined(n as u64);
                    *budget = budget.saturating_sub(n);
                    progress = true;
                }
                Moved::Eof => {
                    *upstream_eof = true;
                    // Close-delimited bodies end here; others are cut short.
                    reader
                        .finish_at_eof()
                        .map_err(|_| Failure::UpstreamTruncated)?;
                    progress = true;
                }
                Moved::Blocked => break false,
                Moved::Failed(e) => return Err(Failure::UpstreamRead(e)),
            }
        };
        if finished {
            self.response = ResponseState::Complete;
            self.pipe = None;
            return Ok(true);
        }
        Ok(progress)
    }

    /// Heap bytes this exchange holds beyond the connection's buffers.
    pub fn memory(&self) -> usize {
        self.request_head.capacity()
    }

    /// Compose the request head for the upstream connection just linked.
    /// Called again on a retry: nothing of the old attempt is kept.
    pub fn compose_request_head(&mut self, client_ip: IpAddr, default_host: &str) {
        self.request_head.clear();
        let ctx = ForwardContext {
            client_ip,
            proto: if self.over_tls { "https" } else { "http" },
            default_host,
        };
        // One allocation of the right size, not a Vec doubling its way up:
        // the rewritten head is the received one plus a few fields.
        let out = self.request_head.compose();
        out.reserve(self.request.len + FIELDS_WE_ADD);
        write_request_head(&self.request, &ctx, out);
    }

    /// Every request byte has been sent upstream (or classified as done).
    pub fn request_complete(&self) -> bool {
        self.request_body.is_done() && self.request_pending == 0
    }

    /// The client has nothing more to send for this request: its bytes are
    /// all classified, so any further bytes belong to the next request.
    pub fn request_body_done(&self) -> bool {
        self.request_body.is_done()
    }

    /// A final response head has been composed for the client.
    pub fn response_started(&self) -> bool {
        !matches!(self.response, ResponseState::AwaitingHead)
    }

    /// The client is reading a body whose end is the close of its
    /// connection (close-delimited from the upstream, or de-chunked for an
    /// HTTP/1.0 client) and has not had all of it. If the exchange dies now
    /// a clean FIN would look exactly like the body's end, so the reactor
    /// resets the connection instead.
    pub fn client_reads_until_close(&self) -> bool {
        match &self.response {
            ResponseState::Body {
                reader, dechunk, ..
            } => *dechunk || reader.is_close_delimited(),
            _ => false,
        }
    }

    /// Request bytes (head or classified body) wait to be written upstream.
    pub fn request_bytes_waiting(&self) -> bool {
        !self.request_head.is_empty() || self.request_pending > 0
    }

    /// Nothing of the response has reached the client and no final head has
    /// been composed: the proxy can still answer with an error of its own.
    pub fn can_answer_error(&self) -> bool {
        matches!(self.response, ResponseState::AwaitingHead)
    }

    /// The contract's retry rule: a *reused* connection that failed before
    /// any response byte, for an idempotent request whose body (if any) has
    /// not started, is retried once on a fresh connection. Anything else
    /// might run twice upstream.
    pub fn can_retry(&self) -> bool {
        self.reused
            && !self.retried
            && self.request.is_idempotent()
            && self.request_body_bytes == 0
            && self.response_bytes == 0
            && matches!(self.response, ResponseState::AwaitingHead)
    }

    /// The retry rule (`src/retry.rs`) applied to this attempt;
    /// `request_sent`: it got as far as a connection (a connect that failed
    /// or timed out sent nothing).
    pub fn may_resend(&self, request_sent: bool) -> bool {
        may_resend(Attempt {
            request_sent,
            body_sent: self.request_body_bytes > 0,
            idempotent: self.request.is_idempotent(),
            response_started: self.response_bytes > 0
                || !matches!(self.response, ResponseState::AwaitingHead),
        })
    }

    /// Forget the failed connection's progress before a retry.
    pub fn reset_for_retry(&mut self) {
        self.retried = true;
        self.reused = false;
        self.upstream = None;
        self.request_head.clear();
    }

    /// Move request bytes from `client_in` to the upstream: what remains of
    /// the head, then body bytes as the framing classifies them. Stops at
    /// the end of this request's body: bytes after it belong to the next
    /// (pipelined) request and stay in `client_in`.
    pub fn forward_request<W: Write>(
        &mut self,
        client_in: &mut Buffer,
        upstream: &mut W,
        upstream_ready: &mut Readiness,
    ) -> Result<bool, Failure> {
        let mut progress = false;
        while !self.request_abandoned {
            self.classify_request_body(client_in)?;
            let body = &client_in.filled()[..self.request_pending];
            let head = self.request_head.pending();
            if head.is_empty() && body.is_empty() {
                break;
            }
            match write_two(upstream, upstream_ready, head, body) {
                WriteOutcome::Wrote(n) => {
                    let body_written = self.request_head.advance(n);
                    client_in.consume(body_written);
                    self.request_pending -= body_written;
                    self.request_body_bytes += body_written as u64;
                    progress = true;
                }
                WriteOutcome::Blocked => break,
                WriteOutcome::Failed(e) => {
                    if matches!(self.response, ResponseState::AwaitingHead) {
                        return Err(Failure::UpstreamWrite(e));
                    }
                    // The upstream already answered and stopped reading
                    // (allowed: RFC 9112 section 9.3). Relay its answer,
                    // then close both sides.
                    self.abandon_request();
                    progress = true;
                }
            }
        }
        Ok(progress)
    }

    /// Step the request's body reader over every buffered byte it has not
    /// classified yet, so `request_pending` covers all of them.
    ///
    /// Called as soon as client bytes arrive, whether or not an upstream is
    /// linked yet: a chunk size that overflows, or any other broken framing,
    /// is then refused the moment its bytes are read, not once a connect (or
    /// the queue for one) finishes and the writes catch up. Classifying
    /// ahead costs no memory: the bytes are the ones already buffered.
    pub fn classify_request_body(&mut self, client_in: &Buffer) -> Result<(), Failure> {
        while !self.request_abandoned && !self.request_body.is_done() {
            let unclassified = client_in
                .filled()
                .get(self.request_pending..)
                .unwrap_or_default();
            match self.request_body.step(unclassified) {
                Ok(Step::Data(n)) | Ok(Step::Framing(n)) => self.request_pending += n,
                Ok(Step::NeedMore) | Ok(Step::Done) => break,
                Err(e) => return Err(Failure::BadRequestBody(e)),
            }
        }
        Ok(())
    }

    fn abandon_request(&mut self) {
        self.request_abandoned = true;
        self.request_pending = 0;
        self.close_client = true;
        self.upstream_reusable = false;
    }

    /// Move response bytes from `upstream_in` to the client: parse the head,
    /// relay 1xx, compose the client's head, then relay the body as its
    /// framing says. `upstream_eof`: the upstream has sent FIN.
    pub fn forward_response<W: Outgoing>(
        &mut self,
        upstream_in: &mut Buffer,
        upstream_eof: bool,
        client: &mut W,
        client_ready: &mut Readiness,
        out: &mut Outbox,
    ) -> Result<bool, Failure> {
        let mut progress = false;
        loop {
            let moved = match self.response {
                ResponseState::AwaitingHead => {
                    self.take_response_head(upstream_in, upstream_eof, out)?
                }
                ResponseState::Body { .. } => {
                    self.relay_body(upstream_in, upstream_eof, client, client_ready, out)?
                }
                ResponseState::Switching | ResponseState::Complete => false,
            };
            // Heads composed into `out` (a relayed 1xx, the 101) go out here.
            let flushed = self.flush(client, client_ready, out)?;
            if !moved && !flushed {
                return Ok(progress);
            }
            progress = true;
        }
    }

    fn flush<W: Write>(
        &mut self,
        client: &mut W,
        ready: &mut Readiness,
        out: &mut Outbox,
    ) -> Result<bool, Failure> {
        if out.is_empty() || matches!(self.response, ResponseState::Body { .. }) {
            // In the body phase the head leaves together with body bytes.
            return Ok(false);
        }
        match write_two(client, ready, out.pending(), &[]) {
            WriteOutcome::Wrote(n) => {
                out.advance(n);
                self.response_bytes += n as u64;
                Ok(true)
            }
            WriteOutcome::Blocked => Ok(false),
            WriteOutcome::Failed(e) => Err(Failure::ClientWrite(e)),
        }
    }

    fn take_response_head(
        &mut self,
        upstream_in: &mut Buffer,
        upstream_eof: bool,
        out: &mut Outbox,
    ) -> Result<bool, Failure> {
        let limits = HeadLimits {
            // A response head must fit in the upstream buffer.
            max_head_bytes: upstream_in.capacity(),
            ..HeadLimits::default()
        };
        let head = match parse_response(upstream_in.filled(), self.request.is_head(), &limits) {
            Ok(Some(head)) => head,
            Ok(None) if upstream_eof && upstream_in.is_empty() && self.response_bytes == 0 => {
                return Err(Failure::UpstreamClosedEarly);
            }
            Ok(None) if upstream_eof => {
                return Err(Failure::BadResponse(
                    "upstream closed before its response head was complete",
                ));
            }
            Ok(None) => return Ok(false),
            Err(e) => return Err(Failure::BadResponse(e.describe())),
        };
        upstream_in.consume(head.len);
        out.compose().reserve(head.len + FIELDS_WE_ADD);
        let client_version = self.request.version;
        if head.status == 101 {
            // Only a tunnel the client asked for: anything else would let the
            // upstream turn a request into a raw pipe the client never wanted.
            let Some(offered) = &self.request.upgrade else {
                return Err(Failure::BadResponse(
                    "101 Switching Protocols without an upgrade request",
                ));
            };
            if !switched_protocol_was_offered(offered, &head.headers) {
                return Err(Failure::BadResponse(
                    "101 Switching Protocols to a protocol the client did not offer",
                ));
            }
            let side = ClientSide {
                version: client_version,
                keep_alive: true,
                dechunk: false,
            };
            write_response_head(&head, &side, out.compose());
            self.status = 101;
            self.upstream_status = Some(101);
            self.response = ResponseState::Switching;
        } else if head.is_informational() {
            // 100 Continue and friends: an HTTP/1.0 client does not know
            // them (RFC 9110 section 15.2), so it never sees one.
            if client_version == Version::Http11 {
                let side = ClientSide {
                    version: client_version,
                    keep_alive: true,
                    dechunk: false,
                };
                write_response_head(&head, &side, out.compose());
            }
        } else {
            let request_done = self.request_complete();
            let dechunk = head.body == BodyFraming::Chunked && client_version == Version::Http10;
            // The client connection stays open only if both sides know where
            // this response ends and the request has been read to its end.
            self.close_client |= !request_done || head.body == BodyFraming::UntilClose || dechunk;
            self.upstream_reusable = head.keep_alive && request_done && !self.request_abandoned;
            let side = ClientSide {
                version: client_version,
                keep_alive: !self.close_client,
                dechunk,
            };
            write_response_head(&head, &side, out.compose());
            self.status = head.status;
            self.upstream_status = Some(head.status);
            self.response = ResponseState::Body {
                reader: BodyReader::new(head.body),
                pending: 0,
                dechunk,
            };
        }
        Ok(true)
    }

    fn relay_body<W: Outgoing>(
        &mut self,
        upstream_in: &mut Buffer,
        upstream_eof: bool,
        client: &mut W,
        client_ready: &mut Readiness,
        out: &mut Outbox,
    ) -> Result<bool, Failure> {
        if self.pipe.is_some() {
            // The pipe carries the body now, and `splice_body` ends it: the
            // framing may say the body is all here while its tail still
            // waits in the pipe for the client.
            return Ok(false);
        }
        let ResponseState::Body {
            reader,
            pending,
            dechunk,
        } = &mut self.response
        else {
            return Ok(false);
        };
        let mut progress = false;
        loop {
            if *pending == 0 && !reader.is_done() {
                match reader.step(upstream_in.filled()) {
                    Ok(Step::Data(n)) => *pending = n,
                    Ok(Step::Framing(n)) if *dechunk => {
                        upstream_in.consume(n);
                        progress = true;
                        continue;
                    }
                    Ok(Step::Framing(n)) => *pending = n,
                    Ok(Step::NeedMore) if upstream_eof => {
                        // Close-delimited bodies end here; others are cut short.
                        reader
                            .finish_at_eof()
                            .map_err(|_| Failure::UpstreamTruncated)?;
                        continue;
                    }
                    Ok(Step::NeedMore) | Ok(Step::Done) => {}
                    Err(_) => return Err(Failure::UpstreamTruncated),
                }
            }
            let body = &upstream_in.filled()[..*pending];
            if out.is_empty() && body.is_empty() {
                if reader.is_done() {
                    self.response = ResponseState::Complete;
                    return Ok(true);
                }
                return Ok(progress);
            }
            // The reader has classified the body to its end, so this write
            // (if it is taken whole) ends the answer; on a connection that
            // closes next, the FIN can ride with it.
            let ends_connection = self.close_client && reader.is_done();
            let outcome = if ends_connection {
                write_two_before_fin(client, client_ready, out.pending(), body)
            } else {
                write_two(client, client_ready, out.pending(), body)
            };
            match outcome {
                WriteOutcome::Wrote(n) => {
                    let body_written = out.advance(n);
                    upstream_in.consume(body_written);
                    *pending -= body_written;
                    self.response_bytes += n as u64;
                    progress = true;
                }
                WriteOutcome::Blocked => return Ok(progress),
                WriteOutcome::Failed(e) => return Err(Failure::ClientWrite(e)),
            }
        }
    }
}
