//! `pirate queue`: the Simple Pirate and Paranoid Pirate (6/PPP) load-balancing queue.
//!
//! Clients talk to a ROUTER frontend, workers to a ROUTER backend. Ready workers wait in a
//! least-recently-used queue; the frontend is read only while one is ready, so requests wait in
//! ZeroMQ's buffers (and the clients' retries) rather than in ours. Two policies
//! ([`QueuePolicy`]): Simple sends no heartbeats and expires nobody; under Paranoid the queue
//! heartbeats every worker it knows, idle or busy, and forgets one after `liveness` silent
//! intervals; a busy worker's heartbeat never makes it ready again (trap 7).
//!
//! 6/PPP cannot tell a busy worker from one whose request or reply was lost on the way: both
//! keep heartbeating. With `busy_timeout` (Paranoid only, off by default) a worker that has
//! held one request that long is forgotten: the queue stops heartbeating it, the worker
//! declares the queue dead after its liveness and reconnects with a fresh READY. Its request
//! is the client's to retry; a late reply from it is still delivered.
//!
//! **Every worker sees the classic envelope.** Whatever envelope a request arrives with
//! (`[client identity]` from a REQ client, `[identity][request id]` from `pirate client`,
//! several hops of a ROUTER/DEALER proxy), the worker is handed `[ticket]["" ][body…]`: the
//! three frames a REQ client behind the Guide's queue would produce, which is all the Guide's
//! workers accept (`if len(frames) == 3` in ppworker.py, `msg.parts () == 3` in ppworker.cpp).
//! The ticket is an address the queue makes up per request, 16 hex digits, never used twice
//! ([`RequestIds`]: a random start, one more per request); the queue keeps the client's
//! whole envelope with the worker that holds the ticket and puts it back on the reply.
//!
//! **Replies only from whoever holds the request.** A reply is forwarded only if it comes
//! from the worker that holds the request, with that request's ticket as its envelope, once;
//! a reply from a backend peer that never sent READY, from an idle worker, or with another
//! ticket (forged, or a stale copy of an earlier reply) is dropped, counted in
//! `refused_replies` and traced as an invalid message. A worker that expired or was
//! forgotten while busy keeps its claim on that one request (at most [`MAX_ORPHANS`] such
//! claims, oldest dropped first), so its late reply still reaches the client, which drops it
//! if it already has its answer.
//!
//! **A worker that went away is found out at the next send.** The backend sets
//! `ROUTER_MANDATORY` ([`SocketKind::MandatoryRouter`]): a request or heartbeat for a worker
//! that is no longer connected fails at once instead of vanishing. The worker is forgotten
//! (Simple has no heartbeats, so without this a dead worker stayed in the table forever and
//! took the next request with it) and the request goes to the next ready worker, or waits,
//! the one request the queue ever holds, for the next READY. The table holds at most
//! [`MAX_WORKERS`] workers: a READY beyond that evicts the worker that has waited longest
//! without work (under Simple it may be long gone), or is refused if every worker is busy.
//!
//! Frames on the backend, after the worker identity:
//! - PPP worker (DEALER): `0x01` READY · `0x02` HEARTBEAT · `[ticket]["" ][body…]` request
//!   and reply;
//!   the Guide's C++ workers spell the commands `"READY"` and `"HEARTBEAT"`, and each worker
//!   is heartbeated in the spelling it used ([`ppp::Dialect`])
//! - Simple worker (REQ): the same, behind an empty delimiter frame that REQ adds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{BrokerReport, Event, Events, Report};
use crate::heartbeat::{HeartbeatConfig, Liveness};
use crate::msg::{frame_text, Frame, Message};
use crate::proto::correlate::RequestIds;
use crate::proto::ppp::{self, Dialect, Ppp};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

/// Everything `pirate queue` needs.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Guide: `tcp://*:5555`.
    pub frontend: String,
    /// Guide: `tcp://*:5556`.
    pub backend: String,
    /// Simple or Paranoid Pirate.
    pub policy: QueuePolicy,
}

/// The two policies of the one queue: what it does about workers that go quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Simple Pirate (the Guide's spqueue): LRU routing only. No heartbeats are sent and no
    /// worker is ever expired: a dead worker is found out by the client's retry alone.
    Simple,
    /// Paranoid Pirate (6/PPP): heartbeats every known worker, idle or busy, every interval,
    /// and forgets one silent for `liveness` intervals.
    Paranoid {
        heartbeat: HeartbeatConfig,
        /// Forget a worker busy this long with one request (see the module docs). `None`
        /// (the default, as in the Guide): never.
        busy_timeout: Option<Duration>,
    },
}

impl QueuePolicy {
    /// `simple` or `paranoid`, as the started line says.
    pub fn name(&self) -> &'static str {
        match self {
            QueuePolicy::Simple => "simple",
            QueuePolicy::Paranoid { .. } => "paranoid",
        }
    }

    /// The heartbeat timing, `None` under Simple.
    fn heartbeat(&self) -> Option<HeartbeatConfig> {
        match self {
            QueuePolicy::Simple => None,
            QueuePolicy::Paranoid { heartbeat, .. } => Some(*heartbeat),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            frontend: "tcp://*:5555".into(),
            backend: "tcp://*:5556".into(),
            policy: QueuePolicy::Paranoid {
                heartbeat: HeartbeatConfig {
                    interval: Duration::from_secs(1),
                    liveness: 3,
                },
                busy_timeout: None,
            },
        }
    }
}

/// Most forgotten busy workers whose late reply is still accepted (see the module docs).
pub const MAX_ORPHANS: usize = 1024;

/// Most workers the queue knows at once (see the module docs).
pub const MAX_WORKERS: usize = 100_000;

/// A request a worker holds: the ticket it was given and the envelope it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    /// The address the worker was given instead of the client's envelope: its reply must
    /// carry exactly `[ticket]`.
    ticket: Frame,
    /// The client's whole envelope (identity, request id, proxy hops), put back on the reply.
    envelope: Vec<Frame>,
}

/// What the queue knows of one worker.
struct KnownWorker {
    /// When it counts as dead; `None` under the Simple policy, where nothing expires.
    liveness: Option<Liveness>,
    /// The request it holds (`None`: ready). Only a reply with its ticket, from this worker,
    /// is forwarded.
    job: Option<Held>,
    /// When it was last given a request (meaningful while it holds one).
    busy_since: Instant,
    /// A REQ worker (Simple Pirate) needs an empty delimiter in front of everything we send.
    req_peer: bool,
    /// How it spells READY and HEARTBEAT: it is answered in the same way.
    dialect: Dialect,
}

