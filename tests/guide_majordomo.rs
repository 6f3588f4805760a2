//! Majordomo (7/MDP 0.1, 8/MMI) against the Guide's real programs (`../shared/guide`):
//! `pirate broker` with the Guide's mdworker, mdclient, mdclient2 and mmiecho, and `pirate
//! worker` and `pirate client` with the Guide's mdbroker, in Python and C++: requests and MMI,
//! many in flight, heartbeats past the 7.5 s expiry, and a restart of the broker either way.
//!
//! The Guide's clients count replies and assert on the header (`mdcliapi.py`: `assert
//! MDP.C_CLIENT == header`, `assert service == reply_service`) but never look at the body, so
//! they run with `-v` and the test reads the messages they dumped: every request and every
//! reply must be exactly `["MDPC01"]["echo"]["Hello world"]` (with `mdcliapi2`, a DEALER, an
//! empty frame first). `pirate client --count N` checks each body itself.

mod common;

use common::guide::{self, Lang};
use common::*;

const COUNT: usize = 5;

/// A pirate broker at the Guide's timing (heartbeat 2500 ms, liveness 3), as the Guide's
/// workers expect: a shorter one would expire them between their heartbeats.
fn guide_timed_broker() -> (Proc, u16) {
    start_broker(&[])
}

/// `pirate client --service echo --count N` through a broker on `port`: every reply is the
/// request, in order.
fn pirate_client_gets_the_sequence(port: u16, what: &str) {
    let count = COUNT.to_string();
    let (code, out, err) = run(
        &[
            "client",
            "--json",
            "--service",
            "echo",
            "--connect",
            &endpoint(port),
            "--count",
            &count,
            "--timeout",
            "5s",
        ],
        None,
    );
    assert_eq!(code, 0, "{what}: {err}");
    assert_eq!(replies(&out), sequence(COUNT as u64), "{what}: {err}");
}

/// Runs the Guide's `client` (mdclient or mdclient2) with `-v` against a broker on `port`
/// until it exits, and checks what it says and every message it dumped.
fn guide_client_is_answered(lang: Lang, client: &str, port: u16) {
    let connect = endpoint(port);
    let count = COUNT.to_string();
    let Some(mut proc) = guide::start(
        lang,
        client,
        &["-v"],
        &[("ZG_CONNECT", &connect), ("ZG_COUNT", &count)],
    ) else {
        return;
    };
    let status = proc.wait();
    let (out, err) = (proc.stdout.text(), proc.stderr.text());
    let said = format!("{out}{err}");
    assert!(status.success(), "{lang:?} {client}: {said}");
    // mdclient.py/.cpp and mdclient2.py: "%i requests/replies processed"; mdclient2.cpp:
    // "N replies received".
    let done = [
        format!("{COUNT} requests/replies processed"),
        format!("{COUNT} replies received"),
    ];
    assert!(
        done.iter().any(|d| out.contains(d.as_str())),
        "{lang:?} {client}: {said}"
    );
    let mut expected = vec![
        "MDPC01".to_string(),
        "echo".to_string(),
        "Hello world".to_string(),
    ];
    if client == "mdclient2" {
        expected.insert(0, String::new());
    }
    let mut messages = guide::dumped_messages(&out);
    messages.extend(guide::dumped_messages(&err));
    // Each request is dumped once when sent, and each reply once when received.
    assert_eq!(messages.len(), 2 * COUNT, "{lang:?} {client}: {said}");
    for message in &messages {
        assert_eq!(message, &expected, "{lang:?} {client}: {said}");
    }
}

/// The Guide's mdclient, then its mdclient2 (a DEALER), answered through a broker on `port`.
fn guide_clients_are_answered(lang: Lang, port: u16) {
    for client in ["mdclient", "mdclient2"] {
        guide_client_is_answered(lang, client, port);
    }
}

fn pirate_broker_routes_pirate_client_to_guide_mdworker(lang: Lang) {
    let (broker, port) = guide_timed_broker();
    let Some(_worker) = guide::mdworker(lang, port) else {
        return;
    };
    wait_service_workers(&broker, "echo", 1);
    pirate_client_gets_the_sequence(port, &format!("{lang:?} mdworker behind pirate broker"));
}

