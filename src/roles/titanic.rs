//! `pirate titanic`: the Titanic Service Protocol (9/TSP), disk-based disconnected
//! reliability on top of Majordomo, and [`titanic_client`] / [`TitanicClient`] for its
//! clients.
//!
//! Titanic is an MDP worker for three services and an MDP client of the real ones. A client
//! hands it a request, gets a UUID back as soon as the request is on disk, goes away, and
//! collects the reply later, even if Titanic, the broker or the service crashed meanwhile.
//!
//! # Frames (9/TSP, bodies of ordinary 7/MDP requests and replies)
//!
//! | service | request body | reply body |
//! |---|---|---|
//! | `titanic.request` | service name, request frames (1+) | `"200"`, UUID · `"400"` (no service or no request frames) · `"500 …"` (too big, store full, disk full, store failed) |
//! | `titanic.reply` | UUID | `"200"`, reply frames · `"300"` (pending) · `"400"` (unknown) · `"500"` |
//! | `titanic.close` | UUID | `"200"` (also for an unknown UUID) · `"500"` |
//!
//! A UUID is 32 lowercase hex digits from 128 random bits (uppercase is accepted on input).
//! Statuses are the bare three digits, except the refusals of `titanic.request` below, which
//! add a space and a reason (9/TSP allows text after the code; clients must not interpret it). `titanic.reply` never deletes: it answers the same
//! `"200"` and frames every time until `titanic.close`, so a client that crashed after
//! fetching a reply simply fetches it again.
//!
//! # How it works
//!
//! - [`Titanic`] is one pure [`Machine`] on the [reactor](crate::reactor), speaking 7/MDP 0.1
//!   itself through [`crate::proto::mdp`]: three worker DEALERs (slots 0–2, one per service:
//!   MDP 0.1 registers a connection for exactly one service, so each sends its own READY
//!   `["", "MDPW01", 0x01, service]`, with identity `titanicPID-SERVICE-N-<random>`), each
//!   heartbeating and judging the broker with [`Liveness`], and reconnecting on a fresh socket
//!   and identity after a [`Backoff`] delay when the broker falls silent or says DISCONNECT;
//!   and the dispatch lanes (slots 3…), one REQ socket each. It owns the [`Store`]; no
//!   threads, no locks.
//! - `titanic.request` stores the request (written and fsync'd, see [`crate::store`]) and only
//!   then replies `"200"` + UUID. The write stays synchronous in the machine's `handle`, not a
//!   job: it is the durability contract (answer only after the write), it orders every
//!   read of the store after the writes before it, and an injected crash must strike inside
//!   it (the store kills the process mid-write). An fdatasync is milliseconds; the broker
//!   waits `liveness` heartbeats before it gives up on a worker.
//! - The dispatcher walks the pending requests in arrival order and keeps one request in
//!   flight per service, up to [`MAX_IN_FLIGHT`] services at once, each on a REQ socket of
//!   its own (the Lazy Pirate way: a socket per attempt, closed on timeout, so a late reply
//!   can never be taken for the answer to another request). For each it asks the broker
//!   `mmi.service` first (`mmi.*` targets skip the check) and sends the request only if a
//!   worker is there, with one attempt of `request_timeout`. So a service that hangs holds
//!   up only its own requests: the Guide's one-at-a-time loop made every request wait behind
//!   each hung service's timeout in turn. A reply is stored durably; anything else (404, no
//!   reply, broker down) is retried `retry_interval` later, forever, until answered or
//!   closed, and a service that timed out or has no worker is left alone for
//!   `retry_interval` (one `mmi.service` question per service per interval, as before). After a
//!   restart the pending list comes from the store, so dispatch resumes where it was.
//! - Bounds: a `titanic.request` whose frames (service name included) exceed
//!   `max_request_bytes` is refused with `"500 request too big …"`, and while the live data in
//!   the store exceeds `max_store_bytes` every new request is refused with `"500 store full
//!   …"` (clients free room with `titanic.close`). Replies of requests already accepted are
//!   always stored, so the store may pass the bound by their size; the frames of each are at
//!   most `--max-message`.
//! - A full disk (see the `disk` submodule): while the store's file system has less free
//!   space than `min_free`, new requests are refused with `"500 disk full ..."`, so that the
//!   replies of requests already accepted still fit. A reply that cannot be written anyway is kept in
//!   memory and written again every retry interval until it is, never dropped; its request
//!   stays pending (`titanic.reply` says 300), and nothing new is dispatched meanwhile. The
//!   log says once that the disk is full and once that it has room again.
//! - On start, what the store's recovery found is logged: a torn tail cut off (never
//!   acknowledged), and damage set aside with exactly what was lost (see [`crate::store`]).
//! - Delivery to the target service is at least once: a reply lost on the way, or a crash
//!   between receiving a reply and storing it, means the request is sent again. Each UUID
//!   gets exactly one stored reply, the first, which is what every `titanic.reply` returns.
//!
//! # Faults
//!
//! The fault plan is drawn once per `titanic.request` cycle. A crash is armed on the store's
//! next append, at a point drawn from the seeded generator: before the write, part way
//! through it (a torn record), after the write before `fdatasync`, or after the sync before
//! the `"200"` goes out. So chaos kills Titanic in the middle of making a request durable,
//! where it matters (the crash is [`OnCrash::Deferred`]: the store dies in its write). An
//! overload holds the reply after the request was stored, as a deadline, while the worker
//! keeps heartbeating (a second request meanwhile is counted invalid and dropped); a freeze
//! holds the `titanic.request` worker before it stores the request: its socket is not read
//! and sends no heartbeats until the freeze's deadline. The other workers and the
//! dispatcher carry on meanwhile, as when each was a thread.
//!
//! # Report
//!
//! A [`ServiceReport`]: `requests` = requests stored, `replied` = replies stored by the
//! dispatcher, `invalid` = malformed TSP bodies and MDP messages (the broker's to the workers and to the
//! dispatch lanes), `reconnects` of the three
//! workers, `overloads`/`freezes` injected.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::event::{ClientReport, Event, Events, Outcome, Report, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, OnCrash};
use crate::heartbeat::{HeartbeatConfig, Liveness};
use crate::majordomo::MdpClient;
use crate::msg::Message;
use crate::proto::mdp::{
    self, ClientCommand, ClientMsg, Direction, Version, WorkerCommand, WorkerMsg,
};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::stats::{millis, LatencyRecorder};
use crate::store::{self, CrashPoint, Store, StoreOptions, Uuid};
use crate::transport;

mod disk;
use disk::{Change, Disk};

/// The three services Titanic registers for.
pub const REQUEST: &str = "titanic.request";
pub const REPLY: &str = "titanic.reply";
pub const CLOSE: &str = "titanic.close";

/// 9/TSP statuses.
pub const OK: &[u8] = b"200";
pub const PENDING: &[u8] = b"300";
pub const UNKNOWN: &[u8] = b"400";
pub const ERROR: &[u8] = b"500";

/// Most services the dispatcher has a request in flight to at once (one socket each).
pub const MAX_IN_FLIGHT: usize = 64;

/// Everything `pirate titanic` needs.
#[derive(Clone, Debug)]
pub struct TitanicConfig {
    /// The Majordomo broker (Guide: `tcp://localhost:5555`).
    pub broker: String,
    /// Directory of the store (created if missing; one Titanic per directory).
    pub dir: PathBuf,
    /// 7/MDP heartbeating of the three workers (Guide: 2500 ms, liveness 3).
    pub heartbeat: HeartbeatConfig,
    /// First reconnect delay after losing the broker (Guide: 2500 ms), doubling to 32 s.
    pub reconnect: Duration,
    /// How long a pending request waits before it is tried again (Guide: 1 s).
    pub retry_interval: Duration,
    /// How long one dispatch attempt waits for the target service's reply (Guide's client
    /// timeout: 2500 ms).
    pub request_timeout: Duration,
    /// Faults, drawn per `titanic.request` cycle.
    pub faults: FaultPlan,
    pub seed: u64,
    pub store: StoreOptions,
    /// What `titanic.request` accepts (see the module docs).
    pub limits: Limits,
}

/// Bounds on what Titanic accepts and keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of one request: the service name and the request frames. Default 16 MiB.
    pub max_request_bytes: u64,
    /// New requests are refused while the store's live data is past this. Default 1 GiB.
    pub max_store_bytes: u64,
    /// New requests are refused while the file system of the store has less free space
    /// than this, so that the replies of requests already accepted can still be written.
    /// Default 64 MiB.
    pub min_free: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 << 20,
            max_store_bytes: 1 << 30,
            min_free: 64 << 20,
        }
    }
}

impl Default for TitanicConfig {
    fn default() -> Self {
        TitanicConfig {
            broker: "tcp://localhost:5555".into(),
            dir: PathBuf::from(".titanic"),
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(2500),
                liveness: 3,
            },
            reconnect: Duration::from_millis(2500),
            retry_interval: Duration::from_secs(1),
            request_timeout: Duration::from_millis(2500),
            faults: FaultPlan::default(),
            seed: 0,
            store: StoreOptions::default(),
            limits: Limits::default(),
        }
    }
}

/// The three worker sockets, one per service, in slots 0, 1 and 2 (7/MDP 0.1 registers a
/// worker for exactly one service: a second READY on the same connection is a protocol
/// error, so one DEALER each, as before).
const SERVICES: [&str; 3] = [REQUEST, REPLY, CLOSE];
/// The first dispatch slot; lane `i` is slot `LANES + i`.
const LANES: Slot = SERVICES.len();

/// One of the three MDP worker connections.
struct Worker {
    service: &'static str,
    slot: Slot,
    /// Sockets opened so far (the `N` of the identity `titanicPID-SERVICE-N-<random>`).
    sockets: u64,
    /// The identity of the socket opened next or open now.
    identity: Vec<u8>,
    broker: Liveness,
    backoff: Backoff,
    /// `Some(at)` while the socket is closed after losing the broker: reopen at `at`.
    reopen_at: Option<Instant>,
}

