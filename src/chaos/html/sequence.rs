//! A sequence diagram per request (behind a `<details>`): each attempt, the fault it probably
//! met, and the reply.

use std::fmt::Write as _;

use super::run::{lane_rank, next_send, pick, Outcome, Req, Run};
use super::{cut, esc, MAX_SEQUENCES};
use crate::chaos::checker::{natural_cmp, preview};

pub(super) fn sequences_section(page: &mut String, run: &Run) {
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
