//! `pirate bench`: a load generator to point at any Majordomo broker or Lazy Pirate server.
//! `clients` threads each run the ordinary [`Client`] machine on a reactor of their own, with
//! `window` requests in flight, so a benchmark gets the client's correlation (request ids or a
//! socket per request), timeouts and retries, and measures what `pirate client` users get.
//! Every reply's latency goes into one HDR histogram per client, merged at the end; the
//! replies themselves are not kept.
//!
//! The run lasts for a number of requests (shared by every client: whichever is free takes
//! the next one) or for a duration (no request starts after it; those in flight finish).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{Event, Events, Outcome, Report};
use crate::feed::Source;
use crate::reactor::{self, Ended, Stop};
use crate::roles::client::{Client, ClientConfig, ReadAhead, ReadNext, Request};
use crate::stats::{millis, Latency, LatencyRecorder};

/// How long the run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// This many requests in all, over every client.
    Requests(u64),
    /// No new request after this long.
    Duration(Duration),
}

/// Everything a benchmark run needs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// One client's settings (endpoint, framing, timeout, retries, `window`); every client
    /// gets a copy.
    pub client: ClientConfig,
    /// Clients running at once, each on a thread and reactor of its own.
    pub clients: usize,
    pub limit: Limit,
    /// Bytes in each request body.
    pub size: usize,
}

pub use crate::event::{BenchReport, BenchVerdict as Verdict};

/// The body of request `seq`: its number then dots, `size` bytes in all (the number cut
/// short when it does not fit), so that an echo shows which request it answers.
pub fn body(seq: u64, size: usize) -> String {
    let mut text = seq.to_string();
    text.truncate(size);
    text.extend(std::iter::repeat_n('.', size - text.len()));
    text
}

/// Where each client takes its next request: a count shared by every client, and the limit.
struct Requests {
    next: AtomicU64,
    limit: Limit,
    size: usize,
    started: Instant,
}

impl Requests {
    fn next(&self) -> Option<String> {
        if let Limit::Duration(d) = self.limit {
            if self.started.elapsed() >= d {
                return None;
            }
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Limit::Requests(total) if seq >= total => None,
            _ => Some(body(seq + 1, self.size)),
        }
    }
}

/// Runs the benchmark until done or `stop` is raised. `answered` counts replies as they come
/// (for a progress bar); `sink` gets every client's log lines and, when `trace` is set,
/// its frames.
pub fn run(
    config: &BenchConfig,
    stop: &Stop,
    answered: &AtomicU64,
    trace: bool,
    sink: &(dyn Fn(Event) + Sync),
) -> Result<BenchReport> {
    let started = Instant::now();
    let requests = Arc::new(Requests {
        next: AtomicU64::new(0),
        limit: config.limit,
        size: config.size,
        started,
    });
    let results: Vec<Result<(Report, LatencyRecorder)>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..config.clients.max(1))
            .map(|_| {
                let requests = requests.clone();
                scope.spawn(move || one_client(config, requests, stop, answered, trace, sink))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(Error::Internal("a bench client panicked".into())))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latency = LatencyRecorder::default();
    let mut report = BenchReport {
        endpoint: config.client.endpoint.clone(),
        clients: config.clients.max(1),
        window: config.client.window.max(1),
        size: config.size,
        requests: 0,
        answered: 0,
        lost: 0,
        wrong: 0,
        retries: 0,
        elapsed_ms: millis(elapsed),
        req_per_s: 0.0,
        latency_ms: Latency::default(),
        verdict: Verdict::Completed,
    };
    let mut interrupted = false;
    for result in results {
        let (client, recorder) = result?;
        let Report::Client(c) = client else {
            return Err(Error::Internal(
                "a bench client reported no client summary".into(),
            ));
        };
        latency.merge(&recorder);
        report.requests += c.requests;
        report.answered += c.replied;
        report.lost += c.abandoned;
        report.wrong += c.mismatched;
        report.retries += c.retries;
        interrupted |= c.outcome == Outcome::Interrupted;
    }
    report.req_per_s = report.answered as f64 / elapsed.as_secs_f64().max(1e-9);
    report.latency_ms = latency.summary();
    report.verdict = verdict(&report, config.limit, interrupted);
    Ok(report)
}

