//! Events and reports: what roles say while they run, as plain data the binary renders as
//! human lines on stderr, replies on stdout, or JSON Lines (`--json`).
//!
//! JSON field names are part of the interface (documented in the README): add fields, never
//! rename them.
//!
//! The reports of the roles and tools above are this layer's too, so events need nothing from
//! above: a chaos run's report and the checker's verdict it carries ([`chaos`], [`verdict`]),
//! `pirate bench`'s record ([`bench`](mod@bench)) and what `pirate titanic --check` found in
//! a store ([`store`]). The modules above fill them, the binary renders them.

pub mod bench;
pub mod chaos;
pub mod store;
#[cfg(test)]
mod tests;
pub mod verdict;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::msg::Message;

use crate::connections::RefusedConnections;
use crate::stats::{millis, Latency};
use bench::BenchReport;
use chaos::{ChaosReport, ProcessStatus};

/// A body as it went over the wire: bytes, not necessarily UTF-8. stdout gets the bytes
/// unchanged; JSON (and a human line) shows them as text, with each invalid UTF-8 sequence
/// as U+FFFD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body(pub Vec<u8>);

impl Body {
    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body(text.into_bytes())
    }
}

impl PartialEq<str> for Body {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// In JSON a body is a string (see [`Body`]).
impl JsonSchema for Body {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Body".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "The body's bytes as text, each invalid UTF-8 sequence as U+FFFD."
        })
    }
}

/// Severity of a human log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Which way a traced message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// A kind of injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Crash,
    Overload,
    Freeze,
}

/// How a client run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every request got its reply.
    Completed,
    /// A request got no reply after every retry; the run stopped there.
    Abandoned,
    /// As `Abandoned`, and the broker answered `mmi.service` 404: it is up, but no worker
    /// serves the service.
    NoService,
    /// The peer answered in another protocol: a Majordomo broker answered a bare request, or
    /// something echoed a Majordomo client's `mmi.*` question back. Nothing was retried.
    WrongProtocol,
    /// The server refused our PLAIN or CURVE login (its socket monitor said so): the run
    /// stopped at the first timeout after the refusal.
    AuthRefused,
    /// Ctrl-C or SIGTERM stopped the run.
    Interrupted,
}

impl Outcome {
    /// Its name as the JSON says it (`no_service`), with spaces for people (`no service`).
    pub fn words(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default()
    }
}

/// Final counters of a client run.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ClientReport {
    pub endpoint: String,
    pub outcome: Outcome,
    /// Distinct requests started.
    pub requests: u64,
    /// Request messages sent, resends included.
    pub sent: u64,
    pub replied: u64,
    pub retries: u64,
    pub reconnects: u64,
    pub abandoned: u64,
    /// Replies received but never accepted as an answer: for another request (a request id
    /// that is not the one in flight: a stale copy, a duplicate, a late reply), malformed,
    /// or (`--count`) not equal to their request.
    pub mismatched: u64,
    pub elapsed_ms: f64,
    /// Replies accepted per second over the run (`replied` / elapsed): the throughput.
    pub req_per_s: f64,
    pub latency_ms: Latency,
}

impl ClientReport {
    /// Fills in the run's timing: elapsed time, throughput and latency percentiles.
    pub fn timed(&mut self, elapsed: Duration, latency: Latency) {
        self.elapsed_ms = millis(elapsed);
        let secs = elapsed.as_secs_f64();
        self.req_per_s = if secs > 0.0 {
            self.replied as f64 / secs
        } else {
            0.0
        };
        self.latency_ms = latency;
    }

    /// A client run against `endpoint` that has not sent anything yet.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientReport {
            endpoint: endpoint.into(),
            outcome: Outcome::Completed,
            requests: 0,
            sent: 0,
            replied: 0,
            retries: 0,
            reconnects: 0,
            abandoned: 0,
            mismatched: 0,
            elapsed_ms: 0.0,
            req_per_s: 0.0,
            latency_ms: Latency::default(),
        }
    }
}

