//! When each benchmark request starts, and which ones are measured: the closed model (a
//! client sends its next request when a reply frees its window) and the open model
//! (`--rate`: every request has an intended start time, whatever the replies do), with the
//! warm-up in front of both. Pure: time is a [`Duration`] since the run started, so the
//! tests drive it with a fake clock.
//!
//! Why the open model measures from the intended start: in a closed loop a stalled reply
//! holds back the requests behind it, so they are never sent during the stall and never
//! measure it ("coordinated omission", Gil Tene). With a timetable, a request due at 1.000 s
//! that a stall delays until 1.500 s has waited 500 ms before it was even sent, and its
//! latency says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Limit;

/// A request sent more than this after its intended start was late: it could not start on
/// time (the window was full, or the generator fell behind). Below it is scheduling noise.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// The run's shape: how long it lasts, its warm-up, and the rate of the open model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// `--rate`: requests per second over every client; `None` for the closed model.
    pub rate: Option<f64>,
    /// Requests that start within this long of the run's start are sent but not measured.
    pub warmup: Duration,
    /// The measured part of the run (after the warm-up).
    pub limit: Limit,
    /// Clients sharing the rate.
    pub clients: u64,
}

/// One request of the open model's timetable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    /// Its place in the whole run, over every client, 0-based.
    pub index: u64,
    /// Its intended start, since the run started.
    pub at: Duration,
    /// Started during the warm-up: not measured.
    pub warm: bool,
}

impl Plan {
    /// Requests of the open model that fall in the warm-up.
    fn warm_requests(&self, rate: f64) -> u64 {
        (self.warmup.as_secs_f64() * rate).ceil() as u64
    }

    /// The open model's `k`-th request (1-based) of client `client`: the run's requests are
    /// dealt round-robin, client `c` of `n` taking indices `c`, `c + n`, `c + 2n`…, request
    /// `i` due at `i / rate` s, so the clients interleave evenly. `None` past the end of the
    /// run, or in the closed model.
    pub fn slot(&self, client: u64, k: u64) -> Option<Slot> {
        let rate = self.rate?;
        let index = k
            .checked_sub(1)?
            .checked_mul(self.clients.max(1))?
            .checked_add(client)?;
        let at = Duration::try_from_secs_f64(index as f64 / rate).ok()?;
        let warm = self.warm_requests(rate);
        let over = match self.limit {
            Limit::Requests(n) => index >= warm.saturating_add(n),
            Limit::Duration(d) => at >= self.warmup + d,
        };
        (!over).then_some(Slot {
            index,
            at,
            warm: index < warm,
        })
    }
}

/// What a measured request's latency is, given when it was meant to start (the open model)
/// or when it was sent (the closed model): from then to its reply.
pub fn latency(start: Duration, replied: Duration) -> Duration {
    replied.saturating_sub(start)
}

/// True if a request sent at `sent` could not start at its intended time `at`.
pub fn is_late(at: Duration, sent: Duration) -> bool {
    sent > at + LATE_AFTER
}

/// The closed model's requests, shared by every client: whichever is free takes the next.
/// During the warm-up they are not counted against `--requests`.
pub struct Closed {
    /// Requests handed out, warm-up included: the next body's number.
    handed: AtomicU64,
    /// Measured requests handed out.
    measured: AtomicU64,
    plan: Plan,
}

/// A closed-model request: its 1-based number in the run, and whether it is a warm-up one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub number: u64,
    pub warm: bool,
}

impl Closed {
    pub fn new(plan: Plan) -> Self {
        Closed {
            handed: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            plan,
        }
    }

