//! `pirate bench`: a load generator to point at any Majordomo broker or Lazy Pirate server.
//! `clients` threads each run the ordinary [`Client`] machine on a reactor of their own, with
//! `window` requests in flight, so a benchmark gets the client's correlation (request ids or a
//! socket per request), timeouts and retries, and measures what `pirate client` users get.
//! Every reply's latency goes into one HDR histogram per client, merged at the end, and into
//! the per-second [`series`]; the replies themselves are not kept.
//!
//! Two models ([`schedule`]): closed by default (a client sends its next request when its
//! window has room), open with `--rate` (every request has an intended start, and its
//! latency counts from then, so a stall shows). The run lasts for a number of requests or a
//! duration, after an optional warm-up whose requests are sent but not measured; then the
//! `--fail-if` [`threshold`]s are checked.

pub mod schedule;
pub mod series;
pub mod threshold;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{Event, Events, Level, Outcome, Report};
use crate::feed::{ReadAhead, Request, Source};
use crate::reactor::{self, Ended, Stop};
use crate::roles::client::{Client, ClientConfig, ReadNext};
use crate::stats::{millis, LatencyRecorder};

use schedule::{Closed, Plan};
use series::Series;
use threshold::Threshold;

/// How long the measured run lasts.
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
    /// Requests per second over every client (the open model); `None`: closed.
    pub rate: Option<f64>,
    /// Requests started within this long of the start are sent but not measured.
    pub warmup: Duration,
    /// The service and protocol, for the record (the framing in `client` is what is spoken).
    pub service: Option<String>,
    pub protocol: String,
    /// `--fail-if`: the run fails (exit 1) when one holds.
    pub thresholds: Vec<Threshold>,
}

pub use crate::event::bench::{BenchReport, BenchVerdict as Verdict};

/// The body of request `seq`: its number then dots, `size` bytes in all (the number cut
/// short when it does not fit), so that an echo shows which request it answers.
pub fn body(seq: u64, size: usize) -> String {
    let mut text = seq.to_string();
    text.truncate(size);
    text.extend(std::iter::repeat_n('.', size - text.len()));
    text
}

/// How one client tells its warm-up requests from the measured ones, by the client's own
/// request number (`seq`, 1-based, in the order it read them).
enum Tags {
    /// The open model's timetable: the client's `seq`-th request is its `seq`-th slot.
    Open { plan: Plan, client: u64 },
    /// The closed model: warm-up requests come first, and this counts how many the client
    /// was handed (counted before handing, so a `seq` at or below it is warm).
    Closed { warm: Arc<AtomicU64> },
}

/// One client's measurements, from its events, with times since the run started.
struct Meter {
    tags: Tags,
    warmup: Duration,
    latency: LatencyRecorder,
    series: Arc<Mutex<Series>>,
    requests: u64,
    answered: u64,
    lost: u64,
    late: u64,
}

impl Meter {
    fn new(tags: Tags, warmup: Duration, series: Arc<Mutex<Series>>) -> Self {
        Meter {
            tags,
            warmup,
            latency: LatencyRecorder::default(),
            series,
            requests: 0,
            answered: 0,
            lost: 0,
            late: 0,
        }
    }

    /// Whether request `seq` is a warm-up one, and (open model) its intended start.
    fn tag(&self, seq: u64) -> (bool, Option<Duration>) {
        match &self.tags {
            Tags::Open { plan, client } => match plan.slot(*client, seq) {
                Some(slot) => (slot.warm, Some(slot.at)),
                None => (true, None), // not in the timetable: never sent, never measured
            },
            Tags::Closed { warm } => (seq <= warm.load(Ordering::SeqCst), None),
        }
    }

    fn sent(&mut self, seq: u64, attempt: u32, t: Duration) {
        let (warm, at) = self.tag(seq);
        if warm || attempt != 1 {
            return;
        }
        self.requests += 1;
        if at.is_some_and(|at| schedule::is_late(at, t)) {
            self.late += 1;
        }
    }