/// The queue's state: known workers and the ready ones in LRU order. Pure: driven by the
/// `Instant`s the machine is given.
struct Workers {
    policy: QueuePolicy,
    known: HashMap<Frame, KnownWorker>,
    ready: VecDeque<Frame>,
    /// Workers forgotten while busy → the request they held.
    orphans: HashMap<Frame, Held>,
    /// `orphans` keys, oldest first, to bound it.
    orphan_order: VecDeque<Frame>,
    /// Most entries in `known` ([`MAX_WORKERS`]; smaller in tests).
    capacity: usize,
    /// Where tickets come from: never the same twice.
    tickets: RequestIds,
}

/// What a READY did to the table.
#[derive(Debug, PartialEq, Eq)]
enum Joined {
    /// A worker the queue did not know.
    New,
    /// A worker it knew: ready again (it restarted while busy) or a duplicate READY.
    Known,
    /// A new worker, for whom the longest-idle worker was forgotten: the table was full.
    Evicted(Frame),
    /// Refused: the table is full of busy workers.
    Full,
}

impl Workers {
    fn new(policy: QueuePolicy) -> Self {
        Workers {
            policy,
            known: HashMap::new(),
            ready: VecDeque::new(),
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
            capacity: MAX_WORKERS,
            tickets: RequestIds::random(),
        }
    }

    fn name(id: &[u8]) -> String {
        frame_text(id)
    }

    /// Forgets worker `id`; if it held a request, it keeps its claim on it as an orphan.
    /// Returns whether it was busy.
    fn forget(&mut self, id: &[u8]) -> bool {
        let Some(worker) = self.known.remove(id) else {
            return false;
        };
        let Some(job) = worker.job else {
            return false;
        };
        if self.orphans.insert(id.to_vec(), job).is_none() {
            self.orphan_order.push_back(id.to_vec());
        }
        while self.orphan_order.len() > MAX_ORPHANS {
            if let Some(oldest) = self.orphan_order.pop_front() {
                self.orphans.remove(&oldest);
            }
        }
        true
    }

    /// Any message from worker `id` proves it alive; a READY or HEARTBEAT also says how it
    /// spells them.
    fn heard(&mut self, id: &[u8], dialect: Option<Dialect>, now: Instant) {
        let Some(worker) = self.known.get_mut(id) else {
            return;
        };
        if let Some(liveness) = worker.liveness.as_mut() {
            liveness.heard(now);
        }
        if let Some(dialect) = dialect {
            worker.dialect = dialect;
        }
    }

    /// Worker `id` sent READY: a new worker joins the ready queue, one that lost its request
    /// (READY while busy: it restarted) is ready again, a duplicate READY changes nothing. A
    /// new worker at [`MAX_WORKERS`] takes the place of the longest-idle one.
    fn ready(&mut self, id: &[u8], req_peer: bool, dialect: Dialect, now: Instant) -> Joined {
        match self.known.get_mut(id) {
            Some(worker) if worker.job.is_none() => Joined::Known,
            Some(worker) => {
                worker.job = None;
                self.ready.push_back(id.to_vec());
                Joined::Known
            }
            None => {
                let mut joined = Joined::New;
                if self.known.len() >= self.capacity {
                    let Some(oldest) = self.ready.pop_front() else {
                        return Joined::Full;
                    };
                    self.known.remove(&oldest);
                    joined = Joined::Evicted(oldest);
                }
                let liveness = self.policy.heartbeat().map(|hb| Liveness::new(hb, now));
                self.known.insert(
                    id.to_vec(),
                    KnownWorker {
                        liveness,
                        job: None,
                        busy_since: now,
                        req_peer,
                        dialect,
                    },
                );
                self.ready.push_back(id.to_vec());
                joined
            }
        }
    }

    /// Worker `id` is not connected (a send to it was unroutable): forgotten, with no claim
    /// left on any request (the request it was sent comes back to the caller). Returns what
    /// the queue knew of it, if anything.
    fn gone(&mut self, id: &[u8]) -> Option<KnownWorker> {
        let worker = self.known.remove(id)?;
        self.ready.retain(|r| r.as_slice() != id);
        Some(worker)
    }

    /// The least recently used ready worker takes the request with the client's `envelope`
    /// under a fresh ticket: its identity, whether it is a REQ peer, and the ticket. `None`
    /// if no worker is ready.
    fn dispatch(&mut self, envelope: &[Frame], now: Instant) -> Option<(Frame, bool, Frame)> {
        let id = self.ready.pop_front()?;
        let ticket = self.tickets.next_id();
        let worker = self
            .known
            .get_mut(&id)
            .expect("ready workers are known workers");
        worker.job = Some(Held {
            ticket: ticket.clone(),
            envelope: envelope.to_vec(),
        });
        worker.busy_since = now;
        let req_peer = worker.req_peer;
        Some((id, req_peer, ticket))
    }

    /// Forgets every worker silent past its liveness (none under Simple); returns each with
    /// whether it was busy.
    fn expire(&mut self, now: Instant) -> Vec<(Frame, bool)> {
        let dead: Vec<Frame> = self
            .known
            .iter()
            .filter(|(_, w)| w.liveness.is_some_and(|l| l.is_dead(now)))
            .map(|(id, _)| id.clone())
            .collect();
        let expired: Vec<(Frame, bool)> = dead
            .into_iter()
            .map(|id| {
                let busy = self.forget(&id);
                (id, busy)
            })
            .collect();
        if !expired.is_empty() {
            let known = &self.known;
            self.ready.retain(|id| known.contains_key(id));
        }
        expired
    }

