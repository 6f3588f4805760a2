//! The log's format: the magic, the record frame (`len:u32le crc:u32le payload`, CRC-32), the
//! three payloads (request, reply, close), keyed by the request's [`Uuid`]. Pure bytes in,
//! bytes out; the layout is drawn in the store's module docs.

use crate::error::{Error, Result};
use crate::msg::Message;
use crate::proto::tsp::Uuid;

/// The first bytes of every log file.
pub const MAGIC: &[u8; 16] = b"PIRATE TSP LOG 1";
/// Record header: length and CRC, 4 bytes each.
pub(super) const RECORD_HEADER: usize = 8;

pub(super) const KIND_REQUEST: u8 = 1;
pub(super) const KIND_REPLY: u8 = 2;
pub(super) const KIND_CLOSE: u8 = 3;

/// A decoded record.
pub(super) enum Record {
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

/// `len:u32le crc:u32le payload`.
pub(super) fn encode_record(payload: &[u8]) -> Result<Vec<u8>> {
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
pub(super) fn next_record(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header = bytes.get(..RECORD_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let payload = bytes.get(RECORD_HEADER..RECORD_HEADER.checked_add(len as usize)?)?;
    (checksum(len, payload) == crc).then_some((payload, RECORD_HEADER + payload.len()))
}

pub(super) fn checksum(len: u32, payload: &[u8]) -> u32 {
    crc32_update(crc32_update(!0, &len.to_le_bytes()), payload) ^ !0
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
pub(super) fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
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

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(super) fn put_frames(out: &mut Vec<u8>, msg: &Message) {
    out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    for frame in msg.iter() {
        put_bytes(out, frame);
    }
}

/// Reads a checksummed payload; `None` if it does not parse (never a panic).
pub(super) fn decode(payload: &[u8]) -> Option<Record> {
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
