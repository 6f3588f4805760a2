//! The one event loop: it owns every socket, polls them, keeps the timers, runs work on
//! threads, watches the stop signal, and drives any [`Machine`].
//!
//! A role's protocol logic is a [`Machine`]: a pure state machine that is told what happened
//! ([`Machine::handle`], [`Machine::tick`]) and answers with [`Output`]s (send this, open that
//! socket, start this job). It never touches a socket, a clock or a thread, so it is tested
//! with a fake clock and plain values. The reactor is the only place that polls (`poll(2)` on the sockets' `ZMQ_FD`s).
//!
//! # The hot path
//!
//! The loop blocks only when there is nothing left to do: every socket the machine wants
//! read was read until ZeroMQ said `EAGAIN`, and nothing was sent on it since. Until then it
//! keeps draining (up to [`BATCH`] messages per socket per pass, so no socket starves the
//! others), handing each message to the machine and sending what the machine answered in one
//! burst after the pass. So a busy broker handles many messages per wake-up and never polls
//! between them, without the machine knowing.
//!
//! It blocks in one `poll(2)` on the sockets' `ZMQ_FD`s and a wake-up pipe, not in
//! `zmq_poll`, which polls twice (once without waiting) and asks every socket for
//! `ZMQ_EVENTS` before and after (each one more system call). A `ZMQ_FD` is edge-triggered:
//! it stays readable while the socket has unprocessed commands (a message arrived), but any
//! call on the socket may process them, a send included. Hence the rule above: a socket is
//! *settled* once read until `EAGAIN`; a send on it, or its `ZMQ_FD` firing, unsettles it;
//! and only when every wanted socket is settled does the loop block. A socket the machine
//! does not want is neither read nor polled, and stays settled or not until it is wanted
//! again: its `ZMQ_FD` still fires for what arrived meanwhile.
//!
//! # Sends never block
//!
//! A DEALER or REQ send blocks while no pipe to a peer takes the message: all of them are
//! full (back-pressure), or there is none, and libzmq removes a connecting socket's pipe for
//! good when the handshake fails with a protocol error (a ZAP denial answered with an
//! `ERROR` command, a wrong CURVE key: `session_base.cpp`, `engine_error`, terminates the
//! session instead of reconnecting). The loop used to send blocking, and such a send never
//! returned: the loop stopped, and with it every deadline (a refused client printed its
//! first `sent` and then nothing, whatever its `--timeout`). So every send is `ZMQ_DONTWAIT`,
//! and a message the socket does not take now is kept, in order, with those after it on the
//! same socket ([`Open::unsent`], at most [`UNSENT`]), and sent as soon as the socket takes
//! it (the loop polls the socket meanwhile, wanted or not, and tries again on every pass).
//! Nothing is lost to mere back-pressure, and nothing waits on a socket that will never take
//! it: the machine's own deadline (a client's attempt timeout, a worker's heartbeat
//! liveness) closes it, and what it kept goes with it, as LINGER 0 drops what ZeroMQ holds.
//! ROUTER, REP and PUB sockets never block (they drop); [`SocketKind::MandatoryRouter`] and
//! [`SocketKind::NonBlockingDealer`] drop too, and tell the machine ([`Machine::routed`]).
//!
//! Nothing is allocated per wake-up: the poll set, the outputs carried out, and the
//! outputs a [`Machine::routed`] answer adds are buffers the loop keeps.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::Events;
use crate::msg::Message;
use crate::pool::Pool;
use crate::transport::{self, Socket};

/// A machine's name for one of its sockets: a small number it picks itself.
pub type Slot = usize;

/// The longest the loop blocks before it looks at the stop signal again.
pub const POLL_SLICE: Duration = Duration::from_millis(100);

/// The most messages read from one socket in one wake-up, so that no socket starves others.
pub const BATCH: usize = 256;

/// The most messages kept for one socket that does not take them now (see "Sends never
/// block"): libzmq's own default high-water mark, so at most twice what ZeroMQ alone would
/// hold. Past it, a new message is dropped (traced under `-v`).
pub const UNSENT: usize = 1000;

/// The stop signal, as a value: whoever holds a clone can ask the loop to stop (the binary's
/// Ctrl-C handler, a test, a library user), and the loop ends within one [`POLL_SLICE`].
#[derive(Clone, Debug, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
}

