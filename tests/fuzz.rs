//! Wire fuzzing of every role, run as the real binary: seeded messages (valid frames of every
//! protocol, mutations of them, random multipart) from many peers with varying identities,
//! and every so often a check that the role is alive and still serves a normal request end to
//! end. A crash, a hang or a role that stops serving fails the test with the seed and the last
//! messages sent.
//!
//! The short seeded runs are part of `cargo test`. The long run is one command:
//!
//! ```sh
//! cargo test --release --test fuzz -- --ignored --nocapture
//! PIRATE_FUZZ_MESSAGES=100000 PIRATE_FUZZ_SEED=7 PIRATE_FUZZ_ROLES=broker,client \
//!     cargo test --release --test fuzz -- --ignored --nocapture
//! ```
//!
//! `PIRATE_FUZZ_MESSAGES` is per role (default 100,000; the broker gets ten times as many),
//! `PIRATE_FUZZ_SEED` the seed (default 1), `PIRATE_FUZZ_ROLES` a comma-separated subset.

mod common;
#[path = "fuzz/gen.rs"]
mod gen;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::*;
use gen::{show, Family, Frames, Gen};

/// The service the checks use: no fuzz message ever names it, so no fuzz worker can take it.
const CHECK: &str = "fuzz.check";
const CHECK2: &str = "fuzz.check2";
/// How long one end-to-end check may take (resending) before the role counts as not serving.
const CHECK_DEADLINE: Duration = Duration::from_secs(20);
/// A role whose resident memory passes this has grown without bound.
const RSS_LIMIT_KIB: u64 = 1024 * 1024;
/// Messages kept for a failure report.
const LAST: usize = 20;

/// A role under fuzz, by what the peers talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Broker,
    QueueFrontend,
    QueueBackend,
    SimpleQueueBackend,
    Server,
    Freelance,
    Bstar,
    BstarState,
    Titanic,
    Proxy,
    WorkerPpp,
    WorkerMdp,
    WorkerMdp2,
    Client,
}

const ROLES: [Role; 14] = [
    Role::Broker,
    Role::QueueFrontend,
    Role::QueueBackend,
    Role::SimpleQueueBackend,
    Role::Server,
    Role::Freelance,
    Role::Bstar,
    Role::BstarState,
    Role::Titanic,
    Role::Proxy,
    Role::WorkerPpp,
    Role::WorkerMdp,
    Role::WorkerMdp2,
    Role::Client,
];

impl Role {
    fn name(self) -> String {
        format!("{self:?}")
            .chars()
            .flat_map(|c| {
                let lower = c.to_ascii_lowercase();
                if c.is_ascii_uppercase() {
                    vec!['-', lower]
                } else {
                    vec![lower]
                }
            })
            .skip(1)
            .collect()
    }

    /// The protocols whose messages this role should see most.
    fn focus(self) -> &'static [Family] {
        use Family::*;
        match self {
            Role::Broker => &[Mdp1Client, Mdp1Worker, Mdp2Client, Mdp2Worker, Mmi],
            Role::QueueFrontend | Role::Server | Role::Bstar | Role::Proxy => &[Req],
            Role::QueueBackend | Role::SimpleQueueBackend | Role::WorkerPpp => &[Ppp],
            Role::Freelance => &[Flp],
            Role::BstarState => &[BstarState],
            Role::Titanic => &[Tsp, Mdp1Client],
            Role::WorkerMdp => &[Mdp1Worker],
            Role::WorkerMdp2 => &[Mdp2Worker],
            Role::Client => &[Req],
        }
    }
}

