//! The per-second series of a benchmark (`series` in its `--json` record): replies, losses
//! and p99 for each second of the measured run, to see when a stall or a loss happened.
//! Every client records into one [`Series`] (behind a lock); a second is closed, its p99
//! taken and its histogram dropped, once the clock is [`GRACE`] seconds past it, so memory
//! stays a few histograms however long the run.

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;

pub use crate::event::bench::Second;

/// Seconds in the series at most (an hour); a longer run says `series_truncated`.
pub const MAX_SECONDS: u64 = 3600;

/// Seconds a second stays open after it ends, for replies stamped then but recorded late
/// (another client's thread held the lock).
const GRACE: u64 = 2;

struct Bucket {
    answered: u64,
    lost: u64,
    latency: Histogram<u64>,
}

impl Bucket {
    fn new() -> Self {
        // 1 µs to 1 hour at 2 significant digits (1%): a p99 for a plot, in ~25 KB.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 2)
            .expect("static histogram bounds are valid");
        Bucket {
            answered: 0,
            lost: 0,
            latency,
        }
    }
}

/// The series so far: closed seconds, and the few still open.
#[derive(Default)]
pub struct Series {
    closed: Vec<Second>,
    /// Seconds `closed.len()`, `closed.len() + 1`, …
    open: VecDeque<Bucket>,
    truncated: bool,
}

impl Series {
    /// A reply at `t` (since the measured run started) that took `latency`.
    pub fn reply(&mut self, t: Duration, latency: Duration) {
        if let Some(b) = self.bucket(t) {
            b.answered += 1;
            let micros = (latency.as_micros() as u64).clamp(1, b.latency.high());
            b.latency.saturating_record(micros);
        }
    }

    /// A request abandoned at `t`.
    pub fn lost(&mut self, t: Duration) {
        if let Some(b) = self.bucket(t) {
            b.lost += 1;
        }
    }

    /// The bucket of the second `t` falls in, closing the seconds more than [`GRACE`]
    /// before it. A straggler for a second already closed counts in the oldest open one.
    fn bucket(&mut self, t: Duration) -> Option<&mut Bucket> {
        let second = t.as_secs();
        if second >= MAX_SECONDS {
            self.truncated = true;
            return None;
        }
        while (self.closed.len() as u64) + GRACE < second {
            self.close_one();
        }
        let first = self.closed.len() as u64;
        let at = second.saturating_sub(first) as usize;
        while self.open.len() <= at {
            self.open.push_back(Bucket::new());
        }
        self.open.get_mut(at)
    }

    fn close_one(&mut self) {
        let b = self.open.pop_front().unwrap_or_else(Bucket::new);
        self.closed.push(Second {
            second: self.closed.len() as u64,
            answered: b.answered,
            lost: b.lost,
            p99_ms: (!b.latency.is_empty())
                .then(|| b.latency.value_at_quantile(0.99) as f64 / 1000.0),
        });
    }

    /// Every second of a measured run that lasted `elapsed` (the last one partial), and
    /// whether the series stopped at [`MAX_SECONDS`].
    pub fn finish(mut self, elapsed: Duration) -> (Vec<Second>, bool) {
        let seconds = (elapsed.as_secs_f64().ceil() as u64).min(MAX_SECONDS);
        while (self.closed.len() as u64) < seconds || !self.open.is_empty() {
            self.close_one();
        }
        (
            self.closed,
            self.truncated || elapsed.as_secs() >= MAX_SECONDS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn each_second_has_its_replies_losses_and_p99_and_empty_seconds_have_no_p99() {
        let mut series = Series::default();
        for i in 0..100 {
            series.reply(s(0.001 * i as f64), Duration::from_millis(1 + i / 99 * 9));
        }
        series.lost(s(0.5));
        // Nothing in second 1; two replies and a loss in second 2.
        series.reply(s(2.1), Duration::from_millis(20));
        series.reply(s(2.2), Duration::from_millis(30));
        series.lost(s(2.3));
        let (points, truncated) = series.finish(s(2.5));
        assert!(!truncated);
        let seconds: Vec<_> = points
            .iter()
            .map(|p| (p.second, p.answered, p.lost))
            .collect();
        assert_eq!(seconds, [(0, 100, 1), (1, 0, 0), (2, 2, 1)]);
        // 99 replies of 1 ms and one of 10 ms: the p99 is 1 ms.
        assert!((points[0].p99_ms.unwrap() - 1.0).abs() < 0.02, "{points:?}");
        assert_eq!(points[1].p99_ms, None);
        assert!((points[2].p99_ms.unwrap() - 30.0).abs() < 0.5, "{points:?}");
    }

    #[test]
    fn old_seconds_close_as_the_clock_moves_and_a_straggler_is_not_lost() {
        let mut series = Series::default();
        series.reply(s(0.5), Duration::from_millis(1));
        series.reply(s(5.5), Duration::from_millis(1));
        // Seconds 0 to 2 are closed now; only 3 to 5 stay open.
        assert_eq!(series.closed.len(), 3);
        assert_eq!(series.open.len(), 3);
        series.reply(s(1.5), Duration::from_millis(1));
        let (points, _) = series.finish(s(6.0));
        assert_eq!(points.len(), 6);
        assert_eq!(points.iter().map(|p| p.answered).sum::<u64>(), 3);
        assert_eq!(
            points[3].answered, 1,
            "the straggler, in the oldest open second"
        );
    }

    #[test]
    fn the_series_stops_at_an_hour_and_says_so() {
        let mut series = Series::default();
        series.reply(s(10.0), Duration::from_millis(1));
        series.reply(s(MAX_SECONDS as f64 + 1.0), Duration::from_millis(1));
        let (points, truncated) = series.finish(s(MAX_SECONDS as f64 + 2.0));
        assert!(truncated);
        assert_eq!(points.len() as u64, MAX_SECONDS);
    }
}
