//! `pirate client`: requests with a timeout per attempt, retries and socket reopen — the Lazy
//! Pirate algorithm — spoken either bare (to `pirate server`, any REP server, or a Pirate
//! queue) or as a Majordomo client (7/MDP 0.1 or 18/MDP 0.2) to a broker.
//!
//! # Which reply answers which request
//! A client must never take a reply for the answer to a request it does not answer (trap 9 in
//! `protocols.md`): a server that sends a stale copy of its previous reply, a proxy that
//! duplicates or delays, a late reply to an earlier attempt. Two mechanisms, chosen per
//! endpoint ([`Correlation`]):
//! - **Request ids** (bare, always; Majordomo when the broker answers `mmi.correlate` with
//!   `200`, i.e. `pirate broker`): each attempt goes out on a DEALER as
//!   `[id]["" ][request…]` ([`crate::proto::correlate`]) with an id never used before; REP
//!   sockets, queues and the pirate broker echo the envelope. A reply whose id is not the one
//!   in flight on that socket is dropped, counted in `mismatched`, reported as a `mismatch`
//!   event and traced under `-v`, and the client keeps waiting for its own.
//! - **A socket per request** (Majordomo to a broker that does not carry request ids): the
//!   standard frames on a fresh REQ (0.1) or DEALER (0.2) for every request and every retry,
//!   so the only reply that can reach a socket is one routed for the one request it carried.
//!
//! Either way every retry closes the socket and opens a fresh one (the Guide's Lazy Pirate),
//! and with `check_echo` (the Guide's `--count` sequence) a reply that is not equal to its
//! request is reported as a mismatch, never accepted, and the request retried.
//!
//! Up to `window` requests are in flight at once, each on a socket of its own. Replies are
//! reported in request order, whatever order they complete in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::msg::{Frame, Message};
use crate::proto::correlate::{self, RequestIds};
use crate::proto::mdp::{self, ClientCommand, ClientMsg, Direction, Version};
use crate::proto::mmi;
use crate::shutdown;
use crate::stats::{millis, LatencyRecorder};
use crate::transport::{self, Socket};

/// What goes around a request body on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The body alone (Lazy Pirate server, Simple/Paranoid Pirate queue).
    Bare,
    /// A Majordomo client request for `service`.
    Majordomo { version: Version, service: String },
}

/// What a received message turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A 0.2 PARTIAL: more is coming.
    Partial(Message),
    /// The (final) reply.
    Final(Message),
}

impl Framing {
    /// The socket type for one in-flight slot: REQ where the protocol allows (what the Guide
    /// and 7/MDP recommend), DEALER for 0.2, which has no empty delimiter. A window of N
    /// requests uses N such sockets, so each reply is matched to its request by the socket it
    /// arrives on.
    pub fn socket_type(&self) -> zmq::SocketType {
        match self {
            Framing::Majordomo {
                version: Version::V2,
                ..
            } => zmq::DEALER,
            _ => zmq::REQ,
        }
    }

    /// The frames to send for `body`, for a socket of `socket_type()`.
    pub fn encode(&self, body: Message) -> Message {
        match self {
            Framing::Bare => body,
            Framing::Majordomo { version, service } => {
                let mut msg = mdp::encode_client(ClientMsg {
                    version: *version,
                    command: ClientCommand::Request,
                    service: service.as_bytes().to_vec(),
                    body,
                });
                if *version == Version::V1 {
                    msg.pop_front(); // REQ adds the empty delimiter itself
                }
                msg
            }
        }
    }

    /// The socket type for `correlation`: a DEALER when the client adds request ids itself.
    pub fn socket_type_for(&self, correlation: Correlation) -> zmq::SocketType {
        match correlation {
            Correlation::RequestId => zmq::DEALER,
            Correlation::Socket => self.socket_type(),
        }
    }

