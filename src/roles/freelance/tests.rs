use super::client::*;
use super::server::*;
use crate::event::{Event, Outcome, Report};
use crate::faults::FaultPlan;
use crate::msg::Message;
use crate::proto::flp::{self, ClientMsg, ServerMsg};
use crate::reactor::{Input, Machine, Output, SocketKind};
use crate::testkit::Rig;
use crate::transport;
use std::time::{Duration, Instant};

const MS: Duration = Duration::from_millis(1);

fn table(n: usize, now: Instant) -> ServerTable {
    let endpoints: Vec<String> = (0..n).map(|i| format!("tcp://h:{i}")).collect();
    ServerTable::new(&endpoints, 100 * MS, 300 * MS, now)
}

/// `[client][frames…]`, as the server's ROUTER hands it over.
fn from_client(frames: &[&[u8]]) -> Input<ServerJob> {
    Input::Message {
        slot: SERVER,
        msg: Message::from_frames(frames.iter().copied()),
    }
}

fn sent(frames: &[&[u8]]) -> Output<ServerJob> {
    Output::Send {
        slot: SERVER,
        msg: Message::from_frames(frames.iter().copied()),
    }
}

fn job(control: &[u8], body: &[u8]) -> ServerJob {
    ServerJob {
        client: b"C".to_vec(),
        control: control.to_vec(),
        body: Message::from_frames([body]),
    }
}

