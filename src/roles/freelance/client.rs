//! `pirate client --freelance`: the Freelance client (10/FLP).
//!
//! One ROUTER socket connected to every server (each endpoint once: a server
//! listed twice is one server, not two chances — trap 8). Design choices, and why:
//! - *Liveness by ping.* Every server, dead or alive, is pinged every `ping_interval` unless it
//!   has just spoken (any message postpones its next ping, as in the Guide). A server is alive
//!   when it answered a ping or a request within `server_ttl`. Dead servers keep being pinged,
//!   so a server that comes back is used again.
//! - *Unroutable is dead now.* The socket sets `ROUTER_MANDATORY`: sending to a server that is
//!   not connected (not yet, or its process died and the TCP connection dropped) fails at
//!   once instead of vanishing. Such a server is marked dead on the spot, and a request that
//!   could not be handed over costs no attempt; it goes to the next live server. Pings to a
//!   server that is not connected yet are retried every few milliseconds (a local check, no
//!   traffic), so the first request does not wait a whole ping interval at start-up.
//!   `ROUTER_HANDOVER` lets a restarted server take its identity back at once.
//! - *One server per attempt, resent only on timeout* (trap 8: the Guide's `flclient3` resends
//!   on every poll wake-up). A request goes to one live server, the least recently used one
//!   that has not had this request yet (else any live one), and is resent only once `timeout`
//!   has passed without its reply (or its reply did not match under `check_echo`).
//! - *A control frame per request.* Each request carries its sequence number as the control
//!   frame. A reply whose control frame is not the current request's is a late reply to an
//!   earlier request: logged and discarded, never accepted (trap 9). A late reply to an
//!   earlier *attempt of the current request* is its answer, and is accepted.
//! - *In order, once.* Requests go one at a time, as in the Guide, so replies are reported in
//!   request order; once a request is answered any further reply to it is late.
//! - *Alive between requests too.* Requests are read on a thread ([`crate::feed`]), so while
//!   the next one is slow to come (a pipe) the loop goes on pinging and hearing PONGs: a
//!   server's liveness is current when the request arrives, and an idle spell is not mistaken
//!   for the servers' silence.
//! - *Giving up.* A request is abandoned after `retries` attempts, or when it is waiting for
//!   a server and no server has been alive for `server_ttl + timeout` (counted from the
//!   request's arrival at the latest, so each request gets that long). The outcome is then
//!   `Abandoned` (exit 69), as for the Lazy Pirate client.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::heartbeat::Liveness;
use crate::msg::Message;
use crate::proto::flp::{self, ClientMsg, ServerMsg};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::stats::{millis, LatencyRecorder};

/// Everything `pirate client --freelance` needs.
#[derive(Clone, Debug)]
pub struct FreelanceClientConfig {
    /// Server endpoints, each exactly as the server's public endpoint (its identity). A
    /// duplicate is used once.
    pub endpoints: Vec<String>,
    /// How long one attempt waits for its reply (Guide: 3000 ms).
    pub timeout: Duration,
    /// How often each server is pinged (Guide: 2000 ms).
    pub ping_interval: Duration,
    /// A server is dead after this long without a reply (Guide: 6000 ms).
    pub server_ttl: Duration,
    /// Attempts per request, the first included, each on a different live server when there
    /// is one, before abandoning.
    pub retries: u32,
    /// Every reply must equal its request (the Guide's test sequence).
    pub check_echo: bool,
}

impl Default for FreelanceClientConfig {
    fn default() -> Self {
        FreelanceClientConfig {
            endpoints: vec!["tcp://localhost:5555".into()],
            timeout: Duration::from_millis(3000),
            ping_interval: Duration::from_millis(2000),
            server_ttl: Duration::from_millis(6000),
            retries: 3,
            check_echo: false,
        }
    }
}

/// Splits `endpoints` into the distinct ones, in first-seen order, and the repeats.
pub fn dedupe(endpoints: &[String]) -> (Vec<String>, Vec<String>) {
    let mut unique: Vec<String> = Vec::new();
    let mut repeats = Vec::new();
    for e in endpoints {
        if unique.contains(e) {
            repeats.push(e.clone());
        } else {
            unique.push(e.clone());
        }
    }
    (unique, repeats)
}

/// How soon a ping that could not be routed (server not connected yet) is tried again: a
/// local check, nothing goes on the wire.
pub const UNROUTABLE_RETRY: Duration = Duration::from_millis(10);

