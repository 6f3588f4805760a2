//! The ZAP handler (RFC 27/ZAP): the machine libzmq asks, over `inproc://zeromq.zap.01` in the
//! process context, whether a peer that finished its handshake may in, and that watches each
//! secured socket's monitor to count peers refused before ZAP is asked (wrong mechanism, wrong
//! server key). It runs on a reactor thread of its own and stops with the process's `Stop`.
//!
//! Request, one frame each: `1.0`, request id, domain, address, routing id, mechanism
//! (`NULL`, `PLAIN`, `CURVE`), then credentials (PLAIN: user, password; CURVE: the client's
//! 32-byte public key). Reply: `1.0`, request id, status code (`200` in, `400` refused,
//! `500` malformed request), status text, user id, metadata (empty).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::Instant;

use super::credentials::{z85, Key};
use super::{ServerMechanism, ServerPolicy};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::msg::Message;
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};

/// Where libzmq sends ZAP requests (fixed by RFC 27), one handler per context.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// A peer refused, as traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Its IP address, or the endpoint it reached when libzmq does not say.
    pub address: String,
    /// `NULL`, `PLAIN`, `CURVE`, or `handshake` when it failed before ZAP was asked.
    pub mechanism: String,
    pub reason: String,
    /// Peers refused so far in this process, this one included.
    pub total: u64,
}

/// Refusals traced one by one; after these, one in every [`TRACE_EVERY`], so a flood of
/// bad peers cannot fill the log.
const TRACE_FIRST: u64 = 100;
const TRACE_EVERY: u64 = 1000;

static REFUSED: AtomicU64 = AtomicU64::new(0);
type Sink = Box<dyn Fn(&Refusal) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

/// Where refusals are traced (the binary renders them); set once, before any bind.
pub fn on_refusal(sink: impl Fn(&Refusal) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Peers refused so far in this process.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

fn refuse(address: &str, mechanism: &str, reason: String) {
    let total = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    if total <= TRACE_FIRST || total.is_multiple_of(TRACE_EVERY) {
        if let Some(sink) = SINK.get() {
            sink(&Refusal {
                address: address.to_string(),
                mechanism: mechanism.to_string(),
                reason,
                total,
            });
        }
    }
}

/// A ZAP request, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub request_id: Vec<u8>,
    pub address: String,
    pub mechanism: String,
    pub credentials: Vec<Vec<u8>>,
}

impl Request {
    /// Parses the frames, or says why they are not a 1.0 request (and its id, if any).
    pub fn parse(frames: &[Vec<u8>]) -> std::result::Result<Request, (Vec<u8>, String)> {
        let id = frames.get(1).cloned().unwrap_or_default();
        if frames.len() < 6 {
            return Err((id, format!("{} frames, expected 6 or more", frames.len())));
        }
        if frames[0] != b"1.0" {
            return Err((id, "version is not 1.0".into()));
        }
        Ok(Request {
            request_id: id,
            address: String::from_utf8_lossy(&frames[3]).into_owned(),
            mechanism: String::from_utf8_lossy(&frames[5]).into_owned(),
            credentials: frames[6..].to_vec(),
        })
    }
}

/// The reply frames for `request_id`.
pub fn reply(request_id: &[u8], status: &str, text: &str, user: &str) -> Vec<Vec<u8>> {
    vec![
        b"1.0".to_vec(),
        request_id.to_vec(),
        status.as_bytes().to_vec(),
        text.as_bytes().to_vec(),
        user.as_bytes().to_vec(),
        Vec::new(),
    ]
}

