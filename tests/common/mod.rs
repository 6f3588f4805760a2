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
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!(
                    "{}: did not exit in time\n--- stdout\n{}--- stderr\n{}",
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
        let status = self.wait();
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
    let mut proc = spawn_with_stdin("pirate", args, stdin.is_some());
    if let Some(text) = stdin {
        proc.write_stdin(text);
        proc.close_stdin();
    }
    let code = proc.code();
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
    server.wait_for("the server to bind", |o, e| {
        e.contains("server on") || o.contains(r#""event":"started""#)
    });
    (server, port)
}

/// A queue on two free ports (frontend, backend) with the given extra flags, waited for.
pub fn start_queue(args: &[&str]) -> (Proc, u16, u16) {
    let (front, back) = (free_port(), free_port());
    let (f, b) = (endpoint(front), endpoint(back));
    let mut all = vec!["queue", "--frontend", f.as_str(), "--backend", b.as_str()];
    all.extend_from_slice(args);
    let queue = spawn("queue", &all);
    queue.wait_for("the queue to bind", |o, e| {
        e.contains("queue (") || o.contains(r#""event":"started""#)
    });
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
    broker.wait_for("the broker to bind", |o, e| {
        e.contains("broker on") || o.contains(r#""event":"started""#)
    });
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

/// Starts one Binary Star server node (`primary`: `--primary`, else `--backup`) with the
/// given state heartbeat and extra flags, and waits until it is bound.
pub fn start_bstar_node(
    ports: &BstarPorts,
    primary: bool,
    heartbeat: &str,
    extra: &[&str],
) -> Proc {
    let (name, bind, state, peer) = if primary {
        (
            "primary",
            &ports.primary,
            &ports.primary_state,
            &ports.backup_state,
        )
    } else {
        (
            "backup",
            &ports.backup,
            &ports.backup_state,
            &ports.primary_state,
        )
    };
    let mut args = vec![
        "server",
        if primary { "--primary" } else { "--backup" },
        "--bind",
        bind.as_str(),
        "--state-bind",
        state.as_str(),
        "--peer-state",
        peer.as_str(),
        "--state-heartbeat",
        heartbeat,
    ];
    args.extend_from_slice(extra);
    let node = spawn(name, &args);
    node.wait_for("the node to bind", |o, e| {
        e.contains("server on") || o.contains(r#""event":"started""#)
    });
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
    server.wait_for("the Freelance server to bind", |o, e| {
        e.contains("server on") || o.contains(r#""event":"started""#)
    });
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

/// Receives one message, or `None` after the socket's receive timeout.
pub fn recv(socket: &zmq::Socket) -> Option<Frames> {
    socket.recv_multipart(0).ok()
}