/// What the client knows of one server.
#[derive(Clone, Debug)]
pub struct ServerState {
    pub endpoint: String,
    /// What was last said of it (alive or dead), for the transitions to log once.
    pub alive: bool,
    /// When it is dead unless it speaks again, and when to ping it next.
    pub liveness: Liveness,
    /// Order of last use for a request (0: never), for least-recently-used choice.
    pub last_used: u64,
}

/// The client's server liveness table: pure, driven by `Instant`s the caller passes in.
#[derive(Clone, Debug)]
pub struct ServerTable {
    servers: Vec<ServerState>,
    ping_interval: Duration,
    uses: u64,
}

impl ServerTable {
    /// A table of the distinct `endpoints`, all dead until they answer, all due a ping now.
    pub fn new(endpoints: &[String], ping_interval: Duration, ttl: Duration, now: Instant) -> Self {
        let (unique, _) = dedupe(endpoints);
        ServerTable {
            servers: unique
                .into_iter()
                .map(|endpoint| ServerState {
                    endpoint,
                    alive: false,
                    liveness: Liveness::unheard(ping_interval, ttl, now),
                    last_used: 0,
                })
                .collect(),
            ping_interval,
            uses: 0,
        }
    }

    /// The servers, in listing order.
    pub fn servers(&self) -> &[ServerState] {
        &self.servers
    }

    /// The endpoint of server `i`.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.servers[i].endpoint
    }

    /// The server whose identity is `identity`, if it is one of ours.
    pub fn find(&self, identity: &[u8]) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| s.endpoint.as_bytes() == identity)
    }

    /// Server `i` spoke (PONG or reply): alive until `now + ttl`, no ping needed before
    /// `now + ping_interval`. True if it was dead until now.
    pub fn heard(&mut self, i: usize, now: Instant) -> bool {
        let s = &mut self.servers[i];
        let revived = !s.alive;
        s.alive = true;
        s.liveness.heard(now);
        s.liveness.sent(now);
        revived
    }

    /// Nothing could be sent to server `i` (not connected): dead now, and its ping is retried
    /// soon. True if it was alive until now.
    pub fn unroutable(&mut self, i: usize, now: Instant) -> bool {
        let s = &mut self.servers[i];
        let was_alive = s.alive;
        s.alive = false;
        s.liveness.lost(now);
        s.liveness
            .send_at(now + UNROUTABLE_RETRY.min(self.ping_interval));
        was_alive
    }

    /// Marks servers silent for `ttl` as dead; returns the ones that just died.
    pub fn expire(&mut self, now: Instant) -> Vec<usize> {
        let mut died = Vec::new();
        for (i, s) in self.servers.iter_mut().enumerate() {
            if s.alive && s.liveness.is_dead(now) {
                s.alive = false;
                died.push(i);
            }
        }
        died
    }

    /// The servers due a ping now (dead ones too), rescheduled one interval later.
    pub fn pings_due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, s) in self.servers.iter_mut().enumerate() {
            if s.liveness.heartbeat_due(now) {
                due.push(i);
            }
        }
        due
    }

    /// True if any server is alive.
    pub fn any_alive(&self) -> bool {
        self.servers.iter().any(|s| s.alive)
    }

    /// The server for the next attempt: among live servers, one not in `tried` if there is
    /// one, least recently used first (listing order breaks ties); `None` if none is alive.
    pub fn choose(&self, tried: &[usize]) -> Option<usize> {
        let live = || self.servers.iter().enumerate().filter(|(_, s)| s.alive);
        let lru = |it: &mut dyn Iterator<Item = (usize, &ServerState)>| {
            it.min_by_key(|(i, s)| (s.last_used, *i)).map(|(i, _)| i)
        };
        lru(&mut live().filter(|(i, _)| !tried.contains(i))).or_else(|| lru(&mut live()))
    }

    /// Records that server `i` was given a request.
    pub fn used(&mut self, i: usize) {
        self.uses += 1;
        self.servers[i].last_used = self.uses;
    }

    /// The next instant the table needs attention (a ping due or a live server expiring).
    pub fn next_due(&self) -> Option<Instant> {
        self.servers
            .iter()
            .flat_map(|s| {
                [
                    Some(s.liveness.next_send()),
                    s.alive.then_some(s.liveness.expires_at()),
                ]
            })
            .flatten()
            .min()
    }
}

