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
use crate::event::Events;
use crate::handler::{stream_command, Handler};
use crate::majordomo::{MdpWorker, MdpWorkerConfig};
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::shutdown;

use super::worker::{served, Ctx, Done};

/// What the work thread reports.
enum Progress {
    /// One line of a streaming command's output (0.2 PARTIAL).
    Partial(Vec<u8>, Message),
    Done(Done),
}

/// How often the loop looks for finished work while busy.
const BUSY_POLL: Duration = Duration::from_millis(5);

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
    };
    let mut worker = MdpWorker::connect(mdp_config, events)?;
    let (tx, rx) = mpsc::channel::<Progress>();
    let mut busy = false;
    loop {
        let timeout = if busy {
            BUSY_POLL
        } else {
            shutdown::POLL_SLICE
        };
        let reconnects_before = worker.reconnects();
        if let Some(request) = worker.poll(timeout, events)? {
            if busy {
                // A broker must never hand a busy worker a second request (trap 7).
                ctx.report.invalid += 1;
                events.invalid("worker", "a second request while busy");
            } else {
                let (cycle, extra) = ctx.apply_fault(events)?;
                busy = true;
                start(
                    &config.handler,
                    version,
                    request.client,
                    request.body,
                    config.faults.work + extra,
                    cycle,
                    tx.clone(),
                );
            }
        }
        if worker.reconnects() != reconnects_before {
            ctx.report.reconnects += worker.reconnects() - reconnects_before;
        }
        while let Ok(progress) = rx.try_recv() {
            match progress {
                Progress::Partial(client, body) => worker.partial(&client, body, events)?,
                Progress::Done(done) => {
                    busy = false;
                    let client = done.envelope.first().cloned().unwrap_or_default();
                    worker.reply(&client, done.reply.clone(), events)?;
                    served(ctx, &done, events);
                }
            }
        }
        ctx.report.invalid = ctx.report.invalid.max(worker.invalid());
    }
}

fn start(
    handler: &Handler,
    version: Version,
    client: Vec<u8>,
    body: Message,
    work: Duration,
    cycle: u64,
    tx: mpsc::Sender<Progress>,
) {
    let handler = handler.clone();
    thread::spawn(move || {
        let started = Instant::now();
        let bytes = body.iter().map(<[u8]>::len).sum();
        let request = body.preview();
        if shutdown::sleep(work).is_err() {
            return;
        }
        let reply = match (&handler, version) {
            (Handler::Exec(cmd), Version::V2) => {
                let partial_tx = tx.clone();
                let partial_client = client.clone();
                let last = stream_command(cmd, &body.text(), |line| {
                    let part = Message::from_frames(vec![line]);
                    let _ = partial_tx.send(Progress::Partial(partial_client.clone(), part));
                });
                Message::from_frames(vec![last])
            }
            _ => handler.handle(body),
        };
        let _ = tx.send(Progress::Done(Done {
            envelope: vec![client],
            reply,
            cycle,
            request,
            bytes,
            started,
        }));
    });
}
