//! One service of the broker: its requests waiting for a worker and its workers with a free
//! credit, both FIFO, and the bytes the waiting requests hold. [`Service`]'s methods are the
//! only code that changes its queues and counters, and, with [`Assignment`]'s, the broker's
//! total of held bytes ([`HeldBytes`]).
//!
//! [`Assignment`]: super::workers::Assignment

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::clients::ReplyAddress;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;

/// What a queued request costs besides its body and its client's address: the queue entry
/// and the frames' own bookkeeping, rounded up.
pub const QUEUED_OVERHEAD: u64 = 128;

/// The bounds on what the broker holds (`BrokerConfig`'s fields of the same names).
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) max_queue: usize,
    pub(super) max_queue_bytes: u64,
    pub(super) max_bytes: u64,
}

/// Bytes the broker holds in all, against `max_bytes`: every service's queued requests and
/// every PARTIAL held for a 0.1 client.
#[derive(Debug, Default)]
pub(super) struct HeldBytes(u64);

impl HeldBytes {
    pub(super) fn get(&self) -> u64 {
        self.0
    }

    pub(super) fn hold(&mut self, bytes: u64) {
        self.0 += bytes;
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.0 -= bytes;
    }
}

/// A client request waiting for a worker.
pub(super) struct Queued {
    pub(super) client: ReplyAddress,
    pub(super) version: Version,
    pub(super) body: Message,
    /// What it costs while it waits: its body, its client's address and
    /// [`QUEUED_OVERHEAD`].
    bytes: u64,
    since: Instant,
}

/// One service: its waiting requests and its idle workers, both FIFO.
#[derive(Default)]
pub(super) struct Service {
    requests: VecDeque<Queued>,
    /// Bytes of the requests in `requests`.
    queued_bytes: u64,
    /// `(worker identity, generation)` of the workers with a free credit, least recently
    /// used first; may hold stale entries.
    idle: VecDeque<(Frame, u64)>,
    /// Free credits of the workers in `idle` (idle workers, for standard ones).
    idle_count: usize,
    /// Stale entries in `idle`, removed lazily.
    stale: usize,
    /// Every registered worker of the service, idle or busy.
    members: HashSet<Frame>,
}

impl Service {
    /// Queues a request at the back, counting what waiting costs the broker, not just the
    /// body: a flood of empty requests is bounded by bytes too.
    pub(super) fn enqueue(
        &mut self,
        client: ReplyAddress,
        version: Version,
        body: Message,
        now: Instant,
        held: &mut HeldBytes,
    ) {
        let bytes = body_bytes(&body) + client.bytes() + QUEUED_OVERHEAD;
        self.requests.push_back(Queued {
            client,
            version,
            body,
            bytes,
            since: now,
        });
        self.queued_bytes += bytes;
        held.hold(bytes);
    }

