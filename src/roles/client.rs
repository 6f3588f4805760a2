//! `pirate client`: requests with a timeout per attempt, retries and socket reopen — the Lazy
//! Pirate algorithm — spoken either bare (to `pirate server` or a Pirate queue) or as a
//! Majordomo client (7/MDP 0.1 or 18/MDP 0.2) to a broker.
//!
//! Up to `window` requests are in flight at once, each on a socket of its own. A socket only
//! ever holds one request, and every retry closes it and opens a fresh one (new identity), so
//! a late reply to an earlier attempt arrives at a closed socket and can never be taken for the
//! answer to a later request (trap 9 in `protocols.md`), even though MDP replies carry no
//! request id. With `check_echo` (the Guide's `--count` sequence), a reply that is not the
//! request is reported as a mismatch and never accepted. Replies are reported in request
//! order, whatever order they complete in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::msg::Message;
use crate::proto::mdp::{self, ClientCommand, ClientMsg, Direction, Version};
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
}

/// Opens a fresh socket for one attempt, to the first endpoint.
pub(crate) fn open(ctx: &zmq::Context, config: &ClientConfig) -> Result<Socket> {
    open_at(ctx, config, &config.endpoint)
}

/// Opens a fresh socket for one attempt, to `endpoint`.
fn open_at(ctx: &zmq::Context, config: &ClientConfig, endpoint: &str) -> Result<Socket> {
    let socket = transport::socket(ctx, config.framing.socket_type(), "client", None)?;
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

    fn send(&mut self, slot: &mut InFlight, events: &mut Events) -> Result<()> {
        let body = Message::from_frames(vec![slot.request.as_bytes()]);
        slot.socket.send(self.config.framing.encode(body), events)?;
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

/// Sends every request and reports each reply as an event, in request order. Returns the
/// summary; its outcome says whether the run completed, abandoned or was interrupted.
pub fn run(
    config: &ClientConfig,
    requests: impl IntoIterator<Item = String>,
    events: &mut Events,
) -> Result<Report> {
    let ctx = zmq::Context::new();
    let retries = config.retries.max(1);
    let window = config.window.max(1);
    let endpoints = config.endpoints();
    let mut current = 0usize;
    let mut run = Run {
        config,
        report: ClientReport {
            endpoint: endpoints.join(","),
            outcome: Outcome::Completed,
            requests: 0,
            sent: 0,
            replied: 0,
            retries: 0,
            reconnects: 0,
            abandoned: 0,
            mismatched: 0,
            elapsed_ms: 0.0,
            latency_ms: Default::default(),
        },
        latency: LatencyRecorder::default(),
        started: Instant::now(),
        held: BTreeMap::new(),
        next_to_emit: 1,
    };
    // Sockets whose request was answered, kept for the next request (a REQ socket is ready to
    // send again once it has received; a DEALER after its FINAL). The first one is opened
    // before anything else so that a bad endpoint is reported before the run starts.
    // Every endpoint is checked now, so a bad one is reported before the run starts; the
    // first endpoint's socket is kept for the first request.
    let mut spare: Vec<(Socket, usize)> = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let socket = open_at(&ctx, config, endpoint)?;
        if i == current {
            spare.push((socket, i));
        }
    }
    events.emit(Event::Started {
        role: "client".into(),
        endpoint: endpoints.join(","),
        seed: None,
    });
    let mut requests = requests.into_iter();
    let mut exhausted = false;
    let mut in_flight: Vec<InFlight> = Vec::with_capacity(window);
    loop {
        if shutdown::requested() {
            return Ok(run.finish(Outcome::Interrupted, events));
        }
        while !exhausted && in_flight.len() < window {
            let Some(request) = requests.next() else {
                exhausted = true;
                break;
            };
            run.report.requests += 1;
            let socket = match spare.pop() {
                Some((s, at)) if at == current => s,
                _ => open_at(&ctx, config, &endpoints[current])?,
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
            };
            run.send(&mut slot, events)?;
            in_flight.push(slot);
        }
        if in_flight.is_empty() {
            return Ok(run.finish(Outcome::Completed, events));
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
                match config.framing.decode(msg) {
                    Ok(Received::Partial(body)) => {
                        slot.partials.push(body.text());
                        slot.deadline = Instant::now() + config.timeout;
                        still.push(slot);
                        continue;
                    }
                    Ok(Received::Final(body)) => {
                        let mut parts = std::mem::take(&mut slot.partials);
                        parts.push(body.text());
                        let text = parts.join("\n");
                        if !config.check_echo || text == slot.request {
                            // The socket got its one reply: it can carry the next request.
                            let at = slot.at;
                            spare.push((run.accept(slot, text, events), at));
                            continue;
                        }
                        run.report.mismatched += 1;
                        events.emit(Event::Mismatch {
                            seq: slot.seq,
                            expected: slot.request.clone(),
                            got: text.clone(),
                        });
                        events.error(format!("malformed reply from server: {text}"));
                        failure = Some("mismatched reply");
                    }
                    Err(reason) => {
                        run.report.mismatched += 1;
                        events.error(format!("malformed reply from server: {reason}"));
                        failure = Some("malformed reply");
                    }
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
            if endpoints.len() > 1 && slot.at == current {
                // Binary Star: the server we were talking to seems gone; try the next one,
                // after giving it time to take over.
                current = (current + 1) % endpoints.len();
                events.warn(format!("failing over to {}", endpoints[current]));
                if shutdown::sleep(config.settle).is_err() {
                    return Ok(run.finish(Outcome::Interrupted, events));
                }
            }
            events.info("reconnecting to server…");
            slot.socket = open_at(&ctx, config, &endpoints[current])?;
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
            return Ok(run.finish(Outcome::Abandoned, events));
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
    fn replies_for_another_service_or_version_are_refused() {
        let f = mdp(Version::V1);
        assert!(f.decode(m(&[b"MDPC01", b"other", b"hi"])).is_err());
        assert!(f.decode(m(&[b"MDPC02", &[3], b"echo", b"hi"])).is_err());
        assert!(f.decode(m(&[b"junk"])).is_err());
    }
}
