//! A chaos run's history: its lines ([`Record`]: what a child printed, and when the runner
//! read it), reading a saved `history.jsonl` back, and the facts the checker takes from each
//! line (a malformed one is a value, never a panic).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One line of a run's history: what a child (or the runner itself) printed, and when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Record {
    /// When the runner read the line, in milliseconds since the run started.
    pub t_ms: f64,
    /// Who printed it: `client-1`, `worker-2`, `broker`, `queue`, `proxy`, `nemesis`, …
    pub source: String,
    /// The JSON object as printed (`{"event": "...", ...}`).
    pub event: Value,
}

impl Record {
    /// A record of `event` from `source`, read at `t_ms`.
    pub fn new(t_ms: f64, source: impl Into<String>, event: Value) -> Self {
        Record {
            t_ms,
            source: source.into(),
            event,
        }
    }
}

/// Reads a JSON Lines history. Blank lines are skipped; lines that are not a [`Record`] are
/// skipped and counted (the second value).
pub fn read_history(text: &str) -> (Vec<Record>, u64) {
    let mut records = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            Err(_) => bad += 1,
        }
    }
    (records, bad)
}

/// Who printed a record, as far as the checker cares.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Client,
    /// A worker or server: reports `served` and its own faults.
    Service,
    Nemesis,
    Proxy,
}

/// `client-1` → client, `worker-2`/`server`/`primary`/`backup` (a Binary Star pair) →
/// service, …; `broker`, `queue`, `titanic` and anything else say nothing the checker uses.
pub(super) fn role(source: &str) -> Option<Role> {
    let family = source.split_once('-').map_or(source, |(family, _)| family);
    match family {
        "client" => Some(Role::Client),
        "worker" | "server" | "primary" | "backup" => Some(Role::Service),
        "nemesis" => Some(Role::Nemesis),
        "proxy" => Some(Role::Proxy),
        _ => None,
    }
}

/// The part of one record the checker uses.
pub(super) enum Fact<'a> {
    Sent {
        seq: u64,
        request: &'a str,
    },
    Reply {
        seq: u64,
        request: &'a str,
        reply: &'a str,
        latency_ms: Option<f64>,
    },
    Refused,
    Abandoned {
        seq: u64,
        request: Option<&'a str>,
    },
    Served {
        request: &'a str,
    },
    WorkerFault {
        kind: &'a str,
    },
    Nemesis {
        action: &'a str,
        target: Option<&'a str>,
    },
    ProxyFault {
        kind: &'a str,
    },
    /// A Binary Star node's state (`bstar_state`): active or not.
    BstarState {
        active: bool,
    },
    Ignored,
}

/// A known event with missing or wrongly typed fields.
pub(super) struct Unreadable;

fn req_u64(obj: &Map<String, Value>, name: &str) -> Result<u64, Unreadable> {
    obj.get(name).and_then(Value::as_u64).ok_or(Unreadable)
}

fn req_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, Unreadable> {
    obj.get(name).and_then(Value::as_str).ok_or(Unreadable)
}

/// Absent or null is `None`; present, it must be a string.
fn opt_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Unreadable> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Unreadable),
    }
}

/// Reads one record of a known source. Unknown events are `Ignored`.
pub(super) fn parse(role: Role, record: &Record) -> Result<Fact<'_>, Unreadable> {
    if !record.t_ms.is_finite() {
        return Err(Unreadable);
    }
    let obj = record.event.as_object().ok_or(Unreadable)?;
    let event = req_str(obj, "event")?;
    Ok(match (role, event) {
        (Role::Client, "sent") => Fact::Sent {
            seq: req_u64(obj, "seq")?,
            request: req_str(obj, "request")?,
        },
        (Role::Client, "reply") => Fact::Reply {
            seq: req_u64(obj, "seq")?,
            request: req_str(obj, "request")?,
            reply: req_str(obj, "reply")?,
            // Only feeds the percentiles: a bad latency does not make the reply unreadable.
            latency_ms: obj.get("latency_ms").and_then(Value::as_f64),
        },
        (Role::Client, "mismatch") => {
            req_u64(obj, "seq")?;
            Fact::Refused
        }
        (Role::Client, "abandoned") => Fact::Abandoned {
            seq: req_u64(obj, "seq")?,
            request: opt_str(obj, "request")?,
        },
        (Role::Service, "served") => Fact::Served {
            request: req_str(obj, "request")?,
        },
        (Role::Service, "bstar_state") => Fact::BstarState {
            active: req_str(obj, "state")? == "ACTIVE",
        },
        (Role::Service, "fault") => Fact::WorkerFault {
            kind: req_str(obj, "kind")?,
        },
        (Role::Nemesis, "nemesis") => Fact::Nemesis {
            action: req_str(obj, "action")?,
            target: opt_str(obj, "target")?,
        },
        (Role::Proxy, "proxy_fault") => Fact::ProxyFault {
            kind: req_str(obj, "kind")?,
        },
        _ => Fact::Ignored,
    })
}
