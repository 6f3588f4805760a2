//! Seeded fault injection shared by every role that does work: crashes, overloads (stalls)
//! and freezes, decided once per request cycle from one seeded generator, and decided in one
//! place ([`Faults::decide`]), the same way in every role; each role's machine acts on the
//! [`Decision`]:
//!
//! - **crash**: `Fault` event, a log line, then the machine asks the reactor to die on the spot
//!   (SIGKILL to itself: the request is lost with it). A role that must die somewhere else
//!   (Titanic, in the middle of its next store write) asks for [`OnCrash::Deferred`] and
//!   arranges it itself.
//! - **overload**: `Fault` event, a log line, counted in `overloads`; the request's work takes
//!   `overload_for` longer: a deadline of the machine, which keeps heartbeating meanwhile (a
//!   Binary Star node keeps publishing its state).
//! - **freeze**: `Fault` event, a log line, counted in `freezes`; for `freeze_for` the machine
//!   reads nothing and sends nothing (no heartbeats, nothing published), as a hung process. The
//!   request is still answered afterwards. For a REP server, which neither heartbeats nor reads
//!   while it holds a request, a freeze looks the same on the wire as an overload of that
//!   length; it is still reported as the freeze it is (`kind: freeze`, `freezes`).
//!
//! The draw order per cycle is fixed (crash roll, overload roll, freeze roll), so the same seed
//! and the same sequence of requests give the same faults on any machine: ChaCha8 is specified
//! bit for bit, unlike `rand`'s default generator.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{Event, Events, FaultKind, ServiceReport};

/// What to inject and when. `Default` injects nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Probability of crashing on a cycle once faults have started.
    pub crash_rate: f64,
    /// Probability of stalling ("CPU overload") for `overload_for`.
    pub overload_rate: f64,
    pub overload_for: Duration,
    /// Probability of freezing (no reads, no heartbeats) for `freeze_for`.
    pub freeze_rate: f64,
    pub freeze_for: Duration,
    /// Cycles served normally before random faults start (the Guide: 3).
    pub faults_after: u64,
    /// Crash deterministically on request `n + 1`.
    pub crash_after: Option<u64>,
    /// Simulated work per request.
    pub work: Duration,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            crash_rate: 0.0,
            overload_rate: 0.0,
            overload_for: Duration::from_secs(2),
            freeze_rate: 0.0,
            freeze_for: Duration::from_secs(5),
            faults_after: 3,
            crash_after: None,
            work: Duration::ZERO,
        }
    }
}

impl FaultPlan {
    /// The Guide's lpserver: after 3 cycles, crash 1 in 3, else stall 2 s 1 in 3; 1 s work.
    pub fn guide_server() -> Self {
        FaultPlan {
            crash_rate: 1.0 / 3.0,
            overload_rate: 1.0 / 3.0,
            overload_for: Duration::from_secs(2),
            faults_after: 3,
            work: Duration::from_secs(1),
            ..FaultPlan::default()
        }
    }

    /// The Guide's spworker/ppworker: after 3 cycles, crash 1 in 5, else stall 3 s 1 in 5;
    /// 1 s work.
    pub fn guide_worker() -> Self {
        FaultPlan {
            crash_rate: 0.2,
            overload_rate: 0.2,
            overload_for: Duration::from_secs(3),
            faults_after: 3,
            work: Duration::from_secs(1),
            ..FaultPlan::default()
        }
    }

    /// True if this plan can inject anything at all.
    pub fn is_active(&self) -> bool {
        self.crash_rate > 0.0
            || self.overload_rate > 0.0
            || self.freeze_rate > 0.0
            || self.crash_after.is_some()
    }
}

/// A fault to inject on this cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Die now, without closing anything.
    Crash,
    /// Stall before replying (the request is still answered, late).
    Overload(Duration),
    /// Stop reading and heartbeating (the request is still answered afterwards).
    Freeze(Duration),
}

