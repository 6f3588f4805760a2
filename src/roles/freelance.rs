//! `pirate server --freelance` and `pirate client --freelance`: the Freelance pattern (10/FLP),
//! reliable request-reply with no broker. Frame formats are in [`crate::proto::flp`].
//!
//! **Server.** One ROUTER socket whose identity is the server's public endpoint string
//! (derived from `--bind` with `*` read as `localhost`, or `--endpoint`), so that clients can
//! address it by the endpoint they connected to. It answers `PING` with `PONG` and a request
//! `[control][body…]` with `[control][reply…]`; malformed messages are counted and dropped.
//! Pings are not requests: they neither count as cycles nor draw faults. Crash and overload
//! faults are those of `pirate server`; an overloaded server answers nothing, pings included,
//! so its clients see it go quiet, as they would a real one.
//!
//! **Client.** One ROUTER socket connected to every server (each endpoint once: a server
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
use crate::event::{ClientReport, Event, Events, Outcome, Report, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, OnCrash};
use crate::handler::Handler;
use crate::heartbeat::Liveness;
use crate::msg::{Frame, Message};
use crate::proto::flp::{self, ClientMsg, ServerMsg};
use crate::reactor::{self, Due, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::stats::{millis, LatencyRecorder};

/// Everything `pirate server --freelance` needs.
#[derive(Clone, Debug)]
pub struct FreelanceServerConfig {
    /// Where to bind the ROUTER socket (Guide: `tcp://*:5555`).
    pub bind: String,
    /// The public endpoint clients connect to, which is also the socket's identity. Empty:
    /// derived from `bind` by [`public_endpoint`].
    pub endpoint: String,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl Default for FreelanceServerConfig {
    fn default() -> Self {
        FreelanceServerConfig {
            bind: "tcp://*:5555".into(),
            endpoint: String::new(),
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }
}

/// The endpoint clients use to reach a server bound on `bind`: `tcp://*:P` and
/// `tcp://0.0.0.0:P` become `tcp://localhost:P`; anything else is used as it is. Clients must
/// `--connect` to exactly this string, because it is how they address the server.
pub fn public_endpoint(bind: &str) -> String {
    for wildcard in ["tcp://*:", "tcp://0.0.0.0:"] {
        if let Some(port) = bind.strip_prefix(wildcard) {
            return format!("tcp://localhost:{port}");
        }
    }
    bind.to_string()
}

/// The server's identity, checked: ZeroMQ identities are 1 to 255 bytes, and an ephemeral port
/// (`:*`) cannot be known before binding, when the identity must already be set.
fn server_identity(config: &FreelanceServerConfig) -> Result<String> {
    let endpoint = if config.endpoint.is_empty() {
        public_endpoint(&config.bind)
    } else {
        config.endpoint.clone()
    };
    if endpoint.ends_with(":*") || endpoint.contains("://*") {
        return Err(Error::Usage(format!(
            "cannot derive a public endpoint from {endpoint} (a Freelance server's endpoint is \
             its identity; give a fixed port, or the address clients use with --endpoint)"
        )));
    }
    if endpoint.is_empty() || endpoint.len() > 255 {
        return Err(Error::Usage(format!(
            "the public endpoint must be 1 to 255 bytes long, got {} (shorten --endpoint)",
            endpoint.len()
        )));
    }
    Ok(endpoint)
}

/// The Freelance server's one socket.
const SERVER: Slot = 0;

/// A request for the handler, with what its reply needs: `[client][control][body…]`.
#[derive(Debug, PartialEq)]
pub struct ServerJob {
    pub client: Frame,
    pub control: Frame,
    pub body: Message,
}

/// The request being served.
struct Held {
    /// What its `Served` event will say.
    event: Serving,
    /// When the stall ends and the handler may run; taken once it runs.
    due: Due<ServerJob>,
}

/// The Freelance server's logic: PING answered at once, one request at a time, each stalled
/// by the fault plan before the handler runs on a work thread.
pub struct FreelanceServer {
    bind: String,
    endpoint: String,
    faults: Faults,
    report: ServiceReport,
    held: Option<Held>,
    /// Set once a crash was asked for: nothing more is read.
    crashed: bool,
}

impl FreelanceServer {
    /// The machine for `config`; a usage error when its endpoint cannot be an identity.
    pub fn new(config: &FreelanceServerConfig) -> Result<Self> {
        let endpoint = server_identity(config)?;
        Ok(FreelanceServer {
            bind: config.bind.clone(),
            faults: Faults::new(config.faults.clone(), config.seed),
            report: ServiceReport {
                endpoint: endpoint.clone(),
                seed: config.seed,
                ..Default::default()
            },
            endpoint,
            held: None,
            crashed: false,
        })
    }

    /// The counters so far.
    pub fn report(&self) -> &ServiceReport {
        &self.report
    }

    /// `[client][control][body…]` arrived: decide this cycle's fault and how long it stalls.
    fn request(
        &mut self,
        job: ServerJob,
        now: Instant,
        out: &mut Outbox<ServerJob>,
        events: &mut Events,
    ) {
        self.report.requests += 1;
        let decision = self
            .faults
            .decide(&mut self.report, OnCrash::Now, now, events);
        if decision.crash {
            self.crashed = true;
            out.crash();
            return;
        }
        // One request at a time and nothing read meanwhile: while it stalls PINGs wait too,
        // so a stalled (or frozen) server looks dead to its clients, as a real one would.
        self.held = Some(Held {
            event: Serving::new(decision.cycle, &job.body, now),
            due: Due::at(decision.due, job),
        });
        self.tick(now, out, events);
    }
}

impl Machine for FreelanceServer {
    type Job = ServerJob;
    /// The job with the handler's reply as its body.
    type Done = ServerJob;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: SERVER,
            kind: SocketKind::Router,
            name: "server",
            bind: vec![self.bind.clone()],
            connect: Vec::new(),
            // Clients address the server by the endpoint they connected to.
            identity: Some(self.endpoint.as_bytes().to_vec()),
        }]
    }

    fn start(&mut self, _now: Instant, _out: &mut Outbox<ServerJob>, events: &mut Events) {
        self.report =
            ServiceReport::start("freelance server", &self.endpoint, self.report.seed, events);
        if self.endpoint != self.bind {
            events.info(format!(
                "bound {}, clients connect to {}",
                self.bind, self.endpoint
            ));
        }
    }

    fn handle(
        &mut self,
        input: Input<ServerJob>,
        now: Instant,
        out: &mut Outbox<ServerJob>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { slot, msg } => {
                let decoded = flp::split_peer(msg).and_then(|(client, rest)| {
                    flp::decode_client_msg(rest).map(|request| (client, request))
                });
                match decoded {
                    Err(e) => {
                        self.report.invalid += 1;
                        events.invalid("server", e.to_string());
                    }
                    // Pings are not requests: no cycle, no fault.
                    Ok((client, ClientMsg::Ping)) => {
                        out.send(slot, flp::route(client, ServerMsg::Pong.encode()));
                    }
                    Ok((client, ClientMsg::Request { control, body })) => self.request(
                        ServerJob {
                            client,
                            control,
                            body,
                        },
                        now,
                        out,
                        events,
                    ),
                }
            }
            Input::Done(done) => {
                crate::handler::report_failures(&mut self.report, events);
                let Some(held) = self.held.take() else {
                    return;
                };
                let reply = ServerMsg::Reply {
                    control: done.control,
                    body: done.body,
                };
                // A client that went away meanwhile is simply not there: ROUTER drops it.
                out.send(SERVER, flp::route(done.client, reply.encode()));
                held.event.served_at(now, &mut self.report, events);
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<ServerJob>, _events: &mut Events) {
        if let Some(job) = self.held.as_mut().and_then(|h| h.due.take_if_due(now)) {
            out.start(job);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.held.as_ref()?.due.when()
    }

    fn wants(&self, _slot: Slot) -> bool {
        self.held.is_none() && !self.crashed
    }
}

/// Serves until `stop` is raised; returns the counters. Bind failures are errors.
pub fn run_server(
    config: &FreelanceServerConfig,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    let mut server = FreelanceServer::new(config)?;
    let handler = config.handler.clone();
    reactor::run(
        &mut server,
        move |job: ServerJob| ServerJob {
            body: handler.handle(job.body),
            ..job
        },
        stop,
        events,
    )?;
    Ok(Report::Service(server.report))
}

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
const CLIENT: Slot = 0;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::Output;
    use crate::transport;
    use std::collections::VecDeque;

    const MS: Duration = Duration::from_millis(1);

    fn table(n: usize, now: Instant) -> ServerTable {
        let endpoints: Vec<String> = (0..n).map(|i| format!("tcp://h:{i}")).collect();
        ServerTable::new(&endpoints, 100 * MS, 300 * MS, now)
    }

    /// `[client][frames…]`, as the server's ROUTER hands it over.
    fn from_client(frames: &[&[u8]]) -> Input<ServerJob> {
        Input::Message {
            slot: SERVER,
            msg: Message::from_frames(frames.iter().copied()),
        }
    }

    fn sent(frames: &[&[u8]]) -> Output<ServerJob> {
        Output::Send {
            slot: SERVER,
            msg: Message::from_frames(frames.iter().copied()),
        }
    }

    fn job(control: &[u8], body: &[u8]) -> ServerJob {
        ServerJob {
            client: b"C".to_vec(),
            control: control.to_vec(),
            body: Message::from_frames([body]),
        }
    }

    fn flp_server(faults: FaultPlan) -> FreelanceServer {
        FreelanceServer::new(&FreelanceServerConfig {
            bind: "tcp://*:5555".into(),
            faults,
            seed: 7,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn the_server_socket_is_a_router_named_by_its_public_endpoint() {
        let mut s = flp_server(FaultPlan::default());
        match &s.sockets()[..] {
            [spec] => {
                assert_eq!(spec.kind, SocketKind::Router);
                assert_eq!(spec.bind, ["tcp://*:5555"]);
                assert_eq!(spec.identity.as_deref(), Some(&b"tcp://localhost:5555"[..]));
            }
            other => panic!("{other:?}"),
        }
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        s.start(
            Instant::now(),
            &mut out,
            &mut Events::new(false, |e| seen.push(e)),
        );
        assert!(out.is_empty());
        assert!(matches!(
            &seen[..],
            [Event::Started { role, endpoint, seed: Some(7), .. }, ..]
                if role == "freelance server" && endpoint == "tcp://localhost:5555"
        ));
        let bad = FreelanceServer::new(&FreelanceServerConfig {
            bind: "tcp://127.0.0.1:*".into(),
            ..Default::default()
        });
        assert_eq!(bad.err().map(|e| e.exit_code()), Some(2));
    }

    #[test]
    fn the_server_answers_ping_with_pong_at_once_even_while_not_a_cycle() {
        let mut s = flp_server(FaultPlan {
            crash_after: Some(0),
            ..Default::default()
        });
        let (mut out, mut ev, t0) = (Outbox::default(), Events::discard(), Instant::now());
        for _ in 0..3 {
            s.handle(from_client(&[b"C", b"PING"]), t0, &mut out, &mut ev);
            assert_eq!(out.take(), [sent(&[b"C", b"PONG"])]);
        }
        assert_eq!(
            s.report().requests,
            0,
            "pings are no requests and draw no faults"
        );
        assert!(s.wants(SERVER));
    }

    #[test]
    fn the_server_echoes_control_and_reply_and_counts_it() {
        let mut s = flp_server(FaultPlan::default());
        let (mut out, mut seen, t0) = (Outbox::default(), Vec::new(), Instant::now());
        let mut ev = Events::new(false, |e| seen.push(e));
        s.handle(from_client(&[b"C", b"7", b"hi"]), t0, &mut out, &mut ev);
        assert_eq!(out.take(), [Output::Start(job(b"7", b"hi"))]);
        assert!(!s.wants(SERVER), "one request at a time, pings wait");
        s.handle(
            Input::Done(job(b"7", b"HI")),
            t0 + 3 * MS,
            &mut out,
            &mut ev,
        );
        assert_eq!(out.take(), [sent(&[b"C", b"7", b"HI"])]);
        assert!(s.wants(SERVER));
        drop(ev);
        assert_eq!((s.report().requests, s.report().replied), (1, 1));
        assert!(matches!(
            seen.last(),
            Some(Event::Served { cycle: 1, request, bytes: 2, .. }) if request == "hi"
        ));
    }

    #[test]
    fn the_server_counts_and_drops_malformed_messages_and_keeps_serving() {
        let mut s = flp_server(FaultPlan::default());
        let (mut out, mut ev, t0) = (Outbox::default(), Events::discard(), Instant::now());
        // No payload; a control frame without a body; an empty identity.
        s.handle(from_client(&[b"C"]), t0, &mut out, &mut ev);
        s.handle(from_client(&[b"C", b"7"]), t0, &mut out, &mut ev);
        s.handle(from_client(&[b"", b"PING"]), t0, &mut out, &mut ev);
        assert!(out.take().is_empty());
        assert_eq!((s.report().invalid, s.report().requests), (3, 0));
        s.handle(from_client(&[b"C", b"PING"]), t0, &mut out, &mut ev);
        assert_eq!(out.take(), [sent(&[b"C", b"PONG"])]);
    }

    #[test]
    fn the_server_stall_is_a_deadline_during_which_nothing_is_read() {
        let mut s = flp_server(FaultPlan {
            work: 100 * MS,
            overload_rate: 1.0,
            overload_for: 400 * MS,
            faults_after: 0,
            ..Default::default()
        });
        let (mut out, mut ev, t0) = (Outbox::default(), Events::discard(), Instant::now());
        s.handle(from_client(&[b"C", b"1", b"x"]), t0, &mut out, &mut ev);
        assert!(out.take().is_empty());
        assert_eq!(s.report().overloads, 1);
        assert_eq!(s.next_deadline(), Some(t0 + 500 * MS));
        assert!(
            !s.wants(SERVER),
            "an overloaded server answers nothing, pings included"
        );
        s.tick(t0 + 499 * MS, &mut out, &mut ev);
        assert!(out.take().is_empty());
        s.tick(t0 + 500 * MS, &mut out, &mut ev);
        assert_eq!(out.take(), [Output::Start(job(b"1", b"x"))]);
        assert_eq!(s.next_deadline(), None);
        assert!(!s.wants(SERVER), "still busy until the handler answers");
    }

    #[test]
    fn the_server_crash_is_an_output_and_nothing_more_is_read() {
        let mut s = flp_server(FaultPlan {
            crash_after: Some(1),
            ..Default::default()
        });
        let (mut out, mut ev, t0) = (Outbox::default(), Events::discard(), Instant::now());
        s.handle(from_client(&[b"C", b"1", b"x"]), t0, &mut out, &mut ev);
        s.handle(Input::Done(job(b"1", b"x")), t0, &mut out, &mut ev);
        out.take();
        s.handle(from_client(&[b"C", b"2", b"y"]), t0, &mut out, &mut ev);
        assert_eq!(out.take(), [Output::Crash]);
        assert!(!s.wants(SERVER));
    }

    // The client, with a fake clock and a fake reactor.

    fn ep(i: usize) -> String {
        format!("tcp://h:{i}")
    }

    fn flp_client(n: usize, t0: Instant) -> FreelanceClient {
        let mut endpoints: Vec<String> = (0..n).map(ep).collect();
        endpoints.push(ep(0)); // listed twice: used once
        FreelanceClient::new(
            &FreelanceClientConfig {
                endpoints,
                timeout: 200 * MS,
                ping_interval: 100 * MS,
                server_ttl: 300 * MS,
                retries: 3,
                check_echo: true,
            },
            t0,
        )
        .unwrap()
    }

    /// What the reactor would do with `out`: each send on the client socket goes out when
    /// its server is in `up` (else it is unroutable), and the machine hears of it at once.
    /// Returns the frames that went out, and the other outputs (jobs, exit).
    fn carry(
        c: &mut FreelanceClient,
        out: &mut Outbox<NextRequest>,
        now: Instant,
        up: &[usize],
        ev: &mut Events,
    ) -> (Vec<Vec<Vec<u8>>>, Vec<Output<NextRequest>>) {
        let (mut wire, mut other) = (Vec::new(), Vec::new());
        let mut todo: VecDeque<_> = out.take().into();
        while let Some(o) = todo.pop_front() {
            match o {
                Output::Send { slot, msg } => {
                    let ok = up.iter().any(|&i| msg.get(0) == Some(ep(i).as_bytes()));
                    let mut more = Outbox::default();
                    c.routed(slot, &msg, ok, now, &mut more, ev);
                    if ok {
                        wire.push(msg.iter().map(<[u8]>::to_vec).collect());
                    }
                    for o in more.take().into_iter().rev() {
                        todo.push_front(o);
                    }
                }
                o => other.push(o),
            }
        }
        (wire, other)
    }

    fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    fn ping(i: usize) -> Vec<Vec<u8>> {
        frames(&[ep(i).as_bytes(), b"PING"])
    }

    fn attempt(i: usize, seq: u64, body: &str) -> Vec<Vec<u8>> {
        frames(&[ep(i).as_bytes(), &flp::control_frame(seq), body.as_bytes()])
    }

    fn from_server(parts: &[&[u8]]) -> Input<Option<Vec<u8>>> {
        Input::Message {
            slot: CLIENT,
            msg: Message::from_frames(parts.iter().copied()),
        }
    }

    fn pong(i: usize) -> Input<Option<Vec<u8>>> {
        from_server(&[ep(i).as_bytes(), b"PONG"])
    }

    fn reply(i: usize, seq: u64, body: &str) -> Input<Option<Vec<u8>>> {
        from_server(&[ep(i).as_bytes(), &flp::control_frame(seq), body.as_bytes()])
    }

    /// A client of `n` servers, started at `t0`, all of which answered their first ping.
    fn live_client(n: usize, t0: Instant, ev: &mut Events) -> FreelanceClient {
        let mut c = flp_client(n, t0);
        let mut out = Outbox::default();
        c.start(t0, &mut out, ev);
        carry(&mut c, &mut out, t0, &(0..n).collect::<Vec<_>>(), ev);
        for i in 0..n {
            c.handle(pong(i), t0, &mut out, ev);
        }
        assert!(out.is_empty(), "a PONG asks for nothing");
        c
    }

    #[test]
    fn the_client_starts_by_pinging_every_distinct_server_and_reading_a_request() {
        let t0 = Instant::now();
        let mut c = flp_client(2, t0);
        match &c.sockets()[..] {
            [spec] => {
                assert_eq!(spec.kind, SocketKind::MandatoryRouter);
                assert_eq!(
                    spec.connect,
                    [ep(0), ep(1)],
                    "a duplicate is connected once"
                );
            }
            other => panic!("{other:?}"),
        }
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        let mut ev = Events::new(false, |e| seen.push(e));
        c.start(t0, &mut out, &mut ev);
        let (wire, other) = carry(&mut c, &mut out, t0, &[0, 1], &mut ev);
        assert_eq!(wire, [ping(0), ping(1)]);
        assert_eq!(other, [Output::Start(NextRequest)]);
        drop(ev);
        assert!(seen
            .iter()
            .any(|e| matches!(e, Event::Started { role, endpoint, .. }
            if role == "freelance client" && endpoint == "tcp://h:0,tcp://h:1")));
        assert!(FreelanceClient::new(
            &FreelanceClientConfig {
                endpoints: Vec::new(),
                ..Default::default()
            },
            t0
        )
        .is_err());
    }

    #[test]
    fn the_client_pings_on_schedule_and_a_pong_postpones_the_next_ping() {
        let t0 = Instant::now();
        let mut ev = Events::discard();
        let mut c = flp_client(2, t0);
        let mut out = Outbox::default();
        c.start(t0, &mut out, &mut ev);
        carry(&mut c, &mut out, t0, &[0, 1], &mut ev);
        assert_eq!(c.next_deadline(), Some(t0 + 100 * MS));
        c.handle(pong(0), t0 + 60 * MS, &mut out, &mut ev);
        c.tick(t0 + 100 * MS, &mut out, &mut ev);
        let (wire, _) = carry(&mut c, &mut out, t0 + 100 * MS, &[0, 1], &mut ev);
        assert_eq!(
            wire,
            [ping(1)],
            "server 0 spoke at 60 ms: its ping is due at 160 ms"
        );
        assert_eq!(c.next_deadline(), Some(t0 + 160 * MS));
        c.tick(t0 + 160 * MS, &mut out, &mut ev);
        let (wire, _) = carry(&mut c, &mut out, t0 + 160 * MS, &[0, 1], &mut ev);
        assert_eq!(wire, [ping(0)]);
    }

    #[test]
    fn the_client_sends_round_robin_over_live_servers_in_request_order() {
        let t0 = Instant::now();
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        let mut ev = Events::new(false, |e| seen.push(e));
        let mut c = live_client(3, t0, &mut ev);
        let mut went = Vec::new();
        for (k, word) in ["a", "b", "c", "d"].iter().enumerate() {
            let seq = k as u64 + 1;
            let now = t0 + (k as u32) * MS;
            c.handle(
                Input::Done(Some(word.as_bytes().to_vec())),
                now,
                &mut out,
                &mut ev,
            );
            let (wire, _) = carry(&mut c, &mut out, now, &[0, 1, 2], &mut ev);
            let i = (0..3)
                .find(|&i| wire == [attempt(i, seq, word)])
                .expect("one attempt");
            went.push(i);
            c.handle(reply(i, seq, word), now, &mut out, &mut ev);
            let (_, other) = carry(&mut c, &mut out, now, &[0, 1, 2], &mut ev);
            assert_eq!(other, [Output::Start(NextRequest)], "then the next request");
        }
        assert_eq!(went, [0, 1, 2, 0]);
        c.handle(Input::Done(None), t0 + 10 * MS, &mut out, &mut ev);
        assert!(out.take().contains(&Output::Exit));
        drop(ev);
        let replies: Vec<u64> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Reply {
                    seq, attempts: 1, ..
                } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(replies, [1, 2, 3, 4]);
        let (sent, replied) = (c.report().sent, c.report().replied);
        assert_eq!((sent, replied), (4, 4));
        match c.finish(t0 + 10 * MS) {
            Report::Client(r) => assert_eq!(r.outcome, Outcome::Completed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_attempt_that_times_out_is_retried_elsewhere_and_never_before() {
        let t0 = Instant::now();
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        let mut ev = Events::new(false, |e| seen.push(e));
        let mut c = live_client(2, t0, &mut ev);
        c.handle(Input::Done(Some("x".into())), t0, &mut out, &mut ev);
        let (wire, _) = carry(&mut c, &mut out, t0, &[0, 1], &mut ev);
        assert_eq!(wire, [attempt(0, 1, "x")]);
        // A wake-up before the timeout (a ping due) does not resend.
        c.tick(t0 + 100 * MS, &mut out, &mut ev);
        let (wire, _) = carry(&mut c, &mut out, t0 + 100 * MS, &[0, 1], &mut ev);
        assert_eq!(wire, [ping(0), ping(1)]);
        c.handle(pong(1), t0 + 150 * MS, &mut out, &mut ev);
        c.tick(t0 + 200 * MS, &mut out, &mut ev);
        let (wire, _) = carry(&mut c, &mut out, t0 + 200 * MS, &[0, 1], &mut ev);
        // Server 0 did not answer its ping at 100 ms: pinged again; the retry goes to 1.
        assert_eq!(wire, [ping(0), attempt(1, 1, "x")]);
        c.handle(reply(1, 1, "x"), t0 + 210 * MS, &mut out, &mut ev);
        drop(ev);
        assert!(seen.iter().any(|e| matches!(e,
            Event::Retry { seq: 1, attempt: 1, reason } if reason == "timeout")));
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::Reply {
                seq: 1,
                attempts: 2,
                ..
            }
        )));
        assert_eq!(c.report().retries, 1);
    }

    #[test]
    fn a_late_reply_is_never_counted_for_a_later_request() {
        let t0 = Instant::now();
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        let mut ev = Events::new(false, |e| seen.push(e));
        let mut c = live_client(2, t0, &mut ev);
        c.handle(Input::Done(Some("same".into())), t0, &mut out, &mut ev);
        carry(&mut c, &mut out, t0, &[0, 1], &mut ev);
        c.tick(t0 + 200 * MS, &mut out, &mut ev); // times out on server 0, goes to 1
        carry(&mut c, &mut out, t0 + 200 * MS, &[0, 1], &mut ev);
        c.handle(reply(1, 1, "same"), t0 + 210 * MS, &mut out, &mut ev);
        carry(&mut c, &mut out, t0 + 210 * MS, &[0, 1], &mut ev);
        c.handle(
            Input::Done(Some("same".into())),
            t0 + 220 * MS,
            &mut out,
            &mut ev,
        );
        carry(&mut c, &mut out, t0 + 220 * MS, &[0, 1], &mut ev);
        // Server 0's answer to request 1 arrives while request 2 waits: same body, wrong
        // control frame: discarded.
        c.handle(reply(0, 1, "same"), t0 + 230 * MS, &mut out, &mut ev);
        assert!(carry(&mut c, &mut out, t0 + 230 * MS, &[0, 1], &mut ev)
            .1
            .is_empty());
        // A control frame never sent is malformed, not late.
        c.handle(reply(0, 9, "same"), t0 + 231 * MS, &mut out, &mut ev);
        c.handle(
            from_server(&[b"tcp://h:7", b"PONG"]),
            t0 + 232 * MS,
            &mut out,
            &mut ev,
        );
        assert_eq!(c.report().replied, 1);
        c.handle(reply(0, 2, "same"), t0 + 240 * MS, &mut out, &mut ev);
        assert_eq!(c.report().replied, 2);
        drop(ev);
        let replies: Vec<(u64, u32)> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Reply { seq, attempts, .. } => Some((*seq, *attempts)),
                _ => None,
            })
            .collect();
        assert_eq!(replies, [(1, 2), (2, 1)]);
        let invalid = seen
            .iter()
            .filter(|e| matches!(e, Event::Invalid { .. }))
            .count();
        assert_eq!(
            invalid, 2,
            "the unknown control frame and the unknown server"
        );
    }

    #[test]
    fn an_unroutable_server_is_dead_at_once_and_costs_no_attempt() {
        let t0 = Instant::now();
        let (mut out, mut ev) = (Outbox::default(), Events::discard());
        let mut c = live_client(2, t0, &mut ev);
        c.handle(Input::Done(Some("x".into())), t0, &mut out, &mut ev);
        // Server 0 went away: the request is handed to server 1 in the same breath.
        let (wire, _) = carry(&mut c, &mut out, t0, &[1], &mut ev);
        assert_eq!(wire, [attempt(1, 1, "x")]);
        assert_eq!(c.report().sent, 1);
        c.handle(reply(1, 1, "x"), t0 + MS, &mut out, &mut ev);
        assert_eq!(c.report().replied, 1);
        // And its ping is tried again soon, not a whole interval later.
        assert_eq!(c.next_deadline(), Some(t0 + UNROUTABLE_RETRY));
    }

    /// Runs `c` from deadline to deadline until it exits; servers in `answering` answer
    /// every ping. Returns when it exited.
    fn run_to_exit(
        c: &mut FreelanceClient,
        t0: Instant,
        answering: &[usize],
        ev: &mut Events,
    ) -> Instant {
        let mut out = Outbox::default();
        let mut now = t0;
        for _ in 0..100 {
            now = c.next_deadline().expect("a deadline while running");
            c.tick(now, &mut out, ev);
            let (wire, other) = carry(c, &mut out, now, &[0, 1], ev);
            if other.contains(&Output::Exit) {
                assert_eq!(c.next_deadline(), None);
                return now;
            }
            for &i in answering {
                if wire.contains(&ping(i)) {
                    c.handle(pong(i), now, &mut out, ev);
                }
            }
        }
        panic!("still running at {:?}", now - t0);
    }

    #[test]
    fn a_request_is_abandoned_after_its_attempts() {
        let t0 = Instant::now();
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        let mut ev = Events::new(false, |e| seen.push(e));
        let mut c = live_client(1, t0, &mut ev);
        c.handle(Input::Done(Some("x".into())), t0, &mut out, &mut ev);
        carry(&mut c, &mut out, t0, &[0], &mut ev);
        // The server answers pings but never the request: three attempts of 200 ms.
        let ended = run_to_exit(&mut c, t0, &[0], &mut ev);
        assert_eq!(ended, t0 + 600 * MS);
        assert_eq!((c.report().sent, c.report().retries), (3, 2));
        drop(ev);
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::Abandoned {
                seq: 1,
                attempts: 3,
                ..
            }
        )));
        match c.finish(ended) {
            // Abandoned is what the binary turns into exit 69.
            Report::Client(r) => assert_eq!(r.outcome, Outcome::Abandoned),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_server_expires_and_then_the_request_is_abandoned() {
        let t0 = Instant::now();
        let (mut out, mut seen) = (Outbox::default(), Vec::new());
        let mut ev = Events::new(false, |e| seen.push(e));
        let mut c = live_client(1, t0, &mut ev);
        c.handle(Input::Done(Some("x".into())), t0, &mut out, &mut ev);
        carry(&mut c, &mut out, t0, &[0], &mut ev);
        // Nothing answers: attempts at 0 and 200 ms; the server dies at 300 ms (ttl), so the
        // third attempt waits for a live server, for ttl + timeout after the last one was.
        let ended = run_to_exit(&mut c, t0, &[], &mut ev);
        assert_eq!(ended, t0 + 700 * MS);
        assert_eq!(c.report().sent, 2);
        drop(ev);
        assert!(
            seen.iter().any(|e| matches!(e, Event::Log { message, .. }
                if message.contains("has not answered for 300 ms"))),
            "the expiry is said"
        );
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::Abandoned {
                seq: 1,
                attempts: 2,
                ..
            }
        )));
        match c.finish(ended) {
            Report::Client(r) => assert_eq!(r.outcome, Outcome::Abandoned),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_no_server_alive_a_request_gives_up_after_ttl_plus_timeout() {
        let t0 = Instant::now();
        let (mut out, mut ev) = (Outbox::default(), Events::discard());
        let mut c = flp_client(2, t0);
        c.start(t0, &mut out, &mut ev);
        carry(&mut c, &mut out, t0, &[], &mut ev);
        let arrived = t0 + 1000 * MS;
        c.handle(Input::Done(Some("x".into())), arrived, &mut out, &mut ev);
        assert!(carry(&mut c, &mut out, arrived, &[], &mut ev).0.is_empty());
        // Counted from the request's arrival: it gets the whole ttl + timeout.
        c.tick(arrived + 499 * MS, &mut out, &mut ev);
        assert!(!carry(&mut c, &mut out, arrived, &[], &mut ev)
            .1
            .contains(&Output::Exit));
        c.tick(arrived + 500 * MS, &mut out, &mut ev);
        let (_, other) = carry(&mut c, &mut out, arrived + 500 * MS, &[], &mut ev);
        assert!(other.contains(&Output::Exit));
        assert_eq!((c.report().sent, c.report().abandoned), (0, 1));
    }

    #[test]
    fn a_mismatched_reply_ends_the_attempt_at_once() {
        let t0 = Instant::now();
        let (mut out, mut ev) = (Outbox::default(), Events::discard());
        let mut c = live_client(2, t0, &mut ev);
        c.handle(Input::Done(Some("x".into())), t0, &mut out, &mut ev);
        carry(&mut c, &mut out, t0, &[0, 1], &mut ev);
        c.handle(reply(0, 1, "y"), t0 + MS, &mut out, &mut ev);
        let (wire, _) = carry(&mut c, &mut out, t0 + MS, &[0, 1], &mut ev);
        assert_eq!(wire, [attempt(1, 1, "x")]);
        assert_eq!((c.report().mismatched, c.report().retries), (1, 1));
    }

    #[test]
    fn public_endpoint_reads_wildcards_as_localhost() {
        assert_eq!(public_endpoint("tcp://*:5555"), "tcp://localhost:5555");
        assert_eq!(public_endpoint("tcp://0.0.0.0:7"), "tcp://localhost:7");
        assert_eq!(public_endpoint("tcp://127.0.0.1:9"), "tcp://127.0.0.1:9");
        assert_eq!(public_endpoint("ipc:///tmp/x"), "ipc:///tmp/x");
    }

    #[test]
    fn server_identity_refuses_what_cannot_be_an_identity() {
        let with = |bind: &str, endpoint: &str| FreelanceServerConfig {
            bind: bind.into(),
            endpoint: endpoint.into(),
            ..Default::default()
        };
        assert_eq!(
            server_identity(&with("tcp://*:5555", "")).unwrap(),
            "tcp://localhost:5555"
        );
        assert_eq!(
            server_identity(&with("tcp://*:5555", "tcp://box:1")).unwrap(),
            "tcp://box:1"
        );
        let err = server_identity(&with("tcp://127.0.0.1:*", "")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--endpoint"), "{err}");
        assert!(server_identity(&with("tcp://*:*", "")).is_err());
        assert!(server_identity(&with("tcp://*:1", &"x".repeat(256))).is_err());
    }

    #[test]
    fn dedupe_keeps_first_seen_order_and_reports_repeats() {
        let e = |s: &str| s.to_string();
        let (unique, repeats) = dedupe(&[e("a"), e("b"), e("a"), e("c"), e("b"), e("a")]);
        assert_eq!(unique, vec![e("a"), e("b"), e("c")]);
        assert_eq!(repeats, vec![e("a"), e("b"), e("a")]);
        let t = ServerTable::new(&[e("a"), e("a")], 100 * MS, 300 * MS, Instant::now());
        assert_eq!(t.servers().len(), 1, "a server listed twice is one server");
    }

    #[test]
    fn servers_start_dead_and_due_a_ping() {
        let now = Instant::now();
        let mut t = table(3, now);
        assert!(!t.any_alive());
        assert_eq!(t.choose(&[]), None);
        assert_eq!(t.pings_due(now), vec![0, 1, 2]);
        assert_eq!(t.pings_due(now + 50 * MS), Vec::<usize>::new());
        assert_eq!(t.pings_due(now + 100 * MS), vec![0, 1, 2]);
    }

    #[test]
    fn a_server_that_speaks_is_alive_until_ttl_then_dead() {
        let now = Instant::now();
        let mut t = table(2, now);
        assert!(t.heard(1, now), "first word: it came alive");
        assert!(!t.heard(1, now + 10 * MS), "already alive");
        assert_eq!(t.choose(&[]), Some(1));
        assert_eq!(t.expire(now + 309 * MS), Vec::<usize>::new());
        assert_eq!(t.expire(now + 310 * MS), vec![1]);
        assert_eq!(t.expire(now + 400 * MS), Vec::<usize>::new(), "dies once");
        assert!(!t.any_alive());
        assert!(
            t.heard(1, now + 500 * MS),
            "a dead server that answers is back"
        );
    }

    #[test]
    fn speaking_postpones_the_next_ping() {
        let now = Instant::now();
        let mut t = table(1, now);
        t.pings_due(now);
        t.heard(0, now + 90 * MS);
        assert!(t.pings_due(now + 100 * MS).is_empty());
        assert_eq!(t.pings_due(now + 190 * MS), vec![0]);
    }

    #[test]
    fn dead_servers_keep_being_pinged() {
        let now = Instant::now();
        let mut t = table(1, now);
        t.heard(0, now);
        t.expire(now + 300 * MS);
        assert!(!t.any_alive());
        let mut pinged = 0;
        for k in 0..10u32 {
            pinged += t.pings_due(now + 300 * MS + k * 100 * MS).len();
        }
        assert_eq!(pinged, 10);
    }

    #[test]
    fn an_unroutable_server_is_dead_at_once_and_retried_soon() {
        let now = Instant::now();
        let mut t = table(2, now);
        t.heard(0, now);
        t.heard(1, now);
        assert!(t.unroutable(0, now), "it was alive");
        assert!(!t.unroutable(0, now), "already dead");
        assert_eq!(t.choose(&[]), Some(1));
        assert_eq!(t.pings_due(now + UNROUTABLE_RETRY), vec![0]);
    }

    #[test]
    fn choose_prefers_untried_then_least_recently_used() {
        let now = Instant::now();
        let mut t = table(3, now);
        for i in 0..3 {
            t.heard(i, now);
        }
        // Round robin across requests: least recently used first.
        let mut order = Vec::new();
        for _ in 0..6 {
            let i = t.choose(&[]).unwrap();
            t.used(i);
            order.push(i);
        }
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        // Within a request, a retry goes to a server it has not been to yet, even if that one
        // was used more recently.
        t.used(1);
        assert_eq!(t.choose(&[0, 2]), Some(1));
        // All tried: the least recently used live one (0 was used 4th, 2 6th, 1 last).
        assert_eq!(t.choose(&[0, 1, 2]), Some(0));
        // Dead servers are never chosen, tried or not.
        t.unroutable(2, now);
        t.unroutable(1, now);
        assert_eq!(t.choose(&[0]), Some(0), "the only live one, again");
        t.unroutable(0, now);
        assert_eq!(t.choose(&[]), None);
    }

    #[test]
    fn next_due_is_the_earliest_ping_or_expiry() {
        let now = Instant::now();
        let mut t = table(2, now);
        assert_eq!(t.next_due(), Some(now));
        t.pings_due(now);
        assert_eq!(t.next_due(), Some(now + 100 * MS));
        t.heard(0, now + 50 * MS);
        // server 1's ping (now+100) is before server 0's (now+150) and expiry (now+350).
        assert_eq!(t.next_due(), Some(now + 100 * MS));
        t.pings_due(now + 100 * MS);
        assert_eq!(t.next_due(), Some(now + 150 * MS));
    }

    #[test]
    fn find_matches_identities_exactly() {
        let t = table(2, Instant::now());
        assert_eq!(t.find(b"tcp://h:1"), Some(1));
        assert_eq!(t.find(b"tcp://h:1 "), None);
        assert_eq!(t.find(b""), None);
    }

    #[test]
    fn one_client_two_servers_in_process() {
        // Wire-level check of the design against real sockets, without the binary: identities,
        // ping/pong, a request answered once.
        // Plain ZeroMQ sockets on the process's context, set up as the reactor sets up a
        // Freelance server's ROUTER (its endpoint as identity) and a MandatoryRouter client.
        let ctx = transport::context();
        let router = |identity: Option<&[u8]>| {
            let socket = ctx.socket(zmq::ROUTER).unwrap();
            socket.set_linger(0).unwrap();
            socket.set_rcvtimeo(1000).unwrap();
            if let Some(identity) = identity {
                socket.set_identity(identity).unwrap();
            }
            socket
        };
        let recv = |socket: &zmq::Socket| Message::from(socket.recv_multipart(0).unwrap());
        let server = router(Some(b"inproc://flp-a"));
        server.bind("inproc://flp-a").unwrap();
        let client = router(None);
        client.set_router_mandatory(true).unwrap();
        client.connect("inproc://flp-a").unwrap();
        let ping = flp::route(b"inproc://flp-a".to_vec(), ClientMsg::Ping.encode());
        client.send_multipart(ping.into_frames(), 0).unwrap();
        let (peer, rest) = flp::split_peer(recv(&server)).unwrap();
        assert_eq!(flp::decode_client_msg(rest), Ok(ClientMsg::Ping));
        let pong = flp::route(peer, ServerMsg::Pong.encode());
        server.send_multipart(pong.into_frames(), 0).unwrap();
        let (from, rest) = flp::split_peer(recv(&client)).unwrap();
        assert_eq!(from, b"inproc://flp-a");
        assert_eq!(flp::decode_server_msg(rest), Ok(ServerMsg::Pong));
        // A server nobody connected to is unroutable, not a silent drop.
        let err = client
            .send_multipart(
                [b"inproc://nobody".to_vec(), b"PING".to_vec()],
                zmq::DONTWAIT,
            )
            .unwrap_err();
        assert_eq!(err, zmq::Error::EHOSTUNREACH);
    }
}
