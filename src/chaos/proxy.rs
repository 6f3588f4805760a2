//! `pirate chaos proxy`: a message-level fault proxy that sits between peers and a queue or
//! broker and drops, delays, duplicates, reorders, corrupts or truncates messages, or blackholes
//! all traffic for a while, from one seeded generator so a run replays by `--seed`.
//!
//! # Topology, and why one DEALER per peer
//! ```text
//!  peers (REQ clients, PPP/MDP DEALER workers, REQ workers)
//!      │ connect
//!  [ROUTER --frontend]  ── proxy ──  [DEALER per peer] ──connect──▶ --backend (queue/broker/server)
//! ```
//! The proxy binds a ROUTER on `--frontend`; peers connect to it instead of the real queue or
//! broker. For every distinct peer identity it sees there, it opens a DEALER of its own to
//! `--backend`. A single shared DEALER would merge every peer into one upstream identity: a
//! queue or broker could no longer tell workers apart (one "worker" heartbeating for all of
//! them, replies routed to whichever), and a REP server would see interleaved requests. With a
//! DEALER per peer, the upstream ROUTER sees exactly one connection per peer, as if the peer
//! were connected directly. When the peer's identity was chosen by the peer (a worker's
//! `--name`, anything that does not start with a zero byte) the DEALER takes the same identity,
//! so upstream logs and `per_worker` counts name the real workers; ZeroMQ-generated identities
//! (which start with `0x00` and cannot be set) are mapped instead.
//!
//! Frames pass through untouched apart from the ROUTER identity: from a peer, the proxy pops the
//! identity and sends the rest on that peer's DEALER (a REQ peer's leading `""` goes along, so
//! a REP or ROUTER upstream sees the same frames as from the peer itself); from a DEALER, it
//! pushes the peer's identity back on and sends on the ROUTER. A DEALER silent for
//! `peer_timeout` in both directions is closed, to bound resources (Lazy Pirate clients open a
//! fresh socket, hence a fresh identity, on every retry).
//!
//! # Directions
//! `up` is frontend → backend, `down` is backend → frontend. For a proxy on the client side
//! (clients → proxy → queue/broker/server) `up` carries requests and `down` replies; for a
//! proxy on the worker side (workers → proxy → queue/broker) `down` carries requests (and the
//! queue's heartbeats) and `up` carries replies, READY and heartbeats.
//!
//! # Faults, and why a timer heap
//! The decision for each message is pure ([`FaultDecider`]): given the direction, the message
//! and the time, it returns what to send now, what to send later and which faults it injected.
//! Selectors (`direction`, `command`, `after`, `count`) choose which messages may be faulted.
//! Delayed messages go into a bounded [`TimerHeap`] ordered by due time; the proxy is a pure
//! [`Machine`] ([`Proxy`]) whose next deadline is the earliest of the next due message, the next
//! reorder window to release and the idle sweep, and [`reactor::run`] polls its sockets until
//! then, so a delayed message never blocks the rest of the traffic the way a sleep would, and
//! jitter naturally reorders messages. A DEALER's send never blocks either
//! ([`SocketKind::NonBlockingDealer`]): a message its queue cannot take is counted `unsent`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::event::{Event, Events, ProxyReport, Report};
use crate::heartbeat::Liveness;
use crate::msg::{Frame, Message};
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

/// Which way a message travels through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Frontend → backend (client-side proxy: requests; worker-side proxy: replies, heartbeats).
    Up,
    /// Backend → frontend (client-side proxy: replies; worker-side proxy: requests).
    Down,
}

impl Flow {
    /// `"up"` or `"down"`, as in events and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Up => "up",
            Flow::Down => "down",
        }
    }
}

/// Which directions faults apply to (`--direction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Directions {
    Up,
    Down,
    #[default]
    Both,
}

impl Directions {
    /// True if messages flowing `flow` are selected.
    pub fn selects(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Directions::Both, _) | (Directions::Up, Flow::Up) | (Directions::Down, Flow::Down)
        )
    }
}

/// A kind of message fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgFault {
    Drop,
    Delay,
    Duplicate,
    Reorder,
    Corrupt,
    Truncate,
    Blackhole,
}

impl MsgFault {
    /// The name used in events, reports and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgFault::Drop => "drop",
            MsgFault::Delay => "delay",
            MsgFault::Duplicate => "duplicate",
            MsgFault::Reorder => "reorder",
            MsgFault::Corrupt => "corrupt",
            MsgFault::Truncate => "truncate",
            MsgFault::Blackhole => "blackhole",
        }
    }
}

impl fmt::Display for MsgFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every `every`, drop everything selected for `for_` (`--blackhole 5s/1s`). The first
/// blackhole starts `every` after the proxy starts: windows are `[k·every, k·every + for_)` for
/// k ≥ 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blackhole {
    pub every: Duration,
    pub for_: Duration,
}

impl Blackhole {
    /// True if `elapsed` since the start falls in a blackhole window.
    pub fn active(&self, elapsed: Duration) -> bool {
        if self.every.is_zero() || elapsed < self.every {
            return false;
        }
        let phase = elapsed.as_nanos() % self.every.as_nanos();
        phase < self.for_.as_nanos()
    }
}

impl FromStr for Blackhole {
    type Err = String;

    /// Parses `EVERY/FOR` in humantime, e.g. `5s/1s` or `400ms/100ms`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("invalid blackhole '{text}' (expected EVERY/FOR, e.g. 5s/1s)");
        let (every, for_) = text.split_once('/').ok_or_else(bad)?;
        let every = humantime::parse_duration(every.trim()).map_err(|_| bad())?;
        let for_ = humantime::parse_duration(for_.trim()).map_err(|_| bad())?;
        if every.is_zero() || for_.is_zero() {
            return Err(format!(
                "blackhole '{text}': both durations must be above 0"
            ));
        }
        if for_ > every {
            return Err(format!(
                "blackhole '{text}': the blackhole ({}) cannot last longer than its period ({})",
                humantime::format_duration(for_),
                humantime::format_duration(every)
            ));
        }
        Ok(Blackhole { every, for_ })
    }
}

/// Parses a `--command` selector: `0x` then hex digits (`0x04`, `0x0102`) for bytes, anything
/// else as literal text (`MDPW01`).
pub fn parse_frame_selector(text: &str) -> std::result::Result<Vec<u8>, String> {
    let bad = || format!("invalid hex '{text}' (expected 0x and pairs of hex digits, e.g. 0x04)");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => {
            if hex.is_empty() || hex.len() % 2 != 0 {
                return Err(bad());
            }
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())
                })
                .collect()
        }
        None => Ok(text.as_bytes().to_vec()),
    }
}

/// What to inject, and into which messages. `Default` injects nothing (a transparent proxy).
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyFaults {
    /// Directions faults apply to.
    pub direction: Directions,
    /// Only messages with a frame equal to this (e.g. `[0x04]`, MDP 0.1 HEARTBEAT).
    pub command: Option<Vec<u8>>,
    /// Selected messages forwarded untouched before faults start.
    pub after: u64,
    /// At most this many faults in total.
    pub count: Option<u64>,
    /// Probability of dropping a selected message.
    pub drop: f64,
    /// Probability of sending a selected message twice.
    pub duplicate: f64,
    /// Probability of flipping bits in one frame.
    pub corrupt: f64,
    /// Probability of cutting the last frame short (or dropping it when it is empty).
    pub truncate: f64,
    /// Delay of a delayed message: `delay` plus a uniform draw in `[0, jitter]`.
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability of delaying a selected message.
    pub delay_rate: f64,
    /// Window of the shuffle: hold selected messages until this many are held (or
    /// `reorder_wait` has passed since the first), then release them in a random order.
    /// 0 or 1: no reordering.
    pub reorder: usize,
    pub reorder_wait: Duration,
    /// Periodic blackholes.
    pub blackhole: Option<Blackhole>,
}

