//! A failed attempt: resent (same socket, a fresh one, or the next endpoint after a
//! failover), or the run given up with a reason a person can act on.

use std::time::Instant;

use crate::event::{Event, Events, Outcome};
use crate::reactor::Outbox;

use super::probe::Question;
use super::{Client, ReadNext, Via, TIMEOUT};

impl Client {
    /// Attempt `seq` failed (`reason`): resend it with a fresh id (on the same shared socket
    /// unless the connection looks dead, see the module docs) or on a fresh socket of its
    /// own, failing over first if its endpoint is the current one; after the last attempt,
    /// abandon everything.
    pub(super) fn failed(
        &mut self,
        seq: u64,
        reason: &str,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let Some(flight) = self.in_flight.get(&seq) else {
            return;
        };
        if let Some(why) = (self.refusals)(&self.endpoints[flight.at]) {
            let line = crate::handshake::refusal_line(&self.endpoints[flight.at], &why);
            return self.stop_early(Outcome::AuthRefused, line, now, out, events);
        }
        if flight.attempt >= self.config.retries.max(1) {
            self.abandon(now, out, events);
            return;
        }
        events.warn("no response from server, retrying…");
        if reason == TIMEOUT && self.asks_a_service() {
            // Is anyone serving it? The answer says what is true if the run gives up.
            let at = flight.at;
            self.ask(at, Question::Service, now, out, events);
        }
        let Some(flight) = self.in_flight.get(&seq) else {
            return;
        };
        events.emit(Event::Retry {
            seq,
            attempt: flight.attempt,
            reason: reason.into(),
        });
        self.report.retries += 1;
        let (at, sent_at, via) = (flight.at, flight.sent_at, flight.via.clone());
        let count = self.endpoints.len();
        let failover = count > 1 && at == self.current;
        if let Via::Shared { slot, .. } = via {
            // The reopen rule: nothing at all heard on the socket for a whole timeout while
            // this attempt waited. A peer that answers anything is alive, and its socket kept.
            let c = self.conns.iter().position(|c| c.slot == slot);
            if let Some(c) =
                c.filter(|&c| !failover && self.conns[c].heard.is_none_or(|h| h <= sent_at))
            {
                self.reopen(c, out);
            }
        }
        self.detach(seq, out);
        self.waiting.insert(seq);
        if failover {
            // Binary Star: the server we were talking to seems gone; try the next one, after
            // giving it time to take over.
            self.current = (self.current + 1) % count;
            events.warn(format!("failing over to {}", self.endpoints[self.current]));
            // Its shared socket takes no new attempts: it closes once its last one is done.
            let mut i = 0;
            while i < self.conns.len() {
                let conn = &mut self.conns[i];
                if conn.at == at {
                    conn.takes_new = false;
                    if conn.load == 0 {
                        let slot = conn.slot;
                        self.conns.swap_remove(i);
                        self.release(slot, out);
                        continue;
                    }
                }
                i += 1;
            }
            self.settle_until = Some(now + self.config.settle);
        }
        self.pump(now, out, events);
    }

    /// The server seems gone: give up on everything in flight, and say so for each request,
    /// so that none of them is silently lost. To a broker, first ask `mmi.service` (unless
    /// it answered already) so that the error says whether the broker is down or merely
    /// has no worker for the service.
    pub(super) fn abandon(
        &mut self,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if self.asks_a_service() && self.service_answer.is_none() {
            self.abandoning = true;
            // Nothing more is retried while the answer is awaited.
            for flight in self.in_flight.values_mut() {
                flight.deadline = None;
            }
            let at = self.current;
            self.ask(at, Question::Service, now, out, events);
            return;
        }
        let outcome = match self.service_answer.as_ref() {
            Some(Some(code)) if code == "404" => {
                let at = self.current;
                events.error(format!("{}, abandoning", self.no_service(at)));
                Outcome::NoService
            }
            _ => {
                events.error(format!(
                    "server seems to be offline, abandoning{}",
                    self.hint()
                ));
                Outcome::Abandoned
            }
        };
        self.abandon_all(outcome, now, out, events);
    }

    /// What a bare client that heard nothing cannot rule out: a Majordomo broker that drops a
    /// request without a Majordomo header and says nothing back (the Guide's mdbroker logs
    /// "invalid message" and stays silent; `pirate broker` answers, see [`majordomo_header`](super::replies::majordomo_header)).
    pub(super) fn hint(&self) -> &'static str {
        match self.service() {
            None => " (nothing answered: if the port is a Majordomo broker, use --service NAME)",
            Some(_) => "",
        }
    }

    /// The peer speaks another protocol (`why`, one line): every request still waiting is
    /// abandoned at once, as retrying the same bytes on the same port cannot help.
    pub(super) fn wrong_protocol(
        &mut self,
        why: String,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        self.stop_early(Outcome::WrongProtocol, why, now, out, events);
    }

    /// Stops the run with `outcome`, saying `why` (one line), abandoning every request still
    /// waiting: for what retrying cannot fix (another protocol, a refused login).
    pub(super) fn stop_early(
        &mut self,
        outcome: Outcome,
        why: String,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if let Some(probe) = self.probe.take() {
            self.release(probe.slot, out);
        }
        events.error(why);
        self.abandon_all(outcome, now, out, events);
    }

    /// Ends the run with `outcome`: every request still waiting is abandoned, each said so
    /// (none is silently lost), and the client exits.
    fn abandon_all(
        &mut self,
        outcome: Outcome,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        for (_, flight) in std::mem::take(&mut self.in_flight) {
            self.report.abandoned += 1;
            events.emit(Event::Abandoned {
                seq: flight.seq,
                request: flight.request.text,
                attempts: flight.attempt,
            });
        }
        self.finish(outcome, now, events);
        out.exit();
    }

    pub(super) fn settling(&self, now: Instant) -> bool {
        self.settle_until.is_some_and(|s| now < s)
    }
}
