//! The store's unit tests: durability, recovery of torn and damaged logs, compaction, bounds.

use super::record::{crc32_update, RECORD_HEADER};
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
