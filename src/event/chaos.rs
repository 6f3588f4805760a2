//! What a chaos run reports: the vocabulary (patterns, nemesis and network faults, the
//! schedule) and the final report and live status, as plain data. The orchestrator that fills
//! them lives in the binary (it spawns `pirate`); [`Report::Chaos`](super::Report::Chaos) and
//! [`Event::ChaosStatus`](super::Event::ChaosStatus) carry them to the renderer. They are the event
//! layer's, below the chaos library that fills them, so events need nothing from above.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::verdict::{Judgement, Verdict};

/// Which pattern's topology to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
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

impl Pattern {
    /// Every pattern, in the order `--pattern` lists them.
    pub const ALL: [Pattern; 7] = [
        Pattern::Lazy,
        Pattern::Simple,
        Pattern::Paranoid,
        Pattern::Majordomo,
        Pattern::Titanic,
        Pattern::Bstar,
        Pattern::Freelance,
    ];

    /// `lazy`, `majordomo`, …: the name in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Lazy => "lazy",
            Pattern::Simple => "simple",
            Pattern::Paranoid => "paranoid",
            Pattern::Majordomo => "majordomo",
            Pattern::Titanic => "titanic",
            Pattern::Bstar => "bstar",
            Pattern::Freelance => "freelance",
        }
    }
}

/// A fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NemesisFault {
    /// SIGKILL a worker (or the Lazy Pirate server); it is restarted after the restart delay.
    Kill,
    /// SIGSTOP a worker for the freeze time, then SIGCONT.
    Freeze,
    /// SIGKILL the broker or queue and start it again on the same endpoints.
    Restart,
    /// `--net namespaces`: one host cut off from every other, silently, both ways.
    Partition,
    /// `--net namespaces`: the hosts divided into two groups that only talk among themselves.
    Split,
    /// `--net namespaces`: one direction between two hosts dropped.
    Oneway,
    /// `--net namespaces`: one host's TCP refused at once (RST), both ways.
    Reset,
    /// `--net namespaces`: a share of every packet between hosts dropped (`--loss`).
    Loss,
    /// `--net namespaces`: one host's bandwidth limited (`--rate`).
    Slow,
    /// `--net namespaces`: latency and jitter on one host's link (`--delay`, `--jitter`).
    Delay,
}

impl NemesisFault {
    /// Every fault, in the order `--nemesis` lists them.
    pub const ALL: [NemesisFault; 10] = [
        NemesisFault::Kill,
        NemesisFault::Freeze,
        NemesisFault::Restart,
        NemesisFault::Partition,
        NemesisFault::Split,
        NemesisFault::Oneway,
        NemesisFault::Reset,
        NemesisFault::Loss,
        NemesisFault::Slow,
        NemesisFault::Delay,
    ];

    /// `kill`, `freeze`, `restart`: the name in events, `injected` and the checker's faults.
    pub fn name(self) -> &'static str {
        match self {
            NemesisFault::Kill => "kill",
            NemesisFault::Freeze => "freeze",
            NemesisFault::Restart => "restart",
            NemesisFault::Partition => "partition",
            NemesisFault::Split => "split",
            NemesisFault::Oneway => "oneway",
            NemesisFault::Reset => "reset",
            NemesisFault::Loss => "loss",
            NemesisFault::Slow => "slow",
            NemesisFault::Delay => "delay",
        }
    }

    /// The network kind, for a fault of the network (`--net namespaces` only).
    pub fn network(self) -> Option<NetKind> {
        Some(match self {
            NemesisFault::Kill | NemesisFault::Freeze | NemesisFault::Restart => return None,
            NemesisFault::Partition => NetKind::Partition,
            NemesisFault::Split => NetKind::Split,
            NemesisFault::Oneway => NetKind::Oneway,
            NemesisFault::Reset => NetKind::Reset,
            NemesisFault::Loss => NetKind::Loss,
            NemesisFault::Slow => NetKind::Slow,
            NemesisFault::Delay => NetKind::Delay,
        })
    }
}

/// The network faults (`--nemesis` kinds that need `--net namespaces`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    Partition,
    Split,
    Oneway,
    Reset,
    Loss,
    Slow,
    Delay,
}

/// Every network fault name (what the checker and the report treat as one).
pub const NETWORK_FAULTS: [&str; 7] = [
    "partition",
    "split",
    "oneway",
    "reset",
    "loss",
    "slow",
    "delay",
];

/// One scheduled nemesis action.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ScheduledFault {
    pub at_ms: u64,
    pub fault: NemesisFault,
    pub target: String,
}

/// The result of a chaos run.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ChaosReport {
    pub seed: u64,
    pub pattern: Pattern,
    /// `valid`, `invalid` or `indeterminate`: only valid is a pass.
    pub verdict: Judgement,
    /// One line: why.
    pub reason: String,
    /// `verdict` is valid.
    pub valid: bool,
    /// Stopped by Ctrl-C or SIGTERM: the verdict covers what was observed until then.
    pub interrupted: bool,
    /// How long the fault phase lasted, in ms (past `--duration` when it had to go on to cover
    /// every nemesis kind; shorter when every client was done and everything covered).
    pub fault_phase_ms: u64,
    pub schedule: Vec<ScheduledFault>,
    /// Nemesis actions actually carried out, by kind (`kill`, `freeze`, `restart`), and
    /// processes restarted after dying of their own injected crash (`respawn`).
    pub injected: BTreeMap<String, u64>,
    /// What the checker found: counts, lists, recoveries and coverage per fault kind.
    pub findings: Verdict,
    /// `--net namespaces`: each network fault, what it cut, who noticed and when.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub network: Vec<NetworkFault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
    /// How the run was started: enough to run it again (`pirate chaos run --replay DIR`).
    pub run: RunRecord,
}

