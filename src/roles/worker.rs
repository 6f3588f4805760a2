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
//! `[client]["" ][body…]` request and reply; MDP in [`mdp_worker`](super::mdp_worker).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::Result;
use crate::event::{Event, Events, Report, ServiceReport, Serving};
use crate::faults::{Faults, OnCrash};
use crate::handler::Handler;
use crate::heartbeat::Liveness;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
use crate::proto::ppp::{self, Dialect, Ppp};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

use super::mdp_worker;
use super::work::{identity, perform, Done, Incoming, Job, Ticket};
pub use super::work::{PirateProtocol, ReadyDialect, WorkerConfig, MAX_CONCURRENCY};

/// The PPP wire (Simple and Paranoid: REQ adds and strips the delimiter itself), and for a
/// HEARTBEAT how the queue spelled it.
fn ppp_decode(msg: Message) -> (Incoming, Option<Dialect>) {
    match ppp::decode_spoken(msg) {
        Ok((Ppp::Heartbeat, dialect)) => (Incoming::Heartbeat, dialect),
        Ok((Ppp::Data { envelope, body }, _)) => (Incoming::Request { envelope, body }, None),
        Ok((Ppp::Ready, _)) => (Incoming::Invalid("READY from the queue".into()), None),
        Err(e) => (Incoming::Invalid(e.to_string()), None),
    }
}

/// Most requests a session holds behind the one it works on (see [`Session::held`]).
pub const MAX_HELD: usize = 64;

