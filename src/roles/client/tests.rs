use super::replies::majordomo_header;
use super::*;
use crate::feed::ReadAhead;
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::reactor::SocketKind;

// A message from its frames, by the kit's one builder, short for the many frame lists here.
use crate::testkit::frames as m;

fn mdp(version: Version) -> Framing {
    Framing::Majordomo {
        version,
        service: "echo".into(),
    }
}

#[test]
fn bare_framing_sends_the_body_alone() {
    assert_eq!(Framing::Bare.encode(m(&[b"hi"])), m(&[b"hi"]));
    assert_eq!(Framing::Bare.socket_type(), SocketKind::Req);
}

#[test]
fn mdp01_over_req_leaves_the_delimiter_to_the_socket() {
    let f = mdp(Version::V1);
    assert_eq!(f.socket_type(), SocketKind::Req);
    assert_eq!(f.encode(m(&[b"hi"])), m(&[b"MDPC01", b"echo", b"hi"]));
    assert_eq!(
        f.decode(m(&[b"MDPC01", b"echo", b"hi"])),
        Ok(Received::Final(m(&[b"hi"])))
    );
}

#[test]
fn mdp02_uses_dealer_and_streams_partials() {
    let f = mdp(Version::V2);
    assert_eq!(f.socket_type(), SocketKind::Dealer);
    assert_eq!(f.encode(m(&[b"hi"])), m(&[b"MDPC02", &[1], b"echo", b"hi"]));
    assert_eq!(
        f.decode(m(&[b"MDPC02", &[2], b"echo", b"a"])),
        Ok(Received::Partial(m(&[b"a"])))
    );
    assert_eq!(
        f.decode(m(&[b"MDPC02", &[3], b"echo", b"b"])),
        Ok(Received::Final(m(&[b"b"])))
    );
}

#[test]
fn request_ids_go_in_front_of_the_frames_a_req_socket_would_send() {
    let id = b"00000000000000ff".to_vec();
    assert_eq!(
        Framing::Bare.socket_type_for(Correlation::RequestId),
        SocketKind::Dealer
    );
    assert_eq!(
        Framing::Bare.socket_type_for(Correlation::Socket),
        SocketKind::Req
    );
    assert_eq!(
        Framing::Bare.encode_with_id(id.clone(), m(&[b"hi"])),
        m(&[&id, b"", b"hi"])
    );
    // 0.1: the delimiter after the id stands where REQ would put its own.
    assert_eq!(
        mdp(Version::V1).encode_with_id(id.clone(), m(&[b"hi"])),
        m(&[&id, b"", b"MDPC01", b"echo", b"hi"])
    );
    assert_eq!(
        mdp(Version::V2).encode_with_id(id.clone(), m(&[b"hi"])),
        m(&[&id, b"", b"MDPC02", &[1], b"echo", b"hi"])
    );
}

#[test]
fn replies_with_ids_decode_to_the_id_and_the_reply() {
    let id = b"0123456789abcdef".to_vec();
    assert_eq!(
        Framing::Bare.decode_with_id(m(&[&id, b"", b"a", b"b"])),
        Ok((id.clone(), Received::Final(m(&[b"a", b"b"]))))
    );
    assert_eq!(
        mdp(Version::V1).decode_with_id(m(&[&id, b"", b"MDPC01", b"echo", b"X"])),
        Ok((id.clone(), Received::Final(m(&[b"X"]))))
    );
    assert_eq!(
        mdp(Version::V2).decode_with_id(m(&[&id, b"", b"MDPC02", &[2], b"echo", b"p"])),
        Ok((id.clone(), Received::Partial(m(&[b"p"]))))
    );
    // A reply that lost its envelope, or a REP-less peer's bare reply, is malformed.
    assert!(Framing::Bare.decode_with_id(m(&[b"hello"])).is_err());
    assert!(mdp(Version::V1)
        .decode_with_id(m(&[b"", b"MDPC01", b"echo", b"X"]))
        .is_err());
}

#[test]
fn replies_for_another_service_or_version_are_refused() {
    let f = mdp(Version::V1);
    assert!(f.decode(m(&[b"MDPC01", b"other", b"hi"])).is_err());
    assert!(f.decode(m(&[b"MDPC02", &[3], b"echo", b"hi"])).is_err());
    assert!(f.decode(m(&[b"junk"])).is_err());
}

// ---- the machine, with a fake clock ----

use crate::reactor::Output;
use crate::testkit::{closed, opened, Rig};

const MS: Duration = Duration::from_millis(1);

fn config(endpoints: &[&str]) -> ClientConfig {
    ClientConfig {
        endpoint: endpoints[0].into(),
        failover: endpoints[1..].iter().map(|e| e.to_string()).collect(),
        timeout: 100 * MS,
        retries: 3,
        settle: 500 * MS,
        ..ClientConfig::default()
    }
}

/// A quiet rig (no frame traces) around a client of `config`, started at the rig's `t0`; what
/// the start asked for.
fn client_rig(config: ClientConfig) -> (Rig<Client>, Vec<Output<ReadNext>>) {
    let mut rig = Rig::quiet(Client::new(&config));
    let started = rig.start(rig.t0);
    (rig, started)
}

