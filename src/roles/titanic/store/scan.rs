//! Reading a log back: which bytes are valid records, which are damage (to set aside), and
//! which are a torn tail (to cut off).
//!
//! A record is valid when its whole length is there, its CRC matches and its payload
//! decodes. Where a record is not valid, the scan resynchronises: it looks at every later
//! offset, in order, for the first one where a valid record starts. If there is one, the
//! bytes in between are **damage** (a flipped bit, a bad sector, a stray write): records that
//! were whole and synced once, so possibly acknowledged. Only when nothing valid follows is
//! the rest a candidate **torn tail**, and only if it is an incomplete record (fewer bytes than
//! a header, or fewer than its header declares) or all zeros (a write whose data never reached
//! the disk): what a write interrupted by a crash leaves. Our writer appends a record only
//! after the one before it was synced, so a torn record is always the last one, and it was
//! never acknowledged. Anything else after the last valid record (a complete record whose CRC
//! fails) is damage too.
//!
//! Taking the *first* valid offset means no genuine record is ever skipped: every genuine
//! record is valid, so the scan stops on it at the latest. The price is that a well-formed
//! record hidden inside the payload of a damaged record (a client would have to send the
//! bytes of a `pirate` log record, CRC included, as a request) is taken as real.
//!
//! The check before the CRC (`plausible`) only rejects offsets our writer could never have
//! started a record at, so that resynchronising through megabytes costs a few comparisons per
//! byte rather than a CRC of the rest of the file.

use super::record::{
    decode, next_record, Record, KIND_CLOSE, KIND_REPLY, KIND_REQUEST, RECORD_HEADER,
};
use crate::event::store::Suspect;
use crate::proto::tsp::Uuid;

/// Fixed part of every payload: kind and UUID.
const PAYLOAD_HEAD: usize = 1 + 16;

/// One stretch of the log, in file order.
pub(super) enum Piece {
    /// A valid record at `offset`, `size` bytes with its header.
    Record {
        offset: usize,
        size: usize,
        record: Record,
    },
    /// Bytes that hold no valid record, with valid records after them (or a complete but
    /// failed record at the end): set aside, never cut off silently.
    Damage { offset: usize, size: usize },
}

/// What a log holds.
pub(super) struct Scan {
    pub pieces: Vec<Piece>,
    /// Bytes of an incomplete last record (a torn write), cut off on open.
    pub torn: usize,
}

/// Scans `bytes` from `start` (just after the magic) to the end.
pub(super) fn scan(bytes: &[u8], start: usize) -> Scan {
    let mut pieces = Vec::new();
    let mut torn = 0;
    let mut at = start;
    while at < bytes.len() {
        if let Some((record, size)) = record_at(bytes, at) {
            pieces.push(Piece::Record {
                offset: at,
                size,
                record,
            });
            at += size;
            continue;
        }
        match (at + 1..bytes.len()).find(|&p| record_at(bytes, p).is_some()) {
            Some(next) => {
                pieces.push(Piece::Damage {
                    offset: at,
                    size: next - at,
                });
                at = next;
            }
            None => {
                let rest = &bytes[at..];
                if is_torn(rest) {
                    torn = rest.len();
                } else {
                    pieces.push(Piece::Damage {
                        offset: at,
                        size: rest.len(),
                    });
                }
                break;
            }
        }
    }
    Scan { pieces, torn }
}

/// The valid record starting at `bytes[at]`, if there is one.
fn record_at(bytes: &[u8], at: usize) -> Option<(Record, usize)> {
    let rest = &bytes[at..];
    if !plausible(rest) {
        return None;
    }
    let (payload, size) = next_record(rest)?;
    Some((decode(payload)?, size))
}

/// Could our writer have started a record here? Only the layout, no CRC:
/// `len:u32le crc:u32le kind uuid[16] …` with the whole length present, a known kind, and
/// the length that kind needs (a close is exactly kind and UUID; a request's service name
/// and frame count fit; a reply's frame count fits).
fn plausible(rest: &[u8]) -> bool {
    let Some(len) = declared_len(rest) else {
        return false;
    };
    if len < PAYLOAD_HEAD || rest.len().saturating_sub(RECORD_HEADER) < len {
        return false;
    }
    let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
    let after_head = || u32_at(payload, PAYLOAD_HEAD).map(|n| n as usize);
    match payload[0] {
        KIND_CLOSE => len == PAYLOAD_HEAD,
        KIND_REPLY => after_head().is_some_and(|count| count <= (len - PAYLOAD_HEAD - 4) / 4),
        KIND_REQUEST => after_head().is_some_and(|service| {
            // service bytes, then a frame count
            service
                .checked_add(PAYLOAD_HEAD + 4 + 4)
                .is_some_and(|need| need <= len)
        }),
        _ => false,
    }
}

/// The payload length in a record header, if the header is all there.
pub(super) fn declared_len(rest: &[u8]) -> Option<usize> {
    u32_at(rest, 0).map(|n| n as usize)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The end of a log after its last valid record: torn if it is an incomplete record or was
/// never written (zeros), damage otherwise.
fn is_torn(rest: &[u8]) -> bool {
    let incomplete = match declared_len(rest) {
        None => true,
        Some(len) => rest.len().saturating_sub(RECORD_HEADER) < len,
    };
    incomplete || rest.iter().all(|&b| b == 0)
}

/// Reads a damaged stretch's records by their declared lengths. When the lengths tile the
/// stretch exactly (only payloads were damaged), every record in it is known: one suspect
/// each, and `true`. Otherwise only the first header is trusted as far as it reads (the
/// stretch starts where a record should), and `false`: at least one record was lost.
pub(super) fn suspects(bytes: &[u8], offset: usize, size: usize) -> (Vec<Suspect>, bool) {
    let region = &bytes[offset..offset + size];
    let mut out = Vec::new();
    let mut p = 0;
    while p < region.len() {
        let head = &region[p..];
        let kind = head.get(RECORD_HEADER).and_then(|k| match *k {
            KIND_REQUEST => Some("request"),
            KIND_REPLY => Some("reply"),
            KIND_CLOSE => Some("close"),
            _ => None,
        });
        let uuid = head
            .get(RECORD_HEADER + 1..RECORD_HEADER + PAYLOAD_HEAD)
            .and_then(|u| u.try_into().ok())
            .map(Uuid);
        out.push(Suspect {
            offset: (offset + p) as u64,
            kind,
            uuid,
        });
        match declared_len(head).filter(|len| *len >= PAYLOAD_HEAD) {
            Some(len) if RECORD_HEADER + len <= head.len() => p += RECORD_HEADER + len,
            _ => break,
        }
    }
    if p == region.len() {
        (out, true)
    } else {
        out.truncate(1);
        (out, false)
    }
}