/// Where a session's socket stands.
enum Link {
    /// Connected; `peer` is the queue's or broker's liveness (`None` for Simple: no heartbeats).
    Up { peer: Option<Liveness> },
    /// Peer lost: a new socket opens at `until`.
    Down { until: Instant },
}

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
    link: Link,
    backoff: Backoff,
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
            link: Link::Up { peer: None },
            backoff: Backoff::new(config.reconnect, config.reconnect_max),
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
        let link = match &self.link {
            Link::Down { until } => Some(*until),
            Link::Up { peer: Some(peer) } => Some(peer.next_send().min(peer.expires_at())),
            Link::Up { peer: None } => None,
        };
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
        session.link = Link::Up {
            peer: match self.config.protocol {
                PirateProtocol::Simple => None,
                _ => Some(Liveness::new(self.config.heartbeat, now)),
            },
        };
        let name = String::from_utf8_lossy(&session.identity).into_owned();
        session.awaiting_grant = session.offer.is_some();
        session.answered = false;
        match self.config.protocol {
            PirateProtocol::Majordomo(version) => {
                out.send(
                    slot,
                    mdp_worker::ready(version, &self.config.service, session.offer),
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
                out.send(slot, ppp::encode_in(Ppp::Ready, form));
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
        if let Link::Up { peer: Some(peer) } = &mut self.sessions[slot].link {
            peer.sent(now);
        }
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
        let delay = if disconnected && self.sessions[slot].answered {
            Duration::ZERO
        } else {
            self.sessions[slot].backoff.next_delay()
        };
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
        session.link = Link::Down { until: now + delay };
    }

    /// What `msg` says, and for a PPP HEARTBEAT how it was spelled.
    fn decode(&self, msg: Message) -> (Incoming, Option<Dialect>) {
        match self.config.protocol {
            PirateProtocol::Majordomo(version) => (mdp_worker::decode(version, msg), None),
            _ => ppp_decode(msg),
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
        let Link::Up { peer } = &mut session.link else {
            return; // not reached: the reactor closed the socket
        };
        if let Some(peer) = peer {
            peer.heard(now);
        }
        let awaiting_grant = session.awaiting_grant;
        let simple = self.config.protocol == PirateProtocol::Simple;
        let (incoming, dialect) = self.decode(msg);
        if incoming != Incoming::Disconnect {
            // The peer took this socket's READY: a later loss starts the back-off afresh.
            let session = &mut self.sessions[slot];
            let first = !session.answered;
            session.answered = true;
            session.backoff.reset();
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
        self.report.requests += 1;
        let decision = self
            .faults
            .decide(&mut self.report, OnCrash::Now, now, events);
        if decision.crash {
            // The whole process dies, with every session's request.
            self.crashed = true;
            out.crash();
            return;
        }
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
                && matches!(s.link, Link::Up { .. })
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
                self.send(
                    slot,
                    mdp_worker::partial(version, &envelope, part),
                    now,
                    out,
                );
                out.start(Job::Next { ticket, rest });
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
            out.send(slot, ppp::encode_in(Ppp::Ready, form));
        }
        let session = &mut self.sessions[slot];
        match &mut session.link {
            Link::Down { until } if now >= *until => {
                self.sockets += 1;
                self.report.reconnects += 1;
                session.opened += 1;
                session.generation = self.sockets;
                session.identity = identity(&self.config.name, self.sockets);
                out.open(self.spec(slot));
                self.register(slot, now, out, events);
            }
            Link::Down { .. } => return,
            Link::Up { peer: Some(peer) } if peer.is_dead(now) => {
                self.lose(slot, false, now, out, events);
                return;
            }
            Link::Up { .. } => {}
        }
        // Work first: a reply that goes out now is the proof of life a heartbeat would be.
        for lane in 0..self.sessions[slot].lanes.len() {
            self.work(slot, lane, now, out, events);
        }
        if let Link::Up { peer: Some(peer) } = &mut self.sessions[slot].link {
            if peer.heartbeat_due(now) {
                let beat = match self.config.protocol {
                    PirateProtocol::Majordomo(version) => mdp_worker::heartbeat(version),
                    _ => ppp::encode_in(Ppp::Heartbeat, self.sessions[slot].dialect),
                };
                out.send(slot, beat);
            }
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
            || !matches!(session.link, Link::Up { .. })
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
mod tests {
    use super::*;
    use crate::event::{FaultKind, Level};
    use crate::faults::FaultPlan;
    use crate::handler::Exec;
    use crate::heartbeat::HeartbeatConfig;
    use crate::reactor::Output;

    const MS: Duration = Duration::from_millis(1);

    /// The worker's one socket in the single-session tests.
    const SOCKET: Slot = 0;

    /// The request of the first session's first socket.
    fn first() -> Ticket {
        Ticket {
            session: 0,
            generation: 1,
            lane: 0,
        }
    }

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
                ticket: first(),
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
            ticket: first(),
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
        // Lost, and (once) the switch to the word READY for the next socket.
        assert!(matches!(
            seen[..],
            [Event::PeerLost { delay_ms: 50, .. }, Event::Log { .. }]
        ));
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
                // Nothing answered 0x01: the Guide's C++ spelling is tried.
                assert_eq!(ready, &sent(&[b"READY"]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.report().reconnects, 1);
        // Lost again without hearing anything: the back-off doubles.
        let (_, seen) = tick(&mut w, t0 + 650 * MS);
        assert!(matches!(seen[..], [Event::PeerLost { delay_ms: 100, .. }]));
        tick(&mut w, t0 + 750 * MS);
        // Any message resets it.
        handle(&mut w, on(&[b"\x02"]), t0 + 760 * MS);
        let (_, seen) = tick(&mut w, t0 + 1060 * MS);
        assert!(
            matches!(seen[..], [Event::PeerLost { delay_ms: 50, .. }]),
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
            ticket: first(),
            reply: msg(&[b"x"]),
        };
        let (outs, _) = handle(&mut w, Input::Done(late), t0 + 360 * MS);
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(w.report().replied, 0);
    }

    #[test]
    fn a_second_request_while_busy_is_served_after_the_current_and_garbage_is_dropped() {
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
        // The Guide's ppqueue marks a busy worker ready on its heartbeat (trap 7) and hands
        // it another request: held, counted, not dropped.
        let (outs, seen) = handle(&mut w, on(&[b"d", b"", b"2"]), t0);
        assert!(outs.is_empty());
        assert!(
            matches!(
                seen[..],
                [Event::Log {
                    level: Level::Warn,
                    ..
                }]
            ),
            "{seen:?}"
        );
        assert_eq!(w.report().held_while_busy, Some(1));
        for bad in [&[b"\x01" as &[u8]][..], &[b"\x07"], &[]] {
            let (outs, seen) = handle(&mut w, on(bad), t0);
            assert!(outs.is_empty(), "{bad:?}");
            assert!(
                matches!(seen[..], [Event::Invalid { .. }]),
                "{bad:?}: {seen:?}"
            );
        }
        assert_eq!(w.report().invalid, 3);
        // The work stall is a deadline; the first request is answered, then the second
        // starts its own work time.
        assert_eq!(tick(&mut w, t0 + 250 * MS).0, [sent(&[b"c", b"", b"1"])]);
        let second = sent(&[b"d", b"", b"2"]);
        handle(&mut w, on(&[b"\x02"]), t0 + 250 * MS); // the queue is alive
        assert!(!tick(&mut w, t0 + 499 * MS).0.contains(&second));
        assert!(tick(&mut w, t0 + 500 * MS).0.contains(&second));
        assert_eq!(w.report().replied, 2);
    }

    #[test]
    fn heartbeats_and_the_next_ready_go_out_in_the_queues_spelling() {
        let t0 = Instant::now();
        let mut w = started(PirateProtocol::Paranoid, FaultPlan::default(), t0);
        // The Guide's C++ ppqueue says "HEARTBEAT": ours follow suit.
        handle(&mut w, on(&[b"HEARTBEAT"]), t0 + 50 * MS);
        assert_eq!(w.report().invalid, 0);
        let (outs, _) = tick(&mut w, t0 + 100 * MS);
        assert_eq!(outs, [sent(&[b"HEARTBEAT"])]);
        // It goes silent (restarted, say): the new socket keeps the spelling it answered.
        tick(&mut w, t0 + 350 * MS);
        let (outs, _) = tick(&mut w, t0 + 400 * MS);
        assert_eq!(outs.last(), Some(&sent(&[b"READY"])), "{outs:?}");
        let (outs, _) = tick(&mut w, t0 + 500 * MS);
        assert_eq!(outs, [sent(&[b"HEARTBEAT"])]);
        // A queue that answers in 6/PPP's bytes (ppqueue.py takes any READY) is followed.
        handle(&mut w, on(&[b"\x02"]), t0 + 550 * MS);
        let (outs, _) = tick(&mut w, t0 + 600 * MS);
        assert_eq!(outs, [sent(&[b"\x02"])]);
        tick(&mut w, t0 + 850 * MS);
        let (outs, _) = tick(&mut w, t0 + 900 * MS);
        assert_eq!(outs.last(), Some(&sent(&[b"\x01"])), "{outs:?}");
    }

    /// The READY of each socket a silent queue makes the worker open, in turn.
    fn readies(dialect: ReadyDialect, sockets: usize) -> (Vec<Vec<u8>>, Vec<Event>) {
        let t0 = Instant::now();
        let mut conf = config(PirateProtocol::Paranoid, FaultPlan::default());
        conf.dialect = dialect;
        let mut w = Worker::new(&conf);
        let (mut all, mut events) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
        let mut now = t0;
        // The first socket is the reactor's; the others are opened by the machine.
        while all.iter().filter(|o| matches!(o, Output::Open(_))).count() + 1 < sockets {
            now += 10 * MS;
            let (outs, seen) = tick(&mut w, now);
            all.extend(outs);
            events.extend(seen);
        }
        let readies = all
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { msg, .. } if msg.len() == 1 => Some(msg.get(0).unwrap().to_vec()),
                _ => None,
            })
            .filter(|f| f == b"\x01" || f == b"READY")
            .collect();
        (readies, events)
    }

    #[test]
    fn auto_alternates_the_ready_spelling_on_silent_sockets_and_says_so_once() {
        let (readies, events) = readies(ReadyDialect::Auto, 4);
        assert_eq!(
            readies,
            [
                b"\x01".to_vec(),
                b"READY".to_vec(),
                b"\x01".to_vec(),
                b"READY".to_vec()
            ]
        );
        let told = events
            .iter()
            .filter(|e| format!("{e:?}").contains("as the Guide's C++ ppqueue needs"))
            .count();
        assert_eq!(told, 1, "{events:?}");
    }

    #[test]
    fn a_pinned_dialect_never_changes_and_says_nothing() {
        for (dialect, word) in [
            (ReadyDialect::Rfc, b"\x01".to_vec()),
            (ReadyDialect::GuideCpp, b"READY".to_vec()),
        ] {
            let (readies, events) = readies(dialect, 3);
            assert_eq!(readies, vec![word; 3], "{dialect:?}");
            assert!(
                !format!("{events:?}").contains("C++ ppqueue"),
                "{dialect:?}"
            );
        }
        // Pinned to the Guide's C++ words, heartbeats are words from the start.
        let t0 = Instant::now();
        let mut conf = config(PirateProtocol::Paranoid, FaultPlan::default());
        conf.dialect = ReadyDialect::GuideCpp;
        let mut w = Worker::new(&conf);
        step(&mut w, |w, out, ev| w.start(t0, out, ev));
        let (outs, _) = tick(&mut w, t0 + 100 * MS);
        assert_eq!(outs, [sent(&[b"HEARTBEAT"])]);
        // A Simple worker pinned to the words says READY as one.
        conf.protocol = PirateProtocol::Simple;
        let mut w = Worker::new(&conf);
        let (outs, _) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
        assert_eq!(outs.last(), Some(&sent(&[b"READY"])), "{outs:?}");
        // A 6/PPP heartbeat is no request: the READY owed for it is the pinned word too.
        handle(&mut w, on(&[b"\x02"]), t0);
        let (outs, _) = tick(&mut w, t0);
        assert_eq!(outs, [sent(&[b"READY"])]);
    }

    #[test]
    fn held_requests_are_bounded_and_lost_with_their_socket() {
        let t0 = Instant::now();
        let mut w = started(
            PirateProtocol::Paranoid,
            FaultPlan {
                work: Duration::from_millis(250),
                ..Default::default()
            },
            t0,
        );
        handle(&mut w, on(&[b"c", b"", b"0"]), t0);
        for i in 1..=MAX_HELD + 1 {
            handle(&mut w, on(&[b"c", b"", i.to_string().as_bytes()]), t0);
        }
        assert_eq!(w.report().held_while_busy, Some(MAX_HELD as u64));
        assert_eq!(w.report().invalid, 1, "the one past the bound");
        // The queue goes silent: the socket, its request and the held ones are gone.
        let (outs, _) = tick(&mut w, t0 + 300 * MS);
        assert!(outs.contains(&Output::Close(SOCKET)), "{outs:?}");
        assert!(w.sessions[0].held.is_empty());
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
        assert_eq!(
            w.next_deadline(),
            Some(t0),
            "the owed READY is due: tick at once"
        );
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
        // The broker took the READY (a HEARTBEAT), then says DISCONNECT.
        handle(&mut w, on(&[b"MDPW02", b"\x05"]), t0);
        let (outs, seen) = handle(&mut w, on(&[b"MDPW02", b"\x06"]), t0);
        assert_eq!(outs, [Output::Close(SOCKET)]);
        // The broker is there and asked for a fresh session: no back-off, as the Guide's
        // workers do.
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::PeerLost { reason, delay_ms: 0, peer } if peer == "broker" && reason == "disconnect"
        )));
        assert_eq!(w.next_deadline(), Some(t0));
        let (outs, _) = tick(&mut w, t0);
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

    // --concurrency N: N sessions from one process.

    fn on_slot(slot: Slot, frames: &[&[u8]]) -> Input<Done> {
        Input::Message {
            slot,
            msg: msg(frames),
        }
    }

    fn sent_on(slot: Slot, frames: &[&[u8]]) -> Output<Job> {
        Output::Send {
            slot,
            msg: msg(frames),
        }
    }

    /// A started worker of `n` sessions running `handler`, its start outputs taken. A
    /// Majordomo one has been told by its broker that no credit is granted (a standard
    /// HEARTBEAT first), so it opened the other sessions.
    fn sessions(protocol: PirateProtocol, n: usize, handler: Handler, t0: Instant) -> Worker {
        let mut cfg = config(protocol, FaultPlan::default());
        cfg.concurrency = n;
        cfg.handler = handler;
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        no_credit(&mut w, t0);
        w
    }

    /// A Majordomo worker asking for credit hears a standard HEARTBEAT first: the broker
    /// ignored the credit frame.
    fn no_credit(w: &mut Worker, t0: Instant) {
        if matches!(w.config.protocol, PirateProtocol::Majordomo(_)) && w.config.concurrency > 1 {
            handle(w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), t0);
        }
    }

    const MDP: PirateProtocol = PirateProtocol::Majordomo(Version::V1);

    fn mdp_request(client: &[u8], body: &[u8]) -> Vec<Vec<u8>> {
        [b"" as &[u8], b"MDPW01", b"\x02", client, b"", body]
            .iter()
            .map(|f| f.to_vec())
            .collect()
    }

    fn frames(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(Vec::as_slice).collect()
    }

    fn ticket(session: usize, generation: u64) -> Ticket {
        Ticket {
            session,
            generation,
            lane: 0,
        }
    }

    #[test]
    fn n_sessions_each_open_their_own_socket_and_send_ready() {
        let t0 = Instant::now();
        let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
        cfg.concurrency = 3;
        let w = Worker::new(&cfg);
        let specs = w.sockets();
        assert_eq!(
            specs.iter().map(|s| s.slot).collect::<Vec<_>>(),
            [0, 1, 2],
            "one slot per session"
        );
        for (i, spec) in specs.iter().enumerate() {
            assert_eq!(spec.kind, SocketKind::Dealer);
            let id = spec.identity.as_ref().unwrap();
            assert!(id.starts_with(format!("t-{}-", i + 1).as_bytes()), "{id:?}");
        }
        // Majordomo: one connection asking for credit 3, and when the broker's first word
        // is a standard HEARTBEAT (it ignored the frame), the other two sessions open.
        let mut cfg = config(MDP, FaultPlan::default());
        cfg.concurrency = 3;
        let mut w = Worker::new(&cfg);
        assert_eq!(w.sockets().len(), 1, "one connection first");
        let (outs, seen) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
        let ready: &[&[u8]] = &[b"", b"MDPW01", b"\x01", b"echo"];
        let asking: &[&[u8]] = &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"];
        assert_eq!(outs, [sent_on(0, asking)]);
        let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), t0);
        assert_eq!(outs.len(), 4, "{outs:?}");
        for (i, slot) in [1, 2].into_iter().enumerate() {
            let Output::Open(spec) = &outs[2 * i] else {
                panic!("{outs:?}");
            };
            assert_eq!((spec.slot, spec.kind), (slot, SocketKind::Dealer));
            assert_eq!(spec.connect, ["tcp://127.0.0.1:5556"]);
            let id = spec.identity.as_ref().unwrap();
            assert!(
                id.starts_with(format!("t-{}-", slot + 1).as_bytes()),
                "{id:?}"
            );
            assert_eq!(outs[2 * i + 1], sent_on(slot, ready), "a standard READY");
        }
        let ids = w.identities();
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        assert_eq!(
            seen.iter()
                .filter(|e| matches!(e, Event::Started { .. }))
                .count(),
            1,
            "one process, one started event"
        );
        // Every session heartbeats its own socket.
        let (outs, _) = tick(&mut w, t0 + 100 * MS);
        let beat: &[u8] = b"\x04";
        assert_eq!(
            outs,
            [0, 1, 2].map(|slot| sent_on(slot, &[b"", b"MDPW01", beat]))
        );
    }

    #[test]
    fn two_requests_run_in_parallel_on_two_sessions_and_each_reply_goes_home() {
        let t0 = Instant::now();
        let exec = Handler::Exec(Exec::new("cat"));
        let mut w = sessions(MDP, 2, exec.clone(), t0);
        let a = mdp_request(b"ca", b"1");
        let b = mdp_request(b"cb", b"2");
        let (outs, _) = handle(&mut w, on_slot(0, &frames(&a)), t0);
        assert_eq!(
            outs,
            [Output::Start(Job::Handle {
                ticket: ticket(0, 1),
                handler: exec.clone(),
                body: msg(&[b"1"]),
                stream: false
            })]
        );
        assert!(w.wants(1), "a busy session does not stop the other reading");
        let (outs, _) = handle(&mut w, on_slot(1, &frames(&b)), t0 + MS);
        assert_eq!(
            outs,
            [Output::Start(Job::Handle {
                ticket: ticket(1, 2),
                handler: exec,
                body: msg(&[b"2"]),
                stream: false
            })]
        );
        assert_eq!(w.report().in_flight_max, Some(2), "both at once");
        // The second finishes first: each reply goes out on its own session's socket.
        let done = |session, generation, body: &[u8]| {
            Input::Done(Done::Reply {
                ticket: ticket(session, generation),
                reply: msg(&[body]),
            })
        };
        let (outs, _) = handle(&mut w, done(1, 2, b"2"), t0 + 2 * MS);
        assert_eq!(
            outs,
            [sent_on(1, &[b"", b"MDPW01", b"\x03", b"cb", b"", b"2"])]
        );
        let (outs, _) = handle(&mut w, done(0, 1, b"1"), t0 + 3 * MS);
        assert_eq!(
            outs,
            [sent_on(0, &[b"", b"MDPW01", b"\x03", b"ca", b"", b"1"])]
        );
        assert_eq!((w.report().requests, w.report().replied), (2, 2));
        // A session takes its next request once its reply is out.
        let (outs, _) = handle(&mut w, on_slot(1, &frames(&b)), t0 + 4 * MS);
        assert!(matches!(outs[..], [Output::Start(_)]), "{outs:?}");
        assert_eq!(w.report().in_flight_max, Some(2));
    }

    #[test]
    fn a_second_request_on_a_busy_session_waits_for_it_even_while_others_are_idle() {
        let t0 = Instant::now();
        let mut w = sessions(MDP, 2, Handler::Exec(Exec::new("cat")), t0);
        let a = mdp_request(b"ca", b"1");
        handle(&mut w, on_slot(0, &frames(&a)), t0);
        let (outs, seen) = handle(&mut w, on_slot(0, &frames(&a)), t0);
        assert!(outs.is_empty(), "{outs:?}");
        assert!(matches!(
            seen[..],
            [Event::Log {
                level: Level::Warn,
                ..
            }]
        ));
        assert_eq!(
            (
                w.report().requests,
                w.report().held_while_busy,
                w.report().invalid
            ),
            (1, Some(1), 0),
            "held on its own session, not moved to the idle one"
        );
        assert_eq!(w.sessions[1].busy(), 0);
    }

    #[test]
    fn one_sessions_silent_broker_reconnects_only_that_session() {
        let t0 = Instant::now();
        let mut w = sessions(MDP, 2, Handler::Echo, t0);
        let kept = w.identities()[1].to_vec();
        let beat: &[&[u8]] = &[b"", b"MDPW01", b"\x04"];
        // The broker keeps talking on session 1 only.
        handle(&mut w, on_slot(1, beat), t0 + 150 * MS);
        handle(&mut w, on_slot(1, beat), t0 + 250 * MS);
        let (outs, seen) = tick(&mut w, t0 + 300 * MS);
        assert!(outs.contains(&Output::Close(0)), "{outs:?}");
        assert!(
            !outs
                .iter()
                .any(|o| matches!(o, Output::Close(1) | Output::Open(_))),
            "{outs:?}"
        );
        assert!(seen
            .iter()
            .any(|e| matches!(e, Event::PeerLost { delay_ms: 50, .. })));
        assert!(!w.wants(0) && w.wants(1));
        // Session 1 serves on while session 0 waits out its back-off.
        let (outs, _) = handle(
            &mut w,
            on_slot(1, &frames(&mdp_request(b"c", b"x"))),
            t0 + 320 * MS,
        );
        assert_eq!(
            outs,
            [sent_on(1, &[b"", b"MDPW01", b"\x03", b"c", b"", b"x"])]
        );
        let (outs, _) = tick(&mut w, t0 + 350 * MS);
        match &outs[..] {
            [Output::Open(spec), ready] => {
                assert_eq!(spec.slot, 0);
                assert!(
                    spec.identity.as_ref().unwrap().starts_with(b"t-3-"),
                    "the process's third socket"
                );
                assert_eq!(
                    spec.connect,
                    ["tcp://127.0.0.1:6556"],
                    "that session's next failover endpoint"
                );
                assert_eq!(ready, &sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo"]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.identities()[1], &kept[..], "session 1 kept its socket");
        assert_eq!(w.report().reconnects, 1);
    }

    #[test]
    fn a_busy_timeout_disconnect_loses_only_that_sessions_request() {
        // The broker's --busy-timeout: it sends DISCONNECT to the worker that held one
        // request too long. That session's request is lost (its client retries); the other
        // session's request is still answered.
        let t0 = Instant::now();
        let mut w = sessions(MDP, 2, Handler::Exec(Exec::new("cat")), t0);
        handle(&mut w, on_slot(0, &frames(&mdp_request(b"ca", b"1"))), t0);
        handle(&mut w, on_slot(1, &frames(&mdp_request(b"cb", b"2"))), t0);
        let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0 + 50 * MS);
        assert_eq!(outs, [Output::Close(0)]);
        let late = Done::Reply {
            ticket: ticket(0, 1),
            reply: msg(&[b"1"]),
        };
        assert!(handle(&mut w, Input::Done(late), t0 + 60 * MS).0.is_empty());
        let on_time = Done::Reply {
            ticket: ticket(1, 2),
            reply: msg(&[b"2"]),
        };
        assert_eq!(
            handle(&mut w, Input::Done(on_time), t0 + 70 * MS).0,
            [sent_on(1, &[b"", b"MDPW01", b"\x03", b"cb", b"", b"2"])]
        );
        assert_eq!((w.report().requests, w.report().replied), (2, 1));
        // Session 0 registers again with a fresh socket; a reply for its old one, even one
        // arriving after the new socket took a request, is still dropped.
        let (outs, _) = tick(&mut w, t0 + 100 * MS);
        assert!(
            matches!(&outs[..], [Output::Open(spec), _] if spec.slot == 0),
            "{outs:?}"
        );
        handle(
            &mut w,
            on_slot(0, &frames(&mdp_request(b"cc", b"3"))),
            t0 + 110 * MS,
        );
        let stale = Done::Reply {
            ticket: ticket(0, 1),
            reply: msg(&[b"1"]),
        };
        assert!(handle(&mut w, Input::Done(stale), t0 + 120 * MS)
            .0
            .is_empty());
        let fresh = Done::Reply {
            ticket: ticket(0, 3),
            reply: msg(&[b"3"]),
        };
        assert_eq!(
            handle(&mut w, Input::Done(fresh), t0 + 130 * MS).0,
            [sent_on(0, &[b"", b"MDPW01", b"\x03", b"cc", b"", b"3"])]
        );
    }

    #[test]
    fn a_crash_on_one_sessions_request_kills_every_session() {
        let t0 = Instant::now();
        let mut cfg = config(
            MDP,
            FaultPlan {
                crash_after: Some(1),
                ..Default::default()
            },
        );
        cfg.concurrency = 2;
        cfg.handler = Handler::Exec(Exec::new("cat"));
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        no_credit(&mut w, t0);
        handle(&mut w, on_slot(0, &frames(&mdp_request(b"ca", b"1"))), t0);
        let (outs, _) = handle(&mut w, on_slot(1, &frames(&mdp_request(b"cb", b"2"))), t0);
        assert_eq!(outs, [Output::Crash]);
        assert!(!w.wants(0) && !w.wants(1));
        assert_eq!(w.next_deadline(), None);
        assert!(tick(&mut w, t0 + 100 * MS).0.is_empty());
    }

    #[test]
    fn a_freeze_on_one_sessions_request_stops_every_session() {
        let t0 = Instant::now();
        let mut cfg = config(
            MDP,
            FaultPlan {
                freeze_rate: 1.0,
                freeze_for: Duration::from_millis(150),
                faults_after: 0,
                ..Default::default()
            },
        );
        cfg.concurrency = 2;
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        no_credit(&mut w, t0);
        let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(b"ca", b"1"))), t0);
        assert!(outs.is_empty(), "{outs:?}");
        assert!(!w.wants(0) && !w.wants(1), "a hung process reads nothing");
        assert!(tick(&mut w, t0 + 100 * MS).0.is_empty(), "nor heartbeats");
        // Thawed: the request is answered and both sessions heartbeat and read again.
        let (outs, _) = tick(&mut w, t0 + 150 * MS);
        assert_eq!(
            outs,
            [
                sent_on(0, &[b"", b"MDPW01", b"\x03", b"ca", b"", b"1"]),
                sent_on(1, &[b"", b"MDPW01", b"\x04"]),
            ]
        );
        assert!(w.wants(0) && w.wants(1));
    }

    #[test]
    fn simple_sessions_are_req_sockets_that_each_alternate_on_their_own() {
        let t0 = Instant::now();
        let mut w = sessions(PirateProtocol::Simple, 2, Handler::Echo, t0);
        assert!(w.sockets().iter().all(|s| s.kind == SocketKind::Req));
        assert!(handle(&mut w, on_slot(1, &[b"c", b"", b"1"]), t0)
            .0
            .is_empty());
        assert!(!w.wants(1) && w.wants(0), "only the busy REQ socket waits");
        assert_eq!(tick(&mut w, t0).0, [sent_on(1, &[b"c", b"", b"1"])]);
        assert!(w.wants(1));
    }

    #[test]
    fn two_sessions_stream_mdp_0_2_parts_side_by_side_each_to_its_own_client() {
        let t0 = Instant::now();
        let exec = Handler::Exec(Exec::new("printf 'a\\nb\\n'"));
        let mut w = sessions(PirateProtocol::Majordomo(Version::V2), 2, exec, t0);
        let mut jobs = Vec::new();
        for (slot, client) in [(0, b"ca"), (1, b"cb")] {
            let request: &[&[u8]] = &[b"MDPW02", b"\x02", client, b"", b"x"];
            match handle(&mut w, on_slot(slot, request), t0).0.pop() {
                Some(Output::Start(job)) => jobs.push(job),
                other => panic!("{other:?}"),
            }
        }
        // Both commands run before either reply goes out: their parts interleave.
        let done: Vec<Done> = jobs.into_iter().map(perform).collect();
        let mut nexts = Vec::new();
        for (d, (slot, client)) in done.into_iter().zip([(0, b"ca"), (1, b"cb")]) {
            let (mut outs, _) = handle(&mut w, Input::Done(d), t0);
            match outs.pop() {
                Some(Output::Start(next @ Job::Next { ticket: t, .. })) => {
                    assert_eq!(t.session, slot);
                    nexts.push(next);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                outs,
                [sent_on(slot, &[b"MDPW02", b"\x03", client, b"", b"a"])]
            );
        }
        for (next, (slot, client)) in nexts.into_iter().zip([(0, b"ca"), (1, b"cb")]).rev() {
            let (outs, _) = handle(&mut w, Input::Done(perform(next)), t0);
            assert_eq!(
                outs,
                [sent_on(slot, &[b"MDPW02", b"\x04", client, b"", b"b"])]
            );
        }
        assert_eq!((w.report().replied, w.report().in_flight_max), (2, Some(2)));
    }

    #[test]
    fn work_time_runs_side_by_side_on_every_session() {
        // --work 100ms: two requests 10 ms apart are answered 100 ms after each, not one
        // after the other.
        let t0 = Instant::now();
        let mut cfg = config(
            PirateProtocol::Paranoid,
            FaultPlan {
                work: Duration::from_millis(100),
                ..Default::default()
            },
        );
        cfg.concurrency = 2;
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        assert!(handle(&mut w, on_slot(0, &[b"a", b"", b"1"]), t0)
            .0
            .is_empty());
        let (outs, _) = handle(&mut w, on_slot(1, &[b"b", b"", b"2"]), t0 + 10 * MS);
        assert!(outs.is_empty());
        assert_eq!(w.next_deadline(), Some(t0 + 100 * MS));
        let (outs, _) = tick(&mut w, t0 + 100 * MS);
        assert_eq!(
            outs,
            [sent_on(0, &[b"a", b"", b"1"]), sent_on(1, &[b"\x02"])]
        );
        assert_eq!(w.next_deadline(), Some(t0 + 110 * MS));
        let (outs, _) = tick(&mut w, t0 + 110 * MS);
        assert_eq!(outs, [sent_on(1, &[b"b", b"", b"2"])]);
        assert_eq!(w.report().in_flight_max, Some(2));
    }

    #[test]
    fn the_concurrency_is_bounded() {
        let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
        cfg.concurrency = 0;
        assert_eq!(Worker::new(&cfg).sockets().len(), 1);
        cfg.concurrency = MAX_CONCURRENCY + 1;
        assert_eq!(Worker::new(&cfg).sockets().len(), MAX_CONCURRENCY);
        let mut cfg = config(MDP, FaultPlan::default());
        cfg.concurrency = MAX_CONCURRENCY + 1;
        let w = Worker::new(&cfg);
        assert_eq!(w.sessions[0].offer, Some(MAX_CONCURRENCY as u32));
        cfg.concurrency = 1;
        assert_eq!(Worker::new(&cfg).sessions[0].offer, None, "one: standard");
    }

    // --concurrency N against a broker that grants credit: one connection, N lanes.

    /// A started Majordomo worker with `--concurrency asked`: its READY asked for that much
    /// credit, and nothing has answered yet.
    fn asking(asked: usize, handler: Handler, t0: Instant) -> Worker {
        let mut cfg = config(MDP, FaultPlan::default());
        cfg.concurrency = asked;
        cfg.handler = handler;
        let mut w = Worker::new(&cfg);
        w.start(t0, &mut Outbox::default(), &mut Events::discard());
        w
    }

    /// A started Majordomo worker asking for `asked` credit, granted `granted`.
    fn granted(asked: usize, granted: u32, handler: Handler, t0: Instant) -> Worker {
        let mut w = asking(asked, handler, t0);
        let grant = format!("credit={granted}");
        let (outs, _) = handle(
            &mut w,
            on_slot(0, &[b"", b"MDPW01", b"\x04", grant.as_bytes()]),
            t0,
        );
        assert!(
            outs.is_empty(),
            "a grant is answered with nothing: {outs:?}"
        );
        w
    }

    fn lane_ticket(lane: usize) -> Ticket {
        Ticket {
            session: 0,
            generation: 1,
            lane,
        }
    }

    #[test]
    fn a_granted_connection_serves_n_at_once_and_each_reply_carries_its_own_handle() {
        let t0 = Instant::now();
        let exec = Handler::Exec(Exec::new("cat"));
        let mut w = granted(3, 3, exec.clone(), t0);
        assert_eq!(w.sockets().len(), 1, "no more sessions");
        for (lane, client) in [b"h0", b"h1", b"h2"].into_iter().enumerate() {
            let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(client, b"x"))), t0);
            assert_eq!(
                outs,
                [Output::Start(Job::Handle {
                    ticket: lane_ticket(lane),
                    handler: exec.clone(),
                    body: msg(&[b"x"]),
                    stream: false
                })]
            );
        }
        assert_eq!(w.report().in_flight_max, Some(3));
        assert!(
            w.wants(0),
            "a full connection still reads (heartbeats, DISCONNECT)"
        );
        // A fourth is more than the credit: held, served when a lane frees.
        let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(b"h3", b"y"))), t0);
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(w.report().held_while_busy, Some(1));
        // Lane 1 finishes first: its reply goes back with its handle, and the held request
        // takes lane 1.
        let (outs, _) = handle(
            &mut w,
            Input::Done(Done::Reply {
                ticket: lane_ticket(1),
                reply: msg(&[b"one"]),
            }),
            t0 + MS,
        );
        assert_eq!(
            outs,
            [
                sent_on(0, &[b"", b"MDPW01", b"\x03", b"h1", b"", b"one"]),
                Output::Start(Job::Handle {
                    ticket: lane_ticket(1),
                    handler: exec,
                    body: msg(&[b"y"]),
                    stream: false
                })
            ]
        );
        // A reply for a lane whose request is gone (answered already) goes nowhere.
        let (outs, _) = handle(
            &mut w,
            Input::Done(Done::Reply {
                ticket: Ticket {
                    generation: 9,
                    ..lane_ticket(0)
                },
                reply: msg(&[b"stale"]),
            }),
            t0 + MS,
        );
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!((w.report().requests, w.report().replied), (4, 1));
    }

    #[test]
    fn an_echo_worker_with_credit_answers_every_request_at_once() {
        let t0 = Instant::now();
        let mut w = granted(4, 4, Handler::Echo, t0);
        for client in [b"a", b"b", b"c", b"d", b"e"] {
            let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(client, b"hi"))), t0);
            assert_eq!(
                outs,
                [sent_on(0, &[b"", b"MDPW01", b"\x03", client, b"", b"hi"])]
            );
        }
        assert_eq!(w.report().replied, 5);
    }

    #[test]
    fn a_smaller_grant_is_the_number_of_lanes_and_a_bigger_one_is_cut_to_the_ask() {
        let t0 = Instant::now();
        let cat = || Handler::Exec(Exec::new("cat"));
        let w = granted(4, 2, cat(), t0);
        assert_eq!(w.sessions[0].lanes.len(), 2);
        assert_eq!(w.sessions.len(), 1, "no sessions for the rest");
        let w = granted(4, 1000, cat(), t0);
        assert_eq!(w.sessions[0].lanes.len(), 4);
    }

    #[test]
    fn a_lost_granted_connection_loses_all_its_requests_and_asks_for_credit_again() {
        let t0 = Instant::now();
        let mut w = granted(3, 3, Handler::Exec(Exec::new("cat")), t0);
        handle(&mut w, on_slot(0, &frames(&mdp_request(b"h0", b"x"))), t0);
        handle(&mut w, on_slot(0, &frames(&mdp_request(b"h1", b"x"))), t0);
        let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0 + MS);
        assert_eq!(outs, [Output::Close(0)]);
        assert_eq!(w.in_flight, 0, "both requests went with the connection");
        // Their replies, computed after, go nowhere.
        for lane in [0, 1] {
            let (outs, _) = handle(
                &mut w,
                Input::Done(Done::Reply {
                    ticket: lane_ticket(lane),
                    reply: msg(&[b"late"]),
                }),
                t0 + 2 * MS,
            );
            assert!(outs.is_empty(), "{outs:?}");
        }
        // The new socket asks again, and holds one request until it is granted.
        let (outs, _) = tick(&mut w, t0 + 2 * MS);
        assert!(
            matches!(&outs[0], Output::Open(spec) if spec.slot == 0),
            "{outs:?}"
        );
        assert_eq!(
            outs[1],
            sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"])
        );
        assert_eq!(w.sessions[0].lanes.len(), 1);
        assert!(w.sessions[0].awaiting_grant);
    }

    #[test]
    fn after_failing_over_to_a_broker_that_grants_no_credit_the_new_sessions_go_there_too() {
        let t0 = Instant::now();
        let mut w = asking(3, Handler::Echo, t0);
        // The primary grants credit, then sends DISCONNECT: the session reopens on the
        // failover endpoint and asks again.
        handle(
            &mut w,
            on_slot(0, &[b"", b"MDPW01", b"\x04", b"credit=3"]),
            t0,
        );
        assert_eq!(w.sessions[0].lanes.len(), 3);
        handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0);
        let (outs, _) = tick(&mut w, t0);
        assert!(
            matches!(&outs[0], Output::Open(s) if s.connect == ["tcp://127.0.0.1:6556"]),
            "{outs:?}"
        );
        assert_eq!(
            outs[1],
            sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"])
        );
        // That broker's first word is a standard HEARTBEAT: two more sessions, on it.
        let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), t0);
        let opened: Vec<&SocketSpec> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Open(spec) => Some(spec),
                _ => None,
            })
            .collect();
        assert_eq!(opened.len(), 2, "{outs:?}");
        for spec in opened {
            assert_eq!(spec.connect, ["tcp://127.0.0.1:6556"]);
        }
        assert_eq!(w.sessions[0].lanes.len(), 1, "an ordinary session now");
    }

    #[test]
    fn a_disconnect_in_answer_to_a_ready_with_credit_is_no_answer_to_the_credit() {
        // A broker that refuses the READY (DISCONNECT) has not said it ignores credit: the
        // next socket asks again, and no sessions open.
        let t0 = Instant::now();
        let mut w = asking(3, Handler::Echo, t0);
        let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0);
        assert_eq!(outs, [Output::Close(0)]);
        assert_eq!(w.sessions.len(), 1);
        // A refused READY: the next socket after the back-off (50 ms here).
        let (outs, _) = tick(&mut w, t0 + 50 * MS);
        assert_eq!(
            outs[1],
            sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"])
        );
    }

    #[test]
    fn a_grant_nobody_asked_for_is_invalid() {
        let t0 = Instant::now();
        let mut w = granted(2, 2, Handler::Echo, t0);
        let (outs, seen) = handle(
            &mut w,
            on_slot(0, &[b"", b"MDPW01", b"\x04", b"credit=9"]),
            t0,
        );
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(w.report().invalid, 1);
        assert!(seen.iter().any(|e| matches!(e, Event::Invalid { .. })));
        assert_eq!(w.sessions[0].lanes.len(), 2, "unchanged");
        // And a worker that never asked (one at a time) counts it invalid too.
        let mut w = started(MDP, FaultPlan::default(), t0);
        handle(
            &mut w,
            on_slot(0, &[b"", b"MDPW01", b"\x04", b"credit=9"]),
            t0,
        );
        assert_eq!(w.report().invalid, 1);
        assert_eq!(w.sessions[0].lanes.len(), 1);
    }

    #[test]
    fn a_disconnect_in_answer_to_ready_waits_out_the_back_off_instead_of_looping() {
        // A broker that refuses every READY (the Guide's C++ mdbroker refuses identities that
        // start with m, i or '.'): asking again at once spun ~400 sockets a second. Each
        // refusal waits the doubling back-off; a broker that took the READY (any other word
        // first) and then says DISCONNECT gets a new session at once, back-off reset.
        let t0 = Instant::now();
        let mut w = started(MDP, FaultPlan::default(), t0);
        let refuse = || on_slot(0, &[b"", b"MDPW01", b"\x05"]);
        let mut now = t0;
        for delay in [50, 100, 200, 200] {
            let (outs, seen) = handle(&mut w, refuse(), now);
            assert_eq!(outs, [Output::Close(0)]);
            assert!(seen.iter().any(|e| matches!(
                e,
                Event::PeerLost { reason, delay_ms, .. } if reason == "disconnect" && *delay_ms == delay
            )), "{seen:?}");
            assert_eq!(w.next_deadline(), Some(now + delay as u32 * MS));
            assert!(tick(&mut w, now + (delay as u32 - 1) * MS).0.is_empty());
            now += delay as u32 * MS;
            let (outs, _) = tick(&mut w, now);
            assert!(matches!(&outs[..], [Output::Open(_), _]), "{outs:?}");
        }
        // Taken this time (a HEARTBEAT first), then DISCONNECT: at once.
        handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), now);
        let (_, seen) = handle(&mut w, refuse(), now);
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::PeerLost { reason, delay_ms: 0, .. } if reason == "disconnect"
        )));
        assert_eq!(w.next_deadline(), Some(now));
    }
}