/// The client's inputs with their time in ms on the rig's clock, as the tests write them.
trait Steps {
    /// The reader's answer at `ms`: `request`, or the end of input.
    fn read(&mut self, ms: u64, request: Option<&str>) -> Vec<Output<ReadNext>>;
    /// `msg` arrives on `slot` at `ms`.
    fn recv(&mut self, ms: u64, slot: Slot, msg: Message) -> Vec<Output<ReadNext>>;
}

impl Steps for Rig<Client> {
    fn read(&mut self, ms: u64, request: Option<&str>) -> Vec<Output<ReadNext>> {
        let done = request.map(Request::line).into_iter().collect();
        self.done(done, self.at(ms))
    }

    fn recv(&mut self, ms: u64, slot: Slot, msg: Message) -> Vec<Output<ReadNext>> {
        self.message(slot, msg, self.at(ms))
    }
}

/// The one message sent in `outputs`, with its slot.
fn sent(outputs: &[Output<ReadNext>]) -> (Slot, Message) {
    let sends: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { slot, msg } => Some((*slot, msg.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "{outputs:?}");
    sends.into_iter().next().unwrap()
}

/// A REP peer's echo of a request sent with an id: the same frames back.
fn id_of(msg: &Message) -> Frame {
    msg.iter().next().unwrap().to_vec()
}

#[test]
fn start_checks_every_endpoint_then_closes_the_checks_and_reads_the_first_request() {
    let (rig, outputs) = client_rig(config(&["tcp://a:1", "tcp://b:2"]));
    let specs = rig.m.sockets();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[1].connect, ["tcp://b:2"]);
    assert_eq!(
        outputs,
        [
            Output::Close(specs[0].slot),
            Output::Close(specs[1].slot),
            Output::Start(ReadNext)
        ]
    );
    assert!(
        matches!(&rig.events[..], [Event::Started { endpoint, .. }] if endpoint == "tcp://a:1,tcp://b:2")
    );
}

#[test]
fn an_attempt_that_times_out_is_retried_on_a_fresh_socket_then_abandoned() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]));
    let first = rig.read(0, Some("1"));
    let spec = &opened(&first)[0];
    assert_eq!(
        (spec.kind, spec.identity.clone()),
        (SocketKind::Dealer, None)
    );
    assert_eq!(spec.connect, ["tcp://a:1"]);
    let (slot, msg) = sent(&first);
    assert_eq!(slot, spec.slot);
    let id1 = id_of(&msg);
    assert_eq!(msg, m(&[&id1, b"", b"1"]));
    assert!(
        first.contains(&Output::Start(ReadNext)),
        "one request is read ahead"
    );
    assert_eq!(rig.m.next_deadline(), Some(rig.at(100)));
    assert!(rig.m.wants(slot));
    assert!(
        rig.read(50, Some("2")).is_empty(),
        "the window is full: held, and no further read"
    );

    assert!(rig.tick(rig.at(99)).is_empty(), "not yet");
    let second = rig.tick(rig.at(100));
    // Close the old socket first, then a fresh one (identity None) carries a new id.
    assert_eq!(second[0], Output::Close(slot));
    assert_eq!(opened(&second)[0].identity, None);
    let (slot2, msg2) = sent(&second);
    // Its number may be reused: the reactor closes before it opens, in order.
    assert_eq!(slot2, opened(&second)[0].slot);
    assert_ne!(
        id_of(&msg2),
        id1,
        "every attempt has an id never used before"
    );
    assert_eq!(rig.m.next_deadline(), Some(rig.at(200)));

    let third = rig.tick(rig.at(200));
    assert_eq!(closed(&third), [slot2]);
    sent(&third);
    let last = rig.tick(rig.at(300));
    assert_eq!(last, [Output::Exit]);
    assert_eq!(rig.m.outcome(), Some(Outcome::Abandoned));
    let r = rig.m.report();
    assert_eq!(
        (
            r.requests,
            r.sent,
            r.retries,
            r.reconnects,
            r.abandoned,
            r.replied
        ),
        (1, 3, 2, 2, 1, 0)
    );
    let retries: Vec<_> = rig
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Retry {
                attempt, reason, ..
            } => Some((*attempt, reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(1, "timeout"), (2, "timeout")]);
    assert!(matches!(
        rig.events.last(),
        Some(Event::Abandoned {
            seq: 1,
            attempts: 3,
            ..
        })
    ));
    assert_eq!(rig.m.next_deadline(), None);
    assert!(!rig.m.wants(slot2));
}

