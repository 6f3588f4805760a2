//! `pirate chaos run`: starts a whole topology as child `pirate` processes on loopback, breaks
//! it on a seeded schedule (kill, freeze, restart), heals it, drains the clients, and hands the
//! recorded history to the [checker](pirate::chaos::checker) for a verdict.
//!
//! It lives in the binary because it runs the binary: it spawns `pirate` and writes its
//! command lines, so it must change whenever a flag does; the library keeps the pure checker
//! and the report's vocabulary ([`pirate::event::chaos`]).
//!
//! Every role is the same `pirate` binary in a process of its own (in its own process group,
//! so a terminal's Ctrl-C reaches only the runner, which then cleans up in order): deaths are
//! real deaths and restarts reopen real sockets. Children write JSON Lines; a reader thread per
//! child stamps each line with the time it arrived and appends it to the history.
//!
//! Phases: **fault** (clients send, the nemesis strikes on schedule, workers inject their own
//! faults), **heal** (no more faults: frozen processes are continued, dead ones restarted,
//! and workers restarted without fault flags), **drain** (clients finish what they hold),
//! **check**. A process that dies on its own during the fault phase (a worker's
//! `--crash-rate`) is restarted after the restart delay, as a supervisor would.
//!
//! One file per job: [`config`] (what is asked, the schedule), [`plan`] (the command lines),
//! [`topology`] (the running children), [`watchdog`] (cleanup after a SIGKILL), [`feed`]
//! (the clients' requests), [`nemesis`] (the strikes), [`supervise`] (restarts and healing);
//! [`run`] here takes a run through its phases.

mod config;
mod feed;
mod nemesis;
mod plan;
mod supervise;
mod topology;
mod watchdog;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pirate::chaos::checker::{self, CheckOptions};
use pirate::chaos::history::Record;
use pirate::chaos::net::{self, NetPlan};
use pirate::error::{Error, Result};
use pirate::event::chaos::{ChaosReport, Pattern};
use pirate::event::verdict::Judgement;
use pirate::event::{Event, Events};
use pirate::reactor::Stop;

pub use config::{ChaosConfig, ChaosSecurity, ProxyPlacement, DEFAULT_MAX_EXTENSION};
use feed::{FeedControl, Feeder};
use nemesis::Nemesis;
use plan::{check_port_range, plan, titanic_dir};
use supervise::{supervise, without_faults};
use topology::{Journal, Topology};
use watchdog::Watchdog;

use crate::chaos::net::Network;

