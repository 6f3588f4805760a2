//! `pirate worker --protocol mdp|mdp2`: a Majordomo worker role on top of
//! [`MdpWorker`](crate::majordomo::MdpWorker), with the shared handler and fault injection.
//!
//! The work runs on its own thread while the socket loop keeps heartbeating (a slow worker is
//! still a live one). In 0.2, `--exec` streams: every line of the command's stdout but the
//! last goes out as a PARTIAL as soon as it is written, and the last line is the FINAL.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{Events, Serving};
use crate::handler::{stream_command, Handler};
use crate::majordomo::{MdpWorker, MdpWorkerConfig};
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::shutdown;
use crate::transport::{Notifier, Wakeup};

use super::work::{Ctx, Done};

/// What the work thread reports.
enum Progress {
    /// One line of a streaming command's output (0.2 PARTIAL).
    Partial(Vec<u8>, Message),
    Done(Done),
}

pub(crate) fn run(version: Version, ctx: &mut Ctx, events: &mut Events) -> Result<()> {
    let config = ctx.config;
    let mdp_config = MdpWorkerConfig {
        endpoint: config.endpoint.clone(),
        service: config.service.clone(),
        version,
        heartbeat: config.heartbeat,
        reconnect: config.reconnect,
        reconnect_max: config.reconnect_max,
        name: config.name.clone(),
        failover: config.failover.clone(),
    };
    let mut worker = MdpWorker::connect(mdp_config, events)?;
    let wakeup = Wakeup::new(&zmq::Context::new())?;
    let (tx, rx) = mpsc::channel::<Progress>();
    let mut busy = false;
    loop {
        let reconnects_before = worker.reconnects();
        let polled = worker.poll_with(shutdown::POLL_SLICE, Some(wakeup.socket()), events)?;
        wakeup.drain();
        if let Some(request) = polled {
            if busy {
                // A broker must never hand a busy worker a second request (trap 7).
                ctx.report.invalid += 1;
                events.invalid("worker", "a second request while busy");
            } else {
                let injected = ctx.inject(events)?;
                let work = config.faults.work + injected.extra_work;
                let cycle = injected.cycle;
                if work.is_zero() && config.handler == Handler::Echo {
                    // Nothing to wait for: answer inline, no thread, no wake-up round trip.
                    let done = Done {
                        envelope: vec![request.client],
                        serving: Serving::new(cycle, &request.body, Instant::now()),
                        reply: request.body,
                    };
                    tx.send(Progress::Done(done)).ok();
                } else {
                    busy = true;
                    let job = Job {
                        handler: config.handler.clone(),
                        version,
                        client: request.client,
                        body: request.body,
                        work,
                        cycle,
                    };
                    job.start(tx.clone(), wakeup.notifier());
                }
            }
        }
        if worker.reconnects() != reconnects_before {
            ctx.report.reconnects += worker.reconnects() - reconnects_before;
        }
        while let Ok(progress) = rx.try_recv() {
            match progress {
                Progress::Partial(client, body) => worker.partial(&client, body, events)?,
                Progress::Done(mut done) => {
                    busy = false;
                    let client = done.envelope.first().cloned().unwrap_or_default();
                    let reply = std::mem::take(&mut done.reply);
                    worker.reply(&client, reply, events)?;
                    done.serving.served(&mut ctx.report, events);
                }
            }
        }
        ctx.report.invalid = ctx.report.invalid.max(worker.invalid());
    }
}

/// One request to work on, off the socket thread.
struct Job {
    handler: Handler,
    version: Version,
    client: Vec<u8>,
    body: Message,
    work: Duration,
    cycle: u64,
}

impl Job {
    /// Works on its own thread, sending progress on `tx` and waking the loop each time.
    fn start(self, tx: mpsc::Sender<Progress>, wake: Notifier) {
        thread::spawn(move || {
            let Job {
                handler,
                version,
                client,
                body,
                work,
                cycle,
            } = self;
            let serving = Serving::new(cycle, &body, Instant::now());
            if shutdown::sleep(work).is_err() {
                return;
            }
            let reply = match (&handler, version) {
                (Handler::Exec(exec), Version::V2) => {
                    let last = stream_command(exec, body, |line| {
                        let part = Message::from_frames(vec![line]);
                        let _ = tx.send(Progress::Partial(client.clone(), part));
                        wake.notify();
                    });
                    Message::from_frames(vec![last])
                }
                _ => handler.handle(body),
            };
            let _ = tx.send(Progress::Done(Done {
                envelope: vec![client],
                reply,
                serving,
            }));
            wake.notify();
        });
    }
}
