//! Freelance (10/FLP) end to end: `pirate server --freelance` and `pirate client --freelance`
//! as real processes on loopback, plus one raw ZeroMQ peer to check the wire format.

mod common;

use common::*;

/// `--json client --freelance --connect E…` with the given extra flags.
fn client_args<'a>(endpoints: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--json", "client", "--freelance"];
    for e in endpoints {
        args.push("--connect");
        args.push(e.as_str());
    }
    args.extend_from_slice(extra);
    args
}

/// Requests a server received, from its JSON summary (it must run `--json`).
fn served(server: &mut Proc) -> u64 {
    let summary = stop_and_summarise(server);
    summary["requests"].as_u64().unwrap()
}

fn assert_in_order(stdout: &str, n: u64) {
    assert_eq!(replies(stdout), sequence(n), "every reply, in order, once");
}

#[test]
fn with_three_servers_killing_two_leaves_the_client_served() {
    let servers: Vec<(Proc, u16)> = (0..3)
        .map(|i| start_freelance_server(&format!("server{i}"), &["--work", "10ms"]))
        .collect();
    let endpoints: Vec<String> = servers.iter().map(|(_, p)| endpoint(*p)).collect();
    let args = client_args(
        &endpoints,
        &[
            "--count",
            "60",
            "--timeout",
            "300ms",
            "--retries",
            "5",
            "--ping",
            "50ms",
            "--server-ttl",
            "500ms",
        ],
    );
    let mut client = spawn("client", &args);
    client.wait_stdout(r#""seq":10,"#);
    servers[0].0.signal(libc::SIGKILL);
    servers[1].0.signal(libc::SIGKILL);
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let out = client.stdout.text();
    assert_in_order(&out, 60);
    let summary = summary(&out);
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["mismatched"], 0);
    assert_eq!(summary["abandoned"], 0);
}

