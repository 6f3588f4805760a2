//! A Majordomo load generator for measuring a broker alone (not a test, not a benchmark the
//! suite runs): `N` echo workers and `C` clients keeping `W` requests in flight in all, on
//! plain DEALER sockets in this one process, against any MDP 0.1 broker.
//!
//! ```text
//! cargo run --release --example mdp_load -- tcp://127.0.0.1:5555 WORKERS WINDOW COUNT [CLIENTS]
//! ```
//!
//! Prints one line: `workers=N window=W clients=C count=K secs=S rps=R`.
//!
//! `mdp_load floor ENDPOINT` is instead the least a broker on libzmq can do: one ROUTER that
//! hands each 0.1 request to the next idle worker and each reply back, moving ZeroMQ frames
//! without a copy, with no heartbeats, bounds, services or checks. Measured in place of a
//! broker, it is the floor that libzmq, the loopback and this machine put under any broker. Workers answer at
//! once, so the figure is what the broker (and the loopback) can route; a worker and the
//! clients each run on one thread, so on a small machine they share its cores with the broker.
//!
//! Frames (7/MDP 0.1), behind the DEALER's own envelope-less framing:
//! client REQUEST `""`, `"MDPC01"`, service, body · worker READY `""`, `"MDPW01"`, `0x01`,
//! service · REQUEST `""`, `"MDPW01"`, `0x02`, client, `""`, body · REPLY `0x03` the same ·
//! HEARTBEAT `0x04`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const SERVICE: &[u8] = b"echo";
const BODY: &[u8] = b"hello world";
const HEARTBEAT: Duration = Duration::from_millis(1000);

fn dealer(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let s = ctx.socket(zmq::DEALER).expect("socket");
    s.set_linger(0).expect("linger");
    s.set_sndhwm(0).expect("sndhwm");
    s.set_rcvhwm(0).expect("rcvhwm");
    s.connect(endpoint).expect("connect");
    s
}

/// `n` echo workers on one thread until `stop`.
fn workers(endpoint: String, n: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let ctx = zmq::Context::new();
        let sockets: Vec<zmq::Socket> = (0..n).map(|_| dealer(&ctx, &endpoint)).collect();
        for s in &sockets {
            s.send_multipart([&b""[..], b"MDPW01", &[0x01], SERVICE], 0)
                .expect("ready");
        }
        let mut served = 0u64;
        let mut beat = Instant::now() + HEARTBEAT;
        let mut frames: Vec<zmq::Message> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut items: Vec<zmq::PollItem> = sockets
                .iter()
                .map(|s| s.as_poll_item(zmq::POLLIN))
                .collect();
            if zmq::poll(&mut items, 100).is_err() {
                continue;
            }
            let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
            for (s, ready) in sockets.iter().zip(ready) {
                if !ready {
                    continue;
                }
                while recv(s, &mut frames) {
                    // REQUEST: "", MDPW01, 0x02, client, "", body… -> REPLY 0x03, same frames.
                    if frames.len() >= 6 && frames[2][..] == [0x02] {
                        frames[2] = zmq::Message::from(&[0x03u8][..]);
                        send(s, &mut frames);
                        served += 1;
                    }
                }
            }
            if Instant::now() >= beat {
                beat += HEARTBEAT;
                for s in &sockets {
                    let _ = s.send_multipart([&b""[..], b"MDPW01", &[0x04]], zmq::DONTWAIT);
                }
            }
        }
        for s in &sockets {
            let _ = s.send_multipart([&b""[..], b"MDPW01", &[0x05]], zmq::DONTWAIT);
        }
        served
    })
}

/// Reads one whole message into `frames` without blocking; false when none is waiting.
fn recv(s: &zmq::Socket, frames: &mut Vec<zmq::Message>) -> bool {
    frames.clear();
    loop {
        let mut part = zmq::Message::new();
        if s.recv(&mut part, zmq::DONTWAIT).is_err() {
            return !frames.is_empty();
        }
        frames.push(part);
        if !s.get_rcvmore().unwrap_or(false) {
            return true;
        }
    }
}

fn send(s: &zmq::Socket, frames: &mut Vec<zmq::Message>) {
    let last = frames.len() - 1;
    for (i, f) in frames.drain(..).enumerate() {
        let more = if i < last { zmq::SNDMORE } else { 0 };
        s.send(f, more).expect("send");
    }
}

