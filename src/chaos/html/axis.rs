//! The horizontal geometry the time line and the plots share (time to x, ticks with values),
//! and the down and frozen periods shaded across them.

use std::fmt::Write as _;

use super::esc;
use super::run::{Run, State};

/// Horizontal geometry shared by the time line and the plot.
pub(super) struct Axis {
    pub(super) left: f64,
    pub(super) width: f64,
    pub(super) end: f64,
}

impl Axis {
    pub(super) const LEFT: f64 = 170.0;
    pub(super) const WIDTH: f64 = 1080.0;

    pub(super) fn new(end: f64) -> Axis {
        Axis {
            left: Axis::LEFT,
            width: Axis::WIDTH,
            end: end.max(1.0),
        }
    }

    pub(super) fn x(&self, t_ms: f64) -> f64 {
        self.left + (t_ms.clamp(0.0, self.end) / self.end) * self.width
    }

    /// A round tick step in ms giving about ten ticks.
    pub(super) fn step(&self) -> f64 {
        let raw = self.end / 10.0;
        let mag = 10f64.powf(raw.log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag)
    }

    /// Opens the `<svg>` element `id`, `height` high and as wide as the axis with its margins
    /// (the time line and the plot line up so).
    pub(super) fn open_svg(&self, page: &mut String, id: &str, height: f64) {
        let width = self.left + self.width + 20.0;
        let _ = write!(
            page,
            "<svg id=\"{id}\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\">",
        );
    }

    /// A horizontal grid line across the plot at `y`, its value `label` beside it on the
    /// left, in `fill`.
    pub(super) fn value_line(&self, svg: &mut String, y: f64, label: &str, fill: &str) {
        let _ = write!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{fill}\">{label}</text>",
            self.left,
            self.left + self.width,
            self.left - 4.0,
            y + 4.0,
        );
    }

    pub(super) fn ticks(&self, svg: &mut String, top: f64, bottom: f64) {
        let step = self.step();
        let mut t = 0.0;
        while t <= self.end + 0.001 {
            let x = self.x(t);
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\">{}s</text>",
                bottom + 12.0,
                fmt_secs(t)
            );
            t += step;
        }
    }
}

fn fmt_secs(ms: f64) -> String {
    let s = ms / 1000.0;
    if (s - s.round()).abs() < 1e-9 {
        format!("{}", s.round() as i64)
    } else {
        format!("{s:.1}")
    }
}

/// Each process's down and frozen periods as bands from `top` to `bottom` (in the state's
/// colour, translucent, the process and times in a tooltip).
pub(super) fn down_shading(
    page: &mut String,
    run: &Run,
    axis: &Axis,
    top: f64,
    bottom: f64,
    opacity: f64,
) {
    for lane in &run.lanes {
        for seg in lane
            .segments
            .iter()
            .filter(|s| matches!(s.state, State::Down | State::Frozen))
        {
            let (fill, word) = seg.state.class();
            let (x1, x2) = (axis.x(seg.from), axis.x(seg.to));
            let _ = write!(
                page,
                "<rect class=\"outage\" x=\"{x1:.1}\" y=\"{top:.1}\" width=\"{:.1}\" \
                 height=\"{:.1}\" fill=\"{fill}\" opacity=\"{opacity}\"><title>{} {word} \
                 {:.3}–{:.3}s</title></rect>",
                (x2 - x1).max(1.0),
                bottom - top,
                esc(&lane.name),
                seg.from / 1000.0,
                seg.to / 1000.0
            );
        }
    }
}
