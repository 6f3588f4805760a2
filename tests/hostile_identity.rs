//! The routing-id squatting attack on every role that binds a ROUTER (broker, queue on both
//! sides, Lazy, Freelance and Binary Star servers, chaos proxy). A ROUTER names an anonymous
//! peer `00` + a 32-bit counter that libzmq starts at `rand()`, which it never seeds, and
//! counts up. A hostile peer claims the next few of those ids with ZMQ_ROUTING_ID, then an
//! anonymous peer connects: unpatched libzmq 4.3.4/4.3.5 generated the claimed id a second
//! time and aborted (`Assertion failed: ok (socket_base.cpp)`, exit 134). The fix lives in
//! vendor/zmq-sys/patches; here, normal clients must still get every reply afterwards.

mod common;

use common::*;

/// The first values libzmq's `generate_random()` returns in a process whose `rand()` is
/// unseeded (glibc: 1804289383, 846930886, 1681692777, …; low word, then the low bit of the
/// next draw as bit 31). Every ROUTER, REP and REQ socket a process creates takes the next
/// one, so the role's ROUTERs start at some of these.
const COUNTER_STARTS: [u32; 5] = [
    0x6B8B_4567,
    0xE43C_9869,
    0xF4B0_DC51,
    0x2AE8_944A,
    0xA38E_1F29,
];
/// How many ids past each start are claimed.
const AHEAD: u32 = 3;

/// The hostile peer: one DEALER per claimed id, plus an anonymous DEALER that makes the
/// ROUTER generate an id (the role's own clients need not be anonymous).
struct Squatter {
    _ctx: zmq::Context,
    _sockets: Vec<zmq::Socket>,
}

/// Claims the ids `00 <start+k>` (big-endian) for every start and `k < AHEAD` on `endpoint`,
/// waits until each claim's handshake is done, then connects one anonymous peer.
fn squat(endpoint: &str) -> Squatter {
    let ctx = zmq::Context::new();
    let mut sockets = Vec::new();
    for start in COUNTER_STARTS {
        for k in 0..AHEAD {
            let mut id = vec![0u8];
            id.extend_from_slice(&start.wrapping_add(k).to_be_bytes());
            sockets.push(connected(&ctx, endpoint, Some(&id)));
        }
    }
    sockets.push(connected(&ctx, endpoint, None));
    Squatter {
        _ctx: ctx,
        _sockets: sockets,
    }
}

/// A DEALER connected to `endpoint` (with `id` as its routing id), returned once its ZMTP
/// handshake has succeeded, so the ROUTER has seen the id before the next peer comes, or
/// once the role hung up (an unpatched role dies here: `assert_alive` tells).
fn connected(ctx: &zmq::Context, endpoint: &str, id: Option<&[u8]>) -> zmq::Socket {
    let socket = ctx.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    if let Some(id) = id {
        socket.set_identity(id).unwrap();
    }
    let monitor_at = format!("inproc://squat-{}", unique());
    socket
        .monitor(&monitor_at, zmq::SocketEvent::ALL as i32)
        .unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.connect(&monitor_at).unwrap();
    monitor.set_rcvtimeo(DEADLINE.as_millis() as i32).unwrap();
    socket.connect(endpoint).unwrap();
    loop {
        let event = monitor
            .recv_multipart(0)
            .unwrap_or_else(|e| panic!("no handshake with {endpoint} as {id:?}: {e}"));
        let event = zmq::SocketEvent::from_raw(u16::from_le_bytes([event[0][0], event[0][1]]));
        use zmq::SocketEvent::*;
        if matches!(
            event,
            HANDSHAKE_SUCCEEDED
                | DISCONNECTED
                | CONNECT_RETRIED
                | HANDSHAKE_FAILED_NO_DETAIL
                | HANDSHAKE_FAILED_PROTOCOL
                | HANDSHAKE_FAILED_AUTH
        ) {
            break;
        }
    }
    socket
}

/// A number unique in this test process, for inproc monitor endpoints.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs a `--json` client with `args` and asserts it got replies 1..=5 in order.
fn assert_served(role: &mut Proc, args: &[&str]) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", "--count", "5"]);
    let (code, out, err) = run(&all, None);
    assert_alive(role);
    assert_eq!(code, 0, "client failed: {err}");
    assert_eq!(replies(&out), sequence(5));
}

