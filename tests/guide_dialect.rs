//! Cases the Guide's real programs cannot show on demand, played by a raw socket in the test.
//! (The Guide's C++ and Python Simple and Paranoid Pirate programs themselves run against
//! pirate in `tests/guide_pirate.rs`, which replaced this file's fakes of them.)

mod common;

use std::time::Instant;

use common::*;

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
fn a_disconnected_mdp_worker_registers_again_at_once_not_after_its_back_off() {
    let ctx = zmq::Context::new();
    let (broker, port) = fake_peer(&ctx);
    let connect = endpoint(port);
    // A back-off longer than the test's deadline: only an immediate reconnect passes.
    let mut args = vec!["worker", "--json", "--protocol", "mdp", "--service", "echo"];
    args.extend_from_slice(&["--connect", &connect]);
    args.extend_from_slice(&["--reconnect", "60s", "--reconnect-max", "60s"]);
    args.extend_from_slice(&FAST_HB);
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
