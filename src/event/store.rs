//! What opening a Titanic store found ([`Recovery`]: torn bytes cut off, damage set aside,
//! orphans) and what `pirate titanic --check` reports ([`Check`]), as plain data, with what
//! they mean in words. The store (`roles::titanic::store`) reads a log and fills them;
//! [`Report::StoreCheck`](super::Report::StoreCheck) carries a check to the renderer. They are
//! the event layer's, below the role, so events need nothing from above; only the check's
//! report for people, which names the store's files, stays with the store.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use crate::proto::tsp::Uuid;

/// What opening the store found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Recovery {
    /// Valid records read (duplicates included).
    pub records: u64,
    /// Bytes of an incomplete last record, cut off (a torn write, never acknowledged).
    pub torn_bytes: u64,
    /// Stretches that hold no valid record, in file order: set aside.
    pub damage: Vec<Damage>,
    /// Valid records that changed nothing: a request already stored or closed, a second
    /// reply, a close of a closed entry (a duplicated record is harmless).
    pub duplicates: u64,
    /// Valid replies and closes whose request is not in the log: its record was damaged.
    /// Their UUIDs are certain (their CRC held). Dropped with the damage (and set aside).
    pub orphans: Vec<Orphan>,
    /// Where the damaged log was set aside, when it was.
    pub set_aside: Option<PathBuf>,
}

/// One damaged stretch of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Damage {
    /// Offset in the log (in the set-aside copy, once set aside).
    pub offset: u64,
    pub bytes: u64,
    /// The records it held as their headers read (unverified: the CRC failed). Exactly
    /// these when `exact` (the declared lengths tile the stretch), else the first of at
    /// least one.
    pub records: Vec<Suspect>,
    pub exact: bool,
}

/// A valid reply or close whose request was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Orphan {
    pub offset: u64,
    pub kind: &'static str,
    pub uuid: Uuid,
}

impl Recovery {
    /// True when something that may have been acknowledged was lost (damage or orphans);
    /// a torn tail alone is not damage.
    pub fn damaged(&self) -> bool {
        !self.damage.is_empty() || !self.orphans.is_empty()
    }

    /// Records lost to damage: exact, or a lower bound when a stretch's lengths were damaged.
    pub fn lost_records(&self) -> u64 {
        self.damage.iter().map(|d| d.records.len() as u64).sum()
    }

    /// The report, one line per damaged stretch or orphan, at most `max` lines (then one
    /// line saying how many more): what was lost, where, and what it means for clients.
    pub fn describe(&self, max: usize) -> Vec<String> {
        let mut lines: Vec<String> = self
            .damage
            .iter()
            .map(|d| {
                let records: Vec<String> = d
                    .records
                    .iter()
                    .take(8)
                    .map(|r| match (r.kind, r.uuid) {
                        (Some(kind), Some(uuid)) => format!("{kind} {uuid} at {}", r.offset),
                        _ => format!("an unreadable header at {}", r.offset),
                    })
                    .collect();
                let more = d.records.len().saturating_sub(records.len());
                format!(
                    "damaged: {} bytes at offset {} hold no valid record; {}{} record{} lost, \
                     as the damaged headers read (unverified): {}{}",
                    d.bytes,
                    d.offset,
                    if d.exact { "" } else { "at least " },
                    d.records.len(),
                    if d.records.len() == 1 { "" } else { "s" },
                    records.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            })
            .chain(self.orphans.iter().map(|o| match o.kind {
                "close" => format!(
                    "request {} was in a damaged record, but it had been closed (its close at \
                     offset {} survived): nothing lost",
                    o.uuid, o.offset
                ),
                kind => format!(
                    "lost request {}: its record was damaged (a valid {kind} for it at offset {} \
                     survived and is set aside); titanic.reply answers 400 for it",
                    o.uuid, o.offset
                ),
            }))
            .collect();
        if lines.len() > max {
            let more = lines.len() - max;
            lines.truncate(max);
            lines.push(format!("… and {more} more (see the report file)"));
        }
        lines
    }
}

/// What `pirate titanic --check DIR` found: what a start would keep, cut off and set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Check {
    /// Nothing would be set aside (a torn tail alone is clean): `--check` exits 0.
    pub clean: bool,
    /// Entries a start would serve, and how many of them still wait for a reply.
    pub entries: u64,
    pub pending: u64,
    pub log_bytes: u64,
    /// A `titanic.log.new` left by a crashed compaction (a start deletes it).
    pub stale_new: bool,
    /// Damaged logs set aside by earlier starts.
    pub set_aside_before: Vec<PathBuf>,
    pub recovery: Recovery,
}

impl Check {
    /// True when a start would set something aside (a torn tail alone is not damage).
    pub fn damaged(&self) -> bool {
        self.recovery.damaged()
    }
}

/// One record as a damaged stretch's headers read: unverified (the CRC failed), but the
/// best a reader can say about what was lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Suspect {
    /// Offset of its header in the log.
    pub offset: u64,
    /// `"request"`, `"reply"` or `"close"`, when the kind byte is one of them.
    pub kind: Option<&'static str>,
    /// The UUID bytes where a UUID would be, when they are there.
    pub uuid: Option<Uuid>,
}