impl Stop {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Asks every loop holding this signal to stop.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// True once a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration`, waking early (with `Err(Interrupted)`) when a stop is asked for.
    /// For work threads (a worker's `--work` delay), never for machines.
    pub fn sleep(&self, duration: Duration) -> Result<()> {
        let deadline = Instant::now() + duration;
        loop {
            if self.requested() {
                return Err(Error::Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }
}

/// A socket the machine wants opened in `slot`: bound to every `bind` endpoint and connected
/// to every `connect` endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketSpec {
    pub slot: Slot,
    pub kind: SocketKind,
    /// The socket's name in traces and errors (`frontend`, `backend`, `broker`…).
    pub name: &'static str,
    pub bind: Vec<String>,
    pub connect: Vec<String>,
    /// The routing identity; `None` lets the transport pick an unguessable one.
    pub identity: Option<Vec<u8>>,
}

impl SocketSpec {
    /// A socket in `slot` bound to `endpoint` alone, its identity left to the transport.
    pub fn bound(slot: Slot, kind: SocketKind, name: &'static str, endpoint: &str) -> Self {
        SocketSpec {
            slot,
            kind,
            name,
            bind: vec![endpoint.to_string()],
            connect: Vec::new(),
            identity: None,
        }
    }
}

/// The socket types roles use (a copy of libzmq's, so machines compare and print them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    Req,
    Rep,
    Dealer,
    Router,
    Pub,
    /// A SUB socket subscribed to everything.
    Sub,
    /// A ROUTER that refuses to send to a peer that is not connected (ROUTER_MANDATORY,
    /// with ROUTER_HANDOVER): each send's fate comes back through [`Machine::routed`], so a
    /// machine learns at once that a peer is gone (the Freelance client).
    MandatoryRouter,
    /// A DEALER whose sends never block: a message its queue cannot take now (its peer's
    /// queue is full) is dropped, and each send's fate comes back through [`Machine::routed`]
    /// (the fault proxy, which must not stall every peer for one upstream that is down).
    NonBlockingDealer,
    /// A PAIR socket (a socket monitor's other end).
    Pair,
}

impl SocketKind {
    /// The libzmq socket type, as traces name it (`REQ`, `DEALER`, …).
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Req => "REQ",
            SocketKind::Rep => "REP",
            SocketKind::Dealer | SocketKind::NonBlockingDealer => "DEALER",
            SocketKind::Router | SocketKind::MandatoryRouter => "ROUTER",
            SocketKind::Pub => "PUB",
            SocketKind::Sub => "SUB",
            SocketKind::Pair => "PAIR",
        }
    }

    fn zmq(self) -> zmq::SocketType {
        match self {
            SocketKind::Req => zmq::REQ,
            SocketKind::Rep => zmq::REP,
            SocketKind::Dealer | SocketKind::NonBlockingDealer => zmq::DEALER,
            SocketKind::Pair => zmq::PAIR,
            SocketKind::Router | SocketKind::MandatoryRouter => zmq::ROUTER,
            SocketKind::Pub => zmq::PUB,
            SocketKind::Sub => zmq::SUB,
        }
    }
}

/// What the reactor tells a machine.
#[derive(Debug)]
pub enum Input<D> {
    /// A whole message arrived on `slot`.
    Message { slot: Slot, msg: Message },
    /// A job the machine started has finished.
    Done(D),
}

/// What a machine asks the reactor to do, carried out in order.
#[derive(Debug, PartialEq)]
pub enum Output<J> {
    Open(SocketSpec),
    /// Close the socket in this slot (LINGER 0: unsent messages are dropped).
    Close(Slot),
    Send {
        slot: Slot,
        msg: Message,
    },
    /// Run this job on a thread; its result comes back as [`Input::Done`].
    Start(J),
    /// An injected crash: the process dies now, as `kill -9` would kill it.
    Crash,
    /// The machine has finished; the loop returns.
    Exit,
}

/// Where a machine puts its outputs.
#[derive(Debug)]
pub struct Outbox<J> {
    outputs: Vec<Output<J>>,
}

impl<J> Default for Outbox<J> {
    fn default() -> Self {
        Outbox {
            outputs: Vec::new(),
        }
    }
}

impl<J> Outbox<J> {
    pub fn send(&mut self, slot: Slot, msg: Message) {
        self.outputs.push(Output::Send { slot, msg });
    }

    pub fn open(&mut self, spec: SocketSpec) {
        self.outputs.push(Output::Open(spec));
    }

    pub fn close(&mut self, slot: Slot) {
        self.outputs.push(Output::Close(slot));
    }

    pub fn start(&mut self, job: J) {
        self.outputs.push(Output::Start(job));
    }

    pub fn crash(&mut self) {
        self.outputs.push(Output::Crash);
    }

    pub fn exit(&mut self) {
        self.outputs.push(Output::Exit);
    }

