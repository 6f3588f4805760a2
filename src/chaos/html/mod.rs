//! `report.html` of a chaos run: a pure function from the run's history (`history.jsonl`) and
//! results (`results.json`) to one self-contained page — inline CSS and SVG, no script, no
//! network — so a workshop or a CI artefact can be opened anywhere and looked at.
//!
//! The page shows, on one time line, a lane per process (up, frozen, down, and why: the
//! nemesis, its own injected crash, the heal), every fault, every request as a span from its
//! first send to its reply with a tick per resend, then the verdict and its reasons, a
//! latency/throughput plot, and a sequence diagram per request behind a `<details>`.
//!
//! Everything drawn is bounded, so a run of 100,000 requests still gives a page of a few MB:
//! beyond [`MAX_SPANS`] request spans, [`MAX_SEQUENCES`] sequence diagrams, [`MAX_POINTS`]
//! latency dots and [`MAX_MARKS`] fault marks per lane, the page draws the requests with a
//! finding or a retry first, then an even sample of the rest, and says so. Counts and the
//! throughput plot always cover every record.
//!
//! Request bodies are bytes from the wire: every piece of text from the history is escaped
//! (HTML metacharacters, and control characters shown as `\xNN`).
//!
//! This file is the page's frame (what it reads, its head and CSS, the order of its sections);
//! `run` reads the history into lanes and requests, and each section draws itself: `timeline`
//! (on the shared `axis`), `network`, `plot`, `sequence`, and the text sections in `tables`.

mod axis;
mod network;
mod plot;
mod run;
mod sequence;
mod tables;
#[cfg(test)]
mod tests;
mod timeline;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::chaos::history::Record;
use crate::event::chaos::{NetworkFault, RunRecord};

use network::network_section;
use plot::plot_section;
use run::Run;
use sequence::sequences_section;
use tables::{
    configuration_section, counts_section, faults_section, logs_section, recovery_section,
    verdict_section,
};
use timeline::timeline_section;

/// The page's file name inside a run's directory: here, below both the binary's writer of the
/// page and its renderer of a run's summary, which names the page, so neither imports the other.
pub const FILE: &str = "report.html";

/// Request spans drawn on the time line at most.
pub const MAX_SPANS: usize = 3000;
/// Sequence diagrams at most.
pub const MAX_SEQUENCES: usize = 100;
/// Latency dots at most.
pub const MAX_POINTS: usize = 3000;
/// Fault marks drawn per lane at most (the rest are counted).
pub const MAX_MARKS: usize = 400;
/// Names listed per finding at most.
const MAX_LISTED: usize = 50;
/// The part of `results.json` the page shows. Every field defaults, so results written by an
/// older or newer `pirate` still render; [`RunResults::from_json`] insists on a verdict.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunResults {
    pub seed: u64,
    pub pattern: String,
    /// `valid`, `invalid` or `indeterminate`.
    pub verdict: String,
    pub reason: String,
    pub interrupted: bool,
    pub fault_phase_ms: u64,
    pub injected: BTreeMap<String, u64>,
    pub findings: Findings,
    /// How the run was started (absent from runs older than the record).
    pub run: RunRecord,
    /// `--net namespaces`: each network fault, what it cut, who noticed, when it recovered.
    pub network: Vec<NetworkFault>,
}

/// The checker's findings as `results.json` carries them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Findings {
    pub requests: u64,
    pub attempts: u64,
    pub replied: u64,
    pub lost: Vec<String>,
    pub abandoned: Vec<String>,
    pub unfinished: Vec<String>,
    pub duplicated: Vec<String>,
    pub out_of_order: Vec<String>,
    pub mismatched: Vec<String>,
    pub refused_mismatches: u64,
    pub reexecutions: u64,
    pub unexecuted_replies: Vec<String>,
    pub served_lines: u64,
    pub unreadable: u64,
    pub violations: Vec<String>,
    pub latency_ms: LatencyView,
    pub faults: BTreeMap<String, u64>,
    /// Each fault the clients recovered from (or did not): `results.json`'s
    /// `findings.recoveries`.
    pub recoveries: Vec<RecoveryView>,
    /// Per fault kind: injected, recovered, replies after (`findings.coverage`).
    pub coverage: BTreeMap<String, CoverageView>,
}

/// One fault and how long the clients took to get a reply again after it:
/// `{"fault": "kill worker-1", "kind": "kill", "at_ms": 814.4, "recovered_after_ms": 653.8,
/// "replies_after": 54}`; `recovered_after_ms` is null when no reply came after it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RecoveryView {
    pub fault: String,
    pub kind: String,
    pub at_ms: f64,
    pub recovered_after_ms: Option<f64>,
    pub replies_after: u64,
}

/// A fault kind's coverage: `{"injected": 3, "recovered": 3, "replies_after": 590}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CoverageView {
    pub injected: u64,
    pub recovered: u64,
    pub replies_after: u64,
}

/// Latency percentiles in ms.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LatencyView {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl RunResults {
    /// Reads `results.json`. An error (one line) when it is not JSON or carries no verdict.
    pub fn from_json(text: &str) -> Result<RunResults, String> {
        let results: RunResults =
            serde_json::from_str(text).map_err(|e| format!("not a chaos results file: {e}"))?;
        if !matches!(
            results.verdict.as_str(),
            "valid" | "invalid" | "indeterminate"
        ) {
            return Err("not a chaos results file: no verdict".into());
        }
        Ok(results)
    }
}

/// The page for a run: its history and results, and how many history lines could not be
/// read at all (`read_history`'s second value).
pub fn render(records: &[Record], results: &RunResults, skipped_lines: u64) -> String {
    let run = Run::analyse(records, results);
    let mut page = String::with_capacity(64 * 1024);
    let title = format!(
        "pirate chaos: {} seed {} — {}",
        results.pattern,
        results.seed,
        results.verdict.to_uppercase()
    );
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    verdict_section(&mut page, results);
    timeline_section(&mut page, &run, &results.network);
    network_section(&mut page, &results.network);
    plot_section(&mut page, &run);
    counts_section(&mut page, results, skipped_lines);
    faults_section(&mut page, &run);
    recovery_section(&mut page, &results.findings);
    sequences_section(&mut page, &run);
    logs_section(&mut page, &run);
    configuration_section(&mut page, &results.run);
    page.push_str(
        "<footer>Made by <code>pirate chaos</code>; re-render from the run's directory with \
         <code>pirate chaos report DIR</code>.</footer>\n</body>\n</html>\n",
    );
    page
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1300px}\
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}\
.verdict{padding:.6em 1em;border-radius:6px;margin:.5em 0}\
.valid{background:#d9f2d9;border:1px solid #5a5}.invalid{background:#f9d6d6;border:1px solid #c44}\
.indeterminate{background:#fbeecb;border:1px solid #c90}\
.verdict b{font-size:1.3em;letter-spacing:.05em}\
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.note{color:#555;font-size:.92em}tr.bad td{background:#f9d6d6}.meaning{color:#555}\
svg{background:#fff;border:1px solid #ddd;display:block;margin:.3em 0}\
svg text{font:12px system-ui,sans-serif}\
details{margin:.15em 0}summary{cursor:pointer}summary.bad{color:#b22}\
code{background:#f3f3f3;padding:0 3px}footer{margin-top:2em;color:#777;font-size:.9em}\
.legend span{display:inline-block;margin-right:1.2em}.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}";

/// Escapes text for HTML (and SVG): metacharacters as entities, control characters as
/// `\xNN`, so a request body of any bytes shows as text and cannot become markup.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `n` characters, with an ellipsis.
fn cut(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