combinations! {
    pirate_broker_routes_pirate_client_to_guide_mdworker;
    pirate_broker_routes_pirate_client_to_the_python_mdworker: Lang::Python;
    pirate_broker_routes_pirate_client_to_the_cpp_mdworker: Lang::Cpp;
}

/// The Guide's mdclient and mdclient2 through `pirate broker`, answered by the Guide's own
/// mdworker of the same language (the whole chain but the broker is the Guide's) and then by
/// `pirate worker`.
fn guide_clients_through_pirate_broker(lang: Lang) {
    let (broker, port) = guide_timed_broker();
    {
        let Some(_worker) = guide::mdworker(lang, port) else {
            return;
        };
        wait_service_workers(&broker, "echo", 1);
        guide_clients_are_answered(lang, port);
    }
    // The Guide's worker was killed without a DISCONNECT: the broker holds it until it
    // expires, and would give it the next request. A second broker serves pirate's worker.
    let (broker, port) = guide_timed_broker();
    let connect = endpoint(port);
    let _worker = service_worker("echo", &connect, &[]);
    wait_service_workers(&broker, "echo", 1);
    guide_clients_are_answered(lang, port);
}

combinations! {
    guide_clients_through_pirate_broker;
    the_python_mdclient_and_mdclient2_are_answered_through_pirate_broker: Lang::Python;
    the_cpp_mdclient_and_mdclient2_are_answered_through_pirate_broker: Lang::Cpp;
}

/// The Guide's mmiecho (C++ only: the Guide has no Python one) asks `pirate broker`
/// `mmi.service` and prints "Lookup echo service: STATUS" (`mmiecho.cpp`).
#[test]
fn the_cpp_mmiecho_gets_200_for_a_served_service_and_404_otherwise_from_pirate_broker() {
    let (broker, port) = guide_timed_broker();
    let Some(_worker) = guide::mdworker(Lang::Cpp, port) else {
        return;
    };
    wait_service_workers(&broker, "echo", 1);
    let connect = endpoint(port);
    for (service, status) in [("echo", "200"), ("nobody", "404")] {
        let Some(mut mmi) = guide::cpp(
            "mmiecho",
            &[],
            &[("ZG_CONNECT", &connect), ("ZG_SERVICE", service)],
        ) else {
            return;
        };
        assert!(mmi.wait().success(), "mmiecho: {}", mmi.stderr.text());
        assert_eq!(
            mmi.stdout.text().trim(),
            format!("Lookup echo service: {status}"),
            "mmiecho for {service}: {}",
            mmi.stderr.text()
        );
    }
}

/// `pirate worker` and `pirate client` with the Guide's mdbroker: the client's sequence is
/// answered in order; `mmi.service` answers 200 for echo and 404 for a service never seen;
/// and the Guide's own mdclient, through the Guide's broker, is answered by pirate's worker.
fn pirate_worker_and_client_with_guide_mdbroker(lang: Lang) {
    let port = free_port();
    let bind = endpoint(port);
    let Some(_broker) = guide::mdbroker(lang, port) else {
        return;
    };
    let worker = service_worker("echo", &bind, &[]);
    // The worker's READY is on its way; the Guide's broker queues the client's first request
    // until it is handled, and mmi.service is asked only after the sequence was answered.
    worker.wait_stderr("registered with the broker");
    let what = format!("pirate worker behind the {lang:?} mdbroker");
    pirate_client_gets_the_sequence(port, &what);
    let (code, out, err) = run(
        &[
            "client",
            "--service",
            "mmi.service",
            "--connect",
            &bind,
            "echo",
            "nobody",
        ],
        None,
    );
    assert_eq!(code, 0, "{what}: {err}");
    assert_eq!(out, "200\n404\n", "{what}: {err}");
    guide_clients_are_answered(lang, port);
}

combinations! {
    pirate_worker_and_client_with_guide_mdbroker;
    pirate_worker_and_client_work_with_the_python_mdbroker: Lang::Python;
    pirate_worker_and_client_work_with_the_cpp_mdbroker: Lang::Cpp;
}

