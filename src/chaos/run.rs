//! `pirate chaos run`: starts a whole topology as child `pirate` processes on loopback, breaks
//! it on a seeded schedule (kill, freeze, restart), heals it, drains the clients, and hands the
//! recorded history to the [checker](super::checker) for a verdict.
//!
//! Every role is the same `pirate` binary in a process of its own (in its own process group,
//! so a terminal's Ctrl-C reaches only the runner, which then cleans up in order): deaths are
//! real deaths and restarts reopen real sockets. Children write JSON Lines; a reader thread per
//! child stamps each line with the time it arrived and appends it to the history.
//!
//! Phases: **fault** (clients send, the nemesis strikes on schedule, workers inject their own
//! faults), **heal** (no more faults: frozen processes are continued, dead ones restarted,
//! and workers restarted without fault flags), **drain** (clients finish what they hold),
//! **check**. A process that dies on its own during the fault phase (a worker's
//! `--crash-rate`) is restarted after the restart delay, as a supervisor would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::checker::{self, CheckOptions, Record, Verdict};
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::shutdown;

/// Which pattern's topology to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Lazy Pirate: one `pirate server`, clients connect straight to it.
    Lazy,
    /// Simple Pirate: `pirate queue --simple` and REQ workers (no heartbeats).
    Simple,
    /// Paranoid Pirate: `pirate queue` and 6/PPP workers.
    Paranoid,
    /// Majordomo: `pirate broker` and MDP workers of service `echo`.
    Majordomo,
    /// Titanic: a broker, MDP echo workers and `pirate titanic`; clients go through Titanic.
    Titanic,
    /// Binary Star: a primary and a backup `pirate server`; clients know both.
    Bstar,
    /// Freelance: `workers` Freelance servers and no broker; every client knows them all.
    Freelance,
}

/// A fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NemesisFault {
    /// SIGKILL a worker (or the Lazy Pirate server); it is restarted after the restart delay.
    Kill,
    /// SIGSTOP a worker for the freeze time, then SIGCONT.
    Freeze,
    /// SIGKILL the broker or queue and start it again on the same endpoints.
    Restart,
}

/// One scheduled nemesis action.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduledFault {
    pub at_ms: u64,
    pub fault: NemesisFault,
    pub target: String,
}

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
    pub pattern: Pattern,
    pub workers: usize,
    pub clients: usize,
    /// Requests per client; `None` sends for the whole fault phase.
    pub requests: Option<u64>,
    /// How long the nemesis strikes (and, without `requests`, how long clients send).
    pub fault_phase: Duration,
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
}

impl ChaosConfig {
    /// The built-in demonstration: a Majordomo broker, three workers that crash and stall,
    /// two clients, and a nemesis that kills, freezes and restarts, in about 30 seconds.
    pub fn demo(exe: PathBuf, seed: u64) -> Self {
        ChaosConfig {
            exe,
            pattern: Pattern::Majordomo,
            workers: 3,
            clients: 2,
            requests: None,
            fault_phase: Duration::from_secs(24),
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
        }
    }