#[test]
fn a_reply_with_another_id_is_dropped_and_counted_and_the_right_one_accepted() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]));
    let (slot, msg) = sent(&rig.read(0, Some("1")));
    let id = id_of(&msg);
    let stale = rig.recv(10, slot, m(&[b"0000000000000001", b"", b"old"]));
    assert!(stale.is_empty(), "{stale:?}");
    assert_eq!(rig.m.report().mismatched, 1);
    assert!(matches!(rig.events.last(), Some(Event::Mismatch { got, .. }) if got == "old"));
    assert_eq!(
        rig.m.next_deadline(),
        Some(rig.at(100)),
        "still waiting for its own"
    );
    let ok = rig.recv(20, slot, m(&[&id, b"", b"1"]));
    assert!(
        ok.is_empty(),
        "the socket is kept, a read is already out: {ok:?}"
    );
    assert!(matches!(
        rig.events.last(),
        Some(Event::Reply { seq: 1, attempts: 1, reply, .. }) if reply == "1"
    ));
    // The next request reuses the answered DEALER, with a new id.
    let next = rig.read(30, Some("2"));
    assert!(opened(&next).is_empty());
    assert!(next.contains(&Output::Start(ReadNext)));
    let (again, msg2) = sent(&next);
    assert_eq!(again, slot);
    assert_ne!(id_of(&msg2), id);
    assert_eq!(rig.read(40, None), [], "one still in flight");
    rig.recv(50, slot, m(&[&id_of(&msg2), b"", b"2"]));
    assert_eq!(rig.m.outcome(), Some(Outcome::Completed));
    let r = rig.m.report();
    assert_eq!((r.requests, r.replied, r.mismatched, r.sent), (2, 2, 1, 2));
}

#[test]
fn a_reply_without_an_envelope_answers_nobody_it_is_counted_and_dropped() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]));
    let (slot, msg) = sent(&rig.read(0, Some("1")));
    let outputs = rig.recv(10, slot, m(&[b"1"]));
    assert!(outputs.is_empty(), "no request to retry: {outputs:?}");
    assert!(rig.m.wants(slot), "still waiting for its own");
    assert_eq!(rig.m.report().mismatched, 1);
    assert_eq!(rig.m.next_deadline(), Some(rig.at(100)));
    assert!(!rig.events.iter().any(|e| matches!(e, Event::Retry { .. })));
    rig.recv(20, slot, m(&[&id_of(&msg), b"", b"1"]));
    assert_eq!(rig.m.report().replied, 1);
}

#[test]
fn a_malformed_reply_with_its_id_fails_that_attempt_which_is_resent_with_a_new_id() {
    let (mut rig, _) = client_rig(mdp_config(Version::V1).with_window(2));
    rig.m = Client::new(&mdp_config(Version::V1).with_window(2))
        .with_correlation(Correlation::RequestId);
    let t0 = rig.t0;
    rig.start(t0);
    let (slot, msg) = sent(&rig.read(0, Some("hi")));
    let outputs = rig.recv(
        10,
        slot,
        m(&[&id_of(&msg), b"", b"MDPC01", b"other", b"hi"]),
    );
    assert!(closed(&outputs).is_empty(), "the peer answers: kept");
    let (again, resent) = sent(&outputs);
    assert_eq!(again, slot);
    assert_ne!(id_of(&resent), id_of(&msg));
    assert_eq!(rig.m.report().mismatched, 1);
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::Retry { reason, .. } if reason == "malformed reply")));
}

#[test]
fn with_check_echo_a_reply_that_is_not_the_request_is_retried() {
    let (mut rig, _) = client_rig(ClientConfig {
        check_echo: true,
        ..config(&["tcp://a:1"])
    });
    let (slot, msg) = sent(&rig.read(0, Some("1")));
    let outputs = rig.recv(10, slot, m(&[&id_of(&msg), b"", b"2"]));
    // The peer answered, so its socket is alive: the resend goes out on it, with a new id.
    assert!(closed(&outputs).is_empty(), "{outputs:?}");
    let (again, resent) = sent(&outputs);
    assert_eq!(again, slot);
    assert_ne!(id_of(&resent), id_of(&msg));
    assert!(rig.events.iter().any(
        |e| matches!(e, Event::Mismatch { expected, got, .. } if expected == "1" && got == "2")
    ));
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::Retry { reason, .. } if reason == "mismatched reply")));
}

