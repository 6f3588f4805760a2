//! Latency recording for clients: an HDR histogram in microseconds, reported as percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;

use schemars::JsonSchema;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Records request latencies and reports p50/p90/p99/max in milliseconds.
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        // 1 µs to 1 hour at 3 significant digits: enough for any retry storm.
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("static histogram bounds are valid");
        LatencyRecorder { histogram }
    }
}

impl LatencyRecorder {
    /// Records one latency (clamped into the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, self.histogram.high());
        self.histogram.saturating_record(micros);
    }

    /// Adds every latency `other` recorded (a benchmark's clients, one recorder each).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Same bounds on both sides, so nothing is out of range.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The percentiles so far (all zero when nothing was recorded).
    pub fn summary(&self) -> Latency {
        if self.histogram.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            p50: ms(self.histogram.value_at_quantile(0.50)),
            p90: ms(self.histogram.value_at_quantile(0.90)),
            p99: ms(self.histogram.value_at_quantile(0.99)),
            max: ms(self.histogram.max()),
        }
    }
}

/// The whole latency distribution of a benchmark, in milliseconds: the percentiles people
/// compare between load generators (`oha`, `wrk2`, `k6`), the mean and standard deviation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct Distribution {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The 99.9th percentile.
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
    /// The standard deviation.
    pub stddev: f64,
}

impl LatencyRecorder {
    /// The distribution so far; `None` when nothing was recorded (a run with no replies has
    /// no latency, not a latency of zero).
    pub fn distribution(&self) -> Option<Distribution> {
        let h = &self.histogram;
        if h.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Distribution {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
            stddev: h.stdev() / 1000.0,
        })
    }

    /// The percentile distribution as CSV for plotting (`--histogram FILE`): a header, then
    /// `percentile,latency_ms,count` rows (the percentile as 0 to 100, `count` the latencies
    /// at or below it), five rows per halving of the distance to 100% as HdrHistogram's own
    /// percentile output has them, ending at the maximum.
    pub fn percentiles_csv(&self) -> String {
        let mut csv = String::from("percentile,latency_ms,count\n");
        for v in self.histogram.iter_quantiles(5) {
            csv.push_str(&format!(
                "{:.6},{:.3},{}\n",
                v.quantile_iterated_to() * 100.0,
                self.histogram.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
                // Every value counted up to this step.
                self.histogram.count_between(0, v.value_iterated_to()),
            ));
        }
        csv
    }
}

/// A duration in milliseconds with microsecond precision, for reports.
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let mut r = LatencyRecorder::default();
        for ms in 1..=100u64 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary();
        assert_eq!(r.count(), 100);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p90 - 90.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn merged_recorders_give_the_percentiles_of_every_value() {
        let (mut low, mut high) = (LatencyRecorder::default(), LatencyRecorder::default());
        (1..=50u64).for_each(|ms| low.record(Duration::from_millis(ms)));
        (51..=100u64).for_each(|ms| high.record(Duration::from_millis(ms)));
        low.merge(&high);
        assert_eq!(low.count(), 100);
        let s = low.summary();
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn the_distribution_has_the_tail_percentiles_the_mean_and_the_deviation() {
        let mut r = LatencyRecorder::default();
        for ms in 1..=1000u64 {
            r.record(Duration::from_millis(ms));
        }
        let d = r.distribution().unwrap();
        assert!((d.p99_9 - 999.0).abs() < 1.0, "{d:?}");
        assert!((d.mean - 500.5).abs() < 1.0, "{d:?}");
        // The deviation of 1..=1000 is sqrt((1000^2 - 1) / 12) = 288.7.
        assert!((d.stddev - 288.7).abs() < 1.0, "{d:?}");
        assert!(LatencyRecorder::default().distribution().is_none());
    }

    #[test]
    fn the_csv_climbs_from_the_fastest_to_the_slowest_and_counts_every_value() {
        let mut r = LatencyRecorder::default();
        for ms in 1..=100u64 {
            r.record(Duration::from_millis(ms));
        }
        let csv = r.percentiles_csv();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("percentile,latency_ms,count"));
        let rows: Vec<(f64, f64, u64)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                )
            })
            .collect();
        assert!(rows.len() > 10, "{csv}");
        assert!(
            rows.windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2),
            "{csv}"
        );
        let last = rows.last().unwrap();
        assert_eq!((last.0, last.2), (100.0, 100), "{csv}");
        assert!((last.1 - 100.0).abs() < 0.1, "{csv}");
        assert!((rows[0].1 - 1.0).abs() < 0.01, "{csv}");
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(LatencyRecorder::default().summary(), Latency::default());
    }
}
