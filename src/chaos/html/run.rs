//! The run as the page draws it, read from the history: a lane per process (its states and
//! fault marks), every request (sends, resends, replies), the nemesis strikes.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{RunResults, MAX_MARKS};
use crate::chaos::checker::natural_cmp;
use crate::chaos::history::Record;

/// What a process lane is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Up,
    Frozen,
    Down,
    /// Stopped politely at the end of the run (its summary came).
    Stopped,
}

impl State {
    pub(super) fn class(self) -> (&'static str, &'static str) {
        match self {
            State::Up => ("#bfe3bf", "up"),
            State::Frozen => ("#a9c9f2", "frozen"),
            State::Down => ("#f2b3b3", "down"),
            State::Stopped => ("#dddddd", "stopped"),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Segment {
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) state: State,
    pub(super) why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MarkKind {
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
    pub(super) fn colour(self) -> &'static str {
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
    pub(super) fn is_fault(self) -> bool {
        !matches!(self, MarkKind::Start)
    }
}

#[derive(Clone, Debug)]
pub(super) struct Mark {
    pub(super) t: f64,
    pub(super) kind: MarkKind,
    pub(super) label: String,
}

/// One process's life on the time line.
#[derive(Default)]
pub(super) struct Lane {
    pub(super) name: String,
    pub(super) segments: Vec<Segment>,
    pub(super) current: Option<(State, f64, String)>,
    pub(super) marks: Vec<Mark>,
    pub(super) hidden_marks: u64,
    /// Time of its last own crash in the current incarnation.
    pub(super) last_crash: Option<f64>,
    pub(super) restarts: BTreeMap<&'static str, u64>,
}

impl Lane {
    pub(super) fn set(&mut self, t: f64, state: State, why: impl Into<String>) {
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

    pub(super) fn state(&self) -> Option<State> {
        self.current.as_ref().map(|c| c.0)
    }

    pub(super) fn mark(&mut self, t: f64, kind: MarkKind, label: String) {
        if self.marks.len() < MAX_MARKS {
            self.marks.push(Mark { t, kind, label });
        } else {
            self.hidden_marks += 1;
        }
    }

    pub(super) fn close(&mut self, t: f64) {
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
    pub(super) fn restarts_text(&self) -> String {
        let parts: Vec<String> = self
            .restarts
            .iter()
            .map(|(why, n)| format!("{n} after {}", cause_words(why)))
            .collect();
        parts.join(", ")
    }

    /// "2 own crash, 1 nemesis": the lane label's short form (the live view's words).
    pub(super) fn restarts_label(&self) -> String {
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
pub(super) enum Outcome {
    Replied,
    Abandoned,
    /// Never answered nor abandoned: lost, or unfinished when the run was interrupted.
    Open,
}

/// Everything the history says about one request.
#[derive(Clone, Debug)]
pub(super) struct Req {
    pub(super) client: String,
    pub(super) seq: u64,
    pub(super) text: String,
    /// Send times: the first send, then each resend.
    pub(super) sends: Vec<f64>,
    /// Timeouts and other reasons an attempt failed.
    pub(super) retries: Vec<(f64, String)>,
    pub(super) refused: Vec<f64>,
    /// Accepted replies (more than one is a duplicate).
    pub(super) replies: Vec<(f64, Option<f64>, String)>,
    pub(super) abandoned: Option<f64>,
}

impl Req {
    pub(super) fn outcome(&self) -> Outcome {
        if !self.replies.is_empty() {
            Outcome::Replied
        } else if self.abandoned.is_some() {
            Outcome::Abandoned
        } else {
            Outcome::Open
        }
    }

    pub(super) fn start(&self) -> f64 {
        self.sends.first().copied().unwrap_or_else(|| self.end(0.0))
    }

    /// Its reply, abandon, or `run_end` if neither came.
    pub(super) fn end(&self, run_end: f64) -> f64 {
        match (self.replies.first(), self.abandoned) {
            (Some(r), _) => r.0,
            (None, Some(t)) => t,
            _ => run_end,
        }
    }

    /// Worth drawing before the plain ones: a finding, a resend or a refused reply.
    pub(super) fn notable(&self) -> bool {
        self.outcome() != Outcome::Replied
            || self.replies.len() > 1
            || self.sends.len() > 1
            || !self.refused.is_empty()
            || self.replies.iter().any(|r| r.2 != self.text)
    }

    pub(super) fn name(&self) -> String {
        if self.text.is_empty() {
            format!("{} seq {}", self.client, self.seq)
        } else {
            self.text.clone()
        }
    }
}

/// The run, read from its records.
pub(super) struct Run<'a> {
    pub(super) results: &'a RunResults,
    pub(super) lanes: Vec<Lane>,
    pub(super) requests: Vec<Req>,
    /// Served lines by request text (cut as workers cut it): (time, worker).
    pub(super) served: HashMap<String, Vec<(f64, String)>>,
    /// Nemesis strikes, for the lines across the time line.
    pub(super) strikes: Vec<Mark>,
    pub(super) end: f64,
}

fn str_of<'v>(event: &'v Value, field: &str) -> Option<&'v str> {
    event.get(field).and_then(Value::as_str)
}

/// The order lanes are shown in: brokers and queues, then servers and workers, then the
/// proxy, then clients; by name within each.
pub(super) fn lane_rank(name: &str) -> u8 {
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
    pub(super) fn analyse(records: &[Record], results: &'a RunResults) -> Run<'a> {
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
                if crate::event::chaos::NETWORK_FAULTS.contains(&action)
                    || action == crate::chaos::net::HEAL_ACTION
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
pub(super) fn next_send(sends: &[f64], attempt: usize) -> f64 {
    sends.get(attempt).copied().unwrap_or(f64::INFINITY)
}

impl Run<'_> {
    /// The first fault on a process other than a client in `[from, to)`: what a request's
    /// lost attempt probably met.
    pub(super) fn fault_between(&self, from: f64, to: f64) -> Option<(&str, &Mark)> {
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
pub(super) fn pick<T>(items: &[T], max: usize, notable: impl Fn(&T) -> bool) -> Vec<usize> {
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
