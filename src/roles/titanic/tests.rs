//! Titanic's unit tests: the machine through its sockets, the TSP services over a real store,
//! and round trips through a broker on threads.

use super::client::status_code;
use super::*;
use crate::reactor::Output;
use crate::roles::broker::{self, BrokerConfig};
use crate::roles::worker::MdpWorkerConfig;
use crate::testkit::{opened, sent_on, Rig};
use std::path::Path;
use std::thread;

fn temp_dir(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "pirate-titanic-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn msg(frames: &[&str]) -> Message {
    Message::from_frames(frames.iter().map(|f| f.as_bytes().to_vec()))
}

fn frames(m: &Message) -> Vec<String> {
    m.iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[test]
fn the_tsp_exchanges_without_sockets() {
    let dir = temp_dir("tsp");
    let mut store = Store::open(&dir).unwrap();
    // request → 200 + uuid, stored and pending
    let (reply, uuid) = handle_request(&mut store, msg(&["echo", "a", "b"]), &Limits::default());
    let uuid = uuid.unwrap();
    assert_eq!(frames(&reply), vec!["200".to_string(), uuid.to_string()]);
    assert_eq!(store.pending(), vec![uuid]);
    assert_eq!(store.get(&uuid).unwrap().request, msg(&["a", "b"]));
    let id = uuid.to_string();
    // reply → 300 while pending
    assert_eq!(frames(&handle_reply(&store, msg(&[&id]))), vec!["300"]);
    store.put_reply(uuid, &msg(&["A", "B"])).unwrap();
    // → 200 + frames, twice (idempotent), uppercase uuid too
    for _ in 0..2 {
        assert_eq!(
            frames(&handle_reply(&store, msg(&[&id]))),
            vec!["200", "A", "B"]
        );
    }
    let upper = id.to_uppercase();
    assert_eq!(frames(&handle_reply(&store, msg(&[&upper])))[0], "200");
    // close → 200, then unknown: reply 400, close 200 again
    assert_eq!(frames(&handle_close(&mut store, msg(&[&id]))), vec!["200"]);
    assert_eq!(frames(&handle_reply(&store, msg(&[&id]))), vec!["400"]);
    assert_eq!(frames(&handle_close(&mut store, msg(&[&id]))), vec!["200"]);
    assert!(store.is_empty());
}

#[test]
fn requests_past_the_limits_get_a_500_with_the_reason() {
    let dir = temp_dir("limits");
    let mut store = Store::open(&dir).unwrap();
    let limits = Limits {
        max_request_bytes: 100,
        max_store_bytes: 250,
        ..Limits::default()
    };
    let big = "x".repeat(100);
    let (reply, uuid) = handle_request(&mut store, msg(&["echo", &big]), &limits);
    assert!(uuid.is_none());
    let text = frames(&reply)[0].clone();
    assert!(text.starts_with("500 request too big: 104 bytes"), "{text}");
    assert_eq!(status_code(Some(text.into_bytes())), ERROR);
    // 96 bytes fit; the store fills up after a few, then refuses until one is closed.
    let fits = "y".repeat(96);
    let mut stored = Vec::new();
    let refusal = loop {
        match handle_request(&mut store, msg(&["echo", &fits]), &limits) {
            (_, Some(uuid)) => stored.push(uuid),
            (reply, None) => break frames(&reply)[0].clone(),
        }
        assert!(stored.len() < 10, "the store never filled up");
    };
    assert!(refusal.starts_with("500 store full"), "{refusal}");
    assert!(store.live_bytes() >= limits.max_store_bytes);
    store.close(stored[0]).unwrap();
    assert!(handle_request(&mut store, msg(&["echo", &fits]), &limits)
        .1
        .is_some());
}

#[test]
fn status_text_after_the_code_is_ignored() {
    assert_eq!(status_code(Some(b"200".to_vec())), b"200");
    assert_eq!(status_code(Some(b"300 try later".to_vec())), b"300");
    assert_eq!(status_code(Some(b"2000".to_vec())), b"2000");
    assert_eq!(status_code(None), b"");
}

#[test]
fn malformed_tsp_bodies_get_a_status_not_a_panic() {
    let dir = temp_dir("malformed");
    let mut store = Store::open(&dir).unwrap();
    for body in [msg(&[]), msg(&["echo"]), msg(&["", "x"])] {
        let (reply, uuid) = handle_request(&mut store, body, &Limits::default());
        assert_eq!(frames(&reply), vec!["400"]);
        assert!(uuid.is_none());
    }
    let mut bad_utf8 = msg(&["x"]);
    bad_utf8.push_front(vec![0xff, 0xfe]);
    assert_eq!(
        frames(&handle_request(&mut store, bad_utf8, &Limits::default()).0),
        vec!["400"]
    );
    for body in [
        msg(&[]),
        msg(&["nothex"]),
        msg(&["0123456789abcdef0123456789abcdef", "extra"]),
    ] {
        assert_eq!(frames(&handle_reply(&store, body.clone())), vec!["400"]);
        assert_eq!(frames(&handle_close(&mut store, body)), vec!["200"]);
    }
    assert!(store.is_empty());
}

/// Broker, echo worker and Titanic on threads in this process, over ipc: one request goes
/// through, and a request for a service nobody serves stays pending until one appears.
#[test]
fn round_trip_through_a_broker_and_a_late_service() {
    let endpoint = format!(
        "ipc:///tmp/pirate-titanic-test-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let fast = HeartbeatConfig {
        interval: Duration::from_millis(50),
        liveness: 3,
    };
    let config = BrokerConfig {
        bind: endpoint.clone(),
        heartbeat: fast,
        ..BrokerConfig::default()
    };
    thread::spawn(move || {
        broker::run(
            &config,
            &crate::reactor::Stop::new(),
            &mut Events::discard(),
        )
    });
    let start_echo = |service: &'static str| {
        let endpoint = endpoint.clone();
        thread::spawn(move || {
            let mut config = MdpWorkerConfig::new(&endpoint, service, Version::V1);
            config.heartbeat = fast;
            config.reconnect = Duration::from_millis(50);
            config.name = format!("echo-{service}");
            crate::majordomo::serve(&config, |body| body, &Stop::new(), &mut Events::discard())
        });
    };
    start_echo("echo");
    let dir = temp_dir("roundtrip");
    let config = TitanicConfig {
        broker: endpoint.clone(),
        dir: dir.clone(),
        heartbeat: fast,
        reconnect: Duration::from_millis(50),
        retry_interval: Duration::from_millis(50),
        request_timeout: Duration::from_millis(500),
        ..TitanicConfig::default()
    };
    thread::spawn(move || run(&config, &Stop::new(), &mut Events::discard()));

    let mut events = Events::discard();
    let poll = Duration::from_millis(20);
    let timeout = Duration::from_millis(500);
    let reply = titanic_client(
        &endpoint,
        "echo",
        msg(&["hi", "there"]),
        poll,
        timeout,
        20,
        &mut events,
    )
    .unwrap();
    assert_eq!(frames(&reply), vec!["hi", "there"]);

    let mut client = TitanicClient::connect(&endpoint, timeout, 20).unwrap();
    let uuid = client.submit("late", msg(&["later"])).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(client.reply(&uuid).unwrap(), ReplyStatus::Pending);
    start_echo("late");
    let (reply, _) = client.wait_reply(&uuid, poll).unwrap();
    assert_eq!(frames(&reply), vec!["later"]);
    assert_eq!(client.reply(&uuid).unwrap(), ReplyStatus::Ready(reply));
    client.close(&uuid).unwrap();
    assert_eq!(client.reply(&uuid).unwrap(), ReplyStatus::Unknown);
    client.close(&uuid).unwrap();
    client.close(&Uuid::random().to_string()).unwrap();
}