#[test]
fn replies_are_reported_in_request_order_whatever_order_they_come_in() {
    let (mut rig, _) = client_rig(ClientConfig {
        window: 2,
        ..config(&["tcp://a:1"])
    });
    let one = rig.read(0, Some("1"));
    assert!(one.contains(&Output::Start(ReadNext)), "room for a second");
    let (s1, m1) = sent(&one);
    let two = rig.read(1, Some("2"));
    assert!(
        two.contains(&Output::Start(ReadNext)),
        "the window is full, one more is read ahead"
    );
    let (s2, m2) = sent(&two);
    assert_eq!(s1, s2, "one shared socket");
    assert!(opened(&two).is_empty());
    rig.recv(5, s2, m(&[&id_of(&m2), b"", b"2"]));
    assert!(
        !rig.events.iter().any(|e| matches!(e, Event::Reply { .. })),
        "held back"
    );
    rig.recv(6, s1, m(&[&id_of(&m1), b"", b"1"]));
    let order: Vec<u64> = rig
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Reply { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(order, [1, 2]);
    // A second copy of an answered request's reply: its id is no longer in flight.
    let (s3, m3) = sent(&rig.read(7, Some("3")));
    assert_eq!(s3, s1);
    rig.recv(8, s3, m(&[&id_of(&m1), b"", b"1"]));
    assert_eq!(rig.m.report().mismatched, 1);
    assert!(
        matches!(rig.events.last(), Some(Event::Mismatch { seq: 3, got, .. }) if got == "1"),
        "reported against the request waiting there"
    );
    rig.recv(9, s3, m(&[&id_of(&m3), b"", b"3"]));
    assert_eq!(rig.m.report().replied, 3);
}

#[test]
fn failover_waits_the_settle_delay_then_goes_round_the_endpoints_in_order() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1", "tcp://b:2"]));
    let (s1, _) = sent(&rig.read(0, Some("1")));
    let failed = rig.tick(rig.at(100));
    assert_eq!(
        failed,
        [Output::Close(s1)],
        "nothing goes out while the backup settles"
    );
    assert_eq!(rig.m.next_deadline(), Some(rig.at(600)));
    assert!(!rig.m.wants(s1));
    assert!(rig.tick(rig.at(599)).is_empty());
    let resent = rig.tick(rig.at(600));
    assert_eq!(opened(&resent)[0].connect, ["tcp://b:2"]);
    let (s2, _) = sent(&resent);
    assert!(rig.m.wants(s2));
    let back = rig.tick(rig.at(700));
    assert_eq!(back, [Output::Close(s2)]);
    let third = rig.tick(rig.at(1200));
    assert_eq!(opened(&third)[0].connect, ["tcp://a:1"], "round and round");
    assert_eq!(rig.m.report().reconnects, 2);
    assert!(rig
        .events
        .iter()
        .any(|e| matches!(e, Event::Sent { attempt: 3, .. })));
}

#[test]
fn a_request_read_after_a_failover_goes_to_the_new_endpoint() {
    let (mut rig, _) = client_rig(ClientConfig {
        window: 2,
        ..config(&["tcp://a:1", "tcp://b:2"])
    });
    sent(&rig.read(0, Some("1")));
    rig.tick(rig.at(100));
    assert!(
        rig.read(150, Some("2")).is_empty(),
        "held during the settle delay"
    );
    let both = rig.tick(rig.at(600));
    let specs = opened(&both);
    assert_eq!(specs.len(), 1, "one shared socket to the backup");
    assert_eq!(specs[0].connect, ["tcp://b:2"]);
    let sends: Vec<Slot> = both
        .iter()
        .filter_map(|o| match o {
            Output::Send { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert_eq!(sends, [specs[0].slot, specs[0].slot]);
}

impl ClientConfig {
    fn with_window(self, window: usize) -> Self {
        ClientConfig { window, ..self }
    }
}

/// The slots of every message sent in `outputs`, with the request ids they carry.
fn sends(outputs: &[Output<ReadNext>]) -> Vec<(Slot, Frame)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { slot, msg } => Some((*slot, id_of(msg))),
            _ => None,
        })
        .collect()
}

/// Sends `n` requests ("1".."n") at ms 0..n-1 through a window of `n`: their slot and ids.
fn fill(rig: &mut Rig<Client>, n: u64) -> Vec<(Slot, Frame)> {
    (1..=n)
        .flat_map(|i| sends(&rig.read(i - 1, Some(&i.to_string()))))
        .collect()
}

fn reply_seqs(seen: &[Event]) -> Vec<u64> {
    seen.iter()
        .filter_map(|e| match e {
            Event::Reply { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn a_window_of_requests_shares_one_socket_and_is_answered_in_request_order() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]).with_window(4));
    let mut outputs = Vec::new();
    for i in 1..=4 {
        outputs.extend(rig.read(i, Some(&i.to_string())));
    }
    let specs = opened(&outputs);
    assert_eq!(specs.len(), 1, "{outputs:?}");
    assert_eq!(specs[0].kind, SocketKind::Dealer);
    let slot = specs[0].slot;
    let flights = sends(&outputs);
    assert_eq!(flights.len(), 4);
    assert!(flights.iter().all(|(s, _)| *s == slot));
    let ids: BTreeSet<&Frame> = flights.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 4, "an id of its own each");
    assert!(rig.m.wants(slot));
    // Answers in the order 3, 1, 4, 2: reported 1, 2, 3, 4, each with its own reply.
    for (ms, i) in [(10, 3), (11, 1), (12, 4), (13, 2)] {
        let id = &flights[i - 1].1;
        let body = i.to_string();
        assert!(closed(&rig.recv(ms, slot, m(&[id, b"", body.as_bytes()]))).is_empty());
        if i == 1 {
            assert_eq!(reply_seqs(&rig.events), [1], "3 is held back until 2 is in");
        }
    }
    assert_eq!(reply_seqs(&rig.events), [1, 2, 3, 4]);
    for e in &rig.events {
        if let Event::Reply { seq, reply, .. } = e {
            assert_eq!(reply.text(), seq.to_string());
        }
    }
    assert!(!rig.m.wants(slot), "nothing in flight: not read");
    assert_eq!(rig.read(20, None), [Output::Exit]);
    let r = rig.m.report();
    assert_eq!(
        (r.replied, r.sent, r.mismatched, r.reconnects),
        (4, 4, 0, 0)
    );
}

