//! The worker's unit tests: the machine driven through its sockets and jobs, its MDP wire,
//! and the jobs its work threads run.

use super::*;
use crate::event::{FaultKind, Level};
use crate::faults::FaultPlan;
use crate::handler::Exec;
use crate::heartbeat::HeartbeatConfig;
use crate::reactor::Output;
// A message from its frames, by the kit's one builder; `msg` reads better beside `on`/`sent`.
use crate::testkit::frames as msg;
use crate::testkit::{handle, step, tick};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// The worker's one socket in the single-session tests.
const SOCKET: Slot = 0;

/// The request of the first session's first socket.
fn first() -> Ticket {
    Ticket {
        session: 0,
        generation: 1,
        lane: 0,
    }
}

fn on(frames: &[&[u8]]) -> Input<Done> {
    Input::Message {
        slot: SOCKET,
        msg: msg(frames),
    }
}

fn sent(frames: &[&[u8]]) -> Output<Job> {
    Output::Send {
        slot: SOCKET,
        msg: msg(frames),
    }
}

fn config(protocol: PirateProtocol, faults: FaultPlan) -> WorkerConfig {
    WorkerConfig {
        endpoint: "tcp://127.0.0.1:5556".into(),
        failover: vec!["tcp://127.0.0.1:6556".into()],
        protocol,
        heartbeat: HeartbeatConfig {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        reconnect: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(200),
        name: "t".into(),
        faults,
        seed: 7,
        ..Default::default()
    }
}

/// A started worker, its start outputs and events already taken.
fn started(protocol: PirateProtocol, faults: FaultPlan, t0: Instant) -> Worker {
    let mut w = Worker::new(&config(protocol, faults));
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    w
}

/// `Input::Done` with the reply `body` to the request under `ticket`.
fn replied(ticket: Ticket, body: &[u8]) -> Input<Done> {
    Input::Done(Done::Reply {
        ticket,
        reply: msg(&[body]),
    })
}

/// A started Paranoid worker whose every request takes `work_ms` of work.
fn slow(work_ms: u64, t0: Instant) -> Worker {
    let faults = FaultPlan {
        work: Duration::from_millis(work_ms),
        ..Default::default()
    };
    started(PirateProtocol::Paranoid, faults, t0)
}

/// A started Paranoid worker that freezes for `freeze_ms` on its first request.
fn freezing(freeze_ms: u64, t0: Instant) -> Worker {
    let faults = FaultPlan {
        freeze_rate: 1.0,
        freeze_for: Duration::from_millis(freeze_ms),
        faults_after: 0,
        ..Default::default()
    };
    started(PirateProtocol::Paranoid, faults, t0)
}

#[test]
fn a_paranoid_worker_opens_a_dealer_and_sends_ready() {
    let t0 = Instant::now();
    let mut w = Worker::new(&config(PirateProtocol::Paranoid, FaultPlan::default()));
    let spec = &w.sockets()[0];
    assert_eq!(spec.kind, SocketKind::Dealer);
    assert_eq!(spec.connect, ["tcp://127.0.0.1:5556"]);
    assert!(spec.identity.as_ref().unwrap().starts_with(b"t-1-"));
    let (outs, seen) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
    assert_eq!(outs, [sent(&[b"\x01"])]);
    assert!(matches!(&seen[0], Event::Started { role, .. } if role == "worker (paranoid)"));
    assert_eq!(w.next_deadline(), Some(t0 + 100 * MS), "first heartbeat");
}

#[test]
fn a_request_is_echoed_with_its_envelope() {
    let t0 = Instant::now();
    let mut w = started(PirateProtocol::Paranoid, FaultPlan::default(), t0);
    let (outs, seen) = handle(&mut w, on(&[b"c", b"", b"hi"]), t0);
    assert_eq!(outs, [sent(&[b"c", b"", b"hi"])]);
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Served { cycle: 1, .. })));
    assert_eq!((w.report().requests, w.report().replied), (1, 1));
}

#[test]
fn heartbeats_go_out_every_interval_even_while_working() {
    let t0 = Instant::now();
    let exec = Handler::Exec(Exec::new("cat"));
    let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
    cfg.handler = exec.clone();
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    let (outs, _) = handle(&mut w, on(&[b"c", b"", b"x"]), t0);
    assert_eq!(
        outs,
        [Output::Start(Job::Handle {
            ticket: first(),
            handler: exec,
            body: msg(&[b"x"]),
            stream: false
        })]
    );
    assert!(tick(&mut w, t0 + 99 * MS).0.is_empty());
    assert_eq!(tick(&mut w, t0 + 100 * MS).0, [sent(&[b"\x02"])]);
    // Hearing from the queue keeps it alive past its first expiry.
    handle(&mut w, on(&[b"\x02"]), t0 + 150 * MS);
    assert_eq!(tick(&mut w, t0 + 200 * MS).0, [sent(&[b"\x02"])]);
    assert!(tick(&mut w, t0 + 300 * MS).1.is_empty(), "not lost yet");
    let reply = replied(first(), b"X");
    let (outs, _) = handle(&mut w, reply, t0 + 310 * MS);
    assert_eq!(outs, [sent(&[b"c", b"", b"X"])]);
    // The reply counts as traffic: the next heartbeat is an interval after it.
    assert!(tick(&mut w, t0 + 400 * MS).0.is_empty());
}

