//! The broker's unit tests.

use super::service::QUEUED_OVERHEAD;
use super::*;
use crate::proto::mdp::{decode_client, decode_worker, encode_client, encode_worker};
use crate::reactor::Output;
use crate::testkit::{self, msg, Rig};

const V1: Version = Version::V1;
const V2: Version = Version::V2;

fn config() -> BrokerConfig {
    BrokerConfig {
        bind: "inproc://test".into(),
        heartbeat: HeartbeatConfig {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        request_ttl: Duration::from_millis(1000),
        max_queue: 2,
        ..BrokerConfig::default()
    }
}

/// A broker on a [`Rig`], started at its `t0`, on a clock in milliseconds since then.
struct H {
    rig: Rig<Broker>,
}

impl H {
    fn new() -> H {
        H::with(config())
    }

    fn with(cfg: BrokerConfig) -> H {
        let mut rig = Rig::quiet(Broker::new(&cfg));
        rig.start(rig.t0);
        // Its "started" is not what the tests look at.
        rig.take_events();
        H { rig }
    }

    fn b(&self) -> &Broker {
        &self.rig.m
    }

    fn at(&self, ms: u64) -> Instant {
        self.rig.at(ms)
    }

    /// Delivers `msg` from peer `from` at `ms`.
    ///
    /// Workers are given a broker-issued handle as the client address, not the client's
    /// identity. So that tests read as "w1 replies to c1", this harness shows the client's
    /// identity in every REQUEST it returns, and turns a worker's reply addressed to the
    /// identity of the client whose request that worker holds back into the handle it was
    /// given. Any other address (another client's, one the worker does not hold) goes to
    /// the broker unchanged. [`H::raw`] skips the translation.
    fn recv(&mut self, from: &str, msg: Message, ms: u64) -> Vec<Outgoing> {
        let msg = self.to_handle(from, msg);
        let out = self.raw(from, msg, ms);
        out.into_iter()
            .map(|(id, msg)| {
                let msg = self.to_identity(&id, msg);
                (id, msg)
            })
            .collect()
    }

    /// Delivers `msg` from peer `from` at `ms`, exactly as given, and returns exactly
    /// what the broker sends.
    fn raw(&mut self, from: &str, mut msg: Message, ms: u64) -> Vec<Outgoing> {
        msg.push_front(from.as_bytes().to_vec());
        let now = self.at(ms);
        by_identity(self.rig.message(ROUTER, msg, now))
    }

    /// The job worker `id` holds, if any (its oldest, if it holds several).
    fn job(&self, id: &[u8]) -> Option<&Assignment> {
        self.b().workers.get(id).and_then(|w| w.jobs.first())
    }

    fn to_handle(&self, from: &str, msg: Message) -> Message {
        let Some(job) = self.job(from.as_bytes()) else {
            return msg;
        };
        match decode_worker(msg.clone()) {
            Ok(WorkerMsg { version, command }) => {
                let swap = |client: Frame| {
                    if client == job.client.identity {
                        job.handle.clone()
                    } else {
                        client
                    }
                };
                let command = match command {
                    WorkerCommand::Reply { client, body } => WorkerCommand::Reply {
                        client: swap(client),
                        body,
                    },
                    WorkerCommand::Final { client, body } => WorkerCommand::Final {
                        client: swap(client),
                        body,
                    },
                    WorkerCommand::Partial { client, body } => WorkerCommand::Partial {
                        client: swap(client),
                        body,
                    },
                    _ => return msg,
                };
                encode_worker(WorkerMsg { version, command })
            }
            Err(_) => msg,
        }
    }

    fn to_identity(&self, to: &[u8], msg: Message) -> Message {
        let Some(job) = self.job(to) else {
            return msg;
        };
        match decode_worker(msg.clone()) {
            Ok(WorkerMsg {
                version,
                command: WorkerCommand::Request { client, body },
            }) if client == job.handle => encode_worker(WorkerMsg {
                version,
                command: WorkerCommand::Request {
                    client: job.client.identity.clone(),
                    body,
                },
            }),
            _ => msg,
        }
    }

    /// The heartbeat tick at `ms`: the tests choose when it falls due, so its deadline is
    /// set to `ms` before the machine is ticked.
    fn tick(&mut self, ms: u64) -> Vec<Outgoing> {
        let now = self.at(ms);
        self.rig.m.next_tick = Some(now);
        by_identity(self.rig.tick(now))
    }

    fn ready(&mut self, worker: &str, version: Version, service: &str, ms: u64) {
        let out = self.recv(worker, ready(version, service), ms);
        assert!(
            out.iter().all(|(_, msg)| !is_disconnect(msg)),
            "{worker} refused"
        );
    }

    fn request(
        &mut self,
        client: &str,
        version: Version,
        service: &str,
        body: &str,
        ms: u64,
    ) -> Vec<Outgoing> {
        self.recv(client, request(version, service, &[body]), ms)
    }

    fn events(&self) -> Vec<Event> {
        self.rig.events.clone()
    }

    fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.rig.events.iter().filter(|e| pred(e)).count()
    }

    /// Bytes the broker holds: queued requests and held PARTIALs.
    fn held_bytes(&self) -> u64 {
        self.b().held.get()
    }
}

/// What the broker sent on its ROUTER socket: the identity each message went to, and the
/// frames after it.
fn by_identity(outputs: Vec<Output<Infallible>>) -> Vec<Outgoing> {
    testkit::sent_on(&outputs, ROUTER)
        .into_iter()
        .map(|mut msg| (msg.pop_front().unwrap_or_default(), msg))
        .collect()
}

fn ready(version: Version, service: &str) -> Message {
    encode_worker(WorkerMsg {
        version,
        command: WorkerCommand::Ready {
            service: service.as_bytes().to_vec(),
            credit: None,
        },
    })
}

fn request(version: Version, service: &str, body: &[&str]) -> Message {
    encode_client(ClientMsg {
        version,
        command: ClientCommand::Request,
        service: service.as_bytes().to_vec(),
        body: Message::from_frames(body.iter().map(|b| b.as_bytes().to_vec())),
    })
}

fn worker_cmd(version: Version, command: WorkerCommand) -> Message {
    encode_worker(WorkerMsg { version, command })
}

/// A 0.1 REPLY (`last`, version V1), a 0.2 FINAL (`last`) or PARTIAL.
fn reply(version: Version, client: &str, body: &[&str], last: bool) -> Message {
    let client = client.as_bytes().to_vec();
    let body = Message::from_frames(body.iter().map(|b| b.as_bytes().to_vec()));
    let command = match (version, last) {
        (Version::V1, _) => WorkerCommand::Reply { client, body },
        (Version::V2, true) => WorkerCommand::Final { client, body },
        (Version::V2, false) => WorkerCommand::Partial { client, body },
    };
    worker_cmd(version, command)
}

fn heartbeat(version: Version) -> Message {
    worker_cmd(version, WorkerCommand::Heartbeat)
}

fn is_disconnect(msg: &Message) -> bool {
    decode_worker(msg.clone()).is_ok_and(|w| w.command == WorkerCommand::Disconnect)
}

/// The one message in `out`, which must go to `to`.
fn only(out: Vec<Outgoing>, to: &str) -> Message {
    assert_eq!(out.len(), 1, "expected one message, got {out:?}");
    let (id, msg) = out.into_iter().next().unwrap();
    assert_eq!(id, to.as_bytes(), "sent to the wrong peer");
    msg
}

/// The client address and body of a REQUEST sent to a worker.
fn worker_request(msg: Message) -> (Version, String, String) {
    match decode_worker(msg).unwrap() {
        WorkerMsg {
            version,
            command: WorkerCommand::Request { client, body },
        } => (version, String::from_utf8(client).unwrap(), body.text()),
        other => panic!("not a REQUEST: {other:?}"),
    }
}

fn client_reply(msg: Message) -> ClientMsg {
    decode_client(msg, mdp::Direction::FromBroker).unwrap()
}

fn sent_to(out: &[Outgoing], to: &str) -> Vec<Message> {
    out.iter()
        .filter(|(id, _)| id == to.as_bytes())
        .map(|(_, msg)| msg.clone())
        .collect()
}

#[test]
fn defaults_are_the_guides() {
    let c = BrokerConfig::default();
    assert_eq!(c.bind, "tcp://*:5555");
    assert_eq!(c.heartbeat.interval, Duration::from_millis(2500));
    assert_eq!(c.heartbeat.liveness, 3);
    assert_eq!(c.request_ttl, Duration::from_secs(10));
    assert_eq!(c.max_queue, 1_000_000);
}

#[test]
fn a_queued_request_goes_to_the_worker_that_registers() {
    let mut h = H::new();
    assert!(h.request("c1", V1, "echo", "hello", 0).is_empty());
    let out = h.recv("w1", ready(V1, "echo"), 10);
    let (version, client, body) = worker_request(only(out, "w1"));
    assert_eq!(
        (version, client.as_str(), body.as_str()),
        (V1, "c1", "hello")
    );
    assert_eq!(h.b().report().requests, 1);
    assert_eq!(h.b().report().dispatched, 1);
    assert_eq!(h.b().report().workers_seen, 1);
    assert!(matches!(
        &h.events()[0],
        Event::ServiceWorkerReady { worker, service, credit: 1 } if worker == "w1" && service == "echo"
    ));
}

