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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::Value;

use super::checker::{
    meaning_no_served_line, natural_cmp, preview, Record, MEANING_UNREADABLE, MEANING_WRONG_REFUSED,
};
use super::report::NetworkFault;

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
    pub run: super::report::RunRecord,
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

/// The run's configuration: the command that replays it, every flag, the build, the date and
/// the host. Nothing for results written before runs kept a record.
fn configuration_section(page: &mut String, run: &super::report::RunRecord) {
    if run.replay.is_empty() {
        return;
    }
    let _ = write!(
        page,
        "<h2>Configuration</h2>\n<p>Run again with <code>{}</code> (or <code>pirate chaos run \
         --replay DIR</code> on this run's directory). pirate {} ({}), started {} on {}.</p>\n\
         <table>\n<tr><th>flag</th><th>value</th></tr>\n",
        esc(&run.replay_line()),
        esc(&run.version),
        esc(&run.commit),
        esc(&run.started),
        esc(&run.host)
    );
    for (flag, value) in &run.flags {
        let _ = writeln!(
            page,
            "<tr><td><code>--{}</code></td><td>{}</td></tr>",
            esc(flag),
            esc(value)
        );
    }
    page.push_str("</table>\n");
}

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

/// What a process lane is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Up,
    Frozen,
    Down,
    /// Stopped politely at the end of the run (its summary came).
    Stopped,
}

impl State {
    fn class(self) -> (&'static str, &'static str) {
        match self {
            State::Up => ("#bfe3bf", "up"),
            State::Frozen => ("#a9c9f2", "frozen"),
            State::Down => ("#f2b3b3", "down"),
            State::Stopped => ("#dddddd", "stopped"),
        }
    }
}

#[derive(Clone, Debug)]
struct Segment {
    from: f64,
    to: f64,
    state: State,
    why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MarkKind {
    Kill,
    Freeze,
    Restart,
    Heal,
    /// Its own injected crash (`--crash-rate`).
    Crash,
    /// Its own injected stall (`--overload-rate`, `--freeze-rate`).
    Stall,
    /// Started again by the supervisor.
    Start,
    Proxy,
}

impl MarkKind {
    fn colour(self) -> &'static str {
        match self {
            MarkKind::Kill => "#c0392b",
            MarkKind::Freeze => "#2471a3",
            MarkKind::Restart => "#d68910",
            MarkKind::Heal => "#00a5b5",
            MarkKind::Crash => "#111111",
            MarkKind::Stall => "#d81b60",
            MarkKind::Start => "#1e8449",
            MarkKind::Proxy => "#7f8c8d",
        }
    }

    /// A fault (drawn across the lane), as opposed to a recovery.
    fn is_fault(self) -> bool {
        !matches!(self, MarkKind::Start)
    }
}

#[derive(Clone, Debug)]
struct Mark {
    t: f64,
    kind: MarkKind,
    label: String,
}

/// One process's life on the time line.
#[derive(Default)]
struct Lane {
    name: String,
    segments: Vec<Segment>,
    current: Option<(State, f64, String)>,
    marks: Vec<Mark>,
    hidden_marks: u64,
    /// Time of its last own crash in the current incarnation.
    last_crash: Option<f64>,
    restarts: BTreeMap<&'static str, u64>,
}

impl Lane {
    fn set(&mut self, t: f64, state: State, why: impl Into<String>) {
        if let Some((s, from, w)) = self.current.take() {
            if t > from {
                self.segments.push(Segment {
                    from,
                    to: t,
                    state: s,
                    why: w,
                });
            }
        }
        self.current = Some((state, t, why.into()));
    }

    fn state(&self) -> Option<State> {
        self.current.as_ref().map(|c| c.0)
    }

    fn mark(&mut self, t: f64, kind: MarkKind, label: String) {
        if self.marks.len() < MAX_MARKS {
            self.marks.push(Mark { t, kind, label });
        } else {
            self.hidden_marks += 1;
        }
    }

    fn close(&mut self, t: f64) {
        if let Some((s, from, w)) = self.current.take() {
            self.segments.push(Segment {
                from,
                to: t.max(from),
                state: s,
                why: w,
            });
        }
    }

    /// "2 after its own crash, 1 after the nemesis".
    fn restarts_text(&self) -> String {
        let parts: Vec<String> = self
            .restarts
            .iter()
            .map(|(why, n)| format!("{n} after {}", cause_words(why)))
            .collect();
        parts.join(", ")
    }

    /// "2 own crash, 1 nemesis": the lane label's short form (the live view's words).
    fn restarts_label(&self) -> String {
        let parts: Vec<String> = self
            .restarts
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        parts.join(", ")
    }
}

/// A restart's cause (`own crash`, `nemesis`, `heal`, the live view's words) in a sentence.
fn cause_words(cause: &str) -> &'static str {
    match cause {
        "nemesis" => "the nemesis",
        "heal" => "the heal",
        _ => "its own crash",
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Replied,
    Abandoned,
    /// Never answered nor abandoned: lost, or unfinished when the run was interrupted.
    Open,
}

/// Everything the history says about one request.
#[derive(Clone, Debug)]
struct Req {
    client: String,
    seq: u64,
    text: String,
    /// Send times: the first send, then each resend.
    sends: Vec<f64>,
    /// Timeouts and other reasons an attempt failed.
    retries: Vec<(f64, String)>,
    refused: Vec<f64>,
    /// Accepted replies (more than one is a duplicate).
    replies: Vec<(f64, Option<f64>, String)>,
    abandoned: Option<f64>,
}

impl Req {
    fn outcome(&self) -> Outcome {
        if !self.replies.is_empty() {
            Outcome::Replied
        } else if self.abandoned.is_some() {
            Outcome::Abandoned
        } else {
            Outcome::Open
        }
    }

    fn start(&self) -> f64 {
        self.sends.first().copied().unwrap_or_else(|| self.end(0.0))
    }

    /// Its reply, abandon, or `run_end` if neither came.
    fn end(&self, run_end: f64) -> f64 {
        match (self.replies.first(), self.abandoned) {
            (Some(r), _) => r.0,
            (None, Some(t)) => t,
            _ => run_end,
        }
    }

    /// Worth drawing before the plain ones: a finding, a resend or a refused reply.
    fn notable(&self) -> bool {
        self.outcome() != Outcome::Replied
            || self.replies.len() > 1
            || self.sends.len() > 1
            || !self.refused.is_empty()
            || self.replies.iter().any(|r| r.2 != self.text)
    }

    fn name(&self) -> String {
        if self.text.is_empty() {
            format!("{} seq {}", self.client, self.seq)
        } else {
            self.text.clone()
        }
    }
}

/// The run, read from its records.
struct Run<'a> {
    results: &'a RunResults,
    lanes: Vec<Lane>,
    requests: Vec<Req>,
    /// Served lines by request text (cut as workers cut it): (time, worker).
    served: HashMap<String, Vec<(f64, String)>>,
    /// Nemesis strikes, for the lines across the time line.
    strikes: Vec<Mark>,
    end: f64,
}

fn str_of<'v>(event: &'v Value, field: &str) -> Option<&'v str> {
    event.get(field).and_then(Value::as_str)
}

/// The order lanes are shown in: brokers and queues, then servers and workers, then the
/// proxy, then clients; by name within each.
fn lane_rank(name: &str) -> u8 {
    let family = name.split_once('-').map_or(name, |(f, _)| f);
    match family {
        "broker" | "queue" | "titanic" => 0,
        "server" | "primary" | "backup" | "worker" => 1,
        "proxy" => 2,
        "client" => 3,
        _ => 4,
    }
}

