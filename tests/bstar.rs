//! Binary Star end to end: `pirate server --primary` and `--backup` as real processes on
//! loopback, with a failing-over `pirate client` (several `--connect`), killed, frozen and
//! restarted nodes. Heartbeat 100 ms: a silent peer is dead after 200 ms.

mod common;

use std::time::Duration;

use common::*;

/// A primary and a backup, waited for until they have settled as ACTIVE and PASSIVE.
fn start_pair(ports: &BstarPorts) -> (Proc, Proc) {
    let primary = start_bstar_node(ports, true, BSTAR_HB, &[]);
    let backup = start_bstar_node(ports, false, BSTAR_HB, &["-v"]);
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stderr("state: PASSIVE");
    (primary, backup)
}

/// Client flags that fail over from the primary to the backup: the attempt timeout plus the
/// settle delay (500 ms) exceed the peer expiry (200 ms), so the first attempt at the backup
/// after the primary died is a successful client vote.
fn client_args<'a>(ports: &'a BstarPorts, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "client",
        "--json",
        "--connect",
        ports.primary.as_str(),
        "--connect",
        ports.backup.as_str(),
        "--settle",
        "200ms",
        "--timeout",
        "300ms",
        "--retries",
        "3",
    ];
    args.extend_from_slice(extra);
    args
}

/// The JSON reply events of a client run.
fn reply_events(stdout: &str) -> Vec<serde_json::Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|l| l["event"] == "reply")
        .collect()
}

#[test]
fn the_pair_settles_as_active_primary_and_passive_backup_and_serves_from_the_primary() {
    let ports = BstarPorts::new();
    let (primary, backup) = start_pair(&ports);
    let (code, out, err) = run(&client_args(&ports, &["--count", "5"]), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(5));
    assert_eq!(summary(&out)["retries"], 0);
    assert_eq!(bstar_states(&primary), ["PRIMARY", "ACTIVE"]);
    assert_eq!(bstar_states(&backup), ["BACKUP", "PASSIVE"]);
    assert!(!backup.stderr.text().contains("normal request"));
}