#[test]
fn a_broker_stepping_down_drops_its_queue_and_disconnects_every_worker() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V2, "echo", 0);
    // w1 busy with c1's request, c2's queued for a service nobody serves.
    let out = h.request("c1", V1, "echo", "held", 10);
    assert_eq!(out.len(), 1);
    assert!(h.request("c2", V1, "nobody", "queued", 20).is_empty());
    let now = h.at(30);
    let out = by_identity(
        h.rig
            .drive(|b, out, events| Pair::step_down(b, now, out, events)),
    );
    let mut told: Vec<&str> = out
        .iter()
        .filter(|(_, msg)| is_disconnect(msg))
        .map(|(id, _)| std::str::from_utf8(id).unwrap())
        .collect();
    told.sort();
    assert_eq!(told, ["w1", "w2"], "each in its own dialect: {out:?}");
    assert_eq!(out.len(), 2, "and nothing else: {out:?}");
    let r = h.b().report();
    assert_eq!((r.requests_lost, r.disconnects), (2, 2));
    assert_eq!(
        h.count(|e| matches!(e, Event::RequestDropped { reason, .. } if reason == "stepped_down")),
        1
    );
    assert_eq!(h.held_bytes(), 0);
    // Nothing is left to dispatch: a worker registering again gets no old request.
    let out = h.recv("w3", ready(V1, "nobody"), 30);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_v1_round_trip_has_the_exact_frames() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let out = h.request("c1", V1, "echo", "hi", 1);
    assert_eq!(
        only(out, "w1"),
        msg![b"", b"MDPW01", &[0x02], b"c1", b"", b"hi"]
    );
    let out = h.recv("w1", reply(V1, "c1", &["HI"], true), 2);
    assert_eq!(only(out, "c1"), msg![b"", b"MDPC01", b"echo", b"HI"]);
    assert_eq!(h.b().report().replies, 1);
}

#[test]
fn dispatch_is_fifo_and_least_recently_used() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V1, "echo", 1);
    assert_eq!(
        worker_request(only(h.request("c1", V1, "echo", "a", 2), "w1")).2,
        "a"
    );
    assert_eq!(
        worker_request(only(h.request("c2", V1, "echo", "b", 3), "w2")).2,
        "b"
    );
    // Both busy: c and d wait, in order.
    assert!(h.request("c3", V1, "echo", "c", 4).is_empty());
    assert!(h.request("c4", V1, "echo", "d", 5).is_empty());
    // w2 finishes first and gets the oldest waiting request.
    let out = h.recv("w2", reply(V1, "c2", &["B"], true), 6);
    assert_eq!(out.len(), 2);
    assert_eq!(sent_to(&out, "c2").len(), 1);
    assert_eq!(worker_request(sent_to(&out, "w2").remove(0)).2, "c");
    let out = h.recv("w1", reply(V1, "c1", &["A"], true), 7);
    assert_eq!(worker_request(sent_to(&out, "w1").remove(0)).2, "d");
    // Queue empty: w2 then w1 finish, so w2 has been idle longest and is chosen next.
    h.recv("w2", reply(V1, "c3", &["C"], true), 8);
    h.recv("w1", reply(V1, "c4", &["D"], true), 9);
    assert_eq!(
        worker_request(only(h.request("c5", V1, "echo", "e", 10), "w2")).2,
        "e"
    );
}

#[test]
fn services_are_separate() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    assert!(h.request("c1", V1, "upper", "x", 1).is_empty());
    h.ready("w2", V2, "upper", 2);
    assert_eq!(h.b().report().dispatched, 1);
    assert_eq!(
        worker_request(only(h.request("c2", V1, "echo", "y", 3), "w1")).2,
        "y"
    );
}

#[test]
fn v2_client_gets_partials_then_final_from_a_v2_worker() {
    let mut h = H::new();
    h.ready("w1", V2, "stream", 0);
    let out = h.request("c1", V2, "stream", "go", 1);
    assert_eq!(only(out, "w1"), msg![b"MDPW02", &[0x02], b"c1", b"", b"go"]);
    let out = h.recv("w1", reply(V2, "c1", &["p1"], false), 2);
    assert_eq!(only(out, "c1"), msg![b"MDPC02", &[0x02], b"stream", b"p1"]);
    let out = h.recv("w1", reply(V2, "c1", &["p2", "p3"], false), 3);
    assert_eq!(
        only(out, "c1"),
        msg![b"MDPC02", &[0x02], b"stream", b"p2", b"p3"]
    );
    let out = h.recv("w1", reply(V2, "c1", &["end"], true), 4);
    assert_eq!(only(out, "c1"), msg![b"MDPC02", &[0x03], b"stream", b"end"]);
    assert_eq!(h.b().report().partials, 2);
    assert_eq!(h.b().report().replies, 1);
    // The worker is idle again after FINAL, not after a PARTIAL.
    assert_eq!(
        only(h.request("c2", V2, "stream", "again", 5), "w1").len(),
        5
    );
}

#[test]
fn a_partial_keeps_the_worker_busy() {
    let mut h = H::new();
    h.ready("w1", V2, "s", 0);
    h.request("c1", V2, "s", "a", 1);
    h.recv("w1", reply(V2, "c1", &["p"], false), 2);
    assert!(h.request("c2", V2, "s", "b", 3).is_empty());
}

#[test]
fn v1_worker_reply_to_v2_client_is_a_final() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let (version, ..) = worker_request(only(h.request("c1", V2, "echo", "x", 1), "w1"));
    assert_eq!(version, V1);
    let out = h.recv("w1", reply(V1, "c1", &["X"], true), 2);
    assert_eq!(only(out, "c1"), msg![b"MDPC02", &[0x03], b"echo", b"X"]);
}

#[test]
fn v2_worker_final_to_v1_client_is_a_reply() {
    let mut h = H::new();
    h.ready("w1", V2, "echo", 0);
    let (version, ..) = worker_request(only(h.request("c1", V1, "echo", "x", 1), "w1"));
    assert_eq!(version, V2);
    let out = h.recv("w1", reply(V2, "c1", &["X"], true), 2);
    assert_eq!(only(out, "c1"), msg![b"", b"MDPC01", b"echo", b"X"]);
}

#[test]
fn v2_partials_to_a_v1_client_are_held_and_sent_with_the_final() {
    let mut h = H::new();
    h.ready("w1", V2, "stream", 0);
    h.request("c1", V1, "stream", "go", 1);
    assert!(h.recv("w1", reply(V2, "c1", &["p1"], false), 2).is_empty());
    assert!(h
        .recv("w1", reply(V2, "c1", &["p2", "p3"], false), 3)
        .is_empty());
    let out = h.recv("w1", reply(V2, "c1", &["end"], true), 4);
    assert_eq!(
        only(out, "c1"),
        msg![b"", b"MDPC01", b"stream", b"p1", b"p2", b"p3", b"end"]
    );
    // The held frames do not leak into the next request's reply.
    h.request("c2", V1, "stream", "go", 5);
    let out = h.recv("w1", reply(V2, "c2", &["only"], true), 6);
    assert_eq!(only(out, "c2"), msg![b"", b"MDPC01", b"stream", b"only"]);
}

#[test]
fn v2_peers_may_send_a_leading_empty_frame_and_never_get_one() {
    let mut h = H::new();
    let out = h.recv("w1", msg![b"", b"MDPW02", &[0x01], b"echo"], 0);
    assert!(out.is_empty());
    let out = h.recv("c1", msg![b"", b"MDPC02", &[0x01], b"echo", b"x"], 1);
    assert_eq!(only(out, "w1"), msg![b"MDPW02", &[0x02], b"c1", b"", b"x"]);
    let out = h.recv("w1", msg![b"", b"MDPW02", &[0x04], b"c1", b"", b"X"], 2);
    assert_eq!(only(out, "c1"), msg![b"MDPC02", &[0x03], b"echo", b"X"]);
}

#[test]
fn heartbeats_and_disconnects_use_each_workers_dialect() {
    let mut h = H::new();
    h.ready("w1", V1, "a", 0);
    h.ready("w2", V2, "a", 0);
    let out = h.tick(100);
    assert_eq!(sent_to(&out, "w1"), vec![msg![b"", b"MDPW01", &[0x04]]]);
    assert_eq!(sent_to(&out, "w2"), vec![msg![b"MDPW02", &[0x05]]]);
    // A duplicate READY gets DISCONNECT in the worker's own dialect.
    let out = h.recv("w1", ready(V1, "a"), 110);
    assert_eq!(only(out, "w1"), msg![b"", b"MDPW01", &[0x05]]);
    let out = h.recv("w2", ready(V2, "a"), 110);
    assert_eq!(only(out, "w2"), msg![b"MDPW02", &[0x06]]);
}