/// Final counters of a server or worker.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ServiceReport {
    pub endpoint: String,
    pub seed: u64,
    /// Requests received (cycles).
    pub requests: u64,
    pub replied: u64,
    pub overloads: u64,
    pub freezes: u64,
    /// Messages that did not follow the protocol, dropped.
    pub invalid: u64,
    pub reconnects: u64,
    /// `--exec` commands that failed (exited non-zero, were killed, timed out, could not
    /// start): each logged as a `W:` line, and answered with an `error:` line.
    pub exec_failed: u64,
    /// Workers only: requests a queue handed a session while it was busy (the Guide's ppqueue
    /// does, trap 7), served after the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_while_busy: Option<u64>,
    /// Workers only: the most requests worked on at once (up to `--concurrency`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_max: Option<u64>,
    /// Connections its bound sockets refused, by reason (`--max-connections`…): present on
    /// roles that bound a TCP socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_refused: Option<RefusedConnections>,
}

impl ServiceReport {
    /// A server or worker at `endpoint` drawing its faults from `seed` starts: emits `Started`
    /// (as `role`) and returns its empty report.
    pub fn start(role: impl Into<String>, endpoint: &str, seed: u64, events: &mut Events) -> Self {
        events.emit(Event::started(
            role.into(),
            endpoint.to_string(),
            Some(seed),
        ));
        ServiceReport {
            endpoint: endpoint.to_string(),
            seed,
            ..Default::default()
        }
    }

    /// The final report once the serving loop `ended`: a stop request is how a service ends
    /// normally (the partial counters are its summary); any other error is the role's.
    pub fn finish(self, ended: Result<()>) -> Result<Report> {
        match ended {
            Ok(()) | Err(Error::Interrupted) => Ok(Report::Service(self)),
            Err(e) => Err(e),
        }
    }
}

/// One request being served, as its `Served` event will describe it: taken before the handler
/// consumes the body, finished by [`Serving::served`] once the reply went out.
#[derive(Clone, Debug)]
pub struct Serving {
    cycle: u64,
    request: String,
    bytes: usize,
    started: Instant,
}

impl Serving {
    /// Request cycle `cycle` with this `body`, whose work started at `started`.
    pub fn new(cycle: u64, body: &Message, started: Instant) -> Self {
        Serving {
            cycle,
            request: body.preview(),
            bytes: body.iter().map(<[u8]>::len).sum(),
            started,
        }
    }

    /// The reply went out: counts it in `report` and emits `Served`.
    pub fn served(&self, report: &mut ServiceReport, events: &mut Events) {
        report.replied += 1;
        events.emit(self.event());
    }

    /// The reply went out at `now` (machines, which are given the time): counts it in
    /// `report` and emits `Served`.
    pub fn served_at(&self, now: Instant, report: &mut ServiceReport, events: &mut Events) {
        report.replied += 1;
        events.emit(self.event_at(now));
    }

    /// The `Served` event, with the work time until now.
    pub fn event(&self) -> Event {
        self.event_at(Instant::now())
    }

    /// The `Served` event, with the work time until `now`.
    pub fn event_at(&self, now: Instant) -> Event {
        Event::Served {
            cycle: self.cycle,
            request: self.request.clone(),
            bytes: self.bytes,
            work_ms: millis(now.saturating_duration_since(self.started)),
        }
    }
}

/// Final counters of a queue or broker.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct BrokerReport {
    pub frontend: String,
    pub backend: String,
    /// Requests handed to a worker.
    pub routed: u64,
    /// Replies handed back to a client.
    pub replied: u64,
    pub workers_seen: u64,
    pub workers_expired: u64,
    /// Workers forgotten for holding a request past `--busy-timeout`.
    pub workers_stuck: u64,
    /// Workers forgotten because a send found them no longer connected.
    pub workers_gone: u64,
    /// Workers forgotten, or READYs refused, because the table was full (`MAX_WORKERS`).
    pub workers_evicted: u64,
    /// Malformed messages counted and dropped.
    pub invalid: u64,
    /// Replies dropped because the backend peer that sent them does not hold that request
    /// (never sent READY, is idle, or holds another client's request): forged or stale.
    pub refused_replies: u64,
    /// Requests dispatched per worker identity (hex), to show how work was spread.
    pub per_worker: BTreeMap<String, u64>,
    /// Connections its bound sockets refused, by reason (`--max-connections`…): present on
    /// roles that bound a TCP socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_refused: Option<RefusedConnections>,
}

