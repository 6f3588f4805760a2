//! Titanic (9/TSP) against the Guide's real programs (`../shared/guide`): the Guide's
//! `titanic.py` with pirate's broker, worker and `client --titanic`, and the Guide's C++
//! `ticlient` with `pirate titanic`, behind pirate's broker and behind the Guide's mdbroker
//! (Python and C++) with the Guide's mdworker.
//!
//! The Guide's `titanic.cpp` is tested only for what it can do (store, `titanic.reply`,
//! `titanic.close`): it cannot deliver a request through any broker, the Guide's own included,
//! because `s_service_success` keeps `pop_front().c_str()` of a temporary as the service name,
//! so `mmi.service` is asked about freed memory ("service not available: ") and the request
//! stays pending forever. The Guide has no Python ticlient.

mod common;

use common::guide::{self, Lang};
use common::*;

const COUNT: usize = 3;

/// Waits until `broker` (pirate's) has a worker for each of Titanic's three services.
fn wait_titanic_services(broker: &Proc) {
    for service in ["titanic.request", "titanic.reply", "titanic.close"] {
        wait_service_workers(broker, service, 1);
    }
}

fn echo_worker(port: u16) -> Proc {
    service_worker("echo", &endpoint(port), &[])
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

/// The UUID Titanic gave `client`'s request, from its `stored the request as UUID` line.
fn stored_uuid(client: &Proc) -> String {
    client
        .stderr
        .text()
        .split("stored the request as ")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .expect("the client names the stored request's UUID")
        .to_string()
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

/// The Guide's `titanic.py` on a broker at `port`, its store in `scratch/store`. The store
/// must not exist yet: titanic.py creates its `queue` file only with the directory, and its
/// dispatcher dies on opening a missing one (`open(queue_filename, 'rb+')`).
fn python_titanic(port: u16, scratch: &std::path::Path) -> Option<Proc> {
    let connect = endpoint(port);
    let store = scratch.join("store");
    guide::python(
        "titanic",
        &[],
        &[
            ("ZG_CONNECT", &connect),
            ("ZG_DIR", store.to_str().unwrap()),
        ],
    )
}

/// The Guide's `titanic.py` between pirate's client and pirate's worker, through pirate's
/// broker: once with the worker already there, once with the requests stored before any
/// worker exists (titanic.py's dispatcher asks `mmi.service` every second and sends them when
/// the worker registers).
#[test]
fn python_titanic_serves_pirate_client_through_pirate_broker_and_worker() {
    let (broker, port) = start_broker(&[]);
    let dir = guide::scratch_dir("titanic-py");
    let Some(_titanic) = python_titanic(port, &dir) else {
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
    let Some(_broker) = guide::mdbroker(lang, port) else {
        return;
    };
    let Some(_worker) = guide::mdworker(lang, port) else {
        return;
    };
    let dir = guide::scratch_dir(&format!("titanic-{lang:?}-mdbroker"));
    let _titanic = pirate_titanic(port, &dir);
    let what = format!("pirate titanic, {lang:?} mdbroker and mdworker");
    ticlient_is_answered(port, &what);
    sequence_answered(titanic_client(port), &what);
    let _ = std::fs::remove_dir_all(&dir);
}

combinations! {
    pirate_titanic_with_guide_broker;
    pirate_titanic_works_with_the_python_mdbroker_and_mdworker: Lang::Python;
    pirate_titanic_works_with_the_cpp_mdbroker_and_mdworker: Lang::Cpp;
}

/// What Titanic is for, with the Guide's: a request stored by titanic.py, which is then
/// killed (-9) before any worker exists, is sent once titanic.py is started again on the same
/// store and a worker appears; `pirate client --titanic`, polling `titanic.reply` all along
/// (its polls wait in the broker or time out and are retried while no Titanic is there),
/// gets the reply.
#[test]
fn a_request_stored_by_python_titanic_survives_its_kill_and_restart() {
    let (broker, port) = start_broker(&[]);
    let dir = guide::scratch_dir("titanic-py-restart");
    let Some(titanic) = python_titanic(port, &dir) else {
        return;
    };
    wait_titanic_services(&broker);
    let connect = endpoint(port);
    let client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--titanic",
            "--service",
            "echo",
            "--connect",
            &connect,
            "--poll-interval",
            "100ms",
            "--timeout",
            "1s",
            "--retries",
            "30",
            "kept on disk",
        ],
    );
    client.wait_stderr("titanic stored the request");
    // titanic.py answers 200 from its request thread, and its dispatcher appends the UUID to
    // `queue` just after (the Guide's own window: a kill in between loses the request). Wait
    // for that line, then kill.
    let uuid = stored_uuid(&client);
    let queue = dir.join("store").join("queue");
    client.wait_for("titanic.py to queue the request", |_, _| {
        std::fs::read_to_string(&queue).is_ok_and(|q| q.contains(&format!("-{uuid}")))
    });
    titanic.signal(libc::SIGKILL);
    assert!(process_gone(titanic.pid()), "titanic.py survived SIGKILL");
    drop(titanic);
    let Some(_titanic) = python_titanic(port, &dir) else {
        return;
    };
    let _worker = echo_worker(port);
    let mut client = client;
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(
        replies(&client.stdout.text()),
        ["kept on disk"],
        "{}",
        client.stderr.text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the Guide's `titanic.cpp` can do (its dispatcher cannot deliver, see the top of this
/// file): its `titanic.request` stores `pirate client --titanic`'s request and answers 200 and
/// a UUID (the request file appears in `ZG_DIR`), its `titanic.reply` answers 300 (pending)
/// for it, and its `titanic.close` answers 200 and deletes the file.
#[test]
fn cpp_titanic_stores_pirate_clients_request_and_answers_reply_and_close() {
    let (broker, port) = start_broker(&[]);
    let scratch = guide::scratch_dir("titanic-cpp");
    let store = scratch.join("store");
    let connect = endpoint(port);
    let Some(_titanic) = guide::cpp(
        "titanic",
        &[],
        &[
            ("ZG_CONNECT", &connect),
            ("ZG_DIR", store.to_str().unwrap()),
        ],
    ) else {
        return;
    };
    wait_titanic_services(&broker);
    let client = spawn(
        "client",
        &[
            "client",
            "--titanic",
            "--service",
            "echo",
            "--connect",
            &connect,
            "kept",
        ],
    );
    client.wait_stderr("titanic stored the request");
    let uuid = stored_uuid(&client);
    drop(client);
    let request_file = store.join(format!("{uuid}.req"));
    assert!(request_file.is_file(), "no {}", request_file.display());
    for (service, status) in [("titanic.reply", "300"), ("titanic.close", "200")] {
        let (code, out, err) = run(
            &["client", "--service", service, "--connect", &connect, &uuid],
            None,
        );
        assert_eq!(code, 0, "{service}: {err}");
        assert_eq!(out, format!("{status}\n"), "{service}: {err}");
    }
    assert!(!request_file.exists(), "titanic.close left the request");
    let _ = std::fs::remove_dir_all(&scratch);
}