#[test]
fn mmi_service_answers_200_404_and_other_mmi_501() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let out = h.request("c1", V1, "mmi.service", "echo", 1);
    assert_eq!(
        only(out, "c1"),
        msg![b"", b"MDPC01", b"mmi.service", b"200"]
    );
    let out = h.request("c1", V2, "mmi.service", "nope", 2);
    assert_eq!(
        only(out, "c1"),
        msg![b"MDPC02", &[0x03], b"mmi.service", b"404"]
    );
    let out = h.request("c1", V1, "mmi.whatever", "x", 3);
    assert_eq!(
        only(out, "c1"),
        msg![b"", b"MDPC01", b"mmi.whatever", b"501"]
    );
    assert_eq!(h.b().report().mmi, 3);
    // Management requests are not queued, dispatched or counted as requests.
    assert_eq!(h.b().report().requests, 0);
    assert_eq!(h.b().report().dispatched, 0);
}

#[test]
fn mmi_service_is_404_for_a_known_service_without_workers() {
    let mut h = H::new();
    // A queued request makes the broker know the service, but nobody serves it (trap 2).
    h.request("c1", V1, "echo", "x", 0);
    let out = h.request("c2", V1, "mmi.service", "echo", 1);
    assert_eq!(client_reply(only(out, "c2")).body, msg![b"404"]);
}

#[test]
fn mmi_service_is_404_once_the_last_worker_is_gone() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V1, "other", 0);
    let ask = |h: &mut H, ms| {
        let out = h.request("c", V1, "mmi.service", "echo", ms);
        client_reply(only(out, "c")).body.text()
    };
    assert_eq!(ask(&mut h, 1), "200");
    // Silent past its expiry: 404 even before the tick that forgets it.
    h.recv("w2", heartbeat(V1), 250);
    assert_eq!(ask(&mut h, 299), "200");
    assert_eq!(ask(&mut h, 300), "404");
    h.tick(300);
    assert_eq!(ask(&mut h, 301), "404");
    // A worker that registers again makes it 200; one that disconnects makes it 404.
    h.ready("w3", V2, "echo", 400);
    assert_eq!(ask(&mut h, 401), "200");
    assert!(h
        .recv("w3", worker_cmd(V2, WorkerCommand::Disconnect), 402)
        .is_empty());
    assert_eq!(ask(&mut h, 403), "404");
}

#[test]
fn mmi_status_is_json_with_services_workers_and_counters() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V1, "echo", 0);
    h.request("c1", V1, "echo", "a", 1);
    h.request("c1", V1, "nobody", "b", 2);
    let out = h.request("c1", V2, "mmi.status", "", 3);
    let reply = client_reply(only(out, "c1"));
    assert_eq!(reply.service, b"mmi.status");
    assert_eq!(reply.command, ClientCommand::Final);
    let v: Value = serde_json::from_slice(reply.body.get(0).unwrap()).unwrap();
    assert_eq!(v["workers"], 2);
    assert_eq!(
        v["services"]["echo"],
        json!({"workers": 2, "idle": 1, "queued": 0})
    );
    assert_eq!(
        v["services"]["nobody"],
        json!({"workers": 0, "idle": 0, "queued": 1})
    );
    assert_eq!(v["requests"], 2);
    assert_eq!(v["dispatched"], 1);
    assert_eq!(v["mmi"], 1);
    assert_eq!(v["workers_seen"], 2);
    assert_eq!(v["requests_lost"], 0);
    assert_eq!(v["endpoint"], "inproc://test");
}

#[test]
fn a_worker_registering_an_mmi_service_is_disconnected() {
    let mut h = H::new();
    let out = h.recv("w1", ready(V1, "mmi.service"), 0);
    assert!(is_disconnect(&only(out, "w1")));
    assert_eq!(h.b().report().workers_seen, 0);
    assert_eq!(h.b().report().disconnects, 1);
    // Its later heartbeat is from an unregistered worker.
    assert!(is_disconnect(&only(h.recv("w1", heartbeat(V1), 1), "w1")));
    // mmi.* requests are still answered by the broker, never sent to a worker.
    let out = h.request("c1", V1, "mmi.service", "mmi.service", 2);
    assert_eq!(client_reply(only(out, "c1")).body.text(), "404");
}

#[test]
fn mmi_is_decided_by_service_name_not_identity() {
    // Trap 1: an identity starting with mmi. is an ordinary peer.
    let mut h = H::new();
    h.ready("mmi.worker", V1, "echo", 0);
    let out = h.request("mmi.client", V1, "echo", "x", 1);
    let (_, client, _) = worker_request(only(out, "mmi.worker"));
    assert_eq!(client, "mmi.client");
}

#[test]
fn duplicate_ready_disconnects_and_forgets_the_worker() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let out = h.recv("w1", ready(V1, "echo"), 1);
    assert!(is_disconnect(&only(out, "w1")));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerDisconnected { worker, .. } if worker == "w1"
    )));
    // Forgotten: no heartbeat for it, no request for it.
    assert!(h.tick(100).is_empty());
    assert!(h.request("c1", V1, "echo", "x", 101).is_empty());
    // A fresh READY registers it again and it gets the waiting request, once.
    let out = h.recv("w1", ready(V1, "echo"), 102);
    assert_eq!(worker_request(only(out, "w1")).2, "x");
    assert!(h.request("c2", V1, "echo", "y", 103).is_empty());
}

#[test]
fn a_duplicate_ready_from_a_busy_worker_drops_its_request() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.request("c1", V1, "echo", "x", 1);
    assert!(is_disconnect(&only(
        h.recv("w1", ready(V1, "echo"), 2),
        "w1"
    )));
    let v = h.b().status();
    assert_eq!(v["requests_lost"], 1);
    assert_eq!(
        h.count(|e| matches!(e, Event::RequestDropped { reason, .. } if reason == "worker_lost")),
        1
    );
}

#[test]
fn commands_from_unregistered_workers_get_disconnect() {
    let mut h = H::new();
    let cases = [
        heartbeat(V1),
        heartbeat(V2),
        reply(V1, "c1", &["x"], true),
        reply(V2, "c1", &["x"], true),
        reply(V2, "c1", &["x"], false),
        worker_cmd(
            V2,
            WorkerCommand::Request {
                client: b"c1".to_vec(),
                body: msg![b"x"],
            },
        ),
    ];
    for (i, msg) in cases.into_iter().enumerate() {
        let version = decode_worker(msg.clone()).unwrap().version;
        let out = h.recv("ghost", msg, i as u64);
        let got = decode_worker(only(out, "ghost")).unwrap();
        assert_eq!(got.command, WorkerCommand::Disconnect, "case {i}");
        assert_eq!(
            got.version, version,
            "case {i}: answered in its own dialect"
        );
    }
    // Nothing is delivered to the client named in a stray reply.
    assert_eq!(h.b().report().replies, 0);
    assert_eq!(h.b().report().disconnects, 6);
    // A DISCONNECT from a stranger gets nothing back.
    assert!(h
        .recv("ghost", worker_cmd(V1, WorkerCommand::Disconnect), 10)
        .is_empty());
}

#[test]
fn a_request_command_from_a_registered_worker_is_a_protocol_error() {
    let mut h = H::new();
    h.ready("w1", V2, "echo", 0);
    let msg = worker_cmd(
        V2,
        WorkerCommand::Request {
            client: b"c".to_vec(),
            body: msg![b"x"],
        },
    );
    assert!(is_disconnect(&only(h.recv("w1", msg, 1), "w1")));
    assert!(h.tick(100).is_empty(), "forgotten");
}

#[test]
fn a_reply_from_an_idle_worker_or_for_another_client_disconnects_it() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let out = h.recv("w1", reply(V1, "c1", &["x"], true), 1);
    assert!(is_disconnect(&only(out, "w1")));

    h.ready("w2", V1, "echo", 2);
    h.request("c1", V1, "echo", "x", 3);
    let out = h.recv("w2", reply(V1, "intruder", &["x"], true), 4);
    assert!(
        is_disconnect(&only(out, "w2")),
        "nothing sent to the intruder"
    );
    assert_eq!(h.b().status()["requests_lost"], 1);
    assert_eq!(h.b().report().replies, 0);
}

#[test]
fn a_worker_disconnect_forgets_it_and_it_is_sent_nothing() {
    let mut h = H::new();
    h.ready("w1", V2, "echo", 0);
    let out = h.recv("w1", worker_cmd(V2, WorkerCommand::Disconnect), 1);
    assert!(out.is_empty());
    assert_eq!(h.b().report().disconnects, 1);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerDisconnected { worker, reason } if worker == "w1" && reason.contains("DISCONNECT")
    )));
    assert!(h.request("c1", V1, "echo", "x", 2).is_empty());
    assert!(h.tick(100).is_empty());
}

