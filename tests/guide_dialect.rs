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