#[test]
fn a_silent_queue_is_lost_and_a_new_socket_opens_after_the_back_off() {
    let t0 = Instant::now();
    let mut w = started(PirateProtocol::Paranoid, FaultPlan::default(), t0);
    let first = w.identity().to_vec();
    let (outs, seen) = tick(&mut w, t0 + 300 * MS);
    assert_eq!(outs, [Output::Close(SOCKET)]);
    // Lost, and (once) the switch to the word READY for the next socket.
    assert!(matches!(
        seen[..],
        [Event::PeerLost { delay_ms: 50, .. }, Event::Log { .. }]
    ));
    assert!(!w.wants(SOCKET));
    assert_eq!(w.next_deadline(), Some(t0 + 350 * MS));
    assert!(tick(&mut w, t0 + 349 * MS).0.is_empty());
    let (outs, _) = tick(&mut w, t0 + 350 * MS);
    match &outs[..] {
        [Output::Open(spec), ready] => {
            let id = spec.identity.clone().unwrap();
            assert!(id.starts_with(b"t-2-") && id != first, "a fresh identity");
            assert_eq!(
                spec.connect,
                ["tcp://127.0.0.1:5556"],
                "PPP has no failover"
            );
            // Nothing answered 0x01: the Guide's C++ spelling is tried.
            assert_eq!(ready, &sent(&[b"READY"]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.report().reconnects, 1);
    // Lost again without hearing anything: the back-off doubles.
    let (_, seen) = tick(&mut w, t0 + 650 * MS);
    assert!(matches!(seen[..], [Event::PeerLost { delay_ms: 100, .. }]));
    tick(&mut w, t0 + 750 * MS);
    // Any message resets it.
    handle(&mut w, on(&[b"\x02"]), t0 + 760 * MS);
    let (_, seen) = tick(&mut w, t0 + 1060 * MS);
    assert!(
        matches!(seen[..], [Event::PeerLost { delay_ms: 50, .. }]),
        "{seen:?}"
    );
}

#[test]
fn a_reply_for_a_lost_socket_is_dropped() {
    let t0 = Instant::now();
    let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
    cfg.handler = Handler::Exec(Exec::new("cat"));
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    handle(&mut w, on(&[b"c", b"", b"x"]), t0);
    tick(&mut w, t0 + 300 * MS); // lost
    tick(&mut w, t0 + 350 * MS); // reopened
    let late = replied(first(), b"x");
    let (outs, _) = handle(&mut w, late, t0 + 360 * MS);
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(w.report().replied, 0);
}

#[test]
fn a_second_request_while_busy_is_served_after_the_current_and_garbage_is_dropped() {
    let t0 = Instant::now();
    let mut w = slow(250, t0);
    assert!(handle(&mut w, on(&[b"c", b"", b"1"]), t0).0.is_empty());
    // The Guide's ppqueue marks a busy worker ready on its heartbeat (trap 7) and hands
    // it another request: held, counted, not dropped.
    let (outs, seen) = handle(&mut w, on(&[b"d", b"", b"2"]), t0);
    assert!(outs.is_empty());
    assert!(
        matches!(
            seen[..],
            [Event::Log {
                level: Level::Warn,
                ..
            }]
        ),
        "{seen:?}"
    );
    assert_eq!(w.report().held_while_busy, Some(1));
    for bad in [&[b"\x01" as &[u8]][..], &[b"\x07"], &[]] {
        let (outs, seen) = handle(&mut w, on(bad), t0);
        assert!(outs.is_empty(), "{bad:?}");
        assert!(
            matches!(seen[..], [Event::Invalid { .. }]),
            "{bad:?}: {seen:?}"
        );
    }
    assert_eq!(w.report().invalid, 3);
    // The work stall is a deadline; the first request is answered, then the second
    // starts its own work time.
    assert_eq!(tick(&mut w, t0 + 250 * MS).0, [sent(&[b"c", b"", b"1"])]);
    let second = sent(&[b"d", b"", b"2"]);
    handle(&mut w, on(&[b"\x02"]), t0 + 250 * MS); // the queue is alive
    assert!(!tick(&mut w, t0 + 499 * MS).0.contains(&second));
    assert!(tick(&mut w, t0 + 500 * MS).0.contains(&second));
    assert_eq!(w.report().replied, 2);
}

#[test]
fn heartbeats_and_the_next_ready_go_out_in_the_queues_spelling() {
    let t0 = Instant::now();
    let mut w = started(PirateProtocol::Paranoid, FaultPlan::default(), t0);
    // The Guide's C++ ppqueue says "HEARTBEAT": ours follow suit.
    handle(&mut w, on(&[b"HEARTBEAT"]), t0 + 50 * MS);
    assert_eq!(w.report().invalid, 0);
    let (outs, _) = tick(&mut w, t0 + 100 * MS);
    assert_eq!(outs, [sent(&[b"HEARTBEAT"])]);
    // It goes silent (restarted, say): the new socket keeps the spelling it answered.
    tick(&mut w, t0 + 350 * MS);
    let (outs, _) = tick(&mut w, t0 + 400 * MS);
    assert_eq!(outs.last(), Some(&sent(&[b"READY"])), "{outs:?}");
    let (outs, _) = tick(&mut w, t0 + 500 * MS);
    assert_eq!(outs, [sent(&[b"HEARTBEAT"])]);
    // A queue that answers in 6/PPP's bytes (ppqueue.py takes any READY) is followed.
    handle(&mut w, on(&[b"\x02"]), t0 + 550 * MS);
    let (outs, _) = tick(&mut w, t0 + 600 * MS);
    assert_eq!(outs, [sent(&[b"\x02"])]);
    tick(&mut w, t0 + 850 * MS);
    let (outs, _) = tick(&mut w, t0 + 900 * MS);
    assert_eq!(outs.last(), Some(&sent(&[b"\x01"])), "{outs:?}");
}

/// The READY of each socket a silent queue makes the worker open, in turn.
fn readies(dialect: ReadyDialect, sockets: usize) -> (Vec<Vec<u8>>, Vec<Event>) {
    let t0 = Instant::now();
    let mut conf = config(PirateProtocol::Paranoid, FaultPlan::default());
    conf.dialect = dialect;
    let mut w = Worker::new(&conf);
    let (mut all, mut events) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
    let mut now = t0;
    // The first socket is the reactor's; the others are opened by the machine.
    while all.iter().filter(|o| matches!(o, Output::Open(_))).count() + 1 < sockets {
        now += 10 * MS;
        let (outs, seen) = tick(&mut w, now);
        all.extend(outs);
        events.extend(seen);
    }
    let readies = all
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { msg, .. } if msg.len() == 1 => Some(msg.get(0).unwrap().to_vec()),
            _ => None,
        })
        .filter(|f| f == b"\x01" || f == b"READY")
        .collect();
    (readies, events)
}

#[test]
fn auto_alternates_the_ready_spelling_on_silent_sockets_and_says_so_once() {
    let (readies, events) = readies(ReadyDialect::Auto, 4);
    assert_eq!(
        readies,
        [
            b"\x01".to_vec(),
            b"READY".to_vec(),
            b"\x01".to_vec(),
            b"READY".to_vec()
        ]
    );
    let told = events
        .iter()
        .filter(|e| format!("{e:?}").contains("as the Guide's C++ ppqueue needs"))
        .count();
    assert_eq!(told, 1, "{events:?}");
}

#[test]
fn a_pinned_dialect_never_changes_and_says_nothing() {
    for (dialect, word) in [
        (ReadyDialect::Rfc, b"\x01".to_vec()),
        (ReadyDialect::GuideCpp, b"READY".to_vec()),
    ] {
        let (readies, events) = readies(dialect, 3);
        assert_eq!(readies, vec![word; 3], "{dialect:?}");
        assert!(
            !format!("{events:?}").contains("C++ ppqueue"),
            "{dialect:?}"
        );
    }
    // Pinned to the Guide's C++ words, heartbeats are words from the start.
    let t0 = Instant::now();
    let mut conf = config(PirateProtocol::Paranoid, FaultPlan::default());
    conf.dialect = ReadyDialect::GuideCpp;
    let mut w = Worker::new(&conf);
    step(&mut w, |w, out, ev| w.start(t0, out, ev));
    let (outs, _) = tick(&mut w, t0 + 100 * MS);
    assert_eq!(outs, [sent(&[b"HEARTBEAT"])]);
    // A Simple worker pinned to the words says READY as one.
    conf.protocol = PirateProtocol::Simple;
    let mut w = Worker::new(&conf);
    let (outs, _) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
    assert_eq!(outs.last(), Some(&sent(&[b"READY"])), "{outs:?}");
    // A 6/PPP heartbeat is no request: the READY owed for it is the pinned word too.
    handle(&mut w, on(&[b"\x02"]), t0);
    let (outs, _) = tick(&mut w, t0);
    assert_eq!(outs, [sent(&[b"READY"])]);
}

#[test]
fn held_requests_are_bounded_and_lost_with_their_socket() {
    let t0 = Instant::now();
    let mut w = slow(250, t0);
    handle(&mut w, on(&[b"c", b"", b"0"]), t0);
    for i in 1..=MAX_HELD + 1 {
        handle(&mut w, on(&[b"c", b"", i.to_string().as_bytes()]), t0);
    }
    assert_eq!(w.report().held_while_busy, Some(MAX_HELD as u64));
    assert_eq!(w.report().invalid, 1, "the one past the bound");
    // The queue goes silent: the socket, its request and the held ones are gone.
    let (outs, _) = tick(&mut w, t0 + 300 * MS);
    assert!(outs.contains(&Output::Close(SOCKET)), "{outs:?}");
    assert!(w.sessions[0].held.is_empty());
}

#[test]
fn a_freeze_stops_reads_and_heartbeats_until_it_thaws_then_the_work_starts() {
    let t0 = Instant::now();
    let mut w = freezing(250, t0);
    handle(&mut w, on(&[b"\x02"]), t0 + 90 * MS);
    let (outs, seen) = handle(&mut w, on(&[b"c", b"", b"1"]), t0 + 100 * MS);
    assert!(outs.is_empty(), "{outs:?}");
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::Fault {
            kind: FaultKind::Freeze,
            duration_ms: Some(250),
            ..
        }
    )));
    assert_eq!(w.report().freezes, 1);
    assert!(!w.wants(SOCKET), "frozen: nothing is read");
    assert_eq!(w.next_deadline(), Some(t0 + 350 * MS));
    assert!(
        tick(&mut w, t0 + 200 * MS).0.is_empty(),
        "no heartbeat while frozen"
    );
    // Thawed at 350: the queue (last heard at 90) is still alive until 390, so the work
    // runs, and its reply stands in for the heartbeat that was due.
    let (outs, _) = tick(&mut w, t0 + 350 * MS);
    assert_eq!(outs, [sent(&[b"c", b"", b"1"])]);
    assert!(w.wants(SOCKET));
}

