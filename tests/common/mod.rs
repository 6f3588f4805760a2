//! Test harness: runs the real `pirate` binary as child processes on loopback ports that are
//! free, with a hard deadline on every wait, and kills every child when its handle drops.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub mod guide;

/// One `#[test]` per row, named by the row and running `helper` with the row's arguments (for
/// a table of combinations, such as which program plays each part): `helper; name: args;`,
/// each row with its doc comment if it has one.
#[allow(unused_macros)] // as dead_code above: not every test file has a table
macro_rules! combinations {
    ($helper:ident; $($(#[$meta:meta])* $name:ident: $($arg:expr),+;)+) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                $helper($($arg),+);
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use combinations;

/// The longest any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A port on 127.0.0.1 that was free a moment ago (see `pirate::endpoint::free_loopback_port`:
/// never the same twice in one test binary, and below the ephemeral range, where a CI run lost
/// a test to "address already in use").
pub fn free_port() -> u16 {
    pirate::endpoint::free_loopback_port().expect("cannot find a free loopback port")
}

/// `tcp://127.0.0.1:PORT`.
pub fn endpoint(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// A `pirate` command.
pub fn pirate(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pirate"));
    cmd.args(args);
    cmd
}

/// Output captured from a child as it runs.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<String>>, Arc<AtomicBool>);

impl Captured {
    fn follow(stream: impl Read + Send + 'static) -> Self {
        let captured = Captured::default();
        let sink = captured.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.0.lock().unwrap().push_str(&line);
                line.clear();
            }
            // A last line without a newline is output too.
            sink.0.lock().unwrap().push_str(&line);
            sink.1.store(true, Ordering::SeqCst);
        });
        captured
    }

    /// True once the stream reached its end (the process and its children closed it): the
    /// text is complete.
    pub fn ended(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Lines captured so far.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }
}

/// A running `pirate` process, killed and reaped on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Started with `--json`: every line it printed is checked against the schema when it
    /// is dropped.
    json: bool,
}

/// Starts `pirate ARGS` with captured stdout and stderr, stdin closed.
pub fn spawn(name: &str, args: &[&str]) -> Proc {
    spawn_with_stdin(name, args, false)
}

/// Starts `pirate ARGS`, optionally with a stdin pipe the test writes to.
pub fn spawn_with_stdin(name: &str, args: &[&str], piped_stdin: bool) -> Proc {
    let mut proc = spawn_command(name, pirate(args), piped_stdin);
    proc.json = args.contains(&"--json");
    proc
}

/// Starts any command (a `pirate` one, or one of the Guide's programs) with captured stdout
/// and stderr, killed and reaped when the handle drops.
pub fn spawn_command(name: &str, mut command: Command, piped_stdin: bool) -> Proc {
    let mut child = command
        .stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = Captured::follow(child.stdout.take().unwrap());
    let stderr = Captured::follow(child.stderr.take().unwrap());
    Proc {
        name: name.to_string(),
        stdin: child.stdin.take(),
        child,
        stdout,
        stderr,
        json: false,
    }
}

impl Proc {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Writes to the child's stdin (it must have been started with a pipe).
    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("started without a stdin pipe");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the child's stdin (end of requests).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Sends a signal (e.g. `libc::SIGKILL`, `libc::SIGINT`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits until `cond` holds of (stdout, stderr), failing the test after `DEADLINE`.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&str, &str) -> bool) {
        let start = Instant::now();
        loop {
            let (out, err) = (self.stdout.text(), self.stderr.text());
            if cond(&out, &err) {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "{}: timed out waiting for {what}\n--- stdout\n{out}--- stderr\n{err}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the process has bound its sockets: its human `banner` (e.g. `server on`)
    /// on stderr, or its `started` event under `--json`.
    pub fn wait_started(&self, banner: &str) {
        self.wait_for(&format!("{} to bind ({banner:?})", self.name), |o, e| {
            e.contains(banner) || o.contains(r#""event":"started""#)
        });
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        self.wait_for(&format!("stderr to contain {needle:?}"), |_, e| {
            e.contains(needle)
        });
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_stdout(&self, needle: &str) {
        self.wait_for(&format!("stdout to contain {needle:?}"), |o, _| {
            o.contains(needle)
        });
    }

    /// Waits for the process to exit (failing the test after `DEADLINE`) and returns its
    /// status once its output has been read to the end.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(DEADLINE)
    }

    /// [`Proc::wait`] for a process whose own bounds allow it more than `DEADLINE` (a chaos
    /// run may extend its fault phase by `--max-extension`): fails the test after `limit`.
    pub fn wait_within(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Its output is complete once the reader threads read both pipes to their
                // end (a fixed pause here lost a client's whole stdout on a loaded machine).
                // Whatever the process started dies with it (process groups, parent-death
                // signal), so the ends come.
                let exited = Instant::now();
                while !(self.stdout.ended() && self.stderr.ended()) {
                    assert!(
                        exited.elapsed() < DEADLINE,
                        "{}: exited ({status}) but timed out waiting for the end of its \
                         stdout and stderr (does a child of it hold them open?)",
                        self.name
                    );
                    thread::sleep(Duration::from_millis(5));
                }
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "{}: did not exit within {limit:?}\n--- stdout\n{}--- stderr\n{}",
                    self.name,
                    self.stdout.text(),
                    self.stderr.text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit and returns the exit code, failing if it died by a signal.
    pub fn code(&mut self) -> i32 {
        self.code_within(DEADLINE)
    }

    /// [`Proc::code`], waiting up to `limit` (see [`Proc::wait_within`]).
    pub fn code_within(&mut self, limit: Duration) -> i32 {
        let status = self.wait_within(limit);
        status.code().unwrap_or_else(|| {
            panic!(
                "{} died by a signal: {status:?}\n--- stderr\n{}",
                self.name,
                self.stderr.text()
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Continue it first in case a test froze it, then kill and reap: nothing outlives a test.
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.json && !thread::panicking() {
            check_json_lines(&self.name, &self.stdout.text());
        }
    }
}

/// Fails the test unless every complete line of a `--json` process's stdout is one object
/// that matches the documented schema (`pirate generate schema`, `docs/events.schema.json`).
/// A last line cut off by the kill that ended the process is not judged.
pub fn check_json_lines(name: &str, stdout: &str) {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&pirate::json_lines::schema())
            .expect("the documented schema is a valid JSON Schema")
    });
    let complete = stdout.rsplit_once('\n').map_or("", |(whole, _)| whole);
    for line in complete.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{name}: a --json line is not JSON ({e}): {line}"));
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: a --json line does not match the schema: {}\n{line}",
            errors.join("; ")
        );
    }
}

/// Runs `pirate ARGS` to completion with optional stdin text; returns (code, stdout, stderr).
pub fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    run_within(args, stdin, DEADLINE)
}

/// [`run`] for a command whose own bounds allow it more than `DEADLINE`: fails after `limit`.
pub fn run_within(args: &[&str], stdin: Option<&str>, limit: Duration) -> (i32, String, String) {
    let mut proc = spawn_with_stdin("pirate", args, stdin.is_some());
    if let Some(text) = stdin {
        proc.write_stdin(text);
        proc.close_stdin();
    }
    let code = proc.code_within(limit);
    (code, proc.stdout.text(), proc.stderr.text())
}

/// Parses every stdout line as JSON, failing the test on any line that is not.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The last JSON line, which must be the summary.
pub fn summary(stdout: &str) -> serde_json::Value {
    let last = json_lines(stdout).pop().expect("no JSON output");
    assert_eq!(
        last["event"], "summary",
        "last line is not the summary: {last}"
    );
    last
}

/// Requests a queue's summary counts for worker `name`'s socket (identities are `NAME-N-`
/// and 32 random hex digits, so the key is found by its prefix).
pub fn per_worker(summary: &serde_json::Value, name: &str) -> u64 {
    let prefix = format!("{name}-");
    summary["per_worker"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

/// A server on a free port, waited for until it is bound.
pub fn start_server(args: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let bind = endpoint(port);
    let mut all = vec!["server", "--bind", bind.as_str()];
    all.extend_from_slice(args);
    let server = spawn("server", &all);
    server.wait_started("server on");
    (server, port)
}

/// A queue on two free ports (frontend, backend) with the given extra flags, waited for.
pub fn start_queue(args: &[&str]) -> (Proc, u16, u16) {
    let (front, back) = (free_port(), free_port());
    let (f, b) = (endpoint(front), endpoint(back));
    let mut all = vec!["queue", "--frontend", f.as_str(), "--backend", b.as_str()];
    all.extend_from_slice(args);
    let queue = spawn("queue", &all);
    queue.wait_started("queue (");
    (queue, front, back)
}

/// The replies of a `--json` client run, in the order printed.
pub fn replies(stdout: &str) -> Vec<String> {
    json_lines(stdout)
        .iter()
        .filter(|l| l["event"] == "reply")
        .map(|l| l["reply"].as_str().unwrap().to_string())
        .collect()
}

/// "1".."n" as strings: the Guide's test sequence.
pub fn sequence(n: u64) -> Vec<String> {
    (1..=n).map(|i| i.to_string()).collect()
}

/// Stops a long-running role with SIGINT and returns its JSON summary (it must run `--json`).
pub fn stop_and_summarise(proc: &mut Proc) -> serde_json::Value {
    proc.signal(libc::SIGINT);
    assert_eq!(proc.code(), 130, "{}", proc.stderr.text());
    summary(&proc.stdout.text())
}

/// A Majordomo broker on a free port with the given extra flags, waited for.
pub fn start_broker(args: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let bind = endpoint(port);
    let mut all = vec!["broker", "--bind", bind.as_str()];
    all.extend_from_slice(args);
    let broker = spawn("broker", &all);
    broker.wait_started("broker on");
    (broker, port)
}

/// The endpoints of a Binary Star pair of servers on free loopback ports.
#[derive(Clone)]
pub struct BstarPorts {
    /// Client endpoints: primary, backup.
    pub primary: String,
    pub backup: String,
    /// State PUB endpoints: primary, backup.
    pub primary_state: String,
    pub backup_state: String,
}

impl BstarPorts {
    pub fn new() -> Self {
        BstarPorts {
            primary: endpoint(free_port()),
            backup: endpoint(free_port()),
            primary_state: endpoint(free_port()),
            backup_state: endpoint(free_port()),
        }
    }
}

/// The state heartbeat of the Binary Star tests' pairs: a silent peer is dead after 200 ms.
pub const BSTAR_HB: &str = "100ms";

impl BstarPorts {
    /// The name (`primary` or `backup`) of one node of the pair, and its endpoints: where it
    /// binds for clients, where it publishes its state, where its peer publishes.
    pub fn node(&self, primary: bool) -> (&'static str, &str, &str, &str) {
        if primary {
            (
                "primary",
                &self.primary,
                &self.primary_state,
                &self.backup_state,
            )
        } else {
            (
                "backup",
                &self.backup,
                &self.backup_state,
                &self.primary_state,
            )
        }
    }
}

/// The arguments of one Binary Star node of `role` (`server` or `broker`): `--primary` or
/// `--backup`, its client endpoint `bind`, its state endpoint and its peer's, and the state
/// heartbeat. The caller adds its own flags.
pub fn bstar_node_args<'a>(
    role: &'a str,
    primary: bool,
    bind: &'a str,
    state: &'a str,
    peer_state: &'a str,
    heartbeat: &'a str,
) -> Vec<&'a str> {
    vec![
        role,
        if primary { "--primary" } else { "--backup" },
        "--bind",
        bind,
        "--state-bind",
        state,
        "--peer-state",
        peer_state,
        "--state-heartbeat",
        heartbeat,
    ]
}

/// The arguments of an MDP 0.1 `echo` worker named `name` that knows both brokers of a
/// Binary Star pair (`first` first: it moves to the other on DISCONNECT or when its broker
/// goes silent), with reconnects after 50 ms and the heartbeat flags `heartbeat`.
pub fn pair_worker_args<'a>(
    name: &'a str,
    first: &'a str,
    second: &'a str,
    heartbeat: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "worker",
        "--protocol",
        "mdp",
        "--service",
        "echo",
        "--connect",
        first,
        "--connect",
        second,
        "--name",
        name,
        "--reconnect",
        "50ms",
    ];
    args.extend_from_slice(heartbeat);
    args
}

