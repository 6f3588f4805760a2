//! Lazy Pirate against the Guide's real programs (`../shared/guide`): `pirate client` with the
//! Guide's `lpserver` and the Guide's `lpclient` with `pirate server`, in Python and C++.

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

#[test]
fn pirate_client_is_served_by_the_python_lpserver() {
    pirate_client_with_lpserver(Lang::Python);
}

#[test]
fn pirate_client_is_served_by_the_cpp_lpserver() {
    pirate_client_with_lpserver(Lang::Cpp);
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

#[test]
fn the_python_lpclient_is_served_by_pirate_server() {
    lpclient_with_pirate_server(Lang::Python);
}

#[test]
fn the_cpp_lpclient_is_served_by_pirate_server() {
    lpclient_with_pirate_server(Lang::Cpp);
}
