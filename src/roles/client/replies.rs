//! What arrived: a reply tied to its request (by request id or by its socket), judged
//! (answer, partial, failed, another protocol), refused or accepted.

use std::time::Instant;

use crate::event::{Event, Events};
use crate::msg::Message;
use crate::proto::{correlate, mdp};
use crate::reactor::Outbox;
use crate::stats::millis;

use super::{Client, ReadNext, Received, Via};

impl Client {
    /// A message on shared socket `c`: its request id says which request it answers. One
    /// without our envelope cannot be tied to any request: counted and dropped, like a reply
    /// whose id is not in flight (a stale copy, a duplicate, a late reply to an earlier
    /// attempt).
    pub(super) fn shared_reply(
        &mut self,
        c: usize,
        msg: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        self.conns[c].heard = Some(now);
        let slot = self.conns[c].slot;
        let (id, rest) = match correlate::unwrap(msg) {
            Ok(unwrapped) => unwrapped,
            Err(e) => {
                self.report.mismatched += 1;
                events.error(format!("malformed reply from server: {e}"));
                return;
            }
        };
        let owner = self.by_id.get(&id).copied().filter(|seq| {
            self.in_flight
                .get(seq)
                .is_some_and(|f| matches!(&f.via, Via::Shared { slot: s, .. } if *s == slot))
        });
        let decoded = self.config.framing.decode(rest);
        match owner {
            Some(seq) => self.reply(seq, decoded, now, out, events),
            None => {
                let got = match decoded {
                    Ok(Received::Partial(b) | Received::Final(b)) => b.text(),
                    Err(reason) => reason,
                };
                let why = format!(
                    "request id {} is not one in flight",
                    String::from_utf8_lossy(&id)
                );
                // Reported against the oldest request waiting on this socket: the one a
                // socket per request would have read it on.
                let oldest = self
                    .in_flight
                    .values()
                    .find(|f| matches!(&f.via, Via::Shared { slot: s, .. } if *s == slot))
                    .map(|f| f.seq);
                self.refuse(oldest, got, &why, events);
            }
        }
    }

    /// A message (`decoded`) for request `seq`'s attempt in flight.
    pub(super) fn reply(
        &mut self,
        seq: u64,
        decoded: std::result::Result<Received, String>,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        match self.judge(seq, decoded, events) {
            Verdict::Partial(part) => {
                if let Some(flight) = self.in_flight.get_mut(&seq) {
                    part.into_frames()
                        .into_iter()
                        .for_each(|f| flight.reply.push_back(f));
                    // A PARTIAL restarts the attempt's timeout.
                    flight.deadline = Some(now + self.config.timeout);
                }
            }
            Verdict::Answer(reply) => self.accept(seq, reply, now, out, events),
            Verdict::Failed(reason) => self.failed(seq, reason, now, out, events),
            Verdict::WrongProtocol(why) => self.wrong_protocol(why, now, out, events),
        }
    }

    /// What a message for request `seq` means.
    pub(super) fn judge(
        &mut self,
        seq: u64,
        decoded: std::result::Result<Received, String>,
        events: &mut Events,
    ) -> Verdict {
        match decoded {
            Ok(Received::Partial(body)) => Verdict::Partial(body),
            Ok(Received::Final(body)) => {
                let bare = self.service().is_none();
                let Some(flight) = self.in_flight.get_mut(&seq) else {
                    return Verdict::Failed("malformed reply");
                };
                let mut reply = std::mem::take(&mut flight.reply);
                body.into_frames()
                    .into_iter()
                    .for_each(|f| reply.push_back(f));
                if bare {
                    if let Some(header) = majordomo_header(&reply, &flight.request.body) {
                        return Verdict::WrongProtocol(format!(
                            "{} answered in Majordomo ({header}): it is a Majordomo broker; \
                             ask it for a service with --service NAME",
                            self.endpoints[flight.at]
                        ));
                    }
                }
                if !self.config.check_echo || reply.text() == flight.request.text {
                    return Verdict::Answer(reply);
                }
                let text = reply.text();
                self.report.mismatched += 1;
                events.emit(Event::Mismatch {
                    seq,
                    expected: flight.request.text.clone(),
                    got: text.clone(),
                });
                events.error(format!("malformed reply from server: {text}"));
                Verdict::Failed("mismatched reply")
            }
            Err(reason) => {
                self.report.mismatched += 1;
                events.error(format!("malformed reply from server: {reason}"));
                Verdict::Failed("malformed reply")
            }
        }
    }

    /// A reply that is not the answer to any request in flight: counted, reported as a
    /// `mismatch` event against request `seq` (if any waits there), and (`-v`) traced with why.
    pub(super) fn refuse(&mut self, seq: Option<u64>, got: String, why: &str, events: &mut Events) {
        self.report.mismatched += 1;
        if events.tracing() {
            events.warn(format!("dropped a reply ({why}): {}", preview(&got)));
        }
        if let Some(flight) = seq.and_then(|seq| self.in_flight.get(&seq)) {
            events.emit(Event::Mismatch {
                seq: flight.seq,
                expected: flight.request.text.clone(),
                got,
            });
        }
    }

    /// Records an accepted reply; a socket of its own closes, a shared one stays.
    pub(super) fn accept(
        &mut self,
        seq: u64,
        reply: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        self.detach(seq, out);
        let Some(flight) = self.in_flight.remove(&seq) else {
            return;
        };
        let latency = now.saturating_duration_since(flight.first_sent);
        self.latency.record(latency);
        self.report.replied += 1;
        let text = reply.text();
        if self.config.check_echo {
            events.info(format!("server replied OK ({text})"));
        }
        let body = reply.joined().into();
        if let Some(kept) = &mut self.replies {
            kept.push(reply);
        }
        self.held.insert(
            seq,
            Event::Reply {
                seq,
                request: flight.request.text,
                reply: body,
                attempts: flight.attempt,
                latency_ms: millis(latency),
            },
        );
        while let Some(event) = self.held.remove(&self.next_to_emit) {
            events.emit(event);
            self.next_to_emit += 1;
        }
        self.pump(now, out, events);
    }
}

/// A bare client's reply that is a Majordomo client message: its first frame `MDPC01` or
/// `MDPC02` (7/MDP, 18/MDP: `["MDPC01"][service][body…]`, as a REQ socket receives it) when
/// the request did not start with that frame itself (an echo server sends a request that
/// happens to start so back unchanged). `pirate broker` answers a request without a Majordomo
/// header so (see `broker::NOT_MDP`); a broker that says nothing back cannot be told from a
/// server that is down.
pub(super) fn majordomo_header(reply: &Message, request: &Message) -> Option<&'static str> {
    let first = reply.iter().next()?;
    let header = [("MDPC01", mdp::MDPC01), ("MDPC02", mdp::MDPC02)]
        .into_iter()
        .find(|(_, h)| first == *h)?;
    (request.iter().next() != Some(first)).then_some(header.0)
}

/// A reply cut short for a log line.
fn preview(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// What one received message means for the request it arrived for.
pub(super) enum Verdict {
    /// The answer (the FINAL, or the one reply), every frame of it.
    Answer(Message),
    /// A 0.2 PARTIAL of the answer.
    Partial(Message),
    /// Wrong or malformed: the attempt failed.
    Failed(&'static str),
    /// The peer speaks another protocol (why): retrying cannot help, the run stops.
    WrongProtocol(String),
}