/// Across languages: the Python mdclient's REQ socket has libzmq's binary identity (`0x00` and
/// four bytes), which the C++ side reads as a C string: behind the Guide's own C++ broker the
/// address is empty, the mdworker aborts (`assert (m_reply_to.size()!=0)` in `mdwrkapi.hpp`)
/// and the client gets 0 replies (seen by hand with both programs). `pirate broker` hands workers a printable address of its own for each request
/// instead of the client's identity, so the reply finds its client.
#[test]
fn the_python_mdclient_is_answered_by_the_cpp_mdworker_through_pirate_broker() {
    let (broker, port) = guide_timed_broker();
    let Some(_worker) = guide::mdworker(Lang::Cpp, port) else {
        return;
    };
    wait_service_workers(&broker, "echo", 1);
    guide_clients_are_answered(Lang::Python, port);
}

/// The messages a `pirate` role traced under `-v` as received (its `---- ROLE in` rules; the
/// frames in the Guide's dump style, which [`guide::dumped_messages`] reads).
fn traced_in(stderr: &str) -> Vec<Vec<String>> {
    let only_in: Vec<&str> = stderr
        .lines()
        .map(|l| {
            if l.starts_with("-----") && !l.trim_end().ends_with(" in") {
                "(sent)" // not a frame line: ends the message before it, opens none
            } else {
                l
            }
        })
        .collect();
    guide::dumped_messages(&only_in.join("\n"))
}

/// How many 7/MDP HEARTBEATs (`[""]["MDPW01"][0x04]`, after the sender's identity when
/// `routed`) a pirate role traced as received.
fn heartbeats_in(proc: &Proc, routed: bool) -> usize {
    let skip = usize::from(routed);
    traced_in(&proc.stderr.text())
        .iter()
        .filter(|m| m.len() == 3 + skip && m[skip..] == ["", "MDPW01", "04"])
        .count()
}

/// Past the Guide's expiry: `pirate worker` idles beside the Guide's mdbroker until it has
/// had 4 of the broker's HEARTBEATs (10 s at the Guide's fixed 2500 ms), longer than the
/// broker keeps a silent worker (`HEARTBEAT_EXPIRY = HEARTBEAT_INTERVAL * HEARTBEAT_LIVENESS`,
/// 7.5 s; mdbroker.py then forgets it without a word). Its own heartbeats kept it: it never
/// reconnected, and it still answers.
fn pirate_worker_stays_registered_with_guide_mdbroker(lang: Lang) {
    let port = free_port();
    let bind = endpoint(port);
    let Some(_broker) = guide::mdbroker(lang, port) else {
        return;
    };
    let mut worker = spawn(
        "worker",
        &[
            "worker",
            "-v",
            "--json",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--connect",
            &bind,
        ],
    );
    worker.wait_for("4 heartbeats from the Guide's broker", |_, _| {
        heartbeats_in(&worker, false) >= 4
    });
    pirate_client_gets_the_sequence(port, &format!("{lang:?} mdbroker after 10 s idle"));
    let summary = stop_and_summarise(&mut worker);
    assert_eq!(summary["reconnects"], 0, "{summary}");
}

combinations! {
    pirate_worker_stays_registered_with_guide_mdbroker;
    pirate_worker_stays_registered_with_the_python_mdbroker: Lang::Python;
    pirate_worker_stays_registered_with_the_cpp_mdbroker: Lang::Cpp;
}

