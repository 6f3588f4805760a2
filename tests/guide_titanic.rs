//! Titanic (9/TSP) against the Guide's real programs (`../shared/guide`): the Guide's
//! `titanic.py` with pirate's broker, worker and `client --titanic`, and the Guide's C++
//! `ticlient` with `pirate titanic`, behind pirate's broker and behind the Guide's mdbroker
//! (Python and C++) with the Guide's mdworker.
//!
//! Not here: the Guide's `titanic.cpp` cannot deliver a request through any broker, the
//! Guide's own included: `s_service_success` keeps `pop_front().c_str()` of a temporary as the
//! service name, so `mmi.service` is asked about freed memory ("service not available: ") and
//! the request stays pending forever. The Guide has no Python ticlient.

mod common;

use common::guide::{self, Lang};
use common::*;

const COUNT: usize = 3;

/// Waits until `broker` (pirate's) has a worker for each of Titanic's three services.
fn wait_titanic_services(broker: &Proc) {
    for service in ["titanic.request", "titanic.reply", "titanic.close"] {
        let needle = format!("ready for service {service}");
        broker.wait_for(&format!("a worker for {service}"), |_, e| {
            e.contains(&needle)
        });
    }
}

fn echo_worker(port: u16) -> Proc {
    let connect = endpoint(port);
    spawn(
        "worker",
        &[
            "worker",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--connect",
            &connect,
        ],
    )
}

/// `pirate client --titanic --service echo --count N`: each request stored by Titanic, its
/// reply fetched with `titanic.reply` and checked against the request, in order.
fn titanic_client(port: u16) -> Proc {
    let connect = endpoint(port);
    let count = COUNT.to_string();
    spawn(
        "client",
        &[
            "client",
            "--json",
            "--titanic",
            "--service",
            "echo",
            "--connect",
            &connect,
            "--count",
            &count,
            "--poll-interval",
            "100ms",
            "--timeout",
            "5s",
        ],
    )
}

fn sequence_answered(mut client: Proc, what: &str) {
    assert_eq!(client.code(), 0, "{what}: {}", client.stderr.text());
    assert_eq!(
        replies(&client.stdout.text()),
        sequence(COUNT as u64),
        "{what}: {}",
        client.stderr.text()
    );
}

/// The Guide's `titanic.py` between pirate's client and pirate's worker, through pirate's
/// broker: once with the worker already there, once with the requests stored before any
/// worker exists (titanic.py's dispatcher asks `mmi.service` every second and sends them when
/// the worker registers).
#[test]
fn python_titanic_serves_pirate_client_through_pirate_broker_and_worker() {
    let (broker, port) = start_broker(&[]);
    let dir = guide::scratch_dir("titanic-py");
    let connect = endpoint(port);
    let Some(_titanic) = guide::python(
        "titanic",
        &[],
        &[("ZG_CONNECT", &connect), ("ZG_DIR", dir.to_str().unwrap())],
    ) else {
        return;
    };
    wait_titanic_services(&broker);

    // No worker yet: the client's first request is stored and stays pending (300).
    let client = titanic_client(port);
    client.wait_stderr("titanic stored the request");
    let worker = echo_worker(port);
    sequence_answered(client, "titanic.py, worker started late");

    sequence_answered(titanic_client(port), "titanic.py, worker there");
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Guide's `ticlient` (C++) sends "Hello world" to `echo` through `titanic.request`, polls
/// `titanic.reply` until 200, prints "Reply: Hello world", closes the request and exits 0 (it
/// exits 1 on a 400 or 500).
fn ticlient_is_answered(port: u16, what: &str) {
    let connect = endpoint(port);
    let Some(mut client) = guide::cpp("ticlient", &[], &[("ZG_CONNECT", &connect)]) else {
        return;
    };
    let status = client.wait();
    let said = format!("{}{}", client.stdout.text(), client.stderr.text());
    assert!(status.success(), "{what}: ticlient: {said}");
    assert!(
        said.contains("I: request UUID: "),
        "{what}: ticlient: {said}"
    );
    assert!(
        client
            .stdout
            .lines()
            .iter()
            .any(|l| l == "Reply: Hello world"),
        "{what}: ticlient: {said}"
    );
}

fn pirate_titanic(port: u16, dir: &std::path::Path) -> Proc {
    let connect = endpoint(port);
    let titanic = spawn(
        "titanic",
        &[
            "titanic",
            "--connect",
            &connect,
            "--dir",
            dir.to_str().unwrap(),
            "--retry-interval",
            "200ms",
        ],
    );
    titanic.wait_stderr("ready for service titanic.close");
    titanic
}

#[test]
fn the_cpp_ticlient_is_answered_by_pirate_titanic() {
    let (broker, port) = start_broker(&[]);
    let _worker = echo_worker(port);
    broker.wait_stderr("ready for service echo");
    let dir = guide::scratch_dir("titanic-ticlient");
    let _titanic = pirate_titanic(port, &dir);
    wait_titanic_services(&broker);
    ticlient_is_answered(port, "pirate broker");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pirate titanic` as a worker and a client of the Guide's mdbroker, with the Guide's
/// mdworker as the echo service: the Guide's ticlient and `pirate client --titanic` are
/// answered.
fn pirate_titanic_with_guide_broker(lang: Lang) {
    let port = free_port();
    let bind = endpoint(port);
    let Some(_broker) = guide::start(lang, "mdbroker", &[], &[("ZG_BIND", &bind)]) else {
        return;
    };
    guide::wait_bound(port);
    let Some(_worker) = guide::start(lang, "mdworker", &[], &[("ZG_CONNECT", &bind)]) else {
        return;
    };
    let dir = guide::scratch_dir(&format!("titanic-{lang:?}-mdbroker"));
    let _titanic = pirate_titanic(port, &dir);
    let what = format!("pirate titanic, {lang:?} mdbroker and mdworker");
    ticlient_is_answered(port, &what);
    sequence_answered(titanic_client(port), &what);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pirate_titanic_works_with_the_python_mdbroker_and_mdworker() {
    pirate_titanic_with_guide_broker(Lang::Python);
}

#[test]
fn pirate_titanic_works_with_the_cpp_mdbroker_and_mdworker() {
    pirate_titanic_with_guide_broker(Lang::Cpp);
}
