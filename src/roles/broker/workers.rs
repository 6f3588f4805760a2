//! The broker's worker registry: a registered worker ([`RegisteredWorker`]) and the requests
//! it holds ([`Assignment`]), with the PARTIALs held for a 0.1 client and their bytes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::clients::ReplyAddress;
use super::service::{body_bytes, Bounds, HeldBytes};
use crate::heartbeat::Liveness;
use crate::msg::{Frame, Message};
use crate::proto::mdp::Version;

/// A worker registered with the broker (a READY it accepted).
pub(super) struct RegisteredWorker {
    pub(super) service: Frame,
    pub(super) version: Version,
    /// Unique per registration, so an idle-queue entry left behind by an earlier registration
    /// of the same identity is recognised as stale.
    pub(super) generation: u64,
    pub(super) liveness: Liveness,
    /// How many requests it may hold at once: 1, or the credit granted at READY (see
    /// docs/architecture.md, "The broker", Credit).
    pub(super) credit: usize,
    /// The requests it holds, at most `credit`. While it has a free credit, exactly one live
    /// entry for it is in its service's idle queue (one, whatever its credit: a READY asking
    /// for the most credit costs the broker no more than a standard one).
    pub(super) jobs: Vec<Assignment>,
}

impl RegisteredWorker {
    /// Credits not in use: its live entries in the idle queue.
    pub(super) fn free(&self) -> usize {
        self.credit - self.jobs.len()
    }

    /// Which of its requests it was given with `handle`.
    pub(super) fn job_for(&self, handle: &[u8]) -> Option<usize> {
        self.jobs.iter().position(|job| job.handle == handle)
    }
}

/// True if `(id, generation)` is a live idle-queue entry: that registration, with a free
/// credit (a registration with a free credit has exactly one entry).
pub(super) fn is_idle(
    workers: &HashMap<Frame, RegisteredWorker>,
    id: &[u8],
    generation: u64,
) -> bool {
    workers
        .get(id)
        .is_some_and(|w| w.generation == generation && w.free() > 0)
}

/// A request given to a worker, until its last reply.
pub(super) struct Assignment {
    pub(super) client: ReplyAddress,
    /// The client address frame the worker was given: a handle issued by the broker for
    /// this one dispatch, never the client's identity.
    pub(super) handle: Frame,
    pub(super) client_version: Version,
    /// Body frames of PARTIALs held for a 0.1 client, sent in front of the FINAL's frames.
    held: Message,
    /// Bytes in `held`.
    held_bytes: u64,
    /// The held reply grew past its bound and was dropped: discard the rest of it.
    overflow: bool,
    /// When the worker was given the request.
    started: Instant,
    /// When the worker was given the request or last sent a PARTIAL of it.
    progress: Instant,
}

/// What a PARTIAL held for a 0.1 client came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// Held, within the bounds.
    Kept,
    /// The reply would grow past a bound: it is dropped now.
    Overflowed,
    /// The reply was dropped already: the rest of it goes nowhere.
    Discarded,
}

impl Assignment {
    pub(super) fn new(
        client: ReplyAddress,
        handle: Frame,
        client_version: Version,
        now: Instant,
    ) -> Self {
        Assignment {
            client,
            handle,
            client_version,
            held: Message::new(),
            held_bytes: 0,
            overflow: false,
            started: now,
            progress: now,
        }
    }

    /// A PARTIAL arrived: progress, for the busy timeout.
    pub(super) fn progressed(&mut self, now: Instant) {
        self.progress = now;
    }

    /// Holds the frames of a PARTIAL for the REPLY of a 0.1 client, which cannot stream:
    /// one reply may hold at most `max_queue_bytes`, and the broker `max_bytes` in all.
    pub(super) fn hold(&mut self, body: Message, bounds: &Bounds, held: &mut HeldBytes) -> Held {
        if self.overflow {
            return Held::Discarded;
        }
        let bytes = body_bytes(&body);
        if self.held_bytes + bytes > bounds.max_queue_bytes || held.get() + bytes > bounds.max_bytes
        {
            self.release(held);
            self.held = Message::new();
            self.overflow = true;
            Held::Overflowed
        } else {
            self.held_bytes += bytes;
            held.hold(bytes);
            append(&mut self.held, body);
            Held::Kept
        }
    }

    /// The last reply arrived with `body`: the whole reply for the client (what was held in
    /// front of `body`), or `None` if it was dropped as too big.
    pub(super) fn finish(
        mut self,
        body: Message,
        held: &mut HeldBytes,
    ) -> (ReplyAddress, Version, Option<Message>) {
        self.release(held);
        let reply = if self.overflow {
            None
        } else {
            append(&mut self.held, body);
            Some(self.held)
        };
        (self.client, self.client_version, reply)
    }

    /// The worker is lost: what it held is let go.
    pub(super) fn abandon(mut self, held: &mut HeldBytes) {
        self.release(held);
    }

    fn release(&mut self, held: &mut HeldBytes) {
        held.release(self.held_bytes);
        self.held_bytes = 0;
    }

    /// True if, with busy timeout `limit`, the worker has held this request too long: `limit`
    /// since its last progress, or `longest` in all.
    pub(super) fn stuck(&self, now: Instant, limit: Duration, longest: Duration) -> bool {
        now.saturating_duration_since(self.progress) >= limit
            || now.saturating_duration_since(self.started) >= longest
    }
}

/// Moves the frames of `more` to the end of `into` (no body bytes are copied).
fn append(into: &mut Message, more: Message) {
    for frame in more.into_frames() {
        into.push_back(frame);
    }
}
