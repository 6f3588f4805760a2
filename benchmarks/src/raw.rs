//! The floor: a bare ZeroMQ ROUTER that echoes, and a DEALER that keeps `--in-flight`
//! requests outstanding for `--duration`. No broker, no protocol: one round trip over
//! loopback TCP, as cheap as request-reply over ZeroMQ gets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::args::Flags;
use crate::latency::Latencies;

/// `raw-echo-server --bind ENDPOINT`: echoes every message (its routing id included) until
/// killed.
pub fn server(flags: &Flags) -> Result<(), String> {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).map_err(|e| e.to_string())?;
    router.set_linger(0).map_err(|e| e.to_string())?;
    router
        .bind(flags.text("bind")?)
        .map_err(|e| format!("cannot bind: {e}"))?;
    loop {
        let frames = router.recv_multipart(0).map_err(|e| e.to_string())?;
        router
            .send_multipart(frames, 0)
            .map_err(|e| e.to_string())?;
    }
}

/// `raw-echo-client --connect ENDPOINT --in-flight N --duration D --size BYTES`: prints one
/// JSON record. The echo keeps order on one connection, so each reply answers the oldest
/// request outstanding.
pub fn client(flags: &Flags) -> Result<(), String> {
    let in_flight = flags.number("in-flight", 1)?.max(1);
    let duration = flags.duration("duration", Duration::from_secs(2))?;
    let body = vec![b'.'; flags.number("size", 11)?];
    let ctx = zmq::Context::new();
    let dealer = ctx.socket(zmq::DEALER).map_err(|e| e.to_string())?;
    dealer.set_linger(0).map_err(|e| e.to_string())?;
    dealer.set_rcvtimeo(5000).map_err(|e| e.to_string())?;
    dealer
        .connect(flags.text("connect")?)
        .map_err(|e| e.to_string())?;
    // The connection is up once one round trip has been made.
    dealer.send(&body, 0).map_err(|e| e.to_string())?;
    dealer.recv_bytes(0).map_err(|e| format!("no echo: {e}"))?;
    let mut latencies = Latencies::default();
    let mut outstanding = VecDeque::with_capacity(in_flight);
    let started = Instant::now();
    let end = started + duration;
    loop {
        let now = Instant::now();
        while now < end && outstanding.len() < in_flight {
            dealer.send(&body, 0).map_err(|e| e.to_string())?;
            outstanding.push_back(Instant::now());
        }
        let Some(sent) = outstanding.pop_front() else {
            break;
        };
        dealer.recv_bytes(0).map_err(|e| format!("no echo: {e}"))?;
        latencies.record(sent.elapsed());
    }
    println!("{}", latencies.record_json(started.elapsed()));
    Ok(())
}