/// The request being worked on.
#[derive(Debug)]
struct Pending {
    seq: u64,
    /// The request as text, for events and the echo check.
    request: String,
    /// The request as sent: its bytes unchanged.
    body: Vec<u8>,
    started: Instant,
    /// Attempts sent so far.
    attempts: u32,
    /// Servers this request went to, for choosing a different one next.
    tried: Vec<usize>,
    /// The server an attempt was just handed to, until the reactor says whether it went out
    /// (an attempt that could not be handed over costs nothing).
    handing: Option<usize>,
    /// While an attempt is outstanding: when it times out.
    deadline: Option<Instant>,
    /// Set when the outstanding attempt failed before its deadline (a mismatched reply).
    failed: Option<&'static str>,
}

/// The client's one socket.
pub(super) const CLIENT: Slot = 0;

/// Read the next request (a work thread does, so a slow pipe never blocks the loop); it comes
/// back as `Some(request)`, or `None` once there are no more.
#[derive(Debug, PartialEq)]
pub struct NextRequest;

/// The Freelance client's logic: the server table, one request at a time, and its counters.
pub struct FreelanceClient {
    config: FreelanceClientConfig,
    endpoints: Vec<String>,
    repeats: Vec<String>,
    table: ServerTable,
    report: ClientReport,
    latency: LatencyRecorder,
    started: Instant,
    /// Last instant at which some server was alive (the start, before any was).
    last_alive: Instant,
    pending: Option<Pending>,
    /// How the run ended, once it did (`None`: still running, or stopped).
    outcome: Option<Outcome>,
}

impl FreelanceClient {
    /// The machine for `config`, created at `now`; a usage error without any endpoint.
    pub fn new(config: &FreelanceClientConfig, now: Instant) -> Result<Self> {
        let (endpoints, repeats) = dedupe(&config.endpoints);
        if endpoints.is_empty() {
            return Err(Error::Usage(
                "a Freelance client needs at least one server endpoint (--connect)".into(),
            ));
        }
        Ok(FreelanceClient {
            config: config.clone(),
            table: ServerTable::new(&endpoints, config.ping_interval, config.server_ttl, now),
            report: ClientReport::new(endpoints.join(",")),
            endpoints,
            repeats,
            latency: LatencyRecorder::default(),
            started: now,
            last_alive: now,
            pending: None,
            outcome: None,
        })
    }

    /// The counters so far.
    pub fn report(&self) -> &ClientReport {
        &self.report
    }

    /// The summary at `now`: the outcome the run reached, else `Interrupted` (stopped).
    pub fn finish(mut self, now: Instant) -> Report {
        self.report.outcome = self.outcome.unwrap_or(Outcome::Interrupted);
        self.report
            .timed(now - self.started, self.latency.summary());
        Report::Client(self.report)
    }

    fn send_to(&self, i: usize, msg: Message, out: &mut Outbox<NextRequest>) {
        out.send(
            CLIENT,
            flp::route(self.table.endpoint(i).as_bytes().to_vec(), msg),
        );
    }

    fn mark_unroutable(&mut self, i: usize, now: Instant, events: &mut Events) {
        if self.table.unroutable(i, now) {
            events.warn(format!(
                "server {} is not connected, marking it dead",
                self.table.endpoint(i)
            ));
        }
    }

    /// Pings every server that is due, and expires silent ones.
    fn tend(&mut self, now: Instant, out: &mut Outbox<NextRequest>, events: &mut Events) {
        for i in self.table.expire(now) {
            events.warn(format!(
                "server {} has not answered for {} ms, marking it dead",
                self.table.endpoint(i),
                self.config.server_ttl.as_millis()
            ));
        }
        for i in self.table.pings_due(now) {
            self.send_to(i, ClientMsg::Ping.encode(), out);
        }
        if self.table.any_alive() {
            self.last_alive = now;
        }
    }

    /// How long a request waits for a live server before it is abandoned.
    fn give_up_after(&self) -> Duration {
        self.config.server_ttl + self.config.timeout
    }

