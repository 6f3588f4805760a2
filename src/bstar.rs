//! Binary Star (primary/backup failover, the Guide's chapter 4 design; there is no RFC) as a
//! pure state machine over `Instant`s: peer states and client requests in, decisions out.
//! The machine combinator that drives it on the reactor, around any role's machine, is
//! [`crate::roles::bstar_server::Bstar`] (used by `pirate server` and
//! [`crate::roles::broker::run_bstar`]).
//!
//! The wire is the Guide's: one frame, the state as an ASCII digit (`"1"` PRIMARY … `"4"`
//! PASSIVE). The transition table, the dual-active races the Guide leaves open and how they
//! are closed, and the split rule (`--on-split resolve`) are in `docs/architecture.md`,
//! section "Binary Star".

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::heartbeat::Liveness;

/// Which node of the pair this is, fixed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// A node's state; the discriminants are the Guide's wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Primary, waiting for the peer.
    Primary = 1,
    /// Backup, waiting for the peer.
    Backup = 2,
    /// Serving clients.
    Active = 3,
    /// Not serving clients.
    Passive = 4,
}

impl State {
    /// The one-frame state message: the state as an ASCII decimal digit.
    pub fn encode(self) -> Vec<u8> {
        (self as u8).to_string().into_bytes()
    }

    /// Decodes a state message (one frame, `"1"`..`"4"`, an optional trailing NUL).
    pub fn decode(frames: &[&[u8]]) -> Result<State, String> {
        let [frame] = frames else {
            return Err(format!(
                "state message has {} frames, expected 1",
                frames.len()
            ));
        };
        let digits = frame.strip_suffix(b"\0").unwrap_or(frame);
        match digits {
            b"1" => Ok(State::Primary),
            b"2" => Ok(State::Backup),
            b"3" => Ok(State::Active),
            b"4" => Ok(State::Passive),
            _ => Err(format!(
                "state message {:?} is not 1 (primary), 2 (backup), 3 (active) or 4 (passive)",
                String::from_utf8_lossy(frame)
            )),
        }
    }

    /// The state's name in upper case, as in `state: ACTIVE` log lines.
    pub fn name(self) -> &'static str {
        match self {
            State::Primary => "PRIMARY",
            State::Backup => "BACKUP",
            State::Active => "ACTIVE",
            State::Passive => "PASSIVE",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node does when it finds its peer active too (or passive too) after the two lost
/// sight of each other: `--on-split`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitPolicy {
    /// Heal: decide which node stays active by the split rule (see the module docs).
    #[default]
    Resolve,
    /// The Guide's: both nodes stop (exit 69).
    Stop,
}

/// Timing shared by both nodes, and the split policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BstarConfig {
    /// How often each node publishes its state (Guide: 1000 ms).
    pub heartbeat: Duration,
    /// What to do on dual active or dual passive.
    pub on_split: SplitPolicy,
}

impl Default for BstarConfig {
    fn default() -> Self {
        BstarConfig {
            heartbeat: Duration::from_millis(1000),
            on_split: SplitPolicy::Resolve,
        }
    }
}

impl BstarConfig {
    /// How long a silent peer stays alive: two heartbeats (the Guide's `2 * HEARTBEAT`). Also
    /// the primary's start guard.
    pub fn expiry(&self) -> Duration {
        self.heartbeat * 2
    }
}

/// A change of state and why, worded like the Guide's log lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: String,
    /// Set when the change resolves a split (dual active or dual passive): the client
    /// requests this node served while its peer was out of sight.
    pub split: Option<u64>,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Why a client request was refused (dropped unanswered; the client times out and fails over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A primary within `2 × heartbeat` of its start: it may not have heard an active peer yet.
    StartGuard,
    /// A backup only serves after it has been passive (the primary must have been seen).
    BackupWaiting,
    /// The peer is alive: it is active, or (for a primary) about to become active.
    PeerAlive,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::StartGuard => {
                "refusing clients: just started as primary, listening for an active peer first"
            }
            Refusal::BackupWaiting => {
                "refusing clients: a backup serves only after the primary has been seen active"
            }
            Refusal::PeerAlive => "refusing clients: the peer is alive and serves them",
        })
    }
}

/// The decision on one client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    /// Serve it (already active).
    Accept,
    /// Serve it: this request made the node active.
    TakeOver(Transition),
    /// Drop it unanswered.
    Refuse(Refusal),
}

impl Vote {
    /// True if the request is to be served.
    pub fn accepted(&self) -> bool {
        !matches!(self, Vote::Refuse(_))
    }
}

/// A state pair the pair cannot continue from. The node stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BstarError {
    /// Both nodes active: split brain.
    DualActive,
    /// Both nodes passive: nobody would serve.
    DualPassive,
    /// Both nodes started as primary (or a node hears its own PUB).
    DualPrimary,
    /// Both nodes started as backup.
    DualBackup,
}

impl fmt::Display for BstarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BstarError::DualActive => {
                "binary star: the peer is active too (split brain: both nodes were serving); \
                 stopping as --on-split stop asks (restart the nodes; a restarted node joins as \
                 passive if its peer is active; --on-split resolve heals a split instead)"
            }
            BstarError::DualPassive => {
                "binary star: the peer is passive too, so nobody would serve; stopping as \
                 --on-split stop asks (restart the primary)"
            }
            BstarError::DualPrimary => {
                "binary star: the peer is a primary too (both started with --primary, or \
                 --peer-state points at this node's own --state-bind); start one with --backup"
            }
            BstarError::DualBackup => {
                "binary star: the peer is a backup too (both started with --backup); start one \
                 with --primary"
            }
        })
    }
}

