//! What every worker protocol shares (`pirate worker`, [`worker`](super::worker) for Simple and
//! Paranoid Pirate, [`mdp_worker`](super::mdp_worker) for Majordomo): the config, the per-run
//! context (identities, fault injection, counters) and the finished work for one request.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{Event, Events, FaultKind, ServiceReport};
use crate::faults::{crash_now, Fault, FaultPlan, Faults};
use crate::handler::Handler;
use crate::heartbeat::HeartbeatConfig;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
use crate::shutdown;
use crate::stats::millis;
use crate::transport;

/// Which protocol the worker speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PirateProtocol {
    /// Simple Pirate: REQ, READY once, no heartbeats.
    Simple,
    /// Paranoid Pirate (6/PPP): DEALER, heartbeats, reconnect with back-off.
    Paranoid,
    /// Majordomo (7/MDP 0.1 or 18/MDP 0.2) worker for `WorkerConfig::service`.
    Majordomo(Version),
}

/// Everything a Simple or Paranoid Pirate worker needs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Guide: `tcp://localhost:5556`.
    pub endpoint: String,
    /// Majordomo only: more brokers to move to, in turn, after losing one (Binary Star).
    pub failover: Vec<String>,
    pub protocol: PirateProtocol,
    /// The Majordomo service to register for.
    pub service: String,
    /// Guide: 1s, liveness 3 (PPP); 2500ms, liveness 3 (MDP).
    pub heartbeat: HeartbeatConfig,
    /// Back-off after losing the queue (Guide: 1s doubling to 32s).
    pub reconnect: Duration,
    pub reconnect_max: Duration,
    /// Identity prefix; each socket gets `NAME-N-` and 32 random hex digits (unguessable:
    /// see [`crate::transport::random_identity`]). Defaults to `w<pid>`.
    pub name: String,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            endpoint: "tcp://localhost:5556".into(),
            failover: Vec::new(),
            protocol: PirateProtocol::Paranoid,
            service: "echo".into(),
            heartbeat: HeartbeatConfig {
                interval: Duration::from_secs(1),
                liveness: 3,
            },
            reconnect: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(32),
            name: format!("w{}", std::process::id()),
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }
}

/// The finished work for one request: where it goes and what it says.
pub(crate) struct Done {
    pub(crate) envelope: Vec<Frame>,
    pub(crate) reply: Message,
    pub(crate) cycle: u64,
    pub(crate) request: String,
    pub(crate) bytes: usize,
    pub(crate) started: Instant,
}

/// Per-run state shared by every protocol.
pub(crate) struct Ctx<'c> {
    pub(crate) config: &'c WorkerConfig,
    pub(crate) faults: Faults,
    pub(crate) report: ServiceReport,
    pub(crate) sockets: u64,
}

impl Ctx<'_> {
    /// A fresh unguessable identity for the next socket: `NAME-N-<32 hex digits>`.
    pub(crate) fn identity(&mut self) -> Vec<u8> {
        self.sockets += 1;
        transport::random_identity(&format!("{}-{}", self.config.name, self.sockets))
    }

    /// Draws this request's fault and applies the ones that happen in the receiving thread:
    /// a crash dies here; a freeze stops everything here. Returns extra work time (overload).
    pub(crate) fn apply_fault(&mut self, events: &mut Events) -> Result<(u64, Duration)> {
        let cycle = self.faults.cycles() + 1;
        let fault = self.faults.next_cycle();
        let mut extra = Duration::ZERO;
        match fault {
            Some(Fault::Crash) => {
                events.emit(Event::Fault {
                    kind: FaultKind::Crash,
                    cycle,
                    duration_ms: None,
                });
                events.info("simulating a crash");
                crash_now();
            }
            Some(Fault::Overload(d)) => {
                self.report.overloads += 1;
                events.emit(Event::Fault {
                    kind: FaultKind::Overload,
                    cycle,
                    duration_ms: Some(d.as_millis() as u64),
                });
                events.info("simulating CPU overload");
                extra = d;
            }
            Some(Fault::Freeze(d)) => {
                self.report.freezes += 1;
                events.emit(Event::Fault {
                    kind: FaultKind::Freeze,
                    cycle,
                    duration_ms: Some(d.as_millis() as u64),
                });
                events.info("simulating a freeze (no reads, no heartbeats)");
                shutdown::sleep(d)?;
            }
            None => {}
        }
        Ok((cycle, extra))
    }
}

/// Counts and announces one request served.
pub(crate) fn served(ctx: &mut Ctx, done: &Done, events: &mut Events) {
    ctx.report.replied += 1;
    events.emit(Event::Served {
        cycle: done.cycle,
        request: done.request.clone(),
        bytes: done.bytes,
        work_ms: millis(done.started.elapsed()),
    });
}