    /// Moves the current request on: its attempt timed out or failed (retry or abandon), or
    /// it waits for a server (dispatch, or give up once none has been alive for long).
    fn step(&mut self, now: Instant, out: &mut Outbox<NextRequest>, events: &mut Events) {
        if self.outcome.is_some() {
            return;
        }
        self.tend(now, out, events);
        let retries = self.config.retries.max(1);
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if pending.handing.is_some() {
            return;
        }
        // An attempt ends only by its timeout or a mismatched reply, never by a wake-up.
        let timed_out = pending.deadline.is_some_and(|d| now >= d);
        if let Some(reason) = pending.failed.take().or(timed_out.then_some("timeout")) {
            pending.deadline = None;
            if pending.attempts >= retries {
                self.abandon(out, events);
                return;
            }
            events.warn("no response from server, retrying…");
            events.emit(Event::Retry {
                seq: pending.seq,
                attempt: pending.attempts,
                reason: reason.into(),
            });
            self.report.retries += 1;
        }
        if pending.deadline.is_some() {
            return;
        }
        if let Some(i) = self.table.choose(&pending.tried) {
            pending.handing = Some(i);
            let request = ClientMsg::Request {
                control: flp::control_frame(pending.seq),
                body: Message::from_frames([pending.body.clone()]),
            };
            self.send_to(i, request.encode(), out);
            return;
        }
        // Waiting for a live server: give up once none has been alive for long.
        if now >= self.last_alive + self.give_up_after() {
            events.error(format!(
                "no server has answered for {} ms",
                self.give_up_after().as_millis()
            ));
            self.abandon(out, events);
        }
    }

    /// The attempt handed to server `i` went out (`routed`), or could not be handed over:
    /// that server is dead now and the next one is tried at no cost.
    fn handed(
        &mut self,
        i: usize,
        routed: bool,
        now: Instant,
        out: &mut Outbox<NextRequest>,
        events: &mut Events,
    ) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        pending.handing = None;
        if !routed {
            self.mark_unroutable(i, now, events);
            self.step(now, out, events);
            return;
        }
        pending.attempts += 1;
        pending.tried.push(i);
        pending.deadline = Some(now + self.config.timeout);
        self.report.sent += 1;
        if pending.attempts > 1 {
            events.info(format!("resending to {}", self.table.endpoint(i)));
        }
        events.emit(Event::Sent {
            seq: pending.seq,
            request: pending.request.clone(),
            attempt: pending.attempts,
        });
        self.table.used(i);
    }

    /// A message from the socket. Returns the reply if it answers the current request
    /// (between requests there is none, and every reply is late).
    fn receive(&mut self, msg: Message, now: Instant, events: &mut Events) -> Option<Vec<u8>> {
        let (server, reply) = match flp::split_peer(msg)
            .and_then(|(server, rest)| flp::decode_server_msg(rest).map(|r| (server, r)))
        {
            Ok(decoded) => decoded,
            Err(e) => {
                events.invalid("client", e.to_string());
                return None;
            }
        };
        let Some(i) = self.table.find(&server) else {
            events.invalid(
                "client",
                format!(
                    "message from unknown server {}",
                    String::from_utf8_lossy(&server)
                ),
            );
            return None;
        };
        if self.table.heard(i, now) {
            events.info(format!("server {} is alive", self.table.endpoint(i)));
        }
        let ServerMsg::Reply { control, body } = reply else {
            return None; // PONG: proof of life, already recorded
        };
        let endpoint = self.table.endpoint(i).to_string();
        let current = self.pending.as_ref().map(|p| p.seq);
        match flp::parse_control(&control) {
            Some(seq) if Some(seq) == current => {}
            // `requests` is the last sequence number handed out.
            Some(seq) if seq <= self.report.requests => {
                events.warn(format!(
                    "discarding a late reply to request #{seq} from {endpoint}"
                ));
                return None;
            }
            _ => {
                events.invalid(
                    "client",
                    format!(
                        "reply from {endpoint} with a control frame we never sent: {}",
                        crate::msg::frame_text(&control)
                    ),
                );
                return None;
            }
        }
        let pending = self.pending.as_mut()?;
        let text = body.text();
        if !self.config.check_echo || text == pending.request {
            return Some(body.joined());
        }
        self.report.mismatched += 1;
        events.emit(Event::Mismatch {
            seq: pending.seq,
            expected: pending.request.clone(),
            got: text.clone(),
        });
        events.error(format!("malformed reply from server: {text}"));
        if pending.deadline.is_some() {
            pending.failed = Some("mismatched reply");
        }
        None
    }

    /// The current request is answered: report it and read the next one.
    fn accept(
        &mut self,
        reply: Vec<u8>,
        now: Instant,
        out: &mut Outbox<NextRequest>,
        events: &mut Events,
    ) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let latency = now - pending.started;
        self.latency.record(latency);
        self.report.replied += 1;
        if self.config.check_echo {
            events.info(format!(
                "server replied OK ({})",
                String::from_utf8_lossy(&reply)
            ));
        }
        events.emit(Event::Reply {
            seq: pending.seq,
            request: pending.request,
            reply: reply.into(),
            attempts: pending.attempts,
            latency_ms: millis(latency),
        });
        out.start(NextRequest);
    }

    fn abandon(&mut self, out: &mut Outbox<NextRequest>, events: &mut Events) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        events.error("server seems to be offline, abandoning");
        self.report.abandoned += 1;
        events.emit(Event::Abandoned {
            seq: pending.seq,
            request: pending.request,
            attempts: pending.attempts,
        });
        self.outcome = Some(Outcome::Abandoned);
        out.exit();
    }
}