#[test]
fn a_reply_whose_id_is_not_in_flight_is_dropped_and_the_others_still_answered() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]).with_window(3));
    let flights = fill(&mut rig, 3);
    let slot = flights[0].0;
    rig.recv(10, slot, m(&[&flights[1].1, b"", b"2"]));
    // The same reply again (a duplicate), and one for an id never sent.
    for id in [&flights[1].1, &b"ffffffffffffffff".to_vec()] {
        let dropped = rig.recv(11, slot, m(&[id, b"", b"2"]));
        assert!(dropped.is_empty(), "{dropped:?}");
    }
    assert_eq!(rig.m.report().mismatched, 2);
    assert_eq!(rig.m.report().retries, 0);
    rig.recv(12, slot, m(&[&flights[0].1, b"", b"1"]));
    rig.recv(13, slot, m(&[&flights[2].1, b"", b"3"]));
    assert_eq!(reply_seqs(&rig.events), [1, 2, 3]);
    assert_eq!(rig.m.report().replied, 3);
}

#[test]
fn a_timeout_on_a_socket_that_answers_others_resends_there_with_a_new_id() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]).with_window(2));
    let flights = fill(&mut rig, 2);
    let (slot, id1) = flights[0].clone();
    // Request 2's reply after request 1 went out: the connection is alive.
    rig.recv(50, slot, m(&[&flights[1].1, b"", b"2"]));
    let resent = rig.tick(rig.at(100));
    assert!(closed(&resent).is_empty(), "no reopen: {resent:?}");
    assert!(opened(&resent).is_empty());
    let again = sends(&resent);
    assert_eq!(again.len(), 1, "{resent:?}");
    assert_eq!(again[0].0, slot, "the same socket");
    assert_ne!(again[0].1, id1, "a fresh id");
    let r = rig.m.report();
    assert_eq!((r.retries, r.reconnects), (1, 0));
    // The first attempt's late reply is stale now; the second attempt's is the answer.
    rig.recv(120, slot, m(&[&id1, b"", b"1"]));
    assert_eq!(rig.m.report().mismatched, 1);
    assert_eq!(
        reply_seqs(&rig.events),
        Vec::<u64>::new(),
        "1 still unanswered"
    );
    rig.recv(130, slot, m(&[&again[0].1, b"", b"1"]));
    assert_eq!(reply_seqs(&rig.events), [1, 2]);
    assert!(matches!(
        rig.events
            .iter()
            .find(|e| matches!(e, Event::Reply { seq: 1, .. })),
        Some(Event::Reply { attempts: 2, .. })
    ));
}

#[test]
fn a_socket_silent_for_a_whole_timeout_is_reopened_and_its_other_requests_follow() {
    let (mut rig, _) = client_rig(ClientConfig {
        retries: 4,
        ..config(&["tcp://a:1"]).with_window(3)
    });
    let flights = fill(&mut rig, 3); // sent at 0, 1, 2
    let old = flights[0].0;
    // Nothing heard since request 1 went out: the connection looks dead.
    let first = rig.tick(rig.at(100));
    assert_eq!(first[0], Output::Close(old), "{first:?}");
    let fresh = opened(&first);
    assert_eq!(fresh.len(), 1);
    assert_eq!(
        (fresh[0].kind, fresh[0].identity.clone()),
        (SocketKind::Dealer, None)
    );
    let new = fresh[0].slot;
    assert_eq!(sends(&first).len(), 1);
    assert_eq!(sends(&first)[0].0, new);
    assert_eq!(rig.m.report().reconnects, 1);
    assert!(rig.m.wants(new));
    // Requests 2 and 3 went out on the closed socket: nothing can answer them there, and
    // each is resent on the fresh one when its own deadline passes, with no second reopen.
    assert!(rig.tick(rig.at(100)).is_empty(), "not their deadline yet");
    for ms in [101, 102] {
        let resent = rig.tick(rig.at(ms));
        assert!(
            closed(&resent).is_empty() && opened(&resent).is_empty(),
            "{resent:?}"
        );
        assert_eq!(
            sends(&resent).iter().map(|s| s.0).collect::<Vec<_>>(),
            [new]
        );
    }
    let r = rig.m.report();
    assert_eq!((r.retries, r.reconnects, r.sent), (3, 1, 6));
    // The fresh socket answers request 2 and 3 but not 1: alive, so 1 is resent on it.
    let latest = |rig: &Rig<Client>, seq: u64| match &rig.m.in_flight[&seq].via {
        Via::Shared { id, .. } => id.clone(),
        other => panic!("{other:?}"),
    };
    let (id2, id3) = (latest(&rig, 2), latest(&rig, 3));
    rig.recv(150, new, m(&[&id2, b"", b"2"]));
    rig.recv(151, new, m(&[&id3, b"", b"3"]));
    let third = rig.tick(rig.at(200));
    assert!(closed(&third).is_empty(), "{third:?}");
    assert_eq!(sends(&third)[0].0, new);
    // Silence again, for a whole timeout: reopened a second time.
    let fourth = rig.tick(rig.at(300));
    assert_eq!(closed(&fourth), [new]);
    assert_eq!(opened(&fourth).len(), 1);
    assert_eq!(rig.m.report().reconnects, 2);
    // The fourth attempt was the last: abandoned.
    assert_eq!(rig.tick(rig.at(400)), [Output::Exit]);
    assert_eq!(rig.m.outcome(), Some(Outcome::Abandoned));
    // What was answered is still reported, in order, at the end; 1 never was.
    assert_eq!(reply_seqs(&rig.events), [2, 3]);
    assert!(rig.events.iter().any(|e| matches!(
        e,
        Event::Abandoned {
            seq: 1,
            attempts: 4,
            ..
        }
    )));
}

