//! A worker's link to its queue or broker, as a pure state machine over `Instant`s: up and
//! watching the peer's [`Liveness`], or down until a reopen instant the [`Backoff`] chose.
//!
//! Every worker connection keeps these rules, whoever holds it: the Pirate and Majordomo
//! worker's sessions (`roles::worker`) and Titanic's three MDP worker connections
//! (`roles::titanic`). The holder keeps what differs (its socket, identity, READY and
//! frames) and asks the link what is due.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::heartbeat::{HeartbeatConfig, Liveness};

/// Where a worker's socket stands, and the back-off of its reconnects.
#[derive(Clone, Debug)]
pub struct Link {
    state: State,
    backoff: Backoff,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Connected; `peer` is the queue's or broker's liveness (`None`: no heartbeats, as the
    /// Simple Pirate's REQ worker has none, or no READY sent yet).
    Up { peer: Option<Liveness> },
    /// Peer lost: a new socket opens at `until`.
    Down { until: Instant },
}

/// What the link needs now (see [`Link::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Up, and the peer (if watched) is alive.
    Up,
    /// Up, but the peer has been silent past its expiry: lose it ([`Link::lose`]).
    PeerDead,
    /// Down, waiting for the reopen instant.
    Down,
    /// Down and the reopen instant has come: open a new socket, then [`Link::up`].
    Reopen,
}

