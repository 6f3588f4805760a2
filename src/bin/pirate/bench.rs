//! `pirate bench`: its flags, the progress bar (a terminal only), and the result printed on
//! stdout (a table for people; with `--json` a `started` line then one record), and the
//! `--histogram` file. The run itself is [`pirate::bench::run`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use pirate::bench::threshold::Threshold;
use pirate::bench::{BenchConfig, BenchReport, Limit, Verdict};
use pirate::error::{self, Result};
use pirate::event::{Event, Report};
use pirate::reactor::Stop;
use pirate::roles::client::ClientConfig;

use crate::args::shared::OutputArgs;
use crate::args::shared::{framing, ClientProtocol};
use crate::args::values::{
    default_duration, parse_connect_endpoint, parse_positive_duration, parse_size,
};
use crate::render::Renderer;

/// The largest request body: every buffer has a bound.
const MAX_SIZE: u64 = 64 << 20;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Endpoint of the broker (with --service) or Lazy Pirate server to load
    #[arg(long, default_value = ClientConfig::default().endpoint, value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
    pub connect: String,
    /// Speak Majordomo to a broker and load this service
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Client protocol: bare Lazy Pirate, or Majordomo 0.1 / 0.2 [default: lazy, or mdp with
    /// --service]
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub protocol: Option<ClientProtocol>,
    /// Clients at once, each a thread with a connection (or, to a foreign broker, a socket
    /// per request) of its own
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
    /// Requests in flight per client (with --rate, requests due while the window is full
    /// wait, and that wait counts in their latency)
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub window: u32,
    /// Open model: R requests per second over every client, each with an intended start
    /// time, its latency measured from then (a stall shows, as in wrk2); without it each
    /// client sends as soon as its window has room (closed model)
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Send requests for this long first without measuring them (counts, latencies and
    /// --requests/--duration start after it)
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub warmup: Option<Duration>,
    /// Requests in all, shared by every client [default: 10000 unless --duration]
    #[arg(long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Run this long instead of a number of requests (the requests in flight then finish)
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Bytes in each request body (its number, then dots); sizes take k/M or KiB/MiB
    #[arg(long, default_value = "11", value_name = "SIZE", value_parser = parse_body_size)]
    pub size: u64,
    /// Check that every reply equals its request (an echo service); one that does not is
    /// counted wrong and retried
    #[arg(long)]
    pub expect_echo: bool,
    /// How long each attempt waits for its reply
    #[arg(long, default_value = default_duration(ClientConfig::default().timeout), value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Attempts per request, the first included, before the client abandons it
    #[arg(long, default_value_t = ClientConfig::default().retries, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: u32,
    /// Write the latency distribution to FILE as CSV (percentile,latency_ms,count), for
    /// plotting
    #[arg(long, value_name = "FILE")]
    pub histogram: Option<std::path::PathBuf>,
    /// Fail the run (exit 1) if EXPR holds: METRIC<VALUE, <=, > or >=, e.g. p99>5ms,
    /// lost>0, rate<1000; metrics p50 p90 p99 p99.9 max mean stddev (with us/ms/s), lost
    /// wrong late retries answered rate; repeatable
    #[arg(long, value_name = "EXPR", value_parser = Threshold::parse)]
    pub fail_if: Vec<Threshold>,
}

/// The highest --rate: a request every microsecond.
const MAX_RATE: f64 = 1e6;

fn parse_rate(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= MAX_RATE => Ok(r),
        Ok(_) => Err("want requests per second, over 0 and at most 1000000".to_string()),
        Err(_) => Err("not a number of requests per second".to_string()),
    }
}

fn parse_body_size(text: &str) -> std::result::Result<u64, String> {
    match parse_size(text)? {
        n if n > MAX_SIZE => Err(format!("--size {text} is over the limit of 64MiB")),
        n => Ok(n),
    }
}

impl BenchArgs {
    /// The protocol spoken: --protocol, else lazy, or mdp with --service.
    pub fn protocol(&self) -> ClientProtocol {
        ClientProtocol::or_default(self.protocol, &self.service)
    }

    pub fn config(&self) -> BenchConfig {
        BenchConfig {
            client: ClientConfig {
                endpoint: self.connect.clone(),
                timeout: self.timeout,
                retries: self.retries,
                check_echo: self.expect_echo,
                framing: framing(self.protocol(), self.service.clone().unwrap_or_default()),
                window: self.window as usize,
                ..ClientConfig::default()
            },
            clients: self.clients as usize,
            limit: match (self.requests, self.duration) {
                (_, Some(d)) => Limit::Duration(d),
                (n, None) => Limit::Requests(n.unwrap_or(10_000)),
            },
            size: self.size as usize,
            rate: self.rate,
            warmup: self.warmup.unwrap_or_default(),
            service: self.service.clone(),
            protocol: self.protocol_name().to_string(),
            thresholds: self.fail_if.clone(),
        }
    }