/// Heartbeats from `worker` every 100 ms in `from..to`, with a broker tick after each;
/// returns what the ticks sent to `worker` other than heartbeats.
fn heartbeating(h: &mut H, worker: &str, version: Version, from: u64, to: u64) -> Vec<Message> {
    let mut other = Vec::new();
    for ms in (from..to).step_by(100) {
        h.recv(worker, heartbeat(version), ms);
        let out = h.tick(ms + 1);
        other.extend(
            sent_to(&out, worker)
                .into_iter()
                .filter(|m| *m != heartbeat(version)),
        );
    }
    other
}

fn with_busy_timeout(ms: u64) -> H {
    H::with(BrokerConfig {
        busy_timeout: Some(Duration::from_millis(ms)),
        ..config()
    })
}

#[test]
fn without_a_busy_timeout_a_heartbeating_busy_worker_is_kept_however_long() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    only(h.request("c1", V1, "echo", "x", 1), "w1");
    assert!(heartbeating(&mut h, "w1", V1, 100, 5000).is_empty());
    assert_eq!(h.b().report().workers_stuck, 0);
    assert_eq!(h.b().report().requests_lost, 0);
}

#[test]
fn a_worker_busy_past_the_busy_timeout_is_disconnected_and_may_register_again() {
    let mut h = with_busy_timeout(500);
    h.ready("w1", V1, "echo", 0);
    only(h.request("c1", V1, "echo", "x", 1), "w1");
    // Heartbeats prove it alive, not that it is working on the request.
    assert!(heartbeating(&mut h, "w1", V1, 100, 500).is_empty());
    let sent = heartbeating(&mut h, "w1", V1, 500, 600);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(is_disconnect(&sent[0]));
    let r = h.b().report();
    assert_eq!((r.workers_stuck, r.requests_lost, r.disconnects), (1, 1, 1));
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerDisconnected { worker, reason }
            if worker == "w1" && reason.contains("--busy-timeout")
    )));
    // The client's retry waits for a worker; the reconnected one registers and gets it.
    assert!(h.request("c1", V1, "echo", "x", 700).is_empty());
    let out = h.recv("w1", ready(V1, "echo"), 710);
    assert_eq!(worker_request(only(out, "w1")).2, "x");
}

#[test]
fn a_partial_is_progress_that_restarts_the_busy_timeout() {
    let mut h = with_busy_timeout(500);
    h.ready("w1", V2, "lines", 0);
    only(h.request("c1", V2, "lines", "x", 0), "w1");
    assert!(heartbeating(&mut h, "w1", V2, 100, 400).is_empty());
    h.recv("w1", reply(V2, "c1", &["1"], false), 400);
    // Past 500 ms since the REQUEST, not since the PARTIAL: kept.
    assert!(heartbeating(&mut h, "w1", V2, 400, 900).is_empty());
    let sent = heartbeating(&mut h, "w1", V2, 900, 1000);
    assert!(sent.iter().any(is_disconnect), "{sent:?}");
    assert_eq!(h.b().report().workers_stuck, 1);
}

#[test]
fn a_worker_that_replies_in_time_is_never_stuck() {
    let mut h = with_busy_timeout(500);
    h.ready("w1", V1, "echo", 0);
    for i in 0..10u64 {
        let t = i * 400;
        only(h.request("c1", V1, "echo", "x", t + 1), "w1");
        assert!(heartbeating(&mut h, "w1", V1, t + 100, t + 400).is_empty());
        h.recv("w1", reply(V1, "c1", &["x"], true), t + 399);
    }
    assert_eq!(h.b().report().workers_stuck, 0);
    assert_eq!(h.b().report().replies, 10);
}

#[test]
fn every_worker_idle_or_busy_is_heartbeated_each_tick() {
    let mut h = H::new();
    h.ready("idle", V1, "a", 0);
    h.ready("busy", V2, "b", 0);
    h.request("c", V1, "b", "x", 1);
    let out = h.tick(100);
    assert_eq!(out.len(), 2);
    assert_eq!(sent_to(&out, "busy"), vec![heartbeat(V2)]);
    assert_eq!(sent_to(&out, "idle"), vec![heartbeat(V1)]);
}

#[test]
fn a_silent_idle_worker_expires() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    assert_eq!(h.tick(299).len(), 1, "alive: heartbeated");
    assert!(h.tick(300).is_empty(), "expired: not heartbeated");
    assert_eq!(h.b().report().workers_expired, 1);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerExpired { worker, busy: false } if worker == "w1"
    )));
    assert!(h.request("c1", V1, "echo", "x", 301).is_empty());
}

#[test]
fn any_message_keeps_a_worker_alive() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.recv("w1", heartbeat(V1), 250);
    assert_eq!(h.tick(500).len(), 1);
    h.request("c1", V1, "echo", "x", 501);
    h.recv("w1", reply(V1, "c1", &["x"], true), 700);
    assert_eq!(h.tick(999).len(), 1);
    assert!(h.tick(1000).is_empty());
    assert_eq!(h.b().report().workers_expired, 1);
}

#[test]
fn a_busy_worker_that_dies_is_expired_and_its_request_dropped() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V1, "echo", 0);
    h.request("c1", V1, "echo", "x", 1);
    // w2 (idle) keeps beating, w1 (busy) goes silent.
    h.recv("w2", heartbeat(V1), 200);
    h.tick(300);
    assert_eq!(h.b().report().workers_expired, 1);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::WorkerExpired { worker, busy: true } if worker == "w1"
    )));
    assert_eq!(h.b().status()["requests_lost"], 1);
    // Not re-queued: at most once per attempt. w2 stays idle until the client retries.
    let v = h.b().status();
    assert_eq!(
        v["services"]["echo"],
        json!({"workers": 1, "idle": 1, "queued": 0})
    );
    // The dead worker's late reply is refused, not delivered.
    let out = h.recv("w1", reply(V1, "c1", &["late"], true), 301);
    assert!(is_disconnect(&only(out, "w1")));
    // The retry goes to w2.
    assert_eq!(
        worker_request(only(h.request("c1", V1, "echo", "x", 302), "w2")).2,
        "x"
    );
}

#[test]
fn a_heartbeat_never_makes_a_busy_worker_idle() {
    // Trap 7.
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.request("c1", V1, "echo", "a", 1);
    assert!(h.recv("w1", heartbeat(V1), 2).is_empty());
    assert!(h.recv("w1", heartbeat(V1), 3).is_empty());
    assert!(h.request("c2", V1, "echo", "b", 4).is_empty(), "w1 is busy");
    let out = h.recv("w1", reply(V1, "c1", &["A"], true), 5);
    assert_eq!(worker_request(sent_to(&out, "w1").remove(0)).2, "b");
    assert!(h.request("c3", V1, "echo", "c", 6).is_empty());
}

#[test]
fn a_dead_idle_worker_is_not_given_a_request_before_the_tick() {
    let mut h = H::new();
    h.ready("old", V1, "echo", 0);
    h.ready("new", V1, "echo", 200);
    // "old" is first in the LRU queue but silent past its expiry.
    let out = h.request("c1", V1, "echo", "x", 350);
    assert_eq!(worker_request(only(out, "new")).2, "x");
    assert_eq!(h.b().report().workers_expired, 1);
    // Only "new" is heartbeated now.
    let out = h.tick(400);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, b"new");
}

#[test]
fn a_worker_registered_again_is_in_the_idle_queue_once() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.recv("w1", worker_cmd(V1, WorkerCommand::Disconnect), 1);
    h.ready("w1", V1, "echo", 2);
    // The first registration's entry is stale: only one request goes to w1.
    assert_eq!(only(h.request("c1", V1, "echo", "a", 3), "w1").len(), 6);
    assert!(h.request("c2", V1, "echo", "b", 4).is_empty());
    let v = h.b().status();
    assert_eq!(
        v["services"]["echo"],
        json!({"workers": 1, "idle": 0, "queued": 1})
    );
}

#[test]
fn stale_idle_entries_are_compacted_on_the_tick() {
    let mut h = H::new();
    for i in 0..5 {
        let w = format!("w{i}");
        h.ready(&w, V1, "echo", 0);
        h.recv(&w, worker_cmd(V1, WorkerCommand::Disconnect), 1);
    }
    h.ready("live", V1, "echo", 2);
    assert_eq!(h.b().services[&b"echo"[..]].idle_entries(), 6);
    h.tick(100);
    assert_eq!(h.b().services[&b"echo"[..]].idle_entries(), 1);
    assert_eq!(h.b().services[&b"echo"[..]].stale_entries(), 0);
    assert_eq!(only(h.request("c", V1, "echo", "x", 101), "live").len(), 6);
}

#[test]
fn queued_requests_expire_after_the_ttl() {
    let mut h = H::new();
    h.request("c1", V1, "echo", "old", 0);
    h.request("c2", V1, "echo", "new", 500);
    h.tick(999);
    assert_eq!(h.b().report().requests_expired, 0);
    h.tick(1000);
    assert_eq!(h.b().report().requests_expired, 1);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::RequestDropped { service, reason } if service == "echo" && reason == "ttl"
    )));
    // The younger one survives and is served.
    let out = h.recv("w1", ready(V1, "echo"), 1001);
    assert_eq!(worker_request(only(out, "w1")).2, "new");
}