    /// The frames to send for `body` with request id `id`, on a DEALER:
    /// `[id]["" ][request…]`, where the request is what a REQ socket would be given (so a 0.1
    /// request loses its leading `""`: the delimiter after the id takes its place).
    pub fn encode_with_id(&self, id: Frame, body: Message) -> Message {
        correlate::wrap(id, self.encode(body))
    }

    /// Reads a message received on a DEALER that sent `[id]["" ][request…]`: returns the id
    /// the reply carries and the reply. An error is a malformed reply.
    pub fn decode_with_id(&self, msg: Message) -> std::result::Result<(Frame, Received), String> {
        let (id, rest) = correlate::unwrap(msg).map_err(|e| e.to_string())?;
        Ok((id, self.decode(rest)?))
    }

    /// Reads a received message; an error is a malformed or misaddressed reply.
    pub fn decode(&self, mut msg: Message) -> std::result::Result<Received, String> {
        match self {
            Framing::Bare => Ok(Received::Final(msg)),
            Framing::Majordomo { version, service } => {
                if *version == Version::V1 {
                    msg.push_front(Vec::new()); // REQ stripped the delimiter
                }
                let reply =
                    mdp::decode_client(msg, Direction::FromBroker).map_err(|e| e.to_string())?;
                if reply.version != *version {
                    return Err("reply in another MDP version".into());
                }
                if reply.service != service.as_bytes() {
                    return Err(format!(
                        "reply for service {:?}, expected {service:?}",
                        String::from_utf8_lossy(&reply.service)
                    ));
                }
                Ok(match reply.command {
                    ClientCommand::Partial => Received::Partial(reply.body),
                    _ => Received::Final(reply.body),
                })
            }
        }
    }
}

/// How replies are tied to their requests on one endpoint (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Correlation {
    /// A request id in each request's envelope, echoed with its reply; sockets are reused.
    RequestId,
    /// Standard frames, one fresh socket per request.
    Socket,
}

/// Asks the broker at `endpoint` whether it carries request ids (`mmi.correlate`, see
/// [`crate::proto::mmi`]): [`Correlation::RequestId`] on `200`, else [`Correlation::Socket`],
/// also when no answer comes within `timeout` (a broker that treats unknown `mmi.*` as a
/// service nobody serves, or one that is down: then the run is correct, only slower). Bare
/// framing needs no question: REP servers and queues always echo the envelope.
pub fn probe_correlation(
    ctx: &zmq::Context,
    framing: &Framing,
    endpoint: &str,
    timeout: Duration,
    events: &mut Events,
) -> Result<Correlation> {
    let Framing::Majordomo { version, .. } = framing else {
        return Ok(Correlation::RequestId);
    };
    let ask = Framing::Majordomo {
        version: *version,
        service: String::from_utf8_lossy(mmi::CORRELATE).into_owned(),
    };
    let socket = transport::socket(ctx, ask.socket_type(), "client", None)?;
    socket.connect(endpoint)?;
    // One body frame: the Guide's brokers write their 501 over the last body frame and
    // crash on a request without one.
    socket.send(ask.encode(Message::from_frames([b"1".to_vec()])), events)?;
    let deadline = Instant::now() + timeout;
    let answer = loop {
        shutdown::check()?;
        if socket.poll_in(shutdown::slice_until(deadline))? {
            match ask.decode(socket.recv(events)?) {
                Ok(Received::Partial(_)) => continue,
                Ok(Received::Final(body)) => break Some(body.text()),
                Err(_) => break None,
            }
        } else if Instant::now() >= deadline {
            break None;
        }
    };
    let correlation = match answer.as_deref() {
        Some("200") => Correlation::RequestId,
        _ => Correlation::Socket,
    };
    if events.tracing() {
        events.info(match (&answer, correlation) {
            (_, Correlation::RequestId) => format!(
                "{endpoint} carries request ids (mmi.correlate: 200): replies are matched by id"
            ),
            (Some(other), _) => format!(
                "{endpoint} does not carry request ids (mmi.correlate: {other}): one socket per request"
            ),
            (None, _) => format!(
                "no answer to mmi.correlate from {endpoint} within {} ms: one socket per request",
                timeout.as_millis()
            ),
        });
    }
    Ok(correlation)
}