impl std::error::Error for BstarError {}

/// Exit codes: a misconfigured pair (two primaries, two backups) is a usage error (2: the
/// command lines are wrong, fix a flag); dual active or dual passive at run time means the
/// pair cannot provide the service (69, EX_UNAVAILABLE): not a bug in `pirate` (70), and not
/// a finished run (1).
impl From<BstarError> for Error {
    fn from(e: BstarError) -> Error {
        match e {
            BstarError::DualPrimary | BstarError::DualBackup => Error::Usage(e.to_string()),
            BstarError::DualActive | BstarError::DualPassive => Error::Unreachable(e.to_string()),
        }
    }
}

/// One node's Binary Star state machine.
#[derive(Clone, Debug)]
pub struct BinaryStar {
    role: Role,
    config: BstarConfig,
    state: State,
    started: Instant,
    /// The last state heard from the peer.
    peer: Option<State>,
    /// The peer's liveness (dead until its first state, then `2 × heartbeat` after its last)
    /// and when our own state is next published.
    link: Liveness,
    /// Set once the peer's silence has been reported by [`BinaryStar::tick`].
    silence_reported: bool,
    /// Client requests served while the peer was out of sight (dead), until the peer's
    /// states have agreed with ours for `2 × heartbeat`: what the split rule weighs.
    served_apart: u64,
    /// Dual active, and this node served clients apart: since when it has waited for the
    /// peer to step down (see the split rule).
    contest: Option<Instant>,
    /// Dual passive: since when.
    dual_passive: Option<Instant>,
    /// Since when the peer's states have agreed with ours (none of the above), without a
    /// silence in between.
    agreed_since: Option<Instant>,
}