impl Machine for FreelanceClient {
    type Job = NextRequest;
    type Done = Option<Vec<u8>>;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: CLIENT,
            // Unroutable is dead now: a send to a server that is not connected fails at once.
            kind: SocketKind::MandatoryRouter,
            name: "client",
            bind: Vec::new(),
            connect: self.endpoints.clone(),
            identity: None,
        }]
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<NextRequest>, events: &mut Events) {
        for endpoint in &self.repeats {
            events.warn(format!(
                "{endpoint} is listed more than once; using it once"
            ));
        }
        events.emit(Event::started(
            "freelance client",
            self.endpoints.join(","),
            None,
        ));
        self.started = now;
        self.last_alive = now;
        self.tend(now, out, events);
        out.start(NextRequest);
    }

    fn handle(
        &mut self,
        input: Input<Option<Vec<u8>>>,
        now: Instant,
        out: &mut Outbox<NextRequest>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { msg, .. } => {
                if let Some(reply) = self.receive(msg, now, events) {
                    self.accept(reply, now, out, events);
                }
            }
            Input::Done(None) => {
                self.outcome = Some(Outcome::Completed);
                out.exit();
            }
            Input::Done(Some(body)) => {
                self.report.requests += 1;
                self.pending = Some(Pending {
                    seq: self.report.requests,
                    request: String::from_utf8_lossy(&body).into_owned(),
                    body,
                    started: now,
                    attempts: 0,
                    tried: Vec::new(),
                    handing: None,
                    deadline: None,
                    failed: None,
                });
                // A request waits for a live server for `give_up_after` from its arrival.
                self.last_alive = self.last_alive.max(now);
            }
        }
        self.step(now, out, events);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<NextRequest>, events: &mut Events) {
        self.step(now, out, events);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let waiting = self.pending.as_ref().and_then(|p| match p.deadline {
            Some(deadline) => Some(deadline),
            None if p.handing.is_none() => Some(self.last_alive + self.give_up_after()),
            None => None,
        });
        [self.table.next_due(), waiting].into_iter().flatten().min()
    }

    fn routed(
        &mut self,
        _slot: Slot,
        msg: &Message,
        routed: bool,
        now: Instant,
        out: &mut Outbox<NextRequest>,
        events: &mut Events,
    ) {
        let Some(i) = msg.get(0).and_then(|identity| self.table.find(identity)) else {
            return;
        };
        let handing = self.pending.as_ref().and_then(|p| p.handing);
        // `[server][PING]` is a ping; `[server][control][body]` the attempt being handed.
        if msg.len() > 2 && handing == Some(i) {
            self.handed(i, routed, now, out, events);
        } else if !routed {
            self.mark_unroutable(i, now, events);
        }
    }

    fn wants(&self, _slot: Slot) -> bool {
        self.outcome.is_none()
    }
}

/// Sends every request, one at a time, and reports each reply as an event, in request order,
/// until the requests end, one is abandoned or `stop` is raised. Returns the summary; its
/// outcome says which.
pub fn run_client<I>(
    config: &FreelanceClientConfig,
    requests: I,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report>
where
    I: IntoIterator,
    I::Item: Into<Vec<u8>>,
    I::IntoIter: Send + 'static,
{
    let mut client = FreelanceClient::new(config, Instant::now())?;
    // The adapter from the request iterator to jobs: one `next()` per job, on a work thread.
    let requests = Mutex::new(requests.into_iter());
    reactor::run(
        &mut client,
        move |_: NextRequest| {
            let mut requests = requests.lock().ok()?;
            requests.next().map(Into::into)
        },
        stop,
        events,
    )?;
    Ok(client.finish(Instant::now()))
}
