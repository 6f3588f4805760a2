//! `pirate client`: requests with a timeout per attempt, retries and socket reopen — the Lazy
//! Pirate algorithm — spoken either bare (to `pirate server`, any REP server, or a Pirate
//! queue) or as a Majordomo client (7/MDP 0.1 or 18/MDP 0.2) to a broker.
//!
//! # Which reply answers which request
//! A client must never take a reply for the answer to a request it does not answer (trap 9 in
//! `docs/protocols.md`): a server that sends a stale copy of its previous reply, a proxy that
//! duplicates or delays, a late reply to an earlier attempt. Two mechanisms, chosen per
//! endpoint ([`Correlation`]):
//! - **Request ids** (bare, always; Majordomo when the broker answers `mmi.correlate` with
//!   `200`, i.e. `pirate broker`): every request in flight to the endpoint goes out on ONE
//!   DEALER, each attempt as `[id]["" ][request…]` ([`crate::proto::correlate`]) with an id
//!   never used before; REP sockets, queues and the pirate broker echo the envelope, and the
//!   id says which request a reply answers. A reply whose id is not in flight (a stale copy,
//!   a duplicate, a late reply to an attempt already resent) or that has no envelope at all is
//!   dropped, counted in `mismatched`, reported as a `mismatch` event (against the oldest
//!   request waiting on that socket) and traced under `-v`; every request keeps waiting for
//!   its own.
//! - **A socket per request** (Majordomo to a broker that does not carry request ids): the
//!   standard frames on a fresh REQ (0.1) or DEALER (0.2) for every request and every retry,
//!   so the only reply that can reach a socket is one routed for the one request it carried.
//!   The `-v` trace of the probe says the window falls back to this.
//!
//! With `check_echo` (the Guide's `--count` sequence) a reply that is not equal to its
//! request is reported as a mismatch, never accepted, and the request retried.
//!
//! # Timeouts, retries and the reopen
//! Each attempt has its own deadline (`timeout`, restarted by a 0.2 PARTIAL), and each
//! request its own `retries` attempts; the run is abandoned when one request has used them
//! all. With a socket per request, every retry closes the socket and opens a fresh one (the
//! Guide's Lazy Pirate). With request ids, a retry goes out on the same shared socket with a
//! fresh id, unless the connection looks dead:
//!
//! **The reopen rule**: when an attempt times out and *nothing at all* (no reply, no stale
//! copy, nothing malformed) has arrived on its shared socket since that attempt was sent,
//! the peer has been silent for a whole timeout while a request waited: the socket is closed
//! (LINGER 0) and the resend opens a fresh one, with a fresh identity, counted in
//! `reconnects`. The other attempts that were waiting on the closed socket cannot be answered
//! any more; each is resent on the fresh socket when its own deadline passes (no second
//! reopen for them), so every request still gets exactly its `retries` attempts. A peer that
//! answers anything is alive: a request lost in it (a worker killed mid-request) is resent on
//! the same socket while the other requests flow. With a window of 1 this is exactly the
//! Guide's rule: a timeout with no reply reopens the socket.
//!
//! With several endpoints (Binary Star) a failed attempt on the current endpoint fails over
//! to the next one instead, after `settle`; the old endpoint's shared socket takes no new
//! attempt and closes once the attempts still on it are done (coming back opens a fresh one).
//!
//! Up to `window` requests are in flight at once. Replies are reported in request order,
//! whatever order they complete in: those completed behind a request still being retried are
//! held back, at most [`HELD_WINDOWS`] windows' worth; past that no new request starts until
//! the old one is answered (or abandons the run).
//!
//! [`Client`] is the logic as a pure [`Machine`] on the reactor: each attempt's timeout, the
//! settle delay after a failover and the `mmi.correlate` probe's wait are deadlines it keeps;
//! a retry is `Close` of the attempt's socket then `Open` of a fresh one; reading the next
//! request (stdin may block) is a job run on a work thread. [`run`] hands it to the reactor.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::feed::{ReadAhead, Request, Source};
use crate::msg::{Frame, Message};
use crate::proto::correlate::RequestIds;
use crate::reactor::{self, Ended, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::stats::LatencyRecorder;

mod framing;
mod probe;
mod replies;
mod retries;
mod sockets;
#[cfg(test)]
mod tests;
mod window;

pub use framing::{Framing, Received};
use probe::Probe;

/// How replies are tied to their requests on one endpoint (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Correlation {
    /// A request id in each request's envelope, echoed with its reply; sockets are reused.
    RequestId,
    /// Standard frames, one fresh socket per request.
    Socket,
}

