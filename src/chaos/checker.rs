//! The history checker of `pirate chaos`: a pure function from the recorded history of a run
//! (every JSON line every child printed, stamped with when the runner read it) to a [`Verdict`].
//!
//! It knows nothing of processes or sockets, so it can judge a live run, a saved
//! `history.jsonl` (see [`read_history`]), or a synthetic history in a test.
//!
//! # What is checked
//!
//! A request's identity is its client and sequence number (`source`, `seq`); its text (`c1-7`)
//! only names it in reports. The workers are echo servers, so a correct reply equals its
//! request. The findings, from fatal to informational:
//!
//! - **lost** (fatal): a client sent a request and then neither accepted a reply nor gave up on
//!   it. The runner never kills clients, so a request still in flight when a client's history
//!   ends (summary or not) was dropped somewhere and never accounted for: exactly what the
//!   Pirate patterns promise cannot happen.
//! - **duplicated** (fatal): a client delivered more than one reply for one request. Retries may
//!   bring several replies back, but the client must deliver one and discard the rest.
//! - **out of order** (fatal): a client delivered the reply to a request after the reply to a
//!   later one. Lazy Pirate clients are strictly one request at a time.
//! - **mismatched** (fatal): a `reply` event whose reply differs from its request: the client
//!   accepted somebody else's (or a corrupted) reply. A `mismatch` event is the opposite, the
//!   client *refusing* a wrong reply and retrying; those are counted in `refused_mismatches`
//!   and are the protocol working, not failing.
//! - **abandoned** (indeterminate, not fatal): the client gave up after its retries, and said
//!   so. The request may or may not have been executed — the reply may have been lost on the
//!   way back — but nothing was silently dropped: the caller was told. That is not "nothing
//!   lost" either: nobody knows what became of it, so a run with abandoned requests is at best
//!   indeterminate. (A reply after an abandon cannot happen and is not looked for.)
//! - **re-executions** (fatal only with [`CheckOptions::strict`]): a request served more than
//!   once, counted as the extra executions. The Pirate patterns are at-least-once: a client
//!   that times out resends, and the first worker may well have done the work before it died
//!   or before its reply was dropped. Re-execution is the price of reliability without
//!   idempotence tracking (Titanic's business), so it is allowed unless asked otherwise.
//! - **unexecuted replies** (informational): replied requests no worker reported serving. A
//!   worker killed with `kill -9` right after replying never gets its `served` line out, so
//!   this shows how much of the history the kills cut off, not a bug.
//! - **recoveries**: for each process fault (a nemesis `kill`, `freeze` or `restart`, a worker's
//!   own `crash` or `freeze`), the time from the fault to the next reply any client accepted;
//!   `None` when no reply came after it.
//!
//! - **both active** (informational, Binary Star): how long both nodes of the pair said they
//!   were ACTIVE at once (their `bstar_state` events, timed by when the runner read them): a
//!   split, which `--on-split resolve` heals.
//!
//! - **coverage**: per fault kind, how many were injected, how many were followed by a reply,
//!   and how many replies came after each (up to the next process fault).
//!
//! # The verdict
//!
//! Three values ([`Judgement`]), each with a one-line `reason`:
//!
//! - **invalid**: at least one fatal finding (lost, duplicated, out of order, mismatched,
//!   re-executed under `strict`).
//! - **indeterminate**: nothing fatal, but the run could not show that nothing is lost: no
//!   request was sent or answered, some (or every) request was abandoned, a fault kind the run
//!   asked for ([`CheckOptions::required_faults`]) never fired or was never followed by a
//!   reply (the run ended before its first fault), or the run was interrupted.
//! - **valid**: none of the above.
//!
//! Unknown sources and events are ignored (histories gain events over time); records of known
//! events with missing or wrongly typed fields are counted as `unreadable` and skipped, never a
//! panic.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::history::{parse, role, Fact, Record, Unreadable};
use crate::event::chaos::NETWORK_FAULTS;
use crate::event::verdict::{Coverage, Judgement, Recovery, Verdict};
use crate::stats::LatencyRecorder;

/// How strict the checker is, and what the run asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Re-executions are fatal (at-most-once), not just counted (at-least-once).
    pub strict: bool,
    /// Fault kinds the run asked for, as keys of [`Verdict::faults`] (`kill`, `freeze`,
    /// `restart`, …; `proxy` stands for any `proxy_*` message fault). Each must have been
    /// injected, and a process fault followed by a reply, or the run showed nothing about it
    /// and the verdict is at best indeterminate.
    pub required_faults: Vec<String>,
    /// The run was stopped before it finished: requests still in flight are `unfinished`, not
    /// lost, and the verdict is at best indeterminate.
    pub interrupted: bool,
}

/// The same cut as `Message::preview`, which workers apply to the `request` of `served`: 200
/// characters, then an ellipsis. A long request text only matches its served line cut alike.
pub(crate) fn preview(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// What the history says about one request (client, seq).
#[derive(Default)]
struct RequestState {
    /// Its text, from the first event that carried it.
    text: Option<String>,
    sends: u64,
    replies: u64,
    abandoned: bool,
}

type Key = (String, u64);

fn name(key: &Key, state: &RequestState) -> String {
    match &state.text {
        Some(text) => text.clone(),
        None => format!("{} seq {}", key.0, key.1),
    }
}

/// Orders names the way people count: digit runs compare as numbers (`c1-2` < `c1-10`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn digits(s: &str) -> usize {
        s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())
    }
    let (mut x, mut y) = (a, b);
    loop {
        match (x.chars().next(), y.chars().next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (i, j) = (digits(x), digits(y));
                let (m, n) = (
                    x[..i].trim_start_matches('0'),
                    y[..j].trim_start_matches('0'),
                );
                let order = m.len().cmp(&n.len()).then_with(|| m.cmp(n));
                if order != Ordering::Equal {
                    return order;
                }
                x = &x[i..];
                y = &y[j..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                x = &x[c.len_utf8()..];
                y = &y[d.len_utf8()..];
            }
        }
    }
}

