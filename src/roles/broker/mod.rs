//! `pirate broker`: the Majordomo broker, serving 7/MDP (0.1) and 18/MDP (0.2) clients and
//! workers on one ROUTER socket, and answering 8/MMI (`mmi.*`) requests itself.
//!
//! [`Broker`] is a pure [`Machine`]: a message or a heartbeat tick and an `Instant` in, the
//! messages to send out. Its files are its jobs: `service.rs` keeps one service's queue of
//! requests and idle workers and the bytes they hold, `workers.rs` the registered workers
//! and the requests they hold, `clients.rs` reply addresses and what clients are told; this
//! file routes each message to them and keeps the counters. The frames each peer sends and
//! the rules the broker keeps, and why (LRU dispatch, heartbeats to busy workers, at most
//! once per attempt, request TTL, queue and bytes bounds, busy timeout, handles, credit,
//! MMI, Binary Star): docs/architecture.md, "The broker".

mod clients;
mod service;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use self::clients::NOT_MDP;
use self::clients::{is_client_message, not_mdp_answer, ReplyAddress};
use self::service::{Bounds, HeldBytes, Service};
use self::workers::{is_idle, Assignment, Held, RegisteredWorker};
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

/// The longest service name accepted, in bytes (a longer one is invalid).
pub const MAX_SERVICE_NAME: usize = 255;

/// With a busy timeout, PARTIALs keep a request at a worker for at most this many timeouts.
pub const PARTIAL_GRACE: u32 = 10;

/// The most credit granted to one worker connection (what `pirate worker --concurrency`
/// allows): a READY asking for more is granted this.
pub const MAX_CREDIT: u32 = 1024;

/// Everything `pirate broker` needs; the defaults are in [`BrokerConfig::default`].
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where clients and workers connect. The default is the Guide's.
    pub bind: String,
    /// Heartbeating per 7/MDP; a worker expires after `liveness × interval` of silence. The
    /// default is the Guide's.
    pub heartbeat: HeartbeatConfig,
    /// How long a request may wait for a worker before it is dropped. The default is longer
    /// than the Guide client's whole retry budget (docs/architecture.md, "The broker").
    pub request_ttl: Duration,
    /// Most requests one service may hold waiting for a worker; newer ones are refused. The
    /// default is a backstop, as the bytes bounds are what limit memory.
    pub max_queue: usize,
    /// A worker holding one request this long without a reply is disconnected (see
    /// docs/architecture.md, "The broker"). `None` (the default, as in 7/MDP): never.
    pub busy_timeout: Option<Duration>,
    /// Most bytes of requests one service may hold waiting; also the most one reply held
    /// for a 0.1 client may grow to.
    pub max_queue_bytes: u64,
    /// Most bytes the broker holds in all (queued requests and held PARTIALs).
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
type Outgoing = (Frame, Message);