    /// Forgets every worker busy with one request for `limit` or more; returns them.
    fn forget_stuck(&mut self, now: Instant, limit: Duration) -> Vec<Frame> {
        let stuck: Vec<Frame> = self
            .known
            .iter()
            .filter(|(_, w)| {
                w.job.is_some() && now.saturating_duration_since(w.busy_since) >= limit
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stuck {
            // Busy workers are never in the ready queue, so only `known` holds it.
            self.forget(id);
        }
        stuck
    }

    /// Takes the claim of `id` on the request whose reply came back with `envelope`, if that
    /// is exactly `[ticket]` of the request it holds: the check every reply must pass.
    /// Returns the client's envelope to put back; `Err` says why not.
    fn take_claim(
        &mut self,
        id: &[u8],
        envelope: &[Frame],
    ) -> std::result::Result<Vec<Frame>, &'static str> {
        let holds = |job: &Held| envelope.len() == 1 && envelope[0] == job.ticket;
        match self.known.get_mut(id) {
            Some(worker) => match worker.job.take() {
                Some(held) if holds(&held) => Ok(held.envelope),
                Some(held) => {
                    worker.job = Some(held);
                    Err("it holds another request")
                }
                None => Err("it holds no request"),
            },
            None => match self.orphans.get(id) {
                Some(held) if holds(held) => {
                    let held = self.orphans.remove(id).map(|j| j.envelope);
                    self.orphan_order.retain(|o| o.as_slice() != id);
                    Ok(held.unwrap_or_default())
                }
                Some(_) => Err("it held another request"),
                None => Err("it is not a worker of this queue (no READY)"),
            },
        }
    }
}

/// The queue's two sockets.
const FRONTEND: Slot = 0;
const BACKEND: Slot = 1;

/// The queue's logic as a pure [`Machine`]: [`Workers`] plus the wire, the heartbeat tick
/// and the counters. The frontend is read only while a worker is ready ([`Machine::wants`]).
pub struct Queue {
    frontend: String,
    backend: String,
    workers: Workers,
    report: BrokerReport,
    /// The next heartbeat tick (Paranoid only): heartbeats out, expiry and stuck workers.
    next_tick: Option<Instant>,
    /// A request whose worker turned out to be gone while no other was ready.
    held: Option<(Vec<Frame>, Message)>,
}

impl Queue {
    pub fn new(config: &QueueConfig) -> Self {
        Queue {
            frontend: config.frontend.clone(),
            backend: config.backend.clone(),
            workers: Workers::new(config.policy),
            report: BrokerReport {
                frontend: config.frontend.clone(),
                backend: config.backend.clone(),
                ..Default::default()
            },
            next_tick: None,
            held: None,
        }
    }

    /// The counters so far.
    pub fn report(&self) -> &BrokerReport {
        &self.report
    }

    /// The Paranoid heartbeat tick: expires silent workers, forgets stuck ones, heartbeats the
    /// rest.
    fn heartbeat_tick(&mut self, now: Instant, out: &mut Outbox<()>, events: &mut Events) {
        for (id, busy) in self.workers.expire(now) {
            self.report.workers_expired += 1;
            events.emit(Event::WorkerExpired {
                worker: Workers::name(&id),
                busy,
            });
        }
        if let QueuePolicy::Paranoid {
            busy_timeout: Some(limit),
            ..
        } = self.workers.policy
        {
            for id in self.workers.forget_stuck(now, limit) {
                self.report.workers_stuck += 1;
                events.emit(Event::WorkerDisconnected {
                    worker: Workers::name(&id),
                    reason: format!(
                        "busy for {} ms without a reply (--busy-timeout): forgotten until it reconnects",
                        limit.as_millis()
                    ),
                });
            }
        }
        for (id, worker) in &self.workers.known {
            let heartbeat = ppp::encode_in(Ppp::Heartbeat, worker.dialect);
            send_to_worker(out, id, worker.req_peer, heartbeat);
        }
    }

    fn on_backend(
        &mut self,
        mut msg: Message,
        now: Instant,
        out: &mut Outbox<()>,
        events: &mut Events,
    ) {
        let Some(id) = msg.pop_front() else {
            return;
        };
        // A REQ worker's messages start with the empty delimiter REQ adds.
        let req_peer = msg.get(0).is_some_and(<[u8]>::is_empty) && msg.len() > 1;
        if req_peer {
            msg.pop_front();
        }
        let (decoded, dialect) = match ppp::decode_spoken(msg) {
            Ok(d) => d,
            Err(e) => {
                self.report.invalid += 1;
                events.invalid("backend", format!("from {}: {e}", Workers::name(&id)));
                return;
            }
        };
        let workers = &mut self.workers;
        workers.heard(&id, dialect, now);
        match decoded {
            Ppp::Ready => {
                match workers.ready(&id, req_peer, dialect.unwrap_or_default(), now) {
                    Joined::Known => {}
                    Joined::New => self.report.workers_seen += 1,
                    Joined::Evicted(oldest) => {
                        self.report.workers_seen += 1;
                        self.report.workers_evicted += 1;
                        events.emit(Event::WorkerDisconnected {
                            worker: Workers::name(&oldest),
                            reason: format!(
                                "the longest idle of {MAX_WORKERS} workers: forgotten to make room"
                            ),
                        });
                    }
                    Joined::Full => {
                        self.report.workers_evicted += 1;
                        events.warn(format!(
                            "READY from {} refused: {MAX_WORKERS} workers, all busy",
                            Workers::name(&id)
                        ));
                        return;
                    }
                }
                events.emit(Event::WorkerReady {
                    worker: Workers::name(&id),
                });
                // The request whose worker was gone goes first.
                if let Some((envelope, body)) = self.held.take() {
                    self.dispatch(envelope, body, now, out);
                }
            }
            // Proof of life only, already recorded: never a reason to become ready (trap 7).
            Ppp::Heartbeat => {}
            Ppp::Data { envelope, body } => {
                let envelope = match workers.take_claim(&id, &envelope) {
                    Ok(client) => client,
                    Err(why) => {
                        self.report.refused_replies += 1;
                        events.invalid(
                            "backend",
                            format!(
                                "reply from {} refused: {why} (forged or stale)",
                                Workers::name(&id)
                            ),
                        );
                        return;
                    }
                };
                // The client's own envelope goes back in place of the ticket.
                out.send(FRONTEND, ppp::encode(Ppp::Data { envelope, body }));
                self.report.replied += 1;
                if workers.known.contains_key(&id) {
                    workers.ready.push_back(id);
                } else {
                    // An expired worker's late reply is still delivered (its client may be
                    // waiting), but the worker must send READY before it gets more work.
                    events.warn(format!(
                        "late reply from expired worker {}",
                        Workers::name(&id)
                    ));
                }
            }
        }
    }

    fn on_frontend(
        &mut self,
        msg: Message,
        now: Instant,
        out: &mut Outbox<()>,
        events: &mut Events,
    ) {
        // A client request is [client identity][client envelope…]["" ][body…]; anything else
        // is dropped.
        let (envelope, body) = match ppp::decode(msg) {
            Ok(Ppp::Data { envelope, body }) => (envelope, body),
            Ok(_) => {
                self.report.invalid += 1;
                events.invalid("frontend", "a control message from a client");
                return;
            }
            Err(e) => {
                self.report.invalid += 1;
                events.invalid("frontend", e.to_string());
                return;
            }
        };
        if self.held.is_some() || self.workers.ready.is_empty() {
            // Not reached through the reactor: the frontend is read only while a worker is
            // ready and nothing is held. Counted rather than lost silently if it ever is.
            self.report.invalid += 1;
            events.invalid("frontend", "a request while no worker is ready");
            return;
        }
        self.dispatch(envelope, body, now, out);
    }

