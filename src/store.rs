//! The crash-safe store behind Titanic (9/TSP): requests and replies by UUID in one
//! append-only, checksummed, fsync'd log file, compacted as entries are closed.
//!
//! # Why a log of our own, not a file per message or an embedded database
//!
//! The Guide's Titanic writes one file per request and per reply and never fsyncs: a crash can
//! leave an empty or half-written file that is then served as a reply, an acknowledged request
//! can vanish with the page cache on power loss, and directories of millions of small files are
//! slow. An embedded database (`redb`, `sled`, SQLite) would fix that, but this store needs
//! exactly four operations on an in-memory index, and a log of our own is a few hundred lines
//! with every durability step visible, no dependency to vet, vendor and keep building, and a
//! crash story that the tests below check byte by byte (a torn last record cut at every
//! offset).
//!
//! # Layout
//!
//! `DIR/titanic.log` starts with the 16-byte magic `PIRATE TSP LOG 1`, then records:
//!
//! ```text
//! record  = len:u32le  crc:u32le  payload[len]      crc = CRC-32 (IEEE) of len:u32le ‖ payload
//! payload = 0x01 uuid[16] service:bytes frames      request
//!         | 0x02 uuid[16] frames                    reply
//!         | 0x03 uuid[16]                           close
//! bytes   = n:u32le byte[n]          frames = count:u32le bytes{count}
//! ```
//!
//! `DIR/lock` is held with `flock` while a store is open, so two Titanics cannot share a
//! directory. `DIR/titanic.log.new` exists only while compacting. `DIR/titanic.log.damaged-N`
//! (and its report, `….txt`) is a log that was found damaged, set aside as it was (see below).
//! That is every file: the index lives in memory and replies are records in the same log, so
//! "the index and the replies" of a store are read, checked and repaired with the log.
//!
//! # Durability argument
//!
//! - **Put is durable when it returns.** Every put appends one record with a single positioned
//!   write at the end of the last good record, then `fdatasync`s the file. Titanic replies
//!   `200` + UUID only after that, so an acknowledged request is on disk.
//! - **A torn record is cut off.** `kill -9` (or power loss) can stop a write part way. A
//!   record is accepted on recovery only if its whole length is there, its CRC matches and it
//!   decodes. Only the tail can be torn: a record is appended only after the one before it
//!   was synced. So an incomplete record with nothing valid after it (see [`scan`]) is a torn
//!   write, never acknowledged, and the file is truncated back to the last good record (and
//!   synced) before anything else is appended, so it can never hide records written after it.
//! - **Damage is set aside, not cut off.** Bytes that hold no valid record but have valid
//!   records after them (a flipped bit, a bad sector, a stray write) were once whole and
//!   synced, so possibly acknowledged. Recovery reads past them (resynchronising on the next
//!   valid record), keeps every valid record before and after, and reports precisely what was
//!   lost in [`Recovery`]: each damaged stretch's offset and size, the records its headers
//!   still show (kind and UUID, unverified), and the UUIDs whose later replies or closes
//!   survived their lost request. The damaged log is then hard-linked (copied where links do
//!   not work) to `titanic.log.damaged-N`, a report written next to it, and the live entries
//!   rewritten to a new log atomically, as compaction does: the offsets in the report are
//!   offsets in the set-aside file, and nothing on disk is destroyed.
//! - **A failed write or sync is not retried blindly.** A write error truncates the file back
//!   to the last good record; if that fails too, or if `fdatasync` fails (after which Linux may
//!   have dropped the dirty pages: "fsyncgate"), the store refuses every later write until it
//!   is reopened, when recovery re-reads what really is on disk.
//! - **Compaction is atomic.** When the bytes of closed entries exceed both the live bytes and
//!   a floor (1 MiB by default), the live entries are written in arrival order to
//!   `titanic.log.new`, which is synced, renamed over `titanic.log`, and the directory synced.
//!   A crash before the rename leaves the old log (the temporary file is deleted on open); a
//!   crash after leaves the new one; both are complete. Rewriting only when dead bytes exceed
//!   live ones keeps the cost amortised O(1) per byte written and the file under twice the live
//!   data plus the floor, however many request/close cycles go through it.
//! - **Recovery syncs what it read.** A record written but not yet synced when a process was
//!   killed is still in the page cache and will be read back; the store syncs the file on open
//!   so that such a record is durable before anything is served from it.
//!
//! Everything live is also held in memory (entries are only as big as the requests and
//! replies that clients have not closed yet).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::msg::Message;

mod scan;
pub use scan::Suspect;

/// The first bytes of every log file.
pub const MAGIC: &[u8; 16] = b"PIRATE TSP LOG 1";
/// The log's file name inside the store's directory.
pub const LOG_FILE: &str = "titanic.log";
const NEW_FILE: &str = "titanic.log.new";
/// A damaged log set aside is `titanic.log.damaged-N`, its report `titanic.log.damaged-N.txt`.
const DAMAGED_PREFIX: &str = "titanic.log.damaged-";
const LOCK_FILE: &str = "lock";
/// Record header: length and CRC, 4 bytes each.
const RECORD_HEADER: usize = 8;

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_CLOSE: u8 = 3;

/// A request's identity: 128 random bits, written as 32 lowercase hex digits on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// A fresh UUID from the operating system's generator. Deliberately not from the seeded
    /// generator: a run replayed with the same `--seed` on the same directory would otherwise
    /// draw UUIDs that are already in the store.
    pub fn random() -> Self {
        Uuid(rand::random::<u128>().to_be_bytes())
    }

    /// Parses 32 hex digits (either case). Anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in text.chunks(2).enumerate() {
            let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            bytes[i] = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        Some(Uuid(bytes))
    }
}

/// As on the wire: 32 lowercase hex digits.
impl Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In JSON a UUID is a string of 32 lowercase hex digits.
impl JsonSchema for Uuid {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Uuid".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "A TSP request's UUID: 32 lowercase hex digits."
        })
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One stored request, and its reply once there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub service: String,
    pub request: Message,
    pub reply: Option<Message>,
}

/// Where an injected crash (fault injection) kills the process during the next append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Before any byte is written.
    BeforeWrite,
    /// After writing this many thousandths of the record (at least one byte, never all):
    /// a torn record for recovery to find.
    MidWrite(u32),
    /// After the whole record is written, before it is synced.
    BeforeSync,
    /// After the sync, before the caller hears of it (so before Titanic replies).
    AfterSync,
}