#[test]
fn a_freeze_past_the_queues_expiry_loses_the_queue_on_thawing() {
    let t0 = Instant::now();
    let mut w = freezing(500, t0);
    handle(&mut w, on(&[b"c", b"", b"1"]), t0);
    let (outs, seen) = tick(&mut w, t0 + 500 * MS);
    assert_eq!(
        outs,
        [Output::Close(SOCKET)],
        "the request died with the socket"
    );
    assert!(matches!(seen[..], [Event::PeerLost { .. }]));
}

#[test]
fn an_overload_slows_the_work_and_a_crash_is_an_output() {
    let t0 = Instant::now();
    let mut w = started(
        PirateProtocol::Paranoid,
        FaultPlan {
            overload_rate: 1.0,
            overload_for: Duration::from_millis(200),
            faults_after: 0,
            crash_after: Some(1),
            ..Default::default()
        },
        t0,
    );
    assert!(handle(&mut w, on(&[b"c", b"", b"1"]), t0).0.is_empty());
    assert_eq!(w.report().overloads, 1);
    assert!(
        w.wants(SOCKET),
        "an overloaded worker still reads (and heartbeats)"
    );
    assert_eq!(tick(&mut w, t0 + 100 * MS).0, [sent(&[b"\x02"])]);
    assert_eq!(tick(&mut w, t0 + 200 * MS).0, [sent(&[b"c", b"", b"1"])]);
    let (outs, _) = handle(&mut w, on(&[b"c", b"", b"2"]), t0 + 210 * MS);
    assert_eq!(outs, [Output::Crash]);
    assert!(!w.wants(SOCKET));
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn a_simple_worker_uses_req_sends_no_heartbeat_and_answers_from_the_tick() {
    let t0 = Instant::now();
    let mut w = Worker::new(&config(PirateProtocol::Simple, FaultPlan::default()));
    assert_eq!(w.sockets()[0].kind, SocketKind::Req);
    let (outs, _) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
    assert_eq!(outs, [sent(&[b"\x01"])]);
    assert_eq!(w.next_deadline(), None, "no heartbeats, no expiry");
    assert!(tick(&mut w, t0 + Duration::from_secs(60)).0.is_empty());
    // REQ: nothing goes out while the reactor may still read; the reply waits for the tick.
    assert!(handle(&mut w, on(&[b"c", b"", b"1"]), t0).0.is_empty());
    assert!(!w.wants(SOCKET));
    assert_eq!(w.next_deadline(), Some(t0));
    assert_eq!(tick(&mut w, t0).0, [sent(&[b"c", b"", b"1"])]);
    assert!(w.wants(SOCKET));
    // Not a request (a Paranoid queue's heartbeat): counted, and READY again from the tick.
    let (outs, seen) = handle(&mut w, on(&[b"\x02"]), t0);
    assert!(outs.is_empty());
    assert!(matches!(seen[..], [Event::Invalid { .. }]));
    assert!(!w.wants(SOCKET));
    assert_eq!(
        w.next_deadline(),
        Some(t0),
        "the owed READY is due: tick at once"
    );
    assert_eq!(tick(&mut w, t0).0, [sent(&[b"\x01"])]);
    assert!(w.wants(SOCKET));
    assert_eq!(w.report().invalid, 1);
}

#[test]
fn an_mdp_worker_registers_heartbeats_and_replies_in_its_version() {
    let t0 = Instant::now();
    let mut w = Worker::new(&config(
        PirateProtocol::Majordomo(Version::V1),
        FaultPlan::default(),
    ));
    let (outs, seen) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
    assert_eq!(outs, [sent(&[b"", b"MDPW01", b"\x01", b"echo"])]);
    assert!(matches!(&seen[0], Event::Started { role, .. } if role == "worker (mdp echo)"));
    let request = on(&[b"", b"MDPW01", b"\x02", b"c", b"", b"hi"]);
    assert_eq!(
        handle(&mut w, request, t0).0,
        [sent(&[b"", b"MDPW01", b"\x03", b"c", b"", b"hi"])]
    );
    assert_eq!(
        tick(&mut w, t0 + 100 * MS).0,
        [sent(&[b"", b"MDPW01", b"\x04"])]
    );
}

#[test]
fn disconnect_from_the_broker_reconnects_to_the_next_failover_endpoint() {
    let t0 = Instant::now();
    let mut w = started(
        PirateProtocol::Majordomo(Version::V2),
        FaultPlan::default(),
        t0,
    );
    // The broker took the READY (a HEARTBEAT), then says DISCONNECT.
    handle(&mut w, on(&[b"MDPW02", b"\x05"]), t0);
    let (outs, seen) = handle(&mut w, on(&[b"MDPW02", b"\x06"]), t0);
    assert_eq!(outs, [Output::Close(SOCKET)]);
    // The broker is there and asked for a fresh session: no back-off, as the Guide's
    // workers do.
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::PeerLost { reason, delay_ms: 0, peer } if peer == "broker" && reason == "disconnect"
    )));
    assert_eq!(w.next_deadline(), Some(t0));
    let (outs, _) = tick(&mut w, t0);
    match &outs[..] {
        [Output::Open(spec), ready] => {
            assert_eq!(spec.connect, ["tcp://127.0.0.1:6556"]);
            assert_eq!(ready, &sent(&[b"MDPW02", b"\x01", b"echo"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mdp_0_2_streams_parts_then_the_final() {
    let t0 = Instant::now();
    let mut cfg = config(PirateProtocol::Majordomo(Version::V2), FaultPlan::default());
    cfg.handler = Handler::Exec(Exec::new("printf 'a\\nb\\n'"));
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    let (outs, _) = handle(&mut w, on(&[b"MDPW02", b"\x02", b"c", b"", b"x"]), t0);
    let job = match outs.into_iter().next() {
        Some(Output::Start(job @ Job::Handle { stream: true, .. })) => job,
        other => panic!("{other:?}"),
    };
    let (outs, _) = handle(&mut w, Input::Done(perform(job)), t0);
    let next = match &outs[..] {
        [partial, Output::Start(_)] => {
            assert_eq!(partial, &sent(&[b"MDPW02", b"\x03", b"c", b"", b"a"]));
            outs.into_iter().nth(1).unwrap()
        }
        other => panic!("{other:?}"),
    };
    let Output::Start(next) = next else {
        unreachable!()
    };
    let (outs, _) = handle(&mut w, Input::Done(perform(next)), t0);
    assert_eq!(outs, [sent(&[b"MDPW02", b"\x04", b"c", b"", b"b"])]);
    assert_eq!(w.report().replied, 1);
}

// --concurrency N: N sessions from one process.

fn on_slot(slot: Slot, frames: &[&[u8]]) -> Input<Done> {
    Input::Message {
        slot,
        msg: msg(frames),
    }
}

fn sent_on(slot: Slot, frames: &[&[u8]]) -> Output<Job> {
    Output::Send {
        slot,
        msg: msg(frames),
    }
}

/// A started worker of `n` sessions running `handler`, its start outputs taken. A
/// Majordomo one has been told by its broker that no credit is granted (a standard
/// HEARTBEAT first), so it opened the other sessions.
fn sessions(protocol: PirateProtocol, n: usize, handler: Handler, t0: Instant) -> Worker {
    let mut cfg = config(protocol, FaultPlan::default());
    cfg.concurrency = n;
    cfg.handler = handler;
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    no_credit(&mut w, t0);
    w
}

/// A Majordomo worker asking for credit hears a standard HEARTBEAT first: the broker
/// ignored the credit frame.
fn no_credit(w: &mut Worker, t0: Instant) {
    if matches!(w.config.protocol, PirateProtocol::Majordomo(_)) && w.config.concurrency > 1 {
        handle(w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), t0);
    }
}

const MDP: PirateProtocol = PirateProtocol::Majordomo(Version::V1);

fn mdp_request(client: &[u8], body: &[u8]) -> Vec<Vec<u8>> {
    [b"" as &[u8], b"MDPW01", b"\x02", client, b"", body]
        .iter()
        .map(|f| f.to_vec())
        .collect()
}

fn frames(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

fn ticket(session: usize, generation: u64) -> Ticket {
    Ticket {
        session,
        generation,
        lane: 0,
    }
}

#[test]
fn n_sessions_each_open_their_own_socket_and_send_ready() {
    let t0 = Instant::now();
    let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
    cfg.concurrency = 3;
    let w = Worker::new(&cfg);
    let specs = w.sockets();
    assert_eq!(
        specs.iter().map(|s| s.slot).collect::<Vec<_>>(),
        [0, 1, 2],
        "one slot per session"
    );
    for (i, spec) in specs.iter().enumerate() {
        assert_eq!(spec.kind, SocketKind::Dealer);
        let id = spec.identity.as_ref().unwrap();
        assert!(id.starts_with(format!("t-{}-", i + 1).as_bytes()), "{id:?}");
    }
    // Majordomo: one connection asking for credit 3, and when the broker's first word
    // is a standard HEARTBEAT (it ignored the frame), the other two sessions open.
    let mut cfg = config(MDP, FaultPlan::default());
    cfg.concurrency = 3;
    let mut w = Worker::new(&cfg);
    assert_eq!(w.sockets().len(), 1, "one connection first");
    let (outs, seen) = step(&mut w, |w, out, ev| w.start(t0, out, ev));
    let ready: &[&[u8]] = &[b"", b"MDPW01", b"\x01", b"echo"];
    let asking: &[&[u8]] = &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"];
    assert_eq!(outs, [sent_on(0, asking)]);
    let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), t0);
    assert_eq!(outs.len(), 4, "{outs:?}");
    for (i, slot) in [1, 2].into_iter().enumerate() {
        let Output::Open(spec) = &outs[2 * i] else {
            panic!("{outs:?}");
        };
        assert_eq!((spec.slot, spec.kind), (slot, SocketKind::Dealer));
        assert_eq!(spec.connect, ["tcp://127.0.0.1:5556"]);
        let id = spec.identity.as_ref().unwrap();
        assert!(
            id.starts_with(format!("t-{}-", slot + 1).as_bytes()),
            "{id:?}"
        );
        assert_eq!(outs[2 * i + 1], sent_on(slot, ready), "a standard READY");
    }
    let ids = w.identities();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, Event::Started { .. }))
            .count(),
        1,
        "one process, one started event"
    );
    // Every session heartbeats its own socket.
    let (outs, _) = tick(&mut w, t0 + 100 * MS);
    let beat: &[u8] = b"\x04";
    assert_eq!(
        outs,
        [0, 1, 2].map(|slot| sent_on(slot, &[b"", b"MDPW01", beat]))
    );
}

