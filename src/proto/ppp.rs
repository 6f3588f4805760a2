//! 6/PPP, the Paranoid Pirate Protocol: READY and HEARTBEAT control messages between a worker
//! (DEALER) and a queue (ROUTER), and REQUEST/REPLY carrying an address envelope.
//!
//! | message | frames (after the ROUTER identity) |
//! |---|---|
//! | READY (worker → queue) | `0x01` (or `"READY"`, see below) |
//! | HEARTBEAT (both ways)  | `0x02` (or `"HEARTBEAT"`) |
//! | REQUEST / REPLY        | address envelope, `""`, body (1+ frames) |
//!
//! **The Guide's C++ dialect.** The C++ versions of the Guide's Simple and Paranoid Pirate
//! programs spell the commands as the strings `"READY"` and `"HEARTBEAT"` instead of the bytes
//! `0x01` and `0x02`. Both spellings are accepted ([`decode_spoken`] says which one a peer
//! used) and [`encode_in`] answers a peer in its own [`Dialect`]; without a word from the peer,
//! the RFC's bytes are sent.
//!
//! Known weakness of the protocol: a one-frame request whose body is the byte 0x01 or 0x02
//! cannot be told apart from READY/HEARTBEAT. A request always carries an envelope, so the
//! ambiguity only exists for one-frame messages, which are always taken as control.

use std::fmt;

use crate::msg::{Frame, Message, MAX_ENVELOPE};

/// The READY command byte.
pub const READY: u8 = 0x01;
/// The HEARTBEAT command byte.
pub const HEARTBEAT: u8 = 0x02;

/// The Guide's C++ spelling of READY.
pub const READY_WORD: &[u8] = b"READY";
/// The Guide's C++ spelling of HEARTBEAT.
pub const HEARTBEAT_WORD: &[u8] = b"HEARTBEAT";

/// How a peer spells READY and HEARTBEAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// 6/PPP: the bytes `0x01` and `0x02`.
    #[default]
    Bytes,
    /// The Guide's C++ programs: the strings `"READY"` and `"HEARTBEAT"`.
    Words,
}

/// A decoded PPP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ppp {
    Ready,
    Heartbeat,
    /// A request or reply: the address envelope (identity frames, without the delimiter) and
    /// the body.
    Data {
        envelope: Vec<Frame>,
        body: Message,
    },
}

/// Why a message is not valid PPP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PppError {
    Empty,
    /// A one-frame message other than READY or HEARTBEAT.
    UnknownCommand(Vec<u8>),
    /// A multi-frame message without an empty delimiter after its envelope.
    NoDelimiter,
    /// An envelope with no address before the delimiter.
    NoAddress,
    /// Nothing after the delimiter.
    NoBody,
}

impl fmt::Display for PppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PppError::Empty => write!(f, "empty message"),
            PppError::UnknownCommand(c) => {
                write!(f, "unknown one-frame command {}", crate::msg::frame_text(c))
            }
            PppError::NoDelimiter => write!(
                f,
                "no empty delimiter within the first {} frames",
                MAX_ENVELOPE + 1
            ),
            PppError::NoAddress => write!(f, "no address before the delimiter"),
            PppError::NoBody => write!(f, "no body after the delimiter"),
        }
    }
}

/// Decodes the frames after the ROUTER identity (queue side) or as received by a DEALER
/// (worker side), in either dialect.
pub fn decode(msg: Message) -> Result<Ppp, PppError> {
    decode_spoken(msg).map(|(ppp, _)| ppp)
}

/// [`decode`], and for READY and HEARTBEAT the dialect they were spelled in.
pub fn decode_spoken(msg: Message) -> Result<(Ppp, Option<Dialect>), PppError> {
    match msg.len() {
        0 => Err(PppError::Empty),
        1 => match msg.get(0) {
            Some([READY]) => Ok((Ppp::Ready, Some(Dialect::Bytes))),
            Some([HEARTBEAT]) => Ok((Ppp::Heartbeat, Some(Dialect::Bytes))),
            Some(READY_WORD) => Ok((Ppp::Ready, Some(Dialect::Words))),
            Some(HEARTBEAT_WORD) => Ok((Ppp::Heartbeat, Some(Dialect::Words))),
            Some(other) => Err(PppError::UnknownCommand(other.to_vec())),
            None => Err(PppError::Empty),
        },
        _ => {
            let mut frames = msg.into_frames();
            // At most MAX_ENVELOPE frames before the delimiter (a client's identity, its
            // request id, proxy hops): a hostile peer cannot make us hold a deeper one.
            let delimiter = frames
                .iter()
                .take(MAX_ENVELOPE + 1)
                .position(Vec::is_empty)
                .ok_or(PppError::NoDelimiter)?;
            if delimiter == 0 {
                return Err(PppError::NoAddress);
            }
            let body = frames.split_off(delimiter + 1);
            if body.is_empty() {
                return Err(PppError::NoBody);
            }
            frames.pop(); // the delimiter
            let data = Ppp::Data {
                envelope: frames,
                body: Message::from(body),
            };
            Ok((data, None))
        }
    }
}

