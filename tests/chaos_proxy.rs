//! `pirate chaos proxy` end to end: the message-level fault proxy between real `pirate`
//! clients, servers, queues and workers on loopback. Every faulty run has a fixed seed (printed
//! by the proxy, and in its summary) so a failure replays.

mod common;

use common::*;
use serde_json::Value;

/// Runs a `--json` client against `port` to completion: (exit code, stdout, stderr).
fn client(port: u16, extra: &[&str]) -> (i32, String, String) {
    let connect = endpoint(port);
    let mut args = vec!["client", "--json", "--connect", connect.as_str()];
    args.extend_from_slice(extra);
    run(&args, None)
}

/// The proxy's fault count of `kind` from its summary (0 when none).
fn faults(summary: &Value, kind: &str) -> u64 {
    summary["faults"][kind].as_u64().unwrap_or(0)
}

#[test]
fn with_no_faults_the_proxy_is_transparent() {
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(server_port, &["--seed", "1"]);
    let connect = endpoint(port);
    let (code, out, err) = run(&["client", "--connect", &connect, "hello", "world"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello\nworld\n");
    let (code, out, err) = client(port, &["--count", "20"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(20));
    assert_eq!(summary(&out)["retries"], 0);
    let s = stop_and_summarise(&mut proxy);
    assert_eq!(s["seed"], 1);
    assert_eq!(s["forwarded_up"], 22, "{s}");
    assert_eq!(s["forwarded_down"], 22, "{s}");
    assert_eq!(s["faults"].as_object().unwrap().len(), 0, "{s}");
    assert_eq!(
        s["peers"], 2,
        "one upstream connection per client socket: {s}"
    );
}

#[test]
fn dropped_replies_are_retried_and_re_executed_never_lost() {
    let (mut server, server_port) = start_server(&["--json"]);
    let (mut proxy, port) = start_proxy(
        server_port,
        &["--drop", "30%", "--direction", "down", "--seed", "7"],
    );
    let n = 20;
    let (code, out, err) = client(
        port,
        &["--count", "20", "--timeout", "200ms", "--retries", "10"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(n), "every reply, in order");
    let c = summary(&out);
    assert!(c["retries"].as_u64().unwrap() >= 1, "{c}");
    let p = stop_and_summarise(&mut proxy);
    let drops = faults(&p, "drop");
    assert!(drops >= 1, "{p}");
    assert!(
        proxy
            .stdout
            .text()
            .contains(r#""event":"proxy_fault","kind":"drop","direction":"down""#),
        "each fault is an event"
    );
    let s = stop_and_summarise(&mut server);
    let served = s["requests"].as_u64().unwrap();
    assert!(
        served > n,
        "a dropped reply means a retry and a re-execution: served {served} for {n} requests"
    );
    assert_eq!(
        served,
        c["sent"].as_u64().unwrap(),
        "every attempt reached the server: {s}"
    );
}

#[test]
fn a_client_without_retries_abandons_when_its_reply_is_dropped() {
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(
        server_port,
        &["--drop", "100%", "--direction", "down", "--seed", "3"],
    );
    let (code, out, err) = client(
        port,
        &["--count", "3", "--timeout", "200ms", "--retries", "1"],
    );
    assert_eq!(code, 69, "the loss is visible: {err}");
    let c = summary(&out);
    assert_eq!(c["abandoned"], 1, "{c}");
    assert_eq!(c["outcome"], "abandoned");
    let p = stop_and_summarise(&mut proxy);
    assert_eq!(faults(&p, "drop"), 1, "{p}");
    assert_eq!(p["forwarded_up"], 1, "the request itself went through: {p}");
}

#[test]
fn a_duplicated_reply_is_never_delivered_twice() {
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(
        server_port,
        &["--duplicate", "30%", "--direction", "down", "--seed", "11"],
    );
    let (code, out, err) = client(
        port,
        &["--count", "20", "--timeout", "300ms", "--retries", "10"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        replies(&out),
        sequence(20),
        "each reply exactly once, in order"
    );
    let p = stop_and_summarise(&mut proxy);
    assert!(faults(&p, "duplicate") >= 1, "{p}");
}

#[test]
fn corrupted_and_truncated_replies_are_never_accepted() {
    for (kind, seed) in [("--corrupt", "5"), ("--truncate", "6")] {
        let (_server, server_port) = start_server(&[]);
        let (mut proxy, port) = start_proxy(
            server_port,
            &[kind, "30%", "--direction", "down", "--seed", seed],
        );
        let (code, out, err) = client(
            port,
            &["--count", "20", "--timeout", "300ms", "--retries", "10"],
        );
        assert_eq!(code, 0, "{kind}: {err}");
        assert_eq!(
            replies(&out),
            sequence(20),
            "{kind}: only correct replies accepted"
        );
        let c = summary(&out);
        let p = stop_and_summarise(&mut proxy);
        let injected = faults(&p, &kind[2..]);
        assert!(injected >= 1, "{kind}: {p}");
        assert!(
            c["mismatched"].as_u64().unwrap() >= 1 && c["retries"].as_u64().unwrap() >= 1,
            "{kind}: the client saw the damage and retried: {c}"
        );
    }
}

#[test]
fn a_corrupted_request_is_visible_to_the_client_too() {
    // --count 1 limits the proxy to a single fault, on the first request.
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(
        server_port,
        &[
            "--corrupt",
            "100%",
            "--direction",
            "up",
            "--count",
            "1",
            "--seed",
            "2",
        ],
    );
    let (code, out, err) = client(port, &["--count", "5", "--timeout", "300ms"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(5));
    assert_eq!(
        summary(&out)["mismatched"],
        1,
        "the echo of a corrupted request"
    );
    let p = stop_and_summarise(&mut proxy);
    assert_eq!(faults(&p, "corrupt"), 1, "--count bounds the faults: {p}");
}

#[test]
fn delays_beyond_the_timeout_lead_to_retries() {
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(
        server_port,
        &[
            "--delay",
            "100ms",
            "--jitter",
            "300ms",
            "--direction",
            "down",
            "--seed",
            "13",
        ],
    );
    let (code, out, err) = client(
        port,
        &["--count", "10", "--timeout", "250ms", "--retries", "20"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(10));
    let c = summary(&out);
    assert!(c["retries"].as_u64().unwrap() >= 1, "{c}");
    let p = stop_and_summarise(&mut proxy);
    assert!(faults(&p, "delay") >= 10, "{p}");
}

#[test]
fn reordered_replies_are_matched_to_their_requests() {
    let (_server, server_port) = start_server(&[]);
    let (mut proxy, port) = start_proxy(
        server_port,
        &["--reorder", "4", "--reorder-wait", "50ms", "--seed", "17"],
    );
    let (code, out, err) = client(port, &["--count", "40", "--window", "4", "--timeout", "2s"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(40), "printed in request order");
    let c = summary(&out);
    assert_eq!(
        c["mismatched"], 0,
        "one socket per request: nothing crossed: {c}"
    );
    let p = stop_and_summarise(&mut proxy);
    assert!(faults(&p, "reorder") >= 40, "{p}");
    assert_eq!(p["forwarded_up"], 40, "{p}");
    assert_eq!(p["forwarded_down"], 40, "the window lost nothing: {p}");
}

#[test]
fn a_blackhole_is_survived_by_retrying() {
    let (_server, server_port) = start_server(&["--work", "20ms"]);
    let (mut proxy, port) =
        start_proxy(server_port, &["--blackhole", "300ms/150ms", "--seed", "19"]);
    let (code, out, err) = client(
        port,
        &["--count", "40", "--timeout", "100ms", "--retries", "20"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(40));
    let p = stop_and_summarise(&mut proxy);
    assert!(faults(&p, "blackhole") >= 1, "{p}");
    let c = summary(&out);
    assert!(c["retries"].as_u64().unwrap() >= 1, "{c}");
}

#[test]
fn worker_identities_stay_distinct_and_heartbeats_flow_through_the_proxy() {
    // Dead after 10 silent beats (500 ms): a proxy that stopped heartbeats would still
    // expire them within the 1 s watched below, but a busy machine's stall does not.
    let mut queue_args = vec!["--json"];
    queue_args.extend_from_slice(&MDP_HB);
    let (mut queue, front, back) = start_queue(&queue_args);
    let (mut proxy, proxy_port) = start_proxy(back, &["--seed", "23"]);
    let connect = endpoint(proxy_port);
    let mut workers: Vec<Proc> = ["wa", "wb"]
        .iter()
        .map(|name| {
            let mut args = vec![
                "worker",
                "--json",
                "--connect",
                connect.as_str(),
                "--name",
                name,
            ];
            args.extend_from_slice(&MDP_HB);
            spawn(name, &args)
        })
        .collect();
    wait_ready(&queue, 2);
    // Twenty heartbeat intervals: any lost heartbeat would expire a worker.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (code, out, err) = client(front, &["--count", "20"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(20));
    let q = stop_and_summarise(&mut queue);
    let spread = q["per_worker"].as_object().unwrap();
    assert_eq!(spread.len(), 2, "two workers, not one merged identity: {q}");
    assert!(
        ["wa-1-", "wb-1-"]
            .iter()
            .all(|name| spread.keys().any(|k| k.starts_with(name))),
        "{q}"
    );
    assert_eq!(q["workers_expired"], 0, "heartbeats flowed both ways: {q}");
    for w in &mut workers {
        let s = stop_and_summarise(w);
        assert_eq!(s["reconnects"], 0, "the queue never looked dead: {s}");
    }
    let p = stop_and_summarise(&mut proxy);
    assert_eq!(p["peers"], 2, "{p}");
}

#[test]
fn dropping_worker_heartbeats_gets_workers_expired_and_requests_still_served() {
    // A worker-side proxy that drops every heartbeat the workers send (0x02 up) after the first
    // few: the queue expires them, they reconnect with new identities, and clients still get
    // every reply.
    let mut queue_args = vec!["--json"];
    queue_args.extend_from_slice(&FAST_HB);
    let (mut queue, front, back) = start_queue(&queue_args);
    let (mut proxy, proxy_port) = start_proxy(
        back,
        &[
            "--drop",
            "100%",
            "--direction",
            "up",
            "--command",
            "0x02",
            "--after",
            "5",
            "--count",
            "30",
            "--seed",
            "29",
        ],
    );
    let connect = endpoint(proxy_port);
    let mut args = vec![
        "worker",
        "--json",
        "--connect",
        connect.as_str(),
        "--name",
        "hb",
        "--reconnect",
        "50ms",
        "--reconnect-max",
        "100ms",
    ];
    args.extend_from_slice(&FAST_HB);
    let _worker = spawn("hb", &args);
    // On a loaded machine the queue can expire the worker before the drops begin (a stall
    // longer than 150 ms): wait for a dropped heartbeat too, the fault this test is about.
    proxy.wait_stdout(r#""event":"proxy_fault""#);
    queue.wait_for("the worker expired", |o, _| {
        o.contains(r#""event":"worker_expired""#)
    });
    let (code, out, err) = client(
        front,
        &["--count", "5", "--timeout", "500ms", "--retries", "10"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(5));
    let p = stop_and_summarise(&mut proxy);
    assert!(faults(&p, "drop") >= 1, "{p}");
    assert!(faults(&p, "drop") <= 30, "--count bounds the faults: {p}");
    let q = stop_and_summarise(&mut queue);
    assert!(q["workers_expired"].as_u64().unwrap() >= 1, "{q}");
}

#[test]
fn bad_fault_flags_are_usage_errors() {
    let front = endpoint(free_port());
    let back = endpoint(free_port());
    for bad in [
        ["--drop", "2"],
        ["--blackhole", "1s/5s"],
        ["--command", "0x4"],
        ["--reorder", "1"],
    ] {
        let mut args = vec!["chaos", "proxy", "--frontend", &front, "--backend", &back];
        args.extend_from_slice(&bad);
        let (code, _, err) = run(&args, None);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
}

/// The library API in-process: two DEALER "workers" with chosen identities through the proxy
/// to a ROUTER "queue", which sees both identities, and a message routed back to one of them.
#[test]
fn the_library_proxy_keeps_peer_identities_upstream() {
    use pirate::chaos::proxy::{run as run_proxy, ProxyConfig};
    use pirate::reactor::Stop;
    use pirate::Events;

    let ctx = zmq::Context::new();
    let upstream = ctx.socket(zmq::ROUTER).unwrap();
    upstream.set_linger(0).unwrap();
    upstream.bind("tcp://127.0.0.1:*").unwrap();
    let backend = upstream.get_last_endpoint().unwrap().unwrap();
    let frontend = endpoint(free_port());
    let config = ProxyConfig {
        frontend: frontend.clone(),
        backend,
        ..Default::default()
    };
    let stop = Stop::new();
    let proxy = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut events = Events::discard();
            run_proxy(&config, &stop, &mut events, &mut |_, _| {})
        }
    });
    let mut workers = Vec::new();
    for name in ["wa-1", "wb-1"] {
        let w = ctx.socket(zmq::DEALER).unwrap();
        w.set_linger(0).unwrap();
        w.set_identity(name.as_bytes()).unwrap();
        w.set_rcvtimeo(5000).unwrap();
        w.connect(&frontend).unwrap();
        workers.push(w);
    }
    // The proxy may not be bound yet: resend READY until the queue hears from both.
    upstream.set_rcvtimeo(200).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while seen.len() < 2 && start.elapsed() < DEADLINE {
        for w in &workers {
            w.send_multipart([vec![1u8]], zmq::DONTWAIT).ok();
        }
        while let Ok(frames) = upstream.recv_multipart(0) {
            assert_eq!(frames[1], vec![1u8]);
            seen.insert(String::from_utf8(frames[0].clone()).unwrap());
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["wa-1", "wb-1"]);
    upstream
        .send_multipart(
            [b"wb-1".to_vec(), b"client".to_vec(), vec![], b"hi".to_vec()],
            0,
        )
        .unwrap();
    let got = workers[1].recv_multipart(0).unwrap();
    assert_eq!(got, vec![b"client".to_vec(), vec![], b"hi".to_vec()]);
    stop.request();
    let report = proxy.join().unwrap().unwrap();
    assert_eq!(report.forwarded_down, 1);
    assert_eq!(report.peers, 2);
}

#[test]
fn a_request_lost_on_its_way_to_a_worker_frees_the_worker_only_with_a_busy_timeout() {
    // The proxy drops the first REQUEST (MDP worker command 0x02) from the broker down to the
    // only worker. The worker never saw it and heartbeats on; the broker holds it busy.
    for busy_timeout in [None, Some("300ms")] {
        // Liveness 10: a stalled machine must not expire the worker, which would free it too.
        let mut broker_args = vec!["--json", "--heartbeat", "50ms", "--liveness", "10"];
        if let Some(limit) = busy_timeout {
            broker_args.extend(["--busy-timeout", limit]);
        }
        let (mut broker, port) = start_broker(&broker_args);
        let (_proxy, proxy_port) = start_proxy(
            port,
            &[
                "--drop",
                "100%",
                "--direction",
                "down",
                "--command",
                "0x02",
                "--count",
                "1",
            ],
        );
        let connect = endpoint(proxy_port);
        let _worker = spawn(
            "worker",
            &[
                "worker",
                "--json",
                "--protocol",
                "mdp",
                "--service",
                "echo",
                "--connect",
                &connect,
                "--name",
                "w",
                "--heartbeat",
                "50ms",
                "--liveness",
                "10",
                "--reconnect",
                "50ms",
            ],
        );
        broker.wait_stdout(r#""event":"service_worker_ready""#);
        let broker_endpoint = endpoint(port);
        let (code, out, err) = run(
            &[
                "client",
                "--json",
                "--connect",
                &broker_endpoint,
                "--service",
                "echo",
                "--count",
                "3",
                "--timeout",
                "500ms",
                "--retries",
                "4",
            ],
            None,
        );
        let b = stop_and_summarise(&mut broker);
        assert_freed_only_with_a_busy_timeout(busy_timeout.is_some(), (code, &out, &err), &b);
        if busy_timeout.is_some() {
            assert_eq!(b["requests_lost"], 1, "{b}");
        }
    }
}

/// The outcome of a 3-request client run whose first request was dropped on its way to the
/// only worker: abandoned (69, nothing answered) unless the busy timeout freed the worker.
fn assert_freed_only_with_a_busy_timeout(
    busy_timeout: bool,
    (code, out, err): (i32, &str, &str),
    summary: &Value,
) {
    if busy_timeout {
        assert_eq!(code, 0, "{err}");
        assert_eq!(replies(out), sequence(3));
        assert_eq!(summary["workers_stuck"], 1, "{summary}");
    } else {
        assert_eq!(code, 69, "the worker is held busy for good: {err}");
        assert!(replies(out).is_empty(), "{out}");
        assert_eq!(summary["workers_stuck"], 0, "{summary}");
    }
}

#[test]
fn a_paranoid_queue_with_a_busy_timeout_forgets_a_worker_whose_request_was_lost() {
    // The proxy drops the first request ("1") from the queue down to the only worker, which
    // heartbeats on: only the busy timeout frees it, by forgetting it until it reconnects.
    for busy_timeout in [None, Some("300ms")] {
        // Liveness 10: a stalled machine must not expire the worker, which would free it too.
        let mut queue_args = vec!["--json"];
        queue_args.extend_from_slice(&MDP_HB);
        if let Some(limit) = busy_timeout {
            queue_args.extend(["--busy-timeout", limit]);
        }
        let (mut queue, front, back) = start_queue(&queue_args);
        let (_proxy, proxy_port) = start_proxy(
            back,
            &[
                "--drop",
                "100%",
                "--direction",
                "down",
                "--command",
                "1",
                "--count",
                "1",
            ],
        );
        let connect = endpoint(proxy_port);
        let mut args = vec![
            "worker",
            "--json",
            "--connect",
            connect.as_str(),
            "--name",
            "w",
            "--reconnect",
            "50ms",
        ];
        args.extend_from_slice(&MDP_HB);
        let _worker = spawn("worker", &args);
        queue.wait_stdout(r#""event":"worker_ready""#);
        let (code, out, err) = client(
            front,
            &["--count", "3", "--timeout", "500ms", "--retries", "4"],
        );
        let q = stop_and_summarise(&mut queue);
        assert_freed_only_with_a_busy_timeout(busy_timeout.is_some(), (code, &out, &err), &q);
        if busy_timeout.is_some() {
            let seen = q["workers_seen"].as_u64().unwrap();
            assert!(seen >= 2, "it came back: {q}");
        }
    }
}

#[test]
fn busy_timeout_flags_are_checked() {
    let (code, _, err) = run(&["queue", "--simple", "--busy-timeout", "1s"], None);
    assert_eq!(
        code, 2,
        "a Simple queue has no heartbeats to free a worker with: {err}"
    );
    assert!(err.contains("--busy-timeout"), "{err}");
    for role in ["queue", "broker"] {
        let (code, _, err) = run(&[role, "--busy-timeout", "0s"], None);
        assert_eq!(code, 2, "{err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{err}");
        assert!(first.contains("must be longer than 0"), "{err}");
    }
}