/// Final counters of a Majordomo broker.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct MajordomoReport {
    pub endpoint: String,
    /// Client requests accepted (queued or dispatched).
    pub requests: u64,
    /// Requests handed to a worker.
    pub dispatched: u64,
    /// Replies (FINAL or 0.1 REPLY) delivered to clients; PARTIALs are counted separately.
    pub replies: u64,
    pub partials: u64,
    /// Requests answered by the broker itself under `mmi.*`.
    pub mmi: u64,
    pub workers_seen: u64,
    pub workers_expired: u64,
    /// DISCONNECTs sent or received.
    pub disconnects: u64,
    /// Requests dropped after waiting `--request-ttl` for a worker.
    pub requests_expired: u64,
    /// Requests refused because their service queue was full (`--max-queue`).
    pub requests_rejected: u64,
    /// Requests dropped because the worker holding them died, disconnected or broke the
    /// protocol, or because they were queued at a Binary Star broker that stepped down (the
    /// client's retry is the recovery: MDP is at-most-once per attempt).
    pub requests_lost: u64,
    /// Workers disconnected for holding a request past `--busy-timeout` (their requests are
    /// in `requests_lost`).
    pub workers_stuck: u64,
    /// Malformed messages counted and dropped.
    pub invalid: u64,
    /// Connections its bound sockets refused, by reason (`--max-connections`…): present on
    /// roles that bound a TCP socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections_refused: Option<RefusedConnections>,
}

/// The proxy's final counters.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ProxyReport {
    pub frontend: String,
    pub backend: String,
    pub seed: u64,
    /// Messages sent frontend → backend (duplicates included).
    pub forwarded_up: u64,
    /// Messages sent backend → frontend (duplicates included).
    pub forwarded_down: u64,
    /// Faults injected, by kind (`drop`, `delay`, `duplicate`, `reorder`, `corrupt`,
    /// `truncate`, `blackhole`).
    pub faults: BTreeMap<String, u64>,
    /// Distinct peer identities seen on the frontend.
    pub peers: u64,
    /// Messages that could not be sent because a socket's queue was full (never blocks).
    pub unsent: u64,
}

/// The final summary of any role.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Report {
    Client(ClientReport),
    Service(ServiceReport),
    Broker(BrokerReport),
    Majordomo(MajordomoReport),
    Chaos(Box<ChaosReport>),
    Proxy(ProxyReport),
    /// `pirate bench`: its one record.
    Bench(Box<BenchReport>),
    /// `pirate titanic --check DIR`: what a start would keep, cut off and set aside.
    StoreCheck(Box<store::Check>),
}

impl Report {
    /// Adds the connections refused to the summary of a role that serves (server, worker,
    /// queue, broker); the others have nothing bound to refuse with.
    pub fn set_connections_refused(&mut self, refused: RefusedConnections) {
        match self {
            Report::Service(r) => r.connections_refused = Some(refused),
            Report::Broker(r) => r.connections_refused = Some(refused),
            Report::Majordomo(r) => r.connections_refused = Some(refused),
            Report::Client(_)
            | Report::Chaos(_)
            | Report::Proxy(_)
            | Report::Bench(_)
            | Report::StoreCheck(_) => {}
        }
    }

    /// The connections refused, if this summary has them.
    pub fn connections_refused(&self) -> Option<&RefusedConnections> {
        match self {
            Report::Service(r) => r.connections_refused.as_ref(),
            Report::Broker(r) => r.connections_refused.as_ref(),
            Report::Majordomo(r) => r.connections_refused.as_ref(),
            _ => None,
        }
    }
}

