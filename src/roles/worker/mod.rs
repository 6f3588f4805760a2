//! `pirate worker`: the Simple Pirate, Paranoid Pirate (6/PPP) and Majordomo (7/MDP 0.1,
//! 18/MDP 0.2) worker as one pure [`Machine`], [`Worker`]; [`run`] hands it to the reactor.
//!
//! A worker process serves up to `--concurrency N` requests at once (default 1), in one of
//! two ways:
//!
//! - **One connection with credit N** (Majordomo, N > 1): one session whose READY asks the
//!   broker for N credits with one more frame, `"credit=N"` (our extension; the Guide's
//!   brokers ignore the frame, see [`crate::proto::mdp`]). A broker that honours it (`pirate
//!   broker`) answers at once with a HEARTBEAT carrying the credit it grants, and then keeps
//!   up to that many requests at this one socket, whose *lanes* hold them; replies go back
//!   as they finish, in any order, each with its own handle. Requests and replies of many
//!   lanes share the connection's batches, which is what makes it fast.
//! - **N sessions**: when the first thing the broker sends after that READY is anything else
//!   (a standard HEARTBEAT or REQUEST: it ignored the frame), and always for Paranoid and
//!   Simple, the worker runs N ordinary sessions. Each is a worker as the Guide's queues and
//!   brokers know it: a socket of its own in slot `i`, its own identity, READY, heartbeats,
//!   liveness, back-off and reconnect, and one request at a time. Any queue or broker sees N
//!   workers and hands out up to N requests at once.
//!
//! Either way the handlers run in parallel on work threads, and a connection lost loses
//! exactly the requests it held.
//!
//! Paranoid and Majordomo (DEALER): READY on every new socket, a heartbeat every interval even
//! while a request is being worked on (the work runs on a thread), and once the peer has been
//! silent for `liveness` intervals (or, MDP, sent DISCONNECT) the session's socket is closed
//! and, after a doubling back-off kept as a deadline, a new one opened with a fresh identity
//! (Majordomo: on the next `--failover` endpoint), forever. The other sessions are not
//! touched. A reply computed for a closed socket is dropped: its client has long retried.
//!
//! Simple (REQ): one READY, then receive a request, reply, repeat. No heartbeats.
//!
//! **How READY is spelled** ([`ReadyDialect`], `--dialect`). 6/PPP says `0x01`; the Guide's
//! C++ ppqueue registers a worker only on the word `"READY"` (and heartbeats in the word
//! `"HEARTBEAT"`), and never answers a worker it has not registered. By default (`auto`) a
//! Paranoid session's first READY is 6/PPP's byte; a socket that hears nothing at all from
//! the queue within the liveness window is followed, after the usual back-off, by one whose
//! READY is the other spelling, and a spelling the queue answered is kept for the next
//! socket (a queue that answers in 6/PPP's bytes is spoken to in bytes). The first switch
//! to the word is logged once. Each spelling is what some queue takes, so this stays
//! conforming: a 6/PPP queue is sent `0x01` first, and `pirate queue` and the Guide's
//! ppqueue.py take either. Heartbeats go out in the spelling of the socket's READY until
//! the queue's own heartbeats say otherwise. `rfc` and `guide-cpp` pin the spelling; Simple
//! (no heartbeats, so no way to tell) sends the byte unless pinned (the Guide's spqueue.cpp
//! also takes the byte as a sign of life: it queues the worker on any message).
//!
//! Faults are drawn per request, from one plan for the whole process: a crash kills the
//! process on the spot (every session's request is lost with it, as with a real crash), an
//! overload makes that request's work slower (heartbeats go on: slow but alive), a freeze
//! stops the whole process, every session's reads and heartbeats included, as a hung process
//! would; the work starts once it thaws. Stalls are deadlines, never sleeps. The counters
//! (requests, replies, faults, reconnects) are the process's, summed over its sessions.
//!
//! Frames, worker side (docs/protocols.md): PPP `0x01` READY · `0x02` HEARTBEAT ·
//! `[client]["" ][body…]` request and reply; MDP in [`mdp`].

use std::collections::VecDeque;
use std::time::Instant;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::event::{Event, Events, Report, ServiceReport, Serving};
use crate::faults::Faults;
use crate::handler::Handler;
use crate::link::{Link, Status};
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
use crate::proto::ppp::Dialect;
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

