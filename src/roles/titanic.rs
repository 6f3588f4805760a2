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
//! | `titanic.request` | service name, request frames (1+) | `"200"`, UUID · `"400"` (no service or no request frames) · `"500"` |
//! | `titanic.reply` | UUID | `"200"`, reply frames · `"300"` (pending) · `"400"` (unknown) · `"500"` |
//! | `titanic.close` | UUID | `"200"` (also for an unknown UUID) · `"500"` |
//!
//! A UUID is 32 lowercase hex digits from 128 random bits (uppercase is accepted on input).
//! Statuses are the bare three digits. `titanic.reply` never deletes: it answers the same
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
//! - The dispatcher walks the pending requests in arrival order. For each it asks the broker
//!   `mmi.service` first (once per service per pass; `mmi.*` targets skip the check) and
//!   sends the request with an [`MdpClient`] only if a worker is there, with one attempt of
//!   `request_timeout`. A reply is stored durably; anything else (404, no reply, broker
//!   down) is retried `retry_interval` later, forever, until answered or closed. After a
//!   restart the pending list comes from the store, so dispatch resumes where it was.
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
use crate::event::{ClientReport, Event, Events, FaultKind, Outcome, Report, ServiceReport};
use crate::faults::{Fault, FaultPlan, Faults};
use crate::heartbeat::HeartbeatConfig;
use crate::majordomo::{MdpClient, MdpWorker, MdpWorkerConfig};
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::shutdown;
use crate::stats::{millis, LatencyRecorder};
use crate::store::{CrashPoint, Store, StoreOptions, Uuid};

/// The three services Titanic registers for.
pub const REQUEST: &str = "titanic.request";
pub const REPLY: &str = "titanic.reply";
pub const CLOSE: &str = "titanic.close";

