//! `pirate titanic`: the Titanic Service Protocol (9/TSP), disk-based disconnected
//! reliability on top of Majordomo: [`Titanic`], one pure [`Machine`] that is an MDP worker
//! for `titanic.request`, `titanic.reply` and `titanic.close` and an MDP client of the real
//! services, over a crash-safe [`store`]; and [`titanic_client`] / [`TitanicClient`] for its
//! clients.
//!
//! A request is answered `"200"` + UUID only once it is written and synced; the dispatcher
//! sends stored requests to their services (one in flight per service, each on a REQ socket
//! of its own) and stores the first reply of each, retrying forever until it is closed.
//! Faults strike in the middle of making a request durable. The frames, the dispatcher, the
//! bounds, a full disk and the faults are told in docs/architecture.md ("Titanic").

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::event::{Event, Events, Report, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, OnCrash};
use crate::heartbeat::HeartbeatConfig;
use crate::link::{Link, Status};
use crate::msg::Message;
use crate::proto::mdp::{
    self, ClientCommand, ClientMsg, Direction, Version, WorkerCommand, WorkerMsg,
};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

use crate::transport;

mod client;
mod disk;
mod mdp_client;
pub mod store;
#[cfg(test)]
mod tests;
mod tsp;

pub use crate::proto::tsp::{CLOSE, ERROR, OK, PENDING, REPLY, REQUEST, UNKNOWN};
pub use client::{run_client, titanic_client, ReplyStatus, TitanicClient, TitanicClientConfig};
pub use mdp_client::MdpClient;
pub use tsp::{handle_close, handle_reply, handle_request};
use tsp::{note_failure, status};

use crate::proto::tsp::Uuid;
use disk::{Change, Disk};
use store::{CrashPoint, Store, StoreOptions};

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
struct ServiceWorker {
    service: &'static str,
    slot: Slot,
    /// Sockets opened so far (the `N` of the identity `titanicPID-SERVICE-N-<random>`).
    sockets: u64,
    /// The identity of the socket opened next or open now.
    identity: Vec<u8>,
    /// Up with the broker's liveness, or closed after losing it until the back-off's reopen
    /// instant.
    link: Link,
}

impl ServiceWorker {
    fn new(config: &TitanicConfig, index: usize, now: Instant) -> Self {
        let service = SERVICES[index];
        let mut worker = ServiceWorker {
            service,
            slot: index,
            sockets: 0,
            identity: Vec::new(),
            link: Link::new(Backoff::new(config.reconnect, RECONNECT_MAX)),
        };
        // Watched from construction, so the deadlines are the same before `start` as after.
        worker.link.up(Some(config.heartbeat), now);
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
        self.link.sent(now);
    }

    /// READY on a socket just opened: `["", "MDPW01", 0x01, service]`.
    fn ready(
        &mut self,
        config: &TitanicConfig,
        now: Instant,
        out: &mut Outbox<Never>,
        events: &mut Events,
    ) {
        self.link.up(Some(config.heartbeat), now);
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
        // Always after the back-off, DISCONNECT too (unlike the worker's sessions).
        let delay = self.link.lose(now, false);
        events.emit(Event::PeerLost {
            reason: "silent".into(),
            delay_ms: delay.as_millis() as u64,
            peer: "broker".into(),
        });
        out.close(self.slot);
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
    workers: Vec<ServiceWorker>,
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
                .map(|i| ServiceWorker::new(config, i, now))
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
        worker.link.heard(now);
        // Any message, DISCONNECT included, shows the broker took the READY.
        worker.link.answered();
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
        if !worker.link.is_up() {
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
                self.workers[0].link.heard(now);
                let stall = self.faults.plan().work;
                self.store_request(stall, now, out, events);
            }
        }
        self.release(now, out);
        let frozen = self.frozen();
        for (i, worker) in self.workers.iter_mut().enumerate() {
            match worker.link.status(now) {
                Status::Reopen => {
                    worker.next_identity();
                    out.open(worker.spec(&self.config.broker));
                    self.report.reconnects += 1;
                    worker.ready(&self.config, now, out, events);
                }
                Status::Down => {}
                // A frozen worker neither heartbeats nor notices anything.
                _ if i == 0 && frozen => {}
                Status::PeerDead => worker.lose(now, out, events),
                Status::Up => {
                    if worker.link.heartbeat_due(now) {
                        worker.send(WorkerCommand::Heartbeat, now, out);
                    }
                }
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
                if self.workers[slot].link.is_up() {
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
            .filter(|(i, w)| !(*i == 0 && frozen && w.link.is_up()))
            .filter_map(|(_, w)| w.link.next_deadline());
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