    /// Gives the request to the least recently used ready worker, or holds it (the one
    /// request the queue holds) until a worker is ready.
    fn dispatch(
        &mut self,
        envelope: Vec<Frame>,
        body: Message,
        now: Instant,
        out: &mut Outbox<()>,
    ) {
        let Some((id, req_peer, ticket)) = self.workers.dispatch(&envelope, now) else {
            self.held = Some((envelope, body));
            return;
        };
        // [ticket]["" ][body…]: the worker never sees the client's envelope.
        let request = Ppp::Data {
            envelope: vec![ticket],
            body,
        };
        send_to_worker(out, &id, req_peer, ppp::encode(request));
        self.report.routed += 1;
        *self
            .report
            .per_worker
            .entry(Workers::name(&id))
            .or_default() += 1;
    }

    /// A send to a worker found it not connected: it is forgotten, and a request it was
    /// sent goes to the next ready worker.
    fn unroutable(
        &mut self,
        mut msg: Message,
        now: Instant,
        out: &mut Outbox<()>,
        events: &mut Events,
    ) {
        let Some(id) = msg.pop_front() else {
            return;
        };
        let Some(worker) = self.workers.gone(&id) else {
            return;
        };
        self.report.workers_gone += 1;
        events.emit(Event::WorkerDisconnected {
            worker: Workers::name(&id),
            reason: "not connected (a send to it was unroutable): forgotten".into(),
        });
        if worker.req_peer {
            msg.pop_front(); // the delimiter `send_to_worker` put in front for REQ
        }
        let job = worker.job;
        if let (Ok(Ppp::Data { envelope, body }), Some(job)) = (ppp::decode(msg), job) {
            if envelope != [job.ticket] {
                return; // not reached: a worker's one request is the one just sent to it
            }
            let envelope = job.envelope;
            // It was never delivered: not routed after all.
            self.report.routed -= 1;
            if let Some(count) = self.report.per_worker.get_mut(&Workers::name(&id)) {
                *count -= 1;
            }
            self.dispatch(envelope, body, now, out);
        }
    }
}

/// Sends `msg` to worker `id` through the backend ROUTER: `[id]("" if REQ)[msg…]`.
fn send_to_worker(out: &mut Outbox<()>, id: &[u8], req_peer: bool, mut msg: Message) {
    if req_peer {
        msg.push_front(Vec::new());
    }
    msg.push_front(id.to_vec());
    out.send(BACKEND, msg);
}

impl Machine for Queue {
    /// The queue does no blocking work.
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        let router = |slot, name, bind: &String| {
            // The backend learns at once that a worker is gone (see the module docs).
            let kind = if slot == BACKEND {
                SocketKind::MandatoryRouter
            } else {
                SocketKind::Router
            };
            SocketSpec::bound(slot, kind, name, bind)
        };
        vec![
            router(FRONTEND, "frontend", &self.frontend),
            router(BACKEND, "backend", &self.backend),
        ]
    }

    fn start(&mut self, now: Instant, _out: &mut Outbox<()>, events: &mut Events) {
        events.emit(Event::started_between(
            format!("queue ({})", self.workers.policy.name()),
            (&self.frontend, &self.backend),
            "/",
            None,
        ));
        self.next_tick = self.workers.policy.heartbeat().map(|hb| now + hb.interval);
    }

