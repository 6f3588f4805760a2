//! `idle-peers`: connected peers that cost a broker nothing but their presence, to show that
//! the cost per request stays flat as they grow.
//!
//! - `--workers N`: N 7/MDP 0.1 workers registered for service `idle` (no request ever goes
//!   there), each heartbeating every second, as a live worker does: the broker visits each
//!   on its heartbeat ticks. READY `""`, `"MDPW01"`, `0x01`, `"idle"`; HEARTBEAT `""`,
//!   `"MDPW01"`, `0x04`.
//! - `--clients M`: M client connections, each proved live by one `mmi.service` request
//!   (`""`, `"MDPC01"`, `"mmi.service"`, `"echo"`) answered by the broker, then silent.
//!
//! Prints `ready` once every worker has sent READY and every client had its answer, and
//! keeps them all connected until killed. libzmq allows 1023 sockets per context by default,
//! so the sockets are spread over contexts of 1000.

use std::thread;
use std::time::{Duration, Instant};

use crate::args::Flags;

const PER_CONTEXT: usize = 1000;
const HEARTBEAT: Duration = Duration::from_secs(1);

pub fn run(flags: &Flags) -> Result<(), String> {
    let endpoint = flags.text("connect")?.to_string();
    let workers = flags.number("workers", 0)?;
    let clients = flags.number("clients", 0)?;
    let contexts: Vec<zmq::Context> = (0..(workers + clients).div_ceil(PER_CONTEXT).max(1))
        .map(|_| zmq::Context::new())
        .collect();
    let mut made = 0;
    let mut socket = |kind| -> Result<zmq::Socket, String> {
        let s = contexts[made / PER_CONTEXT]
            .socket(kind)
            .map_err(|e| format!("socket {made}: {e}"))?;
        made += 1;
        s.set_linger(0).map_err(|e| e.to_string())?;
        s.connect(&endpoint).map_err(|e| e.to_string())?;
        Ok(s)
    };
    let mut idle_workers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let s = socket(zmq::DEALER)?;
        s.send_multipart([&b""[..], b"MDPW01", &[0x01], b"idle"], 0)
            .map_err(|e| e.to_string())?;
        idle_workers.push(s);
    }
    let mut idle_clients = Vec::with_capacity(clients);
    for _ in 0..clients {
        let s = socket(zmq::DEALER)?;
        s.send_multipart([&b""[..], b"MDPC01", b"mmi.service", b"echo"], 0)
            .map_err(|e| e.to_string())?;
        idle_clients.push(s);
    }
    let start = Instant::now();
    for (i, s) in idle_clients.iter().enumerate() {
        s.set_rcvtimeo(20_000).map_err(|e| e.to_string())?;
        s.recv_multipart(0)
            .map_err(|e| format!("idle client {i} had no answer in {:?}: {e}", start.elapsed()))?;
    }
    println!("ready");
    // Heartbeats in, heartbeats out; nothing else ever arrives (the service has no client).
    let mut next_beat = Instant::now() + HEARTBEAT;
    loop {
        let mut items: Vec<zmq::PollItem> = idle_workers
            .iter()
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        if items.is_empty() {
            thread::sleep(HEARTBEAT);
            continue;
        }
        let wait = next_beat.saturating_duration_since(Instant::now());
        zmq::poll(&mut items, wait.as_millis() as i64).map_err(|e| e.to_string())?;
        let readable: Vec<usize> = (0..items.len()).filter(|&i| items[i].is_readable()).collect();
        drop(items);
        for i in readable {
            while idle_workers[i].recv_multipart(zmq::DONTWAIT).is_ok() {}
        }
        if Instant::now() >= next_beat {
            for s in &idle_workers {
                let _ = s.send_multipart([&b""[..], b"MDPW01", &[0x04]], zmq::DONTWAIT);
            }
            next_beat += HEARTBEAT;
        }
    }
}