/// How a chaos run was started, as its `results.json` and report keep it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(default)]
pub struct RunRecord {
    /// The command that runs the same configuration again: the command line as given, its
    /// `--seed` set to the run's seed, without `--out` (a replay writes elsewhere).
    pub replay: Vec<String>,
    /// Every flag of the run, defaults included, by name (values as typed; lists joined by
    /// commas).
    pub flags: BTreeMap<String, String>,
    /// pirate's version and the commit it was built from (`unknown` outside a git checkout).
    pub version: String,
    pub commit: String,
    /// When the run started (RFC 3339, UTC) and on which host.
    pub started: String,
    pub host: String,
}

impl RunRecord {
    /// The replay command as one line a shell reads back as the same words.
    pub fn replay_line(&self) -> String {
        let words: Vec<String> = self.replay.iter().map(|w| shell_word(w)).collect();
        words.join(" ")
    }
}

/// `word` as a POSIX shell reads it back as one word: as it is when every character is safe,
/// else in single quotes (a quote inside written `'\''`). The replay line and the network
/// commands `-v` prints are written so, to be copied and run.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,%@+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What the live view shows of one process.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ProcessStatus {
    pub name: String,
    /// `up`, `down`, `frozen`, or `stopped` once the run stopped it at the end; with `--net
    /// namespaces`, the network fault (`partition`, `split`, …) that cuts its host now.
    pub state: String,
    pub restarts: u64,
    /// Requests served (workers, servers) or replies received (clients).
    pub count: u64,
    /// Why it was restarted, by cause: `own crash` (its injected crash), `nemesis` (killed
    /// or restarted on purpose), `heal` (started again without its fault flags).
    pub restarted_after: BTreeMap<String, u64>,
    /// What it is doing, in words: a client waiting, retrying, idle or done; a broker's or
    /// queue's own counts.
    pub activity: String,
    /// Requests a client gave up on so far.
    pub abandoned: u64,
}

/// One network fault of a `--net namespaces` run, as the history shows it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct NetworkFault {
    /// `partition`, `split`, `oneway`, `reset`, `loss`, `slow`, `delay`.
    pub kind: String,
    /// What it cut, as the schedule writes it (`worker-1`, `broker+worker-1 | client-1`,
    /// `worker-1 -> broker`, `all`).
    pub target: String,
    /// The hosts it cut off from someone.
    pub hosts: Vec<String>,
    /// When it struck and healed, ms on the history's clock (`healed_ms` absent: the run
    /// ended first).
    pub struck_ms: f64,
    pub healed_ms: Option<f64>,
    /// The liveness window the roles were given (heartbeat × 3), ms: what detection is
    /// measured against.
    pub liveness_ms: f64,
    /// Each role that noticed, first time only: who, how (`peer_lost`, `worker_expired`,
    /// `retry`, `bstar_state`, …), and how long after the strike.
    pub detections: Vec<Detection>,
    /// From the strike to the first reply a client accepted after the heal (or, for a fault
    /// that never stopped every reply, after the strike: see `reply_during_ms`).
    pub recovery_ms: Option<f64>,
    /// From the strike to the first reply accepted while it was still in force.
    pub reply_during_ms: Option<f64>,
    /// Replies accepted while it was in force.
    pub replies_during: u64,
}

/// A role noticing a network fault.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct Detection {
    pub source: String,
    pub event: String,
    pub after_ms: f64,
}

impl NetworkFault {
    /// One line: "partition broker at 0.86s for 0.33s: noticed by worker-2 in 0.15s, broker
    /// in 0.18s (liveness 0.15s); first reply after the heal 0.46s after it struck".
    pub fn describe(&self) -> String {
        let lasted = match self.healed_ms {
            Some(h) => format!("for {:.2}s", (h - self.struck_ms) / 1000.0),
            None => "until the end".into(),
        };
        let noticed = if self.detections.is_empty() {
            "nobody noticed".to_string()
        } else {
            let who: Vec<String> = self
                .detections
                .iter()
                .map(|d| format!("{} ({}) in {:.2}s", d.source, d.event, d.after_ms / 1000.0))
                .collect();
            format!("noticed by {}", who.join(", "))
        };
        let recovered = match self.recovery_ms {
            Some(r) => format!(
                "first reply after the heal {:.2}s after it struck",
                r / 1000.0
            ),
            None => "no reply after the heal".into(),
        };
        format!(
            "{} {} at {:.2}s {lasted}: {noticed} (liveness {:.2}s); {} replies meanwhile; {recovered}",
            self.kind,
            self.target,
            self.struck_ms / 1000.0,
            self.liveness_ms / 1000.0,
            self.replies_during
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RunRecord;

    #[test]
    fn a_replay_line_quotes_what_a_shell_would_split_or_expand() {
        let record = RunRecord {
            replay: [
                "pirate",
                "--worker-cmd",
                "./w --broker {endpoint}",
                "--proxy-faults",
            ]
            .into_iter()
            .chain(["--drop 10%", "it's"])
            .map(String::from)
            .collect(),
            ..RunRecord::default()
        };
        assert_eq!(
            record.replay_line(),
            r#"pirate --worker-cmd './w --broker {endpoint}' --proxy-faults '--drop 10%' 'it'\''s'"#
        );
    }
}
