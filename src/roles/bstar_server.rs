//! Binary Star as a machine combinator: [`Bstar`] makes any [`Pair`] machine one node of a
//! Binary Star pair (the Guide's `bstarsrv`), and [`run`] is `pirate server --primary|--backup`
//! (the Lazy server of [`crate::roles::server`] on a ROUTER, wrapped). The Majordomo broker
//! is wrapped the same way ([`crate::roles::broker::run_bstar`]).
//!
//! [`Bstar`] owns the pure [`BinaryStar`] machine and two sockets of its own beside the inner
//! machine's (a PUB for this node's state, a SUB for the peer's), publishes on a deadline of
//! its own, and lets a client request through only as the vote decides. How, and why: the
//! section "Binary Star" of `docs/architecture.md`.

use std::time::{Duration, Instant};

use crate::bstar::{
    BinaryStar, BstarConfig, BstarError, Refusal, Role, SplitPolicy, State, Transition, Vote,
};
use crate::error::{Error, Result};
use crate::event::{Event, Events, Report};
use crate::faults::FaultPlan;
use crate::handler::Handler;
use crate::msg::Message;
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::roles::server::{self, Server, ServerConfig};

/// Where a node publishes its state and where it hears its peer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BstarOptions {
    /// Which node this is.
    pub role: Role,
    /// Our PUB socket's bind endpoint (Guide: primary `tcp://*:5003`, backup `tcp://*:5004`).
    pub state_pub: String,
    /// The peer's PUB endpoint, SUB-connected (Guide: primary `tcp://localhost:5004`, backup
    /// `tcp://localhost:5003`).
    pub peer_state: String,
    /// State publishing interval; the peer is dead after two (Guide: 1000 ms).
    pub heartbeat: Duration,
    /// Dual active or passive: heal by the split rule, or stop as the Guide does.
    pub on_split: SplitPolicy,
}

impl BstarOptions {
    /// The Guide's endpoints for `role` (`bstarsrv -p` / `-b`).
    pub fn guide(role: Role) -> Self {
        let (state_pub, peer_state) = match role {
            Role::Primary => ("tcp://*:5003", "tcp://localhost:5004"),
            Role::Backup => ("tcp://*:5004", "tcp://localhost:5003"),
        };
        BstarOptions {
            role,
            state_pub: state_pub.into(),
            peer_state: peer_state.into(),
            heartbeat: Duration::from_millis(1000),
            on_split: SplitPolicy::default(),
        }
    }
}