#[test]
fn empty_services_are_forgotten() {
    let mut h = H::new();
    h.request("c1", V1, "nobody", "x", 0);
    h.tick(100);
    assert!(h.b().status()["services"]["nobody"].is_object());
    h.tick(1000);
    assert_eq!(h.b().status()["services"], json!({}));
    h.ready("w1", V1, "echo", 1001);
    h.recv("w1", worker_cmd(V1, WorkerCommand::Disconnect), 1002);
    h.tick(1100);
    assert_eq!(h.b().status()["services"], json!({}));
}

#[test]
fn a_full_queue_refuses_the_newest_request() {
    let mut h = H::new(); // max_queue 2
    assert!(h.request("c1", V1, "echo", "a", 0).is_empty());
    assert!(h.request("c2", V1, "echo", "b", 1).is_empty());
    assert!(
        h.request("c3", V1, "echo", "c", 2).is_empty(),
        "nothing sent to c3"
    );
    assert_eq!(h.b().report().requests_rejected, 1);
    assert_eq!(h.b().report().requests, 2);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::RequestDropped { service, reason } if service == "echo" && reason == "queue_full"
    )));
    // The two that were queued are served in order.
    h.ready("w1", V1, "echo", 3);
    let out = h.recv("w1", reply(V1, "c1", &["A"], true), 4);
    assert_eq!(worker_request(sent_to(&out, "w1").remove(0)).2, "b");
    // Other services have their own bound.
    assert!(h.request("c4", V1, "other", "d", 5).is_empty());
    assert_eq!(h.b().report().requests_rejected, 1);
}

#[test]
fn max_queue_zero_serves_only_when_a_worker_is_idle() {
    let mut h = H::with(BrokerConfig {
        max_queue: 0,
        ..config()
    });
    assert!(h.request("c1", V1, "echo", "a", 0).is_empty());
    assert_eq!(h.b().report().requests_rejected, 1);
    h.ready("w1", V1, "echo", 1);
    assert_eq!(only(h.request("c2", V1, "echo", "b", 2), "w1").len(), 6);
    assert_eq!(h.b().report().requests, 1);
}

#[test]
fn malformed_messages_are_counted_and_dropped() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let bad: &[&[&[u8]]] = &[
        &[],
        &[b""],
        &[b"hello"],
        &[b"MDPC01", b"echo", b"x"],             // 0.1 without delimiter
        &[b"", b"MDPC01", b"echo"],              // no body
        &[b"", b"MDPC01", b"", b"x"],            // empty service
        &[b"MDPC02", &[0x03], b"echo", b"x"],    // FINAL sent to the broker
        &[b"MDPC02", &[0x09], b"echo", b"x"],    // unknown command
        &[b"MDPC02", b"REQUEST", b"echo", b"x"], // command frame not one byte
        &[b"", b"MDPW01", &[0x09]],
        &[b"", b"MDPW01", &[0x01]], // READY without service
        &[b"", b"MDPW01", &[0x04], b"extra"],
        &[b"", b"MDPW01", &[0x03], b"c1", b"x"], // reply without envelope delimiter
        &[b"MDPW02", &[0x04], b"", b"", b"x"],   // FINAL with empty address
    ];
    for frames in bad {
        assert!(
            h.recv("peer", testkit::frames(frames), 1).is_empty(),
            "{frames:?}"
        );
    }
    // With no identity frame at all.
    assert!(h.rig.message(ROUTER, Message::new(), h.at(1)).is_empty());
    // An unknown header after a REQ delimiter: counted too, and answered (not_mdp).
    let out = h.recv("peer", msg![b"", b"MDPX01", b"echo", b"x"], 1);
    assert_eq!(only(out, "peer"), msg![b"", b"MDPC01", b"", NOT_MDP]);
    assert_eq!(h.b().report().invalid, bad.len() as u64 + 2);
    assert_eq!(
        h.count(|e| matches!(e, Event::Invalid { socket, .. } if socket == "broker")),
        bad.len() + 2
    );
    // The broker carries on.
    assert_eq!(only(h.request("c1", V1, "echo", "x", 2), "w1").len(), 6);
}

#[test]
fn random_input_never_panics() {
    // Fixed seed: deterministic.
    let mut rng = crate::testkit::Xorshift(0x2545_F491_4F6C_DD1D);
    let ours: &[&[u8]] = &[b"echo", b"mmi.service", b"mmi.status", b"p0", b"p1", b"p2"];
    let pool = [crate::proto::mdp::FUZZ_FRAMES, ours].concat();
    let mut h = H::new();
    for i in 0..20_000u64 {
        let peer = format!("p{}", rng.below(3));
        let frames: Vec<Vec<u8>> = (0..rng.below(7))
            .map(|_| pool[rng.below(pool.len() as u64)].to_vec())
            .collect();
        h.recv(&peer, Message::from_frames(frames), i);
        if i % 50 == 0 {
            h.tick(i);
        }
    }
    let r = h.b().report();
    assert!(
        r.invalid > 0 && r.workers_seen > 0 && r.requests > 0,
        "{r:?}"
    );
}

#[test]
fn only_client_messages_are_votes() {
    let mut client = request(V1, "echo", &["x"]);
    client.push_front(b"c".to_vec());
    assert!(is_client_message(&client));
    let mut v2 = request(V2, "echo", &["x"]);
    v2.push_front(b"c".to_vec());
    assert!(is_client_message(&v2));
    let mut worker = ready(V2, "echo");
    worker.push_front(b"w".to_vec());
    assert!(!is_client_message(&worker));
    assert!(!is_client_message(&msg![b"junk"]));
    // A client with a request id, or behind a proxy, votes too.
    let mut with_id = with_envelope(&[b"hop", b"rid"], request(V1, "echo", &["x"]));
    with_id.push_front(b"c".to_vec());
    assert!(is_client_message(&with_id));
}

/// `[envelope…]["" ][client message…]`, as a client with a request id, or behind a
/// ROUTER/DEALER proxy, sends it.
fn with_envelope(envelope: &[&[u8]], msg: Message) -> Message {
    let envelope = mdp::Envelope {
        frames: envelope.iter().map(|f| f.to_vec()).collect(),
        delimited: true,
    };
    mdp::wrap_client_envelope(envelope, msg)
}

/// The handle a worker was given in a REQUEST, as the broker sent it.
fn handle_of(msg: Message) -> Frame {
    match decode_worker(msg).unwrap().command {
        WorkerCommand::Request { client, .. } => client,
        other => panic!("not a REQUEST: {other:?}"),
    }
}

fn raw_reply(version: Version, handle: &[u8], body: &str) -> Message {
    let body = msg![body.as_bytes()];
    let client = handle.to_vec();
    worker_cmd(
        version,
        match version {
            Version::V1 => WorkerCommand::Reply { client, body },
            Version::V2 => WorkerCommand::Final { client, body },
        },
    )
}

#[test]
fn a_worker_sees_a_fresh_handle_per_request_never_the_client_identity() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let first = handle_of(only(h.raw("c1", request(V1, "echo", &["a"]), 1), "w1"));
    assert_ne!(first, b"c1");
    assert_eq!(first.len(), 16);
    assert!(first.iter().all(u8::is_ascii_hexdigit), "printable");
    let out = h.raw("w1", raw_reply(V1, &first, "A"), 2);
    assert_eq!(only(out, "c1"), msg![b"", b"MDPC01", b"echo", b"A"]);
    let second = handle_of(only(h.raw("c1", request(V1, "echo", &["b"]), 3), "w1"));
    assert_ne!(first, second, "one handle per dispatch");
    // A stale copy of its previous reply, while it holds the next request: refused, and
    // the client gets nothing for it.
    let out = h.raw("w1", raw_reply(V1, &first, "A"), 4);
    assert!(is_disconnect(&only(out, "w1")));
    assert_eq!(h.b().report().replies, 1);
}

#[test]
fn a_worker_that_replies_twice_is_disconnected_and_the_client_gets_one_reply() {
    for version in [V1, V2] {
        let mut h = H::new();
        h.ready("w1", version, "echo", 0);
        let handle = handle_of(only(h.raw("c1", request(V1, "echo", &["a"]), 1), "w1"));
        assert_eq!(
            sent_to(&h.raw("w1", raw_reply(version, &handle, "A"), 2), "c1").len(),
            1
        );
        let out = h.raw("w1", raw_reply(version, &handle, "A"), 3);
        assert!(is_disconnect(&only(out, "w1")), "{version:?}");
        assert_eq!(h.b().report().replies, 1);
    }
}

