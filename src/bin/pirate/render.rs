//! Turns the library's events into output: replies (data) on stdout, human lines on stderr,
//! or JSON Lines on stdout with `--json`; a progress bar on stderr only when it is a terminal.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use pirate::event::{Direction, Event, Level, Report};

use crate::cli::OutputArgs;

/// Renders events according to the output flags.
pub struct Renderer {
    output: OutputArgs,
    progress: Option<ProgressBar>,
}

impl Renderer {
    pub fn new(output: OutputArgs) -> Self {
        Renderer {
            output,
            progress: None,
        }
    }

    /// Shows a progress bar of `total` replies, only if stderr is a terminal and not `-q`.
    pub fn with_progress(mut self, total: Option<u64>) -> Self {
        if let Some(total) = total {
            if std::io::stderr().is_terminal() && !self.output.quiet {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} replies {msg}",
                    )
                    .expect("static template is valid"),
                );
                self.progress = Some(bar);
            }
        }
        self
    }

    /// A human line on stderr (kept clear of the progress bar).
    fn human(&self, line: &str) {
        match &self.progress {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn json(&self, event: &Event) {
        let line = serde_json::to_string(event).expect("events always serialise");
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a panic: the data was not wanted.
        let _ = writeln!(out, "{line}");
    }

    fn data(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// Renders one event.
    pub fn render(&mut self, event: Event) {
        let quiet = self.output.quiet;
        match &event {
            Event::Log { level, message } => {
                let tag = match level {
                    Level::Info => "I",
                    Level::Warn => "W",
                    Level::Error => "E",
                };
                if !quiet || *level == Level::Error {
                    self.human(&format!("{tag}: {message}"));
                }
            }
            Event::Frame {
                socket,
                direction,
                frames,
            } => {
                let arrow = match direction {
                    Direction::In => "in ",
                    Direction::Out => "out",
                };
                let mut text = format!("---------------------------------------- {socket} {arrow}");
                for f in frames {
                    text.push('\n');
                    text.push_str(f);
                }
                self.human(&text);
            }
            Event::Reply { reply, .. } => {
                if let Some(bar) = &self.progress {
                    bar.inc(1);
                }
                if self.output.json {
                    self.json(&event);
                } else {
                    self.data(reply);
                }
            }
            Event::Summary(report) => {
                if let Some(bar) = self.progress.take() {
                    bar.finish_and_clear();
                }
                if !quiet {
                    self.human(&summary_text(report));
                }
                if self.output.json {
                    self.json(&event);
                }
            }
            _ => {
                if self.output.json {
                    self.json(&event);
                } else if !quiet {
                    if let Some(line) = human_text(&event) {
                        self.human(&line);
                    }
                }
            }
        }
    }
}

/// The human line for events that are not already logged as text.
fn human_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::Started {
            role,
            endpoint,
            seed,
        } => {
            let seed = seed.map(|s| format!(" (seed {s})")).unwrap_or_default();
            format!("I: {role} on {endpoint}{seed}")
        }
        Event::Served { cycle, bytes, .. } => format!("I: normal request #{cycle} ({bytes} bytes)"),
        // Every send is already visible as a reply or a retry line.
        Event::Sent { .. } => return None,
        Event::WorkerReady { worker } => format!("I: worker {worker} ready"),
        Event::ServiceWorkerReady { worker, service } => {
            format!("I: worker {worker} ready for service {service}")
        }
        Event::WorkerDisconnected { worker, reason } => {
            format!("W: worker {worker} disconnected: {reason}")
        }
        Event::RequestDropped { service, reason } => {
            format!("W: request for {service} dropped: {reason}")
        }
        Event::WorkerExpired { worker, busy } => {
            let state = if *busy { " while busy" } else { "" };
            format!("W: worker {worker} expired{state}")
        }
        Event::PeerLost { delay_ms } => {
            format!("W: heartbeat failure, can't reach queue; reconnecting in {delay_ms} ms…")
        }
        Event::Invalid { socket, reason } => format!("E: invalid message on {socket}: {reason}"),
        _ => return None,
    })
}

/// The end-of-run summary for humans.
pub fn summary_text(report: &Report) -> String {
    match report {
        Report::Client(c) => format!(
            "summary: {:?}: requests {}, sent {}, replied {}, retries {}, reconnects {}, \
             abandoned {}, mismatched {}; latency p50 {:.1}ms p90 {:.1}ms p99 {:.1}ms max {:.1}ms; \
             {:.1}s",
            c.outcome,
            c.requests,
            c.sent,
            c.replied,
            c.retries,
            c.reconnects,
            c.abandoned,
            c.mismatched,
            c.latency_ms.p50,
            c.latency_ms.p90,
            c.latency_ms.p99,
            c.latency_ms.max,
            c.elapsed_ms / 1000.0
        )
        .to_lowercase(),
        Report::Service(s) => format!(
            "summary: requests {}, replied {}, overloads {}, freezes {}, invalid {}, \
             reconnects {} (seed {})",
            s.requests, s.replied, s.overloads, s.freezes, s.invalid, s.reconnects, s.seed
        ),
        Report::Majordomo(m) => format!(
            "summary: requests {}, dispatched {}, replies {}, partials {}, mmi {}, workers seen {}, \
             expired {}, disconnects {}, requests expired {}, rejected {}, lost {}, invalid {}",
            m.requests,
            m.dispatched,
            m.replies,
            m.partials,
            m.mmi,
            m.workers_seen,
            m.workers_expired,
            m.disconnects,
            m.requests_expired,
            m.requests_rejected,
            m.requests_lost,
            m.invalid
        ),
        Report::Broker(b) => {
            let spread: Vec<String> = b
                .per_worker
                .iter()
                .map(|(w, n)| format!("{w}={n}"))
                .collect();
            format!(
                "summary: routed {}, replied {}, workers seen {}, expired {}, invalid {}; \
                 per worker: {}",
                b.routed,
                b.replied,
                b.workers_seen,
                b.workers_expired,
                b.invalid,
                spread.join(" ")
            )
        }
    }
}
