//! `--fail-if EXPR`: thresholds that fail a benchmark in CI, as `k6` thresholds do. An
//! expression is `METRIC OP VALUE` with no spaces needed: `p99>5ms`, `lost>0`, `rate<1000`.
//! Latency metrics (`p50 p90 p99 p99.9 max mean stddev`) take a value with a unit (`us`,
//! `ms`, `s`); counts (`lost wrong late retries answered`) and `rate` (replies per second)
//! a plain number. Parsing is pure and strict: a bad expression is a usage error.

use super::BenchReport;
pub use crate::event::bench::Checked;
use crate::stats::Distribution;

/// What a threshold looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    P50,
    P90,
    P99,
    P999,
    Max,
    Mean,
    Stddev,
    Lost,
    Wrong,
    Late,
    Retries,
    Answered,
    Rate,
}

/// The metrics, for an error message.
const NAMES: &str = "p50 p90 p99 p99.9 max mean stddev lost wrong late retries answered rate";

/// Every metric by the names an expression uses (`p99.9` also as `p999`).
const METRICS: [(&str, Metric); 14] = [
    ("p50", Metric::P50),
    ("p90", Metric::P90),
    ("p99.9", Metric::P999),
    ("p999", Metric::P999),
    ("p99", Metric::P99),
    ("max", Metric::Max),
    ("mean", Metric::Mean),
    ("stddev", Metric::Stddev),
    ("lost", Metric::Lost),
    ("wrong", Metric::Wrong),
    ("late", Metric::Late),
    ("retries", Metric::Retries),
    ("answered", Metric::Answered),
    ("rate", Metric::Rate),
];

impl Metric {
    fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::P50
                | Metric::P90
                | Metric::P99
                | Metric::P999
                | Metric::Max
                | Metric::Mean
                | Metric::Stddev
        )
    }

    /// Its value in a report (latencies in ms); `None` for a latency of a run without
    /// replies, which has none.
    fn of(self, r: &BenchReport) -> Option<f64> {
        let l = |f: fn(&Distribution) -> f64| r.latency_ms.as_ref().map(f);
        match self {
            Metric::P50 => l(|d| d.p50),
            Metric::P90 => l(|d| d.p90),
            Metric::P99 => l(|d| d.p99),
            Metric::P999 => l(|d| d.p99_9),
            Metric::Max => l(|d| d.max),
            Metric::Mean => l(|d| d.mean),
            Metric::Stddev => l(|d| d.stddev),
            Metric::Lost => Some(r.lost as f64),
            Metric::Wrong => Some(r.wrong as f64),
            Metric::Late => Some(r.late as f64),
            Metric::Retries => Some(r.retries as f64),
            Metric::Answered => Some(r.answered as f64),
            Metric::Rate => Some(r.req_per_s),
        }
    }
}

/// How the value compares to the threshold for the run to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Above,
    AtLeast,
    Below,
    AtMost,
}

/// One `--fail-if` expression: the run fails when `metric op value` holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The expression as given, to name it when it fails.
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    /// In ms for latencies.
    pub value: f64,
}

impl Threshold {
    /// Parses `METRIC OP VALUE` (spaces allowed around the parts).
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let expr: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(at) = expr.find(['<', '>']) else {
            return Err("want METRIC<VALUE or METRIC>VALUE (e.g. p99>5ms, lost>0)".to_string());
        };
        let (name, rest) = expr.split_at(at);
        let metric = METRICS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("unknown metric {name:?} (one of: {NAMES})"))?;
        let (op, value) = match rest.as_bytes() {
            [b'>', b'=', ..] => (Op::AtLeast, &rest[2..]),
            [b'<', b'=', ..] => (Op::AtMost, &rest[2..]),
            [b'>', ..] => (Op::Above, &rest[1..]),
            _ => (Op::Below, &rest[1..]),
        };
        let value = if metric.is_latency() {
            parse_millis(value).ok_or_else(|| {
                format!("{value:?} is no latency (want a number and a unit: 500us, 5ms, 1.5s)")
            })?
        } else {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{value:?} is not a number"))?
        };
        Ok(Threshold {
            text: text.trim().to_string(),
            metric,
            op,
            value,
        })
    }

    /// Checks the threshold against a run.
    pub fn check(&self, report: &BenchReport) -> Checked {
        let observed = self.metric.of(report);
        let failed = match observed {
            None => true,
            Some(v) => match self.op {
                Op::Above => v > self.value,
                Op::AtLeast => v >= self.value,
                Op::Below => v < self.value,
                Op::AtMost => v <= self.value,
            },
        };
        Checked {
            threshold: self.text.clone(),
            observed,
            failed,
        }
    }
}

/// `5ms`, `500us` (or `µs`), `1.5s` in ms; a unit is required.
fn parse_millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok().filter(|v: &f64| v.is_finite())?;
    let scale = match unit {
        "us" | "µs" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Threshold {
        Threshold::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn expressions_parse_with_their_units_and_operators() {
        let p99 = t("p99>5ms");
        assert_eq!(
            (p99.metric, p99.op, p99.value),
            (Metric::P99, Op::Above, 5.0)
        );
        let p999 = t("p99.9 >= 1.5s");
        assert_eq!(
            (p999.metric, p999.op, p999.value),
            (Metric::P999, Op::AtLeast, 1500.0)
        );
        assert_eq!(p999.text, "p99.9 >= 1.5s");
        assert_eq!(t("p999<=500us").value, 0.5);
        assert_eq!(t("mean>2µs").value, 0.002);
        let rate = t("rate<1000");
        assert_eq!(
            (rate.metric, rate.op, rate.value),
            (Metric::Rate, Op::Below, 1000.0)
        );
        assert_eq!(t("LOST>0").metric, Metric::Lost);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (bad, says) in [
            ("p99", "want METRIC<VALUE"),
            ("p98>5ms", "unknown metric \"p98\""),
            ("p99>5", "is no latency"),
            ("p99>5min", "is no latency"),
            ("p99>ms", "is no latency"),
            ("lost>many", "is not a number"),
            ("lost>-1", "is not a number"),
            ("rate<", "is not a number"),
            (">5", "unknown metric \"\""),
        ] {
            let err = Threshold::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    fn report(lost: u64, p99: Option<f64>, rate: f64) -> BenchReport {
        let mut r = super::super::tests::report(10, lost, 0);
        r.latency_ms = p99.map(|p99| Distribution {
            p99,
            ..Distribution::default()
        });
        r.req_per_s = rate;
        r
    }

    #[test]
    fn a_threshold_fails_when_its_comparison_holds() {
        let run = report(0, Some(7.25), 900.0);
        let c = t("p99>5ms").check(&run);
        assert!(c.failed);
        assert_eq!(c.observed, Some(7.25));
        assert_eq!(c.to_string(), "p99>5ms (p99 was 7.250)");
        assert!(!t("p99>7.25ms").check(&run).failed);
        assert!(t("p99>=7.25ms").check(&run).failed);
        assert!(!t("lost>0").check(&run).failed);
        assert!(t("lost>0").check(&report(1, Some(1.0), 1.0)).failed);
        assert!(t("rate<1000").check(&run).failed);
        assert!(!t("rate<=899").check(&run).failed);
    }

    #[test]
    fn a_latency_threshold_of_a_run_without_replies_fails() {
        let c = t("p99>5ms").check(&report(10, None, 0.0));
        assert!(c.failed);
        assert_eq!(c.observed, None);
        assert_eq!(c.to_string(), "p99>5ms (p99: no replies to measure)");
    }
}