/// Everything the client needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Guide: `tcp://localhost:5555`.
    pub endpoint: String,
    /// How long one attempt waits for its reply (Guide: 2500 ms). A PARTIAL restarts it.
    pub timeout: Duration,
    /// Attempts per request, the first included (the Guide's REQUEST_RETRIES: 3).
    pub retries: u32,
    /// Every reply must equal its request (the Guide's test sequence).
    pub check_echo: bool,
    pub framing: Framing,
    /// Requests in flight at once (1: synchronous, as in the Guide).
    pub window: usize,
    /// More endpoints to fail over to (Binary Star): after a failed attempt the client moves
    /// to the next endpoint, waits `settle`, and resends there.
    pub failover: Vec<String>,
    /// Wait after switching endpoints, for the backup to take over (Guide: 2000 ms).
    pub settle: Duration,
}

impl ClientConfig {
    /// Every endpoint, the first one first.
    pub fn endpoints(&self) -> Vec<String> {
        let mut all = vec![self.endpoint.clone()];
        all.extend(self.failover.iter().cloned());
        all
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: "tcp://localhost:5555".into(),
            timeout: Duration::from_millis(2500),
            retries: 3,
            check_echo: false,
            framing: Framing::Bare,
            window: 1,
            failover: Vec::new(),
            settle: Duration::from_millis(2000),
        }
    }
}

/// One request in flight on its own socket.
struct InFlight {
    seq: u64,
    request: String,
    attempt: u32,
    first_sent: Instant,
    deadline: Instant,
    partials: Vec<String>,
    socket: Socket,
    /// Which endpoint the socket is connected to.
    at: usize,
    /// How this socket ties replies to the request.
    correlation: Correlation,
    /// The request id of the attempt in flight ([`Correlation::RequestId`] only).
    id: Option<Frame>,
}

/// Opens a fresh socket for one attempt, to the first endpoint, for standard frames (the
/// library's [`crate::majordomo::MdpClient`], which uses one socket per attempt).
pub(crate) fn open(ctx: &zmq::Context, config: &ClientConfig) -> Result<Socket> {
    open_at(ctx, config, &config.endpoint, Correlation::Socket)
}

/// Opens a fresh socket for one attempt, to `endpoint`.
fn open_at(
    ctx: &zmq::Context,
    config: &ClientConfig,
    endpoint: &str,
    correlation: Correlation,
) -> Result<Socket> {
    let kind = config.framing.socket_type_for(correlation);
    let socket = transport::socket(ctx, kind, "client", None)?;
    socket.connect(endpoint)?;
    Ok(socket)
}

/// The run's counters and the in-order reply buffer.
struct Run<'c> {
    config: &'c ClientConfig,
    report: ClientReport,
    latency: LatencyRecorder,
    started: Instant,
    /// Replies completed ahead of an earlier request, held back to keep stdout in order.
    held: BTreeMap<u64, Event>,
    next_to_emit: u64,
    ids: RequestIds,
}

