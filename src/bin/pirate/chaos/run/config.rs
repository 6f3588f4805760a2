//! What a chaos run is asked to do ([`ChaosConfig`], the built-in demonstration among them)
//! and what follows from it alone, before anything starts: the topology's hosts and links, the
//! nemesis kinds that apply, and the seeded schedule of strikes.

use std::path::PathBuf;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use pirate::chaos::net;
use pirate::event::chaos::{NemesisFault, Pattern, ScheduledFault};

use crate::chaos::net::NetConfig;

/// Where `pirate chaos proxy` sits in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyPlacement {
    /// Between the clients and the broker, queue or server.
    Clients,
    /// Between the workers and the broker or queue.
    Workers,
}

/// Everything a chaos run needs.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// The `pirate` executable to run the roles with.
    pub exe: PathBuf,
    /// `--net namespaces`: every process a host of its own; `None`: all on loopback.
    pub net: Option<NetConfig>,
    /// `--ports LOW-HIGH`: every endpoint of the topology on a port from there.
    pub ports: Option<pirate::endpoint::PortRange>,
    pub pattern: Pattern,
    pub workers: usize,
    pub clients: usize,
    /// Requests per client; `None` sends for the whole fault phase.
    pub requests: Option<u64>,
    /// How long the nemesis strikes (and, without `requests`, how long clients send).
    pub fault_phase: Duration,
    /// How much longer the fault phase may go on until every nemesis kind has been injected
    /// and a reply came after it (the run is indeterminate otherwise).
    pub max_extension: Duration,
    /// Longest wait for clients to finish after healing.
    pub drain_timeout: Duration,
    /// Fault flags given to every worker during the fault phase (e.g. `--crash-rate 5%`).
    pub worker_faults: Vec<String>,
    /// Extra flags for every worker, always (e.g. `--work 10ms`).
    pub worker_args: Vec<String>,
    /// Run the workers as this shell command instead of `pirate worker` (CI smoke tests of
    /// one's own MDP worker). `{endpoint}` and `{service}` are substituted.
    pub worker_cmd: Option<String>,
    /// Use this broker or queue instead of starting one (its restart fault is then skipped).
    pub external: Option<String>,
    pub nemesis: Vec<NemesisFault>,
    /// Put a message-fault proxy here, with these `pirate chaos proxy` fault flags (removed
    /// when the run heals, like the workers' fault flags).
    pub proxy: Option<(ProxyPlacement, Vec<String>)>,
    pub nemesis_interval: Duration,
    pub restart_delay: Duration,
    pub freeze_for: Duration,
    /// Heartbeat interval for every role (liveness 3).
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    pub client_retries: u32,
    /// `--busy-timeout` for the Paranoid queue or pirate's own Majordomo broker.
    pub busy_timeout: Option<Duration>,
    /// Requests in flight per client.
    pub window: usize,
    pub seed: u64,
    pub strict: bool,
    /// Where to write `results.json`, `history.jsonl` and each child's stderr.
    pub out: Option<PathBuf>,
    /// Flags that secure the topology (`--security`); empty: none.
    pub security: ChaosSecurity,
    /// How the run was started (its command, every flag, the build), for its results.
    pub record: pirate::event::chaos::RunRecord,
}

/// Security flags for a topology: given to every `pirate` child that binds, and to every one
/// that connects (a Binary Star server and the proxy do both).
#[derive(Clone, Debug, Default)]
pub struct ChaosSecurity {
    pub binder: Vec<String>,
    pub connector: Vec<String>,
}

impl ChaosConfig {
    /// The built-in demonstration: a Majordomo broker, three workers that crash and stall,
    /// two clients, and a nemesis that kills, freezes and restarts, in about 30 seconds.
    pub fn demo(exe: PathBuf, seed: u64) -> Self {
        ChaosConfig {
            exe,
            net: None,
            pattern: Pattern::Majordomo,
            workers: 3,
            clients: 2,
            requests: None,
            fault_phase: Duration::from_secs(24),
            max_extension: DEFAULT_MAX_EXTENSION,
            drain_timeout: Duration::from_secs(20),
            worker_faults: [
                "--crash-rate",
                "2%",
                "--overload-rate",
                "5%",
                "--overload-for",
                "1500ms",
                "--faults-after",
                "3",
            ]
            .map(String::from)
            .to_vec(),
            worker_args: ["--work", "20ms"].map(String::from).to_vec(),
            worker_cmd: None,
            external: None,
            proxy: None,
            nemesis: vec![
                NemesisFault::Kill,
                NemesisFault::Freeze,
                NemesisFault::Restart,
            ],
            nemesis_interval: Duration::from_secs(3),
            restart_delay: Duration::from_millis(500),
            freeze_for: Duration::from_millis(1500),
            heartbeat: Duration::from_millis(250),
            client_timeout: Duration::from_millis(1000),
            client_retries: 20,
            busy_timeout: None,
            window: 1,
            seed,
            strict: false,
            out: None,
            ports: None,
            security: ChaosSecurity::default(),
            record: Default::default(),
        }
    }

