//! `pirate client --window N`: through `pirate broker` every request in flight shares one
//! socket (request ids), replies come out correct and in order, and a worker killed mid-run
//! loses nothing; through a foreign broker (one that answers `mmi.correlate` with 501) the
//! window falls back to a socket per request. The summary reports throughput.

mod common;

use common::*;

/// A broker with `n` MDP 0.1 echo workers, every worker registered.
fn broker_with_workers(n: usize) -> (Proc, u16, Vec<Proc>) {
    let (broker, port) = broker(&[]);
    let workers: Vec<Proc> = (1..=n)
        .map(|i| mdp_worker(&format!("w{i}"), port, "mdp", "echo", &[]))
        .collect();
    wait_workers(&broker, n);
    (broker, port, workers)
}

/// `--json` client arguments for `--count COUNT` through a window of `window`.
fn window_args(port: u16, window: &str, count: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "client",
        "--json",
        "--connect",
        &endpoint(port),
        "--service",
        "echo",
        "--window",
        window,
        "--count",
        count,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The `-v` traces of sockets the client opened that `purpose` describes.
fn sockets_opened(stderr: &str, purpose: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("connecting to") && l.contains(purpose))
        .count()
}

/// Every reply is its own request's (the `--count` echo check), printed once, in order.
fn assert_in_order(out: &str, n: u64) {
    let seqs: Vec<u64> = json_lines(out)
        .iter()
        .filter(|l| l["event"] == "reply")
        .map(|l| {
            assert_eq!(l["reply"], l["request"], "matched to its own request: {l}");
            l["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<u64>>());
    assert_eq!(replies(out), sequence(n));
}

const SHARED: &str = "shared by every request in flight";
const OWN: &str = "for request";

#[test]
fn through_the_pirate_broker_a_window_of_50_shares_one_socket_and_answers_in_order() {
    let (_broker, port, _workers) = broker_with_workers(3);
    let args = window_args(port, "50", "2000", &["-v", "--timeout", "10s"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(
        code,
        0,
        "{}",
        err.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert_in_order(&out, 2000);
    assert!(
        err.contains("carries request ids (mmi.correlate: 200)"),
        "the probe's answer is traced"
    );
    // The probe's REQ, then one DEALER for all 2000 requests, 50 at a time.
    assert_eq!(sockets_opened(&err, SHARED), 1, "one shared socket");
    assert_eq!(sockets_opened(&err, OWN), 0, "no socket per request");
    assert_eq!(
        sockets_opened(&err, ""),
        2,
        "the probe's and the shared one"
    );
    let s = summary(&out);
    assert_eq!(s["replied"], 2000);
    assert_eq!(s["mismatched"], 0);
    assert!(s["req_per_s"].as_f64().unwrap() > 0.0, "throughput: {s}");
}

#[test]
fn a_worker_killed_mid_run_loses_nothing_and_the_shared_socket_is_kept() {
    let (_broker, port, mut workers) = broker_with_workers(3);
    let args = window_args(port, "50", "2000", &["--timeout", "2s", "--retries", "5"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut client = spawn("client", &args);
    client.wait_stdout(r#""seq":300,"#);
    workers[0].signal(libc::SIGKILL);
    workers[0].wait();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let out = client.stdout.text();
    assert_in_order(&out, 2000);
    let s = summary(&out);
    assert_eq!(s["replied"], 2000);
    assert_eq!(s["abandoned"], 0);
    // 50 in flight over 3 workers keep each one holding a request: the killed worker's was
    // lost, timed out, and resent with a fresh id on the same socket, which the other
    // workers' replies kept alive (no reopen).
    assert!(s["retries"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["reconnects"], 0, "{s}");
}

#[test]
fn through_a_foreign_broker_the_window_falls_back_to_a_socket_per_request() {
    let (broker, port, seen) = foreign_broker(false);
    let args = window_args(port, "10", "40", &["-v", "--timeout", "5s"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    assert_in_order(&out, 40);
    assert!(
        err.contains(
            "does not carry request ids (mmi.correlate: 501): the window falls back to one \
             socket per request"
        ),
        "{err}"
    );
    assert_eq!(sockets_opened(&err, OWN), 40);
    assert_eq!(sockets_opened(&err, SHARED), 0);
    drop(broker);
    let ForeignSeen {
        identities,
        enveloped,
    } = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        identities.len(),
        40,
        "every request came on a socket of its own"
    );
    assert_eq!(enveloped, 0, "standard MDP only");
}

#[test]
fn the_human_summary_reports_throughput_next_to_the_latency() {
    let (_server, port) = start_server(&[]);
    let (code, _, err) = run(
        &[
            "client",
            "--connect",
            &endpoint(port),
            "--window",
            "5",
            "--count",
            "20",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("{err}"));
    let (before, after) = summary.split_once(" req/s, latency p50 ").expect(summary);
    let rate: f64 = before.rsplit(' ').next().unwrap().parse().expect(summary);
    assert!(rate > 0.0, "{summary}");
    assert!(after.contains("max"), "{summary}");
}
