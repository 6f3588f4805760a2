//! What `pirate bench` reports: its one `--json` record ([`BenchReport`]), with the verdict
//! that decides the exit code, the per-second series and each `--fail-if` threshold checked,
//! as plain data. The bench library above measures a run and fills them
//! ([`Report::Bench`](super::Report::Bench) carries them to the renderer); they are the event
//! layer's, so events need nothing from above.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;

use crate::stats::Distribution;

/// How a `pirate bench` run ended, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BenchVerdict {
    /// Every request was answered, correctly, and no `--fail-if` threshold was crossed.
    Completed,
    /// Some requests were abandoned (lost) or a wrong reply was seen.
    Failed,
    /// Everything else was fine, but a `--fail-if` threshold was crossed (exit 1).
    ThresholdFailed,
    /// Requests were abandoned and nothing ever answered, not even wrongly: nothing
    /// reachable.
    Unreachable,
    /// Nothing answered, and the broker said (`mmi.service` 404) that no worker serves the
    /// service: the broker is up, the service is not (exit 68, as `pirate client`).
    NoService,
    /// Stopped by Ctrl-C before the end.
    Interrupted,
}

/// What a run measured: the `--json` record of `pirate bench`. Counts and latencies are of
/// the measured run: requests started during `--warmup` are left out.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct BenchReport {
    pub endpoint: String,
    /// The Majordomo service loaded (`--service`); null for a Lazy Pirate server.
    pub service: Option<String>,
    /// The client protocol: `lazy`, `mdp` or `mdp2`.
    pub protocol: String,
    pub clients: usize,
    pub window: usize,
    pub size: usize,
    /// `--rate`: the requested requests per second (the open model); null for the closed
    /// model, where each client sends when its window has room.
    pub rate: Option<f64>,
    /// `--duration` in ms, as requested; null for a run of `--requests`.
    pub duration_ms: Option<f64>,
    /// `--warmup` in ms: requests started during it were sent but not measured.
    pub warmup_ms: f64,
    /// Measured requests started (the run's total, unless a client gave up first).
    pub requests: u64,
    pub answered: u64,
    /// Requests abandoned after every retry.
    pub lost: u64,
    /// Replies that were not the answer to their request (dropped, never accepted), over
    /// the whole run.
    pub wrong: u64,
    /// Resends, over the whole run.
    pub retries: u64,
    /// Open model: requests sent more than 1 ms after their intended start (the window was
    /// full or the generator fell behind); their latency counts from the intended start.
    /// Always 0 in the closed model.
    pub late: u64,
    /// The measured run, warm-up excluded.
    pub elapsed_ms: f64,
    /// Answered requests per second of `elapsed_ms`.
    pub req_per_s: f64,
    /// From the intended start (open model) or the send (closed) to the reply; null when
    /// nothing was answered.
    pub latency_ms: Option<Distribution>,
    /// Second by second of the measured run.
    pub series: Vec<Second>,
    /// The run lasted longer than the series keeps (an hour).
    pub series_truncated: bool,
    /// Each `--fail-if` threshold, checked.
    pub thresholds: Vec<Checked>,
    /// Why a client gave up, in its words (the first such error), if one did.
    pub error: Option<String>,
    pub verdict: BenchVerdict,
}

/// One second of the measured run.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Second {
    /// Seconds since the measured run started: this point covers `[second, second + 1)`.
    pub second: u64,
    pub answered: u64,
    pub lost: u64,
    /// The 99th percentile of this second's replies, in ms; null when nothing was answered.
    pub p99_ms: Option<f64>,
}

/// A threshold checked against a run, in the `--json` record.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Checked {
    /// The expression as given (`p99>5ms`).
    pub threshold: String,
    /// The metric's value in the run (ms for latencies); null for a latency when nothing
    /// was answered.
    pub observed: Option<f64>,
    /// True if the run crossed it (a latency threshold of a run without replies fails).
    pub failed: bool,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let metric = self.threshold.split(['<', '>']).next().unwrap_or_default();
        match self.observed {
            // Counts as counts, latencies and rates to the microsecond.
            Some(v) if v.fract() == 0.0 => write!(f, "{} ({metric} was {v:.0})", self.threshold),
            Some(v) => write!(f, "{} ({metric} was {v:.3})", self.threshold),
            None => write!(f, "{} ({metric}: no replies to measure)", self.threshold),
        }
    }
}