    fn protocol_name(&self) -> String {
        self.protocol()
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// Runs the benchmark and prints its result; returns the exit code.
pub fn run(args: BenchArgs, output: OutputArgs, stop: &Stop) -> Result<i32> {
    let config = args.config();
    // A --histogram that cannot be written is a usage error before the run, not after it.
    let histogram = match &args.histogram {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| {
                error::Error::Usage(format!("cannot write --histogram {}: {e}", path.display()))
            })?,
        )),
        None => None,
    };
    let answered = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let renderer = Mutex::new(Renderer::new(output));
    if let Ok(mut renderer) = renderer.lock() {
        let model = match config.rate {
            Some(rate) => format!("open model, {} req/s", number(rate)),
            None => "closed model".to_string(),
        };
        let role = match &config.service {
            Some(service) => format!("bench ({} service {service}, {model})", config.protocol),
            None => format!("bench ({}, {model})", config.protocol),
        };
        renderer.render(Event::started(role, config.client.endpoint.clone(), None));
    }
    let bar = progress_bar(&config, output);
    let sink = |event: Event| {
        // Every client says so when it retries or gives up: lines for -v, not for a table.
        let shown = match &event {
            Event::Log { .. } => output.verbose,
            _ => true,
        };
        if shown {
            if let Ok(mut renderer) = renderer.lock() {
                renderer.render(event);
            }
        }
    };
    let finished = std::thread::scope(|scope| {
        if let Some(bar) = &bar {
            scope.spawn(|| {
                let started = std::time::Instant::now();
                while !done.load(Ordering::Relaxed) {
                    let n = answered.load(Ordering::Relaxed);
                    bar.set_position(n);
                    let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!("{rate:.0} req/s"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let finished = pirate::bench::run(&config, stop, &answered, output.verbose, &sink);
        done.store(true, Ordering::Relaxed);
        finished
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let finished = finished?;
    if let Some((path, mut file)) = histogram {
        use std::io::Write;
        let csv = finished.latency.percentiles_csv();
        file.write_all(csv.as_bytes()).map_err(|e| {
            error::Error::Internal(format!("cannot write --histogram {}: {e}", path.display()))
        })?;
    }
    let report = finished.report;
    let text = table(&report);
    let verdict = report.verdict;
    Renderer::new(output).document(&text, &Event::Summary(Report::Bench(Box::new(report))));
    Ok(match verdict {
        Verdict::Completed => error::EXIT_OK,
        Verdict::Failed | Verdict::ThresholdFailed => error::EXIT_FAILED,
        Verdict::Unreachable => error::EXIT_UNAVAILABLE,
        Verdict::NoService => error::EXIT_NO_SERVICE,
        Verdict::Interrupted => error::EXIT_INTERRUPTED,
    })
}

/// A bar of replies on stderr, only when it is a terminal and not under -q or -v.
fn progress_bar(config: &BenchConfig, output: OutputArgs) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || output.quiet || output.verbose {
        return None;
    }
    let bar = match config.limit {
        Limit::Requests(total) => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} replies, {msg}",
                )
                .expect("static template is valid"),
            );
            bar
        }
        Limit::Duration(_) => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} replies, {msg}")
                    .expect("static template is valid"),
            );
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// `n thing` or `n things`.
fn count(n: u64, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        _ if thing.ends_with('y') => format!("{n} {}ies", &thing[..thing.len() - 1]),
        _ => format!("{n} {thing}s"),
    }
}

/// A rate as given: `1000`, `0.5`.
fn number(x: f64) -> String {
    format!("{x}")
}

/// The result for people.
fn table(r: &BenchReport) -> String {
    let what = match &r.service {
        Some(service) => format!("service {service} at {}", r.endpoint),
        None => r.endpoint.clone(),
    };
    let model = match r.rate {
        Some(rate) => format!("open model at {} req/s", number(rate)),
        None => "closed model".to_string(),
    };
    let mut t = format!(
        "pirate bench: {} x {} in flight, {}-byte {} requests to {what}, {model}\n",
        count(r.clients as u64, "client"),
        r.window,
        r.size,
        r.protocol,
    );
    if r.warmup_ms > 0.0 {
        t += &format!("warm-up     {:.3} s, not measured\n", r.warmup_ms / 1000.0);
    }
    t += &format!(
        "answered    {} of {} ({} lost, {} wrong, {}) in {:.3} s\n",
        r.answered,
        count(r.requests, "request"),
        r.lost,
        r.wrong,
        count(r.retries, "retry"),
        r.elapsed_ms / 1000.0,
    );
    if r.rate.is_some() {
        t += &format!(
            "late        {} could not start on time (latency counts from the intended start)\n",
            count(r.late, "request"),
        );
    }
    match &r.latency_ms {
        Some(l) => {
            t += &format!("throughput  {:.0} req/s\n", r.req_per_s);
            t += &format!(
                "latency     p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms\n\
                 \x20           mean {:.3} ms  stddev {:.3} ms\n",
                l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean, l.stddev
            );
        }
        None => {
            t += "throughput  no replies\n";
            t += "latency     no replies\n";
        }
    }
    for c in &r.thresholds {
        let status = if c.failed { "FAILED" } else { "passed" };
        t += &format!("threshold   {status}: {c}\n");
    }
    let why = |default: &str| r.error.clone().unwrap_or_else(|| default.to_string());
    t += &format!(
        "verdict     {}\n",
        match r.verdict {
            Verdict::Completed => "completed".to_string(),
            Verdict::Failed => "FAILED: requests lost or wrongly answered".to_string(),
            Verdict::ThresholdFailed => "FAILED: a --fail-if threshold was crossed".to_string(),
            Verdict::Unreachable => format!(
                "UNREACHABLE: no request was answered ({})",
                why("nothing answered")
            ),
            Verdict::NoService => format!("NO SERVICE: {}", why("no worker for the service")),
            Verdict::Interrupted => "interrupted".to_string(),
        }
    );
    t
}