// The machine with a fake clock: every test drives `Titanic` by hand.

const BROKER: &str = "tcp://127.0.0.1:1";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(dir: &Path) -> TitanicConfig {
    TitanicConfig {
        broker: BROKER.into(),
        dir: dir.to_path_buf(),
        heartbeat: HeartbeatConfig {
            interval: ms(100),
            liveness: 3,
        },
        reconnect: ms(50),
        retry_interval: ms(1000),
        request_timeout: ms(500),
        ..TitanicConfig::default()
    }
}

/// A rig around a machine over a fresh store in `temp_dir(name)`, not yet started (a test
/// starts it with `rig.start(rig.t0)`); its clock begins when the machine does.
fn titanic(name: &str, tweak: impl FnOnce(&mut TitanicConfig)) -> Rig<Titanic> {
    let mut c = config(&temp_dir(name));
    tweak(&mut c);
    titanic_with(c)
}

fn titanic_with(c: TitanicConfig) -> Rig<Titanic> {
    let t0 = Instant::now();
    let mut rig = Rig::new(Titanic::new(&c, t0).unwrap());
    rig.t0 = t0;
    rig
}

/// A TSP request from client `c` on worker `slot` (0 request, 1 reply, 2 close) `at` ms; the
/// body of the REPLY that comes back at once, if one does.
fn tsp(rig: &mut Rig<Titanic>, slot: Slot, body: &[&str], at: u64) -> Option<Vec<String>> {
    let sent = rig.message(slot, to_worker(b"c", msg(body)), rig.at(at));
    replies(&sent, slot).pop()
}

