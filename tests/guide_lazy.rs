//! Lazy Pirate against the Guide's real programs (`../shared/guide`): `pirate client` with the
//! Guide's `lpserver` and the Guide's `lpclient` with `pirate server`, in Python and C++, with
//! faults off, then with the faults on (the Guide's lpserver as it ships, and `pirate server
//! --faults guide`), the crashed server started again each time.

mod common;

use common::guide::{self, Lang};
use common::*;

const COUNT: usize = 5;

/// `pirate client --count N` against the Guide's lpserver (faults off, 10 ms of work): every
/// request of the Guide's test sequence answered, in order, checked by the client.
fn pirate_client_with_lpserver(lang: Lang) {
    let port = free_port();
    let bind = format!("tcp://*:{port}");
    let Some(_server) = guide::start(
        lang,
        "lpserver",
        &[],
        &[
            ("ZG_BIND", &bind),
            ("ZG_NOFAULTS", "1"),
            ("ZG_WORK", "0.01"),
            ("ZG_WORK_MS", "10"),
        ],
    ) else {
        return;
    };
    let count = COUNT.to_string();
    let (code, out, err) = run(
        &[
            "client",
            "--json",
            "--connect",
            &endpoint(port),
            "--count",
            &count,
            "--timeout",
            "5s",
        ],
        None,
    );
    assert_eq!(code, 0, "{lang:?} lpserver: {err}");
    assert_eq!(
        replies(&out),
        sequence(COUNT as u64),
        "{lang:?} lpserver: {err}"
    );
}

combinations! {
    pirate_client_with_lpserver;
    pirate_client_is_served_by_the_python_lpserver: Lang::Python;
    pirate_client_is_served_by_the_cpp_lpserver: Lang::Cpp;
}

/// The Guide's lpclient against `pirate server`: it prints "server replied OK" per request
/// (`lpclient.py`: `logging.info("Server replied OK (%s)", reply)`; `lpclient.cpp`: `I: server
/// replied OK`) and stops after `ZG_COUNT`.
fn lpclient_with_pirate_server(lang: Lang) {
    let (_server, port) = start_server(&[]);
    let connect = endpoint(port);
    let count = COUNT.to_string();
    let Some(mut client) = guide::start(
        lang,
        "lpclient",
        &[],
        &[
            ("ZG_CONNECT", &connect),
            ("ZG_COUNT", &count),
            ("ZG_SLEEP_MS", "0"),
        ],
    ) else {
        return;
    };
    let status = client.wait();
    let said = format!("{}{}", client.stdout.text(), client.stderr.text());
    let ok = said.to_lowercase().matches("server replied ok").count();
    assert!(status.success(), "{lang:?} lpclient: {said}");
    assert_eq!(ok, COUNT, "{lang:?} lpclient: {said}");
}

combinations! {
    lpclient_with_pirate_server;
    the_python_lpclient_is_served_by_pirate_server: Lang::Python;
    the_cpp_lpclient_is_served_by_pirate_server: Lang::Cpp;
}