    /// The schedule this config and seed give: the same seed always gives the same schedule.
    /// At least one kill and, when enabled and the broker is ours, one restart of it.
    pub fn schedule(&self) -> Vec<ScheduledFault> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x006e_656d_6573_6973); // "nemesis"
        let mut kinds: Vec<NemesisFault> = self.nemesis.clone();
        let broker_ours = self.external.is_none()
            && !matches!(
                self.pattern,
                Pattern::Lazy | Pattern::Bstar | Pattern::Freelance
            );
        if !broker_ours {
            kinds.retain(|k| *k != NemesisFault::Restart);
        }
        if self.pattern == Pattern::Bstar {
            // A frozen active node that thaws after the backup took over is the split brain
            // Binary Star stops on purpose (both nodes exit): not a fault it survives.
            kinds.retain(|k| *k != NemesisFault::Freeze);
        }
        if kinds.is_empty() || self.nemesis_interval.is_zero() {
            return Vec::new();
        }
        let interval = self.nemesis_interval.as_millis() as u64;
        let phase = self.fault_phase.as_millis() as u64;
        let count = (phase / interval).max(1);
        let workers = self.worker_names();
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
            let target = match fault {
                NemesisFault::Restart => self.broker_name().to_string(),
                _ => workers
                    .choose(&mut rng)
                    .expect("at least one worker")
                    .clone(),
            };
            schedule.push(ScheduledFault {
                at_ms,
                fault,
                target,
            });
        }
        schedule.sort_by_key(|s| s.at_ms);
        schedule
    }

    fn broker_name(&self) -> &'static str {
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

    fn worker_names(&self) -> Vec<String> {
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

/// The result of a chaos run.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub pattern: Pattern,
    pub valid: bool,
    pub schedule: Vec<ScheduledFault>,
    /// Nemesis actions actually carried out, by kind (`kill`, `freeze`, `restart`), and
    /// processes restarted after dying of their own injected crash (`respawn`).
    pub injected: BTreeMap<String, u64>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
}

/// What the live view shows of one process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessStatus {
    pub name: String,
    /// `up`, `down` or `frozen`.
    pub state: String,
    pub restarts: u64,
    /// Requests served (workers, servers) or replies received (clients).
    pub count: u64,
}

/// The shared history and per-process counters, fed by the reader threads.
#[derive(Default)]
struct Journal {
    records: Vec<Record>,
    counts: BTreeMap<String, u64>,
}

/// One child process of the topology.
struct Proc {
    name: String,
    args: Vec<String>,
    shell: Option<String>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    restarts: u64,
    frozen: bool,
    /// When a dead process is due to be started again.
    restart_at: Option<Instant>,
}

/// All children; killed and reaped on drop, so nothing outlives the run, even on a panic.
struct Topology {
    exe: PathBuf,
    procs: Vec<Proc>,
    journal: Arc<Mutex<Journal>>,
    started: Instant,
    logs: Option<PathBuf>,
}