/// Starts one Binary Star server node (`primary`: `--primary`, else `--backup`) with the
/// given state heartbeat and extra flags, and waits until it is bound.
pub fn start_bstar_node(
    ports: &BstarPorts,
    primary: bool,
    heartbeat: &str,
    extra: &[&str],
) -> Proc {
    let (name, bind, state, peer_state) = ports.node(primary);
    let mut args = bstar_node_args("server", primary, bind, state, peer_state, heartbeat);
    args.extend_from_slice(extra);
    let node = spawn(name, &args);
    node.wait_started("server on");
    node
}

/// The states a Binary Star node has logged so far (its `state: X` lines), in order.
pub fn bstar_states(node: &Proc) -> Vec<String> {
    node.stderr
        .lines()
        .iter()
        .filter_map(|l| l.split_once("state: ").map(|(_, s)| s.trim().to_string()))
        .collect()
}

impl Proc {
    /// True once the process has exited (reaping it), without waiting.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// A Freelance server (`server --freelance`) on a free port with the given extra flags,
/// waited for until it is bound. Its public endpoint is `endpoint(port)`.
pub fn start_freelance_server(name: &str, args: &[&str]) -> (Proc, u16) {
    let port = free_port();
    (start_freelance_server_on(name, port, args), port)
}

/// A Freelance server bound on `port` (e.g. to restart one that was killed), waited for.
pub fn start_freelance_server_on(name: &str, port: u16, args: &[&str]) -> Proc {
    let bind = endpoint(port);
    let mut all = vec!["server", "--freelance", "--bind", bind.as_str()];
    all.extend_from_slice(args);
    let server = spawn(name, &all);
    server.wait_started("server on");
    server
}

/// True once process `pid` is dead (or a zombie left for init to reap), within `DEADLINE`.
pub fn process_gone(pid: i32) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            // The state is the first field after the parenthesised command name.
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

/// Waits until `path` holds a pid (a test command writes it), and returns it.
pub fn read_pid(path: &std::path::Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} never got a pid",
            path.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Fast 7/MDP timing for tests: a heartbeat every 50 ms, a peer dead after 10 silent
/// intervals (500 ms). Not 3: on a loaded machine a process is sometimes not scheduled for
/// 150 ms, and a worker expired for that (or one that gave its broker up, mid-stream) changed
/// the counts tests check (`requests_lost` 2 for 1 in `bounds::partials…`).
pub const MDP_HB: [&str; 4] = ["--heartbeat", "50ms", "--liveness", "10"];

/// Fast timing at the Guide's liveness: a heartbeat every 50 ms, a peer dead after 3 silent
/// intervals (150 ms). For the queues, brokers and workers of tests that want a dead peer
/// noticed quickly and whose processes stay busy enough not to miss a beat ([`MDP_HB`] is the
/// forgiving one).
pub const FAST_HB: [&str; 4] = ["--heartbeat", "50ms", "--liveness", "3"];

/// A `--json` broker with [`MDP_HB`] and `extra` flags.
pub fn broker(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["--json"];
    args.extend_from_slice(&MDP_HB);
    args.extend_from_slice(extra);
    start_broker(&args)
}

/// A `--json` MDP worker named `name` for `service`, with [`MDP_HB`] and fast reconnects.
pub fn mdp_worker(name: &str, port: u16, protocol: &str, service: &str, extra: &[&str]) -> Proc {
    let connect = endpoint(port);
    let mut args = vec![
        "worker",
        "--json",
        "--protocol",
        protocol,
        "--service",
        service,
        "--connect",
        &connect,
        "--name",
        name,
        "--reconnect",
        "50ms",
        "--reconnect-max",
        "200ms",
    ];
    args.extend_from_slice(&MDP_HB);
    args.extend_from_slice(extra);
    spawn(name, &args)
}

/// Waits until a `--json` queue has seen `n` READY messages (its `worker_ready` events).
pub fn wait_ready(queue: &Proc, n: usize) {
    queue.wait_for(&format!("{n} workers ready"), |o, _| {
        o.matches(r#""event":"worker_ready""#).count() >= n
    });
}

/// Waits until a `--json` broker has registered `n` workers (its `service_worker_ready`
/// events).
pub fn wait_workers(broker: &Proc, n: usize) {
    broker.wait_for(&format!("{n} workers registered"), |o, _| {
        o.matches(r#""event":"service_worker_ready""#).count() >= n
    });
}

/// Waits until a broker has registered `n` workers for `service` (its `ready for service`
/// lines on stderr: a broker without `--json` says only that).
pub fn wait_service_workers(broker: &Proc, service: &str, n: usize) {
    let needle = format!("ready for service {service}");
    broker.wait_for(&format!("{n} worker(s) for {service}"), |_, e| {
        e.matches(&needle).count() >= n
    });
}

/// An MDP 0.1 `pirate worker` for `service` (it echoes, unless `extra` has `--exec`),
/// connected to `connect`, with `extra` flags.
pub fn service_worker(service: &str, connect: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "worker",
        "--protocol",
        "mdp",
        "--service",
        service,
        "--connect",
        connect,
    ];
    args.extend_from_slice(extra);
    spawn(&format!("{service} worker"), &args)
}

/// Starts `pirate chaos proxy --json` from a free frontend port to `backend`, with the given
/// fault flags; returns it and the frontend port once it is bound.
pub fn start_proxy(backend: u16, faults: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let (front, back) = (endpoint(port), endpoint(backend));
    let mut args = vec![
        "chaos",
        "proxy",
        "--json",
        "--frontend",
        front.as_str(),
        "--backend",
        back.as_str(),
    ];
    args.extend_from_slice(faults);
    let proxy = spawn("proxy", &args);
    proxy.wait_started("proxy on");
    (proxy, port)
}

/// A ROUTER/DEALER proxy (`zmq::proxy`) on a thread: clients connect to the returned port, it
/// connects to `upstream`, and every message through it gains one envelope frame. The thread
/// runs for the rest of the test process.
pub fn router_dealer_proxy(upstream: u16) -> u16 {
    let ctx = zmq::Context::new();
    let frontend = ctx.socket(zmq::ROUTER).unwrap();
    let backend = ctx.socket(zmq::DEALER).unwrap();
    let port = free_port();
    frontend.bind(&endpoint(port)).unwrap();
    backend.connect(&endpoint(upstream)).unwrap();
    thread::spawn(move || {
        let _ = zmq::proxy(&frontend, &backend);
        drop(ctx);
    });
    port
}

/// Waits until `cond` holds, failing the test after `DEADLINE` with what it waited for.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// An empty directory `name` under the test target's scratch space (a previous run's is
/// removed; the directory itself is left for the command under test to make).
pub fn out_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A tiny deterministic generator (xorshift64), so that generated garbage is the same on
/// every run.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A message as the `zmq` crate sends and receives it.
pub type Frames = Vec<Vec<u8>>;

/// A hostile or fake peer run on a thread of the test (written with the `zmq` crate), stopped and joined on drop.
pub struct Peer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    /// Binds a ROUTER on a free port and calls `serve(router, stop)` on a thread.
    pub fn router(
        serve: impl FnOnce(zmq::Socket, Arc<AtomicBool>) + Send + 'static,
    ) -> (Peer, u16) {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.set_rcvtimeo(50).unwrap();
        let port = free_port();
        router.bind(&endpoint(port)).unwrap();
        (Peer::spawn(move |stop| serve(router, stop)), port)
    }

    pub fn spawn(f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Peer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Peer {
            stop,
            thread: Some(thread::spawn(move || f(flag))),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a [`foreign_broker`] saw, sent back when it is stopped.
pub struct ForeignSeen {
    /// The identities of the sockets requests came from.
    pub identities: std::collections::HashSet<Vec<u8>>,
    /// How many requests came with an envelope (anything but standard MDP 0.1 frames).
    pub enveloped: usize,
}

/// A ROUTER pretending to be a Majordomo 0.1 broker that does not carry request ids: it
/// answers `mmi.correlate` with 501 (as the Guide's brokers do) and echoes every request.
/// With `stale_copies`, before each reply it sends a second copy of the previous one to the
/// client that one went to, as the Guide's broker does when a slow worker replies twice.
/// What it saw comes back on the receiver once it is dropped.
pub fn foreign_broker(stale_copies: bool) -> (Peer, u16, std::sync::mpsc::Receiver<ForeignSeen>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (peer, port) = Peer::router(move |router, stop| {
        let mut identities = std::collections::HashSet::new();
        let mut enveloped = 0;
        let mut previous: Option<Frames> = None;
        while !stop.load(Ordering::SeqCst) {
            let Some(msg) = recv(&router) else { continue };
            // [identity]["" ]["MDPC01"][service][body…]
            if msg.len() < 5 || !msg[1].is_empty() || msg[2] != b"MDPC01" {
                enveloped += 1;
                continue;
            }
            let mut reply = msg.clone();
            if msg[3].starts_with(b"mmi.") {
                reply.truncate(4);
                reply.push(b"501".to_vec());
                router.send_multipart(&reply, 0).unwrap();
                continue;
            }
            identities.insert(msg[0].clone());
            if let Some(stale) = previous.take() {
                router.send_multipart(&stale, 0).unwrap();
            }
            router.send_multipart(&reply, 0).unwrap();
            if stale_copies {
                previous = Some(reply);
            }
        }
        let _ = tx.send(ForeignSeen {
            identities,
            enveloped,
        });
    });
    (peer, port, rx)
}

/// Receives one message, or `None` after the socket's receive timeout.
pub fn recv(socket: &zmq::Socket) -> Option<Frames> {
    socket.recv_multipart(0).ok()
}