fn flp_server(faults: FaultPlan) -> FreelanceServer {
    FreelanceServer::new(&FreelanceServerConfig {
        bind: "tcp://*:5555".into(),
        faults,
        seed: 7,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_server_socket_is_a_router_named_by_its_public_endpoint() {
    let s = flp_server(FaultPlan::default());
    match &s.sockets()[..] {
        [spec] => {
            assert_eq!(spec.kind, SocketKind::Router);
            assert_eq!(spec.bind, ["tcp://*:5555"]);
            assert_eq!(spec.identity.as_deref(), Some(&b"tcp://localhost:5555"[..]));
        }
        other => panic!("{other:?}"),
    }
    let mut rig = Rig::quiet(s);
    assert!(rig.start(rig.t0).is_empty());
    assert!(matches!(
        &rig.events[..],
        [Event::Started { role, endpoint, seed: Some(7), .. }, ..]
            if role == "freelance server" && endpoint == "tcp://localhost:5555"
    ));
    let bad = FreelanceServer::new(&FreelanceServerConfig {
        bind: "tcp://127.0.0.1:*".into(),
        ..Default::default()
    });
    assert_eq!(bad.err().map(|e| e.exit_code()), Some(2));
}

#[test]
fn the_server_answers_ping_with_pong_at_once_even_while_not_a_cycle() {
    let mut rig = Rig::quiet(flp_server(FaultPlan {
        crash_after: Some(0),
        ..Default::default()
    }));
    let t0 = rig.t0;
    for _ in 0..3 {
        let out = rig.handle(from_client(&[b"C", b"PING"]), t0);
        assert_eq!(out, [sent(&[b"C", b"PONG"])]);
    }
    assert_eq!(
        rig.m.report().requests,
        0,
        "pings are no requests and draw no faults"
    );
    assert!(rig.m.wants(SERVER));
}

#[test]
fn the_server_echoes_control_and_reply_and_counts_it() {
    let mut rig = Rig::quiet(flp_server(FaultPlan::default()));
    let t0 = rig.t0;
    let out = rig.handle(from_client(&[b"C", b"7", b"hi"]), t0);
    assert_eq!(out, [Output::Start(job(b"7", b"hi"))]);
    assert!(!rig.m.wants(SERVER), "one request at a time, pings wait");
    let out = rig.done(job(b"7", b"HI"), t0 + 3 * MS);
    assert_eq!(out, [sent(&[b"C", b"7", b"HI"])]);
    assert!(rig.m.wants(SERVER));
    let report = rig.m.report();
    assert_eq!((report.requests, report.replied), (1, 1));
    assert!(matches!(
        rig.events.last(),
        Some(Event::Served { cycle: 1, request, bytes: 2, .. }) if request == "hi"
    ));
}

#[test]
fn the_server_counts_and_drops_malformed_messages_and_keeps_serving() {
    let mut rig = Rig::quiet(flp_server(FaultPlan::default()));
    let t0 = rig.t0;
    // No payload; a control frame without a body; an empty identity.
    let mut out = rig.handle(from_client(&[b"C"]), t0);
    out.extend(rig.handle(from_client(&[b"C", b"7"]), t0));
    out.extend(rig.handle(from_client(&[b"", b"PING"]), t0));
    assert!(out.is_empty());
    assert_eq!((rig.m.report().invalid, rig.m.report().requests), (3, 0));
    let out = rig.handle(from_client(&[b"C", b"PING"]), t0);
    assert_eq!(out, [sent(&[b"C", b"PONG"])]);
}

#[test]
fn the_server_stall_is_a_deadline_during_which_nothing_is_read() {
    let mut rig = Rig::quiet(flp_server(FaultPlan {
        work: 100 * MS,
        overload_rate: 1.0,
        overload_for: 400 * MS,
        faults_after: 0,
        ..Default::default()
    }));
    let t0 = rig.t0;
    assert!(rig.handle(from_client(&[b"C", b"1", b"x"]), t0).is_empty());
    assert_eq!(rig.m.report().overloads, 1);
    assert_eq!(rig.m.next_deadline(), Some(t0 + 500 * MS));
    assert!(
        !rig.m.wants(SERVER),
        "an overloaded server answers nothing, pings included"
    );
    assert!(rig.tick(t0 + 499 * MS).is_empty());
    let out = rig.tick(t0 + 500 * MS);
    assert_eq!(out, [Output::Start(job(b"1", b"x"))]);
    assert_eq!(rig.m.next_deadline(), None);
    assert!(!rig.m.wants(SERVER), "still busy until the handler answers");
}

#[test]
fn the_server_crash_is_an_output_and_nothing_more_is_read() {
    let mut rig = Rig::quiet(flp_server(FaultPlan {
        crash_after: Some(1),
        ..Default::default()
    }));
    let t0 = rig.t0;
    rig.handle(from_client(&[b"C", b"1", b"x"]), t0);
    rig.done(job(b"1", b"x"), t0);
    let out = rig.handle(from_client(&[b"C", b"2", b"y"]), t0);
    assert_eq!(out, [Output::Crash]);
    assert!(!rig.m.wants(SERVER));
}

// The client, with a fake clock and a fake reactor.

fn ep(i: usize) -> String {
    format!("tcp://h:{i}")
}

fn flp_client(n: usize, t0: Instant) -> FreelanceClient {
    let mut endpoints: Vec<String> = (0..n).map(ep).collect();
    endpoints.push(ep(0)); // listed twice: used once
    FreelanceClient::new(
        &FreelanceClientConfig {
            endpoints,
            timeout: 200 * MS,
            ping_interval: 100 * MS,
            server_ttl: 300 * MS,
            retries: 3,
            check_echo: true,
        },
        t0,
    )
    .unwrap()
}

/// A rig around a client of `n` servers whose clock starts when the client does.
fn client_rig(n: usize) -> Rig<FreelanceClient> {
    let t0 = Instant::now();
    let mut rig = Rig::quiet(flp_client(n, t0));
    rig.t0 = t0;
    rig
}

/// What the reactor would do with `outputs`: each send on the client socket goes out when
/// its server is in `up` (else it is unroutable), and the machine hears of it at once.
/// Returns the frames that went out, and the other outputs (jobs, exit).
fn carry(
    rig: &mut Rig<FreelanceClient>,
    outputs: Vec<Output<NextRequest>>,
    now: Instant,
    up: &[usize],
) -> (Vec<Vec<Vec<u8>>>, Vec<Output<NextRequest>>) {
    let (mut wire, mut other) = (Vec::new(), Vec::new());
    let routable = |_, msg: &Message| up.iter().any(|&i| msg.get(0) == Some(ep(i).as_bytes()));
    for o in rig.carry(outputs, now, routable) {
        match o {
            Output::Send { msg, .. } => wire.push(msg.iter().map(<[u8]>::to_vec).collect()),
            o => other.push(o),
        }
    }
    (wire, other)
}

fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn ping(i: usize) -> Vec<Vec<u8>> {
    frames(&[ep(i).as_bytes(), b"PING"])
}

fn attempt(i: usize, seq: u64, body: &str) -> Vec<Vec<u8>> {
    frames(&[ep(i).as_bytes(), &flp::control_frame(seq), body.as_bytes()])
}

fn from_server(parts: &[&[u8]]) -> Input<Option<Vec<u8>>> {
    Input::Message {
        slot: CLIENT,
        msg: Message::from_frames(parts.iter().copied()),
    }
}

fn pong(i: usize) -> Input<Option<Vec<u8>>> {
    from_server(&[ep(i).as_bytes(), b"PONG"])
}

fn reply(i: usize, seq: u64, body: &str) -> Input<Option<Vec<u8>>> {
    from_server(&[ep(i).as_bytes(), &flp::control_frame(seq), body.as_bytes()])
}

/// A client of `n` servers, started at its rig's `t0`, all of which answered their first ping.
fn live_client(n: usize) -> Rig<FreelanceClient> {
    let mut rig = client_rig(n);
    let t0 = rig.t0;
    let out = rig.start(t0);
    carry(&mut rig, out, t0, &(0..n).collect::<Vec<_>>());
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(rig.handle(pong(i), t0));
    }
    assert!(out.is_empty(), "a PONG asks for nothing");
    rig
}

#[test]
fn the_client_starts_by_pinging_every_distinct_server_and_reading_a_request() {
    let mut rig = client_rig(2);
    let t0 = rig.t0;
    match &rig.m.sockets()[..] {
        [spec] => {
            assert_eq!(spec.kind, SocketKind::MandatoryRouter);
            assert_eq!(
                spec.connect,
                [ep(0), ep(1)],
                "a duplicate is connected once"
            );
        }
        other => panic!("{other:?}"),
    }
    let out = rig.start(t0);
    let (wire, other) = carry(&mut rig, out, t0, &[0, 1]);
    assert_eq!(wire, [ping(0), ping(1)]);
    assert_eq!(other, [Output::Start(NextRequest)]);
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::Started { role, endpoint, .. }
        if role == "freelance client" && endpoint == "tcp://h:0,tcp://h:1")));
    assert!(FreelanceClient::new(
        &FreelanceClientConfig {
            endpoints: Vec::new(),
            ..Default::default()
        },
        t0
    )
    .is_err());
}