impl BinaryStar {
    /// A node starting at `now` as `role`; its first state is published at once.
    pub fn new(role: Role, config: BstarConfig, now: Instant) -> Self {
        BinaryStar {
            role,
            config,
            state: match role {
                Role::Primary => State::Primary,
                Role::Backup => State::Backup,
            },
            started: now,
            peer: None,
            link: Liveness::unheard(config.heartbeat, config.expiry(), now),
            silence_reported: false,
            served_apart: 0,
            contest: None,
            dual_passive: None,
            agreed_since: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The role this node was started as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The timing.
    pub fn config(&self) -> BstarConfig {
        self.config
    }

    /// The last state heard from the peer, if any.
    pub fn peer_state(&self) -> Option<State> {
        self.peer
    }

    /// True if a peer state was heard less than `2 × heartbeat` ago.
    pub fn peer_alive(&self, now: Instant) -> bool {
        !self.link.is_dead(now)
    }

    /// Client requests served while the peer was out of sight, since the last peer state
    /// that agreed with ours.
    pub fn served_apart(&self) -> u64 {
        self.served_apart
    }

    /// True while this node, active and having served clients apart, waits for its active
    /// peer to step down (the split rule).
    pub fn contested(&self) -> bool {
        self.contest.is_some()
    }

    /// The peer published `peer` at `now`. Returns the transition it caused, if any, or the
    /// fatal error (the node must stop).
    pub fn on_peer_state(
        &mut self,
        peer: State,
        now: Instant,
    ) -> Result<Option<Transition>, BstarError> {
        use State::*;
        if self.link.is_dead(now) {
            // Heard again after its expiry: a conflict with its earlier life is over, and an
            // agreement with it says nothing of now.
            self.contest = None;
            self.dual_passive = None;
            self.agreed_since = None;
        }
        if (self.state, peer) != (Passive, Passive) {
            self.dual_passive = None;
        }
        self.peer = Some(peer);
        self.link.heard(now);
        self.silence_reported = false;
        let resolve = self.config.on_split == SplitPolicy::Resolve;
        let (to, reason) = match (self.state, peer) {
            (Primary, Primary) => return Err(BstarError::DualPrimary),
            (Backup, Backup) => return Err(BstarError::DualBackup),
            (Active, Active) if !resolve => return Err(BstarError::DualActive),
            (Passive, Passive) if !resolve => return Err(BstarError::DualPassive),
            (Active, Active) => {
                self.agreed_since = None;
                return Ok(self.dual_active(now));
            }
            (Passive, Passive) => {
                self.agreed_since = None;
                return Ok(self.dual_passive(now));
            }
            (Primary, Backup) => (Active, "connected to backup (passive), ready as active"),
            (Primary, Active) => (Passive, "connected to backup (active), ready as passive"),
            (Backup, Active) => (Passive, "connected to primary (active), ready as passive"),
            (Passive, Primary) => (Active, "primary (passive) is restarting, ready as active"),
            (Passive, Backup) => (Active, "backup (passive) is restarting, ready as active"),
            _ => {
                self.agreeing(now);
                return Ok(None);
            }
        };
        self.agreeing(now);
        Ok(Some(self.enter(to, reason.to_string(), now)))
    }

    /// The peer's state agrees with ours. Once it has for `2 × heartbeat`, the split (if
    /// any) is over and what was served apart no longer counts. Not at once: when a
    /// partition heals, the states the peer published during it arrive in a burst, and a
    /// stale PASSIVE from before the peer took over must not erase what this node served.
    fn agreeing(&mut self, now: Instant) {
        let since = *self.agreed_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.config.expiry() {
            self.settled();
        }
    }

    /// The pair agrees: forget the split.
    fn settled(&mut self) {
        self.served_apart = 0;
        self.contest = None;
        self.dual_passive = None;
    }

    /// Both active (the split rule, `--on-split resolve`): a node that served no client
    /// while apart steps down at once; one that did waits `2 × heartbeat` for the peer to
    /// step down, and then, if the peer is still active (it served too), the backup yields.
    fn dual_active(&mut self, now: Instant) -> Option<Transition> {
        let served = self.served_apart;
        if served == 0 {
            let reason = "stepped down after a split: the peer is active too, and this node \
                          served no client while they were apart";
            return Some(self.resolve(State::Passive, reason.into(), now));
        }
        let since = *self.contest.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if self.role == Role::Backup && waited >= self.config.expiry() {
            let reason = format!(
                "stepped down after a split: both nodes served clients while apart (this one \
                 {served}), and the backup yields"
            );
            return Some(self.resolve(State::Passive, reason, now));
        }
        None
    }

    /// Both passive (`--on-split resolve`; after a split both may have stepped down): once
    /// the peer is still passive `2 × heartbeat` later (not a stale state in a burst), the
    /// primary takes over; the backup waits for it.
    fn dual_passive(&mut self, now: Instant) -> Option<Transition> {
        let since = *self.dual_passive.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if self.role == Role::Primary && waited >= self.config.expiry() {
            let reason = "both nodes passive after a split: the primary takes over";
            return Some(self.resolve(State::Active, reason.into(), now));
        }
        None
    }

    /// A change that resolves a split, carrying what was served apart.
    fn resolve(&mut self, to: State, reason: String, now: Instant) -> Transition {
        let served = self.served_apart;
        self.settled();
        self.agreed_since = None;
        Transition {
            split: Some(served),
            ..self.enter(to, reason, now)
        }
    }

    /// A client request arrived at `now`: serve it or drop it. Never fatal. A request served
    /// while the peer is out of sight is counted for the split rule.
    pub fn on_client_request(&mut self, now: Instant) -> Vote {
        let vote = self.vote(now);
        if vote.accepted() && !self.peer_alive(now) {
            self.served_apart += 1;
        }
        vote
    }

    fn vote(&mut self, now: Instant) -> Vote {
        match self.state {
            State::Active => Vote::Accept,
            State::Backup => Vote::Refuse(Refusal::BackupWaiting),
            State::Primary => {
                if now.saturating_duration_since(self.started) < self.config.expiry() {
                    Vote::Refuse(Refusal::StartGuard)
                } else if self.peer_alive(now) {
                    Vote::Refuse(Refusal::PeerAlive)
                } else {
                    let reason = format!(
                        "no peer state for {} ms, ready as active",
                        self.config.expiry().as_millis()
                    );
                    Vote::TakeOver(self.enter(State::Active, reason, now))
                }
            }
            State::Passive => {
                if self.peer_alive(now) {
                    Vote::Refuse(Refusal::PeerAlive)
                } else {
                    let reason = "failover successful, ready as active".to_string();
                    Vote::TakeOver(self.enter(State::Active, reason, now))
                }
            }
        }
    }

    /// Call on every loop turn: returns the peer's last state once, when the peer has just
    /// gone silent for `2 × heartbeat` (for a log line; the state does not change).
    pub fn tick(&mut self, now: Instant) -> Option<State> {
        match self.peer {
            Some(last) if !self.silence_reported && !self.peer_alive(now) => {
                self.silence_reported = true;
                Some(last)
            }
            _ => None,
        }
    }

    /// Our state, if it is time to publish it (at start, on every change, then every
    /// heartbeat). Skipped beats are not repaid in a burst.
    pub fn publish_due(&mut self, now: Instant) -> Option<State> {
        self.link.heartbeat_due(now).then_some(self.state)
    }

    /// The next instant something is due (a publish), for poll timeouts.
    pub fn next_deadline(&self) -> Instant {
        self.link.next_send()
    }

    fn enter(&mut self, to: State, reason: String, now: Instant) -> Transition {
        let from = self.state;
        self.state = to;
        self.link.send_at(now);
        Transition {
            from,
            to,
            reason,
            split: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(100);

    fn cfg(on_split: SplitPolicy) -> BstarConfig {
        BstarConfig {
            heartbeat: HB,
            on_split,
        }
    }

    struct T {
        t0: Instant,
        node: BinaryStar,
    }

    impl T {
        fn new(role: Role) -> T {
            T::with(role, SplitPolicy::Resolve)
        }
        fn with(role: Role, on_split: SplitPolicy) -> T {
            let t0 = Instant::now();
            T {
                t0,
                node: BinaryStar::new(role, cfg(on_split), t0),
            }
        }
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
        fn peer(&mut self, s: State, ms: u64) -> Result<Option<State>, BstarError> {
            let now = self.at(ms);
            self.node.on_peer_state(s, now).map(|t| t.map(|t| t.to))
        }
        fn client(&mut self, ms: u64) -> Vote {
            let now = self.at(ms);
            self.node.on_client_request(now)
        }
        fn state(&self) -> State {
            self.node.state()
        }
        /// A node brought to `state` by the normal start-up exchange at 10 ms.
        fn in_state(role: Role, state: State) -> T {
            T::in_state_with(role, state, SplitPolicy::Resolve)
        }
        fn in_state_with(role: Role, state: State, on_split: SplitPolicy) -> T {
            let mut t = T::with(role, on_split);
            match (role, state) {
                (Role::Primary, State::Active) => t.peer(State::Backup, 10).unwrap(),
                (Role::Primary, State::Passive) => t.peer(State::Active, 10).unwrap(),
                (Role::Backup, State::Passive) => t.peer(State::Active, 10).unwrap(),
                (Role::Backup, State::Active) => {
                    t.peer(State::Active, 10).unwrap();
                    t.peer(State::Primary, 20).unwrap()
                }
                (Role::Primary, State::Primary) | (Role::Backup, State::Backup) => None,
                other => panic!("no such start: {other:?}"),
            };
            assert_eq!(t.state(), state);
            t
        }
    }

    use State::*;

    #[test]
    fn wire_format_is_the_guides_decimal_digit() {
        assert_eq!(Primary.encode(), b"1");
        assert_eq!(Backup.encode(), b"2");
        assert_eq!(Active.encode(), b"3");
        assert_eq!(Passive.encode(), b"4");
        for s in [Primary, Backup, Active, Passive] {
            assert_eq!(State::decode(&[&s.encode()]), Ok(s));
        }
        assert_eq!(State::decode(&[b"3\0"]), Ok(Active), "C strlen+1 tolerated");
    }

    #[test]
    fn malformed_state_messages_are_errors_not_panics() {
        for bad in [&b""[..], b"0", b"5", b"33", b"x", b" 3", b"\xff"] {
            assert!(State::decode(&[bad]).is_err(), "{bad:?}");
        }
        assert!(State::decode(&[]).is_err());
        assert!(State::decode(&[b"3", b"3"]).is_err());
    }

    #[test]
    fn nodes_start_in_their_role_and_publish_at_once() {
        let mut p = T::new(Role::Primary);
        assert_eq!(p.state(), Primary);
        assert_eq!(p.node.role(), Role::Primary);
        assert_eq!(p.node.publish_due(p.t0), Some(Primary));
        let b = T::new(Role::Backup);
        assert_eq!(b.state(), Backup);
    }

    #[test]
    fn publishes_every_heartbeat_without_bursts() {
        let mut t = T::new(Role::Primary);
        let at = |ms| t.t0 + Duration::from_millis(ms);
        assert_eq!(t.node.publish_due(at(0)), Some(Primary));
        assert_eq!(t.node.publish_due(at(99)), None);
        assert_eq!(t.node.next_deadline(), at(100));
        assert_eq!(t.node.publish_due(at(100)), Some(Primary));
        // A long stall: one publish, then one heartbeat later.
        assert_eq!(t.node.publish_due(at(750)), Some(Primary));
        assert_eq!(t.node.publish_due(at(800)), None);
        assert_eq!(t.node.publish_due(at(850)), Some(Primary));
    }

    #[test]
    fn a_state_change_is_published_at_once() {
        let mut t = T::new(Role::Primary);
        assert_eq!(t.node.publish_due(t.at(0)), Some(Primary));
        t.peer(Backup, 30).unwrap();
        assert_eq!(t.node.publish_due(t.at(30)), Some(Active));
        assert_eq!(t.node.publish_due(t.at(31)), None);
    }

    #[test]
    fn primary_transitions() {
        let mut t = T::new(Role::Primary);
        assert_eq!(t.peer(Backup, 10), Ok(Some(Active)));
        let mut t = T::new(Role::Primary);
        assert_eq!(t.peer(Active, 10), Ok(Some(Passive)));
        let mut t = T::new(Role::Primary);
        assert_eq!(
            t.peer(Passive, 10),
            Ok(None),
            "waits for the peer to go active"
        );
        assert_eq!(t.state(), Primary);
        let mut t = T::new(Role::Primary);
        assert_eq!(t.peer(Primary, 10), Err(BstarError::DualPrimary));
    }

    #[test]
    fn backup_transitions() {
        let mut t = T::new(Role::Backup);
        assert_eq!(t.peer(Active, 10), Ok(Some(Passive)));
        for quiet in [Primary, Passive] {
            let mut t = T::new(Role::Backup);
            assert_eq!(t.peer(quiet, 10), Ok(None), "{quiet}");
            assert_eq!(t.state(), Backup);
        }
        let mut t = T::new(Role::Backup);
        assert_eq!(t.peer(Backup, 10), Err(BstarError::DualBackup));
    }

    #[test]
    fn active_transitions() {
        for role in [Role::Primary, Role::Backup] {
            for quiet in [Primary, Backup, Passive] {
                let mut t = T::in_state(role, Active);
                assert_eq!(t.peer(quiet, 50), Ok(None), "{role:?} {quiet}");
                assert_eq!(t.state(), Active);
            }
            let mut t = T::in_state_with(role, Active, SplitPolicy::Stop);
            assert_eq!(t.peer(Active, 50), Err(BstarError::DualActive));
        }
    }

    #[test]
    fn passive_transitions() {
        for role in [Role::Primary, Role::Backup] {
            let mut t = T::in_state(role, Passive);
            assert_eq!(t.peer(Primary, 50), Ok(Some(Active)), "{role:?}");
            let mut t = T::in_state(role, Passive);
            assert_eq!(t.peer(Backup, 50), Ok(Some(Active)), "{role:?}");
            let mut t = T::in_state(role, Passive);
            assert_eq!(t.peer(Active, 50), Ok(None));
            assert_eq!(t.state(), Passive);
            let mut t = T::in_state_with(role, Passive, SplitPolicy::Stop);
            assert_eq!(t.peer(Passive, 50), Err(BstarError::DualPassive));
        }
    }

    #[test]
    fn transitions_carry_the_guides_wording() {
        let mut t = T::new(Role::Primary);
        let tr = t.node.on_peer_state(Backup, t.at(5)).unwrap().unwrap();
        assert_eq!((tr.from, tr.to), (Primary, Active));
        assert_eq!(
            tr.to_string(),
            "connected to backup (passive), ready as active"
        );
        let mut t = T::in_state(Role::Backup, Passive);
        let tr = t.node.on_peer_state(Primary, t.at(50)).unwrap().unwrap();
        assert_eq!(
            tr.reason,
            "primary (passive) is restarting, ready as active"
        );
    }

    #[test]
    fn active_serves_every_client() {
        let mut t = T::in_state(Role::Primary, Active);
        assert_eq!(t.client(11), Vote::Accept);
        assert_eq!(t.client(5000), Vote::Accept, "even with the peer long gone");
    }

    #[test]
    fn backup_refuses_clients_until_it_has_been_passive() {
        let mut t = T::new(Role::Backup);
        assert_eq!(t.client(0), Vote::Refuse(Refusal::BackupWaiting));
        // Alone for ever: still refuses (the Guide's bstar.c).
        assert_eq!(t.client(10_000), Vote::Refuse(Refusal::BackupWaiting));
        t.peer(Primary, 10_010).unwrap();
        assert_eq!(t.client(10_020), Vote::Refuse(Refusal::BackupWaiting));
        assert_eq!(t.state(), Backup);
    }

    #[test]
    fn primary_start_guard_refuses_clients_for_one_expiry_interval() {
        let mut t = T::new(Role::Primary);
        assert_eq!(t.client(0), Vote::Refuse(Refusal::StartGuard));
        assert_eq!(t.client(199), Vote::Refuse(Refusal::StartGuard));
        assert_eq!(t.state(), Primary);
        // Guard over, nobody heard: the peer counts as dead and the client vote makes us active.
        let vote = t.client(200);
        assert!(vote.accepted());
        assert!(
            matches!(&vote, Vote::TakeOver(tr) if tr.to == Active),
            "{vote:?}"
        );
        assert_eq!(t.state(), Active);
        assert_eq!(t.client(201), Vote::Accept);
    }

    #[test]
    fn a_restarted_primary_hears_the_active_backup_within_the_guard_and_goes_passive() {
        // The dual-active race: the backup took over; the primary restarts and a client still
        // pointed at it sends a request before the backup's first state arrives.
        let mut t = T::new(Role::Primary);
        assert_eq!(t.client(5), Vote::Refuse(Refusal::StartGuard));
        assert_eq!(t.peer(Active, 90), Ok(Some(Passive)));
        assert_eq!(t.client(250), Vote::Refuse(Refusal::PeerAlive));
        assert_eq!(t.state(), Passive);
    }

    #[test]
    fn a_primary_hearing_a_live_passive_peer_waits_for_it_to_go_active() {
        let mut t = T::new(Role::Primary);
        t.peer(Passive, 50).unwrap();
        t.peer(Passive, 150).unwrap();
        assert_eq!(t.client(250), Vote::Refuse(Refusal::PeerAlive));
        assert_eq!(t.peer(Active, 260), Ok(Some(Passive)));
    }

    #[test]
    fn a_primary_whose_peer_went_silent_takes_over_on_a_client_request() {
        let mut t = T::new(Role::Primary);
        t.peer(Passive, 50).unwrap();
        assert_eq!(t.client(249), Vote::Refuse(Refusal::PeerAlive));
        assert!(t.client(250).accepted(), "peer silent 200 ms = dead");
        assert_eq!(t.state(), Active);
    }

    #[test]
    fn passive_takes_over_only_on_expiry_and_a_client_vote() {
        let mut t = T::in_state(Role::Backup, Passive); // last heard at 10
        t.peer(Active, 100).unwrap();
        assert_eq!(t.client(150), Vote::Refuse(Refusal::PeerAlive));
        assert_eq!(t.client(299), Vote::Refuse(Refusal::PeerAlive));
        // Expiry alone changes nothing.
        assert_eq!(t.node.tick(t.at(300)), Some(Active));
        assert_eq!(t.state(), Passive);
        // The client vote.
        let vote = t.client(300);
        assert_eq!(
            vote,
            Vote::TakeOver(Transition {
                from: Passive,
                to: Active,
                reason: "failover successful, ready as active".into(),
                split: None,
            })
        );
        assert_eq!(t.state(), Active);
        assert_eq!(t.node.publish_due(t.at(300)), Some(Active));
    }

    #[test]
    fn any_peer_state_keeps_the_peer_alive() {
        let mut t = T::in_state(Role::Primary, Passive);
        for ms in (100..1000).step_by(150) {
            t.peer(Active, ms).unwrap();
            assert_eq!(t.client(ms + 149), Vote::Refuse(Refusal::PeerAlive));
        }
        assert!(t.node.peer_alive(t.at(1049)));
        assert!(!t.node.peer_alive(t.at(1150)));
    }

    #[test]
    fn tick_reports_the_peers_silence_once_per_silence() {
        let mut t = T::in_state(Role::Backup, Passive);
        assert_eq!(t.node.tick(t.at(100)), None);
        assert_eq!(t.node.tick(t.at(210)), Some(Active));
        assert_eq!(t.node.tick(t.at(500)), None);
        t.peer(Active, 600).unwrap();
        assert_eq!(t.node.tick(t.at(700)), None);
        assert_eq!(t.node.tick(t.at(800)), Some(Active));
        // Never heard: nothing to report.
        let mut lone = T::new(Role::Primary);
        assert_eq!(lone.node.tick(lone.at(10_000)), None);
    }

    #[test]
    fn a_whole_failover_and_recovery_between_two_machines() {
        // Two machines exchanging states by hand: start, fail over, restart the primary.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let cfg = cfg(SplitPolicy::Stop);
        let mut p = BinaryStar::new(Role::Primary, cfg, at(0));
        let mut b = BinaryStar::new(Role::Backup, cfg, at(0));
        b.on_peer_state(p.state(), at(1)).unwrap();
        p.on_peer_state(b.state(), at(1)).unwrap();
        b.on_peer_state(p.state(), at(2)).unwrap();
        assert_eq!((p.state(), b.state()), (Active, Passive));
        p.on_peer_state(b.state(), at(150)).unwrap();
        b.on_peer_state(p.state(), at(150)).unwrap();
        assert!(p.on_client_request(at(300)).accepted());
        assert!(!b.on_client_request(at(300)).accepted());
        p.on_peer_state(b.state(), at(300)).unwrap();
        b.on_peer_state(p.state(), at(300)).unwrap();
        // The primary dies at 300; the client fails over to the backup at 600.
        assert!(b.on_client_request(at(600)).accepted());
        assert_eq!(b.state(), Active);
        // The primary restarts at 700; a client still pointed at it is refused.
        let mut p = BinaryStar::new(Role::Primary, cfg, at(700));
        assert!(!p.on_client_request(at(701)).accepted());
        b.on_peer_state(p.state(), at(702)).unwrap();
        assert_eq!(b.state(), Active);
        p.on_peer_state(b.state(), at(703)).unwrap();
        assert_eq!(p.state(), Passive);
        b.on_peer_state(p.state(), at(704)).unwrap();
        assert!(!p.on_client_request(at(800)).accepted());
        assert!(b.on_client_request(at(800)).accepted());
    }

    #[test]
    fn fatal_errors_map_to_documented_exit_codes() {
        assert_eq!(Error::from(BstarError::DualPrimary).exit_code(), 2);
        assert_eq!(Error::from(BstarError::DualBackup).exit_code(), 2);
        assert_eq!(Error::from(BstarError::DualActive).exit_code(), 69);
        assert_eq!(Error::from(BstarError::DualPassive).exit_code(), 69);
        let text = Error::from(BstarError::DualPrimary).to_string();
        assert!(text.contains("--backup") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn random_event_sequences_never_panic_and_never_leave_two_actives_unnoticed() {
        // Drive two machines with random deliveries and client requests; whenever both are
        // active, the next state either hears from the other must be fatal.
        use rand::{Rng, SeedableRng};
        let seed = 7;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..200 {
            let t0 = Instant::now();
            let cfg = cfg(SplitPolicy::Stop);
            let mut nodes = [
                BinaryStar::new(Role::Primary, cfg, t0),
                BinaryStar::new(Role::Backup, cfg, t0),
            ];
            let mut ms = 0;
            for _ in 0..50 {
                ms += rng.gen_range(0..150);
                let now = t0 + Duration::from_millis(ms);
                let i = rng.gen_range(0..2);
                let fatal = if rng.gen_bool(0.5) {
                    let other = nodes[1 - i].state();
                    nodes[i].on_peer_state(other, now).err()
                } else {
                    nodes[i].on_client_request(now);
                    None
                };
                if nodes[0].state() == Active && nodes[1].state() == Active {
                    let other = nodes[1].state();
                    assert_eq!(
                        nodes[0].on_peer_state(other, now),
                        Err(BstarError::DualActive),
                        "seed {seed}"
                    );
                    break;
                }
                if fatal.is_some() {
                    break;
                }
            }
        }
    }

    // ---- the split rule (`--on-split resolve`, the default) ----

    /// A node of `role` that settled at 10 ms, then lost sight of its peer (last heard at
    /// 10), and took over or kept serving: ACTIVE, having served `served` clients apart.
    fn apart(role: Role, served: u64) -> T {
        let mut t = match role {
            Role::Primary => T::in_state(role, Active),
            // A backup is active apart only by the client vote, which is a request served.
            Role::Backup => T::in_state(role, Passive),
        };
        for i in 0..served {
            assert!(t.client(500 + i).accepted());
        }
        assert_eq!(t.state(), Active);
        assert_eq!(t.node.served_apart(), served);
        t
    }

    #[test]
    fn with_on_split_resolve_only_a_misconfigured_pair_is_fatal() {
        // Every (our state, peer state) pair, reached by the ordinary exchanges.
        let reachable = [
            (Role::Primary, Primary),
            (Role::Backup, Backup),
            (Role::Primary, Active),
            (Role::Backup, Active),
            (Role::Primary, Passive),
            (Role::Backup, Passive),
        ];
        for (role, ours) in reachable {
            for peer in [Primary, Backup, Active, Passive] {
                let mut t = T::in_state(role, ours);
                let heard = t.peer(peer, 50);
                let fatal = matches!((ours, peer), (Primary, Primary) | (Backup, Backup));
                assert_eq!(
                    heard.is_err(),
                    fatal,
                    "{role:?} {ours} hears {peer}: {heard:?}"
                );
                let mut t = T::in_state_with(role, ours, SplitPolicy::Stop);
                let stops = fatal || matches!((ours, peer), (Active, Active) | (Passive, Passive));
                assert_eq!(
                    t.peer(peer, 50).is_err(),
                    stops,
                    "stop: {role:?} {ours} {peer}"
                );
            }
        }
    }

    #[test]
    fn a_node_that_served_nobody_apart_steps_down_at_once() {
        // The primary cut off from the backup and the clients: it served nobody.
        let mut t = apart(Role::Primary, 0);
        let tr = t.node.on_peer_state(Active, t.at(1000)).unwrap().unwrap();
        assert_eq!((tr.from, tr.to, tr.split), (Active, Passive, Some(0)));
        assert!(
            tr.reason.starts_with("stepped down after a split: "),
            "{tr}"
        );
        assert!(tr.reason.contains("served no client"), "{tr}");
        assert_eq!(
            t.node.publish_due(t.at(1000)),
            Some(Passive),
            "said at once"
        );
        assert_eq!(t.client(1001), Vote::Refuse(Refusal::PeerAlive));
        // Settled: the peer's ACTIVE is the normal pair now.
        assert_eq!(t.peer(Active, 1100), Ok(None));
        assert_eq!(t.state(), Passive);
    }

    #[test]
    fn requests_served_while_the_peer_is_alive_are_not_served_apart() {
        let mut t = T::in_state(Role::Primary, Active);
        t.peer(Passive, 100).unwrap();
        assert!(t.client(150).accepted());
        assert!(t.client(299).accepted());
        assert_eq!(t.node.served_apart(), 0, "peer alive until 300");
        assert!(t.client(300).accepted());
        assert!(t.client(301).accepted());
        assert_eq!(t.node.served_apart(), 2);
        // Peer states that agree (it is passive) for two heartbeats reconcile them; one
        // agreeing state (maybe a stale one, in a burst after a partition) does not.
        assert_eq!(t.peer(Passive, 400), Ok(None));
        assert_eq!(t.peer(Passive, 401), Ok(None));
        assert_eq!(t.node.served_apart(), 2, "a burst is not an agreement");
        assert_eq!(t.peer(Passive, 500), Ok(None));
        assert_eq!(t.node.served_apart(), 2);
        assert_eq!(t.peer(Passive, 600), Ok(None));
        assert_eq!(t.node.served_apart(), 0);
        // So a later dual active finds nothing served apart: step down.
        assert_eq!(t.peer(Active, 650), Ok(Some(Passive)));
    }

    #[test]
    fn a_stale_passive_in_the_burst_after_a_partition_does_not_erase_what_was_served() {
        // The backup published PASSIVE until a client voted at it, then ACTIVE; TCP delivers
        // them all at once when the partition heals. This primary served clients apart.
        let mut p = apart(Role::Primary, 3);
        for ms in 2000..2005 {
            assert_eq!(p.peer(Passive, ms), Ok(None));
        }
        assert_eq!(p.peer(Active, 2005), Ok(None), "it served: it waits");
        assert!(p.node.contested());
        assert_eq!(p.node.served_apart(), 3);
        assert_eq!(p.state(), Active);
        // The mirror image: a primary that served nobody steps down on the first ACTIVE.
        let mut p = apart(Role::Primary, 0);
        p.peer(Passive, 2000).unwrap();
        assert_eq!(p.peer(Active, 2001), Ok(Some(Passive)));
    }

    #[test]
    fn a_node_that_served_apart_waits_for_the_peer_to_step_down_and_stays_active() {
        for role in [Role::Primary, Role::Backup] {
            let mut t = apart(role, 3);
            assert_eq!(t.peer(Active, 1000), Ok(None), "{role:?}");
            assert!(t.node.contested());
            assert_eq!(t.client(1010), Vote::Accept, "keeps serving meanwhile");
            assert_eq!(t.peer(Active, 1100), Ok(None), "{role:?}");
            // The peer stepped down, and stays down.
            assert_eq!(t.peer(Passive, 1150), Ok(None));
            assert_eq!(t.peer(Passive, 1250), Ok(None));
            assert!(t.node.contested(), "not yet two heartbeats of agreement");
            assert_eq!(t.peer(Passive, 1350), Ok(None));
            assert!(!t.node.contested());
            assert_eq!(t.node.served_apart(), 0);
            assert_eq!(t.state(), Active);
            // Much later a new dual active is a new split, not the old contest.
            assert_eq!(t.peer(Active, 5000), Ok(Some(Passive)), "{role:?}");
        }
    }

    #[test]
    fn if_both_served_apart_the_backup_yields_after_two_heartbeats_and_the_primary_never() {
        let mut b = apart(Role::Backup, 2);
        assert_eq!(b.peer(Active, 1000), Ok(None));
        assert_eq!(b.peer(Active, 1100), Ok(None));
        assert_eq!(b.peer(Active, 1199), Ok(None));
        let tr = b.node.on_peer_state(Active, b.at(1200)).unwrap().unwrap();
        assert_eq!((tr.from, tr.to, tr.split), (Active, Passive, Some(2)));
        assert!(tr.reason.contains("both nodes served"), "{tr}");
        assert!(tr.reason.contains("backup yields"), "{tr}");
        assert!(!b.node.contested());

        let mut p = apart(Role::Primary, 2);
        for ms in (1000..5000).step_by(100) {
            assert_eq!(p.peer(Active, ms), Ok(None), "at {ms}");
        }
        assert_eq!(p.state(), Active);
        for ms in [5000, 5100, 5200] {
            assert_eq!(p.peer(Passive, ms), Ok(None));
        }
        assert!(!p.node.contested());
    }

    #[test]
    fn a_contest_ends_when_the_peer_expires() {
        let mut b = apart(Role::Backup, 1);
        assert_eq!(b.peer(Active, 1000), Ok(None));
        assert!(b.node.contested());
        // The peer goes silent past its expiry, then is heard again: a new contest.
        assert_eq!(b.peer(Active, 1500), Ok(None));
        assert_eq!(b.peer(Active, 1600), Ok(None));
        assert_eq!(b.peer(Active, 1700), Ok(Some(Passive)));
    }

    #[test]
    fn dual_passive_makes_the_primary_active_and_the_backup_wait_for_it() {
        let mut p = T::in_state(Role::Primary, Passive);
        // One PASSIVE may be stale (a burst after a partition): it must persist.
        assert_eq!(p.peer(Passive, 50), Ok(None));
        assert_eq!(p.peer(Passive, 150), Ok(None));
        let tr = p.node.on_peer_state(Passive, p.at(250)).unwrap().unwrap();
        assert_eq!((tr.from, tr.to, tr.split), (Passive, Active, Some(0)));
        assert!(tr.reason.contains("the primary takes over"), "{tr}");
        let mut b = T::in_state(Role::Backup, Passive);
        assert_eq!(b.peer(Passive, 50), Ok(None));
        assert_eq!(b.state(), Passive);
        assert_eq!(b.peer(Active, 60), Ok(None), "then the normal pair");
        // A PASSIVE that is followed by ACTIVE was stale: no takeover.
        let mut p = T::in_state(Role::Primary, Passive);
        assert_eq!(p.peer(Passive, 50), Ok(None));
        assert_eq!(p.peer(Active, 51), Ok(None));
        assert_eq!(p.peer(Passive, 250), Ok(None));
        assert_eq!(p.state(), Passive);
    }

    #[test]
    fn stop_policy_keeps_the_guides_fatal_dual_active() {
        let mut t = T::in_state_with(Role::Backup, Passive, SplitPolicy::Stop);
        assert!(t.client(500).accepted());
        assert_eq!(t.peer(Active, 1000), Err(BstarError::DualActive));
    }

    /// Two nodes whose link delivers, in rounds `hb` apart, each node's current state to
    /// the other in a random order, until both are settled or `rounds` pass.
    fn heal(nodes: &mut [BinaryStar; 2], mut ms: u64, t0: Instant, rng: &mut impl rand::Rng) {
        for _ in 0..20 {
            ms += 100;
            let now = t0 + Duration::from_millis(ms);
            let first = rng.gen_range(0..2);
            for i in [first, 1 - first] {
                let other = nodes[1 - i].state();
                nodes[i]
                    .on_peer_state(other, now)
                    .expect("resolve never stops");
            }
        }
    }

    #[test]
    fn two_machines_partitioned_then_healed_end_with_exactly_one_active() {
        use rand::{Rng, SeedableRng};
        let seed = 20;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..300 {
            let t0 = Instant::now();
            let c = cfg(SplitPolicy::Resolve);
            let mut nodes = [
                BinaryStar::new(Role::Primary, c, t0),
                BinaryStar::new(Role::Backup, c, t0),
            ];
            let mut ms = 0;
            // Random deliveries (a lossy link, frozen nodes) and client requests at either.
            for _ in 0..rng.gen_range(0..60) {
                ms += rng.gen_range(0..250);
                let now = t0 + Duration::from_millis(ms);
                let i = rng.gen_range(0..2);
                if rng.gen_bool(0.4) {
                    let other = nodes[1 - i].state();
                    nodes[i]
                        .on_peer_state(other, now)
                        .expect("resolve never stops");
                } else {
                    nodes[i].on_client_request(now);
                }
            }
            heal(&mut nodes, ms, t0, &mut rng);
            let states = [nodes[0].state(), nodes[1].state()];
            let active = states.iter().filter(|s| **s == Active).count();
            assert_eq!(active, 1, "seed {seed}: {states:?}");
            assert!(states.contains(&Passive), "seed {seed}: {states:?}");
        }
    }

    #[test]
    fn the_issue_20_scenario_the_cut_off_primary_steps_down_and_the_backup_serves_on() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let c = cfg(SplitPolicy::Resolve);
        let mut p = BinaryStar::new(Role::Primary, c, at(0));
        let mut b = BinaryStar::new(Role::Backup, c, at(0));
        p.on_peer_state(Backup, at(1)).unwrap();
        b.on_peer_state(Active, at(2)).unwrap();
        assert!(p.on_client_request(at(50)).accepted());
        // The primary is cut off from both at 100; the client votes at the backup at 400.
        assert!(b.on_client_request(at(400)).accepted());
        for ms in (500..10_000).step_by(100) {
            assert!(b.on_client_request(at(ms)).accepted());
        }
        // Healed: the backup's ACTIVE reaches the primary first.
        let tr = p.on_peer_state(b.state(), at(10_000)).unwrap().unwrap();
        assert_eq!((tr.to, tr.split), (Passive, Some(0)));
        assert_eq!(b.on_peer_state(p.state(), at(10_001)), Ok(None));
        assert_eq!((p.state(), b.state()), (Passive, Active));
    }
}
