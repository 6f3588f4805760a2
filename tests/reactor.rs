//! The reactor through the library crate: a [`SocketKind::MandatoryRouter`] reports every
//! send's fate to the machine through `Machine::routed`, an unroutable one included, instead
//! of dropping it silently as a plain ROUTER does; a machine resending every unroutable
//! message cannot keep the loop from its stop; a [`SocketKind::NonBlockingDealer`] never
//! blocks and reports what its full queue refused.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pirate::reactor::{self, Ended, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use pirate::{Events, Message};

/// No test here may take longer than this, a loop that never ends included.
const HARD_TIMEOUT: Duration = Duration::from_secs(10);

const ROUTER: Slot = 0;

/// Binds a MandatoryRouter, sends to a peer nobody is (unroutable), then answers the one real
/// peer that says hello, then sends to nobody again, and exits once it has heard three fates.
struct Prober {
    endpoint: String,
    /// (peer identity, routed) for every send, in order.
    fates: Vec<(Vec<u8>, bool)>,
}

fn to(peer: &[u8], body: &[u8]) -> Message {
    Message::from_frames([peer.to_vec(), body.to_vec()])
}

impl Machine for Prober {
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: ROUTER,
            kind: SocketKind::MandatoryRouter,
            name: "router",
            bind: vec![self.endpoint.clone()],
            connect: vec![],
            identity: None,
        }]
    }

    fn start(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
        out.send(ROUTER, to(b"nobody", b"lost"));
    }

    fn handle(&mut self, input: Input<()>, _: Instant, out: &mut Outbox<()>, _: &mut Events) {
        if let Input::Message { msg, .. } = input {
            let peer = msg.get(0).expect("a ROUTER message has its peer").to_vec();
            out.send(ROUTER, to(&peer, b"welcome"));
            out.send(ROUTER, to(b"nobody", b"lost again"));
        }
    }

    fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn routed(
        &mut self,
        slot: Slot,
        msg: &Message,
        routed: bool,
        _now: Instant,
        out: &mut Outbox<()>,
        _events: &mut Events,
    ) {
        assert_eq!(slot, ROUTER);
        self.fates
            .push((msg.get(0).unwrap_or_default().to_vec(), routed));
        if self.fates.len() == 3 {
            out.exit();
        }
    }
}

/// Runs `machine` on a thread and waits for it at most [`HARD_TIMEOUT`]; on timeout the
/// stop is raised and the test fails (a loop that ignores the stop is left behind, failed).
fn run_bounded<M>(mut machine: M, stop: Stop) -> (M, Ended)
where
    M: Machine<Job = (), Done = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let stopper = stop.clone();
    thread::spawn(move || {
        let ended = reactor::run(&mut machine, |()| (), &stop, &mut Events::discard());
        let _ = tx.send((machine, ended));
    });
    match rx.recv_timeout(HARD_TIMEOUT) {
        Ok((machine, ended)) => (machine, ended.expect("the reactor ends without an error")),
        Err(_) => {
            stopper.request();
            panic!("the reactor did not end within {HARD_TIMEOUT:?}");
        }
    }
}

#[test]
fn a_mandatory_router_reports_unroutable_and_routed_sends_to_the_machine() {
    probe(format!("inproc://reactor-mandatory-{}", std::process::id()));
}

#[test]
fn a_mandatory_router_reports_both_fates_over_tcp_too() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    probe(format!("tcp://127.0.0.1:{port}"));
}

fn probe(endpoint: String) {
    let machine = Prober {
        endpoint: endpoint.clone(),
        fates: Vec::new(),
    };
    let peer = thread::spawn(move || {
        let dealer = pirate::transport::context().socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_identity(b"peer").unwrap();
        dealer
            .set_rcvtimeo(HARD_TIMEOUT.as_millis() as i32)
            .unwrap();
        // inproc allows connecting before the machine binds.
        dealer.connect(&endpoint).unwrap();
        dealer.send("hello", 0).unwrap();
        dealer.recv_multipart(0)
    });
    let (machine, ended) = run_bounded(machine, Stop::new());
    assert_eq!(ended, Ended::Exited);
    assert_eq!(
        machine.fates,
        [
            (b"nobody".to_vec(), false),
            (b"peer".to_vec(), true),
            (b"nobody".to_vec(), false),
        ]
    );
    assert_eq!(peer.join().unwrap().unwrap(), [b"welcome".to_vec()]);
}

/// Sends to a peer nobody is, and again each time it hears that the send found nobody: the
/// stop must still end the loop.
struct Retrier {
    endpoint: String,
    unroutable: u64,
}

impl Machine for Retrier {
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: ROUTER,
            kind: SocketKind::MandatoryRouter,
            name: "router",
            bind: vec![self.endpoint.clone()],
            connect: vec![],
            identity: None,
        }]
    }

    fn start(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
        out.send(ROUTER, to(b"nobody", b"lost"));
    }

    fn handle(&mut self, _: Input<()>, _: Instant, _: &mut Outbox<()>, _: &mut Events) {}

    fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn routed(
        &mut self,
        _slot: Slot,
        msg: &Message,
        routed: bool,
        _now: Instant,
        out: &mut Outbox<()>,
        _events: &mut Events,
    ) {
        if !routed {
            self.unroutable += 1;
            out.send(ROUTER, msg.clone());
        }
    }
}

#[test]
fn a_machine_that_resends_every_unroutable_message_still_stops() {
    let machine = Retrier {
        endpoint: format!("inproc://reactor-retrier-{}", std::process::id()),
        unroutable: 0,
    };
    let stop = Stop::new();
    let raiser = stop.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        raiser.request();
    });
    let (machine, ended) = run_bounded(machine, stop);
    assert_eq!(ended, Ended::Stopped);
    assert!(machine.unroutable > 1, "{}", machine.unroutable);
}

/// Sends [`FLOOD`] messages at start on a NonBlockingDealer whose peer never answers the
/// connection, and exits once it has heard every fate.
struct Flooder {
    sent: u64,
    refused: u64,
}

const FLOOD: u64 = 1500;

impl Machine for Flooder {
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: 0,
            kind: SocketKind::NonBlockingDealer,
            name: "dealer",
            bind: vec![],
            // Nobody listens on port 1: the messages queue until the queue is full.
            connect: vec!["tcp://127.0.0.1:1".into()],
            identity: None,
        }]
    }

    fn start(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
        for i in 0..FLOOD {
            out.send(0, Message::from_frames([i.to_string().into_bytes()]));
        }
    }

    fn handle(&mut self, _: Input<()>, _: Instant, _: &mut Outbox<()>, _: &mut Events) {}

    fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn routed(
        &mut self,
        _slot: Slot,
        _msg: &Message,
        routed: bool,
        _now: Instant,
        out: &mut Outbox<()>,
        _events: &mut Events,
    ) {
        if routed {
            self.sent += 1;
        } else {
            self.refused += 1;
        }
        if self.sent + self.refused == FLOOD {
            out.exit();
        }
    }
}

#[test]
fn a_non_blocking_dealer_never_blocks_on_a_full_queue_and_reports_what_it_dropped() {
    let machine = Flooder {
        sent: 0,
        refused: 0,
    };
    let (machine, ended) = run_bounded(machine, Stop::new());
    assert_eq!(ended, Ended::Exited);
    // ZeroMQ queues up to the send high-water mark (1000 by default), then refuses.
    assert!(
        machine.sent > 0 && machine.refused > 0,
        "{}/{}",
        machine.sent,
        machine.refused
    );
    assert_eq!(machine.sent + machine.refused, FLOOD);
}
