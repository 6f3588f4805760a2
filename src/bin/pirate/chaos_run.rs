//! `pirate chaos run`: starts a whole topology as child `pirate` processes on loopback, breaks
//! it on a seeded schedule (kill, freeze, restart), heals it, drains the clients, and hands the
//! recorded history to the [checker](pirate::chaos::checker) for a verdict.
//!
//! It lives in the binary because it runs the binary: it spawns `pirate` and writes its
//! command lines, so it must change whenever a flag does; the library keeps the pure checker
//! and the report's vocabulary ([`pirate::event::chaos`]).
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
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use pirate::chaos::checker::{self, CheckOptions};
use pirate::chaos::history::Record;
use pirate::chaos::live::Tracker;
use pirate::chaos::net::{self, Cut, NetPlan};
use pirate::error::{Error, Result};
use pirate::event::chaos::{
    ChaosReport, NemesisFault, NetKind, Pattern, ProcessStatus, ScheduledFault,
};
use pirate::event::verdict::Judgement;
use pirate::event::{Event, Events};
use pirate::reactor::Stop;

use crate::chaos_net::{NetConfig, Network};

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

/// Adds `security`'s flags to each child by what its subcommand does. `--worker-cmd`
/// workers are not `pirate` and get nothing.
fn secure(procs: &mut [Proc], security: &ChaosSecurity) {
    for proc in procs.iter_mut().filter(|p| p.shell.is_none()) {
        let pair = proc
            .args
            .iter()
            .any(|a| a == "--primary" || a == "--backup");
        let (binds, connects) = match proc.args[0].as_str() {
            "broker" | "queue" => (true, false),
            "server" => (true, pair),
            "chaos" => (true, true),
            _ => (false, true),
        };
        if binds {
            proc.args.extend(security.binder.iter().cloned());
        }
        if connects {
            proc.args.extend(security.connector.iter().cloned());
        }
    }
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
    fn front_host(&self) -> &'static str {
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
    fn coverage_fault(&self, n: u64, fault: NemesisFault, at_ms: u64) -> ScheduledFault {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x636f_7665_7261_6765 ^ n); // "coverage"
        ScheduledFault {
            at_ms,
            fault,
            target: self.target_of(fault, &mut rng),
        }
    }

    fn target_of(&self, fault: NemesisFault, rng: &mut ChaCha8Rng) -> String {
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

/// How long the fault phase may run past `--duration` to inject every nemesis kind once and
/// see a reply after it, unless `--max-extension` says otherwise.
pub const DEFAULT_MAX_EXTENSION: Duration = Duration::from_secs(30);

/// The seed of one incarnation of one process: a function of the run's seed, the process's
/// slot and how many times it was started before, so a restarted worker does not replay its
/// predecessor's faults (the same crash on the same request, forever) while `--seed` still
/// replays the whole run. Below 2^53, so JSON carries it exactly.
pub fn incarnation_seed(run_seed: u64, slot: u64, incarnation: u64) -> u64 {
    // SplitMix64's finaliser: every input bit reaches every output bit.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(mix(mix(run_seed) ^ slot) ^ incarnation) % (1 << 53)
}

/// The shared history and per-process counters, fed by the reader threads.
#[derive(Default)]
struct Journal {
    records: Vec<Record>,
    counts: BTreeMap<String, u64>,
    /// When a client last accepted a reply (ms on the history's clock).
    last_reply_ms: Option<f64>,
    /// What each process is doing, for the live view.
    live: Tracker,
}

/// One child process of the topology.
struct Proc {
    name: String,
    args: Vec<String>,
    shell: Option<String>,
    /// Which process this is, for [`incarnation_seed`]; `None`: started without `--seed`.
    seed_slot: Option<u64>,
    /// How many times it was started before the current one.
    incarnation: u64,
    child: Option<Child>,
    /// Its process group (its pid: each child leads one), until the group is known empty.
    pgid: Option<i32>,
    stdin: Option<ChildStdin>,
    restarts: u64,
    frozen: bool,
    /// When a dead process is due to be started again.
    restart_at: Option<Instant>,
    /// Why it is down (`nemesis`, `heal`, `own crash`), until it is started again.
    down_cause: Option<&'static str>,
    /// Its restarts by cause, for the live view.
    restarted_after: BTreeMap<String, u64>,
}

/// Kills what is left of a run whose runner died without cleaning up (`kill -9`).
///
/// A shell reading lines on its stdin: `+PGID` when the runner starts a process group,
/// `-PGID` once it has killed and reaped one. At end of file — the runner closing the pipe,
/// or the kernel closing it because the runner died — it SIGKILLs every group still listed
/// and removes the run's temporary directories. It leads a process group of its own and
/// ignores the terminal's signals, so it outlives the runner long enough to do that. (The
/// children's parent-death signal covers them too, but not their own children, such as the
/// program a `--worker-cmd` shell runs.)
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

const WATCHDOG: &str = r#"trap '' INT TERM HUP QUIT
PATH=$PATH:/usr/sbin:/sbin
live=
netns=
while IFS= read -r line; do
  case $line in
    +*) live="$live ${line#+}" ;;
    -*) keep=; for g in $live; do [ "$g" = "${line#-}" ] || keep="$keep $g"; done; live=$keep ;;
    =*) netns="$netns ${line#=}" ;;
    /*) netns= ;;
  esac
done
for g in $live; do kill -s KILL -- "-$g" 2>/dev/null; done
for n in $netns; do ip netns del "$n" 2>/dev/null; done
if [ $# -gt 0 ]; then sleep 0.2; rm -rf -- "$@"; fi
"#;

impl Watchdog {
    /// Starts the watchdog, which removes `dirs` when the run is over, however it ends.
    fn start(dirs: &[PathBuf]) -> Result<Watchdog> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("pirate-chaos-watchdog")
            .args(dirs)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Internal(format!("cannot start the chaos watchdog (sh): {e}")))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    fn tell(&mut self, line: String) {
        if let Some(stdin) = &mut self.stdin {
            // A watchdog that died cannot be helped: the run goes on without it.
            let _ = writeln!(stdin, "{line}");
        }
    }

    fn watch(&mut self, pgid: i32) {
        self.tell(format!("+{pgid}"));
    }

    fn forget(&mut self, pgid: i32) {
        self.tell(format!("-{pgid}"));
    }

    /// A network namespace to delete at the end (`--net namespaces`), told before it exists.
    fn namespace(&mut self, name: &str) {
        self.tell(format!("={name}"));
    }

    /// The runner removed the namespaces itself: nothing left to delete.
    fn namespaces_removed(&mut self) {
        self.tell("/".into());
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stdin = None; // end of file: it cleans up and exits
        let _ = self.child.wait();
    }
}

/// Sends `signal` to every process of group `pgid`.
fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// True once child `pid` has exited, without reaping it (waitid with WNOWAIT): while it is
/// a zombie its pid still names its process group, which can then be killed safely.
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid writes only into the zeroed siginfo_t we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // rc < 0: no such child (already reaped): gone all the same.
        rc < 0 || info.si_pid() != 0
    }
}

/// Makes `cmd`'s process die with the runner: SIGKILL when its parent thread exits
/// (PR_SET_PDEATHSIG). The runner spawns every child from the one thread that runs
/// [`run`], which lives as long as the run.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
    // (prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The runner may have died before the prctl took effect: nobody would signal us.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// All children; killed and reaped on drop, so nothing outlives the run, even on a panic.
struct Topology {
    exe: PathBuf,
    procs: Vec<Proc>,
    journal: Arc<Mutex<Journal>>,
    /// The history's clock: set once, before the first child starts, and never reset, so
    /// every record (a child's line, a nemesis action) is on the same time line.
    origin: Instant,
    run_seed: u64,
    logs: Option<PathBuf>,
    /// `--net namespaces`: the run's network (each process runs in its host).
    net: Option<Network>,
    /// Command lines started since the run loop last printed them (`-v`).
    started: Vec<String>,
    /// The network fault in force and the hosts it cuts, for the live view.
    cut: Option<(&'static str, Vec<String>)>,
    watchdog: Watchdog,
}

impl Topology {
    /// Milliseconds on the history's clock.
    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }

    fn spawn(&mut self, index: usize) -> Result<()> {
        let proc = &mut self.procs[index];
        let mut argv: Vec<String> = match &proc.shell {
            Some(shell) => vec!["sh".into(), "-c".into(), shell.clone()],
            None => {
                let mut a = vec![self.exe.display().to_string()];
                a.extend(proc.args.iter().cloned());
                if let Some(slot) = proc.seed_slot {
                    let seed = incarnation_seed(self.run_seed, slot, proc.incarnation);
                    a.extend(["--seed".to_string(), seed.to_string()]);
                }
                a
            }
        };
        if let Some(net) = &self.net {
            // `ip netns exec` enters the host's namespace and execs the role: same pid, same
            // process group, same parent-death signal.
            argv = net.plan.exec(&proc.name, &argv).ok_or_else(|| {
                Error::Internal(format!("{} has no host in the network plan", proc.name))
            })?;
            self.started.push(net::NetCommand(argv.clone()).to_string());
            if let Some(ip) = crate::chaos_net::tool("ip") {
                argv[0] = ip.display().to_string();
            }
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        // The log file (appended to by every incarnation); its lines are copied by a thread
        // that prefixes each with the run-clock time, as report.html counts it.
        let log = match &self.logs {
            Some(dir) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{}.log", proc.name)))?,
            ),
            None => None,
        };
        let stderr = if log.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        {
            use std::os::unix::process::CommandExt;
            // A process group of its own: a terminal's Ctrl-C reaches the runner only, which
            // then stops the children itself, in order; and every signal the nemesis sends
            // reaches the whole group (a `--worker-cmd` shell and the worker it runs).
            cmd.process_group(0);
        }
        die_with_parent(&mut cmd);
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
        let pgid = child.id() as i32;
        self.watchdog.watch(pgid);
        let stdout = child.stdout.take().expect("piped");
        if let (Some(log), Some(stderr)) = (log, child.stderr.take()) {
            let origin = self.origin;
            thread::spawn(move || copy_stamped(stderr, log, origin));
        }
        proc.stdin = child.stdin.take();
        proc.child = Some(child);
        proc.pgid = Some(pgid);
        proc.incarnation += 1;
        proc.frozen = false;
        proc.restart_at = None;
        let journal = Arc::clone(&self.journal);
        let source = proc.name.clone();
        let origin = self.origin;
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let t_ms = origin.elapsed().as_secs_f64() * 1000.0;
                let mut j = journal.lock().expect("journal lock");
                let kind = event["event"].as_str().unwrap_or("");
                if kind == "served" || kind == "reply" {
                    *j.counts.entry(source.clone()).or_default() += 1;
                }
                if kind == "reply" && source.starts_with("client") {
                    j.last_reply_ms = Some(t_ms);
                }
                j.live.observe(&source, &event);
                j.records.push(Record {
                    t_ms,
                    source: source.clone(),
                    event,
                });
            }
        });
        Ok(())
    }

    /// Prints (`-v`) the command lines of the processes started since the last call.
    fn print_started(&mut self, events: &mut Events) {
        for line in self.started.drain(..) {
            if events.tracing() {
                events.info(format!("net: {line}"));
            }
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    /// Records a runner action in the history; returns its time on the history's clock.
    fn note(&self, action: &str, target: &str) -> f64 {
        self.note_with(serde_json::json!({"event": "nemesis", "action": action, "target": target}))
    }

    /// Records a runner action given as its whole event.
    fn note_with(&self, event: serde_json::Value) -> f64 {
        let t_ms = self.now_ms();
        let record = Record {
            t_ms,
            source: "nemesis".into(),
            event,
        };
        self.journal
            .lock()
            .expect("journal lock")
            .records
            .push(record);
        t_ms
    }

    /// Signals the whole process group of a child.
    fn signal(&self, index: usize, signal: i32) {
        if let Some(pgid) = self.procs[index].pgid {
            signal_group(pgid, signal);
        }
    }

    /// Kills a child's whole process group and reaps the child, now.
    fn kill(&mut self, index: usize) {
        self.signal(index, libc::SIGCONT);
        self.signal(index, libc::SIGKILL);
        let proc = &mut self.procs[index];
        if let Some(mut child) = proc.child.take() {
            let _ = child.wait();
        }
        if let Some(pgid) = proc.pgid.take() {
            self.watchdog.forget(pgid);
        }
        let proc = &mut self.procs[index];
        proc.stdin = None;
        proc.frozen = false;
    }

    /// True while the child runs. Once it has exited it is reaped, and whatever else of its
    /// group still runs is killed: nothing it started outlives it.
    fn alive(&mut self, index: usize) -> bool {
        let Some(child) = &self.procs[index].child else {
            return false;
        };
        if !has_exited(child.id() as libc::pid_t) {
            return true;
        }
        // Not reaped yet, so its pid, and with it the group id, cannot have been reused.
        self.kill(index);
        false
    }

    /// The live view's rows; `ended`: the run has stopped its processes, so one that is not
    /// running is `stopped`, not `down` (unless it was down already, awaiting its restart).
    fn status(&mut self, ended: bool) -> Vec<ProcessStatus> {
        let alive: Vec<bool> = (0..self.procs.len()).map(|i| self.alive(i)).collect();
        let j = self.journal.lock().expect("journal lock");
        self.procs
            .iter()
            .zip(alive)
            .map(|(p, alive)| ProcessStatus {
                name: p.name.clone(),
                state: if p.frozen {
                    "frozen"
                } else if alive {
                    // Up, but its host cut by the network fault in force: the fault's name.
                    match &self.cut {
                        Some((kind, hosts)) if hosts.contains(&p.name) => kind,
                        _ => "up",
                    }
                } else if ended && p.down_cause.is_none() {
                    // Stopped with the rest; one still waiting for its restart stays down.
                    "stopped"
                } else {
                    "down"
                }
                .into(),
                restarts: p.restarts,
                count: j.counts.get(&p.name).copied().unwrap_or(0),
                restarted_after: p.restarted_after.clone(),
                activity: j.live.activity(&p.name, alive),
                abandoned: j.live.abandoned(&p.name),
            })
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
        // Then the watchdog field drops: end of file, it finds nothing left and exits.
    }
}

/// Copies a child's stderr to its log, each line prefixed with the run-clock time:
/// `[  3.142s] W: heartbeat lost`. A line is cut every 64 KiB (the rest gets a stamp of
/// its own), so one endless line cannot fill the runner's memory.
fn copy_stamped(stderr: impl std::io::Read, mut log: std::fs::File, origin: Instant) {
    use std::io::{BufRead, Read, Write};
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let stamp = format!("[{:7.3}s] ", origin.elapsed().as_secs_f64());
        if log.write_all(stamp.as_bytes()).is_err() || log.write_all(&line).is_err() {
            return;
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago, below the ephemeral range (see
/// [`pirate::endpoint::free_loopback_port`]: a restarted broker must get its port back).
fn free_port() -> Result<u16> {
    Ok(pirate::endpoint::free_loopback_port()?)
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

/// How many ports the topology binds: the plan made with made-up endpoints, counted. Checked
/// against `--ports` before anything is written or started.
fn ports_needed(config: &ChaosConfig) -> Result<usize> {
    let mut n = 0usize;
    plan_with(config, &mut |_| {
        n += 1;
        Ok(format!("tcp://127.0.0.1:{n}"))
    })?;
    Ok(n)
}

/// Refuses a `--ports` range smaller than the topology (a usage error, exit 2).
fn check_port_range(config: &ChaosConfig) -> Result<()> {
    if let Some(range) = config.ports {
        let needed = ports_needed(config)?;
        if needed > range.len() {
            return Err(Error::Usage(format!(
                "--ports {range} has {} port(s); this topology binds {needed}",
                range.len()
            )));
        }
    }
    Ok(())
}

/// Builds the process list for the pattern. With a network plan, each endpoint is on the
/// address of the host that binds it (a port of its own, though every host has all of them:
/// from 5550 up, or from the low end of `--ports`); otherwise on a free port of 127.0.0.1
/// (from `--ports` when given).
fn plan(config: &ChaosConfig, net: Option<&NetPlan>) -> Result<(Vec<Proc>, String)> {
    let mut next_port = config.ports.map_or(5550u16, |r| r.low);
    plan_with(config, &mut |host: &str| -> Result<String> {
        match (net, config.ports) {
            (None, None) => Ok(format!("tcp://127.0.0.1:{}", free_port()?)),
            (None, Some(range)) => Ok(format!(
                "tcp://127.0.0.1:{}",
                pirate::endpoint::free_loopback_port_in(range)
                    .map_err(|e| Error::Usage(e.to_string()))?
            )),
            (Some(plan), _) => {
                let addr = plan.host(host).map(|h| h.addr).ok_or_else(|| {
                    Error::Internal(format!("{host} has no host in the network plan"))
                })?;
                next_port += 1;
                Ok(format!("tcp://{addr}:{}", next_port - 1))
            }
        }
    })
}

/// [`plan`] with `ep` giving the endpoint each host binds (its name in, `tcp://…` out).
fn plan_with(
    config: &ChaosConfig,
    ep: &mut dyn FnMut(&str) -> Result<String>,
) -> Result<(Vec<Proc>, String)> {
    let hb = format!("{}ms", config.heartbeat.as_millis());
    let reconnect_max = format!("{}ms", config.heartbeat.as_millis() * 8);
    let mut procs = Vec::new();
    // `slot`: which process this is, for its seeds (see `incarnation_seed`); `None` for a
    // `--worker-cmd` shell, which takes no `--seed`.
    let new = |name: String, args: Vec<String>, shell: Option<String>, slot: Option<u64>| Proc {
        name,
        args,
        shell,
        seed_slot: slot,
        incarnation: 0,
        child: None,
        pgid: None,
        stdin: None,
        restarts: 0,
        frozen: false,
        restart_at: None,
        down_cause: None,
        restarted_after: BTreeMap::new(),
    };
    let front = ep(config.front_host())?;
    let back = ep(if config.pattern == Pattern::Bstar {
        "backup"
    } else {
        config.front_host()
    })?;
    let worker_flags = || {
        let mut a = config.worker_args.clone();
        a.extend(config.worker_faults.iter().cloned());
        a
    };
    // With a proxy, one side connects to the proxy's frontend instead, and the proxy's
    // backend connects where that side would have.
    let proxy_front = match &config.proxy {
        Some(_) => ep("proxy")?,
        None => String::new(),
    };
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
            let (s1, s2) = (ep("primary")?, ep("backup")?);
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
                args.extend(worker_flags());
                let slot = if name == "primary" { 1 } else { 2 };
                procs.push(new(name.into(), args, None, Some(slot)));
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
                let endpoint = ep(&format!("server-{i}"))?;
                let mut args = strings(&["server", "--json", "--freelance", "--bind", &endpoint]);
                args.extend(worker_flags());
                procs.push(new(format!("server-{i}"), args, None, Some(i as u64 + 1)));
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
            args.extend(worker_flags());
            procs.push(new("server".into(), args, None, Some(1)));
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
                procs.push(new("broker".into(), args, None, None));
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
                args.extend(worker_flags());
                let slot = shell.is_none().then_some(i as u64 + 1);
                procs.push(new(name, args, shell, slot));
            }
            if config.pattern == Pattern::Titanic {
                let dir = titanic_dir(config);
                let retry = format!("{}ms", config.heartbeat.as_millis() * 2);
                let args = strings(&[
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
                procs.push(new("titanic".into(), args, None, Some(99)));
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
                procs.push(new("queue".into(), args, None, None));
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
                args.extend(worker_flags());
                procs.push(new(name, args, None, Some(i as u64 + 1)));
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
        ]);
        args.extend(faults.iter().cloned());
        procs.push(new("proxy".into(), args, None, Some(0)));
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
        procs.push(new(format!("client-{c}"), args, None, None));
    }
    secure(&mut procs, &config.security);
    Ok((procs, client_endpoint))
}

/// Feeds a client its requests (`cN-1`, `cN-2`, …) until `stop`, or until the count is
/// reached and `extend` is off (the run no longer needs traffic to show recovery from a
/// fault). Only a few lines run ahead of the client's replies: a pipe would otherwise buffer
/// thousands, and the client would still be working through them long after the fault
/// phase ends.
struct Feeder {
    stdin: ChildStdin,
    source: String,
    client: usize,
    count: Option<u64>,
    ahead: u64,
}

/// What the feeders are told by the run loop.
#[derive(Default)]
struct FeedControl {
    /// Stop feeding now.
    stop: AtomicBool,
    /// Go on past the request count: a nemesis kind still needs a fault and a reply after it.
    extend: AtomicBool,
}

impl Feeder {
    fn start(self, journal: Arc<Mutex<Journal>>, control: Arc<FeedControl>) {
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
                let counted_out =
                    count.is_some_and(|c| n > c) && !control.extend.load(Ordering::SeqCst);
                if counted_out || control.stop.load(Ordering::SeqCst) {
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

/// The nemesis at work: strikes, thaws, and what it has injected so far.
struct Nemesis {
    /// Frozen processes and when to continue them.
    thaw_at: Vec<(Instant, usize)>,
    /// Actions carried out, by kind (and `respawn`s by the supervisor).
    injected: BTreeMap<String, u64>,
    /// When each kind first struck, on the history's clock.
    first: BTreeMap<&'static str, f64>,
    /// The network fault in force (one at a time) and when it heals.
    network: Option<InForce>,
}

/// A network fault struck and not yet healed.
struct InForce {
    heal_at: Instant,
    kind: NetKind,
    cut: Cut,
    target: String,
}

impl Nemesis {
    /// Carries out one action (unless its target is already down or frozen).
    fn strike(
        &mut self,
        topo: &mut Topology,
        config: &ChaosConfig,
        s: &ScheduledFault,
        events: &mut Events,
    ) -> Result<()> {
        if let Some(kind) = s.fault.network() {
            return self.strike_network(topo, config, s, kind, events);
        }
        let Some(i) = topo.index(&s.target) else {
            return Ok(());
        };
        if !topo.alive(i) || topo.procs[i].frozen {
            return Ok(()); // already down or frozen: nothing to break
        }
        let now = Instant::now();
        let action = s.fault.name();
        let t_ms = topo.note(action, &s.target);
        match s.fault {
            NemesisFault::Kill | NemesisFault::Restart => {
                topo.kill(i);
                topo.procs[i].restart_at = Some(now + config.restart_delay);
                topo.procs[i].down_cause = Some("nemesis");
            }
            NemesisFault::Freeze => {
                topo.signal(i, libc::SIGSTOP);
                topo.procs[i].frozen = true;
                self.thaw_at.push((now + config.freeze_for, i));
            }
            _ => unreachable!("network faults are struck by strike_network"),
        }
        self.first.entry(action).or_insert(t_ms);
        *self.injected.entry(action.to_string()).or_default() += 1;
        events.emit(Event::Nemesis {
            at_ms: t_ms.round() as u64,
            action: action.to_string(),
            target: s.target.clone(),
        });
        Ok(())
    }

    /// Applies a network fault's rules (unless one is in force already: one at a time, so
    /// each has its own detection and recovery), and records it with the hosts it cuts.
    fn strike_network(
        &mut self,
        topo: &mut Topology,
        config: &ChaosConfig,
        s: &ScheduledFault,
        kind: NetKind,
        events: &mut Events,
    ) -> Result<()> {
        let (Some(network), Some(net_config)) = (&topo.net, &config.net) else {
            return Ok(());
        };
        if self.network.is_some() {
            return Ok(());
        }
        let Some(cut) = Cut::parse(kind, &s.target) else {
            return Ok(());
        };
        let commands = network
            .plan
            .strike(kind, &cut, &net_config.shaping)
            .map_err(Error::Internal)?;
        for c in &commands {
            crate::chaos_net::run(c, events)?;
        }
        let action = s.fault.name();
        let hosts = cut.hosts(&network.plan.names());
        topo.cut = Some((action, hosts.clone()));
        let t_ms = topo.note_with(serde_json::json!({
            "event": "nemesis", "action": action, "target": s.target, "hosts": hosts,
        }));
        self.network = Some(InForce {
            heal_at: Instant::now() + net_config.partition_for,
            kind,
            cut,
            target: s.target.clone(),
        });
        self.first.entry(action).or_insert(t_ms);
        *self.injected.entry(action.to_string()).or_default() += 1;
        events.emit(Event::Nemesis {
            at_ms: t_ms.round() as u64,
            action: action.to_string(),
            target: s.target.clone(),
        });
        Ok(())
    }

    /// Heals the network fault in force once `--partition-for` is over (now, with `all`).
    fn heal_network(&mut self, topo: &mut Topology, events: &mut Events, all: bool) -> Result<()> {
        let due = self
            .network
            .as_ref()
            .is_some_and(|f| all || Instant::now() >= f.heal_at);
        let (true, Some(network)) = (due, &topo.net) else {
            return Ok(());
        };
        let f = self.network.take().expect("due");
        for c in network.plan.heal(f.kind, &f.cut).map_err(Error::Internal)? {
            crate::chaos_net::run(&c, events)?;
        }
        let t_ms = topo.note(net::HEAL_ACTION, &f.target);
        topo.cut = None;
        events.emit(Event::Nemesis {
            at_ms: t_ms.round() as u64,
            action: net::HEAL_ACTION.to_string(),
            target: f.target,
        });
        Ok(())
    }

    /// Continues the processes whose freeze is over (all of them with `all`).
    fn thaw(&mut self, topo: &mut Topology, all: bool) {
        let now = Instant::now();
        self.thaw_at.retain(|&(at, i)| {
            if all || now >= at {
                topo.signal(i, libc::SIGCONT);
                topo.procs[i].frozen = false;
                topo.note("thaw", &topo.procs[i].name.clone());
                false
            } else {
                true
            }
        });
    }

    /// The first kind of `kinds` not yet injected.
    fn missing(&self, kinds: &[NemesisFault]) -> Option<NemesisFault> {
        kinds
            .iter()
            .copied()
            .find(|k| !self.first.contains_key(k.name()))
    }

    /// Every kind of `kinds` injected, and a client accepted a reply after it.
    fn covered(&self, kinds: &[NemesisFault], last_reply_ms: Option<f64>) -> bool {
        kinds.iter().all(|k| {
            self.first
                .get(k.name())
                .is_some_and(|&t| last_reply_ms.is_some_and(|r| r > t))
        })
    }
}

/// Runs the whole experiment and returns its report. Live status goes out as events.
///
/// Ctrl-C or SIGTERM (raising `stop`) stops it early: the report then judges what was
/// observed so far and says `interrupted` (the binary exits 130).
pub fn run(config: &ChaosConfig, stop: &Stop, events: &mut Events) -> Result<ChaosReport> {
    let schedule = config.schedule();
    let kinds = config.nemesis_kinds();
    check_port_range(config)?;
    let logs = match &config.out {
        Some(dir) => {
            std::fs::create_dir_all(dir.join("logs"))?;
            Some(dir.join("logs"))
        }
        None => None,
    };
    let temporary: Vec<PathBuf> = match (config.pattern, &config.out) {
        (Pattern::Titanic, None) => vec![titanic_dir(config)],
        _ => Vec::new(),
    };
    let net_plan = match &config.net {
        Some(_) => Some(
            NetPlan::new(&crate::chaos_net::run_id(), &config.host_names())
                .map_err(Error::Usage)?,
        ),
        None => None,
    };
    let (procs, endpoint) = plan(config, net_plan.as_ref())?;
    if let Some(p) = &net_plan {
        let mut listed: Vec<&String> = procs.iter().map(|p| &p.name).collect();
        let mut hosts: Vec<&String> = p.hosts.iter().map(|h| &h.name).collect();
        listed.sort();
        hosts.sort();
        if listed != hosts {
            return Err(Error::Internal(format!(
                "the network plan's hosts {hosts:?} are not the processes {listed:?}"
            )));
        }
    }
    events.emit(Event::started(
        format!("chaos ({:?})", config.pattern).to_lowercase(),
        endpoint,
        Some(config.seed),
    ));
    for s in &schedule {
        events.emit(Event::NemesisPlanned {
            at_ms: s.at_ms,
            fault: s.fault.name().to_string(),
            target: s.target.clone(),
        });
    }
    let mut topo = Topology {
        exe: config.exe.clone(),
        procs,
        journal: Arc::new(Mutex::new(Journal::default())),
        origin: Instant::now(),
        run_seed: config.seed,
        logs,
        net: None,
        started: Vec::new(),
        cut: None,
        watchdog: Watchdog::start(&temporary)?,
    };
    if let Some(p) = net_plan {
        // Told to the watchdog before they exist: a SIGKILL from here on leaves nothing.
        for ns in p.namespaces() {
            topo.watchdog.namespace(&ns);
        }
        topo.net = Some(Network::start(p, events)?);
    }
    let mut nemesis = Nemesis {
        thaw_at: Vec::new(),
        injected: BTreeMap::new(),
        first: BTreeMap::new(),
        network: None,
    };
    // Servers first, then workers, then clients, each given a moment to bind.
    for i in 0..topo.procs.len() {
        if topo.procs[i].name.starts_with("client") {
            continue;
        }
        topo.spawn(i)?;
    }
    thread::sleep(config.heartbeat * 2);
    let feed = Arc::new(FeedControl::default());
    feed.extend.store(!kinds.is_empty(), Ordering::SeqCst);
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
            feeder.start(Arc::clone(&topo.journal), Arc::clone(&feed));
        }
    }
    // The nemesis's clock (the schedule's `at_ms`) starts now; the history's started before
    // the first child, and both run on.
    let phase_start = Instant::now();
    // Everything the run prints as it goes, the history and the page share the run's clock;
    // the plan counts from here.
    events.emit(Event::Log {
        level: pirate::event::Level::Info,
        message: format!(
            "fault phase starts at {:.1}s (the nemesis plan counts from here; every other time is \
             from the run's start, as in report.html)",
            topo.now_ms() / 1000.0
        ),
    });
    let mut next = 0usize;
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let mut interrupted = false;
    let interval = config.nemesis_interval;
    let mut next_coverage_strike = config.fault_phase;
    let mut coverage_strikes = 0u64;

    // Fault phase: for --duration, and on (up to --max-extension) while a nemesis kind has
    // not struck yet or no reply has come after it; over early once every client is done.
    let clients: Vec<usize> = (0..topo.procs.len())
        .filter(|&i| topo.procs[i].name.starts_with("client"))
        .collect();
    loop {
        let in_phase = phase_start.elapsed();
        if stop.requested() {
            interrupted = true;
            break;
        }
        if !clients.iter().any(|&i| topo.alive(i)) {
            break;
        }
        let elapsed = in_phase.as_millis() as u64;
        while next < schedule.len() && schedule[next].at_ms <= elapsed {
            nemesis.strike(&mut topo, config, &schedule[next], events)?;
            next += 1;
        }
        let cap = config.fault_phase + config.max_extension;
        // Past --duration: strike a kind the schedule did not get to inject, each interval.
        if in_phase >= next_coverage_strike && in_phase < cap {
            if let Some(kind) = nemesis.missing(&kinds) {
                let s = config.coverage_fault(coverage_strikes, kind, elapsed);
                coverage_strikes += 1;
                nemesis.strike(&mut topo, config, &s, events)?;
            }
            next_coverage_strike += interval.max(Duration::from_millis(100));
        }
        let last_reply = topo.journal.lock().expect("journal lock").last_reply_ms;
        let covered = nemesis.covered(&kinds, last_reply);
        feed.extend.store(!covered, Ordering::SeqCst);
        if in_phase >= config.fault_phase && (covered || in_phase >= cap) {
            break;
        }
        nemesis.thaw(&mut topo, false);
        nemesis.heal_network(&mut topo, events, false)?;
        topo.print_started(events);
        supervise(&mut topo, config, &mut nemesis.injected, events, false)?;
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            events.emit(Event::ChaosStatus {
                elapsed_ms: elapsed,
                phase: "fault".into(),
                processes: topo.status(false),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    let fault_phase_ms = phase_start.elapsed().as_millis() as u64;
    feed.extend.store(false, Ordering::SeqCst);

    // Heal: no more faults. Thaw, restart whatever is down, and replace faulty workers.
    // Clients with a request count finish it; the others stop taking new requests.
    if config.requests.is_none() || interrupted {
        feed.stop.store(true, Ordering::SeqCst);
    }
    nemesis.thaw(&mut topo, true);
    nemesis.heal_network(&mut topo, events, true)?;
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
                // Same endpoints, without the fault flags.
                let args = without_faults(&topo.procs[i].args, faults);
                topo.kill(i);
                topo.procs[i].args = args;
                topo.procs[i].restart_at = Some(Instant::now());
                // Down already (the nemesis, its own crash): that is why it comes back.
                topo.procs[i].down_cause.get_or_insert("heal");
                topo.note("heal", &name);
            }
        }
        supervise(&mut topo, config, &mut nemesis.injected, events, true)?;
    }

    // Drain: wait for every client to finish what it holds.
    let drain_deadline = Instant::now() + config.drain_timeout;
    loop {
        let running = clients.iter().filter(|&&i| topo.alive(i)).count();
        if running == 0 {
            break;
        }
        if stop.requested() || Instant::now() >= drain_deadline {
            // Interrupt stragglers: what they still hold shows up as lost (or, when the run
            // itself was interrupted, as unfinished).
            for &i in &clients {
                topo.signal(i, libc::SIGINT);
            }
            let grace = Instant::now() + Duration::from_secs(2);
            while clients.iter().any(|&i| topo.alive(i)) && Instant::now() < grace {
                thread::sleep(Duration::from_millis(20));
            }
            interrupted |= stop.requested();
            break;
        }
        supervise(&mut topo, config, &mut nemesis.injected, events, true)?;
        topo.print_started(events);
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            events.emit(Event::ChaosStatus {
                elapsed_ms: phase_start.elapsed().as_millis() as u64,
                phase: "drain".into(),
                processes: topo.status(false),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    events.emit(Event::ChaosStatus {
        elapsed_ms: phase_start.elapsed().as_millis() as u64,
        phase: "check".into(),
        processes: topo.status(false),
    });

    // Stop the servers politely so their summaries land in the history, then kill.
    for i in 0..topo.procs.len() {
        topo.signal(i, libc::SIGINT);
    }
    let grace = Instant::now() + Duration::from_secs(2);
    while (0..topo.procs.len()).any(|i| topo.alive(i)) && Instant::now() < grace {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(50)); // their summaries reach the journal
                                              // The last table, with the brokers' and queues' own summary counts: the view keeps it.
    events.emit(Event::ChaosStatus {
        elapsed_ms: phase_start.elapsed().as_millis() as u64,
        phase: "end".into(),
        processes: topo.status(true),
    });
    for i in 0..topo.procs.len() {
        topo.kill(i);
    }
    if let Some(network) = &mut topo.net {
        network.teardown(events);
        topo.watchdog.namespaces_removed();
    }
    thread::sleep(Duration::from_millis(50)); // let reader threads reach end of file

    let records = std::mem::take(&mut topo.journal.lock().expect("journal lock").records);
    let findings = checker::check(
        &records,
        &CheckOptions {
            strict: config.strict,
            required_faults: config.required_faults(),
            interrupted,
        },
    );
    let mut report = ChaosReport {
        seed: config.seed,
        pattern: config.pattern,
        verdict: findings.verdict,
        reason: findings.reason.clone(),
        valid: findings.verdict == Judgement::Valid,
        interrupted,
        fault_phase_ms,
        schedule,
        injected: nemesis.injected,
        findings,
        network: match &config.net {
            Some(_) => net::network_faults(&records, config.heartbeat.as_secs_f64() * 3000.0),
            None => Vec::new(),
        },
        out: config.out.as_ref().map(|p| p.display().to_string()),
        run: config.record.clone(),
    };
    for dir in &temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(dir) = &config.out {
        write_out(dir, &records, &report)?;
        report.out = Some(dir.display().to_string());
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
                let cause = topo.procs[i].down_cause.take().unwrap_or("own crash");
                *topo.procs[i]
                    .restarted_after
                    .entry(cause.to_string())
                    .or_default() += 1;
                let name = topo.procs[i].name.clone();
                topo.note("start", &name);
                events.info(format!("restarted {name} (after {cause})"));
            }
            Some(_) => {}
            None => {
                // Died by itself: a crash the worker injected. Restart it like a supervisor.
                *injected.entry("respawn".into()).or_default() += 1;
                let name = topo.procs[i].name.clone();
                topo.note("died", &name);
                topo.procs[i].down_cause = Some("own crash");
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
    // The page from the files just written, read back as `pirate chaos report` reads them.
    crate::chaos_report::write(dir).map_err(|e| Error::Internal(e.to_string()))?;
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
    fn every_process_is_a_host_and_links_follow_who_connects_to_whom() {
        let mut c = demo(1);
        c.workers = 2;
        c.proxy = Some((ProxyPlacement::Workers, Vec::new()));
        assert_eq!(
            c.host_names(),
            strings(&["broker", "worker-1", "worker-2", "proxy", "client-1", "client-2"])
        );
        let links = c.links();
        let has = |a: &str, b: &str| links.contains(&(a.to_string(), b.to_string()));
        assert!(has("worker-1", "proxy") && has("proxy", "broker") && has("client-2", "broker"));
        assert!(!has("worker-1", "broker"), "{links:?}");
        let mut b = demo(1);
        b.pattern = Pattern::Bstar;
        assert_eq!(
            b.host_names(),
            strings(&["primary", "backup", "client-1", "client-2"])
        );
        assert!(b.links().contains(&("client-1".into(), "backup".into())));
    }

    #[test]
    fn network_kinds_are_scheduled_only_on_hosts_of_their_own_and_replay() {
        let mut c = demo(4);
        c.nemesis = vec![
            NemesisFault::Partition,
            NemesisFault::Split,
            NemesisFault::Oneway,
            NemesisFault::Loss,
        ];
        // On loopback there is nothing to cut.
        assert!(c.schedule().is_empty());
        c.net = Some(NetConfig {
            partition_for: Duration::from_millis(1500),
            shaping: net::Shaping::default(),
        });
        let s = c.schedule();
        assert_eq!(s, c.schedule());
        let hosts = c.host_names();
        for f in &s {
            let kind = f.fault.network().expect("network kind");
            let cut = Cut::parse(kind, &f.target).unwrap_or_else(|| panic!("{f:?}"));
            for h in cut.hosts(&hosts) {
                assert!(hosts.contains(&h), "{h} in {f:?}");
            }
        }
        assert_eq!(s[1].fault, NemesisFault::Split);
        assert_eq!(s[3].target, "all");
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

    #[test]
    fn each_incarnation_gets_its_own_seed_and_the_run_seed_replays_them() {
        let seeds: Vec<u64> = (0..4).map(|n| incarnation_seed(7, 2, n)).collect();
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{seeds:?}");
        assert_eq!(
            seeds,
            (0..4)
                .map(|n| incarnation_seed(7, 2, n))
                .collect::<Vec<_>>()
        );
        assert_ne!(incarnation_seed(7, 2, 0), incarnation_seed(7, 3, 0));
        assert_ne!(incarnation_seed(7, 2, 0), incarnation_seed(8, 2, 0));
        assert!(seeds.iter().all(|s| *s < 1 << 53));
    }

    #[test]
    fn required_faults_are_the_kinds_that_apply_and_any_proxy_fault() {
        let mut c = demo(1);
        assert_eq!(c.required_faults(), ["kill", "freeze", "restart"]);
        c.external = Some("tcp://127.0.0.1:1".into());
        assert_eq!(c.required_faults(), ["kill", "freeze"]);
        c.proxy = Some((ProxyPlacement::Clients, strings(&["--drop", "5%"])));
        assert_eq!(c.required_faults(), ["kill", "freeze", "proxy"]);
        c.nemesis_interval = Duration::ZERO;
        assert_eq!(c.required_faults(), ["proxy"]);
        assert!(c.schedule().is_empty());
        // A Binary Star pair heals after a frozen node thaws: freezes apply to it too.
        let mut b = demo(1);
        b.pattern = Pattern::Bstar;
        assert_eq!(b.required_faults(), ["kill", "freeze"]);
    }

    #[test]
    fn a_short_duration_schedules_the_first_kind_and_coverage_strikes_replay() {
        let mut c = demo(5);
        c.fault_phase = Duration::from_secs(2);
        let s = c.schedule();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].fault, NemesisFault::Kill);
        assert!(s[0].at_ms < 2000);
        let a = c.coverage_fault(0, NemesisFault::Freeze, 2000);
        assert_eq!(a, c.coverage_fault(0, NemesisFault::Freeze, 2000));
        assert!(a.target.starts_with("worker-"));
        assert_eq!(
            c.coverage_fault(1, NemesisFault::Restart, 5000).target,
            "broker"
        );
    }
}
