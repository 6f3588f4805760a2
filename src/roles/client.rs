//! `pirate client` in Lazy Pirate mode: a REQ socket, a timeout per attempt, and on timeout
//! close the socket, open a new one and resend, giving up after the retries.
//!
//! A REQ socket only ever holds one request, and every retry uses a fresh socket, so a late
//! reply to an earlier attempt arrives at a closed socket and can never be taken as the answer
//! to a later request (trap 9 in `protocols.md`). With `check_echo` (the Guide's `--count`
//! sequence), a reply that is not the request is reported as a mismatch and never accepted.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::msg::Message;
use crate::shutdown;
use crate::stats::{millis, LatencyRecorder};
use crate::transport::{self, Socket};

/// Everything the Lazy Pirate client needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Guide: `tcp://localhost:5555`.
    pub endpoint: String,
    /// How long one attempt waits for its reply (Guide: 2500 ms).
    pub timeout: Duration,
    /// Attempts per request, the first included (the Guide's REQUEST_RETRIES: 3).
    pub retries: u32,
    /// Every reply must equal its request (the Guide's test sequence).
    pub check_echo: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: "tcp://localhost:5555".into(),
            timeout: Duration::from_millis(2500),
            retries: 3,
            check_echo: false,
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Replied(Message),
    TimedOut,
}

/// Tracks the run and builds the report.
struct Run {
    report: ClientReport,
    latency: LatencyRecorder,
    started: Instant,
}

impl Run {
    fn finish(mut self, outcome: Outcome) -> Report {
        self.report.outcome = outcome;
        self.report.elapsed_ms = millis(self.started.elapsed());
        self.report.latency_ms = self.latency.summary();
        Report::Client(self.report)
    }
}

fn open(ctx: &zmq::Context, endpoint: &str) -> Result<Socket> {
    let socket = transport::socket(ctx, zmq::REQ, "client", None)?;
    socket.connect(endpoint)?;
    Ok(socket)
}

/// Waits up to `timeout` for the reply, looking at the stop flag every poll slice.
fn await_reply(socket: &Socket, timeout: Duration, events: &mut Events) -> Result<Attempt> {
    let deadline = Instant::now() + timeout;
    loop {
        shutdown::check()?;
        if socket.poll_in(shutdown::slice_until(deadline))? {
            return Ok(Attempt::Replied(socket.recv(events)?));
        }
        if Instant::now() >= deadline {
            return Ok(Attempt::TimedOut);
        }
    }
}

/// Sends each request in turn and reports every reply as an event, in order. Returns the
/// summary; the outcome says whether the run completed, abandoned or was interrupted.
pub fn run(
    config: &ClientConfig,
    requests: impl IntoIterator<Item = String>,
    events: &mut Events,
) -> Result<Report> {
    let ctx = zmq::Context::new();
    let mut socket = open(&ctx, &config.endpoint)?;
    let retries = config.retries.max(1);
    let mut run = Run {
        report: ClientReport {
            endpoint: config.endpoint.clone(),
            outcome: Outcome::Completed,
            requests: 0,
            sent: 0,
            replied: 0,
            retries: 0,
            reconnects: 0,
            abandoned: 0,
            mismatched: 0,
            elapsed_ms: 0.0,
            latency_ms: Default::default(),
        },
        latency: LatencyRecorder::default(),
        started: Instant::now(),
    };
    events.emit(Event::Started {
        role: "client".into(),
        endpoint: config.endpoint.clone(),
        seed: None,
    });
    for (index, request) in requests.into_iter().enumerate() {
        if shutdown::requested() {
            return Ok(run.finish(Outcome::Interrupted));
        }
        let seq = index as u64 + 1;
        run.report.requests += 1;
        let first_sent = Instant::now();
        let mut attempt = 1;
        loop {
            socket.send(Message::from_frames(vec![request.as_bytes()]), events)?;
            run.report.sent += 1;
            let outcome = match await_reply(&socket, config.timeout, events) {
                Ok(o) => o,
                Err(crate::error::Error::Interrupted) => {
                    return Ok(run.finish(Outcome::Interrupted));
                }
                Err(e) => return Err(e),
            };
            let reason = match outcome {
                Attempt::Replied(reply) => {
                    let text = reply.text();
                    if !config.check_echo || text == request {
                        let latency = first_sent.elapsed();
                        run.latency.record(latency);
                        run.report.replied += 1;
                        if config.check_echo {
                            events.info(format!("server replied OK ({text})"));
                        }
                        events.emit(Event::Reply {
                            seq,
                            request,
                            reply: text,
                            attempts: attempt,
                            latency_ms: millis(latency),
                        });
                        break;
                    }
                    run.report.mismatched += 1;
                    events.emit(Event::Mismatch {
                        seq,
                        expected: request.clone(),
                        got: text.clone(),
                    });
                    events.error(format!("malformed reply from server: {text}"));
                    "mismatched reply"
                }
                Attempt::TimedOut => "timeout",
            };
            if attempt >= retries {
                run.report.abandoned += 1;
                events.emit(Event::Abandoned {
                    seq,
                    request,
                    attempts: attempt,
                });
                events.error("server seems to be offline, abandoning");
                return Ok(run.finish(Outcome::Abandoned));
            }
            events.warn("no response from server, retrying…");
            events.emit(Event::Retry {
                seq,
                attempt,
                reason: reason.into(),
            });
            run.report.retries += 1;
            // The old socket may still hold the unanswered request: close it (LINGER 0 drops
            // it) and open a fresh one, so nothing late from it can ever be read.
            drop(socket);
            events.info("reconnecting to server…");
            socket = open(&ctx, &config.endpoint)?;
            run.report.reconnects += 1;
            attempt += 1;
        }
    }
    Ok(run.finish(Outcome::Completed))
}
