//! `pirate worker --concurrency N` end to end: one worker process holds N requests on one
//! connection to `pirate broker` (MDP, credit N granted at READY), or registers N ordinary
//! sessions with `pirate queue` (PPP) and with a broker that ignores the credit frame (as
//! the Guide's do); it serves N requests at once with its `--exec` commands running side by
//! side, and a process killed with N requests in hand loses each of them to the broker,
//! whose clients retry them on another worker.
//!
//! Parallelism is proved without a clock: the command waits at a barrier (a file that each
//! started command appends a line to) until 4 commands have started, so the requests can be
//! answered only if 4 commands run at the same time.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

/// Fast 6/PPP heartbeats; expiry is not what these tests check, so a slow liveness keeps a
/// session that a loaded machine stalls for a moment.
const PPP_HB: [&str; 4] = ["--heartbeat", "50ms", "--liveness", "10"];

/// A file name for test commands to append to.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "pirate-concurrency-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// A command that appends a line to `file`, waits until `n` lines are there (`n` commands
/// have started), then echoes its request: it answers only if `n` run at once.
fn barrier(file: &Path, n: usize) -> String {
    let f = file.display();
    format!("echo x >> {f}; while [ \"$(wc -l < {f})\" -lt {n} ]; do sleep 0.01; done; cat")
}

/// Lines `file` holds now (0 if it does not exist yet).
fn lines_in(file: &Path) -> usize {
    std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
}

