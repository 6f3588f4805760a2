//! Never a reply for the wrong request: the client, the queue and the broker against peers that
//! send stale copies and duplicates (hostile peers written here with the `zmq` crate), through
//! the chaos proxy's `--duplicate --delay`, and through a ROUTER/DEALER proxy (`zmq::proxy`).

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How a fake REP server misbehaves.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Before each reply, a copy of the previous one (same envelope, same body).
    StaleCopyFirst,
    /// Every reply twice.
    Twice,
}

/// A ROUTER pretending to be a REP echo server (it echoes the whole message, envelope
/// included, as REP does), misbehaving as told.
fn fake_rep(how: Misbehaviour) -> (Peer, u16) {
    Peer::router(move |router, stop| {
        let mut previous: Option<Frames> = None;
        while !stop.load(Ordering::SeqCst) {
            let Some(msg) = recv(&router) else { continue };
            if let (Misbehaviour::StaleCopyFirst, Some(prev)) = (how, &previous) {
                router.send_multipart(prev, 0).unwrap();
            }
            router.send_multipart(&msg, 0).unwrap();
            if let Misbehaviour::Twice = how {
                router.send_multipart(&msg, 0).unwrap();
            }
            previous = Some(msg);
        }
    })
}

/// `r1`..`rN`: requests whose replies cannot be checked by `--count`'s echo test.
fn words(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i}")).collect()
}

fn client_args<'a>(connect: &'a str, extra: &[&'a str], requests: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["client", "--json", "--connect", connect];
    args.extend_from_slice(extra);
    args.extend(requests.iter().map(String::as_str));
    args
}

fn events(out: &str, kind: &str) -> usize {
    json_lines(out)
        .iter()
        .filter(|l| l["event"] == kind)
        .count()
}

#[test]
fn a_stale_copy_or_a_second_reply_is_dropped_counted_and_traced_never_printed() {
    for how in [Misbehaviour::StaleCopyFirst, Misbehaviour::Twice] {
        let (_server, port) = fake_rep(how);
        let requests = words(20);
        let connect = endpoint(port);
        let args = client_args(&connect, &["-v", "--timeout", "5s"], &requests);
        let (code, out, err) = run(&args, None);
        assert_eq!(code, 0, "{how:?}: {err}");
        assert_eq!(
            replies(&out),
            requests,
            "{how:?}: each reply for its request"
        );
        let s = summary(&out);
        // Requests 2..20 each met one copy of the reply before (stale) or after (twice).
        assert_eq!(s["mismatched"], 19, "{how:?}: {s}");
        assert_eq!(events(&out, "mismatch"), 19, "{how:?}");
        assert_eq!(
            s["retries"], 0,
            "{how:?}: the right reply was still awaited"
        );
        assert!(
            err.contains("W: dropped a reply (request id"),
            "{how:?}: {err}"
        );
    }
}

#[test]
fn without_v_a_dropped_reply_is_counted_but_not_logged() {
    let (_server, port) = fake_rep(Misbehaviour::Twice);
    let requests = words(3);
    let connect = endpoint(port);
    let (code, out, err) = run(&client_args(&connect, &[], &requests), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), requests);
    assert_eq!(summary(&out)["mismatched"], 2);
    assert!(!err.contains("dropped a reply"), "{err}");
}

/// Duplicates of replies, delayed with jitter so they land while a later request waits.
const DUPLICATE_LATE: [&str; 12] = [
    "--duplicate",
    "50%",
    "--delay",
    "20ms",
    "--jitter",
    "20ms",
    "--delay-rate",
    "100%",
    "--direction",
    "down",
    "--seed",
    "7",
];

#[test]
fn late_duplicates_from_the_chaos_proxy_never_answer_a_later_request() {
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(server_port, &DUPLICATE_LATE);
    let requests = words(30);
    let connect = endpoint(port);
    let (code, out, err) = run(
        &client_args(&connect, &["--timeout", "2s"], &requests),
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), requests);
    let s = summary(&out);
    assert!(
        s["mismatched"].as_u64().unwrap() >= 1,
        "duplicates seen: {s}"
    );
    let p = stop_and_summarise(&mut proxy);
    assert!(p["faults"]["duplicate"].as_u64().unwrap() >= 1, "{p}");
}