/// Encodes a message as the frames to send (before any ROUTER identity), as 6/PPP spells it.
pub fn encode(ppp: Ppp) -> Message {
    encode_in(ppp, Dialect::Bytes)
}

/// [`encode`], with READY and HEARTBEAT spelled in `dialect`.
pub fn encode_in(ppp: Ppp, dialect: Dialect) -> Message {
    let command = |byte: u8, word: &[u8]| {
        Message::from_frames(vec![match dialect {
            Dialect::Bytes => vec![byte],
            Dialect::Words => word.to_vec(),
        }])
    };
    match ppp {
        Ppp::Ready => command(READY, READY_WORD),
        Ppp::Heartbeat => command(HEARTBEAT, HEARTBEAT_WORD),
        Ppp::Data { envelope, mut body } => {
            body.push_front(Vec::new());
            for address in envelope.into_iter().rev() {
                body.push_front(address);
            }
            body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testkit::frames as m;

    #[test]
    fn ready_and_heartbeat_are_one_byte() {
        assert_eq!(encode(Ppp::Ready), m(&[&[0x01]]));
        assert_eq!(encode(Ppp::Heartbeat), m(&[&[0x02]]));
        assert_eq!(decode(m(&[&[0x01]])), Ok(Ppp::Ready));
        assert_eq!(decode(m(&[&[0x02]])), Ok(Ppp::Heartbeat));
    }

    #[test]
    fn the_guides_cpp_words_are_read_and_written() {
        assert_eq!(
            decode_spoken(m(&[b"READY"])),
            Ok((Ppp::Ready, Some(Dialect::Words)))
        );
        assert_eq!(
            decode_spoken(m(&[b"HEARTBEAT"])),
            Ok((Ppp::Heartbeat, Some(Dialect::Words)))
        );
        assert_eq!(
            decode_spoken(m(&[&[0x02]])),
            Ok((Ppp::Heartbeat, Some(Dialect::Bytes)))
        );
        assert_eq!(encode_in(Ppp::Ready, Dialect::Words), m(&[b"READY"]));
        assert_eq!(
            encode_in(Ppp::Heartbeat, Dialect::Words),
            m(&[b"HEARTBEAT"])
        );
        assert_eq!(encode_in(Ppp::Heartbeat, Dialect::Bytes), m(&[&[0x02]]));
        // Data has no dialect and is written the same in both.
        let wire = m(&[b"c", b"", b"READY"]);
        let (data, dialect) = decode_spoken(wire.clone()).unwrap();
        assert_eq!(dialect, None);
        assert_eq!(encode_in(data, Dialect::Words), wire);
    }

    #[test]
    fn data_round_trips_with_its_envelope() {
        let wire = m(&[b"client", b"", b"hello", b"world"]);
        let decoded = decode(wire.clone()).unwrap();
        assert_eq!(
            decoded,
            Ppp::Data {
                envelope: vec![b"client".to_vec()],
                body: m(&[b"hello", b"world"]),
            }
        );
        assert_eq!(encode(decoded), wire);
    }

    #[test]
    fn multi_hop_envelopes_are_kept() {
        let wire = m(&[b"a", b"b", b"", b"x"]);
        let Ppp::Data { envelope, .. } = decode(wire.clone()).unwrap() else {
            panic!("not data")
        };
        assert_eq!(envelope, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(decode(Message::new()), Err(PppError::Empty));
        assert_eq!(
            decode(m(&[&[0x03]])),
            Err(PppError::UnknownCommand(vec![3]))
        );
        assert_eq!(decode(m(&[b""])), Err(PppError::UnknownCommand(vec![])));
        assert_eq!(
            decode(m(&[b"ready"])),
            Err(PppError::UnknownCommand(b"ready".to_vec())),
            "the words are exact"
        );
        assert_eq!(
            decode(m(&[b"READY\0"])),
            Err(PppError::UnknownCommand(b"READY\0".to_vec()))
        );
        assert_eq!(decode(m(&[b"id", b"body"])), Err(PppError::NoDelimiter));
        assert_eq!(decode(m(&[b"", b"body"])), Err(PppError::NoAddress));
        assert_eq!(decode(m(&[b"id", b""])), Err(PppError::NoBody));
    }
}