impl Default for ProxyFaults {
    fn default() -> Self {
        ProxyFaults {
            direction: Directions::Both,
            command: None,
            after: 0,
            count: None,
            drop: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            truncate: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            delay_rate: 0.0,
            reorder: 0,
            reorder_wait: Duration::from_millis(100),
            blackhole: None,
        }
    }
}

impl ProxyFaults {
    /// Checks the probabilities; returns a usage message for the first bad one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, p) in [
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
            ("truncate", self.truncate),
            ("delay-rate", self.delay_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("--{name} {p} is not a probability between 0 and 1"));
            }
        }
        if self.reorder > MAX_DELAYED {
            return Err(format!(
                "--reorder {} would hold too many messages (at most {MAX_DELAYED})",
                self.reorder
            ));
        }
        if let Some(b) = self.blackhole {
            if b.every.is_zero() || b.for_ > b.every {
                return Err("--blackhole: FOR must be above 0 and at most EVERY".into());
            }
        }
        Ok(())
    }

    /// True if this plan can inject anything at all.
    pub fn is_active(&self) -> bool {
        self.drop > 0.0
            || self.duplicate > 0.0
            || self.corrupt > 0.0
            || self.truncate > 0.0
            || self.delay_rate > 0.0
            || self.reorder > 1
            || self.blackhole.is_some()
    }
}

/// A message in transit: which way, whose, and the frames without the ROUTER identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub flow: Flow,
    /// The frontend identity of the peer this message comes from (up) or goes to (down).
    pub peer: Frame,
    pub msg: Message,
}

/// What to do with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send it now.
    Send(Packet),
    /// Send it at this time (a delay).
    SendAt(Instant, Packet),
}

/// The outcome of deciding on one message: what to send and which faults were injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub faults: Vec<MsgFault>,
}

/// Messages held in a reorder window.
#[derive(Debug, Default)]
struct Window {
    held: Vec<Packet>,
    since: Option<Instant>,
}

/// The pure fault logic: selectors, counters, rolls and the reorder windows. No sockets.
///
/// Per selected message, once `after` selected messages have passed and while `count` allows:
/// a blackhole window drops it (no rolls drawn); otherwise five rolls are drawn in a fixed
/// order (drop, duplicate, corrupt, truncate, delay) so the same seed and the same messages give
/// the same decisions. Then, in order: drop ends it; corrupt and truncate alter it; duplicate
/// makes two copies; delay schedules the copies, or else the reorder window holds them. Extra
/// draws (which frame, which bit, how much jitter, the shuffle) happen only for faults that hit.
#[derive(Debug)]
pub struct FaultDecider {
    plan: ProxyFaults,
    rng: ChaCha8Rng,
    start: Instant,
    selected: u64,
    injected: u64,
    windows: BTreeMap<Flow, Window>,
}

impl FaultDecider {
    /// A decider for `plan` drawing from `seed`; blackhole windows are timed from `start`.
    pub fn new(plan: ProxyFaults, seed: u64, start: Instant) -> Self {
        FaultDecider {
            plan,
            rng: ChaCha8Rng::seed_from_u64(seed),
            start,
            selected: 0,
            injected: 0,
            windows: BTreeMap::new(),
        }
    }

    /// The plan.
    pub fn plan(&self) -> &ProxyFaults {
        &self.plan
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected
    }

    fn selects(&self, packet: &Packet) -> bool {
        self.plan.direction.selects(packet.flow)
            && self
                .plan
                .command
                .as_deref()
                .is_none_or(|c| packet.msg.iter().any(|f| f == c))
    }

    /// True while the `count` budget allows one more fault.
    fn budget(&self) -> bool {
        self.plan.count.is_none_or(|n| self.injected < n)
    }

    fn record(&mut self, fault: MsgFault, faults: &mut Vec<MsgFault>) {
        self.injected += 1;
        faults.push(fault);
    }

    /// Decides what happens to `packet`, arriving at `now`.
    pub fn decide(&mut self, packet: Packet, now: Instant) -> Decision {
        let mut decision = Decision::default();
        if !self.selects(&packet) {
            decision.actions.push(Action::Send(packet));
            return decision;
        }
        self.selected += 1;
        if self.selected <= self.plan.after || !self.budget() {
            decision.actions.push(Action::Send(packet));
            return decision;
        }
        if let Some(b) = self.plan.blackhole {
            if b.active(now.saturating_duration_since(self.start)) {
                self.record(MsgFault::Blackhole, &mut decision.faults);
                return decision;
            }
        }
        let rolls: [f64; 5] = [
            self.rng.gen(),
            self.rng.gen(),
            self.rng.gen(),
            self.rng.gen(),
            self.rng.gen(),
        ];
        let [drop, duplicate, corrupt, truncate, delay] = rolls;
        if drop < self.plan.drop {
            self.record(MsgFault::Drop, &mut decision.faults);
            return decision;
        }
        let mut packet = packet;
        if corrupt < self.plan.corrupt
            && self.budget()
            && corrupt_message(&mut packet.msg, &mut self.rng)
        {
            self.record(MsgFault::Corrupt, &mut decision.faults);
        }
        if truncate < self.plan.truncate
            && self.budget()
            && truncate_message(&mut packet.msg, &mut self.rng)
        {
            self.record(MsgFault::Truncate, &mut decision.faults);
        }
        if packet.msg.is_empty() {
            // Nothing left to send (a one-frame message truncated away).
            return decision;
        }
        let mut copies = vec![packet];
        if duplicate < self.plan.duplicate && self.budget() {
            self.record(MsgFault::Duplicate, &mut decision.faults);
            copies.push(copies[0].clone());
        }
        if delay < self.plan.delay_rate && self.budget() {
            self.record(MsgFault::Delay, &mut decision.faults);
            let jitter = if self.plan.jitter.is_zero() {
                Duration::ZERO
            } else {
                let nanos = self.plan.jitter.as_nanos().min(u64::MAX as u128) as u64;
                Duration::from_nanos(self.rng.gen_range(0..=nanos))
            };
            let at = now + self.plan.delay + jitter;
            decision
                .actions
                .extend(copies.into_iter().map(|p| Action::SendAt(at, p)));
            return decision;
        }
        if self.plan.reorder > 1 {
            for p in copies {
                if !self.budget() {
                    decision.actions.push(Action::Send(p));
                    continue;
                }
                self.record(MsgFault::Reorder, &mut decision.faults);
                let flow = p.flow;
                let window = self.windows.entry(flow).or_default();
                window.since.get_or_insert(now);
                window.held.push(p);
                if window.held.len() >= self.plan.reorder {
                    decision.actions.extend(self.release(flow));
                }
            }
            return decision;
        }
        decision
            .actions
            .extend(copies.into_iter().map(Action::Send));
        decision
    }

    /// Empties `flow`'s reorder window in a shuffled order.
    fn release(&mut self, flow: Flow) -> Vec<Action> {
        let Some(window) = self.windows.get_mut(&flow) else {
            return Vec::new();
        };
        let mut held = std::mem::take(&mut window.held);
        window.since = None;
        held.shuffle(&mut self.rng);
        held.into_iter().map(Action::Send).collect()
    }