#[test]
fn a_killed_server_that_comes_back_is_used_again() {
    let (mut a, port_a) = start_freelance_server("a", &["--work", "20ms"]);
    let (_b, port_b) = start_freelance_server("b", &["--work", "20ms"]);
    let endpoints = [endpoint(port_a), endpoint(port_b)];
    let args = client_args(
        &endpoints,
        &[
            "--count",
            "120",
            "--timeout",
            "300ms",
            "--retries",
            "5",
            "--ping",
            "50ms",
            "--server-ttl",
            "300ms",
        ],
    );
    let mut client = spawn("client", &args);
    client.wait_stdout(r#""seq":5,"#);
    a.signal(libc::SIGKILL);
    a.wait();
    client.wait_stdout(r#""seq":20,"#);
    let mut a2 = start_freelance_server_on("a2", port_a, &["--json", "--work", "20ms"]);
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_in_order(&client.stdout.text(), 120);
    let err = client.stderr.text();
    // Alive at the start, and alive again once restarted.
    assert!(
        err.matches(&format!("server {} is alive", endpoint(port_a)))
            .count()
            >= 2,
        "{err}"
    );
    assert!(
        served(&mut a2) > 0,
        "the restarted server got requests again\n{err}"
    );
}

#[test]
fn no_request_is_sent_twice_because_of_a_wake_up() {
    // Pings every 50 ms wake the client many times while each request is being worked on
    // (100 ms); none of those wake-ups may resend anything.
    let mut servers: Vec<(Proc, u16)> = (0..3)
        .map(|i| start_freelance_server(&format!("server{i}"), &["--json", "--work", "100ms"]))
        .collect();
    let endpoints: Vec<String> = servers.iter().map(|(_, p)| endpoint(*p)).collect();
    let args = client_args(&endpoints, &["--count", "15", "--ping", "50ms"]);
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    assert_in_order(&out, 15);
    let summary = summary(&out);
    assert_eq!(summary["sent"], 15, "{summary}");
    assert_eq!(summary["retries"], 0, "{summary}");
    let counts: Vec<u64> = servers.iter_mut().map(|(s, _)| served(s)).collect();
    assert_eq!(counts.iter().sum::<u64>(), 15, "{counts:?}");
    assert!(
        counts.iter().all(|&n| n > 0),
        "requests are spread over the live servers: {counts:?}"
    );
}

#[test]
fn a_duplicated_connect_endpoint_is_used_once() {
    // Requests go only to servers that have answered a ping, so a server whose PONG is late
    // misses the first requests. Each takes 50 ms here: a late PONG costs one or two, not
    // (as with instant echoes on a fast machine) all twenty.
    let (mut a, port_a) = start_freelance_server("a", &["--json", "--work", "50ms"]);
    let (mut b, port_b) = start_freelance_server("b", &["--json", "--work", "50ms"]);
    let (ea, eb) = (endpoint(port_a), endpoint(port_b));
    let endpoints = [ea.clone(), ea.clone(), eb.clone(), ea.clone()];
    let args = client_args(&endpoints, &["--count", "20", "--ping", "50ms"]);
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    assert_in_order(&out, 20);
    assert!(
        err.contains(&format!("{ea} is listed more than once")),
        "{err}"
    );
    let summary = summary(&out);
    assert_eq!(summary["endpoint"], format!("{ea},{eb}"));
    assert_eq!(summary["sent"], 20);
    let (na, nb) = (served(&mut a), served(&mut b));
    assert_eq!(na + nb, 20);
    // Listed three times, A is still one server of two: it gets half the work, not 3/4.
    assert!(na.abs_diff(nb) <= 2, "a {na}, b {nb}");
}

#[test]
fn a_late_reply_is_never_accepted_for_a_later_request() {
    // A stalls 400 ms on every request, far beyond the client's 150 ms timeout, so each
    // request it gets is answered by B, and A's answer arrives while a later request is
    // pending: it must be recognised by its control frame and discarded.
    let (_a, port_a) = start_freelance_server(
        "a",
        &[
            "--overload-rate",
            "100%",
            "--overload-for",
            "400ms",
            "--faults-after",
            "0",
        ],
    );
    let (_b, port_b) = start_freelance_server("b", &["--work", "50ms"]);
    let endpoints = [endpoint(port_a), endpoint(port_b)];
    let args = client_args(
        &endpoints,
        &[
            "--count",
            "12",
            "--timeout",
            "150ms",
            "--retries",
            "4",
            "--ping",
            "50ms",
        ],
    );
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "{err}");
    assert_in_order(&out, 12);
    let lines = json_lines(&out);
    for reply in lines.iter().filter(|l| l["event"] == "reply") {
        assert_eq!(reply["reply"], reply["request"], "{reply}");
    }
    assert!(
        lines.iter().all(|l| l["event"] != "mismatch"),
        "a late reply was taken for a later request's answer\n{out}"
    );
    let summary = summary(&out);
    assert_eq!(summary["mismatched"], 0);
    assert!(summary["retries"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        err.contains("discarding a late reply to request #"),
        "A's late replies were seen and discarded\n{err}"
    );
}

#[test]
fn unreachable_servers_make_the_client_abandon_with_69() {
    let endpoints = [endpoint(free_port()), endpoint(free_port())];
    let args = client_args(
        &endpoints,
        &[
            "--count",
            "3",
            "--timeout",
            "200ms",
            "--server-ttl",
            "300ms",
            "--ping",
            "50ms",
        ],
    );
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 69, "{err}");
    assert!(
        err.contains("E: server seems to be offline, abandoning"),
        "{err}"
    );
    let summary = summary(&out);
    assert_eq!(summary["outcome"], "abandoned");
    assert_eq!(
        summary["sent"], 0,
        "nothing is sent to a server that never answered"
    );
    assert_eq!(summary["abandoned"], 1);
    assert!(replies(&out).is_empty());
}

#[test]
fn the_server_speaks_flp_on_the_wire() {
    // A bare ROUTER peer, as the Guide's flclient would be: the server's identity is its
    // public endpoint (--endpoint overrides the one derived from --bind), PING gets PONG,
    // a request gets its control frame back unchanged, malformed messages are dropped and
    // the server keeps serving.
    let port = free_port();
    let public = format!("tcp://localhost:{port}");
    let mut server = start_freelance_server_on("server", port, &["--json", "--endpoint", &public]);
    let ctx = zmq::Context::new();
    let client = ctx.socket(zmq::ROUTER).unwrap();
    client.set_linger(0).unwrap();
    client.set_router_mandatory(true).unwrap();
    client.connect(&endpoint(port)).unwrap();
    let id = public.as_bytes().to_vec();
    // The connection and handshake take a moment: until then the server is unroutable.
    let start = std::time::Instant::now();
    while client
        .send_multipart([id.clone(), b"PING".to_vec()], zmq::DONTWAIT)
        .is_err()
    {
        assert!(
            start.elapsed() < DEADLINE,
            "the server never became routable"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let recv = |client: &zmq::Socket| {
        let mut items = [client.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, 5000).unwrap();
        assert!(items[0].is_readable(), "no answer from the server");
        client.recv_multipart(0).unwrap()
    };
    assert_eq!(recv(&client), vec![id.clone(), b"PONG".to_vec()]);
    for bad in [
        vec![id.clone(), b"control-only".to_vec()],
        vec![id.clone(), vec![]],
    ] {
        client.send_multipart(bad, 0).unwrap();
    }
    let control = vec![0x00, 0xFF, b'7'];
    client
        .send_multipart(
            [id.clone(), control.clone(), b"a".to_vec(), b"b".to_vec()],
            0,
        )
        .unwrap();
    assert_eq!(
        recv(&client),
        vec![id, control, b"a".to_vec(), b"b".to_vec()]
    );
    let summary = stop_and_summarise(&mut server);
    assert_eq!(summary["requests"], 1, "pings are not requests: {summary}");
    assert_eq!(summary["invalid"], 2, "{summary}");
    assert_eq!(summary["endpoint"], public);
}

#[test]
fn a_pipeline_that_pauses_keeps_pinging_and_is_served_at_once_after_the_pause() {
    // Between requests the client keeps pinging, so a pause on stdin longer than
    // `--server-ttl` + `--timeout` (here 2 s) neither marks the server dead nor makes the
    // next request give up. The pause is measured in PONGs, not in wall-clock time. The
    // time to live is 20 pings: a loaded machine that delays a few PONGs (a 150 ms time to
    // live failed so) must not pass for a dead server.
    let (_server, port) = start_freelance_server("server", &[]);
    let endpoints = [endpoint(port)];
    let mut args = vec!["-v"];
    args.extend(client_args(
        &endpoints,
        &["--ping", "50ms", "--server-ttl", "1s", "--timeout", "1s"],
    ));
    let mut client = spawn_with_stdin("client", &args, true);
    client.write_stdin("1\n");
    client.wait_stdout(r#""seq":1,"#);
    let pongs_before = client.stderr.text().matches("PONG").count();
    // 50 more PONGs at one per 50 ms at most: at least 2.5 s of pause.
    client.wait_for("50 PONGs while idle", |_, e| {
        e.matches("PONG").count() >= pongs_before + 50
    });
    client.write_stdin("2\n");
    client.close_stdin();
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_in_order(&client.stdout.text(), 2);
    let err = client.stderr.text();
    assert!(!err.contains("marking it dead"), "{err}");
    assert_eq!(summary(&client.stdout.text())["retries"], 0);
}