impl Worker {
    fn new(config: &TitanicConfig, index: usize, now: Instant) -> Self {
        let service = SERVICES[index];
        let mut worker = Worker {
            service,
            slot: index,
            sockets: 0,
            identity: Vec::new(),
            broker: Liveness::new(config.heartbeat, now),
            backoff: Backoff::new(config.reconnect, RECONNECT_MAX),
            reopen_at: None,
        };
        worker.next_identity();
        worker
    }

    /// Picks the identity of the next socket: `titanicPID-request-N-<32 hex digits>`.
    fn next_identity(&mut self) {
        self.sockets += 1;
        let prefix = format!(
            "titanic{}-{}-{}",
            std::process::id(),
            &self.service[8..],
            self.sockets
        );
        self.identity = transport::random_identity(&prefix);
    }

    fn spec(&self, broker: &str) -> SocketSpec {
        SocketSpec {
            slot: self.slot,
            kind: SocketKind::Dealer,
            name: "worker",
            bind: Vec::new(),
            connect: vec![broker.to_string()],
            identity: Some(self.identity.clone()),
        }
    }

    /// Sends a worker command (`["", "MDPW01", command, …]`); traffic proves us alive, so the
    /// next heartbeat is one interval away.
    fn send(&mut self, command: WorkerCommand, now: Instant, out: &mut Outbox<Never>) {
        let msg = mdp::encode_worker(WorkerMsg {
            version: Version::V1,
            command,
        });
        out.send(self.slot, msg);
        self.broker.sent(now);
    }

    /// READY on a socket just opened: `["", "MDPW01", 0x01, service]`.
    fn ready(
        &mut self,
        config: &TitanicConfig,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        self.broker = Liveness::new(config.heartbeat, now);
        let service = self.service.as_bytes().to_vec();
        self.send(
            WorkerCommand::Ready {
                service,
                credit: None,
            },
            now,
            out,
        );
        events.info(format!(
            "worker {} ready for service {}",
            String::from_utf8_lossy(&self.identity),
            self.service
        ));
    }

    /// Closes the socket and reopens a new one after the back-off delay.
    fn lose(&mut self, now: Instant, out: &mut Outbox<Never>, events: &mut Events) {
        let delay = self.backoff.next_delay();
        events.emit(Event::PeerLost {
            reason: "silent".into(),
            delay_ms: delay.as_millis() as u64,
            peer: "broker".into(),
        });
        out.close(self.slot);
        self.reopen_at = Some(now + delay);
    }
}

/// The longest reconnect delay of the workers (the Guide's 32 s).
const RECONNECT_MAX: Duration = Duration::from_secs(32);

/// No job: the machine has no blocking work but its store writes (see the module docs).
pub type Never = std::convert::Infallible;

/// What a dispatch lane is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The broker's `mmi.service` answer: is a worker there?
    Asking,
    /// `mmi.service` said 200: the request goes out in the next tick. Not read meanwhile: a
    /// REQ socket refuses a receive until it has sent (EFSM), and the reactor reads on
    /// through a batch before it sends what the machine asked.
    Approved,
    /// The service's reply.
    Sending,
}

/// One request in flight to its service, on a REQ socket of its own in `slot`.
struct Lane {
    slot: Slot,
    uuid: Uuid,
    service: String,
    /// Sent once `mmi.service` says 200 (taken then).
    request: Option<Message>,
    stage: Stage,
    deadline: Instant,
}

impl Lane {
    /// Sends the request itself; its reply is due by `deadline`.
    fn send_request(&mut self, deadline: Instant, out: &mut Outbox<Never>) {
        let request = self.request.take().unwrap_or_default();
        self.stage = Stage::Sending;
        self.deadline = deadline;
        out.send(self.slot, client_request(&self.service, request));
    }
}

/// What became of a lane that ended.
enum Ended {
    /// The service's reply, to store.
    Replied(Message),
    /// A malformed answer: try again later.
    Retry,
    /// `mmi.service` said no worker: try again later, and the service's other requests too.
    NoWorker,
    /// No answer in time: try again later, and leave the service alone meanwhile.
    TimedOut,
}

/// A 7/MDP 0.1 client request for `service`, as given to a REQ socket (which adds the empty
/// delimiter): `["MDPC01", service, body…]`.
fn client_request(service: &str, body: Message) -> Message {
    let mut msg = mdp::encode_client(ClientMsg {
        version: Version::V1,
        command: ClientCommand::Request,
        service: service.as_bytes().to_vec(),
        body,
    });
    msg.pop_front(); // REQ adds the empty delimiter itself
    msg
}

/// The body of a 7/MDP 0.1 reply from `service` received on REQ (`["MDPC01", service,
/// body…]`); `None` if it is malformed or from another service.
fn client_reply(service: &str, mut msg: Message) -> Option<Message> {
    msg.push_front(Vec::new()); // REQ stripped the delimiter
    match mdp::decode_client(msg, Direction::FromBroker) {
        Ok(reply) if reply.version == Version::V1 && reply.service == service.as_bytes() => {
            Some(reply.body)
        }
        _ => None,
    }
}

/// The `titanic.request` worker's request held by a fault.
struct Held {
    client: Vec<u8>,
    /// Frozen until then (no reads, no heartbeats), then the request is stored.
    frozen_until: Option<Instant>,
    /// The request, until it is stored.
    body: Option<Message>,
    cycle: u64,
    /// The reply, held until `reply_at` (work time and overload), heartbeating meanwhile.
    reply: Option<(Instant, Message)>,
}

/// Titanic as one pure machine: three MDP workers and the dispatcher over one [`Store`].
pub struct Titanic {
    config: TitanicConfig,
    store: Store,
    workers: Vec<Worker>,
    held: Option<Held>,
    faults: Faults,
    /// Where in the write an injected crash strikes: its own stream, so the fault rolls
    /// replay by seed.
    crash_rng: ChaCha8Rng,
    lanes: Vec<Lane>,
    /// When a request, or a whole service (after a timeout or no worker), may be tried again.
    next_try: HashMap<Uuid, Instant>,
    service_rest: HashMap<String, Instant>,
    /// Set when lanes may be opened (a request stored, a lane ended): done in the next tick,
    /// after every message of this wake-up was read, so a reused lane slot never sees a
    /// message of the socket it replaces.
    dispatch_at: Option<Instant>,
    /// The free-space reserve, and replies that could not be written yet.
    disk: Disk,
    report: ServiceReport,
}