impl<'a> Run<'a> {
    fn analyse(records: &[Record], results: &'a RunResults) -> Run<'a> {
        let mut order: Vec<&Record> = records.iter().filter(|r| r.t_ms.is_finite()).collect();
        order.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        let end = order.last().map_or(1.0, |r| r.t_ms.max(1.0));
        let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
        let mut requests: BTreeMap<(String, u64), Req> = BTreeMap::new();
        let mut served: HashMap<String, Vec<(f64, String)>> = HashMap::new();
        let mut strikes = Vec::new();
        for r in order {
            let t = r.t_ms;
            let e = &r.event;
            let kind = str_of(e, "event").unwrap_or("");
            if r.source == "nemesis" {
                let (Some(action), Some(target)) = (str_of(e, "action"), str_of(e, "target"))
                else {
                    continue;
                };
                // A network fault cuts hosts, not a process: it is shaded across their lanes
                // (its target may name several, or `all`), not drawn as a state.
                if super::report::NETWORK_FAULTS.contains(&action)
                    || action == super::net::HEAL_ACTION
                {
                    continue;
                }
                let l = lane_mut(&mut lanes, target);
                nemesis_action(l, t, action, &mut strikes);
                continue;
            }
            let l = lane_mut(&mut lanes, &r.source);
            if l.state().is_none() {
                l.set(t, State::Up, "running");
            }
            match kind {
                "fault" => {
                    let what = str_of(e, "kind").unwrap_or("?");
                    let ms = e.get("duration_ms").and_then(Value::as_u64);
                    if what == "crash" {
                        l.last_crash = Some(t);
                        l.mark(
                            t,
                            MarkKind::Crash,
                            "crashed on its own (--crash-rate)".into(),
                        );
                    } else {
                        let label = match ms {
                            Some(ms) => format!("own {what} for {ms} ms"),
                            None => format!("own {what}"),
                        };
                        l.mark(t, MarkKind::Stall, label);
                    }
                }
                "proxy_fault" => {
                    let what = str_of(e, "kind").unwrap_or("?");
                    let dir = str_of(e, "direction").unwrap_or("");
                    l.mark(t, MarkKind::Proxy, format!("proxy {what} {dir}"));
                }
                "summary" if l.state() == Some(State::Up) => {
                    l.set(t, State::Stopped, "stopped at the end of the run");
                }
                _ => {}
            }
            if r.source.starts_with("client") {
                client_event(&mut requests, &r.source, kind, e, t);
            } else if kind == "served" {
                if let Some(text) = str_of(e, "request") {
                    served
                        .entry(text.to_string())
                        .or_default()
                        .push((t, r.source.clone()));
                }
            }
        }
        let mut lanes: Vec<Lane> = lanes.into_values().collect();
        for l in &mut lanes {
            l.close(end);
        }
        lanes.sort_by(|a, b| {
            lane_rank(&a.name)
                .cmp(&lane_rank(&b.name))
                .then_with(|| natural_cmp(&a.name, &b.name))
        });
        let mut requests: Vec<Req> = requests.into_values().collect();
        requests.sort_by(|a, b| a.start().total_cmp(&b.start()));
        Run {
            results,
            lanes,
            requests,
            served,
            strikes,
            end,
        }
    }
}

/// The lane of process `name`, new if unseen.
fn lane_mut<'m>(lanes: &'m mut BTreeMap<String, Lane>, name: &str) -> &'m mut Lane {
    lanes.entry(name.to_string()).or_insert_with(|| Lane {
        name: name.to_string(),
        ..Lane::default()
    })
}

/// The send after attempt `attempt` (1-based), or the end of time.
fn next_send(sends: &[f64], attempt: usize) -> f64 {
    sends.get(attempt).copied().unwrap_or(f64::INFINITY)
}

impl Run<'_> {
    /// The first fault on a process other than a client in `[from, to)`: what a request's
    /// lost attempt probably met.
    fn fault_between(&self, from: f64, to: f64) -> Option<(&str, &Mark)> {
        self.lanes
            .iter()
            .filter(|l| lane_rank(&l.name) < 3)
            .flat_map(|l| l.marks.iter().map(move |m| (l.name.as_str(), m)))
            .filter(|(_, m)| m.kind.is_fault() && m.t >= from && m.t < to)
            .min_by(|a, b| a.1.t.total_cmp(&b.1.t))
    }
}

/// What the runner's own record (`source: nemesis`) does to its target's lane.
fn nemesis_action(l: &mut Lane, t: f64, action: &str, strikes: &mut Vec<Mark>) {
    let name = l.name.clone();
    let (state, why, mark) = match action {
        "kill" => (
            State::Down,
            "killed by the nemesis (SIGKILL)",
            Some((MarkKind::Kill, format!("nemesis kills {name}"))),
        ),
        "restart" => (
            State::Down,
            "killed by the nemesis, to be restarted on the same endpoints",
            Some((MarkKind::Restart, format!("nemesis restarts {name}"))),
        ),
        "freeze" => (
            State::Frozen,
            "frozen by the nemesis (SIGSTOP)",
            Some((MarkKind::Freeze, format!("nemesis freezes {name}"))),
        ),
        "thaw" => (State::Up, "running (continued after its freeze)", None),
        "heal" => (
            State::Down,
            "stopped to heal: started again without its fault flags",
            Some((
                MarkKind::Heal,
                format!("heal: {name} loses its fault flags"),
            )),
        ),
        "died" => (State::Down, "died on its own (its injected crash)", None),
        "start" => {
            // Why was it down? The record that took it down says; a history from before the
            // runner recorded own deaths only has the worker's crash line.
            let cause: &'static str = match &l.current {
                Some((State::Down, _, why)) if why.contains("nemesis") => "nemesis",
                Some((State::Down, _, why)) if why.starts_with("stopped to heal") => "heal",
                Some((State::Down, _, _)) => "own crash",
                _ => {
                    let since = l.current.as_ref().map_or(0.0, |c| c.1);
                    match l.last_crash {
                        Some(c) if c >= since => l.set(c, State::Down, "died on its own"),
                        _ => l.set(t, State::Down, "died (cause not recorded)"),
                    }
                    "own crash"
                }
            };
            *l.restarts.entry(cause).or_default() += 1;
            l.last_crash = None;
            l.mark(
                t,
                MarkKind::Start,
                format!("{name} started again after {}", cause_words(cause)),
            );
            l.set(
                t,
                State::Up,
                format!("running (restarted after {})", cause_words(cause)),
            );
            return;
        }
        _ => return,
    };
    if let Some((kind, label)) = mark {
        strikes.push(Mark {
            t,
            kind,
            label: label.clone(),
        });
        l.mark(t, kind, label);
    }
    l.set(t, state, why);
}

/// What one client record says about its request.
fn client_event(
    requests: &mut BTreeMap<(String, u64), Req>,
    client: &str,
    kind: &str,
    e: &Value,
    t: f64,
) {
    if !matches!(kind, "sent" | "retry" | "reply" | "abandoned" | "mismatch") {
        return;
    }
    let Some(seq) = e.get("seq").and_then(Value::as_u64) else {
        return;
    };
    let req = requests
        .entry((client.to_string(), seq))
        .or_insert_with(|| Req {
            client: client.to_string(),
            seq,
            text: String::new(),
            sends: Vec::new(),
            retries: Vec::new(),
            refused: Vec::new(),
            replies: Vec::new(),
            abandoned: None,
        });
    if req.text.is_empty() {
        if let Some(text) = str_of(e, "request") {
            req.text = text.to_string();
        }
    }
    match kind {
        "sent" => req.sends.push(t),
        "retry" => req
            .retries
            .push((t, str_of(e, "reason").unwrap_or("retry").to_string())),
        "mismatch" => req.refused.push(t),
        "reply" => req.replies.push((
            t,
            e.get("latency_ms").and_then(Value::as_f64),
            str_of(e, "reply").unwrap_or("").to_string(),
        )),
        "abandoned" => req.abandoned = Some(t),
        _ => {}
    }
}