/// What one fuzz run did.
#[derive(Debug, Default)]
struct Stats {
    role: String,
    seed: u64,
    sent: u64,
    blocked: u64,
    checks: u64,
    peak_rss_kib: u64,
    elapsed: Duration,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz {:<22} seed {:<6} {:>9} messages sent ({} held back by a full queue), \
             {:>4} checks passed, peak RSS {:>7} KiB, {:>6.1}s, 0 crashes",
            self.role,
            self.seed,
            self.sent,
            self.blocked,
            self.checks,
            self.peak_rss_kib,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The resident memory of `pid` in KiB (0 if it cannot be read).
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A socket for the test's own use: LINGER 0, short send timeout, an unguessable identity.
fn socket(ctx: &zmq::Context, kind: zmq::SocketType, identity: Option<&[u8]>) -> zmq::Socket {
    let s = ctx.socket(kind).unwrap();
    s.set_linger(0).unwrap();
    s.set_sndtimeo(100).unwrap();
    if let Some(id) = identity {
        s.set_identity(id).unwrap();
    }
    s
}

fn token_identity(gen: &mut Gen) -> Vec<u8> {
    use rand::Rng;
    format!("check-{:032x}", gen.rng().gen::<u128>()).into_bytes()
}

/// Sends `request` on a fresh DEALER to `endpoint` until `expect` comes back (others are
/// ignored), a new socket every 300 ms, for at most [`CHECK_DEADLINE`].
fn exchange(
    ctx: &zmq::Context,
    gen: &mut Gen,
    endpoint: &str,
    request: &Frames,
    expect: &Frames,
) -> Result<Frames, String> {
    let start = Instant::now();
    while start.elapsed() < CHECK_DEADLINE {
        let s = socket(ctx, zmq::DEALER, Some(&token_identity(gen)));
        s.connect(endpoint).unwrap();
        if s.send_multipart(request, 0).is_err() {
            continue;
        }
        let attempt = Instant::now();
        while attempt.elapsed() < Duration::from_millis(300) {
            if s.poll(zmq::POLLIN, 50).unwrap_or(0) > 0 {
                let got = s.recv_multipart(0).unwrap();
                if got.starts_with(expect) || expect.is_empty() {
                    return Ok(got);
                }
            }
        }
    }
    Err(format!(
        "no reply to {} from {endpoint} in {CHECK_DEADLINE:?}",
        show(request)
    ))
}

fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// The end-to-end check of a role: one normal request that must get its normal reply.
enum Check {
    /// A REQ request `[id]["" ][token]` echoed by a REP-like path (server, queue, proxy).
    Req(String),
    /// An MDP 0.1 request to [`CHECK`] and one to [`CHECK2`] (a 0.2 worker) via a broker.
    Mdp(String),
    /// A 10/FLP request `[control][token]`.
    Flp(String),
    /// The 9/TSP round: request, poll the reply until 200, close.
    Tsp(String),
    /// A request the fuzzer itself sends to the worker on its ROUTER (see [`RouterSink`]).
    Worker,
}

impl Check {
    fn run(&self, ctx: &zmq::Context, gen: &mut Gen, n: u64) -> Result<(), String> {
        let token = format!("token-{n}").into_bytes();
        match self {
            Check::Req(ep) => {
                let req = vec![token_identity(gen), vec![], token];
                exchange(ctx, gen, ep, &req, &req).map(drop)
            }
            Check::Flp(ep) => {
                let req = vec![token_identity(gen), token];
                exchange(ctx, gen, ep, &req, &req).map(drop)
            }
            Check::Mdp(ep) => {
                for service in [CHECK, CHECK2] {
                    let req = frames(&[b"", b"MDPC01", service.as_bytes(), &token]);
                    if let Err(e) = exchange(ctx, gen, ep, &req, &req) {
                        return Err(format!(
                            "{e}\nthe broker says: {}",
                            broker_status(ctx, gen, ep)
                        ));
                    }
                }
                Ok(())
            }
            Check::Tsp(ep) => {
                let req = frames(&[b"", b"MDPC01", b"titanic.request", CHECK.as_bytes(), &token]);
                let head = frames(&[b"", b"MDPC01", b"titanic.request", b"200"]);
                let got = exchange(ctx, gen, ep, &req, &head)?;
                let uuid = got.get(4).cloned().ok_or("titanic.request: no UUID")?;
                let start = Instant::now();
                loop {
                    let ask = frames(&[b"", b"MDPC01", b"titanic.reply", &uuid]);
                    let got = exchange(ctx, gen, ep, &ask, &ask[..3].to_vec())?;
                    if got.get(3).map(Vec::as_slice) == Some(b"200") {
                        if got.get(4) != Some(&token) {
                            return Err(format!("titanic.reply: wrong reply {}", show(&got)));
                        }
                        break;
                    }
                    if start.elapsed() > CHECK_DEADLINE {
                        return Err(format!("titanic.reply: still {}", show(&got)));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let close = frames(&[b"", b"MDPC01", b"titanic.close", &uuid]);
                let ok = frames(&[b"", b"MDPC01", b"titanic.close", b"200"]);
                exchange(ctx, gen, ep, &close, &ok).map(drop)
            }
            Check::Worker => unreachable!("the router sink checks its worker itself"),
        }
    }
}

/// What `mmi.status` says of the check services, and its counters, for a failure report.
fn broker_status(ctx: &zmq::Context, gen: &mut Gen, ep: &str) -> String {
    let req = frames(&[b"", b"MDPC01", b"mmi.status", b""]);
    let Ok(reply) = exchange(ctx, gen, ep, &req, &req[..3].to_vec()) else {
        return "nothing (mmi.status unanswered)".into();
    };
    let Ok(mut status) = serde_json::from_slice::<serde_json::Value>(&reply[3]) else {
        return show(&reply);
    };
    let services = status["services"].take();
    let n = services.as_object().map_or(0, |m| m.len());
    let queued: u64 = services
        .as_object()
        .map_or(0, |m| m.values().filter_map(|s| s["queued"].as_u64()).sum());
    format!(
        "{status}; {n} services, {queued} requests queued; {CHECK}: {}; {CHECK2}: {}",
        services[CHECK], services[CHECK2]
    )
}

/// How a fuzz peer answers what a role sends it, so that fuzz workers also reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Never,
    /// A PPP worker: echoes requests and heartbeats.
    Ppp,
    /// A Majordomo worker (0.1 and 0.2): answers REQUEST with REPLY/FINAL.
    Mdp,
}

fn answer(kind: Answer, msg: &[Vec<u8>]) -> Option<Frames> {
    match kind {
        Answer::Never => None,
        Answer::Ppp => (msg == [vec![0x02]] || msg.iter().any(Vec::is_empty)).then(|| msg.to_vec()),
        Answer::Mdp => {
            let mut m = msg.to_vec();
            let at = usize::from(m.first().is_some_and(Vec::is_empty));
            match (
                m.get(at).map(Vec::as_slice),
                m.get(at + 1).map(Vec::as_slice),
            ) {
                (Some(b"MDPW01"), Some([0x02])) => m[at + 1] = vec![0x03],
                (Some(b"MDPW02"), Some([0x02])) => m[at + 1] = vec![0x04],
                (Some(b"MDPW01" | b"MDPW02"), Some([0x04] | [0x05])) => {}
                _ => return None,
            }
            Some(m)
        }
    }
}

/// Fuzz peers that connect to a role's endpoint: DEALERs, relaxed REQs and (for a Freelance
/// server, whose identity is known) ROUTERs, with identities that change as they are replaced.
struct Peers {
    ctx: zmq::Context,
    endpoint: String,
    /// The server's identity, for ROUTER peers (Freelance only).
    router_to: Option<Vec<u8>>,
    socks: Vec<(zmq::Socket, bool)>,
    answer: Answer,
    /// The identities of the last peers that joined, for a failure report (a crash may come
    /// from a connection rather than a message).
    joined: VecDeque<String>,
}

impl Peers {
    fn new(ctx: &zmq::Context, endpoint: &str, router_to: Option<Vec<u8>>, answer: Answer) -> Self {
        Peers {
            ctx: ctx.clone(),
            endpoint: endpoint.to_string(),
            router_to,
            socks: Vec::new(),
            answer,
            joined: VecDeque::new(),
        }
    }

