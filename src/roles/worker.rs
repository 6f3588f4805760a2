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
    /// next one (Majordomo only, as `--failover` is).
    fn spec(&self) -> SocketSpec {
        let failover = match self.config.protocol {
            PirateProtocol::Majordomo(_) => &self.config.failover[..],
            _ => &[],
        };
        let endpoints: Vec<&String> = std::iter::once(&self.config.endpoint)
            .chain(failover)
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
            Link::Up { peer: Some(peer) } if peer.is_dead(now) => {
                self.lose(now, out, events);
                return;
            }
            Link::Up { .. } => {}
        }
        // Work first: a reply that goes out now is the proof of life a heartbeat would be.
        self.work(now, out, events);
        if let Link::Up { peer: Some(peer) } = &mut self.link {
            if peer.heartbeat_due(now) {
                let beat = match self.config.protocol {
                    PirateProtocol::Majordomo(version) => mdp_worker::heartbeat(version),
                    _ => ppp::encode(Ppp::Heartbeat),
                };
                out.send(SOCKET, beat);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FaultKind;
    use crate::faults::FaultPlan;
    use crate::handler::Exec;
    use crate::heartbeat::HeartbeatConfig;
    use crate::reactor::Output;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn msg(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    fn on(frames: &[&[u8]]) -> Input<Done> {
        Input::Message {
            slot: SOCKET,
            msg: msg(frames),
        }
    }

    fn sent(frames: &[&[u8]]) -> Output<Job> {
        Output::Send {
            slot: SOCKET,
            msg: msg(frames),
        }
    }

    fn config(protocol: PirateProtocol, faults: FaultPlan) -> WorkerConfig {
        WorkerConfig {
            endpoint: "tcp://127.0.0.1:5556".into(),
            failover: vec!["tcp://127.0.0.1:6556".into()],
            protocol,
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(100),
                liveness: 3,
            },
            reconnect: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(200),
            name: "t".into(),
            faults,
            seed: 7,
            ..Default::default()
        }
    }

    /// A started worker, its start outputs and events already taken.
    fn started(protocol: PirateProtocol, faults: FaultPlan, t0: Instant) -> Worker {
        let mut w = Worker::new(&config(protocol, faults));
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        w
    }

    fn step(
        w: &mut Worker,
        f: impl FnOnce(&mut Worker, &mut Outbox<Job>, &mut Events),
    ) -> (Vec<Output<Job>>, Vec<Event>) {
        let mut seen = Vec::new();
        let mut out = Outbox::default();
        {
            let mut ev = Events::new(false, |e| seen.push(e));
            f(w, &mut out, &mut ev);
        }
        (out.take(), seen)
    }

    fn handle(w: &mut Worker, input: Input<Done>, now: Instant) -> (Vec<Output<Job>>, Vec<Event>) {
        step(w, |w, out, ev| w.handle(input, now, out, ev))
    }

    fn tick(w: &mut Worker, now: Instant) -> (Vec<Output<Job>>, Vec<Event>) {
        step(w, |w, out, ev| w.tick(now, out, ev))
    }

    #[test]
    fn a_paranoid_worker_opens_a_dealer_and_sends_ready() {
        let t0 = Instant::now();
        let mut w = Worker::new(&config(PirateProtocol::Paranoid, FaultPlan::default()));
        let spec = &w.sockets()[0];
        assert_eq!(spec.kind, SocketKind::Dealer);
        assert_eq!(spec.connect, ["tcp://127.0.0.1:5556"]);
        assert!(spec.identity.as_ref().unwrap().starts_with(b"t-1-"));
        let (outs, seen) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
        assert_eq!(outs, [sent(&[b"\x01"])]);
        assert!(matches!(&seen[0], Event::Started { role, .. } if role == "worker (paranoid)"));
        assert_eq!(w.next_deadline(), Some(t0 + 100 * MS), "first heartbeat");
    }

    #[test]
    fn a_request_is_echoed_with_its_envelope() {
        let t0 = Instant::now();
        let mut w = started(PirateProtocol::Paranoid, FaultPlan::default(), t0);
        let (outs, seen) = handle(&mut w, on(&[b"c", b"", b"hi"]), t0);
        assert_eq!(outs, [sent(&[b"c", b"", b"hi"])]);
        assert!(seen
            .iter()
            .any(|e| matches!(e, Event::Served { cycle: 1, .. })));
        assert_eq!((w.report().requests, w.report().replied), (1, 1));
    }

    #[test]
    fn heartbeats_go_out_every_interval_even_while_working() {
        let t0 = Instant::now();
        let exec = Handler::Exec(Exec::new("cat"));
        let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
        cfg.handler = exec.clone();
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        let (outs, _) = handle(&mut w, on(&[b"c", b"", b"x"]), t0);
        assert_eq!(
            outs,
            [Output::Start(Job::Handle {
                generation: 1,
                handler: exec,
                body: msg(&[b"x"]),
                stream: false
            })]
        );
        assert!(tick(&mut w, t0 + 99 * MS).0.is_empty());
        assert_eq!(tick(&mut w, t0 + 100 * MS).0, [sent(&[b"\x02"])]);
        // Hearing from the queue keeps it alive past its first expiry.
        handle(&mut w, on(&[b"\x02"]), t0 + 150 * MS);
        assert_eq!(tick(&mut w, t0 + 200 * MS).0, [sent(&[b"\x02"])]);
        assert!(tick(&mut w, t0 + 300 * MS).1.is_empty(), "not lost yet");
        let reply = Done::Reply {
            generation: 1,
            reply: msg(&[b"X"]),
        };
        let (outs, _) = handle(&mut w, Input::Done(reply), t0 + 310 * MS);
        assert_eq!(outs, [sent(&[b"c", b"", b"X"])]);
        // The reply counts as traffic: the next heartbeat is an interval after it.
        assert!(tick(&mut w, t0 + 400 * MS).0.is_empty());
    }

    #[test]
    fn a_silent_queue_is_lost_and_a_new_socket_opens_after_the_back_off() {
        let t0 = Instant::now();
        let mut w = started(PirateProtocol::Paranoid, FaultPlan::default(), t0);
        let first = w.identity().to_vec();
        let (outs, seen) = tick(&mut w, t0 + 300 * MS);
        assert_eq!(outs, [Output::Close(SOCKET)]);
        assert!(matches!(seen[..], [Event::PeerLost { delay_ms: 50 }]));
        assert!(!w.wants(SOCKET));
        assert_eq!(w.next_deadline(), Some(t0 + 350 * MS));
        assert!(tick(&mut w, t0 + 349 * MS).0.is_empty());
        let (outs, _) = tick(&mut w, t0 + 350 * MS);
        match &outs[..] {
            [Output::Open(spec), ready] => {
                let id = spec.identity.clone().unwrap();
                assert!(id.starts_with(b"t-2-") && id != first, "a fresh identity");
                assert_eq!(
                    spec.connect,
                    ["tcp://127.0.0.1:5556"],
                    "PPP has no failover"
                );
                assert_eq!(ready, &sent(&[b"\x01"]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.report().reconnects, 1);
        // Lost again without hearing anything: the back-off doubles.
        let (_, seen) = tick(&mut w, t0 + 650 * MS);
        assert!(matches!(seen[..], [Event::PeerLost { delay_ms: 100 }]));
        tick(&mut w, t0 + 750 * MS);
        // Any message resets it.
        handle(&mut w, on(&[b"\x02"]), t0 + 760 * MS);
        let (_, seen) = tick(&mut w, t0 + 1060 * MS);
        assert!(
            matches!(seen[..], [Event::PeerLost { delay_ms: 50 }]),
            "{seen:?}"
        );
    }

    #[test]
    fn a_reply_for_a_lost_socket_is_dropped() {
        let t0 = Instant::now();
        let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
        cfg.handler = Handler::Exec(Exec::new("cat"));
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        handle(&mut w, on(&[b"c", b"", b"x"]), t0);
        tick(&mut w, t0 + 300 * MS); // lost
        tick(&mut w, t0 + 350 * MS); // reopened
        let late = Done::Reply {
            generation: 1,
            reply: msg(&[b"x"]),
        };
        let (outs, _) = handle(&mut w, Input::Done(late), t0 + 360 * MS);
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(w.report().replied, 0);
    }

    #[test]
    fn a_second_request_while_busy_and_garbage_are_counted_and_dropped() {
        let t0 = Instant::now();
        let mut w = started(
            PirateProtocol::Paranoid,
            FaultPlan {
                work: Duration::from_millis(250),
                ..Default::default()
            },
            t0,
        );
        assert!(handle(&mut w, on(&[b"c", b"", b"1"]), t0).0.is_empty());
        for bad in [&[b"c" as &[u8], b"", b"2"][..], &[b"\x01"], &[b"\x07"], &[]] {
            let (outs, seen) = handle(&mut w, on(bad), t0);
            assert!(outs.is_empty(), "{bad:?}");
            assert!(
                matches!(seen[..], [Event::Invalid { .. }]),
                "{bad:?}: {seen:?}"
            );
        }
        assert_eq!(w.report().invalid, 4);
        // The work stall is a deadline; the first request is still answered.
        assert_eq!(tick(&mut w, t0 + 250 * MS).0, [sent(&[b"c", b"", b"1"])]);
    }

    #[test]
    fn a_freeze_stops_reads_and_heartbeats_until_it_thaws_then_the_work_starts() {
        let t0 = Instant::now();
        let mut w = started(
            PirateProtocol::Paranoid,
            FaultPlan {
                freeze_rate: 1.0,
                freeze_for: Duration::from_millis(250),
                faults_after: 0,
                ..Default::default()
            },
            t0,
        );
        handle(&mut w, on(&[b"\x02"]), t0 + 90 * MS);
        let (outs, seen) = handle(&mut w, on(&[b"c", b"", b"1"]), t0 + 100 * MS);
        assert!(outs.is_empty(), "{outs:?}");
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::Fault {
                kind: FaultKind::Freeze,
                duration_ms: Some(250),
                ..
            }
        )));
        assert_eq!(w.report().freezes, 1);
        assert!(!w.wants(SOCKET), "frozen: nothing is read");
        assert_eq!(w.next_deadline(), Some(t0 + 350 * MS));
        assert!(
            tick(&mut w, t0 + 200 * MS).0.is_empty(),
            "no heartbeat while frozen"
        );
        // Thawed at 350: the queue (last heard at 90) is still alive until 390, so the work
        // runs, and its reply stands in for the heartbeat that was due.
        let (outs, _) = tick(&mut w, t0 + 350 * MS);
        assert_eq!(outs, [sent(&[b"c", b"", b"1"])]);
        assert!(w.wants(SOCKET));
    }

    #[test]
    fn a_freeze_past_the_queues_expiry_loses_the_queue_on_thawing() {
        let t0 = Instant::now();
        let mut w = started(
            PirateProtocol::Paranoid,
            FaultPlan {
                freeze_rate: 1.0,
                freeze_for: Duration::from_millis(500),
                faults_after: 0,
                ..Default::default()
            },
            t0,
        );
        handle(&mut w, on(&[b"c", b"", b"1"]), t0);
        let (outs, seen) = tick(&mut w, t0 + 500 * MS);
        assert_eq!(
            outs,
            [Output::Close(SOCKET)],
            "the request died with the socket"
        );
        assert!(matches!(seen[..], [Event::PeerLost { .. }]));
    }

    #[test]
    fn an_overload_slows_the_work_and_a_crash_is_an_output() {
        let t0 = Instant::now();
        let mut w = started(
            PirateProtocol::Paranoid,
            FaultPlan {
                overload_rate: 1.0,
                overload_for: Duration::from_millis(200),
                faults_after: 0,
                crash_after: Some(1),
                ..Default::default()
            },
            t0,
        );
        assert!(handle(&mut w, on(&[b"c", b"", b"1"]), t0).0.is_empty());
        assert_eq!(w.report().overloads, 1);
        assert!(
            w.wants(SOCKET),
            "an overloaded worker still reads (and heartbeats)"
        );
        assert_eq!(tick(&mut w, t0 + 100 * MS).0, [sent(&[b"\x02"])]);
        assert_eq!(tick(&mut w, t0 + 200 * MS).0, [sent(&[b"c", b"", b"1"])]);
        let (outs, _) = handle(&mut w, on(&[b"c", b"", b"2"]), t0 + 210 * MS);
        assert_eq!(outs, [Output::Crash]);
        assert!(!w.wants(SOCKET));
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn a_simple_worker_uses_req_sends_no_heartbeat_and_answers_from_the_tick() {
        let t0 = Instant::now();
        let mut w = Worker::new(&config(PirateProtocol::Simple, FaultPlan::default()));
        assert_eq!(w.sockets()[0].kind, SocketKind::Req);
        let (outs, _) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
        assert_eq!(outs, [sent(&[b"\x01"])]);
        assert_eq!(w.next_deadline(), None, "no heartbeats, no expiry");
        assert!(tick(&mut w, t0 + Duration::from_secs(60)).0.is_empty());
        // REQ: nothing goes out while the reactor may still read; the reply waits for the tick.
        assert!(handle(&mut w, on(&[b"c", b"", b"1"]), t0).0.is_empty());
        assert!(!w.wants(SOCKET));
        assert_eq!(w.next_deadline(), Some(t0));
        assert_eq!(tick(&mut w, t0).0, [sent(&[b"c", b"", b"1"])]);
        assert!(w.wants(SOCKET));
        // Not a request (a Paranoid queue's heartbeat): counted, and READY again from the tick.
        let (outs, seen) = handle(&mut w, on(&[b"\x02"]), t0);
        assert!(outs.is_empty());
        assert!(matches!(seen[..], [Event::Invalid { .. }]));
        assert!(!w.wants(SOCKET));
        assert_eq!(tick(&mut w, t0).0, [sent(&[b"\x01"])]);
        assert!(w.wants(SOCKET));
        assert_eq!(w.report().invalid, 1);
    }

    #[test]
    fn an_mdp_worker_registers_heartbeats_and_replies_in_its_version() {
        let t0 = Instant::now();
        let mut w = Worker::new(&config(
            PirateProtocol::Majordomo(Version::V1),
            FaultPlan::default(),
        ));
        let (outs, seen) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
        assert_eq!(outs, [sent(&[b"", b"MDPW01", b"\x01", b"echo"])]);
        assert!(matches!(&seen[0], Event::Started { role, .. } if role == "worker (mdp echo)"));
        let request = on(&[b"", b"MDPW01", b"\x02", b"c", b"", b"hi"]);
        assert_eq!(
            handle(&mut w, request, t0).0,
            [sent(&[b"", b"MDPW01", b"\x03", b"c", b"", b"hi"])]
        );
        assert_eq!(
            tick(&mut w, t0 + 100 * MS).0,
            [sent(&[b"", b"MDPW01", b"\x04"])]
        );
    }

    #[test]
    fn disconnect_from_the_broker_reconnects_to_the_next_failover_endpoint() {
        let t0 = Instant::now();
        let mut w = started(
            PirateProtocol::Majordomo(Version::V2),
            FaultPlan::default(),
            t0,
        );
        let (outs, seen) = handle(&mut w, on(&[b"MDPW02", b"\x06"]), t0);
        assert_eq!(outs, [Output::Close(SOCKET)]);
        assert!(seen
            .iter()
            .any(|e| matches!(e, Event::PeerLost { delay_ms: 50 })));
        let (outs, _) = tick(&mut w, t0 + 50 * MS);
        match &outs[..] {
            [Output::Open(spec), ready] => {
                assert_eq!(spec.connect, ["tcp://127.0.0.1:6556"]);
                assert_eq!(ready, &sent(&[b"MDPW02", b"\x01", b"echo"]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mdp_0_2_streams_parts_then_the_final() {
        let t0 = Instant::now();
        let mut cfg = config(PirateProtocol::Majordomo(Version::V2), FaultPlan::default());
        cfg.handler = Handler::Exec(Exec::new("printf 'a\\nb\\n'"));
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        let (outs, _) = handle(&mut w, on(&[b"MDPW02", b"\x02", b"c", b"", b"x"]), t0);
        let job = match outs.into_iter().next() {
            Some(Output::Start(job @ Job::Handle { stream: true, .. })) => job,
            other => panic!("{other:?}"),
        };
        let (outs, _) = handle(&mut w, Input::Done(perform(job)), t0);
        let next = match &outs[..] {
            [partial, Output::Start(_)] => {
                assert_eq!(partial, &sent(&[b"MDPW02", b"\x03", b"c", b"", b"a"]));
                outs.into_iter().nth(1).unwrap()
            }
            other => panic!("{other:?}"),
        };
        let Output::Start(next) = next else {
            unreachable!()
        };
        let (outs, _) = handle(&mut w, Input::Done(perform(next)), t0);
        assert_eq!(outs, [sent(&[b"MDPW02", b"\x04", b"c", b"", b"b"])]);
        assert_eq!(w.report().replied, 1);
    }
}
