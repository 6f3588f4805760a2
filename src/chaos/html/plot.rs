//! The throughput and latency plots, on the time line's axis.

use std::fmt::Write as _;

use super::axis::{down_shading, Axis};
use super::run::{pick, Run};
use super::{esc, MAX_POINTS};

pub(super) fn plot_section(page: &mut String, run: &Run) {
    let axis = Axis::new(run.end);
    let replies: Vec<(f64, Option<f64>)> = run
        .requests
        .iter()
        .flat_map(|r| r.replies.iter().map(|(t, l, _)| (*t, *l)))
        .collect();
    page.push_str("<h2>Throughput and latency</h2>\n");
    if replies.is_empty() {
        page.push_str("<p>No reply was accepted: nothing to plot.</p>\n");
        return;
    }
    // Throughput: replies per second in 60 buckets (every reply counted).
    const BUCKETS: usize = 60;
    let width = run.end / BUCKETS as f64;
    let mut counts = [0u64; BUCKETS];
    for (t, _) in &replies {
        counts[((t / width) as usize).min(BUCKETS - 1)] += 1;
    }
    let per_sec: Vec<f64> = counts
        .iter()
        .map(|&n| n as f64 / (width / 1000.0))
        .collect();
    let peak = per_sec.iter().copied().fold(1.0, f64::max);
    let (top, h) = (20.0, 120.0);
    let (ltop, lh) = (top + h + 30.0, 160.0);
    let height = ltop + lh + 30.0;
    axis.open_svg(page, "plot", height);
    let _ = write!(
        page,
        "<text x=\"6\" y=\"{:.1}\">replies/s</text><text x=\"6\" y=\"{:.1}\" fill=\"#777\">peak {peak:.0}</text>",
        top + 12.0,
        top + 26.0
    );
    // Down and frozen periods of every process, shaded behind both plots: where throughput
    // dips and latency climbs, the reader sees who was out.
    down_shading(page, run, &axis, top, ltop + lh, 0.45);
    // Axes with values: seconds below each plot, replies/s and ms beside them.
    axis.ticks(page, top, top + h);
    for frac in [0.0, 0.5, 1.0] {
        let y = top + h - frac * h;
        axis.value_line(page, y, &format!("{:.0}/s", peak * frac), "#555");
    }
    for (i, v) in per_sec.iter().enumerate() {
        let x = axis.x(i as f64 * width);
        let bh = v / peak * h;
        let _ = write!(
            page,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#5dade2\">\
             <title>{:.1}–{:.1}s: {v:.0} replies/s</title></rect>",
            top + h - bh,
            (axis.width / BUCKETS as f64 - 1.0).max(0.5),
            i as f64 * width / 1000.0,
            (i + 1) as f64 * width / 1000.0
        );
    }
    // Latency, log scale from 0.1 ms to the slowest reply.
    let lat: Vec<(f64, f64)> = replies
        .iter()
        .filter_map(|(t, l)| l.filter(|v| v.is_finite() && *v >= 0.0).map(|l| (*t, l)))
        .collect();
    let max = lat.iter().map(|p| p.1).fold(1.0, f64::max);
    let (lo, hi) = (0.1f64.log10(), max.max(1.0).log10() + 0.1);
    let ly = |v: f64| ltop + lh - (v.max(0.1).log10() - lo) / (hi - lo) * lh;
    let _ = write!(
        page,
        "<text x=\"6\" y=\"{:.1}\">latency (ms, log)</text>",
        ltop + 12.0
    );
    let mut decade = 0.1f64;
    while decade.log10() <= hi {
        let label = if decade < 1.0 {
            "0.1 ms".to_string()
        } else {
            format!("{decade:.0} ms")
        };
        axis.value_line(page, ly(decade), &label, "#777");
        decade *= 10.0;
    }
    axis.ticks(page, ltop, ltop + lh);
    for &i in &pick(&lat, MAX_POINTS, |_| false) {
        let (t, l) = lat[i];
        let _ = write!(
            page,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"#1f618d\" opacity=\"0.6\"/>",
            axis.x(t),
            ly(l)
        );
    }
    // The slowest reply per bucket, over every reply.
    let mut worst = [f64::NAN; BUCKETS];
    for (t, l) in &lat {
        let b = ((t / width) as usize).min(BUCKETS - 1);
        if worst[b].is_nan() || *l > worst[b] {
            worst[b] = *l;
        }
    }
    // A short dash per bucket: nothing is drawn across a bucket without replies.
    for (i, v) in worst.iter().enumerate().filter(|(_, v)| !v.is_nan()) {
        let _ = write!(
            page,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#c0392b\" \
             stroke-width=\"2\"><title>slowest reply {:.1}–{:.1}s: {v:.1} ms</title></line>",
            axis.x(i as f64 * width),
            axis.x((i + 1) as f64 * width),
            i as f64 * width / 1000.0,
            (i + 1) as f64 * width / 1000.0,
            y = ly(*v)
        );
    }
    for s in &run.strikes {
        let x = axis.x(s.t);
        let _ = write!(
            page,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
             stroke-dasharray=\"3,3\" opacity=\"0.6\"><title>{}</title></line>",
            ltop + lh,
            s.kind.colour(),
            esc(&s.label)
        );
    }
    page.push_str("</svg>\n");
    let l = &run.results.findings.latency_ms;
    let _ = writeln!(
        page,
        "<p class=\"note\">Bars: replies accepted per second ({BUCKETS} buckets, every reply). \
         Dots: each reply's latency, first send to reply{}; red dashes: the slowest reply per \
         bucket. Dashed lines: nemesis strikes. Shaded: a process down (red) or frozen (blue). p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms.</p>",
        if lat.len() > MAX_POINTS {
            format!(" ({MAX_POINTS} of {} shown, evenly sampled)", lat.len())
        } else {
            String::new()
        },
        l.p50,
        l.p90,
        l.p99,
        l.max
    );
}