/// Up to `max` indices of `items`: every notable one first (up to `max`), then an even
/// sample of the others, returned in their original order.
fn pick<T>(items: &[T], max: usize, notable: impl Fn(&T) -> bool) -> Vec<usize> {
    if items.len() <= max {
        return (0..items.len()).collect();
    }
    let mut chosen: Vec<usize> = (0..items.len())
        .filter(|&i| notable(&items[i]))
        .take(max)
        .collect();
    let rest: Vec<usize> = (0..items.len()).filter(|&i| !notable(&items[i])).collect();
    let room = max - chosen.len();
    if room > 0 && !rest.is_empty() {
        let step = rest.len() as f64 / room as f64;
        chosen.extend((0..room).map(|k| rest[((k as f64 * step) as usize).min(rest.len() - 1)]));
    }
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

fn verdict_section(page: &mut String, r: &RunResults) {
    let class = match r.verdict.as_str() {
        "valid" => "valid",
        "invalid" => "invalid",
        _ => "indeterminate",
    };
    let _ = write!(
        page,
        "<h1>pirate chaos — {} pattern, seed {}</h1>\n\
         <p class=\"note\">Replay this run with <code>--seed {}</code>. Fault phase {:.1} s; \
         nemesis: {}.</p>\n\
         <div class=\"verdict {class}\" id=\"verdict\"><b>{}</b>{} — {}</div>\n",
        esc(&r.pattern),
        r.seed,
        r.seed,
        r.fault_phase_ms as f64 / 1000.0,
        if r.injected.is_empty() {
            "nothing injected".to_string()
        } else {
            esc(&r
                .injected
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "))
        },
        esc(&r.verdict.to_uppercase()),
        if r.interrupted { " (interrupted)" } else { "" },
        esc(&r.reason)
    );
    let f = &r.findings;
    if !f.violations.is_empty() {
        page.push_str("<h2>Why</h2>\n<ul>\n");
        for v in f.violations.iter().take(MAX_LISTED) {
            let _ = writeln!(page, "<li>{}</li>", esc(v));
        }
        if f.violations.len() > MAX_LISTED {
            let _ = writeln!(
                page,
                "<li>… and {} more (all in results.json)</li>",
                f.violations.len() - MAX_LISTED
            );
        }
        page.push_str("</ul>\n");
    }
}

fn counts_section(page: &mut String, r: &RunResults, skipped_lines: u64) {
    let f = &r.findings;
    page.push_str(
        "<h2>Counts</h2>\n<table>\n<tr><th>what</th><th>count</th><th>meaning</th></tr>\n",
    );
    let rows: [(&str, u64, &str); 11] = [
        ("requests sent", f.requests, "distinct requests the clients sent"),
        ("attempts", f.attempts, "first sends and resends"),
        ("replied", f.replied, "requests whose client accepted a correct reply"),
        ("lost", f.lost.len() as u64, "sent, then neither answered nor given up on: fatal"),
        ("abandoned", f.abandoned.len() as u64, "the client gave up after its retries and said so: whether it ran is unknown (indeterminate)"),
        ("duplicated", f.duplicated.len() as u64, "more than one reply delivered for one request: fatal"),
        ("out of order", f.out_of_order.len() as u64, "a reply delivered after the reply to a later request: fatal"),
        ("wrong accepted", f.mismatched.len() as u64, "a reply that differs from its request, accepted: fatal"),
        ("wrong refused", f.refused_mismatches, MEANING_WRONG_REFUSED),
        ("replies with no served line", f.unexecuted_replies.len() as u64, meaning_no_served_line(f.served_lines)),
        ("unreadable records", f.unreadable, MEANING_UNREADABLE),
    ];
    for (what, n, meaning) in rows {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{n}</td><td class=\"meaning\">{}</td></tr>",
            esc(what),
            esc(meaning)
        );
    }
    let _ = writeln!(
        page,
        "<tr><td>re-executions</td><td class=\"n\">{}</td><td class=\"meaning\">requests served \
         more than once (at-least-once: a resend after a lost reply); fatal only with --strict</td></tr>",
        f.reexecutions
    );
    page.push_str("</table>\n");
    if skipped_lines > 0 {
        let _ = writeln!(
            page,
            "<p class=\"note\">{skipped_lines} lines of history.jsonl were not records and were skipped.</p>"
        );
    }
    for (title, names) in [
        ("lost", &f.lost),
        ("abandoned", &f.abandoned),
        ("unfinished (interrupted)", &f.unfinished),
        ("duplicated", &f.duplicated),
        ("out of order", &f.out_of_order),
        ("wrong accepted", &f.mismatched),
    ] {
        if names.is_empty() {
            continue;
        }
        let shown: Vec<String> = names.iter().take(MAX_LISTED).map(|n| esc(n)).collect();
        let more = names.len().saturating_sub(MAX_LISTED);
        let _ = writeln!(
            page,
            "<p><b>{title}</b> ({}): {}{}</p>",
            names.len(),
            shown.join(", "),
            if more > 0 {
                format!(", … and {more} more")
            } else {
                String::new()
            }
        );
    }
}

/// Horizontal geometry shared by the time line and the plot.
struct Axis {
    left: f64,
    width: f64,
    end: f64,
}

impl Axis {
    const LEFT: f64 = 170.0;
    const WIDTH: f64 = 1080.0;

    fn new(end: f64) -> Axis {
        Axis {
            left: Axis::LEFT,
            width: Axis::WIDTH,
            end: end.max(1.0),
        }
    }

    fn x(&self, t_ms: f64) -> f64 {
        self.left + (t_ms.clamp(0.0, self.end) / self.end) * self.width
    }

    /// A round tick step in ms giving about ten ticks.
    fn step(&self) -> f64 {
        let raw = self.end / 10.0;
        let mag = 10f64.powf(raw.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag)
    }

    fn ticks(&self, svg: &mut String, top: f64, bottom: f64) {
        let step = self.step();
        let mut t = 0.0;
        while t <= self.end + 0.001 {
            let x = self.x(t);
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">{}s</text>",
                bottom + 12.0,
                fmt_secs(t)
            );
            t += step;
        }
    }
}

fn fmt_secs(ms: f64) -> String {
    let s = ms / 1000.0;
    if (s - s.round()).abs() < 1e-9 {
        format!("{}", s.round() as i64)
    } else {
        format!("{s:.1}")
    }
}

/// Rows of request spans in a client lane: greedy, at most this many.
const SPAN_ROWS: usize = 6;

fn timeline_section(page: &mut String, run: &Run, network: &[NetworkFault]) {
    let axis = Axis::new(run.end);
    let chosen = pick(&run.requests, MAX_SPANS, Req::notable);
    let mut per_client: HashMap<&str, Vec<&Req>> = HashMap::new();
    for &i in &chosen {
        let r = &run.requests[i];
        per_client.entry(r.client.as_str()).or_default().push(r);
    }
    // Lay out lanes: a process lane is 22 px; a client lane grows with its span rows.
    let mut rows_of: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut heights = Vec::new();
    for lane in &run.lanes {
        let h = match per_client.get(lane.name.as_str()) {
            Some(reqs) => {
                let mut ends: Vec<f64> = Vec::new();
                let mut rows = Vec::new();
                for r in reqs {
                    let (s, e) = (r.start(), r.end(run.end));
                    let row = match ends.iter().position(|&end| end <= s) {
                        Some(k) => k,
                        None if ends.len() < SPAN_ROWS => {
                            ends.push(f64::NEG_INFINITY);
                            ends.len() - 1
                        }
                        None => (0..ends.len())
                            .min_by(|&a, &b| ends[a].total_cmp(&ends[b]))
                            .unwrap_or(0),
                    };
                    ends[row] = ends[row].max(e);
                    rows.push(row);
                }
                let n = ends.len().max(1);
                rows_of.insert(lane.name.as_str(), rows);
                24.0 + 7.0 * n as f64
            }
            None if lane.restarts.is_empty() => 22.0,
            None => 30.0,
        };
        heights.push(h);
    }
    // Room above the lanes for each strike's name and time, written slanted (readable without
    // hovering, on a projector too).
    let top = if run.strikes.is_empty() { 24.0 } else { 110.0 };
    let total: f64 = heights.iter().sum();
    let height = top + total + 24.0;
    let _ = write!(
        page,
        "<h2>Time line</h2>\n<p class=\"legend\">{}</p>\n",
        legend()
    );
    let _ = write!(
        page,
        "<svg id=\"timeline\" width=\"{:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {:.0} {height:.0}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        axis.left + axis.width + 20.0,
        axis.left + axis.width + 20.0
    );
    axis.ticks(page, top, top + total);
    down_shading(page, run, &axis, top, top + total, 0.22);
    let mut y = top;
    for (lane, h) in run.lanes.iter().zip(&heights) {
        let restarts = lane.restarts_label();
        let _ = write!(
            page,
            "<g class=\"lane\" data-process=\"{}\"><text x=\"6\" y=\"{:.1}\">{}</text>",
            esc(&lane.name),
            y + 14.0,
            esc(&lane.name)
        );
        if !restarts.is_empty() {
            let _ = write!(
                page,
                "<text x=\"6\" y=\"{:.1}\" fill=\"#777\" font-size=\"9\">↻ {}</text>",
                y + 25.0,
                esc(&cut(&restarts, 34))
            );
        }
        for s in &lane.segments {
            let (fill, label) = s.state.class();
            let (x1, x2) = (axis.x(s.from), axis.x(s.to));
            let _ = write!(
                page,
                "<rect x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"{fill}\">\
                 <title>{} {label} {:.2}–{:.2}s: {}</title></rect>",
                y + 5.0,
                (x2 - x1).max(0.5),
                esc(&lane.name),
                s.from / 1000.0,
                s.to / 1000.0,
                esc(&s.why)
            );
        }
        for m in &lane.marks {
            mark_svg(page, &axis, m, y + 9.0);
        }
        if let (Some(reqs), Some(rows)) = (
            per_client.get(lane.name.as_str()),
            rows_of.get(lane.name.as_str()),
        ) {
            for (k, (r, row)) in reqs.iter().zip(rows).enumerate() {
                span_svg(
                    page,
                    &axis,
                    r,
                    y + 22.0 + 7.0 * *row as f64,
                    run.end,
                    k % 2 == 1,
                );
            }
        }
        page.push_str("</g>");
        y += h;
        let _ = write!(
            page,
            "<line x1=\"0\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#f0f0f0\"/>",
            axis.left + axis.width
        );
    }
    network_shading(page, &axis, run, &heights, top, network);
    for s in &run.strikes {
        let x = axis.x(s.t);
        let _ = write!(
            page,
            "<line class=\"strike\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" \
             stroke=\"{}\" stroke-dasharray=\"3,3\" opacity=\"0.6\"><title>{:.2}s {}</title></line>",
            top - 6.0,
            top + total,
            s.kind.colour(),
            s.t / 1000.0,
            esc(&s.label)
        );
        // Slanted up and to the right; near the right edge, up and to the left instead (the
        // text ends at the strike), so no label runs off the picture.
        let (anchor, angle) = if x > axis.left + axis.width * 0.8 {
            ("end", 30)
        } else {
            ("start", -30)
        };
        let _ = write!(
            page,
            "<text class=\"strike-label\" x=\"{x:.1}\" y=\"{:.1}\" fill=\"{}\" \
             text-anchor=\"{anchor}\" transform=\"rotate({angle} {x:.1} {:.1})\">{:.2}s {}</text>",
            top - 8.0,
            s.kind.colour(),
            top - 8.0,
            s.t / 1000.0,
            esc(&cut(&s.label, 30))
        );
    }
    page.push_str("</svg>\n");
    let hidden: u64 = run.lanes.iter().map(|l| l.hidden_marks).sum();
    let mut notes = Vec::new();
    if chosen.len() < run.requests.len() {
        notes.push(format!(
            "{} of {} requests drawn: every one with a retry or a finding first, then an even \
             sample of the rest.",
            chosen.len(),
            run.requests.len()
        ));
    }
    if hidden > 0 {
        notes.push(format!(
            "{hidden} further fault marks not drawn (at most {MAX_MARKS} per lane); the counts \
             above include them."
        ));
    }
    notes.push(
        "Hover over a bar or mark for details. Times are when the runner read each line \
         (ms since the run started)."
            .into(),
    );
    let _ = writeln!(page, "<p class=\"note\">{}</p>", esc(&notes.join(" ")));
    // Why each process restarted, as text too (the lane labels are short).
    let restarted: Vec<String> = run
        .lanes
        .iter()
        .filter(|l| !l.restarts.is_empty())
        .map(|l| format!("{}: restarted {}", l.name, l.restarts_text()))
        .collect();
    if !restarted.is_empty() {
        let _ = writeln!(
            page,
            "<p class=\"note\" id=\"restarts\">{}</p>",
            esc(&restarted.join("; "))
        );
    }
}