impl Titanic {
    /// Opens the store (recovering what a crash left) and builds the machine; `now` starts
    /// the workers' liveness clocks.
    pub fn new(config: &TitanicConfig, now: Instant) -> Result<Self> {
        let store = Store::open_with(&config.dir, config.store)?;
        Ok(Titanic {
            workers: (0..SERVICES.len())
                .map(|i| Worker::new(config, i, now))
                .collect(),
            store,
            held: None,
            faults: Faults::new(config.faults.clone(), config.seed),
            crash_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x7469_7461_6e69_6321),
            lanes: Vec::new(),
            next_try: HashMap::new(),
            service_rest: HashMap::new(),
            dispatch_at: None,
            disk: Disk::new(config.limits.min_free),
            report: ServiceReport {
                endpoint: config.broker.clone(),
                seed: config.seed,
                ..Default::default()
            },
            config: config.clone(),
        })
    }

    /// The counters so far.
    pub fn report(&self) -> &ServiceReport {
        &self.report
    }

    fn invalid(&mut self, socket: &str, why: impl Into<String>, events: &mut Events) {
        self.report.invalid += 1;
        events.invalid(socket, why);
    }

    /// A message on worker `index`'s socket.
    fn worker_message(
        &mut self,
        index: usize,
        msg: Message,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        let worker = &mut self.workers[index];
        worker.broker.heard(now);
        worker.backoff.reset();
        match mdp::decode_worker(msg) {
            Ok(WorkerMsg {
                version: Version::V1,
                command: WorkerCommand::Request { client, body },
            }) => self.request(index, client, body, now, out, events),
            Ok(WorkerMsg {
                command: WorkerCommand::Heartbeat,
                ..
            }) => {}
            Ok(WorkerMsg {
                command: WorkerCommand::Disconnect,
                ..
            }) => {
                events.warn("broker sent DISCONNECT");
                self.workers[index].lose(now, out, events);
            }
            Ok(other) => self.invalid("worker", format!("unexpected {:?}", other.command), events),
            Err(e) => self.invalid("worker", e.to_string(), events),
        }
    }

    /// A TSP request for worker `index`'s service.
    fn request(
        &mut self,
        index: usize,
        client: Vec<u8>,
        body: Message,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        let reply = match SERVICES[index] {
            REQUEST => {
                if self.held.is_some() {
                    // The broker never hands a busy worker a second request.
                    return self.invalid(REQUEST, "a second request while busy", events);
                }
                let decision = self
                    .faults
                    .decide(&mut self.report, OnCrash::Deferred, now, events);
                if decision.crash {
                    let point = match self.crash_rng.gen_range(0..4) {
                        0 => CrashPoint::BeforeWrite,
                        1 => CrashPoint::MidWrite(self.crash_rng.gen_range(1..1000)),
                        2 => CrashPoint::BeforeSync,
                        _ => CrashPoint::AfterSync,
                    };
                    events.info(format!("simulating a crash at {point:?} of the next write"));
                    self.store.crash_on_next_write(point);
                }
                let stall = decision.due - decision.begins;
                self.held = Some(Held {
                    client,
                    frozen_until: decision.frozen_until(),
                    body: Some(body),
                    cycle: decision.cycle,
                    reply: None,
                });
                if decision.freeze.is_none() {
                    self.store_request(stall, now, out, events);
                }
                return;
            }
            REPLY => {
                let reply = handle_reply(&self.store, body);
                note_failure(&reply, REPLY, &mut self.report, events);
                reply
            }
            _ => {
                let reply = handle_close(&mut self.store, body);
                if let Some(w) = self.store.take_warning() {
                    events.warn(w);
                }
                reply
            }
        };
        self.reply(index, client, reply, now, out);
    }

    /// Stores the held `titanic.request` (written and synced before anything is answered) and
    /// holds its reply for `stall`.
    fn store_request(
        &mut self,
        stall: Duration,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        let Some(held) = &mut self.held else { return };
        let body = held.body.take().unwrap_or_default();
        let serving = Serving::new(held.cycle, &body, now);
        let free = store::free_bytes(self.store.dir()).ok();
        let (reply, stored) = match self.disk.refusal(free) {
            Some(why) => (status(why.as_bytes()), None),
            None => handle_request(&mut self.store, body, &self.config.limits),
        };
        let write_failed = stored.is_none() && self.store.out_of_space();
        match stored {
            Some(uuid) => {
                self.report.requests += 1;
                self.dispatch_at = Some(now);
                // Stored is served (and counted in `requests`): the reply comes later.
                events.emit(serving.event_at(now));
                events.info(format!("stored request {uuid}"));
            }
            None => note_failure(&reply, REQUEST, &mut self.report, events),
        }
        held.reply = Some((now + stall, reply));
        self.note_disk(free, write_failed, now, events);
        self.release(now, out);
    }

    /// Sends the held reply once its stall is over.
    fn release(&mut self, now: Instant, out: &mut Outbox<Never>) {
        let due = self
            .held
            .as_ref()
            .and_then(|h| h.reply.as_ref())
            .is_some_and(|(at, _)| now >= *at);
        if due {
            let held = self.held.take().expect("held");
            let (_, reply) = held.reply.expect("reply");
            self.reply(0, held.client, reply, now, out);
        }
    }

    /// A 7/MDP 0.1 REPLY: `["", "MDPW01", 0x03, client, "", body…]`.
    fn reply(
        &mut self,
        index: usize,
        client: Vec<u8>,
        body: Message,
        now: Instant,
        out: &mut Outbox<Never>,
    ) {
        let worker = &mut self.workers[index];
        if worker.reopen_at.is_some() {
            // The socket the request came on is gone: the client asks again.
            return;
        }
        worker.send(WorkerCommand::Reply { client, body }, now, out);
    }

    fn frozen(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.frozen_until.is_some())
    }

    /// Heartbeats, broker expiry and reconnects of the three workers.
    fn tick_workers(&mut self, now: Instant, out: &mut Outbox<Never>, events: &mut Events) {
        if let Some(until) = self.held.as_ref().and_then(|h| h.frozen_until) {
            if now >= until {
                self.held.as_mut().expect("held").frozen_until = None;
                // A freeze is our silence, not the broker's: what it sent meanwhile waits
                // unread in the socket, so give it a fresh expiry before judging it.
                self.workers[0].broker.heard(now);
                let stall = self.faults.plan().work;
                self.store_request(stall, now, out, events);
            }
        }
        self.release(now, out);
        let frozen = self.frozen();
        for (i, worker) in self.workers.iter_mut().enumerate() {
            if let Some(at) = worker.reopen_at {
                if now >= at {
                    worker.reopen_at = None;
                    worker.next_identity();
                    out.open(worker.spec(&self.config.broker));
                    self.report.reconnects += 1;
                    worker.ready(&self.config, now, out, events);
                }
                continue;
            }
            if i == 0 && frozen {
                continue; // a frozen worker neither heartbeats nor notices anything
            }
            if worker.broker.is_dead(now) {
                worker.lose(now, out, events);
            } else if worker.broker.heartbeat_due(now) {
                worker.send(WorkerCommand::Heartbeat, now, out);
            }
        }
    }

    /// An answer on a dispatch lane.
    fn lane_message(
        &mut self,
        slot: Slot,
        msg: Message,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        let Some(index) = self.lanes.iter().position(|l| l.slot == slot) else {
            return; // a lane that ended in this wake-up: its socket is being closed
        };
        let lane = &mut self.lanes[index];
        let asked = match lane.stage {
            Stage::Asking => "mmi.service",
            Stage::Approved => return, // not read (see `wants`)
            Stage::Sending => lane.service.as_str(),
        };
        let ended = match (lane.stage, client_reply(asked, msg)) {
            (Stage::Asking, Some(answer)) if answer.get(0) == Some(OK) => {
                lane.stage = Stage::Approved;
                self.dispatch_at = Some(now);
                return;
            }
            (Stage::Asking, Some(_)) => Ended::NoWorker,
            (_, Some(reply)) => Ended::Replied(reply),
            (_, None) => {
                self.invalid("dispatch", "a malformed answer from the broker", events);
                Ended::Retry
            }
        };
        self.end_lane(index, ended, now, out, events);
    }

    /// Closes lane `index`'s socket and acts on how it ended (see the module docs).
    fn end_lane(
        &mut self,
        index: usize,
        ended: Ended,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        let lane = self.lanes.swap_remove(index);
        out.close(lane.slot);
        self.dispatch_at = Some(now);
        let retry = now + self.config.retry_interval;
        match ended {
            Ended::Replied(reply) => {
                if !self.save_reply(lane.uuid, reply, now, events) {
                    let free = store::free_bytes(self.store.dir()).ok();
                    let no_space = self.store.out_of_space();
                    self.note_disk(free, no_space, now, events);
                }
            }
            Ended::Retry => {
                self.next_try.insert(lane.uuid, retry);
            }
            Ended::NoWorker | Ended::TimedOut => {
                if matches!(ended, Ended::TimedOut) {
                    events.info(format!(
                        "request {} for {}: no reply in {} ms; retrying later",
                        lane.uuid,
                        lane.service,
                        self.config.request_timeout.as_millis()
                    ));
                }
                // One question per service per retry interval, not one per request; and a
                // service that hangs is left alone for a while.
                self.service_rest.insert(lane.service, retry);
                self.next_try.insert(lane.uuid, retry);
            }
        }
    }

    /// Writes a service's reply to the store; one that cannot be written (a full disk, a
    /// failed write) is kept in memory and written again later, never dropped: the request
    /// stays pending (`titanic.reply` says 300) meanwhile. False when it was kept.
    fn save_reply(
        &mut self,
        uuid: Uuid,
        reply: Message,
        now: Instant,
        events: &mut Events,
    ) -> bool {
        match self.store.put_reply(uuid, &reply) {
            Ok(true) => self.report.replied += 1,
            Ok(false) => {} // closed while we waited: nobody wants it
            Err(e) => {
                let retry = now + self.config.retry_interval;
                if let Some(why) = self.disk.hold(uuid, reply, e.to_string(), retry) {
                    events.error(format!(
                        "cannot store the reply for {uuid}: {why}; it is kept in memory and \
                         written again every {} ms until it can be",
                        self.config.retry_interval.as_millis()
                    ));
                }
                return false;
            }
        }
        self.disk.written();
        true
    }

    /// Says once that the disk is full and once that it has room again, and keeps looking
    /// every retry interval while it is full.
    fn note_disk(
        &mut self,
        free: Option<u64>,
        write_failed: bool,
        now: Instant,
        events: &mut Events,
    ) {
        match self.disk.note(free, write_failed) {
            Some(Change::Full(line)) => events.warn(line),
            Some(Change::Room(line)) => {
                events.info(line);
                self.dispatch_at = Some(now);
            }
            None => {}
        }
        self.disk
            .schedule(now + self.config.retry_interval.min(Duration::from_secs(1)));
    }

    /// While the disk is full: writes the held replies again, oldest first (stopping at the
    /// first that still fails), and looks at the free space.
    fn tick_disk(&mut self, now: Instant, events: &mut Events) {
        let Some(held) = self.disk.due(now) else {
            return;
        };
        let mut failed = false;
        for (uuid, reply) in held {
            if failed {
                let retry = now + self.config.retry_interval;
                self.disk.give_back(uuid, reply, retry);
                continue;
            }
            failed = !self.save_reply(uuid, reply, now, events);
        }
        let free = store::free_bytes(self.store.dir()).ok();
        let no_space = failed && self.store.out_of_space();
        self.note_disk(free, no_space, now, events);
    }

    /// Times out lanes, then opens one for each pending request that is due, in arrival
    /// order, whose service has none and is not resting, while fewer than [`MAX_IN_FLIGHT`]
    /// are open. Each is a fresh REQ socket that asks `mmi.service` first (`mmi.*` targets
    /// are sent at once).
    fn tick_dispatch(&mut self, now: Instant, out: &mut Outbox<Never>, events: &mut Events) {
        for lane in self.lanes.iter_mut().filter(|l| l.stage == Stage::Approved) {
            lane.send_request(now + self.config.request_timeout, out);
        }
        while let Some(index) = self.lanes.iter().position(|l| now >= l.deadline) {
            self.end_lane(index, Ended::TimedOut, now, out, events);
        }
        let retry_due = self
            .next_try
            .values()
            .chain(self.service_rest.values())
            .any(|t| now >= *t);
        if !retry_due && self.dispatch_at.is_none_or(|at| now < at) {
            return;
        }
        self.dispatch_at = None;
        // Due entries are dropped: such a request is free to go whenever a lane is, and a
        // lane that ends sets `dispatch_at` (keeping them would make the deadline spin).
        self.next_try.retain(|_, t| *t > now);
        self.service_rest.retain(|_, t| *t > now);
        if self.disk.holding() {
            // Its reply could not be stored either: nothing new goes out until the held
            // ones are written (which also bounds them, see `disk`).
            return;
        }
        let pending = self.store.pending();
        let live: HashSet<Uuid> = pending.iter().copied().collect();
        self.next_try.retain(|u, _| live.contains(u));
        let mut busy: HashSet<String> = self.lanes.iter().map(|l| l.service.clone()).collect();
        let flying: HashSet<Uuid> = self.lanes.iter().map(|l| l.uuid).collect();
        for uuid in pending {
            if self.lanes.len() >= MAX_IN_FLIGHT {
                break;
            }
            if flying.contains(&uuid) || self.next_try.contains_key(&uuid) {
                continue;
            }
            let Some(entry) = self.store.get(&uuid) else {
                continue;
            };
            if busy.contains(&entry.service) || self.service_rest.contains_key(&entry.service) {
                continue;
            }
            busy.insert(entry.service.clone());
            let slot = (LANES..)
                .find(|s| self.lanes.iter().all(|l| l.slot != *s))
                .expect("a free slot");
            out.open(SocketSpec {
                slot,
                kind: SocketKind::Req,
                name: "dispatch",
                bind: Vec::new(),
                connect: vec![self.config.broker.clone()],
                identity: None,
            });
            let mut lane = Lane {
                slot,
                uuid,
                service: entry.service.clone(),
                request: Some(entry.request.clone()),
                stage: Stage::Asking,
                deadline: now + self.config.request_timeout,
            };
            if lane.service.starts_with("mmi.") {
                lane.send_request(lane.deadline, out);
            } else {
                let question = Message::from_frames([lane.service.as_bytes().to_vec()]);
                out.send(slot, client_request("mmi.service", question));
            }
            self.lanes.push(lane);
        }
    }
}