mod job;
mod mdp;
mod ppp;
mod serve;

use job::{identity, perform, Done, Incoming, Job, Ticket};
pub use job::{PirateProtocol, ReadyDialect, WorkerConfig, MAX_CONCURRENCY};
pub use serve::{serve, MdpWorkerConfig};

/// Most requests a session holds behind the one it works on (see [`Session::held`]).
pub const MAX_HELD: usize = 64;

/// A request a session is working on, in one of its lanes.
struct Busy {
    envelope: Vec<Frame>,
    serving: Serving,
    /// When the work stall ends and the handler may run; `None` once it runs.
    due: Option<(Instant, Message)>,
}

/// One ordinary worker session: one socket (always in slot `index`), reopened after each loss.
struct Session {
    /// Sockets this session has opened: socket K talks to endpoint K-1 of
    /// `[endpoint, failover…]`, round and round.
    opened: u64,
    /// The process-wide number of the current socket: its identity is `NAME-N-…`, and the
    /// jobs of its request carry it (see [`Ticket`]).
    generation: u64,
    identity: Vec<u8>,
    /// Up with the peer's liveness (none for Simple: no heartbeats), or down until the
    /// back-off's reopen instant.
    link: Link,
    /// The requests being worked on, one per lane: one lane, or as many as the broker granted
    /// this socket.
    lanes: Vec<Option<Busy>>,
    /// The credit this session's READY asks for (Majordomo with `--concurrency` > 1, until a
    /// broker has shown it ignores the frame); `None`: a standard READY.
    offer: Option<u32>,
    /// A READY with credit went out on this socket and nothing has come back yet: the first
    /// message says whether the broker granted it.
    awaiting_grant: bool,
    /// The peer has said something other than DISCONNECT on this socket, so it took the
    /// READY. A DISCONNECT before that refused the READY itself (a name it will not have,
    /// e.g. the Guide's C++ mdbroker refuses every identity that starts with `m`, `i` or `.`:
    /// `sender.find_first_of("mmi.") == 0`), and asking again at once would only loop. A
    /// 6/PPP socket that heard nothing at all tells the worker to try the other spelling of
    /// READY on the next one.
    answered: bool,
    /// Requests the peer handed this session while every lane was busy (a queue that marks a
    /// busy worker ready on its heartbeats, as the Guide's ppqueue does: trap 7), served in
    /// turn as lanes free up; at most [`MAX_HELD`], beyond which they are dropped and counted
    /// invalid. They belong to this socket: lost with it.
    held: VecDeque<(Vec<Frame>, Message)>,
    /// How the queue spells HEARTBEAT (the Guide's C++ ppqueue: `"HEARTBEAT"`): ours go out the
    /// same way. 6/PPP's bytes until it has said.
    dialect: Dialect,
    /// How this socket's READY was spelled, and (unless pinned) the next socket's: kept when
    /// the queue answered, the other one after a socket that heard nothing.
    ready_form: Dialect,
    /// Simple (REQ): a READY owed since then, for a message that was no request.
    owed_ready: Option<Instant>,
}

impl Session {
    /// A session whose first socket is number `generation`, asking for `offer` credit.
    fn new(config: &WorkerConfig, generation: u64, offer: Option<u32>) -> Session {
        Session {
            opened: 1,
            generation,
            identity: identity(&config.name, generation),
            link: Link::new(Backoff::new(config.reconnect, config.reconnect_max)),
            lanes: vec![None],
            offer,
            awaiting_grant: false,
            answered: false,
            held: VecDeque::new(),
            dialect: Dialect::Bytes,
            ready_form: Dialect::Bytes,
            owed_ready: None,
        }
    }