/// Tuning; `Default` is what Titanic uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Dead bytes tolerated before compaction is considered (it also needs dead > live).
    pub compact_min: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            compact_min: 1 << 20,
        }
    }
}

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

struct Slot {
    seq: u64,
    entry: Entry,
    /// Bytes of this entry's records in the log.
    bytes: u64,
}

/// The store: an open log and the index of its live entries.
pub struct Store {
    dir: PathBuf,
    file: File,
    /// `None` only for [`Store::check`], which reads and never writes.
    _lock: Option<File>,
    /// End of the last good record: where the next one goes.
    len: u64,
    entries: HashMap<Uuid, Slot>,
    /// Requests without a reply, by arrival.
    pending: BTreeMap<u64, Uuid>,
    next_seq: u64,
    live_bytes: u64,
    options: StoreOptions,
    poisoned: Option<String>,
    crash: Option<CrashPoint>,
    recovery: Recovery,
    compactions: u64,
    warning: Option<String>,
    /// The last append failed for lack of space (ENOSPC or EDQUOT).
    no_space: bool,
}

/// What [`Store::check`] found.
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

    /// The report for people, one fact a line: what a start would keep, cut off and set
    /// aside, then the verdict.
    pub fn lines(&self, dir: &Path) -> Vec<String> {
        let r = &self.recovery;
        let mut lines = vec![
            format!(
                "store {}: {} bytes of log, {} valid records",
                dir.display(),
                self.log_bytes,
                r.records
            ),
            format!(
                "keep: {} entries ({} pending, {} answered)",
                self.entries,
                self.pending,
                self.entries - self.pending
            ),
        ];
        if r.duplicates > 0 {
            lines.push(format!(
                "ignore: {} duplicated records (they change nothing)",
                r.duplicates
            ));
        }
        if r.torn_bytes > 0 {
            lines.push(format!(
                "cut off: an incomplete record of {} bytes at the end (a write interrupted by \
                 a crash, never acknowledged)",
                r.torn_bytes
            ));
        }
        if r.damaged() {
            lines.push(format!(
                "set aside: {} damaged {}, {}{} lost; a start keeps every valid record and sets \
                 the damaged log aside as {DAMAGED_PREFIX}N",
                r.damage.len(),
                if r.damage.len() == 1 {
                    "stretch"
                } else {
                    "stretches"
                },
                if r.damage.iter().all(|d| d.exact) {
                    ""
                } else {
                    "at least "
                },
                match r.lost_records() {
                    1 => "1 record".to_string(),
                    n => format!("{n} records"),
                }
            ));
            lines.extend(r.describe(usize::MAX));
        }
        if self.stale_new {
            lines.push(format!(
                "delete: {NEW_FILE}, left by a compaction that crashed before its rename"
            ));
        }
        for path in &self.set_aside_before {
            lines.push(format!(
                "note: {} is a damaged log set aside by an earlier start",
                path.display()
            ));
        }
        lines.push(if r.damaged() {
            "verdict: damaged".to_string()
        } else {
            "verdict: clean".to_string()
        });
        lines
    }
}

