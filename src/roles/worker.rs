//! `pirate worker` for the Simple and Paranoid Pirate queues.
//!
//! Paranoid (6/PPP, DEALER): sends READY on every new socket, heartbeats every interval even
//! while a request is being worked on (the work runs on its own thread), and when the queue has
//! been silent for `liveness` intervals closes the socket, waits a doubling back-off and starts
//! over with a new socket and a new identity, forever.
//!
//! Simple (REQ): one READY, then receive a request, reply, repeat. No heartbeats.
//!
//! Faults are drawn per request: a crash kills the process on the spot (the request is lost
//! with it), an overload makes the work slower (heartbeats go on: slow but alive), a freeze
//! stops the whole worker, reads and heartbeats included, as a hung process would.

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::backoff::Backoff;
use crate::error::Result;
use crate::event::{Event, Events, Report, ServiceReport, Serving};
use crate::faults::Faults;
use crate::heartbeat::Liveness;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;
use crate::proto::ppp::{self, Ppp};
use crate::shutdown;
use crate::transport::{self, Notifier, Socket, Wakeup};

use super::work::{Ctx, Done};
pub use super::work::{PirateProtocol, WorkerConfig};

/// Takes on one request: draws and acts on its fault (a crash dies here, a freeze stops the
/// whole worker here), then works it on a thread so the socket loop can keep heartbeating
/// meanwhile (an overload only makes that thread slower). The result comes back on `done`.
fn start_work(
    ctx: &mut Ctx,
    envelope: Vec<Frame>,
    body: Message,
    done: &mpsc::Sender<Done>,
    wake: Option<Notifier>,
    events: &mut Events,
) -> Result<()> {
    let injected = ctx.inject(events)?;
    let work = ctx.config.faults.work + injected.extra_work;
    let handler = ctx.config.handler.clone();
    let done = done.clone();
    thread::spawn(move || {
        let serving = Serving::new(injected.cycle, &body, Instant::now());
        if shutdown::sleep(work).is_err() {
            return;
        }
        let reply = handler.handle(body);
        let _ = done.send(Done {
            envelope,
            reply,
            serving,
        });
        if let Some(wake) = wake {
            wake.notify();
        }
    });
    Ok(())
}

/// Runs the worker until stopped by a signal; returns its counters.
pub fn run(config: &WorkerConfig, events: &mut Events) -> Result<Report> {
    let role = match config.protocol {
        PirateProtocol::Paranoid => "worker (paranoid)".into(),
        PirateProtocol::Simple => "worker (simple)".into(),
        PirateProtocol::Majordomo(Version::V1) => format!("worker (mdp {})", config.service),
        PirateProtocol::Majordomo(Version::V2) => format!("worker (mdp2 {})", config.service),
    };
    let mut ctx = Ctx {
        config,
        faults: Faults::new(config.faults.clone(), config.seed),
        report: ServiceReport::start(role, &config.endpoint, config.seed, events),
        sockets: 0,
    };
    let zmq_ctx = zmq::Context::new();
    let result = match config.protocol {
        PirateProtocol::Paranoid => run_paranoid(&zmq_ctx, &mut ctx, events),
        PirateProtocol::Simple => run_simple(&zmq_ctx, &mut ctx, events),
        PirateProtocol::Majordomo(version) => super::mdp_worker::run(version, &mut ctx, events),
    };
    ctx.report.finish(result)
}

