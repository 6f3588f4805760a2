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
//! | `titanic.request` | service name, request frames (1+) | `"200"`, UUID · `"400"` (no service or no request frames) · `"500 …"` (too big, store full, store failed) |
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
//! - Three [`MdpWorker`]s, one thread each (`titanic.request`, `titanic.reply`,
//!   `titanic.close`), and one dispatcher thread, all sharing one [`Store`] behind a mutex.
//!   Each thread's events are forwarded to the caller's [`Events`] on the calling thread.
//! - `titanic.request` stores the request (written and fsync'd, see [`crate::store`]) and only
//!   then replies `"200"` + UUID, then wakes the dispatcher.
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
//! where it matters. An overload stalls the reply after the request was stored; a freeze
//! stalls the `titanic.request` worker before it reads the request (no heartbeats).
//!
//! # Report
//!
//! A [`ServiceReport`]: `requests` = requests stored, `replied` = replies stored by the
//! dispatcher, `invalid` = malformed TSP bodies and MDP messages, `reconnects` of the three
//! workers, `overloads`/`freezes` injected.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::event::{ClientReport, Event, Events, Outcome, Report, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, OnCrash};
use crate::heartbeat::HeartbeatConfig;
use crate::majordomo::{MdpClient, MdpWorker, MdpWorkerConfig};
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::roles::client::{Framing, Received};
use crate::shutdown;
use crate::stats::{millis, LatencyRecorder};
use crate::store::{CrashPoint, Store, StoreOptions, Uuid};
use crate::transport::{self, Notifier, Socket, Wakeup};

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
    /// Trace frames (`-v`): the worker threads have event sinks of their own.
    pub trace: bool,
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 << 20,
            max_store_bytes: 1 << 30,
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
            trace: false,
            store: StoreOptions::default(),
            limits: Limits::default(),
        }
    }
}

/// What the threads tell the calling thread.
enum Note {
    Event(Event),
    Ended(&'static str, Result<()>),
}

type Shared = Arc<Mutex<Store>>;
type Counters = Arc<Mutex<ServiceReport>>;

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::Internal("a titanic thread panicked".into()))
}

