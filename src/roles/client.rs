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
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
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
    /// The socket type for a request on a socket of its own ([`Correlation::Socket`]): REQ
    /// where the protocol allows (what the Guide and 7/MDP recommend), DEALER for 0.2, which
    /// has no empty delimiter. A window of N requests uses N such sockets, so each reply is
    /// matched to its request by the socket it arrives on.
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

/// The client's one kind of job: read the next requests from the source (stdin may block).
/// It hands back every request it has ready, in order, at least one; none at the end of the
/// source ([`Client`]'s `Done`).
#[derive(Debug, PartialEq, Eq)]
pub struct ReadNext;

/// Reads requests on a thread of its own into a queue of at most `max`, so that one
/// [`ReadNext`] job hands the client every request already read (up to `max`, a window's
/// worth): one job, and one wake-up of the loop, per burst of requests rather than per
/// request. A job waits only for the first request, never for more, so a slow stdin is sent
/// line by line as it comes.
pub struct ReadAhead {
    queue: Mutex<mpsc::Receiver<Request>>,
    max: usize,
}

impl ReadAhead {
    /// Starts reading `next` until it returns `None` (or the reader is dropped).
    pub fn new(mut next: impl FnMut() -> Option<Request> + Send + 'static, max: usize) -> Self {
        let max = max.max(1);
        let (tx, queue) = mpsc::sync_channel(max);
        thread::spawn(move || {
            while let Some(request) = next() {
                if tx.send(request).is_err() {
                    break; // the run is over
                }
            }
        });
        ReadAhead {
            queue: Mutex::new(queue),
            max,
        }
    }

    /// The requests ready now, up to `max`, without waiting: `None` if none is ready yet,
    /// empty at the end of the source. `None` too while a [`ReadAhead::next_batch`] waits
    /// (it holds the queue): that job brings the next requests.
    pub fn try_batch(&self) -> Option<Vec<Request>> {
        let queue = self.queue.try_lock().ok()?;
        match queue.try_recv() {
            Ok(first) => Some(self.batch_from(first, &queue)),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Vec::new()),
        }
    }

    /// The next requests: waits for one, then takes what is ready, up to `max`. Empty at
    /// the end of the source.
    pub fn next_batch(&self) -> Vec<Request> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.recv() {
            Ok(first) => self.batch_from(first, &queue),
            Err(_) => Vec::new(),
        }
    }

    /// `first`, then what else is ready, up to `max`.
    fn batch_from(&self, first: Request, queue: &mpsc::Receiver<Request>) -> Vec<Request> {
        let mut batch = vec![first];
        while batch.len() < self.max {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        batch
    }
}

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

/// What a probe asks a Majordomo broker (8/MMI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Question {
    /// `mmi.correlate`: does it carry request ids (see [`crate::proto::mmi`])?
    Correlate,
    /// `mmi.service NAME`: has it a worker for our service? Asked when a request times out,
    /// so that a run that gives up can say what is true.
    Service,
}

/// A question in flight to endpoint `at`.
struct Probe {
    slot: Slot,
    at: usize,
    deadline: Instant,
    question: Question,
    /// The question as sent: an answer equal to it is an echo (see [`Client::probe_reply`]).
    sent: Message,
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

    /// Opens a fresh socket in `slot` to endpoint `at`, traced under `-v` with what it is for
    /// (so a run shows how many connections its window used).
    fn open(
        &self,
        slot: Slot,
        kind: zmq::SocketType,
        at: usize,
        purpose: &str,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let spec = self.spec(slot, kind, at);
        if events.tracing() {
            let kind = if spec.kind == SocketKind::Dealer {
                "DEALER"
            } else {
                "REQ"
            };
            events.info(format!(
                "connecting to {} (socket {slot}: a {kind} {purpose})",
                self.endpoints[at]
            ));
        }
        out.open(spec);
    }

    /// Moves the run on: sends what waits to be sent, reads the next request when the window
    /// has room, asks a broker how it correlates, ends the run when everything is answered.
    fn pump(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        if self.outcome.is_some() || self.settling(now) {
            return;
        }
        self.settle_until = None;
        // Requests the reader has ready are taken here and now: a work thread (and the
        // wake-up of this loop when it is done) only for a source that has nothing ready.
        loop {
            let room = self.fill_window(now);
            if self.exhausted || self.reading || !self.ahead.is_empty() {
                break;
            }
            match self.source.as_ref().and_then(|source| source.try_batch()) {
                Some(batch) => {
                    self.exhausted = batch.is_empty();
                    self.ahead.extend(batch);
                }
                None => break,
            }
            if !room {
                break; // read ahead, as below, and sent when room frees up
            }
        }
        if !self.waiting.is_empty() {
            let at = self.current;
            let Some(correlation) = self.correlation[at] else {
                self.ask(at, Question::Correlate, now, out, events);
                return;
            };
            for seq in std::mem::take(&mut self.waiting) {
                self.send(seq, at, correlation, now, out, events);
            }
        }
        // One request is read ahead while the window is full, so that a fast source never
        // waits for a work thread between a reply and the next request.
        if !self.exhausted && !self.reading && self.ahead.is_empty() {
            self.reading = true;
            out.start(ReadNext);
        } else if self.exhausted && self.in_flight.is_empty() && self.ahead.is_empty() {
            self.finish(Outcome::Completed, now, events);
            out.exit();
        }
    }

    /// Moves requests read ahead into the window while it has room; true if it still has.
    fn fill_window(&mut self, now: Instant) -> bool {
        let window = self.config.window.max(1);
        let room = |c: &Client| c.in_flight.len() < window && c.held.len() < window * HELD_WINDOWS;
        while room(self) {
            let Some(request) = self.ahead.pop_front() else {
                break;
            };
            self.report.requests += 1;
            let seq = self.report.requests;
            let flight = InFlight {
                seq,
                request,
                attempt: 0,
                first_sent: now,
                sent_at: now,
                deadline: None,
                reply: Message::new(),
                at: self.current,
                via: Via::Waiting,
            };
            self.in_flight.insert(seq, flight);
            self.waiting.insert(seq);
        }
        room(self)
    }