#[test]
fn killing_the_active_primary_lets_the_backup_take_over_and_replies_stay_in_order() {
    let ports = BstarPorts::new();
    let (mut primary, backup) = start_pair(&ports);
    let mut client = spawn_with_stdin("client", &client_args(&ports, &[]), true);
    client.write_stdin("1\n2\n3\n");
    client.wait_for("three replies", |o, _| {
        o.matches(r#""event":"reply""#).count() == 3
    });

    primary.signal(libc::SIGKILL);
    primary.wait();
    client.write_stdin("4\n5\n6\n");
    client.close_stdin();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let out = client.stdout.text();
    assert_eq!(replies(&out), sequence(6), "every reply, in order");
    // The documented bound: the first request after the kill fails once at the dead primary
    // (one timeout), and its first attempt at the backup is the vote that makes it active.
    let events = reply_events(&out);
    assert_eq!(events[3]["attempts"], 2, "{out}");
    assert!(events[4..].iter().all(|e| e["attempts"] == 1), "{out}");
    assert_eq!(summary(&out)["retries"], 1);
    backup.wait_stderr("failover successful, ready as active");
    assert_eq!(bstar_states(&backup), ["BACKUP", "PASSIVE", "ACTIVE"]);
}

#[test]
fn json_output_carries_every_state_change_as_a_bstar_state_event() {
    let ports = BstarPorts::new();
    let mut primary = start_bstar_node(&ports, true, BSTAR_HB, &[]);
    let backup = start_bstar_node(&ports, false, BSTAR_HB, &["--json"]);
    backup.wait_stdout(r#""event":"bstar_state","state":"PASSIVE""#);
    primary.signal(libc::SIGKILL);
    primary.wait();
    let (code, _, err) = run(&client_args(&ports, &["--count", "1"]), None);
    assert_eq!(code, 0, "{err}");
    backup.wait_stdout(r#""event":"bstar_state","state":"ACTIVE""#);
    let states: Vec<(String, String, String)> = json_lines(&backup.stdout.text())
        .iter()
        .filter(|l| l["event"] == "bstar_state")
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or("-").to_string();
            (text("from"), text("state"), text("reason"))
        })
        .collect();
    let expected = [
        ("-", "BACKUP", "started"),
        (
            "BACKUP",
            "PASSIVE",
            "connected to primary (active), ready as passive",
        ),
        ("PASSIVE", "ACTIVE", "failover successful, ready as active"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(states, expected);
    // The human lines stay on stderr, the same as without --json.
    assert_eq!(bstar_states(&backup), ["BACKUP", "PASSIVE", "ACTIVE"]);
}

#[test]
fn a_restarted_primary_comes_back_passive_and_never_serves_beside_the_active_backup() {
    let ports = BstarPorts::new();
    let (mut primary, backup) = start_pair(&ports);
    primary.signal(libc::SIGKILL);
    primary.wait();
    let (code, out, err) = run(&client_args(&ports, &["--count", "2"]), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(2));
    backup.wait_stderr("state: ACTIVE");

    // Restart the primary and at once send it a request: the start guard refuses it, then
    // the primary hears the active backup and goes passive, still refusing.
    let restarted = start_bstar_node(&ports, true, BSTAR_HB, &["-v"]);
    let primary_only = [
        "client",
        "--json",
        "--connect",
        ports.primary.as_str(),
        "--timeout",
        "300ms",
        "--retries",
        "2",
        "--count",
        "1",
    ];
    let (code, out, _) = run(&primary_only, None);
    assert_eq!(code, 69, "the restarted primary must not answer: {out}");
    restarted.wait_stderr("connected to backup (active), ready as passive");
    assert_eq!(bstar_states(&restarted), ["PRIMARY", "PASSIVE"]);
    assert!(!restarted.stderr.text().contains("normal request"));

    // Clients that try the primary first end up at the backup.
    let (code, out, err) = run(&client_args(&ports, &["--count", "3"]), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(3));
    assert_eq!(bstar_states(&backup), ["BACKUP", "PASSIVE", "ACTIVE"]);
    assert_eq!(
        bstar_states(&restarted),
        ["PRIMARY", "PASSIVE"],
        "one active only"
    );
}

#[test]
fn a_lone_backup_never_serves() {
    let ports = BstarPorts::new();
    let backup = start_bstar_node(&ports, false, BSTAR_HB, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let args = [
        "client",
        "--connect",
        ports.backup.as_str(),
        "--timeout",
        "300ms",
        "--retries",
        "1",
        "--count",
        "1",
    ];
    let (code, _, _) = run(&args, None);
    assert_eq!(code, 69);
    backup.wait_stderr("refusing clients: a backup serves only after the primary");
    assert_eq!(bstar_states(&backup), ["BACKUP"]);
}

#[test]
fn a_lone_primary_serves_after_its_start_guard() {
    let ports = BstarPorts::new();
    let primary = start_bstar_node(&ports, true, BSTAR_HB, &[]);
    let (code, out, err) = run(&client_args(&ports, &["--count", "3"]), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(3));
    primary.wait_stderr("no peer state for 200 ms, ready as active");
}

#[test]
fn two_primaries_configured_against_each_other_stop_with_a_usage_error() {
    let ports = BstarPorts::new();
    // The node that hears the conflict first announces it for two heartbeats, which must
    // outlast the other's SUB reconnecting to it (libzmq retries every 100 ms).
    const SLOW_HB: &str = "300ms";
    let mut a = start_bstar_node(&ports, true, SLOW_HB, &[]);
    // A second primary on the backup's endpoints.
    let (_, bind, state, peer_state) = ports.node(false);
    let backup_as_primary = bstar_node_args("server", true, bind, state, peer_state, SLOW_HB);
    let mut b = spawn("second primary", &backup_as_primary);
    for node in [&mut a, &mut b] {
        assert_eq!(node.code(), 2, "{}", node.stderr.text());
        let err = node.stderr.text();
        let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "{err}");
        assert!(error_lines[0].contains("peer is a primary too"), "{err}");
        assert!(error_lines[0].contains("--backup"), "{err}");
    }
}

#[test]
fn with_on_split_stop_a_frozen_active_node_that_thaws_after_a_takeover_stops_both_nodes() {
    // The Guide's rule, kept behind --on-split stop: the split brain Binary Star cannot
    // prevent (the active node froze past the expiry and a client voted at the backup) is
    // detected and both nodes stop. (The default heals it: tests/bstar_split.rs.)
    let ports = BstarPorts::new();
    let stop = ["--on-split", "stop"];
    let mut primary = start_bstar_node(&ports, true, BSTAR_HB, &stop);
    let mut backup = start_bstar_node(&ports, false, BSTAR_HB, &stop);
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stderr("state: PASSIVE");
    primary.signal(libc::SIGSTOP);
    let (code, out, err) = run(&client_args(&ports, &["--count", "1"]), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(1));
    backup.wait_stderr("failover successful");
    primary.signal(libc::SIGCONT);
    for node in [&mut primary, &mut backup] {
        assert_eq!(node.code(), 69, "{}", node.stderr.text());
        assert!(
            node.stderr
                .text()
                .contains("error: binary star: the peer is active too"),
            "{}",
            node.stderr.text()
        );
    }
}