/// The per-process fault injector: a plan, a seeded generator and a cycle counter.
#[derive(Debug)]
pub struct Faults {
    plan: FaultPlan,
    rng: ChaCha8Rng,
    seed: u64,
    cycles: u64,
}

impl Faults {
    /// An injector for `plan` drawing from `seed`.
    pub fn new(plan: FaultPlan, seed: u64) -> Self {
        Faults {
            plan,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            cycles: 0,
        }
    }

    /// The seed this injector draws from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Cycles counted so far.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// Counts one more request cycle and decides its fault, if any. Rolls happen only once
    /// faults have started, in a fixed order, so runs replay by seed.
    pub fn next_cycle(&mut self) -> Option<Fault> {
        self.cycles += 1;
        if let Some(n) = self.plan.crash_after {
            if self.cycles > n {
                return Some(Fault::Crash);
            }
        }
        if self.cycles <= self.plan.faults_after {
            return None;
        }
        let crash: f64 = self.rng.gen();
        let overload: f64 = self.rng.gen();
        let freeze: f64 = self.rng.gen();
        if crash < self.plan.crash_rate {
            Some(Fault::Crash)
        } else if overload < self.plan.overload_rate {
            Some(Fault::Overload(self.plan.overload_for))
        } else if freeze < self.plan.freeze_rate {
            Some(Fault::Freeze(self.plan.freeze_for))
        } else {
            None
        }
    }
}

/// How a role dies of an injected crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCrash {
    /// Right here, now ([`crash_now`]).
    Now,
    /// Somewhere the role chooses: [`Faults::decide`] announces the crash and returns
    /// [`Decision::crash`]; the role logs where it will die and arranges it.
    Deferred,
}

impl Faults {
    /// A request arrived at `now`: draws its fault and decides what it means, without acting
    /// on it (for machines, which turn a stall into a deadline and a crash into an output):
    /// emits the `Fault` event, logs a line, counts overloads and freezes in `report`, and
    /// says when the request's work may begin and when it is due. Every working role draws
    /// its requests' faults here and nowhere else.
    pub fn decide(
        &mut self,
        report: &mut ServiceReport,
        on_crash: OnCrash,
        now: Instant,
        events: &mut Events,
    ) -> Decision {
        let cycle = self.cycles + 1;
        let fault = self.next_cycle();
        let mut decision = Decision {
            cycle,
            extra_work: Duration::ZERO,
            freeze: None,
            crash: false,
            begins: now,
            due: now + self.plan.work,
        };
        let (kind, duration) = match fault {
            None => return decision,
            Some(Fault::Crash) => (FaultKind::Crash, None),
            Some(Fault::Overload(d)) => (FaultKind::Overload, Some(d)),
            Some(Fault::Freeze(d)) => (FaultKind::Freeze, Some(d)),
        };
        events.emit(Event::Fault {
            kind,
            cycle,
            duration_ms: duration.map(|d| d.as_millis() as u64),
        });
        match fault {
            Some(Fault::Crash) => {
                if on_crash == OnCrash::Now {
                    events.info("simulating a crash");
                }
                decision.crash = true;
            }
            Some(Fault::Overload(d)) => {
                report.overloads += 1;
                events.info("simulating CPU overload");
                decision.extra_work = d;
            }
            Some(Fault::Freeze(d)) => {
                report.freezes += 1;
                events.info("simulating a freeze (no reads, no heartbeats)");
                decision.freeze = Some(d);
            }
            None => {}
        }
        decision.begins = now + decision.freeze.unwrap_or_default();
        decision.due = decision.begins + self.plan.work + decision.extra_work;
        decision
    }
}

impl Faults {
    /// A request arrived at `now` at a role that dies of a crash at once ([`OnCrash::Now`]):
    /// counts it in `report` and [`decide`](Self::decide)s its fault; `None` when that is a
    /// crash, which the role then carries out (the request dies with it).
    pub fn take_request(
        &mut self,
        report: &mut ServiceReport,
        now: Instant,
        events: &mut Events,
    ) -> Option<Decision> {
        report.requests += 1;
        let decision = self.decide(report, OnCrash::Now, now, events);
        (!decision.crash).then_some(decision)
    }
}