/// 9/TSP statuses.
pub const OK: &[u8] = b"200";
pub const PENDING: &[u8] = b"300";
pub const UNKNOWN: &[u8] = b"400";
pub const ERROR: &[u8] = b"500";

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
    let (wake, woken) = mpsc::channel::<()>();
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
            let result = dispatch(&config, &store, &counters, woken, &mut events);
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
    wake: mpsc::Sender<()>,
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
                let mut stall = config.faults.work;
                let cycle = faults.cycles() + 1;
                match faults.next_cycle() {
                    Some(Fault::Crash) => {
                        let point = match rng.gen_range(0..4) {
                            0 => CrashPoint::BeforeWrite,
                            1 => CrashPoint::MidWrite(rng.gen_range(1..1000)),
                            2 => CrashPoint::BeforeSync,
                            _ => CrashPoint::AfterSync,
                        };
                        events.emit(Event::Fault {
                            kind: FaultKind::Crash,
                            cycle,
                            duration_ms: None,
                        });
                        events.info(format!("simulating a crash at {point:?} of the next write"));
                        lock(store)?.crash_on_next_write(point);
                    }
                    Some(Fault::Overload(d)) => {
                        lock(counters)?.overloads += 1;
                        events.emit(Event::Fault {
                            kind: FaultKind::Overload,
                            cycle,
                            duration_ms: Some(d.as_millis() as u64),
                        });
                        stall += d;
                    }
                    Some(Fault::Freeze(d)) => {
                        lock(counters)?.freezes += 1;
                        events.emit(Event::Fault {
                            kind: FaultKind::Freeze,
                            cycle,
                            duration_ms: Some(d.as_millis() as u64),
                        });
                        shutdown::sleep(d)?;
                    }
                    None => {}
                }
                let started = Instant::now();
                let bytes = request.body.iter().map(<[u8]>::len).sum();
                let preview = request.body.preview();
                let (reply, stored) = handle_request(&mut *lock(store)?, request.body);
                match stored {
                    Some(uuid) => {
                        lock(counters)?.requests += 1;
                        let _ = wake.send(());
                        events.emit(Event::Served {
                            cycle,
                            request: preview,
                            bytes,
                            work_ms: millis(started.elapsed()),
                        });
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
/// ["400"] when the service or the request is missing, ["500"] when the store failed.
pub fn handle_request(store: &mut Store, mut body: Message) -> (Message, Option<Uuid>) {
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

/// The dispatcher: sends pending requests to their services and stores the replies.
fn dispatch(
    config: &TitanicConfig,
    store: &Shared,
    counters: &Counters,
    woken: mpsc::Receiver<()>,
    events: &mut Events,
) -> Result<()> {
    let mut client = MdpClient::connect(&config.broker, Version::V1)?;
    client.set_timeout(config.request_timeout);
    client.set_retries(1);
    let mut next_try: HashMap<Uuid, Instant> = HashMap::new();
    loop {
        shutdown::check()?;
        let pending = lock(store)?.pending();
        let live: HashSet<Uuid> = pending.iter().copied().collect();
        next_try.retain(|u, _| live.contains(u));
        // mmi.service answers, per service, for this pass.
        let mut present: HashMap<String, bool> = HashMap::new();
        for uuid in pending {
            if next_try.get(&uuid).is_some_and(|t| *t > Instant::now()) {
                continue;
            }
            let Some(entry) = lock(store)?.get(&uuid).cloned() else {
                continue; // closed meanwhile
            };
            let service = entry.service;
            let here = match present.get(&service) {
                Some(&here) => here,
                None => {
                    let here = service.starts_with("mmi.") || has_worker(&mut client, &service)?;
                    present.insert(service.clone(), here);
                    here
                }
            };
            let answer = if here {
                match client.request(&service, entry.request) {
                    Ok(reply) => Some(reply),
                    Err(Error::Unreachable(_)) => {
                        present.insert(service.clone(), false);
                        None
                    }
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            match answer {
                Some(reply) => {
                    let mut store = lock(store)?;
                    match store.put_reply(uuid, &reply) {
                        Ok(true) => lock(counters)?.replied += 1,
                        Ok(false) => {} // closed while we waited: nobody wants it
                        Err(e) => {
                            events.error(format!("cannot store the reply for {uuid}: {e}"));
                            next_try.insert(uuid, Instant::now() + config.retry_interval);
                        }
                    }
                }
                None => {
                    next_try.insert(uuid, Instant::now() + config.retry_interval);
                }
            }
        }
        // Sleep until the next retry is due or a new request arrives.
        let due = next_try
            .values()
            .min()
            .copied()
            .unwrap_or_else(|| Instant::now() + config.retry_interval);
        loop {
            shutdown::check()?;
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match woken.recv_timeout(left.min(shutdown::POLL_SLICE)) {
                Ok(()) => {
                    while woken.try_recv().is_ok() {}
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }
}

/// Asks the broker `mmi.service` whether `service` has a worker now. A broker that does not
/// answer counts as "no".
fn has_worker(client: &mut MdpClient, service: &str) -> Result<bool> {
    let question = Message::from_frames(vec![service.as_bytes().to_vec()]);
    match client.request("mmi.service", question) {
        Ok(answer) => Ok(answer.get(0) == Some(OK)),
        Err(Error::Unreachable(_)) => Ok(false),
        Err(e) => Err(e),
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
        let code = status_code(reply.pop_front());
        match (code.as_slice(), reply.pop_front()) {
            (OK, Some(uuid)) if Uuid::parse(&uuid).is_some() && reply.is_empty() => {
                Ok(String::from_utf8_lossy(&uuid).into_owned())
            }
            (UNKNOWN, _) => Err(Error::Usage(format!(
                "titanic refused the request for {service:?} (400: it needs a service name and \
                 a non-empty request)"
            ))),
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
    let mut report = ClientReport {
        endpoint: config.broker.clone(),
        outcome: Outcome::Completed,
        requests: 0,
        sent: 0,
        replied: 0,
        retries: 0,
        reconnects: 0,
        abandoned: 0,
        mismatched: 0,
        elapsed_ms: 0.0,
        latency_ms: Default::default(),
    };
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
        let (reply, uuid) = handle_request(&mut store, msg(&["echo", "a", "b"]));
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
            let (reply, uuid) = handle_request(&mut store, body);
            assert_eq!(frames(&reply), vec!["400"]);
            assert!(uuid.is_none());
        }
        let mut bad_utf8 = msg(&["x"]);
        bad_utf8.push_front(vec![0xff, 0xfe]);
        assert_eq!(frames(&handle_request(&mut store, bad_utf8).0), vec!["400"]);
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
        thread::spawn(move || broker::run(&config, &mut Events::discard()));
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
