//! Latencies in one HDR histogram (µs), and the JSON record every load generator of this
//! benchmark prints: the same field names as `pirate bench --json`.

use std::time::Duration;

use hdrhistogram::Histogram;

pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0
            .saturating_record((latency.as_micros() as u64).clamp(1, 60_000_000));
    }

    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    /// `{"answered", "elapsed_ms", "req_per_s", "latency_ms": {"p50", "p90", "p99", "max"}}`.
    pub fn record_json(&self, elapsed: Duration) -> serde_json::Value {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        let answered = self.0.len();
        serde_json::json!({
            "answered": answered,
            "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
            "req_per_s": answered as f64 / elapsed.as_secs_f64().max(1e-9),
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": self.0.max() as f64 / 1000.0},
            "verdict": if answered > 0 { "completed" } else { "failed" },
        })
    }
}