fn legend() -> String {
    let mut out = String::new();
    for s in [State::Up, State::Frozen, State::Down, State::Stopped] {
        let (fill, label) = s.class();
        let _ = write!(
            out,
            "<span><i class=\"sw\" style=\"background:{fill}\"></i>{label}</span>"
        );
    }
    for (k, label) in [
        (MarkKind::Kill, "nemesis kill"),
        (MarkKind::Freeze, "nemesis freeze"),
        (MarkKind::Restart, "nemesis restart"),
        (MarkKind::Crash, "own crash"),
        (MarkKind::Stall, "own stall"),
        (MarkKind::Heal, "heal"),
        (MarkKind::Start, "started again"),
        (MarkKind::Proxy, "proxy fault"),
    ] {
        let _ = write!(
            out,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{label}</span>",
            k.colour()
        );
    }
    out.push_str(
        "<span><i class=\"sw\" style=\"background:#2e86c1\"></i>request, send to reply \
         (tick: resend)</span><span><i class=\"sw\" style=\"background:#e74c3c\"></i>abandoned \
         or never answered</span>",
    );
    out
}

fn mark_svg(page: &mut String, axis: &Axis, m: &Mark, y: f64) {
    let x = axis.x(m.t);
    let c = m.kind.colour();
    let title = format!("<title>{:.2}s {}</title>", m.t / 1000.0, esc(&m.label));
    let _ = match m.kind {
        MarkKind::Kill | MarkKind::Restart | MarkKind::Heal => write!(
            page,
            "<path class=\"fault\" d=\"M{:.1} {:.1}L{:.1} {:.1}L{x:.1} {:.1}Z\" fill=\"{c}\">{title}</path>",
            x - 5.0,
            y - 8.0,
            x + 5.0,
            y - 8.0,
            y + 1.0
        ),
        MarkKind::Freeze | MarkKind::Stall => write!(
            page,
            "<rect class=\"fault\" x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"{c}\">{title}</rect>",
            x - 4.0,
            y - 4.0
        ),
        MarkKind::Crash => write!(
            page,
            "<circle class=\"fault\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{c}\">{title}</circle>"
        ),
        MarkKind::Start => write!(
            page,
            "<path d=\"M{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}Z\" fill=\"{c}\">{title}</path>",
            y - 5.0,
            x + 7.0,
            y + 5.0
        ),
        MarkKind::Proxy => write!(
            page,
            "<line class=\"fault\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-width=\"1.5\">{title}</line>",
            y - 6.0,
            y + 6.0
        ),
    };
}

/// One request's span; `shade` alternates the blue so back-to-back requests stay apart.
fn span_svg(page: &mut String, axis: &Axis, r: &Req, y: f64, run_end: f64, shade: bool) {
    let (s, e) = (r.start(), r.end(run_end));
    let (x1, x2) = (axis.x(s), axis.x(e));
    let outcome = r.outcome();
    let colour = if outcome == Outcome::Replied && r.replies.len() == 1 {
        if shade {
            "#85c1e9"
        } else {
            "#2e86c1"
        }
    } else {
        "#e74c3c"
    };
    let what = match outcome {
        Outcome::Replied => format!("replied after {:.1} ms", e - s),
        Outcome::Abandoned => format!("abandoned after {:.1} ms", e - s),
        Outcome::Open => "never answered".to_string(),
    };
    let _ = write!(
        page,
        "<g class=\"request\"><title>{} ({} seq {}): {} attempt(s), {}</title>\
         <rect x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"4\" fill=\"{colour}\"/>",
        esc(&cut(&r.name(), 60)),
        esc(&r.client),
        r.seq,
        r.sends.len(),
        what,
        y - 2.0,
        (x2 - x1).max(1.0)
    );
    for &t in r.sends.iter().skip(1) {
        let x = axis.x(t);
        let _ = write!(
            page,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#111\"/>",
            y - 4.0,
            y + 4.0
        );
    }
    page.push_str("</g>");
}

fn plot_section(page: &mut String, run: &Run) {
    let axis = Axis::new(run.end);
    let replies: Vec<(f64, Option<f64>)> = run
        .requests
        .iter()
        .flat_map(|r| r.replies.iter().map(|(t, l, _)| (*t, *l)))
        .collect();
    page.push_str("<h2>Throughput and latency</h2>\n");
    if replies.is_empty() {
        page.push_str("<p>No reply was accepted: nothing to plot.</p>\n");
        return;
    }
    // Throughput: replies per second in 60 buckets (every reply counted).
    const BUCKETS: usize = 60;
    let width = run.end / BUCKETS as f64;
    let mut counts = [0u64; BUCKETS];
    for (t, _) in &replies {
        counts[((t / width) as usize).min(BUCKETS - 1)] += 1;
    }
    let per_sec: Vec<f64> = counts
        .iter()
        .map(|&n| n as f64 / (width / 1000.0))
        .collect();
    let peak = per_sec.iter().copied().fold(1.0, f64::max);
    let (top, h) = (20.0, 120.0);
    let (ltop, lh) = (top + h + 30.0, 160.0);
    let height = ltop + lh + 30.0;
    let _ = write!(
        page,
        "<svg id=\"plot\" width=\"{:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {:.0} {height:.0}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        axis.left + axis.width + 20.0,
        axis.left + axis.width + 20.0
    );
    let _ = write!(
        page,
        "<text x=\"6\" y=\"{:.1}\">replies/s</text><text x=\"6\" y=\"{:.1}\" fill=\"#777\">peak {peak:.0}</text>",
        top + 12.0,
        top + 26.0
    );
    // Down and frozen periods of every process, shaded behind both plots: where throughput
    // dips and latency climbs, the reader sees who was out.
    down_shading(page, run, &axis, top, ltop + lh, 0.45);
    // Axes with values: seconds below each plot, replies/s and ms beside them.
    axis.ticks(page, top, top + h);
    for frac in [0.0, 0.5, 1.0] {
        let y = top + h - frac * h;
        let _ = write!(
            page,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{:.0}/s</text>",
            axis.left,
            axis.left + axis.width,
            axis.left - 4.0,
            y + 4.0,
            peak * frac
        );
    }
    for (i, v) in per_sec.iter().enumerate() {
        let x = axis.x(i as f64 * width);
        let bh = v / peak * h;
        let _ = write!(
            page,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#5dade2\">\
             <title>{:.1}–{:.1}s: {v:.0} replies/s</title></rect>",
            top + h - bh,
            (axis.width / BUCKETS as f64 - 1.0).max(0.5),
            i as f64 * width / 1000.0,
            (i + 1) as f64 * width / 1000.0
        );
    }
    // Latency, log scale from 0.1 ms to the slowest reply.
    let lat: Vec<(f64, f64)> = replies
        .iter()
        .filter_map(|(t, l)| l.filter(|v| v.is_finite() && *v >= 0.0).map(|l| (*t, l)))
        .collect();
    let max = lat.iter().map(|p| p.1).fold(1.0, f64::max);
    let (lo, hi) = (0.1f64.log10(), max.max(1.0).log10() + 0.1);
    let ly = |v: f64| ltop + lh - (v.max(0.1).log10() - lo) / (hi - lo) * lh;
    let _ = write!(
        page,
        "<text x=\"6\" y=\"{:.1}\">latency (ms, log)</text>",
        ltop + 12.0
    );
    let mut decade = 0.1f64;
    while decade.log10() <= hi {
        let y = ly(decade);
        let _ = write!(
            page,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\">{}</text>",
            axis.left,
            axis.left + axis.width,
            axis.left - 4.0,
            y + 4.0,
            if decade < 1.0 {
                "0.1 ms".to_string()
            } else {
                format!("{decade:.0} ms")
            }
        );
        decade *= 10.0;
    }
    axis.ticks(page, ltop, ltop + lh);
    for &i in &pick(&lat, MAX_POINTS, |_| false) {
        let (t, l) = lat[i];
        let _ = write!(
            page,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"#1f618d\" opacity=\"0.6\"/>",
            axis.x(t),
            ly(l)
        );
    }
    // The slowest reply per bucket, over every reply.
    let mut worst = [f64::NAN; BUCKETS];
    for (t, l) in &lat {
        let b = ((t / width) as usize).min(BUCKETS - 1);
        if worst[b].is_nan() || *l > worst[b] {
            worst[b] = *l;
        }
    }
    // A short dash per bucket: nothing is drawn across a bucket without replies.
    for (i, v) in worst.iter().enumerate().filter(|(_, v)| !v.is_nan()) {
        let _ = write!(
            page,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#c0392b\" \
             stroke-width=\"2\"><title>slowest reply {:.1}–{:.1}s: {v:.1} ms</title></line>",
            axis.x(i as f64 * width),
            axis.x((i + 1) as f64 * width),
            i as f64 * width / 1000.0,
            (i + 1) as f64 * width / 1000.0,
            y = ly(*v)
        );
    }
    for s in &run.strikes {
        let x = axis.x(s.t);
        let _ = write!(
            page,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
             stroke-dasharray=\"3,3\" opacity=\"0.6\"><title>{}</title></line>",
            ltop + lh,
            s.kind.colour(),
            esc(&s.label)
        );
    }
    page.push_str("</svg>\n");
    let l = &run.results.findings.latency_ms;
    let _ = writeln!(
        page,
        "<p class=\"note\">Bars: replies accepted per second ({BUCKETS} buckets, every reply). \
         Dots: each reply's latency, first send to reply{}; red dashes: the slowest reply per \
         bucket. Dashed lines: nemesis strikes. Shaded: a process down (red) or frozen (blue). p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms.</p>",
        if lat.len() > MAX_POINTS {
            format!(" ({MAX_POINTS} of {} shown, evenly sampled)", lat.len())
        } else {
            String::new()
        },
        l.p50,
        l.p90,
        l.p99,
        l.max
    );
}

