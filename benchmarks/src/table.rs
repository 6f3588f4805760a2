//! The orchestrator: every shape in turn, each system in processes of its own on fresh
//! loopback ports, a warm-up then `--runs` short runs, the median of each figure, and one
//! Markdown table on stdout (progress on stderr).
//!
//! Shapes (workers or responders : requests in flight, one client connection): 1 : 1 (sync),
//! 10 : 100 and 100 : 100. The floor is a bare DEALER/ROUTER echo at 1 and at 100 in flight.
//!
//! Then two more tables:
//! - flatness: pirate's 10 : 100 again beside 1,000 idle workers and beside 10,000 idle
//!   client connections (`idle-peers`), as a ratio to the run without;
//! - the broker alone: `mdp_load` (examples/mdp_load.rs, a foreign MDP load of plain DEALER
//!   workers and clients in one process) against `pirate broker` and against `mdp_load
//!   floor`, the least a broker on libzmq can do, and `nats-load` (the same shape of load,
//!   async-nats in one process) against nats-server, at 10 × 100 and 100 × 100.

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
    /// CPU time (user + system) of every process of the topology and of the load generator,
    /// per request answered, in µs: the cost of a request, whatever the machine's speed.
    cpu_us: f64,
    /// Context switches (voluntary and not) of every thread of them, per request: the
    /// thread wake-ups a request costs.
    switches: f64,
}

/// CPU seconds and context switches, summed.
#[derive(Clone, Copy, Default)]
struct Usage {
    cpu: f64,
    switches: f64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, before: Usage) -> Usage {
        Usage {
            cpu: self.cpu - before.cpu,
            switches: self.switches - before.switches,
        }
    }
}

/// What the processes `pids` have used so far (/proc: utime and stime in USER_HZ = 100
/// ticks per second, `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of every
/// thread), plus what this process's reaped children used (getrusage RUSAGE_CHILDREN: the
/// load generators that ran and exited).
fn usage(pids: &[u32]) -> Usage {
    let mut total = Usage::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        total.cpu += (tick(11) + tick(12)) / 100.0;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            total.switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .sum::<f64>();
        }
    }
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } == 0 {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        total.cpu += secs(ru.ru_utime) + secs(ru.ru_stime);
        total.switches += (ru.ru_nvcsw + ru.ru_nivcsw) as f64;
    }
    total
}

