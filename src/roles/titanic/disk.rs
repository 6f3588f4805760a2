//! Titanic on a full disk: the free-space reserve under which new requests are refused, and
//! the replies that could not be written yet, kept in memory and written again until they
//! are, never discarded.
//!
//! Pure: the machine measures free space ([`super::store::free_bytes`]) and does the writes;
//! this only decides and remembers. Bounded: the dispatcher sends nothing new while a reply
//! is held, so at most the [`super::MAX_IN_FLIGHT`] replies already on their way can be held,
//! each at most `--max-message` per frame.

use std::time::Instant;

use crate::msg::Message;
use crate::proto::tsp::Uuid;

/// A change worth one line in the log.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// The disk is full: new requests are refused from now on.
    Full(String),
    /// There is room again: new requests are accepted.
    Room(String),
}

pub(super) struct Disk {
    /// Free bytes under which new requests are refused (`--min-free`).
    reserve: u64,
    full: bool,
    /// Replies not written yet, in the order they came.
    held: Vec<(Uuid, Message)>,
    /// When to write the held replies again and look at the disk, while it is full.
    retry_at: Option<Instant>,
    /// The last write error said, so a disk that stays full is not reported every retry.
    last_error: Option<String>,
}

impl Disk {
    pub fn new(reserve: u64) -> Self {
        Disk {
            reserve,
            full: false,
            held: Vec::new(),
            retry_at: None,
            last_error: None,
        }
    }

    /// The `titanic.request` refusal while `free` (unknown: `None`, never a refusal) is under
    /// the reserve.
    pub fn refusal(&self, free: Option<u64>) -> Option<String> {
        let free = free?;
        (free < self.reserve).then(|| {
            format!(
                "500 disk full: {free} bytes free for the store, under its reserve of {} \
                 (--min-free); try again later",
                self.reserve
            )
        })
    }

    /// What the latest look at the disk showed: `free` bytes (if known) and whether a write
    /// just failed for lack of space. Full while either says so, and then until the replies
    /// it held are written; a line to log only when that changes, so once each way. (A reply
    /// held for another reason, a store that refuses writes after a failed fsync, is not
    /// called a full disk.)
    pub fn note(&mut self, free: Option<u64>, write_failed: bool) -> Option<Change> {
        let under = free.is_some_and(|f| f < self.reserve);
        let full = write_failed || under || (self.full && !self.held.is_empty());
        if full == self.full {
            return None;
        }
        self.full = full;
        let free = free.map_or("unknown".to_string(), |f| format!("{f} bytes"));
        Some(if full {
            Change::Full(format!(
                "disk full: {free} free for the store (reserve {} bytes, --min-free); new \
                 requests are answered 500 and replies that cannot be written are kept in memory \
                 until there is room",
                self.reserve
            ))
        } else {
            Change::Room(format!(
                "the disk has room again: {free} free for the store; accepting new requests"
            ))
        })
    }

    /// Keeps a reply the store could not write, to write again at `retry_at`. The error is
    /// returned for the log when it is not the one said last.
    pub fn hold(
        &mut self,
        uuid: Uuid,
        reply: Message,
        error: String,
        retry_at: Instant,
    ) -> Option<String> {
        if !self.held.iter().any(|(u, _)| *u == uuid) {
            self.held.push((uuid, reply));
        }
        self.retry_at = Some(retry_at);
        (self.last_error.as_ref() != Some(&error)).then(|| {
            self.last_error = Some(error.clone());
            error
        })
    }

    /// Gives back a held reply that was not tried (one before it failed), saying nothing.
    pub fn give_back(&mut self, uuid: Uuid, reply: Message, retry_at: Instant) {
        self.held.push((uuid, reply));
        self.retry_at = Some(retry_at);
    }

    /// True while any reply waits to be written.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// When the machine should next write held replies and look at the disk.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Schedules the next look while the disk is full (nothing else wakes the machine to
    /// notice that room came back); none otherwise.
    pub fn schedule(&mut self, at: Instant) {
        self.retry_at = (self.full || self.holding()).then_some(at);
    }

    /// The held replies, oldest first, if it is time to write them again (give back with
    /// [`Disk::hold`] those that still fail). Also the time to look at the disk.
    pub fn due(&mut self, now: Instant) -> Option<Vec<(Uuid, Message)>> {
        if self.retry_at.is_none_or(|at| now < at) {
            return None;
        }
        self.retry_at = None;
        Some(std::mem::take(&mut self.held))
    }

    /// Forgets the last error once writes work again, so the next failure is said.
    pub fn written(&mut self) {
        self.last_error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reply(text: &str) -> Message {
        Message::from_frames([text.as_bytes().to_vec()])
    }

    #[test]
    fn requests_are_refused_under_the_reserve_only() {
        let disk = Disk::new(1000);
        assert_eq!(disk.refusal(Some(1000)), None);
        assert_eq!(
            disk.refusal(None),
            None,
            "unknown free space refuses nothing"
        );
        let why = disk.refusal(Some(999)).unwrap();
        assert!(why.starts_with("500 disk full: 999 bytes free"), "{why}");
        assert!(why.contains("--min-free"), "{why}");
    }

    #[test]
    fn full_and_room_are_said_once_each() {
        let mut disk = Disk::new(1000);
        assert_eq!(disk.note(Some(5000), false), None);
        assert!(matches!(disk.note(Some(10), false), Some(Change::Full(_))));
        assert_eq!(disk.note(Some(20), false), None);
        assert_eq!(disk.note(Some(20), true), None);
        assert!(matches!(
            disk.note(Some(2000), false),
            Some(Change::Room(_))
        ));
        assert_eq!(disk.note(Some(2000), false), None);
        // A failed write is full even above the reserve (a quota, a reserve set too low).
        assert!(matches!(disk.note(Some(2000), true), Some(Change::Full(_))));
    }

    #[test]
    fn held_replies_are_kept_until_written_and_keep_the_disk_full() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let mut disk = Disk::new(0);
        let (a, b) = (Uuid([1; 16]), Uuid([2; 16]));
        assert_eq!(
            disk.hold(a, reply("A"), "no space".into(), later),
            Some("no space".into())
        );
        assert_eq!(disk.hold(b, reply("B"), "no space".into(), later), None);
        assert_eq!(disk.hold(a, reply("A"), "no space".into(), later), None);
        assert!(disk.holding());
        assert!(matches!(
            disk.note(Some(1 << 30), true),
            Some(Change::Full(_))
        ));
        // Plenty of room, but a reply is still held: still full.
        assert_eq!(disk.note(Some(1 << 30), false), None);
        assert_eq!(disk.due(t0), None, "not yet");
        let due = disk.due(later).unwrap();
        assert_eq!(due, vec![(a, reply("A")), (b, reply("B"))]);
        // A fails again: given back, not said again; B was written.
        assert_eq!(disk.hold(a, reply("A"), "no space".into(), later), None);
        assert_eq!(disk.note(Some(1 << 30), false), None);
        let due = disk.due(later).unwrap();
        assert_eq!(due, vec![(a, reply("A"))]);
        disk.written();
        assert!(matches!(
            disk.note(Some(1 << 30), false),
            Some(Change::Room(_))
        ));
        disk.schedule(later);
        assert_eq!(disk.retry_at(), None, "nothing to look at any more");
        // A reply held because the store refuses writes (a failed fsync) is no full disk.
        disk.hold(b, reply("B"), "fsync failed".into(), later);
        assert_eq!(disk.note(Some(1 << 30), false), None);
        assert!(disk.holding());
    }
}