/// Lets `request` in (its user id) or refuses it (why). Pure.
pub fn decide(policy: &ServerPolicy, request: &Request) -> std::result::Result<String, String> {
    if !policy.allow.is_empty() && !policy.allow.iter().any(|a| a.contains(&request.address)) {
        return Err(format!("address {:?} is not in --allow", request.address));
    }
    match (&policy.mechanism, request.mechanism.as_str()) {
        (ServerMechanism::Null, "NULL") => Ok(String::new()),
        (ServerMechanism::Plain(users), "PLAIN") => {
            let [user, password] = request.credentials.as_slice() else {
                return Err("PLAIN request without user and password".into());
            };
            let user = String::from_utf8_lossy(user).into_owned();
            match users.get(&user) {
                Some(want) if same(want.as_bytes(), password) => Ok(user),
                Some(_) => Err(format!("wrong password for user {user:?}")),
                None => Err(format!("unknown user {user:?}")),
            }
        }
        (ServerMechanism::Curve { clients, .. }, "CURVE") => {
            let key: Key = match request.credentials.as_slice() {
                [key] => key
                    .as_slice()
                    .try_into()
                    .map_err(|_| "CURVE request without a 32-byte key".to_string())?,
                _ => return Err("CURVE request without a client key".into()),
            };
            if clients.is_empty() || clients.contains(&key) {
                Ok(z85(&key))
            } else {
                Err(format!("client key {} is not in the allow-list", z85(&key)))
            }
        }
        (_, other) => Err(format!("mechanism {other} is not the one required")),
    }
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Asks the running ZAP handler to watch one more bound socket's monitor.
#[derive(Debug)]
pub struct Watch {
    /// The `inproc://` endpoint the watched socket's monitor publishes on.
    monitor: String,
    /// The bound endpoint, named in refusals.
    endpoint: String,
    /// Told once the monitor's PAIR is connected, so no event is sent before anyone listens.
    ack: mpsc::Sender<()>,
}

/// What the ZAP machine hands to a work thread.
#[derive(Debug)]
pub enum ZapJob {
    /// Wait for the next [`Watch`] (blocks: watches come whenever a secured socket binds).
    NextWatch,
    /// Tell whoever waits that what was asked before is done.
    Ack(mpsc::Sender<()>),
}

/// What comes back from a [`ZapJob`].
#[derive(Debug)]
pub enum ZapDone {
    Watch(Watch),
    Acked,
    /// Nobody can ask for a watch any more.
    NoMore,
}

/// The REP socket libzmq asks; each watched monitor's PAIR has a slot above it.
const ZAP: Slot = 0;

/// Tells of a refused peer: (address, mechanism, reason).
type Refuse = Box<dyn FnMut(&str, &str, String)>;

/// The ZAP handler and the handshake watcher as one pure [`Machine`], run on a reactor of its
/// own (see [`start`]): it answers each ZAP request on its REP socket by [`decide`], and reads one
/// socket monitor per secured bind, counting handshakes that failed before ZAP was asked.
pub struct ZapHandler {
    policy: ServerPolicy,
    /// The endpoint each monitor slot watches (`None`: the ZAP socket, or a free slot).
    monitors: Vec<Option<String>>,
    /// Ready to be told once the ZAP socket is bound (taken at start).
    ready: Option<mpsc::Sender<()>>,
    refuse: Refuse,
}

impl ZapHandler {
    /// A handler enforcing `policy`, telling `ready` once it serves, and each refusal to
    /// `refuse`.
    pub fn new(
        policy: ServerPolicy,
        ready: mpsc::Sender<()>,
        refuse: impl FnMut(&str, &str, String) + 'static,
    ) -> Self {
        ZapHandler {
            policy,
            monitors: vec![None],
            ready: Some(ready),
            refuse: Box::new(refuse),
        }
    }

    /// The reply to one ZAP request's frames.
    fn answer(&mut self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        match Request::parse(frames) {
            Ok(request) => match decide(&self.policy, &request) {
                Ok(user) => reply(&request.request_id, "200", "OK", &user),
                Err(reason) => {
                    (self.refuse)(&request.address, &request.mechanism, reason.clone());
                    reply(&request.request_id, "400", &reason, "")
                }
            },
            Err((id, reason)) => reply(&id, "500", &reason, ""),
        }
    }

    /// One monitor event on `slot`. Frame 1: event (u16) and value (u32), in host byte order;
    /// frame 2: the endpoint. Anything shorter is not an event and is passed over.
    fn monitor_event(&mut self, slot: Slot, frames: &[Vec<u8>], out: &mut Outbox<ZapJob>) {
        let Some(endpoint) = self.monitors.get(slot).cloned().flatten() else {
            return;
        };
        let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
            return;
        };
        let event = u16::from_ne_bytes([head[0], head[1]]);
        let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
        match zmq::SocketEvent::from_raw(event) {
            zmq::SocketEvent::MONITOR_STOPPED => {
                // The watched socket closed: its slot is free for the next bind.
                self.monitors[slot] = None;
                out.close(slot);
            }
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => {
                (self.refuse)(&endpoint, "handshake", protocol_error(value))
            }
            _ => {}
        }
    }

    fn watch(&mut self, watch: Watch, out: &mut Outbox<ZapJob>) {
        let slot = match self.monitors.iter().skip(1).position(Option::is_none) {
            Some(free) => free + 1,
            None => {
                self.monitors.push(None);
                self.monitors.len() - 1
            }
        };
        self.monitors[slot] = Some(watch.endpoint);
        out.open(SocketSpec {
            slot,
            kind: SocketKind::Pair,
            name: "auth-monitor",
            bind: vec![],
            connect: vec![watch.monitor],
            identity: None,
        });
        // Carried out after the open: the PAIR is connected when the binder hears back.
        out.start(ZapJob::Ack(watch.ack));
        out.start(ZapJob::NextWatch);
    }
}

