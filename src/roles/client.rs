//! `pirate client`: requests with a timeout per attempt, retries and socket reopen — the Lazy
//! Pirate algorithm — spoken either bare (to `pirate server`, any REP server, or a Pirate
//! queue) or as a Majordomo client (7/MDP 0.1 or 18/MDP 0.2) to a broker.
//!
//! # Which reply answers which request
//! A client must never take a reply for the answer to a request it does not answer (trap 9 in
//! `protocols.md`): a server that sends a stale copy of its previous reply, a proxy that
//! duplicates or delays, a late reply to an earlier attempt. Two mechanisms, chosen per
//! endpoint ([`Correlation`]):
//! - **Request ids** (bare, always; Majordomo when the broker answers `mmi.correlate` with
//!   `200`, i.e. `pirate broker`): each attempt goes out on a DEALER as
//!   `[id]["" ][request…]` ([`crate::proto::correlate`]) with an id never used before; REP
//!   sockets, queues and the pirate broker echo the envelope. A reply whose id is not the one
//!   in flight on that socket is dropped, counted in `mismatched`, reported as a `mismatch`
//!   event and traced under `-v`, and the client keeps waiting for its own.
//! - **A socket per request** (Majordomo to a broker that does not carry request ids): the
//!   standard frames on a fresh REQ (0.1) or DEALER (0.2) for every request and every retry,
//!   so the only reply that can reach a socket is one routed for the one request it carried.
//!
//! Either way every retry closes the socket and opens a fresh one (the Guide's Lazy Pirate),
//! and with `check_echo` (the Guide's `--count` sequence) a reply that is not equal to its
//! request is reported as a mismatch, never accepted, and the request retried.
//!
//! Up to `window` requests are in flight at once, each on a socket of its own. Replies are
//! reported in request order, whatever order they complete in.
//!
//! [`Client`] is the logic as a pure [`Machine`] on the reactor: each attempt's timeout, the
//! settle delay after a failover and the `mmi.correlate` probe's wait are deadlines it keeps;
//! a retry is `Close` of the attempt's socket then `Open` of a fresh one; reading the next
//! request (stdin may block) is a job run on a work thread. [`run`] hands it to the reactor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::feed::Source;
use crate::msg::{Frame, Message};
use crate::proto::correlate::{self, RequestIds};
use crate::proto::mdp::{self, ClientCommand, ClientMsg, Direction, Version};
use crate::proto::mmi;
use crate::reactor::{self, Ended, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::stats::{millis, LatencyRecorder};

/// What goes around a request body on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The body alone (Lazy Pirate server, Simple/Paranoid Pirate queue).
    Bare,
    /// A Majordomo client request for `service`.
    Majordomo { version: Version, service: String },
}

/// What a received message turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A 0.2 PARTIAL: more is coming.
    Partial(Message),
    /// The (final) reply.
    Final(Message),
}

impl Framing {
    /// The socket type for one in-flight slot: REQ where the protocol allows (what the Guide
    /// and 7/MDP recommend), DEALER for 0.2, which has no empty delimiter. A window of N
    /// requests uses N such sockets, so each reply is matched to its request by the socket it
    /// arrives on.
    pub fn socket_type(&self) -> zmq::SocketType {
        match self {
            Framing::Majordomo {
                version: Version::V2,
                ..
            } => zmq::DEALER,
            _ => zmq::REQ,
        }
    }

    /// The frames to send for `body`, for a socket of `socket_type()`.
    pub fn encode(&self, body: Message) -> Message {
        match self {
            Framing::Bare => body,
            Framing::Majordomo { version, service } => {
                let mut msg = mdp::encode_client(ClientMsg {
                    version: *version,
                    command: ClientCommand::Request,
                    service: service.as_bytes().to_vec(),
                    body,
                });
                if *version == Version::V1 {
                    msg.pop_front(); // REQ adds the empty delimiter itself
                }
                msg
            }
        }
    }

    /// The socket type for `correlation`: a DEALER when the client adds request ids itself.
    pub fn socket_type_for(&self, correlation: Correlation) -> zmq::SocketType {
        match correlation {
            Correlation::RequestId => zmq::DEALER,
            Correlation::Socket => self.socket_type(),
        }
    }

    /// The frames to send for `body` with request id `id`, on a DEALER:
    /// `[id]["" ][request…]`, where the request is what a REQ socket would be given (so a 0.1
    /// request loses its leading `""`: the delimiter after the id takes its place).
    pub fn encode_with_id(&self, id: Frame, body: Message) -> Message {
        correlate::wrap(id, self.encode(body))
    }

    /// Reads a message received on a DEALER that sent `[id]["" ][request…]`: returns the id
    /// the reply carries and the reply. An error is a malformed reply.
    pub fn decode_with_id(&self, msg: Message) -> std::result::Result<(Frame, Received), String> {
        let (id, rest) = correlate::unwrap(msg).map_err(|e| e.to_string())?;
        Ok((id, self.decode(rest)?))
    }

    /// Reads a received message; an error is a malformed or misaddressed reply.
    pub fn decode(&self, mut msg: Message) -> std::result::Result<Received, String> {
        match self {
            Framing::Bare => Ok(Received::Final(msg)),
            Framing::Majordomo { version, service } => {
                if *version == Version::V1 {
                    msg.push_front(Vec::new()); // REQ stripped the delimiter
                }
                let reply =
                    mdp::decode_client(msg, Direction::FromBroker).map_err(|e| e.to_string())?;
                if reply.version != *version {
                    return Err("reply in another MDP version".into());
                }
                if reply.service != service.as_bytes() {
                    return Err(format!(
                        "reply for service {:?}, expected {service:?}",
                        String::from_utf8_lossy(&reply.service)
                    ));
                }
                Ok(match reply.command {
                    ClientCommand::Partial => Received::Partial(reply.body),
                    _ => Received::Final(reply.body),
                })
            }
        }
    }
}

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
        }
    }
}

