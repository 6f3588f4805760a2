//! What every worker protocol shares (`pirate worker`, [`worker`](super::worker) for Simple and
//! Paranoid Pirate, [`mdp_worker`](super::mdp_worker) for Majordomo): the config, the per-run
//! context (identities, fault injection, counters) and the finished work for one request.

use std::time::Duration;

use crate::error::Result;
use crate::event::{Events, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, Injection, OnCrash};
use crate::handler::Handler;
use crate::heartbeat::HeartbeatConfig;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
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

/// The finished work for one request: where it goes, what it says, what `Served` will say.
pub(crate) struct Done {
    pub(crate) envelope: Vec<Frame>,
    pub(crate) reply: Message,
    pub(crate) serving: Serving,
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
    /// Draws and acts on this request's fault ([`Faults::inject`]): a crash dies here, a
    /// freeze stops the calling thread here; says how much longer the work takes (overload).
    pub(crate) fn inject(&mut self, events: &mut Events) -> Result<Injection> {
        self.faults.inject(&mut self.report, OnCrash::Now, events)
    }
}