/// The distinct worker identities a `--json` queue or broker saw register (`event`), that
/// begin with `name-`.
fn registered(stdout: &str, event: &str, name: &str) -> BTreeSet<String> {
    json_lines(stdout)
        .iter()
        .filter(|l| l["event"] == event)
        .filter_map(|l| l["worker"].as_str())
        .filter(|w| w.starts_with(&format!("{name}-")))
        .map(str::to_string)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The `service_worker_ready` events of a `--json` broker for workers named `name-…`, as
/// (identity, credit).
fn credits(stdout: &str, name: &str) -> Vec<(String, u64)> {
    json_lines(stdout)
        .iter()
        .filter(|l| l["event"] == "service_worker_ready")
        .filter(|l| {
            l["worker"]
                .as_str()
                .is_some_and(|w| w.starts_with(&format!("{name}-")))
        })
        .map(|l| {
            (
                l["worker"].as_str().unwrap_or_default().to_string(),
                l["credit"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn an_mdp_worker_with_concurrency_4_holds_4_requests_on_one_connection_and_runs_4_commands() {
    let file = scratch("mdp");
    let (mut broker, port) = broker(&[]);
    let cmd = barrier(&file, 4);
    let mut worker = mdp_worker(
        "conc",
        port,
        "mdp",
        "echo",
        &[
            "--concurrency",
            "4",
            "--exec",
            &cmd,
            "--exec-timeout",
            "20s",
        ],
    );
    broker.wait_for("the worker to register", |o, _| {
        !credits(o, "conc").is_empty()
    });
    let connect = endpoint(port);
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--window",
            "8",
            "--count",
            "8",
        ],
    );
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let _ = std::fs::remove_file(&file);
    assert_eq!(sorted(replies(&client.stdout.text())), sorted(sequence(8)));
    let s = stop_and_summarise(&mut worker);
    assert_eq!(
        (s["requests"].as_u64(), s["replied"].as_u64()),
        (Some(8), Some(8)),
        "{s}"
    );
    assert_eq!(
        s["in_flight_max"], 4,
        "4 requests were worked on at once: {s}"
    );
    assert_eq!(s["reconnects"], 0, "{s}");
    // One connection, granted credit 4: the broker saw one worker.
    let b = stop_and_summarise(&mut broker);
    let seen = credits(&broker.stdout.text(), "conc");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, 4, "{seen:?}");
    assert_eq!(
        (b["workers_seen"].as_u64(), b["replies"].as_u64()),
        (Some(1), Some(8)),
        "{b}"
    );
}

/// Receives one message on `socket` within the test deadline.
fn recv(socket: &zmq::Socket) -> Vec<Vec<u8>> {
    socket
        .recv_multipart(0)
        .unwrap_or_else(|e| panic!("nothing from the worker within the deadline: {e}"))
}

#[test]
fn against_a_broker_that_ignores_the_credit_frame_the_worker_opens_n_standard_sessions() {
    // The Guide's brokers read a READY's service frame and ignore the rest, and their first
    // word to a new worker is a HEARTBEAT: this ROUTER does exactly that, byte for byte.
    let port = free_port();
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.set_rcvtimeo(DEADLINE.as_millis() as i32).unwrap();
    router.bind(&endpoint(port)).unwrap();
    let _worker = mdp_worker("plain", port, "mdp", "echo", &["--concurrency", "3"]);
    let first = recv(&router);
    let header: [&[u8]; 2] = [b"", b"MDPW01"];
    assert_eq!(
        first[1..],
        [&header[..], &[b"\x01", b"echo", b"credit=3"]].concat()
    );
    let beat = |id: &[u8]| {
        router
            .send_multipart([id, b"", b"MDPW01", b"\x04"], 0)
            .unwrap()
    };
    beat(&first[0]);
    // Two more sessions register, each with a standard READY; the first one heartbeats.
    let mut ids = vec![first[0].clone()];
    while ids.len() < 3 {
        let msg = recv(&router);
        if msg[1..] == [&header[..], &[b"\x04"]].concat() {
            continue;
        }
        assert_eq!(
            msg[1..],
            [&header[..], &[b"\x01", b"echo"]].concat(),
            "{msg:?}"
        );
        assert!(!ids.contains(&msg[0]), "a new identity per session");
        ids.push(msg[0].clone());
    }
    // Each session is an ordinary worker: one request each, answered with its address.
    for (i, id) in ids.iter().enumerate() {
        let client = format!("client-{i}");
        router
            .send_multipart(
                [
                    &id[..],
                    b"",
                    b"MDPW01",
                    b"\x02",
                    client.as_bytes(),
                    b"",
                    b"hi",
                ],
                0,
            )
            .unwrap();
    }
    let mut answered = BTreeSet::new();
    while answered.len() < 3 {
        let msg = recv(&router);
        if msg[1..] == [&header[..], &[b"\x04"]].concat() {
            continue;
        }
        assert_eq!(msg.len(), 7, "{msg:?}");
        assert_eq!(msg[1..4], [&header[..], &[b"\x03"]].concat(), "{msg:?}");
        assert_eq!(msg[5..], [b"".to_vec(), b"hi".to_vec()]);
        let client = String::from_utf8(msg[4].clone()).unwrap();
        let i: usize = client["client-".len()..].parse().unwrap();
        assert_eq!(
            msg[0], ids[i],
            "each reply on the session that got the request"
        );
        answered.insert(i);
    }
}

#[test]
fn a_paranoid_worker_with_concurrency_4_is_4_workers_to_the_queue_and_its_summary_counts() {
    let file = scratch("ppp");
    let mut qargs = vec!["--json"];
    qargs.extend_from_slice(&PPP_HB);
    let (mut queue, front, back) = start_queue(&qargs);
    let cmd = barrier(&file, 4);
    let backend = endpoint(back);
    // Human output: the summary line is what a user reads.
    let mut args = vec![
        "worker",
        "--connect",
        &backend,
        "--name",
        "pp",
        "--concurrency",
        "4",
        "--exec",
        &cmd,
        "--exec-timeout",
        "20s",
        "--reconnect",
        "50ms",
    ];
    args.extend_from_slice(&PPP_HB);
    let mut worker = spawn("worker", &args);
    queue.wait_for("4 sessions to be ready", |o, _| {
        registered(o, "worker_ready", "pp").len() == 4
    });
    let connect = endpoint(front);
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect,
            "--window",
            "8",
            "--count",
            "8",
        ],
    );
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    let _ = std::fs::remove_file(&file);
    assert_eq!(sorted(replies(&client.stdout.text())), sorted(sequence(8)));
    worker.signal(libc::SIGINT);
    assert_eq!(worker.code(), 130, "{}", worker.stderr.text());
    let err = worker.stderr.text();
    let summary = err
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line:\n{err}"));
    assert!(
        summary.starts_with("summary: requests 8, replied 8,")
            && summary.contains("most at once 4"),
        "{summary}"
    );
    let q = stop_and_summarise(&mut queue);
    assert_eq!(q["replied"], 8, "{q}");
    let served = q["per_worker"].as_object().unwrap();
    assert_eq!(served.len(), 4, "every session served: {q}");
    assert!(served.keys().all(|k| k.starts_with("pp-")), "{q}");
}

#[test]
fn a_killed_worker_loses_every_request_it_held_and_the_clients_retry_them_elsewhere() {
    let file = scratch("kill");
    let (mut broker, port) = broker(&[]);
    // Each command says it started, then hangs (exec: the shell is the sleep, so the
    // worker's death takes it along).
    let cmd = format!("echo x >> {}; exec sleep 1000", file.display());
    let mut doomed = mdp_worker(
        "doomed",
        port,
        "mdp",
        "echo",
        &["--concurrency", "4", "--exec", &cmd],
    );
    broker.wait_for("the worker to register", |o, _| {
        !credits(o, "doomed").is_empty()
    });
    let connect = endpoint(port);
    let mut client = spawn(
        "client",
        &[
            "client",
            "--json",
            "--connect",
            &connect,
            "--service",
            "echo",
            "--window",
            "4",
            "--count",
            "4",
            "--timeout",
            "1500ms",
            "--retries",
            "3",
        ],
    );
    let start = std::time::Instant::now();
    while lines_in(&file) < 4 {
        assert!(start.elapsed() < DEADLINE, "the 4 commands never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&file);
    doomed.signal(libc::SIGKILL);
    doomed.wait();
    let _rescuer = mdp_worker("rescuer", port, "mdp", "echo", &[]);
    assert_eq!(client.code(), 0, "{}", client.stderr.text());
    assert_eq!(sorted(replies(&client.stdout.text())), sorted(sequence(4)));
    let c = summary(&client.stdout.text());
    assert!(
        c["retries"].as_u64() >= Some(4),
        "each lost request was retried: {c}"
    );
    let b = stop_and_summarise(&mut broker);
    let expired_busy: BTreeSet<String> = json_lines(&broker.stdout.text())
        .iter()
        .filter(|l| l["event"] == "worker_expired" && l["busy"] == true)
        .filter_map(|l| l["worker"].as_str().map(str::to_string))
        .filter(|w| w.starts_with("doomed-"))
        .collect();
    assert_eq!(
        expired_busy.len(),
        1,
        "its one connection died holding requests: {b}"
    );
    assert_eq!(b["requests_lost"], 4, "each of its 4 requests is lost: {b}");
}

#[test]
fn concurrency_0_and_past_the_bound_are_usage_errors() {
    for n in ["0", "1025", "many"] {
        let (code, _, err) = run(&["worker", "--concurrency", n], None);
        assert_eq!(code, 2, "--concurrency {n}: {err}");
        assert!(err.contains("--concurrency"), "{err}");
    }
}