/// Everything a role reports while it runs. Serialised as `{"event": "<name>", ...fields}`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A role is up: what it is, what it bound or connected to, and its seed if it draws
    /// random numbers.
    Started {
        /// For humans: `queue (paranoid)`, `worker (mdp echo)`. In JSON `description`, as
        /// every line's `role` is the subcommand's machine-readable name.
        #[serde(rename = "description")]
        role: String,
        endpoint: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        /// Roles with two sides (the queue, the chaos proxy): the clients' side, bound.
        #[serde(skip_serializing_if = "Option::is_none")]
        frontend: Option<String>,
        /// … and the workers' (queue) or the real server's (proxy) side.
        #[serde(skip_serializing_if = "Option::is_none")]
        backend: Option<String>,
    },
    /// A line for humans (stderr only, never JSON).
    Log { level: Level, message: String },
    /// A message in or out, for `-v` (stderr only, never JSON).
    Frame {
        socket: String,
        direction: Direction,
        frames: Vec<String>,
    },
    /// A client got the reply to a request.
    Reply {
        /// 1-based position of the request in this run.
        seq: u64,
        request: String,
        /// The reply's bytes as received (frames joined by `\n`); JSON shows them as text.
        reply: Body,
        attempts: u32,
        latency_ms: f64,
    },
    /// A client sent a request (`attempt` 1) or resent it (2, 3, …).
    Sent {
        seq: u64,
        request: String,
        attempt: u32,
    },
    /// A client attempt failed (timeout or mismatch) and will be retried.
    Retry {
        seq: u64,
        attempt: u32,
        reason: String,
    },
    /// A reply that does not match its request; never accepted.
    Mismatch {
        seq: u64,
        expected: String,
        got: String,
    },
    /// A client gave up on a request.
    Abandoned {
        seq: u64,
        request: String,
        attempts: u32,
    },
    /// A server or worker handled a request (`request`: its body as text, cut to 200
    /// characters), so a history can tell re-executions apart.
    Served {
        cycle: u64,
        request: String,
        bytes: usize,
        work_ms: f64,
    },
    /// A fault is being injected now.
    Fault {
        kind: FaultKind,
        cycle: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// A worker registered with a queue or broker (or re-registered).
    WorkerReady { worker: String },
    /// A Majordomo worker registered for a service. `credit` is how many requests it may
    /// hold at once: 1 for a standard worker, more for one that asked for credit in its
    /// READY (our extension) and was granted it.
    ServiceWorkerReady {
        worker: String,
        service: String,
        credit: u32,
    },
    /// A Majordomo worker was disconnected (sent or received DISCONNECT), with why.
    WorkerDisconnected { worker: String, reason: String },
    /// A request was dropped: `reason` is `ttl` (no worker in time), `queue_full`
    /// (`--max-queue`), `worker_lost` (its worker died or broke the protocol) or
    /// `stepped_down` (queued at a Binary Star broker that stepped down after a split).
    RequestDropped { service: String, reason: String },
    /// A worker was declared dead after its heartbeats stopped.
    WorkerExpired { worker: String, busy: bool },
    /// A worker lost its queue or broker: `reason` is `silent` (heartbeats stopped; it
    /// reconnects after a back-off) or `disconnect` (the broker sent DISCONNECT; it reconnects
    /// at once, `delay_ms` 0, unless DISCONNECT was the broker's first word after READY, a
    /// refusal: then after the back-off). `peer` says which it was: `broker` (Majordomo) or
    /// `queue` (Simple and Paranoid Pirate).
    PeerLost {
        reason: String,
        delay_ms: u64,
        peer: String,
    },
    /// A Binary Star node is in `state` (`PRIMARY`, `BACKUP`, `ACTIVE`, `PASSIVE`): its
    /// starting state (no `from`, reason `started`), then every change, with the Guide's reason.
    /// A change that resolves a split (`--on-split resolve`: dual active or dual passive) has
    /// `served_apart`, the client requests this node served while its peer was out of sight,
    /// and a reason starting `stepped down after a split` or `both nodes passive`. The `ts`
    /// of these events tells how long both nodes were active.
    BstarState {
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        served_apart: Option<u64>,
    },
    /// A malformed message was counted and dropped.
    Invalid { socket: String, reason: String },
    /// A peer was refused by `--auth-plain`, `--auth-curve` or `--allow` (`mechanism`:
    /// NULL, PLAIN, CURVE, or `handshake` when it failed before credentials were checked;
    /// `address`: its IP, or the bound endpoint it reached). `total`: refused so far. The
    /// first 100 are traced, then one in every 1000.
    Refused {
        address: String,
        mechanism: String,
        reason: String,
        total: u64,
    },
    /// A connection to a bound socket was closed by its budget (traced under `-v`): `reason`
    /// is `max_connections`, `max_connections_per_address`, `no_descriptors` (accept failed
    /// for lack of descriptors; the newcomer was shed) or `handshake_timeout` (it did not
    /// finish its handshake within `--handshake-timeout`). `endpoint`: the bound endpoint;
    /// `peer`: the peer's IP. `total`: refused so far. The first 100 are traced, then one in
    /// every 1000.
    ConnectionRefused {
        endpoint: String,
        peer: String,
        reason: String,
        total: u64,
    },
    /// `pirate chaos`: a nemesis action planned (printed before the run, for replay by seed);
    /// `at_ms` counts from the start of the fault phase (the schedule's clock).
    NemesisPlanned {
        at_ms: u64,
        fault: String,
        target: String,
    },
    /// `pirate chaos`: a nemesis action carried out; `at_ms` is on the run's clock, from its
    /// start, the clock of the history, the `network` faults and `report.html`.
    Nemesis {
        at_ms: u64,
        action: String,
        target: String,
    },
    /// `pirate chaos proxy` injected a message fault (`kind`: drop, delay, duplicate, reorder,
    /// corrupt, truncate, blackhole; `direction`: up = frontend→backend, down = back).
    ProxyFault { kind: String, direction: String },
    /// `pirate chaos`: the live view (stderr only, never JSON).
    ChaosStatus {
        elapsed_ms: u64,
        phase: String,
        processes: Vec<ProcessStatus>,
    },
    /// `pirate generate keys`: a new CURVE key pair (Z85).
    Keys { public: String, secret: String },
    /// `pirate generate man|completions`: the files written.
    Generated { written: Vec<String> },
    /// `pirate chaos report`: the page written.
    ReportWritten { report: String },
    /// The final summary.
    Summary(Report),
}