/// Each process's down and frozen periods as bands from `top` to `bottom` (in the state's
/// colour, translucent, the process and times in a tooltip).
fn down_shading(page: &mut String, run: &Run, axis: &Axis, top: f64, bottom: f64, opacity: f64) {
    for lane in &run.lanes {
        for seg in lane
            .segments
            .iter()
            .filter(|s| matches!(s.state, State::Down | State::Frozen))
        {
            let (fill, word) = seg.state.class();
            let (x1, x2) = (axis.x(seg.from), axis.x(seg.to));
            let _ = write!(
                page,
                "<rect class=\"outage\" x=\"{x1:.1}\" y=\"{top:.1}\" width=\"{:.1}\" \
                 height=\"{:.1}\" fill=\"{fill}\" opacity=\"{opacity}\"><title>{} {word} \
                 {:.3}–{:.3}s</title></rect>",
                (x2 - x1).max(1.0),
                bottom - top,
                esc(&lane.name),
                seg.from / 1000.0,
                seg.to / 1000.0
            );
        }
    }
}

fn faults_section(page: &mut String, run: &Run) {
    page.push_str("<h2>Faults</h2>\n");
    let f = &run.results.findings.faults;
    if f.is_empty() {
        page.push_str("<p>No fault was injected.</p>\n");
    } else {
        let all: Vec<String> = f.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(page, "<p>By kind: {}.</p>", esc(&all.join(", ")));
    }
    let mut marks: Vec<(&str, &Mark)> = run
        .lanes
        .iter()
        .flat_map(|l| l.marks.iter().map(move |m| (l.name.as_str(), m)))
        .filter(|(_, m)| m.kind.is_fault())
        .collect();
    if marks.is_empty() {
        return;
    }
    marks.sort_by(|a, b| a.1.t.total_cmp(&b.1.t));
    page.push_str(
        "<details><summary>Every fault drawn, in time order</summary>\n<table>\
         <tr><th>time</th><th>process</th><th>what</th></tr>\n",
    );
    for (lane, m) in &marks {
        let _ = writeln!(
            page,
            "<tr><td class=\"n\">{:.3}s</td><td>{}</td><td>{}</td></tr>",
            m.t / 1000.0,
            esc(lane),
            esc(&m.label)
        );
    }
    page.push_str("</table></details>\n");
}

/// Per fault kind, how many struck and were recovered from; then each fault with the time the
/// clients took to get a reply again (from `findings.coverage` and `findings.recoveries`, the
/// terminal's `coverage:` and `recovery:` lines).
fn recovery_section(page: &mut String, f: &Findings) {
    if f.coverage.is_empty() && f.recoveries.is_empty() {
        return;
    }
    page.push_str("<h2>Recovery</h2>\n");
    if !f.coverage.is_empty() {
        page.push_str(
            "<table class=\"coverage\"><tr><th>fault kind</th><th>injected</th>\
             <th>recovered</th><th>replies before the next fault</th></tr>\n",
        );
        for (kind, c) in &f.coverage {
            let bad = if c.recovered < c.injected {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = writeln!(
                page,
                "<tr{bad}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                esc(kind),
                c.injected,
                c.recovered,
                c.replies_after
            );
        }
        page.push_str("</table>\n");
    }
    if !f.recoveries.is_empty() {
        page.push_str(
            "<table class=\"recoveries\"><tr><th>time</th><th>fault</th>\
             <th>recovered after</th><th>replies before the next fault</th></tr>\n",
        );
        for r in &f.recoveries {
            let after = match r.recovered_after_ms {
                Some(ms) => format!("{ms:.1} ms"),
                None => "not recovered".to_string(),
            };
            let _ = writeln!(
                page,
                "<tr><td class=\"n\">{:.3}s</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                r.at_ms / 1000.0,
                esc(&r.fault),
                after,
                r.replies_after
            );
        }
        page.push_str("</table>\n");
    }
}

/// A link to each process's log, `logs/NAME.log` beside report.html (its stderr, each line
/// stamped with the run-clock time the page uses).
fn logs_section(page: &mut String, run: &Run) {
    if run.lanes.is_empty() {
        return;
    }
    page.push_str("<h2>Logs</h2>\n<p class=\"logs\">");
    let links: Vec<String> = run
        .lanes
        .iter()
        .filter(|l| l.name != "nemesis")
        .map(|l| {
            format!(
                "<a href=\"logs/{0}.log\">{0}</a>",
                esc(&l.name.replace(['/', '\\'], "_"))
            )
        })
        .collect();
    page.push_str(&links.join(" · "));
    page.push_str(
        "</p>\n<p class=\"note\">Each process's stderr, every line stamped with the \
         run-clock time used above (<code>[  3.142s]</code>).</p>\n",
    );
}

fn sequences_section(page: &mut String, run: &Run) {
    page.push_str("<h2>Requests, one sequence diagram each</h2>\n");
    if run.requests.is_empty() {
        page.push_str("<p>No request was sent.</p>\n");
        return;
    }
    let mut order: Vec<usize> = (0..run.requests.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&run.requests[a], &run.requests[b]);
        y.notable()
            .cmp(&x.notable())
            .then_with(|| natural_cmp(&x.name(), &y.name()))
    });
    let sorted: Vec<&Req> = order.iter().map(|&i| &run.requests[i]).collect();
    let chosen = pick(&sorted, MAX_SEQUENCES, |r| r.notable());
    let _ = writeln!(
        page,
        "<p class=\"note\">Open a request to see its messages, top to bottom in the order \
         they happened (not to scale). The broker or queue logs no line per request, so its \
         hop is drawn between the client and the worker that served it. {}</p>",
        if chosen.len() < sorted.len() {
            format!(
                "{} of {} requests listed: every one with a retry or a finding first, then an \
                 even sample of the rest.",
                chosen.len(),
                sorted.len()
            )
        } else {
            String::new()
        }
    );
    let via = run
        .lanes
        .iter()
        .find(|l| lane_rank(&l.name) == 0 || l.name == "proxy")
        .map(|l| l.name.clone());
    // The arrowhead, defined once where it is always rendered: a marker inside a closed
    // <details> is not, and every diagram's arrows would lose their heads.
    page.push_str(
        "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\">\
         <defs><marker id=\"arrow\" markerWidth=\"8\" markerHeight=\"8\" refX=\"7\" refY=\"4\" \
         orient=\"auto\"><path d=\"M0 0L8 4L0 8Z\" fill=\"#333\"/></marker></defs></svg>\n",
    );
    for &i in &chosen {
        sequence(page, sorted[i], run, via.as_deref());
    }
}

/// One row of a sequence diagram.
enum Step {
    /// Client to the worker that served it (or to nobody: no served line before the next).
    Send {
        t: f64,
        attempt: usize,
        to: Option<(f64, String)>,
    },
    Retry {
        t: f64,
        reason: String,
    },
    Refused {
        t: f64,
    },
    Reply {
        t: f64,
        from: Option<String>,
        ok: bool,
    },
    Abandon {
        t: f64,
    },
}

impl Step {
    fn t(&self) -> f64 {
        match self {
            Step::Send { t, .. }
            | Step::Retry { t, .. }
            | Step::Refused { t }
            | Step::Reply { t, .. }
            | Step::Abandon { t } => *t,
        }
    }
}

