//! `pirate queue`: the Simple Pirate and Paranoid Pirate (6/PPP) load-balancing queue.
//!
//! Clients talk to a ROUTER frontend, workers to a ROUTER backend. Ready workers wait in a
//! least-recently-used queue; the frontend is read only while one is ready, so requests wait in
//! ZeroMQ's buffers (and the clients' retries) rather than in ours. In Paranoid mode the queue
//! heartbeats every worker it knows, idle or busy, and forgets one after `liveness` silent
//! intervals; a busy worker's heartbeat never makes it ready again (trap 7).
//!
//! 6/PPP cannot tell a busy worker from one whose request or reply was lost on the way: both
//! keep heartbeating. With `busy_timeout` (Paranoid only, off by default) a worker that has
//! held one request that long is forgotten: the queue stops heartbeating it, the worker
//! declares the queue dead after its liveness and reconnects with a fresh READY. Its request
//! is the client's to retry; a late reply from it is still delivered.
//!
//! **Replies only from whoever holds the request.** The queue remembers, for each worker,
//! the whole envelope of the request it gave it (`[client identity][client envelope…]`:
//! a request id, proxy hops). A reply is forwarded only if it comes from that worker with
//! that envelope, once; a reply from a backend peer that never sent READY, from an idle
//! worker, or with another client's envelope (forged, or a stale copy of an earlier reply)
//! is dropped, counted in `refused_replies` and traced as an invalid message. A worker that
//! expired or was forgotten while busy keeps its claim on that one request (at most
//! [`MAX_ORPHANS`] such claims, oldest dropped first), so its late reply still reaches the
//! client, which drops it if it already has its answer.
//!
//! Frames on the backend, after the worker identity:
//! - PPP worker (DEALER): `0x01` READY · `0x02` HEARTBEAT · `[client]["" ][body…]` reply
//! - Simple worker (REQ): the same, behind an empty delimiter frame that REQ adds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{BrokerReport, Event, Events, Report};
use crate::heartbeat::{HeartbeatConfig, Liveness};
use crate::msg::{frame_text, Frame, Message};
use crate::proto::ppp::{self, Ppp};
use crate::shutdown;
use crate::transport::{self, Socket};

/// Everything `pirate queue` needs.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Guide: `tcp://*:5555`.
    pub frontend: String,
    /// Guide: `tcp://*:5556`.
    pub backend: String,
    /// Heartbeating per 6/PPP; `None` runs the Simple Pirate queue (no heartbeats, no expiry).
    pub heartbeat: Option<HeartbeatConfig>,
    /// Forget a worker busy this long with one request (see the module docs); Paranoid mode
    /// only. `None` (the default, as in the Guide): never.
    pub busy_timeout: Option<Duration>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            frontend: "tcp://*:5555".into(),
            backend: "tcp://*:5556".into(),
            heartbeat: Some(HeartbeatConfig {
                interval: Duration::from_secs(1),
                liveness: 3,
            }),
            busy_timeout: None,
        }
    }
}

/// Most forgotten busy workers whose late reply is still accepted (see the module docs).
pub const MAX_ORPHANS: usize = 1024;

/// What the queue knows of one worker.
struct Worker {
    liveness: Liveness,
    /// The envelope of the request it holds (`None`: ready). Only a reply with exactly this
    /// envelope, from this worker, is forwarded.
    job: Option<Vec<Frame>>,
    /// When it was last given a request (meaningful while it holds one).
    busy_since: Instant,
    /// A REQ worker (Simple Pirate) needs an empty delimiter in front of everything we send.
    req_peer: bool,
}

/// The queue's state: known workers and the ready ones in LRU order.
struct Workers {
    known: HashMap<Frame, Worker>,
    ready: VecDeque<Frame>,
    /// Workers forgotten while busy → the envelope of the request they held.
    orphans: HashMap<Frame, Vec<Frame>>,
    /// `orphans` keys, oldest first, to bound it.
    orphan_order: VecDeque<Frame>,
}

impl Workers {
    fn new() -> Self {
        Workers {
            known: HashMap::new(),
            ready: VecDeque::new(),
            orphans: HashMap::new(),
            orphan_order: VecDeque::new(),
        }
    }

    fn name(id: &[u8]) -> String {
        frame_text(id)
    }

    /// Forgets worker `id`; if it held a request, it keeps its claim on it as an orphan.
    /// Returns whether it was busy.
    fn forget(&mut self, id: &[u8]) -> bool {
        let Some(worker) = self.known.remove(id) else {
            return false;
        };
        let Some(envelope) = worker.job else {
            return false;
        };
        if self.orphans.insert(id.to_vec(), envelope).is_none() {
            self.orphan_order.push_back(id.to_vec());
        }
        while self.orphan_order.len() > MAX_ORPHANS {
            if let Some(oldest) = self.orphan_order.pop_front() {
                self.orphans.remove(&oldest);
            }
        }
        true
    }