    /// The shared socket to endpoint `at` that takes new attempts, opened if there is none
    /// (`retry`: for a resend, which makes it a reconnect): its index in `conns`.
    fn conn(
        &mut self,
        at: usize,
        retry: bool,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) -> usize {
        if let Some(c) = self.conns.iter().position(|c| c.at == at && c.takes_new) {
            return c;
        }
        if retry {
            events.info("reconnecting to server…");
            self.report.reconnects += 1;
        }
        let slot = self.slot();
        self.open(
            slot,
            zmq::DEALER,
            at,
            "shared by every request in flight",
            out,
            events,
        );
        self.conns.push(Conn {
            slot,
            at,
            load: 0,
            heard: None,
            takes_new: true,
        });
        self.conns.len() - 1
    }

    /// Sends request `seq`'s next attempt to endpoint `at`: on the endpoint's shared socket
    /// with a fresh request id, or on a fresh socket of its own.
    fn send(
        &mut self,
        seq: u64,
        at: usize,
        correlation: Correlation,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let Some(flight) = self.in_flight.get(&seq) else {
            return;
        };
        let retry = flight.attempt > 0;
        let body = flight.request.body.clone();
        let (slot, via, msg) = match correlation {
            Correlation::RequestId => {
                let c = self.conn(at, retry, out, events);
                self.conns[c].load += 1;
                let slot = self.conns[c].slot;
                let id = self.ids.next_id();
                self.by_id.insert(id.clone(), seq);
                let msg = self.config.framing.encode_with_id(id.clone(), body);
                (slot, Via::Shared { slot, id }, msg)
            }
            Correlation::Socket => {
                if retry {
                    events.info("reconnecting to server…");
                    self.report.reconnects += 1;
                }
                let slot = self.slot();
                let kind = self.config.framing.socket_type();
                self.open(slot, kind, at, &format!("for request {seq}"), out, events);
                self.own.insert(slot, seq);
                (slot, Via::Own(slot), self.config.framing.encode(body))
            }
        };
        let Some(flight) = self.in_flight.get_mut(&seq) else {
            return;
        };
        flight.attempt += 1;
        if flight.attempt == 1 {
            flight.first_sent = now;
        }
        flight.sent_at = now;
        flight.at = at;
        flight.via = via;
        flight.deadline = Some(now + self.config.timeout);
        flight.reply = Message::new();
        out.send(slot, msg);
        events.emit(Event::Sent {
            seq,
            request: flight.request.text.clone(),
            attempt: flight.attempt,
        });
        self.report.sent += 1;
    }

    /// Ends request `seq`'s attempt in flight: its id is forgotten (a late reply to it is
    /// stale from now on) and its own socket closed; a shared socket it leaves is closed if
    /// it takes no new attempts and this was its last.
    fn detach(&mut self, seq: u64, out: &mut Outbox<ReadNext>) {
        let Some(flight) = self.in_flight.get_mut(&seq) else {
            return;
        };
        flight.deadline = None;
        match std::mem::replace(&mut flight.via, Via::Waiting) {
            Via::Shared { slot, id } => {
                self.by_id.remove(&id);
                if let Some(c) = self.conns.iter().position(|c| c.slot == slot) {
                    let conn = &mut self.conns[c];
                    conn.load = conn.load.saturating_sub(1);
                    if conn.load == 0 && !conn.takes_new {
                        self.conns.swap_remove(c);
                        self.release(slot, out);
                    }
                }
            }
            Via::Own(slot) => {
                self.own.remove(&slot);
                self.release(slot, out);
            }
            Via::Waiting | Via::Orphaned => {}
        }
    }

    /// The Lazy Pirate reopen of shared socket `c`: closed (LINGER 0 drops what it still
    /// holds, and nothing late from it can ever be read); the attempts it carried are
    /// orphaned, each resent when its own deadline passes. The next attempt opens a fresh
    /// socket, with a fresh identity.
    fn reopen(&mut self, c: usize, out: &mut Outbox<ReadNext>) {
        let conn = self.conns.swap_remove(c);
        self.release(conn.slot, out);
        for flight in self.in_flight.values_mut() {
            if let Via::Shared { slot, id } = &flight.via {
                if *slot == conn.slot {
                    self.by_id.remove(id);
                    flight.via = Via::Orphaned;
                }
            }
        }
    }

    /// Asks the broker at endpoint `at` `question` (8/MMI), unless a question is already out.
    fn ask(
        &mut self,
        at: usize,
        question: Question,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if self.probe.is_some() {
            return;
        }
        let ask = self.probe_framing(question);
        let slot = self.slot();
        let why = match question {
            Question::Correlate => "asking mmi.correlate",
            Question::Service => "asking mmi.service",
        };
        self.open(slot, ask.socket_type(), at, why, out, events);
        // One body frame: the Guide's brokers write their 501 over the last body frame and
        // crash on a request without one.
        let body = match (question, self.service()) {
            (Question::Service, Some(service)) => service.as_bytes().to_vec(),
            _ => b"1".to_vec(),
        };
        let sent = ask.encode(Message::from_frames([body]));
        out.send(slot, sent.clone());
        self.probe = Some(Probe {
            slot,
            at,
            deadline: now + self.config.timeout,
            question,
            sent,
        });
    }

    fn probe_framing(&self, question: Question) -> Framing {
        let version = match &self.config.framing {
            Framing::Majordomo { version, .. } => *version,
            Framing::Bare => Version::V1,
        };
        let service = match question {
            Question::Correlate => mmi::CORRELATE,
            Question::Service => mmi::SERVICE,
        };
        Framing::Majordomo {
            version,
            service: String::from_utf8_lossy(service).into_owned(),
        }
    }

    /// The Majordomo service this client asks for (`None`: bare).
    fn service(&self) -> Option<&str> {
        match &self.config.framing {
            Framing::Majordomo { service, .. } => Some(service),
            Framing::Bare => None,
        }
    }

    /// Whether it asks a broker for a service, rather than an `mmi.*` question itself.
    fn asks_a_service(&self) -> bool {
        self.service().is_some_and(|s| !mmi::is_mmi(s.as_bytes()))
    }

