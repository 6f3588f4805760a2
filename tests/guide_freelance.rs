//! Freelance against the Guide's real programs (`../shared/guide`), model by model:
//! - model 3 (10/FLP, ROUTER to ROUTER): `pirate client --freelance` with `flserver3.py`
//!   (across a kill -9 of one server), and `flclient3.py` with `pirate server --freelance`;
//! - model 2 (DEALER fan-out to REP): `flclient2.py` with `pirate server --freelance`;
//! - model 1 (REQ failover over REP echo servers): `flclient1` (Python and C++) with
//!   `pirate server --freelance`, and `pirate client` with several `--connect` over
//!   `flserver1` (Python and C++), across a kill -9 of one.
//!
//! Not here: `flserver2.py` answers only the two-frame `[sequence][body]` that flclient2
//! sends and asserts on anything else; pirate's clients send one-frame bodies (Lazy) or
//! 10/FLP (model 3). The C++ flserver2/3 and flclient2/3 need zmqpp (not built).

mod common;

use common::guide::{self, Lang};
use common::*;

/// Fast Freelance timing for pirate's client against the Guide's servers.
const FAST: [&str; 8] = [
    "--ping",
    "100ms",
    "--server-ttl",
    "500ms",
    "--timeout",
    "500ms",
    "--retries",
    "10",
];

/// `flserver3.py` on a free port, its identity the endpoint clients use (`ZG_ENDPOINT`).
fn flserver3() -> Option<(Proc, String)> {
    let port = free_port();
    let at = endpoint(port);
    let server = guide::python("flserver3", &[], &[("ZG_BIND", &at), ("ZG_ENDPOINT", &at)])?;
    guide::wait_bound(port);
    Some((server, at))
}

