//! Pipelining: up to `window` requests in flight, the next ones read ahead, the run ended
//! once everything is answered.

use std::time::Instant;

use crate::event::{Events, Outcome};
use crate::msg::Message;
use crate::reactor::Outbox;

use super::probe::Question;
use super::{Client, InFlight, ReadNext, Via, HELD_WINDOWS};

impl Client {
    /// Moves the run on: sends what waits to be sent, reads the next request when the window
    /// has room, asks a broker how it correlates, ends the run when everything is answered.
    pub(super) fn pump(&mut self, now: Instant, out: &mut Outbox<ReadNext>, events: &mut Events) {
        if self.outcome.is_some() || self.settling(now) {
            return;
        }
        self.settle_until = None;
        // Requests the reader has ready are taken here and now: a work thread (and the
        // wake-up of this loop when it is done) only for a source that has nothing ready.
        loop {
            let room = self.fill_window(now);
            if self.exhausted || self.reading || !self.ahead.is_empty() {
                break;
            }
            match self.source.as_ref().and_then(|source| source.try_batch()) {
                Some(batch) => {
                    self.exhausted = batch.is_empty();
                    self.ahead.extend(batch);
                }
                None => break,
            }
            if !room {
                break; // read ahead, as below, and sent when room frees up
            }
        }
        if !self.waiting.is_empty() {
            let at = self.current;
            let Some(correlation) = self.correlation[at] else {
                self.ask(at, Question::Correlate, now, out, events);
                return;
            };
            for seq in std::mem::take(&mut self.waiting) {
                self.send(seq, at, correlation, now, out, events);
            }
        }
        // One request is read ahead while the window is full, so that a fast source never
        // waits for a work thread between a reply and the next request.
        if !self.exhausted && !self.reading && self.ahead.is_empty() {
            self.reading = true;
            out.start(ReadNext);
        } else if self.exhausted && self.in_flight.is_empty() && self.ahead.is_empty() {
            self.finish(Outcome::Completed, now, events);
            out.exit();
        }
    }

    /// Moves requests read ahead into the window while it has room; true if it still has.
    pub(super) fn fill_window(&mut self, now: Instant) -> bool {
        let window = self.config.window.max(1);
        let room = |c: &Client| c.in_flight.len() < window && c.held.len() < window * HELD_WINDOWS;
        while room(self) {
            let Some(request) = self.ahead.pop_front() else {
                break;
            };
            self.report.requests += 1;
            let seq = self.report.requests;
            let flight = InFlight {
                seq,
                request,
                attempt: 0,
                first_sent: now,
                sent_at: now,
                deadline: None,
                reply: Message::new(),
                at: self.current,
                via: Via::Waiting,
            };
            self.in_flight.insert(seq, flight);
            self.waiting.insert(seq);
        }
        room(self)
    }
}