/// A broker's REQUEST to a worker: `["", "MDPW01", 0x02, client, "", body…]`.
fn to_worker(client: &[u8], body: Message) -> Message {
    mdp::encode_worker(WorkerMsg {
        version: Version::V1,
        command: WorkerCommand::Request {
            client: client.to_vec(),
            body,
        },
    })
}

fn from_broker(command: WorkerCommand) -> Message {
    mdp::encode_worker(WorkerMsg {
        version: Version::V1,
        command,
    })
}

/// What a REQ lane receives from the broker: `["MDPC01", service, body…]`.
fn to_lane(service: &str, body: &[&str]) -> Message {
    let mut m = msg(&["MDPC01", service]);
    body.iter().for_each(|f| m.push_back(f.as_bytes().to_vec()));
    m
}

fn raw(m: &Message) -> Vec<Vec<u8>> {
    m.iter().map(<[u8]>::to_vec).collect()
}

/// The bodies of the REPLYs sent on worker `slot`, checking their envelope for client
/// `c`: `["", "MDPW01", 0x03, "c", "", body…]`.
fn replies(outputs: &[Output<Never>], slot: Slot) -> Vec<Vec<String>> {
    sent_on(outputs, slot)
        .into_iter()
        .filter(|m| m.get(2) == Some(&[3u8][..]))
        .map(|m| {
            let f = raw(&m);
            assert_eq!(
                f[..5],
                [
                    b"".to_vec(),
                    b"MDPW01".to_vec(),
                    vec![3],
                    b"c".to_vec(),
                    b"".to_vec()
                ]
            );
            frames(&m)[5..].to_vec()
        })
        .collect()
}

fn heartbeat() -> Message {
    from_broker(WorkerCommand::Heartbeat)
}