#[test]
fn two_requests_run_in_parallel_on_two_sessions_and_each_reply_goes_home() {
    let t0 = Instant::now();
    let exec = Handler::Exec(Exec::new("cat"));
    let mut w = sessions(MDP, 2, exec.clone(), t0);
    let a = mdp_request(b"ca", b"1");
    let b = mdp_request(b"cb", b"2");
    let (outs, _) = handle(&mut w, on_slot(0, &frames(&a)), t0);
    assert_eq!(
        outs,
        [Output::Start(Job::Handle {
            ticket: ticket(0, 1),
            handler: exec.clone(),
            body: msg(&[b"1"]),
            stream: false
        })]
    );
    assert!(w.wants(1), "a busy session does not stop the other reading");
    let (outs, _) = handle(&mut w, on_slot(1, &frames(&b)), t0 + MS);
    assert_eq!(
        outs,
        [Output::Start(Job::Handle {
            ticket: ticket(1, 2),
            handler: exec,
            body: msg(&[b"2"]),
            stream: false
        })]
    );
    assert_eq!(w.report().in_flight_max, Some(2), "both at once");
    // The second finishes first: each reply goes out on its own session's socket.
    let done = |session, generation, body: &[u8]| replied(ticket(session, generation), body);
    let (outs, _) = handle(&mut w, done(1, 2, b"2"), t0 + 2 * MS);
    assert_eq!(
        outs,
        [sent_on(1, &[b"", b"MDPW01", b"\x03", b"cb", b"", b"2"])]
    );
    let (outs, _) = handle(&mut w, done(0, 1, b"1"), t0 + 3 * MS);
    assert_eq!(
        outs,
        [sent_on(0, &[b"", b"MDPW01", b"\x03", b"ca", b"", b"1"])]
    );
    assert_eq!((w.report().requests, w.report().replied), (2, 2));
    // A session takes its next request once its reply is out.
    let (outs, _) = handle(&mut w, on_slot(1, &frames(&b)), t0 + 4 * MS);
    assert!(matches!(outs[..], [Output::Start(_)]), "{outs:?}");
    assert_eq!(w.report().in_flight_max, Some(2));
}

