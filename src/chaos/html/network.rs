//! `--net namespaces`: each network fault shaded across the lanes it cut, with who noticed
//! and when it recovered, and its table.

use std::fmt::Write as _;

use super::axis::Axis;
use super::esc;
use super::run::Run;
use crate::event::chaos::NetworkFault;

/// "noticed by worker-1 in 0.76 s, broker 0.80 s (liveness 0.75 s); first reply 1.9 s after
/// it struck": what a network fault's shading says beside it, readable without hovering.
fn network_words(f: &NetworkFault) -> String {
    let mut words = format!("{} {}", f.kind, f.target);
    if f.detections.is_empty() {
        words.push_str(": nobody noticed");
    } else {
        let first: Vec<String> = f
            .detections
            .iter()
            .take(3)
            .map(|d| format!("{} {:.2} s", d.source, d.after_ms / 1000.0))
            .collect();
        let more = f.detections.len().saturating_sub(3);
        let _ = write!(words, ": noticed by {}", first.join(", "));
        if more > 0 {
            let _ = write!(words, " and {more} more");
        }
    }
    let _ = write!(words, " (liveness {:.2} s)", f.liveness_ms / 1000.0);
    match f.recovery_ms {
        Some(r) => {
            let _ = write!(
                words,
                "; first reply after the heal {:.2} s after it struck",
                r / 1000.0
            );
        }
        None => words.push_str("; no reply after the heal"),
    }
    words
}

/// The short form written beside the shading: "partition: noticed 0.74 s (liveness 0.75 s),
/// reply 1.55 s" (the table below the time line lists every role).
fn network_label(f: &NetworkFault) -> String {
    let noticed = f
        .detections
        .iter()
        .map(|d| d.after_ms)
        .min_by(f64::total_cmp)
        .map_or("not noticed".to_string(), |t| {
            format!("noticed {:.2} s", t / 1000.0)
        });
    let reply = f.recovery_ms.map_or("no reply after".to_string(), |r| {
        format!("reply {:.2} s", r / 1000.0)
    });
    format!(
        "{}: {noticed} (liveness {:.2} s), {reply}",
        f.kind,
        f.liveness_ms / 1000.0
    )
}

/// Shades each network fault across the lanes of the hosts it cut, from its strike to its
/// heal (or the end of the run), with its detection and recovery written beside it.
pub(super) fn network_shading(
    page: &mut String,
    axis: &Axis,
    run: &Run,
    heights: &[f64],
    top: f64,
    network: &[NetworkFault],
) {
    let mut ys = Vec::with_capacity(heights.len());
    let mut y = top;
    for h in heights {
        ys.push(y);
        y += h;
    }
    for f in network {
        let (x1, x2) = (
            axis.x(f.struck_ms),
            axis.x(f.healed_ms.unwrap_or(run.end).max(f.struck_ms)),
        );
        let colour = match f.kind.as_str() {
            "partition" | "split" | "reset" => "#c0392b",
            "oneway" => "#d35400",
            _ => "#8e44ad",
        };
        let mut first_y: Option<f64> = None;
        for ((lane, &ly), &h) in run.lanes.iter().zip(&ys).zip(heights) {
            if !f.hosts.contains(&lane.name) {
                continue;
            }
            first_y.get_or_insert(ly);
            let _ = write!(
                page,
                "<rect class=\"netfault\" data-kind=\"{}\" x=\"{x1:.1}\" y=\"{ly:.1}\" \
                 width=\"{:.1}\" height=\"{h:.1}\" fill=\"{colour}\" opacity=\"0.15\">\
                 <title>{}</title></rect>",
                esc(&f.kind),
                (x2 - x1).max(1.0),
                esc(&network_words(f))
            );
        }
        if let Some(ly) = first_y {
            let _ = write!(
                page,
                "<text class=\"netfault-words\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" \
                 fill=\"{colour}\">{}</text>",
                x1 + 2.0,
                ly + 21.0,
                esc(&network_label(f))
            );
        }
    }
}

/// The network faults of a `--net namespaces` run as a table: what each cut, when, who
/// noticed it how soon against the liveness window, and when replies came back.
pub(super) fn network_section(page: &mut String, network: &[NetworkFault]) {
    if network.is_empty() {
        return;
    }
    page.push_str(
        "<h2>Network faults</h2>\n<table id=\"network\"><tr><th>fault</th><th>cut</th>\
         <th>struck</th><th>healed</th><th>noticed by (after the strike)</th>\
         <th>liveness</th><th>replies during</th><th>first reply after the heal</th></tr>\n",
    );
    for f in network {
        let noticed: Vec<String> = f
            .detections
            .iter()
            .map(|d| format!("{} ({}) {:.2} s", d.source, d.event, d.after_ms / 1000.0))
            .collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{:.2} s</td><td class=\"n\">{}</td>\
             <td>{}</td><td class=\"n\">{:.2} s</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&f.kind),
            esc(&f.target),
            f.struck_ms / 1000.0,
            f.healed_ms
                .map_or("never (run ended)".into(), |h| format!("{:.2} s", h / 1000.0)),
            if noticed.is_empty() {
                "nobody".to_string()
            } else {
                esc(&noticed.join(", "))
            },
            f.liveness_ms / 1000.0,
            f.replies_during,
            f.recovery_ms
                .map_or("none".into(), |r| format!("{:.2} s after it struck", r / 1000.0)),
        );
    }
    page.push_str("</table>\n");
}