/// Runs Titanic until stopped by a signal; returns its counters. If one of its threads fails
/// (a socket error), it asks the whole process to stop ([`shutdown::request`]) and returns
/// that error: a Titanic missing a service or its dispatcher would accept work it cannot do.
pub fn run(config: &TitanicConfig, events: &mut Events) -> Result<Report> {
    let store = Store::open_with(&config.dir, config.store)?;
    events.emit(Event::Started {
        role: "titanic".into(),
        endpoint: config.broker.clone(),
        seed: Some(config.seed),
    });
    let recovery = store.recovery();
    events.info(format!(
        "store {}: {} stored, {} pending ({} records read, {} torn bytes cut off)",
        config.dir.display(),
        store.len(),
        store.pending().len(),
        recovery.records,
        recovery.torn_bytes
    ));
    if recovery.torn_bytes > 0 {
        events.warn(format!(
            "cut off a torn record of {} bytes at the end of the log (a write interrupted by a \
             crash; it was never acknowledged)",
            recovery.torn_bytes
        ));
    }
    let store: Shared = Arc::new(Mutex::new(store));
    let counters: Counters = Arc::new(Mutex::new(ServiceReport {
        endpoint: config.broker.clone(),
        seed: config.seed,
        ..Default::default()
    }));
    let (notes, inbox) = mpsc::channel::<Note>();
    // A stored request wakes the dispatcher out of its poll at once.
    let zmq_ctx = zmq::Context::new();
    let woken = Wakeup::new(&zmq_ctx)?;
    let wake = woken.notifier();
    let mut threads = Vec::new();
    for service in [REQUEST, REPLY, CLOSE] {
        let (config, store, counters, notes) = (
            config.clone(),
            store.clone(),
            counters.clone(),
            notes.clone(),
        );
        let wake = wake.clone();
        threads.push(thread::spawn(move || {
            let mut events = forward(&notes, config.trace);
            let result = serve(&config, service, &store, &counters, wake, &mut events);
            let _ = notes.send(Note::Ended(service, result));
        }));
    }
    {
        let (config, store, counters, notes) = (
            config.clone(),
            store.clone(),
            counters.clone(),
            notes.clone(),
        );
        threads.push(thread::spawn(move || {
            let mut events = forward(&notes, config.trace);
            let result = dispatch(&config, &store, &counters, &zmq_ctx, &woken, &mut events);
            let _ = notes.send(Note::Ended("dispatcher", result));
        }));
    }
    drop(notes);
    let mut running = threads.len();
    let mut failure = None;
    while running > 0 {
        match inbox.recv_timeout(shutdown::POLL_SLICE) {
            Ok(Note::Event(e)) => events.emit(e),
            Ok(Note::Ended(_, Ok(()) | Err(Error::Interrupted))) => running -= 1,
            Ok(Note::Ended(who, Err(e))) => {
                // One part failing stops them all: a Titanic without its dispatcher or one of
                // its services would accept work it cannot finish.
                events.error(format!("titanic {who} stopped: {e}"));
                failure.get_or_insert(e);
                shutdown::request();
                running -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for t in threads {
        let _ = t.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let report = lock(&counters)?.clone();
    Ok(Report::Service(report))
}

/// Events that travel to the calling thread.
fn forward(notes: &mpsc::Sender<Note>, trace: bool) -> Events<'static> {
    let notes = notes.clone();
    Events::new(trace, move |e| {
        let _ = notes.send(Note::Event(e));
    })
}

/// One worker thread: serves `service` until stopped.
fn serve(
    config: &TitanicConfig,
    service: &'static str,
    store: &Shared,
    counters: &Counters,
    wake: Notifier,
    events: &mut Events,
) -> Result<()> {
    let mdp = MdpWorkerConfig {
        heartbeat: config.heartbeat,
        reconnect: config.reconnect,
        // Three workers in one process: the identities must differ.
        name: format!("titanic{}-{}", std::process::id(), &service[8..]),
        ..MdpWorkerConfig::new(&config.broker, service, Version::V1)
    };
    let mut worker = MdpWorker::connect(mdp, events)?;
    let mut faults = Faults::new(config.faults.clone(), config.seed);
    // Where in the write a crash strikes: its own stream, so the fault rolls replay by seed.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x7469_7461_6e69_6321);
    let (mut reconnects, mut invalid) = (0, 0);
    loop {
        let polled = worker.poll(shutdown::POLL_SLICE, events)?;
        {
            let mut c = lock(counters)?;
            c.reconnects += worker.reconnects() - reconnects;
            c.invalid += worker.invalid() - invalid;
            (reconnects, invalid) = (worker.reconnects(), worker.invalid());
        }
        let Some(request) = polled else { continue };
        let reply = match service {
            REQUEST => {
                // Counted apart and added after: a freeze must not hold the counters' lock
                // (the other threads would stall with this one).
                let mut counted = ServiceReport::default();
                let injected = faults.inject(&mut counted, OnCrash::Deferred, events);
                {
                    let mut c = lock(counters)?;
                    c.overloads += counted.overloads;
                    c.freezes += counted.freezes;
                }
                let injected = injected?;
                if injected.crash {
                    let point = match rng.gen_range(0..4) {
                        0 => CrashPoint::BeforeWrite,
                        1 => CrashPoint::MidWrite(rng.gen_range(1..1000)),
                        2 => CrashPoint::BeforeSync,
                        _ => CrashPoint::AfterSync,
                    };
                    events.info(format!("simulating a crash at {point:?} of the next write"));
                    lock(store)?.crash_on_next_write(point);
                }
                let stall = config.faults.work + injected.extra_work;
                let cycle = injected.cycle;
                let started = Instant::now();
                let serving = Serving::new(cycle, &request.body, started);
                let (reply, stored) =
                    handle_request(&mut *lock(store)?, request.body, &config.limits);
                match stored {
                    Some(uuid) => {
                        lock(counters)?.requests += 1;
                        wake.notify();
                        // Stored is served (and counted in `requests`): the reply comes later.
                        events.emit(serving.event());
                        events.info(format!("stored request {uuid}"));
                    }
                    None => note_failure(&reply, REQUEST, counters, events)?,
                }
                // Slow but alive: keep heartbeating through the stall. The broker never
                // hands a busy worker a second request; one that comes anyway is dropped.
                let until = Instant::now() + stall;
                while Instant::now() < until {
                    let left = until.saturating_duration_since(Instant::now());
                    if worker.poll(left, events)?.is_some() {
                        lock(counters)?.invalid += 1;
                        events.invalid(REQUEST, "a second request while busy");
                    }
                }
                reply
            }
            REPLY => {
                let reply = handle_reply(&*lock(store)?, request.body);
                note_failure(&reply, REPLY, counters, events)?;
                reply
            }
            _ => {
                let mut store = lock(store)?;
                let reply = handle_close(&mut store, request.body);
                if let Some(w) = store.take_warning() {
                    events.warn(w);
                }
                reply
            }
        };
        worker.reply(&request.client, reply, events)?;
    }
}

/// Counts a malformed TSP body (400 on `titanic.request`) and logs internal errors.
fn note_failure(
    reply: &Message,
    service: &str,
    counters: &Counters,
    events: &mut Events,
) -> Result<()> {
    match reply.get(0) {
        Some(s) if s.starts_with(b"500 ") => events.warn(format!("{service}: {}", reply.text())),
        Some(s) if s == ERROR => events.error(format!("{service}: {}", reply.text())),
        Some(s) if s == UNKNOWN && service == REQUEST => {
            lock(counters)?.invalid += 1;
            events.invalid(
                service,
                "need a service name and at least one request frame",
            );
        }
        _ => {}
    }
    Ok(())
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

/// What a dispatch lane is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The broker's `mmi.service` answer: is a worker there?
    Asking,
    /// The service's reply.
    Sending,
}

/// One request in flight to its service, on a REQ socket of its own.
struct Lane {
    uuid: Uuid,
    service: String,
    /// Sent once `mmi.service` says 200 (taken then).
    request: Option<Message>,
    stage: Stage,
    socket: Socket,
    deadline: Instant,
}

impl Lane {
    /// Opens the lane and sends its first message: the `mmi.service` question, or the request
    /// itself for an `mmi.*` target.
    fn open(
        ctx: &zmq::Context,
        config: &TitanicConfig,
        uuid: Uuid,
        service: String,
        request: Message,
        events: &mut Events,
    ) -> Result<Lane> {
        let socket = transport::socket(ctx, zmq::REQ, "dispatch", None)?;
        socket.connect(&config.broker)?;
        let mut lane = Lane {
            uuid,
            service,
            request: Some(request),
            stage: Stage::Asking,
            socket,
            deadline: Instant::now() + config.request_timeout,
        };
        if lane.service.starts_with("mmi.") {
            lane.send_request(config, events)?;
        } else {
            let question = Message::from_frames(vec![lane.service.as_bytes().to_vec()]);
            lane.socket
                .send(framing("mmi.service").encode(question), events)?;
        }
        Ok(lane)
    }

    fn send_request(&mut self, config: &TitanicConfig, events: &mut Events) -> Result<()> {
        let request = self.request.take().unwrap_or_default();
        self.stage = Stage::Sending;
        self.deadline = Instant::now() + config.request_timeout;
        self.socket
            .send(framing(&self.service).encode(request), events)
    }
}

/// A 7/MDP 0.1 client request for `service` over REQ.
fn framing(service: &str) -> Framing {
    Framing::Majordomo {
        version: Version::V1,
        service: service.to_string(),
    }
}

/// What became of a lane.
enum LaneState {
    /// Still waiting.
    Open,
    /// The service's reply, to store.
    Replied(Message),
    /// A malformed answer: try again later.
    Retry,
    /// `mmi.service` said no worker: try again later, and the service's other requests too.
    NoWorker,
    /// No answer in time: try again later, and leave the service alone meanwhile.
    TimedOut,
}

/// The dispatcher: sends pending requests to their services, one in flight per service and
/// many services at once, and stores the replies (see the module docs).
fn dispatch(
    config: &TitanicConfig,
    store: &Shared,
    counters: &Counters,
    ctx: &zmq::Context,
    woken: &Wakeup,
    events: &mut Events,
) -> Result<()> {
    let mut lanes: Vec<Lane> = Vec::new();
    // When a request, or a whole service (after a timeout), may be tried again.
    let mut next_try: HashMap<Uuid, Instant> = HashMap::new();
    let mut service_rest: HashMap<String, Instant> = HashMap::new();
    loop {
        shutdown::check()?;
        let now = Instant::now();
        open_lanes(
            config,
            store,
            ctx,
            &mut lanes,
            &mut next_try,
            &service_rest,
            events,
        )?;
        service_rest.retain(|_, t| *t > now);

        // Sleep until a lane answers or times out, a request is stored, or a retry is due.
        let due = lanes
            .iter()
            .map(|l| l.deadline)
            // Retries already due but blocked (their service busy, every lane taken) wait for
            // a lane to finish, which is in the deadlines above; counting them would spin.
            .chain(next_try.values().copied().filter(|t| *t > now))
            .chain(service_rest.values().copied())
            .min()
            .unwrap_or(now + config.retry_interval);
        let readable: Vec<bool> = {
            let mut items: Vec<zmq::PollItem> = lanes
                .iter()
                .map(|l| l.socket.raw().as_poll_item(zmq::POLLIN))
                .collect();
            items.push(woken.socket().raw().as_poll_item(zmq::POLLIN));
            match zmq::poll(&mut items, shutdown::slice_until(due)) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(Error::zmq("poll failed", e)),
            }
            items.iter().map(zmq::PollItem::is_readable).collect()
        };
        woken.drain();

        let now = Instant::now();
        let mut still = Vec::with_capacity(lanes.len());
        for (mut lane, readable) in lanes.into_iter().zip(readable) {
            let state = if readable {
                answer(&mut lane, config, events)?
            } else if now >= lane.deadline {
                LaneState::TimedOut
            } else {
                LaneState::Open
            };
            match state {
                LaneState::Open => still.push(lane),
                LaneState::Replied(reply) => {
                    let mut store = lock(store)?;
                    match store.put_reply(lane.uuid, &reply) {
                        Ok(true) => lock(counters)?.replied += 1,
                        Ok(false) => {} // closed while we waited: nobody wants it
                        Err(e) => {
                            events.error(format!("cannot store the reply for {}: {e}", lane.uuid));
                            next_try.insert(lane.uuid, now + config.retry_interval);
                        }
                    }
                }
                LaneState::Retry => {
                    next_try.insert(lane.uuid, now + config.retry_interval);
                }
                LaneState::NoWorker => {
                    // One answer per service per retry interval, not one per request.
                    service_rest.insert(lane.service.clone(), now + config.retry_interval);
                    next_try.insert(lane.uuid, now + config.retry_interval);
                }
                LaneState::TimedOut => {
                    events.info(format!(
                        "request {} for {}: no reply in {} ms; retrying later",
                        lane.uuid,
                        lane.service,
                        config.request_timeout.as_millis()
                    ));
                    // A service that hangs is left alone for a while.
                    service_rest.insert(lane.service.clone(), now + config.retry_interval);
                    next_try.insert(lane.uuid, now + config.retry_interval);
                }
            }
        }
        lanes = still;
    }
}

/// Starts a lane for each pending request that is due, in arrival order, whose service has
/// none yet and is not resting, while fewer than [`MAX_IN_FLIGHT`] are open.
fn open_lanes(
    config: &TitanicConfig,
    store: &Shared,
    ctx: &zmq::Context,
    lanes: &mut Vec<Lane>,
    next_try: &mut HashMap<Uuid, Instant>,
    service_rest: &HashMap<String, Instant>,
    events: &mut Events,
) -> Result<()> {
    let now = Instant::now();
    let store = lock(store)?;
    let pending = store.pending();
    let live: HashSet<Uuid> = pending.iter().copied().collect();
    next_try.retain(|u, _| live.contains(u));
    let mut busy: HashSet<String> = lanes.iter().map(|l| l.service.clone()).collect();
    let flying: HashSet<Uuid> = lanes.iter().map(|l| l.uuid).collect();
    for uuid in pending {
        if lanes.len() >= MAX_IN_FLIGHT {
            break;
        }
        if flying.contains(&uuid) || next_try.get(&uuid).is_some_and(|t| *t > now) {
            continue;
        }
        let Some(entry) = store.get(&uuid) else {
            continue;
        };
        if busy.contains(&entry.service)
            || service_rest.get(&entry.service).is_some_and(|t| *t > now)
        {
            continue;
        }
        busy.insert(entry.service.clone());
        let lane = Lane::open(
            ctx,
            config,
            uuid,
            entry.service.clone(),
            entry.request.clone(),
            events,
        )?;
        lanes.push(lane);
    }
    Ok(())
}

/// Reads what arrived on a lane and moves it on.
fn answer(lane: &mut Lane, config: &TitanicConfig, events: &mut Events) -> Result<LaneState> {
    let msg = lane.socket.recv(events)?;
    let asked = match lane.stage {
        Stage::Asking => "mmi.service",
        Stage::Sending => lane.service.as_str(),
    };
    match (lane.stage, framing(asked).decode(msg)) {
        (Stage::Asking, Ok(Received::Final(answer))) if answer.get(0) == Some(OK) => {
            lane.send_request(config, events)?;
            Ok(LaneState::Open)
        }
        (Stage::Asking, Ok(_)) => Ok(LaneState::NoWorker),
        (Stage::Sending, Ok(Received::Final(reply))) => Ok(LaneState::Replied(reply)),
        // 0.1 has no PARTIAL; a broker that sends one anyway is not trusted with the reply.
        (_, Ok(Received::Partial(_))) | (_, Err(_)) => {
            events.invalid("dispatch", "a malformed answer from the broker");
            Ok(LaneState::Retry)
        }
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
}

impl TitanicClient {
    /// A client of the Titanic behind the broker at `broker`; each TSP call waits `timeout`
    /// per attempt, for `retries` attempts.
    pub fn connect(broker: &str, timeout: Duration, retries: u32) -> Result<Self> {
        let mut client = MdpClient::connect(broker, Version::V1)?;
        client.set_timeout(timeout);
        client.set_retries(retries);
        Ok(TitanicClient { client })
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
                ReplyStatus::Pending => shutdown::sleep(poll_interval)?,
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
    round_trip(&mut client, service, body, poll_interval, events).map(|(reply, _)| reply)
}

fn round_trip(
    client: &mut TitanicClient,
    service: &str,
    body: Message,
    poll_interval: Duration,
    events: &mut Events,
) -> Result<(Message, u32)> {
    let uuid = client.submit(service, body)?;
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
    requests: impl Iterator<Item = String>,
    events: &mut Events,
) -> Result<Report> {
    let started = Instant::now();
    let mut client = TitanicClient::connect(&config.broker, config.timeout, config.retries)?;
    let mut latency = LatencyRecorder::default();
    let mut report = ClientReport::new(config.broker.clone());
    events.emit(Event::Started {
        role: format!("client (titanic {})", config.service),
        endpoint: config.broker.clone(),
        seed: None,
    });
    for request in requests {
        report.requests += 1;
        report.sent += 1;
        let seq = report.requests;
        events.emit(Event::Sent {
            seq,
            request: request.clone(),
            attempt: 1,
        });
        let t0 = Instant::now();
        let body = Message::from_frames(vec![request.clone().into_bytes()]);
        match round_trip(
            &mut client,
            &config.service,
            body,
            config.poll_interval,
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
                    reply: text,
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
    report.elapsed_ms = millis(started.elapsed());
    report.latency_ms = latency.summary();
    Ok(Report::Client(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::broker::{self, BrokerConfig};
    use crate::store::Store;

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
            thread::spawn(move || -> Result<()> {
                let mut events = Events::discard();
                let mut config = MdpWorkerConfig::new(&endpoint, service, Version::V1);
                config.heartbeat = fast;
                config.reconnect = Duration::from_millis(50);
                config.name = format!("echo-{service}");
                let mut worker = MdpWorker::connect(config, &mut events)?;
                loop {
                    let request = worker.recv(&mut events)?;
                    worker.reply(&request.client, request.body, &mut events)?;
                }
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
        thread::spawn(move || run(&config, &mut Events::discard()));

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
}
