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
    fn empty_is_zero() {
        assert_eq!(LatencyRecorder::default().summary(), Latency::default());
    }
}
