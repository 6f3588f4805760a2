//! `pirate broker`: the Majordomo broker, serving 7/MDP (0.1) and 18/MDP (0.2) clients and
//! workers on one ROUTER socket, and answering 8/MMI (`mmi.*`) requests itself.
//!
//! # Frames
//!
//! Everything arrives as `[identity][frames…]` on one ROUTER socket. The header decides, per
//! message, which sub-protocol and which version the peer speaks ([`mdp::peek_version`]):
//!
//! | peer | received (after the identity) | sent back |
//! |---|---|---|
//! | 0.1 client | REQUEST `""`, `"MDPC01"`, service, body… | REPLY `""`, `"MDPC01"`, service, body… |
//! | 0.2 client | REQUEST `"MDPC02"`, `0x01`, service, body… | PARTIAL `"MDPC02"`, `0x02`, service, body… · FINAL `"MDPC02"`, `0x03`, service, body… |
//! | 0.1 worker | READY `0x01` · REPLY `0x03` · HEARTBEAT `0x04` · DISCONNECT `0x05`, behind `""`, `"MDPW01"` | REQUEST `""`, `"MDPW01"`, `0x02`, client, `""`, body… · HEARTBEAT · DISCONNECT |
//! | 0.2 worker | READY `0x01` · PARTIAL `0x03` · FINAL `0x04` · HEARTBEAT `0x05` · DISCONNECT `0x06`, behind `"MDPW02"` | REQUEST `"MDPW02"`, `0x02`, client, `""`, body… · HEARTBEAT · DISCONNECT |
//!
//! A 0.2 peer may put a `""` in front of its header (implementations disagree); we accept it
//! and never send one. The codecs in [`crate::proto::mdp`] do both. A worker's version is
//! remembered at READY, so every REQUEST, HEARTBEAT and DISCONNECT goes out in its dialect
//! (the command bytes differ between the versions); a client's version is remembered with its
//! request, so its reply goes out in its dialect whatever the worker speaks.
//!
//! # Design choices, and why
//!
//! - **State machine apart from the socket.** [`Broker`] is a pure [`Machine`]: it takes a
//!   received message and an `Instant` and answers with the messages to send; the reactor
//!   ([`crate::reactor`]) polls, drains up to [`reactor::BATCH`] messages per wake-up into
//!   it, and sends what it answered in one burst, so every rule below is unit-tested without
//!   sockets or sleeps ([`Broker::receive`], [`Broker::heartbeat`]). Its one deadline is the
//!   heartbeat tick. Answers go through a buffer the broker keeps, drained (not reallocated)
//!   into the reactor's outbox, so steady state allocates nothing per message for that.
//! - **Cost per message is O(1) amortised.** Services live in a hash map; each has a FIFO of
//!   requests and a FIFO of idle workers (least recently used first). A worker is removed from
//!   an idle FIFO lazily: entries carry the worker's registration *generation* and stale ones
//!   are skipped when met, and compacted on the next heartbeat tick. Expiry is one scan of
//!   the workers per heartbeat interval, the same scan that sends them their heartbeats, which
//!   has to visit each of them anyway; no message ever triggers a scan of all workers.
//! - **Heartbeats go to every registered worker, idle and busy**, and both expire after
//!   `liveness × interval` of silence (the Guide's broker never heartbeats busy workers, so a
//!   worker dying mid-request went unnoticed: trap 4). Any message from a worker proves it
//!   alive; a HEARTBEAT from a busy worker never makes it idle (trap 7). A worker found dead
//!   when it reaches the front of an idle queue is expired there and then, before it is given
//!   a request, rather than at the next tick.
//! - **At most once per attempt.** A request held by a worker that dies, disconnects, or
//!   breaks the protocol is dropped, not re-queued: the broker cannot know whether the worker
//!   already acted on it, and MDP leaves retrying to the client, which resends after its
//!   timeout. Such a drop is an `Event::RequestDropped { reason: "worker_lost" }` and is
//!   counted as `requests_lost` (summary and `mmi.status`).
//! - **Request TTL (default 10 s).** Requests wait in their service's queue while no worker
//!   is free, for at most `request_ttl` (checked on heartbeat ticks, so up to one interval
//!   late); then they are dropped (`requests_expired`, reason `ttl`). 10 s is longer than
//!   the Guide client's whole retry budget (3 × 2500 ms), so with the Guide's defaults the
//!   broker never drops a request a client may still be waiting for, and requests for a
//!   service nobody serves no longer pile up forever (trap 3). A service with no workers and
//!   no queued requests is forgotten on the next tick.
//! - **Queue bound (default 1,000,000 per service, a backstop: memory is bounded by the bytes
//!   bounds below).** When a service's queue already holds
//!   `max_queue` requests, the *new* request is refused (`requests_rejected`, reason
//!   `queue_full`) and the client is sent nothing: MDP has no error reply a client would
//!   understand, and the client's timeout and retry is exactly the back-pressure we want.
//!   Refusing the newest keeps FIFO order for those already waiting. `max_queue = 0` means
//!   "never queue": a request is served only if a worker is idle right now.
//! - **Bytes bounds (`--max-queue-bytes`, default 64 MiB per service; `--max-broker-bytes`,
//!   default 256 MiB in all).** A request count alone does not bound memory (1000 requests of
//!   16 MiB each). A request that would take its service's queued bytes past
//!   `max_queue_bytes`, or everything the broker holds (queued requests and PARTIALs held for
//!   0.1 clients) past `max_bytes`, is refused like a request over `max_queue` (reasons
//!   `queue_bytes`, `broker_bytes`). A queued request counts its body's and its client
//!   address's frame lengths plus [`QUEUED_OVERHEAD`], so that a flood of empty requests is
//!   bounded too; a frame is at most `--max-message` (the socket drops bigger ones before
//!   they are buffered). With the defaults, 64 MiB per service holds half a million
//!   Guide-sized requests: the Guide's `mdclient2` (100,000 in flight, no retries) is served
//!   whole, where a count of 1000 lost most of them.
//! - **Service names are at most 255 bytes** ([`MAX_SERVICE_NAME`], like a ZeroMQ identity):
//!   a longer one is counted as invalid and refused, so no megabyte name is stored and echoed
//!   in every `mmi.status`; a worker that tries to register one gets DISCONNECT too.
//! - **Busy timeout (off by default, `--busy-timeout`).** 7/MDP cannot tell a worker that
//!   is working from one whose REQUEST or reply was lost on the way (a proxy, a flaky link):
//!   heartbeats keep flowing both ways, and the broker would hold that worker busy, and the
//!   request, forever. With a busy timeout, a worker that has held one request that long
//!   without a reply (a PARTIAL counts as progress, but a request may be held at most
//!   [`PARTIAL_GRACE`] times the timeout in all, so a trickle of PARTIALs cannot hold it
//!   forever) is sent DISCONNECT and forgotten, like a
//!   worker that broke the protocol; its request is dropped as `worker_lost` (the client
//!   retries) and the worker reconnects and registers afresh. Off by default because a
//!   legitimate request may take any time; set it above the slowest request.
//! - **0.2 PARTIALs to a 0.1 client.** 0.1 has no streaming, so the broker holds the body
//!   frames of each PARTIAL and sends them, followed by the FINAL's frames, as one REPLY
//!   (nothing the worker produced is lost, and frames are moved, not copied). The frames held
//!   for one reply count against the broker's bytes and may not exceed `max_queue_bytes`: a
//!   reply that would is dropped (the client gets nothing and retries; reason
//!   `reply_too_big`, counted in `requests_lost`), the rest of its PARTIALs are discarded, and
//!   the worker is idle again after its FINAL. A 0.1 REPLY to
//!   a 0.2 client is sent as FINAL. PARTIALs are counted in `partials`, FINALs and REPLYs in
//!   `replies`.
//! - **Protocol errors.** A well-formed but unexpected worker command (READY from a
//!   registered worker, anything but READY or DISCONNECT from an unknown one, a reply from an
//!   idle worker or for a client it is not serving, a REQUEST sent *to* the broker) gets
//!   DISCONNECT and the worker is forgotten; the spec says to. A message that does not decode
//!   is counted in `invalid` and dropped; nothing panics on input. A late reply from a worker
//!   that already expired is therefore not delivered: that attempt is lost and the client
//!   retries.
//! - **Whole client envelopes, and a handle per dispatch.** A client may put envelope frames
//!   before its delimiter, `[envelope…]["" ]["MDPC01"|"MDPC02"]…` (a request id, or the hops
//!   of a ROUTER/DEALER proxy it sits behind; at most [`crate::msg::MAX_ENVELOPE`] frames;
//!   a standard 0.2 client behind a proxy sends `[hops…]["MDPC02"][0x01]…`, no delimiter):
//!   every frame comes back unchanged in front of each PARTIAL and FINAL/REPLY of that
//!   request, as REP sockets do ([`mdp::split_client_envelope`], [`mdp::wrap_client_envelope`]).
//!   A worker's REQUEST has room for one client address frame, so the broker does not put
//!   the client there at all: it puts a handle of its own, 16 hex digits, new for every
//!   dispatch, and keeps (identity, envelope) in the worker's job. A reply is accepted only
//!   from the worker holding that handle, and only once; anything else (another worker's
//!   handle, a stale copy of its own previous reply, a second reply) is a protocol error and
//!   gets DISCONNECT. So a standard worker, echoing the address as 7/MDP says, works
//!   unchanged; no worker can route a reply to a client whose request it does not hold; and
//!   workers never learn client identities. Requests of one client connection are
//!   independent, so a client may have many in flight, told apart by their ids, answered in
//!   any order. `mmi.correlate` answers `200` so a client can tell this broker from one that
//!   does not carry envelopes (the Guide's brokers misread them or assert).
//! - **Credit (our extension).** A worker whose READY carries one more frame, `"credit=N"`,
//!   can hold N requests at once on its one connection ([`mdp`]'s module docs). It is
//!   granted `min(N, `[`MAX_CREDIT`]`)` with a HEARTBEAT carrying `"credit=G"`, sent before
//!   anything else, and is in its service's idle FIFO while it has a free credit, once
//!   whatever its credit (a READY asking for 1024 costs no more memory than a standard one):
//!   a dispatch gives the front worker a request and leaves it in front while it has credit
//!   left, so a burst fills one worker's credit (sharing its connection's batches) before
//!   the next gets one, workers take turns least recently freed first (for standard workers,
//!   exactly the Guide's LRU), and dispatch stays O(1); a reply frees one credit. Each
//!   request it
//!   holds is a job of its own, found by its handle, timed by `--busy-timeout` on its own and
//!   counted lost on its own when the worker dies or is disconnected. A standard worker is a
//!   worker with credit 1, and is never sent a grant.
//! - **8/MMI.** `mmi.*` is decided on the *service* frame of a request or READY, never on an
//!   identity (trap 1). `mmi.service` answers `"200"` only if a worker for the service is
//!   registered and has not gone silent past its expiry, so a service whose last worker died
//!   answers `"404"` even before the tick that forgets it (trap 2). `mmi.status` (ours)
//!   answers a JSON object: `services` (name → `{workers, idle, queued}`), `workers`, the
//!   counters of [`MajordomoReport`]. `mmi.correlate` (ours) answers `"200"` (see above).
//!   Any other `mmi.*` answers `"501"`.
//! - **Binary Star pairs** ([`run_bstar`]). The same machine wrapped in [`Bstar`], which owns
//!   the state link: client messages reach the [`Broker`] only while this node is active (the
//!   others are dropped, and are the votes that let a passive node take over); worker
//!   messages are handled in every state, so a passive broker keeps its workers ready for a
//!   takeover.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::Result;
use crate::event::{Event, Events, MajordomoReport, Report};
use crate::heartbeat::{HeartbeatConfig, Liveness};
use crate::msg::{frame_text, Frame, Message};
use crate::proto::correlate::RequestIds;
use crate::proto::mdp::{self, ClientCommand, ClientMsg, Version, WorkerCommand, WorkerMsg};
use crate::proto::mmi::{self, MmiRequest};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::roles::bstar_server::{Bstar, BstarOptions, Pair};

/// The socket's name in traces and `Invalid` events.
const SOCKET: &str = "broker";

/// The ROUTER socket's slot.
const ROUTER: Slot = 0;

/// The body of the answer to a request without a Majordomo header (see `Broker::not_mdp`):
/// the client it reaches learns what it talked to.
pub const NOT_MDP: &[u8] = b"this is a Majordomo broker: send [\"MDPC01\"][service][body] \
(pirate client --service NAME)";

/// The longest service name accepted, in bytes (a longer one is invalid).
pub const MAX_SERVICE_NAME: usize = 255;

/// With a busy timeout, PARTIALs keep a request at a worker for at most this many timeouts.
pub const PARTIAL_GRACE: u32 = 10;

/// The most credit granted to one worker connection (what `pirate worker --concurrency`
/// allows): a READY asking for more is granted this.
pub const MAX_CREDIT: u32 = 1024;

/// Everything `pirate broker` needs.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where clients and workers connect. Guide: `tcp://*:5555`.
    pub bind: String,
    /// Heartbeating per 7/MDP. Guide: 2500 ms, liveness 3 (a worker expires after 7.5 s).
    pub heartbeat: HeartbeatConfig,
    /// How long a request may wait for a worker before it is dropped. Default 10 s, longer
    /// than the Guide client's whole retry budget (see the module docs).
    pub request_ttl: Duration,
    /// Most requests one service may hold waiting for a worker; newer ones are refused.
    /// Default 1,000,000: a backstop, as the bytes bounds are what limit memory.
    pub max_queue: usize,
    /// A worker holding one request this long without a reply is disconnected (see the
    /// module docs). `None` (the default, as in 7/MDP): never.
    pub busy_timeout: Option<Duration>,
    /// Most bytes of requests one service may hold waiting; also the most one reply held
    /// for a 0.1 client may grow to. Default 64 MiB.
    pub max_queue_bytes: u64,
    /// Most bytes the broker holds in all (queued requests and held PARTIALs). Default
    /// 256 MiB.
    pub max_bytes: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            bind: "tcp://*:5555".into(),
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(2500),
                liveness: 3,
            },
            request_ttl: Duration::from_secs(10),
            max_queue: 1_000_000,
            busy_timeout: None,
            max_queue_bytes: 64 << 20,
            max_bytes: 256 << 20,
        }
    }
}

/// A message to send: the ROUTER identity of the peer, and the frames that follow it.
pub type Outgoing = (Frame, Message);

/// Where a client's reply goes: its ROUTER identity, and the envelope it put in front of its
/// request (request id, proxy hops; empty for a standard client), returned unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Client {
    identity: Frame,
    envelope: mdp::Envelope,
}