    /// The nemesis kinds that apply to this topology, in the order asked: a restart needs a
    /// broker or queue of ours, and a Binary Star pair is never frozen. Empty when the nemesis
    /// is off (`--nemesis-interval 0s`).
    pub fn nemesis_kinds(&self) -> Vec<NemesisFault> {
        let mut kinds: Vec<NemesisFault> = self.nemesis.clone();
        let broker_ours = self.external.is_none()
            && !matches!(
                self.pattern,
                Pattern::Lazy | Pattern::Bstar | Pattern::Freelance
            );
        if !broker_ours {
            kinds.retain(|k| *k != NemesisFault::Restart);
        }
        if self.net.is_none() {
            // Network faults need hosts of their own (`validate` refuses them on loopback).
            kinds.retain(|k| k.network().is_none());
        }
        if self.nemesis_interval.is_zero() {
            kinds.clear();
        }
        kinds
    }

    /// Every process of the topology, in the order `plan` lists them (and `--net
    /// namespaces` addresses them: the first is 10.77.0.1).
    pub fn host_names(&self) -> Vec<String> {
        let numbered = |family: &str, n: usize| -> Vec<String> {
            (1..=n.max(1)).map(|i| format!("{family}-{i}")).collect()
        };
        let mut names: Vec<String> = match self.pattern {
            Pattern::Bstar => vec!["primary".into(), "backup".into()],
            Pattern::Freelance => numbered("server", self.workers),
            Pattern::Lazy => vec!["server".into()],
            Pattern::Majordomo | Pattern::Titanic => {
                let mut n = Vec::new();
                if self.external.is_none() {
                    n.push("broker".to_string());
                }
                n.extend(numbered("worker", self.workers));
                if self.pattern == Pattern::Titanic {
                    n.push("titanic".into());
                }
                n
            }
            Pattern::Simple | Pattern::Paranoid => {
                let mut n = vec!["queue".to_string()];
                n.extend(numbered("worker", self.workers));
                n
            }
        };
        if self.proxy.is_some() {
            names.push("proxy".into());
        }
        names.extend(numbered("client", self.clients));
        names
    }