    /// Everything asked for so far, in order, leaving the outbox empty (tests read it so).
    pub fn take(&mut self) -> Vec<Output<J>> {
        std::mem::take(&mut self.outputs)
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Moves every output of `inner` here, in order, renaming the slots it names with
    /// `slot`: a combinator wrapping another machine gives it slots of its own. `inner` keeps
    /// its capacity, so forwarding allocates nothing in steady state.
    pub fn forward(&mut self, inner: &mut Outbox<J>, slot: impl Fn(Slot) -> Slot) {
        self.outputs
            .extend(inner.outputs.drain(..).map(|output| match output {
                Output::Open(mut spec) => {
                    spec.slot = slot(spec.slot);
                    Output::Open(spec)
                }
                Output::Close(s) => Output::Close(slot(s)),
                Output::Send { slot: s, msg } => Output::Send { slot: slot(s), msg },
                other => other,
            }));
    }

    /// True once the machine asked to crash or exit: nothing more should be read.
    pub fn ends(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| matches!(o, Output::Crash | Output::Exit))
    }
}

/// A role's protocol logic, as a pure state machine the reactor drives.
pub trait Machine {
    /// Work the machine hands to a thread (running `--exec`, reading the next request).
    type Job: Send + 'static;
    /// What a finished job hands back.
    type Done: Send + 'static;

    /// The sockets to open before anything else; a bind that fails ends the run before
    /// [`start`](Self::start), so a role never says it started when it did not.
    fn sockets(&self) -> Vec<SocketSpec>;

    /// Called once, with the [`sockets`](Self::sockets) open: say so, send the first messages.
    fn start(&mut self, now: Instant, out: &mut Outbox<Self::Job>, events: &mut Events);

    /// Something happened.
    fn handle(
        &mut self,
        input: Input<Self::Done>,
        now: Instant,
        out: &mut Outbox<Self::Job>,
        events: &mut Events,
    );

    /// Time passed: called once [`next_deadline`](Self::next_deadline) is reached.
    fn tick(&mut self, now: Instant, out: &mut Outbox<Self::Job>, events: &mut Events);

    /// When [`tick`](Self::tick) must next be called, if ever.
    fn next_deadline(&self) -> Option<Instant>;

    /// A message sent on a [`SocketKind::MandatoryRouter`] or a
    /// [`SocketKind::NonBlockingDealer`] went out (`routed`) or found its peer not connected
    /// or not accepting (it was dropped). Called at once, before anything
    /// else happens; what it asks for is carried out before the outputs that followed `msg`
    /// (after [`BATCH`] unroutable sends in one go, at the next wake-up: a machine resending
    /// every unroutable message must not keep the loop from its stop signal).
    fn routed(
        &mut self,
        _slot: Slot,
        _msg: &Message,
        _routed: bool,
        _now: Instant,
        _out: &mut Outbox<Self::Job>,
        _events: &mut Events,
    ) {
    }

    /// Whether the loop should read `slot` now (a queue reads clients only while a worker is
    /// ready). Messages on a slot it does not want wait in ZeroMQ's queues.
    fn wants(&self, _slot: Slot) -> bool {
        true
    }

    /// Why the machine ended, if it ended in an error: asked once, right after it asked to
    /// exit. A Binary Star node that hears a fatal state pair exits with the pair's error
    /// (exit 69 or 2); a machine that just finished answers `None` (the default).
    fn failure(&mut self) -> Option<Error> {
        None
    }
}

/// Something a machine holds until an instant: a request stalled for its work time, then
/// handed to a job. `next_deadline` reports [`Due::when`]; `tick` takes it with
/// [`Due::take_if_due`].
#[derive(Debug)]
pub struct Due<T>(Option<(Instant, T)>);

impl<T> Due<T> {
    /// `item`, due at `when`.
    pub fn at(when: Instant, item: T) -> Self {
        Due(Some((when, item)))
    }

    /// When the item is due; `None` once it was taken.
    pub fn when(&self) -> Option<Instant> {
        self.0.as_ref().map(|(at, _)| *at)
    }

    /// The item, if it is due by `now` (and not taken yet).
    pub fn take_if_due(&mut self, now: Instant) -> Option<T> {
        if self.when()? <= now {
            self.0.take().map(|(_, item)| item)
        } else {
            None
        }
    }
}

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The stop signal was raised.
    Stopped,
    /// The machine asked to exit.
    Exited,
}