impl Machine for Titanic {
    type Job = Never;
    type Done = Never;

    fn sockets(&self) -> Vec<SocketSpec> {
        self.workers
            .iter()
            .map(|w| w.spec(&self.config.broker))
            .collect()
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<Never>, events: &mut Events) {
        events.emit(Event::started(
            "titanic",
            self.config.broker.clone(),
            Some(self.config.seed),
        ));
        let recovery = self.store.recovery();
        events.info(format!(
            "store {}: {} stored, {} pending ({} records read, {} torn bytes cut off, {} damaged \
             stretches set aside)",
            self.config.dir.display(),
            self.store.len(),
            self.store.pending().len(),
            recovery.records,
            recovery.torn_bytes,
            recovery.damage.len()
        ));
        if recovery.torn_bytes > 0 {
            // Only an incomplete last record counts as torn (see store::scan): our writer
            // appends after the previous record was synced, so it was never acknowledged.
            events.warn(format!(
                "cut off an incomplete record of {} bytes at the end of the log (a write \
                 interrupted by a crash; it was never acknowledged)",
                recovery.torn_bytes
            ));
        }
        if recovery.damaged() {
            let aside = recovery
                .set_aside
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            events.error(format!(
                "the store's log was damaged: {} damaged stretch(es), {}{} record(s) lost, \
                 every valid record kept; the damaged log is set aside as {aside} with a \
                 report in {aside}.txt",
                recovery.damage.len(),
                if recovery.damage.iter().all(|d| d.exact) {
                    ""
                } else {
                    "at least "
                },
                recovery.lost_records()
            ));
            // Bounded: a log damaged all over says the rest in the report file.
            for line in recovery.describe(20) {
                events.warn(line);
            }
        }
        for worker in &mut self.workers {
            worker.ready(&self.config, now, out, events);
        }
        // After a restart the pending requests come from the store.
        self.dispatch_at = Some(now);
    }

    fn handle(
        &mut self,
        input: Input<Never>,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { slot, msg } if slot < LANES => {
                if self.workers[slot].reopen_at.is_none() {
                    self.worker_message(slot, msg, now, out, events);
                }
            }
            Input::Message { slot, msg } => self.lane_message(slot, msg, now, out, events),
            Input::Done(never) => match never {},
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<Never>, events: &mut Events) {
        self.tick_disk(now, events);
        self.tick_workers(now, out, events);
        self.tick_dispatch(now, out, events);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let frozen = self.frozen();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .flat_map(|(i, w)| match w.reopen_at {
                Some(at) => vec![at],
                None if i == 0 && frozen => vec![],
                None => vec![w.broker.next_send(), w.broker.expires_at()],
            });
        let held = self.held.as_ref().and_then(|h| {
            h.frozen_until
                .or_else(|| h.reply.as_ref().map(|(at, _)| *at))
        });
        workers
            .chain(held)
            .chain(self.lanes.iter().map(|l| l.deadline))
            .chain(self.next_try.values().copied())
            .chain(self.service_rest.values().copied())
            .chain(self.dispatch_at)
            .chain(self.disk.retry_at())
            .min()
    }

    fn wants(&self, slot: Slot) -> bool {
        if slot < LANES {
            // A frozen worker reads nothing.
            return !(slot == 0 && self.frozen());
        }
        // A REQ lane is read only while it waits for an answer: after one it must send (or
        // be closed) first.
        self.lanes
            .iter()
            .any(|l| l.slot == slot && l.stage != Stage::Approved)
    }
}

/// Runs Titanic until `stop` is raised; returns its counters. A socket error ends the run
/// with that error.
pub fn run(config: &TitanicConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let mut titanic = Titanic::new(config, Instant::now())?;
    reactor::run(&mut titanic, |never: Never| match never {}, stop, events)?;
    Ok(Report::Service(titanic.report))
}

/// Counts a malformed TSP body (400 on `titanic.request`) and logs internal errors.
fn note_failure(reply: &Message, service: &str, report: &mut ServiceReport, events: &mut Events) {
    match reply.get(0) {
        Some(s) if s.starts_with(b"500 ") => events.warn(format!("{service}: {}", reply.text())),
        Some(s) if s == ERROR => events.error(format!("{service}: {}", reply.text())),
        Some(s) if s == UNKNOWN && service == REQUEST => {
            report.invalid += 1;
            events.invalid(
                service,
                "need a service name and at least one request frame",
            );
        }
        _ => {}
    }
}

fn status(code: &[u8]) -> Message {
    Message::from_frames(vec![code.to_vec()])
}

/// `titanic.request`: [service, request frames…] → ["200", uuid] once stored durably,
/// ["400"] when the service or the request is missing, ["500 request too big …"] or
/// ["500 store full …"] past `limits`, ["500"] when the store failed.
pub fn handle_request(
    store: &mut Store,
    mut body: Message,
    limits: &Limits,
) -> (Message, Option<Uuid>) {
    let bytes: u64 = body.iter().map(|f| f.len() as u64).sum();
    if bytes > limits.max_request_bytes {
        let why = format!(
            "500 request too big: {bytes} bytes, at most {} (--max-request-bytes)",
            limits.max_request_bytes
        );
        return (status(why.as_bytes()), None);
    }
    if store.live_bytes() >= limits.max_store_bytes {
        let why = format!(
            "500 store full: {} bytes stored, at most {} (--max-store-bytes); close the \
             requests whose replies you have",
            store.live_bytes(),
            limits.max_store_bytes
        );
        return (status(why.as_bytes()), None);
    }
    let service = match body.pop_front().map(String::from_utf8) {
        Some(Ok(s)) if !s.is_empty() && !body.is_empty() => s,
        _ => return (status(UNKNOWN), None),
    };
    let mut uuid = Uuid::random();
    while store.get(&uuid).is_some() {
        uuid = Uuid::random();
    }
    match store.put_request(uuid, &service, &body) {
        Ok(()) => (
            Message::from_frames(vec![OK.to_vec(), uuid.to_string().into_bytes()]),
            Some(uuid),
        ),
        Err(_) if store.out_of_space() => (
            status(
                b"500 disk full: the request could not be written to the store; try again later",
            ),
            None,
        ),
        Err(_) => (status(ERROR), None),
    }
}

/// `titanic.reply`: [uuid] → ["200", reply…] | ["300"] | ["400"]. Never deletes.
pub fn handle_reply(store: &Store, body: Message) -> Message {
    let entry = match (body.len(), body.get(0).and_then(Uuid::parse)) {
        (1, Some(uuid)) => store.get(&uuid),
        _ => None,
    };
    match entry {
        Some(e) => match &e.reply {
            Some(reply) => {
                let mut msg = reply.clone();
                msg.push_front(OK.to_vec());
                msg
            }
            None => status(PENDING),
        },
        None => status(UNKNOWN),
    }
}

/// `titanic.close`: [uuid] → ["200"], whether or not the UUID was known; ["500"] if the
/// store could not record the close.
pub fn handle_close(store: &mut Store, body: Message) -> Message {
    match body.get(0).and_then(Uuid::parse) {
        Some(uuid) if body.len() == 1 => match store.close(uuid) {
            Ok(_) => status(OK),
            Err(_) => status(ERROR),
        },
        _ => status(OK),
    }
}

/// What `titanic.reply` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// 200: the reply frames.
    Ready(Message),
    /// 300: not answered yet.
    Pending,
    /// 400: no such request (never stored, or closed).
    Unknown,
}

/// A 9/TSP client: submit, poll, close, each one MDP request to Titanic's services with the
/// Lazy Pirate timeout and retries.
pub struct TitanicClient {
    client: MdpClient,
    stop: Stop,
}

impl TitanicClient {
    /// A client of the Titanic behind the broker at `broker`; each TSP call waits `timeout`
    /// per attempt, for `retries` attempts.
    pub fn connect(broker: &str, timeout: Duration, retries: u32) -> Result<Self> {
        let mut client = MdpClient::connect(broker, Version::V1)?;
        client.set_timeout(timeout);
        client.set_retries(retries);
        Ok(TitanicClient {
            client,
            stop: Stop::new(),
        })
    }

    /// Raising `stop` ends a call that is waiting, or the wait between polls, with
    /// `Error::Interrupted`.
    pub fn with_stop(self, stop: Stop) -> Self {
        TitanicClient {
            client: self.client.with_stop(stop.clone()),
            stop,
        }
    }