/// One request read from the source: its text (for events and `check_echo`) and its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub text: String,
    pub body: Message,
}

impl Request {
    /// A one-frame request, as the command line sends them: its bytes unchanged.
    pub fn line(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        Request {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            body: Message::from_frames([bytes]),
        }
    }
}

/// The client's one kind of job: read the next request from the source (stdin may block).
#[derive(Debug, PartialEq, Eq)]
pub struct ReadNext;

/// The sockets of an endpoint check, one per endpoint, opened before the start and closed at
/// once: a bad endpoint is reported before the run starts.
const CHECK: Slot = 0;

/// One request and its attempt in flight.
struct InFlight {
    seq: u64,
    request: Request,
    attempt: u32,
    first_sent: Instant,
    /// When the attempt in flight times out; `None` while the attempt waits to be sent (for
    /// the settle delay or a correlation probe).
    deadline: Option<Instant>,
    /// The reply so far (0.2 PARTIALs, then the FINAL).
    reply: Message,
    /// Its socket; `None` while waiting to be sent.
    slot: Option<Slot>,
    /// Which endpoint the socket is connected to.
    at: usize,
    /// How this socket ties replies to the request.
    correlation: Correlation,
    /// The request id of the attempt in flight ([`Correlation::RequestId`] only).
    id: Option<Frame>,
}

/// An `mmi.correlate` question in flight to endpoint `at`.
struct Probe {
    slot: Slot,
    at: usize,
    deadline: Instant,
}

/// The Lazy Pirate client as a pure [`Machine`]: attempts with a deadline each, a fresh
/// socket for every retry (`Close` then `Open` with a fresh identity), failover with a settle
/// delay, and request ids checked on every reply.
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
    /// In request order.
    in_flight: Vec<InFlight>,
    /// Answered DEALERs with request ids, kept for the next request, with their endpoint.
    spare: Vec<(Slot, usize)>,
    /// Socket slots free for reuse (a closed socket's number).
    free: Vec<Slot>,
    next_slot: Slot,
    /// The slot whose message is being handled.
    reading_slot: Option<Slot>,
    probe: Option<Probe>,
    /// No attempt goes out before this (failover: the backup is taking over).
    settle_until: Option<Instant>,
    reading: bool,
    /// A request read while the window was full, sent when there is room.
    ahead: Option<Request>,
    exhausted: bool,
    /// Accepted replies' frames, kept for a library caller ([`Client::keep_replies`]).
    replies: Option<Vec<Message>>,
    outcome: Option<Outcome>,
}

