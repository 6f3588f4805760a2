//! `pirate worker`: the Simple Pirate, Paranoid Pirate (6/PPP) and Majordomo (7/MDP 0.1,
//! 18/MDP 0.2) worker as one pure [`Machine`], [`Worker`]; [`run`] hands it to the reactor.
//!
//! Paranoid and Majordomo (DEALER): READY on every new socket, a heartbeat every interval even
//! while a request is being worked on (the work runs on a thread), and once the peer has been
//! silent for `liveness` intervals (or, MDP, sent DISCONNECT) the socket is closed and, after a
//! doubling back-off kept as a deadline, a new one opened with a fresh identity (Majordomo:
//! on the next `--failover` endpoint), forever. A reply computed for a closed socket is
//! dropped: its client has long retried.
//!
//! Simple (REQ): one READY, then receive a request, reply, repeat. No heartbeats.
//!
//! Faults are drawn per request: a crash kills the process on the spot (the request is lost
//! with it), an overload makes the work slower (heartbeats go on: slow but alive), a freeze
//! stops the whole worker, reads and heartbeats included, as a hung process would; the work
//! starts once it thaws. Stalls are deadlines, never sleeps.
//!
//! Frames, worker side (protocols.md): PPP `0x01` READY · `0x02` HEARTBEAT ·
//! `[client]["" ][body…]` request and reply; MDP in [`mdp_worker`](super::mdp_worker).

use std::time::Instant;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::event::{Event, Events, Report, ServiceReport, Serving};
use crate::faults::{Faults, OnCrash};
use crate::handler::Handler;
use crate::heartbeat::Liveness;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
use crate::proto::ppp::{self, Ppp};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

use super::mdp_worker;
use super::work::{identity, perform, Done, Incoming, Job};
pub use super::work::{PirateProtocol, WorkerConfig};

/// The worker's one socket (reopened in the same slot after each reconnect).
const SOCKET: Slot = 0;

/// The PPP wire (Simple and Paranoid: REQ adds and strips the delimiter itself).
fn ppp_decode(msg: Message) -> Incoming {
    match ppp::decode(msg) {
        Ok(Ppp::Heartbeat) => Incoming::Heartbeat,
        Ok(Ppp::Data { envelope, body }) => Incoming::Request { envelope, body },
        Ok(Ppp::Ready) => Incoming::Invalid("READY from the queue".into()),
        Err(e) => Incoming::Invalid(e.to_string()),
    }
}

/// Where the socket stands.
enum Link {
    /// Connected; `peer` is the queue's or broker's liveness (`None` for Simple: no heartbeats).
    Up { peer: Option<Liveness> },
    /// Peer lost: a new socket opens at `until`.
    Down { until: Instant },
}

/// The request being worked on.
struct Busy {
    /// The socket it came in on (see [`Job`]).
    generation: u64,
    envelope: Vec<Frame>,
    serving: Serving,
    /// When the work stall ends and the handler may run; `None` once it runs.
    due: Option<(Instant, Message)>,
}

/// The worker's logic: the link, the request in progress, faults, counters.
pub struct Worker {
    config: WorkerConfig,
    faults: Faults,
    report: ServiceReport,
    backoff: Backoff,
    /// Sockets opened so far: the current one's number and generation.
    sockets: u64,
    identity: Vec<u8>,
    link: Link,
    busy: Option<Busy>,
    /// A freeze: nothing is read, nothing sent, until then.
    frozen_until: Option<Instant>,
    /// Simple (REQ): a READY owed since then, for a message that was no request.
    owed_ready: Option<Instant>,
    crashed: bool,
}

impl Worker {
    pub fn new(config: &WorkerConfig) -> Self {
        Worker {
            config: config.clone(),
            faults: Faults::new(config.faults.clone(), config.seed),
            report: ServiceReport {
                endpoint: config.endpoint.clone(),
                seed: config.seed,
                ..Default::default()
            },
            backoff: Backoff::new(config.reconnect, config.reconnect_max),
            sockets: 1,
            identity: identity(&config.name, 1),
            link: Link::Up { peer: None },
            busy: None,
            frozen_until: None,
            owed_ready: None,
            crashed: false,
        }
    }

    /// The counters so far.
    pub fn report(&self) -> &ServiceReport {
        &self.report
    }

    /// The identity of the current socket.
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    fn role(&self) -> String {
        match self.config.protocol {
            PirateProtocol::Paranoid => "worker (paranoid)".into(),
            PirateProtocol::Simple => "worker (simple)".into(),
            PirateProtocol::Majordomo(Version::V1) => {
                format!("worker (mdp {})", self.config.service)
            }
            PirateProtocol::Majordomo(Version::V2) => {
                format!("worker (mdp2 {})", self.config.service)
            }
        }
    }