fn sequence(page: &mut String, r: &Req, run: &Run, via: Option<&str>) {
    let served = run
        .served
        .get(&preview(&r.text))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut steps = Vec::new();
    for (k, &t) in r.sends.iter().enumerate() {
        let next = r.sends.get(k + 1).copied().unwrap_or(f64::INFINITY);
        let to = served.iter().find(|(s, _)| *s >= t && *s < next).cloned();
        steps.push(Step::Send {
            t,
            attempt: k + 1,
            to,
        });
    }
    for (t, reason) in &r.retries {
        steps.push(Step::Retry {
            t: *t,
            reason: reason.clone(),
        });
    }
    for &t in &r.refused {
        steps.push(Step::Refused { t });
    }
    for (t, _, reply) in &r.replies {
        let from = served
            .iter()
            .rev()
            .find(|(s, _)| s <= t)
            .map(|(_, w)| w.clone());
        steps.push(Step::Reply {
            t: *t,
            from,
            ok: *reply == r.text,
        });
    }
    if let Some(t) = r.abandoned {
        steps.push(Step::Abandon { t });
    }
    steps.sort_by(|a, b| a.t().total_cmp(&b.t()));
    // Columns: the client, the broker/queue, then each worker that appears.
    let mut cols: Vec<String> = vec![r.client.clone()];
    if let Some(v) = via {
        cols.push(v.to_string());
    }
    for s in &steps {
        let w = match s {
            Step::Send {
                to: Some((_, w)), ..
            } => Some(w),
            Step::Reply { from: Some(w), .. } => Some(w),
            _ => None,
        };
        if let Some(w) = w {
            if !cols.contains(w) {
                cols.push(w.clone());
            }
        }
    }
    let colx = |name: &str| 90.0 + 150.0 * cols.iter().position(|c| c == name).unwrap_or(0) as f64;
    let via_x = if via.is_some() {
        colx(&cols[1])
    } else {
        90.0 + 75.0
    };
    let row = 26.0;
    let height = 40.0 + row * steps.len().max(1) as f64 + 10.0;
    // Room for the longest note, written right of the broker's column.
    let width = (90.0 + 150.0 * cols.len() as f64 + 120.0).max(via_x + 640.0);
    let outcome = match r.outcome() {
        Outcome::Replied if r.replies.len() > 1 => format!("{} replies delivered", r.replies.len()),
        Outcome::Replied => format!("replied after {:.1} ms", r.end(run.end) - r.start()),
        Outcome::Abandoned => "abandoned".to_string(),
        Outcome::Open if run.results.interrupted => "unfinished (interrupted)".to_string(),
        Outcome::Open => "never answered: lost".to_string(),
    };
    let bad = r.outcome() != Outcome::Replied || r.replies.len() > 1;
    let _ = write!(
        page,
        "<details class=\"seq\"><summary{}>{} — {} attempt(s), {}</summary>\n\
         <svg width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        if bad { " class=\"bad\"" } else { "" },
        esc(&cut(&r.name(), 80)),
        r.sends.len(),
        esc(&outcome)
    );
    for c in &cols {
        let x = colx(c);
        let _ = write!(
            page,
            "<text x=\"{x:.1}\" y=\"16\" text-anchor=\"middle\">{}</text>\
             <line x1=\"{x:.1}\" y1=\"22\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>",
            esc(c),
            height - 6.0
        );
    }
    let client_x = colx(&r.client);
    for (k, s) in steps.iter().enumerate() {
        let y = 40.0 + row * k as f64;
        let _ = write!(
            page,
            "<text x=\"4\" y=\"{:.1}\" fill=\"#777\">{:.3}s</text>",
            y + 4.0,
            s.t() / 1000.0
        );
        let arrow = |page: &mut String, x1: f64, x2: f64, label: &str, colour: &str| {
            let _ = write!(
                page,
                "<line x1=\"{x1:.1}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" \
                 marker-end=\"url(#arrow)\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                (x1 + x2) / 2.0,
                y - 4.0,
                esc(label)
            );
        };
        match s {
            Step::Send { attempt, to, .. } => match to {
                Some((ts, w)) => {
                    let label = format!("attempt {attempt}, served by {w} at {:.3}s", ts / 1000.0);
                    arrow(page, client_x, colx(w), &label, "#333");
                }
                None => {
                    arrow(
                        page,
                        client_x,
                        via_x,
                        &format!("attempt {attempt}"),
                        "#c0392b",
                    );
                    let meanwhile = match run.fault_between(s.t(), next_send(&r.sends, *attempt)) {
                        Some((lane, m)) => {
                            format!("; meanwhile {lane}: {} at {:.3}s", m.label, m.t / 1000.0)
                        }
                        None => String::new(),
                    };
                    let _ = write!(
                        page,
                        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c0392b\">✕ no worker logged serving it \
                         before the next attempt{}</text>",
                        via_x + 6.0,
                        y + 12.0,
                        esc(&meanwhile)
                    );
                }
            },
            Step::Retry { reason, .. } => {
                let _ = write!(
                    page,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d68910\">{}: will resend</text>",
                    client_x + 6.0,
                    y + 4.0,
                    esc(reason)
                );
            }
            Step::Refused { .. } => {
                let _ = write!(
                    page,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#d68910\">wrong reply refused</text>",
                    client_x + 6.0,
                    y + 4.0
                );
            }
            Step::Reply { from, ok, .. } => {
                let from_x = from.as_deref().map_or(via_x, colx);
                let label = match (from, ok) {
                    (_, false) => "WRONG reply accepted",
                    (Some(_), true) => "reply",
                    (None, true) => "reply (no served line: its worker was killed before logging)",
                };
                arrow(
                    page,
                    from_x,
                    client_x,
                    label,
                    if *ok { "#1e8449" } else { "#c0392b" },
                );
            }
            Step::Abandon { .. } => {
                let _ = write!(
                    page,
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c0392b\">✕ abandoned: out of retries</text>",
                    client_x + 6.0,
                    y + 4.0
                );
            }
        }
    }
    if r.outcome() == Outcome::Open {
        let y = 40.0 + row * steps.len() as f64;
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"#c0392b\">… no reply, no abandon: the history ends here</text>",
            client_x + 6.0
        );
    }
    page.push_str("</svg></details>\n");
}

/// "noticed by worker-1 in 0.76 s, broker 0.80 s (liveness 0.75 s); first reply 1.9 s after
/// it struck": what a network fault's shading says beside it, readable without hovering.
fn network_words(f: &NetworkFault) -> String {
    let mut words = format!("{} {}", f.kind, f.target);
    if f.detections.is_empty() {
        words.push_str(": nobody noticed");
    } else {
        let first: Vec<String> = f
            .detections
            .iter()
            .take(3)
            .map(|d| format!("{} {:.2} s", d.source, d.after_ms / 1000.0))
            .collect();
        let more = f.detections.len().saturating_sub(3);
        let _ = write!(words, ": noticed by {}", first.join(", "));
        if more > 0 {
            let _ = write!(words, " and {more} more");
        }
    }
    let _ = write!(words, " (liveness {:.2} s)", f.liveness_ms / 1000.0);
    match f.recovery_ms {
        Some(r) => {
            let _ = write!(
                words,
                "; first reply after the heal {:.2} s after it struck",
                r / 1000.0
            );
        }
        None => words.push_str("; no reply after the heal"),
    }
    words
}

/// The short form written beside the shading: "partition: noticed 0.74 s (liveness 0.75 s),
/// reply 1.55 s" (the table below the time line lists every role).
fn network_label(f: &NetworkFault) -> String {
    let noticed = f
        .detections
        .iter()
        .map(|d| d.after_ms)
        .min_by(f64::total_cmp)
        .map_or("not noticed".to_string(), |t| {
            format!("noticed {:.2} s", t / 1000.0)
        });
    let reply = f.recovery_ms.map_or("no reply after".to_string(), |r| {
        format!("reply {:.2} s", r / 1000.0)
    });
    format!(
        "{}: {noticed} (liveness {:.2} s), {reply}",
        f.kind,
        f.liveness_ms / 1000.0
    )
}

/// Shades each network fault across the lanes of the hosts it cut, from its strike to its
/// heal (or the end of the run), with its detection and recovery written beside it.
fn network_shading(
    page: &mut String,
    axis: &Axis,
    run: &Run,
    heights: &[f64],
    top: f64,
    network: &[NetworkFault],
) {
    let mut ys = Vec::with_capacity(heights.len());
    let mut y = top;
    for h in heights {
        ys.push(y);
        y += h;
    }
    for f in network {
        let (x1, x2) = (
            axis.x(f.struck_ms),
            axis.x(f.healed_ms.unwrap_or(run.end).max(f.struck_ms)),
        );
        let colour = match f.kind.as_str() {
            "partition" | "split" | "reset" => "#c0392b",
            "oneway" => "#d35400",
            _ => "#8e44ad",
        };
        let mut first_y: Option<f64> = None;
        for ((lane, &ly), &h) in run.lanes.iter().zip(&ys).zip(heights) {
            if !f.hosts.contains(&lane.name) {
                continue;
            }
            first_y.get_or_insert(ly);
            let _ = write!(
                page,
                "<rect class=\"netfault\" data-kind=\"{}\" x=\"{x1:.1}\" y=\"{ly:.1}\" \
                 width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\" opacity=\"0.15\">\
                 <title>{}</title></rect>",
                esc(&f.kind),
                (x2 - x1).max(1.0),
                esc(&network_words(f))
            );
        }
        if let Some(ly) = first_y {
            let _ = write!(
                page,
                "<text class=\"netfault-words\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" \
                 fill=\"{colour}\">{}</text>",
                x1 + 2.0,
                ly + 21.0,
                esc(&network_label(f))
            );
        }
    }
}