/// Everything `pirate server --primary|--backup` needs.
#[derive(Clone, Debug)]
pub struct BstarServerConfig {
    /// Where clients connect (Guide: primary `tcp://*:5001`, backup `tcp://*:5002`).
    pub bind: String,
    /// Our PUB bind endpoint.
    pub state_pub: String,
    /// The peer's PUB endpoint, to SUB-connect.
    pub peer_state: String,
    pub role: Role,
    /// State publishing interval (Guide: 1000 ms).
    pub heartbeat: Duration,
    /// Dual active or passive: heal by the split rule, or stop as the Guide does.
    pub on_split: SplitPolicy,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl BstarServerConfig {
    /// The Guide's `bstarsrv -p` or `-b`: its endpoints, no faults.
    pub fn guide(role: Role) -> Self {
        let o = BstarOptions::guide(role);
        BstarServerConfig {
            bind: match role {
                Role::Primary => "tcp://*:5001".into(),
                Role::Backup => "tcp://*:5002".into(),
            },
            state_pub: o.state_pub,
            peer_state: o.peer_state,
            role,
            heartbeat: o.heartbeat,
            on_split: o.on_split,
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }

    /// The link part of the configuration.
    pub fn options(&self) -> BstarOptions {
        BstarOptions {
            role: self.role,
            state_pub: self.state_pub.clone(),
            peer_state: self.peer_state.clone(),
            heartbeat: self.heartbeat,
            on_split: self.on_split,
        }
    }
}

/// Logs a state (the Guide's reason line, then `state: X`, which scripts and tests wait for)
/// and emits it as a `bstar_state` event for `--json`.
fn announce_state(events: &mut Events, from: Option<State>, to: State, reason: &str) {
    if from.is_some() {
        events.info(reason);
    }
    events.info(format!("state: {to}"));
    events.emit(Event::BstarState {
        state: to.name().into(),
        from: from.map(|s| s.name().into()),
        reason: reason.into(),
        served_apart: None,
    });
}

/// Logs a change: a split resolved is one warning, `state: PASSIVE (stepped down after a
/// split: …)`, so that it stands out and is logged once; the others as [`announce_state`].
fn announce(events: &mut Events, t: &Transition) {
    let Some(served) = t.split else {
        return announce_state(events, Some(t.from), t.to, &t.reason);
    };
    events.warn(format!("state: {} ({})", t.to, t.reason));
    events.emit(Event::BstarState {
        state: t.to.name().into(),
        from: Some(t.from.name().into()),
        reason: t.reason.clone(),
        served_apart: Some(served),
    });
}

/// A machine that can run as a Binary Star node.
pub trait Pair: Machine {
    /// True if this message, arriving on the inner machine's `slot`, is a client request: a
    /// vote, served only while this node is active.
    fn is_vote(&self, slot: Slot, msg: &Message) -> bool;

    /// Until when an injected freeze holds the node: nothing is published or read until then.
    fn frozen_until(&self) -> Option<Instant> {
        None
    }

    /// This node stepped down from ACTIVE to PASSIVE after a split (see [`crate::bstar`]):
    /// let go of whatever it held for clients, so that they go to the active node.
    fn step_down(&mut self, _now: Instant, _out: &mut Outbox<Self::Job>, _events: &mut Events) {}
}

/// Our PUB socket, where this node's state goes.
const STATE_PUB: Slot = 0;
/// Our SUB socket, connected to the peer's PUB.
const STATE_SUB: Slot = 1;
/// The inner machine's slot `s` is the reactor's `INNER + s`.
const INNER: Slot = 2;

/// A fatal state pair was heard: the node publishes its state a few more times, then fails.
struct Stopping {
    error: BstarError,
    /// States published since the conflict was heard.
    published: u32,
    /// When the next one is due.
    next: Instant,
}

/// How many times a stopping node publishes its state: at 0, 1 and 2 heartbeats.
const LAST_WORDS: u32 = 3;

/// One node of a Binary Star pair around the inner machine `M` (see the module docs).
pub struct Bstar<M: Pair> {
    inner: M,
    options: BstarOptions,
    fsm: BinaryStar,
    /// Where the inner machine puts its outputs before they are renumbered into ours.
    inner_out: Outbox<M::Job>,
    /// The last refusal logged, so a stream of refused requests logs one line.
    last_refusal: Option<Refusal>,
    refused: u64,
    invalid: u64,
    /// The inner machine is frozen (as of the last call).
    frozen: bool,
    stopping: Option<Stopping>,
    failure: Option<Error>,
}

impl<M: Pair> Bstar<M> {
    /// `inner` as the `options.role` node of a pair, started at `now`. A zero heartbeat is a
    /// usage error (the state would be published in a busy loop).
    pub fn new(options: BstarOptions, inner: M, now: Instant) -> Result<Self> {
        if options.heartbeat.is_zero() {
            return Err(Error::Usage(
                "the Binary Star heartbeat must be longer than 0 ms".into(),
            ));
        }
        let config = BstarConfig {
            heartbeat: options.heartbeat,
            on_split: options.on_split,
        };
        Ok(Bstar {
            fsm: BinaryStar::new(options.role, config, now),
            inner,
            options,
            inner_out: Outbox::default(),
            last_refusal: None,
            refused: 0,
            invalid: 0,
            frozen: false,
            stopping: None,
            failure: None,
        })
    }

    /// The wrapped machine.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The wrapped machine, for its final report.
    pub fn into_inner(self) -> M {
        self.inner
    }

    /// The node's state.
    pub fn state(&self) -> State {
        self.fsm.state()
    }

    /// Client requests dropped because this node was not active.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Malformed state messages dropped.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// The closing line of a run: how many client requests were refused, if any.
    pub fn finish(&self, events: &mut Events) {
        if self.refused > 0 {
            events.info(format!(
                "refused {} client request(s) while not active",
                self.refused
            ));
        }
    }

    fn publish(&self, state: State, out: &mut Outbox<M::Job>) {
        out.send(STATE_PUB, Message::from_frames([state.encode()]));
    }

    /// A state message from the peer.
    fn on_peer(
        &mut self,
        msg: Message,
        now: Instant,
        out: &mut Outbox<M::Job>,
        events: &mut Events,
    ) {
        let frames: Vec<&[u8]> = msg.iter().collect();
        let peer = match State::decode(&frames) {
            Ok(s) => s,
            Err(reason) => {
                self.invalid += 1;
                events.invalid("state-sub", reason);
                return;
            }
        };
        let contested = self.fsm.contested();
        match self.fsm.on_peer_state(peer, now) {
            Ok(Some(t)) => {
                self.last_refusal = None;
                announce(events, &t);
                if t.split.is_some() && t.to == State::Passive {
                    self.inner.step_down(now, &mut self.inner_out, events);
                }
            }
            Ok(None) if !contested && self.fsm.contested() => {
                let wait = self.fsm.config().expiry().as_millis();
                let then = match self.options.role {
                    Role::Primary => "it is the backup's to yield if it served too",
                    Role::Backup => "if it stays active, it served too and this backup yields",
                };
                events.warn(format!(
                    "split: the peer is active too, and this node served {} client request(s) \
                     while they were apart; waiting {wait} ms for the peer to step down ({then})",
                    self.fsm.served_apart()
                ));
            }
            Ok(None) => {}
            Err(error) => {
                events.warn(format!(
                    "peer is {peer} while this node is {}: stopping",
                    self.state()
                ));
                self.stopping = Some(Stopping {
                    error,
                    published: 0,
                    next: now,
                });
                self.last_words(now, out);
            }
        }
    }

    /// A stopping node's next publish, if due; the failure after the last one.
    fn last_words(&mut self, now: Instant, out: &mut Outbox<M::Job>) {
        let state = self.state();
        let heartbeat = self.options.heartbeat;
        let Some(stopping) = &mut self.stopping else {
            return;
        };
        if now < stopping.next {
            return;
        }
        out.send(STATE_PUB, Message::from_frames([state.encode()]));
        stopping.published += 1;
        stopping.next = now + heartbeat;
        if stopping.published == LAST_WORDS {
            self.failure = Some(stopping.error.into());
            out.exit();
        }
    }

    /// Decides on a client request: true to pass it on. Logs takeovers and (once per reason)
    /// refusals.
    fn vote(&mut self, now: Instant, events: &mut Events) -> bool {
        match self.fsm.on_client_request(now) {
            Vote::Accept => true,
            Vote::TakeOver(t) => {
                self.last_refusal = None;
                announce(events, &t);
                true
            }
            Vote::Refuse(why) => {
                self.refused += 1;
                if self.last_refusal != Some(why) {
                    self.last_refusal = Some(why);
                    events.info(why.to_string());
                }
                false
            }
        }
    }

    /// After every call: the inner machine's outputs go out renumbered, and our state if due
    /// (at once after a change, so the peer converges in one message time).
    fn settle(&mut self, now: Instant, out: &mut Outbox<M::Job>) {
        out.forward(&mut self.inner_out, |slot| slot + INNER);
        self.frozen = self.inner.frozen_until().is_some_and(|until| now < until);
        if self.stopping.is_none() && !self.frozen {
            if let Some(state) = self.fsm.publish_due(now) {
                self.publish(state, out);
            }
        }
    }
}

impl<M: Pair> Machine for Bstar<M> {
    type Job = M::Job;
    type Done = M::Done;

    fn sockets(&self) -> Vec<SocketSpec> {
        let mut sockets: Vec<SocketSpec> = self
            .inner
            .sockets()
            .into_iter()
            .map(|spec| SocketSpec {
                slot: spec.slot + INNER,
                ..spec
            })
            .collect();
        sockets.push(SocketSpec {
            slot: STATE_PUB,
            kind: SocketKind::Pub,
            name: "state-pub",
            bind: vec![self.options.state_pub.clone()],
            connect: Vec::new(),
            identity: None,
        });
        sockets.push(SocketSpec {
            slot: STATE_SUB,
            kind: SocketKind::Sub,
            name: "state-sub",
            bind: Vec::new(),
            connect: vec![self.options.peer_state.clone()],
            identity: None,
        });
        sockets
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<M::Job>, events: &mut Events) {
        let (me, peer) = match self.options.role {
            Role::Primary => ("primary", "backup"),
            Role::Backup => ("backup", "primary"),
        };
        events.info(format!(
            "binary star {me}: states on {}, waiting for the {peer}'s on {} (heartbeat {} ms)",
            self.options.state_pub,
            self.options.peer_state,
            self.options.heartbeat.as_millis()
        ));
        announce_state(events, None, self.state(), "started");
        self.inner.start(now, &mut self.inner_out, events);
        self.settle(now, out);
    }

    fn handle(
        &mut self,
        input: Input<M::Done>,
        now: Instant,
        out: &mut Outbox<M::Job>,
        events: &mut Events,
    ) {
        if self.stopping.is_some() {
            // Serving nobody: the node is about to fail.
            return;
        }
        match input {
            Input::Message {
                slot: STATE_SUB,
                msg,
            } => self.on_peer(msg, now, out, events),
            Input::Message { slot, msg } if slot >= INNER => {
                let slot = slot - INNER;
                if self.inner.is_vote(slot, &msg) && !self.vote(now, events) {
                    return;
                }
                let input = Input::Message { slot, msg };
                self.inner.handle(input, now, &mut self.inner_out, events);
            }
            // The PUB socket is never read.
            Input::Message { .. } => {}
            Input::Done(done) => {
                self.inner
                    .handle(Input::Done(done), now, &mut self.inner_out, events)
            }
        }
        if self.stopping.is_none() {
            self.settle(now, out);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<M::Job>, events: &mut Events) {
        if self.stopping.is_some() {
            self.last_words(now, out);
            return;
        }
        if !self.frozen {
            if let Some(last) = self.fsm.tick(now) {
                let then = match self.state() {
                    State::Passive => "; the next client request makes this node active",
                    State::Backup => "; a backup still waits for the primary",
                    _ => "",
                };
                events.warn(format!(
                    "peer silent for {} ms (last state {last}){then}",
                    self.fsm.config().expiry().as_millis()
                ));
            }
        }
        if self.inner.next_deadline().is_some_and(|at| now >= at) {
            self.inner.tick(now, &mut self.inner_out, events);
        }
        self.settle(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if let Some(stopping) = &self.stopping {
            return Some(stopping.next);
        }
        let ours = match self.inner.frozen_until() {
            Some(until) if self.frozen => until,
            _ => self.fsm.next_deadline(),
        };
        Some(self.inner.next_deadline().map_or(ours, |at| at.min(ours)))
    }

    fn wants(&self, slot: Slot) -> bool {
        if self.stopping.is_some() || self.frozen {
            return false;
        }
        match slot {
            STATE_PUB => false,
            STATE_SUB => true,
            slot => self.inner.wants(slot - INNER),
        }
    }

    fn failure(&mut self) -> Option<Error> {
        self.failure.take()
    }
}

/// The Lazy server as a node: every REQ request is a vote; the rest is invalid (counted by
/// the server in every state, as it always was).
impl Pair for Server {
    fn is_vote(&self, _slot: Slot, msg: &Message) -> bool {
        server::is_req_request(msg)
    }

    fn frozen_until(&self) -> Option<Instant> {
        Server::frozen_until(self)
    }
}

/// Serves as one node of a Binary Star pair until `stop` is raised (`Ok`, the counters) or
/// a fatal state pair (`Err`: dual active or passive → exit 69, two primaries or two backups
/// → exit 2; see [`crate::bstar::BstarError`]).
pub fn run(config: &BstarServerConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let server = Server::router(&ServerConfig {
        bind: config.bind.clone(),
        handler: config.handler.clone(),
        faults: config.faults.clone(),
        seed: config.seed,
    });
    let mut node = Bstar::new(config.options(), server, Instant::now())?;
    let handler = config.handler.clone();
    let ended = reactor::run(
        &mut node,
        move |request| handler.handle(request),
        stop,
        events,
    );
    node.finish(events);
    let invalid = node.invalid();
    let mut report = node.into_inner().into_report();
    report.invalid += invalid;
    report.finish(ended.map(|_| ()))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;
    use crate::reactor::Output;
    use crate::testkit::{msg, Rig};
    use std::sync::{Arc, Mutex};

    const HB: Duration = Duration::from_millis(100);

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// An inner machine that echoes every message on its slot 0, counts ticks, and may be
    /// frozen or have a deadline of its own. Messages starting with `client` are votes.
    #[derive(Default)]
    struct Inner {
        handled: Vec<Message>,
        ticks: u32,
        deadline: Option<Instant>,
        frozen: Option<Instant>,
        stepped_down: u32,
    }

    impl Machine for Inner {
        type Job = ();
        type Done = ();
        fn sockets(&self) -> Vec<SocketSpec> {
            vec![SocketSpec {
                slot: 0,
                kind: SocketKind::Router,
                name: "inner",
                bind: vec!["inproc://inner".into()],
                connect: Vec::new(),
                identity: None,
            }]
        }
        fn start(&mut self, _now: Instant, _out: &mut Outbox<()>, events: &mut Events) {
            events.info("inner started");
        }
        fn handle(&mut self, input: Input<()>, _: Instant, out: &mut Outbox<()>, _: &mut Events) {
            if let Input::Message { slot, msg } = input {
                self.handled.push(msg.clone());
                out.send(slot, msg);
            }
        }
        fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {
            self.ticks += 1;
            self.deadline = None;
        }
        fn next_deadline(&self) -> Option<Instant> {
            self.deadline
        }
    }

    impl Pair for Inner {
        fn is_vote(&self, _slot: Slot, msg: &Message) -> bool {
            msg.get(0) == Some(b"client".as_slice())
        }
        fn frozen_until(&self) -> Option<Instant> {
            self.frozen
        }
        fn step_down(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
            self.stepped_down += 1;
            out.send(0, Message::from_frames([b"bye".to_vec()]));
        }
    }

    fn options(role: Role) -> BstarOptions {
        BstarOptions {
            role,
            state_pub: "tcp://*:5003".into(),
            peer_state: "tcp://localhost:5004".into(),
            heartbeat: HB,
            on_split: SplitPolicy::Resolve,
        }
    }

    /// A started node on a quiet [`Rig`], and what its start asked for; its helpers take
    /// times in ms on the rig's clock.
    struct N {
        rig: Rig<Bstar<Inner>>,
        started: Vec<Output<()>>,
    }

    impl N {
        fn new(role: Role) -> Self {
            N::with(role, SplitPolicy::Resolve)
        }

        fn with(role: Role, on_split: SplitPolicy) -> Self {
            let t0 = Instant::now();
            let o = BstarOptions {
                on_split,
                ..options(role)
            };
            let mut rig = Rig::quiet(Bstar::new(o, Inner::default(), t0).unwrap());
            rig.t0 = t0;
            let started = rig.start(t0);
            N { rig, started }
        }

        fn peer(&mut self, state: &[u8], at: u64) -> Vec<Output<()>> {
            let msg = Message::from_frames([state.to_vec()]);
            self.input(STATE_SUB, msg, at)
        }

        fn client(&mut self, at: u64) -> Vec<Output<()>> {
            let msg = Message::from_frames([b"client".to_vec(), b"hi".to_vec()]);
            self.input(INNER, msg, at)
        }

        fn input(&mut self, slot: Slot, msg: Message, at: u64) -> Vec<Output<()>> {
            let now = self.rig.at(at);
            self.rig.message(slot, msg, now)
        }

        fn tick(&mut self, at: u64) -> Vec<Output<()>> {
            let now = self.rig.at(at);
            self.rig.tick(now)
        }

        fn lines(&self) -> Vec<String> {
            self.rig
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Log { message, .. } => Some(message.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    /// The state published by `outputs`, one per publish.
    fn published<J>(outputs: &[Output<J>]) -> Vec<String> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    slot: STATE_PUB,
                    msg,
                } => Some(msg.text()),
                _ => None,
            })
            .collect()
    }

    /// The messages `outputs` send on the inner machine's slot 0.
    fn forwarded(outputs: &[Output<()>]) -> usize {
        outputs
            .iter()
            .filter(|o| matches!(o, Output::Send { slot: INNER, .. }))
            .count()
    }

    #[test]
    fn sockets_are_the_inner_ones_renumbered_and_the_state_pub_and_sub() {
        let node = Bstar::new(options(Role::Primary), Inner::default(), Instant::now()).unwrap();
        let sockets = node.sockets();
        assert_eq!(sockets.len(), 3);
        assert_eq!((sockets[0].slot, sockets[0].name), (INNER, "inner"));
        assert_eq!(
            (sockets[1].slot, sockets[1].kind, &sockets[1].bind[..]),
            (
                STATE_PUB,
                SocketKind::Pub,
                &["tcp://*:5003".to_string()][..]
            )
        );
        assert_eq!(
            (sockets[2].slot, sockets[2].kind, &sockets[2].connect[..]),
            (
                STATE_SUB,
                SocketKind::Sub,
                &["tcp://localhost:5004".to_string()][..]
            )
        );
        assert!(!node.wants(STATE_PUB));
        assert!(node.wants(STATE_SUB) && node.wants(INNER));
    }

    #[test]
    fn a_zero_heartbeat_is_a_usage_error() {
        let o = BstarOptions {
            heartbeat: Duration::ZERO,
            ..options(Role::Primary)
        };
        let err = Bstar::new(o, Inner::default(), Instant::now())
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn start_logs_the_link_and_the_state_starts_the_inner_machine_and_publishes_at_once() {
        let mut n = N::new(Role::Primary);
        let lines = n.lines();
        assert!(lines[0].starts_with("binary star primary: states on tcp://*:5003"));
        assert_eq!(lines[1..], ["state: PRIMARY", "inner started"]);
        assert_eq!(published(&n.started), ["1"]);
        // Nothing more is due yet.
        assert!(n.tick(0).is_empty());
        let mut backup =
            Rig::quiet(Bstar::new(options(Role::Backup), Inner::default(), n.rig.t0).unwrap());
        assert_eq!(published(&backup.start(n.rig.t0)), ["2"]);
    }

    #[test]
    fn the_state_is_published_every_heartbeat_on_its_own_deadline() {
        let mut n = N::new(Role::Primary);
        assert_eq!(n.rig.m.next_deadline(), Some(ms(n.rig.t0, 100)));
        assert!(published(&n.tick(99)).is_empty());
        assert_eq!(published(&n.tick(100)), ["1"]);
        assert_eq!(n.rig.m.next_deadline(), Some(ms(n.rig.t0, 200)));
        // A late tick publishes once, no burst for the beats missed.
        assert_eq!(published(&n.tick(450)), ["1"]);
        assert!(published(&n.tick(451)).is_empty());
    }

    #[test]
    fn the_inner_deadline_is_kept_and_its_tick_forwarded_only_when_due() {
        let mut n = N::new(Role::Primary);
        n.rig.m.inner.deadline = Some(ms(n.rig.t0, 30));
        assert_eq!(n.rig.m.next_deadline(), Some(ms(n.rig.t0, 30)));
        n.tick(29);
        assert_eq!(n.rig.m.inner().ticks, 0);
        n.tick(30);
        assert_eq!(n.rig.m.inner().ticks, 1);
        assert_eq!(n.rig.m.next_deadline(), Some(ms(n.rig.t0, 100)));
    }

    #[test]
    fn a_peer_state_change_is_announced_and_published_at_once() {
        let mut n = N::new(Role::Primary);
        let out = n.peer(b"2", 10);
        assert_eq!(published(&out), ["3"]);
        assert_eq!(n.rig.m.state(), State::Active);
        let lines = n.lines();
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "connected to backup (passive), ready as active",
                "state: ACTIVE"
            ]
        );
        assert!(n.rig.events.iter().any(|e| matches!(
            e,
            Event::BstarState { state, from: Some(from), .. } if state == "ACTIVE" && from == "PRIMARY"
        )));
        // The same state again changes nothing and publishes nothing early.
        assert!(n.peer(b"2", 20).is_empty());
    }

    #[test]
    fn a_malformed_state_is_counted_and_dropped_and_proves_nothing() {
        let mut n = N::new(Role::Primary);
        assert!(n.peer(b"9", 10).is_empty());
        assert!(n
            .input(
                STATE_SUB,
                Message::from_frames([b"3".to_vec(), b"x".to_vec()]),
                11
            )
            .is_empty());
        assert_eq!(n.rig.m.invalid(), 2);
        assert_eq!(n.rig.m.state(), State::Primary);
        // Trailing NUL (C peers) is accepted.
        n.peer(b"2\0", 12);
        assert_eq!(n.rig.m.state(), State::Active);
    }

    #[test]
    fn a_primary_refuses_clients_in_its_start_guard_then_takes_over_on_a_vote() {
        let mut n = N::new(Role::Primary);
        assert_eq!(forwarded(&n.client(10)), 0);
        assert_eq!(forwarded(&n.client(20)), 0);
        assert_eq!(n.rig.m.refused(), 2);
        assert!(
            n.rig.m.inner().handled.is_empty(),
            "refused requests never reach it"
        );
        let refusals = n
            .lines()
            .iter()
            .filter(|l| l.starts_with("refusing"))
            .count();
        assert_eq!(refusals, 1, "one line per reason, not per request");
        // After one expiry interval with no peer, a client vote makes it active.
        let out = n.client(200);
        assert_eq!(forwarded(&out), 1);
        assert_eq!(published(&out), ["3"]);
        assert_eq!(n.rig.m.state(), State::Active);
        assert_eq!(n.rig.m.inner().handled.len(), 1);
        let mut ev = Events::discard();
        n.rig.m.finish(&mut ev);
    }

    #[test]
    fn a_passive_node_refuses_votes_while_the_peer_lives_and_passes_other_traffic() {
        let mut n = N::new(Role::Backup);
        assert_eq!(
            forwarded(&n.client(5)),
            0,
            "a backup never serves before passive"
        );
        assert_eq!(published(&n.peer(b"3", 10)), ["4"]);
        assert_eq!(n.rig.m.state(), State::Passive);
        assert_eq!(forwarded(&n.client(50)), 0);
        // Not a vote (a broker's worker): handled in every state.
        let worker = Message::from_frames([b"worker".to_vec()]);
        assert_eq!(forwarded(&n.input(INNER, worker, 60)), 1);
        assert_eq!(n.rig.m.refused(), 2);
        n.peer(b"3", 100);
        assert_eq!(
            forwarded(&n.client(250)),
            0,
            "peer heard at 100 lives until 300"
        );
        assert_eq!(n.rig.m.state(), State::Passive);
    }

    #[test]
    fn a_passive_node_reports_the_peers_silence_once_and_takes_over_on_the_next_vote() {
        let mut n = N::new(Role::Backup);
        n.peer(b"3", 0);
        n.tick(100);
        n.tick(199);
        assert!(!n.lines().iter().any(|l| l.starts_with("peer silent")));
        n.tick(200);
        n.tick(300);
        n.tick(400);
        let silent: Vec<String> = n
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("peer silent"))
            .collect();
        assert_eq!(
            silent,
            ["peer silent for 200 ms (last state ACTIVE); the next client request makes this node active"]
        );
        assert_eq!(
            n.rig.m.state(),
            State::Passive,
            "expiry alone changes nothing"
        );
        let out = n.client(410);
        assert_eq!(
            (forwarded(&out), published(&out)),
            (1, vec!["3".to_string()])
        );
        assert!(n
            .lines()
            .contains(&"failover successful, ready as active".to_string()));
    }

    fn stops_with(ours: &[u8], theirs: &[u8], setup: &[&[u8]]) -> (N, Error) {
        let role = if ours == b"1" {
            Role::Primary
        } else {
            Role::Backup
        };
        let mut n = N::with(role, SplitPolicy::Stop);
        for (i, state) in setup.iter().enumerate() {
            n.peer(state, i as u64);
        }
        let out = n.peer(theirs, 10);
        assert_eq!(
            published(&out).len(),
            1,
            "the conflict is published at once"
        );
        assert!(!out.contains(&Output::Exit));
        assert!(!n.rig.m.wants(INNER) && !n.rig.m.wants(STATE_SUB));
        // Serving nobody while it says its last words.
        assert!(n.client(20).is_empty());
        assert!(n.rig.m.inner().handled.is_empty());
        assert_eq!(n.rig.m.next_deadline(), Some(ms(n.rig.t0, 110)));
        assert!(n.tick(109).is_empty());
        let out = n.tick(110);
        assert_eq!(
            (published(&out).len(), out.contains(&Output::Exit)),
            (1, false)
        );
        let out = n.tick(210);
        assert_eq!(published(&out).len(), 1);
        assert_eq!(out.last(), Some(&Output::Exit));
        let err = n.rig.m.failure().expect("a fatal pair is a failure");
        assert!(n.rig.m.failure().is_none(), "asked once");
        assert!(n
            .lines()
            .iter()
            .any(|l| l.starts_with("peer is ") && l.ends_with(": stopping")));
        (n, err)
    }

    #[test]
    fn two_primaries_or_two_backups_stop_with_a_usage_error_after_their_last_words() {
        let (_, err) = stops_with(b"1", b"1", &[]);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--backup"), "{err}");
        let (_, err) = stops_with(b"2", b"2", &[]);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn dual_active_and_dual_passive_stop_as_unreachable_after_their_last_words() {
        // Primary → ACTIVE (peer BACKUP), then the peer says ACTIVE too.
        let (n, err) = stops_with(b"1", b"3", &[b"2"]);
        assert_eq!(err.exit_code(), 69);
        assert_eq!(n.rig.m.state(), State::Active);
        // Backup → PASSIVE (peer ACTIVE), then the peer says PASSIVE too.
        let (_, err) = stops_with(b"2", b"4", &[b"3"]);
        assert_eq!(err.exit_code(), 69);
    }

    #[test]
    fn a_frozen_inner_machine_stops_the_link_until_it_thaws() {
        let mut n = N::new(Role::Primary);
        n.peer(b"2", 0);
        n.rig.m.inner.frozen = Some(ms(n.rig.t0, 1000));
        n.rig.m.inner.deadline = Some(ms(n.rig.t0, 1000));
        // The next call notices the freeze.
        assert!(published(&n.tick(100)).is_empty());
        assert!(!n.rig.m.wants(STATE_SUB) && !n.rig.m.wants(INNER));
        assert_eq!(n.rig.m.next_deadline(), Some(ms(n.rig.t0, 1000)));
        for at in [200, 500, 999] {
            assert!(published(&n.tick(at)).is_empty(), "frozen at {at}");
        }
        let out = n.tick(1000);
        assert_eq!(published(&out), ["3"]);
        assert!(n.rig.m.wants(STATE_SUB));
        assert_eq!(n.rig.m.inner().ticks, 1);
    }

    /// The `bstar_state` events a node emitted: (state, reason, served_apart).
    fn state_events(n: &N) -> Vec<(String, String, Option<u64>)> {
        n.rig
            .events
            .iter()
            .filter_map(|e| match e {
                Event::BstarState {
                    state,
                    reason,
                    served_apart,
                    ..
                } => Some((state.clone(), reason.clone(), *served_apart)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_node_that_served_nobody_apart_steps_down_says_so_once_and_lets_go() {
        let mut n = N::new(Role::Primary);
        n.peer(b"2", 0);
        assert_eq!(n.rig.m.state(), State::Active);
        // The backup is silent from 0 on, then heard ACTIVE at 1000: nobody was served.
        let out = n.peer(b"3", 1000);
        assert_eq!(published(&out), ["4"], "the step-down is published at once");
        assert_eq!(
            forwarded(&out),
            1,
            "what the inner machine let go of goes out"
        );
        assert_eq!(n.rig.m.inner().stepped_down, 1);
        assert_eq!(n.rig.m.state(), State::Passive);
        let lines = n.lines();
        let resolved: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("stepped down after a split"))
            .collect();
        assert_eq!(resolved.len(), 1, "{lines:?}");
        assert!(
            resolved[0].starts_with("state: PASSIVE (stepped down after a split: "),
            "{lines:?}"
        );
        let (state, reason, served) = state_events(&n).pop().unwrap();
        assert_eq!((state.as_str(), served), ("PASSIVE", Some(0)));
        assert!(reason.starts_with("stepped down after a split"), "{reason}");
        // Settled: refuses clients, keeps its link, does not stop.
        assert_eq!(forwarded(&n.client(1010)), 0);
        assert!(n.rig.m.wants(STATE_SUB));
        assert!(n.rig.m.failure().is_none());
    }

    #[test]
    fn a_node_that_served_apart_logs_the_contest_once_and_the_backup_yields_if_both_served() {
        let mut n = N::new(Role::Backup);
        n.peer(b"3", 0);
        assert_eq!(forwarded(&n.client(300)), 1, "the client vote");
        assert_eq!(forwarded(&n.client(310)), 1);
        for at in [1000, 1100] {
            let out = n.peer(b"3", at);
            assert!(
                published(&out).iter().all(|s| s == "3"),
                "still active: {out:?}"
            );
            assert_eq!(n.rig.m.state(), State::Active);
        }
        let contest: Vec<String> = n
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("split: the peer is active too"))
            .collect();
        assert_eq!(contest.len(), 1, "{contest:?}");
        assert!(
            contest[0].contains("served 2 client request(s)"),
            "{contest:?}"
        );
        assert_eq!(forwarded(&n.client(1150)), 1, "serves while it waits");
        let out = n.peer(b"3", 1200);
        assert_eq!(published(&out), ["4"]);
        assert_eq!(n.rig.m.inner().stepped_down, 1);
        let (state, reason, served) = state_events(&n).pop().unwrap();
        assert_eq!((state.as_str(), served), ("PASSIVE", Some(2)));
        assert!(reason.contains("the backup yields"), "{reason}");
    }

    #[test]
    fn dual_passive_makes_the_primary_take_over_without_letting_go_of_anything() {
        let mut n = N::new(Role::Primary);
        n.peer(b"3", 0);
        assert_eq!(n.rig.m.state(), State::Passive);
        n.peer(b"4", 50);
        n.peer(b"4", 150);
        let out = n.peer(b"4", 250);
        assert_eq!(published(&out), ["3"]);
        assert_eq!(n.rig.m.inner().stepped_down, 0);
        assert!(n.lines().contains(
            &"state: ACTIVE (both nodes passive after a split: the primary takes over)".into()
        ));
    }

    // ---- the Lazy server as a node ----

    fn server_node(role: Role) -> Bstar<Server> {
        let server = Server::router(&ServerConfig {
            bind: "tcp://*:5001".into(),
            ..Default::default()
        });
        Bstar::new(options(role), server, Instant::now()).unwrap()
    }

    #[test]
    fn an_active_server_node_answers_through_the_router_envelope() {
        let t0 = Instant::now();
        let mut rig = Rig::quiet(server_node(Role::Primary));
        assert_eq!(rig.m.sockets()[0].kind, SocketKind::Router);
        rig.start(t0);
        rig.message(STATE_SUB, msg![b"2"], t0);
        assert_eq!(
            rig.message(INNER, msg![b"id", b"", b"hi"], t0),
            [Output::Start(msg![b"hi"])]
        );
        assert!(!rig.m.wants(INNER), "one request at a time");
        assert_eq!(
            rig.done(msg![b"hi"], t0),
            [Output::Send {
                slot: INNER,
                msg: msg![b"id", b"", b"hi"]
            }]
        );
        assert_eq!(rig.m.inner().report().replied, 1);
    }

    #[test]
    fn a_server_node_counts_a_request_without_delimiter_as_invalid_not_as_a_vote() {
        let t0 = Instant::now();
        let mut rig = Rig::quiet(server_node(Role::Backup));
        rig.start(t0);
        rig.message(INNER, msg![b"id", b"hi"], t0);
        rig.message(INNER, msg![b"id", b"", b"hi"], t0);
        let node = &rig.m;
        assert_eq!((node.inner().report().invalid, node.refused()), (1, 1));
        assert_eq!(node.inner().report().requests, 0);
    }

    #[test]
    fn a_frozen_server_node_publishes_nothing_for_the_freeze() {
        let t0 = Instant::now();
        let server = Server::router(&ServerConfig {
            bind: "tcp://*:5001".into(),
            faults: FaultPlan {
                freeze_rate: 1.0,
                freeze_for: Duration::from_millis(500),
                faults_after: 0,
                ..Default::default()
            },
            ..Default::default()
        });
        let mut rig = Rig::quiet(Bstar::new(options(Role::Primary), server, t0).unwrap());
        rig.start(t0);
        rig.message(STATE_SUB, msg![b"2"], t0);
        assert!(rig.message(INNER, msg![b"id", b"", b"hi"], t0).is_empty());
        assert_eq!(rig.m.next_deadline(), Some(t0 + Duration::from_millis(500)));
        assert!(
            rig.tick(t0 + Duration::from_millis(200)).is_empty(),
            "no state published while frozen"
        );
        let outputs = rig.tick(t0 + Duration::from_millis(500));
        assert!(outputs.contains(&Output::Start(msg![b"hi"])));
        assert_eq!(published(&outputs), ["3"]);
    }

    #[test]
    fn the_guide_defaults() {
        let p = BstarServerConfig::guide(Role::Primary);
        assert_eq!(
            (p.bind.as_str(), p.state_pub.as_str(), p.peer_state.as_str()),
            ("tcp://*:5001", "tcp://*:5003", "tcp://localhost:5004")
        );
        assert_eq!(p.heartbeat, Duration::from_millis(1000));
        let b = BstarServerConfig::guide(Role::Backup);
        assert_eq!(
            (b.bind.as_str(), b.state_pub.as_str(), b.peer_state.as_str()),
            ("tcp://*:5002", "tcp://*:5004", "tcp://localhost:5003")
        );
    }

    // ---- over real sockets, on the reactor ----

    /// The states a node logged (`state: X` lines).
    fn states(log: &Mutex<Vec<String>>) -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("state: ").map(str::to_string))
            .collect()
    }

    fn node_thread(
        name: &str,
        options: BstarOptions,
        stop: Stop,
        log: Arc<Mutex<Vec<String>>>,
    ) -> std::thread::JoinHandle<Result<Report>> {
        let config = BstarServerConfig {
            bind: format!("inproc://bstar-{name}-{}", rand::random::<u64>()),
            state_pub: options.state_pub,
            peer_state: options.peer_state,
            role: options.role,
            heartbeat: options.heartbeat,
            on_split: options.on_split,
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        };
        std::thread::spawn(move || {
            let sink = log.clone();
            let mut events = Events::new(false, move |e| {
                if let Event::Log { message, level } = e {
                    if level != Level::Error {
                        sink.lock().unwrap().push(message);
                    }
                }
            });
            run(&config, &stop, &mut events)
        })
    }

    #[test]
    fn two_nodes_over_real_sockets_settle_as_active_and_passive() {
        let hb = Duration::from_millis(20);
        let stop = Stop::new();
        let (plog, blog) = (Arc::default(), Arc::default());
        let id = rand::random::<u64>();
        let (p_pub, b_pub) = (
            format!("inproc://bstar-p-{id}"),
            format!("inproc://bstar-b-{id}"),
        );
        let p = node_thread(
            "primary",
            BstarOptions {
                role: Role::Primary,
                state_pub: p_pub.clone(),
                peer_state: b_pub.clone(),
                heartbeat: hb,
                on_split: SplitPolicy::Resolve,
            },
            stop.clone(),
            Arc::clone(&plog),
        );
        let b = node_thread(
            "backup",
            BstarOptions {
                role: Role::Backup,
                state_pub: b_pub,
                peer_state: p_pub,
                heartbeat: hb,
                on_split: SplitPolicy::Resolve,
            },
            stop.clone(),
            Arc::clone(&blog),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while states(&blog).last().map(String::as_str) != Some("PASSIVE") {
            assert!(Instant::now() < deadline, "{:?} {:?}", plog, blog);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.request();
        p.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
        assert_eq!(states(&plog), vec!["PRIMARY", "ACTIVE"]);
        assert_eq!(states(&blog), vec!["BACKUP", "PASSIVE"]);
    }

    #[test]
    fn a_node_hearing_its_own_states_is_a_dual_primary_usage_error() {
        let own = format!("inproc://bstar-self-{}", rand::random::<u64>());
        let h = node_thread(
            "self",
            BstarOptions {
                role: Role::Primary,
                state_pub: own.clone(),
                peer_state: own,
                heartbeat: Duration::from_millis(10),
                on_split: SplitPolicy::Resolve,
            },
            Stop::new(),
            Arc::default(),
        );
        let err = h.join().unwrap().unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("--backup"), "{err}");
    }
}