#[test]
fn the_client_pings_on_schedule_and_a_pong_postpones_the_next_ping() {
    let mut rig = client_rig(2);
    let t0 = rig.t0;
    let out = rig.start(t0);
    carry(&mut rig, out, t0, &[0, 1]);
    assert_eq!(rig.m.next_deadline(), Some(t0 + 100 * MS));
    let mut out = rig.handle(pong(0), t0 + 60 * MS);
    out.extend(rig.tick(t0 + 100 * MS));
    let (wire, _) = carry(&mut rig, out, t0 + 100 * MS, &[0, 1]);
    assert_eq!(
        wire,
        [ping(1)],
        "server 0 spoke at 60 ms: its ping is due at 160 ms"
    );
    assert_eq!(rig.m.next_deadline(), Some(t0 + 160 * MS));
    let out = rig.tick(t0 + 160 * MS);
    let (wire, _) = carry(&mut rig, out, t0 + 160 * MS, &[0, 1]);
    assert_eq!(wire, [ping(0)]);
}

#[test]
fn the_client_sends_round_robin_over_live_servers_in_request_order() {
    let mut rig = live_client(3);
    let t0 = rig.t0;
    let mut went = Vec::new();
    for (k, word) in ["a", "b", "c", "d"].iter().enumerate() {
        let seq = k as u64 + 1;
        let now = t0 + (k as u32) * MS;
        let out = rig.done(Some(word.as_bytes().to_vec()), now);
        let (wire, _) = carry(&mut rig, out, now, &[0, 1, 2]);
        let i = (0..3)
            .find(|&i| wire == [attempt(i, seq, word)])
            .expect("one attempt");
        went.push(i);
        let out = rig.handle(reply(i, seq, word), now);
        let (_, other) = carry(&mut rig, out, now, &[0, 1, 2]);
        assert_eq!(other, [Output::Start(NextRequest)], "then the next request");
    }
    assert_eq!(went, [0, 1, 2, 0]);
    assert!(rig.done(None, t0 + 10 * MS).contains(&Output::Exit));
    let replies: Vec<u64> = rig
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Reply {
                seq, attempts: 1, ..
            } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [1, 2, 3, 4]);
    let (sent, replied) = (rig.m.report().sent, rig.m.report().replied);
    assert_eq!((sent, replied), (4, 4));
    match rig.m.finish(t0 + 10 * MS) {
        Report::Client(r) => assert_eq!(r.outcome, Outcome::Completed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_attempt_that_times_out_is_retried_elsewhere_and_never_before() {
    let mut rig = live_client(2);
    let t0 = rig.t0;
    let (wire, _) = ask_x(&mut rig, t0, &[0, 1]);
    assert_eq!(wire, [attempt(0, 1, "x")]);
    // A wake-up before the timeout (a ping due) does not resend.
    let out = rig.tick(t0 + 100 * MS);
    let (wire, _) = carry(&mut rig, out, t0 + 100 * MS, &[0, 1]);
    assert_eq!(wire, [ping(0), ping(1)]);
    let mut out = rig.handle(pong(1), t0 + 150 * MS);
    out.extend(rig.tick(t0 + 200 * MS));
    let (wire, _) = carry(&mut rig, out, t0 + 200 * MS, &[0, 1]);
    // Server 0 did not answer its ping at 100 ms: pinged again; the retry goes to 1.
    assert_eq!(wire, [ping(0), attempt(1, 1, "x")]);
    rig.handle(reply(1, 1, "x"), t0 + 210 * MS);
    assert!(rig.events.iter().any(|e| matches!(e,
        Event::Retry { seq: 1, attempt: 1, reason } if reason == "timeout")));
    assert!(rig.events.iter().any(|e| matches!(
        e,
        Event::Reply {
            seq: 1,
            attempts: 2,
            ..
        }
    )));
    assert_eq!(rig.m.report().retries, 1);
}

#[test]
fn a_late_reply_is_never_counted_for_a_later_request() {
    let mut rig = live_client(2);
    let t0 = rig.t0;
    let out = rig.done(Some("same".into()), t0);
    carry(&mut rig, out, t0, &[0, 1]);
    let out = rig.tick(t0 + 200 * MS); // times out on server 0, goes to 1
    carry(&mut rig, out, t0 + 200 * MS, &[0, 1]);
    let out = rig.handle(reply(1, 1, "same"), t0 + 210 * MS);
    carry(&mut rig, out, t0 + 210 * MS, &[0, 1]);
    let out = rig.done(Some("same".into()), t0 + 220 * MS);
    carry(&mut rig, out, t0 + 220 * MS, &[0, 1]);
    // Server 0's answer to request 1 arrives while request 2 waits: same body, wrong
    // control frame: discarded.
    let out = rig.handle(reply(0, 1, "same"), t0 + 230 * MS);
    assert!(carry(&mut rig, out, t0 + 230 * MS, &[0, 1]).1.is_empty());
    // A control frame never sent is malformed, not late.
    rig.handle(reply(0, 9, "same"), t0 + 231 * MS);
    rig.handle(from_server(&[b"tcp://h:7", b"PONG"]), t0 + 232 * MS);
    assert_eq!(rig.m.report().replied, 1);
    rig.handle(reply(0, 2, "same"), t0 + 240 * MS);
    assert_eq!(rig.m.report().replied, 2);
    let replies: Vec<(u64, u32)> = rig
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Reply { seq, attempts, .. } => Some((*seq, *attempts)),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [(1, 2), (2, 1)]);
    let invalid = rig
        .events
        .iter()
        .filter(|e| matches!(e, Event::Invalid { .. }))
        .count();
    assert_eq!(
        invalid, 2,
        "the unknown control frame and the unknown server"
    );
}

#[test]
fn an_unroutable_server_is_dead_at_once_and_costs_no_attempt() {
    let mut rig = live_client(2);
    let t0 = rig.t0;
    // Server 0 went away: the request is handed to server 1 in the same breath.
    let (wire, _) = ask_x(&mut rig, t0, &[1]);
    assert_eq!(wire, [attempt(1, 1, "x")]);
    assert_eq!(rig.m.report().sent, 1);
    rig.handle(reply(1, 1, "x"), t0 + MS);
    assert_eq!(rig.m.report().replied, 1);
    // And its ping is tried again soon, not a whole interval later.
    assert_eq!(rig.m.next_deadline(), Some(t0 + UNROUTABLE_RETRY));
}

/// The client's next request, "x", arrives at `now` and is [`carry`]-ed with the servers in
/// `up` answering; what went on the wire and what else was asked for.
fn ask_x(
    rig: &mut Rig<FreelanceClient>,
    now: Instant,
    up: &[usize],
) -> (Vec<Vec<Vec<u8>>>, Vec<Output<NextRequest>>) {
    let out = rig.done(Some("x".into()), now);
    carry(rig, out, now, up)
}

/// Whether `e` says request 1 was abandoned after `attempts` attempts.
fn abandoned(e: &Event, attempts: u32) -> bool {
    matches!(e, Event::Abandoned { seq: 1, attempts: a, .. } if *a == attempts)
}

/// The outcome of a client's final report.
fn client_outcome(report: Report) -> Outcome {
    match report {
        Report::Client(r) => r.outcome,
        other => panic!("{other:?}"),
    }
}

/// Runs the client from deadline to deadline until it exits; servers in `answering` answer
/// every ping. Returns when it exited.
fn run_to_exit(rig: &mut Rig<FreelanceClient>, answering: &[usize]) -> Instant {
    let t0 = rig.t0;
    let mut now = t0;
    // The PONGs' outputs wait, as in an outbox, to be carried out with the next tick's.
    let mut out = Vec::new();
    for _ in 0..100 {
        now = rig.m.next_deadline().expect("a deadline while running");
        out.extend(rig.tick(now));
        let (wire, other) = carry(rig, std::mem::take(&mut out), now, &[0, 1]);
        if other.contains(&Output::Exit) {
            assert_eq!(rig.m.next_deadline(), None);
            return now;
        }
        for &i in answering {
            if wire.contains(&ping(i)) {
                out.extend(rig.handle(pong(i), now));
            }
        }
    }
    panic!("still running at {:?}", now - t0);
}

#[test]
fn a_request_is_abandoned_after_its_attempts() {
    let mut rig = live_client(1);
    let t0 = rig.t0;
    ask_x(&mut rig, t0, &[0]);
    // The server answers pings but never the request: three attempts of 200 ms.
    let ended = run_to_exit(&mut rig, &[0]);
    assert_eq!(ended, t0 + 600 * MS);
    assert_eq!((rig.m.report().sent, rig.m.report().retries), (3, 2));
    assert!(rig.events.iter().any(|e| abandoned(e, 3)));
    // Abandoned is what the binary turns into exit 69.
    assert_eq!(client_outcome(rig.m.finish(ended)), Outcome::Abandoned);
}

#[test]
fn a_silent_server_expires_and_then_the_request_is_abandoned() {
    let mut rig = live_client(1);
    let t0 = rig.t0;
    ask_x(&mut rig, t0, &[0]);
    // Nothing answers: attempts at 0 and 200 ms; the server dies at 300 ms (ttl), so the
    // third attempt waits for a live server, for ttl + timeout after the last one was.
    let ended = run_to_exit(&mut rig, &[]);
    assert_eq!(ended, t0 + 700 * MS);
    assert_eq!(rig.m.report().sent, 2);
    assert!(
        rig.events
            .iter()
            .any(|e| matches!(e, Event::Log { message, .. }
            if message.contains("has not answered for 300 ms"))),
        "the expiry is said"
    );
    assert!(rig.events.iter().any(|e| abandoned(e, 2)));
    assert_eq!(client_outcome(rig.m.finish(ended)), Outcome::Abandoned);
}

#[test]
fn with_no_server_alive_a_request_gives_up_after_ttl_plus_timeout() {
    let mut rig = client_rig(2);
    let t0 = rig.t0;
    let out = rig.start(t0);
    carry(&mut rig, out, t0, &[]);
    let arrived = t0 + 1000 * MS;
    assert!(ask_x(&mut rig, arrived, &[]).0.is_empty());
    // Counted from the request's arrival: it gets the whole ttl + timeout.
    let out = rig.tick(arrived + 499 * MS);
    assert!(!carry(&mut rig, out, arrived, &[]).1.contains(&Output::Exit));
    let out = rig.tick(arrived + 500 * MS);
    let (_, other) = carry(&mut rig, out, arrived + 500 * MS, &[]);
    assert!(other.contains(&Output::Exit));
    assert_eq!((rig.m.report().sent, rig.m.report().abandoned), (0, 1));
}

#[test]
fn a_mismatched_reply_ends_the_attempt_at_once() {
    let mut rig = live_client(2);
    let t0 = rig.t0;
    ask_x(&mut rig, t0, &[0, 1]);
    let out = rig.handle(reply(0, 1, "y"), t0 + MS);
    let (wire, _) = carry(&mut rig, out, t0 + MS, &[0, 1]);
    assert_eq!(wire, [attempt(1, 1, "x")]);
    assert_eq!((rig.m.report().mismatched, rig.m.report().retries), (1, 1));
}

#[test]
fn public_endpoint_reads_wildcards_as_localhost() {
    assert_eq!(public_endpoint("tcp://*:5555"), "tcp://localhost:5555");
    assert_eq!(public_endpoint("tcp://0.0.0.0:7"), "tcp://localhost:7");
    assert_eq!(public_endpoint("tcp://127.0.0.1:9"), "tcp://127.0.0.1:9");
    assert_eq!(public_endpoint("ipc:///tmp/x"), "ipc:///tmp/x");
}

#[test]
fn server_identity_refuses_what_cannot_be_an_identity() {
    let with = |bind: &str, endpoint: &str| FreelanceServerConfig {
        bind: bind.into(),
        endpoint: endpoint.into(),
        ..Default::default()
    };
    assert_eq!(
        server_identity(&with("tcp://*:5555", "")).unwrap(),
        "tcp://localhost:5555"
    );
    assert_eq!(
        server_identity(&with("tcp://*:5555", "tcp://box:1")).unwrap(),
        "tcp://box:1"
    );
    let err = server_identity(&with("tcp://127.0.0.1:*", "")).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--endpoint"), "{err}");
    assert!(server_identity(&with("tcp://*:*", "")).is_err());
    assert!(server_identity(&with("tcp://*:1", &"x".repeat(256))).is_err());
}

#[test]
fn dedupe_keeps_first_seen_order_and_reports_repeats() {
    let e = |s: &str| s.to_string();
    let (unique, repeats) = dedupe(&[e("a"), e("b"), e("a"), e("c"), e("b"), e("a")]);
    assert_eq!(unique, vec![e("a"), e("b"), e("c")]);
    assert_eq!(repeats, vec![e("a"), e("b"), e("a")]);
    let t = ServerTable::new(&[e("a"), e("a")], 100 * MS, 300 * MS, Instant::now());
    assert_eq!(t.servers().len(), 1, "a server listed twice is one server");
}

#[test]
fn servers_start_dead_and_due_a_ping() {
    let now = Instant::now();
    let mut t = table(3, now);
    assert!(!t.any_alive());
    assert_eq!(t.choose(&[]), None);
    assert_eq!(t.pings_due(now), vec![0, 1, 2]);
    assert_eq!(t.pings_due(now + 50 * MS), Vec::<usize>::new());
    assert_eq!(t.pings_due(now + 100 * MS), vec![0, 1, 2]);
}

#[test]
fn a_server_that_speaks_is_alive_until_ttl_then_dead() {
    let now = Instant::now();
    let mut t = table(2, now);
    assert!(t.heard(1, now), "first word: it came alive");
    assert!(!t.heard(1, now + 10 * MS), "already alive");
    assert_eq!(t.choose(&[]), Some(1));
    assert_eq!(t.expire(now + 309 * MS), Vec::<usize>::new());
    assert_eq!(t.expire(now + 310 * MS), vec![1]);
    assert_eq!(t.expire(now + 400 * MS), Vec::<usize>::new(), "dies once");
    assert!(!t.any_alive());
    assert!(
        t.heard(1, now + 500 * MS),
        "a dead server that answers is back"
    );
}

#[test]
fn speaking_postpones_the_next_ping() {
    let now = Instant::now();
    let mut t = table(1, now);
    t.pings_due(now);
    t.heard(0, now + 90 * MS);
    assert!(t.pings_due(now + 100 * MS).is_empty());
    assert_eq!(t.pings_due(now + 190 * MS), vec![0]);
}

#[test]
fn dead_servers_keep_being_pinged() {
    let now = Instant::now();
    let mut t = table(1, now);
    t.heard(0, now);
    t.expire(now + 300 * MS);
    assert!(!t.any_alive());
    let mut pinged = 0;
    for k in 0..10u32 {
        pinged += t.pings_due(now + 300 * MS + k * 100 * MS).len();
    }
    assert_eq!(pinged, 10);
}

#[test]
fn an_unroutable_server_is_dead_at_once_and_retried_soon() {
    let now = Instant::now();
    let mut t = table(2, now);
    t.heard(0, now);
    t.heard(1, now);
    assert!(t.unroutable(0, now), "it was alive");
    assert!(!t.unroutable(0, now), "already dead");
    assert_eq!(t.choose(&[]), Some(1));
    assert_eq!(t.pings_due(now + UNROUTABLE_RETRY), vec![0]);
}

#[test]
fn choose_prefers_untried_then_least_recently_used() {
    let now = Instant::now();
    let mut t = table(3, now);
    for i in 0..3 {
        t.heard(i, now);
    }
    // Round robin across requests: least recently used first.
    let mut order = Vec::new();
    for _ in 0..6 {
        let i = t.choose(&[]).unwrap();
        t.used(i);
        order.push(i);
    }
    assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    // Within a request, a retry goes to a server it has not been to yet, even if that one
    // was used more recently.
    t.used(1);
    assert_eq!(t.choose(&[0, 2]), Some(1));
    // All tried: the least recently used live one (0 was used 4th, 2 6th, 1 last).
    assert_eq!(t.choose(&[0, 1, 2]), Some(0));
    // Dead servers are never chosen, tried or not.
    t.unroutable(2, now);
    t.unroutable(1, now);
    assert_eq!(t.choose(&[0]), Some(0), "the only live one, again");
    t.unroutable(0, now);
    assert_eq!(t.choose(&[]), None);
}

#[test]
fn next_due_is_the_earliest_ping_or_expiry() {
    let now = Instant::now();
    let mut t = table(2, now);
    assert_eq!(t.next_due(), Some(now));
    t.pings_due(now);
    assert_eq!(t.next_due(), Some(now + 100 * MS));
    t.heard(0, now + 50 * MS);
    // server 1's ping (now+100) is before server 0's (now+150) and expiry (now+350).
    assert_eq!(t.next_due(), Some(now + 100 * MS));
    t.pings_due(now + 100 * MS);
    assert_eq!(t.next_due(), Some(now + 150 * MS));
}

#[test]
fn find_matches_identities_exactly() {
    let t = table(2, Instant::now());
    assert_eq!(t.find(b"tcp://h:1"), Some(1));
    assert_eq!(t.find(b"tcp://h:1 "), None);
    assert_eq!(t.find(b""), None);
}

#[test]
fn one_client_two_servers_in_process() {
    // Wire-level check of the design against real sockets, without the binary: identities,
    // ping/pong, a request answered once.
    // Plain ZeroMQ sockets on the process's context, set up as the reactor sets up a
    // Freelance server's ROUTER (its endpoint as identity) and a MandatoryRouter client.
    let ctx = transport::context();
    let router = |identity: Option<&[u8]>| {
        let socket = ctx.socket(zmq::ROUTER).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_rcvtimeo(1000).unwrap();
        if let Some(identity) = identity {
            socket.set_identity(identity).unwrap();
        }
        socket
    };
    let recv = |socket: &zmq::Socket| Message::from(socket.recv_multipart(0).unwrap());
    let server = router(Some(b"inproc://flp-a"));
    server.bind("inproc://flp-a").unwrap();
    let client = router(None);
    client.set_router_mandatory(true).unwrap();
    client.connect("inproc://flp-a").unwrap();
    let ping = flp::route(b"inproc://flp-a".to_vec(), ClientMsg::Ping.encode());
    client.send_multipart(ping.into_frames(), 0).unwrap();
    let (peer, rest) = flp::split_peer(recv(&server)).unwrap();
    assert_eq!(flp::decode_client_msg(rest), Ok(ClientMsg::Ping));
    let pong = flp::route(peer, ServerMsg::Pong.encode());
    server.send_multipart(pong.into_frames(), 0).unwrap();
    let (from, rest) = flp::split_peer(recv(&client)).unwrap();
    assert_eq!(from, b"inproc://flp-a");
    assert_eq!(flp::decode_server_msg(rest), Ok(ServerMsg::Pong));
    // A server nobody connected to is unroutable, not a silent drop.
    let err = client
        .send_multipart(
            [b"inproc://nobody".to_vec(), b"PING".to_vec()],
            zmq::DONTWAIT,
        )
        .unwrap_err();
    assert_eq!(err, zmq::Error::EHOSTUNREACH);
}