    /// Releases every reorder window that has waited `reorder_wait` (so a window that never
    /// fills, e.g. one request in flight at a time, still delivers).
    pub fn release_due(&mut self, now: Instant) -> Vec<Action> {
        let wait = self.plan.reorder_wait;
        let due: Vec<Flow> = self
            .windows
            .iter()
            .filter(|(_, w)| w.since.is_some_and(|s| now >= s + wait))
            .map(|(f, _)| *f)
            .collect();
        due.into_iter().flat_map(|f| self.release(f)).collect()
    }

    /// When the next reorder window falls due, if any is holding messages.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.windows
            .values()
            .filter_map(|w| w.since)
            .min()
            .map(|s| s + self.plan.reorder_wait)
    }

    /// Messages currently held in reorder windows.
    pub fn held(&self) -> usize {
        self.windows.values().map(|w| w.held.len()).sum()
    }
}

/// Changes exactly one frame: XORs one random byte of a random non-empty frame with a non-zero
/// mask (so it always differs), or, if every frame is empty, puts a random byte in one. Returns
/// false for a message without frames.
fn corrupt_message(msg: &mut Message, rng: &mut ChaCha8Rng) -> bool {
    if msg.is_empty() {
        return false;
    }
    let mut frames = std::mem::take(msg).into_frames();
    let non_empty: Vec<usize> = (0..frames.len())
        .filter(|&i| !frames[i].is_empty())
        .collect();
    if let Some(&i) = non_empty.choose(rng) {
        let at = rng.gen_range(0..frames[i].len());
        frames[i][at] ^= rng.gen_range(1..=255u8);
    } else {
        let i = rng.gen_range(0..frames.len());
        frames[i].push(rng.gen());
    }
    *msg = Message::from(frames);
    true
}

/// Shortens the message: cuts the last frame to a random shorter length, or drops it when it
/// is already empty. Returns false for a message without frames.
fn truncate_message(msg: &mut Message, rng: &mut ChaCha8Rng) -> bool {
    let Some(mut last) = msg.pop_back() else {
        return false;
    };
    if !last.is_empty() {
        let keep = rng.gen_range(0..last.len());
        last.truncate(keep);
        msg.push_back(last);
    }
    true
}

/// A delayed packet in the heap; ordered by due time, then by arrival so equal times keep FIFO.
#[derive(Debug)]
struct Timed {
    at: Instant,
    seq: u64,
    packet: Packet,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Delayed packets held at once, at most: a `--delay` longer than the traffic's gaps must not
/// grow the heap without end.
pub const MAX_DELAYED: usize = 10_000;

/// Delayed packets, earliest first, at most [`MAX_DELAYED`]: O(log n) to add; the earliest
/// due time is the proxy's deadline.
#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<Timed>>,
    seq: u64,
}

impl TimerHeap {
    /// Schedules `packet` for `at`; false (and the packet dropped) when the heap is full.
    pub fn push(&mut self, at: Instant, packet: Packet) -> bool {
        if self.heap.len() >= MAX_DELAYED {
            return false;
        }
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            at,
            seq: self.seq,
            packet,
        }));
        true
    }

    /// Removes and returns every packet due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<Packet> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(t)| t.at <= now) {
            if let Some(Reverse(t)) = self.heap.pop() {
                due.push(t.packet);
            }
        }
        due
    }

    /// When the next packet is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(t)| t.at)
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Everything `pirate chaos proxy` needs.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where peers connect (the proxy binds a ROUTER here).
    pub frontend: String,
    /// The real queue, broker or server (one DEALER per peer connects here).
    pub backend: String,
    pub faults: ProxyFaults,
    pub seed: u64,
    /// A peer's upstream DEALER is closed after this long without traffic either way.
    pub peer_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            frontend: "tcp://*:5555".into(),
            backend: "tcp://localhost:5556".into(),
            faults: ProxyFaults::default(),
            seed: 0,
            peer_timeout: Duration::from_secs(60),
        }
    }
}

/// What the proxy reports while it runs: the same JSON shape as [`Event::ProxyFault`],
/// `{"event":"proxy_fault","kind":"drop","direction":"down"}`, for library users of [`run`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProxyEvent {
    /// A fault was injected into one message.
    ProxyFault { kind: String, direction: String },
}

/// An identity the DEALER can take: the peer's own when the peer chose it (ZeroMQ reserves
/// identities starting with a zero byte for the ones it generates, and refuses to set them).
fn upstream_identity(peer: &[u8]) -> Option<&[u8]> {
    (!peer.is_empty() && peer[0] != 0 && peer.len() <= 255).then_some(peer)
}

/// One peer: the slot of its upstream DEALER, and how long it may stay idle (heard of either
/// way) before the DEALER is closed.
#[derive(Debug)]
struct Link {
    slot: Slot,
    idle: Liveness,
}

/// The proxy's frontend ROUTER; every peer's upstream DEALER has a slot of its own above it.
const FRONTEND: Slot = 0;

/// Upstream DEALERs open at once, at most: past this, the one heard of longest ago is closed
/// to make room (as the idle sweep would close it later), so a flood of fresh identities
/// (every Lazy Pirate retry is one) cannot exhaust the process's sockets and files.
pub const MAX_LINKS: usize = 1000;

/// Called with each fault as it is injected: (events, kind, direction).
type OnFault<'f> = dyn FnMut(&mut Events, &str, &str) + 'f;

/// The fault proxy as a pure [`Machine`]: the frontend ROUTER in slot 0, one
/// DEALER per peer above it, opened on first sight and closed after `peer_timeout` of silence.
/// Its deadlines are the delayed packets ([`TimerHeap`]), the reorder windows
/// ([`FaultDecider::next_deadline`]) and the idle sweep.
pub struct Proxy<'f> {
    config: ProxyConfig,
    decider: FaultDecider,
    delayed: TimerHeap,
    links: HashMap<Frame, Link>,
    /// The peer each slot serves (`None`: the frontend, or a closed slot kept for reuse).
    peers: Vec<Option<Frame>>,
    free: Vec<Slot>,
    sweep_every: Duration,
    next_sweep: Instant,
    report: ProxyReport,
    on_fault: Box<OnFault<'f>>,
}

impl<'f> Proxy<'f> {
    /// A proxy for `config` whose clock (blackhole windows, the idle sweep) starts at `now`;
    /// each injected fault is passed to `on_fault` as it happens.
    pub fn new(
        config: &ProxyConfig,
        now: Instant,
        on_fault: impl FnMut(&mut Events, &str, &str) + 'f,
    ) -> Self {
        let sweep_every = (config.peer_timeout / 4).max(Duration::from_millis(100));
        Proxy {
            decider: FaultDecider::new(config.faults.clone(), config.seed, now),
            delayed: TimerHeap::default(),
            links: HashMap::new(),
            peers: vec![None],
            free: Vec::new(),
            sweep_every,
            next_sweep: now + sweep_every,
            report: ProxyReport {
                frontend: config.frontend.clone(),
                backend: config.backend.clone(),
                seed: config.seed,
                ..Default::default()
            },
            on_fault: Box::new(on_fault),
            config: config.clone(),
        }
    }

    /// The counters so far.
    pub fn report(&self) -> &ProxyReport {
        &self.report
    }