#[test]
fn three_dealers_register_one_service_each_with_ready() {
    let rig = titanic("ready", |_| {});
    let specs = rig.m.sockets();
    assert_eq!(specs.len(), 3);
    for (i, (spec, service)) in specs.iter().zip(["request", "reply", "close"]).enumerate() {
        assert_eq!(spec.slot, i);
        assert_eq!(spec.kind, SocketKind::Dealer);
        assert_eq!(spec.connect, [BROKER]);
        let id = String::from_utf8(spec.identity.clone().unwrap()).unwrap();
        let prefix = format!("titanic{}-{service}-1-", std::process::id());
        assert!(id.starts_with(&prefix), "{id}");
        assert_eq!(id.len(), prefix.len() + 32);
    }
    let mut rig = rig;
    let sent = rig.start(rig.t0);
    for (slot, service) in SERVICES.iter().enumerate() {
        // 7/MDP READY: ["", "MDPW01", 0x01, service]
        assert_eq!(
            raw(&sent_on(&sent, slot)[0]),
            [
                b"".to_vec(),
                b"MDPW01".to_vec(),
                vec![1],
                service.as_bytes().to_vec()
            ]
        );
    }
    assert!(matches!(&rig.events[0], Event::Started { role, .. } if role == "titanic"));
    assert!(rig.logged("0 stored, 0 pending"));
    assert_eq!(
        rig.events
            .iter()
            .filter(|e| format!("{e:?}").contains("ready for service titanic."))
            .count(),
        3
    );
    // Nothing pending: the first dispatch tick opens nothing.
    assert!(opened(&rig.tick(rig.at(0))).is_empty());
}

#[test]
fn a_request_is_stored_before_its_200_and_uuid_then_dispatched_after_mmi_200() {
    let mut rig = titanic("request", |_| {});
    rig.start(rig.t0);
    let reply = tsp(&mut rig, 0, &["echo", "a", "b"], 10).unwrap();
    assert_eq!(reply[0], "200");
    let uuid = Uuid::parse(reply[1].as_bytes()).unwrap();
    // On disk before the answer: a store opened now would find it (the log is synced).
    assert_eq!(rig.m.store.pending(), [uuid]);
    assert_eq!(rig.m.report().requests, 1);
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::Served { cycle: 1, .. })));
    // titanic.reply: 300 while pending.
    assert_eq!(tsp(&mut rig, 1, &[&reply[1]], 11).unwrap(), ["300"]);
    // The dispatch waits for the tick after the wake-up's reads.
    assert_eq!(rig.m.next_deadline(), Some(rig.at(10)));
    let out = rig.tick(rig.at(10));
    let lane = &opened(&out)[0];
    assert_eq!(
        (lane.slot, lane.kind, lane.identity.clone()),
        (LANES, SocketKind::Req, None)
    );
    assert_eq!(lane.connect, [BROKER]);
    assert_eq!(
        frames(&sent_on(&out, LANES)[0]),
        ["MDPC01", "mmi.service", "echo"]
    );
    // mmi 200: the request goes out on the same socket, in the tick after the reads
    // (a REQ socket must not be read again before it sent).
    assert!(rig
        .message(LANES, to_lane("mmi.service", &["200"]), rig.at(20))
        .is_empty());
    assert!(!rig.m.wants(LANES));
    assert_eq!(rig.m.next_deadline(), Some(rig.at(20)));
    let out = rig.tick(rig.at(20));
    assert!(rig.m.wants(LANES));
    assert_eq!(
        frames(&sent_on(&out, LANES)[0]),
        ["MDPC01", "echo", "a", "b"]
    );
    // The service's reply is stored, the lane's socket closed.
    let out = rig.message(LANES, to_lane("echo", &["A", "B"]), rig.at(30));
    assert_eq!(out, [Output::Close(LANES)]);
    assert_eq!(rig.m.report().replied, 1);
    assert!(rig.m.store.pending().is_empty());
    // titanic.reply: 200 and the frames, every time; close 200; then unknown 400.
    for at in [31, 32] {
        assert_eq!(
            tsp(&mut rig, 1, &[&reply[1]], at).unwrap(),
            ["200", "A", "B"]
        );
    }
    assert_eq!(tsp(&mut rig, 2, &[&reply[1]], 33).unwrap(), ["200"]);
    assert_eq!(tsp(&mut rig, 1, &[&reply[1]], 34).unwrap(), ["400"]);
    assert_eq!(tsp(&mut rig, 2, &[&reply[1]], 35).unwrap(), ["200"]);
    assert!(opened(&rig.tick(rig.at(40))).is_empty());
}