    /// `titanic.request`: stores `body` for `service`; returns its UUID.
    pub fn submit(&mut self, service: &str, body: Message) -> Result<String> {
        let mut request = body;
        request.push_front(service.as_bytes().to_vec());
        let mut reply = self.client.request(REQUEST, request)?;
        let raw = reply.pop_front();
        let code = status_code(raw.clone());
        match (code.as_slice(), reply.pop_front()) {
            (OK, Some(uuid)) if Uuid::parse(&uuid).is_some() && reply.is_empty() => {
                Ok(String::from_utf8_lossy(&uuid).into_owned())
            }
            (UNKNOWN, _) => Err(Error::Usage(format!(
                "titanic refused the request for {service:?} (400: it needs a service name and \
                 a non-empty request)"
            ))),
            // A refusal with a reason (too big, store full): the text is for the user.
            (ERROR, _) if raw.as_ref().is_some_and(|r| r.len() > 4) => {
                Err(Error::Internal(format!(
                    "titanic refused the request: {}",
                    String::from_utf8_lossy(&raw.unwrap_or_default())
                )))
            }
            _ => Err(unexpected(REQUEST, &code)),
        }
    }

    /// Asks the broker (8/MMI `mmi.service`) whether any worker serves `service` now.
    pub fn has_workers(&mut self, service: &str) -> Result<bool> {
        let question = Message::from_frames(vec![service.as_bytes().to_vec()]);
        let mut reply = self.client.request("mmi.service", question)?;
        Ok(reply.pop_front().as_deref() != Some(b"404"))
    }

    /// `titanic.reply`: one look at the reply of `uuid`.
    pub fn reply(&mut self, uuid: &str) -> Result<ReplyStatus> {
        let question = Message::from_frames(vec![uuid.as_bytes().to_vec()]);
        let mut reply = self.client.request(REPLY, question)?;
        let code = status_code(reply.pop_front());
        match code.as_slice() {
            OK => Ok(ReplyStatus::Ready(reply)),
            PENDING => Ok(ReplyStatus::Pending),
            UNKNOWN => Ok(ReplyStatus::Unknown),
            _ => Err(unexpected(REPLY, &code)),
        }
    }

    /// Polls `titanic.reply` every `poll_interval` until the reply is there; returns it with
    /// the number of polls it took. A UUID Titanic does not know is an error.
    pub fn wait_reply(&mut self, uuid: &str, poll_interval: Duration) -> Result<(Message, u32)> {
        let mut polls = 0;
        loop {
            polls += 1;
            match self.reply(uuid)? {
                ReplyStatus::Ready(reply) => return Ok((reply, polls)),
                ReplyStatus::Pending => self.stop.sleep(poll_interval)?,
                ReplyStatus::Unknown => {
                    return Err(Error::Internal(format!(
                        "titanic does not know request {uuid} (closed by someone else?)"
                    )))
                }
            }
        }
    }

    /// `titanic.close`: forgets `uuid` and its reply.
    pub fn close(&mut self, uuid: &str) -> Result<()> {
        let question = Message::from_frames(vec![uuid.as_bytes().to_vec()]);
        let mut reply = self.client.request(CLOSE, question)?;
        let code = status_code(reply.pop_front());
        match code.as_slice() {
            OK => Ok(()),
            _ => Err(unexpected(CLOSE, &code)),
        }
    }
}

/// The three digits of a status frame. 9/TSP allows a space and free text after them,
/// which clients must not interpret: `"300 try later"` is `"300"`.
fn status_code(frame: Option<Vec<u8>>) -> Vec<u8> {
    let mut frame = frame.unwrap_or_default();
    if frame.len() > 3 && frame[3] == b' ' {
        frame.truncate(3);
    }
    frame
}

fn unexpected(service: &str, code: &[u8]) -> Error {
    Error::Internal(format!(
        "{service} answered {:?} (500 is an internal error in titanic: see its log)",
        String::from_utf8_lossy(code)
    ))
}

/// One request through Titanic, the Guide's ticlient: `titanic.request`, then
/// `titanic.reply` every `poll_interval` until answered, then `titanic.close`. Each TSP call
/// has `timeout` per attempt and `retries` attempts; a Titanic that stays unreachable is
/// `Error::Unreachable` (the request may be stored: its UUID is in a warning event).
pub fn titanic_client(
    broker: &str,
    service: &str,
    body: Message,
    poll_interval: Duration,
    timeout: Duration,
    retries: u32,
    events: &mut Events,
) -> Result<Message> {
    let mut client = TitanicClient::connect(broker, timeout, retries)?;
    round_trip(&mut client, service, body, poll_interval, &mut true, events).map(|(reply, _)| reply)
}

/// One request through Titanic: submit, poll, close. While `check_service` is set, asks the
/// broker first whether anyone serves `service` and clears it once someone does, so a run
/// asks until it has seen a worker, not once per request.
fn round_trip(
    client: &mut TitanicClient,
    service: &str,
    body: Message,
    poll_interval: Duration,
    check_service: &mut bool,
    events: &mut Events,
) -> Result<(Message, u32)> {
    let uuid = client.submit(service, body)?;
    // The request's name from now on: a client that dies can fetch its reply by it.
    events.info(format!(
        "titanic stored the request as {uuid}; waiting for the reply"
    ));
    // Titanic keeps a request for a service nobody serves until someone does: say so, rather
    // than poll in silence.
    if *check_service {
        if client.has_workers(service)? {
            *check_service = false;
        } else {
            events.warn(format!(
                "no worker serves {service:?} now (mmi.service: 404): request {uuid} stays stored \
                 in titanic and is sent when one registers; waiting (Ctrl-C leaves it stored)"
            ));
        }
    }
    let (reply, polls) = client.wait_reply(&uuid, poll_interval).inspect_err(|e| {
        if matches!(e, Error::Unreachable(_)) {
            events.warn(format!(
                "request {uuid} is stored in titanic; fetch it later with \
                 `pirate client --service titanic.reply {uuid}`"
            ));
        }
    })?;
    // The reply is ours now; a failed close only leaves it stored until someone closes it.
    if let Err(e) = client.close(&uuid) {
        if matches!(e, Error::Interrupted) {
            return Err(e);
        }
        events.warn(format!("could not close {uuid}: {e}"));
    }
    Ok((reply, polls))
}

/// Everything `pirate client --titanic` needs.
#[derive(Clone, Debug)]
pub struct TitanicClientConfig {
    pub broker: String,
    pub service: String,
    /// Per attempt of each TSP call.
    pub timeout: Duration,
    pub retries: u32,
    /// Wait between `titanic.reply` polls while pending (the Guide's ticlient: 100 ms).
    pub poll_interval: Duration,
    /// Every reply must equal its request (`--count`, `--expect-echo`).
    pub check_echo: bool,
}