/// The Guide's Lazy Pirate experiment with the Guide's lpserver as it ships, faults on
/// (`lpserver.py`: after 3 cycles, "Simulating a crash" (it exits) one time in four, else
/// "Simulating CPU overload" (2 s asleep) one time in four; unseeded, so every run differs),
/// restarted on the same port whenever it crashes, as the Guide has one do by hand. `pirate
/// client` times out (300 ms), reopens its socket and resends: every request of the sequence
/// is answered, checked, and printed once, in order, whatever the server did.
fn pirate_client_outlasts_lpserver_faults(lang: Lang) {
    const COUNT: u64 = 10;
    let port = free_port();
    let bind = format!("tcp://*:{port}");
    let env = [
        ("ZG_BIND", bind.as_str()),
        ("ZG_WORK", "0.01"),
        ("ZG_WORK_MS", "10"),
    ];
    let Some(mut server) = guide::start(lang, "lpserver", &[], &env) else {
        return;
    };
    guide::wait_bound(port);
    let count = COUNT.to_string();
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &endpoint(port),
            "--count",
            &count,
            "--timeout",
            "300ms",
            "--retries",
            "50",
        ],
    );
    let (start, mut crashes) = (std::time::Instant::now(), 0);
    let mut said = String::new();
    while !client.has_exited() {
        assert!(start.elapsed() < DEADLINE, "the client never finished");
        if server.has_exited() {
            crashes += 1;
            said += &server.stderr.text();
            said += &server.stdout.text();
            server = guide::start(lang, "lpserver", &[], &env).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    said += &server.stderr.text();
    said += &server.stdout.text();
    let code = client.code();
    let out = client.stdout.text();
    let faults = said.matches("Simulating").count() + said.matches("simulating").count();
    eprintln!("{lang:?} lpserver: {crashes} crash(es) restarted, {faults} fault(s) logged");
    let context = format!(
        "{lang:?} lpserver, {crashes} crash(es):\n{said}\n--- client\n{}",
        client.stderr.text()
    );
    assert_eq!(code, 0, "{context}");
    assert_eq!(replies(&out), sequence(COUNT), "{context}");
}

combinations! {
    pirate_client_outlasts_lpserver_faults;
    pirate_client_outlasts_the_python_lpserver_with_its_faults_on: Lang::Python;
    pirate_client_outlasts_the_cpp_lpserver_with_its_faults_on: Lang::Cpp;
}

/// The same experiment the other way round: the Guide's lpclient against `pirate server
/// --faults guide` (the Guide's lpserver faults: after 3 cycles, crash one time in three, a
/// 2 s stall one time in three), seeded, and started again with the next seed whenever it
/// crashes. lpclient waits 2.5 s, reopens its socket and resends, up to 3 times; it must get
/// every reply of its sequence right ("Server replied OK"), never see a malformed one, and
/// never abandon.
fn guide_lpclient_outlasts_pirate_server_faults(lang: Lang) {
    const COUNT: usize = 10;
    let port = free_port();
    let bind = endpoint(port);
    let server_with_seed = |seed: u64| {
        let seed = seed.to_string();
        spawn(
            "server",
            &[
                "server", "--bind", &bind, "--faults", "guide", "--work", "10ms", "--seed", &seed,
            ],
        )
    };
    let mut seed = 1;
    let mut server = server_with_seed(seed);
    server.wait_stderr("server on");
    let count = COUNT.to_string();
    let Some(mut client) = guide::start(
        lang,
        "lpclient",
        &[],
        &[
            ("ZG_CONNECT", &bind),
            ("ZG_COUNT", &count),
            ("ZG_SLEEP_MS", "0"),
        ],
    ) else {
        return;
    };
    let start = std::time::Instant::now();
    let mut log = String::new();
    while !client.has_exited() {
        assert!(start.elapsed() < DEADLINE * 2, "lpclient never finished");
        if server.has_exited() {
            log += &server.stderr.text();
            seed += 1;
            server = server_with_seed(seed);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    log += &server.stderr.text();
    let status = client.wait();
    let said = format!("{}{}", client.stdout.text(), client.stderr.text());
    let context = format!("{lang:?} lpclient, seeds 1..={seed}:\n{said}\n--- servers\n{log}");
    eprintln!(
        "{lang:?} lpclient: pirate server crashed {} time(s)",
        seed - 1
    );
    assert!(status.success(), "{context}");
    let lower = said.to_lowercase();
    assert_eq!(
        lower.matches("server replied ok").count(),
        COUNT,
        "{context}"
    );
    assert!(!lower.contains("malformed"), "{context}");
    assert!(!lower.contains("abandoning"), "{context}");
}

combinations! {
    guide_lpclient_outlasts_pirate_server_faults;
    the_python_lpclient_outlasts_pirate_server_with_the_guides_faults: Lang::Python;
    the_cpp_lpclient_outlasts_pirate_server_with_the_guides_faults: Lang::Cpp;
}
