//! The `--json` output: one JSON object per line, each an [`Event`] plus the two fields every
//! line carries, `ts` (when it was written, RFC 3339 UTC, milliseconds) and `role` (which
//! subcommand wrote it, one of [`ROLES`]). [`schema`] is the documented JSON Schema of a line
//! (`pirate generate schema`, `docs/events.schema.json`), derived from the event types so that
//! it cannot drift from what is printed.

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::event::Event;

/// Every `role` a line can carry: the subcommand that printed it (`proxy` is
/// `pirate chaos proxy`; `generate` prints documents such as a key pair).
pub const ROLES: &[&str] = &[
    "client", "server", "queue", "worker", "broker", "titanic", "chaos", "proxy", "bench",
    "generate",
];

/// `event` as one `--json` line (without the newline), written now by `role`.
pub fn line(event: &Event, role: &str) -> String {
    stamped(event, role, SystemTime::now())
}

/// `event` as a line written at `at` by `role`: `ts` and `role` first, then the event's own
/// fields in their declared order (`event` first).
pub fn stamped(event: &Event, role: &str, at: SystemTime) -> String {
    let fields = serde_json::to_string(event).expect("events always serialise");
    // Every event is an object with at least its `event` tag: `{"event":…}`.
    let rest = fields
        .strip_prefix('{')
        .expect("events serialise as objects");
    let ts = humantime::format_rfc3339_millis(at).to_string();
    format!(
        "{{\"ts\":{},\"role\":{},{rest}",
        Value::from(ts),
        Value::from(role)
    )
}

/// The JSON Schema (2020-12) of one `--json` line.
pub fn schema() -> Value {
    let mut root = serde_json::to_value(schemars::schema_for!(Event)).expect("schemas serialise");
    let object = root.as_object_mut().expect("a schema is an object");
    object.insert("title".into(), json!("pirate --json line"));
    object.insert(
        "description".into(),
        json!(
            "One line of `pirate --json` output: an event of the role that printed it, with \
             `ts` (RFC 3339, UTC, milliseconds) and `role` (the subcommand). `event` names \
             the kind; the last line of a run is its `summary`."
        ),
    );
    // Beside the `oneOf` of the events: every line also has these two.
    let properties = object
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("properties is an object");
    properties.insert(
        "ts".into(),
        json!({"type": "string", "format": "date-time",
               "description": "When the line was written (RFC 3339, UTC, milliseconds)."}),
    );
    properties.insert(
        "role".into(),
        json!({"enum": ROLES, "description": "The subcommand that printed the line."}),
    );
    let required = object
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("required is an array");
    required.extend([json!("ts"), json!("role")]);
    root
}

/// [`schema`] as the text of `docs/events.schema.json`.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("schemas serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_line_carries_ts_and_role_before_the_events_own_fields() {
        let event = Event::WorkerReady {
            worker: "w1".into(),
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_764_590_400_123);
        assert_eq!(
            stamped(&event, "queue", at),
            r#"{"ts":"2025-12-01T12:00:00.123Z","role":"queue","event":"worker_ready","worker":"w1"}"#
        );
        let now: Value = serde_json::from_str(&line(&event, "queue")).unwrap();
        assert!(now["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_schema_requires_ts_role_and_event_and_names_every_kind() {
        let schema = schema();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(required.contains(&"ts") && required.contains(&"role"));
        let text = schema.to_string();
        for kind in [
            "started",
            "reply",
            "served",
            "summary",
            "worker_ready",
            "refused",
        ] {
            assert!(text.contains(&format!("\"{kind}\"")), "{kind} missing");
        }
    }

    #[test]
    fn the_schema_accepts_what_is_printed_and_rejects_what_is_not() {
        let validator = jsonschema::validator_for(&schema()).unwrap();
        let printed =
            |event: &Event| serde_json::from_str::<Value>(&line(event, "client")).unwrap();
        let reply = crate::testkit::reply_event(b"1");
        assert!(validator.is_valid(&printed(&reply)));
        let summary = Event::Summary(crate::event::Report::Client(
            crate::event::ClientReport::new("tcp://127.0.0.1:1"),
        ));
        assert!(validator.is_valid(&printed(&summary)));
        let mut no_ts = printed(&reply);
        no_ts.as_object_mut().unwrap().remove("ts");
        assert!(!validator.is_valid(&no_ts));
        let mut bad_role = printed(&reply);
        bad_role["role"] = json!("worker (mdp echo)");
        assert!(!validator.is_valid(&bad_role));
        let mut unknown = printed(&reply);
        unknown["event"] = json!("teleported");
        assert!(!validator.is_valid(&unknown));
        let mut wrong_type = printed(&reply);
        wrong_type["seq"] = json!("one");
        assert!(!validator.is_valid(&wrong_type));
    }
}