    /// The next request for a client that is free at `now` (since the run started), or
    /// `None` when the run is over.
    pub fn next(&self, now: Duration) -> Option<Taken> {
        let warm = now < self.plan.warmup;
        if !warm {
            if let Limit::Duration(d) = self.plan.limit {
                if now >= self.plan.warmup + d {
                    return None;
                }
            }
            let seq = self.measured.fetch_add(1, Ordering::Relaxed);
            if matches!(self.plan.limit, Limit::Requests(total) if seq >= total) {
                return None;
            }
        }
        let number = self.handed.fetch_add(1, Ordering::Relaxed) + 1;
        Some(Taken { number, warm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn open(rate: f64, clients: u64, warmup: Duration, limit: Limit) -> Plan {
        Plan {
            rate: Some(rate),
            warmup,
            limit,
            clients,
        }
    }

    #[test]
    fn the_rate_is_dealt_round_robin_over_the_clients_at_even_intervals() {
        // 100 req/s over 2 clients: every 10 ms one of them, each every 20 ms.
        let plan = open(100.0, 2, Duration::ZERO, Limit::Requests(6));
        let starts = |c| {
            (1..)
                .map_while(|k| plan.slot(c, k))
                .map(|s| (s.index, s.at))
                .collect::<Vec<_>>()
        };
        assert_eq!(starts(0), [(0, ms(0)), (2, ms(20)), (4, ms(40))]);
        assert_eq!(starts(1), [(1, ms(10)), (3, ms(30)), (5, ms(50))]);
    }

    #[test]
    fn a_timed_open_run_ends_at_its_duration_after_the_warm_up() {
        // 10 req/s, 200 ms of warm-up then 300 ms measured: 0, 100 ms warm; 200, 300,
        // 400 ms measured; 500 ms is past the end.
        let plan = open(10.0, 1, ms(200), Limit::Duration(ms(300)));
        let slots: Vec<_> = (1..).map_while(|k| plan.slot(0, k)).collect();
        let at: Vec<_> = slots.iter().map(|s| s.at).collect();
        assert_eq!(at, [ms(0), ms(100), ms(200), ms(300), ms(400)]);
        let warm: Vec<_> = slots.iter().map(|s| s.warm).collect();
        assert_eq!(warm, [true, true, false, false, false]);
    }

    #[test]
    fn requests_counts_only_the_measured_ones_and_the_warm_up_comes_first() {
        // 1000 req/s with 5 ms of warm-up: 5 warm requests, then the 3 measured.
        let plan = open(1000.0, 1, ms(5), Limit::Requests(3));
        let slots: Vec<_> = (1..).map_while(|k| plan.slot(0, k)).collect();
        assert_eq!(slots.len(), 8);
        assert!(slots[..5].iter().all(|s| s.warm));
        assert!(slots[5..].iter().all(|s| !s.warm));
    }

    #[test]
    fn the_closed_model_has_no_timetable_and_huge_indices_do_not_overflow() {
        let closed = Plan {
            rate: None,
            warmup: Duration::ZERO,
            limit: Limit::Requests(10),
            clients: 1,
        };
        assert_eq!(closed.slot(0, 1), None);
        let plan = open(1.0, 3, Duration::ZERO, Limit::Requests(u64::MAX));
        assert_eq!(plan.slot(0, u64::MAX), None);
        assert_eq!(plan.slot(0, 0), None, "k is 1-based");
    }

    /// The correction, with a fake clock: a server that stalls for 500 ms at 1 s, a request
    /// every 10 ms, one in flight at a time. The closed model sends each request when the
    /// previous reply came, so only the one request caught in the stall sees it: its p99 is
    /// a normal 1 ms. The open model measures from the timetable, so the 50 requests due
    /// during the stall each waited, and its p99 shows the stall.
    #[test]
    fn a_stall_shows_in_the_open_models_latencies_and_hides_in_the_closed_ones() {
        let service = ms(1);
        let stall = (ms(1000), ms(1500));
        // When a request sent at `sent` is answered: after the stall if it is caught in it.
        let reply = |sent: Duration| {
            if sent >= stall.0 && sent < stall.1 {
                stall.1 + service
            } else {
                sent + service
            }
        };
        let plan = open(100.0, 1, Duration::ZERO, Limit::Duration(ms(3000)));
        let (mut open_latencies, mut late) = (Vec::new(), 0);
        let mut free = Duration::ZERO; // when the one slot in flight frees up
        for slot in (1..).map_while(|k| plan.slot(0, k)) {
            let sent = slot.at.max(free);
            late += u32::from(is_late(slot.at, sent));
            free = reply(sent);
            open_latencies.push(latency(slot.at, free));
        }
        // Closed: for as long, each request sent when the previous one was answered.
        let mut closed_latencies = Vec::new();
        let mut now = Duration::ZERO;
        while now < ms(3000) {
            let replied = reply(now);
            closed_latencies.push(latency(now, replied));
            now = replied;
        }
        let p99 = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() * 99 / 100]
        };
        assert_eq!(
            p99(closed_latencies),
            service,
            "the closed model hides the stall"
        );
        assert!(p99(open_latencies) >= ms(400), "the open model sees it");
        // The requests due from 1.01 s to 1.55 s could not start on time: those due in the
        // stall, then those due while its backlog drained at 1 ms a request. Request
        // 1000 + 10j ms is sent at 1500 + j ms: late while 1500 + j > 1001 + 10j, j <= 55.
        assert_eq!(late, 55);
    }

    #[test]
    fn the_closed_model_hands_warm_requests_first_then_counts_the_measured_ones() {
        let closed = Closed::new(Plan {
            rate: None,
            warmup: ms(100),
            limit: Limit::Requests(2),
            clients: 4,
        });
        let t = |number, warm| Some(Taken { number, warm });
        assert_eq!(closed.next(ms(0)), t(1, true));
        assert_eq!(closed.next(ms(99)), t(2, true));
        assert_eq!(closed.next(ms(100)), t(3, false));
        assert_eq!(closed.next(ms(150)), t(4, false));
        assert_eq!(closed.next(ms(150)), None);
        assert_eq!(closed.next(ms(150)), None);
    }

    #[test]
    fn a_timed_closed_run_ends_after_warm_up_plus_duration() {
        let closed = Closed::new(Plan {
            rate: None,
            warmup: ms(100),
            limit: Limit::Duration(ms(50)),
            clients: 1,
        });
        assert!(closed.next(ms(149)).is_some());
        assert_eq!(closed.next(ms(150)), None);
    }

    #[test]
    fn late_means_more_than_the_tolerance_after_the_intended_start() {
        assert!(!is_late(ms(10), ms(10)));
        assert!(!is_late(ms(10), ms(11)));
        assert!(is_late(ms(10), ms(12)));
        assert_eq!(latency(ms(10), ms(5)), Duration::ZERO);
    }
}
