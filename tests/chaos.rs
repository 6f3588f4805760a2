//! `pirate chaos` end to end: the built-in demonstration, verdicts a CI job can trust (valid
//! and invalid), replay by seed, external brokers and workers, and clean-up of every child.

mod common;

use std::path::PathBuf;
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

/// Runs `pirate ARGS` marked, to completion; returns (code, stdout, stderr) and checks that
/// nothing it started is still running.
fn chaos(marker: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = pirate(args);
    cmd.env("PIRATE_TEST_MARK", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = cmd.output().expect("cannot run pirate");
    let code = output.status.code().expect("chaos died by a signal");
    std::thread::sleep(Duration::from_millis(100));
    let left = processes_marked(marker);
    assert!(left.is_empty(), "processes left behind: {left:?}");
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

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
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
            "1",
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
fn an_external_broker_and_external_worker_commands_can_be_put_under_chaos() {
    let (mut broker, port) = start_broker(&["--heartbeat", "100ms"]);
    let worker = format!(
        "exec {} worker --json --protocol mdp --service {{service}} --connect {{endpoint}} \
         --heartbeat 100ms --reconnect 100ms --work 10ms",
        env!("CARGO_BIN_EXE_pirate")
    );
    let connect = endpoint(port);
    let (code, out, err) = chaos(
        "external",
        &[
            "chaos",
            "run",
            "--json",
            "--connect",
            &connect,
            "--worker-cmd",
            &worker,
            "--nemesis",
            "kill,restart",
            "--nemesis-interval",
            "700ms",
            "--duration",
            "2s",
            "--requests",
            "300",
            "--heartbeat",
            "100ms",
            "--seed",
            "5",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["verdict"], "valid", "{s}");
    assert!(s["injected"]["kill"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["injected"].get("restart").is_none(),
        "an external broker is not ours to restart"
    );
    broker.signal(libc::SIGINT);
    assert_eq!(broker.code(), 130);
}

#[test]
fn ctrl_c_stops_the_run_and_leaves_no_process_behind() {
    let marker = format!("sigint-{}", std::process::id());
    let mut cmd = pirate(&["chaos", "run", "--duration", "30s", "--seed", "2"]);
    cmd.env("PIRATE_TEST_MARK", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    while processes_marked(&marker).len() < 6 {
        assert!(started.elapsed() < DEADLINE, "topology never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(100));
    assert!(processes_marked(&marker).is_empty());
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
    // Without --busy-timeout, each dropped REQUEST or reply leaves its worker held busy for
    // good, and the clients end up abandoning; with it, every request is answered.
    let (code, out, err) = chaos(
        "busy-timeout",
        &[
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
            "40",
            "--duration",
            "10s",
            "--nemesis-interval",
            "0s",
            "--timeout",
            "300ms",
            "--proxy",
            "workers",
            "--proxy-faults",
            "--drop 10%",
            "--busy-timeout",
            "500ms",
            "--seed",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = summary(&out);
    assert_eq!(s["findings"]["replied"], 80, "{s}");
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