/// The role is still running (unpatched, it died by SIGABRT: exit 134 from a shell).
fn assert_alive(role: &mut Proc) {
    if role.has_exited() {
        let status = role.wait();
        panic!(
            "{} died: {status:?}\n--- stderr\n{}",
            role.name,
            role.stderr.text()
        );
    }
}

/// Squats every endpoint in `targets`, then serves clients `args` twice (the second run
/// connects after the first generated ids, so later generations are checked too).
fn attack_then_serve(role: &mut Proc, targets: &[&str], client: &[&str]) {
    let _squatters: Vec<Squatter> = targets.iter().map(|e| squat(e)).collect();
    assert_served(role, client);
    assert_served(role, client);
}

#[test]
fn broker_keeps_serving() {
    let (mut broker, port) =
        start_broker(&["--json", FAST_HB[0], FAST_HB[1], FAST_HB[2], FAST_HB[3]]);
    let at = endpoint(port);
    let _worker = service_worker("echo", &at, &FAST_HB);
    broker.wait_stdout(r#""event":"service_worker_ready""#);
    attack_then_serve(
        &mut broker,
        &[at.as_str()],
        &["client", "--connect", &at, "--service", "echo"],
    );
}

/// A Paranoid Pirate queue with one worker: (queue, frontend, backend, the worker).
fn queue_with_worker() -> (Proc, String, String, Proc) {
    let (queue, front, back) =
        start_queue(&["--json", FAST_HB[0], FAST_HB[1], FAST_HB[2], FAST_HB[3]]);
    let (f, b) = (endpoint(front), endpoint(back));
    let worker = spawn(
        "worker",
        &[
            "worker",
            "--connect",
            &b,
            FAST_HB[0],
            FAST_HB[1],
            FAST_HB[2],
            FAST_HB[3],
        ],
    );
    queue.wait_stdout(r#""event":"worker_ready""#);
    (queue, f, b, worker)
}

#[test]
fn queue_keeps_serving_when_its_frontend_is_squatted() {
    let (mut queue, front, _, _worker) = queue_with_worker();
    attack_then_serve(
        &mut queue,
        &[front.as_str()],
        &["client", "--connect", &front],
    );
}

#[test]
fn queue_keeps_serving_when_its_backend_is_squatted() {
    let (mut queue, front, back, _worker) = queue_with_worker();
    attack_then_serve(
        &mut queue,
        &[back.as_str()],
        &["client", "--connect", &front],
    );
}

#[test]
fn lazy_pirate_server_keeps_serving() {
    let (mut server, port) = start_server(&[]);
    let at = endpoint(port);
    attack_then_serve(&mut server, &[at.as_str()], &["client", "--connect", &at]);
}

#[test]
fn freelance_server_keeps_serving() {
    let (mut server, port) = start_freelance_server("freelance", &[]);
    let at = endpoint(port);
    attack_then_serve(
        &mut server,
        &[at.as_str()],
        &["client", "--freelance", "--connect", &at],
    );
}

#[test]
fn binary_star_server_keeps_serving() {
    let ports = BstarPorts::new();
    let mut primary = start_bstar_node(&ports, true, "100ms", &[]);
    let backup = start_bstar_node(&ports, false, "100ms", &[]);
    primary.wait_stderr("state: ACTIVE");
    backup.wait_stderr("state: PASSIVE");
    attack_then_serve(
        &mut primary,
        &[ports.primary.as_str(), ports.backup.as_str()],
        &[
            "client",
            "--connect",
            &ports.primary,
            "--connect",
            &ports.backup,
        ],
    );
}

#[test]
fn chaos_proxy_keeps_serving() {
    let (_server, server_port) = start_server(&[]);
    let port = free_port();
    let (front, back) = (endpoint(port), endpoint(server_port));
    let mut proxy = spawn(
        "proxy",
        &["chaos", "proxy", "--frontend", &front, "--backend", &back],
    );
    proxy.wait_stderr("proxy on");
    attack_then_serve(
        &mut proxy,
        &[front.as_str()],
        &["client", "--connect", &front],
    );
}