impl Link {
    /// A link whose first socket is open but not yet registered (no peer watched), with the
    /// reconnect delays of `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        Link {
            state: State::Up { peer: None },
            backoff,
        }
    }

    /// A socket was (re)opened at `now` and READY goes out on it: up, watching the peer with
    /// `heartbeat` (just connected counts as just heard), or not at all with `None`.
    pub fn up(&mut self, heartbeat: Option<HeartbeatConfig>, now: Instant) {
        self.state = State::Up {
            peer: heartbeat.map(|config| Liveness::new(config, now)),
        };
    }

    /// True while the socket is open (not waiting to reopen).
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// What is due at `now`; asking changes nothing.
    pub fn status(&self, now: Instant) -> Status {
        match self.state {
            State::Down { until } if now >= until => Status::Reopen,
            State::Down { .. } => Status::Down,
            State::Up { peer: Some(peer) } if peer.is_dead(now) => Status::PeerDead,
            State::Up { .. } => Status::Up,
        }
    }

    /// Any message from the peer proves it alive (nothing while down: the socket is gone).
    pub fn heard(&mut self, now: Instant) {
        if let State::Up { peer: Some(peer) } = &mut self.state {
            peer.heard(now);
        }
    }

    /// The peer answered our READY: a later loss starts the back-off afresh.
    pub fn answered(&mut self) {
        self.backoff.reset();
    }

    /// Traffic went out at `now`: it is proof of life, no heartbeat for another interval.
    pub fn sent(&mut self, now: Instant) {
        if let State::Up { peer: Some(peer) } = &mut self.state {
            peer.sent(now);
        }
    }

    /// True when a heartbeat is due on an up, watched link; schedules the next one.
    pub fn heartbeat_due(&mut self, now: Instant) -> bool {
        match &mut self.state {
            State::Up { peer: Some(peer) } => peer.heartbeat_due(now),
            _ => false,
        }
    }

    /// The peer is lost at `now`: down until the next back-off delay has passed, or until
    /// `now` with `at_once` (the back-off is then left as it was). Returns the delay, for the
    /// holder's log line and event.
    pub fn lose(&mut self, now: Instant, at_once: bool) -> Duration {
        let delay = if at_once {
            Duration::ZERO
        } else {
            self.backoff.next_delay()
        };
        self.state = State::Down { until: now + delay };
        delay
    }

    /// When the link must next be looked at: the reopen instant, or the peer's next heartbeat
    /// or expiry, whichever is first; `None` when up with no peer watched.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Down { until } => Some(until),
            State::Up { peer: Some(peer) } => Some(peer.next_send().min(peer.expires_at())),
            State::Up { peer: None } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: HeartbeatConfig = HeartbeatConfig {
        interval: Duration::from_millis(100),
        liveness: 3,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn link() -> Link {
        Link::new(Backoff::new(ms(1000), ms(4000)))
    }

    #[test]
    fn a_new_link_is_up_and_watches_nothing_until_ready() {
        let t0 = Instant::now();
        let mut l = link();
        assert!(l.is_up());
        assert_eq!(l.status(t0 + ms(10_000)), Status::Up);
        assert_eq!(l.next_deadline(), None);
        assert!(!l.heartbeat_due(t0 + ms(10_000)));
        l.up(None, t0);
        assert_eq!(l.next_deadline(), None);
        assert_eq!(l.status(t0 + ms(10_000)), Status::Up);
    }

    #[test]
    fn up_heartbeats_every_interval_and_traffic_puts_the_next_off() {
        let t0 = Instant::now();
        let mut l = link();
        l.up(Some(CFG), t0);
        assert_eq!(l.next_deadline(), Some(t0 + ms(100)));
        assert!(!l.heartbeat_due(t0 + ms(99)));
        assert!(l.heartbeat_due(t0 + ms(100)));
        l.sent(t0 + ms(150));
        assert!(!l.heartbeat_due(t0 + ms(249)));
        assert!(l.heartbeat_due(t0 + ms(250)));
    }

    #[test]
    fn a_silent_peer_is_dead_after_the_expiry_and_heard_resets_it() {
        let t0 = Instant::now();
        let mut l = link();
        l.up(Some(CFG), t0);
        assert_eq!(l.status(t0 + ms(299)), Status::Up);
        assert_eq!(l.status(t0 + ms(300)), Status::PeerDead);
        l.heard(t0 + ms(250));
        assert_eq!(l.status(t0 + ms(549)), Status::Up);
        assert_eq!(l.status(t0 + ms(550)), Status::PeerDead);
        // Heartbeats are due before the expiry, so the deadline is the next send.
        assert!(l.heartbeat_due(t0 + ms(500)));
        assert_eq!(l.next_deadline(), Some(t0 + ms(550)));
    }

    #[test]
    fn lost_it_is_down_for_the_doubling_back_off_then_reopens() {
        let t0 = Instant::now();
        let mut l = link();
        l.up(Some(CFG), t0);
        assert_eq!(l.lose(t0 + ms(300), false), ms(1000));
        assert!(!l.is_up());
        assert_eq!(l.status(t0 + ms(1299)), Status::Down);
        assert_eq!(l.status(t0 + ms(1300)), Status::Reopen);
        assert_eq!(l.next_deadline(), Some(t0 + ms(1300)));
        // Down: nothing heard, sent or due changes it.
        l.heard(t0 + ms(400));
        l.sent(t0 + ms(400));
        assert!(!l.heartbeat_due(t0 + ms(5000)));
        assert_eq!(l.next_deadline(), Some(t0 + ms(1300)));
        l.up(Some(CFG), t0 + ms(1300));
        assert!(l.is_up());
        assert_eq!(l.lose(t0 + ms(1600), false), ms(2000));
        l.up(Some(CFG), t0 + ms(3600));
        assert_eq!(l.lose(t0 + ms(3900), false), ms(4000));
        l.up(Some(CFG), t0 + ms(7900));
        assert_eq!(
            l.lose(t0 + ms(8200), false),
            ms(4000),
            "never past the maximum"
        );
    }

    #[test]
    fn an_answer_resets_the_back_off() {
        let t0 = Instant::now();
        let mut l = link();
        l.up(Some(CFG), t0);
        assert_eq!(l.lose(t0, false), ms(1000));
        l.up(Some(CFG), t0 + ms(1000));
        l.answered();
        assert_eq!(l.lose(t0 + ms(1300), false), ms(1000));
    }

    #[test]
    fn lost_at_once_reopens_now_and_leaves_the_back_off_alone() {
        let t0 = Instant::now();
        let mut l = link();
        l.up(Some(CFG), t0);
        assert_eq!(l.lose(t0 + ms(50), false), ms(1000));
        l.up(Some(CFG), t0 + ms(1050));
        assert_eq!(l.lose(t0 + ms(1100), true), Duration::ZERO);
        assert_eq!(l.status(t0 + ms(1100)), Status::Reopen);
        l.up(Some(CFG), t0 + ms(1100));
        assert_eq!(l.lose(t0 + ms(1200), false), ms(2000));
    }
}