#[test]
fn malformed_tsp_bodies_and_mdp_messages_are_counted_and_answered_or_dropped() {
    let mut rig = titanic("malformed-machine", |_| {});
    rig.start(rig.t0);
    assert_eq!(tsp(&mut rig, 0, &["echo"], 1).unwrap(), ["400"]);
    assert_eq!(tsp(&mut rig, 1, &["nothex"], 2).unwrap(), ["400"]);
    assert_eq!(rig.m.report().invalid, 1);
    // Not MDP, a worker command the broker does not send, a 0.2 REQUEST: dropped.
    assert!(rig.message(1, msg(&["junk"]), rig.at(3)).is_empty());
    let ready = from_broker(WorkerCommand::Ready {
        service: b"x".to_vec(),
        credit: None,
    });
    assert!(rig.message(1, ready, rig.at(4)).is_empty());
    let v2 = mdp::encode_worker(WorkerMsg {
        version: Version::V2,
        command: WorkerCommand::Request {
            client: b"c".to_vec(),
            body: msg(&["x"]),
        },
    });
    assert!(rig.message(2, v2, rig.at(5)).is_empty());
    assert_eq!(rig.m.report().invalid, 4);
    assert!(rig.m.store.is_empty());
}

#[test]
fn requests_past_the_limits_are_answered_500_and_not_stored() {
    let mut rig = titanic("limits-machine", |c| {
        c.limits = Limits {
            max_request_bytes: 10,
            max_store_bytes: 1 << 20,
            ..Limits::default()
        }
    });
    rig.start(rig.t0);
    let reply = tsp(&mut rig, 0, &["echo", "0123456789"], 1).unwrap();
    assert!(
        reply[0].starts_with("500 request too big: 14 bytes"),
        "{reply:?}"
    );
    assert_eq!(reply.len(), 1);
    assert!(rig.m.store.is_empty());
    assert_eq!(rig.m.report().requests, 0);
    assert!(opened(&rig.tick(rig.at(1))).is_empty());
}

/// Under the free-space reserve every new request is refused with the reason, the log
/// says so once, and once when there is room again (here: the reserve lowered).
#[test]
fn requests_are_refused_while_the_disk_is_under_its_reserve() {
    let mut rig = titanic("reserve", |c| {
        c.limits.min_free = u64::MAX;
        c.retry_interval = ms(100);
    });
    rig.start(rig.t0);
    for at in [1, 2] {
        let reply = tsp(&mut rig, 0, &["echo", "x"], at).unwrap();
        assert!(reply[0].starts_with("500 disk full: "), "{reply:?}");
        assert!(reply[0].contains("--min-free"), "{reply:?}");
    }
    assert!(rig.m.store.is_empty());
    let said = |rig: &Rig<Titanic>, what: &str| {
        rig.events
            .iter()
            .filter(|e| format!("{e:?}").contains(what))
            .count()
    };
    assert_eq!(said(&rig, "disk full: "), 3, "said once, plus two refusals");
    assert_eq!(said(&rig, "has room again"), 0);
    // The machine keeps looking while the disk is full.
    assert!(rig.m.next_deadline().is_some_and(|d| d <= rig.at(102)));
    rig.m.disk = Disk::new(0);
    rig.m.disk.note(None, true);
    rig.m.disk.schedule(rig.at(102));
    rig.tick(rig.at(102));
    assert_eq!(said(&rig, "has room again"), 1);
    let reply = tsp(&mut rig, 0, &["echo", "x"], 103).unwrap();
    assert_eq!(reply[0], "200", "{reply:?}");
    rig.tick(rig.at(203));
    assert_eq!(said(&rig, "has room again"), 1);
}