#[test]
fn a_worker_cannot_answer_with_the_handle_another_worker_holds() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V2, "echo", 0);
    let h1 = handle_of(only(h.raw("c1", request(V1, "echo", &["a"]), 1), "w1"));
    let h2 = handle_of(only(h.raw("c2", request(V1, "echo", &["b"]), 2), "w2"));
    assert_ne!(h1, h2);
    let out = h.raw("w2", raw_reply(V2, &h1, "FORGED"), 3);
    assert!(is_disconnect(&only(out, "w2")), "nothing reaches c1");
    let out = h.raw("w1", raw_reply(V1, &h1, "A"), 4);
    assert_eq!(only(out, "c1"), msg![b"", b"MDPC01", b"echo", b"A"]);
}

#[test]
fn client_envelopes_come_back_whole_in_any_order_in_both_versions() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    h.ready("w2", V2, "echo", 0);
    // Two requests in flight on one client connection, told apart only by their ids.
    let a = with_envelope(&[b"rid-a"], request(V1, "echo", &["a"]));
    let b = with_envelope(&[b"hop", b"rid-b"], request(V2, "echo", &["b"]));
    let ha = handle_of(only(h.raw("c1", a, 1), "w1"));
    let hb = handle_of(only(h.raw("c1", b, 2), "w2"));
    let out = h.raw("w2", raw_reply(V2, &hb, "B"), 3);
    assert_eq!(
        only(out, "c1"),
        msg![b"hop", b"rid-b", b"", b"MDPC02", &[3], b"echo", b"B"]
    );
    let out = h.raw("w1", raw_reply(V1, &ha, "A"), 4);
    assert_eq!(
        only(out, "c1"),
        msg![b"rid-a", b"", b"MDPC01", b"echo", b"A"]
    );
    assert_eq!(h.b().report().replies, 2);
    assert_eq!(h.b().report().invalid, 0);
}

#[test]
fn partials_to_a_client_with_an_envelope_carry_it_each_time() {
    let mut h = H::new();
    h.ready("w1", V2, "s", 0);
    let req = with_envelope(&[b"rid"], request(V2, "s", &["go"]));
    let handle = handle_of(only(h.raw("c1", req, 1), "w1"));
    let partial = worker_cmd(
        V2,
        WorkerCommand::Partial {
            client: handle.clone(),
            body: msg![b"p"],
        },
    );
    let out = h.raw("w1", partial, 2);
    assert_eq!(
        only(out, "c1"),
        msg![b"rid", b"", b"MDPC02", &[2], b"s", b"p"]
    );
    let out = h.raw("w1", raw_reply(V2, &handle, "end"), 3);
    assert_eq!(
        only(out, "c1"),
        msg![b"rid", b"", b"MDPC02", &[3], b"s", b"end"]
    );
}

#[test]
fn a_standard_v2_client_behind_a_proxy_is_answered_through_it() {
    let mut h = H::new();
    h.ready("w1", V2, "echo", 0);
    let mut req = request(V2, "echo", &["x"]);
    req.push_front(b"hop".to_vec());
    let handle = handle_of(only(h.raw("proxy", req, 1), "w1"));
    let out = h.raw("w1", raw_reply(V2, &handle, "X"), 2);
    assert_eq!(
        only(out, "proxy"),
        msg![b"hop", b"MDPC02", &[3], b"echo", b"X"]
    );
}

#[test]
fn mmi_correlate_says_200_with_or_without_an_envelope() {
    let mut h = H::new();
    let out = h.raw("c1", request(V1, "mmi.correlate", &["1"]), 0);
    assert_eq!(
        only(out, "c1"),
        msg![b"", b"MDPC01", b"mmi.correlate", b"200"]
    );
    let asked = with_envelope(&[b"rid"], request(V2, "mmi.correlate", &["1"]));
    let out = h.raw("c1", asked, 1);
    assert_eq!(
        only(out, "c1"),
        msg![b"rid", b"", b"MDPC02", &[3], b"mmi.correlate", b"200"]
    );
}

#[test]
fn a_request_without_a_majordomo_header_is_answered_so_and_counted() {
    let mut h = H::new();
    // A Lazy Pirate client's REQ: [""]["hello"]; and one behind a proxy hop.
    let out = h.raw("c1", msg![b"", b"hello"], 0);
    assert_eq!(only(out, "c1"), msg![b"", b"MDPC01", b"", NOT_MDP]);
    let out = h.raw("c1", msg![b"hop", b"", b"a", b"b"], 0);
    assert_eq!(only(out, "c1"), msg![b"hop", b"", b"MDPC01", b"", NOT_MDP]);
    assert_eq!(h.b().report().invalid, 2);
}

#[test]
fn a_worker_message_behind_an_envelope_is_invalid() {
    let mut h = H::new();
    let msg = msg![b"hop", b"", b"MDPW01", &[0x01], b"echo"];
    assert!(h.raw("w1", msg, 0).is_empty());
    assert_eq!(h.b().report().invalid, 1);
    assert_eq!(h.b().report().workers_seen, 0);
}

/// A DEALER peer on the process's context (the reactor's), so inproc endpoints meet.
fn dealer(endpoint: &str, identity: &[u8]) -> zmq::Socket {
    let socket = crate::transport::context().socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_identity(identity).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

fn send_to(peer: &zmq::Socket, msg: Message) {
    peer.send_multipart(msg.into_frames(), 0).unwrap();
}

/// The next message `peer` receives within `ms` milliseconds, if one comes.
fn recv_within(peer: &zmq::Socket, ms: i32) -> Option<Message> {
    peer.set_rcvtimeo(ms).unwrap();
    peer.recv_multipart(0).ok().map(Message::from)
}

fn fast(bind: &str) -> BrokerConfig {
    BrokerConfig {
        bind: bind.into(),
        heartbeat: HeartbeatConfig {
            interval: Duration::from_millis(20),
            liveness: 3,
        },
        ..config()
    }
}

#[test]
fn a_binary_star_backup_alone_registers_workers_but_refuses_clients() {
    use crate::bstar::Role;

    let id = rand::random::<u64>();
    let endpoint = format!("inproc://bstar-broker-{id}");
    let cfg = fast(&endpoint);
    let stop = Stop::new();
    let options = BstarOptions {
        role: Role::Backup,
        state_pub: format!("inproc://bstar-broker-states-{id}"),
        peer_state: format!("inproc://bstar-broker-nobody-{id}"),
        heartbeat: Duration::from_millis(10),
        on_split: crate::bstar::SplitPolicy::Resolve,
    };
    let broker = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut node = Bstar::new(options, Broker::new(&cfg), Instant::now()).unwrap();
            let ended = reactor::run(&mut node, no_work, &stop, &mut Events::discard());
            let refused = node.refused();
            let state = node.state();
            (ended, node.into_inner().into_report(), refused, state)
        }
    });

    let worker = dealer(&endpoint, b"w1");
    send_to(&worker, ready(V2, "echo"));
    assert_eq!(
        recv_within(&worker, 2000),
        Some(heartbeat(V2)),
        "a passive broker heartbeats workers"
    );
    let client = dealer(&endpoint, b"c1");
    send_to(&client, request(V1, "echo", &["hi"]));
    send_to(&client, request(V1, "mmi.service", &["echo"]));
    assert_eq!(
        recv_within(&client, 300),
        None,
        "a backup alone never answers"
    );

    stop.request();
    let (ended, report, refused, state) = broker.join().unwrap();
    assert_eq!(ended.unwrap(), reactor::Ended::Stopped);
    assert_eq!(
        (report.requests, report.mmi, report.workers_seen),
        (0, 0, 1)
    );
    assert_eq!(refused, 2);
    assert_eq!(state, crate::bstar::State::Backup);
}

#[test]
fn serves_over_a_real_socket_until_stopped() {
    let endpoint = format!("inproc://broker-smoke-{}", rand::random::<u64>());
    let cfg = fast(&endpoint);
    let stop = Stop::new();
    let broker = std::thread::spawn({
        let stop = stop.clone();
        move || run(&cfg, &stop, &mut Events::discard())
    });

    let worker = dealer(&endpoint, b"w1");
    send_to(&worker, ready(V2, "echo"));
    let client = dealer(&endpoint, b"c1");
    // Wait until the worker is registered (heartbeats prove it), then ask.
    assert_eq!(recv_within(&worker, 2000), Some(heartbeat(V2)));
    send_to(&client, request(V1, "echo", &["hello"]));
    let got = loop {
        let msg = recv_within(&worker, 2000).expect("no request");
        if msg != heartbeat(V2) {
            break msg;
        }
    };
    // The worker sees a handle, not the client's identity, and echoes it.
    let (_, addr, body) = worker_request(got);
    assert_ne!(addr, "c1");
    assert_eq!(body, "hello");
    send_to(&worker, reply(V2, &addr, &["HELLO"], true));
    assert_eq!(
        recv_within(&client, 2000),
        Some(msg![b"", b"MDPC01", b"echo", b"HELLO"]),
        "no reply"
    );

    stop.request();
    let Report::Majordomo(report) = broker.join().unwrap().unwrap() else {
        panic!("not a broker report");
    };
    assert_eq!(
        (report.requests, report.dispatched, report.replies),
        (1, 1, 1)
    );
    assert_eq!(report.workers_seen, 1);
}