#[test]
fn a_second_request_on_a_busy_session_waits_for_it_even_while_others_are_idle() {
    let t0 = Instant::now();
    let mut w = sessions(MDP, 2, Handler::Exec(Exec::new("cat")), t0);
    let a = mdp_request(b"ca", b"1");
    handle(&mut w, on_slot(0, &frames(&a)), t0);
    let (outs, seen) = handle(&mut w, on_slot(0, &frames(&a)), t0);
    assert!(outs.is_empty(), "{outs:?}");
    assert!(matches!(
        seen[..],
        [Event::Log {
            level: Level::Warn,
            ..
        }]
    ));
    assert_eq!(
        (
            w.report().requests,
            w.report().held_while_busy,
            w.report().invalid
        ),
        (1, Some(1), 0),
        "held on its own session, not moved to the idle one"
    );
    assert_eq!(w.sessions[1].busy(), 0);
}

#[test]
fn one_sessions_silent_broker_reconnects_only_that_session() {
    let t0 = Instant::now();
    let mut w = sessions(MDP, 2, Handler::Echo, t0);
    let kept = w.identities()[1].to_vec();
    let beat: &[&[u8]] = &[b"", b"MDPW01", b"\x04"];
    // The broker keeps talking on session 1 only.
    handle(&mut w, on_slot(1, beat), t0 + 150 * MS);
    handle(&mut w, on_slot(1, beat), t0 + 250 * MS);
    let (outs, seen) = tick(&mut w, t0 + 300 * MS);
    assert!(outs.contains(&Output::Close(0)), "{outs:?}");
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::Close(1) | Output::Open(_))),
        "{outs:?}"
    );
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::PeerLost { delay_ms: 50, .. })));
    assert!(!w.wants(0) && w.wants(1));
    // Session 1 serves on while session 0 waits out its back-off.
    let (outs, _) = handle(
        &mut w,
        on_slot(1, &frames(&mdp_request(b"c", b"x"))),
        t0 + 320 * MS,
    );
    assert_eq!(
        outs,
        [sent_on(1, &[b"", b"MDPW01", b"\x03", b"c", b"", b"x"])]
    );
    let (outs, _) = tick(&mut w, t0 + 350 * MS);
    match &outs[..] {
        [Output::Open(spec), ready] => {
            assert_eq!(spec.slot, 0);
            assert!(
                spec.identity.as_ref().unwrap().starts_with(b"t-3-"),
                "the process's third socket"
            );
            assert_eq!(
                spec.connect,
                ["tcp://127.0.0.1:6556"],
                "that session's next failover endpoint"
            );
            assert_eq!(ready, &sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo"]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.identities()[1], &kept[..], "session 1 kept its socket");
    assert_eq!(w.report().reconnects, 1);
}

#[test]
fn a_busy_timeout_disconnect_loses_only_that_sessions_request() {
    // The broker's --busy-timeout: it sends DISCONNECT to the worker that held one
    // request too long. That session's request is lost (its client retries); the other
    // session's request is still answered.
    let t0 = Instant::now();
    let mut w = sessions(MDP, 2, Handler::Exec(Exec::new("cat")), t0);
    handle(&mut w, on_slot(0, &frames(&mdp_request(b"ca", b"1"))), t0);
    handle(&mut w, on_slot(1, &frames(&mdp_request(b"cb", b"2"))), t0);
    let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0 + 50 * MS);
    assert_eq!(outs, [Output::Close(0)]);
    let late = replied(ticket(0, 1), b"1");
    assert!(handle(&mut w, late, t0 + 60 * MS).0.is_empty());
    let on_time = replied(ticket(1, 2), b"2");
    assert_eq!(
        handle(&mut w, on_time, t0 + 70 * MS).0,
        [sent_on(1, &[b"", b"MDPW01", b"\x03", b"cb", b"", b"2"])]
    );
    assert_eq!((w.report().requests, w.report().replied), (2, 1));
    // Session 0 registers again with a fresh socket; a reply for its old one, even one
    // arriving after the new socket took a request, is still dropped.
    let (outs, _) = tick(&mut w, t0 + 100 * MS);
    assert!(
        matches!(&outs[..], [Output::Open(spec), _] if spec.slot == 0),
        "{outs:?}"
    );
    handle(
        &mut w,
        on_slot(0, &frames(&mdp_request(b"cc", b"3"))),
        t0 + 110 * MS,
    );
    let stale = replied(ticket(0, 1), b"1");
    assert!(handle(&mut w, stale, t0 + 120 * MS).0.is_empty());
    let fresh = replied(ticket(0, 3), b"3");
    assert_eq!(
        handle(&mut w, fresh, t0 + 130 * MS).0,
        [sent_on(0, &[b"", b"MDPW01", b"\x03", b"cc", b"", b"3"])]
    );
}

#[test]
fn a_crash_on_one_sessions_request_kills_every_session() {
    let t0 = Instant::now();
    let mut cfg = config(
        MDP,
        FaultPlan {
            crash_after: Some(1),
            ..Default::default()
        },
    );
    cfg.concurrency = 2;
    cfg.handler = Handler::Exec(Exec::new("cat"));
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    no_credit(&mut w, t0);
    handle(&mut w, on_slot(0, &frames(&mdp_request(b"ca", b"1"))), t0);
    let (outs, _) = handle(&mut w, on_slot(1, &frames(&mdp_request(b"cb", b"2"))), t0);
    assert_eq!(outs, [Output::Crash]);
    assert!(!w.wants(0) && !w.wants(1));
    assert_eq!(w.next_deadline(), None);
    assert!(tick(&mut w, t0 + 100 * MS).0.is_empty());
}

#[test]
fn a_freeze_on_one_sessions_request_stops_every_session() {
    let t0 = Instant::now();
    let mut cfg = config(
        MDP,
        FaultPlan {
            freeze_rate: 1.0,
            freeze_for: Duration::from_millis(150),
            faults_after: 0,
            ..Default::default()
        },
    );
    cfg.concurrency = 2;
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    no_credit(&mut w, t0);
    let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(b"ca", b"1"))), t0);
    assert!(outs.is_empty(), "{outs:?}");
    assert!(!w.wants(0) && !w.wants(1), "a hung process reads nothing");
    assert!(tick(&mut w, t0 + 100 * MS).0.is_empty(), "nor heartbeats");
    // Thawed: the request is answered and both sessions heartbeat and read again.
    let (outs, _) = tick(&mut w, t0 + 150 * MS);
    assert_eq!(
        outs,
        [
            sent_on(0, &[b"", b"MDPW01", b"\x03", b"ca", b"", b"1"]),
            sent_on(1, &[b"", b"MDPW01", b"\x04"]),
        ]
    );
    assert!(w.wants(0) && w.wants(1));
}