    /// When this session must next be ticked: its link's next event or its work's start.
    fn next_deadline(&self) -> Option<Instant> {
        let link = self.link.next_deadline();
        let work = self
            .lanes
            .iter()
            .flatten()
            .filter_map(|b| b.due.as_ref())
            .map(|(at, _)| *at)
            .min();
        match (link, work) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A lane with no request in it.
    fn free_lane(&self) -> Option<usize> {
        self.lanes.iter().position(Option::is_none)
    }

    /// Requests its lanes hold.
    fn busy(&self) -> usize {
        self.lanes.iter().flatten().count()
    }
}

/// The worker's logic: its sessions, faults, counters.
pub struct Worker {
    config: WorkerConfig,
    faults: Faults,
    report: ServiceReport,
    /// Sockets opened so far, over every session: the last one's number.
    sockets: u64,
    /// Session `i` uses slot `i`. One session at first when it asks for credit; the others
    /// open when the broker shows it grants none.
    sessions: Vec<Session>,
    /// Requests being worked on now, over every session (the report keeps the peak).
    in_flight: u64,
    /// A freeze: nothing is read, nothing sent, by any session, until then.
    frozen_until: Option<Instant>,
    crashed: bool,
    /// The switch to the word READY has been logged (once per process).
    told_words: bool,
}

impl Worker {
    pub fn new(config: &WorkerConfig) -> Self {
        let n = config.concurrency.clamp(1, MAX_CONCURRENCY) as u64;
        let sessions: Vec<Session> = match (config.protocol, n) {
            (PirateProtocol::Majordomo(_), 2..) => vec![Session::new(config, 1, Some(n as u32))],
            _ => (1..=n).map(|g| Session::new(config, g, None)).collect(),
        };
        let opened = sessions.len() as u64;
        Worker {
            config: config.clone(),
            faults: Faults::new(config.faults.clone(), config.seed),
            report: ServiceReport {
                endpoint: config.endpoint.clone(),
                seed: config.seed,
                in_flight_max: Some(0),
                ..Default::default()
            },
            sockets: opened,
            sessions,
            in_flight: 0,
            frozen_until: None,
            crashed: false,
            told_words: false,
        }
    }

    /// The counters so far.
    pub fn report(&self) -> &ServiceReport {
        &self.report
    }

    /// The identity of the first session's current socket.
    pub fn identity(&self) -> &[u8] {
        &self.sessions[0].identity
    }

    /// The identities of every session's current socket, by slot.
    pub fn identities(&self) -> Vec<&[u8]> {
        self.sessions.iter().map(|s| &s.identity[..]).collect()
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

    /// What the worker talks to, in log lines: a Majordomo `broker`, a Pirate `queue`.
    fn peer(&self) -> &'static str {
        match self.config.protocol {
            PirateProtocol::Majordomo(_) => "broker",
            _ => "queue",
        }
    }

    /// The endpoint session `slot`'s current socket talks to (see [`Self::spec`]).
    fn endpoint_of(&self, slot: Slot) -> &str {
        let failover = match self.config.protocol {
            PirateProtocol::Majordomo(_) => &self.config.failover[..],
            _ => &[],
        };
        let k = (self.sessions[slot].opened as usize).saturating_sub(1) % (failover.len() + 1);
        match k {
            0 => &self.config.endpoint,
            k => &failover[k - 1],
        }
    }

    /// The socket for session `slot`'s current identity. A session's socket K talks to
    /// endpoint K-1 of `[endpoint, failover…]`, round and round: after losing a broker the
    /// session tries the next one (Majordomo only, as `--failover` is).
    fn spec(&self, slot: Slot) -> SocketSpec {
        let session = &self.sessions[slot];
        let endpoint = self.endpoint_of(slot).to_string();
        SocketSpec {
            slot,
            // The reactor never waits in a send (a refused login leaves a DEALER no pipe, and
            // a blocking send would wait for ever, deaf to Ctrl-C): what the socket cannot
            // take now waits beside it, in order, so no reply is dropped to back-pressure,
            // and the heartbeat liveness closes a socket that never takes it.
            kind: match self.config.protocol {
                PirateProtocol::Simple => SocketKind::Req,
                _ => SocketKind::Dealer,
            },
            name: "worker",
            bind: Vec::new(),
            connect: vec![endpoint.clone()],
            identity: Some(session.identity.clone()),
        }
    }

    /// How session `slot`'s next READY is spelled: as pinned by `--dialect`, else its own
    /// choice (see the module docs).
    fn ready_form(&self, slot: Slot) -> Dialect {
        match self.config.dialect {
            ReadyDialect::Auto => self.sessions[slot].ready_form,
            ReadyDialect::Rfc => Dialect::Bytes,
            ReadyDialect::GuideCpp => Dialect::Words,
        }
    }

