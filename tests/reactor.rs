//! The reactor through the library crate: a [`SocketKind::MandatoryRouter`] reports every
//! send's fate to the machine through `Machine::routed`, an unroutable one included, instead
//! of dropping it silently as a plain ROUTER does; a machine resending every unroutable
//! message cannot keep the loop from its stop; a [`SocketKind::NonBlockingDealer`] never
//! blocks and reports what its full queue refused; nor does a send on a plain DEALER or REQ
//! that has no peer.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pirate::reactor::{self, Ended, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use pirate::{Events, Message};

/// No test here may take longer than this, a loop that never ends included.
const HARD_TIMEOUT: Duration = Duration::from_secs(10);

const SOCKET: Slot = 0;

/// A machine with one socket that records the fate of every send: it sends `first` at start,
/// what `answer` makes of each message it receives, the same message again after each
/// unroutable send when `resend`, and exits once it has heard `exit_after` fates.
struct Fates {
    kind: SocketKind,
    bind: Vec<String>,
    connect: Vec<String>,
    first: Vec<Message>,
    answer: fn(&[u8]) -> Vec<Message>,
    resend: bool,
    exit_after: Option<usize>,
    /// (first frame, routed) for every send, in order.
    fates: Vec<(Vec<u8>, bool)>,
}

impl Fates {
    fn new(kind: SocketKind, first: Vec<Message>) -> Self {
        Fates {
            kind,
            bind: vec![],
            connect: vec![],
            first,
            answer: |_| Vec::new(),
            resend: false,
            exit_after: None,
            fates: Vec::new(),
        }
    }

    fn routed_count(&self, routed: bool) -> usize {
        self.fates.iter().filter(|(_, r)| *r == routed).count()
    }
}

fn to(peer: &[u8], body: &[u8]) -> Message {
    Message::from_frames([peer.to_vec(), body.to_vec()])
}

impl Machine for Fates {
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: SOCKET,
            kind: self.kind,
            name: "probe",
            bind: self.bind.clone(),
            connect: self.connect.clone(),
            identity: None,
        }]
    }

    fn start(&mut self, _now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
        for msg in self.first.drain(..) {
            out.send(SOCKET, msg);
        }
    }

    fn handle(&mut self, input: Input<()>, _: Instant, out: &mut Outbox<()>, _: &mut Events) {
        if let Input::Message { msg, .. } = input {
            for reply in (self.answer)(msg.get(0).unwrap_or_default()) {
                out.send(SOCKET, reply);
            }
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
        assert_eq!(slot, SOCKET);
        self.fates
            .push((msg.get(0).unwrap_or_default().to_vec(), routed));
        if self.resend && !routed {
            out.send(SOCKET, msg.clone());
        }
        if Some(self.fates.len()) == self.exit_after {
            out.exit();
        }
    }
}

/// Runs `machine` on a thread and waits for it at most [`HARD_TIMEOUT`]; on timeout the
/// stop is raised and the test fails (a loop that ignores the stop is left behind, failed).
fn run_bounded(mut machine: Fates, stop: Stop) -> (Fates, Ended) {
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

/// Sends to a peer nobody is (unroutable), answers the one real peer that says hello, sends to
/// nobody again, and expects to have heard all three fates.
fn probe(endpoint: String) {
    let mut machine = Fates::new(SocketKind::MandatoryRouter, vec![to(b"nobody", b"lost")]);
    machine.bind = vec![endpoint.clone()];
    machine.answer = |peer| vec![to(peer, b"welcome"), to(b"nobody", b"lost again")];
    machine.exit_after = Some(3);
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

#[test]
fn a_machine_that_resends_every_unroutable_message_still_stops() {
    let mut machine = Fates::new(SocketKind::MandatoryRouter, vec![to(b"nobody", b"lost")]);
    machine.bind = vec![format!("inproc://reactor-retrier-{}", std::process::id())];
    machine.resend = true;
    let stop = Stop::new();
    let raiser = stop.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        raiser.request();
    });
    let (machine, ended) = run_bounded(machine, stop);
    assert_eq!(ended, Ended::Stopped);
    assert!(machine.routed_count(false) > 1, "{}", machine.fates.len());
}

