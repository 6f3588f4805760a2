//! Heartbeat and liveness bookkeeping as a pure state machine over `Instant`s: when to send
//! the next heartbeat, and when a silent peer counts as dead.
//!
//! 6/PPP and 7/MDP share the rule: any message from the peer proves it alive; a peer is dead
//! after `liveness` heartbeat intervals without hearing from it.

use std::time::{Duration, Instant};

/// Heartbeat timing agreed by both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// How often to send a heartbeat (PPP: 1s, MDP: 2500ms).
    pub interval: Duration,
    /// Silent intervals after which the peer is dead (3 to 5).
    pub liveness: u32,
}

impl HeartbeatConfig {
    /// How long a peer may stay silent.
    pub fn expiry(&self) -> Duration {
        self.interval * self.liveness
    }
}

/// One peer's liveness as seen from our side, and when we next owe it a heartbeat. Every
/// role that decides a peer is dead decides it here: queue, broker and workers with a
/// [`HeartbeatConfig`], the Freelance client's servers (ping interval and TTL), the Binary
/// Star peer (publish interval, two of them to expiry), the fault proxy's idle links.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    interval: Duration,
    expiry: Duration,
    expires_at: Instant,
    next_send: Instant,
}

impl Liveness {
    /// A peer just heard from (or just connected to) at `now`.
    pub fn new(config: HeartbeatConfig, now: Instant) -> Self {
        Liveness::with_timing(config.interval, config.expiry(), now)
    }

    /// Heartbeats every `interval`, dead after `expiry` of silence, just heard from at `now`.
    pub fn with_timing(interval: Duration, expiry: Duration, now: Instant) -> Self {
        Liveness {
            interval,
            expiry,
            expires_at: now + expiry,
            next_send: now + interval,
        }
    }

    /// A peer never heard from: dead until it speaks, and owed a heartbeat (a ping, our
    /// state) at once.
    pub fn unheard(interval: Duration, expiry: Duration, now: Instant) -> Self {
        Liveness {
            interval,
            expiry,
            expires_at: now,
            next_send: now,
        }
    }

    /// Any message from the peer proves it alive.
    pub fn heard(&mut self, now: Instant) {
        self.expires_at = now + self.expiry;
    }

    /// The peer cannot be reached (nothing could be sent to it): dead from `now` on, until it
    /// is heard from again.
    pub fn lost(&mut self, now: Instant) {
        self.expires_at = self.expires_at.min(now);
    }

    /// True once the peer has been silent for the expiry (`liveness` intervals).
    pub fn is_dead(&self, now: Instant) -> bool {
        now >= self.expires_at
    }

    /// When the peer will be dead if nothing arrives.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// True when a heartbeat is due; schedules the next one. Skipped beats are not repaid in a
    /// burst: the next one is one interval from now.
    pub fn heartbeat_due(&mut self, now: Instant) -> bool {
        if now >= self.next_send {
            self.next_send = now + self.interval;
            true
        } else {
            false
        }
    }

    /// Reschedules the next heartbeat one interval from `now` (after other traffic was sent:
    /// heartbeats should not ride alongside it).
    pub fn sent(&mut self, now: Instant) {
        self.next_send = now + self.interval;
    }

    /// Schedules the next heartbeat at `at` instead (sooner: at once after a change of state,
    /// or a quick retry of one that could not go out).
    pub fn send_at(&mut self, at: Instant) {
        self.next_send = at;
    }

    /// When the next heartbeat is due.
    pub fn next_send(&self) -> Instant {
        self.next_send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: HeartbeatConfig = HeartbeatConfig {
        interval: Duration::from_millis(100),
        liveness: 3,
    };

    #[test]
    fn dead_after_liveness_silent_intervals() {
        let t0 = Instant::now();
        let l = Liveness::new(CFG, t0);
        assert!(!l.is_dead(t0 + Duration::from_millis(299)));
        assert!(l.is_dead(t0 + Duration::from_millis(300)));
        assert_eq!(l.expires_at(), t0 + Duration::from_millis(300));
    }

    #[test]
    fn any_message_resets_the_clock() {
        let t0 = Instant::now();
        let mut l = Liveness::new(CFG, t0);
        l.heard(t0 + Duration::from_millis(250));
        assert!(!l.is_dead(t0 + Duration::from_millis(500)));
        assert!(l.is_dead(t0 + Duration::from_millis(550)));
    }

    #[test]
    fn heartbeats_every_interval_without_bursts() {
        let t0 = Instant::now();
        let mut l = Liveness::new(CFG, t0);
        assert!(!l.heartbeat_due(t0 + Duration::from_millis(99)));
        assert!(l.heartbeat_due(t0 + Duration::from_millis(100)));
        assert!(!l.heartbeat_due(t0 + Duration::from_millis(150)));
        // A long stall: one heartbeat, not the three that were skipped.
        assert!(l.heartbeat_due(t0 + Duration::from_millis(900)));
        assert!(!l.heartbeat_due(t0 + Duration::from_millis(950)));
        l.sent(t0 + Duration::from_millis(980));
        assert!(!l.heartbeat_due(t0 + Duration::from_millis(1050)));
        assert!(l.heartbeat_due(t0 + Duration::from_millis(1080)));
    }

    #[test]
    fn an_unheard_peer_is_dead_and_owed_a_heartbeat_until_it_speaks() {
        let t0 = Instant::now();
        let mut l = Liveness::unheard(CFG.interval, Duration::from_millis(250), t0);
        assert!(l.is_dead(t0));
        assert_eq!(l.next_send(), t0);
        assert!(l.heartbeat_due(t0));
        l.heard(t0 + Duration::from_millis(10));
        assert!(!l.is_dead(t0 + Duration::from_millis(259)));
        assert!(l.is_dead(t0 + Duration::from_millis(260)));
    }

    #[test]
    fn a_lost_peer_is_dead_at_once_and_a_sooner_send_can_be_asked_for() {
        let t0 = Instant::now();
        let mut l = Liveness::new(CFG, t0);
        l.lost(t0 + Duration::from_millis(50));
        assert!(l.is_dead(t0 + Duration::from_millis(50)));
        assert!(!l.is_dead(t0 + Duration::from_millis(49)));
        l.send_at(t0 + Duration::from_millis(60));
        assert!(!l.heartbeat_due(t0 + Duration::from_millis(59)));
        assert!(l.heartbeat_due(t0 + Duration::from_millis(60)));
        assert_eq!(l.next_send(), t0 + Duration::from_millis(160));
        l.heard(t0 + Duration::from_millis(70));
        assert!(!l.is_dead(t0 + Duration::from_millis(369)));
    }
}