/// What one request's fault means, as [`Faults::decide`] drew it: the machine acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The request's cycle, 1-based (the `cycle` of its `Fault` and `Served` events).
    pub cycle: u64,
    /// How much longer the work takes (overload).
    pub extra_work: Duration,
    /// Stop reading and heartbeating for this long (freeze), then carry on.
    pub freeze: Option<Duration>,
    /// Die (under [`OnCrash::Now`], at once: the request is lost with the process).
    pub crash: bool,
    /// When the request's work may begin: once any freeze is over.
    pub begins: Instant,
    /// When the work is done stalling and the handler may run: `begins` plus the plan's
    /// work time plus any overload.
    pub due: Instant,
}

impl Decision {
    /// Until when the role reads and sends nothing, if this request froze it.
    pub fn frozen_until(&self) -> Option<Instant> {
        self.freeze.map(|_| self.begins)
    }
}

/// A seed from the operating system, for runs without `--seed`.
pub fn random_seed() -> u64 {
    rand::random::<u64>() >> 11 // keep it short enough to read and retype (53 bits)
}

/// Dies the way a crashing process does: SIGKILL to ourselves, so no destructor runs, no socket
/// is closed politely, and the parent sees a death by signal.
pub fn crash_now() -> ! {
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; this line is only reached if kill(2) itself failed.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults_of(plan: FaultPlan, seed: u64, cycles: usize) -> Vec<Option<Fault>> {
        let mut f = Faults::new(plan, seed);
        (0..cycles).map(|_| f.next_cycle()).collect()
    }

    #[test]
    fn nothing_before_faults_after() {
        let plan = FaultPlan {
            crash_rate: 1.0,
            ..FaultPlan::default()
        };
        let seen = faults_of(plan, 1, 4);
        assert_eq!(seen, vec![None, None, None, Some(Fault::Crash)]);
    }

    #[test]
    fn crash_after_is_deterministic() {
        let plan = FaultPlan {
            crash_after: Some(5),
            ..FaultPlan::default()
        };
        let seen = faults_of(plan, 7, 6);
        assert_eq!(seen[..5], [None; 5]);
        assert_eq!(seen[5], Some(Fault::Crash));
    }

    #[test]
    fn same_seed_same_faults_other_seed_differs() {
        let plan = FaultPlan::guide_server();
        let a = faults_of(plan.clone(), 42, 200);
        assert_eq!(a, faults_of(plan.clone(), 42, 200));
        assert_ne!(a, faults_of(plan, 43, 200));
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let plan = FaultPlan {
            overload_rate: 0.25,
            overload_for: Duration::from_millis(1),
            faults_after: 0,
            ..FaultPlan::default()
        };
        let n = faults_of(plan, 9, 4000)
            .into_iter()
            .filter(|f| matches!(f, Some(Fault::Overload(_))))
            .count();
        assert!((800..1200).contains(&n), "{n} overloads in 4000 at 25%");
    }

    #[test]
    fn the_guide_presets_match_the_guide() {
        let s = FaultPlan::guide_server();
        assert_eq!((s.faults_after, s.work), (3, Duration::from_secs(1)));
        assert_eq!(s.overload_for, Duration::from_secs(2));
        let w = FaultPlan::guide_worker();
        assert_eq!((w.crash_rate, w.overload_rate), (0.2, 0.2));
        assert_eq!(w.overload_for, Duration::from_secs(3));
        assert!(!FaultPlan::default().is_active());
    }

    /// Runs `decide` once per plan cycle, recording events.
    fn decide_all(
        plan: FaultPlan,
        cycles: usize,
    ) -> (Vec<Decision>, ServiceReport, Vec<crate::event::Event>) {
        let mut faults = Faults::new(plan, 3);
        let mut report = ServiceReport::default();
        let (injected, seen) = crate::testkit::collect(|events| {
            (0..cycles)
                .map(|_| faults.decide(&mut report, OnCrash::Deferred, Instant::now(), events))
                .collect()
        });
        (injected, report, seen)
    }

    fn fault_kinds(events: &[crate::event::Event]) -> Vec<(FaultKind, u64, Option<u64>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Fault {
                    kind,
                    cycle,
                    duration_ms,
                } => Some((*kind, *cycle, *duration_ms)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn no_fault_means_nothing_to_do_and_nothing_said() {
        let (injected, report, events) = decide_all(FaultPlan::default(), 3);
        let cycles: Vec<u64> = injected.iter().map(|i| i.cycle).collect();
        assert_eq!(cycles, vec![1, 2, 3]);
        assert!(injected.iter().all(|i| i.extra_work.is_zero() && !i.crash));
        assert_eq!((report.overloads, report.freezes), (0, 0));
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn an_overload_is_announced_counted_and_handed_back_as_extra_work() {
        let plan = FaultPlan {
            overload_rate: 1.0,
            overload_for: Duration::from_millis(700),
            faults_after: 1,
            ..FaultPlan::default()
        };
        let (injected, report, events) = decide_all(plan, 2);
        assert_eq!(injected[0].extra_work, Duration::ZERO);
        assert_eq!(injected[1].extra_work, Duration::from_millis(700));
        assert_eq!((report.overloads, report.freezes), (1, 0));
        assert_eq!(
            fault_kinds(&events),
            vec![(FaultKind::Overload, 2, Some(700))]
        );
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Log { message, .. } if message == "simulating CPU overload"
        )));
    }

    #[test]
    fn a_freeze_is_decided_for_its_length_and_reported_as_a_freeze() {
        let plan = FaultPlan {
            freeze_rate: 1.0,
            freeze_for: Duration::from_millis(30),
            faults_after: 0,
            ..FaultPlan::default()
        };
        let (injected, report, events) = decide_all(plan, 1);
        // The machine freezes for this long; the work itself is not made longer.
        assert_eq!(injected[0].freeze, Some(Duration::from_millis(30)));
        assert_eq!(injected[0].extra_work, Duration::ZERO);
        assert_eq!((report.overloads, report.freezes), (0, 1));
        assert_eq!(fault_kinds(&events), vec![(FaultKind::Freeze, 1, Some(30))]);
    }

    #[test]
    fn a_deferred_crash_is_announced_and_left_to_the_role() {
        let plan = FaultPlan {
            crash_after: Some(1),
            ..FaultPlan::default()
        };
        let (injected, report, events) = decide_all(plan, 2);
        assert!(!injected[0].crash);
        assert!(injected[1].crash);
        assert_eq!((report.overloads, report.freezes), (0, 0));
        assert_eq!(fault_kinds(&events), vec![(FaultKind::Crash, 2, None)]);
    }

    #[test]
    fn inject_draws_exactly_what_next_cycle_draws() {
        // Acting on faults must not change which faults a seed gives (runs replay by seed).
        let plan = FaultPlan {
            overload_rate: 0.3,
            overload_for: Duration::from_millis(1),
            freeze_rate: 0.3,
            freeze_for: Duration::from_millis(1),
            faults_after: 0,
            ..FaultPlan::default()
        };
        let drawn = faults_of(plan.clone(), 3, 40);
        let (_, _, events) = decide_all(plan, 40);
        let expected: Vec<(FaultKind, u64, Option<u64>)> = drawn
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                Some(Fault::Overload(_)) => Some((FaultKind::Overload, i as u64 + 1, Some(1))),
                Some(Fault::Freeze(_)) => Some((FaultKind::Freeze, i as u64 + 1, Some(1))),
                _ => None,
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(fault_kinds(&events), expected);
    }
}
