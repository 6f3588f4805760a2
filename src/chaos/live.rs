//! `pirate chaos`'s live view as text: what each process is doing (a client waiting,
//! retrying or idle and what it abandoned; a broker's or queue's own counts), the status
//! table, and the verdict painted for a terminal. Pure: the runner feeds [`Tracker`] the
//! lines its children print, the renderer prints what [`table`] and [`paint`] return.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::event::chaos::ProcessStatus;
use crate::event::verdict::Judgement;

/// What one client has in flight: seq → (request text, attempt, a retry is pending).
#[derive(Default, Debug)]
struct ClientView {
    in_flight: BTreeMap<u64, (String, u64, bool)>,
    abandoned: u64,
}

/// What a broker, queue, Titanic or proxy has said about itself.
#[derive(Default, Debug)]
struct HubView {
    /// Live counts from its events: `workers ready`, `workers expired`, `requests dropped`.
    events: BTreeMap<&'static str, u64>,
    /// Its last summary's counts (the summary comes when it is stopped politely, so this is
    /// its last incarnation's).
    summary: Vec<(String, u64)>,
}

/// Follows the children's lines for the live view. Bounded: a client holds at most its
/// window in flight (entries leave on reply or abandon; at most [`IN_FLIGHT_CAP`] kept).
#[derive(Default, Debug)]
pub struct Tracker {
    clients: BTreeMap<String, ClientView>,
    hubs: BTreeMap<String, HubView>,
}

/// Requests in flight remembered per client, at most (the window is at most 1000).
pub const IN_FLIGHT_CAP: usize = 1024;

/// Summary fields of a broker, queue, Titanic or proxy worth showing, in this order.
const SUMMARY_COUNTS: [(&str, &str); 9] = [
    ("requests", "requests"),
    ("dispatched", "dispatched"),
    ("routed", "routed"),
    ("replies", "replies"),
    ("replied", "replies"),
    ("requests_lost", "dropped with their dead worker"),
    ("requests_expired", "expired"),
    ("forwarded_up", "forwarded up"),
    ("forwarded_down", "forwarded down"),
];

/// A broker, queue, Titanic or proxy: it serves nothing itself, it passes requests on.
pub fn is_hub(source: &str) -> bool {
    let family = source.split_once('-').map_or(source, |(f, _)| f);
    matches!(family, "broker" | "queue" | "titanic" | "proxy")
}

impl Tracker {
    /// Takes in one line a child printed.
    pub fn observe(&mut self, source: &str, event: &Value) {
        let kind = event.get("event").and_then(Value::as_str).unwrap_or("");
        if source.starts_with("client") {
            let c = self.clients.entry(source.to_string()).or_default();
            let Some(seq) = event.get("seq").and_then(Value::as_u64) else {
                return;
            };
            match kind {
                "sent" => {
                    let attempt = event.get("attempt").and_then(Value::as_u64).unwrap_or(1);
                    let text = event
                        .get("request")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .take(40)
                        .collect();
                    if c.in_flight.len() < IN_FLIGHT_CAP || c.in_flight.contains_key(&seq) {
                        c.in_flight.insert(seq, (text, attempt, false));
                    }
                }
                "retry" => {
                    if let Some(f) = c.in_flight.get_mut(&seq) {
                        f.2 = true;
                    }
                }
                "reply" => {
                    c.in_flight.remove(&seq);
                }
                "abandoned" => {
                    c.in_flight.remove(&seq);
                    c.abandoned += 1;
                }
                _ => {}
            }
        } else if is_hub(source) {
            let h = self.hubs.entry(source.to_string()).or_default();
            let count = match kind {
                "worker_ready" | "service_worker_ready" => Some("workers ready"),
                "worker_expired" => Some("workers expired"),
                "request_dropped" => Some("requests dropped"),
                "summary" => {
                    h.summary = SUMMARY_COUNTS
                        .iter()
                        .filter_map(|(field, label)| {
                            // The rarer counts only when they happened.
                            let always =
                                matches!(*field, "requests" | "routed" | "replies" | "replied");
                            event
                                .get(*field)
                                .and_then(Value::as_u64)
                                .filter(|&n| n > 0 || always)
                                .map(|n| (label.to_string(), n))
                        })
                        .collect();
                    None
                }
                _ => None,
            };
            if let Some(count) = count {
                *h.events.entry(count).or_default() += 1;
            }
        }
    }