impl Client {
    pub fn new(config: &ClientConfig) -> Self {
        let endpoints = config.endpoints();
        let framing_is_bare = config.framing == Framing::Bare;
        Client {
            report: ClientReport::new(endpoints.join(",")),
            // Bare framing needs no question: REP servers and queues always echo the envelope.
            correlation: vec![framing_is_bare.then_some(Correlation::RequestId); endpoints.len()],
            endpoints,
            current: 0,
            latency: LatencyRecorder::default(),
            started: None,
            held: BTreeMap::new(),
            next_to_emit: 1,
            ids: RequestIds::random(),
            in_flight: Vec::new(),
            spare: Vec::new(),
            free: Vec::new(),
            reading_slot: None,
            next_slot: CHECK + config.endpoints().len(),
            probe: None,
            settle_until: None,
            reading: false,
            ahead: None,
            exhausted: false,
            replies: None,
            outcome: None,
            config: config.clone(),
        }
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
            self.report.elapsed_ms = millis(now.saturating_duration_since(started));
            self.report.latency_ms = self.latency.summary();
        }
        Report::Client(self.report.clone())
    }

    /// A slot for a new socket: a closed one's number, but never the one whose message is
    /// being handled (the reactor may read it again in this batch, before the `Close`).
    fn slot(&mut self) -> Slot {
        match self.free.iter().position(|&s| Some(s) != self.reading_slot) {
            Some(p) => self.free.swap_remove(p),
            None => {
                self.next_slot += 1;
                self.next_slot - 1
            }
        }
    }

    fn release(&mut self, slot: Slot, out: &mut Outbox<ReadNext>) {
        out.close(slot);
        self.free.push(slot);
    }

    fn spec(&self, slot: Slot, kind: zmq::SocketType, at: usize) -> SocketSpec {
        SocketSpec {
            slot,
            kind: if kind == zmq::DEALER {
                SocketKind::Dealer
            } else {
                SocketKind::Req
            },
            name: "client",
            bind: Vec::new(),
            connect: vec![self.endpoints[at].clone()],
            // A fresh random identity for every socket (the Lazy Pirate reopen).
            identity: None,
        }
    }

    /// Moves the run on: sends what waits to be sent, reads the next request when the window
    /// has room, asks a broker how it correlates, ends the run when everything is answered.
    fn pump(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        if self.outcome.is_some() || self.settle_until.is_some_and(|s| now < s) {
            return;
        }
        self.settle_until = None;
        let window = self.config.window.max(1);
        if self.in_flight.len() < window {
            if let Some(request) = self.ahead.take() {
                self.report.requests += 1;
                self.in_flight.push(InFlight {
                    seq: self.report.requests,
                    request,
                    attempt: 0,
                    first_sent: now,
                    deadline: None,
                    reply: Message::new(),
                    slot: None,
                    at: self.current,
                    correlation: Correlation::Socket,
                    id: None,
                });
            }
        }
        let at = self.current;
        let waiting = self.in_flight.iter().any(|f| f.slot.is_none());
        if waiting {
            let Some(correlation) = self.correlation[at] else {
                self.ask(at, now, out);
                return;
            };
            for i in 0..self.in_flight.len() {
                if self.in_flight[i].slot.is_none() {
                    self.send(i, at, correlation, now, out, events);
                }
            }
        }
        // One request is read ahead while the window is full, so that a fast source never
        // waits for a work thread between a reply and the next request.
        if !self.exhausted && !self.reading && self.ahead.is_none() {
            self.reading = true;
            out.start(ReadNext);
        } else if self.exhausted && self.in_flight.is_empty() && self.ahead.is_none() {
            self.finish(Outcome::Completed, now, events);
            out.exit();
        }
    }

    /// Sends in-flight request `i`'s next attempt to endpoint `at`, on a spare socket there
    /// or a fresh one.
    fn send(
        &mut self,
        i: usize,
        at: usize,
        correlation: Correlation,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let retry = self.in_flight[i].attempt > 0;
        let reuse = if retry || correlation != Correlation::RequestId {
            None
        } else {
            self.spare
                .iter()
                .position(|&(_, a)| a == at)
                .map(|p| self.spare.remove(p).0)
        };
        let slot = match reuse {
            Some(slot) => slot,
            None => {
                if retry {
                    events.info("reconnecting to server…");
                    self.report.reconnects += 1;
                }
                let slot = self.slot();
                let kind = self.config.framing.socket_type_for(correlation);
                out.open(self.spec(slot, kind, at));
                slot
            }
        };
        let body = self.in_flight[i].request.body.clone();
        let flight = &mut self.in_flight[i];
        let msg = match correlation {
            Correlation::RequestId => {
                let id = self.ids.next_id();
                flight.id = Some(id.clone());
                self.config.framing.encode_with_id(id, body)
            }
            Correlation::Socket => {
                flight.id = None;
                self.config.framing.encode(body)
            }
        };
        flight.attempt += 1;
        if flight.attempt == 1 {
            flight.first_sent = now;
        }
        flight.slot = Some(slot);
        flight.at = at;
        flight.correlation = correlation;
        flight.deadline = Some(now + self.config.timeout);
        flight.reply = Message::new();
        out.send(slot, msg);
        events.emit(Event::Sent {
            seq: flight.seq,
            request: flight.request.text.clone(),
            attempt: flight.attempt,
        });
        self.report.sent += 1;
    }

    /// Asks the broker at endpoint `at` whether it carries request ids (`mmi.correlate`, see
    /// [`crate::proto::mmi`]), unless a question is already out.
    fn ask(&mut self, at: usize, now: Instant, out: &mut Outbox<ReadNext>) {
        if self.probe.is_some() {
            return;
        }
        let ask = self.probe_framing();
        let slot = self.slot();
        out.open(self.spec(slot, ask.socket_type(), at));
        // One body frame: the Guide's brokers write their 501 over the last body frame and
        // crash on a request without one.
        out.send(slot, ask.encode(Message::from_frames([b"1".to_vec()])));
        self.probe = Some(Probe {
            slot,
            at,
            deadline: now + self.config.timeout,
        });
    }

    fn probe_framing(&self) -> Framing {
        let version = match &self.config.framing {
            Framing::Majordomo { version, .. } => *version,
            Framing::Bare => Version::V1,
        };
        Framing::Majordomo {
            version,
            service: String::from_utf8_lossy(mmi::CORRELATE).into_owned(),
        }
    }

    /// The probe's answer (`None`: no answer in time, or a malformed one): `200` means request
    /// ids, anything else one socket per request (then the run is correct, only slower).
    fn answered(
        &mut self,
        answer: Option<String>,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        self.release(probe.slot, out);
        let correlation = match answer.as_deref() {
            Some("200") => Correlation::RequestId,
            _ => Correlation::Socket,
        };
        self.correlation[probe.at] = Some(correlation);
        if events.tracing() {
            let endpoint = &self.endpoints[probe.at];
            events.info(match (&answer, correlation) {
                (_, Correlation::RequestId) => format!(
                    "{endpoint} carries request ids (mmi.correlate: 200): replies are matched by id"
                ),
                (Some(other), _) => format!(
                    "{endpoint} does not carry request ids (mmi.correlate: {other}): one socket per request"
                ),
                (None, _) => format!(
                    "no answer to mmi.correlate from {endpoint} within {} ms: one socket per request",
                    self.config.timeout.as_millis()
                ),
            });
        }
        self.pump(now, out, events);
    }

    /// A message on the probe's socket.
    fn probe_reply(
        &mut self,
        msg: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        match self.probe_framing().decode(msg) {
            Ok(Received::Partial(_)) => {}
            Ok(Received::Final(body)) => self.answered(Some(body.text()), now, out, events),
            Err(_) => self.answered(None, now, out, events),
        }
    }

    /// A message on in-flight request `i`'s socket.
    fn reply(
        &mut self,
        i: usize,
        msg: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        match self.judge(i, msg, events) {
            Verdict::Partial(part) => {
                let flight = &mut self.in_flight[i];
                part.into_frames()
                    .into_iter()
                    .for_each(|f| flight.reply.push_back(f));
                // A PARTIAL restarts the attempt's timeout.
                flight.deadline = Some(now + self.config.timeout);
            }
            Verdict::Answer(reply) => self.accept(i, reply, now, out, events),
            Verdict::Stale => {}
            Verdict::Failed(reason) => self.failed(i, reason, now, out, events),
        }
    }

    /// Reads one message received on request `i`'s socket.
    fn judge(&mut self, i: usize, msg: Message, events: &mut Events) -> Verdict {
        let framing = &self.config.framing;
        let flight = &self.in_flight[i];
        let decoded = match flight.correlation {
            Correlation::RequestId => match framing.decode_with_id(msg) {
                Ok((id, received)) if Some(&id) == flight.id.as_ref() => Ok(received),
                Ok((id, received)) => {
                    let body = match received {
                        Received::Partial(b) | Received::Final(b) => b.text(),
                    };
                    let why = format!(
                        "request id {} is not {}, the one in flight",
                        String::from_utf8_lossy(&id),
                        String::from_utf8_lossy(flight.id.as_deref().unwrap_or_default())
                    );
                    self.refuse(i, body, &why, events);
                    return Verdict::Stale;
                }
                Err(e) => Err(e),
            },
            Correlation::Socket => framing.decode(msg),
        };
        match decoded {
            Ok(Received::Partial(body)) => Verdict::Partial(body),
            Ok(Received::Final(body)) => {
                let mut reply = std::mem::take(&mut self.in_flight[i].reply);
                body.into_frames()
                    .into_iter()
                    .for_each(|f| reply.push_back(f));
                let flight = &self.in_flight[i];
                if !self.config.check_echo || reply.text() == flight.request.text {
                    return Verdict::Answer(reply);
                }
                let text = reply.text();
                self.report.mismatched += 1;
                events.emit(Event::Mismatch {
                    seq: flight.seq,
                    expected: flight.request.text.clone(),
                    got: text.clone(),
                });
                events.error(format!("malformed reply from server: {text}"));
                Verdict::Failed("mismatched reply")
            }
            Err(reason) => {
                self.report.mismatched += 1;
                events.error(format!("malformed reply from server: {reason}"));
                Verdict::Failed("malformed reply")
            }
        }
    }

    /// A reply that is not the answer to the request in flight: counted, reported as a
    /// `mismatch` event, and (`-v`) traced with why.
    fn refuse(&mut self, i: usize, got: String, why: &str, events: &mut Events) {
        self.report.mismatched += 1;
        if events.tracing() {
            events.warn(format!("dropped a reply ({why}): {}", preview(&got)));
        }
        let flight = &self.in_flight[i];
        events.emit(Event::Mismatch {
            seq: flight.seq,
            expected: flight.request.text.clone(),
            got,
        });
    }

    /// Records an accepted reply; its socket carries the next request (request ids) or closes.
    fn accept(
        &mut self,
        i: usize,
        reply: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let flight = self.in_flight.remove(i);
        let latency = now.saturating_duration_since(flight.first_sent);
        self.latency.record(latency);
        self.report.replied += 1;
        let text = reply.text();
        if self.config.check_echo {
            events.info(format!("server replied OK ({text})"));
        }
        let body = reply.joined().into();
        if let Some(kept) = &mut self.replies {
            kept.push(reply);
        }
        let slot = flight.slot.expect("answered on its socket");
        if flight.correlation == Correlation::RequestId {
            self.spare.push((slot, flight.at));
        } else {
            self.release(slot, out);
        }
        self.held.insert(
            flight.seq,
            Event::Reply {
                seq: flight.seq,
                request: flight.request.text,
                reply: body,
                attempts: flight.attempt,
                latency_ms: millis(latency),
            },
        );
        while let Some(event) = self.held.remove(&self.next_to_emit) {
            events.emit(event);
            self.next_to_emit += 1;
        }
        self.pump(now, out, events);
    }

    /// Attempt `i` failed (`reason`): retry on a fresh socket, failing over first if its
    /// endpoint is the current one; after the last attempt, abandon everything.
    fn failed(
        &mut self,
        i: usize,
        reason: &str,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if self.in_flight[i].attempt >= self.config.retries.max(1) {
            self.abandon(now, out, events);
            return;
        }
        let flight = &mut self.in_flight[i];
        events.warn("no response from server, retrying…");
        events.emit(Event::Retry {
            seq: flight.seq,
            attempt: flight.attempt,
            reason: reason.into(),
        });
        self.report.retries += 1;
        // The old socket may still hold the unanswered request: close it (LINGER 0 drops it)
        // and open a fresh one, so nothing late from it can ever be read.
        let slot = flight.slot.take().expect("a failed attempt was sent");
        flight.deadline = None;
        let at = flight.at;
        self.release(slot, out);
        let count = self.endpoints.len();
        if count > 1 && at == self.current {
            // Binary Star: the server we were talking to seems gone; try the next one, after
            // giving it time to take over.
            self.current = (self.current + 1) % count;
            events.warn(format!("failing over to {}", self.endpoints[self.current]));
            // Spare sockets point at the server that seems gone.
            for (slot, _) in std::mem::take(&mut self.spare) {
                self.release(slot, out);
            }
            self.settle_until = Some(now + self.config.settle);
        }
        self.pump(now, out, events);
    }

    /// The server seems gone: give up on everything in flight, and say so for each request,
    /// so that none of them is silently lost.
    fn abandon(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        events.error("server seems to be offline, abandoning");
        for flight in std::mem::take(&mut self.in_flight) {
            self.report.abandoned += 1;
            events.emit(Event::Abandoned {
                seq: flight.seq,
                request: flight.request.text,
                attempts: flight.attempt,
            });
        }
        self.finish(Outcome::Abandoned, now, events);
        out.exit();
    }

    fn settling(&self, now: Instant) -> bool {
        self.settle_until.is_some_and(|s| now < s)
    }
}