    fn peer(&mut self, gen: &mut Gen) -> (zmq::Socket, bool) {
        let router = self.router_to.is_some() && gen.chance(0.3);
        let kind = if router {
            zmq::ROUTER
        } else if gen.chance(0.2) {
            zmq::REQ
        } else {
            zmq::DEALER
        };
        let identity = gen.identity();
        if self.joined.len() == LAST {
            self.joined.pop_front();
        }
        self.joined.push_back(match &identity {
            Some(id) => format!("{kind:?} {}", show(std::slice::from_ref(id))),
            None => format!("{kind:?} (libzmq's identity)"),
        });
        let s = socket(&self.ctx, kind, identity.as_deref());
        // Pace the fuzz to the role: a small send queue that blocks when full, so the backlog
        // at the role stays bounded, and a linger, so that a peer that leaves delivers what it
        // was counted as sending.
        s.set_sndhwm(100).unwrap();
        s.set_sndtimeo(1000).unwrap();
        s.set_linger(2000).unwrap();
        if kind == zmq::REQ {
            s.set_req_relaxed(true).unwrap();
            s.set_req_correlate(gen.chance(0.5)).unwrap();
        }
        s.connect(&self.endpoint).unwrap();
        (s, router)
    }

    fn send(&mut self, gen: &mut Gen, msg: &Frames) -> bool {
        while self.socks.len() < 8 {
            let p = self.peer(gen);
            self.socks.push(p);
        }
        if gen.chance(0.005) {
            let i = gen.below(self.socks.len());
            self.socks[i] = self.peer(gen); // a peer leaves; another arrives
        }
        let i = gen.below(self.socks.len());
        let (sock, router) = &self.socks[i];
        let mut out = msg.clone();
        if *router {
            out.insert(0, self.router_to.clone().unwrap());
        }
        if sock.send_multipart(&out, 0).is_ok() {
            return true;
        }
        // Held back (a full queue, or a connection libzmq refused): replace that peer.
        self.socks[i] = self.peer(gen);
        false
    }