    /// Requests `client` gave up on so far.
    pub fn abandoned(&self, client: &str) -> u64 {
        self.clients.get(client).map_or(0, |c| c.abandoned)
    }

    /// What `source` is doing, in words; `running`: its process is alive.
    ///
    /// A client: `waiting for c1-7`, `retrying c1-7 (attempt 3)`, `idle` (nothing in
    /// flight) or `done` (exited). A broker or queue: its summary's counts once it has
    /// printed one, else what its events counted. Anything else: empty.
    pub fn activity(&self, source: &str, running: bool) -> String {
        if source.starts_with("client") {
            let Some(c) = self.clients.get(source) else {
                return if running { "idle" } else { "done" }.to_string();
            };
            if !running {
                return "done".to_string();
            }
            let retrying: Vec<&(String, u64, bool)> = c
                .in_flight
                .values()
                .filter(|(_, attempt, retry)| *attempt > 1 || *retry)
                .collect();
            return match (c.in_flight.len(), retrying.first()) {
                (0, _) => "idle".to_string(),
                (_, Some((text, attempt, retry))) => {
                    let next = if *retry { attempt + 1 } else { *attempt };
                    let more = if retrying.len() > 1 {
                        format!(" and {} more", retrying.len() - 1)
                    } else {
                        String::new()
                    };
                    format!("retrying {text} (attempt {next}){more}")
                }
                (1, None) => {
                    let (text, _, _) = c.in_flight.values().next().expect("one in flight");
                    format!("waiting for {text}")
                }
                (n, None) => format!("waiting for {n} replies"),
            };
        }
        let Some(h) = self.hubs.get(source) else {
            return String::new();
        };
        let parts: Vec<String> = if h.summary.is_empty() {
            h.events.iter().map(|(k, n)| format!("{k} {n}")).collect()
        } else {
            h.summary
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .chain(std::iter::once("since its last start".to_string()))
                .collect()
        };
        parts.join(", ")
    }
}

/// "2 (1 own crash, 1 nemesis)", or "0".
pub fn restarts_text(p: &ProcessStatus) -> String {
    if p.restarted_after.is_empty() {
        return p.restarts.to_string();
    }
    let why: Vec<String> = p
        .restarted_after
        .iter()
        .map(|(cause, n)| format!("{n} {cause}"))
        .collect();
    format!("{} ({})", p.restarts, why.join(", "))
}

/// The live view's table, one line per process.
pub fn table(elapsed_ms: u64, phase: &str, processes: &[ProcessStatus]) -> String {
    let mut out = format!("chaos: {phase} phase, {:.1}s", elapsed_ms as f64 / 1000.0);
    let _ = write!(
        out,
        "\n  {:<10} {:<8} {:<36} doing",
        "process", "state", "restarts (after)"
    );
    for p in processes {
        let doing = if p.name.starts_with("client") {
            let mut d = format!("replies {}, {}", p.count, p.activity);
            if p.abandoned > 0 {
                let _ = write!(d, ", abandoned {}", p.abandoned);
            }
            d
        } else if p.activity.is_empty() {
            format!("served {}", p.count)
        } else {
            p.activity.clone()
        };
        let _ = write!(
            out,
            "\n  {:<10} {:<8} {:<36} {doing}",
            p.name,
            p.state,
            restarts_text(p)
        );
    }
    out
}

