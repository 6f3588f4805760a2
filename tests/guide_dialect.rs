//! Cases the Guide's real programs cannot show on demand, played by a raw socket in the test.
//! (The Guide's C++ and Python Simple and Paranoid Pirate programs themselves run against
//! pirate in `tests/guide_pirate.rs`; this file used to fake them.)

mod common;

use std::time::Instant;

use common::*;

const HB: [&str; 4] = ["--heartbeat", "50ms", "--liveness", "3"];

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

/// A queue that spells the commands as words (ppqueue.cpp: `zmsg msg ("HEARTBEAT")`) and hands
/// a busy worker a second request, as ppqueue.py does when it re-queues a worker on any
/// message from it (`workers.ready(Worker(address))` before looking at the frames; trap 7).
/// The real ppqueue.py does this only when a heartbeat happens to arrive while the worker is
/// busy, which a test cannot schedule, so the test sends the second request itself.
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
    let disconnect = [first[0].clone(), Vec::new(), b"MDPW01".to_vec(), vec![0x05]];
    broker.send_multipart(disconnect, 0).unwrap();
    let again = next(&broker, is_ready);
    assert_ne!(again[0], first[0], "a new socket, with a new identity");
    worker.wait_stdout(r#""reason":"disconnect","delay_ms":0"#);
}
