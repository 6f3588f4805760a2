//! `pirate queue`: the Simple Pirate and Paranoid Pirate (6/PPP) load-balancing queue.
//!
//! Clients talk to a ROUTER frontend, workers to a ROUTER backend. Ready workers wait in a
//! least-recently-used queue; the frontend is read only while one is ready, so requests wait in
//! ZeroMQ's buffers (and the clients' retries) rather than in ours. Two policies
//! ([`QueuePolicy`]): Simple sends no heartbeats and expires nobody; under Paranoid the queue
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
    /// Simple or Paranoid Pirate.
    pub policy: QueuePolicy,
}

/// The two policies of the one queue: what it does about workers that go quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Simple Pirate (the Guide's spqueue): LRU routing only. No heartbeats are sent and no
    /// worker is ever expired: a dead worker is found out by the client's retry alone.
    Simple,
    /// Paranoid Pirate (6/PPP): heartbeats every known worker, idle or busy, every interval,
    /// and forgets one silent for `liveness` intervals.
    Paranoid {
        heartbeat: HeartbeatConfig,
        /// Forget a worker busy this long with one request (see the module docs). `None`
        /// (the default, as in the Guide): never.
        busy_timeout: Option<Duration>,
    },
}

impl QueuePolicy {
    /// `simple` or `paranoid`, as the started line says.
    pub fn name(&self) -> &'static str {
        match self {
            QueuePolicy::Simple => "simple",
            QueuePolicy::Paranoid { .. } => "paranoid",
        }
    }

    /// The heartbeat timing, `None` under Simple.
    fn heartbeat(&self) -> Option<HeartbeatConfig> {
        match self {
            QueuePolicy::Simple => None,
            QueuePolicy::Paranoid { heartbeat, .. } => Some(*heartbeat),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            frontend: "tcp://*:5555".into(),
            backend: "tcp://*:5556".into(),
            policy: QueuePolicy::Paranoid {
                heartbeat: HeartbeatConfig {
                    interval: Duration::from_secs(1),
                    liveness: 3,
                },
                busy_timeout: None,
            },
        }
    }
}

/// Most forgotten busy workers whose late reply is still accepted (see the module docs).
pub const MAX_ORPHANS: usize = 1024;

/// What the queue knows of one worker.
struct Worker {
    /// When it counts as dead; `None` under the Simple policy, where nothing expires.
    liveness: Option<Liveness>,
    /// The envelope of the request it holds (`None`: ready). Only a reply with exactly this
    /// envelope, from this worker, is forwarded.
    job: Option<Vec<Frame>>,
    /// When it was last given a request (meaningful while it holds one).
    busy_since: Instant,
    /// A REQ worker (Simple Pirate) needs an empty delimiter in front of everything we send.
    req_peer: bool,
}

/// The queue's state: known workers and the ready ones in LRU order. Pure: driven by the
/// `Instant`s the socket loop passes in.
struct Workers {
    policy: QueuePolicy,
    known: HashMap<Frame, Worker>,
    ready: VecDeque<Frame>,
    /// Workers forgotten while busy → the envelope of the request they held.
    orphans: HashMap<Frame, Vec<Frame>>,
    /// `orphans` keys, oldest first, to bound it.
    orphan_order: VecDeque<Frame>,
}

