//! Turns the library's events into output: replies (data) on stdout, human lines on stderr,
//! or JSON Lines on stdout with `--json`; a progress bar on stderr only when it is a terminal.
//! Every choice between human, JSON and quiet output is made here: [`run`] runs a role with
//! its events rendered, [`Renderer::note`] and [`Renderer::document`] print what is not an
//! event.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use pirate::error::Result;
use pirate::event::chaos::ProcessStatus;
use pirate::event::{Direction, Event, Events, Level, Report};
use pirate::reactor::Stop;

use crate::args::shared::OutputArgs;

/// How a role's progress shows on stderr, besides its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Events only.
    Plain,
    /// A progress bar of this many replies (a client with --count).
    Progress(u64),
    /// `pirate chaos`'s live status block.
    Live,
}

/// How each reply ends on stdout (without `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyEnd {
    /// One reply per line.
    Newline,
    /// NUL-terminated (`-0`), for `xargs -0`.
    Nul,
    /// The reply as it is (`--whole`: one request, one reply, byte for byte).
    Nothing,
}

impl ReplyEnd {
    fn bytes(self) -> &'static [u8] {
        match self {
            ReplyEnd::Newline => b"\n",
            ReplyEnd::Nul => b"\0",
            ReplyEnd::Nothing => b"",
        }
    }
}

/// Set once a write to stdout found it closed (`| head -1` has what it wanted).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// True once stdout was found closed: the run was stopped for it, and ends quietly.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Runs `role` with its events rendered as `output` asks, and renders its summary. Replies
/// end as `end` says; a closed stdout raises `stop`.
pub fn run(
    output: OutputArgs,
    view: View,
    end: ReplyEnd,
    stop: &Stop,
    role: impl FnOnce(&mut Events) -> Result<Report>,
) -> Result<Report> {
    let mut renderer = match view {
        View::Plain => Renderer::new(output),
        View::Progress(total) => Renderer::new(output).with_progress(Some(total)),
        View::Live => Renderer::new(output).with_live_view(),
    };
    renderer.reply_end = end;
    renderer.on_closed = Some(stop.clone());
    let mut events = Events::new(output.verbose, |e| renderer.render(e));
    let mut report = role(&mut events)?;
    if let Some(refused) = pirate::connections::summary() {
        report.set_connections_refused(refused);
    }
    events.emit(Event::Summary(report.clone()));
    Ok(report)
}

/// Renders events according to the output flags.
pub struct Renderer {
    output: OutputArgs,
    progress: Option<ProgressBar>,
    /// `pirate chaos`: redraw the status block on a terminal (else a line every few seconds).
    live: bool,
    live_bar: Option<ProgressBar>,
    last_line: Option<std::time::Instant>,
    /// The live view's last table, printed again above the verdict so it stays on screen.
    last_table: Option<String>,
    /// Colour the chaos verdict (a terminal, and no NO_COLOR).
    colour: bool,
    reply_end: ReplyEnd,
    /// Raised when stdout turns out closed: nobody reads the replies any more.
    on_closed: Option<Stop>,
}

impl Drop for Renderer {
    /// A role that failed leaves no bar behind on the terminal.
    fn drop(&mut self) {
        for bar in [self.progress.take(), self.live_bar.take()]
            .into_iter()
            .flatten()
        {
            bar.finish_and_clear();
        }
    }
}

impl Renderer {
    pub fn new(output: OutputArgs) -> Self {
        Renderer {
            output,
            progress: None,
            live: false,
            live_bar: None,
            last_line: None,
            last_table: None,
            colour: false,
            reply_end: ReplyEnd::Newline,
            on_closed: None,
        }
    }

