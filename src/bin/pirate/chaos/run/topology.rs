//! The topology's running processes: starting each child (in a process group of its own,
//! dying with the runner, its JSON Lines read into the shared history), signalling, killing
//! and reaping them, and the live view's rows.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use pirate::chaos::history::Record;
use pirate::chaos::live::Tracker;
use pirate::chaos::net;
use pirate::error::{Error, Result};
use pirate::event::chaos::ProcessStatus;
use pirate::event::Events;

use super::watchdog::Watchdog;
use crate::chaos::net::Network;

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
pub(super) struct Journal {
    pub(super) records: Vec<Record>,
    pub(super) counts: BTreeMap<String, u64>,
    /// When a client last accepted a reply (ms on the history's clock).
    pub(super) last_reply_ms: Option<f64>,
    /// What each process is doing, for the live view.
    pub(super) live: Tracker,
}

/// One child process of the topology.
pub(super) struct Proc {
    pub(super) name: String,
    pub(super) args: Vec<String>,
    pub(super) shell: Option<String>,
    /// Which process this is, for [`incarnation_seed`]; `None`: started without `--seed`.
    pub(super) seed_slot: Option<u64>,
    /// How many times it was started before the current one.
    pub(super) incarnation: u64,
    pub(super) child: Option<Child>,
    /// Its process group (its pid: each child leads one), until the group is known empty.
    pub(super) pgid: Option<i32>,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) restarts: u64,
    pub(super) frozen: bool,
    /// When a dead process is due to be started again.
    pub(super) restart_at: Option<Instant>,
    /// Why it is down (`nemesis`, `heal`, `own crash`), until it is started again.
    pub(super) down_cause: Option<&'static str>,
    /// Its restarts by cause, for the live view.
    pub(super) restarted_after: BTreeMap<String, u64>,
}

/// Sends `signal` to every process of group `pgid`.
pub(super) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// True once child `pid` has exited, without reaping it (waitid with WNOWAIT): while it is
/// a zombie its pid still names its process group, which can then be killed safely.
pub(super) fn has_exited(pid: libc::pid_t) -> bool {
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
pub(super) fn die_with_parent(cmd: &mut Command) {
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
pub(super) struct Topology {
    pub(super) exe: PathBuf,
    pub(super) procs: Vec<Proc>,
    pub(super) journal: Arc<Mutex<Journal>>,
    /// The history's clock: set once, before the first child starts, and never reset, so
    /// every record (a child's line, a nemesis action) is on the same time line.
    pub(super) origin: Instant,
    pub(super) run_seed: u64,
    pub(super) logs: Option<PathBuf>,
    /// `--net namespaces`: the run's network (each process runs in its host).
    pub(super) net: Option<Network>,
    /// Command lines started since the run loop last printed them (`-v`).
    pub(super) started: Vec<String>,
    /// The network fault in force and the hosts it cuts, for the live view.
    pub(super) cut: Option<(&'static str, Vec<String>)>,
    pub(super) watchdog: Watchdog,
}

impl Topology {
    /// Milliseconds on the history's clock.
    pub(super) fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }

    pub(super) fn spawn(&mut self, index: usize) -> Result<()> {
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
            if let Some(ip) = crate::chaos::net::tool("ip") {
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
    pub(super) fn print_started(&mut self, events: &mut Events) {
        for line in self.started.drain(..) {
            if events.tracing() {
                events.info(format!("net: {line}"));
            }
        }
    }

    pub(super) fn index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    /// Records a runner action in the history; returns its time on the history's clock.
    pub(super) fn note(&self, action: &str, target: &str) -> f64 {
        self.note_with(serde_json::json!({"event": "nemesis", "action": action, "target": target}))
    }

    /// Records a runner action given as its whole event.
    pub(super) fn note_with(&self, event: serde_json::Value) -> f64 {
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
    pub(super) fn signal(&self, index: usize, signal: i32) {
        if let Some(pgid) = self.procs[index].pgid {
            signal_group(pgid, signal);
        }
    }

    /// Kills a child's whole process group and reaps the child, now.
    pub(super) fn kill(&mut self, index: usize) {
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
    pub(super) fn alive(&mut self, index: usize) -> bool {
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
    pub(super) fn status(&mut self, ended: bool) -> Vec<ProcessStatus> {
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
pub(super) fn copy_stamped(stderr: impl std::io::Read, mut log: std::fs::File, origin: Instant) {
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