/// `count` requests through `clients` sockets, `window` in flight in all; seconds taken.
fn clients(endpoint: &str, clients: usize, window: usize, count: u64) -> f64 {
    let ctx = zmq::Context::new();
    let sockets: Vec<zmq::Socket> = (0..clients).map(|_| dealer(&ctx, endpoint)).collect();
    let request = |s: &zmq::Socket| {
        s.send_multipart([&b""[..], b"MDPC01", SERVICE, BODY], 0)
            .expect("request")
    };
    let mut frames = Vec::new();
    let mut run = |count: u64| {
        let per = (window / clients).max(1);
        let mut sent = 0u64;
        let mut received = 0u64;
        for s in &sockets {
            for _ in 0..per {
                if sent < count {
                    request(s);
                    sent += 1;
                }
            }
        }
        while received < count {
            let mut items: Vec<zmq::PollItem> = sockets
                .iter()
                .map(|s| s.as_poll_item(zmq::POLLIN))
                .collect();
            zmq::poll(&mut items, 5000).expect("poll");
            assert!(
                items.iter().any(|i| i.is_readable()),
                "no reply in 5 s ({received} of {count})"
            );
            let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
            for (s, ready) in sockets.iter().zip(ready) {
                if !ready {
                    continue;
                }
                while recv(s, &mut frames) {
                    received += 1;
                    if sent < count {
                        request(s);
                        sent += 1;
                    }
                }
            }
        }
    };
    // Warm up: every connection made and every worker registered and used.
    run((window as u64 * 10).max(1000));
    let started = Instant::now();
    run(count);
    started.elapsed().as_secs_f64()
}

/// The floor broker (see the module docs), until killed.
fn floor(endpoint: &str) {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).expect("socket");
    router.set_sndhwm(0).expect("sndhwm");
    router.set_rcvhwm(0).expect("rcvhwm");
    router.bind(endpoint).expect("bind");
    let mut idle: std::collections::VecDeque<zmq::Message> = Default::default();
    let mut waiting: std::collections::VecDeque<Vec<zmq::Message>> = Default::default();
    let mut frames = Vec::new();
    let dispatch =
        |idle: &mut std::collections::VecDeque<zmq::Message>,
         waiting: &mut std::collections::VecDeque<Vec<zmq::Message>>| {
            while !idle.is_empty() && !waiting.is_empty() {
                // [client, "", MDPC01, service, body…] -> [worker, "", MDPW01, 0x02, client, "", body…]
                let mut request = waiting.pop_front().unwrap();
                let body = request.split_off(4);
                let client = request.swap_remove(0);
                let mut out = vec![
                    idle.pop_front().unwrap(),
                    zmq::Message::new(),
                    zmq::Message::from(&b"MDPW01"[..]),
                    zmq::Message::from(&[0x02u8][..]),
                    client,
                    zmq::Message::new(),
                ];
                out.extend(body);
                send(&router, &mut out);
            }
        };
    loop {
        frames.clear();
        loop {
            let mut part = zmq::Message::new();
            router.recv(&mut part, 0).expect("recv");
            let more = part.get_more();
            frames.push(part);
            if !more {
                break;
            }
        }
        if frames.len() < 4 {
            continue;
        }
        if &frames[2][..] == b"MDPC01" {
            waiting.push_back(std::mem::take(&mut frames));
        } else if &frames[2][..] == b"MDPW01" {
            match frames[3][..] {
                [0x01] => idle.push_back(frames.swap_remove(0)),
                [0x03] if frames.len() >= 7 => {
                    // [worker, "", MDPW01, 0x03, client, "", body…] -> [client, "", MDPC01, echo, body…]
                    let body = frames.split_off(6);
                    let client = frames.swap_remove(4);
                    idle.push_back(frames.swap_remove(0));
                    let mut out = vec![
                        client,
                        zmq::Message::new(),
                        zmq::Message::from(&b"MDPC01"[..]),
                        zmq::Message::from(SERVICE),
                    ];
                    out.extend(body);
                    send(&router, &mut out);
                }
                _ => {}
            }
        }
        dispatch(&mut idle, &mut waiting);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("floor") {
        return floor(args.get(1).expect("usage: mdp_load floor ENDPOINT"));
    }
    let usage = "usage: mdp_load ENDPOINT WORKERS WINDOW COUNT [CLIENTS]";
    let endpoint = args.first().expect(usage).clone();
    let num = |i: usize, default: u64| {
        args.get(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (n, window, count) = (num(1, 1) as usize, num(2, 1) as usize, num(3, 20_000));
    let c = num(4, 1) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let served = workers(endpoint.clone(), n, stop.clone());
    // Let the workers register before the first request.
    thread::sleep(Duration::from_millis(300));
    let secs = clients(&endpoint, c, window, count);
    stop.store(true, Ordering::Relaxed);
    let _ = served.join();
    println!(
        "workers={n} window={window} clients={c} count={count} secs={secs:.3} rps={:.0}",
        count as f64 / secs
    );
}