    /// Session `slot`'s socket is open: register (READY) and start watching the peer.
    fn register(&mut self, slot: Slot, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        let form = self.ready_form(slot);
        let session = &mut self.sessions[slot];
        session.answered = false;
        let heartbeat = match self.config.protocol {
            PirateProtocol::Simple => None,
            _ => Some(self.config.heartbeat),
        };
        session.link.up(heartbeat, now);
        let name = String::from_utf8_lossy(&session.identity).into_owned();
        session.awaiting_grant = session.offer.is_some();
        session.answered = false;
        match self.config.protocol {
            PirateProtocol::Majordomo(version) => {
                out.send(
                    slot,
                    mdp::ready(version, &self.config.service, session.offer),
                );
                let asks = match session.offer {
                    Some(n) => format!(", asking for credit {n}"),
                    None => String::new(),
                };
                // Nothing has answered yet: the broker says nothing back to a READY, its
                // first heartbeat is the first sign that it took it ("registered" below).
                events.info(format!(
                    "worker {name}: READY sent to {} for service {}{asks}; waiting for the broker",
                    self.endpoint_of(slot),
                    self.config.service
                ));
            }
            _ => {
                session.ready_form = form;
                // Our heartbeats follow our READY until the queue's say how it spells them.
                session.dialect = form;
                out.send(slot, ppp::ready(form));
                events.info(format!(
                    "worker {name}: READY sent to {}; waiting for the queue",
                    self.endpoint_of(slot)
                ));
            }
        }
    }

    /// Sends `msg` to session `slot`'s peer: traffic is proof of life, no heartbeat for
    /// another interval.
    fn send(&mut self, slot: Slot, msg: Message, now: Instant, out: &mut Outbox<Job>) {
        out.send(slot, msg);
        self.sessions[slot].link.sent(now);
    }

    /// Session `slot` is done with the request in `lane` (replied, or its socket is gone).
    fn unbusy(&mut self, slot: Slot, lane: usize) -> Option<Busy> {
        let busy = self.sessions[slot].lanes.get_mut(lane)?.take();
        if busy.is_some() {
            self.in_flight -= 1;
        }
        busy
    }

    /// The broker's answer to session `slot`'s READY with credit: `Some(credit)` granted, or
    /// `None`, it ignored the frame (its first message was something else). Without credit
    /// the process serves through N ordinary sessions: the others open now.
    fn on_grant(
        &mut self,
        slot: Slot,
        granted: Option<u32>,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        let session = &mut self.sessions[slot];
        session.awaiting_grant = false;
        let Some(asked) = session.offer else {
            return;
        };
        match granted {
            Some(credit) => {
                // Never more than asked for: that is what the handlers are sized to.
                let lanes = credit.min(asked) as usize;
                session.lanes.resize_with(lanes, || None);
                events.info(format!(
                    "worker {}: the broker granted credit {lanes}, one connection serves \
                     {lanes} requests at once",
                    String::from_utf8_lossy(&session.identity)
                ));
                self.start_held(slot, now, out, events);
            }
            None => {
                session.offer = None;
                events.info(format!(
                    "the broker ignored the credit frame (not a pirate broker): {asked} \
                     ordinary sessions"
                ));
                // The new sessions start on the broker this one found (it may have failed
                // over to it).
                let opened = session.opened;
                for _ in self.sessions.len()..asked as usize {
                    self.sockets += 1;
                    let mut session = Session::new(&self.config, self.sockets, None);
                    session.opened = opened;
                    self.sessions.push(session);
                    let slot = self.sessions.len() - 1;
                    out.open(self.spec(slot));
                    self.register(slot, now, out, events);
                }
            }
        }
    }