impl Workers {
    fn new(policy: QueuePolicy) -> Self {
        Workers {
            policy,
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

    /// Any message from worker `id` proves it alive.
    fn heard(&mut self, id: &[u8], now: Instant) {
        if let Some(liveness) = self.known.get_mut(id).and_then(|w| w.liveness.as_mut()) {
            liveness.heard(now);
        }
    }

    /// Worker `id` sent READY: a new worker joins the ready queue, one that lost its request
    /// (READY while busy: it restarted) is ready again, a duplicate READY changes nothing.
    /// True if the worker is new.
    fn ready(&mut self, id: &[u8], req_peer: bool, now: Instant) -> bool {
        match self.known.get_mut(id) {
            Some(worker) if worker.job.is_none() => false,
            Some(worker) => {
                worker.job = None;
                self.ready.push_back(id.to_vec());
                false
            }
            None => {
                let liveness = self.policy.heartbeat().map(|hb| Liveness::new(hb, now));
                self.known.insert(
                    id.to_vec(),
                    Worker {
                        liveness,
                        job: None,
                        busy_since: now,
                        req_peer,
                    },
                );
                self.ready.push_back(id.to_vec());
                true
            }
        }
    }

    /// The least recently used ready worker takes the request with `envelope`: its identity
    /// and whether it is a REQ peer. `None` if no worker is ready.
    fn dispatch(&mut self, envelope: &[Frame], now: Instant) -> Option<(Frame, bool)> {
        let id = self.ready.pop_front()?;
        let worker = self
            .known
            .get_mut(&id)
            .expect("ready workers are known workers");
        worker.job = Some(envelope.to_vec());
        worker.busy_since = now;
        let req_peer = worker.req_peer;
        Some((id, req_peer))
    }

    /// Forgets every worker silent past its liveness (none under Simple); returns each with
    /// whether it was busy.
    fn expire(&mut self, now: Instant) -> Vec<(Frame, bool)> {
        let dead: Vec<Frame> = self
            .known
            .iter()
            .filter(|(_, w)| w.liveness.is_some_and(|l| l.is_dead(now)))
            .map(|(id, _)| id.clone())
            .collect();
        let expired: Vec<(Frame, bool)> = dead
            .into_iter()
            .map(|id| {
                let busy = self.forget(&id);
                (id, busy)
            })
            .collect();
        if !expired.is_empty() {
            let known = &self.known;
            self.ready.retain(|id| known.contains_key(id));
        }
        expired
    }

    /// Forgets every worker busy with one request for `limit` or more; returns them.
    fn forget_stuck(&mut self, now: Instant, limit: Duration) -> Vec<Frame> {
        let stuck: Vec<Frame> = self
            .known
            .iter()
            .filter(|(_, w)| {
                w.job.is_some() && now.saturating_duration_since(w.busy_since) >= limit
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stuck {
            // Busy workers are never in the ready queue, so only `known` holds it.
            self.forget(id);
        }
        stuck
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
    events.emit(Event::Started {
        role: format!("queue ({})", config.policy.name()),
        endpoint: format!("{} / {}", config.frontend, config.backend),
        seed: None,
    });
    let mut workers = Workers::new(config.policy);
    // The heartbeat tick (Paranoid only): heartbeats out, expiry and stuck workers checked.
    let heartbeat = config.policy.heartbeat();
    let mut next_tick = heartbeat.map(|hb| Instant::now() + hb.interval);
    while !shutdown::requested() {
        let timeout = next_tick.map_or(
            shutdown::POLL_SLICE.as_millis() as i64,
            shutdown::slice_until,
        );
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
            on_backend(msg, &mut workers, &frontend, &mut report, events)?;
        }
        if frontend_ready {
            let msg = frontend.recv(events)?;
            on_frontend(msg, &mut workers, &backend, &mut report, events)?;
        }
        let now = Instant::now();
        if let (Some(hb), Some(due)) = (heartbeat, next_tick) {
            if now >= due {
                next_tick = Some(now + hb.interval);
                tick(&mut workers, &backend, now, &mut report, events)?;
            }
        }
    }
    Ok(Report::Broker(report))
}

/// The Paranoid heartbeat tick: expires silent workers, forgets stuck ones, heartbeats the
/// rest.
fn tick(
    workers: &mut Workers,
    backend: &Socket,
    now: Instant,
    report: &mut BrokerReport,
    events: &mut Events,
) -> Result<()> {
    for (id, busy) in workers.expire(now) {
        report.workers_expired += 1;
        events.emit(Event::WorkerExpired {
            worker: Workers::name(&id),
            busy,
        });
    }
    if let QueuePolicy::Paranoid {
        busy_timeout: Some(limit),
        ..
    } = workers.policy
    {
        for id in workers.forget_stuck(now, limit) {
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
    for (id, worker) in &workers.known {
        send_to_worker(
            backend,
            id,
            worker.req_peer,
            ppp::encode(Ppp::Heartbeat),
            events,
        )?;
    }
    Ok(())
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

fn on_backend(
    mut msg: Message,
    workers: &mut Workers,
    frontend: &Socket,
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
    workers.heard(&id, now);
    match decoded {
        Ppp::Ready => {
            if workers.ready(&id, req_peer, now) {
                report.workers_seen += 1;
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
    let Some((id, req_peer)) = workers.dispatch(&envelope, Instant::now()) else {
        return Ok(()); // not reached: the frontend is only polled while a worker is ready
    };
    let request = ppp::encode(Ppp::Data { envelope, body });
    send_to_worker(backend, &id, req_peer, request, events)?;
    report.routed += 1;
    *report.per_worker.entry(Workers::name(&id)).or_default() += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const PARANOID: QueuePolicy = QueuePolicy::Paranoid {
        heartbeat: HeartbeatConfig {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        busy_timeout: Some(Duration::from_millis(1000)),
    };

    fn ids(list: Vec<(Frame, bool)>) -> Vec<(String, bool)> {
        list.into_iter()
            .map(|(id, busy)| (frame_text(&id), busy))
            .collect()
    }

    #[test]
    fn simple_never_expires_a_worker_and_never_heartbeats() {
        let t0 = Instant::now();
        let mut w = Workers::new(QueuePolicy::Simple);
        assert!(w.ready(b"a", true, t0));
        assert_eq!(QueuePolicy::Simple.heartbeat(), None);
        // Silent for a day: still known, still ready.
        let later = t0 + Duration::from_secs(86_400);
        assert!(w.expire(later).is_empty());
        assert_eq!(w.ready, VecDeque::from([b"a".to_vec()]));
        // Busy for a day: Simple has no busy timeout to apply (the tick never runs).
        assert_eq!(
            w.dispatch(&[b"c".to_vec()], t0),
            Some((b"a".to_vec(), true))
        );
        assert!(w.expire(later).is_empty());
        assert!(w.known.contains_key(&b"a"[..]));
    }

    #[test]
    fn paranoid_expires_a_silent_worker_after_its_liveness() {
        let t0 = Instant::now();
        let mut w = Workers::new(PARANOID);
        assert!(w.ready(b"a", false, t0));
        assert!(w.ready(b"b", false, t0));
        w.heard(b"b", t0 + 200 * MS);
        assert!(w.expire(t0 + 299 * MS).is_empty());
        assert_eq!(ids(w.expire(t0 + 300 * MS)), vec![("a".into(), false)]);
        // The expired worker left the ready queue; the one heard from stays.
        assert_eq!(w.ready, VecDeque::from([b"b".to_vec()]));
        assert_eq!(ids(w.expire(t0 + 500 * MS)), vec![("b".into(), false)]);
        assert!(w.ready.is_empty());
    }

    #[test]
    fn paranoid_keeps_an_expired_busy_workers_claim_on_its_request() {
        let t0 = Instant::now();
        let mut w = Workers::new(PARANOID);
        w.ready(b"a", false, t0);
        let envelope = vec![b"client".to_vec(), Vec::new()];
        assert_eq!(w.dispatch(&envelope, t0), Some((b"a".to_vec(), false)));
        assert_eq!(ids(w.expire(t0 + 300 * MS)), vec![("a".into(), true)]);
        // Its late reply still passes the claim check, once.
        assert_eq!(w.take_claim(b"a", &envelope), Ok(()));
        assert!(w.take_claim(b"a", &envelope).is_err());
    }

    #[test]
    fn a_worker_busy_past_the_limit_is_forgotten_as_stuck() {
        let t0 = Instant::now();
        let mut w = Workers::new(PARANOID);
        w.ready(b"a", false, t0);
        w.ready(b"b", false, t0);
        w.dispatch(&[b"c".to_vec()], t0);
        let limit = Duration::from_millis(1000);
        assert!(w.forget_stuck(t0 + 999 * MS, limit).is_empty());
        assert_eq!(w.forget_stuck(t0 + 1000 * MS, limit), vec![b"a".to_vec()]);
        // The idle one is never stuck.
        assert!(w.known.contains_key(&b"b"[..]));
    }

    #[test]
    fn ready_again_while_busy_requeues_and_a_duplicate_ready_does_not() {
        let t0 = Instant::now();
        let mut w = Workers::new(QueuePolicy::Simple);
        assert!(w.ready(b"a", false, t0));
        assert!(!w.ready(b"a", false, t0), "duplicate READY");
        assert_eq!(w.ready.len(), 1);
        w.dispatch(&[b"c".to_vec()], t0);
        assert!(w.ready.is_empty());
        assert!(!w.ready(b"a", false, t0), "READY while busy: it restarted");
        assert_eq!(w.ready, VecDeque::from([b"a".to_vec()]));
        assert!(
            w.take_claim(b"a", &[b"c".to_vec()]).is_err(),
            "the lost request is gone"
        );
        assert_eq!(
            w.dispatch(&[b"d".to_vec()], t0),
            Some((b"a".to_vec(), false))
        );
        assert_eq!(w.dispatch(&[b"e".to_vec()], t0), None);
    }
}
