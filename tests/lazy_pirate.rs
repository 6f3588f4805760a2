//! Lazy Pirate end to end: `pirate server` and `pirate client` as real processes on loopback.

mod common;

use common::*;

fn connect(port: u16) -> String {
    endpoint(port)
}

#[test]
fn echoes_arguments_one_reply_per_line() {
    let (_server, port) = start_server(&[]);
    let (code, out, err) = run(
        &["client", "--connect", &connect(port), "hello", "world"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\nworld\n");
}

#[test]
fn echoes_stdin_lines_and_quiet_keeps_stderr_empty() {
    let (_server, port) = start_server(&[]);
    let (code, out, err) = run(
        &["client", "-q", "--connect", &connect(port)],
        Some("one\ntwo\nthree\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "one\ntwo\nthree\n");
    assert_eq!(err, "", "-q prints nothing but data and errors");
}

#[test]
fn exec_runs_a_command_per_request() {
    let (_server, port) = start_server(&["--exec", "tr a-z A-Z"]);
    let (code, out, _) = run(
        &["client", "--connect", &connect(port), "shout", "it"],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out, "SHOUT\nIT\n");
}

#[test]
fn a_failing_exec_command_replies_with_an_error_and_the_server_keeps_serving() {
    let (_server, port) = start_server(&["--exec", "exit 4"]);
    let (code, out, _) = run(&["client", "--connect", &connect(port), "a", "b"], None);
    assert_eq!(code, 0);
    assert_eq!(out, "error: `exit 4` exited with status 4\n".repeat(2));
}

#[test]
fn verbose_traces_frames_in_the_guide_dump_style() {
    let (_server, port) = start_server(&[]);
    let (code, out, err) = run(
        &["client", "-v", "--connect", &connect(port), "hello"],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out, "hello\n", "traces never go to stdout");
    // The request id envelope (16 hex digits, the delimiter), then the body; the REP
    // server echoes the envelope.
    for direction in ["out", "in "] {
        let at = err
            .find(&format!("client {direction}\n[016] "))
            .unwrap_or_else(|| panic!("no {direction} trace: {err}"));
        assert!(
            err[at..].contains("\n[000] \n[005] hello"),
            "{direction}: {err}"
        );
    }
}

#[test]
fn a_crashing_server_makes_the_client_abandon_with_69() {
    let (mut server, port) = start_server(&["--crash-after", "5"]);
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &connect(port),
            "--count",
            "10",
            "--timeout",
            "500ms",
            "--retries",
            "3",
        ],
        None,
    );
    assert_eq!(code, 69, "{err}");
    assert_eq!(out, "1\n2\n3\n4\n5\n", "replies 1..5, then nothing");
    assert_eq!(err.matches("no response from server, retrying").count(), 2);
    assert!(
        err.contains("E: server seems to be offline, abandoning"),
        "{err}"
    );
    assert!(
        !err.contains("replies"),
        "no progress bar when stderr is not a terminal"
    );
    let status = server.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "a crash is a real death"
    );
    assert!(server.stderr.text().contains("I: simulating a crash"));
}

#[test]
fn the_client_survives_a_server_killed_and_restarted() {
    let (mut server, port) = start_server(&["--work", "20ms"]);
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect(port),
            "--count",
            "20",
            "--timeout",
            "300ms",
            "--retries",
            "20",
        ],
    );
    client.wait_stdout(r#""seq":5,"#);
    server.signal(libc::SIGKILL);
    server.wait();
    let (_restarted, _) = {
        let bind = endpoint(port);
        let s = spawn("server2", &["server", "--bind", &bind]);
        s.wait_stderr("server on");
        (s, port)
    };
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let lines = json_lines(&client.stdout.text());
    let replies: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] == "reply")
        .map(|l| l["reply"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    assert_eq!(replies, expected, "every reply, in order, once");
    let summary = summary(&client.stdout.text());
    assert_eq!(summary["replied"], 20);
    assert_eq!(summary["mismatched"], 0);
    assert!(summary["retries"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["retries"], summary["reconnects"]);
}

#[test]
fn late_replies_from_a_stalling_server_are_never_taken_for_later_requests() {
    // A quarter of the cycles after the first stall 400ms, longer than the client's 250ms
    // timeout: their replies arrive late, at sockets the client already closed. (Stalls must
    // stay rare enough for the server to keep up with the resends, or Lazy Pirate's backlog
    // grows without bound, as the Guide warns.)
    let (_server, port) = start_server(&[
        "--overload-rate",
        "25%",
        "--overload-for",
        "400ms",
        "--faults-after",
        "1",
        "--seed",
        "11",
    ]);
    let (code, out, err) = run(
        &[
            "client",
            "--json",
            "--connect",
            &connect(port),
            "--count",
            "12",
            "--timeout",
            "250ms",
            "--retries",
            "10",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    let replies: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["event"] == "reply")
        .map(|l| {
            (
                l["request"].as_str().unwrap().to_string(),
                l["reply"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(replies.len(), 12);
    for (i, (request, reply)) in replies.iter().enumerate() {
        assert_eq!(request, &(i + 1).to_string());
        assert_eq!(reply, request);
    }
    let summary = summary(&out);
    assert!(
        summary["retries"].as_u64().unwrap() >= 1,
        "the seed stalls: {summary}"
    );
}

#[test]
fn a_wrong_reply_is_reported_and_never_accepted() {
    let (_server, port) = start_server(&["--exec", "echo wrong"]);
    let (code, out, err) = run(
        &[
            "client",
            "--json",
            "--connect",
            &connect(port),
            "--count",
            "3",
            "--timeout",
            "5s",
            "--retries",
            "2",
        ],
        None,
    );
    assert_eq!(code, 69, "{err}");
    let lines = json_lines(&out);
    assert!(lines.iter().all(|l| l["event"] != "reply"), "{out}");
    assert_eq!(lines.iter().filter(|l| l["event"] == "mismatch").count(), 2);
    assert!(
        err.contains("E: malformed reply from server: wrong"),
        "{err}"
    );
    let summary = summary(&out);
    assert_eq!(summary["mismatched"], 2);
    assert_eq!(summary["abandoned"], 1);
    assert_eq!(summary["outcome"], "abandoned");
}

/// The cycles on which a seeded server injected overloads, for a fixed 12-request run.
fn overload_cycles(seed: &str) -> Vec<u64> {
    let (mut server, port) = start_server(&[
        "--json",
        "--overload-rate",
        "0.5",
        "--overload-for",
        "1ms",
        "--faults-after",
        "0",
        "--seed",
        seed,
    ]);
    let (code, _, err) = run(
        &["client", "--connect", &connect(port), "--count", "12"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    server.signal(libc::SIGINT);
    assert_eq!(server.code(), 130);
    let out = server.stdout.text();
    let lines = json_lines(&out);
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines[0]["seed"].as_u64(), Some(seed.parse().unwrap()));
    lines
        .iter()
        .filter(|l| l["event"] == "fault")
        .map(|l| {
            assert_eq!(l["kind"], "overload");
            l["cycle"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn a_seed_replays_the_same_faults() {
    let a = overload_cycles("5");
    assert!(
        !a.is_empty() && a.len() < 12,
        "some but not all cycles: {a:?}"
    );
    assert_eq!(a, overload_cycles("5"));
    assert_ne!(a, overload_cycles("6"));
}

#[test]
fn bad_flags_and_values_exit_2_with_a_clear_message() {
    let (code, _, err) = run(&["client", "--no-such-flag"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["client", "--timeout", "2x", "hi"], None);
    assert_eq!(code, 2);
    assert!(err.contains("invalid duration '2x'"), "{err}");
    let (code, _, err) = run(&["server", "--crash-rate", "150%"], None);
    assert_eq!(code, 2);
    assert!(err.contains("not between 0 and 1"), "{err}");
    let (code, _, err) = run(&["client", "--retries", "0", "hi"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["client", "--connect", "nonsense", "hi"], None);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // Refused by the endpoint check before any socket exists.
    assert!(
        err.starts_with("error: invalid value 'nonsense' for '--connect <ENDPOINT>'"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_one_line_naming_the_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bind = endpoint(port);
    let (code, out, err) = run(&["server", "--bind", &bind], None);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot bind {bind}: address already in use"
        )),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_exits_69() {
    let port = free_port();
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &connect(port),
            "--timeout",
            "100ms",
            "--retries",
            "2",
            "hello",
        ],
        None,
    );
    assert_eq!(code, 69);
    assert_eq!(out, "");
    assert!(err.contains("abandoning"), "{err}");
    assert!(err.contains("abandoned 1"), "summary on stderr: {err}");
}

#[test]
fn json_lines_all_parse_and_end_with_the_summary() {
    let (_server, port) = start_server(&[]);
    let (code, out, _) = run(
        &[
            "client",
            "--json",
            "--connect",
            &connect(port),
            "--count",
            "5",
        ],
        None,
    );
    assert_eq!(code, 0);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines.iter().filter(|l| l["event"] == "reply").count(), 5);
    let s = summary(&out);
    for field in [
        "requests",
        "sent",
        "replied",
        "retries",
        "reconnects",
        "abandoned",
        "mismatched",
        "elapsed_ms",
    ] {
        assert!(s[field].is_number(), "summary field {field}: {s}");
    }
    for p in ["p50", "p90", "p99", "max"] {
        assert!(s["latency_ms"][p].as_f64().unwrap() > 0.0, "{s}");
    }
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["replied"], 5);
}

#[test]
fn ctrl_c_prints_a_partial_summary_and_exits_130() {
    let port = free_port();
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect(port),
            "--timeout",
            "60s",
            "hello",
        ],
    );
    client.wait_stdout(r#""event":"started""#);
    client.signal(libc::SIGINT);
    assert_eq!(client.code(), 130);
    let s = summary(&client.stdout.text());
    assert_eq!(s["outcome"], "interrupted");
    assert_eq!(s["replied"], 0);
    assert!(client.stderr.text().contains("summary: interrupted"));
}

#[test]
fn sigterm_stops_a_server_with_its_counters() {
    let (mut server, port) = start_server(&[]);
    let (code, _, _) = run(&["client", "--connect", &connect(port), "a", "b"], None);
    assert_eq!(code, 0);
    server.signal(libc::SIGTERM);
    assert_eq!(server.code(), 130);
    assert!(server
        .stderr
        .text()
        .contains("summary: requests 2, replied 2"));
}

#[test]
fn with_several_endpoints_the_client_fails_over_and_keeps_its_order() {
    let (mut first, p1) = start_server(&["--work", "10ms"]);
    let (second, p2) = start_server(&["-v", "--work", "10ms"]);
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect(p1),
            "--connect",
            &connect(p2),
            "--connect",
            &connect(p1),
            "--settle",
            "50ms",
            "--count",
            "30",
            "--timeout",
            "200ms",
            "--retries",
            "5",
        ],
    );
    client.wait_stdout(r#""seq":10,"#);
    first.signal(libc::SIGKILL);
    first.wait();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(replies(&client.stdout.text()), sequence(30));
    let err = client.stderr.text();
    assert!(
        err.contains(&format!("W: failing over to {}", connect(p2))),
        "{err}"
    );
    let s = summary(&client.stdout.text());
    assert_eq!(
        s["endpoint"],
        format!("{},{}", connect(p1), connect(p2)),
        "listed once each"
    );
    assert!(second.stderr.text().contains("normal request"));
}
