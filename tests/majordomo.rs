//! Majordomo end to end: `pirate broker`, MDP 0.1 and 0.2 workers and clients as real
//! processes on loopback, with heartbeats of tens of milliseconds.

mod common;

use std::time::Duration;

use common::*;

fn client(port: u16, args: &[&str]) -> (i32, String, String) {
    let connect = endpoint(port);
    let mut all = vec!["client", "--connect", connect.as_str()];
    all.extend_from_slice(args);
    run(&all, None)
}

#[test]
fn two_services_and_both_protocol_versions_on_one_broker() {
    let (mut b, port) = broker(&[]);
    let _echo1 = mdp_worker("echo1", port, "mdp", "echo", &[]);
    let _echo2 = mdp_worker("echo2", port, "mdp2", "echo", &[]);
    let _upper = mdp_worker("upper", port, "mdp2", "upper", &["--exec", "tr a-z A-Z"]);
    wait_workers(&b, 3);
    // 0.1 and 0.2 clients of a service served by a 0.1 and a 0.2 worker.
    for protocol in ["mdp", "mdp2"] {
        let (code, out, err) = client(
            port,
            &[
                "--json",
                "--protocol",
                protocol,
                "--service",
                "echo",
                "--count",
                "20",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(replies(&out), sequence(20));
    }
    // Each request reaches a worker of its own service.
    let (code, out, _) = client(port, &["--service", "upper", "hello", "world"]);
    assert_eq!(code, 0);
    assert_eq!(out, "HELLO\nWORLD\n");
    let (code, out, _) = client(port, &["--protocol", "mdp2", "--service", "upper", "hi"]);
    assert_eq!(code, 0);
    assert_eq!(out, "HI\n");
    let s = stop_and_summarise(&mut b);
    assert_eq!(s["invalid"], 0, "{s}");
    assert_eq!(s["replies"], 43);
}

#[test]
fn zero_two_streams_partials_and_zero_one_clients_get_them_whole() {
    let (_b, port) = broker(&[]);
    let _w = mdp_worker("lines", port, "mdp2", "lines", &["--exec", "seq 3"]);
    wait_workers(&_b, 1);
    let (code, out, _) = client(
        port,
        &["--json", "--protocol", "mdp2", "--service", "lines", "x"],
    );
    assert_eq!(code, 0);
    assert_eq!(replies(&out), vec!["1\n2\n3".to_string()]);
    let (code, out, _) = client(port, &["--service", "lines", "x"]);
    assert_eq!(code, 0);
    assert_eq!(out, "1\n2\n3\n");
}

#[test]
fn mmi_answers_200_404_501_and_404_once_the_last_worker_died() {
    let (_b, port) = broker(&[]);
    let solo = mdp_worker("solo", port, "mdp", "solo", &[]);
    wait_workers(&_b, 1);
    let ask = |args: &[&str]| {
        let (code, out, err) = client(port, args);
        assert_eq!(code, 0, "{err}");
        out
    };
    assert_eq!(ask(&["--service", "mmi.service", "solo"]), "200\n");
    assert_eq!(ask(&["--service", "mmi.service", "nobody"]), "404\n");
    assert_eq!(ask(&["--service", "mmi.nonsense", "x"]), "501\n");
    assert_eq!(
        ask(&["--protocol", "mdp2", "--service", "mmi.service", "solo"]),
        "200\n"
    );
    let status: serde_json::Value =
        serde_json::from_str(ask(&["--service", "mmi.status", ""]).trim()).unwrap();
    assert_eq!(status["services"]["solo"]["workers"], 1, "{status}");
    solo.signal(libc::SIGKILL);
    // Dead after 10 x 50ms of silence (the unit tests check the instant before the tick).
    _b.wait_stdout(r#""event":"worker_expired","worker":"solo-1-"#);
    assert_eq!(ask(&["--service", "mmi.service", "solo"]), "404\n");
}

#[test]
fn a_worker_killed_while_busy_is_expired_and_the_retry_is_served_elsewhere() {
    let (mut b, port) = broker(&[]);
    // The first worker crashes on its second request, while it holds it.
    let _crashy = mdp_worker("crashy", port, "mdp", "echo", &["--crash-after", "1"]);
    wait_workers(&b, 1);
    let _steady = mdp_worker("steady", port, "mdp", "echo", &[]);
    wait_workers(&b, 2);
    let (code, out, err) = client(
        port,
        &[
            "--json",
            "--service",
            "echo",
            "--count",
            "10",
            "--timeout",
            "300ms",
            "--retries",
            "5",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(replies(&out), sequence(10));
    assert!(summary(&out)["retries"].as_u64().unwrap() >= 1);
    // The retry may be served before the broker's tick expires the crashed worker.
    b.wait_stdout(r#""event":"worker_expired","worker":"crashy-1-"#);
    let s = stop_and_summarise(&mut b);
    assert_eq!(s["workers_expired"], 1, "{s}");
    assert_eq!(s["requests_lost"], 1, "{s}");
    let events = b.stdout.text();
    assert!(events.lines().any(
        |l| l.contains(r#""event":"worker_expired","worker":"crashy-1-"#)
            && l.contains(r#""busy":true"#)
    ));
}

#[test]
fn workers_re_register_after_the_broker_is_killed_and_restarted() {
    let (mut b, port) = broker(&[]);
    let workers: Vec<Proc> = (1..=2)
        .map(|i| mdp_worker(&format!("w{i}"), port, "mdp", "echo", &["--work", "5ms"]))
        .collect();
    wait_workers(&b, 2);
    let connect = endpoint(port);
    let mut c = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--count",
            "40",
            "--timeout",
            "300ms",
            "--retries",
            "30",
        ],
    );
    c.wait_stdout(r#""event":"reply","seq":10,"#);
    b.signal(libc::SIGKILL);
    b.wait();
    let bind = endpoint(port);
    let mut args = vec!["broker", "--json", "--bind", &bind];
    args.extend_from_slice(&MDP_HB);
    let mut restarted = spawn("broker2", &args);
    assert_eq!(c.code(), 0, "{}", c.stderr.text());
    assert_eq!(replies(&c.stdout.text()), sequence(40));
    // One worker can serve the rest; the other may still be backing off.
    wait_workers(&restarted, 2);
    let s = stop_and_summarise(&mut restarted);
    assert!(s["workers_seen"].as_u64().unwrap() >= 2, "{s}");
    for w in &workers {
        assert!(
            w.stdout.text().contains(r#""event":"peer_lost""#),
            "{}",
            w.name
        );
    }
}

#[test]
fn an_async_window_of_100_delivers_10000_replies_each_once_in_order() {
    let (_b, port) = broker(&[]);
    let _w: Vec<Proc> = (1..=2)
        .map(|i| mdp_worker(&format!("w{i}"), port, "mdp", "echo", &[]))
        .collect();
    wait_workers(&_b, 2);
    let (code, out, err) = client(
        port,
        &[
            "--json",
            "--service",
            "echo",
            "--window",
            "100",
            "--count",
            "10000",
            "--timeout",
            "10s",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines = json_lines(&out);
    let mut seqs = Vec::new();
    for l in lines.iter().filter(|l| l["event"] == "reply") {
        assert_eq!(l["reply"], l["request"], "matched to its own request: {l}");
        seqs.push(l["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=10000).collect::<Vec<u64>>());
    assert_eq!(summary(&out)["replied"], 10000);
}

#[test]
fn requests_for_a_service_without_workers_expire_after_the_ttl() {
    let (mut b, port) = broker(&["--request-ttl", "100ms"]);
    let (code, _, _) = client(
        port,
        &[
            "--service",
            "nobody",
            "--timeout",
            "400ms",
            "--retries",
            "1",
            "hello",
        ],
    );
    // Gave up, and the broker said nobody serves it: 68, not the offline 69.
    assert_eq!(code, 68);
    let s = stop_and_summarise(&mut b);
    assert_eq!(s["requests_expired"], 1, "{s}");
    assert!(b
        .stdout
        .text()
        .contains(r#""event":"request_dropped","service":"nobody","reason":"ttl""#));
}

#[test]
fn a_full_service_queue_refuses_new_requests_and_they_are_retried() {
    let (mut b, port) = broker(&["--max-queue", "1", "--request-ttl", "10s"]);
    // Three clients ask a service that has no worker yet: one request queues, two are refused.
    let connect = endpoint(port);
    let mut clients: Vec<Proc> = (0..3)
        .map(|i| {
            let request = format!("r{i}");
            spawn(
                "client",
                &[
                    "client",
                    "--json",
                    "--connect",
                    &connect,
                    "--service",
                    "late",
                    "--timeout",
                    "300ms",
                    "--retries",
                    "20",
                    &request,
                ],
            )
        })
        .collect();
    b.wait_for("two refusals", |o, _| {
        o.matches(r#""reason":"queue_full""#).count() >= 2
    });
    // A worker arrives: the queued request and the retries are all served.
    let _w = mdp_worker("late", port, "mdp", "late", &[]);
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.code(), 0, "{}", c.stderr.text());
        assert_eq!(replies(&c.stdout.text()), vec![format!("r{i}")]);
    }
    let s = stop_and_summarise(&mut b);
    assert!(s["requests_rejected"].as_u64().unwrap() >= 2, "{s}");
}

/// Random frame lists, and valid MDP messages with one frame mutated, dropped or added.
fn garbage(rng: &mut XorShift) -> Vec<Vec<u8>> {
    let valid: [Vec<Vec<u8>>; 5] = [
        vec![b"".to_vec(), b"MDPW01".to_vec(), vec![1], b"svc".to_vec()],
        vec![
            b"".to_vec(),
            b"MDPW01".to_vec(),
            vec![3],
            b"c".to_vec(),
            b"".to_vec(),
            b"x".to_vec(),
        ],
        vec![
            b"MDPW02".to_vec(),
            vec![4],
            b"c".to_vec(),
            b"".to_vec(),
            b"x".to_vec(),
        ],
        vec![
            b"".to_vec(),
            b"MDPC01".to_vec(),
            b"echo".to_vec(),
            b"x".to_vec(),
        ],
        vec![b"MDPC02".to_vec(), vec![1], b"echo".to_vec()],
    ];
    let mut frames = valid[(rng.next() % 5) as usize].clone();
    match rng.next() % 4 {
        0 => {
            let i = (rng.next() as usize) % frames.len();
            frames[i] = (0..rng.next() % 6).map(|_| rng.next() as u8).collect();
        }
        1 => {
            frames.truncate((rng.next() as usize) % frames.len());
        }
        2 => frames.push(vec![rng.next() as u8]),
        _ => {
            frames = (0..rng.next() % 5)
                .map(|_| (0..rng.next() % 8).map(|_| rng.next() as u8).collect())
                .collect();
        }
    }
    if frames.is_empty() {
        frames.push(Vec::new());
    }
    frames
}

#[test]
fn random_and_mutated_frames_never_stop_the_broker_serving() {
    let (mut b, port) = broker(&[]);
    let _w = mdp_worker("w1", port, "mdp", "echo", &[]);
    wait_workers(&b, 1);
    let connect = endpoint(port);
    let mut c = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--count",
            "50",
            "--timeout",
            "300ms",
            "--retries",
            "20",
        ],
    );
    let seed = 0xfeed_u64;
    let mut rng = XorShift(seed);
    let ctx = zmq::Context::new();
    for _ in 0..10 {
        let s = ctx.socket(zmq::DEALER).unwrap();
        // Closing flushes what is queued (up to 1 s), so every frame counts however slow.
        s.set_linger(1000).unwrap();
        s.connect(&connect).unwrap();
        for _ in 0..100 {
            s.send_multipart(garbage(&mut rng), 0).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.code(), 0, "seed {seed}: {}", c.stderr.text());
    assert_eq!(replies(&c.stdout.text()), sequence(50));
    let s = stop_and_summarise(&mut b);
    assert!(s["invalid"].as_u64().unwrap() >= 100, "seed {seed}: {s}");
}

#[test]
fn bad_worker_flags_are_usage_errors() {
    let (code, _, err) = run(&["worker", "--protocol", "mdp"], None);
    assert_eq!(code, 2);
    assert_eq!(err, "error: --protocol mdp and mdp2 need --service NAME\n");
    let (code, _, err) = run(&["client", "--protocol", "mdp", "x"], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_worker_with_two_brokers_moves_to_the_second_when_the_first_dies() {
    let (first, p1) = broker(&[]);
    let (second, p2) = broker(&[]);
    let (c1, c2) = (endpoint(p1), endpoint(p2));
    let mut args = vec![
        "worker",
        "--json",
        "--protocol",
        "mdp",
        "--service",
        "echo",
        "--connect",
        &c1,
        "--connect",
        &c2,
        "--name",
        "pair",
        "--reconnect",
        "50ms",
    ];
    args.extend_from_slice(&MDP_HB);
    let _w = spawn("pair", &args);
    wait_workers(&first, 1);
    let (code, out, _) = client(p1, &["--service", "echo", "one"]);
    assert_eq!((code, out.as_str()), (0, "one\n"));
    first.signal(libc::SIGKILL);
    wait_workers(&second, 1);
    let (code, out, _) = client(p2, &["--service", "echo", "two"]);
    assert_eq!((code, out.as_str()), (0, "two\n"));
}

#[test]
fn a_binary_star_broker_pair_fails_over_with_workers_and_clients_following() {
    let ports = BstarPorts::new();
    let node = |primary: bool| {
        let (name, bind, state, peer_state) = ports.node(primary);
        let mut args = bstar_node_args("broker", primary, bind, state, peer_state, BSTAR_HB);
        args.extend_from_slice(&MDP_HB);
        spawn(name, &args)
    };
    let primary = node(true);
    let backup = node(false);
    primary.wait_stderr("state: ACTIVE");
    // A backup takes over only once it has seen the primary active (it stays BACKUP and
    // refuses otherwise); on a fast machine the kill below can come before that heartbeat.
    backup.wait_stderr("state: PASSIVE");
    let args = pair_worker_args("pair", &ports.primary, &ports.backup, &MDP_HB);
    let _w = spawn("worker", &args);
    primary.wait_stderr("ready for service echo");
    let mut c = spawn_with_stdin(
        "client",
        &[
            "client",
            "--json",
            "--service",
            "echo",
            "--connect",
            &ports.primary,
            "--connect",
            &ports.backup,
            "--settle",
            "200ms",
            "--timeout",
            "500ms",
            "--retries",
            "10",
        ],
        true,
    );
    for i in 1..=3 {
        c.write_stdin(&format!("{i}\n"));
        c.wait_stdout(&format!(r#""reply":"{i}""#));
    }
    primary.signal(libc::SIGKILL);
    for i in 4..=6 {
        c.write_stdin(&format!("{i}\n"));
    }
    c.close_stdin();
    assert_eq!(c.code(), 0, "{}", c.stderr.text());
    assert_eq!(replies(&c.stdout.text()), sequence(6));
}

#[test]
fn a_service_nobody_serves_is_named_as_such_with_its_own_exit_status() {
    // The broker is up; nobody serves "nobody", and the empty name is no service either.
    let (_b, port) = broker(&[]);
    for service in ["nobody", ""] {
        let (code, _, err) = client(
            port,
            &[
                "--service",
                service,
                "--timeout",
                "200ms",
                "--retries",
                "2",
                "x",
            ],
        );
        assert_eq!(code, 68, "{service:?}: {err}");
        assert!(
            err.contains(&format!(
                "has no worker for service {service:?} (mmi.service: 404)"
            )),
            "{err}"
        );
        assert!(!err.contains("offline"), "{err}");
    }
    // No broker at all: still the offline abandon, exit 69.
    let nobody = free_port();
    let (code, _, err) = client(
        nobody,
        &[
            "--service",
            "echo",
            "--timeout",
            "100ms",
            "--retries",
            "1",
            "x",
        ],
    );
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("offline"), "{err}");
}