impl Run<'_> {
    fn finish(mut self, outcome: Outcome, events: &mut Events) -> Report {
        // Whatever completed is reported, in order, even when the run stops early.
        for (_, event) in std::mem::take(&mut self.held) {
            events.emit(event);
        }
        self.report.outcome = outcome;
        self.report.elapsed_ms = millis(self.started.elapsed());
        self.report.latency_ms = self.latency.summary();
        Report::Client(self.report)
    }

    /// Records an accepted reply and hands back the slot's socket for the next request.
    fn accept(&mut self, slot: InFlight, reply: String, events: &mut Events) -> Socket {
        let latency = slot.first_sent.elapsed();
        self.latency.record(latency);
        self.report.replied += 1;
        if self.config.check_echo {
            events.info(format!("server replied OK ({reply})"));
        }
        self.held.insert(
            slot.seq,
            Event::Reply {
                seq: slot.seq,
                request: slot.request.clone(),
                reply,
                attempts: slot.attempt,
                latency_ms: millis(latency),
            },
        );
        while let Some(event) = self.held.remove(&self.next_to_emit) {
            events.emit(event);
            self.next_to_emit += 1;
        }
        slot.socket
    }

    /// A reply that is not the answer to the request in flight: counted, reported as a
    /// `mismatch` event, and (`-v`) traced with why.
    fn refuse(&mut self, slot: &InFlight, got: String, why: &str, events: &mut Events) {
        self.report.mismatched += 1;
        if events.tracing() {
            events.warn(format!("dropped a reply ({why}): {}", preview(&got)));
        }
        events.emit(Event::Mismatch {
            seq: slot.seq,
            expected: slot.request.clone(),
            got,
        });
    }

    fn send(&mut self, slot: &mut InFlight, events: &mut Events) -> Result<()> {
        let body = Message::from_frames(vec![slot.request.as_bytes()]);
        let msg = match slot.correlation {
            Correlation::RequestId => {
                let id = self.ids.next_id();
                slot.id = Some(id.clone());
                self.config.framing.encode_with_id(id, body)
            }
            Correlation::Socket => self.config.framing.encode(body),
        };
        slot.socket.send(msg, events)?;
        events.emit(Event::Sent {
            seq: slot.seq,
            request: slot.request.clone(),
            attempt: slot.attempt,
        });
        slot.deadline = Instant::now() + self.config.timeout;
        self.report.sent += 1;
        Ok(())
    }
}

