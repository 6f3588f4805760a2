//! `pirate chaos run --net namespaces`: every pattern on hosts of its own under the network
//! faults that apply, judged VALID with each requested kind injected; nothing left behind
//! (`ip netns list`) after a normal end, Ctrl-C, and a SIGKILL of the runner; the flags that
//! are refused before anything starts.
//!
//! Namespaces need root and `ip`/`nft`/`tc`: without them these tests say so and pass, unless
//! `PIRATE_REQUIRE_NETNS` is set (CI), which makes that a failure. Runs are serialised (one
//! lock): each is a topology of a dozen processes, and the machine may have two cores.

mod common;

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// True when namespaced runs can work here; otherwise says why (and fails under
/// `PIRATE_REQUIRE_NETNS`).
fn netns_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nft", "tc"].iter().all(|t| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(t).is_file())
    });
    let why = match (root, tools) {
        (true, true) => return true,
        (false, _) => "not root",
        (_, false) => "ip, nft or tc missing (apt-get install iproute2 nftables)",
    };
    assert!(
        std::env::var_os("PIRATE_REQUIRE_NETNS").is_none(),
        "PIRATE_REQUIRE_NETNS is set but namespaces cannot be used: {why}"
    );
    eprintln!("SKIPPED: --net namespaces needs root and ip/nft/tc: {why}");
    false
}

/// The network namespaces whose name starts with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect()
}

/// The run's namespace prefix (`pirate-<id>`), from the line it prints when its network is up.
fn run_prefix(stderr: &str) -> Option<String> {
    let at = stderr.find("in namespaces pirate-")? + "in namespaces ".len();
    let rest = &stderr[at..];
    Some(rest[..rest.find("-*")?].to_string())
}

/// Short heartbeats, a short fault phase; the caller adds the pattern and kinds.
const SHORT: &[&str] = &[
    "chaos",
    "run",
    "--net",
    "namespaces",
    "--heartbeat",
    "50ms",
    "--timeout",
    "400ms",
    "--retries",
    "30",
    "--nemesis-interval",
    "600ms",
    "--restart-delay",
    "200ms",
    "--max-extension",
    "20s",
    "--clients",
    "2",
    "--seed",
    "11",
];