/// Everything the client needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Guide: `tcp://localhost:5555`.
    pub endpoint: String,
    /// How long one attempt waits for its reply (Guide: 2500 ms). A PARTIAL restarts it.
    pub timeout: Duration,
    /// Attempts per request, the first included (the Guide's REQUEST_RETRIES: 3).
    pub retries: u32,
    /// Every reply must equal its request (the Guide's test sequence).
    pub check_echo: bool,
    pub framing: Framing,
    /// Requests in flight at once (1: synchronous, as in the Guide).
    pub window: usize,
    /// More endpoints to fail over to (Binary Star): after a failed attempt the client moves
    /// to the next endpoint, waits `settle`, and resends there.
    pub failover: Vec<String>,
    /// Wait after switching endpoints, for the backup to take over (Guide: 2000 ms).
    pub settle: Duration,
    /// How replies are tied to requests on every endpoint; `None`: request ids for bare
    /// framing, and for Majordomo what the broker's `mmi.correlate` says. A socket per request
    /// puts nothing but the body on the wire (a REQ socket's envelope), for peers that take
    /// only that: the Guide's ppworker behind the Guide's queues.
    pub correlation: Option<Correlation>,
}

impl ClientConfig {
    /// Every endpoint, the first one first.
    pub fn endpoints(&self) -> Vec<String> {
        let mut all = vec![self.endpoint.clone()];
        all.extend(self.failover.iter().cloned());
        all
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: "tcp://localhost:5555".into(),
            timeout: Duration::from_millis(2500),
            retries: 3,
            check_echo: false,
            framing: Framing::Bare,
            window: 1,
            failover: Vec::new(),
            settle: Duration::from_millis(2000),
            correlation: None,
        }
    }
}

/// The client's one kind of job: read the next requests from the source (stdin may block).
/// It hands back every request it has ready, in order, at least one; none at the end of the
/// source ([`Client`]'s `Done`).
#[derive(Debug, PartialEq, Eq)]
pub struct ReadNext;

/// The sockets of an endpoint check, one per endpoint, opened before the start and closed at
/// once: a bad endpoint is reported before the run starts.
const CHECK: Slot = 0;

/// Where the attempt in flight of a request went.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Via {
    /// Not sent yet: it waits for room in the window, the settle delay or the probe.
    Waiting,
    /// On a socket of its own ([`Correlation::Socket`]).
    Own(Slot),
    /// On its endpoint's shared DEALER, under request id `id` ([`Correlation::RequestId`]).
    Shared { slot: Slot, id: Frame },
    /// Sent on a shared socket that was reopened since (the connection looked dead): nothing
    /// can answer this attempt any more; its own deadline resends it.
    Orphaned,
}

/// One request and its attempt in flight.
struct InFlight {
    seq: u64,
    request: Request,
    attempt: u32,
    first_sent: Instant,
    /// When the attempt in flight went out (the reopen rule compares it with the last message
    /// heard on its socket).
    sent_at: Instant,
    /// When the attempt in flight times out; `None` while it waits to be sent.
    deadline: Option<Instant>,
    /// The reply so far (0.2 PARTIALs, then the FINAL).
    reply: Message,
    /// Which endpoint the attempt went to.
    at: usize,
    via: Via,
}

/// The one DEALER that carries every request in flight to an endpoint with request ids.
struct Conn {
    slot: Slot,
    at: usize,
    /// Requests whose attempt in flight went out on it.
    load: usize,
    /// When a message last arrived on it (`None`: never).
    heard: Option<Instant>,
    /// False once the client failed over away from its endpoint: it carries no new attempt
    /// and closes when its last request is done (coming back opens a fresh one).
    takes_new: bool,
}

/// Why an attempt failed when its deadline passed.
const TIMEOUT: &str = "timeout";

/// How many windows' worth of requests may be started past the oldest one not yet reported:
/// the replies completed behind a request that is still being retried are held back (stdout
/// stays in request order), and this bounds how many.
pub const HELD_WINDOWS: usize = 64;