/// Runs `machine` until it exits or `stop` is raised. `work` runs each started job on a
/// thread ([`crate::pool`]: an idle one, or a new one). Socket errors (a bind that fails, a bad endpoint) end the loop with
/// that error, and so does a machine that exits with a [`Machine::failure`].
pub fn run<M, W>(machine: &mut M, work: W, stop: &Stop, events: &mut Events) -> Result<Ended>
where
    M: Machine,
    W: Fn(M::Job) -> M::Done + Send + Sync + 'static,
{
    let mut reactor: Reactor<M> = Reactor {
        ctx: transport::context(),
        sockets: Vec::new(),
        waker: Arc::new(Waker::new()?),
        done: mpsc::channel(),
        work: Arc::new(work),
        todo: VecDeque::new(),
        pool: Pool::new(),
        more: Outbox::default(),
        pollfds: Vec::new(),
        polled: Vec::new(),
    };
    let mut out = Outbox::default();
    for spec in machine.sockets() {
        out.open(spec);
    }
    reactor.apply(machine, &mut out, events)?;
    machine.start(Instant::now(), &mut out, events);
    if reactor.apply(machine, &mut out, events)? {
        return exited(machine);
    }
    while !stop.requested() {
        reactor.flush(events)?;
        if reactor.settled(machine) {
            let now = Instant::now();
            let timeout = machine
                .next_deadline()
                .map_or(POLL_SLICE, |d| d.saturating_duration_since(now))
                .min(POLL_SLICE);
            reactor.wait(machine, timeout)?;
        }
        reactor.drain(machine, &mut out, events)?;
        while let Ok(done) = reactor.done.1.try_recv() {
            machine.handle(Input::Done(done), Instant::now(), &mut out, events);
        }
        let now = Instant::now();
        if machine.next_deadline().is_some_and(|d| now >= d) {
            machine.tick(now, &mut out, events);
        }
        if reactor.apply(machine, &mut out, events)? {
            return exited(machine);
        }
    }
    Ok(Ended::Stopped)
}

/// How a loop whose machine asked to exit ends: with the machine's failure, if any.
fn exited<M: Machine>(machine: &mut M) -> Result<Ended> {
    match machine.failure() {
        Some(error) => Err(error),
        None => Ok(Ended::Exited),
    }
}

/// Wakes the loop blocked in `poll(2)` when a work thread finishes: a non-blocking socket
/// pair whose reading end the loop polls beside its sockets. Both ends live as long as the
/// last holder (the loop or a work thread), so a late wake-up never writes into a closed
/// pipe.
struct Waker {
    read: UnixStream,
    write: UnixStream,
}

impl Waker {
    fn new() -> Result<Self> {
        let made = UnixStream::pair().and_then(|(read, write)| {
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            Ok(Waker { read, write })
        });
        made.map_err(|e| Error::Internal(format!("cannot make the wake-up pipe: {e}")))
    }

    /// Makes the reading end readable. A full pipe is readable already: nothing is lost.
    fn wake(&self) {
        let _ = (&self.write).write(b"!");
    }

    /// Reads every pending wake-up, so the next poll blocks again.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }

    fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// An open socket in its slot.
struct Open {
    socket: Socket,
    kind: SocketKind,
    /// Its `ZMQ_FD`, polled while the loop waits.
    fd: RawFd,
    /// Read until `EAGAIN`, and nothing sent on it nor signalled since (see the module docs).
    settled: bool,
    /// Messages it did not take when they were sent, oldest first (see "Sends never block").
    unsent: VecDeque<Message>,
}

impl Open {
    /// Sends `msg` after those kept before it, keeping it if the socket does not take it now.
    fn send_in_order(&mut self, slot: Slot, msg: Message, events: &mut Events) -> Result<()> {
        let msg = if self.unsent.is_empty() {
            match self.socket.try_send(msg, events)? {
                None => return Ok(()),
                Some(refused) => refused,
            }
        } else {
            msg
        };
        if self.unsent.len() < UNSENT {
            self.unsent.push_back(msg);
        } else if events.tracing() {
            events.info(format!(
                "dropped a message for {} (socket {slot}): {UNSENT} wait for it already",
                self.socket.name()
            ));
        }
        Ok(())
    }

    /// Sends what was kept, oldest first, until the socket takes no more.
    fn flush(&mut self, events: &mut Events) -> Result<()> {
        while let Some(msg) = self.unsent.pop_front() {
            if let Some(refused) = self.socket.try_send(msg, events)? {
                self.unsent.push_front(refused);
                break;
            }
            // A send may process the command that announced a message.
            self.settled = false;
        }
        Ok(())
    }