/// The request a busy worker holds.
struct Job {
    client: Client,
    /// The client address frame the worker was given: a handle issued by the broker for
    /// this one dispatch, never the client's identity (see the module docs).
    handle: Frame,
    client_version: Version,
    /// Body frames of PARTIALs held for a 0.1 client, sent in front of the FINAL's frames.
    held: Message,
    /// Bytes in `held`.
    held_bytes: u64,
    /// The held reply grew past its bound and was dropped: discard the rest of it.
    overflow: bool,
    /// When the worker was given the request.
    started: Instant,
    /// When the worker was given the request or last sent a PARTIAL of it.
    progress: Instant,
}

/// A registered worker.
struct Worker {
    service: Frame,
    version: Version,
    /// Unique per registration, so an idle-queue entry left behind by an earlier registration
    /// of the same identity is recognised as stale.
    generation: u64,
    liveness: Liveness,
    /// How many requests it may hold at once: 1, or the credit granted at READY (see the
    /// module docs, "Credit").
    credit: usize,
    /// The requests it holds, at most `credit`. While it has a free credit, exactly one live
    /// entry for it is in its service's idle queue (one, whatever its credit: a READY asking
    /// for 1024 costs the broker no more than a standard one).
    jobs: Vec<Job>,
}

impl Worker {
    /// Credits not in use: its live entries in the idle queue.
    fn free(&self) -> usize {
        self.credit - self.jobs.len()
    }

    /// Which of its jobs was given `handle`.
    fn job_for(&self, handle: &[u8]) -> Option<usize> {
        self.jobs.iter().position(|job| job.handle == handle)
    }
}

/// A client request waiting for a worker.
struct Queued {
    client: Client,
    version: Version,
    body: Message,
    /// What it costs while it waits: its body, its client's address and
    /// [`QUEUED_OVERHEAD`].
    bytes: u64,
    since: Instant,
}

/// One service: its waiting requests and its idle workers, both FIFO.
#[derive(Default)]
struct Service {
    requests: VecDeque<Queued>,
    /// Bytes of the bodies in `requests`.
    queued_bytes: u64,
    /// `(worker identity, generation)` of the workers with a free credit, least recently
    /// used first; may hold stale entries.
    idle: VecDeque<(Frame, u64)>,
    /// Free credits of the workers in `idle` (idle workers, for standard ones).
    idle_count: usize,
    /// Stale entries in `idle`, removed lazily.
    stale: usize,
    /// Every registered worker of the service, idle or busy.
    members: HashSet<Frame>,
}

/// The Majordomo broker as a pure state machine: messages and clock ticks in, messages out.
pub struct Broker {
    heartbeat: HeartbeatConfig,
    request_ttl: Duration,
    max_queue: usize,
    busy_timeout: Option<Duration>,
    max_queue_bytes: u64,
    max_bytes: u64,
    /// Bytes held now: every service's `queued_bytes` and every job's `held_bytes`.
    held_bytes: u64,
    services: HashMap<Frame, Service>,
    workers: HashMap<Frame, Worker>,
    next_generation: u64,
    /// Handles for the client address frame of each REQUEST.
    handles: RequestIds,
    report: MajordomoReport,
    /// Answers so far, drained by [`Broker::receive`] or into the reactor's outbox.
    out: Vec<Outgoing>,
    /// The heartbeat interval (at least 1 ms: a zero interval would spin).
    interval: Duration,
    /// When the next heartbeat tick is due, once started as a [`Machine`].
    next_tick: Option<Instant>,
}

/// What the front of a service's idle queue holds.
enum Front {
    /// No request waiting, or no idle worker: nothing to dispatch.
    Nothing,
    /// An entry for a worker that is gone, busy, or registered again since.
    Stale,
    /// An idle worker whose heartbeats stopped.
    Dead(Frame),
    /// An idle, live worker.
    Ready,
}

impl Broker {
    /// A broker with no services and no workers.
    pub fn new(config: &BrokerConfig) -> Self {
        Broker {
            heartbeat: config.heartbeat,
            request_ttl: config.request_ttl,
            max_queue: config.max_queue,
            busy_timeout: config.busy_timeout,
            max_queue_bytes: config.max_queue_bytes,
            max_bytes: config.max_bytes,
            held_bytes: 0,
            services: HashMap::new(),
            workers: HashMap::new(),
            next_generation: 0,
            handles: RequestIds::random(),
            report: MajordomoReport {
                endpoint: config.bind.clone(),
                ..Default::default()
            },
            out: Vec::new(),
            interval: config.heartbeat.interval.max(Duration::from_millis(1)),
            next_tick: None,
        }
    }

    /// The counters so far.
    pub fn report(&self) -> &MajordomoReport {
        &self.report
    }

    /// The final counters.
    pub fn into_report(self) -> MajordomoReport {
        self.report
    }

    /// Handles one message received on the ROUTER socket (`[identity][frames…]`) at `now`;
    /// returns what to send.
    pub fn receive(&mut self, msg: Message, now: Instant, events: &mut Events) -> Vec<Outgoing> {
        self.accept(msg, now, events);
        std::mem::take(&mut self.out)
    }

    /// The heartbeat tick, to be called every heartbeat interval: expires silent workers and
    /// old requests, forgets empty services, heartbeats every worker; returns what to send.
    pub fn heartbeat(&mut self, now: Instant, events: &mut Events) -> Vec<Outgoing> {
        self.beat(now, events);
        std::mem::take(&mut self.out)
    }

    /// Moves the answers so far into `out`, each behind its ROUTER identity, keeping the
    /// buffer's capacity.
    fn flush(&mut self, out: &mut Outbox<Infallible>) {
        for (id, mut msg) in self.out.drain(..) {
            msg.push_front(id);
            out.send(ROUTER, msg);
        }
    }

    /// One message received on the ROUTER socket; the answers go to `self.out`.
    fn accept(&mut self, mut msg: Message, now: Instant, events: &mut Events) {
        match msg.pop_front() {
            None => self.invalid(events, "empty message".into()),
            Some(sender) => match mdp::peek_version(&msg) {
                // A client behind a proxy, or with a request id: its envelope comes off here
                // and goes back on its reply.
                None if mdp::client_envelope_len(msg.iter()).is_some() => {
                    let envelope = mdp::split_client_envelope(&mut msg);
                    let client = Client {
                        identity: sender,
                        envelope,
                    };
                    match mdp::decode_client(msg, mdp::Direction::ToBroker) {
                        Ok(decoded) => self.on_client(client, decoded, now, events),
                        Err(e) => self.invalid(
                            events,
                            format!("from {}: {e}", frame_text(&client.identity)),
                        ),
                    }
                }
                Some((_, true)) => match mdp::decode_worker(msg) {
                    Ok(decoded) => self.on_worker(sender, decoded, now, events),
                    Err(e) => self.invalid(events, format!("from {}: {e}", frame_text(&sender))),
                },
                Some((_, false)) => match mdp::decode_client(msg, mdp::Direction::ToBroker) {
                    Ok(decoded) => {
                        let client = Client {
                            identity: sender,
                            envelope: mdp::Envelope::default(),
                        };
                        self.on_client(client, decoded, now, events)
                    }
                    Err(e) => self.invalid(events, format!("from {}: {e}", frame_text(&sender))),
                },
                None => {
                    self.invalid(
                        events,
                        format!(
                            "from {}: not MDP (no MDPC01, MDPW01, MDPC02 or MDPW02 header)",
                            frame_text(&sender)
                        ),
                    );
                    self.not_mdp(sender, msg);
                }
            },
        }
    }

    /// The heartbeat tick: expires silent workers, expires requests older than the TTL,
    /// forgets empty services, and heartbeats every remaining worker. One pass over the
    /// workers and services per interval; the answers go to `self.out`.
    fn beat(&mut self, now: Instant, events: &mut Events) {
        let dead: Vec<Frame> = self
            .workers
            .iter()
            .filter(|(_, w)| w.liveness.is_dead(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.expire(&id, events);
        }
        if let Some(limit) = self.busy_timeout {
            let stuck: Vec<(Frame, Version)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.jobs.iter().any(|j| j.stuck(now, limit)))
                .map(|(id, w)| (id.clone(), w.version))
                .collect();
            for (id, version) in stuck {
                let reason = format!(
                    "busy for {} ms without a reply (--busy-timeout)",
                    limit.as_millis()
                );
                self.report.workers_stuck += 1;
                self.disconnect(id, version, &reason, events);
            }
        }
        for (name, svc) in &mut self.services {
            // Requests are queued in arrival order, so the expired ones are at the front.
            while svc
                .requests
                .front()
                .is_some_and(|q| now.saturating_duration_since(q.since) >= self.request_ttl)
            {
                if let Some(q) = svc.requests.pop_front() {
                    svc.queued_bytes -= q.bytes;
                    self.held_bytes -= q.bytes;
                }
                self.report.requests_expired += 1;
                events.emit(Event::RequestDropped {
                    service: frame_text(name),
                    reason: "ttl".into(),
                });
            }
            if svc.stale > 0 {
                let workers = &self.workers;
                svc.idle
                    .retain(|(id, generation)| is_idle(workers, id, *generation));
                svc.stale = 0;
            }
        }
        self.services
            .retain(|_, svc| !svc.members.is_empty() || !svc.requests.is_empty());
        for (id, worker) in &self.workers {
            self.out.push((
                id.clone(),
                mdp::encode_worker(WorkerMsg {
                    version: worker.version,
                    command: WorkerCommand::Heartbeat,
                }),
            ));
        }
    }

    /// True if a worker is registered for `service` and has not been silent past its expiry.
    pub fn has_live_worker(&self, service: &[u8], now: Instant) -> bool {
        self.services.get(service).is_some_and(|svc| {
            svc.members.iter().any(|id| {
                self.workers
                    .get(id)
                    .is_some_and(|w| !w.liveness.is_dead(now))
            })
        })
    }

    /// The `mmi.status` object: services (name → workers, idle, queued), the number of
    /// workers and the report's counters.
    pub fn status(&self) -> Value {
        let services: BTreeMap<String, Value> = self
            .services
            .iter()
            .map(|(name, svc)| {
                (
                    frame_text(name),
                    json!({
                        "workers": svc.members.len(),
                        "idle": svc.idle_count,
                        "queued": svc.requests.len(),
                    }),
                )
            })
            .collect();
        let mut status = serde_json::to_value(&self.report).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut status {
            map.insert("services".into(), json!(services));
            map.insert("workers".into(), json!(self.workers.len()));
        }
        status
    }

    /// Answers a request that has no Majordomo header but a REQ envelope (`[envelope…][""]
    /// [body…]`: a Lazy Pirate client, or anything else behind a REQ socket) with a 7/MDP
    /// client REPLY, `[envelope…][""]["MDPC01"][""][NOT_MDP]`, so that the client learns at
    /// once that it reached a Majordomo broker instead of retrying into silence. One answer
    /// per message (it is counted as invalid too); nothing is answered to a message without a
    /// delimiter (a DEALER peer, a Pirate worker's READY: a REQ-less peer reads no reply).
    fn not_mdp(&mut self, sender: Frame, mut msg: Message) {
        let Some(envelope) = msg.take_envelope() else {
            return;
        };
        // A body that starts with a Majordomo header is Majordomo sent the wrong way (a
        // worker behind a proxy, say): invalid, but no sign of a client in another protocol.
        let headers = [mdp::MDPC01, mdp::MDPC02, mdp::MDPW01, mdp::MDPW02];
        match msg.iter().next() {
            None => return,
            Some(first) if headers.contains(&first) => return,
            Some(_) => {}
        }
        let mut reply = Message::from_frames(envelope);
        for frame in [
            Vec::new(),
            mdp::MDPC01.to_vec(),
            Vec::new(),
            NOT_MDP.to_vec(),
        ] {
            reply.push_back(frame);
        }
        self.out.push((sender, reply));
    }

    fn invalid(&mut self, events: &mut Events, reason: String) {
        self.report.invalid += 1;
        events.invalid(SOCKET, reason);
    }

    fn on_client(&mut self, client: Client, msg: ClientMsg, now: Instant, events: &mut Events) {
        let ClientMsg {
            version,
            service,
            body,
            ..
        } = msg;
        if service.len() > MAX_SERVICE_NAME {
            return self.invalid(events, long_name(&client.identity, &service));
        }
        if mmi::is_mmi(&service) {
            self.report.mmi += 1;
            let answer = match mmi::parse(&service, &body) {
                MmiRequest::Service(name) if self.has_live_worker(&name, now) => mmi::OK.to_vec(),
                MmiRequest::Service(_) => mmi::NOT_FOUND.to_vec(),
                MmiRequest::Status => self.status().to_string().into_bytes(),
                MmiRequest::Correlate => mmi::OK.to_vec(),
                MmiRequest::Unknown => mmi::NOT_IMPLEMENTED.to_vec(),
            };
            self.send_client(
                client,
                version,
                ClientCommand::Final,
                service,
                Message::from_frames([answer]),
            );
            return;
        }
        // What waiting costs the broker, not just the body: a flood of empty requests is bounded
        // by bytes too.
        let bytes = body_bytes(&body) + client_bytes(&client) + QUEUED_OVERHEAD;
        // The name is copied only the first time the service is seen, not per request.
        if !self.services.contains_key(&service) {
            self.services.insert(service.clone(), Service::default());
        }
        let Some(svc) = self.services.get_mut(&service) else {
            return;
        };
        svc.requests.push_back(Queued {
            client,
            version,
            body,
            bytes,
            since: now,
        });
        svc.queued_bytes += bytes;
        self.held_bytes += bytes;
        self.dispatch(&service, now, events);
        // Dispatch took the request if a worker was idle; if the queue is now over a bound,
        // the new request is the one at the back (every bound held before it came, and
        // dispatch takes from the front) and it is refused.
        let Some(svc) = self.services.get_mut(&service) else {
            return;
        };
        let over = if svc.requests.len() > self.max_queue {
            Some("queue_full")
        } else if svc.queued_bytes > self.max_queue_bytes {
            Some("queue_bytes")
        } else if self.held_bytes > self.max_bytes {
            Some("broker_bytes")
        } else {
            None
        };
        match over {
            Some(reason) => {
                if let Some(q) = svc.requests.pop_back() {
                    svc.queued_bytes -= q.bytes;
                    self.held_bytes -= q.bytes;
                }
                self.report.requests_rejected += 1;
                events.emit(Event::RequestDropped {
                    service: frame_text(&service),
                    reason: reason.into(),
                });
            }
            None => self.report.requests += 1,
        }
    }