/// A reply cut short for a log line.
fn preview(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// What one received message means for the request it arrived for.
enum Verdict {
    /// The answer (the FINAL, or the one reply), every frame of it.
    Answer(Message),
    /// A 0.2 PARTIAL of the answer.
    Partial(Message),
    /// Not an answer to this request: dropped, keep waiting.
    Stale,
    /// Wrong or malformed: the attempt failed.
    Failed(&'static str),
}

impl Machine for Client {
    type Job = ReadNext;
    /// The next request, or `None` at the end of the source.
    type Done = Option<Request>;

    fn sockets(&self) -> Vec<SocketSpec> {
        // Every endpoint is checked now, so a bad one is reported before the run starts.
        (0..self.endpoints.len())
            .map(|at| self.spec(CHECK + at, zmq::REQ, at))
            .collect()
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        for at in 0..self.endpoints.len() {
            self.release(CHECK + at, out);
        }
        self.started = Some(now);
        events.emit(Event::Started {
            role: "client".into(),
            endpoint: self.endpoints.join(","),
            seed: None,
        });
        self.pump(now, out, events);
    }

    fn handle(
        &mut self,
        input: Input<Option<Request>>,
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
                match next {
                    Some(request) => self.ahead = Some(request),
                    None => self.exhausted = true,
                }
                self.pump(now, out, events);
            }
            Input::Message { slot, msg } => {
                self.reading_slot = Some(slot);
                if self.probe.as_ref().is_some_and(|p| p.slot == slot) {
                    self.probe_reply(msg, now, out, events);
                } else if let Some(i) = self.in_flight.iter().position(|f| f.slot == Some(slot)) {
                    self.reply(i, msg, now, out, events);
                } else {
                    // A spare socket's late message is read when the socket is reused; any
                    // other slot is closed: nothing to do.
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
            let Some(i) = self
                .in_flight
                .iter()
                .position(|f| f.deadline.is_some_and(|d| now >= d))
            else {
                break;
            };
            self.failed(i, "timeout", now, out, events);
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
            .iter()
            .filter_map(|f| f.deadline)
            .chain(self.probe.as_ref().map(|p| p.deadline))
            .min()
    }

    fn wants(&self, slot: Slot) -> bool {
        // While settling nothing is read (the Guide sleeps); a spare socket is read when it
        // carries a request again.
        self.outcome.is_none()
            && self.settle_until.is_none()
            && (self.probe.as_ref().is_some_and(|p| p.slot == slot)
                || self
                    .in_flight
                    .iter()
                    .any(|f| f.slot == Some(slot) && f.deadline.is_some()))
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
    let mut client = Client::new(config);
    let source = Source::new(requests.map(Into::into));
    let ended = reactor::run(
        &mut client,
        move |ReadNext| source.next().map(Request::line),
        stop,
        events,
    )?;
    let outcome = match ended {
        Ended::Exited => client.outcome().unwrap_or(Outcome::Completed),
        Ended::Stopped => Outcome::Interrupted,
    };
    Ok(client.finish(outcome, Instant::now(), events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    fn mdp(version: Version) -> Framing {
        Framing::Majordomo {
            version,
            service: "echo".into(),
        }
    }

    #[test]
    fn bare_framing_sends_the_body_alone() {
        assert_eq!(Framing::Bare.encode(m(&[b"hi"])), m(&[b"hi"]));
        assert_eq!(Framing::Bare.socket_type(), zmq::REQ);
    }

    #[test]
    fn mdp01_over_req_leaves_the_delimiter_to_the_socket() {
        let f = mdp(Version::V1);
        assert_eq!(f.socket_type(), zmq::REQ);
        assert_eq!(f.encode(m(&[b"hi"])), m(&[b"MDPC01", b"echo", b"hi"]));
        assert_eq!(
            f.decode(m(&[b"MDPC01", b"echo", b"hi"])),
            Ok(Received::Final(m(&[b"hi"])))
        );
    }

    #[test]
    fn mdp02_uses_dealer_and_streams_partials() {
        let f = mdp(Version::V2);
        assert_eq!(f.socket_type(), zmq::DEALER);
        assert_eq!(f.encode(m(&[b"hi"])), m(&[b"MDPC02", &[1], b"echo", b"hi"]));
        assert_eq!(
            f.decode(m(&[b"MDPC02", &[2], b"echo", b"a"])),
            Ok(Received::Partial(m(&[b"a"])))
        );
        assert_eq!(
            f.decode(m(&[b"MDPC02", &[3], b"echo", b"b"])),
            Ok(Received::Final(m(&[b"b"])))
        );
    }

    #[test]
    fn request_ids_go_in_front_of_the_frames_a_req_socket_would_send() {
        let id = b"00000000000000ff".to_vec();
        assert_eq!(
            Framing::Bare.socket_type_for(Correlation::RequestId),
            zmq::DEALER
        );
        assert_eq!(Framing::Bare.socket_type_for(Correlation::Socket), zmq::REQ);
        assert_eq!(
            Framing::Bare.encode_with_id(id.clone(), m(&[b"hi"])),
            m(&[&id, b"", b"hi"])
        );
        // 0.1: the delimiter after the id stands where REQ would put its own.
        assert_eq!(
            mdp(Version::V1).encode_with_id(id.clone(), m(&[b"hi"])),
            m(&[&id, b"", b"MDPC01", b"echo", b"hi"])
        );
        assert_eq!(
            mdp(Version::V2).encode_with_id(id.clone(), m(&[b"hi"])),
            m(&[&id, b"", b"MDPC02", &[1], b"echo", b"hi"])
        );
    }

    #[test]
    fn replies_with_ids_decode_to_the_id_and_the_reply() {
        let id = b"0123456789abcdef".to_vec();
        assert_eq!(
            Framing::Bare.decode_with_id(m(&[&id, b"", b"a", b"b"])),
            Ok((id.clone(), Received::Final(m(&[b"a", b"b"]))))
        );
        assert_eq!(
            mdp(Version::V1).decode_with_id(m(&[&id, b"", b"MDPC01", b"echo", b"X"])),
            Ok((id.clone(), Received::Final(m(&[b"X"]))))
        );
        assert_eq!(
            mdp(Version::V2).decode_with_id(m(&[&id, b"", b"MDPC02", &[2], b"echo", b"p"])),
            Ok((id.clone(), Received::Partial(m(&[b"p"]))))
        );
        // A reply that lost its envelope, or a REP-less peer's bare reply, is malformed.
        assert!(Framing::Bare.decode_with_id(m(&[b"hello"])).is_err());
        assert!(mdp(Version::V1)
            .decode_with_id(m(&[b"", b"MDPC01", b"echo", b"X"]))
            .is_err());
    }

    #[test]
    fn replies_for_another_service_or_version_are_refused() {
        let f = mdp(Version::V1);
        assert!(f.decode(m(&[b"MDPC01", b"other", b"hi"])).is_err());
        assert!(f.decode(m(&[b"MDPC02", &[3], b"echo", b"hi"])).is_err());
        assert!(f.decode(m(&[b"junk"])).is_err());
    }

    // ---- the machine, with a fake clock ----

    use crate::reactor::Output;

    const MS: Duration = Duration::from_millis(1);

    fn config(endpoints: &[&str]) -> ClientConfig {
        ClientConfig {
            endpoint: endpoints[0].into(),
            failover: endpoints[1..].iter().map(|e| e.to_string()).collect(),
            timeout: 100 * MS,
            retries: 3,
            settle: 500 * MS,
            ..ClientConfig::default()
        }
    }

    /// The machine, its outbox and everything it emitted.
    struct Rig {
        c: Client,
        out: Outbox<ReadNext>,
        seen: Vec<Event>,
        t0: Instant,
    }

    impl Rig {
        fn new(config: ClientConfig) -> Self {
            let mut rig = Rig {
                c: Client::new(&config),
                out: Outbox::default(),
                seen: Vec::new(),
                t0: Instant::now(),
            };
            let t0 = rig.t0;
            rig.with_events(|c, out, ev| c.start(t0, out, ev));
            rig
        }

        fn with_events(&mut self, f: impl FnOnce(&mut Client, &mut Outbox<ReadNext>, &mut Events)) {
            let seen = &mut self.seen;
            let mut ev = Events::new(false, |e| seen.push(e));
            f(&mut self.c, &mut self.out, &mut ev);
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn read(&mut self, ms: u64, request: Option<&str>) -> Vec<Output<ReadNext>> {
            let now = self.at(ms);
            let done = request.map(Request::line);
            self.with_events(|c, out, ev| c.handle(Input::Done(done), now, out, ev));
            self.out.take()
        }

        fn recv(&mut self, ms: u64, slot: Slot, msg: Message) -> Vec<Output<ReadNext>> {
            let now = self.at(ms);
            self.with_events(|c, out, ev| c.handle(Input::Message { slot, msg }, now, out, ev));
            self.out.take()
        }

        fn tick(&mut self, ms: u64) -> Vec<Output<ReadNext>> {
            let now = self.at(ms);
            self.with_events(|c, out, ev| c.tick(now, out, ev));
            self.out.take()
        }
    }

    /// The one message sent in `outputs`, with its slot.
    fn sent(outputs: &[Output<ReadNext>]) -> (Slot, Message) {
        let sends: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { slot, msg } => Some((*slot, msg.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 1, "{outputs:?}");
        sends.into_iter().next().unwrap()
    }

    /// The sockets opened in `outputs`.
    fn opened(outputs: &[Output<ReadNext>]) -> Vec<SocketSpec> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Open(spec) => Some(spec.clone()),
                _ => None,
            })
            .collect()
    }

    fn closed(outputs: &[Output<ReadNext>]) -> Vec<Slot> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Close(slot) => Some(*slot),
                _ => None,
            })
            .collect()
    }

    /// A REP peer's echo of a request sent with an id: the same frames back.
    fn id_of(msg: &Message) -> Frame {
        msg.iter().next().unwrap().to_vec()
    }

    #[test]
    fn start_checks_every_endpoint_then_closes_the_checks_and_reads_the_first_request() {
        let rig = Rig::new(config(&["tcp://a:1", "tcp://b:2"]));
        let specs = rig.c.sockets();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].connect, ["tcp://b:2"]);
        let mut rig = rig;
        let outputs = rig.out.take();
        assert_eq!(
            outputs,
            [
                Output::Close(specs[0].slot),
                Output::Close(specs[1].slot),
                Output::Start(ReadNext)
            ]
        );
        assert!(
            matches!(&rig.seen[..], [Event::Started { endpoint, .. }] if endpoint == "tcp://a:1,tcp://b:2")
        );
    }

    #[test]
    fn an_attempt_that_times_out_is_retried_on_a_fresh_socket_then_abandoned() {
        let mut rig = Rig::new(config(&["tcp://a:1"]));
        rig.out.take();
        let first = rig.read(0, Some("1"));
        let spec = &opened(&first)[0];
        assert_eq!(
            (spec.kind, spec.identity.clone()),
            (SocketKind::Dealer, None)
        );
        assert_eq!(spec.connect, ["tcp://a:1"]);
        let (slot, msg) = sent(&first);
        assert_eq!(slot, spec.slot);
        let id1 = id_of(&msg);
        assert_eq!(msg, m(&[&id1, b"", b"1"]));
        assert!(
            first.contains(&Output::Start(ReadNext)),
            "one request is read ahead"
        );
        assert_eq!(rig.c.next_deadline(), Some(rig.at(100)));
        assert!(rig.c.wants(slot));
        assert!(
            rig.read(50, Some("2")).is_empty(),
            "the window is full: held, and no further read"
        );

        assert!(rig.tick(99).is_empty(), "not yet");
        let second = rig.tick(100);
        // Close the old socket first, then a fresh one (identity None) carries a new id.
        assert_eq!(second[0], Output::Close(slot));
        assert_eq!(opened(&second)[0].identity, None);
        let (slot2, msg2) = sent(&second);
        // Its number may be reused: the reactor closes before it opens, in order.
        assert_eq!(slot2, opened(&second)[0].slot);
        assert_ne!(
            id_of(&msg2),
            id1,
            "every attempt has an id never used before"
        );
        assert_eq!(rig.c.next_deadline(), Some(rig.at(200)));

        let third = rig.tick(200);
        assert_eq!(closed(&third), [slot2]);
        sent(&third);
        let last = rig.tick(300);
        assert_eq!(last, [Output::Exit]);
        assert_eq!(rig.c.outcome(), Some(Outcome::Abandoned));
        let r = rig.c.report();
        assert_eq!(
            (
                r.requests,
                r.sent,
                r.retries,
                r.reconnects,
                r.abandoned,
                r.replied
            ),
            (1, 3, 2, 2, 1, 0)
        );
        let retries: Vec<_> = rig
            .seen
            .iter()
            .filter_map(|e| match e {
                Event::Retry {
                    attempt, reason, ..
                } => Some((*attempt, reason.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(retries, [(1, "timeout"), (2, "timeout")]);
        assert!(matches!(
            rig.seen.last(),
            Some(Event::Abandoned {
                seq: 1,
                attempts: 3,
                ..
            })
        ));
        assert_eq!(rig.c.next_deadline(), None);
        assert!(!rig.c.wants(slot2));
    }

    #[test]
    fn a_reply_with_another_id_is_dropped_and_counted_and_the_right_one_accepted() {
        let mut rig = Rig::new(config(&["tcp://a:1"]));
        rig.out.take();
        let (slot, msg) = sent(&rig.read(0, Some("1")));
        let id = id_of(&msg);
        let stale = rig.recv(10, slot, m(&[b"0000000000000001", b"", b"old"]));
        assert!(stale.is_empty(), "{stale:?}");
        assert_eq!(rig.c.report().mismatched, 1);
        assert!(matches!(rig.seen.last(), Some(Event::Mismatch { got, .. }) if got == "old"));
        assert_eq!(
            rig.c.next_deadline(),
            Some(rig.at(100)),
            "still waiting for its own"
        );
        let ok = rig.recv(20, slot, m(&[&id, b"", b"1"]));
        assert!(
            ok.is_empty(),
            "the socket is kept, a read is already out: {ok:?}"
        );
        assert!(matches!(
            rig.seen.last(),
            Some(Event::Reply { seq: 1, attempts: 1, reply, .. }) if reply == "1"
        ));
        // The next request reuses the answered DEALER, with a new id.
        let next = rig.read(30, Some("2"));
        assert!(opened(&next).is_empty());
        assert!(next.contains(&Output::Start(ReadNext)));
        let (again, msg2) = sent(&next);
        assert_eq!(again, slot);
        assert_ne!(id_of(&msg2), id);
        assert_eq!(rig.read(40, None), [], "one still in flight");
        rig.recv(50, slot, m(&[&id_of(&msg2), b"", b"2"]));
        assert_eq!(rig.c.outcome(), Some(Outcome::Completed));
        let r = rig.c.report();
        assert_eq!((r.requests, r.replied, r.mismatched, r.sent), (2, 2, 1, 2));
    }

    #[test]
    fn a_reply_without_an_envelope_fails_the_attempt() {
        let mut rig = Rig::new(config(&["tcp://a:1"]));
        rig.out.take();
        let (slot, _) = sent(&rig.read(0, Some("1")));
        let outputs = rig.recv(10, slot, m(&[b"1"]));
        assert_eq!(closed(&outputs), [slot]);
        // The reactor may still read the old socket in this batch: its number is not reused.
        let (fresh, _) = sent(&outputs);
        assert_ne!(fresh, slot);
        assert!(!rig.c.wants(slot));
        assert_eq!(rig.c.report().mismatched, 1);
        assert!(rig
            .seen
            .iter()
            .any(|e| matches!(e, Event::Retry { reason, .. } if reason == "malformed reply")));
    }

    #[test]
    fn with_check_echo_a_reply_that_is_not_the_request_is_retried() {
        let mut rig = Rig::new(ClientConfig {
            check_echo: true,
            ..config(&["tcp://a:1"])
        });
        rig.out.take();
        let (slot, msg) = sent(&rig.read(0, Some("1")));
        let outputs = rig.recv(10, slot, m(&[&id_of(&msg), b"", b"2"]));
        assert_eq!(closed(&outputs), [slot]);
        assert!(rig.seen.iter().any(
            |e| matches!(e, Event::Mismatch { expected, got, .. } if expected == "1" && got == "2")
        ));
        assert!(rig
            .seen
            .iter()
            .any(|e| matches!(e, Event::Retry { reason, .. } if reason == "mismatched reply")));
    }

    #[test]
    fn replies_are_reported_in_request_order_whatever_order_they_come_in() {
        let mut rig = Rig::new(ClientConfig {
            window: 2,
            ..config(&["tcp://a:1"])
        });
        rig.out.take();
        let one = rig.read(0, Some("1"));
        assert!(one.contains(&Output::Start(ReadNext)), "room for a second");
        let (s1, m1) = sent(&one);
        let two = rig.read(1, Some("2"));
        assert!(
            two.contains(&Output::Start(ReadNext)),
            "the window is full, one more is read ahead"
        );
        let (s2, m2) = sent(&two);
        assert_ne!(s1, s2);
        rig.recv(5, s2, m(&[&id_of(&m2), b"", b"2"]));
        assert!(
            !rig.seen.iter().any(|e| matches!(e, Event::Reply { .. })),
            "held back"
        );
        rig.recv(6, s1, m(&[&id_of(&m1), b"", b"1"]));
        let order: Vec<u64> = rig
            .seen
            .iter()
            .filter_map(|e| match e {
                Event::Reply { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(order, [1, 2]);
        // A reply on the wrong socket carries the other request's id: refused.
        let (s3, _) = sent(&rig.read(7, Some("3")));
        rig.recv(8, s3, m(&[&id_of(&m1), b"", b"1"]));
        assert_eq!(rig.c.report().mismatched, 1);
    }

    #[test]
    fn failover_waits_the_settle_delay_then_goes_round_the_endpoints_in_order() {
        let mut rig = Rig::new(config(&["tcp://a:1", "tcp://b:2"]));
        rig.out.take();
        let (s1, _) = sent(&rig.read(0, Some("1")));
        let failed = rig.tick(100);
        assert_eq!(
            failed,
            [Output::Close(s1)],
            "nothing goes out while the backup settles"
        );
        assert_eq!(rig.c.next_deadline(), Some(rig.at(600)));
        assert!(!rig.c.wants(s1));
        assert!(rig.tick(599).is_empty());
        let resent = rig.tick(600);
        assert_eq!(opened(&resent)[0].connect, ["tcp://b:2"]);
        let (s2, _) = sent(&resent);
        assert!(rig.c.wants(s2));
        let back = rig.tick(700);
        assert_eq!(back, [Output::Close(s2)]);
        let third = rig.tick(1200);
        assert_eq!(opened(&third)[0].connect, ["tcp://a:1"], "round and round");
        assert_eq!(rig.c.report().reconnects, 2);
        assert!(rig
            .seen
            .iter()
            .any(|e| matches!(e, Event::Sent { attempt: 3, .. })));
    }

    #[test]
    fn a_request_read_after_a_failover_goes_to_the_new_endpoint() {
        let mut rig = Rig::new(ClientConfig {
            window: 2,
            ..config(&["tcp://a:1", "tcp://b:2"])
        });
        rig.out.take();
        sent(&rig.read(0, Some("1")));
        rig.tick(100);
        assert!(
            rig.read(150, Some("2")).is_empty(),
            "held during the settle delay"
        );
        let both = rig.tick(600);
        let specs = opened(&both);
        assert_eq!(specs.len(), 2);
        assert!(specs.iter().all(|s| s.connect == ["tcp://b:2"]));
    }

    fn mdp_config(version: Version) -> ClientConfig {
        ClientConfig {
            framing: mdp(version),
            ..config(&["tcp://a:1"])
        }
    }

    #[test]
    fn a_broker_that_answers_200_to_the_probe_gets_request_ids() {
        let mut rig = Rig::new(mdp_config(Version::V1));
        rig.out.take();
        let asked = rig.read(0, Some("hi"));
        let probe = &opened(&asked)[0];
        assert_eq!(probe.kind, SocketKind::Req);
        let (ps, question) = sent(&asked);
        assert_eq!(question, m(&[b"MDPC01", b"mmi.correlate", b"1"]));
        assert!(rig.c.wants(ps));
        let answered = rig.recv(5, ps, m(&[b"MDPC01", b"mmi.correlate", b"200"]));
        assert_eq!(closed(&answered), [ps]);
        assert_eq!(opened(&answered)[0].kind, SocketKind::Dealer);
        let (_, request) = sent(&answered);
        let id = id_of(&request);
        assert_eq!(request, m(&[&id, b"", b"MDPC01", b"echo", b"hi"]));
        // Known now: no second question.
        assert_eq!(rig.c.correlation[0], Some(Correlation::RequestId));
    }

    #[test]
    fn a_broker_that_refuses_or_ignores_the_probe_gets_a_socket_per_request() {
        // 501: the Guide's broker.
        let mut rig = Rig::new(mdp_config(Version::V1));
        rig.out.take();
        let (ps, _) = sent(&rig.read(0, Some("hi")));
        let answered = rig.recv(5, ps, m(&[b"MDPC01", b"mmi.correlate", b"501"]));
        assert_eq!(opened(&answered)[0].kind, SocketKind::Req);
        let (s, request) = sent(&answered);
        assert_eq!(request, m(&[b"MDPC01", b"echo", b"hi"]));
        // The answer closes the REQ socket: one socket per request.
        let done = rig.recv(6, s, m(&[b"MDPC01", b"echo", b"hi"]));
        assert_eq!(done, [Output::Close(s)]);

        // Silence: the probe's own deadline.
        let mut rig = Rig::new(mdp_config(Version::V2));
        rig.out.take();
        let (ps, question) = sent(&rig.read(0, Some("hi")));
        assert_eq!(question, m(&[b"MDPC02", &[1], b"mmi.correlate", b"1"]));
        assert_eq!(rig.c.next_deadline(), Some(rig.at(100)));
        let timed_out = rig.tick(100);
        assert_eq!(closed(&timed_out), [ps]);
        assert_eq!(opened(&timed_out)[0].kind, SocketKind::Dealer);
        assert_eq!(sent(&timed_out).1, m(&[b"MDPC02", &[1], b"echo", b"hi"]));
        assert_eq!(rig.c.correlation[0], Some(Correlation::Socket));
        assert_eq!(rig.c.report().retries, 0, "a probe is not an attempt");
    }

    #[test]
    fn a_partial_restarts_the_timeout_and_the_final_completes_the_reply() {
        let mut rig = Rig::new(mdp_config(Version::V2));
        rig.c = Client::new(&mdp_config(Version::V2))
            .with_correlation(Correlation::Socket)
            .keep_replies();
        let t0 = rig.t0;
        rig.with_events(|c, out, ev| c.start(t0, out, ev));
        rig.out.take();
        let (s, _) = sent(&rig.read(0, Some("hi")));
        assert!(rig
            .recv(90, s, m(&[b"MDPC02", &[2], b"echo", b"a"]))
            .is_empty());
        assert_eq!(rig.c.next_deadline(), Some(rig.at(190)));
        assert!(rig.tick(150).is_empty(), "the PARTIAL restarted it");
        rig.recv(160, s, m(&[b"MDPC02", &[3], b"echo", b"b"]));
        assert_eq!(rig.c.take_replies(), [m(&[b"a", b"b"])]);
        assert!(matches!(
            rig.seen.last(),
            Some(Event::Reply { reply, .. }) if reply == "a\nb"
        ));
    }

    #[test]
    fn the_end_of_the_source_ends_the_run_once_everything_is_answered() {
        let mut rig = Rig::new(config(&["tcp://a:1"]));
        rig.out.take();
        assert_eq!(rig.read(0, None), [Output::Exit]);
        assert_eq!(rig.c.outcome(), Some(Outcome::Completed));
        match rig
            .c
            .finish(Outcome::Interrupted, rig.at(5), &mut Events::discard())
        {
            Report::Client(r) => assert_eq!(r.outcome, Outcome::Completed, "ended once"),
            other => panic!("{other:?}"),
        }
    }
}