    /// Session `slot`'s peer is lost: close its socket and open a new one, at once after a
    /// DISCONNECT on a session the broker had taken (it is there and wants a fresh session,
    /// as the Guide's workers do), after the back-off when the peer went silent or refused
    /// the READY itself (DISCONNECT as its first word). The request in progress and any held
    /// behind it belonged to that socket; other sessions go on.
    fn lose(
        &mut self,
        slot: Slot,
        disconnected: bool,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        // Nothing below looks at the link: it can go down first.
        let at_once = disconnected && self.sessions[slot].answered;
        let delay = self.sessions[slot].link.lose(now, at_once);
        if self.sessions.len() > 1 {
            events.info(format!(
                "worker {} lost its peer",
                String::from_utf8_lossy(&self.sessions[slot].identity)
            ));
        }
        if !disconnected {
            // Silent because it refused our login? Only the socket monitor knows.
            let endpoint = self.endpoint_of(slot);
            if let Some(why) = crate::handshake::refused_by(endpoint) {
                events.warn(format!(
                    "{}; retrying in {} ms",
                    crate::handshake::refusal_line(endpoint, &why),
                    delay.as_millis()
                ));
            }
        }
        events.emit(Event::PeerLost {
            reason: if disconnected { "disconnect" } else { "silent" }.into(),
            delay_ms: delay.as_millis() as u64,
            peer: self.peer().into(),
        });
        let session = &mut self.sessions[slot];
        let paranoid = self.config.protocol == PirateProtocol::Paranoid;
        if paranoid && self.config.dialect == ReadyDialect::Auto && !session.answered {
            // Not a word back to this READY: maybe a queue that does not take this spelling
            // (the Guide's ppqueue.cpp ignores 0x01), maybe no queue at all. The next socket
            // says READY the other way; the two alternate until one is answered.
            session.ready_form = match session.ready_form {
                Dialect::Bytes => Dialect::Words,
                Dialect::Words => Dialect::Bytes,
            };
            if session.ready_form == Dialect::Words && !self.told_words {
                self.told_words = true;
                events.info(
                    "no answer to READY 0x01 from the queue: the next socket says READY as the \
                     word \"READY\", as the Guide's C++ ppqueue needs, and keeps whichever \
                     spelling is answered (--dialect rfc|guide-cpp pins one)",
                );
            }
        }
        out.close(slot);
        for lane in 0..self.sessions[slot].lanes.len() {
            self.unbusy(slot, lane);
        }
        let session = &mut self.sessions[slot];
        // One lane until the next socket is granted credit again.
        session.lanes = vec![None];
        session.awaiting_grant = false;
        session.held.clear();
        session.dialect = Dialect::Bytes;
    }

    /// What `msg` says, and for a PPP HEARTBEAT how it was spelled.
    fn decode(&self, msg: Message) -> (Incoming, Option<Dialect>) {
        match self.config.protocol {
            PirateProtocol::Majordomo(version) => (mdp::decode(version, msg), None),
            _ => ppp::decode(msg),
        }
    }

