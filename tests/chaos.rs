//! `pirate chaos` end to end: the built-in demonstration, verdicts a CI job can trust (valid
//! and invalid), replay by seed, external brokers and workers, and clean-up of every child.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Pids of live processes whose environment carries `marker`: children inherit the
/// environment, so this finds every process a chaos run left behind, whatever its parent.
fn processes_marked(marker: &str) -> Vec<u32> {
    let needle = format!("PIRATE_TEST_MARK={marker}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            let alive = std::fs::read_to_string(entry.path().join("stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if alive && env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// A live process of a marked run: its pid, parent, state (`R`, `S`, `T` stopped, …) and
/// command line.
#[derive(Clone, Debug)]
struct Seen {
    pid: u32,
    ppid: u32,
    state: char,
    argv: Vec<String>,
}

/// Every live (not zombie) process carrying `marker`, with its state and command line.
fn marked_processes(marker: &str) -> Vec<Seen> {
    processes_marked(marker)
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) S ppid …": comm may hold spaces, so split after its last ')'.
            let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Seen {
                pid,
                ppid,
                state,
                argv,
            })
        })
        .filter(|p| p.state != 'Z')
        .collect()
}

/// The complete JSON lines of a stdout still being written.
fn json_lines_so_far(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `base` made unique to this test process: other checkouts may run these tests at once.
fn unique(base: &str) -> String {
    format!("{base}-{}", std::process::id())
}

/// Runs `pirate ARGS` marked (`marker` and this process's pid), to completion; returns
/// (code, stdout, stderr) and checks that nothing it started is still running.
fn chaos(marker: &str, args: &[&str]) -> (i32, String, String) {
    let marker = &unique(marker);
    let mut cmd = pirate(args);
    cmd.env("PIRATE_TEST_MARK", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = cmd.output().expect("cannot run pirate");
    let code = output.status.code().expect("chaos died by a signal");
    // Its children were killed before it exited; the kernel may take a moment to reap them.
    wait_until("every process of the run to be gone", || {
        processes_marked(marker).is_empty()
    });
    (
        code,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every request sent was answered, and at least `min` were sent: with a nemesis, clients go
/// on past `--requests` until every fault kind has struck and been recovered from.
fn answered_all(s: &serde_json::Value, min: u64) {
    let f = &s["findings"];
    let sent = f["requests"].as_u64().unwrap();
    assert!(sent >= min, "{min} requests at least: {s}");
    assert_eq!(f["replied"].as_u64(), Some(sent), "{s}");
}

#[test]
fn the_demonstration_is_valid_with_a_worker_kill_and_a_broker_restart() {
    let dir = out_dir("chaos-demo");
    let (code, out, err) = chaos(
        "demo",
        &[
            "chaos",
            "--json",
            "--seed",
            "42",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    assert!(s["injected"]["kill"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["injected"]["restart"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["findings"]["replied"].as_u64().unwrap() > 50, "{s}");
    assert_eq!(s["findings"]["lost"].as_array().unwrap().len(), 0);
    assert!(err.contains("VALID"), "{err}");
    // The evidence is on disk.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "valid");
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.lines().count() > 100);
    assert!(history.contains(r#""action":"kill""#));
    assert!(dir.join("logs/broker.log").exists());
    // One time base: every strike the run printed is at the time the history (and so the
    // page) has it.
    let strikes: Vec<serde_json::Value> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["source"] == "nemesis")
        .collect();
    let printed: Vec<serde_json::Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["event"] == "nemesis")
        .collect();
    assert!(!printed.is_empty(), "{out}");
    for p in &printed {
        let at = p["at_ms"].as_f64().unwrap();
        assert!(
            strikes.iter().any(|r| r["event"]["action"] == p["action"]
                && r["event"]["target"] == p["target"]
                && (r["t_ms"].as_f64().unwrap() - at).abs() <= 1.0),
            "printed {p}, but the history has {strikes:?}"
        );
    }
}

#[test]
fn a_pattern_that_really_loses_requests_is_invalid_and_names_them() {
    // Simple Pirate cannot survive a queue restart: its REQ workers said READY once, to the
    // old queue. Clients that never give up are cut off at the drain deadline, holding
    // requests that were accepted and never answered.
    let (code, out, err) = chaos(
        "lossy",
        &[
            "chaos",
            "run",
            "--json",
            "--pattern",
            "simple",
            "--workers",
            "2",
            "--clients",
            "1",
            "--nemesis",
            "restart",
            "--nemesis-interval",
            "1s",
            "--duration",
            "2s",
            "--drain-timeout",
            "1s",
            "--timeout",
            "200ms",
            "--retries",
            "1000",
            "--seed",
            "4",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "invalid");
    let lost = s["findings"]["lost"].as_array().unwrap();
    assert!(!lost.is_empty(), "{s}");
    let name = lost[0].as_str().unwrap();
    assert!(name.starts_with("c1-"), "{name}");
    assert!(err.contains("INVALID"), "{err}");
    assert!(err.contains(name), "the lost request is named: {err}");
}

#[test]
fn the_same_seed_prints_the_same_schedule() {
    let planned = |seed: &str| -> Vec<serde_json::Value> {
        let (code, out, err) = chaos(
            &format!("seed-{seed}-{}", std::process::id()),
            &[
                "chaos",
                "run",
                "--json",
                "--duration",
                "2s",
                "--nemesis-interval",
                "400ms",
                "--requests",
                "20",
                "--seed",
                seed,
            ],
        );
        assert_eq!(code, 0, "{err}");
        json_lines(&out)
            .into_iter()
            .filter(|l| l["event"] == "nemesis_planned")
            // When the line was written is not part of the schedule.
            .map(|mut l| {
                l.as_object_mut().unwrap().remove("ts");
                l
            })
            .collect()
    };
    let a = planned("21");
    assert!(a.len() >= 3, "{a:?}");
    assert_eq!(a, planned("21"));
    assert_ne!(a, planned("22"));
}

#[test]
fn paranoid_and_lazy_patterns_survive_their_nemesis() {
    for pattern in ["paranoid", "lazy"] {
        let (code, out, err) = chaos(
            &format!("pattern-{pattern}"),
            &[
                "chaos",
                "run",
                "--json",
                "--pattern",
                pattern,
                "--duration",
                "3s",
                "--nemesis-interval",
                "1s",
                "--requests",
                "200",
                // 200 requests take at least 2 s, so the nemesis strikes (seed 8: at 0.6 s)
                // before the clients are done however fast the machine.
                "--work",
                "10ms",
                "--seed",
                "8",
            ],
        );
        assert_eq!(code, 0, "{pattern}: {err}");
        let s = summary(&out);
        assert_eq!(s["verdict"], "valid", "{pattern}: {s}");
        assert!(
            s["injected"]["kill"].as_u64().unwrap_or(0) >= 1,
            "{pattern}: {s}"
        );
        assert_eq!(s["pattern"], pattern);
        answered_all(&s, 400);
    }
}

#[test]
fn readme_ci_example_your_broker_under_kill_and_freeze_is_valid() {
    // README: pirate chaos run --connect tcp://127.0.0.1:5555 --nemesis kill,freeze --requests 500
    // (with a shorter nemesis interval and heartbeat than the defaults).
    let (mut broker, port) = start_broker(&["--heartbeat", "100ms"]);
    let connect = endpoint(port);
    let (code, out, err) = chaos(
        "readme-connect",
        &[
            "chaos",
            "run",
            "--json",
            "--connect",
            &connect,
            "--nemesis",
            "kill,freeze",
            "--requests",
            "500",
            "--nemesis-interval",
            "700ms",
            "--nemesis-freeze",
            "500ms",
            "--heartbeat",
            "100ms",
            "--seed",
            "5",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    answered_all(&s, 1000);
    for kind in ["kill", "freeze"] {
        assert!(
            s["injected"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind}: {s}"
        );
        let c = &s["findings"]["coverage"][kind];
        assert!(c["recovered"].as_u64().unwrap() >= 1, "{kind}: {s}");
    }
    assert!(
        s["injected"].get("restart").is_none(),
        "an external broker is not ours to restart"
    );
    assert!(err.contains("coverage: freeze"), "{err}");
    broker.signal(libc::SIGINT);
    assert_eq!(broker.code(), 130);
}

#[test]
fn readme_ci_example_your_worker_is_killed_and_frozen_with_its_shell() {
    // README: pirate chaos run --worker-cmd './my-worker --broker {endpoint} --service {service}'
    // --requests 500. The command is not `exec`ed, so `sh` stays the parent of the worker:
    // the nemesis must kill and freeze both, and no worker may outlive its kill or the run.
    let worker = format!(
        "{} worker --json --protocol mdp --service {{service}} --connect {{endpoint}} \
         --heartbeat 100ms --reconnect 100ms; true",
        env!("CARGO_BIN_EXE_pirate")
    );
    let marker = "worker-cmd";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (marker, stop) = (unique(marker), stop.clone());
        std::thread::spawn(move || {
            let (mut most, mut frozen_pairs) = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let seen = marked_processes(&marker);
                let workers: Vec<&Seen> = seen
                    .iter()
                    .filter(|p| p.argv.get(1).is_some_and(|a| a == "worker"))
                    .collect();
                most = most.max(workers.len());
                frozen_pairs += workers
                    .iter()
                    .filter(|w| {
                        w.state == 'T'
                            && seen
                                .iter()
                                .any(|sh| sh.pid == w.ppid && sh.argv[0] == "sh" && sh.state == 'T')
                    })
                    .count();
                std::thread::sleep(Duration::from_millis(10));
            }
            (most, frozen_pairs)
        })
    };
    let (code, out, err) = chaos(
        marker,
        &[
            "chaos",
            "run",
            "--json",
            "--worker-cmd",
            &worker,
            "--requests",
            "500",
            "--workers",
            "2",
            "--nemesis",
            "kill,freeze",
            "--nemesis-interval",
            "700ms",
            "--nemesis-freeze",
            "600ms",
            "--heartbeat",
            "100ms",
            "--seed",
            "9",
        ],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (most, frozen_pairs) = sampler.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    assert!(s["injected"]["kill"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["injected"]["freeze"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        most <= 2,
        "{most} workers ran at once for --workers 2: a kill missed one"
    );
    assert!(most >= 1, "no worker seen at all");
    assert!(
        frozen_pairs > 0,
        "never saw a worker and its shell both stopped by a freeze"
    );
}

/// Starts `pirate ARGS` marked, waits for at least `procs` marked processes (and `ready`),
/// SIGKILLs the runner, and waits for every marked process to be gone.
fn kill_9_leaves_nothing(marker: &str, args: &[&str], procs: usize, ready: impl Fn(u32) -> bool) {
    let mut cmd = pirate(args);
    cmd.env("PIRATE_TEST_MARK", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    wait_until("the topology to come up", || {
        marked_processes(marker).len() >= procs && ready(pid)
    });
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
    wait_until("every process of the killed run to be gone", || {
        let left = marked_processes(marker);
        if !left.is_empty() {
            eprintln!("still running: {left:?}");
        }
        left.is_empty()
    });
}

#[test]
fn kill_9_of_chaos_leaves_no_worker_behind_even_under_a_shell() {
    let worker = format!(
        "{} worker --protocol mdp --service {{service}} --connect {{endpoint}} \
         --heartbeat 100ms; true",
        env!("CARGO_BIN_EXE_pirate")
    );
    let marker = unique("kill9");
    // broker, 2 × (sh + worker), 2 clients, the watchdog.
    kill_9_leaves_nothing(
        &marker,
        &[
            "chaos",
            "run",
            "--workers",
            "2",
            "--worker-cmd",
            &worker,
            "--heartbeat",
            "100ms",
            "--duration",
            "30s",
        ],
        8,
        |_| true,
    );
}

#[test]
fn kill_9_of_chaos_leaves_no_temporary_directory() {
    let marker = unique("kill9-titanic");
    let seed = "77";
    let dir = std::sync::Mutex::new(None);
    kill_9_leaves_nothing(
        &marker,
        &[
            "chaos",
            "run",
            "--pattern",
            "titanic",
            "--workers",
            "1",
            "--clients",
            "1",
            "--duration",
            "30s",
            "--seed",
            seed,
        ],
        5,
        |pid| {
            let d = std::env::temp_dir().join(format!("pirate-chaos-titanic-{pid}-{seed}"));
            let exists = d.exists();
            *dir.lock().unwrap() = Some(d);
            exists
        },
    );
    let dir = dir.into_inner().unwrap().unwrap();
    wait_until("the titanic store to be removed", || !dir.exists());
}

#[test]
fn recovery_times_match_the_outage_the_clients_saw() {
    // One Lazy Pirate server, killed and kept down for 800 ms: no reply can come sooner, so
    // each recovery is at least that; and none is longer than the longest wait a client
    // measured itself (first send to reply) plus the time to read its line.
    let dir = out_dir("chaos-recovery");
    let (code, out, err) = chaos(
        "recovery",
        &[
            "chaos",
            "run",
            "--json",
            "--pattern",
            "lazy",
            "--clients",
            "1",
            "--requests",
            "12",
            "--work",
            "200ms",
            "--nemesis",
            "kill",
            "--nemesis-interval",
            "1500ms",
            "--duration",
            "3s",
            "--restart-delay",
            "800ms",
            "--timeout",
            "300ms",
            "--retries",
            "50",
            "--heartbeat",
            "250ms",
            "--seed",
            "3",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    let recoveries = s["findings"]["recoveries"].as_array().unwrap().clone();
    let kills: Vec<f64> = recoveries
        .iter()
        .filter(|r| r["kind"] == "kill")
        .filter_map(|r| r["recovered_after_ms"].as_f64())
        .collect();
    assert!(!kills.is_empty(), "{s}");
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let longest_wait = records
        .iter()
        .filter(|r| r["event"]["event"] == "reply")
        .filter_map(|r| r["event"]["latency_ms"].as_f64())
        .fold(0.0, f64::max);
    // A reply already on the wire when the kill struck could come just after it: one kill
    // in two may show that, not both.
    let longest = kills.iter().copied().fold(0.0, f64::max);
    assert!(longest >= 800.0, "recoveries {kills:?} < the 800 ms outage");
    for r in &kills {
        assert!(*r <= longest_wait + 100.0, "{r} > {longest_wait} + 100");
    }
    // Each incarnation of the server drew its own seed.
    let seeds: Vec<u64> = records
        .iter()
        .filter(|r| r["source"] == "server" && r["event"]["event"] == "started")
        .map(|r| r["event"]["seed"].as_u64().unwrap())
        .collect();
    assert!(seeds.len() >= 2, "{seeds:?}");
    let mut distinct = seeds.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), seeds.len(), "{seeds:?}");
}

#[test]
fn the_run_goes_on_past_its_duration_until_every_kind_struck_and_stops_at_the_cap() {
    // A 1 s fault phase with a 2 s nemesis interval only schedules the kill: the freeze has to
    // come after --duration, and a reply after it.
    let args = |cap: &str| {
        [
            "chaos",
            "run",
            "--json",
            "--pattern",
            "paranoid",
            "--workers",
            "2",
            "--clients",
            "1",
            "--requests",
            "5",
            "--nemesis",
            "kill,freeze",
            "--nemesis-interval",
            "2s",
            "--nemesis-freeze",
            "300ms",
            "--duration",
            "1s",
            "--max-extension",
            cap,
            "--heartbeat",
            "100ms",
            "--seed",
            "4",
        ]
        .map(String::from)
    };
    let a = args("10s");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, err) = chaos("extension", &a);
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    assert_eq!(s["injected"]["freeze"], 1, "{s}");
    assert!(s["fault_phase_ms"].as_u64().unwrap() > 1000, "{s}");
    assert!(s["findings"]["coverage"]["freeze"]["recovered"] == 1, "{s}");
    answered_all(&s, 5);
    // No time past --duration: the freeze never comes, and the verdict says so.
    let a = args("0s");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, err) = chaos("no-extension", &a);
    assert_eq!(code, 1, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "indeterminate", "{s}");
    assert_eq!(
        s["reason"],
        "no freeze fault was injected (the run ended before it)"
    );
    assert!(
        err.contains("INDETERMINATE: no freeze fault was injected"),
        "{err}"
    );
}

#[test]
fn a_run_against_a_broker_nobody_answers_is_indeterminate_not_valid() {
    let connect = endpoint(free_port());
    let dir = out_dir("chaos-unreachable");
    let (code, out, err) = chaos(
        "unreachable",
        &[
            "chaos",
            "run",
            "--json",
            "--connect",
            &connect,
            "--requests",
            "10",
            "--timeout",
            "100ms",
            "--retries",
            "2",
            "--heartbeat",
            "100ms",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "indeterminate", "{s}");
    assert_eq!(s["valid"], false);
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.starts_with("no request was answered"), "{reason}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["verdict"], "indeterminate");
    assert_eq!(results["reason"], reason);
    assert!(
        err.contains("INDETERMINATE: no request was answered"),
        "{err}"
    );
}

#[test]
fn ctrl_c_prints_the_verdict_so_far_marked_interrupted_and_leaves_no_process_behind() {
    let marker = unique("sigint");
    let mut cmd = pirate(&["chaos", "run", "--json", "--duration", "30s", "--seed", "2"]);
    cmd.env("PIRATE_TEST_MARK", &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut chaos = spawn_command("chaos", cmd, false);
    // Interrupted after the first fault struck (seed 2: a kill at 2.2 s), the clients
    // having sent and been answered meanwhile.
    chaos.wait_for("the first nemesis strike", |out, _| {
        json_lines_so_far(out)
            .iter()
            .any(|l| l["event"] == "nemesis")
    });
    chaos.signal(libc::SIGINT);
    let code = chaos.code();
    let (out, err) = (chaos.stdout.text(), chaos.stderr.text());
    assert_eq!(code, 130, "{err}");
    let s = summary(&out);
    assert_eq!(s["interrupted"], true, "{s}");
    assert_eq!(s["verdict"], "indeterminate", "{s}");
    assert!(s["reason"].as_str().unwrap().contains("interrupted"), "{s}");
    assert!(s["findings"]["replied"].as_u64().unwrap() > 0, "{s}");
    assert!(
        err.contains("INDETERMINATE (interrupted): interrupted before the run finished"),
        "{err}"
    );
    wait_until("every child to be gone", || {
        processes_marked(&marker).is_empty()
    });
}

#[test]
fn bad_chaos_flags_are_usage_errors() {
    let (code, _, err) = run(
        &[
            "chaos",
            "run",
            "--pattern",
            "lazy",
            "--connect",
            "tcp://x:1",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("--connect needs --pattern majordomo"), "{err}");
    let (code, _, err) = run(
        &[
            "chaos",
            "run",
            "--proxy",
            "clients",
            "--proxy-faults",
            "--drop 2x",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("--proxy-faults: invalid value '2x'"), "{err}");
    let (code, _, _) = run(&["chaos", "run", "--nemesis", "explode"], None);
    assert_eq!(code, 2);
}

#[test]
fn a_proxy_dropping_replies_causes_re_executions_not_losses_and_strict_rejects_them() {
    let args = |strict: bool| {
        let mut a = vec![
            "chaos",
            "run",
            "--json",
            "--pattern",
            "paranoid",
            "--workers",
            "2",
            "--clients",
            "1",
            "--requests",
            "60",
            "--duration",
            "10s",
            "--nemesis-interval",
            "0s",
            "--timeout",
            "300ms",
            "--proxy",
            "clients",
            "--proxy-faults",
            "--drop 15% --direction down",
            "--seed",
            "12",
        ];
        if strict {
            a.push("--strict");
        }
        a.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let relaxed = args(false);
    let relaxed: Vec<&str> = relaxed.iter().map(String::as_str).collect();
    let (code, out, err) = chaos("proxy-relaxed", &relaxed);
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["findings"]["replied"], 60, "{s}");
    assert!(
        s["findings"]["faults"]["proxy_drop"].as_u64().unwrap() >= 1,
        "{s}"
    );
    assert!(s["findings"]["reexecutions"].as_u64().unwrap() >= 1, "{s}");
    let strict = args(true);
    let strict: Vec<&str> = strict.iter().map(String::as_str).collect();
    let (code, out, _) = chaos("proxy-strict", &strict);
    assert_eq!(code, 1);
    assert_eq!(summary(&out)["verdict"], "invalid");
}

#[test]
fn a_busy_timeout_frees_workers_whose_messages_a_worker_side_proxy_dropped() {
    // The README's example, literally: without --busy-timeout, each dropped REQUEST or reply
    // leaves its worker held busy for good, and the clients end up abandoning (indeterminate);
    // with it, every request is answered (valid).
    let readme = [
        "chaos",
        "run",
        "--json",
        "--pattern",
        "majordomo",
        "--workers",
        "2",
        "--clients",
        "2",
        "--requests",
        "20",
        "--duration",
        "4s",
        "--nemesis-interval",
        "0s",
        "--timeout",
        "300ms",
        "--proxy",
        "workers",
        "--proxy-faults",
        "--drop 10%",
        "--seed",
        "3",
    ];
    let (code, out, err) = chaos("busy-timeout-off", &readme);
    assert_eq!(code, 1, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "indeterminate", "{s}");
    assert!(
        !s["findings"]["abandoned"].as_array().unwrap().is_empty(),
        "{s}"
    );
    assert!(s["reason"].as_str().unwrap().contains("abandoned"), "{s}");
    assert!(
        s["findings"]["faults"]["proxy_drop"].as_u64().unwrap() >= 1,
        "{s}"
    );
    let mut with = readme.to_vec();
    with.extend(["--busy-timeout", "500ms"]);
    let (code, out, err) = chaos("busy-timeout", &with);
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    assert_eq!(s["findings"]["replied"], 40, "{s}");
    assert_eq!(s["findings"]["abandoned"], serde_json::json!([]), "{s}");
    assert!(
        s["findings"]["faults"]["proxy_drop"].as_u64().unwrap() >= 1,
        "{s}"
    );
    for (args, what) in [
        (
            &["--pattern", "lazy"][..],
            "--busy-timeout is for the paranoid queue",
        ),
        (
            &["--connect", "tcp://127.0.0.1:9"][..],
            "--busy-timeout sets pirate's own broker",
        ),
    ] {
        let mut all = vec!["chaos", "run", "--busy-timeout", "1s"];
        all.extend_from_slice(args);
        let (code, _, err) = run(&all, None);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(what), "{err}");
    }
}

#[test]
fn titanic_and_binary_star_patterns_survive_their_nemesis() {
    for pattern in ["titanic", "bstar"] {
        let (code, out, err) = chaos(
            &format!("pattern-{pattern}"),
            &[
                "chaos",
                "run",
                "--json",
                "--pattern",
                pattern,
                "--duration",
                "4s",
                "--nemesis-interval",
                "1s",
                "--requests",
                "40",
                "--work",
                "30ms",
                "--seed",
                "6",
            ],
        );
        assert_eq!(code, 0, "{pattern}: {err}");
        let s = summary(&out);
        assert_eq!(s["verdict"], "valid", "{pattern}: {s}");
        answered_all(&s, 80);
        assert!(
            s["injected"]["kill"].as_u64().unwrap_or(0) >= 1,
            "{pattern}: {s}"
        );
        if pattern == "titanic" {
            assert!(s["injected"]["restart"].as_u64().unwrap_or(0) >= 1, "{s}");
        }
        if pattern == "bstar" {
            // A frozen node that thaws after its peer took over: the pair heals itself.
            assert!(s["injected"]["freeze"].as_u64().unwrap_or(0) >= 1, "{s}");
        }
    }
}

#[test]
fn freelance_pattern_survives_killed_and_frozen_servers() {
    let (code, out, err) = chaos(
        "pattern-freelance",
        &[
            "chaos",
            "run",
            "--json",
            "--pattern",
            "freelance",
            "--duration",
            "4s",
            "--nemesis-interval",
            "1s",
            "--requests",
            "150",
            "--work",
            "5ms",
            "--seed",
            "6",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    assert_eq!(s["pattern"], "freelance");
    answered_all(&s, 300);
    assert!(s["injected"]["kill"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(
        s["schedule"].as_array().unwrap().iter().all(
            |f| f["fault"] != "restart" && f["target"].as_str().unwrap().starts_with("server-")
        ),
        "no broker to restart: the nemesis strikes servers\n{s}"
    );
}

#[test]
fn freelance_refuses_what_it_cannot_do() {
    for (extra, expected) in [
        (&["--window", "4"][..], "--window does not fit Freelance"),
        (
            &["--proxy", "clients"][..],
            "--proxy does not fit Freelance",
        ),
        (&["--freeze-rate", "5%"][..], "--freeze-rate is for workers"),
    ] {
        let mut args = vec!["chaos", "run", "--pattern", "freelance"];
        args.extend_from_slice(extra);
        let (code, _, err) = chaos("freelance-usage", &args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
}

/// A run with --out says where its report is and the whole command that replays it; its
/// results.json and report.html record every flag, the build, the date and the host; and
/// `--replay DIR` runs the same configuration again: the same schedule, from the same seed.
#[test]
fn a_run_records_its_configuration_and_replay_runs_it_again() {
    let first = out_dir("replay-first");
    let args = [
        "chaos",
        "run",
        "--pattern",
        "lazy",
        "--duration",
        "2s",
        "--nemesis-interval",
        "400ms",
        "--requests",
        "20",
        "--out",
        first.to_str().unwrap(),
    ];
    let (code, _, err) = chaos("replay-first", &args);
    assert_eq!(code, 0, "{err}");
    let page = first.join("report.html");
    assert!(
        err.contains(&format!("report: {}", page.display())),
        "{err}"
    );
    let results = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
    };
    let recorded = results(&first);
    let seed = recorded["seed"].as_u64().unwrap().to_string();
    let replay_line = format!(
        "replay: pirate chaos run --pattern lazy --duration 2s --nemesis-interval 400ms \
         --requests 20 --seed {seed}"
    );
    assert!(err.contains(&replay_line), "{err}");
    let record = &recorded["run"];
    assert_eq!(
        record["flags"]["workers"], "3",
        "a default is recorded: {record}"
    );
    assert_eq!(record["flags"]["pattern"], "lazy", "{record}");
    assert_eq!(record["flags"]["seed"], seed.as_str(), "{record}");
    for field in ["version", "commit", "started", "host"] {
        assert!(
            !record[field].as_str().unwrap().is_empty(),
            "{field}: {record}"
        );
    }
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<h2>Configuration</h2>") && html.contains("--nemesis-interval"));

    let again = out_dir("replay-again");
    let (code, _, err) = chaos(
        "replay-again",
        &[
            "chaos",
            "run",
            "--replay",
            first.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let replayed = results(&again);
    assert_eq!(replayed["seed"], recorded["seed"]);
    assert_eq!(replayed["schedule"], recorded["schedule"]);
    assert_eq!(replayed["run"]["flags"]["requests"], "20");

    let (code, _, err) = run(
        &[
            "chaos",
            "run",
            "--replay",
            first.to_str().unwrap(),
            "--workers",
            "2",
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--workers cannot change it"), "{err}");
    let (code, _, err) = run(&["chaos", "run", "--replay", "/nonexistent-run"], None);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read /nonexistent-run/results.json"),
        "{err}"
    );
}

#[test]
fn ports_confines_the_topology_to_the_range_and_a_bad_range_is_refused() {
    // A Freelance topology binds 5 ports (3 servers, counted by the runner); give it 8 from
    // a base the helpers say is free (below the kernel's ephemeral range).
    let low = free_port().min(65_000);
    let range = format!("{low}-{}", low + 7);
    let dir = out_dir("chaos-ports");
    let (code, out, err) = chaos(
        "ports",
        &[
            "chaos",
            "run",
            "--json",
            "--pattern",
            "freelance",
            "--ports",
            &range,
            "--duration",
            "1s",
            "--nemesis-interval",
            "0s",
            "--requests",
            "10",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    // Every endpoint the run and its children name (`started`, the servers' and clients'
    // lines): `tcp://127.0.0.1:PORT` wherever it appears in stdout and the history.
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let text = format!("{out}{history}");
    let ports: Vec<u16> = text
        .split("tcp://127.0.0.1:")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    let mut distinct = ports.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 3, "three servers, a port each: {ports:?}");
    assert!(
        ports.iter().all(|&p| (low..=low + 7).contains(&p)),
        "every port in {range}: {ports:?}"
    );
    // Too small for the topology, and malformed: one line, exit 2, nothing started.
    let small = format!("{low}-{}", low + 1);
    for (bad, says) in [
        (small.as_str(), "this topology binds 5"),
        ("9000", "expected LOW-HIGH"),
        ("9-8", "LOW is above HIGH"),
    ] {
        let (code, out, err) = run(
            &["chaos", "run", "--pattern", "freelance", "--ports", bad],
            None,
        );
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(out.is_empty(), "{bad}: nothing ran: {out}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{bad}: {err}"
        );
    }
}