/// The Lazy Pirate client as a pure [`Machine`]: attempts with a deadline each, request ids
/// on one shared socket per endpoint (or a socket per request), the reopen of a connection
/// that looks dead, failover with a settle delay.
pub struct Client {
    config: ClientConfig,
    endpoints: Vec<String>,
    /// How each endpoint ties replies to requests, once known.
    correlation: Vec<Option<Correlation>>,
    /// The endpoint new attempts go to.
    current: usize,
    report: ClientReport,
    latency: LatencyRecorder,
    started: Option<Instant>,
    /// Replies completed ahead of an earlier request, held back to keep stdout in order.
    held: BTreeMap<u64, Event>,
    next_to_emit: u64,
    ids: RequestIds,
    /// By sequence number, so in request order.
    in_flight: BTreeMap<u64, InFlight>,
    /// Requests whose next attempt waits to be sent, in request order.
    waiting: BTreeSet<u64>,
    /// The request each request id in flight belongs to (shared sockets).
    by_id: HashMap<Frame, u64>,
    /// The request each socket of its own carries.
    own: HashMap<Slot, u64>,
    /// Shared sockets: at most one per endpoint takes new attempts.
    conns: Vec<Conn>,
    /// Socket slots free for reuse (a closed socket's number).
    free: Vec<Slot>,
    next_slot: Slot,
    /// The slot whose message is being handled.
    reading_slot: Option<Slot>,
    probe: Option<Probe>,
    /// The broker's last answer to `mmi.service` for our service: `Some(None)` when asked and
    /// not answered in time.
    service_answer: Option<Option<String>>,
    /// The run gave up and waits for the `mmi.service` answer to say why.
    abandoning: bool,
    /// No attempt goes out before this (failover: the backup is taking over).
    settle_until: Option<Instant>,
    reading: bool,
    /// Requests read while the window was full (at most a read job's batch), sent as room
    /// frees up.
    ahead: VecDeque<Request>,
    exhausted: bool,
    /// The reader behind the [`ReadNext`] jobs, if the caller shared it
    /// ([`Client::reading_from`]): what it has ready is taken without a job.
    source: Option<Arc<ReadAhead>>,
    /// Accepted replies' frames, kept for a library caller ([`Client::keep_replies`]).
    replies: Option<Vec<Message>>,
    outcome: Option<Outcome>,
    /// Why an endpoint refused our login, if it did (the socket monitor's word, see
    /// [`crate::handshake`]); a function so that tests can say it.
    refusals: fn(&str) -> Option<String>,
}

impl Client {
    pub fn new(config: &ClientConfig) -> Self {
        let endpoints = config.endpoints();
        let framing_is_bare = config.framing == Framing::Bare;
        Client {
            report: ClientReport::new(endpoints.join(",")),
            // Bare framing needs no question: REP servers and queues always echo the envelope.
            correlation: vec![
                config
                    .correlation
                    .or(framing_is_bare.then_some(Correlation::RequestId));
                endpoints.len()
            ],
            next_slot: CHECK + endpoints.len(),
            endpoints,
            current: 0,
            latency: LatencyRecorder::default(),
            started: None,
            held: BTreeMap::new(),
            next_to_emit: 1,
            ids: RequestIds::random(),
            in_flight: BTreeMap::new(),
            waiting: BTreeSet::new(),
            by_id: HashMap::new(),
            own: HashMap::new(),
            conns: Vec::new(),
            free: Vec::new(),
            reading_slot: None,
            probe: None,
            service_answer: None,
            abandoning: false,
            settle_until: None,
            reading: false,
            ahead: VecDeque::new(),
            exhausted: false,
            source: None,
            replies: None,
            outcome: None,
            refusals: crate::handshake::refused_by,
            config: config.clone(),
        }
    }

    /// Takes requests that `source` (the reader its [`ReadNext`] jobs read from) already has
    /// ready without starting a job: no work thread and no wake-up per request.
    pub fn reading_from(mut self, source: Arc<ReadAhead>) -> Self {
        self.source = Some(source);
        self
    }

    /// Every endpoint ties replies to requests this way: no `mmi.correlate` probe.
    pub fn with_correlation(mut self, correlation: Correlation) -> Self {
        self.correlation
            .iter_mut()
            .for_each(|c| *c = Some(correlation));
        self
    }

    /// Keeps every accepted reply's frames for [`Client::take_replies`].
    pub fn keep_replies(mut self) -> Self {
        self.replies = Some(Vec::new());
        self
    }