// ---- the broker as a reactor machine ----

#[test]
fn as_a_machine_it_binds_one_router_says_so_and_keeps_the_heartbeat_deadline() {
    let b = Broker::new(&config());
    match &b.sockets()[..] {
        [spec] => {
            assert_eq!(
                (spec.slot, spec.kind, spec.name),
                (ROUTER, SocketKind::Router, "broker")
            );
            assert_eq!(spec.bind, ["inproc://test"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.next_deadline(), None, "no deadline before start");
    let mut rig = Rig::quiet(b);
    let t0 = rig.t0;
    assert!(rig.start(t0).is_empty());
    let seen = rig.take_events();
    assert!(matches!(&seen[..], [Event::Started { role, seed: None, .. }] if role == "broker"));
    assert_eq!(rig.m.next_deadline(), Some(t0 + Duration::from_millis(100)));
}

#[test]
fn as_a_machine_its_ticks_before_the_deadline_send_nothing() {
    let mut rig = Rig::quiet(Broker::new(&config()));
    let t0 = rig.t0;
    rig.start(t0);
    let msg = with_identity("w1", ready(V1, "echo"));
    assert!(
        rig.message(ROUTER, msg, t0).is_empty(),
        "READY is not answered"
    );
    // The reactor may tick after any batch: early ticks are no-ops.
    assert!(rig.tick(rig.at(99)).is_empty());
    assert_eq!(
        rig.tick(rig.at(100)),
        [reactor::Output::Send {
            slot: ROUTER,
            msg: with_identity("w1", heartbeat(V1)),
        }]
    );
    assert_eq!(rig.m.next_deadline(), Some(t0 + Duration::from_millis(200)));
}

#[test]
fn as_a_machine_a_drained_batch_is_answered_in_order_behind_each_identity() {
    // The reactor hands over up to BATCH messages per wake-up before it sends anything:
    // every answer of the batch is in the outbox, in order, each behind its identity.
    let mut rig = Rig::quiet(Broker::new(&BrokerConfig {
        max_queue: 1000,
        ..config()
    }));
    let t0 = rig.t0;
    rig.start(t0);
    let mut sent = Vec::new();
    for w in 0..3 {
        let msg = with_identity(&format!("w{w}"), ready(V2, "echo"));
        sent.extend(rig.message(ROUTER, msg, t0));
    }
    for i in 0..reactor::BATCH {
        let msg = with_identity(&format!("c{i}"), request(V1, "echo", &[&i.to_string()]));
        sent.extend(rig.message(ROUTER, msg, t0));
    }
    let to: Vec<Vec<u8>> = sent
        .iter()
        .map(|o| match o {
            reactor::Output::Send { slot: ROUTER, msg } => msg.get(0).unwrap().to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    // Three idle workers get the first three requests, least recently used first; the
    // rest wait in the queue.
    assert_eq!(to, [b"w0".to_vec(), b"w1".to_vec(), b"w2".to_vec()]);
    assert_eq!(rig.m.report().requests, reactor::BATCH as u64);
    assert_eq!(rig.m.report().dispatched, 3);
}

#[test]
fn as_a_binary_star_node_only_client_messages_are_votes() {
    let b = Broker::new(&config());
    assert!(b.is_vote(ROUTER, &with_identity("c1", request(V1, "echo", &["x"]))));
    assert!(b.is_vote(ROUTER, &with_identity("c1", request(V2, "echo", &["x"]))));
    assert!(!b.is_vote(ROUTER, &with_identity("w1", ready(V1, "echo"))));
    assert!(!b.is_vote(ROUTER, &with_identity("w1", heartbeat(V2))));
}

fn with_identity(id: &str, mut msg: Message) -> Message {
    msg.push_front(id.as_bytes().to_vec());
    msg
}

// ---- bounds: bytes, held PARTIALs, service names ----

fn with_bytes(queue: u64, total: u64) -> H {
    H::with(BrokerConfig {
        max_queue: 100,
        max_queue_bytes: queue,
        max_bytes: total,
        ..config()
    })
}

fn dropped(h: &H, why: &str) -> usize {
    h.count(|e| matches!(e, Event::RequestDropped { reason, .. } if reason == why))
}

/// What a queued request from a two-letter client (`c1`) costs: its body, its identity
/// and the per-request overhead.
fn cost(body: &str) -> u64 {
    body.len() as u64 + 2 + QUEUED_OVERHEAD
}

#[test]
fn a_service_queue_is_bounded_in_bytes() {
    let mut h = with_bytes(cost("123456") + cost("wxyz"), 10_000);
    assert!(h.request("c1", V1, "echo", "123456", 0).is_empty());
    // Two six-byte requests do not fit; a six- and a four-byte one do.
    assert!(h.request("c2", V1, "echo", "abcdef", 1).is_empty());
    assert!(h.request("c3", V1, "echo", "wxyz", 2).is_empty());
    assert_eq!(dropped(&h, "queue_bytes"), 1);
    assert_eq!(h.b().report().requests_rejected, 1);
    assert_eq!(h.held_bytes(), cost("123456") + cost("wxyz"));
    // The queue drains in order, and its bytes with it.
    h.ready("w1", V1, "echo", 3);
    h.recv("w1", reply(V1, "c1", &["x"], true), 4);
    assert_eq!(h.held_bytes(), 0, "both requests dispatched");
}

#[test]
fn empty_requests_are_bounded_in_bytes_too() {
    // A flood of empty bodies still costs each its address and bookkeeping.
    let mut h = with_bytes(3 * cost(""), 10_000);
    for (i, client) in ["c1", "c2", "c3", "c4"].into_iter().enumerate() {
        assert!(h.request(client, V1, "echo", "", i as u64).is_empty());
    }
    assert_eq!(dropped(&h, "queue_bytes"), 1);
    assert_eq!(h.held_bytes(), 3 * cost(""));
}

#[test]
fn the_broker_total_is_bounded_across_services() {
    let mut h = with_bytes(10_000, cost("123456") + 10);
    assert!(h.request("c1", V1, "a", "123456", 0).is_empty());
    assert!(h.request("c2", V1, "b", "123456", 1).is_empty());
    assert_eq!(dropped(&h, "broker_bytes"), 1);
    // Expiry gives the bytes back.
    h.tick(1500);
    assert_eq!(h.held_bytes(), 0);
    assert!(h.request("c3", V1, "b", "123456", 1501).is_empty());
    assert_eq!(dropped(&h, "broker_bytes"), 1);
}

#[test]
fn partials_held_for_a_v1_client_are_bounded_and_the_worker_serves_on() {
    let mut h = with_bytes(10, 1000);
    h.ready("w1", V2, "lines", 0);
    only(h.request("c1", V1, "lines", "x", 1), "w1");
    assert!(h
        .recv("w1", reply(V2, "c1", &["123456"], false), 2)
        .is_empty());
    assert_eq!(h.held_bytes(), 6);
    // 12 > 10: the reply is dropped, and so is the rest of it.
    assert!(h
        .recv("w1", reply(V2, "c1", &["abcdef"], false), 3)
        .is_empty());
    assert_eq!(h.held_bytes(), 0);
    assert!(h
        .recv("w1", reply(V2, "c1", &["more"], false), 4)
        .is_empty());
    assert_eq!(h.held_bytes(), 0);
    assert!(
        h.recv("w1", reply(V2, "c1", &["end"], true), 5).is_empty(),
        "nothing to c1"
    );
    assert_eq!(dropped(&h, "reply_too_big"), 1);
    assert_eq!(h.b().report().requests_lost, 1);
    // Idle again: the next request gets through, whole.
    only(h.request("c2", V1, "lines", "y", 6), "w1");
    h.recv("w1", reply(V2, "c2", &["1"], false), 7);
    let out = h.recv("w1", reply(V2, "c2", &["2"], true), 8);
    assert_eq!(client_reply(only(out, "c2")).body.text(), "1\n2");
    assert_eq!(h.held_bytes(), 0);
}

#[test]
fn held_partials_are_released_when_their_worker_is_lost() {
    let mut h = with_bytes(100, 1000);
    h.ready("w1", V2, "lines", 0);
    only(h.request("c1", V1, "lines", "x", 1), "w1");
    h.recv("w1", reply(V2, "c1", &["123456"], false), 2);
    assert_eq!(h.held_bytes(), 6);
    h.recv("w1", worker_cmd(V2, WorkerCommand::Disconnect), 3);
    assert_eq!(h.held_bytes(), 0);
}

#[test]
fn partials_cannot_hold_a_request_past_the_grace_of_the_busy_timeout() {
    let mut h = with_busy_timeout(500);
    h.ready("w1", V2, "lines", 0);
    only(h.request("c1", V2, "lines", "x", 0), "w1");
    let limit = 500 * u64::from(PARTIAL_GRACE);
    // A PARTIAL every 300 ms: progress each time, yet stuck once the grace is over.
    let mut stuck_at = None;
    for ms in (300..limit + 1000).step_by(300) {
        h.recv("w1", reply(V2, "c1", &["."], false), ms);
        if h.tick(ms + 1).iter().any(|(_, m)| is_disconnect(m)) {
            stuck_at = Some(ms);
            break;
        }
    }
    let at = stuck_at.expect("a trickle of PARTIALs held the request forever");
    assert!(at >= limit && at < limit + 300, "{at}");
    assert_eq!(h.b().report().workers_stuck, 1);
}

#[test]
fn service_names_over_255_bytes_are_invalid() {
    let mut h = H::new();
    let long = "s".repeat(MAX_SERVICE_NAME + 1);
    assert!(h.request("c1", V1, &long, "x", 0).is_empty());
    assert_eq!(h.b().report().invalid, 1);
    assert_eq!(h.b().report().requests, 0);
    let out = h.recv("w1", ready(V1, &long), 1);
    assert!(is_disconnect(&only(out, "w1")));
    assert_eq!(h.b().report().invalid, 2);
    assert!(h.b().status()["services"].as_object().unwrap().is_empty());
    // 255 bytes is still a name.
    let longest = "s".repeat(MAX_SERVICE_NAME);
    h.ready("w2", V1, &longest, 2);
    only(h.request("c2", V1, &longest, "x", 3), "w2");
}

// ---- credit: one worker connection holding many requests (our extension) ----

fn ready_with_credit(version: Version, service: &str, credit: u32) -> Message {
    worker_cmd(
        version,
        WorkerCommand::Ready {
            service: service.as_bytes().to_vec(),
            credit: Some(credit),
        },
    )
}

/// `w1` registers for `echo` asking for `credit`; the grant it is sent.
fn credited(h: &mut H, version: Version, credit: u32) -> WorkerCommand {
    let out = h.raw("w1", ready_with_credit(version, "echo", credit), 0);
    decode_worker(only(out, "w1")).unwrap().command
}

#[test]
fn a_ready_with_credit_is_granted_at_once_in_the_workers_version_and_capped() {
    for version in [V1, V2] {
        let mut h = H::new();
        assert_eq!(
            credited(&mut h, version, 3),
            WorkerCommand::Granted { credit: 3 }
        );
        let mut h = H::new();
        assert_eq!(
            credited(&mut h, version, MAX_CREDIT + 1),
            WorkerCommand::Granted { credit: MAX_CREDIT }
        );
    }
    // The grant goes out before any queued request is dispatched to the worker.
    let mut h = H::new();
    h.request("c1", V1, "echo", "x", 0);
    let out = h.raw("w1", ready_with_credit(V1, "echo", 2), 1);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(
        decode_worker(out[0].1.clone()).unwrap().command,
        WorkerCommand::Granted { credit: 2 }
    ));
    handle_of(out[1].1.clone());
}

#[test]
fn a_credited_worker_holds_that_many_requests_and_replies_in_any_order() {
    let mut h = H::with(BrokerConfig {
        max_queue: 10,
        ..config()
    });
    credited(&mut h, V1, 3);
    let mut handles = Vec::new();
    for (i, client) in ["c0", "c1", "c2"].into_iter().enumerate() {
        let out = h.raw(client, request(V1, "echo", &[&format!("r{i}")]), 1);
        handles.push(handle_of(only(out, "w1")));
    }
    assert_eq!(h.b().status()["services"]["echo"]["idle"], 0);
    // A fourth waits: the credit is used up.
    assert!(h.raw("c3", request(V1, "echo", &["r3"]), 2).is_empty());
    assert_eq!(h.b().status()["services"]["echo"]["queued"], 1);
    // The second answers first: its client gets it, and the queued request takes the
    // freed credit on the same worker.
    let out = h.raw("w1", raw_reply(V1, &handles[1], "a1"), 3);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].0, b"c1");
    assert_eq!(client_reply(out[0].1.clone()).body, msg![b"a1"]);
    assert_eq!(out[1].0, b"w1");
    handles.push(handle_of(out[1].1.clone()));
    for (i, client) in [(0, "c0"), (2, "c2"), (3, "c3")] {
        let out = h.raw("w1", raw_reply(V1, &handles[i], "a"), 4);
        assert_eq!(only(out, client), msg![b"", b"MDPC01", b"echo", b"a"]);
    }
    assert_eq!(
        h.b().status()["services"]["echo"]["idle"],
        3,
        "all credit free"
    );
    assert_eq!((h.b().report().dispatched, h.b().report().replies), (4, 4));
    // A handle answered already is not held any more: DISCONNECT.
    let out = h.raw("w1", raw_reply(V1, &handles[0], "again"), 5);
    assert!(is_disconnect(&only(out, "w1")));
}

#[test]
fn a_credited_worker_that_dies_loses_every_request_it_held_and_gets_none_after() {
    let mut h = H::with(BrokerConfig {
        max_queue: 10,
        ..config()
    });
    credited(&mut h, V2, 4);
    for client in ["c0", "c1"] {
        only(h.raw(client, request(V2, "echo", &["x"]), 1), "w1");
    }
    // Silent past liveness × interval: expired, both requests lost, its two free
    // credits stale.
    h.tick(400);
    assert_eq!(h.b().report().workers_expired, 1);
    assert_eq!(h.b().report().requests_lost, 2);
    let lost =
        h.count(|e| matches!(e, Event::RequestDropped { reason, .. } if reason == "worker_lost"));
    assert_eq!(lost, 2, "one event per request");
    assert!(h.raw("c2", request(V2, "echo", &["x"]), 401).is_empty());
    assert_eq!(h.b().status()["services"]["echo"]["idle"], 0);
    // A plain worker registering now gets the queued request.
    h.ready("w2", V2, "echo", 402);
    assert_eq!(h.b().report().dispatched, 3);
}

#[test]
fn a_busy_timeout_on_one_of_its_requests_disconnects_the_credited_worker() {
    let mut h = H::with(BrokerConfig {
        busy_timeout: Some(Duration::from_millis(500)),
        max_queue: 10,
        ..config()
    });
    credited(&mut h, V1, 2);
    let first = handle_of(only(h.raw("c0", request(V1, "echo", &["x"]), 0), "w1"));
    only(h.raw("c1", request(V1, "echo", &["y"]), 50), "w1");
    // The first is answered, the second never is; heartbeats keep flowing.
    only(h.raw("w1", raw_reply(V1, &first, "a"), 100), "c0");
    for ms in [100, 200, 300, 400, 500] {
        h.raw("w1", heartbeat(V1), ms);
        assert!(h.tick(ms).iter().all(|(_, m)| !is_disconnect(m)), "{ms}");
    }
    h.raw("w1", heartbeat(V1), 600);
    let out = h.tick(600);
    assert!(out.iter().any(|(id, m)| id == b"w1" && is_disconnect(m)));
    assert_eq!(h.b().report().workers_stuck, 1);
    assert_eq!(h.b().report().requests_lost, 1, "only the one it held");
}

#[test]
fn a_credit_grant_from_a_worker_is_a_protocol_error() {
    let mut h = H::new();
    h.ready("w1", V1, "echo", 0);
    let out = h.raw(
        "w1",
        worker_cmd(V1, WorkerCommand::Granted { credit: 5 }),
        1,
    );
    assert!(is_disconnect(&only(out, "w1")));
    assert!(h.b().workers.is_empty());
}

#[test]
fn credited_and_standard_workers_share_a_service_least_recently_used_first() {
    let mut h = H::with(BrokerConfig {
        max_queue: 10,
        ..config()
    });
    credited(&mut h, V1, 2);
    h.ready("w2", V1, "echo", 0);
    let to: Vec<Frame> = (0..3)
        .map(|i| {
            let out = h.raw(&format!("c{i}"), request(V1, "echo", &["x"]), 1);
            assert_eq!(out.len(), 1, "{out:?}");
            out[0].0.clone()
        })
        .collect();
    // w1 first (it registered first), filled to its credit, then w2.
    assert_eq!(to, [b"w1".to_vec(), b"w1".to_vec(), b"w2".to_vec()]);
    assert!(h.raw("c3", request(V1, "echo", &["x"]), 2).is_empty());
}

#[test]
fn a_worker_asking_for_the_most_credit_takes_one_idle_entry_not_one_per_credit() {
    // 1000 READYs of credit 1024 from 1000 identities: a few bytes each, not a queue
    // entry per credit (that would be a million entries from 60 KB of READYs).
    let mut h = H::new();
    for i in 0..1000 {
        h.raw(
            &format!("w{i}"),
            ready_with_credit(V1, "echo", MAX_CREDIT),
            0,
        );
    }
    let svc = &h.b().services[b"echo".as_slice()];
    assert_eq!(svc.idle_entries(), 1000);
    assert_eq!(svc.idle_credits(), 1000 * MAX_CREDIT as usize);
    assert_eq!(
        h.b().status()["services"]["echo"]["idle"],
        1000 * MAX_CREDIT
    );
}
