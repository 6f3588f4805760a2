//! The orchestrator: every shape in turn, each system in processes of its own on fresh
//! loopback ports, a warm-up then `--runs` short runs, the median of each figure, and one
//! Markdown table on stdout (progress on stderr).
//!
//! Shapes (workers or responders : requests in flight, one client connection): 1 : 1 (sync),
//! 10 : 100 and 100 : 100. The floor is a bare DEALER/ROUTER echo at 1 and at 100 in flight.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Flags;

const SHAPES: [(usize, usize); 3] = [(1, 1), (10, 100), (100, 100)];

/// Medians of one shape's runs.
#[derive(Clone, Copy, Default)]
struct Figures {
    req_per_s: f64,
    p50: f64,
    p99: f64,
}

/// What the table is made of, and how to run it.
struct Setup {
    pirate: PathBuf,
    me: PathBuf,
    runs: usize,
    duration: String,
    size: String,
    worker_args: Vec<String>,
    bench_args: Vec<String>,
}

/// Children killed (and reaped) when dropped, whatever happens.
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

impl Children {
    fn spawn(&mut self, mut cmd: Command) -> Result<u32, String> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let pid = child.id();
        self.0.push(child);
        Ok(pid)
    }
}

pub fn run(flags: &Flags) -> Result<(), String> {
    let words = |name: &str| -> Vec<String> {
        flags
            .text_or(name, "")
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let setup = Setup {
        pirate: PathBuf::from(flags.text("pirate")?),
        me: std::env::current_exe().map_err(|e| e.to_string())?,
        runs: flags.number("runs", 3)?.max(1),
        duration: flags.text_or("duration", "2s").to_string(),
        size: flags.text_or("size", "11").to_string(),
        worker_args: words("worker-args"),
        bench_args: words("bench-args"),
    };
    let nats_server = flags.text_or("nats-server", "nats-server");
    let nats_version = Command::new(nats_server)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if nats_version.is_none() {
        eprintln!(
            "{nats_server} is not installed: measuring pirate alone (apt-get install nats-server)"
        );
    }

    let raw_sync = raw(&setup, 1)?;
    let raw_window = raw(&setup, 100)?;
    let mut pirate = Vec::new();
    let mut broker_rss = None;
    for (workers, in_flight) in SHAPES {
        let (figures, rss) = pirate_shape(&setup, workers, in_flight)?;
        pirate.push(figures);
        broker_rss = Some(rss);
    }
    let mut nats = Vec::new();
    let mut nats_rss = None;
    if nats_version.is_some() {
        for (responders, in_flight) in SHAPES {
            let (figures, rss) = nats_shape(&setup, nats_server, responders, in_flight)?;
            nats.push(figures);
            nats_rss = Some(rss);
        }
    }

    println!(
        "{} — {}; medians of {} run(s) of {} per shape, {}-byte bodies; {}{}{}",
        text_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        machine(),
        setup.runs,
        setup.duration,
        setup.size,
        text_of(Command::new(&setup.pirate).arg("--version")),
        match flags.text_or("label", "") {
            "" => String::new(),
            label => format!(" ({label})"),
        },
        nats_version.map_or(String::new(), |v| format!(", {v}")),
    );
    println!();
    println!("| workers : in flight | raw DEALER/ROUTER echo | pirate req/s | pirate p50 / p99 (ms) | nats-server req/s | nats p50 / p99 (ms) | pirate / nats |");
    println!("|---|---|---|---|---|---|---|");
    for (i, (workers, in_flight)) in SHAPES.into_iter().enumerate() {
        let floor = if in_flight == 1 { raw_sync } else { raw_window };
        let p = pirate[i];
        let (n_rate, n_lat, ratio) = match nats.get(i) {
            Some(n) => (
                format!("{:.0}", n.req_per_s),
                format!("{:.3} / {:.3}", n.p50, n.p99),
                format!("**{:.2}×**", p.req_per_s / n.req_per_s),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        println!(
            "| {workers} : {in_flight}{} | {:.0} | {:.0} | {:.3} / {:.3} | {n_rate} | {n_lat} | {ratio} |",
            if in_flight == 1 { " (sync)" } else { "" },
            floor.req_per_s,
            p.req_per_s,
            p.p50,
            p.p99,
        );
    }
    println!();
    if let Some((rss, peak)) = broker_rss {
        print!("pirate broker RSS in the 100-worker run: {rss:.1} MB (peak {peak:.1} MB)");
    }
    if let Some((rss, peak)) = nats_rss {
        print!("; nats-server with 100 responders: {rss:.1} MB (peak {peak:.1} MB)");
    }
    println!();
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{what} never listened on port {port}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs a load generator: its JSON record (the last stdout line), which must say completed.
fn record(mut cmd: Command) -> Result<serde_json::Value, String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let record: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("{cmd:?} printed no record ({e}): {stdout}"))?;
    if !output.status.success() || record["verdict"] != "completed" {
        return Err(format!("{cmd:?} failed ({}): {record}", output.status));
    }
    Ok(record)
}

/// `runs` records of `cmd()` after one warm-up run, as medians.
fn medians(setup: &Setup, what: &str, cmd: impl Fn() -> Command) -> Result<Figures, String> {
    eprintln!("{what}: warm-up");
    record(cmd())?;
    let mut runs = Vec::new();
    for run in 1..=setup.runs {
        let r = record(cmd())?;
        let field = |f: &serde_json::Value| f.as_f64().unwrap_or(f64::NAN);
        let figures = Figures {
            req_per_s: field(&r["req_per_s"]),
            p50: field(&r["latency_ms"]["p50"]),
            p99: field(&r["latency_ms"]["p99"]),
        };
        eprintln!(
            "{what}: run {run}/{}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            setup.runs, figures.req_per_s, figures.p50, figures.p99
        );
        runs.push(figures);
    }
    let median = |pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Ok(Figures {
        req_per_s: median(|f| f.req_per_s),
        p50: median(|f| f.p50),
        p99: median(|f| f.p99),
    })
}

fn raw(setup: &Setup, in_flight: usize) -> Result<Figures, String> {
    let port = free_port()?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut children = Children::default();
    let mut server = Command::new(&setup.me);
    server.args(["raw-echo-server", "--bind", &endpoint]);
    children.spawn(server)?;
    wait_listening(port, "the raw echo server")?;
    let figures = medians(setup, &format!("raw echo, {in_flight} in flight"), || {
        let mut cmd = Command::new(&setup.me);
        cmd.args(["raw-echo-client", "--connect", &endpoint])
            .args(["--in-flight", &in_flight.to_string()])
            .args(["--duration", &setup.duration, "--size", &setup.size]);
        cmd
    })?;
    drop(children);
    Ok(figures)
}

/// `pirate bench` against `pirate broker` and `workers` `pirate worker --protocol mdp`
/// processes; also the broker's RSS (now, peak) in MB after the runs.
fn pirate_shape(
    setup: &Setup,
    workers: usize,
    in_flight: usize,
) -> Result<(Figures, (f64, f64)), String> {
    let port = free_port()?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut children = Children::default();
    let mut broker = Command::new(&setup.pirate);
    broker.args(["broker", "-q", "--bind", &endpoint]);
    let broker = children.spawn(broker)?;
    wait_listening(port, "pirate broker")?;
    for _ in 0..workers {
        let mut worker = Command::new(&setup.pirate);
        worker
            .args(["worker", "-q", "--protocol", "mdp", "--service", "echo"])
            .args(["--connect", &endpoint])
            .args(&setup.worker_args)
            .stdout(Stdio::null());
        children.spawn(worker)?;
    }
    // MDP has no READY acknowledgement: give the workers time to connect and register.
    thread::sleep(Duration::from_millis(500 + 20 * workers as u64));
    let what = format!("pirate, {workers} workers : {in_flight} in flight");
    let figures = medians(setup, &what, || {
        let mut cmd = Command::new(&setup.pirate);
        cmd.args([
            "bench",
            "--json",
            "--connect",
            &endpoint,
            "--service",
            "echo",
        ])
        .args(["--window", &in_flight.to_string()])
        .args(["--duration", &setup.duration, "--size", &setup.size])
        .args(&setup.bench_args);
        cmd
    })?;
    let rss = rss_mb(broker);
    drop(children);
    Ok((figures, rss))
}

/// The same shape through nats-server: `responders` responder processes, one requester.
fn nats_shape(
    setup: &Setup,
    nats_server: &str,
    responders: usize,
    in_flight: usize,
) -> Result<(Figures, (f64, f64)), String> {
    let port = free_port()?;
    let url = format!("nats://127.0.0.1:{port}");
    let mut children = Children::default();
    let mut server = Command::new(nats_server);
    server
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = children.spawn(server)?;
    wait_listening(port, "nats-server")?;
    for _ in 0..responders {
        let mut responder = Command::new(&setup.me);
        responder
            .args(["nats-responder", "--url", &url, "--subject", "echo"])
            .stdout(Stdio::piped());
        children.spawn(responder)?;
    }
    // Each responder says `ready` once subscribed.
    for child in &mut children.0[1..] {
        let stdout = child.stdout.take().ok_or("a responder has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err("a NATS responder did not start".into());
        }
    }
    let what = format!("nats-server, {responders} responders : {in_flight} in flight");
    let figures = medians(setup, &what, || {
        let mut cmd = Command::new(&setup.me);
        cmd.args(["nats-requester", "--url", &url, "--subject", "echo"])
            .args(["--in-flight", &in_flight.to_string()])
            .args(["--duration", &setup.duration, "--size", &setup.size]);
        cmd
    })?;
    let rss = rss_mb(server);
    drop(children);
    Ok((figures, rss))
}

/// A process's resident set now and at its peak (VmRSS, VmHWM), in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// The trimmed stdout of a command, or `?`.
fn text_of(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// `N cores, MODEL`.
fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}
