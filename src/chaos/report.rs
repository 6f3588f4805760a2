//! What a chaos run reports: the vocabulary (patterns, nemesis faults, the schedule) and the
//! final report and live status, as plain data. The orchestrator that fills them lives in the
//! binary (it spawns `pirate`); the library's [`event::Report`](crate::event::Report) carries
//! them to the renderer.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::checker::{Judgement, Verdict};

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
}

impl NemesisFault {
    /// `kill`, `freeze`, `restart`: the name in events, `injected` and the checker's faults.
    pub fn name(self) -> &'static str {
        match self {
            NemesisFault::Kill => "kill",
            NemesisFault::Freeze => "freeze",
            NemesisFault::Restart => "restart",
        }
    }
}

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
        self.replay
            .iter()
            .map(|w| {
                let plain = !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,%@+".contains(c));
                if plain {
                    w.clone()
                } else {
                    format!("'{}'", w.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the live view shows of one process.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ProcessStatus {
    pub name: String,
    /// `up`, `down`, `frozen`, or `stopped` once the run stopped it at the end.
    pub state: String,
    pub restarts: u64,
    /// Requests served (workers, servers) or replies received (clients).
    pub count: u64,
    /// Why it was restarted, by cause: `own crash` (its injected crash), `nemesis` (killed
    /// or restarted on purpose), `heal` (started again without its fault flags).
    pub restarted_after: BTreeMap<String, u64>,
    /// What it is doing, in words (see [`Tracker::activity`](super::live::Tracker::activity)):
    /// a client waiting, retrying, idle or done; a broker's or queue's own counts.
    pub activity: String,
    /// Requests a client gave up on so far.
    pub abandoned: u64,
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