impl Topology {
    fn spawn(&mut self, index: usize) -> Result<()> {
        let proc = &mut self.procs[index];
        let mut cmd = match &proc.shell {
            Some(shell) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(shell);
                c
            }
            None => {
                let mut c = Command::new(&self.exe);
                c.args(&proc.args);
                c
            }
        };
        let stderr = match &self.logs {
            Some(dir) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{}.log", proc.name)))?;
                Stdio::from(file)
            }
            None => Stdio::null(),
        };
        {
            use std::os::unix::process::CommandExt;
            // Own process group: a terminal's Ctrl-C reaches the runner only, which then stops
            // the children itself, in order.
            cmd.process_group(0);
        }
        let mut child = cmd
            .stdin(if proc.name.starts_with("client") {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start {}: {e}", proc.name)))?;
        let stdout = child.stdout.take().expect("piped");
        proc.stdin = child.stdin.take();
        proc.child = Some(child);
        proc.frozen = false;
        proc.restart_at = None;
        let journal = Arc::clone(&self.journal);
        let source = proc.name.clone();
        let started = self.started;
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let mut j = journal.lock().expect("journal lock");
                let kind = event["event"].as_str().unwrap_or("");
                if kind == "served" || kind == "reply" {
                    *j.counts.entry(source.clone()).or_default() += 1;
                }
                j.records.push(Record {
                    t_ms: started.elapsed().as_secs_f64() * 1000.0,
                    source: source.clone(),
                    event,
                });
            }
        });
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    fn note(&self, action: &str, target: &str) {
        let record = Record {
            t_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            source: "nemesis".into(),
            event: serde_json::json!({"event": "nemesis", "action": action, "target": target}),
        };
        self.journal
            .lock()
            .expect("journal lock")
            .records
            .push(record);
    }

    fn signal(&self, index: usize, signal: i32) {
        if let Some(child) = &self.procs[index].child {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Kills and reaps a child now.
    fn kill(&mut self, index: usize) {
        self.signal(index, libc::SIGCONT);
        let proc = &mut self.procs[index];
        if let Some(mut child) = proc.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        proc.stdin = None;
        proc.frozen = false;
    }

    /// True while the child runs (reaping it if it has exited).
    fn alive(&mut self, index: usize) -> bool {
        let proc = &mut self.procs[index];
        match proc.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                proc.child = None;
                false
            }
            None => false,
        }
    }

    fn status(&mut self) -> Vec<ProcessStatus> {
        let counts = self.journal.lock().expect("journal lock").counts.clone();
        (0..self.procs.len())
            .map(|i| {
                let alive = self.alive(i);
                let p = &self.procs[i];
                ProcessStatus {
                    name: p.name.clone(),
                    state: if p.frozen {
                        "frozen"
                    } else if alive {
                        "up"
                    } else {
                        "down"
                    }
                    .into(),
                    restarts: p.restarts,
                    count: counts.get(&p.name).copied().unwrap_or(0),
                }
            })
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Where the Titanic pattern keeps its store: under `--out` when given (kept as evidence),
/// else in a temporary directory removed after the run.
fn titanic_dir(config: &ChaosConfig) -> PathBuf {
    match &config.out {
        Some(out) => out.join("titanic-store"),
        None => std::env::temp_dir().join(format!(
            "pirate-chaos-titanic-{}-{}",
            std::process::id(),
            config.seed
        )),
    }
}

/// Builds the process list for the pattern.
fn plan(config: &ChaosConfig) -> Result<(Vec<Proc>, String)> {
    let hb = format!("{}ms", config.heartbeat.as_millis());
    let reconnect_max = format!("{}ms", config.heartbeat.as_millis() * 8);
    let mut procs = Vec::new();
    let new = |name: String, args: Vec<String>, shell: Option<String>| Proc {
        name,
        args,
        shell,
        child: None,
        stdin: None,
        restarts: 0,
        frozen: false,
        restart_at: None,
    };
    let (front, back) = (free_port()?, free_port()?);
    let front = format!("tcp://127.0.0.1:{front}");
    let back = format!("tcp://127.0.0.1:{back}");
    let seed_of = |i: u64| (config.seed.wrapping_mul(31).wrapping_add(i)) % (1 << 53);
    let worker_flags = |i: u64| {
        let mut a = config.worker_args.clone();
        a.extend(config.worker_faults.iter().cloned());
        a.extend(strings(&["--seed", &seed_of(i).to_string()]));
        a
    };
    // With a proxy, one side connects to the proxy's frontend instead, and the proxy's
    // backend connects where that side would have.
    let proxy_front = format!("tcp://127.0.0.1:{}", free_port()?);
    let placed = |placement: ProxyPlacement, endpoint: &str| -> String {
        match &config.proxy {
            Some((p, _)) if *p == placement => proxy_front.clone(),
            _ => endpoint.to_string(),
        }
    };
    let mut proxy_backend: Option<String> = None;
    let busy_timeout_args: Vec<String> = match config.busy_timeout {
        Some(d) => strings(&["--busy-timeout", &format!("{}ms", d.as_millis())]),
        None => Vec::new(),
    };
    let mut client_extra: Vec<String> = Vec::new();
    let client_endpoint = match config.pattern {
        Pattern::Bstar => {
            let (s1, s2) = (free_port()?, free_port()?);
            let (s1, s2) = (
                format!("tcp://127.0.0.1:{s1}"),
                format!("tcp://127.0.0.1:{s2}"),
            );
            for (name, role, bind, state, peer) in [
                ("primary", "--primary", &front, &s1, &s2),
                ("backup", "--backup", &back, &s2, &s1),
            ] {
                let mut args = strings(&[
                    "server",
                    "--json",
                    role,
                    "--bind",
                    bind,
                    "--state-bind",
                    state,
                    "--peer-state",
                    peer,
                    "--state-heartbeat",
                    &hb,
                ]);
                args.extend(worker_flags(if name == "primary" { 1 } else { 2 }));
                procs.push(new(name.into(), args, None));
            }
            let settle = format!("{}ms", config.heartbeat.as_millis() * 3);
            client_extra = strings(&["--connect", &back, "--settle", &settle]);
            front.clone()
        }
        Pattern::Freelance => {
            // Each server's public endpoint (its identity) is its bind endpoint, spelled as
            // the clients spell it; a proxy in between would be one server, so none is allowed.
            if config.proxy.is_some() {
                return Err(Error::Usage(
                    "--proxy does not fit Freelance: clients address each server by its endpoint"
                        .into(),
                ));
            }
            let mut servers = Vec::new();
            for i in 1..=config.workers.max(1) {
                let endpoint = format!("tcp://127.0.0.1:{}", free_port()?);
                let mut args = strings(&["server", "--json", "--freelance", "--bind", &endpoint]);
                args.extend(worker_flags(i as u64 + 1));
                procs.push(new(format!("server-{i}"), args, None));
                servers.push(endpoint);
            }
            let ttl = format!("{}ms", config.heartbeat.as_millis() * 3);
            client_extra = strings(&["--freelance", "--ping", &hb, "--server-ttl", &ttl]);
            for endpoint in &servers[1..] {
                client_extra.extend(strings(&["--connect", endpoint]));
            }
            servers.swap_remove(0)
        }
        Pattern::Lazy => {
            let mut args = strings(&["server", "--json", "--bind", &front]);
            args.extend(worker_flags(1));
            procs.push(new("server".into(), args, None));
            front.clone()
        }
        Pattern::Majordomo | Pattern::Titanic => {
            let broker = config.external.clone().unwrap_or_else(|| front.clone());
            if matches!(config.proxy, Some((ProxyPlacement::Workers, _))) {
                proxy_backend = Some(broker.clone());
            }
            let endpoint = placed(ProxyPlacement::Workers, &broker);
            if config.external.is_none() {
                let mut args = strings(&["broker", "--json", "--bind", &front, "--heartbeat", &hb]);
                args.extend(busy_timeout_args.iter().cloned());
                procs.push(new("broker".into(), args, None));
            }
            for i in 1..=config.workers.max(1) {
                let name = format!("worker-{i}");
                let shell = config.worker_cmd.as_ref().map(|cmd| {
                    cmd.replace("{endpoint}", &endpoint)
                        .replace("{service}", "echo")
                });
                let mut args = strings(&[
                    "worker",
                    "--json",
                    "--protocol",
                    "mdp",
                    "--service",
                    "echo",
                    "--connect",
                    &endpoint,
                    "--heartbeat",
                    &hb,
                    "--reconnect",
                    &hb,
                    "--reconnect-max",
                    &reconnect_max,
                    "--name",
                    &name,
                ]);
                args.extend(worker_flags(i as u64 + 1));
                procs.push(new(name, args, shell));
            }
            if config.pattern == Pattern::Titanic {
                let dir = titanic_dir(config);
                let retry = format!("{}ms", config.heartbeat.as_millis() * 2);
                let mut args = strings(&[
                    "titanic",
                    "--json",
                    "--connect",
                    &broker,
                    "--dir",
                    &dir.display().to_string(),
                    "--heartbeat",
                    &hb,
                    "--reconnect",
                    &hb,
                    "--retry-interval",
                    &retry,
                ]);
                args.extend(strings(&["--seed", &seed_of(99).to_string()]));
                procs.push(new("titanic".into(), args, None));
            }
            broker
        }
        Pattern::Simple | Pattern::Paranoid => {
            let simple = config.pattern == Pattern::Simple;
            let client_side = front.clone();
            if matches!(config.proxy, Some((ProxyPlacement::Workers, _))) {
                proxy_backend = Some(back.clone());
            }
            let worker_side = placed(ProxyPlacement::Workers, &back);
            {
                let mut args = strings(&[
                    "queue",
                    "--json",
                    "--frontend",
                    &front,
                    "--backend",
                    &back,
                    "--heartbeat",
                    &hb,
                ]);
                if simple {
                    args.push("--simple".into());
                }
                args.extend(busy_timeout_args.iter().cloned());
                procs.push(new("queue".into(), args, None));
            }
            for i in 1..=config.workers.max(1) {
                let name = format!("worker-{i}");
                let protocol = if simple { "simple" } else { "paranoid" };
                let mut args = strings(&[
                    "worker",
                    "--json",
                    "--protocol",
                    protocol,
                    "--connect",
                    &worker_side,
                    "--heartbeat",
                    &hb,
                    "--reconnect",
                    &hb,
                    "--reconnect-max",
                    &reconnect_max,
                    "--name",
                    &name,
                ]);
                args.extend(worker_flags(i as u64 + 1));
                procs.push(new(name, args, None));
            }
            client_side
        }
    };
    if let Some((placement, faults)) = &config.proxy {
        let backend = match placement {
            ProxyPlacement::Clients => client_endpoint.clone(),
            ProxyPlacement::Workers => proxy_backend.ok_or_else(|| {
                Error::Usage("a proxy in front of workers needs a broker or queue".into())
            })?,
        };
        let mut args = strings(&[
            "chaos",
            "proxy",
            "--json",
            "--frontend",
            &proxy_front,
            "--backend",
            &backend,
            "--seed",
            &seed_of(0).to_string(),
        ]);
        args.extend(faults.iter().cloned());
        procs.push(new("proxy".into(), args, None));
    }
    let client_endpoint = placed(ProxyPlacement::Clients, &client_endpoint);
    let timeout = format!("{}ms", config.client_timeout.as_millis());
    for c in 1..=config.clients.max(1) {
        let mut args = strings(&[
            "client",
            "--json",
            "--expect-echo",
            "--connect",
            &client_endpoint,
            "--timeout",
            &timeout,
            "--retries",
            &config.client_retries.to_string(),
        ]);
        if config.pattern != Pattern::Freelance {
            // A Freelance client has one request in flight by design (and refuses --window).
            args.extend(strings(&["--window", &config.window.max(1).to_string()]));
        }
        match config.pattern {
            Pattern::Majordomo => args.extend(strings(&["--service", "echo"])),
            Pattern::Titanic => args.extend(strings(&["--titanic", "--service", "echo"])),
            _ => {}
        }
        args.extend(client_extra.iter().cloned());
        procs.push(new(format!("client-{c}"), args, None));
    }
    Ok((procs, client_endpoint))
}

/// Feeds a client its requests (`cN-1`, `cN-2`, …) until `stop` or the count is reached.
/// Only a few lines run ahead of the client's replies: a pipe would otherwise buffer
/// thousands, and the client would still be working through them long after the fault
/// phase ends.
struct Feeder {
    stdin: ChildStdin,
    source: String,
    client: usize,
    count: Option<u64>,
    ahead: u64,
}

impl Feeder {
    fn start(self, journal: Arc<Mutex<Journal>>, stop: Arc<Mutex<bool>>) {
        let Feeder {
            mut stdin,
            source,
            client,
            count,
            ahead,
        } = self;
        thread::spawn(move || {
            let mut n = 1u64;
            loop {
                if count.is_some_and(|c| n > c) || *stop.lock().expect("stop lock") {
                    break; // dropping stdin ends the client's input
                }
                let replied = journal
                    .lock()
                    .expect("journal lock")
                    .counts
                    .get(&source)
                    .copied()
                    .unwrap_or(0);
                if n > replied + ahead {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if writeln!(stdin, "c{client}-{n}").is_err() {
                    break;
                }
                n += 1;
            }
        });
    }
}

/// Runs the whole experiment and returns its report. Live status goes out as events.
pub fn run(config: &ChaosConfig, events: &mut Events) -> Result<ChaosReport> {
    let schedule = config.schedule();
    let logs = match &config.out {
        Some(dir) => {
            std::fs::create_dir_all(dir.join("logs"))?;
            Some(dir.join("logs"))
        }
        None => None,
    };
    let (procs, endpoint) = plan(config)?;
    events.emit(Event::Started {
        role: format!("chaos ({:?})", config.pattern).to_lowercase(),
        endpoint,
        seed: Some(config.seed),
    });
    for s in &schedule {
        events.emit(Event::NemesisPlanned {
            at_ms: s.at_ms,
            fault: format!("{:?}", s.fault).to_lowercase(),
            target: s.target.clone(),
        });
    }
    let mut topo = Topology {
        exe: config.exe.clone(),
        procs,
        journal: Arc::new(Mutex::new(Journal::default())),
        started: Instant::now(),
        logs,
    };
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    // Servers first, then workers, then clients, each given a moment to bind.
    for i in 0..topo.procs.len() {
        if topo.procs[i].name.starts_with("client") {
            continue;
        }
        topo.spawn(i)?;
    }
    thread::sleep(config.heartbeat * 2);
    let stop_feeding = Arc::new(Mutex::new(false));
    for i in 0..topo.procs.len() {
        if !topo.procs[i].name.starts_with("client") {
            continue;
        }
        topo.spawn(i)?;
        let client: usize = topo.procs[i].name["client-".len()..].parse().unwrap_or(i);
        if let Some(stdin) = topo.procs[i].stdin.take() {
            let feeder = Feeder {
                stdin,
                source: topo.procs[i].name.clone(),
                client,
                count: config.requests,
                ahead: config.window.max(1) as u64 + 1,
            };
            feeder.start(Arc::clone(&topo.journal), Arc::clone(&stop_feeding));
        }
    }
    topo.started = Instant::now();
    let mut next = 0usize;
    let mut thaw_at: Vec<(Instant, usize)> = Vec::new();
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let mut interrupted = false;

    // Fault phase: until its time is up or every client is done.
    let clients: Vec<usize> = (0..topo.procs.len())
        .filter(|&i| topo.procs[i].name.starts_with("client"))
        .collect();
    while topo.started.elapsed() < config.fault_phase {
        if shutdown::requested() {
            interrupted = true;
            break;
        }
        if !clients.iter().any(|&i| topo.alive(i)) {
            break;
        }
        let now = Instant::now();
        let elapsed = topo.started.elapsed().as_millis() as u64;
        while next < schedule.len() && schedule[next].at_ms <= elapsed {
            let s = &schedule[next];
            next += 1;
            let Some(i) = topo.index(&s.target) else {
                continue;
            };
            if !topo.alive(i) || topo.procs[i].frozen {
                continue; // already down or frozen: nothing to break
            }
            let action = format!("{:?}", s.fault).to_lowercase();
            match s.fault {
                NemesisFault::Kill | NemesisFault::Restart => {
                    topo.note(&action, &s.target);
                    topo.kill(i);
                    topo.procs[i].restart_at = Some(now + config.restart_delay);
                }
                NemesisFault::Freeze => {
                    topo.note(&action, &s.target);
                    topo.signal(i, libc::SIGSTOP);
                    topo.procs[i].frozen = true;
                    thaw_at.push((now + config.freeze_for, i));
                }
            }
            *injected.entry(action.clone()).or_default() += 1;
            events.emit(Event::Nemesis {
                at_ms: elapsed,
                action,
                target: s.target.clone(),
            });
        }
        thaw_at.retain(|&(at, i)| {
            if now >= at {
                topo.signal(i, libc::SIGCONT);
                topo.procs[i].frozen = false;
                topo.note("thaw", &topo.procs[i].name.clone());
                false
            } else {
                true
            }
        });
        supervise(&mut topo, config, &mut injected, events, false)?;
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            events.emit(Event::ChaosStatus {
                elapsed_ms: elapsed,
                phase: "fault".into(),
                processes: topo.status(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }

    // Heal: no more faults. Thaw, restart whatever is down, and replace faulty workers.
    // Clients with a request count finish it; the others stop taking new requests.
    if config.requests.is_none() || interrupted {
        *stop_feeding.lock().expect("stop lock") = true;
    }
    for (_, i) in thaw_at.drain(..) {
        topo.signal(i, libc::SIGCONT);
        topo.procs[i].frozen = false;
    }
    if !interrupted {
        for i in 0..topo.procs.len() {
            let name = topo.procs[i].name.clone();
            let is_worker = name.starts_with("worker")
                || matches!(name.as_str(), "server" | "primary" | "backup");
            let faults = match &config.proxy {
                Some((_, faults)) if name == "proxy" => faults.as_slice(),
                _ if is_worker => config.worker_faults.as_slice(),
                _ => &[],
            };
            if !faults.is_empty() {
                // Same endpoints and seed, without the fault flags.
                let args = without_faults(&topo.procs[i].args, faults);
                topo.kill(i);
                topo.procs[i].args = args;
                topo.procs[i].restart_at = Some(Instant::now());
                topo.note("heal", &name);
            }
        }
        supervise(&mut topo, config, &mut injected, events, true)?;
    }

    // Drain: wait for every client to finish what it holds.
    let drain_deadline = Instant::now() + config.drain_timeout;
    loop {
        let running = clients.iter().filter(|&&i| topo.alive(i)).count();
        if running == 0 {
            break;
        }
        if shutdown::requested() || Instant::now() >= drain_deadline {
            // Interrupt stragglers: what they still hold shows up as lost.
            for &i in &clients {
                topo.signal(i, libc::SIGINT);
            }
            let grace = Instant::now() + Duration::from_secs(2);
            while clients.iter().any(|&i| topo.alive(i)) && Instant::now() < grace {
                thread::sleep(Duration::from_millis(20));
            }
            interrupted |= shutdown::requested();
            break;
        }
        supervise(&mut topo, config, &mut injected, events, true)?;
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            events.emit(Event::ChaosStatus {
                elapsed_ms: topo.started.elapsed().as_millis() as u64,
                phase: "drain".into(),
                processes: topo.status(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    events.emit(Event::ChaosStatus {
        elapsed_ms: topo.started.elapsed().as_millis() as u64,
        phase: "check".into(),
        processes: topo.status(),
    });

    // Stop the servers politely so their summaries land in the history, then kill.
    for i in 0..topo.procs.len() {
        topo.signal(i, libc::SIGINT);
    }
    let grace = Instant::now() + Duration::from_secs(2);
    while (0..topo.procs.len()).any(|i| topo.alive(i)) && Instant::now() < grace {
        thread::sleep(Duration::from_millis(20));
    }
    for i in 0..topo.procs.len() {
        topo.kill(i);
    }
    thread::sleep(Duration::from_millis(50)); // let reader threads reach end of file

    let records = std::mem::take(&mut topo.journal.lock().expect("journal lock").records);
    let mut verdict = checker::check(
        &records,
        &CheckOptions {
            strict: config.strict,
        },
    );
    if interrupted {
        verdict.valid = false;
        verdict
            .violations
            .push("interrupted before the run finished".into());
    }
    let mut report = ChaosReport {
        seed: config.seed,
        pattern: config.pattern,
        valid: verdict.valid,
        schedule,
        injected,
        verdict,
        out: config.out.as_ref().map(|p| p.display().to_string()),
    };
    if config.pattern == Pattern::Titanic && config.out.is_none() {
        let _ = std::fs::remove_dir_all(titanic_dir(config));
    }
    if let Some(dir) = &config.out {
        write_out(dir, &records, &report)?;
        report.out = Some(dir.display().to_string());
    }
    if interrupted {
        return Err(Error::Interrupted);
    }
    Ok(report)
}

/// The running args minus the fault flags (and their values).
fn without_faults(args: &[String], faults: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i..].starts_with(faults) {
            i += faults.len();
        } else {
            out.push(args[i].clone());
            i += 1;
        }
    }
    out
}

/// Restarts processes that are due, and schedules a restart for any non-client that died
/// on its own (an injected crash).
fn supervise(
    topo: &mut Topology,
    config: &ChaosConfig,
    injected: &mut BTreeMap<String, u64>,
    events: &mut Events,
    now_if_down: bool,
) -> Result<()> {
    let now = Instant::now();
    for i in 0..topo.procs.len() {
        if topo.procs[i].name.starts_with("client") || topo.alive(i) {
            continue;
        }
        match topo.procs[i].restart_at {
            Some(at) if now >= at => {
                topo.spawn(i)?;
                topo.procs[i].restarts += 1;
                let name = topo.procs[i].name.clone();
                topo.note("start", &name);
                events.info(format!("restarted {name}"));
            }
            Some(_) => {}
            None => {
                // Died by itself: a crash the worker injected. Restart it like a supervisor.
                *injected.entry("respawn".into()).or_default() += 1;
                topo.procs[i].restart_at = Some(if now_if_down {
                    now
                } else {
                    now + config.restart_delay
                });
            }
        }
    }
    Ok(())
}

fn write_out(dir: &std::path::Path, records: &[Record], report: &ChaosReport) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut history = String::new();
    for r in records {
        history.push_str(&serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?);
        history.push('\n');
    }
    std::fs::write(dir.join("history.jsonl"), history)?;
    let results =
        serde_json::to_string_pretty(report).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(dir.join("results.json"), results + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(seed: u64) -> ChaosConfig {
        ChaosConfig::demo(PathBuf::from("pirate"), seed)
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(demo(7).schedule(), demo(7).schedule());
        assert_ne!(demo(7).schedule(), demo(8).schedule());
    }

    #[test]
    fn the_demo_schedule_kills_freezes_and_restarts_within_the_fault_phase() {
        let s = demo(1).schedule();
        for kind in [
            NemesisFault::Kill,
            NemesisFault::Freeze,
            NemesisFault::Restart,
        ] {
            assert!(s.iter().any(|f| f.fault == kind), "{kind:?} missing: {s:?}");
        }
        assert!(s.iter().all(|f| f.at_ms < 24_000));
        assert!(s.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let restarts: Vec<_> = s
            .iter()
            .filter(|f| f.fault == NemesisFault::Restart)
            .collect();
        assert!(restarts.iter().all(|f| f.target == "broker"));
    }

    #[test]
    fn no_broker_restart_against_an_external_broker_or_in_lazy_mode() {
        let mut c = demo(3);
        c.external = Some("tcp://127.0.0.1:1".into());
        assert!(c
            .schedule()
            .iter()
            .all(|f| f.fault != NemesisFault::Restart));
        let mut l = demo(3);
        l.pattern = Pattern::Lazy;
        assert!(l.schedule().iter().all(|f| f.target == "server"));
    }

    #[test]
    fn healing_removes_exactly_the_fault_flags() {
        let faults = strings(&["--crash-rate", "2%"]);
        let args = strings(&["worker", "--crash-rate", "2%", "--seed", "3"]);
        assert_eq!(
            without_faults(&args, &faults),
            strings(&["worker", "--seed", "3"])
        );
    }
}