/// Colour is wanted on a terminal unless `NO_COLOR` is set to anything but empty
/// (<https://no-color.org>).
pub fn colour_wanted(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `summary` with its first word (the verdict's headline) in bold green, red or yellow when
/// `colour`; unchanged otherwise.
pub fn paint(summary: &str, verdict: Judgement, colour: bool) -> String {
    let head = verdict.headline();
    if !colour || !summary.starts_with(head) {
        return summary.to_string();
    }
    let code = match verdict {
        Judgement::Valid => "32",
        Judgement::Invalid => "31",
        Judgement::Indeterminate => "33",
    };
    format!("\x1b[1;{code}m{head}\x1b[0m{}", &summary[head.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(name: &str, state: &str, count: u64, activity: &str) -> ProcessStatus {
        ProcessStatus {
            name: name.into(),
            state: state.into(),
            restarts: 0,
            count,
            restarted_after: BTreeMap::new(),
            activity: activity.into(),
            abandoned: 0,
        }
    }

    #[test]
    fn a_client_is_waiting_retrying_idle_or_done_and_counts_what_it_abandoned() {
        let mut t = Tracker::default();
        assert_eq!(t.activity("client-1", true), "idle");
        // Each line the client prints, and what it is doing after it.
        for (line, doing) in [
            (
                json!({"event": "sent", "seq": 1, "request": "c1-1", "attempt": 1}),
                "waiting for c1-1",
            ),
            (
                json!({"event": "retry", "seq": 1, "attempt": 1, "reason": "timeout"}),
                "retrying c1-1 (attempt 2)",
            ),
            (
                json!({"event": "sent", "seq": 1, "request": "c1-1", "attempt": 2}),
                "retrying c1-1 (attempt 2)",
            ),
            (
                json!({"event": "abandoned", "seq": 1, "request": "c1-1", "attempts": 2}),
                "idle",
            ),
        ] {
            t.observe("client-1", &line);
            assert_eq!(t.activity("client-1", true), doing, "after {line}");
        }
        assert_eq!(t.abandoned("client-1"), 1);
        t.observe(
            "client-1",
            &json!({"event": "sent", "seq": 2, "request": "c1-2", "attempt": 1}),
        );
        t.observe(
            "client-1",
            &json!({"event": "sent", "seq": 3, "request": "c1-3", "attempt": 1}),
        );
        assert_eq!(t.activity("client-1", true), "waiting for 2 replies");
        t.observe(
            "client-1",
            &json!({"event": "reply", "seq": 2, "request": "c1-2", "reply": "c1-2"}),
        );
        assert_eq!(t.activity("client-1", true), "waiting for c1-3");
        assert_eq!(t.activity("client-1", false), "done");
    }

    #[test]
    fn a_broker_shows_its_own_counts_live_then_its_summary() {
        let mut t = Tracker::default();
        for _ in 0..3 {
            t.observe(
                "broker",
                &json!({"event": "service_worker_ready", "worker": "w", "service": "echo"}),
            );
        }
        t.observe(
            "broker",
            &json!({"event": "worker_expired", "worker": "w", "busy": true}),
        );
        assert_eq!(
            t.activity("broker", true),
            "workers expired 1, workers ready 3"
        );
        t.observe(
            "broker",
            &json!({"event": "summary", "requests": 139, "dispatched": 140, "replies": 139,
                "requests_lost": 1, "requests_expired": 0}),
        );
        assert_eq!(
            t.activity("broker", false),
            "requests 139, dispatched 140, replies 139, dropped with their dead worker 1, since its last start"
        );
        t.observe(
            "queue",
            &json!({"event": "summary", "routed": 5, "replied": 4}),
        );
        assert_eq!(
            t.activity("queue", false),
            "routed 5, replies 4, since its last start"
        );
        assert_eq!(t.activity("worker-1", true), "");
    }

    #[test]
    fn the_table_says_why_each_process_restarted_and_what_it_does() {
        let mut w = status("worker-1", "up", 52, "");
        w.restarts = 3;
        w.restarted_after = BTreeMap::from([("own crash".into(), 2), ("nemesis".into(), 1)]);
        let mut c = status("client-1", "up", 63, "retrying c1-9 (attempt 2)");
        c.abandoned = 1;
        let b = status("broker", "up", 0, "workers ready 5");
        let text = table(3200, "fault", &[b, w, c]);
        assert!(text.starts_with("chaos: fault phase, 3.2s"), "{text}");
        assert!(text.contains("3 (1 nemesis, 2 own crash)"), "{text}");
        assert!(text.contains("replies 63, retrying c1-9 (attempt 2), abandoned 1"));
        assert!(text.contains("workers ready 5"));
        assert!(!text.contains("served 0"), "{text}");
        assert!(text.contains("served 52"));
    }

    #[test]
    fn the_verdict_is_coloured_only_on_a_terminal_without_no_color() {
        let s = "VALID: nothing lost\nrequests: 3";
        assert_eq!(paint(s, Judgement::Valid, false), s);
        let painted = paint(s, Judgement::Valid, true);
        assert_eq!(painted, "\x1b[1;32mVALID\x1b[0m: nothing lost\nrequests: 3");
        assert!(paint("INVALID: 1 lost", Judgement::Invalid, true).starts_with("\x1b[1;31m"));
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(std::ffi::OsStr::new(""))));
        assert!(!colour_wanted(true, Some(std::ffi::OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }
}