/// How a record read back from the log changed the index.
enum Replayed {
    Applied,
    Duplicate,
    Orphan(&'static str, Uuid),
}

impl Store {
    /// Opens (or creates) the store in `dir` with the default options.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`, recovering from whatever a crash or damage left
    /// (see the module docs): a torn tail is cut off, damage set aside and reported in
    /// [`Store::recovery`].
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store> {
        let ctx = |what: &str, e: std::io::Error| {
            Error::Internal(format!("store {}: {what}: {e}", dir.display()))
        };
        // A directory that cannot be made or written is the user's --dir: a usage error.
        fs::create_dir_all(dir).map_err(|e| {
            Error::Usage(format!(
                "store {}: cannot create the directory: {e} (pick another --dir)",
                dir.display()
            ))
        })?;
        let lock = lock_dir(dir)?;
        let log = dir.join(LOG_FILE);
        let new = dir.join(NEW_FILE);
        if new.exists() {
            // A compaction that crashed before its rename: the old log is the truth.
            fs::remove_file(&new).map_err(|e| ctx("cannot remove a stale temporary log", e))?;
        }
        if !log.exists() {
            write_atomically(dir, MAGIC).map_err(|e| ctx("cannot create the log", e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log)
            .map_err(|e| ctx("cannot open the log", e))?;
        let bytes = read_log(&mut file, &log)?;
        let mut store = Store::empty(dir, file, Some(lock), options);
        store.load(&bytes);
        if store.recovery.damaged() {
            // Set the damaged log aside as it is, then rewrite the live entries to a new one.
            let aside = store
                .set_aside()
                .map_err(|e| ctx("cannot set the damaged log aside", e))?;
            store.recovery.set_aside = Some(aside);
            store.compact()?;
        } else if store.recovery.torn_bytes > 0 {
            store
                .file
                .set_len(store.len)
                .map_err(|e| ctx("cannot cut off a torn record", e))?;
        }
        // Whatever a killed process left in the page cache becomes durable before it is served.
        store
            .file
            .sync_all()
            .map_err(|e| ctx("cannot sync the log", e))?;
        store.maybe_compact()?;
        Ok(store)
    }

    /// Reads the store in `dir` as [`Store::open`] would, changing nothing on disk: what a
    /// start would keep, cut off and set aside. Fails when there is no readable store there,
    /// or when a Titanic has it open.
    pub fn check(dir: &Path) -> Result<Check> {
        let log = dir.join(LOG_FILE);
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{} is not a directory with a titanic store",
                dir.display()
            )));
        }
        // Shared, so that a running Titanic (exclusive) is detected and nothing is created.
        let lock = match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => {
                // SAFETY: flock(2) on a descriptor we own has no memory-safety preconditions.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
                if rc != 0 {
                    return Err(Error::Usage(format!(
                        "store {} is in use by a running titanic (stop it to check the store)",
                        dir.display()
                    )));
                }
                Some(file)
            }
            Err(_) => None,
        };
        let mut file = File::open(&log)
            .map_err(|e| Error::Usage(format!("cannot open {}: {e}", log.display())))?;
        let bytes = read_log(&mut file, &log)?;
        let mut store = Store::empty(dir, file, lock, StoreOptions::default());
        store.load(&bytes);
        let mut set_aside_before: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| Error::Usage(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(DAMAGED_PREFIX) && !n.ends_with(".txt"))
            })
            .collect();
        set_aside_before.sort();
        Ok(Check {
            clean: !store.recovery.damaged(),
            entries: store.len() as u64,
            pending: store.pending.len() as u64,
            log_bytes: bytes.len() as u64,
            stale_new: dir.join(NEW_FILE).exists(),
            set_aside_before,
            recovery: store.recovery,
        })
    }

    fn empty(dir: &Path, file: File, lock: Option<File>, options: StoreOptions) -> Store {
        Store {
            dir: dir.to_path_buf(),
            file,
            _lock: lock,
            len: MAGIC.len() as u64,
            entries: HashMap::new(),
            pending: BTreeMap::new(),
            next_seq: 0,
            live_bytes: 0,
            options,
            poisoned: None,
            crash: None,
            recovery: Recovery::default(),
            compactions: 0,
            warning: None,
            no_space: false,
        }
    }

    /// Builds the index from every valid record of `bytes` (a whole log, magic checked), and
    /// `recovery` from the rest; `len` ends up after the last valid record or damage.
    fn load(&mut self, bytes: &[u8]) {
        let found = scan::scan(bytes, MAGIC.len());
        let mut closed = HashSet::new();
        let mut end = MAGIC.len();
        for piece in found.pieces {
            match piece {
                scan::Piece::Record {
                    offset,
                    size,
                    record,
                } => {
                    self.recovery.records += 1;
                    match self.replay(record, size as u64, &mut closed) {
                        Replayed::Applied => {}
                        Replayed::Duplicate => self.recovery.duplicates += 1,
                        Replayed::Orphan(kind, uuid) => self.recovery.orphans.push(Orphan {
                            offset: offset as u64,
                            kind,
                            uuid,
                        }),
                    }
                    end = offset + size;
                }
                scan::Piece::Damage { offset, size } => {
                    let (records, exact) = scan::suspects(bytes, offset, size);
                    self.recovery.damage.push(Damage {
                        offset: offset as u64,
                        bytes: size as u64,
                        records,
                        exact,
                    });
                    end = offset + size;
                }
            }
        }
        self.len = end as u64;
        self.recovery.torn_bytes = found.torn as u64;
    }

    /// Applies a record read back from the log, telling a duplicate (harmless) from an
    /// orphan (its request was lost). `closed`: UUIDs closed earlier in this log.
    fn replay(&mut self, record: Record, size: u64, closed: &mut HashSet<Uuid>) -> Replayed {
        let (uuid, kind) = match &record {
            Record::Request { uuid, .. } => (*uuid, "request"),
            Record::Reply { uuid, .. } => (*uuid, "reply"),
            Record::Close { uuid } => (*uuid, "close"),
        };
        let stored = self.entries.get(&uuid);
        let applies = match (&record, stored) {
            (Record::Request { .. }, None) => !closed.contains(&uuid),
            (Record::Reply { .. }, Some(slot)) => slot.entry.reply.is_none(),
            (Record::Close { .. }, Some(_)) => true,
            (Record::Request { .. }, Some(_)) => false,
            (_, None) if closed.contains(&uuid) => false,
            (_, None) => {
                if kind == "close" {
                    // Its request was damaged, but the client had closed it: nothing lost.
                    closed.insert(uuid);
                }
                return Replayed::Orphan(kind, uuid);
            }
        };
        if !applies {
            return Replayed::Duplicate;
        }
        if kind == "close" {
            closed.insert(uuid);
        }
        self.apply(record, size);
        Replayed::Applied
    }

    /// Keeps the damaged log as `titanic.log.damaged-N` (a hard link, so no copy and no
    /// extra space; a copy where links fail), with a report of what was lost next to it.
    fn set_aside(&self) -> std::io::Result<PathBuf> {
        let (aside, report) = (1u32..)
            .map(|n| {
                let name = format!("{DAMAGED_PREFIX}{n}");
                (self.dir.join(&name), self.dir.join(format!("{name}.txt")))
            })
            .find(|(a, r)| !a.exists() && !r.exists())
            .expect("a free name");
        let log = self.dir.join(LOG_FILE);
        if fs::hard_link(&log, &aside).is_err() {
            fs::copy(&log, &aside)?;
            File::open(&aside)?.sync_all()?;
        }
        let mut text = format!(
            "{} was found damaged when titanic opened it; it is kept here as it was, and the \
             offsets below are offsets in this file. Every valid record was kept in the new log.\n",
            log.display()
        );
        for line in self.recovery.describe(usize::MAX) {
            text.push_str(&line);
            text.push('\n');
        }
        if self.recovery.torn_bytes > 0 {
            text.push_str(&format!(
                "an incomplete record of {} bytes at the end (a torn write) was not kept\n",
                self.recovery.torn_bytes
            ));
        }
        let mut file = File::create(&report)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        Ok(aside)
    }

    /// What opening the store found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Arms a crash for the next append (fault injection).
    pub fn crash_on_next_write(&mut self, point: CrashPoint) {
        self.crash = Some(point);
    }

    /// Stores a new request durably. Fails if `uuid` is already in the store.
    pub fn put_request(&mut self, uuid: Uuid, service: &str, request: &Message) -> Result<()> {
        if self.entries.contains_key(&uuid) {
            return Err(Error::Internal(format!("uuid {uuid} is already stored")));
        }
        let mut payload = vec![KIND_REQUEST];
        payload.extend_from_slice(&uuid.0);
        put_bytes(&mut payload, service.as_bytes());
        put_frames(&mut payload, request);
        let size = self.append(&payload)?;
        self.apply(
            Record::Request {
                uuid,
                service: service.to_string(),
                request: request.clone(),
            },
            size,
        );
        Ok(())
    }

    /// Stores the reply to a request durably. `false` (and nothing written) if the request is
    /// unknown (closed meanwhile) or already has a reply.
    pub fn put_reply(&mut self, uuid: Uuid, reply: &Message) -> Result<bool> {
        match self.entries.get(&uuid) {
            Some(slot) if slot.entry.reply.is_none() => {}
            _ => return Ok(false),
        }
        let mut payload = vec![KIND_REPLY];
        payload.extend_from_slice(&uuid.0);
        put_frames(&mut payload, reply);
        let size = self.append(&payload)?;
        self.apply(
            Record::Reply {
                uuid,
                reply: reply.clone(),
            },
            size,
        );
        Ok(true)
    }

    /// The request and its reply, if `uuid` is stored.
    pub fn get(&self, uuid: &Uuid) -> Option<&Entry> {
        self.entries.get(uuid).map(|slot| &slot.entry)
    }

    /// Deletes a request and its reply, durably. Idempotent: `false` for an unknown UUID
    /// (nothing is written then). May compact the log afterwards.
    pub fn close(&mut self, uuid: Uuid) -> Result<bool> {
        if !self.entries.contains_key(&uuid) {
            return Ok(false);
        }
        let mut payload = vec![KIND_CLOSE];
        payload.extend_from_slice(&uuid.0);
        let size = self.append(&payload)?;
        self.apply(Record::Close { uuid }, size);
        if let Err(e) = self.maybe_compact() {
            // The close itself is durable; the old log stays valid and a later close retries.
            self.warning = Some(format!("compaction failed: {e}"));
        }
        Ok(true)
    }

    /// Requests without a reply, oldest first.
    pub fn pending(&self) -> Vec<Uuid> {
        self.pending.values().copied().collect()
    }

    /// Entries stored (answered or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size of the log in bytes.
    pub fn log_bytes(&self) -> u64 {
        self.len
    }

    /// Bytes of the log that hold live entries.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Compactions done since the store was opened.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// True when the last write failed for lack of space on the file system (ENOSPC, or
    /// EDQUOT: a quota), so retrying once there is room can succeed.
    pub fn out_of_space(&self) -> bool {
        self.no_space
    }

    /// Whether writes are refused until the store is reopened (after a failed fsync, or a
    /// failed write that could not be cut off), and why.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A warning to report, if something went wrong that did not fail an operation.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Updates the index with a record that is in the log (`size`: its bytes there).
    fn apply(&mut self, record: Record, size: u64) {
        match record {
            Record::Request {
                uuid,
                service,
                request,
            } => {
                if self.entries.contains_key(&uuid) {
                    return; // never written by us; ignore rather than overwrite
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.pending.insert(seq, uuid);
                self.live_bytes += size;
                let entry = Entry {
                    service,
                    request,
                    reply: None,
                };
                self.entries.insert(
                    uuid,
                    Slot {
                        seq,
                        entry,
                        bytes: size,
                    },
                );
            }
            Record::Reply { uuid, reply } => {
                if let Some(slot) = self.entries.get_mut(&uuid) {
                    if slot.entry.reply.is_none() {
                        slot.entry.reply = Some(reply);
                        slot.bytes += size;
                        self.live_bytes += size;
                        self.pending.remove(&slot.seq);
                    }
                }
            }
            Record::Close { uuid } => {
                if let Some(slot) = self.entries.remove(&uuid) {
                    self.pending.remove(&slot.seq);
                    self.live_bytes -= slot.bytes;
                }
            }
        }
    }

    /// Appends one record and syncs it. Returns its size in the log.
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        if let Some(why) = &self.poisoned {
            return Err(Error::Internal(format!(
                "store {} refuses writes after an earlier failure ({why}); restart titanic",
                self.dir.display()
            )));
        }
        let record = encode_record(payload)?;
        let crash = self.crash.take();
        if crash == Some(CrashPoint::BeforeWrite) {
            crate::faults::crash_now();
        }
        if let Some(CrashPoint::MidWrite(permille)) = crash {
            let cut = (record.len() as u64 * permille.min(1000) as u64 / 1000) as usize;
            let cut = cut.clamp(1, record.len() - 1);
            let _ = self.file.write_all_at(&record[..cut], self.len);
            crate::faults::crash_now();
        }
        self.no_space = false;
        if let Err(e) = self.file.write_all_at(&record, self.len) {
            self.no_space = is_no_space(&e);
            // Cut off whatever part of the record made it, so the next append is not hidden
            // behind a torn record.
            if let Err(e2) = self.file.set_len(self.len) {
                self.poisoned = Some(format!("write failed: {e}; truncate failed: {e2}"));
            }
            return Err(Error::Internal(format!(
                "store {}: cannot write: {e}",
                self.dir.display()
            )));
        }
        if crash == Some(CrashPoint::BeforeSync) {
            crate::faults::crash_now();
        }
        if let Err(e) = self.file.sync_data() {
            self.no_space = is_no_space(&e);
            // After a failed fsync the kernel may have dropped the dirty pages: what is on disk
            // is unknown until the log is read again.
            self.poisoned = Some(format!("fsync failed: {e}"));
            return Err(Error::Internal(format!(
                "store {}: cannot sync: {e}",
                self.dir.display()
            )));
        }
        if crash == Some(CrashPoint::AfterSync) {
            crate::faults::crash_now();
        }
        self.len += record.len() as u64;
        Ok(record.len() as u64)
    }

    /// Compacts when closed entries take more room than live ones and than the floor.
    fn maybe_compact(&mut self) -> Result<()> {
        let dead = self.len - MAGIC.len() as u64 - self.live_bytes;
        if dead >= self.options.compact_min && dead > self.live_bytes {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the live entries, in arrival order, into a new log that replaces the old one
    /// atomically (see the module docs).
    fn compact(&mut self) -> Result<()> {
        let mut slots: Vec<(&Uuid, &Slot)> = self.entries.iter().collect();
        slots.sort_by_key(|(_, slot)| slot.seq);
        let mut bytes = MAGIC.to_vec();
        let mut sizes = Vec::with_capacity(slots.len());
        for (uuid, slot) in slots {
            let start = bytes.len();
            let mut payload = vec![KIND_REQUEST];
            payload.extend_from_slice(&uuid.0);
            put_bytes(&mut payload, slot.entry.service.as_bytes());
            put_frames(&mut payload, &slot.entry.request);
            bytes.extend(encode_record(&payload)?);
            if let Some(reply) = &slot.entry.reply {
                let mut payload = vec![KIND_REPLY];
                payload.extend_from_slice(&uuid.0);
                put_frames(&mut payload, reply);
                bytes.extend(encode_record(&payload)?);
            }
            sizes.push((*uuid, (bytes.len() - start) as u64));
        }
        let file = write_atomically(&self.dir, &bytes).map_err(|e| {
            Error::Internal(format!("store {}: cannot compact: {e}", self.dir.display()))
        })?;
        self.file = file;
        self.len = bytes.len() as u64;
        self.live_bytes = self.len - MAGIC.len() as u64;
        for (uuid, size) in sizes {
            if let Some(slot) = self.entries.get_mut(&uuid) {
                slot.bytes = size;
            }
        }
        self.compactions += 1;
        Ok(())
    }
}

/// A decoded record.
enum Record {
    Request {
        uuid: Uuid,
        service: String,
        request: Message,
    },
    Reply {
        uuid: Uuid,
        reply: Message,
    },
    Close {
        uuid: Uuid,
    },
}

/// The whole log, after checking its magic.
fn read_log(file: &mut File, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::Internal(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::Usage(format!(
            "{} is not a pirate titanic log (pick an empty --dir)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Takes an exclusive `flock` on `DIR/lock`, so two Titanics never share a store. The kernel
/// drops it when the process dies, however it dies.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::Usage(format!(
                "cannot open {}: {e} (pick a --dir this user can write)",
                path.display()
            ))
        })?;
    // SAFETY: flock(2) on a descriptor we own has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::Usage(format!(
            "store {} is in use by another titanic (one directory per titanic; pick another --dir)",
            dir.display()
        )));
    }
    Ok(file)
}

