//! The Guide's own C++ Pirate programs, played by a raw socket in the test: they spell 6/PPP's
//! commands as the strings "READY" and "HEARTBEAT". `pirate queue` must let such a worker in,
//! route it requests, and heartbeat it in the same words.

mod common;

use std::time::Instant;

use common::*;

const HB: [&str; 4] = ["--heartbeat", "50ms", "--liveness", "3"];

/// Plays the Guide's C++ ppworker (DEALER) or spworker (REQ, `simple`) on the queue's backend:
/// says "READY", echoes `requests` requests, and returns the first `heartbeats` heartbeats
/// the queue sent it.
fn cpp_worker(back: u16, simple: bool, requests: usize, want: usize) -> Vec<Vec<Vec<u8>>> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(50).unwrap();
    socket.connect(&endpoint(back)).unwrap();
    // A REQ socket puts an empty delimiter in front of everything; a DEALER plays it here.
    let lead: Vec<Vec<u8>> = if simple { vec![Vec::new()] } else { Vec::new() };
    let send = |frames: Vec<Vec<u8>>| {
        let mut all = lead.clone();
        all.extend(frames);
        socket.send_multipart(all, 0).unwrap();
    };
    send(vec![b"READY".to_vec()]);
    let (mut served, mut heartbeats) = (0, Vec::new());
    let start = Instant::now();
    while (served < requests || heartbeats.len() < want) && start.elapsed() < DEADLINE {
        let Ok(mut msg) = socket.recv_multipart(0) else {
            if !simple {
                send(vec![b"HEARTBEAT".to_vec()]);
            }
            continue;
        };
        if simple {
            assert!(msg[0].is_empty(), "no delimiter for a REQ worker: {msg:?}");
            msg.remove(0);
        }
        if msg.len() == 1 {
            heartbeats.push(msg);
            continue;
        }
        // [client envelope…][""][body]: echoed as is.
        send(msg);
        served += 1;
    }
    assert_eq!(served, requests, "the queue routed too few requests");
    heartbeats
}

#[test]
fn a_cpp_worker_that_says_ready_in_words_is_served_and_heartbeated_in_words() {
    for simple in [false, true] {
        let mut args = vec!["--json"];
        args.extend_from_slice(&HB);
        if simple {
            // The Simple queue sends no heartbeats: only the routing is checked.
            args.push("--simple");
        }
        let (queue, front, back) = start_queue(&args);
        // The Simple queue sends no heartbeats to wait for.
        let want = if simple { 0 } else { 2 };
        let worker = std::thread::spawn(move || cpp_worker(back, simple, 3, want));
        queue.wait_stdout(r#""event":"worker_ready""#);
        let (code, out, err) = run(
            &[
                "client",
                "--connect",
                &endpoint(front),
                "--json",
                "--count",
                "3",
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(replies(&out), sequence(3));
        let heartbeats = worker.join().unwrap();
        assert_eq!(heartbeats.len(), want, "{heartbeats:?}");
        assert!(
            heartbeats.iter().all(|h| h == &vec![b"HEARTBEAT".to_vec()]),
            "heartbeats not in the worker's words: {heartbeats:?}"
        );
        assert!(
            !queue.stdout.text().contains("invalid"),
            "{}",
            queue.stdout.text()
        );
    }
}

/// A ROUTER bound on a free port, playing the Guide's queue or broker.
fn fake_peer(ctx: &zmq::Context) -> (zmq::Socket, u16) {
    let socket = ctx.socket(zmq::ROUTER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(50).unwrap();
    let port = free_port();
    socket.bind(&endpoint(port)).unwrap();
    (socket, port)
}

/// The next message from a peer whose frame after the identity satisfies `want`.
fn next(socket: &zmq::Socket, want: impl Fn(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(msg) = socket.recv_multipart(0) {
            if want(&msg[1..]) {
                return msg;
            }
        }
    }
    panic!("the peer never sent what was expected");
}

#[test]
fn a_pirate_worker_answers_the_cpp_queue_in_words_and_serves_a_second_request_in_turn() {
    let ctx = zmq::Context::new();
    let (queue, port) = fake_peer(&ctx);
    let connect = endpoint(port);
    let mut args = vec!["worker", "--json", "--connect", &connect, "--work", "100ms"];
    args.extend_from_slice(&HB);
    let worker = spawn("worker", &args);
    let ready = next(&queue, |m| m == [vec![0x01]]);
    let id = ready[0].clone();
    // The C++ ppqueue heartbeats in words, and (trap 7) hands a busy worker a second request.
    queue
        .send_multipart([id.clone(), b"HEARTBEAT".to_vec()], 0)
        .unwrap();
    for body in [b"first", b"secnd"] {
        let request = [id.clone(), b"c".to_vec(), Vec::new(), body.to_vec()];
        queue.send_multipart(request, 0).unwrap();
    }
    let mut replies = Vec::new();
    let mut words = false;
    let start = Instant::now();
    while (replies.len() < 2 || !words) && start.elapsed() < DEADLINE {
        let Ok(msg) = queue.recv_multipart(0) else {
            continue;
        };
        match &msg[1..] {
            [beat] if beat == b"HEARTBEAT" => words = true,
            [beat] => panic!("a heartbeat not in the queue's words: {beat:?}"),
            [_client, _, body] => replies.push(body.clone()),
            other => panic!("unexpected {other:?}"),
        }
        let _ = queue.send_multipart([id.clone(), b"HEARTBEAT".to_vec()], 0);
    }
    assert_eq!(replies, [b"first".to_vec(), b"secnd".to_vec()], "in turn");
    assert!(words);
    drop(queue);
    worker.signal(libc::SIGTERM);
    worker.wait_for("the summary", |o, _| o.contains(r#""held_while_busy":1"#));
}

#[test]
fn a_disconnected_mdp_worker_registers_again_at_once_not_after_its_back_off() {
    let ctx = zmq::Context::new();
    let (broker, port) = fake_peer(&ctx);
    let connect = endpoint(port);
    // A back-off longer than the test's deadline: only an immediate reconnect passes.
    let mut args = vec!["worker", "--json", "--protocol", "mdp", "--service", "echo"];
    args.extend_from_slice(&["--connect", &connect]);
    args.extend_from_slice(&["--reconnect", "60s", "--reconnect-max", "60s"]);
    args.extend_from_slice(&HB);
    let worker = spawn("worker", &args);
    let is_ready = |m: &[Vec<u8>]| m.len() >= 3 && m[1] == b"MDPW01" && m[2] == [0x01];
    let first = next(&broker, is_ready);
    // The broker takes the READY (a HEARTBEAT), then disconnects the session, as a restarted
    // broker does to a worker it does not know. (A DISCONNECT as the answer to READY is a
    // refusal, which waits out the back-off: see guide_majordomo.rs.)
    let heartbeat = [first[0].clone(), Vec::new(), b"MDPW01".to_vec(), vec![0x04]];
    broker.send_multipart(heartbeat, 0).unwrap();
    let disconnect = [first[0].clone(), Vec::new(), b"MDPW01".to_vec(), vec![0x05]];
    broker.send_multipart(disconnect, 0).unwrap();
    let again = next(&broker, is_ready);
    assert_ne!(again[0], first[0], "a new socket, with a new identity");
    worker.wait_stdout(r#""reason":"disconnect","delay_ms":0"#);
}