/// `pirate client --titanic`: each request through Titanic in turn, one `Reply` event each
/// (`attempts` = polls of `titanic.reply`), and a client report.
pub fn run_client(
    config: &TitanicClientConfig,
    requests: impl Iterator<Item = impl Into<Vec<u8>>>,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    let started = Instant::now();
    let mut client = TitanicClient::connect(&config.broker, config.timeout, config.retries)?
        .with_stop(stop.clone());
    let mut latency = LatencyRecorder::default();
    let mut report = ClientReport::new(config.broker.clone());
    let mut check_service = true;
    events.emit(Event::started(
        format!("client (titanic {})", config.service),
        config.broker.clone(),
        None,
    ));
    for bytes in requests {
        let bytes = bytes.into();
        let request = String::from_utf8_lossy(&bytes).into_owned();
        report.requests += 1;
        report.sent += 1;
        let seq = report.requests;
        events.emit(Event::Sent {
            seq,
            request: request.clone(),
            attempt: 1,
        });
        let t0 = Instant::now();
        let body = Message::from_frames(vec![bytes]);
        match round_trip(
            &mut client,
            &config.service,
            body,
            config.poll_interval,
            &mut check_service,
            events,
        ) {
            Ok((reply, polls)) => {
                let text = reply.text();
                if config.check_echo && text != request {
                    // Titanic stores one reply per request: asking again gives the same.
                    report.mismatched += 1;
                    events.emit(Event::Mismatch {
                        seq,
                        expected: request.clone(),
                        got: text,
                    });
                    report.abandoned += 1;
                    report.outcome = Outcome::Abandoned;
                    events.emit(Event::Abandoned {
                        seq,
                        request,
                        attempts: polls,
                    });
                    break;
                }
                latency.record(t0.elapsed());
                report.replied += 1;
                events.emit(Event::Reply {
                    seq,
                    request,
                    reply: reply.joined().into(),
                    attempts: polls,
                    latency_ms: millis(t0.elapsed()),
                });
            }
            Err(Error::Interrupted) => {
                report.outcome = Outcome::Interrupted;
                break;
            }
            Err(Error::Unreachable(why)) => {
                events.error(why);
                report.abandoned += 1;
                report.outcome = Outcome::Abandoned;
                events.emit(Event::Abandoned {
                    seq,
                    request,
                    attempts: config.retries,
                });
                break;
            }
            Err(e) => return Err(e),
        }
    }
    report.timed(started.elapsed(), latency.summary());
    Ok(Report::Client(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::majordomo::MdpWorkerConfig;
    use crate::reactor::Output;
    use crate::roles::broker::{self, BrokerConfig};
    use crate::store::Store;
    use std::path::Path;
    use std::thread;

    fn temp_dir(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "pirate-titanic-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&path);
        path
    }

    fn msg(frames: &[&str]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.as_bytes().to_vec()))
    }

    fn frames(m: &Message) -> Vec<String> {
        m.iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    #[test]
    fn the_tsp_exchanges_without_sockets() {
        let dir = temp_dir("tsp");
        let mut store = Store::open(&dir).unwrap();
        // request → 200 + uuid, stored and pending
        let (reply, uuid) =
            handle_request(&mut store, msg(&["echo", "a", "b"]), &Limits::default());
        let uuid = uuid.unwrap();
        assert_eq!(frames(&reply), vec!["200".to_string(), uuid.to_string()]);
        assert_eq!(store.pending(), vec![uuid]);
        assert_eq!(store.get(&uuid).unwrap().request, msg(&["a", "b"]));
        let id = uuid.to_string();
        // reply → 300 while pending
        assert_eq!(frames(&handle_reply(&store, msg(&[&id]))), vec!["300"]);
        store.put_reply(uuid, &msg(&["A", "B"])).unwrap();
        // → 200 + frames, twice (idempotent), uppercase uuid too
        for _ in 0..2 {
            assert_eq!(
                frames(&handle_reply(&store, msg(&[&id]))),
                vec!["200", "A", "B"]
            );
        }
        let upper = id.to_uppercase();
        assert_eq!(frames(&handle_reply(&store, msg(&[&upper])))[0], "200");
        // close → 200, then unknown: reply 400, close 200 again
        assert_eq!(frames(&handle_close(&mut store, msg(&[&id]))), vec!["200"]);
        assert_eq!(frames(&handle_reply(&store, msg(&[&id]))), vec!["400"]);
        assert_eq!(frames(&handle_close(&mut store, msg(&[&id]))), vec!["200"]);
        assert!(store.is_empty());
    }

    #[test]
    fn requests_past_the_limits_get_a_500_with_the_reason() {
        let dir = temp_dir("limits");
        let mut store = Store::open(&dir).unwrap();
        let limits = Limits {
            max_request_bytes: 100,
            max_store_bytes: 250,
            ..Limits::default()
        };
        let big = "x".repeat(100);
        let (reply, uuid) = handle_request(&mut store, msg(&["echo", &big]), &limits);
        assert!(uuid.is_none());
        let text = frames(&reply)[0].clone();
        assert!(text.starts_with("500 request too big: 104 bytes"), "{text}");
        assert_eq!(status_code(Some(text.into_bytes())), ERROR);
        // 96 bytes fit; the store fills up after a few, then refuses until one is closed.
        let fits = "y".repeat(96);
        let mut stored = Vec::new();
        let refusal = loop {
            match handle_request(&mut store, msg(&["echo", &fits]), &limits) {
                (_, Some(uuid)) => stored.push(uuid),
                (reply, None) => break frames(&reply)[0].clone(),
            }
            assert!(stored.len() < 10, "the store never filled up");
        };
        assert!(refusal.starts_with("500 store full"), "{refusal}");
        assert!(store.live_bytes() >= limits.max_store_bytes);
        store.close(stored[0]).unwrap();
        assert!(handle_request(&mut store, msg(&["echo", &fits]), &limits)
            .1
            .is_some());
    }

    #[test]
    fn status_text_after_the_code_is_ignored() {
        assert_eq!(status_code(Some(b"200".to_vec())), b"200");
        assert_eq!(status_code(Some(b"300 try later".to_vec())), b"300");
        assert_eq!(status_code(Some(b"2000".to_vec())), b"2000");
        assert_eq!(status_code(None), b"");
    }

    #[test]
    fn malformed_tsp_bodies_get_a_status_not_a_panic() {
        let dir = temp_dir("malformed");
        let mut store = Store::open(&dir).unwrap();
        for body in [msg(&[]), msg(&["echo"]), msg(&["", "x"])] {
            let (reply, uuid) = handle_request(&mut store, body, &Limits::default());
            assert_eq!(frames(&reply), vec!["400"]);
            assert!(uuid.is_none());
        }
        let mut bad_utf8 = msg(&["x"]);
        bad_utf8.push_front(vec![0xff, 0xfe]);
        assert_eq!(
            frames(&handle_request(&mut store, bad_utf8, &Limits::default()).0),
            vec!["400"]
        );
        for body in [
            msg(&[]),
            msg(&["nothex"]),
            msg(&["0123456789abcdef0123456789abcdef", "extra"]),
        ] {
            assert_eq!(frames(&handle_reply(&store, body.clone())), vec!["400"]);
            assert_eq!(frames(&handle_close(&mut store, body)), vec!["200"]);
        }
        assert!(store.is_empty());
    }

    /// Broker, echo worker and Titanic on threads in this process, over ipc: one request goes
    /// through, and a request for a service nobody serves stays pending until one appears.
    #[test]
    fn round_trip_through_a_broker_and_a_late_service() {
        let endpoint = format!(
            "ipc:///tmp/pirate-titanic-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let fast = HeartbeatConfig {
            interval: Duration::from_millis(50),
            liveness: 3,
        };
        let config = BrokerConfig {
            bind: endpoint.clone(),
            heartbeat: fast,
            ..BrokerConfig::default()
        };
        thread::spawn(move || {
            broker::run(
                &config,
                &crate::reactor::Stop::new(),
                &mut Events::discard(),
            )
        });
        let start_echo = |service: &'static str| {
            let endpoint = endpoint.clone();
            thread::spawn(move || {
                let mut config = MdpWorkerConfig::new(&endpoint, service, Version::V1);
                config.heartbeat = fast;
                config.reconnect = Duration::from_millis(50);
                config.name = format!("echo-{service}");
                crate::majordomo::serve(&config, |body| body, &Stop::new(), &mut Events::discard())
            });
        };
        start_echo("echo");
        let dir = temp_dir("roundtrip");
        let config = TitanicConfig {
            broker: endpoint.clone(),
            dir: dir.clone(),
            heartbeat: fast,
            reconnect: Duration::from_millis(50),
            retry_interval: Duration::from_millis(50),
            request_timeout: Duration::from_millis(500),
            ..TitanicConfig::default()
        };
        thread::spawn(move || run(&config, &Stop::new(), &mut Events::discard()));

        let mut events = Events::discard();
        let poll = Duration::from_millis(20);
        let timeout = Duration::from_millis(500);
        let reply = titanic_client(
            &endpoint,
            "echo",
            msg(&["hi", "there"]),
            poll,
            timeout,
            20,
            &mut events,
        )
        .unwrap();
        assert_eq!(frames(&reply), vec!["hi", "there"]);

        let mut client = TitanicClient::connect(&endpoint, timeout, 20).unwrap();
        let uuid = client.submit("late", msg(&["later"])).unwrap();
        thread::sleep(Duration::from_millis(300));
        assert_eq!(client.reply(&uuid).unwrap(), ReplyStatus::Pending);
        start_echo("late");
        let (reply, _) = client.wait_reply(&uuid, poll).unwrap();
        assert_eq!(frames(&reply), vec!["later"]);
        assert_eq!(client.reply(&uuid).unwrap(), ReplyStatus::Ready(reply));
        client.close(&uuid).unwrap();
        assert_eq!(client.reply(&uuid).unwrap(), ReplyStatus::Unknown);
        client.close(&uuid).unwrap();
        client.close(&Uuid::random().to_string()).unwrap();
    }

    // The machine with a fake clock: every test drives `Titanic` by hand.

    const BROKER: &str = "tcp://127.0.0.1:1";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(dir: &Path) -> TitanicConfig {
        TitanicConfig {
            broker: BROKER.into(),
            dir: dir.to_path_buf(),
            heartbeat: HeartbeatConfig {
                interval: ms(100),
                liveness: 3,
            },
            reconnect: ms(50),
            retry_interval: ms(1000),
            request_timeout: ms(500),
            ..TitanicConfig::default()
        }
    }

    /// A started machine over a fresh store, its outputs taken, and its events so far.
    struct Rig {
        m: Titanic,
        out: Outbox<Never>,
        seen: Vec<Event>,
        t0: Instant,
    }

    impl Rig {
        fn new(name: &str, tweak: impl FnOnce(&mut TitanicConfig)) -> Rig {
            let mut c = config(&temp_dir(name));
            tweak(&mut c);
            Rig::with(c)
        }

        fn with(c: TitanicConfig) -> Rig {
            let t0 = Instant::now();
            let mut rig = Rig {
                m: Titanic::new(&c, t0).unwrap(),
                out: Outbox::default(),
                seen: Vec::new(),
                t0,
            };
            let mut seen = Vec::new();
            rig.m
                .start(t0, &mut rig.out, &mut Events::new(false, |e| seen.push(e)));
            rig.seen = seen;
            rig
        }

        fn at(&self, n: u64) -> Instant {
            self.t0 + ms(n)
        }

        fn input(&mut self, slot: Slot, msg: Message, at: u64) -> Vec<Output<Never>> {
            let now = self.at(at);
            let mut seen = Vec::new();
            self.m.handle(
                Input::Message { slot, msg },
                now,
                &mut self.out,
                &mut Events::new(true, |e| seen.push(e)),
            );
            self.seen.extend(seen);
            self.out.take()
        }

        fn tick(&mut self, at: u64) -> Vec<Output<Never>> {
            let now = self.at(at);
            let mut seen = Vec::new();
            self.m
                .tick(now, &mut self.out, &mut Events::new(true, |e| seen.push(e)));
            self.seen.extend(seen);
            self.out.take()
        }

        /// A TSP request from client `c` on worker `slot` (0 request, 1 reply, 2 close); the
        /// body of the REPLY that comes back at once, if one does.
        fn tsp(&mut self, slot: Slot, body: &[&str], at: u64) -> Option<Vec<String>> {
            let sent = self.input(slot, to_worker(b"c", msg(body)), at);
            replies(&sent, slot).pop()
        }

        fn logged(&self, what: &str) -> bool {
            self.seen.iter().any(|e| format!("{e:?}").contains(what))
        }
    }

    /// A broker's REQUEST to a worker: `["", "MDPW01", 0x02, client, "", body…]`.
    fn to_worker(client: &[u8], body: Message) -> Message {
        mdp::encode_worker(WorkerMsg {
            version: Version::V1,
            command: WorkerCommand::Request {
                client: client.to_vec(),
                body,
            },
        })
    }

    fn from_broker(command: WorkerCommand) -> Message {
        mdp::encode_worker(WorkerMsg {
            version: Version::V1,
            command,
        })
    }

    /// What a REQ lane receives from the broker: `["MDPC01", service, body…]`.
    fn to_lane(service: &str, body: &[&str]) -> Message {
        let mut m = msg(&["MDPC01", service]);
        body.iter().for_each(|f| m.push_back(f.as_bytes().to_vec()));
        m
    }

    fn raw(m: &Message) -> Vec<Vec<u8>> {
        m.iter().map(<[u8]>::to_vec).collect()
    }

    /// The bodies of the REPLYs sent on worker `slot`, checking their envelope for client
    /// `c`: `["", "MDPW01", 0x03, "c", "", body…]`.
    fn replies(outputs: &[Output<Never>], slot: Slot) -> Vec<Vec<String>> {
        sent_on(outputs, slot)
            .into_iter()
            .filter(|m| m.get(2) == Some(&[3u8][..]))
            .map(|m| {
                let f = raw(&m);
                assert_eq!(
                    f[..5],
                    [
                        b"".to_vec(),
                        b"MDPW01".to_vec(),
                        vec![3],
                        b"c".to_vec(),
                        b"".to_vec()
                    ]
                );
                frames(&m)[5..].to_vec()
            })
            .collect()
    }

    fn sent_on(outputs: &[Output<Never>], slot: Slot) -> Vec<Message> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { slot: s, msg } if *s == slot => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    /// The slots of the sockets opened, in order.
    fn opened(outputs: &[Output<Never>]) -> Vec<SocketSpec> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Open(spec) => Some(spec.clone()),
                _ => None,
            })
            .collect()
    }

    fn heartbeat() -> Message {
        from_broker(WorkerCommand::Heartbeat)
    }

    #[test]
    fn three_dealers_register_one_service_each_with_ready() {
        let rig = Rig::new("ready", |_| {});
        let specs = rig.m.sockets();
        assert_eq!(specs.len(), 3);
        for (i, (spec, service)) in specs.iter().zip(["request", "reply", "close"]).enumerate() {
            assert_eq!(spec.slot, i);
            assert_eq!(spec.kind, SocketKind::Dealer);
            assert_eq!(spec.connect, [BROKER]);
            let id = String::from_utf8(spec.identity.clone().unwrap()).unwrap();
            let prefix = format!("titanic{}-{service}-1-", std::process::id());
            assert!(id.starts_with(&prefix), "{id}");
            assert_eq!(id.len(), prefix.len() + 32);
        }
        let mut rig = rig;
        let sent = rig.out.take();
        for (slot, service) in SERVICES.iter().enumerate() {
            // 7/MDP READY: ["", "MDPW01", 0x01, service]
            assert_eq!(
                raw(&sent_on(&sent, slot)[0]),
                [
                    b"".to_vec(),
                    b"MDPW01".to_vec(),
                    vec![1],
                    service.as_bytes().to_vec()
                ]
            );
        }
        assert!(matches!(&rig.seen[0], Event::Started { role, .. } if role == "titanic"));
        assert!(rig.logged("0 stored, 0 pending"));
        assert_eq!(
            rig.seen
                .iter()
                .filter(|e| format!("{e:?}").contains("ready for service titanic."))
                .count(),
            3
        );
        // Nothing pending: the first dispatch tick opens nothing.
        assert!(opened(&rig.tick(0)).is_empty());
    }

    #[test]
    fn a_request_is_stored_before_its_200_and_uuid_then_dispatched_after_mmi_200() {
        let mut rig = Rig::new("request", |_| {});
        rig.out.take();
        let reply = rig.tsp(0, &["echo", "a", "b"], 10).unwrap();
        assert_eq!(reply[0], "200");
        let uuid = Uuid::parse(reply[1].as_bytes()).unwrap();
        // On disk before the answer: a store opened now would find it (the log is synced).
        assert_eq!(rig.m.store.pending(), [uuid]);
        assert_eq!(rig.m.report().requests, 1);
        assert!(rig
            .seen
            .iter()
            .any(|e| matches!(e, Event::Served { cycle: 1, .. })));
        // titanic.reply: 300 while pending.
        assert_eq!(rig.tsp(1, &[&reply[1]], 11).unwrap(), ["300"]);
        // The dispatch waits for the tick after the wake-up's reads.
        assert_eq!(rig.m.next_deadline(), Some(rig.at(10)));
        let out = rig.tick(10);
        let lane = &opened(&out)[0];
        assert_eq!(
            (lane.slot, lane.kind, lane.identity.clone()),
            (LANES, SocketKind::Req, None)
        );
        assert_eq!(lane.connect, [BROKER]);
        assert_eq!(
            frames(&sent_on(&out, LANES)[0]),
            ["MDPC01", "mmi.service", "echo"]
        );
        // mmi 200: the request goes out on the same socket, in the tick after the reads
        // (a REQ socket must not be read again before it sent).
        assert!(rig
            .input(LANES, to_lane("mmi.service", &["200"]), 20)
            .is_empty());
        assert!(!rig.m.wants(LANES));
        assert_eq!(rig.m.next_deadline(), Some(rig.at(20)));
        let out = rig.tick(20);
        assert!(rig.m.wants(LANES));
        assert_eq!(
            frames(&sent_on(&out, LANES)[0]),
            ["MDPC01", "echo", "a", "b"]
        );
        // The service's reply is stored, the lane's socket closed.
        let out = rig.input(LANES, to_lane("echo", &["A", "B"]), 30);
        assert_eq!(out, [Output::Close(LANES)]);
        assert_eq!(rig.m.report().replied, 1);
        assert!(rig.m.store.pending().is_empty());
        // titanic.reply: 200 and the frames, every time; close 200; then unknown 400.
        for at in [31, 32] {
            assert_eq!(rig.tsp(1, &[&reply[1]], at).unwrap(), ["200", "A", "B"]);
        }
        assert_eq!(rig.tsp(2, &[&reply[1]], 33).unwrap(), ["200"]);
        assert_eq!(rig.tsp(1, &[&reply[1]], 34).unwrap(), ["400"]);
        assert_eq!(rig.tsp(2, &[&reply[1]], 35).unwrap(), ["200"]);
        assert!(opened(&rig.tick(40)).is_empty());
    }

    #[test]
    fn malformed_tsp_bodies_and_mdp_messages_are_counted_and_answered_or_dropped() {
        let mut rig = Rig::new("malformed-machine", |_| {});
        rig.out.take();
        assert_eq!(rig.tsp(0, &["echo"], 1).unwrap(), ["400"]);
        assert_eq!(rig.tsp(1, &["nothex"], 2).unwrap(), ["400"]);
        assert_eq!(rig.m.report().invalid, 1);
        // Not MDP, a worker command the broker does not send, a 0.2 REQUEST: dropped.
        assert!(rig.input(1, msg(&["junk"]), 3).is_empty());
        let ready = from_broker(WorkerCommand::Ready {
            service: b"x".to_vec(),
            credit: None,
        });
        assert!(rig.input(1, ready, 4).is_empty());
        let v2 = mdp::encode_worker(WorkerMsg {
            version: Version::V2,
            command: WorkerCommand::Request {
                client: b"c".to_vec(),
                body: msg(&["x"]),
            },
        });
        assert!(rig.input(2, v2, 5).is_empty());
        assert_eq!(rig.m.report().invalid, 4);
        assert!(rig.m.store.is_empty());
    }

    #[test]
    fn requests_past_the_limits_are_answered_500_and_not_stored() {
        let mut rig = Rig::new("limits-machine", |c| {
            c.limits = Limits {
                max_request_bytes: 10,
                max_store_bytes: 1 << 20,
                ..Limits::default()
            }
        });
        rig.out.take();
        let reply = rig.tsp(0, &["echo", "0123456789"], 1).unwrap();
        assert!(
            reply[0].starts_with("500 request too big: 14 bytes"),
            "{reply:?}"
        );
        assert_eq!(reply.len(), 1);
        assert!(rig.m.store.is_empty());
        assert_eq!(rig.m.report().requests, 0);
        assert!(opened(&rig.tick(1)).is_empty());
    }

    /// Under the free-space reserve every new request is refused with the reason, the log
    /// says so once, and once when there is room again (here: the reserve lowered).
    #[test]
    fn requests_are_refused_while_the_disk_is_under_its_reserve() {
        let mut rig = Rig::new("reserve", |c| {
            c.limits.min_free = u64::MAX;
            c.retry_interval = ms(100);
        });
        rig.out.take();
        for at in [1, 2] {
            let reply = rig.tsp(0, &["echo", "x"], at).unwrap();
            assert!(reply[0].starts_with("500 disk full: "), "{reply:?}");
            assert!(reply[0].contains("--min-free"), "{reply:?}");
        }
        assert!(rig.m.store.is_empty());
        let said = |rig: &Rig, what: &str| {
            rig.seen
                .iter()
                .filter(|e| format!("{e:?}").contains(what))
                .count()
        };
        assert_eq!(said(&rig, "disk full: "), 3, "said once, plus two refusals");
        assert_eq!(said(&rig, "has room again"), 0);
        // The machine keeps looking while the disk is full.
        assert!(rig.m.next_deadline().is_some_and(|d| d <= rig.at(102)));
        rig.m.disk = Disk::new(0);
        rig.m.disk.note(None, true);
        rig.m.disk.schedule(rig.at(102));
        rig.tick(102);
        assert_eq!(said(&rig, "has room again"), 1);
        let reply = rig.tsp(0, &["echo", "x"], 103).unwrap();
        assert_eq!(reply[0], "200", "{reply:?}");
        rig.tick(203);
        assert_eq!(said(&rig, "has room again"), 1);
    }

    #[test]
    fn a_service_without_a_worker_or_a_reply_is_retried_after_the_retry_interval() {
        // A broker that heartbeats less often than this test looks.
        let mut rig = Rig::new("retry", |c| c.heartbeat.interval = Duration::from_secs(60));
        rig.out.take();
        let uuid = rig.tsp(0, &["echo", "x"], 0).unwrap()[1].clone();
        rig.tick(0);
        // mmi.service 404: the lane ends, the service rests for the retry interval.
        let out = rig.input(LANES, to_lane("mmi.service", &["404"]), 10);
        assert_eq!(out, [Output::Close(LANES)]);
        assert!(opened(&rig.tick(10)).is_empty());
        assert_eq!(rig.m.next_deadline().map(|d| d <= rig.at(1010)), Some(true));
        assert!(opened(&rig.tick(1009)).is_empty());
        let out = rig.tick(1010);
        assert_eq!(opened(&out).len(), 1, "a fresh socket for the next attempt");
        // This time the service is there but never answers: timed out after 500 ms.
        rig.input(LANES, to_lane("mmi.service", &["200"]), 1020);
        rig.tick(1020);
        assert!(rig
            .tick(1519)
            .iter()
            .all(|o| !matches!(o, Output::Close(_))));
        let out = rig.tick(1520);
        assert!(out.contains(&Output::Close(LANES)));
        assert!(rig.logged("no reply in 500 ms; retrying later"));
        assert!(opened(&rig.tick(2519)).is_empty());
        let out = rig.tick(2520);
        assert_eq!(
            frames(&sent_on(&out, LANES)[0]),
            ["MDPC01", "mmi.service", "echo"]
        );
        rig.input(LANES, to_lane("mmi.service", &["200"]), 2530);
        rig.tick(2530);
        rig.input(LANES, to_lane("echo", &["X"]), 2540);
        assert_eq!(rig.tsp(1, &[&uuid], 2541).unwrap(), ["200", "X"]);
        // A malformed answer (another service's) is counted and retried later.
        let uuid = rig.tsp(0, &["echo", "y"], 2550).unwrap()[1].clone();
        rig.tick(2550);
        let out = rig.input(LANES, to_lane("other", &["200"]), 2560);
        assert_eq!(out, [Output::Close(LANES)]);
        assert_eq!(rig.m.report().invalid, 1);
        assert!(opened(&rig.tick(3559)).is_empty());
        assert_eq!(opened(&rig.tick(3560)).len(), 1);
        assert_eq!(rig.tsp(1, &[&uuid], 3561).unwrap(), ["300"]);
    }

    #[test]
    fn one_lane_per_service_concurrent_across_services_and_mmi_targets_skip_the_check() {
        let mut rig = Rig::new("lanes", |_| {});
        rig.out.take();
        for (service, body) in [("a", "1"), ("a", "2"), ("b", "3"), ("mmi.service", "a")] {
            assert_eq!(rig.tsp(0, &[service, body], 0).unwrap()[0], "200");
        }
        let out = rig.tick(0);
        let slots: Vec<Slot> = opened(&out).iter().map(|s| s.slot).collect();
        assert_eq!(slots, [LANES, LANES + 1, LANES + 2]);
        assert_eq!(
            frames(&sent_on(&out, LANES)[0]),
            ["MDPC01", "mmi.service", "a"]
        );
        assert_eq!(
            frames(&sent_on(&out, LANES + 1)[0]),
            ["MDPC01", "mmi.service", "b"]
        );
        assert_eq!(
            frames(&sent_on(&out, LANES + 2)[0]),
            ["MDPC01", "mmi.service", "a"]
        );
        // The mmi.service target's reply is stored; the lane is free again.
        rig.input(LANES + 2, to_lane("mmi.service", &["200"]), 5);
        rig.tick(5);
        assert_eq!(rig.m.report().replied, 1);
        // a's first request answered: its second goes out on a fresh socket in the freed slot.
        rig.input(LANES, to_lane("mmi.service", &["200"]), 10);
        rig.tick(10);
        rig.input(LANES, to_lane("a", &["one"]), 11);
        let out = rig.tick(11);
        assert_eq!(
            opened(&out).iter().map(|s| s.slot).collect::<Vec<_>>(),
            [LANES]
        );
        assert_eq!(
            frames(&sent_on(&out, LANES)[0]),
            ["MDPC01", "mmi.service", "a"]
        );
        assert_eq!(rig.m.report().replied, 2);
    }

    #[test]
    fn pending_requests_of_an_earlier_run_are_dispatched_at_start() {
        let dir = temp_dir("restart");
        let uuid = {
            let mut store = Store::open(&dir).unwrap();
            let uuid = Uuid::random();
            store.put_request(uuid, "echo", &msg(&["again"])).unwrap();
            uuid
        };
        let mut rig = Rig::with(config(&dir));
        assert!(rig.logged("1 stored, 1 pending"));
        rig.out.take();
        let out = rig.tick(0);
        assert_eq!(
            frames(&sent_on(&out, LANES)[0]),
            ["MDPC01", "mmi.service", "echo"]
        );
        rig.input(LANES, to_lane("mmi.service", &["200"]), 1);
        rig.tick(1);
        rig.input(LANES, to_lane("echo", &["again"]), 2);
        assert_eq!(
            rig.tsp(1, &[&uuid.to_string()], 3).unwrap(),
            ["200", "again"]
        );
    }

    #[test]
    fn workers_heartbeat_and_reconnect_with_back_off_on_a_fresh_identity() {
        let mut rig = Rig::new("heartbeat", |_| {});
        rig.out.take();
        assert!(rig.tick(99).is_empty());
        // Every worker owes a heartbeat each interval: ["", "MDPW01", 0x04].
        let out = rig.tick(100);
        for slot in 0..3 {
            assert_eq!(
                raw(&sent_on(&out, slot)[0]),
                [b"".to_vec(), b"MDPW01".to_vec(), vec![4]]
            );
        }
        // The broker keeps worker 1 alive; 0 and 2 hear nothing for 300 ms.
        rig.input(1, heartbeat(), 250);
        let out = rig.tick(300);
        assert!(out.contains(&Output::Close(0)) && out.contains(&Output::Close(2)));
        assert!(!out.contains(&Output::Close(1)));
        assert!(rig
            .seen
            .iter()
            .any(|e| matches!(e, Event::PeerLost { delay_ms: 50, .. })));
        // Reopened after the 50 ms back-off, with a new identity and READY.
        assert_eq!(rig.m.next_deadline(), Some(rig.at(350)));
        let out = rig.tick(350);
        let specs = opened(&out);
        assert_eq!(specs.iter().map(|s| s.slot).collect::<Vec<_>>(), [0, 2]);
        let id = String::from_utf8(specs[0].identity.clone().unwrap()).unwrap();
        assert!(
            id.starts_with(&format!("titanic{}-request-2-", std::process::id())),
            "{id}"
        );
        assert_eq!(frames(&sent_on(&out, 0)[0])[3], "titanic.request");
        assert_eq!(rig.m.report().reconnects, 2);
        // Silent again: the next delay doubles; a message resets the back-off.
        rig.tick(650);
        assert!(rig
            .seen
            .iter()
            .any(|e| matches!(e, Event::PeerLost { delay_ms: 100, .. })));
        rig.tick(750);
        rig.input(0, heartbeat(), 760);
        // DISCONNECT: reconnect at once, back-off reset to 50 ms.
        let out = rig.input(0, from_broker(WorkerCommand::Disconnect), 770);
        assert_eq!(out, [Output::Close(0)]);
        assert!(rig.logged("broker sent DISCONNECT"));
        assert_eq!(opened(&rig.tick(820)).len(), 1);
    }

    #[test]
    fn an_overload_holds_the_reply_while_heartbeating_and_drops_a_second_request() {
        let mut rig = Rig::new("overload", |c| {
            c.faults = FaultPlan {
                overload_rate: 1.0,
                overload_for: ms(250),
                faults_after: 0,
                ..FaultPlan::default()
            }
        });
        rig.out.take();
        assert_eq!(rig.tsp(0, &["echo", "x"], 0), None);
        assert_eq!(rig.m.report().overloads, 1);
        // Stored already (a crash now would keep it), answered only after the stall.
        assert_eq!(rig.m.store.pending().len(), 1);
        assert_eq!(rig.tsp(0, &["echo", "y"], 10), None);
        assert_eq!(rig.m.report().invalid, 1);
        rig.input(0, heartbeat(), 150);
        let out = rig.tick(150);
        assert_eq!(sent_on(&out, 0).len(), 1, "a heartbeat through the stall");
        assert!(replies(&out, 0).is_empty());
        let out = rig.tick(250);
        assert_eq!(replies(&out, 0)[0][0], "200");
        assert_eq!(rig.m.store.pending().len(), 1);
    }

    #[test]
    fn a_freeze_stops_the_request_worker_reading_and_heartbeating_then_serves_the_request() {
        let mut rig = Rig::new("freeze", |c| {
            c.faults = FaultPlan {
                freeze_rate: 1.0,
                freeze_for: ms(400),
                faults_after: 0,
                ..FaultPlan::default()
            }
        });
        rig.out.take();
        assert_eq!(rig.tsp(0, &["echo", "x"], 0), None);
        assert_eq!(rig.m.report().freezes, 1);
        assert!(
            rig.m.store.is_empty(),
            "frozen before the request is stored"
        );
        assert!(!rig.m.wants(0) && rig.m.wants(1) && rig.m.wants(2));
        // The other workers keep heartbeating; the frozen one neither beats nor expires.
        rig.input(1, heartbeat(), 200);
        rig.input(2, heartbeat(), 200);
        let out = rig.tick(300);
        assert!(sent_on(&out, 0).is_empty());
        assert!(!out.contains(&Output::Close(0)));
        assert_eq!(sent_on(&out, 1).len(), 1);
        let out = rig.tick(400);
        assert_eq!(replies(&out, 0)[0][0], "200");
        assert_eq!(rig.m.store.pending().len(), 1);
        assert!(rig.m.wants(0));
    }
}