    /// A reply at `t` to request `seq`, `took` after the client sent it. True if measured.
    fn replied(&mut self, seq: u64, t: Duration, took: Duration) -> bool {
        let (warm, at) = self.tag(seq);
        if warm {
            return false;
        }
        let latency = match at {
            Some(at) => schedule::latency(at, t),
            None => took,
        };
        self.answered += 1;
        self.latency.record(latency);
        if let Ok(mut series) = self.series.lock() {
            series.reply(t.saturating_sub(self.warmup), latency);
        }
        true
    }

    fn abandoned(&mut self, seq: u64, t: Duration) {
        if self.tag(seq).0 {
            return;
        }
        self.lost += 1;
        if let Ok(mut series) = self.series.lock() {
            series.lost(t.saturating_sub(self.warmup));
        }
    }
}

/// What one client brings back.
struct ClientResult {
    report: Report,
    meter: Meter,
    /// The first error it logged (why it gave up), in its words.
    error: Option<String>,
}

/// A finished run: its record, and every measured latency (for `--histogram`).
pub struct Finished {
    pub report: BenchReport,
    pub latency: LatencyRecorder,
}

/// Runs the benchmark until done or `stop` is raised. `answered` counts measured replies as
/// they come (for a progress bar); `sink` gets every client's log lines and, when `trace` is
/// set, its frames.
pub fn run(
    config: &BenchConfig,
    stop: &Stop,
    answered: &AtomicU64,
    trace: bool,
    sink: &(dyn Fn(Event) + Sync),
) -> Result<Finished> {
    let clients = config.clients.max(1);
    let plan = Plan {
        rate: config.rate,
        warmup: config.warmup,
        limit: config.limit,
        clients: clients as u64,
    };
    let started = Instant::now();
    let closed = Arc::new(Closed::new(plan));
    let series = Arc::new(Mutex::new(Series::default()));
    let results: Vec<Result<ClientResult>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..clients as u64)
            .map(|c| {
                let tags = match config.rate {
                    Some(_) => Tags::Open { plan, client: c },
                    None => Tags::Closed {
                        warm: Arc::new(AtomicU64::new(0)),
                    },
                };
                let requests = requests(config, &tags, &closed, started, stop);
                let meter = Meter::new(tags, config.warmup, series.clone());
                let on = Shared {
                    config,
                    stop,
                    answered,
                    trace,
                    sink,
                    started,
                };
                scope.spawn(move || one_client(&on, requests, meter))
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
    let elapsed = started.elapsed().saturating_sub(config.warmup);
    let mut latency = LatencyRecorder::default();
    let mut report = BenchReport {
        endpoint: config.client.endpoint.clone(),
        service: config.service.clone(),
        protocol: config.protocol.clone(),
        clients,
        window: config.client.window.max(1),
        size: config.size,
        rate: config.rate,
        duration_ms: match config.limit {
            Limit::Duration(d) => Some(millis(d)),
            Limit::Requests(_) => None,
        },
        warmup_ms: millis(config.warmup),
        requests: 0,
        answered: 0,
        lost: 0,
        wrong: 0,
        retries: 0,
        late: 0,
        elapsed_ms: millis(elapsed),
        req_per_s: 0.0,
        latency_ms: None,
        series: Vec::new(),
        series_truncated: false,
        thresholds: Vec::new(),
        error: None,
        verdict: Verdict::Completed,
    };
    let (mut interrupted, mut no_service) = (false, false);
    for result in results {
        let ClientResult {
            report: client,
            meter,
            error,
        } = result?;
        let Report::Client(c) = client else {
            return Err(Error::Internal(
                "a bench client reported no client summary".into(),
            ));
        };
        latency.merge(&meter.latency);
        report.requests += meter.requests;
        report.answered += meter.answered;
        report.lost += meter.lost;
        report.late += meter.late;
        report.wrong += c.mismatched;
        report.retries += c.retries;
        report.error = report.error.take().or(error);
        interrupted |= c.outcome == Outcome::Interrupted;
        no_service |= c.outcome == Outcome::NoService;
    }
    report.req_per_s = report.answered as f64 / elapsed.as_secs_f64().max(1e-9);
    report.latency_ms = latency.distribution();
    let series = std::mem::take(&mut *series.lock().unwrap_or_else(|e| e.into_inner()));
    (report.series, report.series_truncated) = series.finish(elapsed);
    report.thresholds = config.thresholds.iter().map(|t| t.check(&report)).collect();
    report.verdict = verdict(&report, config.limit, interrupted, no_service);
    Ok(Finished { report, latency })
}

fn verdict(report: &BenchReport, limit: Limit, interrupted: bool, no_service: bool) -> Verdict {
    let short = matches!(limit, Limit::Requests(total) if report.answered < total);
    if interrupted {
        Verdict::Interrupted
    } else if report.answered == 0 && report.lost > 0 && report.wrong == 0 {
        if no_service {
            Verdict::NoService
        } else {
            Verdict::Unreachable
        }
    } else if report.lost > 0 || report.wrong > 0 || short {
        Verdict::Failed
    } else if report.thresholds.iter().any(|t| t.failed) {
        Verdict::ThresholdFailed
    } else {
        Verdict::Completed
    }
}

/// Where one client's requests come from: the shared closed-model count, or its slots of
/// the open model's timetable, each handed out at its intended start.
fn requests(
    config: &BenchConfig,
    tags: &Tags,
    closed: &Arc<Closed>,
    started: Instant,
    stop: &Stop,
) -> Box<dyn Iterator<Item = Vec<u8>> + Send> {
    let size = config.size;
    match tags {
        Tags::Closed { warm } => {
            let (closed, warm) = (closed.clone(), warm.clone());
            Box::new(std::iter::from_fn(move || {
                let taken = closed.next(started.elapsed())?;
                if taken.warm {
                    warm.fetch_add(1, Ordering::SeqCst);
                }
                Some(body(taken.number, size).into_bytes())
            }))
        }
        Tags::Open { plan, client } => {
            let (plan, client, stop) = (*plan, *client, stop.clone());
            Box::new((1..).map_while(move |k| {
                let slot = plan.slot(client, k)?;
                // On a reader thread of its own: the client's loop keeps running meanwhile.
                let wait = (started + slot.at).saturating_duration_since(Instant::now());
                stop.sleep(wait).ok()?;
                Some(body(slot.index + 1, size).into_bytes())
            }))
        }
    }
}

/// What every client thread shares.
struct Shared<'a> {
    config: &'a BenchConfig,
    stop: &'a Stop,
    answered: &'a AtomicU64,
    trace: bool,
    sink: &'a (dyn Fn(Event) + Sync),
    started: Instant,
}

