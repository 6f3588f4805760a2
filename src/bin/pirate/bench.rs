//! `pirate bench`: its flags, the progress bar (a terminal only), and the result printed on
//! stdout (a table for people, one JSON record with `--json`). The run itself is
//! [`pirate::bench::run`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use pirate::bench::{BenchConfig, BenchReport, Limit, Verdict};
use pirate::error::{self, Result};
use pirate::event::{Event, Report};
use pirate::reactor::Stop;
use pirate::roles::client::ClientConfig;

use crate::render::Renderer;
use crate::shared_args::OutputArgs;
use crate::shared_args::{framing, ClientProtocol};
use crate::values::{parse_connect_endpoint, parse_positive_duration, parse_size};

/// The largest request body: every buffer has a bound.
const MAX_SIZE: u64 = 64 << 20;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Endpoint of the broker (with --service) or Lazy Pirate server to load
    #[arg(long, default_value = "tcp://localhost:5555", value_name = "ENDPOINT", value_parser = parse_connect_endpoint)]
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
    /// Requests in flight per client
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub window: u32,
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
    #[arg(long, default_value = "2500ms", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Attempts per request, the first included, before the client abandons it
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retries: u32,
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
        }
    }
}

/// Runs the benchmark and prints its result; returns the exit code.
pub fn run(args: BenchArgs, output: OutputArgs, stop: &Stop) -> Result<i32> {
    let config = args.config();
    let answered = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let renderer = Mutex::new(Renderer::new(output));
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
    let report = std::thread::scope(|scope| {
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
        let report = pirate::bench::run(&config, stop, &answered, output.verbose, &sink);
        done.store(true, Ordering::Relaxed);
        report
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let text = table(&report, &args);
    let verdict = report.verdict;
    Renderer::new(output).document(&text, &Event::Summary(Report::Bench(report)));
    Ok(match verdict {
        Verdict::Completed => error::EXIT_OK,
        Verdict::Failed => error::EXIT_FAILED,
        Verdict::Unreachable => error::EXIT_UNAVAILABLE,
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

/// The result for people.
fn table(r: &BenchReport, args: &BenchArgs) -> String {
    let what = match &args.service {
        Some(service) => format!("service {service} at {}", r.endpoint),
        None => r.endpoint.clone(),
    };
    let l = &r.latency_ms;
    format!(
        "pirate bench: {} client(s) x {} in flight, {}-byte requests to {what}\n\
         answered    {} of {} ({} lost, {} wrong, {} retries) in {:.3} s\n\
         throughput  {:.0} req/s\n\
         latency     p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms\n\
         verdict     {}\n",
        r.clients,
        r.window,
        r.size,
        r.answered,
        r.requests,
        r.lost,
        r.wrong,
        r.retries,
        r.elapsed_ms / 1000.0,
        r.req_per_s,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        match r.verdict {
            Verdict::Completed => "completed",
            Verdict::Failed => "FAILED: requests lost or wrongly answered",
            Verdict::Unreachable => "UNREACHABLE: no request was answered",
            Verdict::Interrupted => "interrupted",
        }
    )
}