    /// The slot of `peer`'s DEALER, opened (and connected upstream) on first sight.
    fn link(&mut self, peer: &[u8], now: Instant, out: &mut Outbox<()>) -> Slot {
        if let Some(link) = self.links.get_mut(peer) {
            link.idle.heard(now);
            return link.slot;
        }
        if self.links.len() >= MAX_LINKS {
            let oldest = self
                .links
                .iter()
                .min_by_key(|(_, link)| link.idle.expires_at())
                .map(|(peer, _)| peer.clone());
            if let Some(oldest) = oldest {
                self.close(&oldest, out);
            }
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.peers.push(None);
            self.peers.len() - 1
        });
        self.peers[slot] = Some(peer.to_vec());
        out.open(SocketSpec {
            slot,
            kind: SocketKind::NonBlockingDealer,
            name: "backend",
            bind: vec![],
            connect: vec![self.config.backend.clone()],
            identity: upstream_identity(peer).map(<[u8]>::to_vec),
        });
        let timeout = self.config.peer_timeout;
        self.links.insert(
            peer.to_vec(),
            Link {
                slot,
                // Nothing is ever sent on this clock: only its expiry is used.
                idle: Liveness::with_timing(timeout, timeout, now),
            },
        );
        self.report.peers += 1;
        slot
    }

    /// Closes `peer`'s DEALER and frees its slot.
    fn close(&mut self, peer: &[u8], out: &mut Outbox<()>) {
        if let Some(link) = self.links.remove(peer) {
            self.peers[link.slot] = None;
            self.free.push(link.slot);
            out.close(link.slot);
        }
    }

    /// Decides on one packet, counts and reports its faults, and carries out its actions.
    fn decide(&mut self, packet: Packet, now: Instant, out: &mut Outbox<()>, events: &mut Events) {
        let flow = packet.flow;
        let decision = self.decider.decide(packet, now);
        for fault in &decision.faults {
            *self
                .report
                .faults
                .entry(fault.as_str().to_string())
                .or_default() += 1;
            (self.on_fault)(events, fault.as_str(), flow.as_str());
        }
        self.apply(decision.actions, now, out, events);
    }

    fn apply(&mut self, actions: Vec<Action>, now: Instant, out: &mut Outbox<()>, ev: &mut Events) {
        for action in actions {
            match action {
                Action::Send(packet) => self.deliver(packet, now, out),
                Action::SendAt(at, packet) => {
                    if !self.delayed.push(at, packet) {
                        self.report.unsent += 1;
                        if self.report.unsent == 1 {
                            ev.warn(format!(
                                "{MAX_DELAYED} messages are delayed already: dropping more \
                                 (counted as unsent)"
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Sends `packet` its way: up on its peer's DEALER (counted once the reactor says it went,
    /// in [`Machine::routed`]), down on the ROUTER with the peer's identity in front.
    fn deliver(&mut self, packet: Packet, now: Instant, out: &mut Outbox<()>) {
        if packet.msg.is_empty() {
            return;
        }
        match packet.flow {
            Flow::Up => {
                let slot = self.link(&packet.peer, now, out);
                out.send(slot, packet.msg);
            }
            Flow::Down => {
                let mut msg = packet.msg;
                msg.push_front(packet.peer);
                // A plain ROUTER never blocks: a peer that is gone loses the message silently.
                out.send(FRONTEND, msg);
                self.report.forwarded_down += 1;
            }
        }
    }
}

impl Machine for Proxy<'_> {
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        let frontend = &self.config.frontend;
        vec![SocketSpec::bound(
            FRONTEND,
            SocketKind::Router,
            "frontend",
            frontend,
        )]
    }

    fn start(&mut self, _now: Instant, _out: &mut Outbox<()>, events: &mut Events) {
        events.emit(Event::started_between(
            "chaos proxy",
            (&self.config.frontend, &self.config.backend),
            "->",
            Some(self.config.seed),
        ));
    }

    fn handle(&mut self, input: Input<()>, now: Instant, out: &mut Outbox<()>, ev: &mut Events) {
        let Input::Message { slot, mut msg } = input else {
            return;
        };
        let packet = if slot == FRONTEND {
            let Some(peer) = msg.pop_front() else {
                return;
            };
            self.link(&peer, now, out);
            Packet {
                flow: Flow::Up,
                peer,
                msg,
            }
        } else {
            // A slot closed since (its socket is gone, so this cannot happen) has no peer.
            let Some(peer) = self.peers.get(slot).cloned().flatten() else {
                return;
            };
            if let Some(link) = self.links.get_mut(&peer) {
                link.idle.heard(now);
            }
            Packet {
                flow: Flow::Down,
                peer,
                msg,
            }
        };
        self.decide(packet, now, out, ev);
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<()>, events: &mut Events) {
        for packet in self.delayed.pop_due(now) {
            self.deliver(packet, now, out);
        }
        let released = self.decider.release_due(now);
        self.apply(released, now, out, events);
        if now >= self.next_sweep {
            let idle: Vec<Frame> = self
                .links
                .iter()
                .filter(|(_, link)| link.idle.is_dead(now))
                .map(|(peer, _)| peer.clone())
                .collect();
            for peer in idle {
                self.close(&peer, out);
            }
            self.next_sweep = now + self.sweep_every;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.delayed.next_deadline(),
            self.decider.next_deadline(),
            Some(self.next_sweep),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn routed(
        &mut self,
        _slot: Slot,
        _msg: &Message,
        routed: bool,
        _now: Instant,
        _out: &mut Outbox<()>,
        _events: &mut Events,
    ) {
        // Only the DEALERs report: a full queue (an upstream that is down) drops the message
        // rather than stalling every other peer.
        if routed {
            self.report.forwarded_up += 1;
        } else {
            self.report.unsent += 1;
        }
    }
}

/// Runs the proxy until `stop` is raised, reporting each injected fault as an
/// [`Event::ProxyFault`] (`{"event":"proxy_fault","kind":"drop","direction":"down"}`) and
/// returning the counters as [`Report::Proxy`]: the shape of every other role.
pub fn run_role(config: &ProxyConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    serve(
        config,
        stop,
        events,
        |events: &mut Events, kind: &str, direction: &str| {
            events.emit(Event::ProxyFault {
                kind: kind.to_string(),
                direction: direction.to_string(),
            })
        },
    )
    .map(Report::Proxy)
}

/// Runs the proxy until `stop` is raised. Each injected fault is passed to `on_fault`
/// (kind, direction) as it happens; the counters come back in the report.
pub fn run(
    config: &ProxyConfig,
    stop: &Stop,
    events: &mut Events,
    on_fault: &mut dyn FnMut(&str, &str),
) -> Result<ProxyReport> {
    serve(
        config,
        stop,
        events,
        |_: &mut Events, kind: &str, direction: &str| on_fault(kind, direction),
    )
}

fn serve<'f>(
    config: &ProxyConfig,
    stop: &Stop,
    events: &mut Events,
    on_fault: impl FnMut(&mut Events, &str, &str) + 'f,
) -> Result<ProxyReport> {
    config.faults.validate().map_err(Error::Usage)?;
    let mut proxy = Proxy::new(config, Instant::now(), on_fault);
    reactor::run(&mut proxy, |()| (), stop, events)?;
    Ok(proxy.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(flow: Flow, body: &str) -> Packet {
        Packet {
            flow,
            peer: b"peer".to_vec(),
            msg: Message::from_frames(vec![Vec::new(), body.as_bytes().to_vec()]),
        }
    }

    fn decider(plan: ProxyFaults, seed: u64) -> (FaultDecider, Instant) {
        let start = Instant::now();
        (FaultDecider::new(plan, seed, start), start)
    }

    /// Runs `n` down-going messages through a decider; returns every decision.
    fn decisions(plan: ProxyFaults, seed: u64, n: usize) -> Vec<Decision> {
        decisions_from(plan, seed, n, Instant::now())
    }

    /// The same, with the decider started at `start` (so delays compare across runs).
    fn decisions_from(plan: ProxyFaults, seed: u64, n: usize, start: Instant) -> Vec<Decision> {
        let mut d = FaultDecider::new(plan, seed, start);
        (0..n)
            .map(|i| d.decide(packet(Flow::Down, &i.to_string()), start))
            .collect()
    }

    fn count(ds: &[Decision], kind: MsgFault) -> usize {
        ds.iter()
            .flat_map(|d| &d.faults)
            .filter(|f| **f == kind)
            .count()
    }

    fn sent(d: &Decision) -> Vec<&Packet> {
        d.actions
            .iter()
            .map(|a| match a {
                Action::Send(p) | Action::SendAt(_, p) => p,
            })
            .collect()
    }

    #[test]
    fn no_faults_forwards_everything_unchanged() {
        let ds = decisions(ProxyFaults::default(), 1, 100);
        for (i, d) in ds.iter().enumerate() {
            assert!(d.faults.is_empty());
            assert_eq!(
                d.actions,
                vec![Action::Send(packet(Flow::Down, &i.to_string()))]
            );
        }
        assert!(!ProxyFaults::default().is_active());
    }

    #[test]
    fn each_fault_happens_at_its_rate() {
        let n = 4000;
        let cases: [(MsgFault, ProxyFaults); 5] = [
            (
                MsgFault::Drop,
                ProxyFaults {
                    drop: 0.25,
                    ..Default::default()
                },
            ),
            (
                MsgFault::Duplicate,
                ProxyFaults {
                    duplicate: 0.25,
                    ..Default::default()
                },
            ),
            (
                MsgFault::Corrupt,
                ProxyFaults {
                    corrupt: 0.25,
                    ..Default::default()
                },
            ),
            (
                MsgFault::Truncate,
                ProxyFaults {
                    truncate: 0.25,
                    ..Default::default()
                },
            ),
            (
                MsgFault::Delay,
                ProxyFaults {
                    delay: Duration::from_millis(10),
                    delay_rate: 0.25,
                    ..Default::default()
                },
            ),
        ];
        for (kind, plan) in cases {
            let ds = decisions(plan, 9, n);
            let k = count(&ds, kind);
            assert!((800..1200).contains(&k), "{k} {kind} in {n} at 25%");
            let others = ds
                .iter()
                .flat_map(|d| &d.faults)
                .filter(|f| **f != kind)
                .count();
            assert_eq!(others, 0, "only {kind} injected");
        }
    }

    #[test]
    fn drop_sends_nothing() {
        let ds = decisions(
            ProxyFaults {
                drop: 1.0,
                ..Default::default()
            },
            3,
            10,
        );
        for d in ds {
            assert!(d.actions.is_empty());
            assert_eq!(d.faults, vec![MsgFault::Drop]);
        }
    }

    #[test]
    fn duplicate_doubles() {
        let ds = decisions(
            ProxyFaults {
                duplicate: 1.0,
                ..Default::default()
            },
            3,
            10,
        );
        for (i, d) in ds.iter().enumerate() {
            let p = packet(Flow::Down, &i.to_string());
            assert_eq!(d.actions, vec![Action::Send(p.clone()), Action::Send(p)]);
        }
    }

    #[test]
    fn corrupt_changes_exactly_one_frame() {
        let (mut d, start) = decider(
            ProxyFaults {
                corrupt: 1.0,
                ..Default::default()
            },
            5,
        );
        for i in 0..500 {
            let original = Packet {
                flow: Flow::Up,
                peer: b"p".to_vec(),
                msg: Message::from_frames(vec![
                    Vec::new(),
                    b"MDPC01".to_vec(),
                    b"echo".to_vec(),
                    format!("body {i}").into_bytes(),
                ]),
            };
            let decision = d.decide(original.clone(), start);
            let out = sent(&decision);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].msg.len(), original.msg.len());
            let changed = original
                .msg
                .iter()
                .zip(out[0].msg.iter())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(changed, 1, "exactly one frame differs");
            assert_eq!(out[0].msg.get(0), Some(&b""[..]), "empty frames are spared");
        }
        // A message of empty frames still changes (one frame gains a byte).
        let empty = Packet {
            flow: Flow::Up,
            peer: vec![],
            msg: Message::from_frames(vec![Vec::<u8>::new()]),
        };
        let decision = d.decide(empty.clone(), start);
        assert_ne!(sent(&decision)[0].msg, empty.msg);
    }

    #[test]
    fn truncate_shortens() {
        let (mut d, start) = decider(
            ProxyFaults {
                truncate: 1.0,
                ..Default::default()
            },
            5,
        );
        for i in 0..200 {
            let original = packet(Flow::Down, &format!("request number {i}"));
            let decision = d.decide(original.clone(), start);
            let out = sent(&decision);
            let before: usize = original.msg.iter().map(<[u8]>::len).sum();
            let after: usize = out[0].msg.iter().map(<[u8]>::len).sum();
            assert!(after < before);
            assert!(original
                .msg
                .get(1)
                .unwrap()
                .starts_with(out[0].msg.get(1).unwrap()));
        }
        // An empty last frame is dropped; a lone empty frame leaves nothing to send.
        let decision = d.decide(packet(Flow::Down, ""), start);
        assert_eq!(sent(&decision)[0].msg.len(), 1);
        let lone = Packet {
            flow: Flow::Down,
            peer: vec![],
            msg: Message::from_frames(vec![Vec::<u8>::new()]),
        };
        let decision = d.decide(lone, start);
        assert!(decision.actions.is_empty());
        assert_eq!(decision.faults, vec![MsgFault::Truncate]);
    }

    #[test]
    fn malformed_messages_never_panic() {
        let plan = ProxyFaults {
            corrupt: 1.0,
            truncate: 1.0,
            duplicate: 1.0,
            reorder: 3,
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 1);
        let none = Packet {
            flow: Flow::Up,
            peer: vec![],
            msg: Message::new(),
        };
        let decision = d.decide(none, start);
        assert!(decision.actions.is_empty(), "nothing to send for no frames");
        let _ = d.release_due(start + Duration::from_secs(1));
    }

    #[test]
    fn delay_with_jitter_schedules_within_bounds() {
        let plan = ProxyFaults {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
            delay_rate: 1.0,
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 2);
        let mut distinct = std::collections::HashSet::new();
        for i in 0..100 {
            let decision = d.decide(packet(Flow::Up, &i.to_string()), start);
            let [Action::SendAt(at, _)] = decision.actions[..] else {
                panic!("delayed: {decision:?}");
            };
            let delay = at - start;
            assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_millis(150));
            distinct.insert(delay);
        }
        assert!(distinct.len() > 50, "jitter varies the delay");
    }

    #[test]
    fn direction_selects_which_messages_are_faulted() {
        let plan = ProxyFaults {
            drop: 1.0,
            direction: Directions::Down,
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 1);
        assert_eq!(d.decide(packet(Flow::Up, "a"), start).actions.len(), 1);
        assert!(d.decide(packet(Flow::Down, "a"), start).actions.is_empty());
        assert!(Directions::Both.selects(Flow::Up) && Directions::Both.selects(Flow::Down));
        assert!(Directions::Up.selects(Flow::Up) && !Directions::Up.selects(Flow::Down));
    }

    #[test]
    fn command_selects_messages_with_that_frame() {
        let plan = ProxyFaults {
            drop: 1.0,
            command: Some(vec![0x04]),
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 1);
        let heartbeat = Packet {
            flow: Flow::Up,
            peer: b"w".to_vec(),
            msg: Message::from_frames(vec![Vec::new(), b"MDPW01".to_vec(), vec![0x04]]),
        };
        let reply = Packet {
            flow: Flow::Up,
            peer: b"w".to_vec(),
            msg: Message::from_frames(vec![Vec::new(), b"MDPW01".to_vec(), vec![0x03]]),
        };
        assert!(d.decide(heartbeat, start).actions.is_empty());
        assert_eq!(d.decide(reply, start).actions.len(), 1);
    }

    #[test]
    fn after_and_count_bound_the_faults() {
        let plan = ProxyFaults {
            drop: 1.0,
            after: 3,
            count: Some(2),
            ..Default::default()
        };
        let ds = decisions(plan, 1, 10);
        let dropped: Vec<usize> = ds
            .iter()
            .enumerate()
            .filter(|(_, d)| d.actions.is_empty())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(dropped, vec![3, 4], "faults start after 3 and stop after 2");
    }

    #[test]
    fn after_counts_selected_messages_only() {
        let plan = ProxyFaults {
            drop: 1.0,
            after: 1,
            direction: Directions::Down,
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 1);
        for _ in 0..5 {
            assert_eq!(d.decide(packet(Flow::Up, "x"), start).actions.len(), 1);
        }
        assert_eq!(d.decide(packet(Flow::Down, "1"), start).actions.len(), 1);
        assert!(d.decide(packet(Flow::Down, "2"), start).actions.is_empty());
    }

    #[test]
    fn blackhole_windows_drop_everything_selected() {
        let b: Blackhole = "1s/200ms".parse().unwrap();
        assert_eq!(
            b,
            Blackhole {
                every: Duration::from_secs(1),
                for_: Duration::from_millis(200)
            }
        );
        let ms = Duration::from_millis;
        assert!(
            !b.active(ms(0)) && !b.active(ms(150)),
            "no blackhole before the first period"
        );
        assert!(b.active(ms(1000)) && b.active(ms(1199)));
        assert!(!b.active(ms(1200)) && !b.active(ms(1999)));
        assert!(b.active(ms(2100)));
        let plan = ProxyFaults {
            blackhole: Some(b),
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 1);
        assert_eq!(
            d.decide(packet(Flow::Up, "a"), start + ms(500))
                .actions
                .len(),
            1
        );
        let hole = d.decide(packet(Flow::Up, "b"), start + ms(1100));
        assert!(hole.actions.is_empty());
        assert_eq!(hole.faults, vec![MsgFault::Blackhole]);
        assert_eq!(
            d.decide(packet(Flow::Up, "c"), start + ms(1300))
                .actions
                .len(),
            1
        );
        assert!("1s".parse::<Blackhole>().is_err());
        assert!("1s/2s".parse::<Blackhole>().is_err());
        assert!("0s/0s".parse::<Blackhole>().is_err());
        assert!("x/1s".parse::<Blackhole>().is_err());
    }

    #[test]
    fn reorder_window_releases_everything_shuffled() {
        let plan = ProxyFaults {
            reorder: 5,
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 11);
        let mut out = Vec::new();
        let mut shuffled_once = false;
        for round in 0..20 {
            for i in 0..5 {
                let decision = d.decide(packet(Flow::Down, &format!("{round}.{i}")), start);
                assert_eq!(decision.faults, vec![MsgFault::Reorder]);
                if i < 4 {
                    assert!(decision.actions.is_empty(), "held until the window is full");
                    assert_eq!(d.held(), i + 1);
                } else {
                    assert_eq!(decision.actions.len(), 5, "the full window is released");
                    let bodies: Vec<String> =
                        sent(&decision).iter().map(|p| p.msg.text()).collect();
                    let mut sorted = bodies.clone();
                    sorted.sort();
                    shuffled_once |= sorted != bodies;
                    out.extend(bodies);
                }
            }
        }
        assert_eq!(d.held(), 0);
        assert_eq!(out.len(), 100, "nothing lost");
        assert!(shuffled_once, "the order changed at least once");
    }

    #[test]
    fn a_window_that_never_fills_is_released_after_the_wait() {
        let plan = ProxyFaults {
            reorder: 10,
            reorder_wait: Duration::from_millis(50),
            ..Default::default()
        };
        let (mut d, start) = decider(plan, 11);
        d.decide(packet(Flow::Down, "a"), start);
        d.decide(packet(Flow::Up, "b"), start + Duration::from_millis(10));
        assert_eq!(d.next_deadline(), Some(start + Duration::from_millis(50)));
        assert!(d.release_due(start + Duration::from_millis(49)).is_empty());
        let released = d.release_due(start + Duration::from_millis(50));
        assert_eq!(released, vec![Action::Send(packet(Flow::Down, "a"))]);
        assert_eq!(d.next_deadline(), Some(start + Duration::from_millis(60)));
        assert_eq!(d.release_due(start + Duration::from_millis(60)).len(), 1);
        assert_eq!(d.next_deadline(), None);
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn same_seed_same_decisions_other_seed_differs() {
        let plan = ProxyFaults {
            drop: 0.2,
            duplicate: 0.2,
            corrupt: 0.2,
            truncate: 0.2,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(5),
            delay_rate: 0.2,
            reorder: 3,
            ..Default::default()
        };
        let start = Instant::now();
        let a = decisions_from(plan.clone(), 42, 300, start);
        assert_eq!(a, decisions_from(plan.clone(), 42, 300, start));
        assert_ne!(a, decisions_from(plan, 43, 300, start));
    }

    #[test]
    fn timer_heap_releases_in_due_order_fifo_on_ties() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut t = TimerHeap::default();
        t.push(start + ms(30), packet(Flow::Up, "c"));
        t.push(start + ms(10), packet(Flow::Up, "a"));
        t.push(start + ms(10), packet(Flow::Up, "b"));
        assert_eq!(t.next_deadline(), Some(start + ms(10)));
        assert!(t.pop_due(start + ms(5)).is_empty());
        let due: Vec<String> = t
            .pop_due(start + ms(20))
            .iter()
            .map(|p| p.msg.text())
            .collect();
        assert_eq!(due, vec!["\na", "\nb"]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(start + ms(30)).len(), 1);
        assert!(t.is_empty() && t.next_deadline().is_none());
    }

    #[test]
    fn frame_selectors_take_hex_or_text() {
        assert_eq!(parse_frame_selector("0x04"), Ok(vec![4]));
        assert_eq!(parse_frame_selector("0X0aFF"), Ok(vec![0x0a, 0xff]));
        assert_eq!(parse_frame_selector("MDPW01"), Ok(b"MDPW01".to_vec()));
        assert!(parse_frame_selector("0x4").is_err());
        assert!(parse_frame_selector("0x").is_err());
        assert!(parse_frame_selector("0xzz").is_err());
        assert!(parse_frame_selector("0xé1").is_err());
    }

    #[test]
    fn upstream_identity_is_the_peers_own_unless_zeromq_made_it() {
        assert_eq!(upstream_identity(b"w1-1"), Some(&b"w1-1"[..]));
        assert_eq!(upstream_identity(&[0, 1, 2, 3, 4]), None);
        assert_eq!(upstream_identity(b""), None);
    }

    #[test]
    fn fault_events_have_the_documented_shape() {
        let e = ProxyEvent::ProxyFault {
            kind: MsgFault::Drop.to_string(),
            direction: Flow::Down.as_str().into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"proxy_fault","kind":"drop","direction":"down"}"#
        );
    }

    /// The machine, with a fake clock: outputs and fault reports are plain values.
    mod machine {
        use super::*;
        use crate::reactor::Output;
        use crate::testkit::{sent, Rig};
        use std::cell::RefCell;
        use std::rc::Rc;

        type Seen = Rc<RefCell<Vec<(String, String)>>>;

        fn config(faults: ProxyFaults) -> ProxyConfig {
            ProxyConfig {
                frontend: "tcp://*:7000".into(),
                backend: "tcp://upstream:7001".into(),
                faults,
                seed: 7,
                peer_timeout: Duration::from_secs(4),
            }
        }

        fn proxy(faults: ProxyFaults) -> (Proxy<'static>, Instant, Seen) {
            let seen = Seen::default();
            let sink = Rc::clone(&seen);
            let t0 = Instant::now();
            let p = Proxy::new(
                &config(faults),
                t0,
                move |_: &mut Events, k: &str, d: &str| {
                    sink.borrow_mut().push((k.into(), d.into()))
                },
            );
            (p, t0, seen)
        }

        fn frames(parts: &[&[u8]]) -> Message {
            Message::from_frames(parts.iter().map(|p| p.to_vec()))
        }

        /// Feeds `msg` on `slot` at `now`; returns what the proxy asked for.
        fn feed(p: &mut Proxy, slot: Slot, msg: Message, now: Instant) -> Vec<Output<()>> {
            let mut out = Outbox::default();
            p.handle(
                Input::Message { slot, msg },
                now,
                &mut out,
                &mut Events::discard(),
            );
            out.take()
        }

        fn tick(p: &mut Proxy, now: Instant) -> Vec<Output<()>> {
            let mut out = Outbox::default();
            p.tick(now, &mut out, &mut Events::discard());
            out.take()
        }

        fn dealer(slot: Slot, identity: Option<&[u8]>) -> Output<()> {
            Output::Open(SocketSpec {
                slot,
                kind: SocketKind::NonBlockingDealer,
                name: "backend",
                bind: vec![],
                connect: vec!["tcp://upstream:7001".into()],
                identity: identity.map(<[u8]>::to_vec),
            })
        }

        fn routed(p: &mut Proxy, slot: Slot, ok: bool) {
            let mut out = Outbox::default();
            let msg = Message::new();
            p.routed(
                slot,
                &msg,
                ok,
                Instant::now(),
                &mut out,
                &mut Events::discard(),
            );
            assert!(out.is_empty());
        }

        #[test]
        fn binds_the_frontend_router_and_says_it_started() {
            let (p, t0, _) = proxy(ProxyFaults::default());
            let specs = p.sockets();
            assert_eq!(specs.len(), 1);
            assert_eq!(
                (specs[0].slot, specs[0].kind, specs[0].bind.clone()),
                (
                    FRONTEND,
                    SocketKind::Router,
                    vec!["tcp://*:7000".to_string()]
                )
            );
            let mut rig = Rig::quiet(p);
            rig.start(t0);
            assert!(matches!(
                &rig.events[..],
                [Event::Started { role, seed: Some(7), .. }] if role == "chaos proxy"
            ));
        }

        #[test]
        fn a_new_peer_gets_a_dealer_with_its_identity_and_frames_pass_both_ways_untouched() {
            let (mut p, t0, seen) = proxy(ProxyFaults::default());
            let request = frames(&[b"w1", b"", b"MDPW01", &[1], b"echo"]);
            let out = feed(&mut p, FRONTEND, request, t0);
            assert_eq!(out[0], dealer(1, Some(b"w1")));
            assert_eq!(sent(&out), [(1, frames(&[b"", b"MDPW01", &[1], b"echo"]))]);
            routed(&mut p, 1, true);
            // The same peer again: the same DEALER, nothing opened.
            let out = feed(&mut p, FRONTEND, frames(&[b"w1", b"again"]), t0);
            assert_eq!(
                out,
                [Output::Send {
                    slot: 1,
                    msg: frames(&[b"again"])
                }]
            );
            routed(&mut p, 1, true);
            // Down: the peer's identity goes back in front, on the ROUTER.
            let out = feed(&mut p, 1, frames(&[b"", b"reply"]), t0);
            assert_eq!(sent(&out), [(FRONTEND, frames(&[b"w1", b"", b"reply"]))]);
            let r = p.report();
            assert_eq!((r.forwarded_up, r.forwarded_down, r.peers), (2, 1, 1));
            assert!(r.faults.is_empty() && seen.borrow().is_empty());
        }

        #[test]
        fn a_zeromq_made_identity_is_not_copied_upstream_and_peers_get_slots_of_their_own() {
            let (mut p, t0, _) = proxy(ProxyFaults::default());
            let out = feed(&mut p, FRONTEND, frames(&[&[0, 1, 2, 3, 4], b"x"]), t0);
            assert_eq!(out[0], dealer(1, None));
            let out = feed(&mut p, FRONTEND, frames(&[b"w2", b"y"]), t0);
            assert_eq!(out[0], dealer(2, Some(b"w2")));
            let out = feed(&mut p, 2, frames(&[b"to w2"]), t0);
            assert_eq!(sent(&out), [(FRONTEND, frames(&[b"w2", b"to w2"]))]);
        }

        #[test]
        fn a_send_the_dealer_could_not_queue_is_counted_unsent() {
            let (mut p, t0, _) = proxy(ProxyFaults::default());
            feed(&mut p, FRONTEND, frames(&[b"w1", b"x"]), t0);
            routed(&mut p, 1, false);
            assert_eq!((p.report().forwarded_up, p.report().unsent), (0, 1));
        }

        #[test]
        fn drop_and_blackhole_send_nothing_and_are_reported_with_their_direction() {
            let (mut p, t0, seen) = proxy(ProxyFaults {
                drop: 1.0,
                direction: Directions::Down,
                ..Default::default()
            });
            let up = feed(&mut p, FRONTEND, frames(&[b"w1", b"x"]), t0);
            assert_eq!(sent(&up).len(), 1, "only down is faulted");
            assert!(sent(&feed(&mut p, 1, frames(&[b"y"]), t0)).is_empty());
            assert_eq!(*seen.borrow(), [("drop".to_string(), "down".to_string())]);
            assert_eq!(p.report().faults.get("drop"), Some(&1));

            let (mut p, t0, seen) = proxy(ProxyFaults {
                blackhole: Some("1s/200ms".parse().unwrap()),
                ..Default::default()
            });
            let ms = Duration::from_millis;
            assert_eq!(
                sent(&feed(&mut p, FRONTEND, frames(&[b"w", b"a"]), t0)).len(),
                1
            );
            let hole = feed(&mut p, FRONTEND, frames(&[b"w", b"b"]), t0 + ms(1100));
            assert!(sent(&hole).is_empty());
            assert_eq!(
                *seen.borrow(),
                [("blackhole".to_string(), "up".to_string())]
            );
            let after = feed(&mut p, FRONTEND, frames(&[b"w", b"c"]), t0 + ms(1300));
            assert_eq!(sent(&after).len(), 1);
        }

        #[test]
        fn duplicate_corrupt_and_truncate_change_what_is_sent() {
            let body = frames(&[b"w1", b"", b"hello world"]);
            let (mut p, t0, _) = proxy(ProxyFaults {
                duplicate: 1.0,
                ..Default::default()
            });
            let out = sent(&feed(&mut p, FRONTEND, body.clone(), t0));
            assert_eq!(out.len(), 2);
            assert_eq!(out[0], out[1]);
            let (mut p, t0, _) = proxy(ProxyFaults {
                corrupt: 1.0,
                ..Default::default()
            });
            let out = sent(&feed(&mut p, FRONTEND, body.clone(), t0));
            assert_ne!(out[0].1, frames(&[b"", b"hello world"]));
            assert_eq!(out[0].1.len(), 2);
            let (mut p, t0, seen) = proxy(ProxyFaults {
                truncate: 1.0,
                ..Default::default()
            });
            let out = sent(&feed(&mut p, FRONTEND, body, t0));
            assert!(out[0].1.get(1).unwrap().len() < b"hello world".len());
            assert_eq!(seen.borrow()[0].0, "truncate");
        }

        #[test]
        fn a_delayed_message_is_a_deadline_and_goes_out_when_it_is_due() {
            let ms = Duration::from_millis;
            let (mut p, t0, _) = proxy(ProxyFaults {
                delay: ms(100),
                delay_rate: 1.0,
                ..Default::default()
            });
            let out = feed(&mut p, FRONTEND, frames(&[b"w1", b"late"]), t0);
            assert_eq!(out, [dealer(1, Some(b"w1"))], "opened, nothing sent yet");
            assert_eq!(p.next_deadline(), Some(t0 + ms(100)));
            assert!(tick(&mut p, t0 + ms(99)).is_empty());
            let out = tick(&mut p, t0 + ms(100));
            assert_eq!(
                out,
                [Output::Send {
                    slot: 1,
                    msg: frames(&[b"late"])
                }]
            );
            // Only the idle sweep is left to wait for.
            assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
        }

        #[test]
        fn the_delay_heap_is_bounded_and_what_it_cannot_hold_is_unsent_with_one_warning() {
            let (p, t0, _) = proxy(ProxyFaults {
                delay: Duration::from_secs(3600),
                delay_rate: 1.0,
                ..Default::default()
            });
            let mut rig = Rig::quiet(p);
            let mut out = Vec::new();
            for i in 0..MAX_DELAYED + 5 {
                let msg = frames(&[b"w1", i.to_string().as_bytes()]);
                out.extend(rig.message(FRONTEND, msg, t0));
            }
            assert!(sent(&out).is_empty());
            assert_eq!(rig.m.delayed.len(), MAX_DELAYED);
            assert_eq!(rig.m.report().unsent, 5);
            let warnings = rig
                .events
                .iter()
                .filter(|e| matches!(e, Event::Log { .. }))
                .count();
            assert_eq!(warnings, 1);
        }

        #[test]
        fn a_reorder_window_is_released_full_or_at_its_deadline() {
            let ms = Duration::from_millis;
            let (mut p, t0, _) = proxy(ProxyFaults {
                reorder: 3,
                reorder_wait: ms(50),
                ..Default::default()
            });
            feed(&mut p, FRONTEND, frames(&[b"w", b"1"]), t0);
            assert!(sent(&feed(&mut p, FRONTEND, frames(&[b"w", b"2"]), t0)).is_empty());
            let out = sent(&feed(&mut p, FRONTEND, frames(&[b"w", b"3"]), t0));
            let mut bodies: Vec<String> = out.iter().map(|(_, m)| m.text()).collect();
            bodies.sort();
            assert_eq!(bodies, ["1", "2", "3"], "the full window, nothing lost");
            feed(&mut p, 1, frames(&[b"down"]), t0 + ms(10));
            assert_eq!(p.next_deadline(), Some(t0 + ms(60)));
            assert!(tick(&mut p, t0 + ms(59)).is_empty());
            let out = tick(&mut p, t0 + ms(60));
            assert_eq!(sent(&out), [(FRONTEND, frames(&[b"w", b"down"]))]);
        }

        #[test]
        fn an_idle_peer_loses_its_dealer_at_the_sweep_and_gets_a_fresh_one_on_return() {
            let (mut p, t0, _) = proxy(ProxyFaults::default());
            feed(&mut p, FRONTEND, frames(&[b"w1", b"x"]), t0);
            let sweep = Duration::from_secs(1);
            // Heard at t0: alive at the first sweeps, dead after peer_timeout (4 s).
            assert!(tick(&mut p, t0 + sweep).is_empty());
            assert_eq!(p.next_deadline(), Some(t0 + 2 * sweep));
            assert_eq!(tick(&mut p, t0 + 5 * sweep), [Output::Close(1)]);
            // A late message from the closed DEALER's slot has nobody to go to.
            assert!(feed(&mut p, 1, frames(&[b"stale"]), t0 + 5 * sweep).is_empty());
            let out = feed(&mut p, FRONTEND, frames(&[b"w1", b"y"]), t0 + 6 * sweep);
            assert_eq!(out[0], dealer(1, Some(b"w1")), "the freed slot is reused");
            assert_eq!(p.report().peers, 2);
        }

        #[test]
        fn past_max_links_the_peer_heard_of_longest_ago_is_closed_to_make_room() {
            let (mut p, t0, _) = proxy(ProxyFaults::default());
            for i in 0..MAX_LINKS {
                let at = t0 + Duration::from_micros(i as u64);
                feed(
                    &mut p,
                    FRONTEND,
                    frames(&[format!("p{i}").as_bytes(), b"x"]),
                    at,
                );
            }
            // p0 speaks again: p1 is now the one heard of longest ago.
            feed(
                &mut p,
                FRONTEND,
                frames(&[b"p0", b"x"]),
                t0 + Duration::from_millis(5),
            );
            let out = feed(
                &mut p,
                FRONTEND,
                frames(&[b"new", b"x"]),
                t0 + Duration::from_millis(6),
            );
            assert_eq!(out[0], Output::Close(2), "p1's DEALER (slot 2) closed");
            assert_eq!(out[1], dealer(2, Some(b"new")));
            assert_eq!(p.links.len(), MAX_LINKS);
        }

        #[test]
        fn malformed_input_is_dropped_without_a_panic() {
            let (mut p, t0, _) = proxy(ProxyFaults {
                corrupt: 1.0,
                truncate: 1.0,
                duplicate: 1.0,
                ..Default::default()
            });
            // No frames at all, and a message on a slot that was never opened.
            assert!(feed(&mut p, FRONTEND, Message::new(), t0).is_empty());
            assert!(feed(&mut p, 9, frames(&[b"x"]), t0).is_empty());
            // An identity and nothing else: the peer is known, nothing is sent.
            let out = feed(&mut p, FRONTEND, frames(&[b"w1"]), t0);
            assert_eq!(out, [dealer(1, Some(b"w1"))]);
            assert!(tick(&mut p, t0 + Duration::from_secs(60)).len() <= 1);
        }

        #[test]
        fn the_same_seed_and_traffic_give_the_same_outputs() {
            let plan = ProxyFaults {
                drop: 0.2,
                duplicate: 0.2,
                corrupt: 0.2,
                truncate: 0.2,
                reorder: 3,
                ..Default::default()
            };
            let outputs = || {
                let (mut p, t0, _) = proxy(plan.clone());
                (0..200)
                    .flat_map(|i| feed(&mut p, FRONTEND, frames(&[b"w", &[i as u8]]), t0))
                    .collect::<Vec<_>>()
            };
            assert_eq!(outputs(), outputs());
        }

        #[test]
        fn a_reorder_window_larger_than_the_delay_bound_is_refused() {
            let plan = ProxyFaults {
                reorder: MAX_DELAYED + 1,
                ..Default::default()
            };
            assert!(plan.validate().unwrap_err().contains("--reorder"));
        }
    }
}
