//! `pirate server`: the Lazy Pirate server. A REP socket that answers each request with the
//! handler's reply, injecting crashes and overloads as the fault plan says.
//!
//! [`Server`] is the protocol logic as a pure [`Machine`]; [`run`] hands it to the reactor.
//! A REP socket holds one request at a time, so the machine reads only while idle; a stall
//! (work, overload, freeze) is a deadline of the machine, not a sleep, and the handler runs on
//! a work thread so `--exec` never blocks the loop.
//!
//! As a Binary Star node ([`Server::router`], wrapped in [`crate::roles::bstar_server::Bstar`])
//! the server binds a ROUTER instead, so a request the node refuses can be dropped without
//! owing a reply: requests from REQ clients arrive as `[identity]["" ][body…]`, and the
//! envelope (every frame up to and including the first empty one) goes back in front of the
//! handler's reply. A request with no empty frame is not a REQ request: counted as invalid
//! and dropped.

use std::time::Instant;

use crate::error::Result;
use crate::event::{Event, Events, Report, ServiceReport};
use crate::faults::{FaultPlan, Faults};
use crate::handler::Handler;
use crate::msg::Message;
use crate::reactor::{self, Input, Machine, Outbox, Slot, SocketKind, SocketSpec, Stop};
use crate::roles::one_at_a_time::OneAtATime;

/// Everything `pirate server` needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to bind the REP socket (Guide: `tcp://*:5555`).
    pub bind: String,
    pub handler: Handler,
    pub faults: FaultPlan,
    pub seed: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "tcp://*:5555".into(),
            handler: Handler::Echo,
            faults: FaultPlan::default(),
            seed: 0,
        }
    }
}

/// The server's one socket.
const SOCKET: Slot = 0;

/// The Lazy Pirate server's logic: one request at a time, faults decided per cycle.
pub struct Server {
    bind: String,
    /// REP (Lazy Pirate) or ROUTER (a Binary Star node, which may drop a request).
    kind: SocketKind,
    faults: Faults,
    report: ServiceReport,
    /// The request being served, with the ROUTER envelope to put back in front of its reply
    /// (`None` behind REP).
    serving: OneAtATime<Message, Option<Vec<Vec<u8>>>>,
    /// When an injected freeze ends: a Binary Star node publishes nothing until then.
    frozen_until: Option<Instant>,
}

impl Server {
    pub fn new(config: &ServerConfig) -> Self {
        Server {
            bind: config.bind.clone(),
            kind: SocketKind::Rep,
            faults: Faults::new(config.faults.clone(), config.seed),
            report: ServiceReport {
                endpoint: config.bind.clone(),
                seed: config.seed,
                ..Default::default()
            },
            serving: OneAtATime::default(),
            frozen_until: None,
        }
    }

    /// The same server on a ROUTER socket, answering through each request's envelope (a
    /// Binary Star node: see the module docs).
    pub fn router(config: &ServerConfig) -> Self {
        Server {
            kind: SocketKind::Router,
            ..Server::new(config)
        }
    }

    /// The final counters.
    pub fn into_report(self) -> ServiceReport {
        self.report
    }

    /// When an injected freeze ends, if one was decided (a Binary Star node stops publishing
    /// its state until then, on purpose: see [`crate::roles::bstar_server`]).
    pub fn frozen_until(&self) -> Option<Instant> {
        self.frozen_until
    }

    /// The counters so far.
    pub fn report(&self) -> &ServiceReport {
        &self.report
    }

    /// A request arrived: decide this cycle's fault and how long it stalls.
    fn request(
        &mut self,
        request: Message,
        now: Instant,
        out: &mut Outbox<Message>,
        events: &mut Events,
    ) {
        let (envelope, request) = match self.kind {
            SocketKind::Router => match split_envelope(request) {
                Some((envelope, body)) => (Some(envelope), body),
                None => {
                    self.report.invalid += 1;
                    events.invalid(
                        "server",
                        "request without an empty delimiter frame (expected a REQ client)",
                    );
                    return;
                }
            },
            _ => (None, request),
        };
        let taken = self.serving.take(
            &mut self.faults,
            &mut self.report,
            request,
            envelope,
            now,
            out,
            events,
        );
        if let Some(decision) = taken {
            // Nothing to keep alive while REP holds a request: a freeze looks like an
            // overload on the wire (it is still reported as the freeze it is).
            self.frozen_until = decision.frozen_until();
        }
    }
}

impl Machine for Server {
    /// A request for the handler.
    type Job = Message;
    /// The handler's reply.
    type Done = Message;

    fn sockets(&self) -> Vec<SocketSpec> {
        vec![SocketSpec::bound(SOCKET, self.kind, "server", &self.bind)]
    }