#[test]
fn simple_sessions_are_req_sockets_that_each_alternate_on_their_own() {
    let t0 = Instant::now();
    let mut w = sessions(PirateProtocol::Simple, 2, Handler::Echo, t0);
    assert!(w.sockets().iter().all(|s| s.kind == SocketKind::Req));
    assert!(handle(&mut w, on_slot(1, &[b"c", b"", b"1"]), t0)
        .0
        .is_empty());
    assert!(!w.wants(1) && w.wants(0), "only the busy REQ socket waits");
    assert_eq!(tick(&mut w, t0).0, [sent_on(1, &[b"c", b"", b"1"])]);
    assert!(w.wants(1));
}

#[test]
fn two_sessions_stream_mdp_0_2_parts_side_by_side_each_to_its_own_client() {
    let t0 = Instant::now();
    let exec = Handler::Exec(Exec::new("printf 'a\\nb\\n'"));
    let mut w = sessions(PirateProtocol::Majordomo(Version::V2), 2, exec, t0);
    let mut jobs = Vec::new();
    for (slot, client) in [(0, b"ca"), (1, b"cb")] {
        let request: &[&[u8]] = &[b"MDPW02", b"\x02", client, b"", b"x"];
        match handle(&mut w, on_slot(slot, request), t0).0.pop() {
            Some(Output::Start(job)) => jobs.push(job),
            other => panic!("{other:?}"),
        }
    }
    // Both commands run before either reply goes out: their parts interleave.
    let done: Vec<Done> = jobs.into_iter().map(perform).collect();
    let mut nexts = Vec::new();
    for (d, (slot, client)) in done.into_iter().zip([(0, b"ca"), (1, b"cb")]) {
        let (mut outs, _) = handle(&mut w, Input::Done(d), t0);
        match outs.pop() {
            Some(Output::Start(next @ Job::Next { ticket: t, .. })) => {
                assert_eq!(t.session, slot);
                nexts.push(next);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outs,
            [sent_on(slot, &[b"MDPW02", b"\x03", client, b"", b"a"])]
        );
    }
    for (next, (slot, client)) in nexts.into_iter().zip([(0, b"ca"), (1, b"cb")]).rev() {
        let (outs, _) = handle(&mut w, Input::Done(perform(next)), t0);
        assert_eq!(
            outs,
            [sent_on(slot, &[b"MDPW02", b"\x04", client, b"", b"b"])]
        );
    }
    assert_eq!((w.report().replied, w.report().in_flight_max), (2, Some(2)));
}

#[test]
fn work_time_runs_side_by_side_on_every_session() {
    // --work 100ms: two requests 10 ms apart are answered 100 ms after each, not one
    // after the other.
    let t0 = Instant::now();
    let mut cfg = config(
        PirateProtocol::Paranoid,
        FaultPlan {
            work: Duration::from_millis(100),
            ..Default::default()
        },
    );
    cfg.concurrency = 2;
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    assert!(handle(&mut w, on_slot(0, &[b"a", b"", b"1"]), t0)
        .0
        .is_empty());
    let (outs, _) = handle(&mut w, on_slot(1, &[b"b", b"", b"2"]), t0 + 10 * MS);
    assert!(outs.is_empty());
    assert_eq!(w.next_deadline(), Some(t0 + 100 * MS));
    let (outs, _) = tick(&mut w, t0 + 100 * MS);
    assert_eq!(
        outs,
        [sent_on(0, &[b"a", b"", b"1"]), sent_on(1, &[b"\x02"])]
    );
    assert_eq!(w.next_deadline(), Some(t0 + 110 * MS));
    let (outs, _) = tick(&mut w, t0 + 110 * MS);
    assert_eq!(outs, [sent_on(1, &[b"b", b"", b"2"])]);
    assert_eq!(w.report().in_flight_max, Some(2));
}

#[test]
fn the_concurrency_is_bounded() {
    let mut cfg = config(PirateProtocol::Paranoid, FaultPlan::default());
    cfg.concurrency = 0;
    assert_eq!(Worker::new(&cfg).sockets().len(), 1);
    cfg.concurrency = MAX_CONCURRENCY + 1;
    assert_eq!(Worker::new(&cfg).sockets().len(), MAX_CONCURRENCY);
    let mut cfg = config(MDP, FaultPlan::default());
    cfg.concurrency = MAX_CONCURRENCY + 1;
    let w = Worker::new(&cfg);
    assert_eq!(w.sessions[0].offer, Some(MAX_CONCURRENCY as u32));
    cfg.concurrency = 1;
    assert_eq!(Worker::new(&cfg).sessions[0].offer, None, "one: standard");
}

// --concurrency N against a broker that grants credit: one connection, N lanes.

/// A started Majordomo worker with `--concurrency asked`: its READY asked for that much
/// credit, and nothing has answered yet.
fn asking(asked: usize, handler: Handler, t0: Instant) -> Worker {
    let mut cfg = config(MDP, FaultPlan::default());
    cfg.concurrency = asked;
    cfg.handler = handler;
    let mut w = Worker::new(&cfg);
    w.start(t0, &mut Outbox::default(), &mut Events::discard());
    w
}

/// A started Majordomo worker asking for `asked` credit, granted `granted`.
fn granted(asked: usize, granted: u32, handler: Handler, t0: Instant) -> Worker {
    let mut w = asking(asked, handler, t0);
    let grant = format!("credit={granted}");
    let (outs, _) = handle(
        &mut w,
        on_slot(0, &[b"", b"MDPW01", b"\x04", grant.as_bytes()]),
        t0,
    );
    assert!(
        outs.is_empty(),
        "a grant is answered with nothing: {outs:?}"
    );
    w
}

fn lane_ticket(lane: usize) -> Ticket {
    Ticket {
        session: 0,
        generation: 1,
        lane,
    }
}

#[test]
fn a_granted_connection_serves_n_at_once_and_each_reply_carries_its_own_handle() {
    let t0 = Instant::now();
    let exec = Handler::Exec(Exec::new("cat"));
    let mut w = granted(3, 3, exec.clone(), t0);
    assert_eq!(w.sockets().len(), 1, "no more sessions");
    for (lane, client) in [b"h0", b"h1", b"h2"].into_iter().enumerate() {
        let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(client, b"x"))), t0);
        assert_eq!(
            outs,
            [Output::Start(Job::Handle {
                ticket: lane_ticket(lane),
                handler: exec.clone(),
                body: msg(&[b"x"]),
                stream: false
            })]
        );
    }
    assert_eq!(w.report().in_flight_max, Some(3));
    assert!(
        w.wants(0),
        "a full connection still reads (heartbeats, DISCONNECT)"
    );
    // A fourth is more than the credit: held, served when a lane frees.
    let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(b"h3", b"y"))), t0);
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(w.report().held_while_busy, Some(1));
    // Lane 1 finishes first: its reply goes back with its handle, and the held request
    // takes lane 1.
    let (outs, _) = handle(&mut w, replied(lane_ticket(1), b"one"), t0 + MS);
    assert_eq!(
        outs,
        [
            sent_on(0, &[b"", b"MDPW01", b"\x03", b"h1", b"", b"one"]),
            Output::Start(Job::Handle {
                ticket: lane_ticket(1),
                handler: exec,
                body: msg(&[b"y"]),
                stream: false
            })
        ]
    );
    // A reply for a lane whose request is gone (answered already) goes nowhere.
    let (outs, _) = handle(
        &mut w,
        Input::Done(Done::Reply {
            ticket: Ticket {
                generation: 9,
                ..lane_ticket(0)
            },
            reply: msg(&[b"stale"]),
        }),
        t0 + MS,
    );
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!((w.report().requests, w.report().replied), (4, 1));
}