    /// Takes the claim of `id` on the request with `envelope`, if it holds exactly that:
    /// the check every reply must pass. `Err` says why not.
    fn take_claim(
        &mut self,
        id: &[u8],
        envelope: &[Frame],
    ) -> std::result::Result<(), &'static str> {
        match self.known.get_mut(id) {
            Some(worker) => match &worker.job {
                Some(held) if held.as_slice() == envelope => {
                    worker.job = None;
                    Ok(())
                }
                Some(_) => Err("it holds another request"),
                None => Err("it holds no request"),
            },
            None => match self.orphans.get(id) {
                Some(held) if held.as_slice() == envelope => {
                    self.orphans.remove(id);
                    self.orphan_order.retain(|o| o.as_slice() != id);
                    Ok(())
                }
                Some(_) => Err("it held another request"),
                None => Err("it is not a worker of this queue (no READY)"),
            },
        }
    }
}

/// Runs the queue until stopped by a signal; returns its counters.
pub fn run(config: &QueueConfig, events: &mut Events) -> Result<Report> {
    let ctx = zmq::Context::new();
    let frontend = transport::socket(&ctx, zmq::ROUTER, "frontend", None)?;
    frontend.bind(&config.frontend)?;
    let backend = transport::socket(&ctx, zmq::ROUTER, "backend", None)?;
    backend.bind(&config.backend)?;
    let mut report = BrokerReport {
        frontend: config.frontend.clone(),
        backend: config.backend.clone(),
        ..Default::default()
    };
    let mode = if config.heartbeat.is_some() {
        "paranoid"
    } else {
        "simple"
    };
    events.emit(Event::Started {
        role: format!("queue ({mode})"),
        endpoint: format!("{} / {}", config.frontend, config.backend),
        seed: None,
    });
    let mut workers = Workers::new();
    // A dummy liveness for the Simple mode, where nothing expires.
    let hb = config.heartbeat.unwrap_or(HeartbeatConfig {
        interval: Duration::from_secs(3600),
        liveness: 1_000_000,
    });
    let mut next_heartbeat = Instant::now() + hb.interval;
    while !shutdown::requested() {
        let timeout = shutdown::slice_until(next_heartbeat);
        let (backend_ready, frontend_ready) = {
            let mut items = vec![backend.raw().as_poll_item(zmq::POLLIN)];
            if !workers.ready.is_empty() {
                items.push(frontend.raw().as_poll_item(zmq::POLLIN));
            }
            match zmq::poll(&mut items, timeout) {
                Ok(_) => {}
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(crate::Error::zmq("poll failed", e)),
            }
            (
                items[0].is_readable(),
                items.get(1).is_some_and(|i| i.is_readable()),
            )
        };
        if backend_ready {
            let msg = backend.recv(events)?;
            on_backend(msg, &mut workers, &frontend, hb, &mut report, events)?;
        }
        if frontend_ready {
            let msg = frontend.recv(events)?;
            on_frontend(msg, &mut workers, &backend, &mut report, events)?;
        }
        let now = Instant::now();
        if config.heartbeat.is_some() && now >= next_heartbeat {
            next_heartbeat = now + hb.interval;
            expire(&mut workers, now, &mut report, events);
            if let Some(limit) = config.busy_timeout {
                forget_stuck(&mut workers, now, limit, &mut report, events);
            }
            for (id, worker) in &workers.known {
                send_to_worker(
                    &backend,
                    id,
                    worker.req_peer,
                    ppp::encode(Ppp::Heartbeat),
                    events,
                )?;
            }
        }
    }
    Ok(Report::Broker(report))
}

/// Sends `msg` to worker `id` through the backend ROUTER.
fn send_to_worker(
    backend: &Socket,
    id: &[u8],
    req_peer: bool,
    mut msg: Message,
    events: &mut Events,
) -> Result<()> {
    if req_peer {
        msg.push_front(Vec::new());
    }
    msg.push_front(id.to_vec());
    backend.send(msg, events)
}

/// Forgets every worker silent for `liveness` intervals. A scan per heartbeat interval, not
/// per message.
fn expire(workers: &mut Workers, now: Instant, report: &mut BrokerReport, events: &mut Events) {
    let dead: Vec<Frame> = workers
        .known
        .iter()
        .filter(|(_, w)| w.liveness.is_dead(now))
        .map(|(id, _)| id.clone())
        .collect();
    if dead.is_empty() {
        return;
    }
    for id in &dead {
        let busy = workers.forget(id);
        report.workers_expired += 1;
        events.emit(Event::WorkerExpired {
            worker: Workers::name(id),
            busy,
        });
    }
    workers.ready.retain(|id| workers.known.contains_key(id));
}