    /// The socket for the current identity. Socket N talks to endpoint N-1 of
    /// `[endpoint, failover…]`, round and round: after losing a broker the worker tries the
    /// next one.
    fn spec(&self) -> SocketSpec {
        let endpoints: Vec<&String> = std::iter::once(&self.config.endpoint)
            .chain(&self.config.failover)
            .collect();
        let endpoint = endpoints[(self.sockets as usize - 1) % endpoints.len()];
        SocketSpec {
            slot: SOCKET,
            kind: match self.config.protocol {
                PirateProtocol::Simple => SocketKind::Req,
                _ => SocketKind::Dealer,
            },
            name: "worker",
            bind: Vec::new(),
            connect: vec![endpoint.clone()],
            identity: Some(self.identity.clone()),
        }
    }

    /// The socket is open: register (READY) and start watching the peer.
    fn register(&mut self, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        let peer = match self.config.protocol {
            PirateProtocol::Simple => None,
            _ => Some(Liveness::new(self.config.heartbeat, now)),
        };
        self.link = Link::Up { peer };
        let name = String::from_utf8_lossy(&self.identity).into_owned();
        match self.config.protocol {
            PirateProtocol::Majordomo(version) => {
                out.send(SOCKET, mdp_worker::ready(version, &self.config.service));
                events.info(format!(
                    "worker {name} ready for service {}",
                    self.config.service
                ));
            }
            _ => {
                out.send(SOCKET, ppp::encode(Ppp::Ready));
                events.info(format!("worker {name} ready"));
            }
        }
    }

    /// Sends `msg` to the peer: traffic is proof of life, no heartbeat for another interval.
    fn send(&mut self, msg: Message, now: Instant, out: &mut Outbox<Job>) {
        out.send(SOCKET, msg);
        if let Link::Up { peer: Some(peer) } = &mut self.link {
            peer.sent(now);
        }
    }

    /// The peer is lost (silent, or DISCONNECT): close the socket, wait the back-off. The
    /// request in progress belonged to that socket.
    fn lose(&mut self, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        let delay = self.backoff.next_delay();
        events.emit(Event::PeerLost {
            delay_ms: delay.as_millis() as u64,
        });
        out.close(SOCKET);
        self.busy = None;
        self.link = Link::Down { until: now + delay };
    }

    fn decode(&self, msg: Message) -> Incoming {
        match self.config.protocol {
            PirateProtocol::Majordomo(version) => mdp_worker::decode(version, msg),
            _ => ppp_decode(msg),
        }
    }

    fn on_message(
        &mut self,
        msg: Message,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        let Link::Up { peer } = &mut self.link else {
            return; // not reached: the reactor closed the socket
        };
        if let Some(peer) = peer {
            peer.heard(now);
        }
        self.backoff.reset();
        let simple = self.config.protocol == PirateProtocol::Simple;
        match self.decode(msg) {
            Incoming::Request { envelope, body } if self.busy.is_none() => {
                self.take(envelope, body, now, out, events);
            }
            Incoming::Request { .. } => {
                // The queue must never hand a busy worker a second request (trap 7).
                self.report.invalid += 1;
                events.invalid("worker", "a second request while busy");
            }
            Incoming::Heartbeat if !simple => {}
            Incoming::Disconnect => {
                events.warn("broker sent DISCONNECT");
                self.lose(now, out, events);
            }
            other => {
                self.report.invalid += 1;
                let reason = match other {
                    Incoming::Invalid(reason) => reason,
                    other => format!("not a request: {other:?}"),
                };
                events.invalid("worker", reason);
                if simple {
                    // REQ must send before it can receive again, and a reply would confuse a
                    // client: READY again keeps us in the queue (sent from the tick, so that
                    // nothing is read before it went out).
                    self.owed_ready = Some(now);
                }
            }
        }
    }

    /// A request to work on: draw its fault; the work starts after any freeze and the work
    /// time (plus an overload's), as deadlines.
    fn take(
        &mut self,
        envelope: Vec<Frame>,
        body: Message,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        self.report.requests += 1;
        let decision = self.faults.decide(&mut self.report, OnCrash::Now, events);
        if decision.crash {
            self.crashed = true;
            out.crash();
            return;
        }
        let begins = now + decision.freeze.unwrap_or_default();
        if decision.freeze.is_some() {
            self.frozen_until = Some(begins);
        }
        let due = begins + self.faults.plan().work + decision.extra_work;
        self.busy = Some(Busy {
            generation: self.sockets,
            envelope,
            serving: Serving::new(decision.cycle, &body, begins),
            due: Some((due, body)),
        });
        // A REQ socket reads again as soon as it is no longer busy, so a Simple worker's
        // reply waits for the tick (due now), after the reactor's reads.
        if self.config.protocol != PirateProtocol::Simple {
            self.tick(now, out, events);
        }
    }

