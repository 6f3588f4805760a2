//! `pirate server --primary|--backup`: a Lazy Pirate server run as one node of a Binary Star
//! pair (the Guide's `bstarsrv`), and [`BstarLink`], the state link any role can use to run
//! as a Binary Star node (the Majordomo broker does).
//!
//! The server binds a ROUTER (not REP, like the Guide's `bstarsrv`) so it can drop a request
//! it refuses without owing a reply: a REP socket must answer every request before it reads
//! the next, so refusing would wedge it. Requests from REQ clients arrive as
//! `[identity]["" ][body…]`; the envelope (every frame up to and including the first empty
//! one) is sent back in front of the handler's reply. A request with no empty frame is not a
//! REQ request; it is counted as invalid and dropped.
//!
//! The node serves only while ACTIVE ([`crate::bstar`] has the rules). Refused requests are
//! dropped unanswered: the client's timeout sends it to the other node. Each state change is
//! logged twice, once in the Guide's words (`connected to backup (passive), ready as active`)
//! and once in a stable machine-readable form, `state: ACTIVE`, for scripts and tests.
//!
//! Timing: the state is published (and the peer's states read) during simulated work and
//! overload stalls and while an `--exec` command runs, so a slow request does not make the
//! peer think this node is dead. A `--freeze` fault stops publishing, on purpose: it is the
//! way to watch the passive node take over, and then the dual-active stop when the frozen
//! node thaws.
//!
//! A fatal state pair stops the node (see [`crate::bstar::BstarError`] for the exit codes),
//! but only after it has published its state for one more peer-expiry interval, serving
//! nobody, so that the peer hears the conflict too and stops as well.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bstar::{BinaryStar, BstarConfig, Refusal, Role, State, Vote};
use crate::error::{Error, Result};
use crate::event::{Event, Events, Report, ServiceReport, Serving};
use crate::faults::{FaultPlan, Faults, OnCrash};
use crate::handler::Handler;
use crate::msg::Message;
use crate::shutdown;
use crate::transport::{self, Socket};

/// Where a node publishes its state and where it hears its peer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BstarOptions {
    /// Which node this is.
    pub role: Role,
    /// Our PUB socket's bind endpoint (Guide: primary `tcp://*:5003`, backup `tcp://*:5004`).
    pub state_pub: String,
    /// The peer's PUB endpoint, SUB-connected (Guide: primary `tcp://localhost:5004`, backup
    /// `tcp://localhost:5003`).
    pub peer_state: String,
    /// State publishing interval; the peer is dead after two (Guide: 1000 ms).
    pub heartbeat: Duration,
}

impl BstarOptions {
    /// The Guide's endpoints for `role` (`bstarsrv -p` / `-b`).
    pub fn guide(role: Role) -> Self {
        let (state_pub, peer_state) = match role {
            Role::Primary => ("tcp://*:5003", "tcp://localhost:5004"),
            Role::Backup => ("tcp://*:5004", "tcp://localhost:5003"),
        };
        BstarOptions {
            role,
            state_pub: state_pub.into(),
            peer_state: peer_state.into(),
            heartbeat: Duration::from_millis(1000),
        }
    }
}