fn reply_count(out: &str) -> usize {
    out.matches(r#""event":"reply""#).count()
}

/// `pirate client --freelance` over three flserver3.py, one of them killed (-9) halfway: every
/// request is answered with flserver3's `OK` (it answers `[control]["OK"]`, not an echo, so
/// the requests are lines on stdin, which are not checked against their replies; `--count`'s
/// sequence would be).
#[test]
fn pirate_freelance_client_is_served_by_python_flserver3_across_a_kill() {
    let mut servers = Vec::new();
    for _ in 0..3 {
        let Some(server) = flserver3() else {
            return;
        };
        servers.push(server);
    }
    let mut args = vec!["client", "--json", "--freelance"];
    for (_, at) in &servers {
        args.extend(["--connect", at.as_str()]);
    }
    args.extend(FAST);
    let mut client = spawn_with_stdin("client", &args, true);
    client.write_stdin("a\nb\nc\nd\n");
    client.wait_for("4 replies", |o, _| reply_count(o) >= 4);
    servers[0].0.signal(libc::SIGKILL);
    client.write_stdin("e\nf\ng\nh\n");
    client.close_stdin();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let out = client.stdout.text();
    assert_eq!(replies(&out), vec!["OK"; 8], "{}", client.stderr.text());
}

/// `flclient3.py` (through the Guide's `flcliapi`: PINGs, then `[server][sequence][body]`)
/// against two `pirate server --freelance`: all of `ZG_COUNT` requests answered (it aborts
/// with "E: name service not available" on the first it is not), and pirate's servers
/// served them.
#[test]
fn python_flclient3_is_served_by_pirate_freelance_servers() {
    const COUNT: usize = 10;
    let (s1, p1) = start_freelance_server("server1", &["-v"]);
    let (s2, p2) = start_freelance_server("server2", &["-v"]);
    let servers = format!("{},{}", endpoint(p1), endpoint(p2));
    let count = COUNT.to_string();
    let Some(mut client) = guide::python(
        "flclient3",
        &[],
        &[("ZG_SERVERS", &servers), ("ZG_COUNT", &count)],
    ) else {
        return;
    };
    let status = client.wait();
    let said = format!("{}{}", client.stdout.text(), client.stderr.text());
    assert!(status.success(), "flclient3: {said}");
    assert!(
        said.contains("Average round trip cost"),
        "flclient3: {said}"
    );
    assert!(!said.contains("not available"), "flclient3: {said}");
    // A server's line per request is under -v.
    let served =
        guide::lines_with(&s1, "normal request") + guide::lines_with(&s2, "normal request");
    assert!(served >= COUNT, "pirate's servers served {served}: {said}");
}

/// `flclient2.py` sends each request `[""][sequence][body]` to every server at once (a
/// DEALER) and asserts that a reply has 3 frames and a numeric sequence (`assert len(reply)
/// == 3`, `int(reply[1])`): pirate's Freelance server takes the empty frame for the control
/// frame and echoes, which is exactly that shape.
#[test]
fn python_flclient2_is_served_by_pirate_freelance_servers() {
    const COUNT: usize = 10;
    let (s1, p1) = start_freelance_server("server1", &["-v"]);
    let (s2, p2) = start_freelance_server("server2", &["-v"]);
    let count = COUNT.to_string();
    let Some(mut client) = guide::python(
        "flclient2",
        &[&endpoint(p1), &endpoint(p2)],
        &[("ZG_COUNT", &count)],
    ) else {
        return;
    };
    let status = client.wait();
    let said = format!("{}{}", client.stdout.text(), client.stderr.text());
    assert!(status.success(), "flclient2: {said}");
    assert!(
        said.contains("Average round trip cost"),
        "flclient2: {said}"
    );
    assert!(!said.contains("not available"), "flclient2: {said}");
    // Every request went to both servers.
    for server in [&s1, &s2] {
        server.wait_for("every request", |_, e| {
            e.matches("normal request").count() >= COUNT
        });
    }
}

/// `flclient1` tries each endpoint in turn with a fresh REQ socket and a 1 s timeout: the
/// first endpoint has no server, the second is `pirate server --freelance`. The C++ one
/// prints the reply ("Service is running OK. Received message: Hello World!").
fn flclient1_fails_over_to_pirate(lang: Lang) {
    let nobody = endpoint(free_port());
    let (_server, port) = start_freelance_server("server", &[]);
    let Some(mut client) = guide::start(lang, "flclient1", &[&nobody, &endpoint(port)], &[]) else {
        return;
    };
    let status = client.wait();
    let said = format!("{}{}", client.stdout.text(), client.stderr.text());
    assert!(status.success(), "{lang:?} flclient1: {said}");
    assert!(
        said.to_lowercase().contains("no response from"),
        "{lang:?} flclient1 did not try the dead endpoint first: {said}"
    );
    let ok = match lang {
        Lang::Python => "Service is running OK",
        Lang::Cpp => "Service is running OK. Received message: Hello World!",
    };
    assert!(said.contains(ok), "{lang:?} flclient1: {said}");
}

combinations! {
    flclient1_fails_over_to_pirate;
    the_python_flclient1_fails_over_to_a_pirate_freelance_server: Lang::Python;
    the_cpp_flclient1_fails_over_to_a_pirate_freelance_server: Lang::Cpp;
}

/// Model 1's servers are plain REP echo servers (`flserver1 <endpoint>`): `pirate client`
/// with two `--connect` sends the Guide's sequence to the first, and when it is killed (-9)
/// fails over to the second; every reply is checked and in order.
fn pirate_client_fails_over_between_flserver1(lang: Lang) {
    const COUNT: u64 = 30;
    let (a, b) = (free_port(), free_port());
    let Some(first) = guide::start(lang, "flserver1", &[&endpoint(a)], &[]) else {
        return;
    };
    let Some(_second) = guide::start(lang, "flserver1", &[&endpoint(b)], &[]) else {
        return;
    };
    guide::wait_bound(a);
    guide::wait_bound(b);
    let count = COUNT.to_string();
    let client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &endpoint(a),
            "--connect",
            &endpoint(b),
            "--count",
            &count,
            "--interval",
            "100ms",
            "--timeout",
            "500ms",
            "--settle",
            "100ms",
            "--retries",
            "10",
        ],
    );
    client.wait_for("3 replies", |o, _| reply_count(o) >= 3);
    first.signal(libc::SIGKILL);
    let mut client = client;
    assert_eq!(client.code(), 0, "{lang:?}: {}", client.stderr.text());
    let out = client.stdout.text();
    assert_eq!(replies(&out), sequence(COUNT), "{lang:?}");
    let last = summary(&out);
    assert!(
        last["reconnects"].as_u64().unwrap_or(0) >= 1,
        "{lang:?}: no failover seen: {last}"
    );
}

combinations! {
    pirate_client_fails_over_between_flserver1;
    pirate_client_fails_over_between_python_flserver1s: Lang::Python;
    pirate_client_fails_over_between_cpp_flserver1s: Lang::Cpp;
}
