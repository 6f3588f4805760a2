//! `pirate bench` end to end: the load generator against a real broker and workers, a Lazy
//! Pirate server, a server that answers wrongly, an endpoint with nobody behind it, and bad
//! flag values. Assertions are on counts, order of percentiles and exit codes, never on speed.

mod common;

use common::*;

/// Runs `pirate bench --json ARGS`: (exit code, the one JSON record, stderr).
fn bench(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["bench", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all, None);
    let records = json_lines(&out);
    assert_eq!(
        records.len(),
        1,
        "one JSON record, got: {out}\nstderr: {err}"
    );
    (code, records[0].clone(), err)
}

fn ms(record: &serde_json::Value, p: &str) -> f64 {
    record["latency_ms"][p]
        .as_f64()
        .unwrap_or_else(|| panic!("no latency_ms.{p}: {record}"))
}

#[test]
fn two_clients_of_four_in_flight_get_every_reply_through_a_broker_and_two_workers() {
    let (_broker, port) = broker(&[]);
    let _w1 = mdp_worker("w1", port, "mdp", "echo", &[]);
    let _w2 = mdp_worker("w2", port, "mdp", "echo", &[]);
    let connect = endpoint(port);
    let (code, r, err) = bench(&[
        "--connect",
        &connect,
        "--service",
        "echo",
        "--clients",
        "2",
        "--window",
        "4",
        "--requests",
        "200",
        "--expect-echo",
        "--size",
        "32",
    ]);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["answered"], 200, "{r}");
    assert_eq!(r["requests"], 200, "{r}");
    assert_eq!(
        (r["lost"].as_u64(), r["wrong"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(
        (r["clients"].as_u64(), r["window"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(r["size"], 32);
    assert_eq!(r["verdict"], "completed");
    let (p50, p90, p99, max) = (ms(&r, "p50"), ms(&r, "p90"), ms(&r, "p99"), ms(&r, "max"));
    assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= max, "{r}");
    assert!(r["req_per_s"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn a_timed_run_against_a_lazy_pirate_server_answers_every_request_it_sent() {
    let (_server, port) = start_server(&[]);
    let connect = endpoint(port);
    let (code, r, err) = bench(&[
        "--connect",
        &connect,
        "--duration",
        "300ms",
        "--window",
        "3",
        "--size",
        "1k",
        "--expect-echo",
    ]);
    assert_eq!(code, 0, "{r}\n{err}");
    let answered = r["answered"].as_u64().unwrap();
    assert!(answered > 0, "{r}");
    assert_eq!(r["requests"].as_u64(), Some(answered), "{r}");
    assert_eq!(r["size"], 1000);
    assert!(r["elapsed_ms"].as_f64().unwrap() >= 300.0, "{r}");
}

#[test]
fn majordomo_0_2_through_the_broker_works_too_and_the_human_table_names_the_figures() {
    let (_broker, port) = broker(&[]);
    let _w = mdp_worker("w", port, "mdp2", "echo", &[]);
    let connect = endpoint(port);
    let args = [
        "bench",
        "--connect",
        &connect,
        "--service",
        "echo",
        "--protocol",
        "mdp2",
        "--requests",
        "50",
        "--window",
        "5",
    ];
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("answered    50 of 50"), "{out}");
    assert!(out.contains("req/s") && out.contains("p99"), "{out}");
    // Not a terminal: no progress bar on stderr.
    assert!(!err.contains("replies,"), "{err}");
}

#[test]
fn replies_that_are_not_echoes_are_counted_wrong_and_fail_the_run() {
    let (_server, port) = start_server(&["--exec", "echo nope"]);
    let connect = endpoint(port);
    let (code, r, _) = bench(&[
        "--connect",
        &connect,
        "--requests",
        "3",
        "--expect-echo",
        "--timeout",
        "1s",
        "--retries",
        "2",
    ]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["verdict"], "failed", "{r}");
    assert!(r["wrong"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["answered"], 0, "{r}");
}

#[test]
fn nothing_behind_the_endpoint_exits_69_after_the_short_timeout() {
    let connect = endpoint(free_port());
    let (code, r, _) = bench(&[
        "--connect",
        &connect,
        "--clients",
        "3",
        "--window",
        "2",
        "--requests",
        "100",
        "--timeout",
        "100ms",
        "--retries",
        "2",
    ]);
    assert_eq!(code, 69, "{r}");
    assert_eq!(r["verdict"], "unreachable", "{r}");
    assert_eq!(r["answered"], 0, "{r}");
    assert!(r["lost"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn ctrl_c_ends_a_long_run_with_a_partial_record_and_exit_130() {
    let (server, port) = start_server(&["--json"]);
    let connect = endpoint(port);
    let mut bench = spawn(
        "bench",
        &["bench", "--json", "--connect", &connect, "--duration", "1m"],
    );
    // Let it answer something first: then it is running, its Ctrl-C handler installed (a
    // fixed 300 ms pause sometimes sent the signal before, on a loaded machine).
    server.wait_stdout(r#""event":"served""#);
    bench.signal(libc::SIGINT);
    assert_eq!(bench.code(), 130);
    let records = json_lines(&bench.stdout.text());
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["verdict"], "interrupted", "{}", records[0]);
}

#[test]
fn bad_values_are_usage_errors_on_one_line() {
    for bad in [
        &["--clients", "0"][..],
        &["--window", "0"],
        &["--requests", "0"],
        &["--duration", "0s"],
        &["--requests", "5", "--duration", "1s"],
        &["--size", "1GiB"],
        &["--size", "ten"],
        &["--service", "echo", "--protocol", "lazy"],
        &["--protocol", "mdp"],
        &["--connect", "udp://x:1"],
    ] {
        let mut args = vec!["bench"];
        args.extend_from_slice(bad);
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 2, "{bad:?}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        assert!(out.is_empty(), "{bad:?}: {out}");
    }
}