    /// If the queue is over a bound, refuses the newest request (the one at the back: every
    /// bound held before it came, and dispatch takes from the front) and says which bound.
    pub(super) fn enforce(
        &mut self,
        bounds: &Bounds,
        held: &mut HeldBytes,
    ) -> Option<&'static str> {
        let over = if self.requests.len() > bounds.max_queue {
            "queue_full"
        } else if self.queued_bytes > bounds.max_queue_bytes {
            "queue_bytes"
        } else if held.get() > bounds.max_bytes {
            "broker_bytes"
        } else {
            return None;
        };
        if let Some(q) = self.requests.pop_back() {
            self.forget_bytes(&q, held);
        }
        Some(over)
    }

    /// Drops the requests that have waited `ttl` or longer; how many.
    pub(super) fn expire(&mut self, now: Instant, ttl: Duration, held: &mut HeldBytes) -> usize {
        let mut expired = 0;
        // Requests are queued in arrival order, so the expired ones are at the front.
        while self
            .requests
            .front()
            .is_some_and(|q| now.saturating_duration_since(q.since) >= ttl)
        {
            if let Some(q) = self.requests.pop_front() {
                self.forget_bytes(&q, held);
            }
            expired += 1;
        }
        expired
    }

    /// Drops every waiting request; how many.
    pub(super) fn purge(&mut self, held: &mut HeldBytes) -> usize {
        let purged = self.requests.len();
        for q in self.requests.drain(..) {
            held.release(q.bytes);
        }
        self.queued_bytes = 0;
        purged
    }

    fn forget_bytes(&mut self, q: &Queued, held: &mut HeldBytes) {
        self.queued_bytes -= q.bytes;
        held.release(q.bytes);
    }

    /// A worker registered with `credit` joins, at the back of the idle queue.
    pub(super) fn join(&mut self, id: Frame, generation: u64, credit: usize) {
        self.members.insert(id.clone());
        self.idle.push_back((id, generation));
        self.idle_count += credit;
    }

    /// A worker with `free` credits leaves; its idle-queue entry, if it has one, stays
    /// behind, stale, removed lazily.
    pub(super) fn leave(&mut self, id: &[u8], free: usize) {
        self.members.remove(id);
        self.idle_count = self.idle_count.saturating_sub(free);
        if free > 0 {
            self.stale += 1;
        }
    }

    /// A credit of a worker is free again: a worker that had none (`was_full`) goes to the
    /// back of the LRU queue (one that had some is in it already), first in line for queued
    /// work.
    pub(super) fn credit_freed(&mut self, id: Frame, generation: u64, was_full: bool) {
        if was_full {
            self.idle.push_back((id, generation));
        }
        self.idle_count += 1;
    }

    /// The idle-queue entry first in line, if a request is waiting for it.
    pub(super) fn next_in_line(&self) -> Option<(&Frame, u64)> {
        match (self.requests.is_empty(), self.idle.front()) {
            (false, Some((id, generation))) => Some((id, *generation)),
            _ => None,
        }
    }

    /// Skips the entry first in line, found stale.
    pub(super) fn skip_stale(&mut self) {
        self.idle.pop_front();
        self.stale = self.stale.saturating_sub(1);
    }

    /// Takes the entry first in line and the oldest request, for that worker to serve.
    pub(super) fn take(&mut self, held: &mut HeldBytes) -> Option<(Frame, u64, Queued)> {
        let (Some((id, generation)), Some(request)) =
            (self.idle.pop_front(), self.requests.pop_front())
        else {
            return None;
        };
        self.forget_bytes(&request, held);
        self.idle_count = self.idle_count.saturating_sub(1);
        Some((id, generation, request))
    }

    /// A worker just given a request has credit left: it stays first in line, so a burst of
    /// requests fills one worker's credit (and shares its connection's batches) before the
    /// next worker gets one; workers take turns in the order their credit freed up.
    pub(super) fn keep_first_in_line(&mut self, id: Frame, generation: u64) {
        self.idle.push_front((id, generation));
    }

    /// Removes the stale idle-queue entries, if there are any; `is_live` tells an entry that
    /// is not.
    pub(super) fn drop_stale(&mut self, is_live: impl Fn(&[u8], u64) -> bool) {
        if self.stale > 0 {
            self.idle
                .retain(|(id, generation)| is_live(id, *generation));
            self.stale = 0;
        }
    }

    /// Every registered worker of the service.
    pub(super) fn members(&self) -> impl Iterator<Item = &Frame> {
        self.members.iter()
    }

    /// No worker and no request: the service may be forgotten.
    pub(super) fn is_unused(&self) -> bool {
        self.members.is_empty() && self.requests.is_empty()
    }

    /// Its entry in `mmi.status`: workers, free credits, queued requests.
    pub(super) fn status(&self) -> Value {
        json!({
            "workers": self.members.len(),
            "idle": self.idle_count,
            "queued": self.requests.len(),
        })
    }

    /// Entries in the idle queue, stale ones included.
    #[cfg(test)]
    pub(super) fn idle_entries(&self) -> usize {
        self.idle.len()
    }

    /// Stale entries in the idle queue.
    #[cfg(test)]
    pub(super) fn stale_entries(&self) -> usize {
        self.stale
    }

    /// Free credits of its idle workers.
    #[cfg(test)]
    pub(super) fn idle_credits(&self) -> usize {
        self.idle_count
    }
}

/// Bytes of a body: its frames' lengths.
pub(super) fn body_bytes(body: &Message) -> u64 {
    body.iter().map(|f| f.len() as u64).sum()
}
