//! The client's sockets: slots, opening and closing, the one shared DEALER per endpoint,
//! sending an attempt on it (or on a socket of its own), and the Lazy Pirate reopen.

use std::time::Instant;

use crate::event::{Event, Events};
use crate::msg::Message;
use crate::reactor::{Outbox, Slot, SocketKind, SocketSpec};

use super::{Client, Conn, Correlation, ReadNext, Via};

impl Client {
    /// A slot for a new socket: a closed one's number, but never the one whose message is
    /// being handled (the reactor may read it again in this batch, before the `Close`).
    pub(super) fn slot(&mut self) -> Slot {
        match self.free.iter().position(|&s| Some(s) != self.reading_slot) {
            Some(p) => self.free.swap_remove(p),
            None => {
                self.next_slot += 1;
                self.next_slot - 1
            }
        }
    }

    pub(super) fn release(&mut self, slot: Slot, out: &mut Outbox<ReadNext>) {
        out.close(slot);
        self.free.push(slot);
    }

    pub(super) fn spec(&self, slot: Slot, kind: SocketKind, at: usize) -> SocketSpec {
        SocketSpec {
            slot,
            kind,
            name: "client",
            bind: Vec::new(),
            connect: vec![self.endpoints[at].clone()],
            // A fresh random identity for every socket (the Lazy Pirate reopen).
            identity: None,
        }
    }

    /// Opens a fresh socket in `slot` to endpoint `at`, traced under `-v` with what it is for
    /// (so a run shows how many connections its window used).
    pub(super) fn open(
        &self,
        slot: Slot,
        kind: SocketKind,
        at: usize,
        purpose: &str,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let spec = self.spec(slot, kind, at);
        if events.tracing() {
            let kind = spec.kind.name();
            events.info(format!(
                "connecting to {} (socket {slot}: a {kind} {purpose})",
                self.endpoints[at]
            ));
        }
        out.open(spec);
    }

    /// The shared socket to endpoint `at` that takes new attempts, opened if there is none
    /// (`retry`: for a resend, which makes it a reconnect): its index in `conns`.
    pub(super) fn conn(
        &mut self,
        at: usize,
        retry: bool,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) -> usize {
        if let Some(c) = self.conns.iter().position(|c| c.at == at && c.takes_new) {
            return c;
        }
        if retry {
            events.info("reconnecting to server…");
            self.report.reconnects += 1;
        }
        let slot = self.slot();
        self.open(
            slot,
            SocketKind::Dealer,
            at,
            "shared by every request in flight",
            out,
            events,
        );
        self.conns.push(Conn {
            slot,
            at,
            load: 0,
            heard: None,
            takes_new: true,
        });
        self.conns.len() - 1
    }

    /// Sends request `seq`'s next attempt to endpoint `at`: on the endpoint's shared socket
    /// with a fresh request id, or on a fresh socket of its own.
    pub(super) fn send(
        &mut self,
        seq: u64,
        at: usize,
        correlation: Correlation,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let Some(flight) = self.in_flight.get(&seq) else {
            return;
        };
        let retry = flight.attempt > 0;
        let body = flight.request.body.clone();
        let (slot, via, msg) = match correlation {
            Correlation::RequestId => {
                let c = self.conn(at, retry, out, events);
                self.conns[c].load += 1;
                let slot = self.conns[c].slot;
                let id = self.ids.next_id();
                self.by_id.insert(id.clone(), seq);
                let msg = self.config.framing.encode_with_id(id.clone(), body);
                (slot, Via::Shared { slot, id }, msg)
            }
            Correlation::Socket => {
                if retry {
                    events.info("reconnecting to server…");
                    self.report.reconnects += 1;
                }
                let slot = self.slot();
                let kind = self.config.framing.socket_type();
                self.open(slot, kind, at, &format!("for request {seq}"), out, events);
                self.own.insert(slot, seq);
                (slot, Via::Own(slot), self.config.framing.encode(body))
            }
        };
        let Some(flight) = self.in_flight.get_mut(&seq) else {
            return;
        };
        flight.attempt += 1;
        if flight.attempt == 1 {
            flight.first_sent = now;
        }
        flight.sent_at = now;
        flight.at = at;
        flight.via = via;
        flight.deadline = Some(now + self.config.timeout);
        flight.reply = Message::new();
        out.send(slot, msg);
        events.emit(Event::Sent {
            seq,
            request: flight.request.text.clone(),
            attempt: flight.attempt,
        });
        self.report.sent += 1;
    }

    /// Ends request `seq`'s attempt in flight: its id is forgotten (a late reply to it is
    /// stale from now on) and its own socket closed; a shared socket it leaves is closed if
    /// it takes no new attempts and this was its last.
    pub(super) fn detach(&mut self, seq: u64, out: &mut Outbox<ReadNext>) {
        let Some(flight) = self.in_flight.get_mut(&seq) else {
            return;
        };
        flight.deadline = None;
        match std::mem::replace(&mut flight.via, Via::Waiting) {
            Via::Shared { slot, id } => {
                self.by_id.remove(&id);
                if let Some(c) = self.conns.iter().position(|c| c.slot == slot) {
                    let conn = &mut self.conns[c];
                    conn.load = conn.load.saturating_sub(1);
                    if conn.load == 0 && !conn.takes_new {
                        self.conns.swap_remove(c);
                        self.release(slot, out);
                    }
                }
            }
            Via::Own(slot) => {
                self.own.remove(&slot);
                self.release(slot, out);
            }
            Via::Waiting | Via::Orphaned => {}
        }
    }

    /// The Lazy Pirate reopen of shared socket `c`: closed (LINGER 0 drops what it still
    /// holds, and nothing late from it can ever be read); the attempts it carried are
    /// orphaned, each resent when its own deadline passes. The next attempt opens a fresh
    /// socket, with a fresh identity.
    pub(super) fn reopen(&mut self, c: usize, out: &mut Outbox<ReadNext>) {
        let conn = self.conns.swap_remove(c);
        self.release(conn.slot, out);
        for flight in self.in_flight.values_mut() {
            if let Via::Shared { slot, id } = &flight.via {
                if *slot == conn.slot {
                    self.by_id.remove(id);
                    flight.via = Via::Orphaned;
                }
            }
        }
    }
}