/// The other way: the Guide's mdworker idles behind `pirate broker` (the Guide's timing)
/// until the broker has had 4 of its HEARTBEATs, past the 7.5 s after which either side
/// would drop a silent peer; the broker expired no worker, registered it once (a worker that
/// thought the broker dead would reconnect and send READY again), and it still answers.
fn guide_mdworker_stays_registered_with_pirate_broker(lang: Lang) {
    let (mut broker, port) = start_broker(&["-v", "--json"]);
    let Some(_worker) = guide::mdworker(lang, port) else {
        return;
    };
    broker.wait_for("4 heartbeats from the Guide's worker", |_, _| {
        heartbeats_in(&broker, true) >= 4
    });
    pirate_client_gets_the_sequence(port, &format!("{lang:?} mdworker after 10 s idle"));
    let summary = stop_and_summarise(&mut broker);
    assert_eq!(summary["workers_expired"], 0, "{summary}");
    assert_eq!(summary["workers_seen"], 1, "{summary}");
    let out = broker.stdout.text();
    assert_eq!(
        out.matches(r#""event":"service_worker_ready""#).count(),
        1,
        "{out}"
    );
}

combinations! {
    guide_mdworker_stays_registered_with_pirate_broker;
    the_python_mdworker_stays_registered_with_pirate_broker: Lang::Python;
    the_cpp_mdworker_stays_registered_with_pirate_broker: Lang::Cpp;
}

/// Many requests in flight through the Guide's mdbroker: `pirate client --window 8` (the
/// broker answers `mmi.correlate` with 501, so each request goes on a socket of its own, in
/// standard MDP) and a `pirate worker --concurrency 4` (the broker grants no credit: its first
/// word is a plain HEARTBEAT or REQUEST, so the worker opens 4 ordinary sessions) beside a
/// plain one. Every request of the sequence is answered once (in any order: that is what a
/// window is), and all 5 sessions registered.
fn windowed_client_and_concurrent_worker_with_guide_mdbroker(lang: Lang) {
    const COUNT: u64 = 100;
    let port = free_port();
    let bind = endpoint(port);
    let Some(_broker) = guide::mdbroker(lang, port) else {
        return;
    };
    let worker_args = |extra: &'static [&'static str]| {
        let mut args = vec![
            "worker",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--connect",
            bind.as_str(),
            "--work",
            "5ms",
        ];
        args.extend_from_slice(extra);
        args
    };
    let plain = spawn("worker", &worker_args(&[]));
    let lanes = spawn("worker4", &worker_args(&["--concurrency", "4"]));
    plain.wait_stderr("registered with the broker");
    // The first session asks for credit, the Guide's broker ignores the frame, and three more
    // ordinary sessions follow: four registered.
    lanes.wait_for("4 sessions", |_, e| {
        e.matches("registered with the broker").count() >= 4
    });
    let count = COUNT.to_string();
    let (code, out, err) = run(
        &[
            "client",
            "--json",
            "--service",
            "echo",
            "--connect",
            &bind,
            "--count",
            &count,
            "--window",
            "8",
            "--timeout",
            "5s",
        ],
        None,
    );
    assert_eq!(code, 0, "{lang:?} mdbroker: {err}");
    let mut got = replies(&out);
    got.sort_by_key(|r| r.parse::<u64>().unwrap_or(0));
    assert_eq!(got, sequence(COUNT), "{lang:?} mdbroker: {err}");
    assert_eq!(summary(&out)["mismatched"], 0, "{lang:?} mdbroker: {err}");
}

combinations! {
    windowed_client_and_concurrent_worker_with_guide_mdbroker;
    a_windowed_client_and_a_concurrent_worker_work_with_the_python_mdbroker: Lang::Python;
    a_windowed_client_and_a_concurrent_worker_work_with_the_cpp_mdbroker: Lang::Cpp;
}

/// `pirate broker` restarted (killed -9, started again on the same port) under the Guide's
/// mdworker: the worker's socket reconnects by itself and goes on heartbeating; the new
/// broker, which never saw its READY, answers that with DISCONNECT (7/MDP: a command from a
/// worker that is not registered), and the Guide's worker opens a new session and sends READY
/// again (`mdwrkapi.py`: `elif command == MDP.W_DISCONNECT: self.reconnect_to_broker()`).
/// The new broker then serves pirate client's sequence.
fn guide_mdworker_rejoins_a_restarted_pirate_broker(lang: Lang) {
    let (broker, port) = guide_timed_broker();
    let Some(_worker) = guide::mdworker(lang, port) else {
        return;
    };
    wait_service_workers(&broker, "echo", 1);
    broker.signal(libc::SIGKILL);
    assert!(process_gone(broker.pid()), "the broker survived SIGKILL");
    drop(broker);
    let bind = endpoint(port);
    let broker = spawn("broker", &["broker", "--bind", &bind]);
    broker.wait_stderr("disconnected: a command from an unregistered worker");
    wait_service_workers(&broker, "echo", 1);
    pirate_client_gets_the_sequence(port, &format!("{lang:?} mdworker, restarted broker"));
}

