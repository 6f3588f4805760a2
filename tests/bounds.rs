//! Hostile peers against bounds and identities, each test the attack itself: a frame over
//! `--max-message`, a broker queue filled in bytes, a stream of PARTIALs to a 0.1 client, a
//! service name of 300 bytes, a 1 MB frame under `-v`, a peer that claims a timed-out
//! client's identity to take its late reply, a peer that claims a worker's predictable next
//! identities, and the identities a client presents.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

/// Asks the broker `mmi.service` until `service` has a worker.
fn wait_service(port: u16, service: &str) {
    let start = Instant::now();
    loop {
        let (_, out, _) = run(
            &[
                "client",
                "--connect",
                &endpoint(port),
                "--service",
                "mmi.service",
                "--timeout",
                "300ms",
                service,
            ],
            None,
        );
        if out.trim() == "200" {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{service} never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `pirate client --service SERVICE BODY`: (exit code, stdout). Every call expects an
/// answer, so each attempt may take long: an attempt that timed out on a loaded machine
/// (500 ms did, for a reply run through `sh -c`) is resent, the broker hands the worker the
/// request twice, and the counts a test checks (`requests_lost`) change.
fn ask(port: u16, service: &str, body: &str) -> (i32, String) {
    let (code, out, _) = run(
        &[
            "client",
            "--connect",
            &endpoint(port),
            "--service",
            service,
            "--timeout",
            "10s",
            "--retries",
            "2",
            body,
        ],
        None,
    );
    (code, out)
}

/// The last 20 lines of a role's output, for a failure message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    lines[from..].iter().map(|l| format!("{l}\n")).collect()
}

/// A raw 7/MDP 0.1 client on a DEALER: sends REQUEST frames, and waits `wait` for a reply.
struct RawClient {
    _ctx: zmq::Context,
    socket: zmq::Socket,
}

impl RawClient {
    fn new(port: u16) -> Self {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::DEALER).unwrap();
        socket.set_linger(0).unwrap();
        socket.connect(&endpoint(port)).unwrap();
        RawClient { _ctx: ctx, socket }
    }

    fn request(&self, service: &[u8], body: &[u8]) {
        let frames: [&[u8]; 4] = [b"", b"MDPC01", service, body];
        self.socket.send_multipart(frames, 0).unwrap();
    }

    /// The reply body, if one comes within `wait`.
    fn reply(&self, wait: Duration) -> Option<Vec<u8>> {
        self.socket.set_rcvtimeo(wait.as_millis() as i32).unwrap();
        let frames = self.socket.recv_multipart(0).ok()?;
        frames.last().cloned()
    }
}

#[test]
fn a_frame_over_max_message_drops_its_peer_and_the_broker_serves_on() {
    let body = "x".repeat(100_000);
    // Control: 100 KB is within the default 16 MiB and is served.
    {
        let (_b, port) = broker(&[]);
        let _w = mdp_worker("echo", port, "mdp", "echo", &[]);
        wait_service(port, "echo");
        let client = RawClient::new(port);
        client.request(b"echo", body.as_bytes());
        assert_eq!(client.reply(DEADLINE), Some(body.clone().into_bytes()));
    }
    // With --max-message 64KiB the same request is never buffered: its peer is dropped.
    let (mut b, port) = broker(&["--max-message", "64KiB"]);
    let _w = mdp_worker("echo", port, "mdp", "echo", &[]);
    wait_service(port, "echo");
    let hostile = RawClient::new(port);
    hostile.request(b"echo", body.as_bytes());
    assert_eq!(hostile.reply(Duration::from_millis(1000)), None);
    // Everyone else is served, the hostile peer too once it behaves (ZeroMQ reconnects it).
    assert_eq!(ask(port, "echo", "hello"), (0, "hello\n".to_string()));
    hostile.request(b"echo", b"small");
    assert_eq!(hostile.reply(DEADLINE), Some(b"small".to_vec()));
    let s = stop_and_summarise(&mut b);
    assert!(s["replies"].as_u64().unwrap() >= 2, "{s}");
}

#[test]
fn max_message_is_checked() {
    for bad in ["100", "12 parsecs", "lots"] {
        let (code, _, err) = run(&["broker", "--max-message", bad], None);
        assert_eq!(code, 2, "{bad}: {err}");
    }
}

#[test]
fn a_service_queue_full_in_bytes_refuses_new_requests_and_serves_the_rest() {
    let (mut b, port) = broker(&["--max-queue-bytes", "1000"]);
    // Nobody serves "later" yet: three 600-byte requests, of which only the first fits.
    let clients: Vec<RawClient> = (0..3).map(|_| RawClient::new(port)).collect();
    let body = "q".repeat(600);
    for c in &clients {
        c.request(b"later", body.as_bytes());
    }
    b.wait_stdout(r#""reason":"queue_bytes""#);
    let _w = mdp_worker("later", port, "mdp", "later", &[]);
    // The three requests reach the broker in any order: exactly one of them (whichever came
    // first) was queued and is answered, the other two were refused and never are.
    let started = std::time::Instant::now();
    let answered = loop {
        let found = clients.iter().position(|c| {
            c.reply(Duration::from_millis(50))
                .is_some_and(|r| r == body.as_bytes())
        });
        if let Some(i) = found {
            break i;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the queued request was never answered"
        );
    };
    for (i, c) in clients.iter().enumerate().filter(|(i, _)| *i != answered) {
        assert_eq!(
            c.reply(Duration::from_millis(300)),
            None,
            "client {i}: refused, not queued"
        );
    }
    let s = stop_and_summarise(&mut b);
    assert_eq!(s["requests_rejected"], 2, "{s}");
}

#[test]
fn partials_to_a_v1_client_are_bounded_and_the_worker_serves_on() {
    let (mut b, port) = broker(&["--max-queue-bytes", "10KiB"]);
    // A 0.2 worker streaming N lines of "line": each but the last is a PARTIAL.
    let _w = mdp_worker(
        "lines",
        port,
        "mdp2",
        "lines",
        &["--exec", "read n; yes line | head -n $n"],
    );
    wait_service(port, "lines");
    let client = RawClient::new(port);
    client.request(b"lines", b"5000"); // 20 KB held for a 0.1 client: over the bound
    b.wait_stdout(r#""reason":"reply_too_big""#);
    assert_eq!(client.reply(Duration::from_millis(500)), None);
    assert_eq!(
        ask(port, "lines", "3"),
        (0, "line\nline\nline\n".to_string()),
        "the worker serves on\n--- broker\n{}--- worker\n{}",
        tail(&b.stdout.text()),
        tail(&_w.stderr.text())
    );
    let s = stop_and_summarise(&mut b);
    assert_eq!(s["requests_lost"], 1, "{s}");
}

#[test]
fn a_service_name_over_255_bytes_is_invalid_and_never_stored() {
    let (mut b, port) = broker(&[]);
    let _w = mdp_worker("echo", port, "mdp", "echo", &[]);
    wait_service(port, "echo");
    let hostile = RawClient::new(port);
    let long = vec![b'n'; 300];
    hostile.request(&long, b"x");
    // A worker that registers such a name is refused too.
    let long_service = "n".repeat(300);
    let _refused = mdp_worker("long", port, "mdp", &long_service, &[]);
    b.wait_stdout("a service name over 255 bytes");
    let (_, status) = ask(port, "mmi.status", "");
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(
        status["services"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["echo"],
        "{status}"
    );
    assert!(status["invalid"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(
        ask(port, "echo", "still here"),
        (0, "still here\n".to_string())
    );
    let s = stop_and_summarise(&mut b);
    assert!(s["invalid"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn verbose_dumps_show_a_bounded_prefix_of_a_big_frame_with_its_size() {
    let (b, port) = broker(&["-v"]);
    let client = RawClient::new(port);
    client.request(b"nobody", &vec![b'z'; 1 << 20]);
    b.wait_stderr("[1048576] zzz");
    let err = b.stderr.text();
    let longest = err.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1000, "a trace line of {longest} bytes");
}

#[test]
fn a_peer_claiming_a_workers_next_identities_cannot_lock_it_out() {
    let port = free_port();
    let bind = endpoint(port);
    let mut args = vec!["broker", "--json", "--bind", &bind];
    args.extend_from_slice(&MDP_HB);
    let mut first = spawn("broker", &args);
    first.wait_for("the broker to bind", |o, _| {
        o.contains(r#""event":"started""#)
    });
    let worker = mdp_worker("victim", port, "mdp", "echo", &[]);
    wait_service(port, "echo");
    first.signal(libc::SIGKILL);
    first.wait();
    let second = spawn("broker2", &args);
    second.wait_for("the broker to bind", |o, _| {
        o.contains(r#""event":"started""#)
    });
    // The attacker claims every identity the worker would have had next under a
    // predictable scheme (`NAME-N`, as pirate used to name them) before it reconnects.
    let ctx = zmq::Context::new();
    let squatters: Vec<zmq::Socket> = (2..=60)
        .map(|n| {
            let s = ctx.socket(zmq::DEALER).unwrap();
            s.set_linger(0).unwrap();
            s.set_identity(format!("victim-{n}").as_bytes()).unwrap();
            s.connect(&bind).unwrap();
            s
        })
        .collect();
    // The worker notices the dead broker and registers again on its next socket, with an
    // identity nobody could claim first, and serves.
    assert_eq!(ask(port, "echo", "mine"), (0, "mine\n".to_string()));
    assert!(second
        .stdout
        .text()
        .contains(r#""event":"service_worker_ready","worker":"victim-2-"#));
    drop(squatters);
    drop(worker);
}

#[test]
fn a_client_presents_a_fresh_unguessable_printable_identity_on_every_attempt() {
    // The test is the server: a ROUTER that records who asks and never answers.
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let at = router.get_last_endpoint().unwrap().unwrap();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for _ in 0..2 {
        let (code, _, err) = run(
            &[
                "client",
                "--connect",
                &at,
                "--timeout",
                "100ms",
                "--retries",
                "3",
                "x",
            ],
            None,
        );
        assert_eq!(code, 69, "{err}");
        router.set_rcvtimeo(1000).unwrap();
        while let Ok(frames) = router.recv_multipart(0) {
            seen.push(frames[0].clone());
            if seen.len().is_multiple_of(3) {
                break;
            }
        }
    }
    assert_eq!(seen.len(), 6, "one identity per attempt: {seen:?}");
    for id in &seen {
        // 32 hex digits: 128 random bits, printable (not libzmq's 0x00 + counter).
        assert_eq!(id.len(), 32, "{id:?}");
        assert!(id.iter().all(u8::is_ascii_hexdigit), "{id:?}");
    }
    let distinct: HashSet<&Vec<u8>> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "an identity was reused: {seen:?}"
    );
}

/// The identities the vendored libzmq 4.3.4 hands the first anonymous peers of a fresh ROUTER:
/// `0x00` and a 32-bit counter that starts at glibc's first unseeded `rand()`, 0x6B8B4567.
/// Exactly what an attacker would guess for the first clients of a freshly started queue.
fn libzmq_guesses() -> Vec<Vec<u8>> {
    (0..8u32)
        .map(|k| {
            let mut id = vec![0u8];
            id.extend_from_slice(&(0x6B8B_4567u32 + k).to_be_bytes());
            id
        })
        .collect()
}

#[test]
fn a_peer_claiming_a_timed_out_clients_identity_gets_nothing() {
    let (broker, port) = broker(&[]);
    // The worker answers after 2 s, long after the client has given up and closed its socket.
    let _worker = mdp_worker("slow", port, "mdp", "slow", &["--work", "2s"]);
    broker.wait_stdout(r#""event":"service_worker_ready""#);
    let (code, _, err) = run(
        &[
            "client",
            "--connect",
            &endpoint(port),
            "--service",
            "slow",
            "--timeout",
            "300ms",
            "--retries",
            "1",
            "secret",
        ],
        None,
    );
    assert_eq!(code, 69, "the client gives up: {err}");
    // The attacker now claims the identities the client may have had, and waits for its
    // late reply.
    let ctx = zmq::Context::new();
    let thieves: Vec<zmq::Socket> = libzmq_guesses()
        .into_iter()
        .map(|id| {
            let s = ctx.socket(zmq::DEALER).unwrap();
            s.set_linger(0).unwrap();
            s.set_identity(&id).unwrap();
            s.connect(&endpoint(port)).unwrap();
            s
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for thief in &thieves {
            if let Ok(frames) = thief.recv_multipart(zmq::DONTWAIT) {
                panic!("a guessed identity received the client's late reply: {frames:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