    /// The probe's answer (`None`: no answer in time, or a malformed one).
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
        match probe.question {
            Question::Correlate => self.correlation_answered(probe.at, answer, events),
            Question::Service => {
                if answer.as_deref() == Some("404") && self.service_answer.is_none() {
                    events.warn(self.no_service(probe.at));
                }
                self.service_answer = Some(answer);
            }
        }
        if self.abandoning {
            self.abandon(now, out, events);
            return;
        }
        self.pump(now, out, events);
    }

    /// What a `404` to `mmi.service` from endpoint `at` means.
    fn no_service(&self, at: usize) -> String {
        let service = self.service().unwrap_or_default();
        format!(
            "the broker at {} is up but has no worker for service {service:?} (mmi.service: 404)",
            self.endpoints[at]
        )
    }

    /// The `mmi.correlate` answer: `200` means request ids, anything else one socket per
    /// request (then the run is correct, only slower).
    fn correlation_answered(&mut self, at: usize, answer: Option<String>, events: &mut Events) {
        let correlation = match answer.as_deref() {
            Some("200") => Correlation::RequestId,
            _ => Correlation::Socket,
        };
        self.correlation[at] = Some(correlation);
        if events.tracing() {
            let endpoint = &self.endpoints[at];
            const FALLBACK: &str = "the window falls back to one socket per request";
            events.info(match (&answer, correlation) {
                (_, Correlation::RequestId) => format!(
                    "{endpoint} carries request ids (mmi.correlate: 200): replies are matched \
                     by id, every request in flight shares one socket"
                ),
                (Some(other), _) => format!(
                    "{endpoint} does not carry request ids (mmi.correlate: {other}): {FALLBACK}"
                ),
                (None, _) => format!(
                    "no answer to mmi.correlate from {endpoint} within {} ms: {FALLBACK}",
                    self.config.timeout.as_millis()
                ),
            });
        }
    }

    /// A message on the probe's socket.
    fn probe_reply(
        &mut self,
        msg: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let question = self
            .probe
            .as_ref()
            .map_or(Question::Correlate, |p| p.question);
        if let Some(why) = self
            .probe
            .as_ref()
            .and_then(|p| echoed(p, &msg, &self.endpoints))
        {
            return self.wrong_protocol(why, now, out, events);
        }
        match self.probe_framing(question).decode(msg) {
            Ok(Received::Partial(_)) => {}
            Ok(Received::Final(body)) => self.answered(Some(body.text()), now, out, events),
            Err(_) => self.answered(None, now, out, events),
        }
    }

    /// A message on shared socket `c`: its request id says which request it answers. One
    /// without our envelope cannot be tied to any request: counted and dropped, like a reply
    /// whose id is not in flight (a stale copy, a duplicate, a late reply to an earlier
    /// attempt).
    fn shared_reply(
        &mut self,
        c: usize,
        msg: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        self.conns[c].heard = Some(now);
        let slot = self.conns[c].slot;
        let (id, rest) = match correlate::unwrap(msg) {
            Ok(unwrapped) => unwrapped,
            Err(e) => {
                self.report.mismatched += 1;
                events.error(format!("malformed reply from server: {e}"));
                return;
            }
        };
        let owner = self.by_id.get(&id).copied().filter(|seq| {
            self.in_flight
                .get(seq)
                .is_some_and(|f| matches!(&f.via, Via::Shared { slot: s, .. } if *s == slot))
        });
        let decoded = self.config.framing.decode(rest);
        match owner {
            Some(seq) => self.reply(seq, decoded, now, out, events),
            None => {
                let got = match decoded {
                    Ok(Received::Partial(b) | Received::Final(b)) => b.text(),
                    Err(reason) => reason,
                };
                let why = format!(
                    "request id {} is not one in flight",
                    String::from_utf8_lossy(&id)
                );
                // Reported against the oldest request waiting on this socket: the one a
                // socket per request would have read it on.
                let oldest = self
                    .in_flight
                    .values()
                    .find(|f| matches!(&f.via, Via::Shared { slot: s, .. } if *s == slot))
                    .map(|f| f.seq);
                self.refuse(oldest, got, &why, events);
            }
        }
    }

    /// A message (`decoded`) for request `seq`'s attempt in flight.
    fn reply(
        &mut self,
        seq: u64,
        decoded: std::result::Result<Received, String>,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        match self.judge(seq, decoded, events) {
            Verdict::Partial(part) => {
                if let Some(flight) = self.in_flight.get_mut(&seq) {
                    part.into_frames()
                        .into_iter()
                        .for_each(|f| flight.reply.push_back(f));
                    // A PARTIAL restarts the attempt's timeout.
                    flight.deadline = Some(now + self.config.timeout);
                }
            }
            Verdict::Answer(reply) => self.accept(seq, reply, now, out, events),
            Verdict::Failed(reason) => self.failed(seq, reason, now, out, events),
            Verdict::WrongProtocol(why) => self.wrong_protocol(why, now, out, events),
        }
    }

    /// What a message for request `seq` means.
    fn judge(
        &mut self,
        seq: u64,
        decoded: std::result::Result<Received, String>,
        events: &mut Events,
    ) -> Verdict {
        match decoded {
            Ok(Received::Partial(body)) => Verdict::Partial(body),
            Ok(Received::Final(body)) => {
                let bare = self.service().is_none();
                let Some(flight) = self.in_flight.get_mut(&seq) else {
                    return Verdict::Failed("malformed reply");
                };
                let mut reply = std::mem::take(&mut flight.reply);
                body.into_frames()
                    .into_iter()
                    .for_each(|f| reply.push_back(f));
                if bare {
                    if let Some(header) = majordomo_header(&reply, &flight.request.body) {
                        return Verdict::WrongProtocol(format!(
                            "{} answered in Majordomo ({header}): it is a Majordomo broker; \
                             ask it for a service with --service NAME",
                            self.endpoints[flight.at]
                        ));
                    }
                }
                if !self.config.check_echo || reply.text() == flight.request.text {
                    return Verdict::Answer(reply);
                }
                let text = reply.text();
                self.report.mismatched += 1;
                events.emit(Event::Mismatch {
                    seq,
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

    /// A reply that is not the answer to any request in flight: counted, reported as a
    /// `mismatch` event against request `seq` (if any waits there), and (`-v`) traced with why.
    fn refuse(&mut self, seq: Option<u64>, got: String, why: &str, events: &mut Events) {
        self.report.mismatched += 1;
        if events.tracing() {
            events.warn(format!("dropped a reply ({why}): {}", preview(&got)));
        }
        if let Some(flight) = seq.and_then(|seq| self.in_flight.get(&seq)) {
            events.emit(Event::Mismatch {
                seq: flight.seq,
                expected: flight.request.text.clone(),
                got,
            });
        }
    }

    /// Records an accepted reply; a socket of its own closes, a shared one stays.
    fn accept(
        &mut self,
        seq: u64,
        reply: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        self.detach(seq, out);
        let Some(flight) = self.in_flight.remove(&seq) else {
            return;
        };
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
        self.held.insert(
            seq,
            Event::Reply {
                seq,
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

    /// Attempt `seq` failed (`reason`): resend it with a fresh id (on the same shared socket
    /// unless the connection looks dead, see the module docs) or on a fresh socket of its
    /// own, failing over first if its endpoint is the current one; after the last attempt,
    /// abandon everything.
    fn failed(
        &mut self,
        seq: u64,
        reason: &str,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let Some(flight) = self.in_flight.get(&seq) else {
            return;
        };
        if let Some(why) = (self.refusals)(&self.endpoints[flight.at]) {
            let line = crate::handshake::refusal_line(&self.endpoints[flight.at], &why);
            return self.stop_early(Outcome::AuthRefused, line, now, out, events);
        }
        if flight.attempt >= self.config.retries.max(1) {
            self.abandon(now, out, events);
            return;
        }
        events.warn("no response from server, retrying…");
        if reason == TIMEOUT && self.asks_a_service() {
            // Is anyone serving it? The answer says what is true if the run gives up.
            let at = flight.at;
            self.ask(at, Question::Service, now, out, events);
        }
        let Some(flight) = self.in_flight.get(&seq) else {
            return;
        };
        events.emit(Event::Retry {
            seq,
            attempt: flight.attempt,
            reason: reason.into(),
        });
        self.report.retries += 1;
        let (at, sent_at, via) = (flight.at, flight.sent_at, flight.via.clone());
        let count = self.endpoints.len();
        let failover = count > 1 && at == self.current;
        if let Via::Shared { slot, .. } = via {
            // The reopen rule: nothing at all heard on the socket for a whole timeout while
            // this attempt waited. A peer that answers anything is alive, and its socket kept.
            let c = self.conns.iter().position(|c| c.slot == slot);
            if let Some(c) =
                c.filter(|&c| !failover && self.conns[c].heard.is_none_or(|h| h <= sent_at))
            {
                self.reopen(c, out);
            }
        }
        self.detach(seq, out);
        self.waiting.insert(seq);
        if failover {
            // Binary Star: the server we were talking to seems gone; try the next one, after
            // giving it time to take over.
            self.current = (self.current + 1) % count;
            events.warn(format!("failing over to {}", self.endpoints[self.current]));
            // Its shared socket takes no new attempts: it closes once its last one is done.
            let mut i = 0;
            while i < self.conns.len() {
                let conn = &mut self.conns[i];
                if conn.at == at {
                    conn.takes_new = false;
                    if conn.load == 0 {
                        let slot = conn.slot;
                        self.conns.swap_remove(i);
                        self.release(slot, out);
                        continue;
                    }
                }
                i += 1;
            }
            self.settle_until = Some(now + self.config.settle);
        }
        self.pump(now, out, events);
    }

    /// The server seems gone: give up on everything in flight, and say so for each request,
    /// so that none of them is silently lost. To a broker, first ask `mmi.service` (unless
    /// it answered already) so that the error says whether the broker is down or merely
    /// has no worker for the service.
    fn abandon(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        if self.asks_a_service() && self.service_answer.is_none() {
            self.abandoning = true;
            // Nothing more is retried while the answer is awaited.
            for flight in self.in_flight.values_mut() {
                flight.deadline = None;
            }
            let at = self.current;
            self.ask(at, Question::Service, now, out, events);
            return;
        }
        let outcome = match self.service_answer.as_ref() {
            Some(Some(code)) if code == "404" => {
                let at = self.current;
                events.error(format!("{}, abandoning", self.no_service(at)));
                Outcome::NoService
            }
            _ => {
                events.error(format!(
                    "server seems to be offline, abandoning{}",
                    self.hint()
                ));
                Outcome::Abandoned
            }
        };
        for (_, flight) in std::mem::take(&mut self.in_flight) {
            self.report.abandoned += 1;
            events.emit(Event::Abandoned {
                seq: flight.seq,
                request: flight.request.text,
                attempts: flight.attempt,
            });
        }
        self.finish(outcome, now, events);
        out.exit();
    }

    /// What a bare client that heard nothing cannot rule out: a Majordomo broker that drops a
    /// request without a Majordomo header and says nothing back (the Guide's mdbroker logs
    /// "invalid message" and stays silent; `pirate broker` answers, see [`majordomo_header`]).
    fn hint(&self) -> &'static str {
        match self.service() {
            None => " (nothing answered: if the port is a Majordomo broker, use --service NAME)",
            Some(_) => "",
        }
    }

    /// The peer speaks another protocol (`why`, one line): every request still waiting is
    /// abandoned at once, as retrying the same bytes on the same port cannot help.
    fn wrong_protocol(
        &mut self,
        why: String,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        self.stop_early(Outcome::WrongProtocol, why, now, out, events);
    }

    /// Stops the run with `outcome`, saying `why` (one line), abandoning every request still
    /// waiting: for what retrying cannot fix (another protocol, a refused login).
    fn stop_early(
        &mut self,
        outcome: Outcome,
        why: String,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if let Some(probe) = self.probe.take() {
            self.release(probe.slot, out);
        }
        events.error(why);
        for (_, flight) in std::mem::take(&mut self.in_flight) {
            self.report.abandoned += 1;
            events.emit(Event::Abandoned {
                seq: flight.seq,
                request: flight.request.text,
                attempts: flight.attempt,
            });
        }
        self.finish(outcome, now, events);
        out.exit();
    }

    fn settling(&self, now: Instant) -> bool {
        self.settle_until.is_some_and(|s| now < s)
    }
}

/// A bare client's reply that is a Majordomo client message: its first frame `MDPC01` or
/// `MDPC02` (7/MDP, 18/MDP: `["MDPC01"][service][body…]`, as a REQ socket receives it) when
/// the request did not start with that frame itself (an echo server sends a request that
/// happens to start so back unchanged). `pirate broker` answers a request without a Majordomo
/// header so (see `broker::NOT_MDP`); a broker that says nothing back cannot be told from a
/// server that is down.
fn majordomo_header(reply: &Message, request: &Message) -> Option<&'static str> {
    let first = reply.iter().next()?;
    let header = [("MDPC01", mdp::MDPC01), ("MDPC02", mdp::MDPC02)]
        .into_iter()
        .find(|(_, h)| first == *h)?;
    (request.iter().next() != Some(first)).then_some(header.0)
}

/// Why `msg`, the answer to `probe`, is an echo: the question itself, frame for frame. A
/// Majordomo broker answers `mmi.correlate` with a status (`200`, `501`) and `mmi.service`
/// with `200`/`404`; a plain echo server sends the question back, and in 7/MDP 0.1 a
/// client REQUEST and its REPLY have the same frames (`["MDPC01"][service][body]`), so an
/// echoed request would pass for an answer: the probe is what tells them apart.
fn echoed(probe: &Probe, msg: &Message, endpoints: &[String]) -> Option<String> {
    (*msg == probe.sent).then(|| {
        let question = match probe.question {
            Question::Correlate => "mmi.correlate",
            Question::Service => "mmi.service",
        };
        format!(
            "{} echoed the question {question} back: it is not a Majordomo broker \
             (a plain echo server on the wrong port?)",
            endpoints[probe.at]
        )
    })
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
    /// Wrong or malformed: the attempt failed.
    Failed(&'static str),
    /// The peer speaks another protocol (why): retrying cannot help, the run stops.
    WrongProtocol(String),
}

impl Machine for Client {
    type Job = ReadNext;
    /// The next requests read, in order; none at the end of the source.
    type Done = Vec<Request>;

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
            let done = request.map(Request::line).into_iter().collect();
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
    fn a_reply_without_an_envelope_answers_nobody_it_is_counted_and_dropped() {
        let mut rig = Rig::new(config(&["tcp://a:1"]));
        rig.out.take();
        let (slot, msg) = sent(&rig.read(0, Some("1")));
        let outputs = rig.recv(10, slot, m(&[b"1"]));
        assert!(outputs.is_empty(), "no request to retry: {outputs:?}");
        assert!(rig.c.wants(slot), "still waiting for its own");
        assert_eq!(rig.c.report().mismatched, 1);
        assert_eq!(rig.c.next_deadline(), Some(rig.at(100)));
        assert!(!rig.seen.iter().any(|e| matches!(e, Event::Retry { .. })));
        rig.recv(20, slot, m(&[&id_of(&msg), b"", b"1"]));
        assert_eq!(rig.c.report().replied, 1);
    }

    #[test]
    fn a_malformed_reply_with_its_id_fails_that_attempt_which_is_resent_with_a_new_id() {
        let mut rig = Rig::new(mdp_config(Version::V1).with_window(2));
        rig.c = Client::new(&mdp_config(Version::V1).with_window(2))
            .with_correlation(Correlation::RequestId);
        let t0 = rig.t0;
        rig.with_events(|c, out, ev| c.start(t0, out, ev));
        rig.out.take();
        let (slot, msg) = sent(&rig.read(0, Some("hi")));
        let outputs = rig.recv(
            10,
            slot,
            m(&[&id_of(&msg), b"", b"MDPC01", b"other", b"hi"]),
        );
        assert!(closed(&outputs).is_empty(), "the peer answers: kept");
        let (again, resent) = sent(&outputs);
        assert_eq!(again, slot);
        assert_ne!(id_of(&resent), id_of(&msg));
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
        // The peer answered, so its socket is alive: the resend goes out on it, with a new id.
        assert!(closed(&outputs).is_empty(), "{outputs:?}");
        let (again, resent) = sent(&outputs);
        assert_eq!(again, slot);
        assert_ne!(id_of(&resent), id_of(&msg));
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
        assert_eq!(s1, s2, "one shared socket");
        assert!(opened(&two).is_empty());
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
        // A second copy of an answered request's reply: its id is no longer in flight.
        let (s3, m3) = sent(&rig.read(7, Some("3")));
        assert_eq!(s3, s1);
        rig.recv(8, s3, m(&[&id_of(&m1), b"", b"1"]));
        assert_eq!(rig.c.report().mismatched, 1);
        assert!(
            matches!(rig.seen.last(), Some(Event::Mismatch { seq: 3, got, .. }) if got == "1"),
            "reported against the request waiting there"
        );
        rig.recv(9, s3, m(&[&id_of(&m3), b"", b"3"]));
        assert_eq!(rig.c.report().replied, 3);
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
        assert_eq!(specs.len(), 1, "one shared socket to the backup");
        assert_eq!(specs[0].connect, ["tcp://b:2"]);
        let sends: Vec<Slot> = both
            .iter()
            .filter_map(|o| match o {
                Output::Send { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        assert_eq!(sends, [specs[0].slot, specs[0].slot]);
    }

    impl ClientConfig {
        fn with_window(self, window: usize) -> Self {
            ClientConfig { window, ..self }
        }
    }

    /// The slots of every message sent in `outputs`, with the request ids they carry.
    fn sends(outputs: &[Output<ReadNext>]) -> Vec<(Slot, Frame)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { slot, msg } => Some((*slot, id_of(msg))),
                _ => None,
            })
            .collect()
    }

    /// Sends `n` requests ("1".."n") at ms 0..n-1 through a window of `n`: their slot and ids.
    fn fill(rig: &mut Rig, n: u64) -> Vec<(Slot, Frame)> {
        (1..=n)
            .flat_map(|i| sends(&rig.read(i - 1, Some(&i.to_string()))))
            .collect()
    }

    fn reply_seqs(seen: &[Event]) -> Vec<u64> {
        seen.iter()
            .filter_map(|e| match e {
                Event::Reply { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_window_of_requests_shares_one_socket_and_is_answered_in_request_order() {
        let mut rig = Rig::new(config(&["tcp://a:1"]).with_window(4));
        rig.out.take();
        let mut outputs = Vec::new();
        for i in 1..=4 {
            outputs.extend(rig.read(i, Some(&i.to_string())));
        }
        let specs = opened(&outputs);
        assert_eq!(specs.len(), 1, "{outputs:?}");
        assert_eq!(specs[0].kind, SocketKind::Dealer);
        let slot = specs[0].slot;
        let flights = sends(&outputs);
        assert_eq!(flights.len(), 4);
        assert!(flights.iter().all(|(s, _)| *s == slot));
        let ids: BTreeSet<&Frame> = flights.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), 4, "an id of its own each");
        assert!(rig.c.wants(slot));
        // Answers in the order 3, 1, 4, 2: reported 1, 2, 3, 4, each with its own reply.
        for (ms, i) in [(10, 3), (11, 1), (12, 4), (13, 2)] {
            let id = &flights[i - 1].1;
            let body = i.to_string();
            assert!(closed(&rig.recv(ms, slot, m(&[id, b"", body.as_bytes()]))).is_empty());
            if i == 1 {
                assert_eq!(reply_seqs(&rig.seen), [1], "3 is held back until 2 is in");
            }
        }
        assert_eq!(reply_seqs(&rig.seen), [1, 2, 3, 4]);
        for e in &rig.seen {
            if let Event::Reply { seq, reply, .. } = e {
                assert_eq!(reply.text(), seq.to_string());
            }
        }
        assert!(!rig.c.wants(slot), "nothing in flight: not read");
        assert_eq!(rig.read(20, None), [Output::Exit]);
        let r = rig.c.report();
        assert_eq!(
            (r.replied, r.sent, r.mismatched, r.reconnects),
            (4, 4, 0, 0)
        );
    }

    #[test]
    fn a_reply_whose_id_is_not_in_flight_is_dropped_and_the_others_still_answered() {
        let mut rig = Rig::new(config(&["tcp://a:1"]).with_window(3));
        rig.out.take();
        let flights = fill(&mut rig, 3);
        let slot = flights[0].0;
        rig.recv(10, slot, m(&[&flights[1].1, b"", b"2"]));
        // The same reply again (a duplicate), and one for an id never sent.
        for id in [&flights[1].1, &b"ffffffffffffffff".to_vec()] {
            let dropped = rig.recv(11, slot, m(&[id, b"", b"2"]));
            assert!(dropped.is_empty(), "{dropped:?}");
        }
        assert_eq!(rig.c.report().mismatched, 2);
        assert_eq!(rig.c.report().retries, 0);
        rig.recv(12, slot, m(&[&flights[0].1, b"", b"1"]));
        rig.recv(13, slot, m(&[&flights[2].1, b"", b"3"]));
        assert_eq!(reply_seqs(&rig.seen), [1, 2, 3]);
        assert_eq!(rig.c.report().replied, 3);
    }

    #[test]
    fn a_timeout_on_a_socket_that_answers_others_resends_there_with_a_new_id() {
        let mut rig = Rig::new(config(&["tcp://a:1"]).with_window(2));
        rig.out.take();
        let flights = fill(&mut rig, 2);
        let (slot, id1) = flights[0].clone();
        // Request 2's reply after request 1 went out: the connection is alive.
        rig.recv(50, slot, m(&[&flights[1].1, b"", b"2"]));
        let resent = rig.tick(100);
        assert!(closed(&resent).is_empty(), "no reopen: {resent:?}");
        assert!(opened(&resent).is_empty());
        let again = sends(&resent);
        assert_eq!(again.len(), 1, "{resent:?}");
        assert_eq!(again[0].0, slot, "the same socket");
        assert_ne!(again[0].1, id1, "a fresh id");
        let r = rig.c.report();
        assert_eq!((r.retries, r.reconnects), (1, 0));
        // The first attempt's late reply is stale now; the second attempt's is the answer.
        rig.recv(120, slot, m(&[&id1, b"", b"1"]));
        assert_eq!(rig.c.report().mismatched, 1);
        assert_eq!(
            reply_seqs(&rig.seen),
            Vec::<u64>::new(),
            "1 still unanswered"
        );
        rig.recv(130, slot, m(&[&again[0].1, b"", b"1"]));
        assert_eq!(reply_seqs(&rig.seen), [1, 2]);
        assert!(matches!(
            rig.seen
                .iter()
                .find(|e| matches!(e, Event::Reply { seq: 1, .. })),
            Some(Event::Reply { attempts: 2, .. })
        ));
    }

    #[test]
    fn a_socket_silent_for_a_whole_timeout_is_reopened_and_its_other_requests_follow() {
        let mut rig = Rig::new(ClientConfig {
            retries: 4,
            ..config(&["tcp://a:1"]).with_window(3)
        });
        rig.out.take();
        let flights = fill(&mut rig, 3); // sent at 0, 1, 2
        let old = flights[0].0;
        // Nothing heard since request 1 went out: the connection looks dead.
        let first = rig.tick(100);
        assert_eq!(first[0], Output::Close(old), "{first:?}");
        let fresh = opened(&first);
        assert_eq!(fresh.len(), 1);
        assert_eq!(
            (fresh[0].kind, fresh[0].identity.clone()),
            (SocketKind::Dealer, None)
        );
        let new = fresh[0].slot;
        assert_eq!(sends(&first).len(), 1);
        assert_eq!(sends(&first)[0].0, new);
        assert_eq!(rig.c.report().reconnects, 1);
        assert!(rig.c.wants(new));
        // Requests 2 and 3 went out on the closed socket: nothing can answer them there, and
        // each is resent on the fresh one when its own deadline passes, with no second reopen.
        assert!(rig.tick(100).is_empty(), "not their deadline yet");
        for ms in [101, 102] {
            let resent = rig.tick(ms);
            assert!(
                closed(&resent).is_empty() && opened(&resent).is_empty(),
                "{resent:?}"
            );
            assert_eq!(
                sends(&resent).iter().map(|s| s.0).collect::<Vec<_>>(),
                [new]
            );
        }
        let r = rig.c.report();
        assert_eq!((r.retries, r.reconnects, r.sent), (3, 1, 6));
        // The fresh socket answers request 2 and 3 but not 1: alive, so 1 is resent on it.
        let latest = |rig: &Rig, seq: u64| match &rig.c.in_flight[&seq].via {
            Via::Shared { id, .. } => id.clone(),
            other => panic!("{other:?}"),
        };
        let (id2, id3) = (latest(&rig, 2), latest(&rig, 3));
        rig.recv(150, new, m(&[&id2, b"", b"2"]));
        rig.recv(151, new, m(&[&id3, b"", b"3"]));
        let third = rig.tick(200);
        assert!(closed(&third).is_empty(), "{third:?}");
        assert_eq!(sends(&third)[0].0, new);
        // Silence again, for a whole timeout: reopened a second time.
        let fourth = rig.tick(300);
        assert_eq!(closed(&fourth), [new]);
        assert_eq!(opened(&fourth).len(), 1);
        assert_eq!(rig.c.report().reconnects, 2);
        // The fourth attempt was the last: abandoned.
        assert_eq!(rig.tick(400), [Output::Exit]);
        assert_eq!(rig.c.outcome(), Some(Outcome::Abandoned));
        // What was answered is still reported, in order, at the end; 1 never was.
        assert_eq!(reply_seqs(&rig.seen), [2, 3]);
        assert!(rig.seen.iter().any(|e| matches!(
            e,
            Event::Abandoned {
                seq: 1,
                attempts: 4,
                ..
            }
        )));
    }

    #[test]
    fn the_reply_that_let_a_request_out_is_no_sign_of_life_for_it() {
        // Window 1: request 2 goes out in the same instant request 1's reply came in.
        let mut rig = Rig::new(config(&["tcp://a:1"]));
        rig.out.take();
        let (slot, msg) = sent(&rig.read(0, Some("1")));
        rig.read(1, Some("2"));
        let next = rig.recv(5, slot, m(&[&id_of(&msg), b"", b"1"]));
        assert_eq!(sends(&next)[0].0, slot);
        let timed_out = rig.tick(105);
        assert_eq!(
            closed(&timed_out),
            [slot],
            "silent since it went out: reopened"
        );
        assert_eq!(rig.c.report().reconnects, 1);
    }

    #[test]
    fn a_batch_read_fills_the_window_and_the_rest_waits_without_another_read() {
        let mut rig = Rig::new(config(&["tcp://a:1"]).with_window(2));
        rig.out.take();
        let batch = ["1", "2", "3"].map(Request::line).to_vec();
        let now = rig.at(0);
        rig.with_events(|c, out, ev| c.handle(Input::Done(batch), now, out, ev));
        let outputs = rig.out.take();
        let flights = sends(&outputs);
        assert_eq!(flights.len(), 2, "the window's worth: {outputs:?}");
        assert!(
            !outputs.contains(&Output::Start(ReadNext)),
            "one request is still ahead: no read"
        );
        let answered = rig.recv(5, flights[0].0, m(&[&flights[0].1, b"", b"1"]));
        assert_eq!(sends(&answered).len(), 1, "the third goes out");
        assert!(answered.contains(&Output::Start(ReadNext)), "now read more");
        assert_eq!(rig.c.report().requests, 3);
    }

    #[test]
    fn requests_the_reader_has_ready_are_sent_without_a_read_job() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let mut ready = (1..=4).map(|i| Request::line(i.to_string()));
        let reader = Arc::new(ReadAhead::new(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                ready.next()
            },
            3,
        ));
        // Once the reader is making its 4th request, the queue holds the first 3.
        let waited = Instant::now();
        while produced.load(Ordering::SeqCst) < 4 {
            assert!(waited.elapsed() < Duration::from_secs(10), "reader stuck");
            thread::sleep(MS);
        }
        let config = ClientConfig {
            window: 2,
            ..config(&["tcp://a:1"])
        };
        let mut c = Client::new(&config).reading_from(Arc::clone(&reader));
        let mut out = Outbox::default();
        c.start(Instant::now(), &mut out, &mut Events::discard());
        let outputs = out.take();
        assert_eq!(
            sends(&outputs).len(),
            2,
            "the window's worth at once: {outputs:?}"
        );
        assert!(
            !outputs.contains(&Output::Start(ReadNext)),
            "the third is read ahead already: no job"
        );
        assert_eq!(c.ahead.len(), 1);
    }

    #[test]
    fn read_ahead_hands_over_what_is_ready_and_waits_only_for_the_first() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let mut ready = (1..=5).map(|i| Request::line(i.to_string()));
        let reader = ReadAhead::new(
            move || {
                let next = ready.next();
                counter.fetch_add(next.is_some() as usize, Ordering::SeqCst);
                next
            },
            3,
        );
        // Once the reader holds a 4th request, the queue holds 3: one job takes all 3.
        let waited = Instant::now();
        while produced.load(Ordering::SeqCst) < 4 {
            assert!(waited.elapsed() < Duration::from_secs(10), "reader stuck");
            thread::sleep(MS);
        }
        let first = reader.next_batch();
        assert_eq!(first.len(), 3, "{first:?}");
        let mut all = first;
        loop {
            let batch = reader.next_batch();
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        let texts: Vec<&str> = all.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["1", "2", "3", "4", "5"], "in order, each once");
        assert!(reader.next_batch().is_empty(), "the end, for good");

        // A slow source (stdin): the first line comes out alone, as soon as it is there.
        let (tx, rx) = mpsc::channel::<String>();
        let reader = ReadAhead::new(move || rx.recv().ok().map(Request::line), 10);
        tx.send("first".into()).unwrap();
        let batch = reader.next_batch();
        assert_eq!(batch, [Request::line("first")]);
        drop(tx);
        assert!(reader.next_batch().is_empty());
    }

    #[test]
    fn replies_held_behind_a_request_still_in_flight_are_bounded() {
        let window = 2;
        let mut rig = Rig::new(config(&["tcp://a:1"]).with_window(window));
        rig.out.take();
        let (slot, _) = sent(&rig.read(0, Some("stuck")));
        // Request 1 is never answered; every later one is, at once, and held behind it.
        let limit = window * HELD_WINDOWS;
        for i in 2..=limit + 1 {
            let outputs = rig.read(1, Some(&i.to_string()));
            let (_, msg) = sent(&outputs);
            rig.recv(1, slot, m(&[&id_of(&msg), b"", i.to_string().as_bytes()]));
        }
        assert_eq!(rig.c.held.len(), limit);
        assert_eq!(
            reply_seqs(&rig.seen),
            Vec::<u64>::new(),
            "all behind request 1"
        );
        let full = rig.read(2, Some("one too many"));
        assert!(sends(&full).is_empty(), "not started: {full:?}");
        assert!(
            !full.contains(&Output::Start(ReadNext)),
            "and nothing more read"
        );
        // Request 1's answer releases them all, in order, and the next request goes out.
        let id1 = match &rig.c.in_flight[&1].via {
            Via::Shared { id, .. } => id.clone(),
            other => panic!("{other:?}"),
        };
        let released = rig.recv(3, slot, m(&[&id1, b"", b"stuck"]));
        assert_eq!(sends(&released).len(), 1);
        assert_eq!(
            reply_seqs(&rig.seen),
            (1..=limit as u64 + 1).collect::<Vec<_>>()
        );
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

    /// A 0.1 client of service `echo` with one attempt per request, ids not asked about.
    fn one_attempt_rig() -> Rig {
        let config = ClientConfig {
            retries: 1,
            ..mdp_config(Version::V1)
        };
        let mut rig = Rig::new(config.clone());
        rig.c = Client::new(&config).with_correlation(Correlation::Socket);
        let t0 = rig.t0;
        rig.with_events(|c, out, ev| c.start(t0, out, ev));
        rig.out.take();
        rig
    }

    fn error_lines(seen: &[Event]) -> Vec<String> {
        seen.iter()
            .filter_map(|e| match e {
                Event::Log {
                    level: crate::event::Level::Error,
                    message,
                } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn giving_up_on_a_broker_that_has_no_worker_says_so_with_its_own_outcome() {
        let mut rig = one_attempt_rig();
        sent(&rig.read(0, Some("hi")));
        // The one attempt times out: before giving up, the client asks mmi.service.
        let asked = rig.tick(100);
        let (ps, question) = sent(&asked);
        assert_eq!(question, m(&[b"MDPC01", b"mmi.service", b"echo"]));
        assert_eq!(rig.c.outcome(), None, "it waits for the answer");
        assert_eq!(
            rig.c.next_deadline(),
            Some(rig.at(200)),
            "nothing else is due"
        );
        let answered = rig.recv(110, ps, m(&[b"MDPC01", b"mmi.service", b"404"]));
        assert!(answered.contains(&Output::Exit), "{answered:?}");
        assert_eq!(rig.c.outcome(), Some(Outcome::NoService));
        assert_eq!(rig.c.report().abandoned, 1);
        let errors = error_lines(&rig.seen);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(r#"no worker for service "echo""#)),
            "{errors:?}"
        );
    }

    #[test]
    fn a_refused_login_stops_the_run_at_the_first_timeout_with_its_own_outcome() {
        let mut rig = one_attempt_rig();
        rig.c.refusals = |_| Some("its authenticator answered 400".into());
        sent(&rig.read(0, Some("hi")));
        let stopped = rig.tick(100);
        assert!(stopped.contains(&Output::Exit), "{stopped:?}");
        assert_eq!(rig.c.outcome(), Some(Outcome::AuthRefused));
        assert_eq!(rig.c.report().abandoned, 1);
        assert!(error_lines(&rig.seen)
            .iter()
            .any(|e| e.starts_with("authentication refused by tcp://")));
    }

    #[test]
    fn an_echoed_mmi_question_stops_the_run_as_another_protocol() {
        let mut rig = Rig::new(mdp_config(Version::V1));
        let t0 = rig.t0;
        rig.with_events(|c, out, ev| c.start(t0, out, ev));
        rig.out.take();
        let (ps, question) = sent(&rig.read(0, Some("hi")));
        let echoed = rig.recv(5, ps, question);
        assert!(echoed.contains(&Output::Exit), "{echoed:?}");
        assert_eq!(rig.c.outcome(), Some(Outcome::WrongProtocol));
        assert!(rig.seen.iter().all(|e| !matches!(e, Event::Reply { .. })));
    }

    #[test]
    fn a_majordomo_reply_to_a_bare_request_stops_the_run_unless_the_request_was_one() {
        assert_eq!(
            majordomo_header(&m(&[b"MDPC01", b"", b"x"]), &m(&[b"hi"])),
            Some("MDPC01")
        );
        assert_eq!(
            majordomo_header(&m(&[b"MDPC02", b"x"]), &m(&[b"MDPC02"])),
            None
        );
        assert_eq!(majordomo_header(&m(&[b"hi"]), &m(&[b"hi"])), None);
    }

    #[test]
    fn giving_up_on_a_broker_that_answers_nothing_is_the_offline_abandon() {
        let mut rig = one_attempt_rig();
        sent(&rig.read(0, Some("hi")));
        sent(&rig.tick(100));
        // No answer to mmi.service either: the broker itself seems gone.
        let gave_up = rig.tick(200);
        assert!(gave_up.contains(&Output::Exit), "{gave_up:?}");
        assert_eq!(rig.c.outcome(), Some(Outcome::Abandoned));
        assert!(error_lines(&rig.seen)
            .iter()
            .any(|e| e.contains("server seems to be offline")));
    }

    #[test]
    fn a_timeout_with_retries_left_asks_mmi_service_once_and_warns_of_a_404() {
        let mut rig = Rig::new(mdp_config(Version::V1));
        rig.c = Client::new(&mdp_config(Version::V1)).with_correlation(Correlation::Socket);
        let t0 = rig.t0;
        rig.with_events(|c, out, ev| c.start(t0, out, ev));
        rig.out.take();
        sent(&rig.read(0, Some("hi")));
        let retried = rig.tick(100);
        let questions: Vec<Message> = retried
            .iter()
            .filter_map(|o| match o {
                Output::Send { msg, .. } if msg.get(1) == Some(&b"mmi.service"[..]) => {
                    Some(msg.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(questions, [m(&[b"MDPC01", b"mmi.service", b"echo"])]);
        let probe = rig.c.probe.as_ref().map(|p| p.slot).unwrap();
        rig.recv(120, probe, m(&[b"MDPC01", b"mmi.service", b"404"]));
        assert!(rig.seen.iter().any(|e| matches!(e,
            Event::Log { level: crate::event::Level::Warn, message }
                if message.contains("(mmi.service: 404)"))));
        assert_eq!(
            rig.c.outcome(),
            None,
            "retries go on: a worker may still come"
        );
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