#[test]
fn the_reply_that_let_a_request_out_is_no_sign_of_life_for_it() {
    // Window 1: request 2 goes out in the same instant request 1's reply came in.
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]));
    let (slot, msg) = sent(&rig.read(0, Some("1")));
    rig.read(1, Some("2"));
    let next = rig.recv(5, slot, m(&[&id_of(&msg), b"", b"1"]));
    assert_eq!(sends(&next)[0].0, slot);
    let timed_out = rig.tick(rig.at(105));
    assert_eq!(
        closed(&timed_out),
        [slot],
        "silent since it went out: reopened"
    );
    assert_eq!(rig.m.report().reconnects, 1);
}

#[test]
fn a_batch_read_fills_the_window_and_the_rest_waits_without_another_read() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]).with_window(2));
    let batch = ["1", "2", "3"].map(Request::line).to_vec();
    let now = rig.at(0);
    let outputs = rig.done(batch, now);
    let flights = sends(&outputs);
    assert_eq!(flights.len(), 2, "the window's worth: {outputs:?}");
    assert!(
        !outputs.contains(&Output::Start(ReadNext)),
        "one request is still ahead: no read"
    );
    let answered = rig.recv(5, flights[0].0, m(&[&flights[0].1, b"", b"1"]));
    assert_eq!(sends(&answered).len(), 1, "the third goes out");
    assert!(answered.contains(&Output::Start(ReadNext)), "now read more");
    assert_eq!(rig.m.report().requests, 3);
}

#[test]
fn requests_the_reader_has_ready_are_sent_without_a_read_job() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let mut ready = (1..=4).map(|i| Request::line(i.to_string()));
    let reader = Arc::new(ReadAhead::new(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            ready.next()
        },
        3,
    ));
    // Once the reader is making its 4th request, the queue holds the first 3.
    let waited = Instant::now();
    while produced.load(Ordering::SeqCst) < 4 {
        assert!(waited.elapsed() < Duration::from_secs(10), "reader stuck");
        std::thread::sleep(MS);
    }
    let config = ClientConfig {
        window: 2,
        ..config(&["tcp://a:1"])
    };
    let mut c = Client::new(&config).reading_from(Arc::clone(&reader));
    let mut out = Outbox::default();
    c.start(Instant::now(), &mut out, &mut Events::discard());
    let outputs = out.take();
    assert_eq!(
        sends(&outputs).len(),
        2,
        "the window's worth at once: {outputs:?}"
    );
    assert!(
        !outputs.contains(&Output::Start(ReadNext)),
        "the third is read ahead already: no job"
    );
    assert_eq!(c.ahead.len(), 1);
}

#[test]
fn replies_held_behind_a_request_still_in_flight_are_bounded() {
    let window = 2;
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]).with_window(window));
    let (slot, _) = sent(&rig.read(0, Some("stuck")));
    // Request 1 is never answered; every later one is, at once, and held behind it.
    let limit = window * HELD_WINDOWS;
    for i in 2..=limit + 1 {
        let outputs = rig.read(1, Some(&i.to_string()));
        let (_, msg) = sent(&outputs);
        rig.recv(1, slot, m(&[&id_of(&msg), b"", i.to_string().as_bytes()]));
    }
    assert_eq!(rig.m.held.len(), limit);
    assert_eq!(
        reply_seqs(&rig.events),
        Vec::<u64>::new(),
        "all behind request 1"
    );
    let full = rig.read(2, Some("one too many"));
    assert!(sends(&full).is_empty(), "not started: {full:?}");
    assert!(
        !full.contains(&Output::Start(ReadNext)),
        "and nothing more read"
    );
    // Request 1's answer releases them all, in order, and the next request goes out.
    let id1 = match &rig.m.in_flight[&1].via {
        Via::Shared { id, .. } => id.clone(),
        other => panic!("{other:?}"),
    };
    let released = rig.recv(3, slot, m(&[&id1, b"", b"stuck"]));
    assert_eq!(sends(&released).len(), 1);
    assert_eq!(
        reply_seqs(&rig.events),
        (1..=limit as u64 + 1).collect::<Vec<_>>()
    );
}

