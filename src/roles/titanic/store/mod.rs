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
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::msg::Message;

mod check;
mod record;
mod scan;
#[cfg(test)]
mod tests;

// What the store reports is the event layer's plain data; the store fills it.
pub use crate::event::store::{Check, Damage, Orphan, Recovery, Suspect};
pub use crate::proto::tsp::Uuid;
pub use record::MAGIC;
use record::{encode_record, put_bytes, put_frames, Record, KIND_CLOSE, KIND_REPLY, KIND_REQUEST};

/// The log's file name inside the store's directory.
pub const LOG_FILE: &str = "titanic.log";
const NEW_FILE: &str = "titanic.log.new";
/// A damaged log set aside is `titanic.log.damaged-N`, its report `titanic.log.damaged-N.txt`.
const DAMAGED_PREFIX: &str = "titanic.log.damaged-";
const LOCK_FILE: &str = "lock";

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
