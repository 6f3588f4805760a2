//! The worker as a library call for Rust programs: [`serve`] answers a Majordomo service with
//! a function, running the same [`Worker`](super::Worker) machine as `pirate worker --protocol
//! mdp` (the Guide's mdwrkapi); [`crate::majordomo`] offers it.

use std::time::Duration;

use crate::error::Result;
use crate::event::{Events, Report};
use crate::handler::Handler;
use crate::heartbeat::HeartbeatConfig;
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::reactor::Stop;

use super::{PirateProtocol, WorkerConfig};

/// How a Majordomo worker served by [`serve`] connects and heartbeats.
#[derive(Clone, Debug)]
pub struct MdpWorkerConfig {
    pub endpoint: String,
    pub service: String,
    pub version: Version,
    /// 7/MDP: 2500 ms, liveness 3.
    pub heartbeat: HeartbeatConfig,
    /// First delay before reconnecting (Guide: 2500 ms); doubles up to `reconnect_max`.
    pub reconnect: Duration,
    pub reconnect_max: Duration,
    /// Identity prefix: each socket is `NAME-N-` and 32 random hex digits (see
    /// [`crate::transport::random_identity`]), readable in logs and unguessable on the wire.
    pub name: String,
    /// More brokers to try in turn after losing one (a Binary Star pair): each reconnect moves
    /// to the next endpoint.
    pub failover: Vec<String>,
}

impl MdpWorkerConfig {
    /// The Guide's defaults for a worker of `service` at `endpoint`.
    pub fn new(endpoint: &str, service: &str, version: Version) -> Self {
        MdpWorkerConfig {
            endpoint: endpoint.to_string(),
            service: service.to_string(),
            version,
            heartbeat: HeartbeatConfig {
                interval: Duration::from_millis(2500),
                liveness: 3,
            },
            reconnect: Duration::from_millis(2500),
            reconnect_max: Duration::from_secs(32),
            name: format!("w{}", std::process::id()),
            failover: Vec::new(),
        }
    }
}

impl MdpWorkerConfig {
    /// The worker role's configuration for this one, answering with `handler`.
    fn worker(&self, handler: Handler) -> WorkerConfig {
        WorkerConfig {
            endpoint: self.endpoint.clone(),
            failover: self.failover.clone(),
            protocol: PirateProtocol::Majordomo(self.version),
            service: self.service.clone(),
            heartbeat: self.heartbeat,
            reconnect: self.reconnect,
            reconnect_max: self.reconnect_max,
            name: self.name.clone(),
            handler,
            ..WorkerConfig::default()
        }
    }
}

/// Serves `config.service` until `stop` is raised, answering every request with `handle` (run
/// on a work thread, one request at a time): the Guide's mdwrkapi loop, as the same worker
/// machine that `pirate worker --protocol mdp` runs on the reactor. It registers with READY,
/// heartbeats, and reconnects with a new socket after DISCONNECT or when the broker has been
/// silent for `liveness` intervals. Returns the worker's counters.
pub fn serve(
    config: &MdpWorkerConfig,
    handle: impl Fn(Message) -> Message + Send + Sync + 'static,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    super::run(&config.worker(Handler::func(handle)), stop, events)
}
