//! What the chaos checker found, as a chaos run's report carries it: the verdict (valid,
//! invalid, indeterminate), the findings behind it, and their summary in plain words.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stats::Latency;

/// The three verdicts. Only `Valid` is a pass (exit 0).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// Nothing lost, duplicated, reordered or wrongly answered, and the run showed it.
    Valid,
    /// At least one fatal finding.
    Invalid,
    /// Nothing fatal, but the run could not show anything (see `reason`).
    Indeterminate,
}

impl Judgement {
    /// `VALID`, `INVALID`, `INDETERMINATE`: the headline word.
    pub fn headline(self) -> &'static str {
        match self {
            Judgement::Valid => "VALID",
            Judgement::Invalid => "INVALID",
            Judgement::Indeterminate => "INDETERMINATE",
        }
    }
}

/// What the run showed of one fault kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq, JsonSchema)]
pub struct Coverage {
    /// Faults of this kind in the history.
    pub injected: u64,
    /// Process faults of this kind followed by at least one reply (message faults: 0).
    pub recovered: u64,
    /// Replies accepted after each fault of this kind, up to the next process fault, summed.
    pub replies_after: u64,
}

/// The time from one process fault to the first reply after it.
#[derive(Clone, Debug, Serialize, PartialEq, JsonSchema)]
pub struct Recovery {
    /// What happened: `kill worker-2`, `restart broker`, `worker_crash worker-1`, …
    pub fault: String,
    /// Its kind, a key of [`Verdict::faults`]: `kill`, `worker_crash`, …
    pub kind: String,
    /// When, in ms since the run started.
    pub at_ms: f64,
    /// Time to the next reply any client accepted; `None` if none came after.
    pub recovered_after_ms: Option<f64>,
    /// Replies accepted after it and before the next process fault (or the end).
    pub replies_after: u64,
}

/// The checker's judgement of a history. Lists name requests by their text, naturally sorted
/// (`c1-2` before `c1-10`).
#[derive(Clone, Debug, Serialize, PartialEq, JsonSchema)]
pub struct Verdict {
    /// Valid, invalid or indeterminate.
    pub verdict: Judgement,
    /// One line: why (the fatal findings, or what the run could not show).
    pub reason: String,
    /// `verdict` is valid (kept for readers of older results).
    pub valid: bool,
    /// The run was stopped before it finished: requests still in flight are `unfinished`, not
    /// lost, and the verdict is at best indeterminate.
    pub interrupted: bool,
    /// Distinct requests (client, seq) sent at least once.
    pub requests: u64,
    /// `sent` events: first sends and resends.
    pub attempts: u64,
    /// Distinct requests with an accepted reply.
    pub replied: u64,
    /// Sent but neither replied nor abandoned. Fatal.
    pub lost: Vec<String>,
    /// Given up on by their client. Indeterminate, not fatal.
    pub abandoned: Vec<String>,
    /// Still in flight when the run was interrupted. Indeterminate, not fatal.
    pub unfinished: Vec<String>,
    /// More than one reply delivered for one request. Fatal.
    pub duplicated: Vec<String>,
    /// Reply delivered after the reply to a later request of the same client. Fatal.
    pub out_of_order: Vec<String>,
    /// A wrong reply accepted. Fatal.
    pub mismatched: Vec<String>,
    /// Wrong replies the clients refused (`mismatch` events). Not fatal.
    pub refused_mismatches: u64,
    /// Extra executions of requests already executed. Fatal only when strict.
    pub reexecutions: u64,
    /// Replied but never reported served (the worker's line was cut off). Informational.
    pub unexecuted_replies: Vec<String>,
    /// Served lines the workers wrote in all (0: workers that write none, such as a
    /// `--worker-cmd` program, and then `unexecuted_replies` says nothing of kills).
    #[serde(default)]
    pub served_lines: u64,
    /// One per process fault, in time order.
    pub recoveries: Vec<Recovery>,
    /// Percentiles of the clients' reply latencies (first send to reply).
    pub latency_ms: Latency,
    /// Faults by kind: `kill`, `freeze`, `restart` (nemesis), `worker_crash`,
    /// `worker_overload`, `worker_freeze` (self-injected), `proxy_<kind>` (message faults).
    pub faults: BTreeMap<String, u64>,
    /// What the run showed of each fault kind injected or required.
    pub coverage: BTreeMap<String, Coverage>,
    /// Records of known events that could not be read (missing or wrongly typed fields).
    pub unreadable: u64,
    /// Binary Star: ms during which both nodes were ACTIVE at once (a split), by their
    /// `bstar_state` events; absent when no node reported a state. Informational.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub both_active_ms: Option<u64>,
    /// One line per fatal finding.
    pub violations: Vec<String>,
}

/// What "wrong refused" means, in plain words (the summary and `report.html` say it).
pub const MEANING_WRONG_REFUSED: &str = "replies that were not the answer to the request in \
    flight (a stale reply to an earlier attempt, or one corrupted on the way): the client refused \
    each and waited for the right one; the protocol doing its job, not a failure";

/// What "replies with no served line" means, in plain words, when workers do write them.
pub const MEANING_NO_SERVED_LINE: &str = "a client got its reply, but no worker's log says it \
    served that request: the worker was killed right after replying, before its line was \
    written; the history is cut short there, nothing was lost";