/// One client on a reactor of its own: its summary and its measurements.
fn one_client(
    on: &Shared,
    requests: Box<dyn Iterator<Item = Vec<u8>> + Send>,
    mut meter: Meter,
) -> Result<ClientResult> {
    let mut error = None;
    let mut events = Events::new(on.trace, |event| {
        let t = on.started.elapsed();
        match event {
            Event::Sent { seq, attempt, .. } => meter.sent(seq, attempt, t),
            Event::Reply {
                seq, latency_ms, ..
            } => {
                let took = Duration::from_secs_f64(latency_ms.max(0.0) / 1000.0);
                if meter.replied(seq, t, took) {
                    on.answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::Abandoned { seq, .. } => meter.abandoned(seq, t),
            Event::Log {
                level: Level::Error,
                ref message,
            } => {
                error.get_or_insert_with(|| message.clone());
                (on.sink)(event);
            }
            // Logs and -v frames are shown; the other per-request events (retry,
            // mismatch) are counted in the clients' summaries instead.
            log @ (Event::Log { .. } | Event::Frame { .. }) => (on.sink)(log),
            _ => {}
        }
    });
    let source = Source::new(requests);
    let reader = Arc::new(ReadAhead::new(
        move || source.next().map(Request::line),
        on.config.client.window,
    ));
    let mut client = Client::new(&on.config.client).reading_from(Arc::clone(&reader));
    let ended = reactor::run(
        &mut client,
        move |ReadNext| reader.next_batch(),
        on.stop,
        &mut events,
    )?;
    let outcome = match ended {
        Ended::Exited => client.outcome().unwrap_or(Outcome::Completed),
        Ended::Stopped => Outcome::Interrupted,
    };
    let report = client.finish(outcome, Instant::now(), &mut events);
    drop(events);
    Ok(ClientResult {
        report,
        meter,
        error,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_body_has_its_number_then_dots_and_exactly_size_bytes() {
        assert_eq!(body(42, 6), "42....");
        assert_eq!(body(42, 2), "42");
        assert_eq!(body(12345, 3), "123");
        assert_eq!(body(7, 0), "");
    }

    pub(crate) fn report(answered: u64, lost: u64, wrong: u64) -> BenchReport {
        BenchReport {
            endpoint: String::new(),
            service: None,
            protocol: "lazy".into(),
            clients: 1,
            window: 1,
            size: 1,
            rate: None,
            duration_ms: None,
            warmup_ms: 0.0,
            requests: answered + lost,
            answered,
            lost,
            wrong,
            retries: 0,
            late: 0,
            elapsed_ms: 1.0,
            req_per_s: 1.0,
            latency_ms: None,
            series: Vec::new(),
            series_truncated: false,
            thresholds: Vec::new(),
            error: None,
            verdict: Verdict::Completed,
        }
    }

    #[test]
    fn the_verdict_fails_on_any_loss_or_wrong_reply_and_is_unreachable_when_nothing_answered() {
        let ten = Limit::Requests(10);
        let v = |r: &BenchReport, limit, interrupted| verdict(r, limit, interrupted, false);
        assert_eq!(v(&report(10, 0, 0), ten, false), Verdict::Completed);
        assert_eq!(v(&report(9, 1, 0), ten, false), Verdict::Failed);
        assert_eq!(v(&report(10, 0, 1), ten, false), Verdict::Failed);
        assert_eq!(v(&report(0, 4, 0), ten, false), Verdict::Unreachable);
        // Something answered, if only wrongly: reachable, and wrong.
        assert_eq!(v(&report(0, 4, 3), ten, false), Verdict::Failed);
        // A client that gave up leaves requests nobody sent: the run is short.
        assert_eq!(v(&report(8, 0, 0), ten, false), Verdict::Failed);
        let timed = Limit::Duration(Duration::from_secs(1));
        assert_eq!(v(&report(8, 0, 0), timed, false), Verdict::Completed);
        assert_eq!(v(&report(8, 0, 0), ten, true), Verdict::Interrupted);
    }

    #[test]
    fn a_broker_that_said_no_worker_is_no_service_and_a_crossed_threshold_fails_a_good_run() {
        let ten = Limit::Requests(10);
        assert_eq!(
            verdict(&report(0, 4, 0), ten, false, true),
            Verdict::NoService
        );
        let mut crossed = report(10, 0, 0);
        crossed.thresholds = vec![threshold::Threshold::parse("answered<20")
            .unwrap()
            .check(&crossed)];
        assert_eq!(
            verdict(&crossed, ten, false, false),
            Verdict::ThresholdFailed
        );
        // A loss is the bigger news.
        crossed.lost = 1;
        assert_eq!(verdict(&crossed, ten, false, false), Verdict::Failed);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The open model's correction through a client's events, with a fake clock: 100 req/s,
    /// 20 ms of warm-up (requests 1 and 2), then request 3 due at 20 ms.
    #[test]
    fn the_meter_measures_open_requests_from_their_intended_start_and_skips_the_warm_up() {
        let plan = Plan {
            rate: Some(100.0),
            warmup: ms(20),
            limit: Limit::Requests(2),
            clients: 1,
        };
        let series = Arc::new(Mutex::new(Series::default()));
        let tags = Tags::Open { plan, client: 0 };
        let mut m = Meter::new(tags, plan.warmup, series.clone());
        // Warm: sent, answered, counted nowhere.
        m.sent(1, 1, ms(0));
        assert!(!m.replied(1, ms(30), ms(30)));
        // Request 3, due at 20 ms, sent at 30 ms (late), answered at 31 ms: 11 ms, not the
        // 1 ms the client saw since it sent it.
        m.sent(3, 1, ms(30));
        assert!(m.replied(3, ms(31), ms(1)));
        // Request 4, due at 30 ms, sent on time, abandoned; its resend is no new request.
        m.sent(4, 1, ms(30));
        m.sent(4, 2, ms(40));
        m.abandoned(4, ms(50));
        assert_eq!((m.requests, m.answered, m.lost, m.late), (2, 1, 1, 1));
        let d = m.latency.distribution().unwrap();
        assert!((d.max - 11.0).abs() < 0.1, "{d:?}");
        let series = std::mem::take(&mut *series.lock().unwrap());
        let (points, _) = series.finish(ms(40));
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].answered, points[0].lost), (1, 1));
    }

    #[test]
    fn the_closed_meter_keeps_the_clients_latency_and_skips_what_was_handed_out_warm() {
        let warm = Arc::new(AtomicU64::new(2));
        let series = Arc::new(Mutex::new(Series::default()));
        let mut m = Meter::new(Tags::Closed { warm }, ms(20), series);
        m.sent(2, 1, ms(10));
        assert!(!m.replied(2, ms(25), ms(15)));
        m.sent(3, 1, ms(500));
        assert!(m.replied(3, ms(1500), ms(1000)));
        assert_eq!((m.requests, m.answered, m.late), (1, 1, 0));
        let d = m.latency.distribution().unwrap();
        assert!((d.max - 1000.0).abs() < 1.0, "{d:?}");
    }

    #[test]
    fn an_open_run_hands_each_client_its_slots_and_a_closed_one_counts_its_warm_requests() {
        let stop = Stop::new();
        let config = BenchConfig {
            client: ClientConfig::default(),
            clients: 2,
            limit: Limit::Requests(4),
            size: 3,
            rate: Some(1e6),
            warmup: Duration::ZERO,
            service: None,
            protocol: "lazy".into(),
            thresholds: Vec::new(),
        };
        let plan = Plan {
            rate: config.rate,
            warmup: config.warmup,
            limit: config.limit,
            clients: 2,
        };
        let closed = Arc::new(Closed::new(plan));
        let tags = Tags::Open { plan, client: 1 };
        let bodies: Vec<_> = requests(&config, &tags, &closed, Instant::now(), &stop).collect();
        assert_eq!(bodies, [b"2..".to_vec(), b"4..".to_vec()]);

        let config = BenchConfig {
            rate: None,
            warmup: Duration::from_secs(3600),
            ..config
        };
        let closed = Arc::new(Closed::new(Plan {
            rate: None,
            warmup: config.warmup,
            ..plan
        }));
        let warm = Arc::new(AtomicU64::new(0));
        let tags = Tags::Closed { warm: warm.clone() };
        let mut taken = requests(&config, &tags, &closed, Instant::now(), &stop);
        assert_eq!(taken.next(), Some(b"1..".to_vec()));
        assert_eq!(taken.next(), Some(b"2..".to_vec()));
        assert_eq!(
            warm.load(Ordering::SeqCst),
            2,
            "handed out during the warm-up"
        );
    }
}