    /// The host that binds the clients' endpoint (broker, queue, server, primary).
    pub(super) fn front_host(&self) -> &'static str {
        match self.pattern {
            Pattern::Majordomo | Pattern::Titanic => "broker",
            Pattern::Freelance => "server-1",
            _ => self.broker_name(),
        }
    }

    /// Pairs of hosts that talk (a connector, what it connects to): where a `oneway` fault
    /// can cut something.
    pub fn links(&self) -> Vec<(String, String)> {
        let names = self.host_names();
        let front = self.front_host().to_string();
        let by = |p: ProxyPlacement| match &self.proxy {
            Some((placed, _)) if *placed == p => "proxy".to_string(),
            _ => front.clone(),
        };
        let mut links = Vec::new();
        for n in &names {
            let family = n.split_once('-').map_or(n.as_str(), |(f, _)| f);
            match (self.pattern, family) {
                (Pattern::Freelance, "client") => {
                    for s in names.iter().filter(|s| s.starts_with("server-")) {
                        links.push((n.clone(), s.clone()));
                    }
                }
                (Pattern::Bstar, "client") => {
                    links.push((n.clone(), by(ProxyPlacement::Clients)));
                    links.push((n.clone(), "backup".into()));
                }
                (Pattern::Bstar, "backup") => links.push((n.clone(), "primary".into())),
                (_, "client") => links.push((n.clone(), by(ProxyPlacement::Clients))),
                (_, "worker") => links.push((n.clone(), by(ProxyPlacement::Workers))),
                (_, "titanic") | (_, "proxy") => links.push((n.clone(), front.clone())),
                _ => {}
            }
        }
        links.retain(|(a, b)| a != b && names.contains(b));
        links
    }

    /// The fault kinds the checker must see injected (and, for process faults, followed by a
    /// reply) for the verdict to be valid: every nemesis kind that applies, and any message
    /// fault when a proxy with faults sits in the topology.
    pub fn required_faults(&self) -> Vec<String> {
        let mut required: Vec<String> = self
            .nemesis_kinds()
            .iter()
            .map(|k| k.name().to_string())
            .collect();
        if matches!(&self.proxy, Some((_, faults)) if !faults.is_empty()) {
            required.push("proxy".into());
        }
        required
    }

    /// The schedule this config and seed give: the same seed always gives the same schedule.
    /// Within the fault phase; each kind once first, then drawn at random.
    pub fn schedule(&self) -> Vec<ScheduledFault> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x006e_656d_6573_6973); // "nemesis"
        let kinds = self.nemesis_kinds();
        if kinds.is_empty() {
            return Vec::new();
        }
        let interval = self.nemesis_interval.as_millis() as u64;
        let phase = self.fault_phase.as_millis() as u64;
        let count = (phase / interval).max(1);
        let mut schedule = Vec::new();
        for k in 0..count {
            let jitter = rng.gen_range(0..=interval / 4);
            let at_ms = (k * interval + interval / 2 + jitter).min(phase.saturating_sub(1));
            // Make the demonstration show each kind at least once, then draw at random.
            let fault = if (k as usize) < kinds.len() {
                kinds[k as usize]
            } else {
                *kinds.choose(&mut rng).expect("not empty")
            };
            let target = self.target_of(fault, &mut rng);
            schedule.push(ScheduledFault {
                at_ms,
                fault,
                target,
            });
        }
        schedule.sort_by_key(|s| s.at_ms);
        schedule
    }

    /// The `n`th coverage strike past `--duration` (a kind the schedule did not get to
    /// inject): the target is drawn from the seed and `n`, so `--seed` replays it too.
    pub(super) fn coverage_fault(&self, n: u64, fault: NemesisFault, at_ms: u64) -> ScheduledFault {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x636f_7665_7261_6765 ^ n); // "coverage"
        ScheduledFault {
            at_ms,
            fault,
            target: self.target_of(fault, &mut rng),
        }
    }

    pub(super) fn target_of(&self, fault: NemesisFault, rng: &mut ChaCha8Rng) -> String {
        if let Some(kind) = fault.network() {
            return net::choose(kind, &self.host_names(), &self.links(), rng).target();
        }
        match fault {
            NemesisFault::Restart => self.broker_name().to_string(),
            _ => self
                .worker_names()
                .choose(rng)
                .expect("at least one worker")
                .clone(),
        }
    }

    pub(super) fn broker_name(&self) -> &'static str {
        match self.pattern {
            Pattern::Majordomo => "broker",
            // Titanic's store is what a restart (SIGKILL mid-write) must not break.
            Pattern::Titanic => "titanic",
            Pattern::Lazy => "server",
            Pattern::Bstar => "primary",
            // No broker: `schedule` never restarts one (the servers are killed instead).
            Pattern::Freelance => "server-1",
            Pattern::Simple | Pattern::Paranoid => "queue",
        }
    }

    pub(super) fn worker_names(&self) -> Vec<String> {
        match self.pattern {
            Pattern::Lazy => return vec!["server".into()],
            // Killing either node of the pair: the survivor serves, the restarted one comes
            // back passive.
            Pattern::Bstar => return vec!["primary".into(), "backup".into()],
            Pattern::Freelance => {
                return (1..=self.workers.max(1))
                    .map(|i| format!("server-{i}"))
                    .collect()
            }
            _ => {}
        }
        (1..=self.workers.max(1))
            .map(|i| format!("worker-{i}"))
            .collect()
    }
}

/// How long the fault phase may run past `--duration` to inject every nemesis kind once and
/// see a reply after it, unless `--max-extension` says otherwise.
pub const DEFAULT_MAX_EXTENSION: Duration = Duration::from_secs(30);