/// The network faults of a `--net namespaces` run as a table: what each cut, when, who
/// noticed it how soon against the liveness window, and when replies came back.
fn network_section(page: &mut String, network: &[NetworkFault]) {
    if network.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Network faults</h2>\n<table id=\"network\"><tr><th>fault</th><th>cut</th>\
         <th>struck</th><th>healed</th><th>noticed by (after the strike)</th>\
         <th>liveness</th><th>replies during</th><th>first reply after the heal</th></tr>\n",
    );
    for f in network {
        let noticed: Vec<String> = f
            .detections
            .iter()
            .map(|d| format!("{} ({}) {:.2} s", d.source, d.event, d.after_ms / 1000.0))
            .collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.2} s</td><td class=\"n\">{}</td>\
             <td>{}</td><td class=\"n\">{:.2} s</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&f.kind),
            esc(&f.target),
            f.struck_ms / 1000.0,
            f.healed_ms
                .map_or("never (run ended)".into(), |h| format!("{:.2} s", h / 1000.0)),
            if noticed.is_empty() {
                "nobody".to_string()
            } else {
                esc(&noticed.join(", "))
            },
            f.liveness_ms / 1000.0,
            f.replies_during,
            f.recovery_ms
                .map_or("none".into(), |r| format!("{:.2} s after it struck", r / 1000.0)),
        );
    }
    page.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::checker::MEANING_NO_SERVED_LINE;
    use serde_json::json;

    fn rec(t: f64, source: &str, event: Value) -> Record {
        Record::new(t, source, event)
    }

    /// A small run: a broker, two workers (one killed by the nemesis, one crashing on its
    /// own), a client with one clean request and one resent.
    fn history() -> Vec<Record> {
        vec![
            rec(
                1.0,
                "broker",
                json!({"event": "started", "role": "broker", "endpoint": "tcp://x"}),
            ),
            rec(
                2.0,
                "worker-1",
                json!({"event": "started", "role": "worker", "endpoint": "tcp://x"}),
            ),
            rec(
                3.0,
                "worker-2",
                json!({"event": "started", "role": "worker", "endpoint": "tcp://x"}),
            ),
            rec(
                10.0,
                "client-1",
                json!({"event": "sent", "seq": 1, "request": "c1-1", "attempt": 1}),
            ),
            rec(
                11.0,
                "worker-1",
                json!({"event": "served", "request": "c1-1", "cycle": 1, "bytes": 4, "work_ms": 0.0}),
            ),
            rec(
                12.0,
                "client-1",
                json!({"event": "reply", "seq": 1, "request": "c1-1", "reply": "c1-1", "attempts": 1, "latency_ms": 2.0}),
            ),
            rec(
                20.0,
                "client-1",
                json!({"event": "sent", "seq": 2, "request": "c1-2", "attempt": 1}),
            ),
            rec(
                21.0,
                "nemesis",
                json!({"event": "nemesis", "action": "kill", "target": "worker-1"}),
            ),
            rec(
                25.0,
                "worker-2",
                json!({"event": "fault", "kind": "crash", "cycle": 3}),
            ),
            rec(
                26.0,
                "nemesis",
                json!({"event": "nemesis", "action": "died", "target": "worker-2"}),
            ),
            rec(
                40.0,
                "nemesis",
                json!({"event": "nemesis", "action": "start", "target": "worker-1"}),
            ),
            rec(
                41.0,
                "nemesis",
                json!({"event": "nemesis", "action": "start", "target": "worker-2"}),
            ),
            rec(
                1020.0,
                "client-1",
                json!({"event": "retry", "seq": 2, "attempt": 1, "reason": "timeout"}),
            ),
            rec(
                1021.0,
                "client-1",
                json!({"event": "sent", "seq": 2, "request": "c1-2", "attempt": 2}),
            ),
            rec(
                1022.0,
                "worker-2",
                json!({"event": "served", "request": "c1-2", "cycle": 1, "bytes": 4, "work_ms": 0.0}),
            ),
            rec(
                1023.0,
                "client-1",
                json!({"event": "reply", "seq": 2, "request": "c1-2", "reply": "c1-2", "attempts": 2, "latency_ms": 1003.0}),
            ),
        ]
    }

    fn results(verdict: &str) -> RunResults {
        RunResults::from_json(
            &json!({
                "seed": 7, "pattern": "majordomo", "verdict": verdict,
                "reason": "nothing lost, duplicated, reordered or wrongly answered",
                "findings": {"requests": 2, "attempts": 3, "replied": 2,
                    "faults": {"kill": 1, "worker_crash": 1}}
            })
            .to_string(),
        )
        .unwrap()
    }

    fn count(page: &str, needle: &str) -> usize {
        page.matches(needle).count()
    }

    #[test]
    fn recovery_per_fault_and_coverage_per_kind_are_tables_and_unrecovered_is_said() {
        let mut r = results("valid");
        r.findings = RunResults::from_json(
            &json!({"verdict": "valid", "findings": {
                "recoveries": [
                    {"fault": "kill worker-1", "kind": "kill", "at_ms": 814.4,
                     "recovered_after_ms": 653.77, "replies_after": 54},
                    {"fault": "freeze worker-2", "kind": "freeze", "at_ms": 2927.3,
                     "recovered_after_ms": null, "replies_after": 0}],
                "coverage": {"kill": {"injected": 1, "recovered": 1, "replies_after": 54},
                             "freeze": {"injected": 1, "recovered": 0, "replies_after": 0}}}})
            .to_string(),
        )
        .unwrap()
        .findings;
        let page = render(&history(), &r, 0);
        assert!(page.contains("<h2>Recovery</h2>"), "{page}");
        assert!(page.contains(
            "<tr><td class=\"n\">0.814s</td><td>kill worker-1</td><td class=\"n\">653.8 ms</td>"
        ));
        assert!(page.contains("<td>freeze worker-2</td><td class=\"n\">not recovered</td>"));
        // Coverage: one row per kind, the unrecovered kind marked.
        assert!(page.contains(
            "<tr class=\"bad\"><td>freeze</td><td class=\"n\">1</td><td class=\"n\">0</td>"
        ));
        assert!(page.contains(
            "<tr><td>kill</td><td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">54</td>"
        ));
        // No recovery data (an older results.json): no section.
        assert!(!render(&history(), &results("valid"), 0).contains("<h2>Recovery</h2>"));
    }

    #[test]
    fn the_plots_have_values_on_their_axes_and_outages_shaded() {
        let page = render(&history(), &results("valid"), 0);
        let plot = &page[page.find("<svg id=\"plot\"").unwrap()..];
        let plot = &plot[..plot.find("</svg>").unwrap()];
        // Throughput: replies/s at 0, half and the peak; latency in ms; seconds under both.
        assert!(plot.contains(">0/s</text>"), "{plot}");
        assert!(plot.contains(" ms</text>"), "{plot}");
        assert!(count(plot, "s</text>") >= 6, "{plot}");
        // worker-1 was killed by the nemesis: its down period is a band behind the plots.
        assert!(plot.contains("class=\"outage\""), "{plot}");
        assert!(plot.contains("<title>worker-1 down "), "{plot}");
    }

    #[test]
    fn the_time_line_names_each_strike_with_its_time_and_shades_outages_across_the_lanes() {
        let page = render(&history(), &results("valid"), 0);
        let line = &page[page.find("<svg id=\"timeline\"").unwrap()..];
        let line = &line[..line.find("</svg>").unwrap()];
        // Written, not only in a tooltip: `<text class="strike-label" …>0.01s nemesis kills …`.
        let labels: Vec<&str> = line
            .split("class=\"strike-label\"")
            .skip(1)
            .map(|t| &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()])
            .collect();
        assert!(!labels.is_empty(), "{line}");
        assert!(
            labels
                .iter()
                .any(|l| l.ends_with("s nemesis kills worker-1")),
            "{labels:?}"
        );
        assert!(labels.iter().all(|l| l
            .split_once("s ")
            .is_some_and(|(t, _)| t.parse::<f64>().is_ok())));
        assert!(
            line.contains("class=\"outage\""),
            "down shaded across the lanes"
        );
    }

    #[test]
    fn each_process_links_to_its_log_and_fault_colours_differ() {
        let page = render(&history(), &results("valid"), 0);
        for name in ["broker", "worker-1", "worker-2", "client-1"] {
            assert!(
                page.contains(&format!("<a href=\"logs/{name}.log\">{name}</a>")),
                "{name}"
            );
        }
        let kinds = [
            MarkKind::Kill,
            MarkKind::Freeze,
            MarkKind::Restart,
            MarkKind::Heal,
            MarkKind::Crash,
            MarkKind::Stall,
            MarkKind::Start,
            MarkKind::Proxy,
        ];
        for a in kinds {
            for b in kinds {
                if a != b {
                    assert_ne!(a.colour(), b.colour(), "{a:?} and {b:?} look alike");
                }
            }
        }
    }

    #[test]
    fn a_network_fault_is_shaded_across_the_lanes_it_cut_with_its_times_written_beside() {
        let mut h = history();
        h.push(rec(
            12.0,
            "nemesis",
            json!({"event": "nemesis", "action": "split",
                   "target": "broker+worker-1 | worker-2+client-1",
                   "hosts": ["broker", "worker-1", "worker-2", "client-1"]}),
        ));
        let mut r = results("valid");
        r.network = vec![NetworkFault {
            kind: "partition".into(),
            target: "worker-1".into(),
            hosts: vec!["worker-1".into()],
            struck_ms: 5.0,
            healed_ms: Some(9.0),
            liveness_ms: 750.0,
            detections: vec![crate::chaos::report::Detection {
                source: "broker".into(),
                event: "worker_expired".into(),
                after_ms: 760.0,
            }],
            recovery_ms: Some(1600.0),
            reply_during_ms: None,
            replies_during: 0,
        }];
        let page = render(&h, &r, 0);
        // One shaded band, on worker-1's lane only; no lane for the split's target text.
        assert_eq!(count(&page, "class=\"netfault\""), 1);
        assert_eq!(count(&page, "data-process=\"broker+worker-1"), 0);
        assert!(page.contains("partition: noticed 0.76 s (liveness 0.75 s), reply 1.60 s"));
        assert!(page.contains("<table id=\"network\">"));
        assert!(page.contains("broker (worker_expired) 0.76 s"));
        // A run on loopback has no such section.
        assert!(!render(&history(), &results("valid"), 0).contains("Network faults"));
    }

    #[test]
    fn the_page_has_a_lane_per_process_a_mark_per_fault_and_the_verdict() {
        let page = render(&history(), &results("valid"), 0);
        for p in ["broker", "worker-1", "worker-2", "client-1"] {
            assert_eq!(
                count(&page, &format!("data-process=\"{p}\"")),
                1,
                "lane {p}"
            );
        }
        assert_eq!(count(&page, "class=\"lane\""), 4);
        // The nemesis kill and the own crash: one mark each.
        assert_eq!(count(&page, "class=\"fault\""), 2, "{page}");
        assert!(page.contains("nemesis kills worker-1"));
        assert!(page.contains("crashed on its own"));
        assert!(page.contains("class=\"verdict valid\""));
        assert!(page.contains("<b>VALID</b>"));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script"), "no script needed");
        // Nothing fetched: no src, no import, every url() a local #id, and the only links
        // are to the logs beside the page (followed by the reader, never fetched).
        for fetch in ["src=", "@import"] {
            assert!(!page.contains(fetch), "{fetch}");
        }
        assert!(page.matches("href=").count() > 0);
        assert_eq!(
            page.matches("href=").count(),
            page.matches("href=\"logs/").count()
        );
        assert!(page.matches("url(").count() > 0);
        assert_eq!(page.matches("url(").count(), page.matches("url(#").count());
    }

    #[test]
    fn each_restart_says_why_own_crash_or_nemesis() {
        let page = render(&history(), &results("valid"), 0);
        assert!(
            page.contains("worker-1: restarted 1 after the nemesis"),
            "{page}"
        );
        assert!(page.contains("worker-2: restarted 1 after its own crash"));
        // An older history without the runner's `died` line: the crash line says it.
        let old: Vec<Record> = history()
            .into_iter()
            .filter(|r| r.event["action"] != "died")
            .collect();
        let page = render(&old, &results("valid"), 0);
        assert!(page.contains("worker-2: restarted 1 after its own crash"));
    }

    #[test]
    fn requests_are_spans_with_their_resends_and_a_sequence_diagram() {
        let page = render(&history(), &results("valid"), 0);
        assert_eq!(count(&page, "class=\"request\""), 2);
        assert!(page.contains("c1-2 (client-1 seq 2): 2 attempt(s), replied after 1003.0 ms"));
        assert_eq!(count(&page, "<details class=\"seq\">"), 2);
        assert!(page.contains("attempt 2, served by worker-2"));
        assert!(page.contains("timeout: will resend"));
        // The first attempt of c1-2 met the kill of worker-1.
        assert!(
            page.contains("meanwhile worker-1: nemesis kills worker-1 at 0.021s"),
            "{page}"
        );
    }

    #[test]
    fn invalid_verdicts_show_their_reasons_and_plain_words() {
        let mut r = results("invalid");
        r.reason = "1 lost".into();
        r.findings.lost = vec!["c1-9".into()];
        r.findings.violations =
            vec!["lost: c1-9 (client-1 seq 9: sent 1 time, never answered or abandoned)".into()];
        r.findings.served_lines = 12;
        let page = render(&history(), &r, 3);
        assert!(page.contains("class=\"verdict invalid\""));
        assert!(page.contains("<li>lost: c1-9 (client-1 seq 9"));
        assert!(page.contains("3 lines of history.jsonl were not records"));
        assert!(page.contains(&esc(MEANING_WRONG_REFUSED)));
        assert!(page.contains(&esc(MEANING_NO_SERVED_LINE)));
        // Workers that write no served line at all (a --worker-cmd program): not blamed on kills.
        r.findings.served_lines = 0;
        let page = render(&history(), &r, 3);
        assert!(page.contains(&esc(crate::chaos::checker::MEANING_NO_SERVED_LINES_AT_ALL)));
        assert!(!page.contains(&esc(MEANING_NO_SERVED_LINE)));
    }

    #[test]
    fn request_bodies_and_names_are_escaped() {
        let mut h = history();
        let evil = "<script>alert(\"x\")</script>&\u{1}\u{7f}";
        h.push(rec(
            2000.0,
            "client-1",
            json!({"event": "sent", "seq": 3, "request": evil, "attempt": 1}),
        ));
        h.push(rec(
            2001.0,
            "client-1",
            json!({"event": "abandoned", "seq": 3, "request": evil, "attempts": 1}),
        ));
        h.push(rec(
            2002.0,
            "nemesis",
            json!({"event": "nemesis", "action": "kill", "target": "<b>w</b>"}),
        ));
        let mut r = results("indeterminate");
        r.findings.abandoned = vec![evil.into()];
        r.pattern = "<i>p</i>".into();
        let page = render(&h, &r, 0);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>w</b>") && !page.contains("<i>p</i>"));
        assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;\\x01\\x7f"));
        assert!(page.contains("✕ abandoned: out of retries"));
    }

    #[test]
    fn a_big_run_is_sampled_and_says_so() {
        let mut h = Vec::new();
        for seq in 1..=20_000u64 {
            let t = seq as f64;
            let text = format!("c1-{seq}");
            h.push(rec(
                t,
                "client-1",
                json!({"event": "sent", "seq": seq, "request": text, "attempt": 1}),
            ));
            h.push(rec(t + 0.5, "client-1", json!({"event": "reply", "seq": seq, "request": text, "reply": text, "attempts": 1, "latency_ms": 0.5})));
        }
        // One abandoned request: always drawn, whatever the sample.
        h.push(rec(
            30_000.0,
            "client-1",
            json!({"event": "sent", "seq": 20_001, "request": "c1-20001", "attempt": 1}),
        ));
        h.push(rec(
            31_000.0,
            "client-1",
            json!({"event": "abandoned", "seq": 20_001, "request": "c1-20001", "attempts": 1}),
        ));
        let page = render(&h, &results("indeterminate"), 0);
        assert_eq!(count(&page, "class=\"request\""), MAX_SPANS);
        assert_eq!(count(&page, "<details class=\"seq\">"), MAX_SEQUENCES);
        assert!(page.contains(&format!("{MAX_SPANS} of 20001 requests drawn")));
        assert!(page.contains(&format!("{MAX_SEQUENCES} of 20001 requests listed")));
        assert!(page.contains(&format!("{MAX_POINTS} of 20000 shown")));
        assert!(page.contains("c1-20001 — 1 attempt(s), abandoned"));
        assert!(page.len() < 3_000_000, "{} bytes", page.len());
    }

    #[test]
    fn fault_marks_beyond_the_bound_are_counted_not_drawn() {
        let mut h = history();
        for k in 0..(MAX_MARKS as u64 + 600) {
            h.push(rec(
                50.0 + k as f64,
                "proxy",
                json!({"event": "proxy_fault", "kind": "drop", "direction": "up"}),
            ));
        }
        let page = render(&h, &results("valid"), 0);
        // The proxy's bound, plus the two faults of the small history.
        assert_eq!(count(&page, "class=\"fault\""), MAX_MARKS + 2);
        assert!(page.contains("600 further fault marks not drawn"), "{page}");
    }

    #[test]
    fn the_same_records_give_the_same_page_and_results_read_back_alike() {
        let r = results("valid");
        assert_eq!(render(&history(), &r, 0), render(&history(), &r, 0));
        assert!(RunResults::from_json("{\"seed\": 1}").is_err());
        assert!(RunResults::from_json("not json").is_err());
    }

    #[test]
    fn pick_keeps_notable_items_first_then_an_even_sample() {
        let items: Vec<u32> = (0..100).collect();
        let p = pick(&items, 10, |&i| i == 97);
        assert_eq!(p.len(), 10);
        assert!(p.contains(&97));
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(pick(&items[..5], 10, |_| false), vec![0, 1, 2, 3, 4]);
    }
}