/// Writes `bytes` as the whole new log: to a temporary file, synced, renamed over the log,
/// directory synced. Returns the new log, open for reading and writing.
fn write_atomically(dir: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let new = dir.join(NEW_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&new, dir.join(LOG_FILE))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Bytes available to this user on the file system of `dir` (statvfs: `f_bavail` blocks of
/// `f_frsize` bytes), or why that could not be read.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs(3) fills the zeroed struct we own from a NUL-terminated path.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// `len:u32le crc:u32le payload`.
fn encode_record(payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::Internal("record larger than 4 GiB".into()))?;
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&checksum(len, payload).to_le_bytes());
    record.extend_from_slice(payload);
    Ok(record)
}

/// The payload and whole size of the record at the start of `bytes`, if it is complete and
/// its checksum matches.
fn next_record(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..RECORD_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let payload = bytes.get(RECORD_HEADER..RECORD_HEADER.checked_add(len as usize)?)?;
    (checksum(len, payload) == crc).then_some((payload, RECORD_HEADER + payload.len()))
}

fn checksum(len: u32, payload: &[u8]) -> u32 {
    crc32_update(crc32_update(!0, &len.to_le_bytes()), payload) ^ !0
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for &b in bytes {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_frames(out: &mut Vec<u8>, msg: &Message) {
    out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    for frame in msg.iter() {
        put_bytes(out, frame);
    }
}

/// Reads a checksummed payload; `None` if it does not parse (never a panic).
fn decode(payload: &[u8]) -> Option<Record> {
    let mut r = Reader(payload);
    let kind = r.take(1)?[0];
    let uuid = Uuid(r.take(16)?.try_into().ok()?);
    let record = match kind {
        KIND_REQUEST => {
            let service = String::from_utf8(r.bytes()?.to_vec()).ok()?;
            let request = r.frames()?;
            Record::Request {
                uuid,
                service,
                request,
            }
        }
        KIND_REPLY => Record::Reply {
            uuid,
            reply: r.frames()?,
        },
        KIND_CLOSE => Record::Close { uuid },
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn frames(&mut self) -> Option<Message> {
        let n = self.u32()?;
        let mut msg = Message::new();
        for _ in 0..n {
            msg.push_back(self.bytes()?.to_vec());
        }
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "pirate-store-{name}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn msg(frames: &[&str]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.as_bytes().to_vec()))
    }

    fn uuid(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    #[test]
    fn uuids_are_32_lowercase_hex_and_parse_back() {
        let u = Uuid::random();
        let text = u.to_string();
        assert_eq!(text.len(), 32);
        assert!(text
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(Uuid::parse(text.as_bytes()), Some(u));
        assert_eq!(Uuid::parse(text.to_uppercase().as_bytes()), Some(u));
        assert_ne!(Uuid::random(), u);
        for bad in ["", "abc", &text[..31], &format!("{}g", &text[..31]), "é"] {
            assert_eq!(Uuid::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32_update(!0, b"123456789") ^ !0, 0xCBF4_3926);
    }

    #[test]
    fn put_get_reply_close_and_pending() {
        let dir = TempDir::new("basic");
        let mut store = Store::open(&dir.0).unwrap();
        assert!(store.is_empty());
        store
            .put_request(uuid(1), "echo", &msg(&["a", "b"]))
            .unwrap();
        store.put_request(uuid(2), "upper", &msg(&["c"])).unwrap();
        store.put_request(uuid(3), "echo", &msg(&[""])).unwrap();
        assert!(store.put_request(uuid(1), "echo", &msg(&["x"])).is_err());
        assert_eq!(store.pending(), vec![uuid(1), uuid(2), uuid(3)]);
        assert!(store.put_reply(uuid(2), &msg(&["C"])).unwrap());
        assert!(!store.put_reply(uuid(2), &msg(&["again"])).unwrap());
        assert!(!store.put_reply(uuid(9), &msg(&["nobody"])).unwrap());
        assert_eq!(store.pending(), vec![uuid(1), uuid(3)]);
        let e = store.get(&uuid(2)).unwrap();
        assert_eq!(e.service, "upper");
        assert_eq!(e.request, msg(&["c"]));
        assert_eq!(e.reply, Some(msg(&["C"])));
        assert_eq!(store.get(&uuid(1)).unwrap().reply, None);
        assert!(store.close(uuid(1)).unwrap());
        assert!(!store.close(uuid(1)).unwrap(), "close is idempotent");
        assert!(!store.close(uuid(7)).unwrap(), "unknown uuid");
        assert_eq!(store.get(&uuid(1)), None);
        assert_eq!(store.pending(), vec![uuid(3)]);
        assert_eq!(store.len(), 2);
        drop(store);

        // All of it survives a reopen, arrival order included.
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recovery().torn_bytes, 0);
        assert_eq!(store.pending(), vec![uuid(3)]);
        assert_eq!(store.get(&uuid(2)).unwrap().reply, Some(msg(&["C"])));
        assert_eq!(store.get(&uuid(3)).unwrap().request, msg(&[""]));
        assert_eq!(store.get(&uuid(1)), None);
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = TempDir::new("lock");
        let _store = Store::open(&dir.0).unwrap();
        let err = Store::open(&dir.0).err().expect("second open must fail");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = TempDir::new("foreign");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.0.join(LOG_FILE), b"hello, not a log at all").unwrap();
        assert!(matches!(Store::open(&dir.0), Err(Error::Usage(_))));
    }

    /// Builds a log, then cuts its last record at every byte offset: recovery must keep every
    /// record before it, drop the torn one, and take new writes after it.
    #[test]
    fn a_torn_last_record_is_ignored_at_every_offset() {
        let dir = TempDir::new("torn");
        let (before, full) = {
            let mut store = Store::open(&dir.0).unwrap();
            store.put_request(uuid(1), "echo", &msg(&["one"])).unwrap();
            store.put_request(uuid(2), "echo", &msg(&["two"])).unwrap();
            store.put_reply(uuid(1), &msg(&["ONE"])).unwrap();
            let before = store.log_bytes();
            // The last record: a reply with several frames.
            store.put_reply(uuid(2), &msg(&["T", "W", "O"])).unwrap();
            (before, fs::read(dir.0.join(LOG_FILE)).unwrap())
        };
        assert!(full.len() as u64 > before + 10);
        for cut in before..full.len() as u64 {
            fs::write(dir.0.join(LOG_FILE), &full[..cut as usize]).unwrap();
            let mut store = Store::open(&dir.0).unwrap();
            assert_eq!(store.recovery().torn_bytes, cut - before, "cut at {cut}");
            assert_eq!(store.recovery().records, 3, "cut at {cut}");
            assert_eq!(store.get(&uuid(1)).unwrap().reply, Some(msg(&["ONE"])));
            assert_eq!(store.get(&uuid(2)).unwrap().reply, None, "cut at {cut}");
            assert_eq!(store.pending(), vec![uuid(2)]);
            // The torn bytes are gone from the file, so a new record is found after reopen.
            assert_eq!(fs::metadata(dir.0.join(LOG_FILE)).unwrap().len(), before);
            store.put_reply(uuid(2), &msg(&["2"])).unwrap();
            drop(store);
            let store = Store::open(&dir.0).unwrap();
            assert_eq!(store.get(&uuid(2)).unwrap().reply, Some(msg(&["2"])));
            assert_eq!(store.recovery().torn_bytes, 0);
        }
        // And the whole file, untouched, has all four records.
        fs::write(dir.0.join(LOG_FILE), &full).unwrap();
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recovery().records, 4);
        assert_eq!(
            store.get(&uuid(2)).unwrap().reply,
            Some(msg(&["T", "W", "O"]))
        );
    }

    /// A complete last record whose CRC fails is damage, not a torn write (which would be
    /// incomplete): it may have been acknowledged, so it is reported and set aside.
    #[test]
    fn a_corrupted_last_record_is_damage_not_a_torn_tail() {
        let dir = TempDir::new("corrupt");
        let start = {
            let mut store = Store::open(&dir.0).unwrap();
            store.put_request(uuid(1), "echo", &msg(&["one"])).unwrap();
            let start = store.log_bytes();
            store.put_request(uuid(2), "echo", &msg(&["two"])).unwrap();
            start
        };
        let mut bytes = fs::read(dir.0.join(LOG_FILE)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(dir.0.join(LOG_FILE), &bytes).unwrap();
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.pending(), vec![uuid(1)]);
        let r = store.recovery();
        assert_eq!(r.torn_bytes, 0);
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].offset, start);
        assert_eq!(r.damage[0].bytes, bytes.len() as u64 - start);
        assert_eq!(r.damage[0].records[0].uuid, Some(uuid(2)));
        assert_eq!(r.damage[0].records[0].kind, Some("request"));
    }

    /// The log the damage tests start from: seven records of every kind, with a reply and a
    /// close after their requests (so losing a request orphans them). Returns the bytes and
    /// each record's range.
    fn sample_log(dir: &Path) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut store = Store::open(dir).unwrap();
        let mut ranges = Vec::new();
        for op in 0..SAMPLE_OPS {
            let start = store.log_bytes() as usize;
            sample_op(&mut store, op);
            ranges.push(start..store.log_bytes() as usize);
        }
        drop(store);
        (fs::read(dir.join(LOG_FILE)).unwrap(), ranges)
    }

    const SAMPLE_OPS: usize = 7;

    fn sample_op(store: &mut Store, op: usize) {
        match op {
            0 => store.put_request(uuid(1), "echo", &msg(&["one"])).unwrap(),
            1 => store
                .put_request(uuid(2), "echo", &msg(&["two", "2"]))
                .unwrap(),
            2 => assert!(store.put_reply(uuid(1), &msg(&["ONE"])).unwrap()),
            3 => store
                .put_request(uuid(3), "upper", &msg(&["three"]))
                .unwrap(),
            4 => assert!(store.close(uuid(2)).unwrap()),
            5 => assert!(store.put_reply(uuid(3), &msg(&["THREE", ""])).unwrap()),
            _ => store.put_request(uuid(4), "echo", &msg(&["four"])).unwrap(),
        }
    }

    /// What a store serves: every entry by UUID, and the pending ones in order.
    fn state(store: &Store) -> (Vec<Option<Entry>>, Vec<Uuid>) {
        let entries = (1..=4).map(|n| store.get(&uuid(n)).cloned()).collect();
        (entries, store.pending())
    }

    /// The state of the sample with only the records for which `keep(op)` holds, built
    /// through the API (a reply or close of an unknown request writes nothing, as replay
    /// ignores an orphan).
    fn expected(keep: impl Fn(usize) -> bool) -> (Vec<Option<Entry>>, Vec<Uuid>) {
        let dir = TempDir::new("expected");
        let mut store = Store::open(&dir.0).unwrap();
        for op in (0..SAMPLE_OPS).filter(|op| keep(*op)) {
            match op {
                2 => drop(store.put_reply(uuid(1), &msg(&["ONE"]))),
                4 => drop(store.close(uuid(2))),
                5 => drop(store.put_reply(uuid(3), &msg(&["THREE", ""]))),
                _ => sample_op(&mut store, op),
            }
        }
        state(&store)
    }

    /// Loads `bytes` as a log the way `open` does, without the repair (no fsync: fast enough
    /// to try every byte).
    fn load(dir: &Path, bytes: &[u8]) -> Store {
        fs::write(dir.join(LOG_FILE), bytes).unwrap();
        let file = File::open(dir.join(LOG_FILE)).unwrap();
        let mut store = Store::empty(dir, file, None, StoreOptions::default());
        store.load(bytes);
        store
    }

    /// The orphans the loss of record `k` of the sample leaves: the reply and the close
    /// written after a lost request.
    fn orphans_of(k: usize, ranges: &[std::ops::Range<usize>]) -> Vec<Orphan> {
        let orphan = |op: usize, kind, n| Orphan {
            offset: ranges[op].start as u64,
            kind,
            uuid: uuid(n),
        };
        match k {
            0 => vec![orphan(2, "reply", 1)],
            1 => vec![orphan(4, "close", 2)],
            3 => vec![orphan(5, "reply", 3)],
            _ => vec![],
        }
    }

    /// Checks a load of the sample in which exactly the bytes of record `k` were damaged:
    /// every other record kept, the damage reported at exactly that record's range (or, for
    /// the last record when its length field now points past the end, as a torn tail of the
    /// same bytes), and the orphans its loss left.
    fn assert_lost_exactly(store: &Store, k: usize, ranges: &[std::ops::Range<usize>], what: &str) {
        thread_local! {
            // The state without record k, built once per k (each build writes and syncs).
            static WITHOUT: Vec<(Vec<Option<Entry>>, Vec<Uuid>)> =
                (0..SAMPLE_OPS).map(|k| expected(|op| op != k)).collect();
        }
        let r = store.recovery();
        let range = &ranges[k];
        WITHOUT.with(|without| assert_eq!(state(store), without[k], "{what}"));
        assert_eq!(r.orphans, orphans_of(k, ranges), "{what}");
        assert_eq!(r.duplicates, 0, "{what}");
        assert_eq!(r.records, SAMPLE_OPS as u64 - 1, "{what}");
        if r.damage.is_empty() {
            assert_eq!(
                k,
                SAMPLE_OPS - 1,
                "only the last record can look torn: {what}"
            );
            assert_eq!(r.torn_bytes, range.len() as u64, "{what}");
        } else {
            assert_eq!(r.torn_bytes, 0, "{what}");
            assert_eq!(r.damage.len(), 1, "{what}");
            let d = &r.damage[0];
            assert_eq!(
                (d.offset, d.bytes),
                (range.start as u64, range.len() as u64),
                "{what}"
            );
            assert_eq!(d.records[0].offset, range.start as u64, "{what}");
            assert!(r.damaged());
        }
    }

    /// Every byte of every record flipped in turn (two ways): the damaged record, and only
    /// it, is lost; the report says where, and its kind and UUID when those bytes survived.
    #[test]
    fn a_flipped_byte_anywhere_loses_only_its_record_and_says_which() {
        let dir = TempDir::new("flip");
        let (full, ranges) = sample_log(&dir.0);
        let kinds = [
            "request", "request", "reply", "request", "close", "reply", "request",
        ];
        let uuids = [1, 2, 1, 3, 2, 3, 4];
        for (k, range) in ranges.iter().enumerate() {
            for at in range.clone() {
                for mask in [0xffu8, 0x01] {
                    let mut bytes = full.clone();
                    bytes[at] ^= mask;
                    let store = load(&dir.0, &bytes);
                    let what = format!("record {k}, byte {at} ^ {mask:#x}");
                    assert_lost_exactly(&store, k, &ranges, &what);
                    let in_record = at - range.start;
                    if let Some(d) = store.recovery().damage.first() {
                        if in_record >= 4 {
                            // The length survived: the report is exact.
                            assert!(d.exact, "{what}");
                            assert_eq!(d.records.len(), 1, "{what}");
                        }
                        if !(0..4).contains(&in_record) && !(8..25).contains(&in_record) {
                            assert_eq!(d.records[0].kind, Some(kinds[k]), "{what}");
                            assert_eq!(d.records[0].uuid, Some(uuid(uuids[k])), "{what}");
                        }
                    }
                }
            }
        }
    }

    /// A record's length field set to values around and far from the truth.
    #[test]
    fn a_changed_length_field_loses_only_its_record() {
        let dir = TempDir::new("length");
        let (full, ranges) = sample_log(&dir.0);
        for (k, range) in ranges.iter().enumerate() {
            let len = (range.len() - RECORD_HEADER) as u32;
            let bad = [
                0,
                1,
                17,
                len - 1,
                len + 1,
                len + 8,
                2 * len,
                len << 8,
                u32::MAX,
            ];
            for bad in bad.into_iter().filter(|b| *b != len) {
                let mut bytes = full.clone();
                bytes[range.start..range.start + 4].copy_from_slice(&bad.to_le_bytes());
                let store = load(&dir.0, &bytes);
                assert_lost_exactly(&store, k, &ranges, &format!("record {k}, length {bad}"));
            }
        }
    }

    /// A record written twice (in place, or again at the end of the log) changes nothing
    /// and is counted as a duplicate, not damage.
    #[test]
    fn a_duplicated_record_is_harmless() {
        let dir = TempDir::new("dup");
        let (full, ranges) = sample_log(&dir.0);
        let all = expected(|_| true);
        for (k, range) in ranges.iter().enumerate() {
            let record = &full[range.clone()];
            let in_place = [&full[..range.end], record, &full[range.end..]].concat();
            let at_end = [&full[..], record].concat();
            for (bytes, where_) in [(in_place, "in place"), (at_end, "at the end")] {
                let store = load(&dir.0, &bytes);
                let r = store.recovery();
                let what = format!("record {k} duplicated {where_}");
                assert_eq!(state(&store), all, "{what}");
                assert_eq!(r.duplicates, 1, "{what}");
                assert_eq!(r.records, SAMPLE_OPS as u64 + 1, "{what}");
                assert!(!r.damaged() && r.torn_bytes == 0, "{what}: {r:?}");
            }
        }
    }

    /// Cut at every offset of the whole log: every whole record before the cut is kept,
    /// the partial one is a torn tail of exactly its bytes, and nothing is called damage.
    #[test]
    fn a_log_truncated_at_every_offset_keeps_every_whole_record() {
        let dir = TempDir::new("truncate");
        let (full, ranges) = sample_log(&dir.0);
        let prefixes: Vec<_> = (0..=SAMPLE_OPS).map(|n| expected(|op| op < n)).collect();
        for cut in MAGIC.len()..=full.len() {
            let store = load(&dir.0, &full[..cut]);
            let whole = ranges.iter().filter(|r| r.end <= cut).count();
            let r = store.recovery();
            let torn = cut - ranges.get(whole).map_or(cut, |r| r.start.min(cut));
            assert_eq!(r.records, whole as u64, "cut at {cut}");
            assert_eq!(r.torn_bytes, torn as u64, "cut at {cut}");
            assert!(!r.damaged(), "cut at {cut}: {r:?}");
            assert_eq!(state(&store), prefixes[whole], "cut at {cut}");
        }
    }

    /// Opening a damaged store repairs it: the damaged log is set aside unchanged (its
    /// report beside it), the new log holds every valid record and nothing else, and it
    /// takes writes and reopens clean.
    #[test]
    fn opening_a_damaged_store_sets_the_damage_aside_and_rewrites_the_log() {
        let dir = TempDir::new("repair");
        let (full, ranges) = sample_log(&dir.0);
        for (k, range) in ranges.iter().enumerate() {
            let mut bytes = full.clone();
            bytes[range.start + range.len() / 2] ^= 0x55;
            fs::write(dir.0.join(LOG_FILE), &bytes).unwrap();
            let mut store = Store::open(&dir.0).unwrap();
            assert_lost_exactly(&store, k, &ranges, &format!("record {k}"));
            let aside = store.recovery().set_aside.clone().expect("set aside");
            assert_eq!(fs::read(&aside).unwrap(), bytes, "record {k}");
            let report = fs::read_to_string(format!("{}.txt", aside.display())).unwrap();
            assert!(
                report.contains(&format!("at offset {} hold no valid", range.start)),
                "{report}"
            );
            let check = Store::check(&dir.0);
            assert!(check.is_err(), "in use while open");
            store.put_request(uuid(9), "echo", &msg(&["new"])).unwrap();
            let before = state(&store);
            drop(store);
            let check = Store::check(&dir.0).unwrap();
            assert!(!check.recovery.damaged(), "{check:?}");
            assert_eq!(check.recovery.torn_bytes, 0);
            assert_eq!(check.set_aside_before.len(), k + 1);
            let store = Store::open(&dir.0).unwrap();
            assert!(!store.recovery().damaged());
            assert_eq!(state(&store), before);
            assert!(store.get(&uuid(9)).is_some());
            drop(store);
            fs::remove_file(dir.0.join(LOG_FILE)).unwrap();
        }
    }

    /// `check` reads without changing anything: a damaged log stays as it was.
    #[test]
    fn check_reports_without_repairing() {
        let dir = TempDir::new("check");
        let (full, ranges) = sample_log(&dir.0);
        let mut bytes = full.clone();
        bytes[ranges[1].start + 12] ^= 1;
        bytes.extend_from_slice(&full[ranges[6].clone()][..5]);
        fs::write(dir.0.join(LOG_FILE), &bytes).unwrap();
        let check = Store::check(&dir.0).unwrap();
        assert_eq!(check.recovery.damage.len(), 1);
        assert_eq!(check.recovery.torn_bytes, 5);
        assert_eq!(check.entries, 3);
        assert_eq!(fs::read(dir.0.join(LOG_FILE)).unwrap(), bytes);
        assert!(check.set_aside_before.is_empty());
        let lines = check.recovery.describe(10);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("had been closed"), "{lines:?}");
        assert!(Store::check(&dir.0.join("nothing-here")).is_err());
    }

    #[test]
    fn a_stale_compaction_file_is_discarded() {
        let dir = TempDir::new("stale");
        {
            let mut store = Store::open(&dir.0).unwrap();
            store.put_request(uuid(1), "echo", &msg(&["one"])).unwrap();
        }
        fs::write(dir.0.join(NEW_FILE), b"half a compaction").unwrap();
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.pending(), vec![uuid(1)]);
        assert!(!dir.0.join(NEW_FILE).exists());
    }

    /// Space is reclaimed: thousands of request/reply/close cycles keep the log bounded, and
    /// what was still open survives every compaction in arrival order.
    #[test]
    fn the_log_does_not_grow_across_request_close_cycles() {
        let dir = TempDir::new("compact");
        let options = StoreOptions { compact_min: 4096 };
        let mut store = Store::open_with(&dir.0, options).unwrap();
        let body = msg(&[&"x".repeat(200)]);
        store
            .put_request(uuid(0), "keep", &msg(&["first"]))
            .unwrap();
        let mut max = 0;
        for i in 0..3000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&(i + 1).to_le_bytes());
            let u = Uuid(id);
            store.put_request(u, "echo", &body).unwrap();
            store.put_reply(u, &body).unwrap();
            store.close(u).unwrap();
            max = max.max(fs::metadata(dir.0.join(LOG_FILE)).unwrap().len());
        }
        store.put_request(uuid(9), "keep", &msg(&["last"])).unwrap();
        assert!(
            store.compactions() > 10,
            "{} compactions",
            store.compactions()
        );
        // Under twice the live data plus the floor plus one cycle's records.
        assert!(max < 2 * 4096 + 2048, "log reached {max} bytes");
        assert_eq!(store.pending(), vec![uuid(0), uuid(9)]);
        drop(store);
        let store = Store::open_with(&dir.0, options).unwrap();
        assert_eq!(store.pending(), vec![uuid(0), uuid(9)]);
        assert_eq!(store.get(&uuid(0)).unwrap().request, msg(&["first"]));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn garbage_never_panics_recovery() {
        let dir = TempDir::new("garbage");
        fs::create_dir_all(&dir.0).unwrap();
        let mut seed = 7u64;
        for round in 0..200 {
            let mut bytes = MAGIC.to_vec();
            for _ in 0..(round % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                bytes.push((seed >> 33) as u8);
            }
            // A well-checksummed record whose payload is nonsense.
            bytes.extend(encode_record(&[KIND_REQUEST, 1, 2, 3]).unwrap());
            fs::write(dir.0.join(LOG_FILE), &bytes).unwrap();
            let store = Store::open(&dir.0).unwrap();
            assert!(store.is_empty());
        }
    }
}