/// Runs the whole experiment and returns its report. Live status goes out as events.
///
/// Ctrl-C or SIGTERM (raising `stop`) stops it early: the report then judges what was
/// observed so far and says `interrupted` (the binary exits 130).
pub fn run(config: &ChaosConfig, stop: &Stop, events: &mut Events) -> Result<ChaosReport> {
    let schedule = config.schedule();
    let kinds = config.nemesis_kinds();
    check_port_range(config)?;
    let logs = match &config.out {
        Some(dir) => {
            std::fs::create_dir_all(dir.join("logs"))?;
            Some(dir.join("logs"))
        }
        None => None,
    };
    let temporary: Vec<PathBuf> = match (config.pattern, &config.out) {
        (Pattern::Titanic, None) => vec![titanic_dir(config)],
        _ => Vec::new(),
    };
    let net_plan = match &config.net {
        Some(_) => Some(
            NetPlan::new(&crate::chaos::net::run_id(), &config.host_names())
                .map_err(Error::Usage)?,
        ),
        None => None,
    };
    let (procs, endpoint) = plan(config, net_plan.as_ref())?;
    if let Some(p) = &net_plan {
        let mut listed: Vec<&String> = procs.iter().map(|p| &p.name).collect();
        let mut hosts: Vec<&String> = p.hosts.iter().map(|h| &h.name).collect();
        listed.sort();
        hosts.sort();
        if listed != hosts {
            return Err(Error::Internal(format!(
                "the network plan's hosts {hosts:?} are not the processes {listed:?}"
            )));
        }
    }
    events.emit(Event::started(
        format!("chaos ({:?})", config.pattern).to_lowercase(),
        endpoint,
        Some(config.seed),
    ));
    for s in &schedule {
        events.emit(Event::NemesisPlanned {
            at_ms: s.at_ms,
            fault: s.fault.name().to_string(),
            target: s.target.clone(),
        });
    }
    let mut topo = Topology {
        exe: config.exe.clone(),
        procs,
        journal: Arc::new(Mutex::new(Journal::default())),
        origin: Instant::now(),
        run_seed: config.seed,
        logs,
        net: None,
        started: Vec::new(),
        cut: None,
        watchdog: Watchdog::start(&temporary)?,
    };
    if let Some(p) = net_plan {
        // Told to the watchdog before they exist: a SIGKILL from here on leaves nothing.
        for ns in p.namespaces() {
            topo.watchdog.namespace(&ns);
        }
        topo.net = Some(Network::start(p, events)?);
    }
    let mut nemesis = Nemesis {
        thaw_at: Vec::new(),
        injected: BTreeMap::new(),
        first: BTreeMap::new(),
        network: None,
    };
    // Servers first, then workers, then clients, each given a moment to bind.
    for i in 0..topo.procs.len() {
        if topo.procs[i].name.starts_with("client") {
            continue;
        }
        topo.spawn(i)?;
    }
    thread::sleep(config.heartbeat * 2);
    let feed = Arc::new(FeedControl::default());
    feed.extend.store(!kinds.is_empty(), Ordering::SeqCst);
    for i in 0..topo.procs.len() {
        if !topo.procs[i].name.starts_with("client") {
            continue;
        }
        topo.spawn(i)?;
        let client: usize = topo.procs[i].name["client-".len()..].parse().unwrap_or(i);
        if let Some(stdin) = topo.procs[i].stdin.take() {
            let feeder = Feeder {
                stdin,
                source: topo.procs[i].name.clone(),
                client,
                count: config.requests,
                ahead: config.window.max(1) as u64 + 1,
            };
            feeder.start(Arc::clone(&topo.journal), Arc::clone(&feed));
        }
    }
    // The nemesis's clock (the schedule's `at_ms`) starts now; the history's started before
    // the first child, and both run on.
    let phase_start = Instant::now();
    // Everything the run prints as it goes, the history and the page share the run's clock;
    // the plan counts from here.
    events.emit(Event::Log {
        level: pirate::event::Level::Info,
        message: format!(
            "fault phase starts at {:.1}s (the nemesis plan counts from here; every other time is \
             from the run's start, as in report.html)",
            topo.now_ms() / 1000.0
        ),
    });
    let mut next = 0usize;
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let mut interrupted = false;
    let interval = config.nemesis_interval;
    let mut next_coverage_strike = config.fault_phase;
    let mut coverage_strikes = 0u64;

    // Fault phase: for --duration, and on (up to --max-extension) while a nemesis kind has
    // not struck yet or no reply has come after it; over early once every client is done.
    let clients: Vec<usize> = (0..topo.procs.len())
        .filter(|&i| topo.procs[i].name.starts_with("client"))
        .collect();
    loop {
        let in_phase = phase_start.elapsed();
        if stop.requested() {
            interrupted = true;
            break;
        }
        if !clients.iter().any(|&i| topo.alive(i)) {
            break;
        }
        let elapsed = in_phase.as_millis() as u64;
        while next < schedule.len() && schedule[next].at_ms <= elapsed {
            nemesis.strike(&mut topo, config, &schedule[next], events)?;
            next += 1;
        }
        let cap = config.fault_phase + config.max_extension;
        // Past --duration: strike a kind the schedule did not get to inject, each interval.
        if in_phase >= next_coverage_strike && in_phase < cap {
            if let Some(kind) = nemesis.missing(&kinds) {
                let s = config.coverage_fault(coverage_strikes, kind, elapsed);
                coverage_strikes += 1;
                nemesis.strike(&mut topo, config, &s, events)?;
            }
            next_coverage_strike += interval.max(Duration::from_millis(100));
        }
        let last_reply = topo.journal.lock().expect("journal lock").last_reply_ms;
        let covered = nemesis.covered(&kinds, last_reply);
        feed.extend.store(!covered, Ordering::SeqCst);
        if in_phase >= config.fault_phase && (covered || in_phase >= cap) {
            break;
        }
        nemesis.thaw(&mut topo, false);
        nemesis.heal_network(&mut topo, events, false)?;
        topo.print_started(events);
        supervise(&mut topo, config, &mut nemesis.injected, events, false)?;
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            events.emit(Event::ChaosStatus {
                elapsed_ms: elapsed,
                phase: "fault".into(),
                processes: topo.status(false),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    let fault_phase_ms = phase_start.elapsed().as_millis() as u64;
    feed.extend.store(false, Ordering::SeqCst);

    // Heal: no more faults. Thaw, restart whatever is down, and replace faulty workers.
    // Clients with a request count finish it; the others stop taking new requests.
    if config.requests.is_none() || interrupted {
        feed.stop.store(true, Ordering::SeqCst);
    }
    nemesis.thaw(&mut topo, true);
    nemesis.heal_network(&mut topo, events, true)?;
    if !interrupted {
        for i in 0..topo.procs.len() {
            let name = topo.procs[i].name.clone();
            let is_worker = name.starts_with("worker")
                || matches!(name.as_str(), "server" | "primary" | "backup");
            let faults = match &config.proxy {
                Some((_, faults)) if name == "proxy" => faults.as_slice(),
                _ if is_worker => config.worker_faults.as_slice(),
                _ => &[],
            };
            if !faults.is_empty() {
                // Same endpoints, without the fault flags.
                let args = without_faults(&topo.procs[i].args, faults);
                topo.kill(i);
                topo.procs[i].args = args;
                topo.procs[i].restart_at = Some(Instant::now());
                // Down already (the nemesis, its own crash): that is why it comes back.
                topo.procs[i].down_cause.get_or_insert("heal");
                topo.note("heal", &name);
            }
        }
        supervise(&mut topo, config, &mut nemesis.injected, events, true)?;
    }

    // Drain: wait for every client to finish what it holds.
    let drain_deadline = Instant::now() + config.drain_timeout;
    loop {
        let running = clients.iter().filter(|&&i| topo.alive(i)).count();
        if running == 0 {
            break;
        }
        if stop.requested() || Instant::now() >= drain_deadline {
            // Interrupt stragglers: what they still hold shows up as lost (or, when the run
            // itself was interrupted, as unfinished).
            for &i in &clients {
                topo.signal(i, libc::SIGINT);
            }
            let grace = Instant::now() + Duration::from_secs(2);
            while clients.iter().any(|&i| topo.alive(i)) && Instant::now() < grace {
                thread::sleep(Duration::from_millis(20));
            }
            interrupted |= stop.requested();
            break;
        }
        supervise(&mut topo, config, &mut nemesis.injected, events, true)?;
        topo.print_started(events);
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            events.emit(Event::ChaosStatus {
                elapsed_ms: phase_start.elapsed().as_millis() as u64,
                phase: "drain".into(),
                processes: topo.status(false),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    events.emit(Event::ChaosStatus {
        elapsed_ms: phase_start.elapsed().as_millis() as u64,
        phase: "check".into(),
        processes: topo.status(false),
    });

    // Stop the servers politely so their summaries land in the history, then kill.
    for i in 0..topo.procs.len() {
        topo.signal(i, libc::SIGINT);
    }
    let grace = Instant::now() + Duration::from_secs(2);
    while (0..topo.procs.len()).any(|i| topo.alive(i)) && Instant::now() < grace {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(50)); // their summaries reach the journal
                                              // The last table, with the brokers' and queues' own summary counts: the view keeps it.
    events.emit(Event::ChaosStatus {
        elapsed_ms: phase_start.elapsed().as_millis() as u64,
        phase: "end".into(),
        processes: topo.status(true),
    });
    for i in 0..topo.procs.len() {
        topo.kill(i);
    }
    if let Some(network) = &mut topo.net {
        network.teardown(events);
        topo.watchdog.namespaces_removed();
    }
    thread::sleep(Duration::from_millis(50)); // let reader threads reach end of file

    let records = std::mem::take(&mut topo.journal.lock().expect("journal lock").records);
    let findings = checker::check(
        &records,
        &CheckOptions {
            strict: config.strict,
            required_faults: config.required_faults(),
            interrupted,
        },
    );
    let mut report = ChaosReport {
        seed: config.seed,
        pattern: config.pattern,
        verdict: findings.verdict,
        reason: findings.reason.clone(),
        valid: findings.verdict == Judgement::Valid,
        interrupted,
        fault_phase_ms,
        schedule,
        injected: nemesis.injected,
        findings,
        network: match &config.net {
            Some(_) => net::network_faults(&records, config.heartbeat.as_secs_f64() * 3000.0),
            None => Vec::new(),
        },
        out: config.out.as_ref().map(|p| p.display().to_string()),
        run: config.record.clone(),
    };
    for dir in &temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(dir) = &config.out {
        write_out(dir, &records, &report)?;
        report.out = Some(dir.display().to_string());
    }
    Ok(report)
}

fn write_out(dir: &std::path::Path, records: &[Record], report: &ChaosReport) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut history = String::new();
    for r in records {
        history.push_str(&serde_json::to_string(r).map_err(|e| Error::Internal(e.to_string()))?);
        history.push('\n');
    }
    std::fs::write(dir.join("history.jsonl"), history)?;
    let results =
        serde_json::to_string_pretty(report).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(dir.join("results.json"), results + "\n")?;
    // The page from the files just written, read back as `pirate chaos report` reads them.
    crate::chaos::report::write(dir).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