    fn on_message(
        &mut self,
        slot: Slot,
        msg: Message,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return; // not reached: the machine opens only its sessions' slots
        };
        if !session.link.is_up() {
            return; // not reached: the reactor closed the socket
        }
        session.link.heard(now);
        let awaiting_grant = session.awaiting_grant;
        let simple = self.config.protocol == PirateProtocol::Simple;
        let (incoming, dialect) = self.decode(msg);
        if incoming != Incoming::Disconnect {
            // The peer took this socket's READY: a later loss starts the back-off afresh.
            let session = &mut self.sessions[slot];
            let first = !session.answered;
            session.answered = true;
            session.link.answered();
            if first {
                // The first word back after READY: the peer is there and took it.
                let name = String::from_utf8_lossy(&self.sessions[slot].identity).into_owned();
                events.info(format!(
                    "worker {name} registered with the {} at {}",
                    self.peer(),
                    self.endpoint_of(slot)
                ));
            }
        }
        if let Some(dialect) = dialect {
            // The queue's heartbeat says how it spells the commands: ours follow, and so
            // does the next socket's READY (unless pinned).
            self.sessions[slot].dialect = dialect;
            self.sessions[slot].ready_form = dialect;
        }
        // The first word after a READY with credit says whether the broker honours it; a
        // DISCONNECT says nothing about that (the broker refused this READY), and the next
        // socket asks again.
        if awaiting_grant && incoming != Incoming::Disconnect {
            let granted = match incoming {
                Incoming::Granted(credit) => Some(credit),
                _ => None,
            };
            self.on_grant(slot, granted, now, out, events);
            if granted.is_some() {
                return;
            }
        }
        match incoming {
            Incoming::Request { envelope, body } if self.sessions[slot].free_lane().is_some() => {
                self.take(slot, envelope, body, now, out, events);
            }
            Incoming::Request { envelope, body } => {
                // The queue should never hand a busy worker a second request (trap 7); one
                // that does gets it served after the current one.
                let held = &mut self.sessions[slot].held;
                if held.len() < MAX_HELD {
                    held.push_back((envelope, body));
                    *self.report.held_while_busy.get_or_insert(0) += 1;
                    events.warn("a second request while busy (trap 7): served after this one");
                } else {
                    self.report.invalid += 1;
                    events.invalid(
                        "worker",
                        format!("a request while busy with {MAX_HELD} more held: dropped"),
                    );
                }
            }
            Incoming::Heartbeat if !simple => {}
            Incoming::Disconnect if self.sessions[slot].answered => {
                events.warn("broker sent DISCONNECT: reconnecting at once");
                self.lose(slot, true, now, out, events);
            }
            Incoming::Disconnect => {
                events.warn(format!(
                    "broker answered READY with DISCONNECT (it refuses this worker: service \
                     {:?}, identity {:?}?): reconnecting after the back-off",
                    self.config.service,
                    String::from_utf8_lossy(&self.sessions[slot].identity)
                ));
                self.lose(slot, true, now, out, events);
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
                    self.sessions[slot].owed_ready = Some(now);
                }
            }
        }
    }

    /// Held requests of session `slot` go into its free lanes.
    fn start_held(&mut self, slot: Slot, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        while self.sessions[slot].free_lane().is_some() && !self.crashed {
            let Some((envelope, body)) = self.sessions[slot].held.pop_front() else {
                return;
            };
            self.take(slot, envelope, body, now, out, events);
        }
    }

    /// A request for a free lane of session `slot` to work on: draw its fault; the work
    /// starts after any freeze and the work time (plus an overload's), as deadlines.
    fn take(
        &mut self,
        slot: Slot,
        envelope: Vec<Frame>,
        body: Message,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        let Some(decision) = self.faults.take_request(&mut self.report, now, events) else {
            // The whole process dies, with every session's request.
            self.crashed = true;
            out.crash();
            return;
        };
        let (begins, due) = (decision.begins, decision.due);
        if decision.freeze.is_some() {
            self.frozen_until = Some(begins);
        }
        let session = &mut self.sessions[slot];
        let Some(lane) = session.free_lane() else {
            return; // not reached: callers take only into a free lane
        };
        session.lanes[lane] = Some(Busy {
            envelope,
            serving: Serving::new(decision.cycle, &body, begins),
            due: Some((due, body)),
        });
        self.in_flight += 1;
        self.report.in_flight_max = self.report.in_flight_max.max(Some(self.in_flight));
        // A REQ socket reads again as soon as it is no longer busy, so a Simple worker's
        // reply waits for the tick (due now), after the reactor's reads.
        if self.config.protocol != PirateProtocol::Simple && self.frozen_until.is_none() {
            self.work(slot, lane, now, out, events);
        }
    }

    /// The work in session `slot`'s `lane`, if due: on a thread, or inline when there is
    /// nothing to wait for.
    fn work(
        &mut self,
        slot: Slot,
        lane: usize,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        let session = &mut self.sessions[slot];
        let generation = session.generation;
        let Some(Some(busy)) = session.lanes.get_mut(lane) else {
            return;
        };
        if busy.due.as_ref().is_none_or(|(at, _)| now < *at) {
            return;
        }
        let (_, body) = busy.due.take().expect("due");
        let ticket = Ticket {
            session: slot,
            generation,
            lane,
        };
        if self.config.handler == Handler::Echo {
            // Nothing to wait for: no thread, no wake-up round trip.
            self.finished(
                Done::Reply {
                    ticket,
                    reply: body,
                },
                now,
                out,
                events,
            );
            return;
        }
        out.start(Job::Handle {
            ticket,
            handler: self.config.handler.clone(),
            body,
            stream: self.config.protocol == PirateProtocol::Majordomo(Version::V2),
        });
    }

    /// A job came back: send its reply (or part) if its session's socket is still the one the
    /// request came in on.
    fn finished(&mut self, done: Done, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        crate::handler::report_failures(&mut self.report, events);
        let ticket = match &done {
            Done::Reply { ticket, .. } | Done::Partial { ticket, .. } => *ticket,
        };
        let (slot, lane) = (ticket.session, ticket.lane);
        let current = self.sessions.get(slot).is_some_and(|s| {
            s.generation == ticket.generation
                && s.lanes.get(lane).is_some_and(Option::is_some)
                && s.link.is_up()
        });
        if !current {
            events.info("dropped a reply for a lost connection");
            return;
        }
        let envelope = match &self.sessions[slot].lanes[lane] {
            Some(busy) => busy.envelope.clone(),
            None => return, // not reached: checked above
        };
        match (done, self.config.protocol) {
            (Done::Partial { part, rest, .. }, PirateProtocol::Majordomo(version)) => {
                self.send(slot, mdp::partial(version, &envelope, part), now, out);
                out.start(Job::Next { ticket, rest });
            }
            (Done::Partial { .. }, _) => {} // not reached: only MDP 0.2 streams
            (Done::Reply { reply, .. }, protocol) => {
                let msg = match protocol {
                    PirateProtocol::Majordomo(version) => mdp::reply(version, &envelope, reply),
                    _ => ppp::reply(envelope, reply),
                };
                self.send(slot, msg, now, out);
                if let Some(busy) = self.unbusy(slot, lane) {
                    busy.serving.served_at(now, &mut self.report, events);
                }
                self.start_held(slot, now, out, events);
            }
        }
    }

    /// Time passed for session `slot` (the process is not frozen): reconnect, lose a silent
    /// peer, start due work, heartbeat.
    fn tick_session(
        &mut self,
        slot: Slot,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        if self.sessions[slot].owed_ready.take().is_some() {
            let form = self.ready_form(slot);
            out.send(slot, ppp::ready(form));
        }
        let session = &mut self.sessions[slot];
        match session.link.status(now) {
            Status::Reopen => {
                self.sockets += 1;
                self.report.reconnects += 1;
                session.opened += 1;
                session.generation = self.sockets;
                session.identity = identity(&self.config.name, self.sockets);
                out.open(self.spec(slot));
                self.register(slot, now, out, events);
            }
            Status::Down => return,
            Status::PeerDead => {
                self.lose(slot, false, now, out, events);
                return;
            }
            Status::Up => {}
        }
        // Work first: a reply that goes out now is the proof of life a heartbeat would be.
        for lane in 0..self.sessions[slot].lanes.len() {
            self.work(slot, lane, now, out, events);
        }
        if self.sessions[slot].link.heartbeat_due(now) {
            let beat = match self.config.protocol {
                PirateProtocol::Majordomo(version) => mdp::heartbeat(version),
                _ => ppp::heartbeat(self.sessions[slot].dialect),
            };
            out.send(slot, beat);
        }
    }
}