fn run_paranoid(zmq_ctx: &zmq::Context, ctx: &mut Ctx, events: &mut Events) -> Result<()> {
    let config = ctx.config;
    let mut backoff = Backoff::new(config.reconnect, config.reconnect_max);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let wakeup = Wakeup::new(zmq_ctx)?;
    loop {
        let identity = ctx.identity();
        let socket = transport::socket(zmq_ctx, zmq::DEALER, "worker", Some(&identity))?;
        socket.connect(&config.endpoint)?;
        socket.send(ppp::encode(Ppp::Ready), events)?;
        events.info(format!(
            "worker {} ready",
            String::from_utf8_lossy(&identity)
        ));
        let mut queue = Liveness::new(config.heartbeat, Instant::now());
        // Work in progress belongs to this socket: a reply computed for an old connection is
        // dropped, since its client has long retried.
        let mut busy = false;
        let mut backlog: Vec<(Vec<Frame>, Message)> = Vec::new();
        loop {
            shutdown::check()?;
            let now = Instant::now();
            let wake = queue.next_send().min(queue.expires_at());
            let readable = {
                let mut items = [
                    socket.raw().as_poll_item(zmq::POLLIN),
                    wakeup.socket().raw().as_poll_item(zmq::POLLIN),
                ];
                match zmq::poll(&mut items, shutdown::slice_until(wake)) {
                    Ok(_) | Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err(crate::Error::zmq("poll failed", e)),
                }
                items[0].is_readable()
            };
            wakeup.drain();
            if readable {
                let msg = socket.recv(events)?;
                queue.heard(Instant::now());
                backoff.reset();
                match ppp::decode(msg) {
                    Ok(Ppp::Heartbeat) => {}
                    Ok(Ppp::Data { envelope, body }) => backlog.push((envelope, body)),
                    Ok(Ppp::Ready) => {
                        ctx.report.invalid += 1;
                        events.invalid("worker", "READY from the queue");
                    }
                    Err(e) => {
                        ctx.report.invalid += 1;
                        events.invalid("worker", e.to_string());
                    }
                }
            }
            if let Ok(done) = done_rx.try_recv() {
                busy = false;
                let reply = ppp::encode(Ppp::Data {
                    envelope: done.envelope.clone(),
                    body: done.reply.clone(),
                });
                socket.send(reply, events)?;
                queue.sent(Instant::now());
                done.serving.served(&mut ctx.report, events);
            }
            if !busy && !backlog.is_empty() {
                let (envelope, body) = backlog.remove(0);
                start_work(
                    ctx,
                    envelope,
                    body,
                    &done_tx,
                    Some(wakeup.notifier()),
                    events,
                )?;
                busy = true;
            } else if busy && !backlog.is_empty() {
                // The queue must never hand a busy worker a second request (trap 7).
                ctx.report.invalid += 1;
                events.invalid("worker", "a second request while busy");
                backlog.clear();
            }
            let now = now.max(Instant::now());
            if queue.is_dead(now) {
                let delay = backoff.next_delay();
                events.emit(Event::PeerLost {
                    delay_ms: delay.as_millis() as u64,
                });
                drop(socket);
                shutdown::sleep(delay)?;
                // Whatever was in progress was for the lost connection.
                while done_rx.try_recv().is_ok() {}
                ctx.report.reconnects += 1;
                break;
            }
            if queue.heartbeat_due(now) {
                socket.send(ppp::encode(Ppp::Heartbeat), events)?;
            }
        }
    }
}

fn run_simple(zmq_ctx: &zmq::Context, ctx: &mut Ctx, events: &mut Events) -> Result<()> {
    let config = ctx.config;
    let identity = ctx.identity();
    let socket: Socket = transport::socket(zmq_ctx, zmq::REQ, "worker", Some(&identity))?;
    socket.connect(&config.endpoint)?;
    socket.send(ppp::encode(Ppp::Ready), events)?;
    events.info(format!(
        "worker {} ready",
        String::from_utf8_lossy(&identity)
    ));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    loop {
        shutdown::check()?;
        if !socket.poll_in(shutdown::POLL_SLICE.as_millis() as i64)? {
            continue;
        }
        let msg = socket.recv(events)?;
        let (envelope, body) = match ppp::decode(msg) {
            Ok(Ppp::Data { envelope, body }) => (envelope, body),
            other => {
                // REQ must answer before it can receive again: reply with nothing useful
                // would confuse a client, so count it and send READY to stay in the queue.
                ctx.report.invalid += 1;
                events.invalid("worker", format!("not a request: {other:?}"));
                socket.send(ppp::encode(Ppp::Ready), events)?;
                continue;
            }
        };
        start_work(ctx, envelope, body, &done_tx, None, events)?;
        let done = loop {
            shutdown::check()?;
            match done_rx.recv_timeout(shutdown::POLL_SLICE) {
                Ok(done) => break done,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        };
        let reply = ppp::encode(Ppp::Data {
            envelope: done.envelope.clone(),
            body: done.reply.clone(),
        });
        socket.send(reply, events)?;
        done.serving.served(&mut ctx.report, events);
    }
}