#[test]
fn a_service_without_a_worker_or_a_reply_is_retried_after_the_retry_interval() {
    // A broker that heartbeats less often than this test looks.
    let mut rig = titanic("retry", |c| c.heartbeat.interval = Duration::from_secs(60));
    rig.start(rig.t0);
    let uuid = tsp(&mut rig, 0, &["echo", "x"], 0).unwrap()[1].clone();
    rig.tick(rig.at(0));
    // mmi.service 404: the lane ends, the service rests for the retry interval.
    let out = rig.message(LANES, to_lane("mmi.service", &["404"]), rig.at(10));
    assert_eq!(out, [Output::Close(LANES)]);
    assert!(opened(&rig.tick(rig.at(10))).is_empty());
    assert_eq!(rig.m.next_deadline().map(|d| d <= rig.at(1010)), Some(true));
    assert!(opened(&rig.tick(rig.at(1009))).is_empty());
    let out = rig.tick(rig.at(1010));
    assert_eq!(opened(&out).len(), 1, "a fresh socket for the next attempt");
    // This time the service is there but never answers: timed out after 500 ms.
    rig.message(LANES, to_lane("mmi.service", &["200"]), rig.at(1020));
    rig.tick(rig.at(1020));
    assert!(rig
        .tick(rig.at(1519))
        .iter()
        .all(|o| !matches!(o, Output::Close(_))));
    let out = rig.tick(rig.at(1520));
    assert!(out.contains(&Output::Close(LANES)));
    assert!(rig.logged("no reply in 500 ms; retrying later"));
    assert!(opened(&rig.tick(rig.at(2519))).is_empty());
    let out = rig.tick(rig.at(2520));
    assert_eq!(
        frames(&sent_on(&out, LANES)[0]),
        ["MDPC01", "mmi.service", "echo"]
    );
    rig.message(LANES, to_lane("mmi.service", &["200"]), rig.at(2530));
    rig.tick(rig.at(2530));
    rig.message(LANES, to_lane("echo", &["X"]), rig.at(2540));
    assert_eq!(tsp(&mut rig, 1, &[&uuid], 2541).unwrap(), ["200", "X"]);
    // A malformed answer (another service's) is counted and retried later.
    let uuid = tsp(&mut rig, 0, &["echo", "y"], 2550).unwrap()[1].clone();
    rig.tick(rig.at(2550));
    let out = rig.message(LANES, to_lane("other", &["200"]), rig.at(2560));
    assert_eq!(out, [Output::Close(LANES)]);
    assert_eq!(rig.m.report().invalid, 1);
    assert!(opened(&rig.tick(rig.at(3559))).is_empty());
    assert_eq!(opened(&rig.tick(rig.at(3560))).len(), 1);
    assert_eq!(tsp(&mut rig, 1, &[&uuid], 3561).unwrap(), ["300"]);
}

#[test]
fn one_lane_per_service_concurrent_across_services_and_mmi_targets_skip_the_check() {
    let mut rig = titanic("lanes", |_| {});
    rig.start(rig.t0);
    for (service, body) in [("a", "1"), ("a", "2"), ("b", "3"), ("mmi.service", "a")] {
        assert_eq!(tsp(&mut rig, 0, &[service, body], 0).unwrap()[0], "200");
    }
    let out = rig.tick(rig.at(0));
    let slots: Vec<Slot> = opened(&out).iter().map(|s| s.slot).collect();
    assert_eq!(slots, [LANES, LANES + 1, LANES + 2]);
    assert_eq!(
        frames(&sent_on(&out, LANES)[0]),
        ["MDPC01", "mmi.service", "a"]
    );
    assert_eq!(
        frames(&sent_on(&out, LANES + 1)[0]),
        ["MDPC01", "mmi.service", "b"]
    );
    assert_eq!(
        frames(&sent_on(&out, LANES + 2)[0]),
        ["MDPC01", "mmi.service", "a"]
    );
    // The mmi.service target's reply is stored; the lane is free again.
    rig.message(LANES + 2, to_lane("mmi.service", &["200"]), rig.at(5));
    rig.tick(rig.at(5));
    assert_eq!(rig.m.report().replied, 1);
    // a's first request answered: its second goes out on a fresh socket in the freed slot.
    rig.message(LANES, to_lane("mmi.service", &["200"]), rig.at(10));
    rig.tick(rig.at(10));
    rig.message(LANES, to_lane("a", &["one"]), rig.at(11));
    let out = rig.tick(rig.at(11));
    assert_eq!(
        opened(&out).iter().map(|s| s.slot).collect::<Vec<_>>(),
        [LANES]
    );
    assert_eq!(
        frames(&sent_on(&out, LANES)[0]),
        ["MDPC01", "mmi.service", "a"]
    );
    assert_eq!(rig.m.report().replied, 2);
}