    /// The accepted replies' frames, in the order they were accepted.
    pub fn take_replies(&mut self) -> Vec<Message> {
        self.replies
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// How the run ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// The counters so far.
    pub fn report(&self) -> &ClientReport {
        &self.report
    }

    /// Ends the run: whatever completed is reported, in order, and the summary filled in.
    pub fn finish(&mut self, outcome: Outcome, now: Instant, events: &mut Events) -> Report {
        if self.outcome.is_none() {
            for (_, event) in std::mem::take(&mut self.held) {
                events.emit(event);
            }
            self.outcome = Some(outcome);
            self.report.outcome = outcome;
            let started = self.started.unwrap_or(now);
            self.report.timed(
                now.saturating_duration_since(started),
                self.latency.summary(),
            );
        }
        Report::Client(self.report.clone())
    }
}

impl Machine for Client {
    type Job = ReadNext;
    /// The next requests read, in order; none at the end of the source.
    type Done = Vec<Request>;

    fn sockets(&self) -> Vec<SocketSpec> {
        // Every endpoint is checked now, so a bad one is reported before the run starts.
        (0..self.endpoints.len())
            .map(|at| self.spec(CHECK + at, SocketKind::Req, at))
            .collect()
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        for at in 0..self.endpoints.len() {
            self.release(CHECK + at, out);
        }
        self.started = Some(now);
        events.emit(Event::started("client", self.endpoints.join(","), None));
        self.pump(now, out, events);
    }

    fn handle(
        &mut self,
        input: Input<Vec<Request>>,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if self.outcome.is_some() {
            return;
        }
        match input {
            Input::Done(next) => {
                self.reading = false;
                if next.is_empty() {
                    self.exhausted = true;
                }
                self.ahead.extend(next);
                self.pump(now, out, events);
            }
            Input::Message { slot, msg } => {
                self.reading_slot = Some(slot);
                if self.probe.as_ref().is_some_and(|p| p.slot == slot) {
                    self.probe_reply(msg, now, out, events);
                } else if let Some(c) = self.conns.iter().position(|c| c.slot == slot) {
                    self.shared_reply(c, msg, now, out, events);
                } else if let Some(&seq) = self.own.get(&slot) {
                    let decoded = self.config.framing.decode(msg);
                    self.reply(seq, decoded, now, out, events);
                } else {
                    // A closed slot: nothing to do.
                    events.warn(format!("dropped a message on idle client socket {slot}"));
                }
                self.reading_slot = None;
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        if self.outcome.is_some() || self.settling(now) {
            return;
        }
        if self.settle_until.is_some() {
            self.pump(now, out, events);
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.deadline) {
            self.answered(None, now, out, events);
        }
        // One failure at a time: a failure may abandon the run or start a settle delay.
        while self.outcome.is_none() && !self.settling(now) {
            let Some(seq) = self
                .in_flight
                .values()
                .find(|f| f.deadline.is_some_and(|d| now >= d))
                .map(|f| f.seq)
            else {
                break;
            };
            self.failed(seq, TIMEOUT, now, out, events);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        if let Some(settle) = self.settle_until {
            return Some(settle);
        }
        self.in_flight
            .values()
            .filter_map(|f| f.deadline)
            .chain(self.probe.as_ref().map(|p| p.deadline))
            .min()
    }

    fn wants(&self, slot: Slot) -> bool {
        // While settling nothing is read (the Guide sleeps); a shared socket is read while it
        // carries a request.
        self.outcome.is_none()
            && self.settle_until.is_none()
            && (self.probe.as_ref().is_some_and(|p| p.slot == slot)
                || self.own.contains_key(&slot)
                || self.conns.iter().any(|c| c.slot == slot && c.load > 0))
    }
}

/// Sends every request and reports each reply as an event, in request order, until done,
/// abandoned or `stop` is raised. Returns the summary; its outcome says which.
pub fn run(
    config: &ClientConfig,
    requests: impl Iterator<Item = impl Into<Vec<u8>> + 'static> + Send + 'static,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    let source = Source::new(requests.map(Into::into));
    let reader = Arc::new(ReadAhead::new(
        move || source.next().map(Request::line),
        config.window,
    ));
    let mut client = Client::new(config).reading_from(Arc::clone(&reader));
    let ended = reactor::run(
        &mut client,
        move |ReadNext| reader.next_batch(),
        stop,
        events,
    )?;
    let outcome = match ended {
        Ended::Exited => client.outcome().unwrap_or(Outcome::Completed),
        Ended::Stopped => Outcome::Interrupted,
    };
    Ok(client.finish(outcome, Instant::now(), events))
}