fn worker(args: &[&str]) -> Proc {
    let mut all = vec!["worker", "--json", "--reconnect", "50ms"];
    all.extend_from_slice(&FAST_HB);
    all.extend_from_slice(args);
    spawn("worker", &all)
}

#[test]
fn correlated_clients_work_through_both_queues_directly_and_behind_a_proxy() {
    for simple in [false, true] {
        let mut queue_args = vec!["--json"];
        queue_args.extend_from_slice(&FAST_HB);
        if simple {
            queue_args.push("--simple");
        }
        let (queue, front, back) = start_queue(&queue_args);
        let protocol = if simple { "simple" } else { "paranoid" };
        let connect = endpoint(back);
        let _w = worker(&["--protocol", protocol, "--connect", &connect]);
        queue.wait_for("a worker", |o, _| o.contains(r#""event":"worker_ready""#));
        let proxied = router_dealer_proxy(front);
        for port in [front, proxied] {
            let c = endpoint(port);
            let (code, out, err) = run(
                &["client", "--json", "--connect", &c, "--count", "10"],
                None,
            );
            assert_eq!(code, 0, "{protocol} via {port}: {err}");
            assert_eq!(replies(&out), sequence(10), "{protocol} via {port}");
            assert_eq!(summary(&out)["mismatched"], 0);
        }
    }
}

fn start_mdp_broker() -> (Proc, u16) {
    let mut args = vec!["--json"];
    args.extend_from_slice(&FAST_HB);
    start_broker(&args)
}

fn mdp_worker(broker: u16, protocol: &str, service: &str) -> Proc {
    let connect = endpoint(broker);
    worker(&[
        "--protocol",
        protocol,
        "--service",
        service,
        "--connect",
        &connect,
    ])
}

#[test]
fn majordomo_clients_of_both_versions_work_behind_a_router_dealer_proxy() {
    let (broker, port) = start_mdp_broker();
    let _w1 = mdp_worker(port, "mdp", "echo");
    let _w2 = mdp_worker(port, "mdp2", "echo2");
    wait_workers(&broker, 2);
    let proxied = router_dealer_proxy(port);
    for (protocol, service) in [("mdp", "echo"), ("mdp2", "echo2"), ("mdp", "echo2")] {
        for via in [port, proxied] {
            let c = endpoint(via);
            let (code, out, err) = run(
                &[
                    "client",
                    "--json",
                    "-v",
                    "--connect",
                    &c,
                    "--protocol",
                    protocol,
                    "--service",
                    service,
                    "--count",
                    "5",
                ],
                None,
            );
            assert_eq!(code, 0, "{protocol} {service} via {via}: {err}");
            assert_eq!(replies(&out), sequence(5), "{protocol} via {via}");
            assert!(err.contains("carries request ids"), "{err}");
        }
    }
}

#[test]
fn late_duplicates_between_client_and_broker_never_answer_a_later_request() {
    let (broker, broker_port) = start_mdp_broker();
    let _w = mdp_worker(broker_port, "mdp", "echo");
    wait_workers(&broker, 1);
    let (_proxy, port) = start_proxy(broker_port, &DUPLICATE_LATE);
    let requests = words(30);
    let connect = endpoint(port);
    for protocol in ["mdp", "mdp2"] {
        let extra = [
            "--service",
            "echo",
            "--protocol",
            protocol,
            "--timeout",
            "2s",
        ];
        let (code, out, err) = run(&client_args(&connect, &extra, &requests), None);
        assert_eq!(code, 0, "{protocol}: {err}");
        assert_eq!(replies(&out), requests, "{protocol}");
        // Only a client matching ids sees the duplicates: one socket per request never does.
        let s = summary(&out);
        assert!(s["mismatched"].as_u64().unwrap() >= 1, "{protocol}: {s}");
    }
}

/// Connects a DEALER to `port` with `identity`, receive timeout 50 ms.
fn dealer(port: u16, identity: &[u8]) -> zmq::Socket {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER).unwrap();
    s.set_linger(0).unwrap();
    s.set_identity(identity).unwrap();
    s.set_rcvtimeo(50).unwrap();
    s.connect(&endpoint(port)).unwrap();
    s
}

/// Waits for the next 0.1 REQUEST on a worker socket (heartbeats skipped); returns the
/// client address frame and the body. Meanwhile it heartbeats (`["", "MDPW01", 0x04]`) every
/// 50 ms, as any MDP worker must: a silent one is expired after `HB`'s 150 ms, long before a
/// client started on a loaded machine sends its first request.
fn next_request(worker: &zmq::Socket) -> (Vec<u8>, Vec<u8>) {
    let start = Instant::now();
    let mut heartbeat_at = start;
    while start.elapsed() < DEADLINE {
        if Instant::now() >= heartbeat_at {
            worker
                .send_multipart([&b""[..], b"MDPW01", &[0x04]], 0)
                .unwrap();
            heartbeat_at += Duration::from_millis(50);
        }
        if let Some(msg) = recv(worker) {
            if msg.len() >= 6 && msg[1] == b"MDPW01" && msg[2] == [0x02] {
                return (msg[3].clone(), msg[5].clone());
            }
        }
    }
    panic!("no request for the hostile worker");
}

fn mdp_reply(client: &[u8], body: &[u8]) -> Frames {
    vec![
        vec![],
        b"MDPW01".to_vec(),
        vec![0x03],
        client.to_vec(),
        vec![],
        body.to_vec(),
    ]
}

#[test]
fn a_worker_replaying_its_previous_reply_is_disconnected_and_nothing_reaches_the_client() {
    let (broker, port) = start_mdp_broker();
    let hostile = dealer(port, b"hostile");
    hostile
        .send_multipart([&b""[..], b"MDPW01", &[0x01], b"echo"], 0)
        .unwrap();
    wait_workers(&broker, 1);
    let (got_second, second) = mpsc::channel();
    let hostile = thread::spawn(move || {
        // The first request is answered properly...
        let (first_addr, first_body) = next_request(&hostile);
        hostile
            .send_multipart(mdp_reply(&first_addr, &first_body), 0)
            .unwrap();
        // ...the second gets a copy of that first reply, then the same again twice over.
        let (_, _) = next_request(&hostile);
        for _ in 0..2 {
            hostile
                .send_multipart(mdp_reply(&first_addr, &first_body), 0)
                .unwrap();
        }
        got_second.send(()).unwrap();
        // Whatever the broker says now (DISCONNECT), read it, for the broker's summary.
        let start = Instant::now();
        let mut disconnected = false;
        while start.elapsed() < Duration::from_secs(2) && !disconnected {
            disconnected = recv(&hostile).is_some_and(|m| m.len() == 3 && m[2] == [0x05]);
        }
        disconnected
    });
    let requests = words(4);
    let connect = endpoint(port);
    let extra = ["--service", "echo", "--timeout", "500ms", "--retries", "5"];
    let mut client = spawn("client", &client_args(&connect, &extra, &requests));
    second.recv_timeout(DEADLINE).unwrap();
    // An honest worker takes the retry of the second request and the rest.
    let _honest = mdp_worker(port, "mdp", "echo");
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(replies(&client.stdout.text()), requests);
    assert!(
        hostile.join().unwrap(),
        "the replaying worker got DISCONNECT"
    );
    broker.wait_for("the disconnect", |o, _| {
        o.contains("a reply for a client it is not serving")
    });
}

#[test]
fn against_a_foreign_broker_standard_frames_and_a_socket_per_request_keep_replies_apart() {
    let (broker, port, seen) = foreign_broker(true);
    let requests = words(10);
    let connect = endpoint(port);
    let extra = ["-v", "--service", "echo", "--timeout", "2s"];
    let (code, out, err) = run(&client_args(&connect, &extra, &requests), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        replies(&out),
        requests,
        "a copy of the previous reply is never the next answer"
    );
    assert!(
        err.contains("does not carry request ids (mmi.correlate: 501)"),
        "{err}"
    );
    drop(broker);
    assert_eq!(
        seen.recv_timeout(DEADLINE).unwrap().enveloped,
        0,
        "standard MDP only"
    );
}