#[test]
fn an_echo_worker_with_credit_answers_every_request_at_once() {
    let t0 = Instant::now();
    let mut w = granted(4, 4, Handler::Echo, t0);
    for client in [b"a", b"b", b"c", b"d", b"e"] {
        let (outs, _) = handle(&mut w, on_slot(0, &frames(&mdp_request(client, b"hi"))), t0);
        assert_eq!(
            outs,
            [sent_on(0, &[b"", b"MDPW01", b"\x03", client, b"", b"hi"])]
        );
    }
    assert_eq!(w.report().replied, 5);
}

#[test]
fn a_smaller_grant_is_the_number_of_lanes_and_a_bigger_one_is_cut_to_the_ask() {
    let t0 = Instant::now();
    let cat = || Handler::Exec(Exec::new("cat"));
    let w = granted(4, 2, cat(), t0);
    assert_eq!(w.sessions[0].lanes.len(), 2);
    assert_eq!(w.sessions.len(), 1, "no sessions for the rest");
    let w = granted(4, 1000, cat(), t0);
    assert_eq!(w.sessions[0].lanes.len(), 4);
}

#[test]
fn a_lost_granted_connection_loses_all_its_requests_and_asks_for_credit_again() {
    let t0 = Instant::now();
    let mut w = granted(3, 3, Handler::Exec(Exec::new("cat")), t0);
    handle(&mut w, on_slot(0, &frames(&mdp_request(b"h0", b"x"))), t0);
    handle(&mut w, on_slot(0, &frames(&mdp_request(b"h1", b"x"))), t0);
    let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0 + MS);
    assert_eq!(outs, [Output::Close(0)]);
    assert_eq!(w.in_flight, 0, "both requests went with the connection");
    // Their replies, computed after, go nowhere.
    for lane in [0, 1] {
        let (outs, _) = handle(&mut w, replied(lane_ticket(lane), b"late"), t0 + 2 * MS);
        assert!(outs.is_empty(), "{outs:?}");
    }
    // The new socket asks again, and holds one request until it is granted.
    let (outs, _) = tick(&mut w, t0 + 2 * MS);
    assert!(
        matches!(&outs[0], Output::Open(spec) if spec.slot == 0),
        "{outs:?}"
    );
    assert_eq!(
        outs[1],
        sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"])
    );
    assert_eq!(w.sessions[0].lanes.len(), 1);
    assert!(w.sessions[0].awaiting_grant);
}

#[test]
fn after_failing_over_to_a_broker_that_grants_no_credit_the_new_sessions_go_there_too() {
    let t0 = Instant::now();
    let mut w = asking(3, Handler::Echo, t0);
    // The primary grants credit, then sends DISCONNECT: the session reopens on the
    // failover endpoint and asks again.
    handle(
        &mut w,
        on_slot(0, &[b"", b"MDPW01", b"\x04", b"credit=3"]),
        t0,
    );
    assert_eq!(w.sessions[0].lanes.len(), 3);
    handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0);
    let (outs, _) = tick(&mut w, t0);
    assert!(
        matches!(&outs[0], Output::Open(s) if s.connect == ["tcp://127.0.0.1:6556"]),
        "{outs:?}"
    );
    assert_eq!(
        outs[1],
        sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"])
    );
    // That broker's first word is a standard HEARTBEAT: two more sessions, on it.
    let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), t0);
    let opened: Vec<&SocketSpec> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Open(spec) => Some(spec),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2, "{outs:?}");
    for spec in opened {
        assert_eq!(spec.connect, ["tcp://127.0.0.1:6556"]);
    }
    assert_eq!(w.sessions[0].lanes.len(), 1, "an ordinary session now");
}

#[test]
fn a_disconnect_in_answer_to_a_ready_with_credit_is_no_answer_to_the_credit() {
    // A broker that refuses the READY (DISCONNECT) has not said it ignores credit: the
    // next socket asks again, and no sessions open.
    let t0 = Instant::now();
    let mut w = asking(3, Handler::Echo, t0);
    let (outs, _) = handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x05"]), t0);
    assert_eq!(outs, [Output::Close(0)]);
    assert_eq!(w.sessions.len(), 1);
    // A refused READY: the next socket after the back-off (50 ms here).
    let (outs, _) = tick(&mut w, t0 + 50 * MS);
    assert_eq!(
        outs[1],
        sent_on(0, &[b"", b"MDPW01", b"\x01", b"echo", b"credit=3"])
    );
}

#[test]
fn a_grant_nobody_asked_for_is_invalid() {
    let t0 = Instant::now();
    let mut w = granted(2, 2, Handler::Echo, t0);
    let (outs, seen) = handle(
        &mut w,
        on_slot(0, &[b"", b"MDPW01", b"\x04", b"credit=9"]),
        t0,
    );
    assert!(outs.is_empty(), "{outs:?}");
    assert_eq!(w.report().invalid, 1);
    assert!(seen.iter().any(|e| matches!(e, Event::Invalid { .. })));
    assert_eq!(w.sessions[0].lanes.len(), 2, "unchanged");
    // And a worker that never asked (one at a time) counts it invalid too.
    let mut w = started(MDP, FaultPlan::default(), t0);
    handle(
        &mut w,
        on_slot(0, &[b"", b"MDPW01", b"\x04", b"credit=9"]),
        t0,
    );
    assert_eq!(w.report().invalid, 1);
    assert_eq!(w.sessions[0].lanes.len(), 1);
}