#[test]
fn a_non_blocking_dealer_never_blocks_on_a_full_queue_and_reports_what_it_dropped() {
    const FLOOD: usize = 1500;
    let flood = (0..FLOOD).map(|i| Message::from_frames([i.to_string().into_bytes()]));
    let mut machine = Fates::new(SocketKind::NonBlockingDealer, flood.collect());
    // Nobody listens on port 1: the messages queue until the queue is full.
    machine.connect = vec!["tcp://127.0.0.1:1".into()];
    machine.exit_after = Some(FLOOD);
    let (machine, ended) = run_bounded(machine, Stop::new());
    assert_eq!(ended, Ended::Exited);
    // ZeroMQ queues up to the send high-water mark (1000 by default), then refuses.
    let (sent, refused) = (machine.routed_count(true), machine.routed_count(false));
    assert!(sent > 0 && refused > 0, "{sent}/{refused}");
    assert_eq!(sent + refused, FLOOD);
}

#[test]
fn a_send_on_a_dealer_or_req_with_no_peer_never_blocks_the_loop() {
    // A DEALER or REQ with no pipe (never connected here; in real life, refused for good in
    // the handshake) blocks a send until a peer comes. The stop is raised before the loop
    // starts, so the loop ends right after the send at start, unless that send blocks:
    // then it never returns, and the bound fails the test.
    for kind in [SocketKind::Dealer, SocketKind::Req] {
        let machine = Fates::new(kind, vec![Message::from_frames([b"lost".to_vec()])]);
        let stop = Stop::new();
        stop.request();
        let (_, ended) = run_bounded(machine, stop);
        assert_eq!(ended, Ended::Stopped, "{kind:?}");
    }
}

/// A machine with a DEALER connected to `endpoint` that sends `n` messages ("0", "1", …) at
/// start and says, at its first tick (the loop's next pass), that the loop ran on.
struct Flood {
    endpoint: String,
    n: usize,
    due: Option<Instant>,
    ran_on: Option<mpsc::Sender<()>>,
}

impl Machine for Flood {
    type Job = ();
    type Done = ();

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec {
            slot: SOCKET,
            kind: SocketKind::Dealer,
            name: "flood",
            bind: vec![],
            connect: vec![self.endpoint.clone()],
            identity: None,
        }]
    }

    fn start(&mut self, now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
        for i in 0..self.n {
            out.send(SOCKET, Message::from_frames([i.to_string().into_bytes()]));
        }
        self.due = Some(now);
    }

    fn handle(&mut self, _: Input<()>, _: Instant, _: &mut Outbox<()>, _: &mut Events) {}

    fn tick(&mut self, _now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {
        self.due = None;
        if let Some(ran_on) = self.ran_on.take() {
            let _ = ran_on.send(());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.due
    }
}

#[test]
fn a_dealer_whose_peer_is_full_keeps_what_it_cannot_send_and_sends_it_in_order() {
    // An inproc pipe holds 2000 messages (the DEALER's send and the ROUTER's receive
    // high-water marks, 1000 each); nobody reads until the loop has run on after sending
    // 2500, so 500 of them waited in the reactor, not in a blocking send, and none is lost.
    const N: usize = 2500;
    let endpoint = format!("inproc://reactor-flood-{}", std::process::id());
    let router = pirate::transport::context().socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router
        .set_rcvtimeo(HARD_TIMEOUT.as_millis() as i32)
        .unwrap();
    router.bind(&endpoint).unwrap();
    let (ran_on, loop_ran_on) = mpsc::channel();
    let mut machine = Flood {
        endpoint,
        n: N,
        due: None,
        ran_on: Some(ran_on),
    };
    let stop = Stop::new();
    let stopper = stop.clone();
    let looping = thread::spawn(move || {
        reactor::run(&mut machine, |()| (), &stop, &mut Events::discard()).map(|_| ())
    });
    let ran = loop_ran_on.recv_timeout(HARD_TIMEOUT);
    if ran.is_err() {
        stopper.request();
        panic!("the loop did not run on after sending more than the pipe holds");
    }
    for i in 0..N {
        let frames = router
            .recv_multipart(0)
            .unwrap_or_else(|e| panic!("timed out waiting for message {i} of {N}: {e}"));
        assert_eq!(frames[1], i.to_string().into_bytes(), "in order, none lost");
    }
    stopper.request();
    looping
        .join()
        .unwrap()
        .expect("the loop ends without an error");
}