impl Event {
    /// `Started` for a role with one endpoint (a list, for a client that knows several).
    pub fn started(
        role: impl Into<String>,
        endpoint: impl Into<String>,
        seed: Option<u64>,
    ) -> Self {
        Event::Started {
            role: role.into(),
            endpoint: endpoint.into(),
            seed,
            frontend: None,
            backend: None,
        }
    }

    /// `Started` for a role with two sides: `endpoint` says both, for humans, and
    /// `frontend`/`backend` each, for programs.
    pub fn started_between(
        role: impl Into<String>,
        (frontend, backend): (&str, &str),
        arrow: &str,
        seed: Option<u64>,
    ) -> Self {
        Event::Started {
            role: role.into(),
            endpoint: format!("{frontend} {arrow} {backend}"),
            seed,
            frontend: Some(frontend.to_string()),
            backend: Some(backend.to_string()),
        }
    }
}

/// Where roles send their events, plus whether frames are traced (`-v`).
pub struct Events<'a> {
    sink: Box<dyn FnMut(Event) + 'a>,
    trace: bool,
}

impl<'a> Events<'a> {
    /// Events go to `sink`; frames are traced only when `trace` is set.
    pub fn new(trace: bool, sink: impl FnMut(Event) + 'a) -> Self {
        Events {
            sink: Box::new(sink),
            trace,
        }
    }

    /// Events that go nowhere (library users who only want the report).
    pub fn discard() -> Events<'static> {
        Events::new(false, |_| {})
    }

    /// True under `-v`: for extra lines that only belong in a trace.
    pub fn tracing(&self) -> bool {
        self.trace
    }

    /// Sends one event.
    pub fn emit(&mut self, event: Event) {
        (self.sink)(event)
    }

    /// A human info line.
    pub fn info(&mut self, message: impl Into<String>) {
        self.log(Level::Info, message)
    }

    /// A human warning line.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.log(Level::Warn, message)
    }

    /// A human error line.
    pub fn error(&mut self, message: impl Into<String>) {
        self.log(Level::Error, message)
    }

    fn log(&mut self, level: Level, message: impl Into<String>) {
        self.emit(Event::Log {
            level,
            message: message.into(),
        })
    }

    /// Traces a message if `-v` is on. Cheap when it is off.
    pub fn frame(&mut self, socket: &str, direction: Direction, msg: &Message) {
        if self.trace {
            let frames = crate::msg::dump_lines(msg);
            self.emit(Event::Frame {
                socket: socket.to_string(),
                direction,
                frames,
            });
        }
    }

    /// A malformed message: counted by the caller, traced here.
    pub fn invalid(&mut self, socket: &str, reason: impl Into<String>) {
        self.emit(Event::Invalid {
            socket: socket.to_string(),
            reason: reason.into(),
        })
    }
}