/// Runs a short namespaced chaos run of `pattern` with `kinds`, with `-v`; asserts it ends
/// VALID with each kind injected at least once, that its namespaces are gone after it, and
/// returns its results.json and stderr.
fn valid_run(pattern: &str, kinds: &str, extra: &[&str]) -> Option<(serde_json::Value, String)> {
    if !netns_available() {
        return None;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("pirate-net-{pattern}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let phase = Duration::from_millis(600 * kinds.split(',').count() as u64 + 300);
    let duration = format!("{}ms", phase.as_millis());
    let mut args: Vec<&str> = SHORT.to_vec();
    let out = dir.display().to_string();
    args.extend([
        "-v",
        "--pattern",
        pattern,
        "--nemesis",
        kinds,
        "--duration",
        &duration,
        "--out",
        &out,
    ]);
    // A flag in `extra` replaces SHORT's (clap takes each once).
    for flag in extra.iter().filter(|a| a.starts_with("--")) {
        if let Some(i) = args.iter().position(|a| a == flag) {
            if SHORT.contains(flag) {
                args.drain(i..i + 2);
            }
        }
    }
    args.extend(extra);
    // The run's own bounds, read from the flags it is given (an `extra` may replace SHORT's),
    // not a guess: its fault phase lasts --duration and, while a kind has not struck or been
    // recovered from, up to --max-extension more; then clients finish what they sent (up to
    // --retries x --timeout). A loaded machine stretches every step, so the wait allows all
    // of it and DEADLINE besides.
    let value = |flag: &str| {
        let at = args.iter().position(|a| *a == flag).expect(flag);
        args[at + 1]
    };
    let time = |flag: &str| humantime::parse_duration(value(flag)).expect(flag);
    let retries: u32 = value("--retries").parse().expect("--retries");
    let bound = phase + time("--max-extension") + retries * time("--timeout") + DEADLINE;
    let (code, _stdout, stderr) = run_within(&args, None, bound);
    let prefix = run_prefix(&stderr).unwrap_or_else(|| panic!("no network line:\n{stderr}"));
    assert_eq!(
        namespaces(&prefix),
        Vec::<String>::new(),
        "namespaces left behind"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        (code, results["verdict"].as_str()),
        (0, Some("valid")),
        "{pattern} {kinds}: {}\n{stderr}",
        results["reason"]
    );
    for kind in kinds.split(',') {
        assert!(
            results["injected"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind} never injected: {}",
            results["injected"]
        );
    }
    // Every network fault is reported with its hosts, healed, and measured.
    let network = results["network"].as_array().cloned().unwrap_or_default();
    let network_kinds = kinds
        .split(',')
        .filter(|k| !matches!(*k, "kill" | "freeze" | "restart"))
        .count();
    assert!(network.len() >= network_kinds, "{network:?}");
    for f in &network {
        assert!(f["healed_ms"].as_f64().unwrap() > f["struck_ms"].as_f64().unwrap());
        assert!(!f["hosts"].as_array().unwrap().is_empty(), "{f}");
        assert_eq!(f["liveness_ms"].as_f64(), Some(150.0));
    }
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.contains("<h2>Network faults</h2>"));
    assert!(page.contains("class=\"netfault\""));
    let _ = std::fs::remove_dir_all(&dir);
    Some((results, stderr))
}

#[test]
fn majordomo_survives_every_network_fault_this_kernel_has_and_v_shows_the_commands() {
    let Some((results, stderr)) = valid_run(
        "majordomo",
        "partition,split,oneway,reset,loss,slow,kill",
        &["--workers", "2"],
    ) else {
        return;
    };
    // -v prints every command, as a shell takes it.
    assert!(stderr.contains("net: ip netns add pirate-"), "{stderr}");
    assert!(stderr.contains("bridge pirate forward"), "{stderr}");
    assert!(stderr.contains("tbf rate 1mbit"), "{stderr}");
    assert!(stderr.contains("net: ip netns exec pirate-"), "{stderr}");
    // A partition of a worker or the broker is noticed by heartbeats.
    let partitions: Vec<_> = results["network"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "partition")
        .collect();
    assert!(!partitions.is_empty());
}

#[test]
fn paranoid_pirate_survives_partition_split_and_reset() {
    valid_run("paranoid", "partition,split,reset", &["--workers", "2"]);
}

#[test]
fn simple_pirate_survives_partition_and_loss() {
    valid_run("simple", "partition,loss", &["--workers", "2"]);
}

#[test]
fn lazy_pirate_survives_partition_and_reset() {
    valid_run("lazy", "partition,reset", &[]);
}

#[test]
fn titanic_survives_partition_and_slow() {
    valid_run("titanic", "partition,slow", &["--workers", "1"]);
}

#[test]
fn freelance_survives_partition_and_split() {
    // A Freelance client gives a request up once no server has been alive for its server TTL
    // plus its timeout. A split can leave a client alone on its side, and after the heal TCP
    // resumes at its next retransmission (its back-off doubled during the cut): with the 400 ms
    // timeout that came to more than the 550 ms the client waits, on a loaded machine. The
    // timeout here outlasts the cut and the retransmission.
    valid_run(
        "freelance",
        "partition,split",
        &["--workers", "2", "--timeout", "2s"],
    );
}

#[test]
fn binary_star_serves_across_a_partition() {
    let Some((results, _)) = valid_run("bstar", "partition", &[]) else {
        return;
    };
    // Binary Star heals after a split (--on-split resolve): the pair comes through a
    // partition of its active node with no node restarted.
    assert_eq!(
        results["injected"]["respawn"],
        serde_json::Value::Null,
        "{results}"
    );
}

/// Starts a long namespaced run, waits for its network and first clients, and returns the
/// child and its namespace prefix.
fn long_run() -> Option<(Proc, String)> {
    if !netns_available() {
        return None;
    }
    let mut args: Vec<&str> = SHORT.to_vec();
    args.extend([
        "--nemesis",
        "partition",
        "--duration",
        "60s",
        "--workers",
        "2",
    ]);
    let proc = spawn("pirate", &args);
    proc.wait_stderr("in namespaces pirate-");
    let prefix = run_prefix(&proc.stderr.text()).expect("prefix");
    wait_until("the hosts to exist", || namespaces(&prefix).len() == 6);
    Some((proc, prefix))
}

#[test]
fn sigkill_of_the_runner_leaves_no_namespace_and_no_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((mut proc, prefix)) = long_run() else {
        return;
    };
    // Wait until the roles run inside their hosts.
    wait_until("a role in a host", || !processes_in(&prefix).is_empty());
    proc.signal(libc::SIGKILL);
    proc.wait();
    let killed = Instant::now();
    wait_until("no namespace and no process left", || {
        namespaces(&prefix).is_empty() && processes_in(&prefix).is_empty()
    });
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "clean-up took {:?}",
        killed.elapsed()
    );
}