#[test]
fn pending_requests_of_an_earlier_run_are_dispatched_at_start() {
    let dir = temp_dir("restart");
    let uuid = {
        let mut store = Store::open(&dir).unwrap();
        let uuid = Uuid::random();
        store.put_request(uuid, "echo", &msg(&["again"])).unwrap();
        uuid
    };
    let mut rig = titanic_with(config(&dir));
    rig.start(rig.t0);
    assert!(rig.logged("1 stored, 1 pending"));
    let out = rig.tick(rig.at(0));
    assert_eq!(
        frames(&sent_on(&out, LANES)[0]),
        ["MDPC01", "mmi.service", "echo"]
    );
    rig.message(LANES, to_lane("mmi.service", &["200"]), rig.at(1));
    rig.tick(rig.at(1));
    rig.message(LANES, to_lane("echo", &["again"]), rig.at(2));
    assert_eq!(
        tsp(&mut rig, 1, &[&uuid.to_string()], 3).unwrap(),
        ["200", "again"]
    );
}

#[test]
fn workers_heartbeat_and_reconnect_with_back_off_on_a_fresh_identity() {
    let mut rig = titanic("heartbeat", |_| {});
    rig.start(rig.t0);
    assert!(rig.tick(rig.at(99)).is_empty());
    // Every worker owes a heartbeat each interval: ["", "MDPW01", 0x04].
    let out = rig.tick(rig.at(100));
    for slot in 0..3 {
        assert_eq!(
            raw(&sent_on(&out, slot)[0]),
            [b"".to_vec(), b"MDPW01".to_vec(), vec![4]]
        );
    }
    // The broker keeps worker 1 alive; 0 and 2 hear nothing for 300 ms.
    rig.message(1, heartbeat(), rig.at(250));
    let out = rig.tick(rig.at(300));
    assert!(out.contains(&Output::Close(0)) && out.contains(&Output::Close(2)));
    assert!(!out.contains(&Output::Close(1)));
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerLost { delay_ms: 50, .. })));
    // Reopened after the 50 ms back-off, with a new identity and READY.
    assert_eq!(rig.m.next_deadline(), Some(rig.at(350)));
    let out = rig.tick(rig.at(350));
    let specs = opened(&out);
    assert_eq!(specs.iter().map(|s| s.slot).collect::<Vec<_>>(), [0, 2]);
    let id = String::from_utf8(specs[0].identity.clone().unwrap()).unwrap();
    assert!(
        id.starts_with(&format!("titanic{}-request-2-", std::process::id())),
        "{id}"
    );
    assert_eq!(frames(&sent_on(&out, 0)[0])[3], "titanic.request");
    assert_eq!(rig.m.report().reconnects, 2);
    // Silent again: the next delay doubles; a message resets the back-off.
    rig.tick(rig.at(650));
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerLost { delay_ms: 100, .. })));
    rig.tick(rig.at(750));
    rig.message(0, heartbeat(), rig.at(760));
    // DISCONNECT: reconnect at once, back-off reset to 50 ms.
    let out = rig.message(0, from_broker(WorkerCommand::Disconnect), rig.at(770));
    assert_eq!(out, [Output::Close(0)]);
    assert!(rig.logged("broker sent DISCONNECT"));
    assert_eq!(opened(&rig.tick(rig.at(820))).len(), 1);
}