/// Everything `pirate server --primary|--backup` needs.
#[derive(Clone, Debug)]
pub struct BstarServerConfig {
    /// Where clients connect (Guide: primary `tcp://*:5001`, backup `tcp://*:5002`).
    pub bind: String,
    /// Our PUB bind endpoint.
    pub state_pub: String,
    /// The peer's PUB endpoint, to SUB-connect.
    pub peer_state: String,
    pub role: Role,
    /// State publishing interval (Guide: 1000 ms).
    pub heartbeat: Duration,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl BstarServerConfig {
    /// The Guide's `bstarsrv -p` or `-b`: its endpoints, no faults.
    pub fn guide(role: Role) -> Self {
        let o = BstarOptions::guide(role);
        BstarServerConfig {
            bind: match role {
                Role::Primary => "tcp://*:5001".into(),
                Role::Backup => "tcp://*:5002".into(),
            },
            state_pub: o.state_pub,
            peer_state: o.peer_state,
            role,
            heartbeat: o.heartbeat,
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }

    /// The link part of the configuration.
    pub fn options(&self) -> BstarOptions {
        BstarOptions {
            role: self.role,
            state_pub: self.state_pub.clone(),
            peer_state: self.peer_state.clone(),
            heartbeat: self.heartbeat,
        }
    }
}

/// A node's state link: the [`BinaryStar`] machine, our PUB and the SUB on the peer's PUB.
/// Roles poll it beside their own socket ([`BstarLink::poll_with`]) and ask it about every
/// client request ([`BstarLink::client_request`]); it reads peer states, publishes ours and
/// logs every change.
pub struct BstarLink {
    machine: BinaryStar,
    publisher: Socket,
    subscriber: Socket,
    /// The last refusal logged, so a stream of refused requests logs one line.
    last_refusal: Option<Refusal>,
    /// Client requests dropped because this node was not active.
    pub refused: u64,
    /// Malformed state messages dropped.
    pub invalid: u64,
}

/// Logs a state (the Guide's reason line, then `state: X`, which scripts and tests wait for)
/// and emits it as a `bstar_state` event for `--json`.
fn announce_state(events: &mut Events, from: Option<State>, to: State, reason: &str) {
    if from.is_some() {
        events.info(reason);
    }
    events.info(format!("state: {to}"));
    events.emit(Event::BstarState {
        state: to.name().into(),
        from: from.map(|s| s.name().into()),
        reason: reason.into(),
    });
}

impl BstarLink {
    /// Binds our PUB, connects the SUB, and logs the starting state.
    pub fn new(ctx: &zmq::Context, options: &BstarOptions, events: &mut Events) -> Result<Self> {
        let publisher = transport::socket(ctx, zmq::PUB, "state-pub", None)?;
        publisher.bind(&options.state_pub)?;
        let subscriber = transport::socket(ctx, zmq::SUB, "state-sub", None)?;
        subscriber
            .raw()
            .set_subscribe(b"")
            .map_err(|e| Error::zmq("cannot subscribe to the peer's states", e))?;
        subscriber.connect(&options.peer_state)?;
        if options.heartbeat.is_zero() {
            return Err(Error::Usage(
                "the Binary Star heartbeat must be longer than 0 ms".into(),
            ));
        }
        let config = BstarConfig {
            heartbeat: options.heartbeat,
        };
        let machine = BinaryStar::new(options.role, config, Instant::now());
        let (me, peer) = match options.role {
            Role::Primary => ("primary", "backup"),
            Role::Backup => ("backup", "primary"),
        };
        events.info(format!(
            "binary star {me}: states on {}, waiting for the {peer}'s on {} (heartbeat {} ms)",
            options.state_pub,
            options.peer_state,
            options.heartbeat.as_millis()
        ));
        announce_state(events, None, machine.state(), "started");
        Ok(BstarLink {
            machine,
            publisher,
            subscriber,
            last_refusal: None,
            refused: 0,
            invalid: 0,
        })
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// Reads every pending peer state, publishes ours if due, notes the peer's silence.
    /// `Err` on a fatal state pair: the node must stop.
    pub fn pump(&mut self, events: &mut Events) -> Result<()> {
        while self.subscriber.poll_in(0)? {
            let msg = self.subscriber.recv(events)?;
            let frames: Vec<&[u8]> = msg.iter().collect();
            let peer = match State::decode(&frames) {
                Ok(s) => s,
                Err(reason) => {
                    self.invalid += 1;
                    events.invalid(self.subscriber.name(), reason);
                    continue;
                }
            };
            match self.machine.on_peer_state(peer, Instant::now()) {
                Ok(Some(t)) => {
                    self.last_refusal = None;
                    announce_state(events, Some(t.from), t.to, &t.reason);
                }
                Ok(None) => {}
                Err(fatal) => {
                    events.warn(format!(
                        "peer is {peer} while this node is {}: stopping",
                        self.state()
                    ));
                    self.announce_before_stopping(events)?;
                    return Err(fatal.into());
                }
            }
        }
        let now = Instant::now();
        if let Some(last) = self.machine.tick(now) {
            let then = match self.state() {
                State::Passive => "; the next client request makes this node active",
                State::Backup => "; a backup still waits for the primary",
                _ => "",
            };
            events.warn(format!(
                "peer silent for {} ms (last state {last}){then}",
                self.machine.config().expiry().as_millis()
            ));
        }
        if let Some(state) = self.machine.publish_due(now) {
            self.publisher
                .send(Message::from_frames([state.encode()]), events)?;
        }
        Ok(())
    }

    /// Before a fatal stop: keeps publishing our state (serving nobody) for one peer-expiry
    /// interval, at 0, 1 and 2 heartbeats, so the peer hears it and stops too. Without this,
    /// of two primaries started a moment apart the second could hear the first and stop before
    /// the first's SUB had (re)connected to it, leaving the first to serve alone.
    fn announce_before_stopping(&mut self, events: &mut Events) -> Result<()> {
        let state = Message::from_frames([self.state().encode()]);
        for beat in 0..3 {
            if beat > 0 {
                shutdown::sleep(self.machine.config().heartbeat)?;
            }
            self.publisher.send(state.clone(), events)?;
        }
        Ok(())
    }

    /// Decides on one client request (after reading any pending peer state, so the decision
    /// uses the freshest news): true to serve it. Logs takeovers and (once per reason)
    /// refusals.
    pub fn client_request(&mut self, events: &mut Events) -> Result<bool> {
        self.pump(events)?;
        match self.machine.on_client_request(Instant::now()) {
            Vote::Accept => Ok(true),
            Vote::TakeOver(t) => {
                self.last_refusal = None;
                announce_state(events, Some(t.from), t.to, &t.reason);
                // Tell the peer at once.
                self.pump(events)?;
                Ok(true)
            }
            Vote::Refuse(why) => {
                self.refused += 1;
                if self.last_refusal != Some(why) {
                    self.last_refusal = Some(why);
                    events.info(why.to_string());
                }
                Ok(false)
            }
        }
    }

    /// Waits at most `timeout_ms` for `socket` to be readable while serving the state link;
    /// returns whether `socket` is readable. Never waits past the next state publish.
    pub fn poll_with(
        &mut self,
        socket: &Socket,
        timeout_ms: i64,
        events: &mut Events,
    ) -> Result<bool> {
        self.pump(events)?;
        let until_publish = shutdown::slice_until(self.machine.next_deadline());
        let timeout = timeout_ms.clamp(0, until_publish.max(0));
        let mut items = [
            socket.raw().as_poll_item(zmq::POLLIN),
            self.subscriber.raw().as_poll_item(zmq::POLLIN),
        ];
        let readable = match zmq::poll(&mut items, timeout) {
            Ok(_) => items[0].is_readable(),
            Err(zmq::Error::EINTR) => false,
            Err(e) => return Err(Error::zmq("poll failed", e)),
        };
        self.pump(events)?;
        Ok(readable)
    }

    /// Keeps the link alive for `duration` (a stall that is not a freeze). Stops early with
    /// `Err(Interrupted)` on a signal.
    pub fn stall(&mut self, duration: Duration, events: &mut Events) -> Result<()> {
        let deadline = Instant::now() + duration;
        loop {
            shutdown::check()?;
            self.pump(events)?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let wait = (deadline - now)
                .min(self.machine.next_deadline().saturating_duration_since(now))
                .min(shutdown::POLL_SLICE);
            self.subscriber.poll_in(wait.as_millis() as i64)?;
        }
    }
}

/// Splits a ROUTER request into its envelope (up to and including the first empty frame) and
/// its body; `None` if there is no empty frame.
fn split_envelope(msg: Message) -> Option<(Vec<Vec<u8>>, Message)> {
    let mut frames = msg.into_frames();
    let delimiter = frames.iter().position(Vec::is_empty)?;
    let body = frames.split_off(delimiter + 1);
    Some((frames, Message::from(body)))
}

/// Runs the handler, keeping the link alive while an `--exec` command works.
fn handle(
    handler: &Handler,
    body: Message,
    link: &mut BstarLink,
    events: &mut Events,
) -> Result<Message> {
    if *handler == Handler::Echo {
        return Ok(handler.handle(body));
    }
    let (tx, rx) = mpsc::channel();
    let h = handler.clone();
    std::thread::spawn(move || {
        let _ = tx.send(h.handle(body));
    });
    let slice = (link.machine.config().heartbeat / 4)
        .clamp(Duration::from_millis(1), Duration::from_millis(50));
    loop {
        match rx.recv_timeout(slice) {
            Ok(reply) => return Ok(reply),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                shutdown::check()?;
                link.pump(events)?;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Internal("the request handler thread died".into()))
            }
        }
    }
}

/// Serves as one node of a Binary Star pair until stopped by a signal (`Ok`, the counters) or
/// a fatal state pair (`Err`: dual active or passive → exit 69, two primaries or two backups
/// → exit 2; see [`crate::bstar::BstarError`]).
pub fn run(config: &BstarServerConfig, events: &mut Events) -> Result<Report> {
    let ctx = zmq::Context::new();
    let frontend = transport::socket(&ctx, zmq::ROUTER, "server", None)?;
    frontend.bind(&config.bind)?;
    let mut link = BstarLink::new(&ctx, &config.options(), events)?;
    let mut faults = Faults::new(config.faults.clone(), config.seed);
    let mut report = ServiceReport::start("server", &config.bind, config.seed, events);
    let result = serve(
        config,
        &frontend,
        &mut link,
        &mut faults,
        &mut report,
        events,
    );
    report.invalid += link.invalid;
    if link.refused > 0 {
        events.info(format!(
            "refused {} client request(s) while not active",
            link.refused
        ));
    }
    report.finish(result)
}

fn serve(
    config: &BstarServerConfig,
    frontend: &Socket,
    link: &mut BstarLink,
    faults: &mut Faults,
    report: &mut ServiceReport,
    events: &mut Events,
) -> Result<()> {
    while !shutdown::requested() {
        if !link.poll_with(frontend, shutdown::POLL_SLICE.as_millis() as i64, events)? {
            continue;
        }
        let request = frontend.recv(events)?;
        let Some((envelope, body)) = split_envelope(request) else {
            report.invalid += 1;
            events.invalid(
                frontend.name(),
                "request without an empty delimiter frame (expected a REQ client)",
            );
            continue;
        };
        if !link.client_request(events)? {
            continue;
        }
        report.requests += 1;
        let started = Instant::now();
        let injected = faults.inject(report, OnCrash::Now, events)?;
        // Slow but alive: the state goes on being published through the stall.
        link.stall(config.faults.work + injected.extra_work, events)?;
        let serving = Serving::new(injected.cycle, &body, started);
        let reply = handle(&config.handler, body, link, events)?;
        let mut out = Message::from(envelope);
        for frame in reply.into_frames() {
            out.push_back(frame);
        }
        frontend.send(out, events)?;
        serving.served(report, events);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_envelope_is_everything_up_to_the_first_empty_frame() {
        let m = Message::from_frames(vec![b"id".to_vec(), vec![], b"a".to_vec(), vec![]]);
        let (env, body) = split_envelope(m).unwrap();
        assert_eq!(env, vec![b"id".to_vec(), vec![]]);
        assert_eq!(body.into_frames(), vec![b"a".to_vec(), vec![]]);
        let hops = Message::from_frames(vec![b"p".to_vec(), b"id".to_vec(), vec![], b"x".to_vec()]);
        assert_eq!(split_envelope(hops).unwrap().0.len(), 3);
        assert!(
            split_envelope(Message::from_frames(vec![b"id".to_vec(), b"x".to_vec()])).is_none()
        );
    }

    #[test]
    fn the_guide_defaults() {
        let p = BstarServerConfig::guide(Role::Primary);
        assert_eq!(
            (p.bind.as_str(), p.state_pub.as_str(), p.peer_state.as_str()),
            ("tcp://*:5001", "tcp://*:5003", "tcp://localhost:5004")
        );
        assert_eq!(p.heartbeat, Duration::from_millis(1000));
        let b = BstarServerConfig::guide(Role::Backup);
        assert_eq!(
            (b.bind.as_str(), b.state_pub.as_str(), b.peer_state.as_str()),
            ("tcp://*:5002", "tcp://*:5004", "tcp://localhost:5003")
        );
    }

    /// The states a node logged (`state: X` lines).
    fn states(log: &Mutex<Vec<String>>) -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("state: ").map(str::to_string))
            .collect()
    }

