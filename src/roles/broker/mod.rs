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
mod tests;