fn mdp_config(version: Version) -> ClientConfig {
    ClientConfig {
        framing: mdp(version),
        ..config(&["tcp://a:1"])
    }
}

#[test]
fn a_broker_that_answers_200_to_the_probe_gets_request_ids() {
    let (mut rig, _) = client_rig(mdp_config(Version::V1));
    let asked = rig.read(0, Some("hi"));
    let probe = &opened(&asked)[0];
    assert_eq!(probe.kind, SocketKind::Req);
    let (ps, question) = sent(&asked);
    assert_eq!(question, m(&[b"MDPC01", b"mmi.correlate", b"1"]));
    assert!(rig.m.wants(ps));
    let answered = rig.recv(5, ps, m(&[b"MDPC01", b"mmi.correlate", b"200"]));
    assert_eq!(closed(&answered), [ps]);
    assert_eq!(opened(&answered)[0].kind, SocketKind::Dealer);
    let (_, request) = sent(&answered);
    let id = id_of(&request);
    assert_eq!(request, m(&[&id, b"", b"MDPC01", b"echo", b"hi"]));
    // Known now: no second question.
    assert_eq!(rig.m.correlation[0], Some(Correlation::RequestId));
}

#[test]
fn a_broker_that_refuses_or_ignores_the_probe_gets_a_socket_per_request() {
    // 501: the Guide's broker.
    let (mut rig, _) = client_rig(mdp_config(Version::V1));
    let (ps, _) = sent(&rig.read(0, Some("hi")));
    let answered = rig.recv(5, ps, m(&[b"MDPC01", b"mmi.correlate", b"501"]));
    assert_eq!(opened(&answered)[0].kind, SocketKind::Req);
    let (s, request) = sent(&answered);
    assert_eq!(request, m(&[b"MDPC01", b"echo", b"hi"]));
    // The answer closes the REQ socket: one socket per request.
    let done = rig.recv(6, s, m(&[b"MDPC01", b"echo", b"hi"]));
    assert_eq!(done, [Output::Close(s)]);

    // Silence: the probe's own deadline.
    let (mut rig, _) = client_rig(mdp_config(Version::V2));
    let (ps, question) = sent(&rig.read(0, Some("hi")));
    assert_eq!(question, m(&[b"MDPC02", &[1], b"mmi.correlate", b"1"]));
    assert_eq!(rig.m.next_deadline(), Some(rig.at(100)));
    let timed_out = rig.tick(rig.at(100));
    assert_eq!(closed(&timed_out), [ps]);
    assert_eq!(opened(&timed_out)[0].kind, SocketKind::Dealer);
    assert_eq!(sent(&timed_out).1, m(&[b"MDPC02", &[1], b"echo", b"hi"]));
    assert_eq!(rig.m.correlation[0], Some(Correlation::Socket));
    assert_eq!(rig.m.report().retries, 0, "a probe is not an attempt");
}

/// A 0.1 client of service `echo` with one attempt per request, ids not asked about.
fn one_attempt_rig() -> Rig<Client> {
    let config = ClientConfig {
        retries: 1,
        ..mdp_config(Version::V1)
    };
    let (mut rig, _) = client_rig(config.clone());
    rig.m = Client::new(&config).with_correlation(Correlation::Socket);
    let t0 = rig.t0;
    rig.start(t0);
    rig
}