    fn handle(
        &mut self,
        input: Input<()>,
        now: Instant,
        out: &mut Outbox<()>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { slot: BACKEND, msg } => self.on_backend(msg, now, out, events),
            Input::Message { msg, .. } => self.on_frontend(msg, now, out, events),
            Input::Done(()) => {}
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<()>, events: &mut Events) {
        if let (Some(hb), Some(due)) = (self.workers.policy.heartbeat(), self.next_tick) {
            if now >= due {
                self.next_tick = Some(now + hb.interval);
                self.heartbeat_tick(now, out, events);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.next_tick
    }

    fn routed(
        &mut self,
        _slot: Slot,
        msg: &Message,
        routed: bool,
        now: Instant,
        out: &mut Outbox<()>,
        events: &mut Events,
    ) {
        if !routed {
            self.unroutable(msg.clone(), now, out, events);
        }
    }

    fn wants(&self, slot: Slot) -> bool {
        // Requests wait in ZeroMQ's buffers (and the clients' retries) until a worker is ready.
        slot == BACKEND || (!self.workers.ready.is_empty() && self.held.is_none())
    }
}

/// Runs the queue until `stop` is raised; returns its counters.
pub fn run(config: &QueueConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let mut queue = Queue::new(config);
    reactor::run(&mut queue, |()| (), stop, events)?;
    Ok(Report::Broker(queue.report))
}

#[cfg(test)]
mod tests {
    use super::*;
    // A message from its frames, by the kit's one builder (`frames` names the arguments here).
    use crate::testkit::frames as msg;
    use crate::testkit::{handle, step, tick};

    const MS: Duration = Duration::from_millis(1);
    const PARANOID: QueuePolicy = QueuePolicy::Paranoid {
        heartbeat: HeartbeatConfig {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        busy_timeout: Some(Duration::from_millis(1000)),
    };

    /// The tickets a queue whose ticket source starts at 0 hands out, in order.
    const T0: &[u8] = b"0000000000000000";
    const T1: &[u8] = b"0000000000000001";

    fn workers(policy: QueuePolicy) -> Workers {
        let mut w = Workers::new(policy);
        w.tickets = RequestIds::starting_at(0);
        w
    }

    fn ids(list: Vec<(Frame, bool)>) -> Vec<(String, bool)> {
        list.into_iter()
            .map(|(id, busy)| (frame_text(&id), busy))
            .collect()
    }

    #[test]
    fn simple_never_expires_a_worker_and_never_heartbeats() {
        let t0 = Instant::now();
        let mut w = workers(QueuePolicy::Simple);
        assert_eq!(w.ready(b"a", true, Dialect::Bytes, t0), Joined::New);
        assert_eq!(QueuePolicy::Simple.heartbeat(), None);
        // Silent for a day: still known, still ready.
        let later = t0 + Duration::from_secs(86_400);
        assert!(w.expire(later).is_empty());
        assert_eq!(w.ready, VecDeque::from([b"a".to_vec()]));
        // Busy for a day: Simple has no busy timeout to apply (the tick never runs).
        assert_eq!(
            w.dispatch(&[b"c".to_vec()], t0),
            Some((b"a".to_vec(), true, T0.to_vec()))
        );
        assert!(w.expire(later).is_empty());
        assert!(w.known.contains_key(&b"a"[..]));
    }

    #[test]
    fn paranoid_expires_a_silent_worker_after_its_liveness() {
        let t0 = Instant::now();
        let mut w = workers(PARANOID);
        assert_eq!(w.ready(b"a", false, Dialect::Bytes, t0), Joined::New);
        assert_eq!(w.ready(b"b", false, Dialect::Bytes, t0), Joined::New);
        w.heard(b"b", None, t0 + 200 * MS);
        assert!(w.expire(t0 + 299 * MS).is_empty());
        assert_eq!(ids(w.expire(t0 + 300 * MS)), vec![("a".into(), false)]);
        // The expired worker left the ready queue; the one heard from stays.
        assert_eq!(w.ready, VecDeque::from([b"b".to_vec()]));
        assert_eq!(ids(w.expire(t0 + 500 * MS)), vec![("b".into(), false)]);
        assert!(w.ready.is_empty());
    }

    #[test]
    fn paranoid_keeps_an_expired_busy_workers_claim_on_its_request() {
        let t0 = Instant::now();
        let mut w = workers(PARANOID);
        w.ready(b"a", false, Dialect::Bytes, t0);
        let envelope = vec![b"client".to_vec(), b"request-id".to_vec()];
        let held = Some((b"a".to_vec(), false, T0.to_vec()));
        assert_eq!(w.dispatch(&envelope, t0), held);
        assert_eq!(ids(w.expire(t0 + 300 * MS)), vec![("a".into(), true)]);
        // Its late reply still passes the claim check, once, and gets the client's envelope.
        assert_eq!(w.take_claim(b"a", &[T0.to_vec()]), Ok(envelope));
        assert!(w.take_claim(b"a", &[T0.to_vec()]).is_err());
    }

    #[test]
    fn a_worker_busy_past_the_limit_is_forgotten_as_stuck() {
        let t0 = Instant::now();
        let mut w = workers(PARANOID);
        w.ready(b"a", false, Dialect::Bytes, t0);
        w.ready(b"b", false, Dialect::Bytes, t0);
        w.dispatch(&[b"c".to_vec()], t0);
        let limit = Duration::from_millis(1000);
        assert!(w.forget_stuck(t0 + 999 * MS, limit).is_empty());
        assert_eq!(w.forget_stuck(t0 + 1000 * MS, limit), vec![b"a".to_vec()]);
        // The idle one is never stuck.
        assert!(w.known.contains_key(&b"b"[..]));
    }

    #[test]
    fn ready_again_while_busy_requeues_and_a_duplicate_ready_does_not() {
        let t0 = Instant::now();
        let mut w = workers(QueuePolicy::Simple);
        assert_eq!(w.ready(b"a", false, Dialect::Bytes, t0), Joined::New);
        assert_eq!(
            w.ready(b"a", false, Dialect::Bytes, t0),
            Joined::Known,
            "duplicate READY"
        );
        assert_eq!(w.ready.len(), 1);
        w.dispatch(&[b"c".to_vec()], t0);
        assert!(w.ready.is_empty());
        assert_eq!(
            w.ready(b"a", false, Dialect::Bytes, t0),
            Joined::Known,
            "READY while busy: it restarted"
        );
        assert_eq!(w.ready, VecDeque::from([b"a".to_vec()]));
        assert!(
            w.take_claim(b"a", &[T0.to_vec()]).is_err(),
            "the lost request is gone"
        );
        assert_eq!(
            w.dispatch(&[b"d".to_vec()], t0),
            Some((b"a".to_vec(), false, T1.to_vec())),
            "a ticket is never used twice"
        );
        assert_eq!(w.dispatch(&[b"e".to_vec()], t0), None);
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_worker_or_refuses_when_all_are_busy() {
        let t0 = Instant::now();
        let mut w = workers(QueuePolicy::Simple);
        w.capacity = 2;
        assert_eq!(w.ready(b"a", false, Dialect::Bytes, t0), Joined::New);
        assert_eq!(w.ready(b"b", false, Dialect::Bytes, t0), Joined::New);
        assert_eq!(
            w.ready(b"c", false, Dialect::Bytes, t0),
            Joined::Evicted(b"a".to_vec())
        );
        assert_eq!(w.known.len(), 2);
        assert_eq!(w.ready, VecDeque::from([b"b".to_vec(), b"c".to_vec()]));
        w.dispatch(&[b"x".to_vec()], t0);
        w.dispatch(&[b"y".to_vec()], t0);
        assert_eq!(w.ready(b"d", false, Dialect::Bytes, t0), Joined::Full);
        assert!(!w.known.contains_key(&b"d"[..]));
    }

    // The machine, through its inputs and outputs, with a fake clock.

    use crate::reactor::Output;

    fn on(slot: Slot, frames: &[&[u8]]) -> Input<()> {
        Input::Message {
            slot,
            msg: msg(frames),
        }
    }

    fn sent(slot: Slot, frames: &[&[u8]]) -> Output<()> {
        Output::Send {
            slot,
            msg: msg(frames),
        }
    }

    fn queue(policy: QueuePolicy) -> Queue {
        let mut q = Queue::new(&QueueConfig {
            frontend: "tcp://127.0.0.1:5555".into(),
            backend: "tcp://127.0.0.1:5556".into(),
            policy,
        });
        q.workers.tickets = RequestIds::starting_at(0);
        q
    }

    /// A queue started at the time zero it returns.
    fn started(policy: QueuePolicy) -> (Queue, Instant) {
        let t0 = Instant::now();
        let mut q = queue(policy);
        q.start(t0, &mut Outbox::default(), &mut Events::discard());
        (q, t0)
    }

    /// Each of `workers` says READY (0x01, no delimiter) at `now`.
    fn ready(q: &mut Queue, workers: &[&[u8]], now: Instant) {
        for worker in workers {
            handle(q, on(BACKEND, &[*worker, b"\x01"]), now);
        }
    }

    /// Client `c` asks for `body` at `now`.
    fn ask(q: &mut Queue, body: &[u8], now: Instant) -> (Vec<Output<()>>, Vec<Event>) {
        handle(q, on(FRONTEND, &[b"c", b"", body]), now)
    }

    #[test]
    fn binds_two_routers_and_says_which_policy() {
        let mut q = queue(PARANOID);
        let specs = q.sockets();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            (specs[0].slot, specs[0].kind, &specs[0].bind[..]),
            (
                FRONTEND,
                SocketKind::Router,
                &["tcp://127.0.0.1:5555".to_string()][..]
            )
        );
        assert_eq!(
            (specs[1].slot, specs[1].kind, &specs[1].bind[..]),
            (
                BACKEND,
                SocketKind::MandatoryRouter,
                &["tcp://127.0.0.1:5556".to_string()][..]
            )
        );
        let t0 = Instant::now();
        let (outs, seen) = step(&mut q, |q, out, ev| q.start(t0, out, ev));
        assert!(outs.is_empty());
        assert!(matches!(&seen[..], [Event::Started { role, .. }] if role == "queue (paranoid)"));
        // Programs get each side on its own, not just "A / B".
        assert!(
            matches!(&seen[..], [Event::Started { frontend: Some(f), backend: Some(b), .. }]
            if f == "tcp://127.0.0.1:5555" && b == "tcp://127.0.0.1:5556")
        );
        assert_eq!(q.next_deadline(), Some(t0 + 100 * MS));
        let mut simple = queue(QueuePolicy::Simple);
        let (_, seen) = step(&mut simple, |q, out, ev| q.start(t0, out, ev));
        assert!(matches!(&seen[..], [Event::Started { role, .. }] if role == "queue (simple)"));
        assert_eq!(simple.next_deadline(), None, "Simple has no tick at all");
    }

    #[test]
    fn a_request_goes_to_the_ready_worker_and_its_reply_to_the_client() {
        let t0 = Instant::now();
        let mut q = queue(PARANOID);
        assert!(!q.wants(FRONTEND), "no worker ready: clients wait");
        assert!(q.wants(BACKEND));
        let (outs, seen) = handle(&mut q, on(BACKEND, &[b"w1", b"\x01"]), t0);
        assert!(outs.is_empty());
        assert!(matches!(&seen[..], [Event::WorkerReady { worker }] if worker == "w1"));
        assert!(q.wants(FRONTEND));
        let (outs, _) = handle(&mut q, on(FRONTEND, &[b"c1", b"", b"hello"]), t0);
        assert_eq!(outs, [sent(BACKEND, &[b"w1", T0, b"", b"hello"])]);
        assert!(!q.wants(FRONTEND), "the one worker is busy");
        let (outs, _) = handle(&mut q, on(BACKEND, &[b"w1", T0, b"", b"world"]), t0);
        assert_eq!(outs, [sent(FRONTEND, &[b"c1", b"", b"world"])]);
        assert!(
            q.wants(FRONTEND),
            "the worker is ready again after replying"
        );
        let r = q.report();
        assert_eq!((r.workers_seen, r.routed, r.replied), (1, 1, 1));
        assert_eq!(r.per_worker.get("w1"), Some(&1));
    }

    #[test]
    fn ready_workers_are_used_least_recently_used_first() {
        let t0 = Instant::now();
        let mut q = queue(QueuePolicy::Simple);
        ready(&mut q, &[b"a", b"b"], t0);
        let (outs, _) = ask(&mut q, b"1", t0);
        assert_eq!(outs, [sent(BACKEND, &[b"a", T0, b"", b"1"])]);
        handle(&mut q, on(BACKEND, &[b"a", T0, b"", b"1"]), t0);
        let (outs, _) = handle(&mut q, on(FRONTEND, &[b"c", b"", b"2"]), t0);
        assert_eq!(outs, [sent(BACKEND, &[b"b", T1, b"", b"2"])]);
    }

    #[test]
    fn a_req_worker_gets_the_empty_delimiter_in_front_of_everything() {
        let (mut q, t0) = started(PARANOID);
        // Simple Pirate worker (REQ): [id][""][READY].
        handle(&mut q, on(BACKEND, &[b"r", b"", b"\x01"]), t0);
        let (outs, _) = handle(&mut q, on(FRONTEND, &[b"c", b"", b"x"]), t0);
        assert_eq!(outs, [sent(BACKEND, &[b"r", b"", T0, b"", b"x"])]);
        let (outs, _) = handle(&mut q, on(BACKEND, &[b"r", b"", T0, b"", b"y"]), t0);
        assert_eq!(outs, [sent(FRONTEND, &[b"c", b"", b"y"])]);
        let (outs, _) = tick(&mut q, t0 + 100 * MS);
        assert_eq!(outs, [sent(BACKEND, &[b"r", b"", b"\x02"])]);
    }

    #[test]
    fn each_worker_is_heartbeated_in_the_spelling_it_used() {
        let (mut q, t0) = started(PARANOID);
        // The Guide's C++ ppworker spells READY as a word; a Simple C++ worker (REQ) too.
        handle(&mut q, on(BACKEND, &[b"cpp", b"READY"]), t0);
        handle(&mut q, on(BACKEND, &[b"req", b"", b"READY"]), t0);
        handle(&mut q, on(BACKEND, &[b"rfc", b"\x01"]), t0);
        assert_eq!(q.report().workers_seen, 3);
        assert_eq!(q.report().invalid, 0);
        // A C++ worker's "HEARTBEAT" is proof of life, like 0x02.
        handle(&mut q, on(BACKEND, &[b"cpp", b"HEARTBEAT"]), t0 + 150 * MS);
        tick(&mut q, t0 + 100 * MS);
        let (mut outs, events) = tick(&mut q, t0 + 200 * MS);
        let mut want = vec![
            sent(BACKEND, &[b"cpp", b"HEARTBEAT"]),
            sent(BACKEND, &[b"req", b"", b"HEARTBEAT"]),
            sent(BACKEND, &[b"rfc", b"\x02"]),
        ];
        outs.sort_by_key(|o| format!("{o:?}"));
        want.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(outs, want, "{events:?}");
        // A worker that switches spelling is answered in the new one.
        handle(&mut q, on(BACKEND, &[b"cpp", b"\x02"]), t0 + 250 * MS);
        let (outs, _) = tick(&mut q, t0 + 300 * MS);
        assert!(
            outs.contains(&sent(BACKEND, &[b"cpp", b"\x02"])),
            "{outs:?}"
        );
    }

    fn routed(q: &mut Queue, frames: &[&[u8]], ok: bool, now: Instant) -> Vec<Output<()>> {
        step(q, |q, out, ev| {
            Machine::routed(q, BACKEND, &msg(frames), ok, now, out, ev)
        })
        .0
    }

    #[test]
    fn a_request_for_a_worker_that_is_gone_goes_to_the_next_or_waits_for_one() {
        for policy in [QueuePolicy::Simple, PARANOID] {
            let t0 = Instant::now();
            let mut q = queue(policy);
            assert_eq!(q.sockets()[BACKEND].kind, SocketKind::MandatoryRouter);
            q.start(t0, &mut Outbox::default(), &mut Events::discard());
            handle(&mut q, on(BACKEND, &[b"dead", b"", b"\x01"]), t0);
            handle(&mut q, on(BACKEND, &[b"live", b"\x01"]), t0);
            let (outs, _) = ask(&mut q, b"1", t0);
            assert_eq!(outs, [sent(BACKEND, &[b"dead", b"", T0, b"", b"1"])]);
            // The reactor reports the send unroutable: the request goes to `live`.
            let outs = routed(&mut q, &[b"dead", b"", T0, b"", b"1"], false, t0);
            assert_eq!(outs, [sent(BACKEND, &[b"live", T1, b"", b"1"])]);
            assert_eq!(q.report().workers_gone, 1);
            assert_eq!(q.report().routed, 1, "counted once, where it went");
            assert!(!q.workers.known.contains_key(&b"dead"[..]));
            // `live` is gone too: the request waits, and the frontend is not read.
            let outs = routed(&mut q, &[b"live", T1, b"", b"1"], false, t0);
            assert!(outs.is_empty());
            assert!(!q.wants(FRONTEND));
            // The next READY takes it, under a ticket of its own.
            let (outs, _) = handle(&mut q, on(BACKEND, &[b"new", b"\x01"]), t0);
            let t2 = b"0000000000000002";
            assert_eq!(outs, [sent(BACKEND, &[b"new", t2, b"", b"1"])]);
            assert!(!q.wants(FRONTEND), "the new worker is busy");
            // An unroutable heartbeat forgets an idle worker; a routed send changes nothing.
            handle(&mut q, on(BACKEND, &[b"idle", b"\x01"]), t0);
            assert!(routed(&mut q, &[b"idle", b"\x02"], true, t0).is_empty());
            assert!(q.wants(FRONTEND));
            assert!(routed(&mut q, &[b"idle", b"\x02"], false, t0).is_empty());
            assert!(!q.wants(FRONTEND));
            assert_eq!(q.report().workers_gone, 3);
        }
    }

    #[test]
    fn paranoid_heartbeats_every_known_worker_busy_or_idle_each_interval() {
        let (mut q, t0) = started(PARANOID);
        ready(&mut q, &[b"a", b"b"], t0);
        ask(&mut q, b"1", t0);
        let (outs, _) = tick(&mut q, t0 + 99 * MS);
        assert!(outs.is_empty(), "not due yet");
        let (mut outs, _) = tick(&mut q, t0 + 100 * MS);
        let key = |o: &Output<()>| format!("{o:?}");
        outs.sort_by_key(key);
        assert_eq!(
            outs,
            [
                sent(BACKEND, &[b"a", b"\x02"]),
                sent(BACKEND, &[b"b", b"\x02"])
            ]
        );
        assert_eq!(q.next_deadline(), Some(t0 + 200 * MS));
    }

    #[test]
    fn a_heartbeat_proves_life_but_never_makes_a_busy_worker_ready() {
        let (mut q, t0) = started(PARANOID);
        ready(&mut q, &[b"a"], t0);
        ask(&mut q, b"1", t0);
        let (outs, seen) = handle(&mut q, on(BACKEND, &[b"a", b"\x02"]), t0 + 250 * MS);
        assert!(outs.is_empty() && seen.is_empty());
        assert!(!q.wants(FRONTEND), "trap 7: a heartbeat is not READY");
        // Heard at 250 ms: alive at 300 (it would have died then), dead at 550.
        let (_, seen) = tick(&mut q, t0 + 300 * MS);
        assert!(!seen
            .iter()
            .any(|e| matches!(e, Event::WorkerExpired { .. })));
        let (_, seen) = tick(&mut q, t0 + 550 * MS);
        assert!(
            matches!(&seen[..], [Event::WorkerExpired { worker, busy: true }] if worker == "a"),
            "{seen:?}"
        );
        assert_eq!(q.report().workers_expired, 1);
    }

    #[test]
    fn an_expired_idle_worker_leaves_the_ready_queue_and_gets_no_heartbeat() {
        let (mut q, t0) = started(PARANOID);
        ready(&mut q, &[b"a"], t0);
        let (outs, seen) = tick(&mut q, t0 + 300 * MS);
        assert!(
            outs.is_empty(),
            "a forgotten worker is not heartbeated: {outs:?}"
        );
        assert!(matches!(
            &seen[..],
            [Event::WorkerExpired { busy: false, .. }]
        ));
        assert!(!q.wants(FRONTEND));
    }

    #[test]
    fn simple_never_ticks_and_never_expires() {
        let (mut q, t0) = started(QueuePolicy::Simple);
        ready(&mut q, &[b"a"], t0);
        let (outs, seen) = tick(&mut q, t0 + Duration::from_secs(86_400));
        assert!(outs.is_empty() && seen.is_empty());
        assert!(q.wants(FRONTEND));
    }

    #[test]
    fn a_worker_busy_past_the_busy_timeout_is_forgotten_but_its_late_reply_delivered() {
        let (mut q, t0) = started(PARANOID);
        ready(&mut q, &[b"a"], t0);
        ask(&mut q, b"1", t0);
        // Keep it alive by heartbeats so that only the busy timeout can forget it.
        let mut at = t0;
        while at < t0 + 900 * MS {
            at += 100 * MS;
            handle(&mut q, on(BACKEND, &[b"a", b"\x02"]), at);
            let (_, seen) = tick(&mut q, at);
            assert!(seen.is_empty(), "{seen:?}");
        }
        let (outs, seen) = tick(&mut q, t0 + 1000 * MS);
        assert!(
            matches!(&seen[..], [Event::WorkerDisconnected { worker, .. }] if worker == "a"),
            "{seen:?}"
        );
        assert!(outs.is_empty(), "no more heartbeats to a forgotten worker");
        assert_eq!(q.report().workers_stuck, 1);
        let (outs, seen) = handle(&mut q, on(BACKEND, &[b"a", T0, b"", b"late"]), at);
        assert_eq!(outs, [sent(FRONTEND, &[b"c", b"", b"late"])]);
        assert!(matches!(&seen[..], [Event::Log { .. }]), "{seen:?}");
        assert!(
            !q.wants(FRONTEND),
            "it needs a fresh READY before more work"
        );
    }

    #[test]
    fn replies_from_anyone_but_the_holder_are_refused_and_counted() {
        let t0 = Instant::now();
        let mut q = queue(QueuePolicy::Simple);
        ready(&mut q, &[b"a", b"b"], t0);
        ask(&mut q, b"1", t0);
        for forged in [
            &[b"stranger" as &[u8], T0, b"", b"x"][..], // never sent READY
            &[b"b", T0, b"", b"x"],                     // idle worker
            &[b"a", T1, b"", b"x"],                     // another ticket
            &[b"a", b"c", b"", b"x"],                   // the client's envelope, not the ticket
            &[b"a", T0, T0, b"", b"x"],                 // more than the ticket
        ] {
            let (outs, seen) = handle(&mut q, on(BACKEND, forged), t0);
            assert!(outs.is_empty(), "{forged:?} was forwarded");
            assert!(matches!(&seen[..], [Event::Invalid { .. }]));
        }
        assert_eq!(q.report().refused_replies, 5);
        let (outs, _) = handle(&mut q, on(BACKEND, &[b"a", T0, b"", b"ok"]), t0);
        assert_eq!(outs, [sent(FRONTEND, &[b"c", b"", b"ok"])]);
        let (outs, _) = handle(&mut q, on(BACKEND, &[b"a", T0, b"", b"ok"]), t0);
        assert!(outs.is_empty(), "a stale copy of the reply is refused");
        assert_eq!(q.report().refused_replies, 6);
    }

    #[test]
    fn malformed_messages_on_either_side_are_counted_and_dropped() {
        let t0 = Instant::now();
        let mut q = queue(PARANOID);
        ready(&mut q, &[b"a"], t0);
        let cases: [(Slot, &[&[u8]]); 4] = [
            (BACKEND, &[b"a", b"\x09"]),  // unknown command
            (BACKEND, &[b"a"]),           // identity only
            (FRONTEND, &[b"c", b"\x01"]), // a READY from a client
            (FRONTEND, &[b"c"]),          // no body
        ];
        for (slot, frames) in cases {
            let (outs, seen) = handle(&mut q, on(slot, frames), t0);
            assert!(outs.is_empty(), "{frames:?}");
            assert!(
                matches!(&seen[..], [Event::Invalid { .. }]),
                "{frames:?}: {seen:?}"
            );
        }
        assert_eq!(q.report().invalid, 4);
        assert!(
            q.wants(FRONTEND),
            "the worker is still ready: nothing was routed"
        );
        let (outs, _) = handle(
            &mut q,
            Input::Message {
                slot: BACKEND,
                msg: Message::new(),
            },
            t0,
        );
        assert!(outs.is_empty(), "an empty message is dropped");
    }

    #[test]
    fn ready_from_a_busy_worker_means_it_restarted_and_its_request_is_lost() {
        let t0 = Instant::now();
        let mut q = queue(PARANOID);
        ready(&mut q, &[b"a"], t0);
        ask(&mut q, b"1", t0);
        let (_, seen) = handle(&mut q, on(BACKEND, &[b"a", b"\x01"]), t0);
        assert!(matches!(&seen[..], [Event::WorkerReady { .. }]));
        assert!(q.wants(FRONTEND));
        assert_eq!(q.report().workers_seen, 1, "the same worker, not a new one");
        let (outs, _) = handle(&mut q, on(BACKEND, &[b"a", T0, b"", b"old"]), t0);
        assert!(outs.is_empty(), "the lost request's reply is refused");
    }

    #[test]
    fn every_client_envelope_reaches_the_worker_as_one_ticket_and_comes_back_whole() {
        let t0 = Instant::now();
        let mut q = queue(QueuePolicy::Simple);
        handle(&mut q, on(BACKEND, &[b"w", b"READY"]), t0);
        // A REQ client, `pirate client`'s request id, two proxy hops, a body of two frames,
        // and the deepest envelope taken (16 frames): the worker gets `[ticket]["" ][body…]`.
        let hops: Vec<&[u8]> = vec![b"hop"; crate::msg::MAX_ENVELOPE - 1];
        let mut longest: Vec<&[u8]> = vec![b"c"];
        longest.extend(&hops);
        longest.extend([b"" as &[u8], b"x"]);
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![b"c", b"", b"x"],
            vec![b"c", b"0123456789abcdef", b"", b"x"],
            vec![b"c", b"proxy-1", b"proxy-2", b"", b"x"],
            vec![b"c", b"", b"x", b"y"],
            longest,
        ];
        for (n, request) in cases.iter().enumerate() {
            let ticket = format!("{n:016x}").into_bytes();
            let (outs, _) = handle(&mut q, on(FRONTEND, request), t0);
            let mut want: Vec<&[u8]> = vec![b"w", &ticket, b""];
            let body_at = request.iter().position(|f| f.is_empty()).unwrap() + 1;
            want.extend(&request[body_at..]);
            assert_eq!(outs, [sent(BACKEND, &want)], "{request:?}");
            let mut reply: Vec<&[u8]> = vec![b"w", &ticket, b"", b"reply"];
            let (outs, _) = handle(&mut q, on(BACKEND, &reply), t0);
            let mut back: Vec<&[u8]> = request[..body_at].to_vec();
            back.push(b"reply");
            assert_eq!(outs, [sent(FRONTEND, &back)], "{request:?}");
            // The same ticket again is a stale copy.
            reply[3] = b"again";
            assert!(handle(&mut q, on(BACKEND, &reply), t0).0.is_empty());
        }
        assert_eq!(q.report().refused_replies, cases.len() as u64);
        // One hop more than the bound: refused, and the worker is still ready.
        let mut deeper: Vec<&[u8]> = vec![b"hop"; crate::msg::MAX_ENVELOPE + 1];
        deeper.extend([b"" as &[u8], b"x"]);
        let (outs, seen) = handle(&mut q, on(FRONTEND, &deeper), t0);
        assert!(outs.is_empty());
        assert!(matches!(&seen[..], [Event::Invalid { .. }]), "{seen:?}");
        assert!(q.wants(FRONTEND));
    }
}