/// Sorts (name, violation line) pairs by name and splits them.
fn sorted(mut findings: Vec<(String, String)>) -> (Vec<String>, Vec<String>) {
    findings.sort_by(|a, b| natural_cmp(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    findings.into_iter().unzip()
}

fn times(n: u64) -> String {
    if n == 1 {
        "1 time".to_string()
    } else {
        format!("{n} times")
    }
}

/// Judges a history. Pure: the same history always gives the same verdict.
pub fn check(history: &[Record], options: &CheckOptions) -> Verdict {
    let mut requests: BTreeMap<Key, RequestState> = BTreeMap::new();
    let mut attempts = 0u64;
    let mut refused_mismatches = 0u64;
    let mut unreadable = 0u64;
    let mut latency = LatencyRecorder::default();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    // Process faults (kind, label, time), in history order, for the recoveries.
    let mut fault_times: Vec<(String, String, f64)> = Vec::new();
    let mut reply_times: Vec<f64> = Vec::new();
    // Executions per served text, across all workers.
    let mut served: HashMap<String, u64> = HashMap::new();
    // Highest seq replied so far, per client.
    let mut highest: HashMap<&str, u64> = HashMap::new();
    let mut out_of_order: BTreeMap<Key, u64> = BTreeMap::new();
    let mut mismatched: BTreeMap<Key, String> = BTreeMap::new();
    // Binary Star: which nodes are active, since when both are, and for how long in all.
    let mut bstar_active: BTreeMap<&str, bool> = BTreeMap::new();
    let mut both_since: Option<f64> = None;
    let mut both_active_ms = 0.0;
    let mut last_t: f64 = 0.0;

    for record in history {
        last_t = last_t.max(record.t_ms);
        let Some(role) = role(&record.source) else {
            continue;
        };
        let fact = match parse(role, record) {
            Ok(fact) => fact,
            Err(Unreadable) => {
                unreadable += 1;
                continue;
            }
        };
        let source = record.source.as_str();
        let key = |seq: u64| (source.to_string(), seq);
        match fact {
            Fact::Sent { seq, request } => {
                attempts += 1;
                let state = requests.entry(key(seq)).or_default();
                state.sends += 1;
                state.text.get_or_insert_with(|| request.to_string());
            }
            Fact::Reply {
                seq,
                request,
                reply,
                latency_ms,
            } => {
                reply_times.push(record.t_ms);
                if let Some(d) = latency_ms
                    .filter(|ms| *ms >= 0.0)
                    .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
                {
                    latency.record(d);
                }
                let state = requests.entry(key(seq)).or_default();
                state.replies += 1;
                let expected = state.text.get_or_insert_with(|| request.to_string());
                // Echo workers: the reply must equal the request, both as the client reported
                // it here and as it was sent.
                if reply != request || reply != expected.as_str() {
                    mismatched
                        .entry(key(seq))
                        .or_insert_with(|| reply.to_string());
                }
                let top = highest.entry(source).or_insert(seq);
                if seq < *top {
                    out_of_order.entry(key(seq)).or_insert(*top);
                } else {
                    *top = seq;
                }
            }
            Fact::Refused => refused_mismatches += 1,
            Fact::Abandoned { seq, request } => {
                let state = requests.entry(key(seq)).or_default();
                state.abandoned = true;
                if let Some(request) = request {
                    state.text.get_or_insert_with(|| request.to_string());
                }
            }
            Fact::Served { request } => *served.entry(request.to_string()).or_default() += 1,
            Fact::WorkerFault { kind } => {
                *faults.entry(format!("worker_{kind}")).or_default() += 1;
                if matches!(kind, "crash" | "freeze") {
                    fault_times.push((
                        format!("worker_{kind}"),
                        format!("worker_{kind} {source}"),
                        record.t_ms,
                    ));
                }
            }
            Fact::Nemesis { action, target } => {
                // `thaw` and `start` end a fault; anything else is not ours to judge.
                // Network faults (`--net namespaces`) are judged like process faults: each
                // must strike and be followed by a reply.
                if matches!(action, "kill" | "freeze" | "restart")
                    || NETWORK_FAULTS.contains(&action)
                {
                    *faults.entry(action.to_string()).or_default() += 1;
                    let fault = match target {
                        Some(target) => format!("{action} {target}"),
                        None => action.to_string(),
                    };
                    fault_times.push((action.to_string(), fault, record.t_ms));
                }
            }
            Fact::ProxyFault { kind } => *faults.entry(format!("proxy_{kind}")).or_default() += 1,
            Fact::BstarState { active } => {
                bstar_active.insert(source, active);
                let both = bstar_active.values().filter(|a| **a).count() >= 2;
                match (both, both_since) {
                    (true, None) => both_since = Some(record.t_ms),
                    (false, Some(since)) => {
                        both_active_ms += (record.t_ms - since).max(0.0);
                        both_since = None;
                    }
                    _ => {}
                }
            }
            Fact::Ignored => {}
        }
    }
    if let Some(since) = both_since {
        // Still both active when the history ends.
        both_active_ms += (last_t - since).max(0.0);
    }

    let mut lost = Vec::new();
    let mut unfinished = Vec::new();
    let mut abandoned = Vec::new();
    let mut duplicated = Vec::new();
    let mut unexecuted = Vec::new();
    // How many distinct requests carry each (served-style) text: that many executions are
    // expected, so two clients sending the same text do not count as a re-execution.
    let mut carriers: HashMap<String, u64> = HashMap::new();
    let (mut sent_requests, mut replied) = (0u64, 0u64);
    for (key, state) in &requests {
        let (client, seq) = (&key.0, key.1);
        let label = name(key, state);
        let text = state.text.as_deref().map(preview);
        if let Some(text) = &text {
            *carriers.entry(text.clone()).or_default() += 1;
        }
        if state.sends > 0 {
            sent_requests += 1;
        }
        if state.replies > 0 {
            replied += 1;
            if !text.as_ref().is_some_and(|t| served.contains_key(t)) {
                unexecuted.push((label.clone(), String::new()));
            }
        }
        if state.replies > 1 {
            let line = format!(
                "duplicated: {label} ({client} seq {seq}: {} replies delivered)",
                state.replies
            );
            duplicated.push((label.clone(), line));
        }
        if state.replies == 0 && state.abandoned {
            abandoned.push((label.clone(), String::new()));
        }
        if state.sends > 0 && state.replies == 0 && !state.abandoned && options.interrupted {
            // Cut off by the interruption: nobody can say whether it would have been answered.
            unfinished.push((label, String::new()));
        } else if state.sends > 0 && state.replies == 0 && !state.abandoned {
            let line = format!(
                "lost: {label} ({client} seq {seq}: sent {}, never answered or abandoned)",
                times(state.sends)
            );
            lost.push((label, line));
        }
    }
    let out_of_order: Vec<_> = out_of_order
        .iter()
        .map(|(key, after)| {
            let label = name(key, &requests[key]);
            let line = format!(
                "out of order: {label} ({}: seq {} replied after seq {after})",
                key.0, key.1
            );
            (label, line)
        })
        .collect();
    let mismatched: Vec<_> = mismatched
        .iter()
        .map(|(key, reply)| {
            let label = name(key, &requests[key]);
            let line = format!(
                "mismatched: {label} ({} seq {} accepted the reply {reply:?})",
                key.0, key.1
            );
            (label, line)
        })
        .collect();
    let mut reexecutions = 0u64;
    let mut reexecuted = Vec::new();
    for (text, &n) in &served {
        let expected = carriers.get(text).copied().unwrap_or(0).max(1);
        let extra = n.saturating_sub(expected);
        if extra > 0 {
            reexecutions += extra;
            let line = format!(
                "re-executed: {text} (served {}, {extra} extra; --strict forbids re-execution)",
                times(n)
            );
            reexecuted.push((text.clone(), line));
        }
    }

    let (lost, lost_lines) = sorted(lost);
    let (duplicated, duplicated_lines) = sorted(duplicated);
    let (out_of_order, out_of_order_lines) = sorted(out_of_order);
    let (mismatched, mismatched_lines) = sorted(mismatched);
    let (abandoned, _) = sorted(abandoned);
    let (unfinished, _) = sorted(unfinished);
    let (unexecuted_replies, _) = sorted(unexecuted);
    let (_, reexecuted_lines) = sorted(reexecuted);

    let mut violations = Vec::new();
    violations.extend(lost_lines);
    violations.extend(duplicated_lines);
    violations.extend(out_of_order_lines);
    violations.extend(mismatched_lines);
    if options.strict {
        violations.extend(reexecuted_lines);
    }

    reply_times.sort_by(f64::total_cmp);
    fault_times.sort_by(|a, b| a.2.total_cmp(&b.2));
    let after = |t: f64| reply_times.partition_point(|r| *r <= t);
    let recoveries: Vec<Recovery> = fault_times
        .iter()
        .enumerate()
        .map(|(i, (kind, fault, at_ms))| {
            let next = after(*at_ms);
            let until = fault_times
                .get(i + 1)
                .map_or(reply_times.len(), |f| after(f.2));
            Recovery {
                fault: fault.clone(),
                kind: kind.clone(),
                at_ms: *at_ms,
                recovered_after_ms: reply_times.get(next).map(|t| t - at_ms),
                replies_after: until.saturating_sub(next) as u64,
            }
        })
        .collect();
    let coverage = coverage_of(&faults, &recoveries, &options.required_faults);

    let mut verdict = Verdict {
        verdict: Judgement::Valid,
        reason: String::new(),
        valid: false,
        interrupted: options.interrupted,
        requests: sent_requests,
        attempts,
        replied,
        lost,
        abandoned,
        unfinished,
        duplicated,
        out_of_order,
        mismatched,
        refused_mismatches,
        reexecutions,
        unexecuted_replies,
        served_lines: served.values().sum(),
        recoveries,
        latency_ms: latency.summary(),
        faults,
        coverage,
        unreadable,
        both_active_ms: (!bstar_active.is_empty()).then(|| both_active_ms.round() as u64),
        violations,
    };
    let (judgement, reason) = judge(&verdict, options);
    verdict.verdict = judgement;
    verdict.reason = reason;
    verdict.valid = judgement == Judgement::Valid;
    verdict
}

/// True when fault kind `kind` (a key of `faults`) satisfies requirement `required`.
fn satisfies(required: &str, kind: &str) -> bool {
    required == kind || (required == "proxy" && kind.starts_with("proxy_"))
}

/// Coverage per kind: every kind injected, plus every required kind (at zero if it never
/// fired, so the summary shows the gap).
fn coverage_of(
    faults: &BTreeMap<String, u64>,
    recoveries: &[Recovery],
    required: &[String],
) -> BTreeMap<String, Coverage> {
    let mut coverage: BTreeMap<String, Coverage> = faults
        .iter()
        .map(|(kind, &n)| {
            let mut c = Coverage {
                injected: n,
                ..Coverage::default()
            };
            for r in recoveries.iter().filter(|r| &r.kind == kind) {
                c.recovered += u64::from(r.recovered_after_ms.is_some());
                c.replies_after += r.replies_after;
            }
            (kind.clone(), c)
        })
        .collect();
    for r in required {
        if !faults.keys().any(|k| satisfies(r, k)) {
            coverage.entry(r.clone()).or_default();
        }
    }
    coverage
}

/// The verdict and its one-line reason, from the findings.
fn judge(v: &Verdict, options: &CheckOptions) -> (Judgement, String) {
    if !v.violations.is_empty() {
        let mut kinds = Vec::new();
        for (n, what) in [
            (v.lost.len(), "lost"),
            (v.duplicated.len(), "duplicated"),
            (v.out_of_order.len(), "out of order"),
            (v.mismatched.len(), "mismatched"),
        ] {
            if n > 0 {
                kinds.push(format!("{n} {what}"));
            }
        }
        let others = v.lost.len() + v.duplicated.len() + v.out_of_order.len() + v.mismatched.len();
        if v.violations.len() > others {
            kinds.push(format!("{} re-executions (strict)", v.reexecutions));
        }
        return (Judgement::Invalid, kinds.join(", "));
    }
    let mut why = Vec::new();
    if options.interrupted {
        why.push(format!(
            "interrupted before the run finished ({} requests still in flight)",
            v.unfinished.len()
        ));
    }
    if v.requests == 0 {
        why.push("no request was sent".to_string());
    } else if v.replied == 0 && v.abandoned.len() as u64 == v.requests {
        why.push(format!(
            "no request was answered: every one ({}) was abandoned",
            v.requests
        ));
    } else if v.replied == 0 {
        why.push("no request was answered".to_string());
    } else if v.abandoned.len() == 1 {
        why.push("1 request abandoned: its client gave up, so whether it ran is unknown".into());
    } else if !v.abandoned.is_empty() {
        why.push(format!(
            "{} requests abandoned: their clients gave up, so whether they ran is unknown",
            v.abandoned.len()
        ));
    }
    for required in &options.required_faults {
        let covered: Vec<&Coverage> = v
            .coverage
            .iter()
            .filter(|(k, _)| satisfies(required, k))
            .map(|(_, c)| c)
            .collect();
        let injected: u64 = covered.iter().map(|c| c.injected).sum();
        let process_fault = v.recoveries.iter().any(|r| satisfies(required, &r.kind));
        if injected == 0 {
            why.push(format!(
                "no {required} fault was injected (the run ended before it)"
            ));
        } else if process_fault && covered.iter().all(|c| c.recovered == 0) {
            why.push(format!(
                "no reply came after any {required}: recovery from it was never shown"
            ));
        }
    }
    if why.is_empty() {
        (
            Judgement::Valid,
            "nothing lost, duplicated, reordered or wrongly answered".to_string(),
        )
    } else {
        (Judgement::Indeterminate, why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::chaos::history::read_history;
    use crate::event::verdict::{
        MEANING_NO_SERVED_LINE, MEANING_NO_SERVED_LINES_AT_ALL, MEANING_UNREADABLE,
        MEANING_WRONG_REFUSED,
    };
    use crate::stats::Latency;

    fn rec(t: f64, source: &str, event: Value) -> Record {
        Record::new(t, source, event)
    }

    /// `client-1`, 7 → `c1-7`, the text chaos clients send.
    fn text(client: &str, seq: u64) -> String {
        format!("c{}-{seq}", client.trim_start_matches("client-"))
    }

    fn sent(t: f64, client: &str, seq: u64, attempt: u32) -> Record {
        let request = text(client, seq);
        rec(
            t,
            client,
            json!({"event": "sent", "seq": seq, "request": request, "attempt": attempt}),
        )
    }

    fn reply_with(t: f64, client: &str, seq: u64, reply: &str, latency_ms: f64) -> Record {
        let request = text(client, seq);
        rec(
            t,
            client,
            json!({"event": "reply", "seq": seq, "request": request, "reply": reply,
                   "attempts": 1, "latency_ms": latency_ms}),
        )
    }

    fn reply(t: f64, client: &str, seq: u64) -> Record {
        reply_with(t, client, seq, &text(client, seq), 1.0)
    }

    fn served(t: f64, worker: &str, request: &str) -> Record {
        rec(
            t,
            worker,
            json!({"event": "served", "cycle": 1, "request": request, "bytes": request.len(),
                   "work_ms": 0.1}),
        )
    }

    fn abandoned(t: f64, client: &str, seq: u64) -> Record {
        let request = text(client, seq);
        rec(
            t,
            client,
            json!({"event": "abandoned", "seq": seq, "request": request, "attempts": 3}),
        )
    }

    fn nemesis(t: f64, action: &str, target: &str) -> Record {
        rec(
            t,
            "nemesis",
            json!({"event": "nemesis", "action": action, "target": target}),
        )
    }

    /// One clean round trip: sent, served by `worker`, replied.
    fn exchange(h: &mut Vec<Record>, t: f64, client: &str, seq: u64, worker: &str) {
        h.push(sent(t, client, seq, 1));
        h.push(served(t + 1.0, worker, &text(client, seq)));
        h.push(reply(t + 2.0, client, seq));
    }

    fn clean() -> Vec<Record> {
        let mut h = vec![rec(
            0.0,
            "client-1",
            json!({"event": "started", "role": "client", "endpoint": "tcp://localhost:5555"}),
        )];
        for seq in 1..=5 {
            exchange(&mut h, seq as f64 * 10.0, "client-1", seq, "worker-1");
            exchange(&mut h, seq as f64 * 10.0 + 3.0, "client-2", seq, "worker-2");
        }
        h.push(rec(
            100.0,
            "client-1",
            json!({"event": "summary", "outcome": "completed"}),
        ));
        h
    }

    fn lax() -> CheckOptions {
        CheckOptions::default()
    }

    fn strict() -> CheckOptions {
        CheckOptions {
            strict: true,
            ..CheckOptions::default()
        }
    }

    fn requiring(kinds: &[&str]) -> CheckOptions {
        CheckOptions {
            required_faults: kinds.iter().map(|k| k.to_string()).collect(),
            ..CheckOptions::default()
        }
    }

    #[test]
    fn clean_history_is_valid() {
        let v = check(&clean(), &lax());
        assert!(v.valid, "{v:#?}");
        assert_eq!((v.requests, v.attempts, v.replied), (10, 10, 10));
        assert!(v.lost.is_empty() && v.abandoned.is_empty() && v.duplicated.is_empty());
        assert!(v.out_of_order.is_empty() && v.mismatched.is_empty());
        assert!(v.unexecuted_replies.is_empty() && v.violations.is_empty());
        assert_eq!(
            (v.reexecutions, v.refused_mismatches, v.unreadable),
            (0, 0, 0)
        );
        assert!(v.faults.is_empty() && v.recoveries.is_empty());
        assert!(check(&clean(), &strict()).valid);
        assert!(
            v.summary_text().starts_with("VALID"),
            "{}",
            v.summary_text()
        );
    }

    #[test]
    fn an_empty_history_shows_nothing_so_it_is_indeterminate() {
        let v = check(&[], &strict());
        assert!(!v.valid);
        assert_eq!(v.verdict, Judgement::Indeterminate);
        assert_eq!(v.reason, "no request was sent");
        assert_eq!((v.requests, v.attempts, v.replied), (0, 0, 0));
        assert_eq!(v.latency_ms, Latency::default());
        assert!(v
            .summary_text()
            .starts_with("INDETERMINATE: no request was sent"));
    }

    #[test]
    fn a_request_never_answered_nor_abandoned_is_lost() {
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1));
        h.push(sent(300.0, "client-1", 6, 2));
        h.push(sent(400.0, "client-1", 6, 3));
        let v = check(&h, &lax());
        assert!(!v.valid);
        assert_eq!(v.lost, ["c1-6"]);
        assert_eq!((v.requests, v.attempts, v.replied), (11, 13, 10));
        assert_eq!(
            v.violations,
            ["lost: c1-6 (client-1 seq 6: sent 3 times, never answered or abandoned)"]
        );
    }

    #[test]
    fn a_client_with_no_summary_still_loses_its_request_in_flight() {
        let h = vec![sent(1.0, "client-3", 1, 1)];
        let v = check(&h, &lax());
        assert_eq!(v.lost, ["c3-1"]);
        assert_eq!(
            v.violations,
            ["lost: c3-1 (client-3 seq 1: sent 1 time, never answered or abandoned)"]
        );
    }

    #[test]
    fn identity_is_client_and_seq_not_text() {
        // Both clients send "hello" as seq 1; only client-2 gets an answer.
        let hello = |_client: &str, event: &str| {
            json!({"event": event, "seq": 1, "request": "hello", "reply": "hello",
                   "attempt": 1})
        };
        let h = vec![
            rec(1.0, "client-1", hello("client-1", "sent")),
            rec(2.0, "client-2", hello("client-2", "sent")),
            rec(
                3.0,
                "worker-1",
                json!({"event": "served", "request": "hello"}),
            ),
            rec(
                4.0,
                "worker-1",
                json!({"event": "served", "request": "hello"}),
            ),
            rec(5.0, "client-2", hello("client-2", "reply")),
        ];
        let v = check(&h, &strict());
        assert_eq!(v.requests, 2);
        assert_eq!(v.replied, 1);
        assert_eq!(v.lost, ["hello"]);
        assert!(v.duplicated.is_empty());
        // Two requests carry "hello": two executions are expected, not a re-execution.
        assert_eq!(v.reexecutions, 0);
        assert_eq!(v.violations.len(), 1, "{:?}", v.violations);
    }

    #[test]
    fn a_second_reply_for_one_seq_is_duplicated() {
        let mut h = clean();
        h.push(reply(150.0, "client-2", 5));
        h.push(reply(151.0, "client-2", 5));
        let v = check(&h, &lax());
        assert!(!v.valid);
        assert_eq!(v.duplicated, ["c2-5"]);
        assert!(
            v.out_of_order.is_empty(),
            "an equal seq is not out of order"
        );
        assert_eq!(
            v.violations,
            ["duplicated: c2-5 (client-2 seq 5: 3 replies delivered)"]
        );
        assert_eq!(v.replied, 10, "distinct requests, not reply events");
    }

    #[test]
    fn a_reply_after_a_later_one_is_out_of_order() {
        let h = vec![
            sent(1.0, "client-1", 1, 1),
            sent(2.0, "client-1", 2, 1),
            sent(3.0, "client-1", 3, 1),
            reply(4.0, "client-1", 1),
            reply(5.0, "client-1", 3),
            reply(6.0, "client-1", 2),
            // Another client's lower seq is none of client-1's business.
            sent(7.0, "client-2", 1, 1),
            reply(8.0, "client-2", 1),
        ];
        let v = check(&h, &lax());
        assert!(!v.valid);
        assert_eq!(v.out_of_order, ["c1-2"]);
        assert_eq!(
            v.violations,
            ["out of order: c1-2 (client-1: seq 2 replied after seq 3)"]
        );
    }

    #[test]
    fn accepting_a_wrong_reply_is_mismatched() {
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1));
        h.push(reply_with(201.0, "client-1", 6, "c1-5", 1.0));
        let v = check(&h, &lax());
        assert!(!v.valid);
        assert_eq!(v.mismatched, ["c1-6"]);
        assert!(v.lost.is_empty(), "a wrong reply is still a reply");
        assert_eq!(
            v.violations,
            [r#"mismatched: c1-6 (client-1 seq 6 accepted the reply "c1-5")"#]
        );
    }

    #[test]
    fn a_reply_event_disagreeing_with_what_was_sent_is_mismatched() {
        let h = vec![
            sent(1.0, "client-1", 1, 1),
            rec(
                2.0,
                "client-1",
                json!({"event": "reply", "seq": 1, "request": "other", "reply": "other"}),
            ),
        ];
        assert_eq!(check(&h, &lax()).mismatched, ["c1-1"]);
    }

    #[test]
    fn abandoned_is_indeterminate_not_fatal() {
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1));
        h.push(sent(300.0, "client-1", 6, 2));
        h.push(abandoned(400.0, "client-1", 6));
        let v = check(&h, &strict());
        assert!(v.violations.is_empty(), "{v:#?}");
        assert!(!v.valid, "an abandoned request is not 'nothing lost'");
        assert_eq!(v.verdict, Judgement::Indeterminate);
        assert_eq!(
            v.reason,
            "1 request abandoned: its client gave up, so whether it ran is unknown"
        );
        assert_eq!(v.abandoned, ["c1-6"]);
        assert!(v.lost.is_empty());
        assert_eq!((v.requests, v.replied), (11, 10));
        assert!(v.summary_text().contains("abandoned (1): c1-6"));
    }

    #[test]
    fn refused_mismatches_are_counted_not_fatal() {
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1));
        h.push(rec(
            201.0,
            "client-1",
            json!({"event": "mismatch", "seq": 6, "expected": "c1-6", "got": "c1-5"}),
        ));
        h.push(rec(
            201.0,
            "client-1",
            json!({"event": "retry", "seq": 6, "attempt": 1, "reason": "mismatched reply"}),
        ));
        h.push(sent(202.0, "client-1", 6, 2));
        h.push(served(203.0, "worker-1", "c1-6"));
        h.push(reply(204.0, "client-1", 6));
        let v = check(&h, &strict());
        assert!(v.valid, "{v:#?}");
        assert_eq!(v.refused_mismatches, 1);
        assert!(v.mismatched.is_empty());
    }

    #[test]
    fn reexecutions_are_counted_and_fatal_only_when_strict() {
        let mut h = clean();
        // c1-2 ran three times (two extra), c2-4 twice (one extra), across workers.
        h.push(served(200.0, "worker-2", "c1-2"));
        h.push(served(201.0, "worker-3", "c1-2"));
        h.push(served(202.0, "worker-1", "c2-4"));
        let v = check(&h, &lax());
        assert!(v.valid, "{v:#?}");
        assert_eq!(v.reexecutions, 3);
        let v = check(&h, &strict());
        assert!(!v.valid);
        assert_eq!(v.reexecutions, 3);
        assert_eq!(
            v.violations,
            [
                "re-executed: c1-2 (served 3 times, 2 extra; --strict forbids re-execution)",
                "re-executed: c2-4 (served 2 times, 1 extra; --strict forbids re-execution)",
            ]
        );
        assert!(v.summary_text().starts_with("INVALID: 3 re-executions"));
    }

    #[test]
    fn replies_never_reported_served_are_informational() {
        let h = vec![
            sent(1.0, "client-1", 1, 1),
            reply(2.0, "client-1", 1),
            sent(3.0, "client-1", 2, 1),
            served(3.5, "worker-1", "c1-2"),
            reply(4.0, "client-1", 2),
        ];
        let v = check(&h, &strict());
        assert!(v.valid);
        assert_eq!(v.unexecuted_replies, ["c1-1"]);
    }

    #[test]
    fn long_requests_match_their_cut_served_text() {
        let long = "x".repeat(300);
        let cut = format!("{}…", "x".repeat(200));
        let h = vec![
            rec(
                1.0,
                "client-1",
                json!({"event": "sent", "seq": 1, "request": long}),
            ),
            served(2.0, "worker-1", &cut),
            served(2.5, "worker-2", &cut),
            rec(
                3.0,
                "client-1",
                json!({"event": "reply", "seq": 1, "request": long, "reply": long}),
            ),
        ];
        let v = check(&h, &lax());
        assert!(v.valid && v.unexecuted_replies.is_empty(), "{v:#?}");
        assert_eq!(v.reexecutions, 1);
    }

    #[test]
    fn recovery_is_the_time_to_the_next_reply() {
        let h = vec![
            sent(50.0, "client-1", 1, 1),
            reply(90.0, "client-1", 1),
            nemesis(100.0, "kill", "worker-2"),
            sent(110.0, "client-1", 2, 1),
            nemesis(200.0, "restart", "worker-2"),
            nemesis(220.0, "start", "worker-2"),
            rec(
                300.0,
                "worker-1",
                json!({"event": "fault", "kind": "overload", "cycle": 4, "duration_ms": 10}),
            ),
            reply(350.0, "client-2", 9),
            sent(360.0, "client-1", 3, 1),
            rec(
                400.0,
                "worker-1",
                json!({"event": "fault", "kind": "crash", "cycle": 5}),
            ),
            nemesis(500.0, "freeze", "queue"),
            nemesis(600.0, "thaw", "queue"),
        ];
        let v = check(&h, &lax());
        let got: Vec<(&str, f64, Option<f64>)> = v
            .recoveries
            .iter()
            .map(|r| (r.fault.as_str(), r.at_ms, r.recovered_after_ms))
            .collect();
        assert_eq!(
            got,
            [
                ("kill worker-2", 100.0, Some(250.0)),
                ("restart worker-2", 200.0, Some(150.0)),
                ("worker_crash worker-1", 400.0, None),
                ("freeze queue", 500.0, None),
            ]
        );
        let text = v.summary_text();
        assert!(
            text.contains("recovery: 4 faults, max 250.0 ms, avg 200.0 ms, 2 with no reply after"),
            "{text}"
        );
    }

    #[test]
    fn recovery_does_not_depend_on_record_order() {
        // Lines from different children can be appended slightly out of time order.
        let h = vec![
            reply(350.0, "client-1", 1),
            nemesis(100.0, "kill", "worker-1"),
            reply(90.0, "client-2", 1),
        ];
        let v = check(&h, &lax());
        assert_eq!(v.recoveries[0].recovered_after_ms, Some(250.0));
    }

    #[test]
    fn faults_are_counted_by_kind() {
        let mut h = clean();
        h.push(nemesis(1.0, "kill", "worker-1"));
        h.push(nemesis(2.0, "kill", "worker-2"));
        h.push(nemesis(3.0, "freeze", "broker"));
        h.push(nemesis(4.0, "thaw", "broker"));
        h.push(nemesis(5.0, "restart", "queue"));
        h.push(nemesis(6.0, "start", "queue"));
        for kind in ["crash", "overload", "freeze", "overload"] {
            h.push(rec(
                7.0,
                "worker-1",
                json!({"event": "fault", "kind": kind, "cycle": 3}),
            ));
        }
        for kind in ["drop", "drop", "corrupt", "blackhole"] {
            h.push(rec(
                8.0,
                "proxy",
                json!({"event": "proxy_fault", "kind": kind}),
            ));
        }
        h.push(rec(
            9.0,
            "proxy",
            json!({"event": "summary", "drop": 2, "corrupt": 1}),
        ));
        let v = check(&h, &lax());
        let expected: BTreeMap<String, u64> = [
            ("kill", 2),
            ("freeze", 1),
            ("restart", 1),
            ("worker_crash", 1),
            ("worker_overload", 2),
            ("worker_freeze", 1),
            ("proxy_drop", 2),
            ("proxy_corrupt", 1),
            ("proxy_blackhole", 1),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
        assert_eq!(v.faults, expected);
        assert!(v.valid);
        assert!(v
            .summary_text()
            .contains("faults: freeze 1, kill 2, proxy_blackhole 1"));
    }

    #[test]
    fn unknown_events_and_sources_are_ignored() {
        let mut h = clean();
        h.push(rec(
            1.0,
            "client-1",
            json!({"event": "teleported", "seq": "x"}),
        ));
        h.push(rec(
            1.0,
            "worker-1",
            json!({"event": "peer_lost", "delay_ms": 1}),
        ));
        h.push(rec(
            1.0,
            "queue",
            json!({"event": "worker_expired", "worker": "A"}),
        ));
        h.push(rec(1.0, "broker", json!({"event": "sent", "seq": "junk"})));
        h.push(rec(
            1.0,
            "nemesis",
            // An action no runner takes (`partition` is a network fault now).
            json!({"event": "nemesis", "action": "unplug"}),
        ));
        // Events are only believed from the sources that emit them.
        h.push(sent(1.0, "observer", 99, 1));
        h.push(rec(
            1.0,
            "client-1",
            json!({"event": "served", "request": "c1-1"}),
        ));
        h.push(rec(1.0, "mystery", Value::Null));
        let v = check(&h, &strict());
        assert_eq!(v, check(&clean(), &strict()));
    }

    #[test]
    fn malformed_records_are_counted_unreadable_without_panicking() {
        let bad = vec![
            rec(1.0, "client-1", json!({"event": "sent", "request": "c1-1"})),
            rec(
                1.0,
                "client-1",
                json!({"event": "sent", "seq": -1, "request": "c1-1"}),
            ),
            rec(
                1.0,
                "client-1",
                json!({"event": "sent", "seq": 1.5, "request": "c1-1"}),
            ),
            rec(
                1.0,
                "client-1",
                json!({"event": "sent", "seq": 1, "request": 7}),
            ),
            rec(
                1.0,
                "client-1",
                json!({"event": "reply", "seq": 1, "request": "c1-1"}),
            ),
            rec(
                1.0,
                "client-1",
                json!({"event": "abandoned", "seq": 1, "request": []}),
            ),
            rec(
                1.0,
                "client-1",
                json!({"event": "mismatch", "expected": "a"}),
            ),
            rec(1.0, "client-1", json!({"seq": 1})),
            rec(1.0, "client-1", json!({"event": 3})),
            rec(1.0, "client-1", json!("sent")),
            rec(1.0, "client-1", Value::Null),
            rec(
                f64::NAN,
                "client-1",
                json!({"event": "sent", "seq": 1, "request": "x"}),
            ),
            rec(1.0, "worker-1", json!({"event": "served", "cycle": 1})),
            rec(1.0, "worker-1", json!({"event": "fault", "kind": null})),
            rec(
                1.0,
                "nemesis",
                json!({"event": "nemesis", "target": "worker-1"}),
            ),
            rec(
                1.0,
                "nemesis",
                json!({"event": "nemesis", "action": "kill", "target": 2}),
            ),
            rec(1.0, "proxy", json!({"event": "proxy_fault"})),
        ];
        let n = bad.len() as u64;
        let mut h = clean();
        h.extend(bad);
        let v = check(&h, &strict());
        assert_eq!(v.unreadable, n);
        assert!(v.valid, "{v:#?}");
        assert_eq!((v.requests, v.attempts), (10, 10));
        assert!(v.faults.is_empty());
    }

    #[test]
    fn bad_latencies_are_skipped_but_the_reply_counts() {
        let h = vec![
            sent(1.0, "client-1", 1, 1),
            reply_with(2.0, "client-1", 1, "c1-1", -5.0),
            sent(3.0, "client-1", 2, 1),
            reply_with(4.0, "client-1", 2, "c1-2", 1e300),
            sent(5.0, "client-1", 3, 1),
            rec(
                6.0,
                "client-1",
                json!({"event": "reply", "seq": 3, "request": "c1-3", "reply": "c1-3",
                       "latency_ms": "fast"}),
            ),
        ];
        let v = check(&h, &lax());
        assert!(v.valid);
        assert_eq!((v.replied, v.unreadable), (3, 0));
        assert_eq!(v.latency_ms, Latency::default());
    }

    #[test]
    fn latency_percentiles_come_from_reply_events() {
        let mut h = Vec::new();
        for seq in 1..=100u64 {
            h.push(sent(seq as f64, "client-1", seq, 1));
            h.push(reply_with(
                seq as f64,
                "client-1",
                seq,
                &text("client-1", seq),
                seq as f64,
            ));
        }
        let v = check(&h, &lax());
        let l = &v.latency_ms;
        assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p90 - 90.0).abs() < 0.1, "{l:?}");
        assert!((l.p99 - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
        assert!(v.summary_text().contains("latency: p50 50.0 ms"));
    }

    #[test]
    fn read_history_skips_and_counts_bad_lines() {
        let good = serde_json::to_string(&sent(1.5, "client-1", 1, 1)).unwrap();
        let text = format!(
            "{good}\n\nnot json\n{{\"t_ms\": 1}}\n{{\"t_ms\": \"x\", \"source\": \"a\", \"event\": 1}}\n{good}\r\n[1,2]\n"
        );
        let (records, bad) = read_history(&text);
        assert_eq!(bad, 4);
        assert_eq!(
            records,
            [sent(1.5, "client-1", 1, 1), sent(1.5, "client-1", 1, 1)]
        );
        assert_eq!(read_history(""), (vec![], 0));
    }

    #[test]
    fn lists_sort_naturally() {
        let mut h = Vec::new();
        for seq in [10, 2, 1] {
            h.push(sent(1.0, "client-1", seq, 1));
        }
        h.push(sent(1.0, "client-10", 1, 1));
        h.push(sent(1.0, "client-9", 1, 1));
        let v = check(&h, &lax());
        assert_eq!(v.lost, ["c1-1", "c1-2", "c1-10", "c9-1", "c10-1"]);
        assert_eq!(natural_cmp("a007", "a7"), Ordering::Less);
        assert_eq!(natural_cmp("b1", "a2"), Ordering::Greater);
    }

    #[test]
    fn summary_lists_the_first_twenty_and_counts_the_rest() {
        let h: Vec<Record> = (1..=25).map(|seq| sent(1.0, "client-1", seq, 1)).collect();
        let v = check(&h, &lax());
        let text = v.summary_text();
        assert!(text.starts_with("INVALID: 25 lost"), "{text}");
        assert!(text.contains("lost (25): c1-1, c1-2,"), "{text}");
        assert!(text.contains("c1-20, … and 5 more"), "{text}");
        assert!(!text.contains("c1-21"), "{text}");
        assert!(text.contains("faults: none"), "{text}");
    }

    #[test]
    fn the_summary_explains_its_odd_counts_in_plain_words_only_when_they_occur() {
        let quiet = check(&clean(), &lax()).summary_text();
        assert!(!quiet.contains(MEANING_NO_SERVED_LINE), "{quiet}");
        // A reply with no served line (the worker's line cut off), a refused reply, and a
        // record of a known event missing its fields.
        let h = vec![
            sent(1.0, "client-1", 1, 1),
            sent(1.0, "client-1", 2, 1),
            served(1.5, "worker-1", "c1-2"),
            reply(1.6, "client-1", 2),
            Record::new(2.0, "client-1", json!({"event": "mismatch", "seq": 1})),
            reply(3.0, "client-1", 1),
            Record::new(4.0, "client-1", json!({"event": "reply"})),
        ];
        let text = check(&h, &lax()).summary_text();
        for meaning in [
            MEANING_WRONG_REFUSED,
            MEANING_NO_SERVED_LINE,
            MEANING_UNREADABLE,
        ] {
            assert!(text.contains(meaning), "{text}");
        }
        assert!(text.contains("\n  wrong refused: replies that were not the answer"));
    }

    #[test]
    fn replies_with_no_served_line_at_all_are_blamed_on_workers_that_write_none_not_on_kills() {
        // A --worker-cmd program prints no served lines: every reply lacks one.
        let h = vec![sent(1.0, "client-1", 1, 1), reply(2.0, "client-1", 1)];
        let v = check(&h, &lax());
        assert_eq!((v.unexecuted_replies.len(), v.served_lines), (1, 0));
        let text = v.summary_text();
        assert!(text.contains(MEANING_NO_SERVED_LINES_AT_ALL), "{text}");
        assert!(!text.contains(MEANING_NO_SERVED_LINE), "{text}");
    }

    #[test]
    fn verdicts_serialise_with_stable_field_names() {
        let mut h = clean();
        h.push(nemesis(20.0, "kill", "worker-1"));
        let v = serde_json::to_value(check(&h, &lax())).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["requests"], 10);
        assert_eq!(v["faults"]["kill"], 1);
        assert_eq!(v["recoveries"][0]["fault"], "kill worker-1");
        assert!(v["recoveries"][0]["recovered_after_ms"].is_number());
        assert!(v["latency_ms"]["p99"].is_number());
        assert!(v["violations"].as_array().unwrap().is_empty());
    }

    #[test]
    fn a_required_fault_that_never_fired_makes_the_run_indeterminate() {
        let mut h = clean();
        h.push(nemesis(20.0, "kill", "worker-1"));
        let v = check(&h, &requiring(&["kill", "restart"]));
        assert_eq!(v.verdict, Judgement::Indeterminate, "{v:#?}");
        assert!(!v.valid);
        assert_eq!(
            v.reason,
            "no restart fault was injected (the run ended before it)"
        );
        assert_eq!(v.coverage["restart"], Coverage::default());
        assert!(v.summary_text().contains("restart never injected"));
        // The same history, asked only for what it did, is valid.
        assert_eq!(check(&h, &requiring(&["kill"])).verdict, Judgement::Valid);
    }

    #[test]
    fn a_fault_with_no_reply_after_it_shows_no_recovery() {
        let mut h = clean();
        h.push(nemesis(500.0, "restart", "broker"));
        let v = check(&h, &requiring(&["restart"]));
        assert_eq!(v.verdict, Judgement::Indeterminate);
        assert_eq!(
            v.reason,
            "no reply came after any restart: recovery from it was never shown"
        );
        assert_eq!(
            v.coverage["restart"],
            Coverage {
                injected: 1,
                recovered: 0,
                replies_after: 0
            }
        );
    }

    #[test]
    fn coverage_counts_faults_recoveries_and_replies_in_each_window() {
        // Replies at 12, 15, 22, 25, … 52, 55. A kill at 12.5 (15, 22 and 25 before the
        // next fault), a freeze at 25.5 (the six from 32 to 55), a kill at 60 (none after).
        let mut h = clean();
        h.push(nemesis(12.5, "kill", "worker-1"));
        h.push(nemesis(25.5, "freeze", "worker-2"));
        h.push(nemesis(60.0, "kill", "worker-2"));
        let v = check(&h, &requiring(&["kill", "freeze"]));
        assert_eq!(v.verdict, Judgement::Valid, "{v:#?}");
        assert_eq!(
            v.coverage["kill"],
            Coverage {
                injected: 2,
                recovered: 1,
                replies_after: 3
            }
        );
        assert_eq!(
            v.coverage["freeze"],
            Coverage {
                injected: 1,
                recovered: 1,
                replies_after: 6
            }
        );
        let windows: Vec<u64> = v.recoveries.iter().map(|r| r.replies_after).collect();
        assert_eq!(windows, [3, 6, 0]);
        let kinds: Vec<&str> = v.recoveries.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["kill", "freeze", "kill"]);
        let text = v.summary_text();
        assert!(
            text.contains(
                "coverage: freeze 1 (1 recovered, 6 replies before the next fault), \
                 kill 2 (1 recovered, 3 replies before the next fault)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_network_fault_is_covered_like_a_process_fault_and_its_heal_is_no_fault() {
        // Replies at 12, 15, …, 55 (see `clean`). A partition at 60: nothing after it.
        let mut h = clean();
        h.push(nemesis(60.0, "partition", "worker-1"));
        h.push(nemesis(61.0, "net_heal", "worker-1"));
        let v = check(&h, &requiring(&["partition", "split"]));
        assert_eq!(v.verdict, Judgement::Indeterminate, "{v:#?}");
        assert_eq!(v.faults.get("net_heal"), None);
        assert_eq!(
            v.coverage["partition"],
            Coverage {
                injected: 1,
                recovered: 0,
                replies_after: 0
            }
        );
        // Struck before replies came: covered; a split never struck still is not.
        let mut h = clean();
        h.push(nemesis(12.5, "partition", "worker-1"));
        let v = check(&h, &requiring(&["partition"]));
        assert_eq!(v.verdict, Judgement::Valid, "{v:#?}");
        let v = check(&h, &requiring(&["partition", "split"]));
        assert_eq!(v.verdict, Judgement::Indeterminate, "{v:#?}");
    }

    #[test]
    fn any_message_fault_satisfies_a_required_proxy() {
        let mut h = clean();
        let v = check(&h, &requiring(&["proxy"]));
        assert_eq!(v.verdict, Judgement::Indeterminate);
        assert_eq!(
            v.reason,
            "no proxy fault was injected (the run ended before it)"
        );
        h.push(rec(
            20.0,
            "proxy",
            json!({"event": "proxy_fault", "kind": "drop", "direction": "down"}),
        ));
        let v = check(&h, &requiring(&["proxy"]));
        assert_eq!(v.verdict, Judgement::Valid, "{v:#?}");
        assert!(!v.coverage.contains_key("proxy"), "{:?}", v.coverage);
        assert_eq!(v.coverage["proxy_drop"].injected, 1);
    }

    #[test]
    fn a_workers_own_crash_does_not_stand_in_for_a_nemesis_kill() {
        let mut h = clean();
        h.push(rec(
            20.0,
            "worker-1",
            json!({"event": "fault", "kind": "crash", "cycle": 4}),
        ));
        let v = check(&h, &requiring(&["kill"]));
        assert_eq!(v.verdict, Judgement::Indeterminate);
        assert_eq!(v.coverage["worker_crash"].recovered, 1);
    }

    #[test]
    fn every_request_abandoned_is_indeterminate_and_says_so() {
        let h = vec![
            sent(1.0, "client-1", 1, 1),
            sent(2.0, "client-1", 2, 1),
            abandoned(3.0, "client-1", 1),
            abandoned(3.0, "client-1", 2),
        ];
        let v = check(&h, &requiring(&["kill"]));
        assert_eq!(v.verdict, Judgement::Indeterminate);
        assert_eq!(
            v.reason,
            "no request was answered: every one (2) was abandoned; \
             no kill fault was injected (the run ended before it)"
        );
        assert!(!v.reason.contains('\n'));
    }

    #[test]
    fn nothing_answered_but_nothing_abandoned_is_lost_so_invalid() {
        let h = vec![sent(1.0, "client-1", 1, 1), abandoned(2.0, "client-2", 1)];
        let v = check(&h, &lax());
        assert_eq!(v.verdict, Judgement::Invalid);
        assert_eq!(v.reason, "1 lost");
    }

    #[test]
    fn invalid_outranks_indeterminate() {
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1)); // lost
        h.push(sent(200.0, "client-2", 6, 1));
        h.push(abandoned(300.0, "client-2", 6));
        h.push(reply(301.0, "client-1", 5)); // duplicated
        let v = check(&h, &requiring(&["restart"]));
        assert_eq!(v.verdict, Judgement::Invalid);
        assert_eq!(v.reason, "1 lost, 1 duplicated");
        assert!(v
            .summary_text()
            .starts_with("INVALID: 1 lost, 1 duplicated"));
    }

    #[test]
    fn an_interrupted_run_has_unfinished_requests_not_lost_ones() {
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1));
        h.push(sent(210.0, "client-2", 6, 1));
        let options = CheckOptions {
            interrupted: true,
            ..CheckOptions::default()
        };
        let v = check(&h, &options);
        assert_eq!(v.verdict, Judgement::Indeterminate, "{v:#?}");
        assert!(v.lost.is_empty());
        assert_eq!(v.unfinished, ["c1-6", "c2-6"]);
        assert!(v.interrupted);
        assert_eq!(
            v.reason,
            "interrupted before the run finished (2 requests still in flight)"
        );
        let text = v.summary_text();
        assert!(text.starts_with("INDETERMINATE (interrupted): "), "{text}");
        assert!(text.contains("unfinished (2): c1-6, c2-6"), "{text}");
        // What it did see go wrong still counts.
        h.push(reply(220.0, "client-1", 1));
        let v = check(&h, &options);
        assert_eq!(v.verdict, Judgement::Invalid);
        assert!(v
            .summary_text()
            .starts_with("INVALID (interrupted): 1 duplicated"));
        // Even a clean interrupted run is not valid: it did not finish.
        assert_eq!(check(&clean(), &options).verdict, Judgement::Indeterminate);
    }

    #[test]
    fn the_verdict_and_reason_serialise_as_strings() {
        let v = serde_json::to_value(check(&[], &requiring(&["kill"]))).unwrap();
        assert_eq!(v["verdict"], "indeterminate");
        assert_eq!(v["valid"], false);
        assert!(v["reason"].as_str().unwrap().contains("no kill fault"));
        assert_eq!(v["coverage"]["kill"]["injected"], 0);
        let v = serde_json::to_value(check(&clean(), &lax())).unwrap();
        assert_eq!(v["verdict"], "valid");
        let mut h = clean();
        h.push(sent(200.0, "client-1", 6, 1));
        assert_eq!(
            serde_json::to_value(check(&h, &lax())).unwrap()["verdict"],
            "invalid"
        );
    }

    fn bstar(t: f64, node: &str, state: &str) -> Record {
        rec(t, node, json!({"event": "bstar_state", "state": state}))
    }

    #[test]
    fn both_active_is_the_time_both_binary_star_nodes_said_active_at_once() {
        let history = [
            bstar(0.0, "primary", "PRIMARY"),
            bstar(1.0, "backup", "BACKUP"),
            bstar(2.0, "primary", "ACTIVE"),
            bstar(3.0, "backup", "PASSIVE"),
            // A split: the backup takes over at 100, the primary steps down at 350.
            bstar(100.0, "backup", "ACTIVE"),
            bstar(350.0, "primary", "PASSIVE"),
            // Another, still open when the history ends at 1000.
            bstar(900.0, "primary", "ACTIVE"),
            sent(1000.0, "client-1", 1, 1),
        ];
        let v = check(&history, &CheckOptions::default());
        assert_eq!(v.both_active_ms, Some(350));
        assert!(v
            .summary_text()
            .contains("binary star: both nodes active for 350 ms in all"));
        // Not a Binary Star run: no such finding at all.
        let v = check(&[sent(0.0, "client-1", 1, 1)], &CheckOptions::default());
        assert_eq!(v.both_active_ms, None);
        assert!(!v.summary_text().contains("binary star"));
        // A state with no `state` field is unreadable, not a panic.
        let bad = rec(5.0, "primary", json!({"event": "bstar_state"}));
        assert_eq!(check(&[bad], &CheckOptions::default()).unreadable, 1);
    }
}