    fn start(&mut self, _now: Instant, _out: &mut Outbox<Message>, events: &mut Events) {
        events.emit(Event::started(
            "server",
            self.bind.clone(),
            Some(self.report.seed),
        ));
    }

    fn handle(
        &mut self,
        input: Input<Message>,
        now: Instant,
        out: &mut Outbox<Message>,
        events: &mut Events,
    ) {
        match input {
            Input::Message { msg, .. } => self.request(msg, now, out, events),
            Input::Done(reply) => {
                crate::handler::report_failures(&mut self.report, events);
                let Some((served, envelope)) = self.serving.done() else {
                    return;
                };
                let mut reply = reply;
                if let Some(envelope) = envelope {
                    reply.push_envelope(envelope);
                }
                out.send(SOCKET, reply);
                served.served_at(now, &mut self.report, events);
            }
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<Message>, _events: &mut Events) {
        self.serving.tick(now, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.serving.next_deadline()
    }

    fn wants(&self, _slot: Slot) -> bool {
        // A REP socket takes the next request only after it answered this one.
        self.serving.wants()
    }
}

/// Splits a ROUTER request into its envelope (up to and including the first empty frame,
/// which is dropped: [`Message::push_envelope`] puts it back) and its body; `None` if there
/// is no empty frame.
fn split_envelope(msg: Message) -> Option<(Vec<Vec<u8>>, Message)> {
    let mut frames = msg.into_frames();
    let delimiter = frames.iter().position(Vec::is_empty)?;
    let body = frames.split_off(delimiter + 1);
    frames.pop();
    Some((frames, Message::from(body)))
}

/// True if `msg` is a REQ client's request as a ROUTER receives it (it has a delimiter).
pub fn is_req_request(msg: &Message) -> bool {
    msg.iter().any(<[u8]>::is_empty)
}

/// Serves until `stop` is raised; returns the counters. Bind failures are errors.
pub fn run(config: &ServerConfig, stop: &Stop, events: &mut Events) -> Result<Report> {
    let mut server = Server::new(config);
    let handler = config.handler.clone();
    reactor::run(
        &mut server,
        move |request| handler.handle(request),
        stop,
        events,
    )?;
    Ok(Report::Service(server.report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FaultKind;
    use crate::reactor::Output;
    use crate::testkit::Rig;
    use std::time::Duration;

    fn body(text: &str) -> Message {
        Message::from_frames([text.as_bytes().to_vec()])
    }

    fn request(text: &str) -> Input<Message> {
        Input::Message {
            slot: SOCKET,
            msg: body(text),
        }
    }

    fn server(faults: FaultPlan) -> Server {
        Server::new(&ServerConfig {
            bind: "tcp://127.0.0.1:5555".into(),
            faults,
            seed: 7,
            ..Default::default()
        })
    }

    #[test]
    fn the_envelope_is_everything_up_to_the_first_empty_frame() {
        let m = Message::from_frames(vec![b"id".to_vec(), vec![], b"a".to_vec(), vec![]]);
        assert!(is_req_request(&m));
        let (env, body) = split_envelope(m).unwrap();
        assert_eq!(env, vec![b"id".to_vec()]);
        assert_eq!(body.into_frames(), vec![b"a".to_vec(), vec![]]);
        let hops = Message::from_frames(vec![b"p".to_vec(), b"id".to_vec(), vec![], b"x".to_vec()]);
        assert_eq!(split_envelope(hops).unwrap().0.len(), 2);
        let bare = Message::from_frames(vec![b"id".to_vec(), b"x".to_vec()]);
        assert!(!is_req_request(&bare));
        assert!(split_envelope(bare).is_none());
    }

    #[test]
    fn a_router_server_answers_behind_the_whole_envelope() {
        let mut rig = Rig::quiet(Server::router(&ServerConfig::default()));
        assert_eq!(rig.m.sockets()[0].kind, SocketKind::Router);
        let t0 = rig.t0;
        let msg = Message::from_frames(vec![b"p".to_vec(), b"id".to_vec(), vec![], b"x".to_vec()]);
        let out = rig.handle(Input::Message { slot: SOCKET, msg }, t0);
        assert_eq!(out, [Output::Start(body("x"))]);
        let out = rig.handle(Input::Done(body("X")), t0);
        let back = Message::from_frames(vec![b"p".to_vec(), b"id".to_vec(), vec![], b"X".to_vec()]);
        assert_eq!(
            out,
            [Output::Send {
                slot: SOCKET,
                msg: back
            }]
        );
        let bad = Message::from_frames(vec![b"id".to_vec(), b"x".to_vec()]);
        let out = rig.message(SOCKET, bad, t0);
        assert!(out.is_empty());
        assert_eq!((rig.m.report().requests, rig.m.report().invalid), (1, 1));
    }

    #[test]
    fn a_freeze_is_remembered_until_it_ends() {
        let mut rig = Rig::quiet(server(FaultPlan {
            freeze_rate: 1.0,
            freeze_for: Duration::from_millis(300),
            faults_after: 0,
            ..Default::default()
        }));
        let t0 = rig.t0;
        assert_eq!(rig.m.frozen_until(), None);
        rig.handle(request("1"), t0);
        assert_eq!(rig.m.frozen_until(), Some(t0 + Duration::from_millis(300)));
        assert_eq!(rig.m.next_deadline(), Some(t0 + Duration::from_millis(300)));
    }

    #[test]
    fn start_binds_the_rep_socket_and_says_so() {
        let s = server(FaultPlan::default());
        match &s.sockets()[..] {
            [spec] => {
                assert_eq!(spec.kind, SocketKind::Rep);
                assert_eq!(spec.bind, ["tcp://127.0.0.1:5555"]);
            }
            other => panic!("{other:?}"),
        }
        let mut rig = Rig::quiet(s);
        assert!(rig.start(rig.t0).is_empty());
        assert!(matches!(rig.events[..], [Event::Started { .. }]));
    }

    #[test]
    fn a_request_goes_to_the_handler_at_once_and_its_reply_back() {
        let mut rig = Rig::quiet(server(FaultPlan::default()));
        let t0 = rig.t0;
        assert!(rig.m.wants(SOCKET));
        let out = rig.handle(request("1"), t0);
        assert_eq!(out, [Output::Start(body("1"))]);
        assert!(
            !rig.m.wants(SOCKET),
            "a REP server holds one request at a time"
        );
        let out = rig.handle(Input::Done(body("1")), t0);
        assert_eq!(
            out,
            [Output::Send {
                slot: SOCKET,
                msg: body("1")
            }]
        );
        assert!(rig.m.wants(SOCKET));
        assert_eq!((rig.m.report().requests, rig.m.report().replied), (1, 1));
    }

    #[test]
    fn work_is_a_deadline_not_a_sleep() {
        let work = Duration::from_millis(1000);
        let mut rig = Rig::quiet(server(FaultPlan {
            work,
            ..Default::default()
        }));
        let t0 = rig.t0;
        let out = rig.handle(request("1"), t0);
        assert!(out.is_empty());
        assert_eq!(rig.m.next_deadline(), Some(t0 + work));
        let out = rig.tick(t0 + work / 2);
        assert!(out.is_empty());
        let out = rig.tick(t0 + work);
        assert_eq!(out, [Output::Start(body("1"))]);
        assert_eq!(rig.m.next_deadline(), None);
    }

    #[test]
    fn an_overload_adds_its_stall_to_the_work_and_is_counted() {
        let mut rig = Rig::quiet(server(FaultPlan {
            overload_rate: 1.0,
            overload_for: Duration::from_secs(2),
            faults_after: 0,
            ..Default::default()
        }));
        let t0 = rig.t0;
        rig.handle(request("1"), t0);
        assert_eq!(rig.m.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(rig.m.report().overloads, 1);
        assert!(rig.events.iter().any(|e| matches!(
            e,
            Event::Fault {
                kind: FaultKind::Overload,
                cycle: 1,
                duration_ms: Some(2000)
            }
        )));
    }

    #[test]
    fn a_crash_asks_the_reactor_to_die_without_answering() {
        let mut rig = Rig::quiet(server(FaultPlan {
            crash_after: Some(1),
            ..Default::default()
        }));
        let t0 = rig.t0;
        rig.handle(request("1"), t0);
        rig.handle(Input::Done(body("1")), t0);
        let out = rig.handle(request("2"), t0);
        assert_eq!(out, [Output::Crash]);
        assert!(!rig.m.wants(SOCKET), "nothing is read after a crash");
    }

    #[test]
    fn the_served_event_reports_the_request_and_the_time_it_took() {
        let mut rig = Rig::quiet(server(FaultPlan::default()));
        rig.handle(request("hello"), rig.t0);
        rig.done(body("hello"), rig.at(5));
        match rig.events.last() {
            Some(Event::Served {
                cycle,
                request,
                bytes,
                work_ms,
            }) => {
                assert_eq!((*cycle, request.as_str(), *bytes), (1, "hello", 5));
                assert!((*work_ms - 5.0).abs() < 0.01);
            }
            other => panic!("{other:?}"),
        }
    }
}
