//! Unit tests of the page: what each section draws, what is bounded, what is escaped.

use serde_json::{json, Value};

use super::run::{pick, MarkKind};
use super::*;
use crate::event::verdict::{MEANING_NO_SERVED_LINE, MEANING_WRONG_REFUSED};
use crate::testkit::records;

fn rec(t: f64, source: &str, event: Value) -> Record {
    Record::new(t, source, event)
}

/// A small run: a broker, two workers (one killed by the nemesis, one crashing on its
/// own), a client with one clean request and one resent.
fn history() -> Vec<Record> {
    records(
        r#"
        1.0 broker {"event": "started", "role": "broker", "endpoint": "tcp://x"}
        2.0 worker-1 {"event": "started", "role": "worker", "endpoint": "tcp://x"}
        3.0 worker-2 {"event": "started", "role": "worker", "endpoint": "tcp://x"}
        10.0 client-1 {"event": "sent", "seq": 1, "request": "c1-1", "attempt": 1}
        11.0 worker-1 {"event": "served", "request": "c1-1", "cycle": 1, "bytes": 4, "work_ms": 0.0}
        12.0 client-1 {"event": "reply", "seq": 1, "request": "c1-1", "reply": "c1-1", "attempts": 1, "latency_ms": 2.0}
        20.0 client-1 {"event": "sent", "seq": 2, "request": "c1-2", "attempt": 1}
        21.0 nemesis {"event": "nemesis", "action": "kill", "target": "worker-1"}
        25.0 worker-2 {"event": "fault", "kind": "crash", "cycle": 3}
        26.0 nemesis {"event": "nemesis", "action": "died", "target": "worker-2"}
        40.0 nemesis {"event": "nemesis", "action": "start", "target": "worker-1"}
        41.0 nemesis {"event": "nemesis", "action": "start", "target": "worker-2"}
        1020.0 client-1 {"event": "retry", "seq": 2, "attempt": 1, "reason": "timeout"}
        1021.0 client-1 {"event": "sent", "seq": 2, "request": "c1-2", "attempt": 2}
        1022.0 worker-2 {"event": "served", "request": "c1-2", "cycle": 1, "bytes": 4, "work_ms": 0.0}
        1023.0 client-1 {"event": "reply", "seq": 2, "request": "c1-2", "reply": "c1-2", "attempts": 2, "latency_ms": 1003.0}
        "#,
    )
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
    assert!(page
        .contains("<tr class=\"bad\"><td>freeze</td><td class=\"n\">1</td><td class=\"n\">0</td>"));
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
    // A request's span must not read as a fault: far from every mark's colour (the freeze
    // mark and the request spans were both blue).
    let rgb = |hex: &str| -> [f64; 3] {
        let n = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
        [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff].map(f64::from)
    };
    let distance = |a: &str, b: &str| {
        let (a, b) = (rgb(a), rgb(b));
        (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt()
    };
    for span in [timeline::REQUEST, timeline::REQUEST_SHADE] {
        for k in kinds {
            let d = distance(span, k.colour());
            assert!(
                d >= 60.0,
                "request {span} and {k:?} {} look alike ({d:.0})",
                k.colour()
            );
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
        detections: vec![crate::event::chaos::Detection {
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
    assert!(page.contains(&esc(crate::event::verdict::MEANING_NO_SERVED_LINES_AT_ALL)));
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
