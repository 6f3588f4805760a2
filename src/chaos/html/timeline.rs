//! The time line: a lane per process with its states and fault marks, request spans with
//! their resends, the nemesis strikes written above, and the legend that keys its colours.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::axis::{down_shading, Axis};
use super::network::network_shading;
use super::run::{pick, Mark, MarkKind, Outcome, Req, Run, State};
use super::{cut, esc, MAX_MARKS, MAX_SPANS};
use crate::event::chaos::NetworkFault;

/// Rows of request spans in a client lane: greedy, at most this many.
const SPAN_ROWS: usize = 6;

pub(super) fn timeline_section(page: &mut String, run: &Run, network: &[NetworkFault]) {
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
    axis.open_svg(page, "timeline", height);
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

pub(super) fn legend() -> String {
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
    out.push_str(&format!(
        "<span><i class=\"sw\" style=\"background:{REQUEST}\"></i>request, send to reply \
             (tick: resend)</span><span><i class=\"sw\" style=\"background:{UNANSWERED}\"></i>\
             abandoned or never answered</span>"
    ));
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

/// A request answered once, and the lighter shade every other one takes, so back-to-back
/// requests stay apart: brown, unlike any fault mark (a freeze is blue, as frozen lanes are).
pub(super) const REQUEST: &str = "#6d4c41";
pub(super) const REQUEST_SHADE: &str = "#bcaaa4";
/// A request abandoned, answered more than once, or never answered.
pub(super) const UNANSWERED: &str = "#e74c3c";

/// One request's span; `shade` alternates [`REQUEST`] and [`REQUEST_SHADE`].
fn span_svg(page: &mut String, axis: &Axis, r: &Req, y: f64, run_end: f64, shade: bool) {
    let (s, e) = (r.start(), r.end(run_end));
    let (x1, x2) = (axis.x(s), axis.x(e));
    let outcome = r.outcome();
    let colour = if outcome == Outcome::Replied && r.replies.len() == 1 {
        if shade {
            REQUEST_SHADE
        } else {
            REQUEST
        }
    } else {
        UNANSWERED
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
