//! `report.html`: a chaos run with `--out DIR` writes it, `pirate chaos report DIR` renders the
//! same page again from the files the run left, and a directory that is not a run's is a
//! one-line usage error.

mod common;

use std::path::PathBuf;

use common::{out_dir, run};

#[test]
fn a_run_writes_report_html_and_chaos_report_renders_the_same_page_again() {
    let dir = out_dir("chaos-report-run");
    let d = dir.to_str().unwrap();
    let args = [
        "chaos",
        "run",
        "--seed",
        "7",
        "--workers",
        "2",
        "--clients",
        "1",
        "--requests",
        "10",
        "--duration",
        "1500ms",
        "--nemesis",
        "kill",
        "--nemesis-interval",
        "1s",
        "--restart-delay",
        "200ms",
        "--heartbeat",
        "100ms",
        "--timeout",
        "500ms",
        "--out",
        d,
    ];
    // Not a terminal, and NO_COLOR: the live view's last table and the verdict, plain.
    let output = common::pirate(&args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(code == 0 || code == 1, "exit {code}: {err}");
    live_view_is_plain_and_complete(&err);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let page = std::fs::read_to_string(dir.join("report.html")).expect("report.html written");
    for process in ["broker", "worker-1", "worker-2", "client-1"] {
        assert!(
            page.contains(&format!("data-process=\"{process}\"")),
            "no lane for {process}"
        );
    }
    let verdict = summary["verdict"].as_str().unwrap();
    assert!(page.contains(&format!("class=\"verdict {verdict}\"")));
    assert!(page.contains(&format!("<b>{}</b>", verdict.to_uppercase())));
    if summary["injected"]["kill"].as_u64().unwrap_or(0) > 0 {
        assert!(page.contains("nemesis kills worker-"), "the kill is marked");
    }
    assert!(
        page.contains("class=\"request\""),
        "requests drawn as spans"
    );
    assert!(!page.contains("<script") && !page.contains("src=\"http"));
    // Each process's log is linked, exists beside the page, and every line of it starts
    // with the run-clock time: `[  3.142s] `.
    for process in ["broker", "worker-1", "client-1"] {
        assert!(page.contains(&format!("<a href=\"logs/{process}.log\">")));
        let log = std::fs::read_to_string(dir.join(format!("logs/{process}.log"))).unwrap();
        assert!(!log.is_empty(), "{process}.log is empty");
        for line in log.lines() {
            let stamp = line.get(..11).unwrap_or("");
            let secs = stamp.strip_prefix('[').and_then(|s| s.strip_suffix("s] "));
            assert!(
                secs.is_some_and(|s| s.trim().parse::<f64>().is_ok()),
                "{process}.log: no time stamp: {line}"
            );
        }
    }
    if summary["findings"]["recoveries"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
    {
        assert!(page.contains("<h2>Recovery</h2>"), "recovery times shown");
    }

    // Rendered again from the files: the same page, its path on stdout.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let (code, out, err) = run(&["chaos", "report", d], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), dir.join("report.html").display().to_string());
    let again = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(again == page, "the re-rendered page differs");
    let (code, out, _) = run(&["chaos", "report", "--json", d], None);
    assert_eq!(code, 0);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        line["report"],
        dir.join("report.html").display().to_string()
    );
}

/// The last table stays above the verdict: why each process restarted, each client's state,
/// the broker's own counts (it prints no line per request, so "served" would always be 0),
/// and no colour codes.
fn live_view_is_plain_and_complete(err: &str) {
    assert!(
        !err.contains('\x1b'),
        "colour codes without a terminal: {err}"
    );
    let table: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("chaos: end phase"))
        .collect();
    assert!(!table.is_empty(), "no last table: {err}");
    let row = |name: &str| {
        table
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {err}"))
            .to_string()
    };
    let broker = row("broker");
    assert!(
        broker.contains("requests ") && broker.contains("since its last start"),
        "{broker}"
    );
    assert!(!broker.contains("served"), "{broker}");
    assert!(row("client-1").contains("done"), "{err}");
    assert!(table[1].contains("restarts (after)"), "{err}");
    // A worker restarted after the nemesis killed it: its row says so.
    for line in err.lines() {
        let Some(rest) = line.strip_prefix("I: restarted ") else {
            continue;
        };
        let (name, cause) = rest
            .split_once(" (after ")
            .expect("restarted NAME (after CAUSE)");
        let cause = cause.trim_end_matches(')');
        assert!(row(name).contains(cause), "{name} after {cause}: {err}");
    }
    let verdict = table.iter().find(|l| {
        ["VALID", "INVALID", "INDETERMINATE"]
            .iter()
            .any(|v| l.starts_with(v))
    });
    assert!(verdict.is_some(), "verdict after the table: {err}");
}

#[test]
fn a_missing_or_corrupt_run_directory_is_a_one_line_usage_error() {
    let missing = out_dir("chaos-report-missing");
    let corrupt = out_dir("chaos-report-corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    let check = |dir: &PathBuf, what: &str| {
        let (code, out, err) = run(&["chaos", "report", dir.to_str().unwrap()], None);
        assert_eq!(code, 2, "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.starts_with("error: "), "{what}: {err}");
        assert!(out.is_empty(), "{what}: {out}");
        assert!(!dir.join("report.html").exists(), "{what}: no page written");
        err
    };
    assert!(check(&missing, "missing").contains("results.json"));
    // An empty directory: no results.
    check(&corrupt, "empty");
    std::fs::write(corrupt.join("results.json"), "{ not json").unwrap();
    assert!(check(&corrupt, "corrupt results").contains("results.json"));
    std::fs::write(corrupt.join("results.json"), "{\"seed\": 1}").unwrap();
    assert!(check(&corrupt, "no verdict").contains("no verdict"));
    std::fs::write(
        corrupt.join("results.json"),
        "{\"seed\": 1, \"pattern\": \"lazy\", \"verdict\": \"valid\"}",
    )
    .unwrap();
    assert!(check(&corrupt, "no history").contains("history.jsonl"));
    std::fs::write(corrupt.join("history.jsonl"), "garbage\n\u{1}\u{2}\n").unwrap();
    assert!(check(&corrupt, "corrupt history").contains("history.jsonl"));
    // A usage error from clap too: DIR is required.
    let (code, _, err) = run(&["chaos", "report"], None);
    assert_eq!(code, 2, "{err}");
}