#[test]
fn two_runs_at_once_have_networks_of_their_own_and_ctrl_c_removes_only_its_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some((mut first, a)) = long_run() else {
        return;
    };
    let (mut second, b) = long_run().expect("namespaces available");
    assert_ne!(a, b);
    first.signal(libc::SIGINT);
    assert_eq!(first.code(), 130, "{}", first.stderr.text());
    assert_eq!(namespaces(&a), Vec::<String>::new());
    assert!(processes_in(&a).is_empty());
    // The other run's network is untouched.
    assert_eq!(namespaces(&b).len(), 6, "{:?}", namespaces(&b));
    second.signal(libc::SIGINT);
    assert_eq!(second.code(), 130, "{}", second.stderr.text());
    assert_eq!(namespaces(&b), Vec::<String>::new());
}

#[test]
fn a_users_own_worker_runs_in_its_host_and_survives_a_partition() {
    let worker = format!(
        "{} worker --json --protocol mdp --service {{service}} --connect {{endpoint}} \
         --heartbeat 50ms --reconnect 50ms",
        env!("CARGO_BIN_EXE_pirate")
    );
    let Some((_, stderr)) = valid_run(
        "majordomo",
        "partition",
        &["--workers", "2", "--worker-cmd", &worker],
    ) else {
        return;
    };
    // The shell runs inside the worker's host, with the broker's address on the bridge.
    assert!(
        stderr.contains("-worker-1 sh -c ") && stderr.contains("--connect tcp://10.77.0.1:"),
        "{stderr}"
    );
}

/// Pids of processes whose network namespace is one of the run's (`ip netns pids`).
fn processes_in(prefix: &str) -> Vec<String> {
    namespaces(prefix)
        .iter()
        .flat_map(|ns| {
            let out = std::process::Command::new("ip")
                .args(["netns", "pids", ns])
                .stderr(Stdio::null())
                .output()
                .expect("ip netns pids");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn network_kinds_need_namespaces_and_delay_needs_netem() {
    let (code, _, stderr) = run(&["chaos", "run", "--nemesis", "partition"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs --net namespaces"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (code, _, stderr) = run(
        &[
            "chaos",
            "run",
            "--net",
            "namespaces",
            "--connect",
            "tcp://127.0.0.1:1",
        ],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--connect does not fit --net namespaces"),
        "{stderr}"
    );
    if !netns_available() {
        return;
    }
    // As an unprivileged user (nobody, through util-linux's setpriv): refused up front.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_pirate"))
        .args(["chaos", "run", "--net", "namespaces"])
        .output();
    match out {
        Ok(out) if out.status.code() != Some(126) && out.status.code() != Some(127) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("needs root"), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
        // No setpriv, or the binary is not reachable by nobody: nothing to show here.
        _ => eprintln!("setpriv could not run pirate as nobody: the root check is not shown"),
    }
    let netem = std::process::Command::new("unshare")
        .args([
            "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if netem {
        eprintln!("this kernel has netem: the refusal of --nemesis delay cannot be shown here");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = namespaces("pirate-");
    let (code, _, stderr) = run(
        &[
            "chaos",
            "run",
            "--net",
            "namespaces",
            "--nemesis",
            "delay,partition",
        ],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("netem"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(
        namespaces("pirate-"),
        before,
        "a refused run created namespaces"
    );
}