    fn on_worker(&mut self, id: Frame, msg: WorkerMsg, now: Instant, events: &mut Events) {
        let WorkerMsg { version, command } = msg;
        let registered = match self.workers.get_mut(&id) {
            Some(worker) => {
                // Any message proves the worker alive; it never changes idle or busy.
                worker.liveness.heard(now);
                true
            }
            None => false,
        };
        match command {
            WorkerCommand::Ready { .. } if registered => self.disconnect(
                id,
                version,
                "READY from an already registered worker",
                events,
            ),
            WorkerCommand::Ready { service, .. } if service.len() > MAX_SERVICE_NAME => {
                self.invalid(events, long_name(&id, &service));
                self.disconnect(id, version, "a service name over 255 bytes", events)
            }
            WorkerCommand::Ready { service, .. } if mmi::is_mmi(&service) => {
                let reason = format!("cannot register for {}", frame_text(&service));
                self.disconnect(id, version, &reason, events)
            }
            WorkerCommand::Ready { service, credit } => {
                self.register(id, version, service, credit, now, events)
            }
            WorkerCommand::Disconnect => {
                self.report.disconnects += 1;
                if registered {
                    self.forget(&id, events);
                    events.emit(Event::WorkerDisconnected {
                        worker: frame_text(&id),
                        reason: "the worker sent DISCONNECT".into(),
                    });
                }
            }
            WorkerCommand::Heartbeat if registered => {}
            WorkerCommand::Reply { client, body } | WorkerCommand::Final { client, body }
                if registered =>
            {
                self.on_reply(id, client, body, true, now, events)
            }
            WorkerCommand::Partial { client, body } if registered => {
                self.on_reply(id, client, body, false, now, events)
            }
            WorkerCommand::Request { .. } => {
                self.disconnect(id, version, "REQUEST sent to the broker", events)
            }
            WorkerCommand::Granted { .. } => {
                self.disconnect(id, version, "a credit grant sent to the broker", events)
            }
            _ => self.disconnect(id, version, "a command from an unregistered worker", events),
        }
    }

    /// A READY: the worker joins its service with one credit, or with the credit it asked
    /// for (at most [`MAX_CREDIT`]), which it is told at once, before any REQUEST.
    fn register(
        &mut self,
        id: Frame,
        version: Version,
        service: Frame,
        asked: Option<u32>,
        now: Instant,
        events: &mut Events,
    ) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let credit = asked.map_or(1, |n| n.min(MAX_CREDIT));
        self.workers.insert(
            id.clone(),
            Worker {
                service: service.clone(),
                version,
                generation,
                liveness: Liveness::new(self.heartbeat, now),
                credit: credit as usize,
                jobs: Vec::new(),
            },
        );
        if asked.is_some() {
            let grant = mdp::encode_worker(WorkerMsg {
                version,
                command: WorkerCommand::Granted { credit },
            });
            self.out.push((id.clone(), grant));
        }
        let svc = self.services.entry(service.clone()).or_default();
        svc.members.insert(id.clone());
        self.report.workers_seen += 1;
        events.emit(Event::ServiceWorkerReady {
            worker: frame_text(&id),
            service: frame_text(&service),
            credit,
        });
        svc.idle.push_back((id, generation));
        svc.idle_count += credit as usize;
        self.dispatch(&service, now, events);
    }

    /// A PARTIAL (`last == false`), or a 0.1 REPLY or 0.2 FINAL, from registered worker `id`.
    fn on_reply(
        &mut self,
        id: Frame,
        client: Frame,
        body: Message,
        last: bool,
        now: Instant,
        events: &mut Events,
    ) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let version = worker.version;
        let index = match worker.job_for(&client) {
            Some(index) => index,
            None if worker.jobs.is_empty() => {
                return self.disconnect(id, version, "a reply from an idle worker", events)
            }
            None => {
                let reason = "a reply for a client it is not serving";
                return self.disconnect(id, version, reason, events);
            }
        };
        let service = worker.service.clone();
        if !last {
            self.report.partials += 1;
            let job = &mut worker.jobs[index];
            job.progress = now;
            match job.client_version {
                Version::V2 => {
                    let to = job.client.clone();
                    self.send_client(to, Version::V2, ClientCommand::Partial, service, body);
                }
                // Too big already: the rest of this reply goes nowhere.
                Version::V1 if job.overflow => {}
                // 0.1 cannot stream: hold the frames for the REPLY (see the module docs),
                // within the bounds.
                Version::V1 => {
                    let bytes = body_bytes(&body);
                    if job.held_bytes + bytes > self.max_queue_bytes
                        || self.held_bytes + bytes > self.max_bytes
                    {
                        self.held_bytes -= job.held_bytes;
                        job.held_bytes = 0;
                        job.held = Message::new();
                        job.overflow = true;
                        self.report.requests_lost += 1;
                        events.emit(Event::RequestDropped {
                            service: frame_text(&service),
                            reason: "reply_too_big".into(),
                        });
                    } else {
                        job.held_bytes += bytes;
                        self.held_bytes += bytes;
                        append(&mut job.held, body);
                    }
                }
            }
            return;
        }
        let was_full = worker.free() == 0;
        let Job {
            client,
            client_version,
            mut held,
            held_bytes,
            overflow,
            ..
        } = worker.jobs.swap_remove(index);
        let generation = worker.generation;
        self.held_bytes -= held_bytes;
        if !overflow {
            append(&mut held, body);
            self.report.replies += 1;
            self.send_client(
                client,
                client_version,
                ClientCommand::Final,
                service.clone(),
                held,
            );
        }
        // A credit free again: a worker that had none goes to the back of the LRU queue
        // (one that had some is in it already), first in line for queued work.
        if let Some(svc) = self.services.get_mut(&service) {
            if was_full {
                svc.idle.push_back((id, generation));
            }
            svc.idle_count += 1;
        }
        self.dispatch(&service, now, events);
    }

    /// Gives queued requests of `service` to its idle workers, oldest request to the least
    /// recently used worker, while both are available.
    fn dispatch(&mut self, service: &[u8], now: Instant, events: &mut Events) {
        loop {
            let Some(svc) = self.services.get_mut(service) else {
                return;
            };
            let front = match (svc.requests.is_empty(), svc.idle.front()) {
                (false, Some((id, generation))) => {
                    if !is_idle(&self.workers, id, *generation) {
                        Front::Stale
                    } else if self
                        .workers
                        .get(id)
                        .is_some_and(|w| w.liveness.is_dead(now))
                    {
                        Front::Dead(id.clone())
                    } else {
                        Front::Ready
                    }
                }
                _ => Front::Nothing,
            };
            match front {
                Front::Nothing => return,
                Front::Stale => {
                    svc.idle.pop_front();
                    svc.stale = svc.stale.saturating_sub(1);
                }
                // Its entry becomes stale and is skipped on the next turn.
                Front::Dead(id) => self.expire(&id, events),
                Front::Ready => {
                    let (Some((id, generation)), Some(request)) =
                        (svc.idle.pop_front(), svc.requests.pop_front())
                    else {
                        return;
                    };
                    svc.queued_bytes -= request.bytes;
                    self.held_bytes -= request.bytes;
                    svc.idle_count = svc.idle_count.saturating_sub(1);
                    let Some(worker) = self.workers.get_mut(&id) else {
                        return;
                    };
                    let Queued {
                        client,
                        version,
                        body,
                        ..
                    } = request;
                    let handle = self.handles.next_id();
                    worker.jobs.push(Job {
                        client,
                        handle: handle.clone(),
                        client_version: version,
                        held: Message::new(),
                        held_bytes: 0,
                        overflow: false,
                        started: now,
                        progress: now,
                    });
                    let msg = mdp::encode_worker(WorkerMsg {
                        version: worker.version,
                        command: WorkerCommand::Request {
                            client: handle,
                            body,
                        },
                    });
                    // Credit left: it stays first in line, so a burst of requests fills one
                    // worker's credit (and shares its connection's batches) before the next
                    // worker gets one; workers take turns in the order their credit freed up.
                    if worker.free() > 0 {
                        svc.idle.push_front((id.clone(), generation));
                    }
                    self.out.push((id, msg));
                    self.report.dispatched += 1;
                }
            }
        }
    }

    /// Removes a registered worker; every request it held is dropped (at most once per
    /// attempt: the clients retry). Returns false if it was not registered.
    fn forget(&mut self, id: &[u8], events: &mut Events) -> bool {
        let Some(worker) = self.workers.remove(id) else {
            return false;
        };
        if let Some(svc) = self.services.get_mut(&worker.service) {
            svc.members.remove(id);
            // Its idle-queue entry, if it has one, stays behind, stale, removed lazily.
            svc.idle_count = svc.idle_count.saturating_sub(worker.free());
            if worker.free() > 0 {
                svc.stale += 1;
            }
        }
        for job in &worker.jobs {
            self.held_bytes -= job.held_bytes;
            self.report.requests_lost += 1;
            events.emit(Event::RequestDropped {
                service: frame_text(&worker.service),
                reason: "worker_lost".into(),
            });
        }
        true
    }

    fn expire(&mut self, id: &[u8], events: &mut Events) {
        let busy = self.workers.get(id).is_some_and(|w| !w.jobs.is_empty());
        if self.forget(id, events) {
            self.report.workers_expired += 1;
            events.emit(Event::WorkerExpired {
                worker: frame_text(id),
                busy,
            });
        }
    }

    /// Lets go of every client and worker, as a Binary Star node stepping down after a split:
    /// queued requests are dropped (`requests_lost`, reason `stepped_down`: the clients'
    /// retries reach the active broker) and every worker is sent DISCONNECT, so that workers
    /// with `--failover` move to the active broker (the others register here again, and are
    /// ready should this node take over).
    pub fn step_down(&mut self, events: &mut Events) {
        for (name, svc) in &mut self.services {
            for q in svc.requests.drain(..) {
                self.held_bytes -= q.bytes;
                self.report.requests_lost += 1;
                events.emit(Event::RequestDropped {
                    service: frame_text(name),
                    reason: "stepped_down".into(),
                });
            }
            svc.queued_bytes = 0;
        }
        let workers: Vec<(Frame, Version)> = self
            .workers
            .iter()
            .map(|(id, w)| (id.clone(), w.version))
            .collect();
        for (id, version) in workers {
            self.disconnect(id, version, "stepped_down", events);
        }
    }

    /// Sends DISCONNECT to `id` and forgets it if it was registered. `version` is used only
    /// for a worker we do not know; a registered one gets its own dialect.
    fn disconnect(&mut self, id: Frame, version: Version, reason: &str, events: &mut Events) {
        let version = self.workers.get(&id).map_or(version, |w| w.version);
        self.forget(&id, events);
        self.report.disconnects += 1;
        events.emit(Event::WorkerDisconnected {
            worker: frame_text(&id),
            reason: reason.into(),
        });
        let msg = mdp::encode_worker(WorkerMsg {
            version,
            command: WorkerCommand::Disconnect,
        });
        self.out.push((id, msg));
    }

    fn send_client(
        &mut self,
        client: Client,
        version: Version,
        command: ClientCommand,
        service: Frame,
        body: Message,
    ) {
        let msg = mdp::encode_client(ClientMsg {
            version,
            command,
            service,
            body,
        });
        let msg = mdp::wrap_client_envelope(client.envelope, msg);
        self.out.push((client.identity, msg));
    }
}

/// True if `(id, generation)` is a live idle-queue entry: that registration, with a free
/// credit (a registration with a free credit has exactly one entry).
fn is_idle(workers: &HashMap<Frame, Worker>, id: &[u8], generation: u64) -> bool {
    workers
        .get(id)
        .is_some_and(|w| w.generation == generation && w.free() > 0)
}

impl Job {
    /// True if, with busy timeout `limit`, the worker has held this request too long: `limit`
    /// since its last progress, or [`PARTIAL_GRACE`] × `limit` in all.
    fn stuck(&self, now: Instant, limit: Duration) -> bool {
        now.saturating_duration_since(self.progress) >= limit
            || now.saturating_duration_since(self.started) >= limit * PARTIAL_GRACE
    }
}

/// Bytes of a body: its frames' lengths.
fn body_bytes(body: &Message) -> u64 {
    body.iter().map(|f| f.len() as u64).sum()
}

/// What a queued request costs besides its body and its client's address: the queue entry
/// and the frames' own bookkeeping, rounded up.
pub const QUEUED_OVERHEAD: u64 = 128;

/// Bytes of a client's address: its identity and envelope frames.
fn client_bytes(client: &Client) -> u64 {
    let envelope: u64 = client.envelope.frames.iter().map(|f| f.len() as u64).sum();
    client.identity.len() as u64 + envelope
}

/// The `Invalid` reason for a service name over [`MAX_SERVICE_NAME`] (its start only).
fn long_name(from: &[u8], service: &[u8]) -> String {
    format!(
        "from {}: a service name of {} bytes (at most {MAX_SERVICE_NAME}): {}…",
        frame_text(from),
        service.len(),
        frame_text(&service[..service.len().min(32)])
    )
}

/// Moves the frames of `more` to the end of `into` (no body bytes are copied).
fn append(into: &mut Message, more: Message) {
    for frame in more.into_frames() {
        into.push_back(frame);
    }
}