impl Machine for ZapHandler {
    type Job = ZapJob;
    type Done = ZapDone;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec::bound(ZAP, SocketKind::Rep, "zap", ZAP_ENDPOINT)]
    }

    fn start(&mut self, _now: Instant, out: &mut Outbox<ZapJob>, _events: &mut Events) {
        if let Some(ready) = self.ready.take() {
            out.start(ZapJob::Ack(ready));
        }
        out.start(ZapJob::NextWatch);
    }

    fn handle(
        &mut self,
        input: Input<ZapDone>,
        _now: Instant,
        out: &mut Outbox<ZapJob>,
        _events: &mut Events,
    ) {
        match input {
            Input::Message { slot: ZAP, msg } => {
                // REP must answer before it can read again; libzmq waits for this answer.
                let answer = self.answer(&msg.into_frames());
                out.send(ZAP, Message::from(answer));
            }
            Input::Message { slot, msg } => self.monitor_event(slot, &msg.into_frames(), out),
            Input::Done(ZapDone::Watch(watch)) => self.watch(watch, out),
            Input::Done(ZapDone::Acked | ZapDone::NoMore) => {}
        }
    }

    fn tick(&mut self, _now: Instant, _out: &mut Outbox<ZapJob>, _events: &mut Events) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

/// Where watches go, once [`start`] has the handler running.
static WATCHES: OnceLock<mpsc::Sender<Watch>> = OnceLock::new();

/// Starts the ZAP handler on a reactor thread of its own, in the process context
/// ([`crate::transport::context`], the one every role's sockets live in), and returns once it
/// serves (or with why it cannot: another ZAP handler holds the endpoint). It stops when
/// `stop` is raised; a socket bound after that cannot be secured and is refused.
pub fn start(policy: ServerPolicy, stop: &Stop) -> Result<()> {
    let (watches, next) = mpsc::channel::<Watch>();
    let next = Arc::new(Mutex::new(next));
    let (ready, started) = mpsc::channel();
    let stop = stop.clone();
    let thread = thread::Builder::new()
        .name("zap".into())
        .spawn(move || {
            let mut handler = ZapHandler::new(policy, ready, refuse);
            let work = move |job| match job {
                ZapJob::NextWatch => match next.lock().map(|rx| rx.recv()) {
                    Ok(Ok(watch)) => ZapDone::Watch(watch),
                    _ => ZapDone::NoMore,
                },
                ZapJob::Ack(to) => {
                    let _ = to.send(());
                    ZapDone::Acked
                }
            };
            // No frame tracing: ZAP requests carry passwords.
            reactor::run(&mut handler, work, &stop, &mut Events::discard()).map(|_| ())
        })
        .map_err(|e| Error::Internal(format!("cannot start the ZAP handler: {e}")))?;
    if started.recv().is_err() {
        // The handler ended before it served: its bind failed.
        return Err(match thread.join() {
            Ok(Err(e)) => e,
            _ => Error::Internal("the ZAP handler did not start".into()),
        });
    }
    WATCHES
        .set(watches)
        .map_err(|_| Error::Internal("the ZAP handler was started twice".into()))
}