    fn drain(&mut self, gen: &mut Gen) {
        for (sock, router) in &self.socks {
            for _ in 0..64 {
                let Ok(mut msg) = sock.recv_multipart(zmq::DONTWAIT) else {
                    break;
                };
                if *router {
                    msg.remove(0);
                }
                gen.learn(&msg);
                if let Some(mut reply) = answer(self.answer, &msg).filter(|_| gen.chance(0.6)) {
                    if *router {
                        reply.insert(0, self.router_to.clone().unwrap());
                    }
                    let _ = sock.send_multipart(&reply, zmq::DONTWAIT);
                }
            }
        }
    }
}

/// The protocol a worker under fuzz speaks, for the [`RouterSink`]'s heartbeats and check.
#[derive(Clone, Copy)]
enum WorkerKind {
    Ppp,
    Mdp1,
    Mdp2,
}

/// A ROUTER the fuzzer binds for a role that connects (a worker): it sends to the identity
/// the worker last spoke from (a new one after each reconnect), heartbeats it, and checks it.
struct RouterSink {
    sock: zmq::Socket,
    worker: Option<Vec<u8>>,
    kind: WorkerKind,
    last_heartbeat: Instant,
}

impl RouterSink {
    fn heartbeat(&self) -> Frames {
        match self.kind {
            WorkerKind::Ppp => vec![vec![0x02]],
            WorkerKind::Mdp1 => frames(&[b"", b"MDPW01", &[0x04]]),
            WorkerKind::Mdp2 => frames(&[b"MDPW02", &[0x05]]),
        }
    }

    fn send(&mut self, msg: &Frames) -> bool {
        let Some(worker) = self.worker.clone() else {
            return false;
        };
        let mut out = msg.clone();
        out.insert(0, worker);
        self.sock.send_multipart(&out, 0).is_ok()
    }

    /// Reads what the worker sent (learning its identity and frames) and heartbeats it.
    fn drain(&mut self, gen: &mut Gen, on: &mut dyn FnMut(&[Vec<u8>])) {
        while let Ok(mut msg) = self.sock.recv_multipart(zmq::DONTWAIT) {
            let id = msg.remove(0);
            self.worker = Some(id);
            gen.learn(&msg);
            on(&msg);
        }
        if self.last_heartbeat.elapsed() > Duration::from_millis(50) {
            self.last_heartbeat = Instant::now();
            let hb = self.heartbeat();
            self.send(&hb);
        }
    }