/// The broker on the reactor: one ROUTER socket, no jobs (it never blocks), one deadline
/// (the heartbeat tick).
impl Machine for Broker {
    type Job = Infallible;
    type Done = Infallible;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: ROUTER,
            kind: SocketKind::Router,
            name: SOCKET,
            bind: vec![self.report.endpoint.clone()],
            connect: Vec::new(),
            identity: None,
        }]
    }

    fn start(&mut self, now: Instant, _out: &mut Outbox<Infallible>, events: &mut Events) {
        events.emit(Event::started("broker", self.report.endpoint.clone(), None));
        self.next_tick = Some(now + self.interval);
    }

    fn handle(
        &mut self,
        input: Input<Infallible>,
        now: Instant,
        out: &mut Outbox<Infallible>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { msg, .. } => self.accept(msg, now, events),
            Input::Done(never) => match never {},
        }
        self.flush(out);
    }

    /// Called after every batch the reactor drained, and whenever the deadline passes, so a
    /// flood of traffic cannot starve heartbeats.
    fn tick(&mut self, now: Instant, out: &mut Outbox<Infallible>, events: &mut Events) {
        if self.next_tick.is_some_and(|at| now >= at) {
            self.next_tick = Some(now + self.interval);
            self.beat(now, events);
            self.flush(out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.next_tick
    }
}

/// As a Binary Star node, only client messages are votes (see [`run_bstar`]).
impl Pair for Broker {
    fn is_vote(&self, _slot: Slot, msg: &Message) -> bool {
        is_client_message(msg)
    }

    fn step_down(&mut self, _now: Instant, out: &mut Outbox<Infallible>, events: &mut Events) {
        Broker::step_down(self, events);
        self.flush(out);
    }
}

/// The broker has no blocking work: nothing ever reaches this.
fn no_work(job: Infallible) -> Infallible {
    job
}

/// Runs the broker until `stop` is raised; returns its counters.
pub fn run(config: &BrokerConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let mut broker = Broker::new(config);
    reactor::run(&mut broker, no_work, stop, events)?;
    Ok(Report::Majordomo(broker.into_report()))
}

/// Runs the broker as one node of a Binary Star pair (see [`crate::bstar`]) until `stop` is
/// raised, or a fatal state pair (`Err`, exit 69 or 2).
///
/// Only *client* messages take part in the vote: while this node is not active they are
/// dropped unanswered (MDP has no refusal a client understands; its timeout moves it to the
/// other broker), and a client request is what makes a passive node take over. *Worker*
/// messages are handled in every state, so workers may register with both brokers (run
/// workers against each, or workers that fail over): the passive broker keeps its workers
/// registered and heartbeated, and has them ready the moment a client vote makes it active.
/// A passive broker never dispatches, since no client request gets in.
pub fn run_bstar(
    config: &BrokerConfig,
    bstar: &BstarOptions,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    let mut node = Bstar::new(bstar.clone(), Broker::new(config), Instant::now())?;
    let ended = reactor::run(&mut node, no_work, stop, events);
    node.finish(events);
    ended?;
    Ok(Report::Majordomo(node.into_inner().into_report()))
}

/// True if a ROUTER message (`[identity][frames…]`) is from an MDP client, with or without an
/// envelope.
fn is_client_message(msg: &Message) -> bool {
    // The header is in the first two frames after the identity; copy only those.
    let head = Message::from_frames(msg.iter().skip(1).take(2).map(<[u8]>::to_vec));
    matches!(mdp::peek_version(&head), Some((_, false)))
        || mdp::client_envelope_len(msg.iter().skip(1)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::proto::mdp::{decode_client, decode_worker, encode_client, encode_worker};

    const V1: Version = Version::V1;
    const V2: Version = Version::V2;

    fn config() -> BrokerConfig {
        BrokerConfig {
            bind: "inproc://test".into(),
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(100),
                liveness: 3,
            },
            request_ttl: Duration::from_millis(1000),
            max_queue: 2,
            ..BrokerConfig::default()
        }
    }

    fn m(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    /// A broker, a clock in milliseconds since `t0`, and the events it emitted.
    struct H {
        b: Broker,
        log: Rc<RefCell<Vec<Event>>>,
        ev: Events<'static>,
        t0: Instant,
    }

    impl H {
        fn new() -> H {
            H::with(config())
        }

        fn with(cfg: BrokerConfig) -> H {
            let log = Rc::new(RefCell::new(Vec::new()));
            let sink = log.clone();
            H {
                b: Broker::new(&cfg),
                log,
                ev: Events::new(false, move |e| sink.borrow_mut().push(e)),
                t0: Instant::now(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        /// Delivers `msg` from peer `from` at `ms`.
        ///
        /// Workers are given a broker-issued handle as the client address, not the client's
        /// identity. So that tests read as "w1 replies to c1", this harness shows the client's
        /// identity in every REQUEST it returns, and turns a worker's reply addressed to the
        /// identity of the client whose request that worker holds back into the handle it was
        /// given. Any other address (another client's, one the worker does not hold) goes to
        /// the broker unchanged. [`H::raw`] skips the translation.
        fn recv(&mut self, from: &str, msg: Message, ms: u64) -> Vec<Outgoing> {
            let msg = self.to_handle(from, msg);
            let out = self.raw(from, msg, ms);
            out.into_iter()
                .map(|(id, msg)| {
                    let msg = self.to_identity(&id, msg);
                    (id, msg)
                })
                .collect()
        }

        /// Delivers `msg` from peer `from` at `ms`, exactly as given, and returns exactly
        /// what the broker sends.
        fn raw(&mut self, from: &str, mut msg: Message, ms: u64) -> Vec<Outgoing> {
            msg.push_front(from.as_bytes().to_vec());
            let now = self.at(ms);
            self.b.receive(msg, now, &mut self.ev)
        }

        /// The job worker `id` holds, if any (its oldest, if it holds several).
        fn job(&self, id: &[u8]) -> Option<&Job> {
            self.b.workers.get(id).and_then(|w| w.jobs.first())
        }

        fn to_handle(&self, from: &str, msg: Message) -> Message {
            let Some(job) = self.job(from.as_bytes()) else {
                return msg;
            };
            match decode_worker(msg.clone()) {
                Ok(WorkerMsg { version, command }) => {
                    let swap = |client: Frame| {
                        if client == job.client.identity {
                            job.handle.clone()
                        } else {
                            client
                        }
                    };
                    let command = match command {
                        WorkerCommand::Reply { client, body } => WorkerCommand::Reply {
                            client: swap(client),
                            body,
                        },
                        WorkerCommand::Final { client, body } => WorkerCommand::Final {
                            client: swap(client),
                            body,
                        },
                        WorkerCommand::Partial { client, body } => WorkerCommand::Partial {
                            client: swap(client),
                            body,
                        },
                        _ => return msg,
                    };
                    encode_worker(WorkerMsg { version, command })
                }
                Err(_) => msg,
            }
        }

        fn to_identity(&self, to: &[u8], msg: Message) -> Message {
            let Some(job) = self.job(to) else {
                return msg;
            };
            match decode_worker(msg.clone()) {
                Ok(WorkerMsg {
                    version,
                    command: WorkerCommand::Request { client, body },
                }) if client == job.handle => encode_worker(WorkerMsg {
                    version,
                    command: WorkerCommand::Request {
                        client: job.client.identity.clone(),
                        body,
                    },
                }),
                _ => msg,
            }
        }

        fn tick(&mut self, ms: u64) -> Vec<Outgoing> {
            let now = self.at(ms);
            self.b.heartbeat(now, &mut self.ev)
        }

        fn ready(&mut self, worker: &str, version: Version, service: &str, ms: u64) {
            let out = self.recv(worker, ready(version, service), ms);
            assert!(
                out.iter().all(|(_, msg)| !is_disconnect(msg)),
                "{worker} refused"
            );
        }

        fn request(
            &mut self,
            client: &str,
            version: Version,
            service: &str,
            body: &str,
            ms: u64,
        ) -> Vec<Outgoing> {
            self.recv(client, request(version, service, &[body]), ms)
        }

        fn events(&self) -> Vec<Event> {
            self.log.borrow().clone()
        }

        fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
            self.log.borrow().iter().filter(|e| pred(e)).count()
        }
    }

    fn ready(version: Version, service: &str) -> Message {
        encode_worker(WorkerMsg {
            version,
            command: WorkerCommand::Ready {
                service: service.as_bytes().to_vec(),
                credit: None,
            },
        })
    }

    fn request(version: Version, service: &str, body: &[&str]) -> Message {
        encode_client(ClientMsg {
            version,
            command: ClientCommand::Request,
            service: service.as_bytes().to_vec(),
            body: Message::from_frames(body.iter().map(|b| b.as_bytes().to_vec())),
        })
    }

    fn worker_cmd(version: Version, command: WorkerCommand) -> Message {
        encode_worker(WorkerMsg { version, command })
    }

    /// A 0.1 REPLY (`last`, version V1), a 0.2 FINAL (`last`) or PARTIAL.
    fn reply(version: Version, client: &str, body: &[&str], last: bool) -> Message {
        let client = client.as_bytes().to_vec();
        let body = Message::from_frames(body.iter().map(|b| b.as_bytes().to_vec()));
        let command = match (version, last) {
            (Version::V1, _) => WorkerCommand::Reply { client, body },
            (Version::V2, true) => WorkerCommand::Final { client, body },
            (Version::V2, false) => WorkerCommand::Partial { client, body },
        };
        worker_cmd(version, command)
    }

    fn heartbeat(version: Version) -> Message {
        worker_cmd(version, WorkerCommand::Heartbeat)
    }

    fn is_disconnect(msg: &Message) -> bool {
        decode_worker(msg.clone()).is_ok_and(|w| w.command == WorkerCommand::Disconnect)
    }

    /// The one message in `out`, which must go to `to`.
    fn only(out: Vec<Outgoing>, to: &str) -> Message {
        assert_eq!(out.len(), 1, "expected one message, got {out:?}");
        let (id, msg) = out.into_iter().next().unwrap();
        assert_eq!(id, to.as_bytes(), "sent to the wrong peer");
        msg
    }

    /// The client address and body of a REQUEST sent to a worker.
    fn worker_request(msg: Message) -> (Version, String, String) {
        match decode_worker(msg).unwrap() {
            WorkerMsg {
                version,
                command: WorkerCommand::Request { client, body },
            } => (version, String::from_utf8(client).unwrap(), body.text()),
            other => panic!("not a REQUEST: {other:?}"),
        }
    }

    fn client_reply(msg: Message) -> ClientMsg {
        decode_client(msg, mdp::Direction::FromBroker).unwrap()
    }

    fn sent_to(out: &[Outgoing], to: &str) -> Vec<Message> {
        out.iter()
            .filter(|(id, _)| id == to.as_bytes())
            .map(|(_, msg)| msg.clone())
            .collect()
    }

    #[test]
    fn defaults_are_the_guides() {
        let c = BrokerConfig::default();
        assert_eq!(c.bind, "tcp://*:5555");
        assert_eq!(c.heartbeat.interval, Duration::from_millis(2500));
        assert_eq!(c.heartbeat.liveness, 3);
        assert_eq!(c.request_ttl, Duration::from_secs(10));
        assert_eq!(c.max_queue, 1_000_000);
    }

    #[test]
    fn a_queued_request_goes_to_the_worker_that_registers() {
        let mut h = H::new();
        assert!(h.request("c1", V1, "echo", "hello", 0).is_empty());
        let out = h.recv("w1", ready(V1, "echo"), 10);
        let (version, client, body) = worker_request(only(out, "w1"));
        assert_eq!(
            (version, client.as_str(), body.as_str()),
            (V1, "c1", "hello")
        );
        assert_eq!(h.b.report().requests, 1);
        assert_eq!(h.b.report().dispatched, 1);
        assert_eq!(h.b.report().workers_seen, 1);
        assert!(matches!(
            &h.events()[0],
            Event::ServiceWorkerReady { worker, service, credit: 1 } if worker == "w1" && service == "echo"
        ));
    }

    #[test]
    fn a_broker_stepping_down_drops_its_queue_and_disconnects_every_worker() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V2, "echo", 0);
        // w1 busy with c1's request, c2's queued for a service nobody serves.
        let out = h.request("c1", V1, "echo", "held", 10);
        assert_eq!(out.len(), 1);
        assert!(h.request("c2", V1, "nobody", "queued", 20).is_empty());
        h.b.step_down(&mut h.ev);
        let out = std::mem::take(&mut h.b.out);
        let mut told: Vec<&str> = out
            .iter()
            .filter(|(_, msg)| is_disconnect(msg))
            .map(|(id, _)| std::str::from_utf8(id).unwrap())
            .collect();
        told.sort();
        assert_eq!(told, ["w1", "w2"], "each in its own dialect: {out:?}");
        assert_eq!(out.len(), 2, "and nothing else: {out:?}");
        let r = h.b.report();
        assert_eq!((r.requests_lost, r.disconnects), (2, 2));
        assert_eq!(
            h.count(
                |e| matches!(e, Event::RequestDropped { reason, .. } if reason == "stepped_down")
            ),
            1
        );
        assert_eq!(h.b.held_bytes, 0);
        // Nothing is left to dispatch: a worker registering again gets no old request.
        let out = h.recv("w3", ready(V1, "nobody"), 30);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_v1_round_trip_has_the_exact_frames() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let out = h.request("c1", V1, "echo", "hi", 1);
        assert_eq!(
            only(out, "w1"),
            m(&[b"", b"MDPW01", &[0x02], b"c1", b"", b"hi"])
        );
        let out = h.recv("w1", reply(V1, "c1", &["HI"], true), 2);
        assert_eq!(only(out, "c1"), m(&[b"", b"MDPC01", b"echo", b"HI"]));
        assert_eq!(h.b.report().replies, 1);
    }

    #[test]
    fn dispatch_is_fifo_and_least_recently_used() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V1, "echo", 1);
        assert_eq!(
            worker_request(only(h.request("c1", V1, "echo", "a", 2), "w1")).2,
            "a"
        );
        assert_eq!(
            worker_request(only(h.request("c2", V1, "echo", "b", 3), "w2")).2,
            "b"
        );
        // Both busy: c and d wait, in order.
        assert!(h.request("c3", V1, "echo", "c", 4).is_empty());
        assert!(h.request("c4", V1, "echo", "d", 5).is_empty());
        // w2 finishes first and gets the oldest waiting request.
        let out = h.recv("w2", reply(V1, "c2", &["B"], true), 6);
        assert_eq!(out.len(), 2);
        assert_eq!(sent_to(&out, "c2").len(), 1);
        assert_eq!(worker_request(sent_to(&out, "w2").remove(0)).2, "c");
        let out = h.recv("w1", reply(V1, "c1", &["A"], true), 7);
        assert_eq!(worker_request(sent_to(&out, "w1").remove(0)).2, "d");
        // Queue empty: w2 then w1 finish, so w2 has been idle longest and is chosen next.
        h.recv("w2", reply(V1, "c3", &["C"], true), 8);
        h.recv("w1", reply(V1, "c4", &["D"], true), 9);
        assert_eq!(
            worker_request(only(h.request("c5", V1, "echo", "e", 10), "w2")).2,
            "e"
        );
    }

    #[test]
    fn services_are_separate() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        assert!(h.request("c1", V1, "upper", "x", 1).is_empty());
        h.ready("w2", V2, "upper", 2);
        assert_eq!(h.b.report().dispatched, 1);
        assert_eq!(
            worker_request(only(h.request("c2", V1, "echo", "y", 3), "w1")).2,
            "y"
        );
    }

    #[test]
    fn v2_client_gets_partials_then_final_from_a_v2_worker() {
        let mut h = H::new();
        h.ready("w1", V2, "stream", 0);
        let out = h.request("c1", V2, "stream", "go", 1);
        assert_eq!(only(out, "w1"), m(&[b"MDPW02", &[0x02], b"c1", b"", b"go"]));
        let out = h.recv("w1", reply(V2, "c1", &["p1"], false), 2);
        assert_eq!(only(out, "c1"), m(&[b"MDPC02", &[0x02], b"stream", b"p1"]));
        let out = h.recv("w1", reply(V2, "c1", &["p2", "p3"], false), 3);
        assert_eq!(
            only(out, "c1"),
            m(&[b"MDPC02", &[0x02], b"stream", b"p2", b"p3"])
        );
        let out = h.recv("w1", reply(V2, "c1", &["end"], true), 4);
        assert_eq!(only(out, "c1"), m(&[b"MDPC02", &[0x03], b"stream", b"end"]));
        assert_eq!(h.b.report().partials, 2);
        assert_eq!(h.b.report().replies, 1);
        // The worker is idle again after FINAL, not after a PARTIAL.
        assert_eq!(
            only(h.request("c2", V2, "stream", "again", 5), "w1").len(),
            5
        );
    }

    #[test]
    fn a_partial_keeps_the_worker_busy() {
        let mut h = H::new();
        h.ready("w1", V2, "s", 0);
        h.request("c1", V2, "s", "a", 1);
        h.recv("w1", reply(V2, "c1", &["p"], false), 2);
        assert!(h.request("c2", V2, "s", "b", 3).is_empty());
    }

    #[test]
    fn v1_worker_reply_to_v2_client_is_a_final() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let (version, ..) = worker_request(only(h.request("c1", V2, "echo", "x", 1), "w1"));
        assert_eq!(version, V1);
        let out = h.recv("w1", reply(V1, "c1", &["X"], true), 2);
        assert_eq!(only(out, "c1"), m(&[b"MDPC02", &[0x03], b"echo", b"X"]));
    }

    #[test]
    fn v2_worker_final_to_v1_client_is_a_reply() {
        let mut h = H::new();
        h.ready("w1", V2, "echo", 0);
        let (version, ..) = worker_request(only(h.request("c1", V1, "echo", "x", 1), "w1"));
        assert_eq!(version, V2);
        let out = h.recv("w1", reply(V2, "c1", &["X"], true), 2);
        assert_eq!(only(out, "c1"), m(&[b"", b"MDPC01", b"echo", b"X"]));
    }

    #[test]
    fn v2_partials_to_a_v1_client_are_held_and_sent_with_the_final() {
        let mut h = H::new();
        h.ready("w1", V2, "stream", 0);
        h.request("c1", V1, "stream", "go", 1);
        assert!(h.recv("w1", reply(V2, "c1", &["p1"], false), 2).is_empty());
        assert!(h
            .recv("w1", reply(V2, "c1", &["p2", "p3"], false), 3)
            .is_empty());
        let out = h.recv("w1", reply(V2, "c1", &["end"], true), 4);
        assert_eq!(
            only(out, "c1"),
            m(&[b"", b"MDPC01", b"stream", b"p1", b"p2", b"p3", b"end"])
        );
        // The held frames do not leak into the next request's reply.
        h.request("c2", V1, "stream", "go", 5);
        let out = h.recv("w1", reply(V2, "c2", &["only"], true), 6);
        assert_eq!(only(out, "c2"), m(&[b"", b"MDPC01", b"stream", b"only"]));
    }

    #[test]
    fn v2_peers_may_send_a_leading_empty_frame_and_never_get_one() {
        let mut h = H::new();
        let out = h.recv("w1", m(&[b"", b"MDPW02", &[0x01], b"echo"]), 0);
        assert!(out.is_empty());
        let out = h.recv("c1", m(&[b"", b"MDPC02", &[0x01], b"echo", b"x"]), 1);
        assert_eq!(only(out, "w1"), m(&[b"MDPW02", &[0x02], b"c1", b"", b"x"]));
        let out = h.recv("w1", m(&[b"", b"MDPW02", &[0x04], b"c1", b"", b"X"]), 2);
        assert_eq!(only(out, "c1"), m(&[b"MDPC02", &[0x03], b"echo", b"X"]));
    }

    #[test]
    fn heartbeats_and_disconnects_use_each_workers_dialect() {
        let mut h = H::new();
        h.ready("w1", V1, "a", 0);
        h.ready("w2", V2, "a", 0);
        let out = h.tick(100);
        assert_eq!(sent_to(&out, "w1"), vec![m(&[b"", b"MDPW01", &[0x04]])]);
        assert_eq!(sent_to(&out, "w2"), vec![m(&[b"MDPW02", &[0x05]])]);
        // A duplicate READY gets DISCONNECT in the worker's own dialect.
        let out = h.recv("w1", ready(V1, "a"), 110);
        assert_eq!(only(out, "w1"), m(&[b"", b"MDPW01", &[0x05]]));
        let out = h.recv("w2", ready(V2, "a"), 110);
        assert_eq!(only(out, "w2"), m(&[b"MDPW02", &[0x06]]));
    }

    #[test]
    fn mmi_service_answers_200_404_and_other_mmi_501() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let out = h.request("c1", V1, "mmi.service", "echo", 1);
        assert_eq!(
            only(out, "c1"),
            m(&[b"", b"MDPC01", b"mmi.service", b"200"])
        );
        let out = h.request("c1", V2, "mmi.service", "nope", 2);
        assert_eq!(
            only(out, "c1"),
            m(&[b"MDPC02", &[0x03], b"mmi.service", b"404"])
        );
        let out = h.request("c1", V1, "mmi.whatever", "x", 3);
        assert_eq!(
            only(out, "c1"),
            m(&[b"", b"MDPC01", b"mmi.whatever", b"501"])
        );
        assert_eq!(h.b.report().mmi, 3);
        // Management requests are not queued, dispatched or counted as requests.
        assert_eq!(h.b.report().requests, 0);
        assert_eq!(h.b.report().dispatched, 0);
    }

    #[test]
    fn mmi_service_is_404_for_a_known_service_without_workers() {
        let mut h = H::new();
        // A queued request makes the broker know the service, but nobody serves it (trap 2).
        h.request("c1", V1, "echo", "x", 0);
        let out = h.request("c2", V1, "mmi.service", "echo", 1);
        assert_eq!(client_reply(only(out, "c2")).body, m(&[b"404"]));
    }

    #[test]
    fn mmi_service_is_404_once_the_last_worker_is_gone() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V1, "other", 0);
        let ask = |h: &mut H, ms| {
            let out = h.request("c", V1, "mmi.service", "echo", ms);
            client_reply(only(out, "c")).body.text()
        };
        assert_eq!(ask(&mut h, 1), "200");
        // Silent past its expiry: 404 even before the tick that forgets it.
        h.recv("w2", heartbeat(V1), 250);
        assert_eq!(ask(&mut h, 299), "200");
        assert_eq!(ask(&mut h, 300), "404");
        h.tick(300);
        assert_eq!(ask(&mut h, 301), "404");
        // A worker that registers again makes it 200; one that disconnects makes it 404.
        h.ready("w3", V2, "echo", 400);
        assert_eq!(ask(&mut h, 401), "200");
        assert!(h
            .recv("w3", worker_cmd(V2, WorkerCommand::Disconnect), 402)
            .is_empty());
        assert_eq!(ask(&mut h, 403), "404");
    }

    #[test]
    fn mmi_status_is_json_with_services_workers_and_counters() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V1, "echo", 0);
        h.request("c1", V1, "echo", "a", 1);
        h.request("c1", V1, "nobody", "b", 2);
        let out = h.request("c1", V2, "mmi.status", "", 3);
        let reply = client_reply(only(out, "c1"));
        assert_eq!(reply.service, b"mmi.status");
        assert_eq!(reply.command, ClientCommand::Final);
        let v: Value = serde_json::from_slice(reply.body.get(0).unwrap()).unwrap();
        assert_eq!(v["workers"], 2);
        assert_eq!(
            v["services"]["echo"],
            json!({"workers": 2, "idle": 1, "queued": 0})
        );
        assert_eq!(
            v["services"]["nobody"],
            json!({"workers": 0, "idle": 0, "queued": 1})
        );
        assert_eq!(v["requests"], 2);
        assert_eq!(v["dispatched"], 1);
        assert_eq!(v["mmi"], 1);
        assert_eq!(v["workers_seen"], 2);
        assert_eq!(v["requests_lost"], 0);
        assert_eq!(v["endpoint"], "inproc://test");
    }

    #[test]
    fn a_worker_registering_an_mmi_service_is_disconnected() {
        let mut h = H::new();
        let out = h.recv("w1", ready(V1, "mmi.service"), 0);
        assert!(is_disconnect(&only(out, "w1")));
        assert_eq!(h.b.report().workers_seen, 0);
        assert_eq!(h.b.report().disconnects, 1);
        // Its later heartbeat is from an unregistered worker.
        assert!(is_disconnect(&only(h.recv("w1", heartbeat(V1), 1), "w1")));
        // mmi.* requests are still answered by the broker, never sent to a worker.
        let out = h.request("c1", V1, "mmi.service", "mmi.service", 2);
        assert_eq!(client_reply(only(out, "c1")).body.text(), "404");
    }

    #[test]
    fn mmi_is_decided_by_service_name_not_identity() {
        // Trap 1: an identity starting with mmi. is an ordinary peer.
        let mut h = H::new();
        h.ready("mmi.worker", V1, "echo", 0);
        let out = h.request("mmi.client", V1, "echo", "x", 1);
        let (_, client, _) = worker_request(only(out, "mmi.worker"));
        assert_eq!(client, "mmi.client");
    }

    #[test]
    fn duplicate_ready_disconnects_and_forgets_the_worker() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let out = h.recv("w1", ready(V1, "echo"), 1);
        assert!(is_disconnect(&only(out, "w1")));
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::WorkerDisconnected { worker, .. } if worker == "w1"
        )));
        // Forgotten: no heartbeat for it, no request for it.
        assert!(h.tick(100).is_empty());
        assert!(h.request("c1", V1, "echo", "x", 101).is_empty());
        // A fresh READY registers it again and it gets the waiting request, once.
        let out = h.recv("w1", ready(V1, "echo"), 102);
        assert_eq!(worker_request(only(out, "w1")).2, "x");
        assert!(h.request("c2", V1, "echo", "y", 103).is_empty());
    }

    #[test]
    fn a_duplicate_ready_from_a_busy_worker_drops_its_request() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.request("c1", V1, "echo", "x", 1);
        assert!(is_disconnect(&only(
            h.recv("w1", ready(V1, "echo"), 2),
            "w1"
        )));
        let v = h.b.status();
        assert_eq!(v["requests_lost"], 1);
        assert_eq!(
            h.count(
                |e| matches!(e, Event::RequestDropped { reason, .. } if reason == "worker_lost")
            ),
            1
        );
    }

    #[test]
    fn commands_from_unregistered_workers_get_disconnect() {
        let mut h = H::new();
        let cases = [
            heartbeat(V1),
            heartbeat(V2),
            reply(V1, "c1", &["x"], true),
            reply(V2, "c1", &["x"], true),
            reply(V2, "c1", &["x"], false),
            worker_cmd(
                V2,
                WorkerCommand::Request {
                    client: b"c1".to_vec(),
                    body: m(&[b"x"]),
                },
            ),
        ];
        for (i, msg) in cases.into_iter().enumerate() {
            let version = decode_worker(msg.clone()).unwrap().version;
            let out = h.recv("ghost", msg, i as u64);
            let got = decode_worker(only(out, "ghost")).unwrap();
            assert_eq!(got.command, WorkerCommand::Disconnect, "case {i}");
            assert_eq!(
                got.version, version,
                "case {i}: answered in its own dialect"
            );
        }
        // Nothing is delivered to the client named in a stray reply.
        assert_eq!(h.b.report().replies, 0);
        assert_eq!(h.b.report().disconnects, 6);
        // A DISCONNECT from a stranger gets nothing back.
        assert!(h
            .recv("ghost", worker_cmd(V1, WorkerCommand::Disconnect), 10)
            .is_empty());
    }

    #[test]
    fn a_request_command_from_a_registered_worker_is_a_protocol_error() {
        let mut h = H::new();
        h.ready("w1", V2, "echo", 0);
        let msg = worker_cmd(
            V2,
            WorkerCommand::Request {
                client: b"c".to_vec(),
                body: m(&[b"x"]),
            },
        );
        assert!(is_disconnect(&only(h.recv("w1", msg, 1), "w1")));
        assert!(h.tick(100).is_empty(), "forgotten");
    }

    #[test]
    fn a_reply_from_an_idle_worker_or_for_another_client_disconnects_it() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let out = h.recv("w1", reply(V1, "c1", &["x"], true), 1);
        assert!(is_disconnect(&only(out, "w1")));

        h.ready("w2", V1, "echo", 2);
        h.request("c1", V1, "echo", "x", 3);
        let out = h.recv("w2", reply(V1, "intruder", &["x"], true), 4);
        assert!(
            is_disconnect(&only(out, "w2")),
            "nothing sent to the intruder"
        );
        assert_eq!(h.b.status()["requests_lost"], 1);
        assert_eq!(h.b.report().replies, 0);
    }

    #[test]
    fn a_worker_disconnect_forgets_it_and_it_is_sent_nothing() {
        let mut h = H::new();
        h.ready("w1", V2, "echo", 0);
        let out = h.recv("w1", worker_cmd(V2, WorkerCommand::Disconnect), 1);
        assert!(out.is_empty());
        assert_eq!(h.b.report().disconnects, 1);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::WorkerDisconnected { worker, reason } if worker == "w1" && reason.contains("DISCONNECT")
        )));
        assert!(h.request("c1", V1, "echo", "x", 2).is_empty());
        assert!(h.tick(100).is_empty());
    }

    /// Heartbeats from `worker` every 100 ms in `from..to`, with a broker tick after each;
    /// returns what the ticks sent to `worker` other than heartbeats.
    fn heartbeating(h: &mut H, worker: &str, version: Version, from: u64, to: u64) -> Vec<Message> {
        let mut other = Vec::new();
        for ms in (from..to).step_by(100) {
            h.recv(worker, heartbeat(version), ms);
            let out = h.tick(ms + 1);
            other.extend(
                sent_to(&out, worker)
                    .into_iter()
                    .filter(|m| *m != heartbeat(version)),
            );
        }
        other
    }

    fn with_busy_timeout(ms: u64) -> H {
        H::with(BrokerConfig {
            busy_timeout: Some(Duration::from_millis(ms)),
            ..config()
        })
    }

    #[test]
    fn without_a_busy_timeout_a_heartbeating_busy_worker_is_kept_however_long() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        only(h.request("c1", V1, "echo", "x", 1), "w1");
        assert!(heartbeating(&mut h, "w1", V1, 100, 5000).is_empty());
        assert_eq!(h.b.report().workers_stuck, 0);
        assert_eq!(h.b.report().requests_lost, 0);
    }

    #[test]
    fn a_worker_busy_past_the_busy_timeout_is_disconnected_and_may_register_again() {
        let mut h = with_busy_timeout(500);
        h.ready("w1", V1, "echo", 0);
        only(h.request("c1", V1, "echo", "x", 1), "w1");
        // Heartbeats prove it alive, not that it is working on the request.
        assert!(heartbeating(&mut h, "w1", V1, 100, 500).is_empty());
        let sent = heartbeating(&mut h, "w1", V1, 500, 600);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(is_disconnect(&sent[0]));
        let r = h.b.report();
        assert_eq!((r.workers_stuck, r.requests_lost, r.disconnects), (1, 1, 1));
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::WorkerDisconnected { worker, reason }
                if worker == "w1" && reason.contains("--busy-timeout")
        )));
        // The client's retry waits for a worker; the reconnected one registers and gets it.
        assert!(h.request("c1", V1, "echo", "x", 700).is_empty());
        let out = h.recv("w1", ready(V1, "echo"), 710);
        assert_eq!(worker_request(only(out, "w1")).2, "x");
    }

    #[test]
    fn a_partial_is_progress_that_restarts_the_busy_timeout() {
        let mut h = with_busy_timeout(500);
        h.ready("w1", V2, "lines", 0);
        only(h.request("c1", V2, "lines", "x", 0), "w1");
        assert!(heartbeating(&mut h, "w1", V2, 100, 400).is_empty());
        h.recv("w1", reply(V2, "c1", &["1"], false), 400);
        // Past 500 ms since the REQUEST, not since the PARTIAL: kept.
        assert!(heartbeating(&mut h, "w1", V2, 400, 900).is_empty());
        let sent = heartbeating(&mut h, "w1", V2, 900, 1000);
        assert!(sent.iter().any(is_disconnect), "{sent:?}");
        assert_eq!(h.b.report().workers_stuck, 1);
    }

    #[test]
    fn a_worker_that_replies_in_time_is_never_stuck() {
        let mut h = with_busy_timeout(500);
        h.ready("w1", V1, "echo", 0);
        for i in 0..10u64 {
            let t = i * 400;
            only(h.request("c1", V1, "echo", "x", t + 1), "w1");
            assert!(heartbeating(&mut h, "w1", V1, t + 100, t + 400).is_empty());
            h.recv("w1", reply(V1, "c1", &["x"], true), t + 399);
        }
        assert_eq!(h.b.report().workers_stuck, 0);
        assert_eq!(h.b.report().replies, 10);
    }

    #[test]
    fn every_worker_idle_or_busy_is_heartbeated_each_tick() {
        let mut h = H::new();
        h.ready("idle", V1, "a", 0);
        h.ready("busy", V2, "b", 0);
        h.request("c", V1, "b", "x", 1);
        let out = h.tick(100);
        assert_eq!(out.len(), 2);
        assert_eq!(sent_to(&out, "busy"), vec![heartbeat(V2)]);
        assert_eq!(sent_to(&out, "idle"), vec![heartbeat(V1)]);
    }

    #[test]
    fn a_silent_idle_worker_expires() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        assert_eq!(h.tick(299).len(), 1, "alive: heartbeated");
        assert!(h.tick(300).is_empty(), "expired: not heartbeated");
        assert_eq!(h.b.report().workers_expired, 1);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::WorkerExpired { worker, busy: false } if worker == "w1"
        )));
        assert!(h.request("c1", V1, "echo", "x", 301).is_empty());
    }

    #[test]
    fn any_message_keeps_a_worker_alive() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.recv("w1", heartbeat(V1), 250);
        assert_eq!(h.tick(500).len(), 1);
        h.request("c1", V1, "echo", "x", 501);
        h.recv("w1", reply(V1, "c1", &["x"], true), 700);
        assert_eq!(h.tick(999).len(), 1);
        assert!(h.tick(1000).is_empty());
        assert_eq!(h.b.report().workers_expired, 1);
    }

    #[test]
    fn a_busy_worker_that_dies_is_expired_and_its_request_dropped() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V1, "echo", 0);
        h.request("c1", V1, "echo", "x", 1);
        // w2 (idle) keeps beating, w1 (busy) goes silent.
        h.recv("w2", heartbeat(V1), 200);
        h.tick(300);
        assert_eq!(h.b.report().workers_expired, 1);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::WorkerExpired { worker, busy: true } if worker == "w1"
        )));
        assert_eq!(h.b.status()["requests_lost"], 1);
        // Not re-queued: at most once per attempt. w2 stays idle until the client retries.
        let v = h.b.status();
        assert_eq!(
            v["services"]["echo"],
            json!({"workers": 1, "idle": 1, "queued": 0})
        );
        // The dead worker's late reply is refused, not delivered.
        let out = h.recv("w1", reply(V1, "c1", &["late"], true), 301);
        assert!(is_disconnect(&only(out, "w1")));
        // The retry goes to w2.
        assert_eq!(
            worker_request(only(h.request("c1", V1, "echo", "x", 302), "w2")).2,
            "x"
        );
    }

    #[test]
    fn a_heartbeat_never_makes_a_busy_worker_idle() {
        // Trap 7.
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.request("c1", V1, "echo", "a", 1);
        assert!(h.recv("w1", heartbeat(V1), 2).is_empty());
        assert!(h.recv("w1", heartbeat(V1), 3).is_empty());
        assert!(h.request("c2", V1, "echo", "b", 4).is_empty(), "w1 is busy");
        let out = h.recv("w1", reply(V1, "c1", &["A"], true), 5);
        assert_eq!(worker_request(sent_to(&out, "w1").remove(0)).2, "b");
        assert!(h.request("c3", V1, "echo", "c", 6).is_empty());
    }

    #[test]
    fn a_dead_idle_worker_is_not_given_a_request_before_the_tick() {
        let mut h = H::new();
        h.ready("old", V1, "echo", 0);
        h.ready("new", V1, "echo", 200);
        // "old" is first in the LRU queue but silent past its expiry.
        let out = h.request("c1", V1, "echo", "x", 350);
        assert_eq!(worker_request(only(out, "new")).2, "x");
        assert_eq!(h.b.report().workers_expired, 1);
        // Only "new" is heartbeated now.
        let out = h.tick(400);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, b"new");
    }

    #[test]
    fn a_worker_registered_again_is_in_the_idle_queue_once() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.recv("w1", worker_cmd(V1, WorkerCommand::Disconnect), 1);
        h.ready("w1", V1, "echo", 2);
        // The first registration's entry is stale: only one request goes to w1.
        assert_eq!(only(h.request("c1", V1, "echo", "a", 3), "w1").len(), 6);
        assert!(h.request("c2", V1, "echo", "b", 4).is_empty());
        let v = h.b.status();
        assert_eq!(
            v["services"]["echo"],
            json!({"workers": 1, "idle": 0, "queued": 1})
        );
    }

    #[test]
    fn stale_idle_entries_are_compacted_on_the_tick() {
        let mut h = H::new();
        for i in 0..5 {
            let w = format!("w{i}");
            h.ready(&w, V1, "echo", 0);
            h.recv(&w, worker_cmd(V1, WorkerCommand::Disconnect), 1);
        }
        h.ready("live", V1, "echo", 2);
        assert_eq!(h.b.services[&b"echo"[..]].idle.len(), 6);
        h.tick(100);
        assert_eq!(h.b.services[&b"echo"[..]].idle.len(), 1);
        assert_eq!(h.b.services[&b"echo"[..]].stale, 0);
        assert_eq!(only(h.request("c", V1, "echo", "x", 101), "live").len(), 6);
    }

    #[test]
    fn queued_requests_expire_after_the_ttl() {
        let mut h = H::new();
        h.request("c1", V1, "echo", "old", 0);
        h.request("c2", V1, "echo", "new", 500);
        h.tick(999);
        assert_eq!(h.b.report().requests_expired, 0);
        h.tick(1000);
        assert_eq!(h.b.report().requests_expired, 1);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::RequestDropped { service, reason } if service == "echo" && reason == "ttl"
        )));
        // The younger one survives and is served.
        let out = h.recv("w1", ready(V1, "echo"), 1001);
        assert_eq!(worker_request(only(out, "w1")).2, "new");
    }

    #[test]
    fn empty_services_are_forgotten() {
        let mut h = H::new();
        h.request("c1", V1, "nobody", "x", 0);
        h.tick(100);
        assert!(h.b.status()["services"]["nobody"].is_object());
        h.tick(1000);
        assert_eq!(h.b.status()["services"], json!({}));
        h.ready("w1", V1, "echo", 1001);
        h.recv("w1", worker_cmd(V1, WorkerCommand::Disconnect), 1002);
        h.tick(1100);
        assert_eq!(h.b.status()["services"], json!({}));
    }

    #[test]
    fn a_full_queue_refuses_the_newest_request() {
        let mut h = H::new(); // max_queue 2
        assert!(h.request("c1", V1, "echo", "a", 0).is_empty());
        assert!(h.request("c2", V1, "echo", "b", 1).is_empty());
        assert!(
            h.request("c3", V1, "echo", "c", 2).is_empty(),
            "nothing sent to c3"
        );
        assert_eq!(h.b.report().requests_rejected, 1);
        assert_eq!(h.b.report().requests, 2);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::RequestDropped { service, reason } if service == "echo" && reason == "queue_full"
        )));
        // The two that were queued are served in order.
        h.ready("w1", V1, "echo", 3);
        let out = h.recv("w1", reply(V1, "c1", &["A"], true), 4);
        assert_eq!(worker_request(sent_to(&out, "w1").remove(0)).2, "b");
        // Other services have their own bound.
        assert!(h.request("c4", V1, "other", "d", 5).is_empty());
        assert_eq!(h.b.report().requests_rejected, 1);
    }

    #[test]
    fn max_queue_zero_serves_only_when_a_worker_is_idle() {
        let mut h = H::with(BrokerConfig {
            max_queue: 0,
            ..config()
        });
        assert!(h.request("c1", V1, "echo", "a", 0).is_empty());
        assert_eq!(h.b.report().requests_rejected, 1);
        h.ready("w1", V1, "echo", 1);
        assert_eq!(only(h.request("c2", V1, "echo", "b", 2), "w1").len(), 6);
        assert_eq!(h.b.report().requests, 1);
    }

    #[test]
    fn malformed_messages_are_counted_and_dropped() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let bad: &[&[&[u8]]] = &[
            &[],
            &[b""],
            &[b"hello"],
            &[b"MDPC01", b"echo", b"x"],          // 0.1 without delimiter
            &[b"", b"MDPC01", b"echo"],           // no body
            &[b"", b"MDPC01", b"", b"x"],         // empty service
            &[b"MDPC02", &[0x03], b"echo", b"x"], // FINAL sent to the broker
            &[b"MDPC02", &[0x09], b"echo", b"x"], // unknown command
            &[b"MDPC02", b"REQUEST", b"echo", b"x"], // command frame not one byte
            &[b"", b"MDPW01", &[0x09]],
            &[b"", b"MDPW01", &[0x01]], // READY without service
            &[b"", b"MDPW01", &[0x04], b"extra"],
            &[b"", b"MDPW01", &[0x03], b"c1", b"x"], // reply without envelope delimiter
            &[b"MDPW02", &[0x04], b"", b"", b"x"],   // FINAL with empty address
        ];
        for frames in bad {
            assert!(h.recv("peer", m(frames), 1).is_empty(), "{frames:?}");
        }
        // With no identity frame at all.
        assert!(h.b.receive(Message::new(), h.at(1), &mut h.ev).is_empty());
        // An unknown header after a REQ delimiter: counted too, and answered (not_mdp).
        let out = h.recv("peer", m(&[b"", b"MDPX01", b"echo", b"x"]), 1);
        assert_eq!(only(out, "peer"), m(&[b"", b"MDPC01", b"", NOT_MDP]));
        assert_eq!(h.b.report().invalid, bad.len() as u64 + 2);
        assert_eq!(
            h.count(|e| matches!(e, Event::Invalid { socket, .. } if socket == "broker")),
            bad.len() + 2
        );
        // The broker carries on.
        assert_eq!(only(h.request("c1", V1, "echo", "x", 2), "w1").len(), 6);
    }

    #[test]
    fn random_input_never_panics() {
        // xorshift64, fixed seed: deterministic.
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const POOL: &[&[u8]] = &[
            b"",
            b"",
            b"MDPC01",
            b"MDPW01",
            b"MDPC02",
            b"MDPW02",
            &[1],
            &[2],
            &[3],
            &[4],
            &[5],
            &[6],
            b"echo",
            b"mmi.service",
            b"mmi.status",
            b"p0",
            b"p1",
            b"p2",
        ];
        let mut h = H::new();
        for i in 0..20_000u64 {
            let peer = format!("p{}", next() % 3);
            let frames: Vec<Vec<u8>> = (0..next() % 7)
                .map(|_| POOL[(next() % POOL.len() as u64) as usize].to_vec())
                .collect();
            h.recv(&peer, Message::from_frames(frames), i);
            if i % 50 == 0 {
                h.tick(i);
            }
        }
        let r = h.b.report();
        assert!(
            r.invalid > 0 && r.workers_seen > 0 && r.requests > 0,
            "{r:?}"
        );
    }

    #[test]
    fn only_client_messages_are_votes() {
        let mut client = request(V1, "echo", &["x"]);
        client.push_front(b"c".to_vec());
        assert!(is_client_message(&client));
        let mut v2 = request(V2, "echo", &["x"]);
        v2.push_front(b"c".to_vec());
        assert!(is_client_message(&v2));
        let mut worker = ready(V2, "echo");
        worker.push_front(b"w".to_vec());
        assert!(!is_client_message(&worker));
        assert!(!is_client_message(&m(&[b"junk"])));
        // A client with a request id, or behind a proxy, votes too.
        let mut with_id = with_envelope(&[b"hop", b"rid"], request(V1, "echo", &["x"]));
        with_id.push_front(b"c".to_vec());
        assert!(is_client_message(&with_id));
    }

    /// `[envelope…]["" ][client message…]`, as a client with a request id, or behind a
    /// ROUTER/DEALER proxy, sends it.
    fn with_envelope(envelope: &[&[u8]], msg: Message) -> Message {
        let envelope = mdp::Envelope {
            frames: envelope.iter().map(|f| f.to_vec()).collect(),
            delimited: true,
        };
        mdp::wrap_client_envelope(envelope, msg)
    }

    /// The handle a worker was given in a REQUEST, as the broker sent it.
    fn handle_of(msg: Message) -> Frame {
        match decode_worker(msg).unwrap().command {
            WorkerCommand::Request { client, .. } => client,
            other => panic!("not a REQUEST: {other:?}"),
        }
    }

    fn raw_reply(version: Version, handle: &[u8], body: &str) -> Message {
        let body = m(&[body.as_bytes()]);
        let client = handle.to_vec();
        worker_cmd(
            version,
            match version {
                Version::V1 => WorkerCommand::Reply { client, body },
                Version::V2 => WorkerCommand::Final { client, body },
            },
        )
    }

    #[test]
    fn a_worker_sees_a_fresh_handle_per_request_never_the_client_identity() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let first = handle_of(only(h.raw("c1", request(V1, "echo", &["a"]), 1), "w1"));
        assert_ne!(first, b"c1");
        assert_eq!(first.len(), 16);
        assert!(first.iter().all(u8::is_ascii_hexdigit), "printable");
        let out = h.raw("w1", raw_reply(V1, &first, "A"), 2);
        assert_eq!(only(out, "c1"), m(&[b"", b"MDPC01", b"echo", b"A"]));
        let second = handle_of(only(h.raw("c1", request(V1, "echo", &["b"]), 3), "w1"));
        assert_ne!(first, second, "one handle per dispatch");
        // A stale copy of its previous reply, while it holds the next request: refused, and
        // the client gets nothing for it.
        let out = h.raw("w1", raw_reply(V1, &first, "A"), 4);
        assert!(is_disconnect(&only(out, "w1")));
        assert_eq!(h.b.report().replies, 1);
    }

    #[test]
    fn a_worker_that_replies_twice_is_disconnected_and_the_client_gets_one_reply() {
        for version in [V1, V2] {
            let mut h = H::new();
            h.ready("w1", version, "echo", 0);
            let handle = handle_of(only(h.raw("c1", request(V1, "echo", &["a"]), 1), "w1"));
            assert_eq!(
                sent_to(&h.raw("w1", raw_reply(version, &handle, "A"), 2), "c1").len(),
                1
            );
            let out = h.raw("w1", raw_reply(version, &handle, "A"), 3);
            assert!(is_disconnect(&only(out, "w1")), "{version:?}");
            assert_eq!(h.b.report().replies, 1);
        }
    }

    #[test]
    fn a_worker_cannot_answer_with_the_handle_another_worker_holds() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V2, "echo", 0);
        let h1 = handle_of(only(h.raw("c1", request(V1, "echo", &["a"]), 1), "w1"));
        let h2 = handle_of(only(h.raw("c2", request(V1, "echo", &["b"]), 2), "w2"));
        assert_ne!(h1, h2);
        let out = h.raw("w2", raw_reply(V2, &h1, "FORGED"), 3);
        assert!(is_disconnect(&only(out, "w2")), "nothing reaches c1");
        let out = h.raw("w1", raw_reply(V1, &h1, "A"), 4);
        assert_eq!(only(out, "c1"), m(&[b"", b"MDPC01", b"echo", b"A"]));
    }

    #[test]
    fn client_envelopes_come_back_whole_in_any_order_in_both_versions() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        h.ready("w2", V2, "echo", 0);
        // Two requests in flight on one client connection, told apart only by their ids.
        let a = with_envelope(&[b"rid-a"], request(V1, "echo", &["a"]));
        let b = with_envelope(&[b"hop", b"rid-b"], request(V2, "echo", &["b"]));
        let ha = handle_of(only(h.raw("c1", a, 1), "w1"));
        let hb = handle_of(only(h.raw("c1", b, 2), "w2"));
        let out = h.raw("w2", raw_reply(V2, &hb, "B"), 3);
        assert_eq!(
            only(out, "c1"),
            m(&[b"hop", b"rid-b", b"", b"MDPC02", &[3], b"echo", b"B"])
        );
        let out = h.raw("w1", raw_reply(V1, &ha, "A"), 4);
        assert_eq!(
            only(out, "c1"),
            m(&[b"rid-a", b"", b"MDPC01", b"echo", b"A"])
        );
        assert_eq!(h.b.report().replies, 2);
        assert_eq!(h.b.report().invalid, 0);
    }

    #[test]
    fn partials_to_a_client_with_an_envelope_carry_it_each_time() {
        let mut h = H::new();
        h.ready("w1", V2, "s", 0);
        let req = with_envelope(&[b"rid"], request(V2, "s", &["go"]));
        let handle = handle_of(only(h.raw("c1", req, 1), "w1"));
        let partial = worker_cmd(
            V2,
            WorkerCommand::Partial {
                client: handle.clone(),
                body: m(&[b"p"]),
            },
        );
        let out = h.raw("w1", partial, 2);
        assert_eq!(
            only(out, "c1"),
            m(&[b"rid", b"", b"MDPC02", &[2], b"s", b"p"])
        );
        let out = h.raw("w1", raw_reply(V2, &handle, "end"), 3);
        assert_eq!(
            only(out, "c1"),
            m(&[b"rid", b"", b"MDPC02", &[3], b"s", b"end"])
        );
    }

    #[test]
    fn a_standard_v2_client_behind_a_proxy_is_answered_through_it() {
        let mut h = H::new();
        h.ready("w1", V2, "echo", 0);
        let mut req = request(V2, "echo", &["x"]);
        req.push_front(b"hop".to_vec());
        let handle = handle_of(only(h.raw("proxy", req, 1), "w1"));
        let out = h.raw("w1", raw_reply(V2, &handle, "X"), 2);
        assert_eq!(
            only(out, "proxy"),
            m(&[b"hop", b"MDPC02", &[3], b"echo", b"X"])
        );
    }

    #[test]
    fn mmi_correlate_says_200_with_or_without_an_envelope() {
        let mut h = H::new();
        let out = h.raw("c1", request(V1, "mmi.correlate", &["1"]), 0);
        assert_eq!(
            only(out, "c1"),
            m(&[b"", b"MDPC01", b"mmi.correlate", b"200"])
        );
        let asked = with_envelope(&[b"rid"], request(V2, "mmi.correlate", &["1"]));
        let out = h.raw("c1", asked, 1);
        assert_eq!(
            only(out, "c1"),
            m(&[b"rid", b"", b"MDPC02", &[3], b"mmi.correlate", b"200"])
        );
    }

    #[test]
    fn a_request_without_a_majordomo_header_is_answered_so_and_counted() {
        let mut h = H::new();
        // A Lazy Pirate client's REQ: [""]["hello"]; and one behind a proxy hop.
        let out = h.raw("c1", m(&[b"", b"hello"]), 0);
        assert_eq!(only(out, "c1"), m(&[b"", b"MDPC01", b"", NOT_MDP]));
        let out = h.raw("c1", m(&[b"hop", b"", b"a", b"b"]), 0);
        assert_eq!(only(out, "c1"), m(&[b"hop", b"", b"MDPC01", b"", NOT_MDP]));
        assert_eq!(h.b.report().invalid, 2);
    }

    #[test]
    fn a_worker_message_behind_an_envelope_is_invalid() {
        let mut h = H::new();
        let msg = m(&[b"hop", b"", b"MDPW01", &[0x01], b"echo"]);
        assert!(h.raw("w1", msg, 0).is_empty());
        assert_eq!(h.b.report().invalid, 1);
        assert_eq!(h.b.report().workers_seen, 0);
    }

    /// A DEALER peer on the process's context (the reactor's), so inproc endpoints meet.
    fn dealer(endpoint: &str, identity: &[u8]) -> zmq::Socket {
        let socket = crate::transport::context().socket(zmq::DEALER).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_identity(identity).unwrap();
        socket.connect(endpoint).unwrap();
        socket
    }

    fn send_to(peer: &zmq::Socket, msg: Message) {
        peer.send_multipart(msg.into_frames(), 0).unwrap();
    }

    /// The next message `peer` receives within `ms` milliseconds, if one comes.
    fn recv_within(peer: &zmq::Socket, ms: i32) -> Option<Message> {
        peer.set_rcvtimeo(ms).unwrap();
        peer.recv_multipart(0).ok().map(Message::from)
    }

    fn fast(bind: &str) -> BrokerConfig {
        BrokerConfig {
            bind: bind.into(),
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(20),
                liveness: 3,
            },
            ..config()
        }
    }

    #[test]
    fn a_binary_star_backup_alone_registers_workers_but_refuses_clients() {
        use crate::bstar::Role;

        let id = rand::random::<u64>();
        let endpoint = format!("inproc://bstar-broker-{id}");
        let cfg = fast(&endpoint);
        let stop = Stop::new();
        let options = BstarOptions {
            role: Role::Backup,
            state_pub: format!("inproc://bstar-broker-states-{id}"),
            peer_state: format!("inproc://bstar-broker-nobody-{id}"),
            heartbeat: Duration::from_millis(10),
            on_split: crate::bstar::SplitPolicy::Resolve,
        };
        let broker = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut node = Bstar::new(options, Broker::new(&cfg), Instant::now()).unwrap();
                let ended = reactor::run(&mut node, no_work, &stop, &mut Events::discard());
                let refused = node.refused();
                let state = node.state();
                (ended, node.into_inner().into_report(), refused, state)
            }
        });

        let worker = dealer(&endpoint, b"w1");
        send_to(&worker, ready(V2, "echo"));
        assert_eq!(
            recv_within(&worker, 2000),
            Some(heartbeat(V2)),
            "a passive broker heartbeats workers"
        );
        let client = dealer(&endpoint, b"c1");
        send_to(&client, request(V1, "echo", &["hi"]));
        send_to(&client, request(V1, "mmi.service", &["echo"]));
        assert_eq!(
            recv_within(&client, 300),
            None,
            "a backup alone never answers"
        );

        stop.request();
        let (ended, report, refused, state) = broker.join().unwrap();
        assert_eq!(ended.unwrap(), reactor::Ended::Stopped);
        assert_eq!(
            (report.requests, report.mmi, report.workers_seen),
            (0, 0, 1)
        );
        assert_eq!(refused, 2);
        assert_eq!(state, crate::bstar::State::Backup);
    }

    #[test]
    fn serves_over_a_real_socket_until_stopped() {
        let endpoint = format!("inproc://broker-smoke-{}", rand::random::<u64>());
        let cfg = fast(&endpoint);
        let stop = Stop::new();
        let broker = std::thread::spawn({
            let stop = stop.clone();
            move || run(&cfg, &stop, &mut Events::discard())
        });

        let worker = dealer(&endpoint, b"w1");
        send_to(&worker, ready(V2, "echo"));
        let client = dealer(&endpoint, b"c1");
        // Wait until the worker is registered (heartbeats prove it), then ask.
        assert_eq!(recv_within(&worker, 2000), Some(heartbeat(V2)));
        send_to(&client, request(V1, "echo", &["hello"]));
        let got = loop {
            let msg = recv_within(&worker, 2000).expect("no request");
            if msg != heartbeat(V2) {
                break msg;
            }
        };
        // The worker sees a handle, not the client's identity, and echoes it.
        let (_, addr, body) = worker_request(got);
        assert_ne!(addr, "c1");
        assert_eq!(body, "hello");
        send_to(&worker, reply(V2, &addr, &["HELLO"], true));
        assert_eq!(
            recv_within(&client, 2000),
            Some(m(&[b"", b"MDPC01", b"echo", b"HELLO"])),
            "no reply"
        );

        stop.request();
        let Report::Majordomo(report) = broker.join().unwrap().unwrap() else {
            panic!("not a broker report");
        };
        assert_eq!(
            (report.requests, report.dispatched, report.replies),
            (1, 1, 1)
        );
        assert_eq!(report.workers_seen, 1);
    }

    // ---- the broker as a reactor machine ----

    #[test]
    fn as_a_machine_it_binds_one_router_says_so_and_keeps_the_heartbeat_deadline() {
        let mut b = Broker::new(&config());
        match &b.sockets()[..] {
            [spec] => {
                assert_eq!(
                    (spec.slot, spec.kind, spec.name),
                    (ROUTER, SocketKind::Router, "broker")
                );
                assert_eq!(spec.bind, ["inproc://test"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.next_deadline(), None, "no deadline before start");
        let (t0, mut out, mut seen) = (Instant::now(), Outbox::default(), Vec::new());
        b.start(t0, &mut out, &mut Events::new(false, |e| seen.push(e)));
        assert!(out.is_empty());
        assert!(matches!(&seen[..], [Event::Started { role, seed: None, .. }] if role == "broker"));
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn as_a_machine_its_ticks_before_the_deadline_send_nothing() {
        let mut b = Broker::new(&config());
        let (t0, mut out, mut ev) = (Instant::now(), Outbox::default(), Events::discard());
        b.start(t0, &mut out, &mut ev);
        let msg = with_identity("w1", ready(V1, "echo"));
        b.handle(Input::Message { slot: ROUTER, msg }, t0, &mut out, &mut ev);
        assert!(out.take().is_empty(), "READY is not answered");
        // The reactor may tick after any batch: early ticks are no-ops.
        b.tick(t0 + Duration::from_millis(99), &mut out, &mut ev);
        assert!(out.take().is_empty());
        b.tick(t0 + Duration::from_millis(100), &mut out, &mut ev);
        assert_eq!(
            out.take(),
            [reactor::Output::Send {
                slot: ROUTER,
                msg: with_identity("w1", heartbeat(V1)),
            }]
        );
        assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn as_a_machine_a_drained_batch_is_answered_in_order_behind_each_identity() {
        // The reactor hands over up to BATCH messages per wake-up before it sends anything:
        // every answer of the batch is in the outbox, in order, each behind its identity.
        let mut b = Broker::new(&BrokerConfig {
            max_queue: 1000,
            ..config()
        });
        let (t0, mut out, mut ev) = (Instant::now(), Outbox::default(), Events::discard());
        b.start(t0, &mut out, &mut ev);
        for w in 0..3 {
            let msg = with_identity(&format!("w{w}"), ready(V2, "echo"));
            b.handle(Input::Message { slot: ROUTER, msg }, t0, &mut out, &mut ev);
        }
        for i in 0..reactor::BATCH {
            let msg = with_identity(&format!("c{i}"), request(V1, "echo", &[&i.to_string()]));
            b.handle(Input::Message { slot: ROUTER, msg }, t0, &mut out, &mut ev);
        }
        let sent = out.take();
        let to: Vec<Vec<u8>> = sent
            .iter()
            .map(|o| match o {
                reactor::Output::Send { slot: ROUTER, msg } => msg.get(0).unwrap().to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        // Three idle workers get the first three requests, least recently used first; the
        // rest wait in the queue.
        assert_eq!(to, [b"w0".to_vec(), b"w1".to_vec(), b"w2".to_vec()]);
        assert_eq!(b.report().requests, reactor::BATCH as u64);
        assert_eq!(b.report().dispatched, 3);
    }

    #[test]
    fn as_a_binary_star_node_only_client_messages_are_votes() {
        let b = Broker::new(&config());
        assert!(b.is_vote(ROUTER, &with_identity("c1", request(V1, "echo", &["x"]))));
        assert!(b.is_vote(ROUTER, &with_identity("c1", request(V2, "echo", &["x"]))));
        assert!(!b.is_vote(ROUTER, &with_identity("w1", ready(V1, "echo"))));
        assert!(!b.is_vote(ROUTER, &with_identity("w1", heartbeat(V2))));
    }

    fn with_identity(id: &str, mut msg: Message) -> Message {
        msg.push_front(id.as_bytes().to_vec());
        msg
    }

    // ---- bounds: bytes, held PARTIALs, service names ----

    fn with_bytes(queue: u64, total: u64) -> H {
        H::with(BrokerConfig {
            max_queue: 100,
            max_queue_bytes: queue,
            max_bytes: total,
            ..config()
        })
    }

    fn dropped(h: &H, why: &str) -> usize {
        h.count(|e| matches!(e, Event::RequestDropped { reason, .. } if reason == why))
    }

    /// What a queued request from a two-letter client (`c1`) costs: its body, its identity
    /// and the per-request overhead.
    fn cost(body: &str) -> u64 {
        body.len() as u64 + 2 + QUEUED_OVERHEAD
    }

    #[test]
    fn a_service_queue_is_bounded_in_bytes() {
        let mut h = with_bytes(cost("123456") + cost("wxyz"), 10_000);
        assert!(h.request("c1", V1, "echo", "123456", 0).is_empty());
        // Two six-byte requests do not fit; a six- and a four-byte one do.
        assert!(h.request("c2", V1, "echo", "abcdef", 1).is_empty());
        assert!(h.request("c3", V1, "echo", "wxyz", 2).is_empty());
        assert_eq!(dropped(&h, "queue_bytes"), 1);
        assert_eq!(h.b.report().requests_rejected, 1);
        assert_eq!(h.b.held_bytes, cost("123456") + cost("wxyz"));
        // The queue drains in order, and its bytes with it.
        h.ready("w1", V1, "echo", 3);
        h.recv("w1", reply(V1, "c1", &["x"], true), 4);
        assert_eq!(h.b.held_bytes, 0, "both requests dispatched");
    }

    #[test]
    fn empty_requests_are_bounded_in_bytes_too() {
        // A flood of empty bodies still costs each its address and bookkeeping.
        let mut h = with_bytes(3 * cost(""), 10_000);
        for (i, client) in ["c1", "c2", "c3", "c4"].into_iter().enumerate() {
            assert!(h.request(client, V1, "echo", "", i as u64).is_empty());
        }
        assert_eq!(dropped(&h, "queue_bytes"), 1);
        assert_eq!(h.b.held_bytes, 3 * cost(""));
    }

    #[test]
    fn the_broker_total_is_bounded_across_services() {
        let mut h = with_bytes(10_000, cost("123456") + 10);
        assert!(h.request("c1", V1, "a", "123456", 0).is_empty());
        assert!(h.request("c2", V1, "b", "123456", 1).is_empty());
        assert_eq!(dropped(&h, "broker_bytes"), 1);
        // Expiry gives the bytes back.
        h.tick(1500);
        assert_eq!(h.b.held_bytes, 0);
        assert!(h.request("c3", V1, "b", "123456", 1501).is_empty());
        assert_eq!(dropped(&h, "broker_bytes"), 1);
    }

    #[test]
    fn partials_held_for_a_v1_client_are_bounded_and_the_worker_serves_on() {
        let mut h = with_bytes(10, 1000);
        h.ready("w1", V2, "lines", 0);
        only(h.request("c1", V1, "lines", "x", 1), "w1");
        assert!(h
            .recv("w1", reply(V2, "c1", &["123456"], false), 2)
            .is_empty());
        assert_eq!(h.b.held_bytes, 6);
        // 12 > 10: the reply is dropped, and so is the rest of it.
        assert!(h
            .recv("w1", reply(V2, "c1", &["abcdef"], false), 3)
            .is_empty());
        assert_eq!(h.b.held_bytes, 0);
        assert!(h
            .recv("w1", reply(V2, "c1", &["more"], false), 4)
            .is_empty());
        assert_eq!(h.b.held_bytes, 0);
        assert!(
            h.recv("w1", reply(V2, "c1", &["end"], true), 5).is_empty(),
            "nothing to c1"
        );
        assert_eq!(dropped(&h, "reply_too_big"), 1);
        assert_eq!(h.b.report().requests_lost, 1);
        // Idle again: the next request gets through, whole.
        only(h.request("c2", V1, "lines", "y", 6), "w1");
        h.recv("w1", reply(V2, "c2", &["1"], false), 7);
        let out = h.recv("w1", reply(V2, "c2", &["2"], true), 8);
        assert_eq!(client_reply(only(out, "c2")).body.text(), "1\n2");
        assert_eq!(h.b.held_bytes, 0);
    }

    #[test]
    fn held_partials_are_released_when_their_worker_is_lost() {
        let mut h = with_bytes(100, 1000);
        h.ready("w1", V2, "lines", 0);
        only(h.request("c1", V1, "lines", "x", 1), "w1");
        h.recv("w1", reply(V2, "c1", &["123456"], false), 2);
        assert_eq!(h.b.held_bytes, 6);
        h.recv("w1", worker_cmd(V2, WorkerCommand::Disconnect), 3);
        assert_eq!(h.b.held_bytes, 0);
    }

    #[test]
    fn partials_cannot_hold_a_request_past_the_grace_of_the_busy_timeout() {
        let mut h = with_busy_timeout(500);
        h.ready("w1", V2, "lines", 0);
        only(h.request("c1", V2, "lines", "x", 0), "w1");
        let limit = 500 * u64::from(PARTIAL_GRACE);
        // A PARTIAL every 300 ms: progress each time, yet stuck once the grace is over.
        let mut stuck_at = None;
        for ms in (300..limit + 1000).step_by(300) {
            h.recv("w1", reply(V2, "c1", &["."], false), ms);
            if h.tick(ms + 1).iter().any(|(_, m)| is_disconnect(m)) {
                stuck_at = Some(ms);
                break;
            }
        }
        let at = stuck_at.expect("a trickle of PARTIALs held the request forever");
        assert!(at >= limit && at < limit + 300, "{at}");
        assert_eq!(h.b.report().workers_stuck, 1);
    }

    #[test]
    fn service_names_over_255_bytes_are_invalid() {
        let mut h = H::new();
        let long = "s".repeat(MAX_SERVICE_NAME + 1);
        assert!(h.request("c1", V1, &long, "x", 0).is_empty());
        assert_eq!(h.b.report().invalid, 1);
        assert_eq!(h.b.report().requests, 0);
        let out = h.recv("w1", ready(V1, &long), 1);
        assert!(is_disconnect(&only(out, "w1")));
        assert_eq!(h.b.report().invalid, 2);
        assert!(h.b.status()["services"].as_object().unwrap().is_empty());
        // 255 bytes is still a name.
        let longest = "s".repeat(MAX_SERVICE_NAME);
        h.ready("w2", V1, &longest, 2);
        only(h.request("c2", V1, &longest, "x", 3), "w2");
    }

    // ---- credit: one worker connection holding many requests (our extension) ----

    fn ready_with_credit(version: Version, service: &str, credit: u32) -> Message {
        worker_cmd(
            version,
            WorkerCommand::Ready {
                service: service.as_bytes().to_vec(),
                credit: Some(credit),
            },
        )
    }

    /// `w1` registers for `echo` asking for `credit`; the grant it is sent.
    fn credited(h: &mut H, version: Version, credit: u32) -> WorkerCommand {
        let out = h.raw("w1", ready_with_credit(version, "echo", credit), 0);
        decode_worker(only(out, "w1")).unwrap().command
    }

    #[test]
    fn a_ready_with_credit_is_granted_at_once_in_the_workers_version_and_capped() {
        for version in [V1, V2] {
            let mut h = H::new();
            assert_eq!(
                credited(&mut h, version, 3),
                WorkerCommand::Granted { credit: 3 }
            );
            let mut h = H::new();
            assert_eq!(
                credited(&mut h, version, MAX_CREDIT + 1),
                WorkerCommand::Granted { credit: MAX_CREDIT }
            );
        }
        // The grant goes out before any queued request is dispatched to the worker.
        let mut h = H::new();
        h.request("c1", V1, "echo", "x", 0);
        let out = h.raw("w1", ready_with_credit(V1, "echo", 2), 1);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(
            decode_worker(out[0].1.clone()).unwrap().command,
            WorkerCommand::Granted { credit: 2 }
        ));
        handle_of(out[1].1.clone());
    }

    #[test]
    fn a_credited_worker_holds_that_many_requests_and_replies_in_any_order() {
        let mut h = H::with(BrokerConfig {
            max_queue: 10,
            ..config()
        });
        credited(&mut h, V1, 3);
        let mut handles = Vec::new();
        for (i, client) in ["c0", "c1", "c2"].into_iter().enumerate() {
            let out = h.raw(client, request(V1, "echo", &[&format!("r{i}")]), 1);
            handles.push(handle_of(only(out, "w1")));
        }
        assert_eq!(h.b.status()["services"]["echo"]["idle"], 0);
        // A fourth waits: the credit is used up.
        assert!(h.raw("c3", request(V1, "echo", &["r3"]), 2).is_empty());
        assert_eq!(h.b.status()["services"]["echo"]["queued"], 1);
        // The second answers first: its client gets it, and the queued request takes the
        // freed credit on the same worker.
        let out = h.raw("w1", raw_reply(V1, &handles[1], "a1"), 3);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].0, b"c1");
        assert_eq!(client_reply(out[0].1.clone()).body, m(&[b"a1"]));
        assert_eq!(out[1].0, b"w1");
        handles.push(handle_of(out[1].1.clone()));
        for (i, client) in [(0, "c0"), (2, "c2"), (3, "c3")] {
            let out = h.raw("w1", raw_reply(V1, &handles[i], "a"), 4);
            assert_eq!(only(out, client), m(&[b"", b"MDPC01", b"echo", b"a"]));
        }
        assert_eq!(
            h.b.status()["services"]["echo"]["idle"],
            3,
            "all credit free"
        );
        assert_eq!((h.b.report().dispatched, h.b.report().replies), (4, 4));
        // A handle answered already is not held any more: DISCONNECT.
        let out = h.raw("w1", raw_reply(V1, &handles[0], "again"), 5);
        assert!(is_disconnect(&only(out, "w1")));
    }

    #[test]
    fn a_credited_worker_that_dies_loses_every_request_it_held_and_gets_none_after() {
        let mut h = H::with(BrokerConfig {
            max_queue: 10,
            ..config()
        });
        credited(&mut h, V2, 4);
        for client in ["c0", "c1"] {
            only(h.raw(client, request(V2, "echo", &["x"]), 1), "w1");
        }
        // Silent past liveness × interval: expired, both requests lost, its two free
        // credits stale.
        h.tick(400);
        assert_eq!(h.b.report().workers_expired, 1);
        assert_eq!(h.b.report().requests_lost, 2);
        let lost = h.count(
            |e| matches!(e, Event::RequestDropped { reason, .. } if reason == "worker_lost"),
        );
        assert_eq!(lost, 2, "one event per request");
        assert!(h.raw("c2", request(V2, "echo", &["x"]), 401).is_empty());
        assert_eq!(h.b.status()["services"]["echo"]["idle"], 0);
        // A plain worker registering now gets the queued request.
        h.ready("w2", V2, "echo", 402);
        assert_eq!(h.b.report().dispatched, 3);
    }

    #[test]
    fn a_busy_timeout_on_one_of_its_requests_disconnects_the_credited_worker() {
        let mut h = H::with(BrokerConfig {
            busy_timeout: Some(Duration::from_millis(500)),
            max_queue: 10,
            ..config()
        });
        credited(&mut h, V1, 2);
        let first = handle_of(only(h.raw("c0", request(V1, "echo", &["x"]), 0), "w1"));
        only(h.raw("c1", request(V1, "echo", &["y"]), 50), "w1");
        // The first is answered, the second never is; heartbeats keep flowing.
        only(h.raw("w1", raw_reply(V1, &first, "a"), 100), "c0");
        for ms in [100, 200, 300, 400, 500] {
            h.raw("w1", heartbeat(V1), ms);
            assert!(h.tick(ms).iter().all(|(_, m)| !is_disconnect(m)), "{ms}");
        }
        h.raw("w1", heartbeat(V1), 600);
        let out = h.tick(600);
        assert!(out.iter().any(|(id, m)| id == b"w1" && is_disconnect(m)));
        assert_eq!(h.b.report().workers_stuck, 1);
        assert_eq!(h.b.report().requests_lost, 1, "only the one it held");
    }

    #[test]
    fn a_credit_grant_from_a_worker_is_a_protocol_error() {
        let mut h = H::new();
        h.ready("w1", V1, "echo", 0);
        let out = h.raw(
            "w1",
            worker_cmd(V1, WorkerCommand::Granted { credit: 5 }),
            1,
        );
        assert!(is_disconnect(&only(out, "w1")));
        assert!(h.b.workers.is_empty());
    }

    #[test]
    fn credited_and_standard_workers_share_a_service_least_recently_used_first() {
        let mut h = H::with(BrokerConfig {
            max_queue: 10,
            ..config()
        });
        credited(&mut h, V1, 2);
        h.ready("w2", V1, "echo", 0);
        let to: Vec<Frame> = (0..3)
            .map(|i| {
                let out = h.raw(&format!("c{i}"), request(V1, "echo", &["x"]), 1);
                assert_eq!(out.len(), 1, "{out:?}");
                out[0].0.clone()
            })
            .collect();
        // w1 first (it registered first), filled to its credit, then w2.
        assert_eq!(to, [b"w1".to_vec(), b"w1".to_vec(), b"w2".to_vec()]);
        assert!(h.raw("c3", request(V1, "echo", &["x"]), 2).is_empty());
    }

    #[test]
    fn a_worker_asking_for_the_most_credit_takes_one_idle_entry_not_one_per_credit() {
        // 1000 READYs of credit 1024 from 1000 identities: a few bytes each, not a queue
        // entry per credit (that would be a million entries from 60 KB of READYs).
        let mut h = H::new();
        for i in 0..1000 {
            h.raw(
                &format!("w{i}"),
                ready_with_credit(V1, "echo", MAX_CREDIT),
                0,
            );
        }
        let svc = &h.b.services[b"echo".as_slice()];
        assert_eq!(svc.idle.len(), 1000);
        assert_eq!(svc.idle_count, 1000 * MAX_CREDIT as usize);
        assert_eq!(h.b.status()["services"]["echo"]["idle"], 1000 * MAX_CREDIT);
    }
}