    /// How many messages to read from it in one pass.
    fn batch(&self) -> usize {
        match self.kind {
            // REQ and REP sockets alternate strictly: after one message the machine must
            // answer (or send) before the socket can be read again.
            SocketKind::Req | SocketKind::Rep => 1,
            _ => BATCH,
        }
    }
}

/// The reactor's own state: the sockets by slot, the work threads' way back, and the buffers
/// it reuses on every wake-up.
struct Reactor<M: Machine> {
    ctx: zmq::Context,
    sockets: Vec<Option<Open>>,
    waker: Arc<Waker>,
    done: (mpsc::Sender<M::Done>, mpsc::Receiver<M::Done>),
    work: Arc<dyn Fn(M::Job) -> M::Done + Send + Sync>,
    /// Outputs being carried out.
    todo: VecDeque<Output<M::Job>>,
    /// Where jobs run: an idle work thread, or a new one.
    pool: Pool,
    /// What a [`Machine::routed`] answer asks for.
    more: Outbox<M::Job>,
    /// The poll set, and the slot of each of its entries but the last (the waker).
    pollfds: Vec<libc::pollfd>,
    polled: Vec<Slot>,
}

impl<M: Machine> Reactor<M> {
    /// True when there is nothing to read until something is signalled: every open socket
    /// the machine wants is settled.
    fn settled(&self, machine: &M) -> bool {
        self.sockets.iter().enumerate().all(|(slot, open)| {
            open.as_ref()
                .is_none_or(|open| open.settled || !machine.wants(slot))
        })
    }

    /// Sends what each socket kept (see "Sends never block") as far as it takes it.
    fn flush(&mut self, events: &mut Events) -> Result<()> {
        for open in self.sockets.iter_mut().flatten() {
            if !open.unsent.is_empty() {
                open.flush(events)?;
            }
        }
        Ok(())
    }