fn error_lines(seen: &[Event]) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match e {
            Event::Log {
                level: crate::event::Level::Error,
                message,
            } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn giving_up_on_a_broker_that_has_no_worker_says_so_with_its_own_outcome() {
    let mut rig = one_attempt_rig();
    sent(&rig.read(0, Some("hi")));
    // The one attempt times out: before giving up, the client asks mmi.service.
    let asked = rig.tick(rig.at(100));
    let (ps, question) = sent(&asked);
    assert_eq!(question, m(&[b"MDPC01", b"mmi.service", b"echo"]));
    assert_eq!(rig.m.outcome(), None, "it waits for the answer");
    assert_eq!(
        rig.m.next_deadline(),
        Some(rig.at(200)),
        "nothing else is due"
    );
    let answered = rig.recv(110, ps, m(&[b"MDPC01", b"mmi.service", b"404"]));
    assert!(answered.contains(&Output::Exit), "{answered:?}");
    assert_eq!(rig.m.outcome(), Some(Outcome::NoService));
    assert_eq!(rig.m.report().abandoned, 1);
    let errors = error_lines(&rig.events);
    assert!(
        errors
            .iter()
            .any(|e| e.contains(r#"no worker for service "echo""#)),
        "{errors:?}"
    );
}

#[test]
fn a_refused_login_stops_the_run_at_the_first_timeout_with_its_own_outcome() {
    let mut rig = one_attempt_rig();
    rig.m.refusals = |_| Some("its authenticator answered 400".into());
    sent(&rig.read(0, Some("hi")));
    let stopped = rig.tick(rig.at(100));
    assert!(stopped.contains(&Output::Exit), "{stopped:?}");
    assert_eq!(rig.m.outcome(), Some(Outcome::AuthRefused));
    assert_eq!(rig.m.report().abandoned, 1);
    assert!(error_lines(&rig.events)
        .iter()
        .any(|e| e.starts_with("authentication refused by tcp://")));
}

#[test]
fn an_echoed_mmi_question_stops_the_run_as_another_protocol() {
    let (mut rig, _) = client_rig(mdp_config(Version::V1));
    let t0 = rig.t0;
    rig.start(t0);
    let (ps, question) = sent(&rig.read(0, Some("hi")));
    let echoed = rig.recv(5, ps, question);
    assert!(echoed.contains(&Output::Exit), "{echoed:?}");
    assert_eq!(rig.m.outcome(), Some(Outcome::WrongProtocol));
    assert!(rig.events.iter().all(|e| !matches!(e, Event::Reply { .. })));
}

#[test]
fn a_majordomo_reply_to_a_bare_request_stops_the_run_unless_the_request_was_one() {
    assert_eq!(
        majordomo_header(&m(&[b"MDPC01", b"", b"x"]), &m(&[b"hi"])),
        Some("MDPC01")
    );
    assert_eq!(
        majordomo_header(&m(&[b"MDPC02", b"x"]), &m(&[b"MDPC02"])),
        None
    );
    assert_eq!(majordomo_header(&m(&[b"hi"]), &m(&[b"hi"])), None);
}

#[test]
fn giving_up_on_a_broker_that_answers_nothing_is_the_offline_abandon() {
    let mut rig = one_attempt_rig();
    sent(&rig.read(0, Some("hi")));
    sent(&rig.tick(rig.at(100)));
    // No answer to mmi.service either: the broker itself seems gone.
    let gave_up = rig.tick(rig.at(200));
    assert!(gave_up.contains(&Output::Exit), "{gave_up:?}");
    assert_eq!(rig.m.outcome(), Some(Outcome::Abandoned));
    assert!(error_lines(&rig.events)
        .iter()
        .any(|e| e.contains("server seems to be offline")));
}

#[test]
fn a_timeout_with_retries_left_asks_mmi_service_once_and_warns_of_a_404() {
    let (mut rig, _) = client_rig(mdp_config(Version::V1));
    rig.m = Client::new(&mdp_config(Version::V1)).with_correlation(Correlation::Socket);
    let t0 = rig.t0;
    rig.start(t0);
    sent(&rig.read(0, Some("hi")));
    let retried = rig.tick(rig.at(100));
    let questions: Vec<Message> = retried
        .iter()
        .filter_map(|o| match o {
            Output::Send { msg, .. } if msg.get(1) == Some(&b"mmi.service"[..]) => {
                Some(msg.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(questions, [m(&[b"MDPC01", b"mmi.service", b"echo"])]);
    let probe = rig.m.probe.as_ref().map(|p| p.slot).unwrap();
    rig.recv(120, probe, m(&[b"MDPC01", b"mmi.service", b"404"]));
    assert!(rig.events.iter().any(|e| matches!(e,
        Event::Log { level: crate::event::Level::Warn, message }
            if message.contains("(mmi.service: 404)"))));
    assert_eq!(
        rig.m.outcome(),
        None,
        "retries go on: a worker may still come"
    );
}

#[test]
fn a_partial_restarts_the_timeout_and_the_final_completes_the_reply() {
    let (mut rig, _) = client_rig(mdp_config(Version::V2));
    rig.m = Client::new(&mdp_config(Version::V2))
        .with_correlation(Correlation::Socket)
        .keep_replies();
    let t0 = rig.t0;
    rig.start(t0);
    let (s, _) = sent(&rig.read(0, Some("hi")));
    assert!(rig
        .recv(90, s, m(&[b"MDPC02", &[2], b"echo", b"a"]))
        .is_empty());
    assert_eq!(rig.m.next_deadline(), Some(rig.at(190)));
    assert!(rig.tick(rig.at(150)).is_empty(), "the PARTIAL restarted it");
    rig.recv(160, s, m(&[b"MDPC02", &[3], b"echo", b"b"]));
    assert_eq!(rig.m.take_replies(), [m(&[b"a", b"b"])]);
    assert!(matches!(
        rig.events.last(),
        Some(Event::Reply { reply, .. }) if reply == "a\nb"
    ));
}

#[test]
fn the_end_of_the_source_ends_the_run_once_everything_is_answered() {
    let (mut rig, _) = client_rig(config(&["tcp://a:1"]));
    assert_eq!(rig.read(0, None), [Output::Exit]);
    assert_eq!(rig.m.outcome(), Some(Outcome::Completed));
    match rig
        .m
        .finish(Outcome::Interrupted, rig.at(5), &mut Events::discard())
    {
        Report::Client(r) => assert_eq!(r.outcome, Outcome::Completed, "ended once"),
        other => panic!("{other:?}"),
    }
}