/// Watches bound `socket` for handshakes that fail before ZAP is asked (a peer with no or the
/// wrong mechanism, or a CURVE peer with the wrong server key) and counts them as refused.
/// Returns once the handler listens to the socket's monitor.
pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket, endpoint: &str) -> Result<()> {
    served(ctx)?;
    let stopped = || Error::Interrupted;
    let watches = WATCHES
        .get()
        .ok_or_else(|| Error::Internal("a secured bind with no ZAP handler running".into()))?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let at = format!(
        "inproc://pirate-auth-monitor-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let events = zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
        | zmq::SocketEvent::MONITOR_STOPPED as i32;
    socket
        .monitor(&at, events)
        .map_err(|e| Error::zmq("cannot monitor the socket", e))?;
    let (ack, acked) = mpsc::channel();
    watches
        .send(Watch {
            monitor: at,
            endpoint: endpoint.to_string(),
            ack,
        })
        .map_err(|_| stopped())?;
    // No answer: the handler stopped (with the process), and this bind cannot be secured.
    acked.recv().map_err(|_| stopped())
}

/// Fails closed when `ctx` has no ZAP handler (a socket made outside the process context):
/// without one libzmq would let every peer in.
fn served(ctx: &zmq::Context) -> Result<()> {
    let probe = ctx
        .socket(zmq::REP)
        .map_err(|e| Error::zmq("cannot create a socket", e))?;
    let _ = probe.set_linger(0);
    match probe.bind(ZAP_ENDPOINT) {
        Err(zmq::Error::EADDRINUSE) => Ok(()),
        _ => Err(Error::Internal(
            "a secured bind in a context with no ZAP handler (use transport::context())".into(),
        )),
    }
}

/// Words for a ZMTP protocol error (zmq.h's ZMQ_PROTOCOL_ERROR_*).
fn protocol_error(code: u32) -> String {
    match code {
        0x1100_0002 => "the peer uses another security mechanism (or none)".into(),
        0x1100_0001 => "cryptographic error (a CURVE peer with the wrong server key?)".into(),
        0x1000_0013 => "malformed HELLO (a CURVE peer with the wrong server key?)".into(),
        0x1000_0014 => "malformed INITIATE".into(),
        other => format!("ZMTP protocol error {other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::credentials::{Allow, KeyPair};
    use super::*;

    fn request(address: &str, mechanism: &str, credentials: &[&[u8]]) -> Request {
        let mut frames: Vec<Vec<u8>> = [
            &b"1.0"[..],
            b"7",
            b"pirate",
            address.as_bytes(),
            b"",
            mechanism.as_bytes(),
        ]
        .iter()
        .map(|f| f.to_vec())
        .collect();
        frames.extend(credentials.iter().map(|c| c.to_vec()));
        Request::parse(&frames).unwrap()
    }

    fn plain() -> ServerPolicy {
        ServerPolicy {
            mechanism: ServerMechanism::Plain(BTreeMap::from([("alice".into(), "pw".into())])),
            allow: Vec::new(),
        }
    }

    #[test]
    fn plain_lets_in_the_right_password_only() {
        let p = plain();
        assert_eq!(
            decide(&p, &request("127.0.0.1", "PLAIN", &[b"alice", b"pw"])),
            Ok("alice".into())
        );
        let wrong = decide(&p, &request("127.0.0.1", "PLAIN", &[b"alice", b"pW"]));
        assert!(wrong.unwrap_err().contains("wrong password"));
        let unknown = decide(&p, &request("127.0.0.1", "PLAIN", &[b"mallory", b"pw"]));
        assert!(unknown.unwrap_err().contains("unknown user"));
        assert!(decide(&p, &request("127.0.0.1", "NULL", &[])).is_err());
    }

    #[test]
    fn curve_checks_the_allow_list_when_there_is_one() {
        let (server, alice, bob) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let mut p = ServerPolicy {
            mechanism: ServerMechanism::Curve {
                pair: server,
                clients: BTreeSet::new(),
            },
            allow: Vec::new(),
        };
        let from = |k: &KeyPair| request("10.0.0.1", "CURVE", &[&k.public]);
        assert_eq!(
            decide(&p, &from(&bob)),
            Ok(z85(&bob.public)),
            "no list: any key"
        );
        if let ServerMechanism::Curve { clients, .. } = &mut p.mechanism {
            clients.insert(alice.public);
        }
        assert!(decide(&p, &from(&alice)).is_ok());
        assert!(decide(&p, &from(&bob)).unwrap_err().contains("allow-list"));
    }

    #[test]
    fn allow_refuses_other_addresses_whatever_the_credentials() {
        let mut p = plain();
        p.allow = vec![Allow::parse("192.168.0.0/24").unwrap()];
        assert!(decide(&p, &request("192.168.0.9", "PLAIN", &[b"alice", b"pw"])).is_ok());
        let outside = decide(&p, &request("192.168.1.9", "PLAIN", &[b"alice", b"pw"]));
        assert!(outside.unwrap_err().contains("--allow"));
        p.mechanism = ServerMechanism::Null;
        assert!(decide(&p, &request("192.168.0.1", "NULL", &[])).is_ok());
        assert!(decide(&p, &request("10.0.0.1", "NULL", &[])).is_err());
    }

    #[test]
    fn malformed_requests_are_answered_500_with_their_id() {
        let err = Request::parse(&[b"1.0".to_vec(), b"9".to_vec()]).unwrap_err();
        assert_eq!(err.0, b"9");
        let frames: Vec<Vec<u8>> = ["2.0", "1", "d", "a", "", "NULL"]
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        assert!(Request::parse(&frames).unwrap_err().1.contains("version"));
        let r = reply(b"9", "500", "bad", "");
        assert_eq!(r.len(), 6);
        assert_eq!(r[2], b"500");
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    /// The machine with plain values: ZAP requests in, replies and refusals out.
    mod machine {
        use super::*;
        use crate::reactor::Output;
        use std::cell::RefCell;
        use std::rc::Rc;

        type Refused = Rc<RefCell<Vec<(String, String, String)>>>;

        fn handler() -> (ZapHandler, Refused, mpsc::Receiver<()>) {
            let refused = Refused::default();
            let sink = Rc::clone(&refused);
            let (ready, told) = mpsc::channel();
            let h = ZapHandler::new(plain(), ready, move |a: &str, m: &str, r: String| {
                sink.borrow_mut().push((a.into(), m.into(), r))
            });
            (h, refused, told)
        }

        fn feed(h: &mut ZapHandler, input: Input<ZapDone>) -> Vec<Output<ZapJob>> {
            let mut out = Outbox::default();
            h.handle(input, Instant::now(), &mut out, &mut Events::discard());
            out.take()
        }

        /// Feeds `msg` on monitor `slot`.
        fn on(h: &mut ZapHandler, slot: Slot, msg: Message) -> Vec<Output<ZapJob>> {
            feed(h, Input::Message { slot, msg })
        }

        fn zap(frames: &[&[u8]]) -> Input<ZapDone> {
            Input::Message {
                slot: ZAP,
                msg: Message::from_frames(frames.iter().map(|f| f.to_vec())),
            }
        }

        fn answer(outputs: &[Output<ZapJob>]) -> Vec<Vec<u8>> {
            match outputs {
                [Output::Send { slot: ZAP, msg }] => msg.clone().into_frames(),
                other => panic!("one answer on the ZAP socket, got {other:?}"),
            }
        }

        fn event(kind: zmq::SocketEvent, value: u32) -> Message {
            let mut head = (kind as u16).to_ne_bytes().to_vec();
            head.extend_from_slice(&value.to_ne_bytes());
            Message::from_frames([head, b"tcp://127.0.0.1:9".to_vec()])
        }

        /// A watch for `monitor`; its ack comes through the receiver.
        fn watch(h: &mut ZapHandler, monitor: &str) -> (Vec<Output<ZapJob>>, mpsc::Receiver<()>) {
            let (ack, acked) = mpsc::channel();
            let w = Watch {
                monitor: monitor.into(),
                endpoint: format!("{monitor}-bound"),
                ack,
            };
            (feed(h, Input::Done(ZapDone::Watch(w))), acked)
        }

        #[test]
        fn binds_the_zap_endpoint_then_says_it_is_ready_and_waits_for_watches() {
            let (mut h, _, told) = handler();
            let specs = h.sockets();
            assert_eq!(
                (specs[0].kind, specs[0].bind.clone()),
                (SocketKind::Rep, vec![ZAP_ENDPOINT.to_string()])
            );
            let mut out = Outbox::default();
            h.start(Instant::now(), &mut out, &mut Events::discard());
            match &out.take()[..] {
                [Output::Start(ZapJob::Ack(ready)), Output::Start(ZapJob::NextWatch)] => {
                    ready.send(()).unwrap()
                }
                other => panic!("{other:?}"),
            }
            assert!(told.try_recv().is_ok());
        }

        #[test]
        fn answers_every_request_200_400_or_500_and_counts_only_refusals() {
            let (mut h, refused, _) = handler();
            let ok = answer(&feed(
                &mut h,
                zap(&[
                    b"1.0",
                    b"1",
                    b"pirate",
                    b"10.0.0.1",
                    b"",
                    b"PLAIN",
                    b"alice",
                    b"pw",
                ]),
            ));
            assert_eq!(ok, reply(b"1", "200", "OK", "alice"));
            let no = answer(&feed(
                &mut h,
                zap(&[
                    b"1.0",
                    b"2",
                    b"pirate",
                    b"10.0.0.2",
                    b"",
                    b"PLAIN",
                    b"alice",
                    b"x",
                ]),
            ));
            assert_eq!(
                (no[1].as_slice(), no[2].as_slice()),
                (&b"2"[..], &b"400"[..])
            );
            let bad = answer(&feed(&mut h, zap(&[b"1.0", b"3"])));
            assert_eq!(
                (bad[1].as_slice(), bad[2].as_slice()),
                (&b"3"[..], &b"500"[..])
            );
            // Even no frames at all is answered: libzmq waits for every answer.
            assert_eq!(answer(&feed(&mut h, zap(&[])))[2], b"500");
            let refused = refused.borrow();
            assert_eq!(refused.len(), 1);
            assert_eq!(
                (refused[0].0.as_str(), refused[0].1.as_str()),
                ("10.0.0.2", "PLAIN")
            );
            assert!(refused[0].2.contains("wrong password"));
        }

        #[test]
        fn a_watch_opens_a_pair_on_the_monitor_then_acks_then_waits_for_the_next() {
            let (mut h, _, _) = handler();
            let (out, acked) = watch(&mut h, "inproc://m-1");
            match &out[..] {
                [Output::Open(spec), Output::Start(ZapJob::Ack(ack)), Output::Start(ZapJob::NextWatch)] =>
                {
                    assert_eq!((spec.slot, spec.kind), (1, SocketKind::Pair));
                    assert_eq!(spec.connect, ["inproc://m-1"]);
                    ack.send(()).unwrap();
                }
                other => panic!("{other:?}"),
            }
            assert!(acked.try_recv().is_ok(), "the binder hears back");
            let (out, _) = watch(&mut h, "inproc://m-2");
            assert!(matches!(&out[0], Output::Open(spec) if spec.slot == 2));
        }

        #[test]
        fn a_failed_handshake_is_a_refusal_and_a_stopped_monitor_frees_its_slot() {
            let (mut h, refused, _) = handler();
            watch(&mut h, "inproc://m-1");
            let failed = event(zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL, 0x1100_0002);
            assert!(on(&mut h, 1, failed).is_empty());
            assert_eq!(
                refused.borrow()[0],
                (
                    "inproc://m-1-bound".to_string(),
                    "handshake".to_string(),
                    "the peer uses another security mechanism (or none)".to_string()
                )
            );
            // Too short to be an event, or from a slot nobody watches: passed over.
            let short = Message::from_frames([vec![1u8, 2]]);
            assert!(on(&mut h, 1, short).is_empty());
            let stray = event(zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL, 1);
            assert!(on(&mut h, 7, stray).is_empty());
            assert_eq!(refused.borrow().len(), 1);
            let stopped = event(zmq::SocketEvent::MONITOR_STOPPED, 0);
            let closed = on(&mut h, 1, stopped);
            assert!(matches!(closed[..], [Output::Close(1)]), "{closed:?}");
            let (out, _) = watch(&mut h, "inproc://m-2");
            assert!(
                matches!(&out[0], Output::Open(spec) if spec.slot == 1),
                "reused"
            );
        }
    }
}
