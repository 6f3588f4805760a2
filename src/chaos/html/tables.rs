//! The page's text sections: the verdict and its reasons, the counts, the faults, the
//! recovery tables, the links to each process's log and the run's configuration.

use std::fmt::Write as _;

use super::run::{Mark, Run};
use super::{esc, Findings, RunResults, MAX_LISTED};
use crate::event::verdict::{meaning_no_served_line, MEANING_UNREADABLE, MEANING_WRONG_REFUSED};

/// The run's configuration: the command that replays it, every flag, the build, the date and
/// the host. Nothing for results written before runs kept a record.
pub(super) fn configuration_section(page: &mut String, run: &crate::event::chaos::RunRecord) {
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

pub(super) fn verdict_section(page: &mut String, r: &RunResults) {
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

pub(super) fn counts_section(page: &mut String, r: &RunResults, skipped_lines: u64) {
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

pub(super) fn faults_section(page: &mut String, run: &Run) {
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
pub(super) fn recovery_section(page: &mut String, f: &Findings) {
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
pub(super) fn logs_section(page: &mut String, run: &Run) {
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