/// A reply cut short for a log line.
fn preview(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// What one received message means for the slot it arrived on.
enum Verdict {
    /// The answer (the FINAL, or the one reply).
    Answer(String),
    /// A 0.2 PARTIAL of the answer.
    Partial(String),
    /// Not an answer to this request: dropped, keep waiting.
    Stale,
    /// Wrong or malformed: the attempt failed.
    Failed(&'static str),
}

/// Reads one message received on `slot`'s socket.
fn judge(run: &mut Run, slot: &mut InFlight, msg: Message, events: &mut Events) -> Verdict {
    let framing = &run.config.framing;
    let decoded = match slot.correlation {
        Correlation::RequestId => match framing.decode_with_id(msg) {
            Ok((id, received)) if Some(&id) == slot.id.as_ref() => Ok(received),
            Ok((id, received)) => {
                let body = match received {
                    Received::Partial(b) | Received::Final(b) => b.text(),
                };
                let why = format!(
                    "request id {} is not {}, the one in flight",
                    String::from_utf8_lossy(&id),
                    String::from_utf8_lossy(slot.id.as_deref().unwrap_or_default())
                );
                run.refuse(slot, body, &why, events);
                return Verdict::Stale;
            }
            Err(e) => Err(e),
        },
        Correlation::Socket => framing.decode(msg),
    };
    match decoded {
        Ok(Received::Partial(body)) => Verdict::Partial(body.text()),
        Ok(Received::Final(body)) => {
            let mut parts = std::mem::take(&mut slot.partials);
            parts.push(body.text());
            let text = parts.join("\n");
            if !run.config.check_echo || text == slot.request {
                return Verdict::Answer(text);
            }
            run.report.mismatched += 1;
            events.emit(Event::Mismatch {
                seq: slot.seq,
                expected: slot.request.clone(),
                got: text.clone(),
            });
            events.error(format!("malformed reply from server: {text}"));
            Verdict::Failed("mismatched reply")
        }
        Err(reason) => {
            run.report.mismatched += 1;
            events.error(format!("malformed reply from server: {reason}"));
            Verdict::Failed("malformed reply")
        }
    }
}

/// How each endpoint ties replies to requests, asked of a broker the first time it is used.
struct Endpoints {
    names: Vec<String>,
    correlation: Vec<Option<Correlation>>,
}

impl Endpoints {
    fn correlation(
        &mut self,
        at: usize,
        ctx: &zmq::Context,
        config: &ClientConfig,
        events: &mut Events,
    ) -> Result<Correlation> {
        if let Some(known) = self.correlation[at] {
            return Ok(known);
        }
        let found = probe_correlation(
            ctx,
            &config.framing,
            &self.names[at],
            config.timeout,
            events,
        )?;
        self.correlation[at] = Some(found);
        Ok(found)
    }
}

/// Sends every request and reports each reply as an event, in request order. Returns the
/// summary; its outcome says whether the run completed, abandoned or was interrupted.
pub fn run(
    config: &ClientConfig,
    requests: impl IntoIterator<Item = String>,
    events: &mut Events,
) -> Result<Report> {
    let ctx = zmq::Context::new();
    let endpoints = config.endpoints();
    let mut run = Run {
        config,
        report: ClientReport::new(endpoints.join(",")),
        latency: LatencyRecorder::default(),
        started: Instant::now(),
        held: BTreeMap::new(),
        next_to_emit: 1,
        ids: RequestIds::random(),
    };
    // Every endpoint is checked now, so a bad one is reported before the run starts.
    for endpoint in &endpoints {
        open_at(&ctx, config, endpoint, Correlation::Socket)?;
    }
    events.emit(Event::Started {
        role: "client".into(),
        endpoint: endpoints.join(","),
        seed: None,
    });
    let mut endpoints = Endpoints {
        correlation: vec![None; endpoints.len()],
        names: endpoints,
    };
    match serve(&ctx, config, requests, &mut endpoints, &mut run, events) {
        Ok(outcome) => Ok(run.finish(outcome, events)),
        Err(Error::Interrupted) => Ok(run.finish(Outcome::Interrupted, events)),
        Err(e) => Err(e),
    }
}

/// The request loop of [`run`]; returns how the run ended.
fn serve(
    ctx: &zmq::Context,
    config: &ClientConfig,
    requests: impl IntoIterator<Item = String>,
    endpoints: &mut Endpoints,
    run: &mut Run,
    events: &mut Events,
) -> Result<Outcome> {
    let retries = config.retries.max(1);
    let window = config.window.max(1);
    let count = endpoints.names.len();
    let mut current = 0usize;
    // Sockets whose request was answered, kept for the next request (a DEALER with request
    // ids only: a socket without them carries one request and is closed).
    let mut spare: Vec<(Socket, usize)> = Vec::new();
    let mut requests = requests.into_iter();
    let mut exhausted = false;
    let mut in_flight: Vec<InFlight> = Vec::with_capacity(window);
    loop {
        if shutdown::requested() {
            return Ok(Outcome::Interrupted);
        }
        while !exhausted && in_flight.len() < window {
            let Some(request) = requests.next() else {
                exhausted = true;
                break;
            };
            run.report.requests += 1;
            let correlation = endpoints.correlation(current, ctx, config, events)?;
            let socket = match spare.pop() {
                Some((s, at)) if at == current => s,
                _ => open_at(ctx, config, &endpoints.names[current], correlation)?,
            };
            let mut slot = InFlight {
                seq: run.report.requests,
                request,
                attempt: 1,
                first_sent: Instant::now(),
                deadline: Instant::now(),
                partials: Vec::new(),
                socket,
                at: current,
                correlation,
                id: None,
            };
            run.send(&mut slot, events)?;
            in_flight.push(slot);
        }
        if in_flight.is_empty() {
            return Ok(Outcome::Completed);
        }
        let earliest = in_flight
            .iter()
            .map(|s| s.deadline)
            .min()
            .expect("not empty");
        let readable: Vec<bool> = {
            let mut items: Vec<zmq::PollItem> = in_flight
                .iter()
                .map(|s| s.socket.raw().as_poll_item(zmq::POLLIN))
                .collect();
            match zmq::poll(&mut items, shutdown::slice_until(earliest)) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(Error::zmq("poll failed", e)),
            }
            items.iter().map(|i| i.is_readable()).collect()
        };
        let mut still: Vec<InFlight> = Vec::with_capacity(in_flight.len());
        let mut gave_up: Vec<InFlight> = Vec::new();
        for (mut slot, was_readable) in in_flight.drain(..).zip(readable) {
            let mut failure: Option<&str> = None;
            if was_readable {
                let msg = slot.socket.recv(events)?;
                match judge(run, &mut slot, msg, events) {
                    Verdict::Partial(text) => {
                        slot.partials.push(text);
                        slot.deadline = Instant::now() + config.timeout;
                        still.push(slot);
                        continue;
                    }
                    Verdict::Answer(text) => {
                        let (at, correlation) = (slot.at, slot.correlation);
                        let socket = run.accept(slot, text, events);
                        if correlation == Correlation::RequestId {
                            // Its request is answered: it can carry the next one.
                            spare.push((socket, at));
                        }
                        continue;
                    }
                    Verdict::Stale => {
                        still.push(slot);
                        continue;
                    }
                    Verdict::Failed(reason) => failure = Some(reason),
                }
            } else if Instant::now() >= slot.deadline {
                failure = Some("timeout");
            }
            let Some(reason) = failure else {
                still.push(slot);
                continue;
            };
            if slot.attempt >= retries {
                gave_up.push(slot);
                continue;
            }
            events.warn("no response from server, retrying…");
            events.emit(Event::Retry {
                seq: slot.seq,
                attempt: slot.attempt,
                reason: reason.into(),
            });
            run.report.retries += 1;
            // The old socket may still hold the unanswered request: close it (LINGER 0 drops
            // it) and open a fresh one, so nothing late from it can ever be read.
            if count > 1 && slot.at == current {
                // Binary Star: the server we were talking to seems gone; try the next one,
                // after giving it time to take over.
                current = (current + 1) % count;
                events.warn(format!("failing over to {}", endpoints.names[current]));
                shutdown::sleep(config.settle)?;
            }
            events.info("reconnecting to server…");
            slot.correlation = endpoints.correlation(current, ctx, config, events)?;
            slot.socket = open_at(ctx, config, &endpoints.names[current], slot.correlation)?;
            slot.at = current;
            slot.partials.clear();
            run.report.reconnects += 1;
            slot.attempt += 1;
            run.send(&mut slot, events)?;
            still.push(slot);
        }
        if !gave_up.is_empty() {
            // The server seems gone: give up on everything in flight, and say so for each
            // request, so that none of them is silently lost.
            events.error("server seems to be offline, abandoning");
            gave_up.extend(still);
            gave_up.sort_by_key(|s| s.seq);
            for slot in gave_up {
                run.report.abandoned += 1;
                events.emit(Event::Abandoned {
                    seq: slot.seq,
                    request: slot.request,
                    attempts: slot.attempt,
                });
            }
            return Ok(Outcome::Abandoned);
        }
        in_flight = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    fn mdp(version: Version) -> Framing {
        Framing::Majordomo {
            version,
            service: "echo".into(),
        }
    }

    #[test]
    fn bare_framing_sends_the_body_alone() {
        assert_eq!(Framing::Bare.encode(m(&[b"hi"])), m(&[b"hi"]));
        assert_eq!(Framing::Bare.socket_type(), zmq::REQ);
    }

    #[test]
    fn mdp01_over_req_leaves_the_delimiter_to_the_socket() {
        let f = mdp(Version::V1);
        assert_eq!(f.socket_type(), zmq::REQ);
        assert_eq!(f.encode(m(&[b"hi"])), m(&[b"MDPC01", b"echo", b"hi"]));
        assert_eq!(
            f.decode(m(&[b"MDPC01", b"echo", b"hi"])),
            Ok(Received::Final(m(&[b"hi"])))
        );
    }

    #[test]
    fn mdp02_uses_dealer_and_streams_partials() {
        let f = mdp(Version::V2);
        assert_eq!(f.socket_type(), zmq::DEALER);
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
            zmq::DEALER
        );
        assert_eq!(Framing::Bare.socket_type_for(Correlation::Socket), zmq::REQ);
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
}
