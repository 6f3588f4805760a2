//! A client pointed at a peer that speaks another protocol says so and exits 76 (see
//! `pirate::error::EXIT_PROTOCOL`), instead of "offline" (a bare client at a broker) or a
//! silent pass (a Majordomo client at an echo server); a worker's log says what it knows.

mod common;

use common::guide::{self, Lang};
use common::*;

const PROTOCOL: i32 = 76;

/// A bare client at `pirate broker`: the broker answers its request (it has no Majordomo
/// header) with a 7/MDP REPLY, and the client stops at the first answer, naming what it met.
#[test]
fn a_bare_client_at_a_pirate_broker_is_told_it_is_a_broker() {
    let (broker, port) = start_broker(&[]);
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &endpoint(port),
            "--timeout",
            "5s",
            "--retries",
            "3",
            "hello",
        ],
        None,
    );
    assert_eq!(code, PROTOCOL, "{err}");
    assert_eq!(out, "", "no reply is printed");
    assert!(
        err.contains("answered in Majordomo (MDPC01): it is a Majordomo broker")
            && err.contains("--service NAME"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "it did not retry: {err}");
    broker.wait_for("the broker's not-MDP line", |_, e| e.contains("not MDP"));
}

/// A bare client at the Guide's real mdbroker.py, which logs "invalid message" and answers
/// nothing: all the client can know is that nothing answered, and it says the port may be a
/// broker.
#[test]
fn a_bare_client_at_a_silent_broker_is_offline_with_a_hint() {
    let port = free_port();
    let bind = format!("tcp://*:{port}");
    let Some(broker) = guide::start(Lang::Python, "mdbroker", &[], &[("ZG_BIND", &bind)]) else {
        return;
    };
    broker.wait_for("mdbroker.py to bind", |o, e| {
        o.contains("is active") || e.contains("is active")
    });
    let (code, _, err) = run(
        &[
            "client",
            "--connect",
            &endpoint(port),
            "--timeout",
            "300ms",
            "--retries",
            "2",
            "hello",
        ],
        None,
    );
    assert_eq!(code, 69, "{err}");
    assert!(
        err.contains(
            "server seems to be offline, abandoning (nothing answered: if the port is a \
             Majordomo broker, use --service NAME)"
        ),
        "{err}"
    );
}

/// A Majordomo client at a plain echo server: the echo of its `mmi.correlate` question is the
/// question itself, so it stops there instead of printing its request as a reply.
#[test]
fn a_majordomo_client_at_an_echo_server_fails_instead_of_passing() {
    let (_server, port) = start_server(&[]);
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &endpoint(port),
            "--service",
            "nosuch",
            "--timeout",
            "5s",
            "hello",
        ],
        None,
    );
    assert_eq!(code, PROTOCOL, "{err}");
    assert_eq!(out, "", "the echo is not printed as a reply");
    assert!(
        err.contains("echoed the question mmi.correlate back: it is not a Majordomo broker"),
        "{err}"
    );
}

/// The same client at a real broker with an echo worker is served: the check does not fire
/// on a broker's answer (`200` to mmi.correlate).
#[test]
fn a_majordomo_client_at_a_broker_is_still_served() {
    let (_broker, port) = start_broker(&[]);
    let connect = endpoint(port);
    let _worker = spawn(
        "worker",
        &[
            "worker",
            "--protocol",
            "mdp",
            "--connect",
            &connect,
            "--service",
            "echo",
        ],
    );
    let (code, out, err) = run(
        &[
            "client",
            "--connect",
            &connect,
            "--service",
            "echo",
            "hello",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\n");
}

/// A worker with no broker says it sent READY and waits; with one, that it registered (on the
/// broker's first heartbeat), and "broker", not "queue", when it loses it.
#[test]
fn a_worker_logs_what_it_knows_of_its_broker() {
    let port = free_port();
    let connect = endpoint(port);
    let mut worker = spawn(
        "worker",
        &[
            "worker",
            "--protocol",
            "mdp",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--heartbeat",
            "100ms",
        ],
    );
    worker.wait_stderr(&format!(
        "READY sent to {connect} for service echo; waiting for the broker"
    ));
    worker.wait_stderr("heartbeat failure, can't reach the broker");
    assert!(!worker.stderr.text().contains("registered"));
    let bind = format!("tcp://*:{port}");
    let _broker = spawn(
        "broker",
        &["broker", "--bind", &bind, "--heartbeat", "100ms"],
    );
    worker.wait_stderr(&format!("registered with the broker at {connect}"));
    worker.signal(libc::SIGINT);
    worker.code();
}

/// A Paranoid Pirate worker says "queue".
#[test]
fn a_paranoid_worker_logs_the_queue() {
    let (_queue, _, back) = start_queue(&["--heartbeat", "100ms"]);
    let connect = endpoint(back);
    let mut worker = spawn(
        "worker",
        &["worker", "--connect", &connect, "--heartbeat", "100ms"],
    );
    worker.wait_stderr(&format!("READY sent to {connect}; waiting for the queue"));
    worker.wait_stderr(&format!("registered with the queue at {connect}"));
    worker.signal(libc::SIGINT);
    worker.code();
}