    /// The handler's work is due: on a thread, or inline when there is nothing to wait for.
    fn work(&mut self, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        let Some(busy) = &mut self.busy else { return };
        if busy.due.as_ref().is_none_or(|(at, _)| now < *at) {
            return;
        }
        let (_, body) = busy.due.take().expect("due");
        let generation = busy.generation;
        if self.config.handler == Handler::Echo {
            // Nothing to wait for: no thread, no wake-up round trip.
            self.finished(
                Done::Reply {
                    generation,
                    reply: body,
                },
                now,
                out,
                events,
            );
            return;
        }
        out.start(Job::Handle {
            generation,
            handler: self.config.handler.clone(),
            body,
            stream: self.config.protocol == PirateProtocol::Majordomo(Version::V2),
        });
    }

    /// A job came back: send its reply (or part) if its socket is still the current one.
    fn finished(&mut self, done: Done, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        let generation = match &done {
            Done::Reply { generation, .. } | Done::Partial { generation, .. } => *generation,
        };
        let current = self
            .busy
            .as_ref()
            .is_some_and(|b| b.generation == generation)
            && matches!(self.link, Link::Up { .. });
        if !current {
            events.info("dropped a reply for a lost connection");
            return;
        }
        let envelope = self.busy.as_ref().expect("current").envelope.clone();
        match (done, self.config.protocol) {
            (Done::Partial { part, rest, .. }, PirateProtocol::Majordomo(version)) => {
                self.send(mdp_worker::partial(version, &envelope, part), now, out);
                out.start(Job::Next { generation, rest });
            }
            (Done::Partial { .. }, _) => {} // not reached: only MDP 0.2 streams
            (Done::Reply { reply, .. }, protocol) => {
                let msg = match protocol {
                    PirateProtocol::Majordomo(version) => {
                        mdp_worker::reply(version, &envelope, reply)
                    }
                    _ => ppp::encode(Ppp::Data {
                        envelope,
                        body: reply,
                    }),
                };
                self.send(msg, now, out);
                let busy = self.busy.take().expect("current");
                busy.serving.served_at(now, &mut self.report, events);
            }
        }
    }
}

impl Machine for Worker {
    type Job = Job;
    type Done = Done;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![self.spec()]
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        events.emit(Event::Started {
            role: self.role(),
            endpoint: self.config.endpoint.clone(),
            seed: Some(self.report.seed),
        });
        self.register(now, out, events);
    }

    fn handle(
        &mut self,
        input: Input<Done>,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { msg, .. } => self.on_message(msg, now, out, events),
            Input::Done(done) => self.finished(done, now, out, events),
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        if let Some(until) = self.frozen_until {
            if now < until {
                return;
            }
            self.frozen_until = None;
        }
        if self.owed_ready.take().is_some() {
            out.send(SOCKET, ppp::encode(Ppp::Ready));
        }
        match &mut self.link {
            Link::Down { until } if now >= *until => {
                self.sockets += 1;
                self.report.reconnects += 1;
                self.identity = identity(&self.config.name, self.sockets);
                out.open(self.spec());
                self.register(now, out, events);
            }
            Link::Down { .. } => {}
            Link::Up { peer: Some(peer) } => {
                if peer.is_dead(now) {
                    self.lose(now, out, events);
                    return;
                }
                if peer.heartbeat_due(now) {
                    let beat = match self.config.protocol {
                        PirateProtocol::Majordomo(version) => mdp_worker::heartbeat(version),
                        _ => ppp::encode(Ppp::Heartbeat),
                    };
                    out.send(SOCKET, beat);
                }
            }
            Link::Up { peer: None } => {}
        }
        self.work(now, out, events);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.crashed {
            return None;
        }
        if let Some(until) = self.frozen_until {
            return Some(until);
        }
        let link = match &self.link {
            Link::Down { until } => Some(*until),
            Link::Up { peer: Some(peer) } => Some(peer.next_send().min(peer.expires_at())),
            Link::Up { peer: None } => None,
        };
        let work = self
            .busy
            .as_ref()
            .and_then(|b| b.due.as_ref())
            .map(|(at, _)| *at);
        [link, work].into_iter().flatten().min()
    }

    fn wants(&self, _slot: Slot) -> bool {
        if self.crashed
            || self.frozen_until.is_some()
            || self.owed_ready.is_some()
            || !matches!(self.link, Link::Up { .. })
        {
            return false;
        }
        // A REQ socket must answer before it may receive again.
        self.config.protocol != PirateProtocol::Simple || self.busy.is_none()
    }
}

/// Serves until `stop` is raised; returns the counters.
pub fn run(config: &WorkerConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let mut worker = Worker::new(config);
    reactor::run(&mut worker, perform, stop, events)?;
    Ok(Report::Service(worker.report))
}