/// The same count when no worker wrote a single served line: workers that print no JSON lines
/// (`--worker-cmd`, someone else's), so executions cannot be checked at all.
pub const MEANING_NO_SERVED_LINES_AT_ALL: &str = "no worker wrote a single served line (workers \
    that print no pirate JSON lines, such as a --worker-cmd program): replies are checked, but \
    which worker executed each request, and how often, cannot be";

/// Which of the two meanings the "replies with no served line" count has, given how many
/// served lines the workers wrote in all.
pub fn meaning_no_served_line(served_lines: u64) -> &'static str {
    if served_lines == 0 {
        MEANING_NO_SERVED_LINES_AT_ALL
    } else {
        MEANING_NO_SERVED_LINE
    }
}

/// What "unreadable records" means, in plain words.
pub const MEANING_UNREADABLE: &str = "lines of the history that name a known event but lack \
    a field or carry the wrong type (a process killed in the middle of a line, or another \
    pirate version): skipped, not judged";

/// How many names a summary line lists before "… and N more".
const LISTED: usize = 20;

fn list_line(out: &mut String, title: &str, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let shown = names[..names.len().min(LISTED)].join(", ");
    let _ = write!(out, "\n{title} ({}): {shown}", names.len());
    if names.len() > LISTED {
        let _ = write!(out, ", … and {} more", names.len() - LISTED);
    }
}

impl Verdict {
    /// A multi-line summary for humans: VALID/INVALID headline, counts, the findings (first
    /// 20 names each), faults, recovery times and latency.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        let mark = if self.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        let _ = write!(out, "{}{mark}: {}", self.verdict.headline(), self.reason);
        let _ = write!(
            out,
            "\nrequests: {} sent ({} attempts), {} replied, {} abandoned (indeterminate), {} lost",
            self.requests,
            self.attempts,
            self.replied,
            self.abandoned.len(),
            self.lost.len()
        );
        if !self.unfinished.is_empty() {
            let _ = write!(out, ", {} unfinished (interrupted)", self.unfinished.len());
        }
        let _ = write!(
            out,
            "\nreplies: {} duplicated, {} out of order, {} wrong accepted, {} wrong refused",
            self.duplicated.len(),
            self.out_of_order.len(),
            self.mismatched.len(),
            self.refused_mismatches
        );
        let _ = write!(
            out,
            "\nre-executions: {} (at-least-once), replies with no served line: {}, unreadable records: {}",
            self.reexecutions,
            self.unexecuted_replies.len(),
            self.unreadable
        );
        // The three counts whose names do not explain themselves, explained when not zero.
        for (n, what, meaning) in [
            (
                self.refused_mismatches,
                "wrong refused",
                MEANING_WRONG_REFUSED,
            ),
            (
                self.unexecuted_replies.len() as u64,
                "replies with no served line",
                meaning_no_served_line(self.served_lines),
            ),
            (self.unreadable, "unreadable records", MEANING_UNREADABLE),
        ] {
            if n > 0 {
                let _ = write!(out, "\n  {what}: {meaning}");
            }
        }
        if let Some(ms) = self.both_active_ms {
            let _ = write!(out, "\nbinary star: both nodes active for {ms} ms in all");
        }
        list_line(&mut out, "lost", &self.lost);
        list_line(&mut out, "duplicated", &self.duplicated);
        list_line(&mut out, "out of order", &self.out_of_order);
        list_line(&mut out, "mismatched", &self.mismatched);
        list_line(&mut out, "abandoned", &self.abandoned);
        list_line(&mut out, "unfinished", &self.unfinished);
        if self.faults.is_empty() {
            out.push_str("\nfaults: none");
        } else {
            let faults: Vec<String> = self
                .faults
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            let _ = write!(out, "\nfaults: {}", faults.join(", "));
        }
        if !self.recoveries.is_empty() {
            let times: Vec<f64> = self
                .recoveries
                .iter()
                .filter_map(|r| r.recovered_after_ms)
                .collect();
            let faults = crate::words::count(self.recoveries.len() as u64, "fault");
            let _ = write!(out, "\nrecovery: {faults}");
            if !times.is_empty() {
                let max = times.iter().copied().fold(0.0, f64::max);
                let avg = times.iter().sum::<f64>() / times.len() as f64;
                let _ = write!(out, ", max {max:.1} ms, avg {avg:.1} ms");
            }
            let never = self.recoveries.len() - times.len();
            if never > 0 {
                let _ = write!(out, ", {never} with no reply after");
            }
        }
        if !self.coverage.is_empty() {
            let kinds: Vec<String> = self
                .coverage
                .iter()
                .map(|(kind, c)| {
                    if c.injected == 0 {
                        format!("{kind} never injected")
                    } else if c.recovered == 0 && c.replies_after == 0 {
                        format!("{kind} {}", c.injected)
                    } else {
                        format!(
                            "{kind} {} ({} recovered, {} replies before the next fault)",
                            c.injected, c.recovered, c.replies_after
                        )
                    }
                })
                .collect();
            let _ = write!(out, "\ncoverage: {}", kinds.join(", "));
        }
        let l = &self.latency_ms;
        let _ = write!(
            out,
            "\nlatency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50, l.p90, l.p99, l.max
        );
        out
    }
}
