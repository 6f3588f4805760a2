//! Majordomo throughput benchmark (not a test): `cargo bench --bench majordomo`.
//!
//! Runs, in one go and on the same machine state, a raw ZeroMQ DEALER→ROUTER echo over
//! loopback TCP (the ceiling: one round trip, no broker) and `pirate broker` + one
//! `pirate worker --protocol mdp` + `pirate client --service echo` as separate processes (two
//! hops more per request), synchronously and with `--window 100`. It prints requests/s,
//! latency percentiles and each pirate figure as a ratio of the raw echo measured beside it:
//! ratios, not absolute numbers, are what carry from one machine to another.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const MESSAGE: &[u8] = b"hello world, a 32-byte request.";
const SYNC_REQUESTS: u64 = 20_000;
const ASYNC_REQUESTS: u64 = 200_000;
const WINDOW: usize = 100;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A raw ROUTER echo on its own thread.
fn raw_echo_server(ctx: &zmq::Context, endpoint: &str) {
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind(endpoint).unwrap();
    thread::spawn(move || loop {
        match router.recv_multipart(0) {
            Ok(frames) => {
                if router.send_multipart(frames, 0).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
}

/// Requests/s of a raw DEALER client keeping `window` requests in flight.
fn raw_echo(endpoint: &str, requests: u64, window: u64) -> f64 {
    let ctx = zmq::Context::new();
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.connect(endpoint).unwrap();
    // Warm up the connection.
    dealer.send(MESSAGE, 0).unwrap();
    dealer.recv_bytes(0).unwrap();
    let started = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    while received < requests {
        while sent < requests && sent - received < window {
            dealer.send(MESSAGE, 0).unwrap();
            sent += 1;
        }
        dealer.recv_bytes(0).unwrap();
        received += 1;
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pirate(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pirate"));
    cmd.args(args);
    cmd
}

/// Runs the pirate client and returns (requests/s, p50 ms, p99 ms) from its JSON summary.
fn pirate_client(endpoint: &str, requests: u64, window: usize) -> (f64, f64, f64) {
    let count = requests.to_string();
    let window = window.to_string();
    let output = pirate(&[
        "client",
        "-q",
        "--json",
        "--connect",
        endpoint,
        "--service",
        "echo",
        "--count",
        &count,
        "--window",
        &window,
        "--timeout",
        "30s",
    ])
    .stderr(Stdio::inherit())
    .output()
    .expect("cannot run pirate client");
    assert!(output.status.success(), "client failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("no summary")).unwrap();
    assert_eq!(summary["replied"].as_u64(), Some(requests), "{summary}");
    let elapsed = summary["elapsed_ms"].as_f64().unwrap() / 1000.0;
    (
        requests as f64 / elapsed,
        summary["latency_ms"]["p50"].as_f64().unwrap(),
        summary["latency_ms"]["p99"].as_f64().unwrap(),
    )
}

fn main() {
    // `cargo bench` passes flags such as --bench; this harness takes none.
    let raw_endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let ctx = zmq::Context::new();
    raw_echo_server(&ctx, &raw_endpoint);
    let raw_sync = raw_echo(&raw_endpoint, SYNC_REQUESTS, 1);
    let raw_async = raw_echo(&raw_endpoint, ASYNC_REQUESTS, WINDOW as u64);

    let broker_endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let _broker = Killed(
        pirate(&["broker", "-q", "--bind", &broker_endpoint])
            .spawn()
            .expect("cannot start the broker"),
    );
    let _worker = Killed(
        pirate(&[
            "worker",
            "-q",
            "--protocol",
            "mdp",
            "--service",
            "echo",
            "--connect",
            &broker_endpoint,
        ])
        .spawn()
        .expect("cannot start the worker"),
    );
    thread::sleep(Duration::from_millis(500));
    let (sync_rate, sync_p50, sync_p99) = pirate_client(&broker_endpoint, SYNC_REQUESTS, 1);
    let (async_rate, async_p50, async_p99) =
        pirate_client(&broker_endpoint, ASYNC_REQUESTS, WINDOW);

    println!("| mode | raw DEALER/ROUTER echo (req/s) | pirate broker + worker (req/s) | ratio | pirate p50 | pirate p99 |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| sync (1 in flight) | {raw_sync:.0} | {sync_rate:.0} | {:.2} | {sync_p50:.3} ms | {sync_p99:.3} ms |",
        sync_rate / raw_sync
    );
    println!(
        "| --window {WINDOW} | {raw_async:.0} | {async_rate:.0} | {:.2} | {async_p50:.3} ms | {async_p99:.3} ms |",
        async_rate / raw_async
    );
}