    /// Shows `pirate chaos`'s live view: a redrawn block on a terminal, else one line every
    /// five seconds; nothing under `-q`.
    pub fn with_live_view(mut self) -> Self {
        self.live = !self.output.quiet;
        self.colour = pirate::chaos::live::colour_wanted(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        if self.live && std::io::stderr().is_terminal() {
            let bar = crate::bar::on_stderr(None);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("static template is valid"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            self.live_bar = Some(bar);
        }
        self
    }

    fn live_status(&mut self, elapsed_ms: u64, phase: &str, processes: &[ProcessStatus]) {
        if !self.live {
            return;
        }
        let table = pirate::chaos::live::table(elapsed_ms, phase, processes);
        self.last_table = Some(table.clone());
        if let Some(bar) = &self.live_bar {
            bar.set_message(table);
            return;
        }
        if phase == "end" {
            return; // the summary prints this last table in full
        }
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(5));
        if due || phase == "check" {
            self.last_line = Some(std::time::Instant::now());
            let parts: Vec<String> = processes
                .iter()
                .map(|p| match pirate::chaos::live::is_hub(&p.name) {
                    // It counts nothing per request; its own counts come in the last table.
                    true => format!("{} {}", p.name, p.state),
                    false => format!("{} {} ({})", p.name, p.state, p.count),
                })
                .collect();
            self.human(&format!(
                "chaos {:.1}s {phase}: {}",
                elapsed_ms as f64 / 1000.0,
                parts.join(", ")
            ));
        }
    }

    /// Shows a progress bar of `total` replies, only if stderr is a terminal and not `-q`.
    pub fn with_progress(mut self, total: Option<u64>) -> Self {
        if let Some(total) = total {
            if std::io::stderr().is_terminal() && !self.output.quiet {
                let bar = crate::bar::on_stderr(Some(total));
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

    /// A human line on stderr (kept clear of the progress bar and the live view).
    fn human(&self, line: &str) {
        match self.progress.as_ref().or(self.live_bar.as_ref()) {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// One `--json` line: the event with `ts` and `role` ([`pirate::json_lines`]).
    fn json(&self, event: &Event) {
        let line = pirate::json_lines::line(event, self.output.role);
        self.stdout(&[line.as_bytes(), b"\n"]);
    }

    /// Writes `parts` to stdout, flushed (a reply that ends in NUL must not wait in a buffer
    /// for a newline). A closed pipe (`| head -1`) is no error worth a message: the rest was
    /// not wanted, so the run is asked to stop, and nothing more is written.
    fn stdout(&self, parts: &[&[u8]]) {
        if stdout_closed() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let written = parts
            .iter()
            .try_for_each(|p| out.write_all(p))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                STDOUT_CLOSED.store(true, Ordering::SeqCst);
                if let Some(stop) = &self.on_closed {
                    stop.request();
                }
            }
        }
    }

    /// A note for humans on stderr that is not an event (`wrote man/pirate.1`); none under -q.
    pub fn note(&self, line: &str) {
        if !self.output.quiet {
            self.human(line);
        }
    }

    /// The command's result on stdout: `text` as it is, or under --json `event` as a line.
    pub fn document(&self, text: &str, event: &Event) {
        if self.output.json {
            self.json(event);
        } else {
            self.stdout(&[text.as_bytes()]);
        }
    }

    /// Bytes on stdout that are the command's result (`generate completions --out -`); under
    /// --json too, as they are no event.
    pub fn bytes(&self, bytes: &[u8]) {
        self.stdout(&[bytes]);
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
                // Under a progress bar, a line per reply (`server replied OK`) would bury it:
                // the bar counts them, and -v shows them.
                let hidden =
                    *level == Level::Info && self.progress.is_some() && !self.output.verbose;
                if (!quiet || *level == Level::Error) && !hidden {
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
                    self.stdout(&[&reply.0, self.reply_end.bytes()]);
                }
            }
            Event::ChaosStatus {
                elapsed_ms,
                phase,
                processes,
            } => {
                let (elapsed_ms, phase, processes) =
                    (*elapsed_ms, phase.clone(), processes.clone());
                self.live_status(elapsed_ms, &phase, &processes);
            }
            Event::Summary(report) => {
                if let Some(bar) = self.progress.take() {
                    bar.finish_and_clear();
                }
                if let Some(bar) = self.live_bar.take() {
                    bar.finish_and_clear();
                }
                if let (Some(table), false) = (self.last_table.take(), quiet) {
                    self.human(&table);
                }
                // Stopped because stdout closed: quiet, as `head`'s other writers are.
                if !quiet && !stdout_closed() {
                    let text = summary_text(report);
                    match report {
                        Report::Chaos(c) => {
                            self.human(&pirate::chaos::live::paint(&text, c.verdict, self.colour))
                        }
                        _ => self.human(&text),
                    }
                }
                if self.output.json {
                    self.json(&event);
                }
            }
            // A server's line per request (20,001 lines for a bench run) is for -v; its
            // summary counts them. Other roles keep theirs.
            Event::Served { .. }
                if !self.output.json && self.output.role == "server" && !self.output.verbose => {}
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
            ..
        } => {
            let seed = seed.map(|s| format!(" (seed {s})")).unwrap_or_default();
            format!("I: {role} on {endpoint}{seed}")
        }
        Event::Served { cycle, bytes, .. } => {
            let s = if *bytes == 1 { "" } else { "s" };
            format!("I: normal request #{cycle} ({bytes} byte{s})")
        }
        // Every send is already visible as a reply or a retry line.
        Event::Sent { .. } => return None,
        // Already logged as the reason and `state: X` lines.
        Event::BstarState { .. } => return None,
        Event::WorkerReady { worker } => format!("I: worker {worker} ready"),
        Event::ServiceWorkerReady {
            worker,
            service,
            credit: 1,
        } => format!("I: worker {worker} ready for service {service}"),
        Event::ServiceWorkerReady {
            worker,
            service,
            credit,
        } => format!("I: worker {worker} ready for service {service}, {credit} requests at once"),
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
        Event::PeerLost {
            reason, delay_ms, ..
        } if reason == "disconnect" && *delay_ms == 0 => {
            format!("W: disconnected by the broker; reconnecting now (after {delay_ms} ms)")
        }
        Event::PeerLost {
            reason, delay_ms, ..
        } if reason == "disconnect" => {
            format!("W: disconnected by the broker; reconnecting in {delay_ms} ms…")
        }
        Event::PeerLost { delay_ms, peer, .. } => {
            format!("W: heartbeat failure, can't reach the {peer}; reconnecting in {delay_ms} ms…")
        }
        Event::Invalid { socket, reason } => format!("E: invalid message on {socket}: {reason}"),
        Event::Refused {
            address,
            mechanism,
            reason,
            total,
        } if mechanism == "handshake" => {
            format!("W: refused a peer at {address} in its handshake: {reason} ({total} refused)")
        }
        Event::Refused {
            address,
            mechanism,
            reason,
            total,
        } => format!("W: refused {mechanism} peer {address}: {reason} ({total} refused)"),
        Event::ConnectionRefused {
            endpoint,
            peer,
            reason,
            total,
        } => {
            format!("W: closed a connection from {peer} to {endpoint}: {reason} ({total} refused)")
        }
        Event::NemesisPlanned {
            at_ms,
            fault,
            target,
        } => format!(
            "I: nemesis plans {fault} {target} at {:.1}s into the fault phase",
            *at_ms as f64 / 1000.0
        ),
        Event::Nemesis {
            at_ms,
            action,
            target,
        } => format!(
            "W: nemesis: {action} {target} at {:.1}s",
            *at_ms as f64 / 1000.0
        ),
        _ => return None,
    })
}

/// The end-of-run summary for humans.
pub fn summary_text(report: &Report) -> String {
    let mut text = role_summary_text(report);
    if let Some(c) = report.connections_refused().filter(|c| c.total > 0) {
        text.push_str(&format!(
            "\nconnections refused: {} (max connections {}, per address {}, no descriptors {}, \
             handshake timeout {})",
            c.total,
            c.max_connections,
            c.max_connections_per_address,
            c.no_descriptors,
            c.handshake_timeout
        ));
    }
    text
}

/// The role's own counters, as [`summary_text`] begins.
fn role_summary_text(report: &Report) -> String {
    match report {
        Report::Bench(b) => format!(
            "bench: {} answered of {}, {} lost, {} wrong, {:.0} req/s",
            b.answered, b.requests, b.lost, b.wrong, b.req_per_s
        ),
        Report::StoreCheck(c) => format!(
            "store check: {} entries kept, {} damaged stretches, {} torn bytes",
            c.entries,
            c.recovery.damage.len(),
            c.recovery.torn_bytes
        ),
        Report::Client(c) => {
            // A run without replies has no rate or latency to show, not zeros.
            let measured = match c.replied {
                0 => "no replies".to_string(),
                _ => format!(
                    "{:.0} req/s, latency p50 {:.1}ms p90 {:.1}ms p99 {:.1}ms max {:.1}ms",
                    c.req_per_s,
                    c.latency_ms.p50,
                    c.latency_ms.p90,
                    c.latency_ms.p99,
                    c.latency_ms.max,
                ),
            };
            format!(
                "summary: {}: requests {}, sent {}, replied {}, retries {}, reconnects {}, \
                 abandoned {}, mismatched {}; {measured}; {:.1}s",
                c.outcome.words(),
                c.requests,
                c.sent,
                c.replied,
                c.retries,
                c.reconnects,
                c.abandoned,
                c.mismatched,
                c.elapsed_ms / 1000.0
            )
            .to_lowercase()
        }
        Report::Service(s) => format!(
            "summary: requests {}, replied {}, overloads {}, freezes {}, invalid {}, \
             reconnects {}{}{} (seed {})",
            s.requests,
            s.replied,
            s.overloads,
            s.freezes,
            s.invalid,
            s.reconnects,
            match s.exec_failed {
                0 => String::new(),
                n => format!(", exec failed {n}"),
            },
            s.in_flight_max
                .map(|n| format!(", most at once {n}"))
                .unwrap_or_default(),
            s.seed
        ),
        Report::Chaos(c) => {
            let injected: Vec<String> = c.injected.iter().map(|(k, n)| format!("{k} {n}")).collect();
            // One line per network fault: when, what it cut, who noticed, when replies came.
            let network: String = c
                .network
                .iter()
                .map(|f| format!("\nnetwork: {}", f.describe()))
                .collect();
            // Where the evidence is, and the whole command that runs the same again (a
            // seed alone does not replay a run that had other flags).
            let report = c
                .out
                .as_ref()
                .map(|dir| {
                    let page = std::path::Path::new(dir).join(pirate::chaos::html::FILE);
                    format!("\nreport: {}", page.display())
                })
                .unwrap_or_default();
            let replay = if c.run.replay.is_empty() {
                format!("pirate chaos --seed {}", c.seed)
            } else {
                c.run.replay_line()
            };
            format!(
                "{}{network}\nnemesis: {} (fault phase {:.1}s)\nseed {}{report}\nreplay: {replay}",
                c.findings.summary_text().trim_end(),
                if injected.is_empty() {
                    "nothing injected".to_string()
                } else {
                    injected.join(", ")
                },
                c.fault_phase_ms as f64 / 1000.0,
                c.seed,
            )
        }
        Report::Proxy(p) => {
            let faults: Vec<String> = p.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!(
                "summary: forwarded up {}, down {}, peers {}; faults: {} (seed {})",
                p.forwarded_up,
                p.forwarded_down,
                p.peers,
                if faults.is_empty() { "none".to_string() } else { faults.join(", ") },
                p.seed
            )
        }
        Report::Majordomo(m) => format!(
            "summary: requests {}, dispatched {}, replies {}, partials {}, mmi {}, workers seen {}, \
             expired {}, stuck {}, disconnects {}, requests expired {}, rejected {}, lost {}, \
             invalid {}",
            m.requests,
            m.dispatched,
            m.replies,
            m.partials,
            m.mmi,
            m.workers_seen,
            m.workers_expired,
            m.workers_stuck,
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
                "summary: routed {}, replied {}, workers seen {}, expired {}, stuck {}, \
                 gone {}, evicted {}, invalid {}, refused replies {}; per worker: {}",
                b.routed,
                b.replied,
                b.workers_seen,
                b.workers_expired,
                b.workers_stuck,
                b.workers_gone,
                b.workers_evicted,
                b.invalid,
                b.refused_replies,
                if spread.is_empty() {
                    "none".to_string()
                } else {
                    spread.join(" ")
                }
            )
        }
    }
}