/// Forgets every worker busy with one request for `limit` or more (see the module docs).
fn forget_stuck(
    workers: &mut Workers,
    now: Instant,
    limit: Duration,
    report: &mut BrokerReport,
    events: &mut Events,
) {
    let stuck: Vec<Frame> = workers
        .known
        .iter()
        .filter(|(_, w)| w.job.is_some() && now.saturating_duration_since(w.busy_since) >= limit)
        .map(|(id, _)| id.clone())
        .collect();
    for id in stuck {
        // Busy workers are never in the ready queue, so only `known` holds it.
        workers.forget(&id);
        report.workers_stuck += 1;
        events.emit(Event::WorkerDisconnected {
            worker: Workers::name(&id),
            reason: format!(
                "busy for {} ms without a reply (--busy-timeout): forgotten until it reconnects",
                limit.as_millis()
            ),
        });
    }
}

fn on_backend(
    mut msg: Message,
    workers: &mut Workers,
    frontend: &Socket,
    hb: HeartbeatConfig,
    report: &mut BrokerReport,
    events: &mut Events,
) -> Result<()> {
    let Some(id) = msg.pop_front() else {
        return Ok(());
    };
    // A REQ worker's messages start with the empty delimiter REQ adds.
    let req_peer = msg.get(0).is_some_and(<[u8]>::is_empty) && msg.len() > 1;
    if req_peer {
        msg.pop_front();
    }
    let now = Instant::now();
    let decoded = match ppp::decode(msg) {
        Ok(d) => d,
        Err(e) => {
            report.invalid += 1;
            events.invalid("backend", format!("from {}: {e}", Workers::name(&id)));
            return Ok(());
        }
    };
    if let Some(worker) = workers.known.get_mut(&id) {
        worker.liveness.heard(now);
    }
    match decoded {
        Ppp::Ready => {
            match workers.known.get_mut(&id) {
                Some(worker) if worker.job.is_none() => {
                    // Already ready: a duplicate READY must not queue it twice.
                }
                Some(worker) => {
                    // READY again while busy: it restarted and lost the request.
                    worker.job = None;
                    workers.ready.push_back(id.clone());
                }
                None => {
                    workers.known.insert(
                        id.clone(),
                        Worker {
                            liveness: Liveness::new(hb, now),
                            job: None,
                            busy_since: now,
                            req_peer,
                        },
                    );
                    workers.ready.push_back(id.clone());
                    report.workers_seen += 1;
                }
            }
            events.emit(Event::WorkerReady {
                worker: Workers::name(&id),
            });
        }
        // Proof of life only, already recorded: never a reason to become ready (trap 7).
        Ppp::Heartbeat => {}
        Ppp::Data { envelope, body } => {
            if let Err(why) = workers.take_claim(&id, &envelope) {
                report.refused_replies += 1;
                events.invalid(
                    "backend",
                    format!(
                        "reply from {} refused: {why} (forged or stale)",
                        Workers::name(&id)
                    ),
                );
                return Ok(());
            }
            let reply = ppp::encode(Ppp::Data { envelope, body });
            frontend.send(reply, events)?;
            report.replied += 1;
            if workers.known.contains_key(&id) {
                workers.ready.push_back(id);
            } else {
                // An expired worker's late reply is still delivered (its client may be
                // waiting), but the worker must send READY before it gets more work.
                events.warn(format!(
                    "late reply from expired worker {}",
                    Workers::name(&id)
                ));
            }
        }
    }
    Ok(())
}

fn on_frontend(
    msg: Message,
    workers: &mut Workers,
    backend: &Socket,
    report: &mut BrokerReport,
    events: &mut Events,
) -> Result<()> {
    // A client request is [client identity]["" ][body…]; anything else is dropped.
    let (envelope, body) = match ppp::decode(msg) {
        Ok(Ppp::Data { envelope, body }) => (envelope, body),
        Ok(_) => {
            report.invalid += 1;
            events.invalid("frontend", "a control message from a client");
            return Ok(());
        }
        Err(e) => {
            report.invalid += 1;
            events.invalid("frontend", e.to_string());
            return Ok(());
        }
    };
    let Some(id) = workers.ready.pop_front() else {
        return Ok(()); // not reached: the frontend is only polled while a worker is ready
    };
    let worker = workers
        .known
        .get_mut(&id)
        .expect("ready workers are known workers");
    worker.job = Some(envelope.clone());
    worker.busy_since = Instant::now();
    let req_peer = worker.req_peer;
    let request = ppp::encode(Ppp::Data { envelope, body });
    send_to_worker(backend, &id, req_peer, request, events)?;
    report.routed += 1;
    *report.per_worker.entry(Workers::name(&id)).or_default() += 1;
    Ok(())
}