fn verdict(report: &BenchReport, limit: Limit, interrupted: bool) -> Verdict {
    let short = matches!(limit, Limit::Requests(total) if report.answered < total);
    if interrupted {
        Verdict::Interrupted
    } else if report.answered == 0 && report.lost > 0 && report.wrong == 0 {
        Verdict::Unreachable
    } else if report.lost > 0 || report.wrong > 0 || short {
        Verdict::Failed
    } else {
        Verdict::Completed
    }
}

/// One client on a reactor of its own: its summary and its latencies.
fn one_client(
    config: &BenchConfig,
    requests: Arc<Requests>,
    stop: &Stop,
    answered: &AtomicU64,
    trace: bool,
    sink: &(dyn Fn(Event) + Sync),
) -> Result<(Report, LatencyRecorder)> {
    let mut latency = LatencyRecorder::default();
    let mut events = Events::new(trace, |event| match event {
        Event::Reply { latency_ms, .. } => {
            latency.record(Duration::from_secs_f64(latency_ms.max(0.0) / 1000.0));
            answered.fetch_add(1, Ordering::Relaxed);
        }
        // Logs and -v frames are shown; per-request events (sent, retry, mismatch,
        // abandoned) are counted in the clients' summaries instead.
        log @ (Event::Log { .. } | Event::Frame { .. }) => sink(log),
        _ => {}
    });
    let source = Source::new(std::iter::from_fn(move || {
        requests.next().map(String::into_bytes)
    }));
    let reader = std::sync::Arc::new(ReadAhead::new(
        move || source.next().map(Request::line),
        config.client.window,
    ));
    let mut client = Client::new(&config.client).reading_from(std::sync::Arc::clone(&reader));
    let ended = reactor::run(
        &mut client,
        move |ReadNext| reader.next_batch(),
        stop,
        &mut events,
    )?;
    let outcome = match ended {
        Ended::Exited => client.outcome().unwrap_or(Outcome::Completed),
        Ended::Stopped => Outcome::Interrupted,
    };
    let report = client.finish(outcome, Instant::now(), &mut events);
    drop(events);
    Ok((report, latency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_has_its_number_then_dots_and_exactly_size_bytes() {
        assert_eq!(body(42, 6), "42....");
        assert_eq!(body(42, 2), "42");
        assert_eq!(body(12345, 3), "123");
        assert_eq!(body(7, 0), "");
    }

    fn report(answered: u64, lost: u64, wrong: u64) -> BenchReport {
        BenchReport {
            endpoint: String::new(),
            clients: 1,
            window: 1,
            size: 1,
            requests: answered + lost,
            answered,
            lost,
            wrong,
            retries: 0,
            elapsed_ms: 1.0,
            req_per_s: 1.0,
            latency_ms: Latency::default(),
            verdict: Verdict::Completed,
        }
    }

    #[test]
    fn the_verdict_fails_on_any_loss_or_wrong_reply_and_is_unreachable_when_nothing_answered() {
        let ten = Limit::Requests(10);
        assert_eq!(verdict(&report(10, 0, 0), ten, false), Verdict::Completed);
        assert_eq!(verdict(&report(9, 1, 0), ten, false), Verdict::Failed);
        assert_eq!(verdict(&report(10, 0, 1), ten, false), Verdict::Failed);
        assert_eq!(verdict(&report(0, 4, 0), ten, false), Verdict::Unreachable);
        // Something answered, if only wrongly: reachable, and wrong.
        assert_eq!(verdict(&report(0, 4, 3), ten, false), Verdict::Failed);
        // A client that gave up leaves requests nobody sent: the run is short.
        assert_eq!(verdict(&report(8, 0, 0), ten, false), Verdict::Failed);
        let timed = Limit::Duration(Duration::from_secs(1));
        assert_eq!(verdict(&report(8, 0, 0), timed, false), Verdict::Completed);
        assert_eq!(verdict(&report(8, 0, 0), ten, true), Verdict::Interrupted);
    }

    #[test]
    fn requests_stop_at_the_total_over_every_taker() {
        let requests = Requests {
            next: AtomicU64::new(0),
            limit: Limit::Requests(3),
            size: 2,
            started: Instant::now(),
        };
        let taken: Vec<_> = std::iter::from_fn(|| requests.next()).collect();
        assert_eq!(taken, ["1.", "2.", "3."]);
        assert_eq!(requests.next(), None);
    }

    #[test]
    fn requests_stop_once_the_duration_is_over() {
        let requests = Requests {
            next: AtomicU64::new(0),
            limit: Limit::Duration(Duration::ZERO),
            size: 1,
            started: Instant::now(),
        };
        assert_eq!(requests.next(), None);
    }
}
