//! The reply-forging attack on `pirate queue` (Simple and Paranoid): a backend peer that does
//! not hold a client's request sends a reply for it. The queue must refuse it, count it, and
//! keep serving; the client must never print it.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

const HB: [&str; 4] = ["--heartbeat", "50ms", "--liveness", "3"];

type Frames = Vec<Vec<u8>>;

/// A DEALER on the queue's backend with `identity`.
fn backend_peer(ctx: &zmq::Context, port: u16, identity: &[u8]) -> zmq::Socket {
    let s = ctx.socket(zmq::DEALER).unwrap();
    s.set_linger(0).unwrap();
    s.set_identity(identity).unwrap();
    s.set_rcvtimeo(50).unwrap();
    s.connect(&endpoint(port)).unwrap();
    s
}

/// The next request the queue sends `peer`, heartbeats skipped, as its envelope (the
/// queue's ticket for the request, which stands for the client's envelope) and body. `simple`: the peer plays a REQ worker, whose messages
/// start with an empty frame.
fn next_request(peer: &zmq::Socket, simple: bool) -> (Frames, Frames) {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let Ok(mut msg) = peer.recv_multipart(0) else {
            continue;
        };
        if simple && msg.first().is_some_and(Vec::is_empty) {
            msg.remove(0);
        }
        if let Some(delimiter) = msg.iter().position(Vec::is_empty) {
            let body = msg.split_off(delimiter + 1);
            msg.pop();
            return (msg, body);
        }
    }
    panic!("the hostile worker got no request");
}

fn reply(envelope: &[Vec<u8>], body: &[u8]) -> Frames {
    let mut msg = envelope.to_vec();
    msg.push(Vec::new());
    msg.push(body.to_vec());
    msg
}

#[test]
fn a_reply_from_a_peer_that_does_not_hold_the_request_is_refused_and_never_printed() {
    for simple in [false, true] {
        let mode = if simple { "simple" } else { "paranoid" };
        let mut args = vec!["--json"];
        args.extend_from_slice(&HB);
        if simple {
            args.push("--simple");
        }
        let (mut queue, front, back) = start_queue(&args);
        let ctx = zmq::Context::new();
        // The holder registers as a worker, takes the first request, and never answers it.
        let holder = backend_peer(&ctx, back, b"holder");
        let ready: Frames = if simple {
            vec![vec![], vec![0x01]]
        } else {
            vec![vec![0x01]]
        };
        holder.send_multipart(&ready, 0).unwrap();
        queue.wait_for("the holder", |o, _| o.contains(r#""event":"worker_ready""#));
        // The forger connects now, so its reply is not held up by its own connect later.
        let forger = backend_peer(&ctx, back, b"forger");
        thread::sleep(Duration::from_millis(100));
        let connect = endpoint(front);
        let mut client = spawn(
            "client",
            &[
                "client",
                "--json",
                "--connect",
                &connect,
                "--timeout",
                "1s",
                "--retries",
                "5",
                "r1",
                "r2",
                "r3",
            ],
        );
        // The envelope: the queue's ticket for this request.
        let (envelope, _) = next_request(&holder, simple);
        assert_eq!(envelope.len(), 1, "{mode}: {envelope:?}");
        // A peer that never sent READY forges the reply with the exact envelope (so the
        // client would take it), and then the holder sends one for an envelope it does not
        // hold (another ticket).
        forger
            .send_multipart(reply(&envelope, b"FORGED"), 0)
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        let mut other = envelope.clone();
        *other.last_mut().unwrap() = b"0000000000000000".to_vec();
        let mut stale = reply(&other, b"STALE");
        if simple {
            stale.insert(0, Vec::new());
        }
        holder.send_multipart(&stale, 0).unwrap();
        // An honest worker takes the client's retry and the rest.
        let mut worker = vec!["worker", "--json", "--protocol", mode, "--connect"];
        let back_ep = endpoint(back);
        worker.push(&back_ep);
        worker.extend_from_slice(&HB);
        let _honest = spawn("worker", &worker);
        assert_eq!(client.code(), 0, "{mode}: {}", client.stderr.text());
        let out = client.stdout.text();
        assert_eq!(replies(&out), ["r1", "r2", "r3"], "{mode}");
        assert!(
            !out.contains("FORGED") && !out.contains("STALE"),
            "{mode}: {out}"
        );
        // It keeps serving.
        let (code, out, err) = run(&["client", "--json", "--connect", &connect, "ok"], None);
        assert_eq!((code, replies(&out)), (0, vec!["ok".to_string()]), "{err}");
        let s = stop_and_summarise(&mut queue);
        assert_eq!(s["refused_replies"], 2, "{mode}: {s}");
        assert!(
            queue.stdout.text().contains("forged or stale"),
            "{mode}: traced"
        );
    }
}