/// What the table is made of, and how to run it.
struct Setup {
    pirate: PathBuf,
    me: PathBuf,
    /// `mdp_load` (pirate's examples/mdp_load.rs), if given.
    mdp_load: Option<PathBuf>,
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
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }

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
        mdp_load: match flags.text_or("mdp-load", "") {
            "" => None,
            path => Some(PathBuf::from(path)),
        },
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

    let cpu_before = cpu_times();
    let raw_sync = raw(&setup, 1)?;
    let raw_window = raw(&setup, 100)?;
    // Each shape's pirate and nats-server topologies are up at once, and their runs take
    // turns, so that a machine whose speed drifts (a shared VM) moves both alike.
    let mut pirate = Vec::new();
    let mut broker_rss = None;
    let mut nats = Vec::new();
    let mut nats_rss = None;
    for (workers, in_flight) in SHAPES {
        let mut topologies = vec![pirate_topology(&setup, workers, in_flight, Idle::default())?];
        if nats_version.is_some() {
            topologies.push(nats_topology(&setup, nats_server, workers, in_flight)?);
        }
        let figures = side_by_side(&setup, &topologies)?;
        pirate.push(figures[0]);
        broker_rss = Some(rss_mb(topologies[0].watch));
        if let Some(n) = figures.get(1) {
            nats.push(*n);
            nats_rss = Some(rss_mb(topologies[1].watch));
        }
    }
    // Flatness: the 10 : 100 run beside nothing, and beside each kind of idle peers.
    let mut topologies = vec![pirate_topology(&setup, 10, 100, Idle::default())?];
    for idle in FLATNESS {
        topologies.push(pirate_topology(&setup, 10, 100, idle)?);
    }
    let figures = side_by_side(&setup, &topologies)?;
    let flat: Vec<(String, Figures, f64)> = topologies
        .iter()
        .zip(&figures)
        .map(|(t, f)| (t.beside.clone(), *f, rss_mb(t.watch).0))
        .collect();
    drop(topologies);
    let mut alone = Vec::new();
    if let Some(load) = &setup.mdp_load {
        for (workers, in_flight) in ALONE {
            let nats = nats_version.as_ref().map(|_| nats_server);
            let [pirate, floor, nats] = broker_alone(&setup, load, nats, workers, in_flight)?;
            alone.push((workers, in_flight, pirate, floor, nats));
        }
    }

    let steal = steal_share(cpu_before, cpu_times());
    println!(
        "{} — {}; medians of {} run(s) of {} per shape, {}-byte bodies; {}{}{}; CPU time stolen by the host during the run: {steal}",
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
    println!("| workers : in flight | raw DEALER/ROUTER echo | pirate req/s | pirate p50 / p99 (ms) | pirate CPU µs · switches per req | nats-server req/s | nats p50 / p99 (ms) | nats CPU µs · switches per req | pirate / nats |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let cost = |f: &Figures| format!("{:.1} · {:.2}", f.cpu_us, f.switches);
    for (i, (workers, in_flight)) in SHAPES.into_iter().enumerate() {
        let floor = if in_flight == 1 { raw_sync } else { raw_window };
        let p = pirate[i];
        let (n_rate, n_lat, n_cost, ratio) = match nats.get(i) {
            Some(n) => (
                format!("{:.0}", n.req_per_s),
                format!("{:.3} / {:.3}", n.p50, n.p99),
                cost(n),
                format!("**{:.2}×**", p.req_per_s / n.req_per_s),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        println!(
            "| {workers} : {in_flight}{} | {:.0} | {:.0} | {:.3} / {:.3} | {} | {n_rate} | {n_lat} | {n_cost} | {ratio} |",
            if in_flight == 1 { " (sync)" } else { "" },
            floor.req_per_s,
            p.req_per_s,
            p.p50,
            p.p99,
            cost(&p),
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
    println!();
    println!("| pirate, 10 workers : 100 in flight, beside | req/s | p50 / p99 (ms) | CPU µs · switches per req | req/s ratio to nothing | cost ratio (CPU per req, nothing / this) | broker RSS (MB) |");
    println!("|---|---|---|---|---|---|---|");
    let base = flat[0].1;
    for (beside, f, rss) in &flat {
        println!(
            "| {beside} | {:.0} | {:.3} / {:.3} | {} | **{:.2}** | **{:.2}** | {rss:.1} |",
            f.req_per_s,
            f.p50,
            f.p99,
            cost(f),
            f.req_per_s / base.req_per_s,
            base.cpu_us / f.cpu_us,
        );
    }
    if !alone.is_empty() {
        println!();
        println!("| broker alone, workers × in flight | pirate broker (mdp_load) req/s | floor broker (mdp_load) req/s | nats-server (nats-load) req/s | pirate / floor | pirate / nats |");
        println!("|---|---|---|---|---|---|");
        for (workers, in_flight, pirate, floor, nats) in &alone {
            let (n, ratio) = if nats.is_nan() {
                ("—".to_string(), "—".to_string())
            } else {
                (format!("{nats:.0}"), format!("**{:.2}×**", pirate / nats))
            };
            println!(
                "| {workers} × {in_flight} | {pirate:.0} | {floor:.0} | {n} | **{:.2}×** | {ratio} |",
                pirate / floor
            );
        }
    }
    Ok(())
}

/// Idle peers beside the 10 : 100 run (see [`crate::idle`]).
#[derive(Clone, Copy, Default)]
struct Idle {
    workers: usize,
    clients: usize,
}

impl Idle {
    fn describe(&self) -> String {
        match (self.workers, self.clients) {
            (0, 0) => "nothing".into(),
            (w, 0) => format!("{w} idle workers"),
            (0, c) => format!("{c} idle client connections"),
            (w, c) => format!("{w} idle workers and {c} idle clients"),
        }
    }
}

const FLATNESS: [Idle; 2] = [
    Idle {
        workers: 1000,
        clients: 0,
    },
    Idle {
        workers: 0,
        clients: 10_000,
    },
];

/// Idle peers per `idle-peers` process: 2 descriptors each stay well under a common 20,000
/// descriptor limit.
const PEERS_PER_PROCESS: usize = 4000;

const ALONE: [(usize, usize); 2] = [(10, 100), (100, 100)];

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

/// A system under load, up until dropped: its processes, and the load generator to run.
struct Topology {
    /// Every process of it, for [`usage`].
    pids: Vec<u32>,
    what: String,
    /// What runs beside it (flatness rows): "nothing", or its idle peers.
    beside: String,
    /// Kept for its `Drop`, which kills the processes.
    #[allow(dead_code)]
    children: Children,
    /// The process whose RSS is reported (the broker or nats-server).
    watch: u32,
    run: Box<dyn Fn() -> Command>,
}

fn figures_of(record: &serde_json::Value, used: Usage) -> Figures {
    let field = |f: &serde_json::Value| f.as_f64().unwrap_or(f64::NAN);
    let answered = field(&record["answered"]).max(1.0);
    Figures {
        req_per_s: field(&record["req_per_s"]),
        p50: field(&record["latency_ms"]["p50"]),
        p99: field(&record["latency_ms"]["p99"]),
        cpu_us: used.cpu * 1e6 / answered,
        switches: used.switches / answered,
    }
}

/// The median of each figure.
fn median(runs: &[Figures]) -> Figures {
    let of = |pick: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Figures {
        req_per_s: of(|f| f.req_per_s),
        p50: of(|f| f.p50),
        p99: of(|f| f.p99),
        cpu_us: of(|f| f.cpu_us),
        switches: of(|f| f.switches),
    }
}

/// One warm-up run of each topology, then `runs` rounds in which each runs once in turn;
/// the medians, in the topologies' order.
fn side_by_side(setup: &Setup, topologies: &[Topology]) -> Result<Vec<Figures>, String> {
    for t in topologies {
        eprintln!("{}: warm-up", t.what);
        record((t.run)())?;
    }
    let mut runs = vec![Vec::new(); topologies.len()];
    for run in 1..=setup.runs {
        for (t, figures) in topologies.iter().zip(&mut runs) {
            let before = usage(&t.pids);
            let record = record((t.run)())?;
            let f = figures_of(&record, usage(&t.pids) - before);
            eprintln!(
                "{}: run {run}/{}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {:.1} µs CPU and {:.2} context switches per request",
                t.what, setup.runs, f.req_per_s, f.p50, f.p99, f.cpu_us, f.switches
            );
            figures.push(f);
        }
    }
    Ok(runs.iter().map(|r| median(r)).collect())
}

fn raw(setup: &Setup, in_flight: usize) -> Result<Figures, String> {
    let port = free_port()?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut children = Children::default();
    let mut server = Command::new(&setup.me);
    server.args(["raw-echo-server", "--bind", &endpoint]);
    children.spawn(server)?;
    wait_listening(port, "the raw echo server")?;
    let (me, duration, size) = (setup.me.clone(), setup.duration.clone(), setup.size.clone());
    let topology = Topology {
        pids: children.pids(),
        what: format!("raw echo, {in_flight} in flight"),
        beside: String::new(),
        watch: 0,
        children,
        run: Box::new(move || {
            let mut cmd = Command::new(&me);
            cmd.args(["raw-echo-client", "--connect", &endpoint])
                .args(["--in-flight", &in_flight.to_string()])
                .args(["--duration", &duration, "--size", &size]);
            cmd
        }),
    };
    Ok(side_by_side(setup, &[topology])?[0])
}

/// The brokers of the broker-alone table.
#[derive(Clone, Copy, PartialEq)]
enum Alone {
    Pirate,
    Floor,
    Nats,
}

/// `mdp_load` against `pirate broker` and against `mdp_load floor`, and (when installed)
/// `nats-load` against nats-server, a fresh broker for each run, taking turns: the medians
/// of `runs` runs of 100,000 requests each, after a warm-up, in req/s, `[pirate, floor,
/// nats]` (nats NaN when not installed).
fn broker_alone(
    setup: &Setup,
    load: &PathBuf,
    nats_server: Option<&str>,
    workers: usize,
    in_flight: usize,
) -> Result<[f64; 3], String> {
    // A fresh broker each run: the floor never forgets a worker, so the last run's would
    // swallow requests.
    let once = |kind: Alone| -> Result<f64, String> {
        let port = free_port()?;
        let mut children = Children::default();
        let (mut broker, mut driver) = match kind {
            Alone::Nats => {
                let url = format!("nats://127.0.0.1:{port}");
                let mut server = Command::new(nats_server.unwrap_or("nats-server"));
                server
                    .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                    .stderr(Stdio::null());
                let mut driver = Command::new(&setup.me);
                driver
                    .args(["nats-load", "--url", &url])
                    .args(["--workers", &workers.to_string()])
                    .args(["--in-flight", &in_flight.to_string(), "--count", "100000"]);
                (server, driver)
            }
            _ => {
                let endpoint = format!("tcp://127.0.0.1:{port}");
                let mut broker = if kind == Alone::Floor {
                    let mut cmd = Command::new(load);
                    cmd.args(["floor", &endpoint]);
                    cmd
                } else {
                    let mut cmd = Command::new(&setup.pirate);
                    cmd.args(["broker", "-q", "--bind", &endpoint]);
                    cmd
                };
                broker.stderr(Stdio::null());
                let mut driver = Command::new(load);
                driver.args([&endpoint, &workers.to_string(), &in_flight.to_string(), "100000"]);
                (broker, driver)
            }
        };
        broker.stdout(Stdio::null());
        children.spawn(broker)?;
        wait_listening(port, "the broker")?;
        let output = driver
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run the load: {e}"))?;
        drop(children);
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("rps="))
            .and_then(|r| r.parse().ok())
            .filter(|_| output.status.success())
            .ok_or(format!(
                "the load failed ({}): {text}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
    };
    let what = |kind: Alone| {
        let broker = match kind {
            Alone::Pirate => "pirate",
            Alone::Floor => "floor",
            Alone::Nats => "nats-server",
        };
        format!("broker alone ({broker}), {workers} × {in_flight}")
    };
    let mut kinds = vec![Alone::Pirate, Alone::Floor];
    if nats_server.is_some() {
        kinds.push(Alone::Nats);
    }
    let mut runs = [Vec::new(), Vec::new(), Vec::new()];
    for &kind in &kinds {
        eprintln!("{}: warm-up", what(kind));
        once(kind)?;
    }
    for run in 1..=setup.runs {
        for (i, &kind) in kinds.iter().enumerate() {
            let rps = once(kind)?;
            eprintln!("{}: run {run}/{}: {rps:.0} req/s", what(kind), setup.runs);
            runs[i].push(rps);
        }
    }
    Ok(runs.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
    }))
}

/// `pirate bench` against `pirate broker` and `workers` `pirate worker --protocol mdp`
/// processes (and `idle` peers beside them).
fn pirate_topology(
    setup: &Setup,
    workers: usize,
    in_flight: usize,
    idle: Idle,
) -> Result<Topology, String> {
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
    let mut what = format!("pirate, {workers} workers : {in_flight} in flight");
    // The idle peers stand for other machines: their CPU is not this topology's cost.
    let pids = children.pids();
    if idle.workers + idle.clients > 0 {
        // Each libzmq socket holds two descriptors (its connection and its mailbox), so the
        // peers are spread over processes of at most PEERS_PER_PROCESS sockets.
        let mut left = (idle.workers, idle.clients);
        while left.0 + left.1 > 0 {
            let workers = left.0.min(PEERS_PER_PROCESS);
            let clients = left.1.min(PEERS_PER_PROCESS - workers);
            left = (left.0 - workers, left.1 - clients);
            let mut peers = Command::new(&setup.me);
            peers
                .args(["idle-peers", "--connect", &endpoint])
                .args(["--workers", &workers.to_string()])
                .args(["--clients", &clients.to_string()])
                .stdout(Stdio::piped());
            children.spawn(peers)?;
            let child = children.0.last_mut().ok_or("no idle peers")?;
            let stdout = child.stdout.take().ok_or("the idle peers have no stdout")?;
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if line.trim() != "ready" {
                return Err(format!("{} never connected", idle.describe()));
            }
        }
        what = format!("{what}, beside {}", idle.describe());
    }
    let (pirate, duration, size) = (
        setup.pirate.clone(),
        setup.duration.clone(),
        setup.size.clone(),
    );
    let bench_args = setup.bench_args.clone();
    Ok(Topology {
        pids,
        what,
        beside: idle.describe(),
        children,
        watch: broker,
        run: Box::new(move || {
            let mut cmd = Command::new(&pirate);
            cmd.args([
                "bench",
                "--json",
                "--connect",
                &endpoint,
                "--service",
                "echo",
            ])
            .args(["--window", &in_flight.to_string()])
            .args(["--duration", &duration, "--size", &size])
            .args(&bench_args);
            cmd
        }),
    })
}

/// The same shape through nats-server: `responders` responder processes, one requester.
fn nats_topology(
    setup: &Setup,
    nats_server: &str,
    responders: usize,
    in_flight: usize,
) -> Result<Topology, String> {
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
    let (me, duration, size) = (setup.me.clone(), setup.duration.clone(), setup.size.clone());
    Ok(Topology {
        pids: children.pids(),
        what: format!("nats-server, {responders} responders : {in_flight} in flight"),
        beside: String::new(),
        children,
        watch: server,
        run: Box::new(move || {
            let mut cmd = Command::new(&me);
            cmd.args(["nats-requester", "--url", &url, "--subject", "echo"])
                .args(["--in-flight", &in_flight.to_string()])
                .args(["--duration", &duration, "--size", &size]);
            cmd
        }),
    })
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

/// The machine's CPU time so far, as the `cpu` line of /proc/stat: (steal, total) ticks.
fn cpu_times() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: f64 = fields.iter().take(8).sum();
    Some((*fields.get(7)?, total))
}

/// The share of CPU time a hypervisor took for others between two [`cpu_times`]: how much
/// the host disturbed the run.
fn steal_share(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> String {
    match (before, after) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
            format!("{:.1}%", 100.0 * (s1 - s0) / (t1 - t0))
        }
        _ => "unknown".into(),
    }
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