#[test]
fn a_disconnect_in_answer_to_ready_waits_out_the_back_off_instead_of_looping() {
    // A broker that refuses every READY (the Guide's C++ mdbroker refuses identities that
    // start with m, i or '.'): asking again at once spun ~400 sockets a second. Each
    // refusal waits the doubling back-off; a broker that took the READY (any other word
    // first) and then says DISCONNECT gets a new session at once, back-off reset.
    let t0 = Instant::now();
    let mut w = started(MDP, FaultPlan::default(), t0);
    let refuse = || on_slot(0, &[b"", b"MDPW01", b"\x05"]);
    let mut now = t0;
    for delay in [50, 100, 200, 200] {
        let (outs, seen) = handle(&mut w, refuse(), now);
        assert_eq!(outs, [Output::Close(0)]);
        assert!(seen.iter().any(|e| matches!(
            e,
            Event::PeerLost { reason, delay_ms, .. } if reason == "disconnect" && *delay_ms == delay
        )), "{seen:?}");
        assert_eq!(w.next_deadline(), Some(now + delay as u32 * MS));
        assert!(tick(&mut w, now + (delay as u32 - 1) * MS).0.is_empty());
        now += delay as u32 * MS;
        let (outs, _) = tick(&mut w, now);
        assert!(matches!(&outs[..], [Output::Open(_), _]), "{outs:?}");
    }
    // Taken this time (a HEARTBEAT first), then DISCONNECT: at once.
    handle(&mut w, on_slot(0, &[b"", b"MDPW01", b"\x04"]), now);
    let (_, seen) = handle(&mut w, refuse(), now);
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::PeerLost { reason, delay_ms: 0, .. } if reason == "disconnect"
    )));
    assert_eq!(w.next_deadline(), Some(now));
}

/// The Majordomo frames the worker sends and reads ([`super::mdp`]).
mod wire {
    use super::super::mdp::*;
    use super::*;
    use crate::proto::mdp::WorkerCommand;

    fn frames(msg: &Message) -> Vec<Vec<u8>> {
        msg.iter().map(<[u8]>::to_vec).collect()
    }

    fn body(text: &str) -> Message {
        Message::from_frames([text.as_bytes().to_vec()])
    }

    /// `f` as it goes on the wire in `version`: MDP/0.1 behind an empty delimiter (the
    /// worker's REQ-like envelope), MDP/0.2 without.
    fn on_wire(version: Version, f: &[&[u8]]) -> Vec<Vec<u8>> {
        let head: &[&[u8]] = match version {
            Version::V1 => &[b"", b"MDPW01"],
            Version::V2 => &[b"MDPW02"],
        };
        head.iter().chain(f).map(|x| x.to_vec()).collect()
    }

    #[test]
    fn what_the_worker_sends_is_byte_exact() {
        // READY reads the same in both versions but for the header.
        for version in [Version::V1, Version::V2] {
            let wire = |f: &[&[u8]]| on_wire(version, f);
            assert_eq!(
                frames(&ready(version, "echo", None)),
                wire(&[b"\x01", b"echo"])
            );
            assert_eq!(
                frames(&ready(version, "echo", Some(8))),
                wire(&[b"\x01", b"echo", b"credit=8"])
            );
        }
        let v1 = |f: &[&[u8]]| on_wire(Version::V1, f);
        assert_eq!(frames(&heartbeat(Version::V1)), v1(&[b"\x04"]));
        assert_eq!(
            frames(&reply(Version::V1, &[b"c".to_vec()], body("hi"))),
            v1(&[b"\x03", b"c", b"", b"hi"])
        );
        let v2 = |f: &[&[u8]]| on_wire(Version::V2, f);
        assert_eq!(
            frames(&partial(Version::V2, &[b"c".to_vec()], body("1"))),
            v2(&[b"\x03", b"c", b"", b"1"])
        );
        assert_eq!(
            frames(&reply(Version::V2, &[b"c".to_vec()], body("2"))),
            v2(&[b"\x04", b"c", b"", b"2"])
        );
    }

    #[test]
    fn what_the_broker_sends_is_read_or_refused() {
        let request = encode(
            Version::V1,
            WorkerCommand::Request {
                client: b"c".to_vec(),
                body: body("x"),
            },
        );
        assert_eq!(
            decode(Version::V1, request.clone()),
            Incoming::Request {
                envelope: vec![b"c".to_vec()],
                body: body("x")
            }
        );
        assert!(
            matches!(decode(Version::V2, request), Incoming::Invalid(_)),
            "a request in the other version"
        );
        assert_eq!(
            decode(Version::V1, heartbeat(Version::V2)),
            Incoming::Heartbeat
        );
        assert_eq!(
            decode(Version::V2, encode(Version::V2, WorkerCommand::Disconnect)),
            Incoming::Disconnect
        );
        assert_eq!(
            decode(
                Version::V1,
                encode(Version::V2, WorkerCommand::Granted { credit: 5 })
            ),
            Incoming::Granted(5)
        );
        assert!(matches!(
            decode(Version::V1, ready(Version::V1, "echo", None)),
            Incoming::Invalid(_)
        ));
        assert!(matches!(
            decode(Version::V1, Message::from_frames([b"junk".to_vec()])),
            Incoming::Invalid(_)
        ));
    }
}

/// The jobs a work thread runs ([`super::job`]).
mod jobs {
    use super::super::job::*;
    use super::*;
    use crate::handler::Exec;

    const T3: Ticket = Ticket {
        session: 2,
        generation: 3,
        lane: 0,
    };

    #[test]
    fn a_handle_job_runs_the_handler() {
        let body = Message::from_frames([b"hi".to_vec()]);
        let job = Job::Handle {
            ticket: T3,
            handler: Handler::Echo,
            body: body.clone(),
            stream: false,
        };
        match perform(job) {
            Done::Reply { ticket, reply } => assert_eq!((ticket, reply), (T3, body)),
            Done::Partial { .. } => panic!("not streamed"),
        }
    }

    #[test]
    fn a_streamed_command_comes_back_line_by_line_then_the_last_as_the_reply() {
        let exec = Exec::new("printf 'a\\nb\\nc\\n'");
        let mut done = perform(Job::Handle {
            ticket: T3,
            handler: Handler::Exec(exec),
            body: Message::new(),
            stream: true,
        });
        let mut parts = Vec::new();
        loop {
            match done {
                Done::Partial { part, rest, .. } => {
                    parts.push(part.text());
                    done = perform(Job::Next { ticket: T3, rest });
                }
                Done::Reply { reply, .. } => {
                    parts.push(format!("final {}", reply.text()));
                    break;
                }
            }
        }
        assert_eq!(parts, ["a", "b", "final c"]);
    }
}