combinations! {
    guide_mdworker_rejoins_a_restarted_pirate_broker;
    the_python_mdworker_rejoins_a_restarted_pirate_broker: Lang::Python;
    the_cpp_mdworker_rejoins_a_restarted_pirate_broker: Lang::Cpp;
}

/// The other way: the Guide's mdbroker killed (-9) and started again on the same port under
/// `pirate worker`. The new broker answers the worker's next HEARTBEAT with DISCONNECT
/// (`mdbroker.py` `process_worker`: a HEARTBEAT from a worker it does not know), or the
/// worker misses its heartbeats; either way it opens a new session, READY again, and the new
/// broker serves pirate client's sequence.
fn pirate_worker_rejoins_a_restarted_guide_mdbroker(lang: Lang) {
    let port = free_port();
    let bind = endpoint(port);
    let Some(broker) = guide::mdbroker(lang, port) else {
        return;
    };
    let worker = spawn(
        "worker",
        &[
            "worker",
            "-v",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--connect",
            &bind,
        ],
    );
    // The worker's "READY sent" line says its READY was sent, not that this broker got it: killed
    // before that, the READY would go to the new broker and nothing would need repairing.
    // The broker's first HEARTBEAT (2.5 s on) says it registered the worker.
    worker.wait_for("a HEARTBEAT from the first broker", |_, _| {
        heartbeats_in(&worker, false) >= 1
    });
    broker.signal(libc::SIGKILL);
    assert!(process_gone(broker.pid()), "the broker survived SIGKILL");
    drop(broker);
    let Some(_broker) = guide::start(lang, "mdbroker", &[], &[("ZG_BIND", &bind)]) else {
        return;
    };
    worker.wait_for("a second READY", |_, e| {
        e.matches("READY sent to").count() >= 2
    });
    pirate_client_gets_the_sequence(port, &format!("pirate worker, restarted {lang:?} mdbroker"));
}

combinations! {
    pirate_worker_rejoins_a_restarted_guide_mdbroker;
    pirate_worker_rejoins_a_restarted_python_mdbroker: Lang::Python;
    pirate_worker_rejoins_a_restarted_cpp_mdbroker: Lang::Cpp;
}

/// The Guide's C++ mdbroker refuses every worker whose identity starts with `m`, `i` or `.`
/// (`worker_process`: `sender.find_first_of("mmi.") == 0`, meant as a check for the `mmi.`
/// prefix; it answers the READY with DISCONNECT). A `pirate worker --name mine` is refused
/// each time; it must wait out its doubling back-off between refusals (`peer_lost` with
/// `delay_ms` 50, 100, 200, 200), not ask again at once in a loop, as it once did.
#[test]
fn a_refused_pirate_worker_backs_off_against_the_cpp_mdbroker() {
    let port = free_port();
    let bind = endpoint(port);
    let Some(_broker) = guide::mdbroker(Lang::Cpp, port) else {
        return;
    };
    let worker = spawn(
        "worker",
        &[
            "worker",
            "--json",
            "--name",
            "mine",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--connect",
            &bind,
            "--reconnect",
            "50ms",
            "--reconnect-max",
            "200ms",
        ],
    );
    let delays = || -> Vec<u64> {
        json_lines(&worker.stdout.text())
            .iter()
            .filter(|l| l["event"] == "peer_lost")
            .map(|l| l["delay_ms"].as_u64().unwrap())
            .collect()
    };
    worker.wait_for("4 refusals", |_, _| delays().len() >= 4);
    assert_eq!(
        delays()[..4],
        [50, 100, 200, 200],
        "{}",
        worker.stderr.text()
    );
    assert!(
        worker
            .stderr
            .text()
            .contains("broker answered READY with DISCONNECT"),
        "{}",
        worker.stderr.text()
    );
}