    fn link_thread(
        ctx: zmq::Context,
        options: BstarOptions,
        stop: Arc<std::sync::atomic::AtomicBool>,
        log: Arc<Mutex<Vec<String>>>,
    ) -> std::thread::JoinHandle<Result<()>> {
        std::thread::spawn(move || {
            let sink = log.clone();
            let mut events = Events::new(false, move |e| {
                if let Event::Log { message, level } = e {
                    if level != Level::Error {
                        sink.lock().unwrap().push(message);
                    }
                }
            });
            let mut link = BstarLink::new(&ctx, &options, &mut events)?;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                link.stall(Duration::from_millis(5), &mut events)?;
            }
            Ok(())
        })
    }

    #[test]
    fn two_links_over_real_sockets_settle_as_active_and_passive() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let ctx = zmq::Context::new();
        let hb = Duration::from_millis(20);
        let stop = Arc::new(AtomicBool::new(false));
        let (plog, blog) = (Arc::default(), Arc::default());
        let p = link_thread(
            ctx.clone(),
            BstarOptions {
                role: Role::Primary,
                state_pub: "inproc://bstar-p".into(),
                peer_state: "inproc://bstar-b".into(),
                heartbeat: hb,
            },
            stop.clone(),
            Arc::clone(&plog),
        );
        let b = link_thread(
            ctx.clone(),
            BstarOptions {
                role: Role::Backup,
                state_pub: "inproc://bstar-b".into(),
                peer_state: "inproc://bstar-p".into(),
                heartbeat: hb,
            },
            stop.clone(),
            Arc::clone(&blog),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while states(&blog).last().map(String::as_str) != Some("PASSIVE") {
            assert!(Instant::now() < deadline, "{:?} {:?}", plog, blog);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        p.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
        assert_eq!(states(&plog), vec!["PRIMARY", "ACTIVE"]);
        assert_eq!(states(&blog), vec!["BACKUP", "PASSIVE"]);
    }

    #[test]
    fn a_node_hearing_its_own_states_is_a_dual_primary_usage_error() {
        let ctx = zmq::Context::new();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = link_thread(
            ctx,
            BstarOptions {
                role: Role::Primary,
                state_pub: "inproc://bstar-self".into(),
                peer_state: "inproc://bstar-self".into(),
                heartbeat: Duration::from_millis(10),
            },
            stop,
            Arc::default(),
        );
        let err = h.join().unwrap().unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains("--backup"), "{err}");
    }
}