#[test]
fn an_overload_holds_the_reply_while_heartbeating_and_drops_a_second_request() {
    let mut rig = titanic("overload", |c| {
        c.faults = FaultPlan {
            overload_rate: 1.0,
            overload_for: ms(250),
            faults_after: 0,
            ..FaultPlan::default()
        }
    });
    rig.start(rig.t0);
    assert_eq!(tsp(&mut rig, 0, &["echo", "x"], 0), None);
    assert_eq!(rig.m.report().overloads, 1);
    // Stored already (a crash now would keep it), answered only after the stall.
    assert_eq!(rig.m.store.pending().len(), 1);
    assert_eq!(tsp(&mut rig, 0, &["echo", "y"], 10), None);
    assert_eq!(rig.m.report().invalid, 1);
    rig.message(0, heartbeat(), rig.at(150));
    let out = rig.tick(rig.at(150));
    assert_eq!(sent_on(&out, 0).len(), 1, "a heartbeat through the stall");
    assert!(replies(&out, 0).is_empty());
    let out = rig.tick(rig.at(250));
    assert_eq!(replies(&out, 0)[0][0], "200");
    assert_eq!(rig.m.store.pending().len(), 1);
}

#[test]
fn a_freeze_stops_the_request_worker_reading_and_heartbeating_then_serves_the_request() {
    let mut rig = titanic("freeze", |c| {
        c.faults = FaultPlan {
            freeze_rate: 1.0,
            freeze_for: ms(400),
            faults_after: 0,
            ..FaultPlan::default()
        }
    });
    rig.start(rig.t0);
    assert_eq!(tsp(&mut rig, 0, &["echo", "x"], 0), None);
    assert_eq!(rig.m.report().freezes, 1);
    assert!(
        rig.m.store.is_empty(),
        "frozen before the request is stored"
    );
    assert!(!rig.m.wants(0) && rig.m.wants(1) && rig.m.wants(2));
    // The other workers keep heartbeating; the frozen one neither beats nor expires.
    rig.message(1, heartbeat(), rig.at(200));
    rig.message(2, heartbeat(), rig.at(200));
    let out = rig.tick(rig.at(300));
    assert!(sent_on(&out, 0).is_empty());
    assert!(!out.contains(&Output::Close(0)));
    assert_eq!(sent_on(&out, 1).len(), 1);
    let out = rig.tick(rig.at(400));
    assert_eq!(replies(&out, 0)[0][0], "200");
    assert_eq!(rig.m.store.pending().len(), 1);
    assert!(rig.m.wants(0));
}

/// The synchronous Majordomo client ([`super::mdp_client`]) on its own, with nobody listening.
mod client_tests {
    use super::*;
    use crate::error::Error;
    use std::time::Duration;

    /// A port nobody listens on: every attempt times out.
    const NOBODY: &str = "tcp://127.0.0.1:1";

    fn body() -> Message {
        Message::from_frames([b"hi".to_vec()])
    }

    #[test]
    fn a_malformed_endpoint_is_refused_at_connect() {
        assert!(matches!(
            MdpClient::connect("localhost:5555", Version::V1),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn every_attempt_timing_out_is_unreachable() {
        let mut client = MdpClient::connect(NOBODY, Version::V2).unwrap();
        client.set_timeout(Duration::from_millis(30));
        client.set_retries(2);
        match client.request("echo", body()) {
            Err(Error::Unreachable(why)) => assert!(why.contains("after 2 attempts"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stop_raised_elsewhere_interrupts_a_waiting_request() {
        let stop = Stop::new();
        let mut client = MdpClient::connect(NOBODY, Version::V1)
            .unwrap()
            .with_stop(stop.clone());
        client.set_timeout(Duration::from_secs(60));
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stop.request();
        });
        assert!(matches!(
            client.request("echo", body()),
            Err(Error::Interrupted)
        ));
        raiser.join().unwrap();
    }
}