/// The Majordomo broker as a pure state machine: messages and clock ticks in, messages out.
pub struct Broker {
    heartbeat: HeartbeatConfig,
    request_ttl: Duration,
    busy_timeout: Option<Duration>,
    bounds: Bounds,
    /// Bytes held now: every service's queued requests and every held PARTIAL.
    held: HeldBytes,
    services: HashMap<Frame, Service>,
    workers: HashMap<Frame, RegisteredWorker>,
    next_generation: u64,
    /// Handles for the client address frame of each REQUEST.
    handles: RequestIds,
    report: MajordomoReport,
    /// Answers so far, drained into the reactor's outbox.
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
            busy_timeout: config.busy_timeout,
            bounds: Bounds {
                max_queue: config.max_queue,
                max_queue_bytes: config.max_queue_bytes,
                max_bytes: config.max_bytes,
            },
            held: HeldBytes::default(),
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
        let Some(sender) = msg.pop_front() else {
            return self.invalid(events, "empty message".into());
        };
        match mdp::peek_version(&msg) {
            // A client behind a proxy, or with a request id: its envelope comes off here and
            // goes back on its reply.
            None if mdp::client_envelope_len(msg.iter()).is_some() => {
                let envelope = mdp::split_client_envelope(&mut msg);
                let client = ReplyAddress {
                    identity: sender,
                    envelope,
                };
                self.client_message(client, msg, now, events)
            }
            Some((_, true)) => match mdp::decode_worker(msg) {
                Ok(decoded) => self.on_worker(sender, decoded, now, events),
                Err(e) => self.invalid(events, format!("from {}: {e}", frame_text(&sender))),
            },
            Some((_, false)) => self.client_message(ReplyAddress::bare(sender), msg, now, events),
            None => {
                self.invalid(
                    events,
                    format!(
                        "from {}: not MDP (no MDPC01, MDPW01, MDPC02 or MDPW02 header)",
                        frame_text(&sender)
                    ),
                );
                if let Some(answer) = not_mdp_answer(msg) {
                    self.out.push((sender, answer));
                }
            }
        }
    }

    /// A client's message, its envelope off: decoded, or counted as invalid.
    fn client_message(
        &mut self,
        client: ReplyAddress,
        msg: Message,
        now: Instant,
        events: &mut Events,
    ) {
        match mdp::decode_client(msg, mdp::Direction::ToBroker) {
            Ok(decoded) => self.on_client(client, decoded, now, events),
            Err(e) => self.invalid(
                events,
                format!("from {}: {e}", frame_text(&client.identity)),
            ),
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
            let longest = limit * PARTIAL_GRACE;
            let stuck: Vec<(Frame, Version)> = self
                .workers
                .iter()
                .filter(|(_, w)| w.jobs.iter().any(|j| j.stuck(now, limit, longest)))
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
            for _ in 0..svc.expire(now, self.request_ttl, &mut self.held) {
                self.report.requests_expired += 1;
                events.emit(dropped(name, "ttl"));
            }
            let workers = &self.workers;
            svc.drop_stale(|id, generation| is_idle(workers, id, generation));
        }
        self.services.retain(|_, svc| !svc.is_unused());
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
            svc.members().any(|id| {
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
            .map(|(name, svc)| (frame_text(name), svc.status()))
            .collect();
        let mut status = serde_json::to_value(&self.report).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut status {
            map.insert("services".into(), json!(services));
            map.insert("workers".into(), json!(self.workers.len()));
        }
        status
    }

    fn invalid(&mut self, events: &mut Events, reason: String) {
        self.report.invalid += 1;
        events.invalid(SOCKET, reason);
    }

    fn on_client(
        &mut self,
        client: ReplyAddress,
        msg: ClientMsg,
        now: Instant,
        events: &mut Events,
    ) {
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
            let answer = self.mmi_answer(mmi::parse(&service, &body), now);
            let body = Message::from_frames([answer]);
            let reply = client.reply(version, ClientCommand::Final, service, body);
            self.out.push(reply);
            return;
        }
        // The name is copied only the first time the service is seen, not per request.
        if !self.services.contains_key(&service) {
            self.services.insert(service.clone(), Service::default());
        }
        let Some(svc) = self.services.get_mut(&service) else {
            return;
        };
        svc.enqueue(client, version, body, now, &mut self.held);
        self.dispatch(&service, now, events);
        // Dispatch took the request if a worker was idle; what is left may be over a bound.
        let Some(svc) = self.services.get_mut(&service) else {
            return;
        };
        match svc.enforce(&self.bounds, &mut self.held) {
            Some(reason) => {
                self.report.requests_rejected += 1;
                events.emit(dropped(&service, reason));
            }
            None => self.report.requests += 1,
        }
    }

    /// The 8/MMI answer to `request`, decided on the service frame, never an identity.
    fn mmi_answer(&self, request: MmiRequest, now: Instant) -> Frame {
        match request {
            MmiRequest::Service(name) if self.has_live_worker(&name, now) => mmi::OK.to_vec(),
            MmiRequest::Service(_) => mmi::NOT_FOUND.to_vec(),
            MmiRequest::Status => self.status().to_string().into_bytes(),
            MmiRequest::Correlate => mmi::OK.to_vec(),
            MmiRequest::Unknown => mmi::NOT_IMPLEMENTED.to_vec(),
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
            RegisteredWorker {
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
        self.report.workers_seen += 1;
        events.emit(Event::ServiceWorkerReady {
            worker: frame_text(&id),
            service: frame_text(&service),
            credit,
        });
        let svc = self.services.entry(service.clone()).or_default();
        svc.join(id, generation, credit as usize);
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
            job.progressed(now);
            match job.client_version {
                Version::V2 => {
                    let to = job.client.clone();
                    let partial = to.reply(Version::V2, ClientCommand::Partial, service, body);
                    self.out.push(partial);
                }
                // 0.1 cannot stream: the frames are held for the REPLY, within the bounds.
                Version::V1 => {
                    if job.hold(body, &self.bounds, &mut self.held) == Held::Overflowed {
                        self.report.requests_lost += 1;
                        events.emit(dropped(&service, "reply_too_big"));
                    }
                }
            }
            return;
        }
        let was_full = worker.free() == 0;
        let generation = worker.generation;
        let job = worker.jobs.swap_remove(index);
        let (to, client_version, reply) = job.finish(body, &mut self.held);
        if let Some(reply) = reply {
            self.report.replies += 1;
            let reply = to.reply(client_version, ClientCommand::Final, service.clone(), reply);
            self.out.push(reply);
        }
        if let Some(svc) = self.services.get_mut(&service) {
            svc.credit_freed(id, generation, was_full);
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
            let front = match svc.next_in_line() {
                None => Front::Nothing,
                Some((id, generation)) if !is_idle(&self.workers, id, generation) => Front::Stale,
                Some((id, _))
                    if self
                        .workers
                        .get(id)
                        .is_some_and(|w| w.liveness.is_dead(now)) =>
                {
                    Front::Dead(id.clone())
                }
                Some(_) => Front::Ready,
            };
            match front {
                Front::Nothing => return,
                Front::Stale => svc.skip_stale(),
                // Its entry becomes stale and is skipped on the next turn.
                Front::Dead(id) => self.expire(&id, events),
                Front::Ready => {
                    let Some((id, generation, request)) = svc.take(&mut self.held) else {
                        return;
                    };
                    let Some(worker) = self.workers.get_mut(&id) else {
                        return;
                    };
                    let handle = self.handles.next_id();
                    worker.jobs.push(Assignment::new(
                        request.client,
                        handle.clone(),
                        request.version,
                        now,
                    ));
                    let msg = mdp::encode_worker(WorkerMsg {
                        version: worker.version,
                        command: WorkerCommand::Request {
                            client: handle,
                            body: request.body,
                        },
                    });
                    if worker.free() > 0 {
                        svc.keep_first_in_line(id.clone(), generation);
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
            svc.leave(id, worker.free());
        }
        for job in worker.jobs {
            job.abandon(&mut self.held);
            self.report.requests_lost += 1;
            events.emit(dropped(&worker.service, "worker_lost"));
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
            for _ in 0..svc.purge(&mut self.held) {
                self.report.requests_lost += 1;
                events.emit(dropped(name, "stepped_down"));
            }
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
}

/// The event for a request of `service` dropped for `reason`.
fn dropped(service: &[u8], reason: &str) -> Event {
    Event::RequestDropped {
        service: frame_text(service),
        reason: reason.into(),
    }
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

/// The broker on the reactor: one ROUTER socket, no jobs (it never blocks), one deadline
/// (the heartbeat tick).
impl Machine for Broker {
    type Job = Infallible;
    type Done = Infallible;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec::bound(
            ROUTER,
            SocketKind::Router,
            SOCKET,
            &self.report.endpoint,
        )]
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

#[cfg(test)]
mod tests;