    /// Waits at most `timeout` for the `ZMQ_FD` of a wanted socket, or of one that kept
    /// messages (it fires when the socket may take them), or the waker to be readable;
    /// unsettles the sockets that were.
    fn wait(&mut self, machine: &M, timeout: Duration) -> Result<()> {
        self.pollfds.clear();
        self.polled.clear();
        for (slot, open) in self.sockets.iter().enumerate() {
            if let Some(open) = open
                .as_ref()
                .filter(|open| machine.wants(slot) || !open.unsent.is_empty())
            {
                self.pollfds.push(pollin(open.fd));
                self.polled.push(slot);
            }
        }
        self.pollfds.push(pollin(self.waker.fd()));
        // Rounded up, so that a deadline less than a millisecond away is waited for, not spun.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `pollfds` is a live, initialised array of `pollfds.len()` entries.
        let rc = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ms,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // A signal interrupted the poll: the loop looks at the stop signal.
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Error::Internal(format!("poll failed: {err}")));
        }
        for (entry, &slot) in self.pollfds.iter().zip(&self.polled) {
            if entry.revents != 0 {
                if let Some(open) = self.sockets[slot].as_mut() {
                    open.settled = false;
                }
            }
        }
        if self.pollfds.last().is_some_and(|waker| waker.revents != 0) {
            self.waker.drain();
        }
        Ok(())
    }

    /// One pass over the wanted sockets that are not settled: reads each until `EAGAIN`,
    /// [`Open::batch`] messages, the machine no longer wanting it, or the machine ending,
    /// handing every message to the machine.
    fn drain(
        &mut self,
        machine: &mut M,
        out: &mut Outbox<M::Job>,
        events: &mut Events,
    ) -> Result<()> {
        for slot in 0..self.sockets.len() {
            let Some(open) = self.sockets[slot].as_mut() else {
                continue;
            };
            if open.settled || !machine.wants(slot) {
                continue;
            }
            for _ in 0..open.batch() {
                let Some(msg) = open.socket.try_recv(events)? else {
                    open.settled = true;
                    break;
                };
                machine.handle(Input::Message { slot, msg }, Instant::now(), out, events);
                // A machine may stop wanting a slot mid-batch (the last ready worker left, a
                // REP socket got its one request) or be about to end.
                if !machine.wants(slot) || out.ends() {
                    break;
                }
            }
            if out.ends() {
                break;
            }
        }
        Ok(())
    }

    /// Carries out the outputs in order; true when the machine asked to exit.
    fn apply(
        &mut self,
        machine: &mut M,
        out: &mut Outbox<M::Job>,
        events: &mut Events,
    ) -> Result<bool> {
        self.todo.extend(out.outputs.drain(..));
        let mut unroutable = 0;
        while let Some(output) = self.todo.pop_front() {
            match output {
                Output::Send { slot, msg } => {
                    match self.sockets.get_mut(slot).and_then(Option::as_mut) {
                        Some(open) => {
                            // A send may process the command that announced a message.
                            open.settled = false;
                            if matches!(
                                open.kind,
                                SocketKind::MandatoryRouter | SocketKind::NonBlockingDealer
                            ) {
                                let routed = open.socket.send_routed(msg.clone(), events)?;
                                machine.routed(
                                    slot,
                                    &msg,
                                    routed,
                                    Instant::now(),
                                    &mut self.more,
                                    events,
                                );
                                for o in self.more.outputs.drain(..).rev() {
                                    self.todo.push_front(o);
                                }
                                unroutable += usize::from(!routed);
                                if unroutable == BATCH {
                                    // A machine that answers every unroutable send with
                                    // another one would keep us here forever, deaf to the
                                    // stop: the rest waits for the next wake-up.
                                    out.outputs.extend(self.todo.drain(..));
                                    return Ok(false);
                                }
                            } else {
                                open.send_in_order(slot, msg, events)?;
                            }
                        }
                        None => events.warn(format!("dropped a message for closed socket {slot}")),
                    }
                }
                Output::Open(spec) => {
                    let socket = open(&self.ctx, &spec)?;
                    let fd = socket.fd()?;
                    if self.sockets.len() <= spec.slot {
                        self.sockets.resize_with(spec.slot + 1, || None);
                    }
                    self.sockets[spec.slot] = Some(Open {
                        socket,
                        kind: spec.kind,
                        fd,
                        settled: false,
                        unsent: VecDeque::new(),
                    });
                }
                Output::Close(slot) => {
                    if let Some(s) = self.sockets.get_mut(slot) {
                        *s = None;
                    }
                }
                Output::Start(job) => {
                    let work = Arc::clone(&self.work);
                    let back = self.done.0.clone();
                    let waker = Arc::clone(&self.waker);
                    self.pool.run(move || {
                        // The loop may have ended: nobody left to tell.
                        if back.send(work(job)).is_ok() {
                            waker.wake();
                        }
                    });
                }
                Output::Crash => crate::faults::crash_now(),
                Output::Exit => {
                    self.todo.clear();
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// A poll entry waiting for `fd` to be readable.
fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Makes the socket `spec` describes: bound, connected, LINGER 0, identity set.
fn open(ctx: &zmq::Context, spec: &SocketSpec) -> Result<Socket> {
    let socket = transport::socket(ctx, spec.kind.zmq(), spec.name, spec.identity.as_deref())?;
    match spec.kind {
        SocketKind::Sub => socket.subscribe_all()?,
        SocketKind::MandatoryRouter => socket.make_mandatory()?,
        _ => {}
    }
    for endpoint in &spec.bind {
        socket.bind(endpoint)?;
    }
    for endpoint in &spec.connect {
        socket.connect(endpoint)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_kind_is_named_by_its_libzmq_type() {
        for kind in [
            SocketKind::Req,
            SocketKind::Rep,
            SocketKind::Dealer,
            SocketKind::Router,
            SocketKind::Pub,
            SocketKind::Sub,
            SocketKind::MandatoryRouter,
            SocketKind::NonBlockingDealer,
            SocketKind::Pair,
        ] {
            let ctx = zmq::Context::new();
            let socket = ctx.socket(kind.zmq()).unwrap();
            assert_eq!(
                format!("{:?}", socket.get_socket_type().unwrap()),
                kind.name()
            );
        }
    }

    /// A machine that binds a REP socket, echoes each request after a delay kept as its own
    /// deadline, upper-cases it on a work thread first, and exits after `limit` replies.
    struct DelayedEcho {
        endpoint: String,
        delay: Duration,
        limit: u64,
        due: Option<(Instant, Message)>,
        working: bool,
        replied: u64,
    }

    const REP: Slot = 0;

    impl Machine for DelayedEcho {
        type Job = Message;
        type Done = Message;

        fn sockets(&self) -> Vec<SocketSpec> {
            vec![SocketSpec::bound(
                REP,
                SocketKind::Rep,
                "test",
                &self.endpoint,
            )]
        }

        fn start(&mut self, _now: Instant, _out: &mut Outbox<Message>, _events: &mut Events) {}

        fn handle(
            &mut self,
            input: Input<Message>,
            now: Instant,
            out: &mut Outbox<Message>,
            _events: &mut Events,
        ) {
            match input {
                Input::Message { slot, msg } => {
                    assert_eq!(slot, REP);
                    self.due = Some((now + self.delay, msg));
                }
                Input::Done(reply) => {
                    self.working = false;
                    self.replied += 1;
                    out.send(REP, reply);
                    if self.replied == self.limit {
                        out.exit();
                    }
                }
            }
        }

        fn tick(&mut self, now: Instant, out: &mut Outbox<Message>, _events: &mut Events) {
            if let Some((at, _)) = &self.due {
                if now >= *at {
                    let (_, msg) = self.due.take().expect("due");
                    self.working = true;
                    out.start(msg);
                }
            }
        }

        fn next_deadline(&self) -> Option<Instant> {
            self.due.as_ref().map(|(at, _)| *at)
        }

        fn wants(&self, _slot: Slot) -> bool {
            // A REP socket takes one request at a time.
            self.due.is_none() && !self.working
        }
    }

    fn upper(msg: Message) -> Message {
        Message::from_frames(msg.iter().map(|f| f.to_ascii_uppercase()))
    }

    #[test]
    fn drives_a_machine_through_sockets_timers_and_work_until_it_exits() {
        let endpoint = format!("inproc://reactor-test-{}", rand::random::<u64>());
        let mut machine = DelayedEcho {
            endpoint: endpoint.clone(),
            delay: Duration::from_millis(30),
            limit: 3,
            due: None,
            working: false,
            replied: 0,
        };
        let client = thread::spawn({
            let endpoint = endpoint.clone();
            move || {
                let ctx = transport::context();
                let req = ctx.socket(zmq::REQ).unwrap();
                // The machine binds in its start; connecting first is fine for inproc
                // (ZeroMQ 4 connects when the bind appears).
                req.connect(&endpoint).unwrap();
                let mut replies = Vec::new();
                for word in ["a", "b", "c"] {
                    let sent = Instant::now();
                    req.send(word, 0).unwrap();
                    replies.push((req.recv_bytes(0).unwrap(), sent.elapsed()));
                }
                replies
            }
        });
        let stop = Stop::new();
        let ended = run(&mut machine, upper, &stop, &mut Events::discard()).unwrap();
        assert_eq!(ended, Ended::Exited);
        let replies = client.join().unwrap();
        let bodies: Vec<&[u8]> = replies.iter().map(|(b, _)| b.as_slice()).collect();
        assert_eq!(bodies, [b"A", b"B", b"C"]);
        // The delay was kept by the machine's deadline, not skipped.
        assert!(replies
            .iter()
            .all(|(_, took)| *took >= Duration::from_millis(30)));
    }

    #[test]
    fn a_stop_raised_elsewhere_ends_the_loop() {
        let mut machine = DelayedEcho {
            endpoint: format!("inproc://reactor-stop-{}", rand::random::<u64>()),
            delay: Duration::ZERO,
            limit: 1,
            due: None,
            working: false,
            replied: 0,
        };
        let stop = Stop::new();
        let raiser = stop.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            raiser.request();
        });
        let ended = run(&mut machine, upper, &stop, &mut Events::discard()).unwrap();
        t.join().unwrap();
        assert_eq!(ended, Ended::Stopped);
    }

    #[test]
    fn a_bind_that_fails_ends_the_loop_with_the_error() {
        let taken = transport::context().socket(zmq::REP).unwrap();
        taken.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = taken.get_last_endpoint().unwrap().unwrap();
        let mut machine = DelayedEcho {
            endpoint,
            delay: Duration::ZERO,
            limit: 1,
            due: None,
            working: false,
            replied: 0,
        };
        let err = run(&mut machine, upper, &Stop::new(), &mut Events::discard()).unwrap_err();
        assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    }

    #[test]
    fn outputs_come_out_in_the_order_they_were_asked_for() {
        let mut out: Outbox<()> = Outbox::default();
        out.send(1, Message::from_frames([b"x".to_vec()]));
        out.close(1);
        out.exit();
        let taken = out.take();
        assert!(matches!(taken[0], Output::Send { slot: 1, .. }));
        assert_eq!(taken[1], Output::Close(1));
        assert_eq!(taken[2], Output::Exit);
        assert!(out.is_empty());
    }

    #[test]
    fn forwarding_renames_the_slots_of_an_inner_machines_outputs_in_order() {
        let mut inner: Outbox<u8> = Outbox::default();
        let spec = SocketSpec {
            slot: 0,
            kind: SocketKind::Router,
            name: "inner",
            bind: vec![],
            connect: vec![],
            identity: None,
        };
        inner.open(spec.clone());
        inner.send(0, Message::from_frames([b"x".to_vec()]));
        inner.close(0);
        inner.start(7);
        inner.exit();
        let mut out = Outbox::default();
        out.forward(&mut inner, |slot| slot + 2);
        assert!(inner.is_empty());
        let taken = out.take();
        assert_eq!(taken[0], Output::Open(SocketSpec { slot: 2, ..spec }));
        assert!(matches!(taken[1], Output::Send { slot: 2, .. }));
        assert_eq!(
            taken[2..],
            [Output::Close(2), Output::Start(7), Output::Exit]
        );
    }

    /// Exits at once with a failure.
    struct Failing;

    impl Machine for Failing {
        type Job = ();
        type Done = ();
        fn sockets(&self) -> Vec<SocketSpec> {
            Vec::new()
        }
        fn start(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
            out.exit();
        }
        fn handle(&mut self, _: Input<()>, _: Instant, _: &mut Outbox<()>, _: &mut Events) {}
        fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn failure(&mut self) -> Option<Error> {
            Some(Error::Unreachable("the pair cannot serve".into()))
        }
    }

    #[test]
    fn a_machine_that_exits_with_a_failure_ends_the_loop_with_that_error() {
        let err = run(&mut Failing, |()| (), &Stop::new(), &mut Events::discard()).unwrap_err();
        assert_eq!(err.exit_code(), 69, "{err}");
    }

    #[test]
    fn a_due_item_comes_out_once_and_only_when_due() {
        let t0 = Instant::now();
        let mut due = Due::at(t0 + Duration::from_millis(10), "x");
        assert_eq!(due.when(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(due.take_if_due(t0), None);
        assert_eq!(due.take_if_due(t0 + Duration::from_millis(10)), Some("x"));
        assert_eq!(due.when(), None);
        assert_eq!(due.take_if_due(t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_wake_from_another_thread_makes_the_waker_readable_until_drained() {
        let waker = Arc::new(Waker::new().unwrap());
        let readable = |ms: i32| {
            let mut fds = [pollin(waker.fd())];
            // SAFETY: one live, initialised entry.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) == 1 }
        };
        assert!(!readable(0));
        let remote = Arc::clone(&waker);
        thread::spawn(move || {
            // More wake-ups than a pipe holds are harmless.
            for _ in 0..100_000 {
                remote.wake();
            }
        })
        .join()
        .unwrap();
        assert!(readable(1000));
        waker.drain();
        assert!(!readable(0));
    }

    /// Sends a request on a DEALER each time the last one was answered, `limit` times: a
    /// send on the very socket that is read next, the case where a send may swallow the
    /// signal of the message that arrives.
    struct PingPong {
        endpoint: String,
        limit: u64,
        answered: u64,
    }

    const DEALER: Slot = 3;

    impl Machine for PingPong {
        type Job = ();
        type Done = ();

        fn sockets(&self) -> Vec<SocketSpec> {
            vec![SocketSpec {
                slot: DEALER,
                kind: SocketKind::Dealer,
                name: "ping",
                bind: vec![],
                connect: vec![self.endpoint.clone()],
                identity: None,
            }]
        }

        fn start(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
            out.send(DEALER, Message::from_frames([b"0".to_vec()]));
        }

        fn handle(&mut self, input: Input<()>, _: Instant, out: &mut Outbox<()>, _: &mut Events) {
            if let Input::Message { msg, .. } = input {
                assert_eq!(msg.get(0), Some(self.answered.to_string().as_bytes()));
                self.answered += 1;
                if self.answered == self.limit {
                    out.exit();
                } else {
                    out.send(DEALER, Message::from_frames([self.answered.to_string()]));
                }
            }
        }

        fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {}

        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }

    #[test]
    fn a_reply_to_a_send_on_the_same_socket_is_never_missed() {
        let endpoint = format!("inproc://reactor-pingpong-{}", rand::random::<u64>());
        let echo = transport::context().socket(zmq::ROUTER).unwrap();
        echo.set_linger(0).unwrap();
        echo.bind(&endpoint).unwrap();
        let stop = Stop::new();
        let limit = 3000;
        let peer = thread::spawn({
            let stop = stop.clone();
            move || {
                echo.set_rcvtimeo(100).unwrap();
                let mut n = 0u64;
                while !stop.requested() {
                    if let Ok(frames) = echo.recv_multipart(0) {
                        // Now and then answer late, after the loop went back to waiting.
                        if n.is_multiple_of(100) {
                            thread::sleep(Duration::from_millis(2));
                        }
                        n += 1;
                        echo.send_multipart(frames, 0).unwrap();
                    }
                }
            }
        });
        let watchdog = thread::spawn({
            let stop = stop.clone();
            move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.requested() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
                stop.request();
            }
        });
        let mut machine = PingPong {
            endpoint,
            limit,
            answered: 0,
        };
        let ended = run(&mut machine, |()| (), &stop, &mut Events::discard()).unwrap();
        stop.request();
        peer.join().unwrap();
        watchdog.join().unwrap();
        assert_eq!(
            (ended, machine.answered),
            (Ended::Exited, limit),
            "a reply was never read"
        );
    }

    #[test]
    fn a_stop_interrupts_a_work_thread_sleep() {
        let stop = Stop::new();
        stop.request();
        assert!(matches!(
            stop.sleep(Duration::from_secs(10)),
            Err(Error::Interrupted)
        ));
    }
}