    /// Sends the worker a valid request and waits for its reply, resending every 300 ms.
    fn check(&mut self, gen: &mut Gen, n: u64) -> Result<(), String> {
        let token = format!("token-{n}").into_bytes();
        let addr = token_identity(gen);
        let (request, reply) = match self.kind {
            WorkerKind::Ppp => {
                let m = vec![addr, vec![], token];
                (m.clone(), m)
            }
            WorkerKind::Mdp1 => (
                frames(&[b"", b"MDPW01", &[0x02], &addr, b"", &token]),
                frames(&[b"", b"MDPW01", &[0x03], &addr, b"", &token]),
            ),
            WorkerKind::Mdp2 => (
                frames(&[b"MDPW02", &[0x02], &addr, b"", &token]),
                frames(&[b"MDPW02", &[0x04], &addr, b"", &token]),
            ),
        };
        let start = Instant::now();
        let mut sent_at: Option<Instant> = None;
        while start.elapsed() < CHECK_DEADLINE {
            if sent_at.is_none_or(|t| t.elapsed() > Duration::from_millis(300)) {
                let r = request.clone();
                if self.send(&r) {
                    sent_at = Some(Instant::now());
                }
            }
            let mut done = false;
            self.drain(gen, &mut |m| done |= m == reply.as_slice());
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(format!("the worker did not answer {}", show(&request)))
    }
}

/// Where the fuzz messages go.
enum Sink {
    Peers(Peers),
    Router(RouterSink),
    /// A PUB bound where a Binary Star node subscribes to its peer's states.
    Pub(zmq::Socket),
}

/// One role under fuzz: its processes, where messages go, and its check.
struct Target {
    procs: Vec<Proc>,
    sink: Sink,
    check: Check,
    /// The `pirate client` arguments of the final real-client request (its reply: `final`).
    final_client: Vec<String>,
    _dir: Option<TempDir>,
}

/// A directory removed on drop (Titanic's store).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

const HB: [&str; 2] = ["--heartbeat", "100ms"];

fn mdp_worker(protocol: &str, service: &str, ep: &str) -> Proc {
    let mut args = vec![
        "worker",
        "--protocol",
        protocol,
        "--service",
        service,
        "--connect",
        ep,
    ];
    args.extend_from_slice(&["--reconnect", "100ms", "--reconnect-max", "500ms"]);
    args.extend_from_slice(&HB);
    spawn("worker", &args)
}

/// Starts what `role` needs and says where its fuzz goes.
fn start(role: Role, seed: u64, ctx: &zmq::Context) -> Target {
    let peers = |ep: &str, answer| Sink::Peers(Peers::new(ctx, ep, None, answer));
    let seed_s = seed.to_string();
    match role {
        Role::Broker | Role::Titanic => {
            let (broker, port) = start_broker(&HB);
            let ep = endpoint(port);
            let mut procs = vec![
                broker,
                mdp_worker("mdp", CHECK, &ep),
                mdp_worker("mdp2", CHECK2, &ep),
            ];
            let mut dir = None;
            let (check, final_client) = if role == Role::Titanic {
                let path = std::env::temp_dir()
                    .join(format!("pirate-fuzz-titanic-{}-{seed}", std::process::id()));
                let p = path.to_str().unwrap().to_string();
                dir = Some(TempDir(path));
                procs.insert(
                    0,
                    spawn(
                        "titanic",
                        &[
                            "titanic",
                            "--connect",
                            &ep,
                            "--dir",
                            &p,
                            "--heartbeat",
                            "100ms",
                            "--retry-interval",
                            "1s",
                            "--reconnect",
                            "100ms",
                        ],
                    ),
                );
                let fc = strings(&["--titanic", "--service", CHECK, "--poll-interval", "100ms"]);
                (Check::Tsp(ep.clone()), fc)
            } else {
                (Check::Mdp(ep.clone()), strings(&["--service", CHECK]))
            };
            let mut fc = final_client;
            fc.extend(strings(&["--connect", &ep]));
            Target {
                procs,
                sink: peers(&ep, Answer::Mdp),
                check,
                final_client: fc,
                _dir: dir,
            }
        }
        Role::QueueFrontend | Role::QueueBackend | Role::SimpleQueueBackend => {
            let simple = role == Role::SimpleQueueBackend;
            let mut args = vec!["--liveness", "3"];
            args.extend_from_slice(&HB);
            if simple {
                args.push("--simple");
            }
            let (queue, front, back) = start_queue(&args);
            let (f, b) = (endpoint(front), endpoint(back));
            let protocol = if simple { "simple" } else { "paranoid" };
            let mut w = vec!["worker", "--protocol", protocol, "--connect", &b];
            w.extend_from_slice(&["--reconnect", "100ms", "--reconnect-max", "500ms"]);
            w.extend_from_slice(&HB);
            let worker = spawn("worker", &w);
            let sink = if role == Role::QueueFrontend {
                peers(&f, Answer::Never)
            } else {
                peers(&b, Answer::Ppp)
            };
            Target {
                procs: vec![queue, worker],
                sink,
                check: Check::Req(f.clone()),
                final_client: strings(&["--connect", &f]),
                _dir: None,
            }
        }
        Role::Server => {
            let (server, port) = start_server(&[]);
            let ep = endpoint(port);
            Target {
                procs: vec![server],
                sink: peers(&ep, Answer::Never),
                check: Check::Req(ep.clone()),
                final_client: strings(&["--connect", &ep]),
                _dir: None,
            }
        }
        Role::Freelance => {
            let (server, port) = start_freelance_server("freelance", &[]);
            let ep = endpoint(port);
            Target {
                procs: vec![server],
                sink: Sink::Peers(Peers::new(
                    ctx,
                    &ep,
                    Some(ep.clone().into_bytes()),
                    Answer::Never,
                )),
                check: Check::Flp(ep.clone()),
                final_client: strings(&["--freelance", "--connect", &ep]),
                _dir: None,
            }
        }
        Role::Bstar | Role::BstarState => {
            let ports = BstarPorts::new();
            let state_pub = (role == Role::BstarState).then(|| {
                let s = socket(ctx, zmq::PUB, None);
                s.bind(&ports.backup_state).unwrap();
                s
            });
            let node = start_bstar_node(&ports, true, "50ms", &[]);
            let sink = match state_pub {
                Some(s) => Sink::Pub(s),
                None => peers(&ports.primary, Answer::Never),
            };
            Target {
                procs: vec![node],
                sink,
                check: Check::Req(ports.primary.clone()),
                final_client: strings(&["--connect", &ports.primary]),
                _dir: None,
            }
        }
        Role::Proxy => {
            let (server, port) = start_server(&[]);
            let front = endpoint(free_port());
            let proxy = spawn(
                "proxy",
                &[
                    "chaos",
                    "proxy",
                    "--frontend",
                    &front,
                    "--backend",
                    &endpoint(port),
                    "--corrupt",
                    "1%",
                    "--truncate",
                    "1%",
                    "--duplicate",
                    "2%",
                    "--reorder",
                    "3",
                    "--reorder-wait",
                    "20ms",
                    "--delay",
                    "5ms",
                    "--delay-rate",
                    "5%",
                    "--seed",
                    &seed_s,
                ],
            );
            Target {
                procs: vec![proxy, server],
                sink: peers(&front, Answer::Never),
                check: Check::Req(front.clone()),
                final_client: strings(&["--connect", &front]),
                _dir: None,
            }
        }
        Role::WorkerPpp | Role::WorkerMdp | Role::WorkerMdp2 => {
            let sock = socket(ctx, zmq::ROUTER, None);
            sock.set_router_mandatory(true).unwrap();
            let ep = endpoint(free_port());
            sock.bind(&ep).unwrap();
            let (kind, worker) = match role {
                Role::WorkerPpp => {
                    let mut args = vec![
                        "worker",
                        "--connect",
                        &ep,
                        "--reconnect",
                        "50ms",
                        "--reconnect-max",
                        "200ms",
                        "--liveness",
                        "5",
                    ];
                    args.extend_from_slice(&HB);
                    (WorkerKind::Ppp, spawn("worker", &args))
                }
                Role::WorkerMdp => (WorkerKind::Mdp1, mdp_worker("mdp", "echo", &ep)),
                _ => (WorkerKind::Mdp2, mdp_worker("mdp2", "echo", &ep)),
            };
            Target {
                procs: vec![worker],
                sink: Sink::Router(RouterSink {
                    sock,
                    worker: None,
                    kind,
                    last_heartbeat: Instant::now(),
                }),
                check: Check::Worker,
                final_client: Vec::new(),
                _dir: None,
            }
        }
        Role::Client => unreachable!("the client has a loop of its own"),
    }
}

/// The record of a run so far, for a failure report.
struct Trail {
    role: Role,
    seed: u64,
    last: VecDeque<Frames>,
}

impl Trail {
    fn push(&mut self, msg: &Frames) {
        if self.last.len() == LAST {
            self.last.pop_front();
        }
        self.last.push_back(msg.clone());
    }