impl Machine for Worker {
    type Job = Job;
    type Done = Done;

    fn sockets(&self) -> Vec<SocketSpec> {
        (0..self.sessions.len())
            .map(|slot| self.spec(slot))
            .collect()
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<Job>, events: &mut Events) {
        events.emit(Event::started(
            self.role(),
            self.config.endpoint.clone(),
            Some(self.report.seed),
        ));
        if self.sessions.len() > 1 {
            events.info(format!(
                "{} sessions: up to {} requests at once",
                self.sessions.len(),
                self.sessions.len()
            ));
        }
        if let Some(n) = self.sessions[0].offer {
            events.info(format!(
                "one connection asking the broker for credit {n}; {n} ordinary sessions if it \
                 grants none"
            ));
        }
        for slot in 0..self.sessions.len() {
            self.register(slot, now, out, events);
        }
    }

    fn handle(
        &mut self,
        input: Input<Done>,
        now: Instant,
        out: &mut Outbox<Job>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { slot, msg } => self.on_message(slot, msg, now, out, events),
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
        for slot in 0..self.sessions.len() {
            if self.crashed {
                return;
            }
            self.tick_session(slot, now, out, events);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.crashed {
            return None;
        }
        if let Some(until) = self.frozen_until {
            return Some(until);
        }
        let owed = self.sessions.iter().filter_map(|s| s.owed_ready).min();
        self.sessions
            .iter()
            .filter_map(Session::next_deadline)
            .chain(owed)
            .min()
    }

    fn wants(&self, slot: Slot) -> bool {
        let Some(session) = self.sessions.get(slot) else {
            return false;
        };
        if self.crashed
            || self.frozen_until.is_some()
            || session.owed_ready.is_some()
            || !session.link.is_up()
        {
            return false;
        }
        // A REQ socket must answer before it may receive again.
        self.config.protocol != PirateProtocol::Simple || session.busy() == 0
    }
}

/// Serves until `stop` is raised; returns the counters.
pub fn run(config: &WorkerConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let mut worker = Worker::new(config);
    reactor::run(&mut worker, perform, stop, events)?;
    Ok(Report::Service(worker.report))
}

#[cfg(test)]
mod tests;