    fn fail(&self, sent: u64, what: &str, procs: &[Proc]) -> String {
        let mut report = format!(
            "fuzz {} (seed {}; replay with PIRATE_FUZZ_SEED={} PIRATE_FUZZ_ROLES={}): after {sent} \
             messages: {what}\nlast messages sent:\n",
            self.role.name(),
            self.seed,
            self.seed,
            self.role.name()
        );
        for m in &self.last {
            report.push_str(&format!("  {}\n", show(m)));
        }
        for p in procs {
            let err = p.stderr.text();
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            report.push_str(&format!("--- {} stderr (last lines)\n", p.name));
            for l in tail.iter().rev() {
                report.push_str(&format!("  {l}\n"));
            }
        }
        report
    }

    /// [`Trail::fail`] for a target, with the identities of the peers that joined last.
    fn fail_at(&self, sent: u64, what: &str, target: &Target) -> String {
        let mut report = self.fail(sent, what, &target.procs);
        if let Sink::Peers(peers) = &target.sink {
            report.push_str("peers that joined last:\n");
            for j in &peers.joined {
                report.push_str(&format!("  {j}\n"));
            }
        }
        report
    }
}

/// CPU time (user + system, in clock ticks) of `pid` so far.
fn cpu_ticks(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Waits until the role's processes have worked off their backlog: their CPU use falls to
/// under a fifth of a core (heartbeats, Titanic's own retries) for 300 ms; at most 3 s, since
/// a role still busy then is busy with work of its own, not with what was sent.
fn settle(procs: &[Proc]) {
    let total = || procs.iter().map(|p| cpu_ticks(p.pid())).sum::<u64>();
    let start = Instant::now();
    let mut last = total();
    let mut quiet = 0;
    while quiet < 3 && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        let now = total();
        quiet = if now <= last + 2 { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Fails if a process of the role has exited (a crash: nothing here asks them to stop).
fn alive(procs: &mut [Proc]) -> Result<(), String> {
    for p in procs.iter_mut() {
        if p.has_exited() {
            let status = p.wait();
            return Err(format!("{} exited: {status:?}", p.name));
        }
    }
    Ok(())
}

/// Fuzzes `role` with `messages` messages from `seed`; checks every `check_every`.
fn fuzz(role: Role, seed: u64, messages: u64) -> Result<Stats, String> {
    if role == Role::Client {
        return fuzz_client(seed, messages);
    }
    let started = Instant::now();
    let ctx = zmq::Context::new();
    let services = [
        "echo",
        "fuzz",
        "mmi.service",
        "mmi.status",
        "mmi.correlate",
        "titanic.request",
        "titanic.reply",
        "titanic.close",
    ];
    let mut gen = Gen::new(seed, role.focus(), &services);
    let mut target = start(role, seed, &ctx);
    let mut trail = Trail {
        role,
        seed,
        last: VecDeque::new(),
    };
    let mut stats = Stats {
        role: role.name(),
        seed,
        ..Stats::default()
    };
    let check_every = (messages / 10).clamp(1000, 2000);
    let check = |target: &mut Target, gen: &mut Gen, stats: &mut Stats, trail: &Trail| {
        // Let the role work off what was sent first: each new peer connection brings a queue
        // of its own (libzmq's high-water marks are per connection), so without this a
        // fuzzer faster than the role would pile messages up in libzmq, not test the role.
        settle(&target.procs);
        let result = alive(&mut target.procs).and_then(|()| match &mut target.sink {
            Sink::Router(r) => r.check(gen, stats.checks),
            _ => target.check.run(&ctx, gen, stats.checks),
        });
        result.map_err(|e| trail.fail_at(stats.sent, &e, target))?;
        stats.checks += 1;
        for p in &target.procs {
            stats.peak_rss_kib = stats.peak_rss_kib.max(rss_kib(p.pid()));
        }
        if stats.peak_rss_kib > RSS_LIMIT_KIB {
            let mut what = format!("resident memory grew to {} KiB", stats.peak_rss_kib);
            if let Check::Mdp(ep) | Check::Tsp(ep) = &target.check {
                what.push_str(&format!(
                    "\nthe broker says: {}",
                    broker_status(&ctx, gen, ep)
                ));
            }
            return Err(trail.fail_at(stats.sent, &what, target));
        }
        Ok(())
    };
    // The role must serve before the fuzz starts (this also waits for workers to register).
    check(&mut target, &mut gen, &mut stats, &trail)?;
    let mut i = 0u64;
    while stats.sent < messages {
        i += 1;
        let mut msg = gen.message();
        let ok = match &mut target.sink {
            Sink::Peers(p) => p.send(&mut gen, &msg),
            Sink::Router(r) => r.send(&msg),
            Sink::Pub(s) => {
                // "1" (PRIMARY) and "3" (ACTIVE) are legitimately fatal to a lone primary.
                if let [f] = msg.as_slice() {
                    if matches!(f.strip_suffix(b"\0").unwrap_or(f), b"1" | b"3") {
                        msg = vec![b"2".to_vec()];
                    }
                }
                s.send_multipart(&msg, 0).is_ok()
            }
        };
        if ok {
            stats.sent += 1;
            trail.push(&msg);
        } else {
            stats.blocked += 1;
            if stats.blocked > 100 * messages.max(1000) {
                return Err(trail.fail_at(stats.sent, "nothing can be sent any more", &target));
            }
        }
        if i.is_multiple_of(16) || !ok {
            match &mut target.sink {
                Sink::Peers(p) => p.drain(&mut gen),
                Sink::Router(r) => r.drain(&mut gen, &mut |_| {}),
                Sink::Pub(_) => {}
            }
        }
        if !ok {
            std::thread::sleep(Duration::from_millis(1));
        }
        if ok && stats.sent.is_multiple_of(check_every) {
            check(&mut target, &mut gen, &mut stats, &trail)?;
        }
    }
    check(&mut target, &mut gen, &mut stats, &trail)?;
    if !target.final_client.is_empty() {
        let mut args = strings(&["client", "--timeout", "500ms", "--retries", "40"]);
        args.extend(target.final_client.iter().cloned());
        args.push("final".to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run(&args, None);
        if code != 0 || out.trim() != "final" {
            let what = format!("`pirate {}` exited {code}: {out}{err}", args.join(" "));
            return Err(trail.fail_at(stats.sent, &what, &target));
        }
    }
    alive(&mut target.procs).map_err(|e| trail.fail_at(stats.sent, &e, &target))?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Fuzzes `pirate client` from a ROUTER that plays its server: each request gets fuzz
/// messages (garbage, replies with another request id or the wrong body, duplicates) around
/// its correct reply. Every client run must deliver exactly its `--count` sequence, in order.
fn fuzz_client(seed: u64, messages: u64) -> Result<Stats, String> {
    let started = Instant::now();
    let ctx = zmq::Context::new();
    let mut gen = Gen::new(seed, Role::Client.focus(), &["echo"]);
    let mut trail = Trail {
        role: Role::Client,
        seed,
        last: VecDeque::new(),
    };
    let mut stats = Stats {
        role: Role::Client.name(),
        seed,
        ..Stats::default()
    };
    let sock = socket(&ctx, zmq::ROUTER, None);
    let ep = endpoint(free_port());
    sock.bind(&ep).unwrap();
    let count = 200u64.min(messages.max(20) / 10).to_string();
    while stats.sent < messages {
        let client = spawn(
            "client",
            &[
                "client",
                "--json",
                "--connect",
                &ep,
                "--timeout",
                "300ms",
                "--retries",
                "100",
                "--count",
                &count,
            ],
        );
        let mut procs = vec![client];
        let mut attempts: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        let deadline = Instant::now() + DEADLINE * 4;
        while !procs[0].has_exited() {
            if Instant::now() > deadline {
                return Err(trail.fail(stats.sent, "the client hangs", &procs));
            }
            if sock.poll(zmq::POLLIN, 20).unwrap_or(0) == 0 {
                continue;
            }
            let msg = sock.recv_multipart(0).unwrap();
            stats.peak_rss_kib = stats.peak_rss_kib.max(rss_kib(procs[0].pid()));
            gen.learn(&msg[1..]);
            // [client identity][request id]["" ][body]
            let [id, reqid, empty, body] = msg.as_slice() else {
                return Err(trail.fail(stats.sent, &format!("odd request {}", show(&msg)), &procs));
            };
            assert!(empty.is_empty());
            let n = attempts.entry(body.clone()).or_default();
            *n += 1;
            let good = frames(&[reqid, b"", body]);
            let mut burst: Vec<Frames> = Vec::new();
            if *n < 3 && stats.sent < messages {
                for _ in 0..gen.below(50) {
                    burst.push(match gen.below(10) {
                        0 => frames(&[b"0123456789abcdef", b"", body]), // another request id
                        1 if gen.chance(0.05) => frames(&[reqid, b"", b"wrong"]),
                        2 => frames(&[reqid, b"", body, b"extra"]),
                        3 => frames(&[reqid]),
                        4 => frames(&[reqid, body]),
                        _ => gen.message(),
                    });
                }
                if gen.chance(0.9) {
                    let at = gen.below(burst.len() + 1);
                    burst.insert(at, good.clone()); // later ones are duplicates, to be dropped
                }
            } else {
                burst.push(good);
            }
            for m in burst {
                let mut out = m.clone();
                out.insert(0, id.clone());
                if sock.send_multipart(&out, 0).is_ok() {
                    stats.sent += 1;
                    trail.push(&m);
                } else {
                    stats.blocked += 1;
                }
            }
        }
        let client = &mut procs[0];
        let code = client.code();
        let out = client.stdout.text();
        if code != 0 || replies(&out) != sequence(count.parse().unwrap()) {
            let what = format!("the client exited {code} with replies {:?}", replies(&out));
            return Err(trail.fail(stats.sent, &what, &procs));
        }
        stats.checks += 1;
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.replace(['_', ','], "").parse().expect(name))
        .unwrap_or(default)
}

/// The short run of one role, part of `cargo test`.
fn short(role: Role) {
    let seed = env_u64("PIRATE_FUZZ_SEED", 1);
    match fuzz(role, seed, 4000) {
        Ok(stats) => eprintln!("{stats}"),
        Err(report) => panic!("{report}"),
    }
}

#[test]
fn fuzz_broker() {
    short(Role::Broker)
}
#[test]
fn fuzz_queue_frontend() {
    short(Role::QueueFrontend)
}
#[test]
fn fuzz_queue_backend() {
    short(Role::QueueBackend)
}
#[test]
fn fuzz_simple_queue_backend() {
    short(Role::SimpleQueueBackend)
}
#[test]
fn fuzz_lazy_server() {
    short(Role::Server)
}
#[test]
fn fuzz_freelance_server() {
    short(Role::Freelance)
}
#[test]
fn fuzz_bstar_server() {
    short(Role::Bstar)
}
#[test]
fn fuzz_bstar_state_link() {
    short(Role::BstarState)
}
#[test]
fn fuzz_titanic_via_broker() {
    short(Role::Titanic)
}
#[test]
fn fuzz_chaos_proxy() {
    short(Role::Proxy)
}
#[test]
fn fuzz_ppp_worker() {
    short(Role::WorkerPpp)
}
#[test]
fn fuzz_mdp_worker() {
    short(Role::WorkerMdp)
}
#[test]
fn fuzz_mdp2_worker() {
    short(Role::WorkerMdp2)
}
#[test]
fn fuzz_lazy_client() {
    short(Role::Client)
}

/// The long run: `cargo test --release --test fuzz -- --ignored --nocapture`.
#[test]
#[ignore = "long: run with --ignored (see the module docs)"]
fn fuzz_long() {
    let seed = env_u64("PIRATE_FUZZ_SEED", 1);
    let messages = env_u64("PIRATE_FUZZ_MESSAGES", 100_000);
    let only = std::env::var("PIRATE_FUZZ_ROLES").unwrap_or_default();
    let mut failures = Vec::new();
    for role in ROLES {
        if !only.is_empty() && !only.split(',').any(|r| r.trim() == role.name()) {
            continue;
        }
        let n = if role == Role::Broker {
            messages * 10
        } else {
            messages
        };
        match fuzz(role, seed, n) {
            Ok(stats) => eprintln!("{stats}"),
            Err(report) => {
                eprintln!("{report}");
                failures.push(role.name());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "crashed or stopped serving: {failures:?}"
    );
}
