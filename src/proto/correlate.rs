//! Request ids in the reply envelope: how a client ties each reply to the request it answers.
//!
//! A DEALER client puts a request id of its own in front of every request, as the envelope
//! that ZeroMQ's REP sockets, proxies and queues carry back unchanged with the reply (this is
//! what libzmq's `ZMQ_REQ_CORRELATE` does inside a REQ socket; we do it by hand so that a
//! reply for another request is counted and traced rather than silently dropped):
//!
//! | message | frames (as the client's DEALER sends and receives them) |
//! |---|---|
//! | request | request id, `""`, request frames… |
//! | reply   | request id, `""`, reply frames… |
//!
//! Over Majordomo the request frames are the client message without its 0.1 leading `""`
//! (the delimiter after the id takes its place): `[id]["" ]["MDPC01"][service][body…]`, and
//! for 0.2 `[id]["" ]["MDPC02"][0x01][service][body…]`. Only brokers that say they carry
//! envelopes (`mmi.correlate` answers `200`, see [`crate::proto::mmi`]) are sent this form.
//!
//! Ids are 16 lower-case hex digits (printable, so programs that mangle binary frames pass
//! them through): a random 64-bit start, then one more per request, so they are unique per
//! client for 2^64 requests and not guessable from outside.

use std::fmt;

use crate::msg::{Frame, Message};

/// Length of a request id frame.
pub const ID_LEN: usize = 16;

/// A client's source of request ids.
#[derive(Clone, Debug)]
pub struct RequestIds {
    next: u64,
}

impl RequestIds {
    /// Ids starting at `start` (tests); [`RequestIds::random`] for real use.
    pub fn starting_at(start: u64) -> Self {
        RequestIds { next: start }
    }

    /// Ids starting at a random point.
    pub fn random() -> Self {
        Self::starting_at(rand::random())
    }

    /// The next id: never the same twice in 2^64 calls.
    pub fn next_id(&mut self) -> Frame {
        let id = format!("{:016x}", self.next).into_bytes();
        self.next = self.next.wrapping_add(1);
        id
    }
}

/// Why a received message is not `[id]["" ][frames…]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorrelateError {
    /// Fewer than two frames, or no empty delimiter right after the first frame: the peer
    /// did not echo our envelope (not a REP-like peer, or more than one envelope frame).
    NoEnvelope,
    /// The envelope frame is empty: there is no id.
    NoId,
    /// Nothing after the delimiter.
    NoBody,
}

impl fmt::Display for CorrelateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CorrelateError::NoEnvelope => "no request-id envelope (expected [id][\"\"][reply…])",
            CorrelateError::NoId => "an empty request id",
            CorrelateError::NoBody => "nothing after the request-id envelope",
        })
    }
}

/// Puts `id` and the delimiter in front of `frames`: `[id]["" ][frames…]`.
pub fn wrap(id: Frame, mut frames: Message) -> Message {
    frames.push_front(Vec::new());
    frames.push_front(id);
    frames
}

/// Splits a received `[id]["" ][frames…]` into the id and the frames.
pub fn unwrap(mut msg: Message) -> Result<(Frame, Message), CorrelateError> {
    if msg.len() < 2 || !msg.get(1).is_some_and(<[u8]>::is_empty) {
        return Err(CorrelateError::NoEnvelope);
    }
    if msg.get(0).is_some_and(<[u8]>::is_empty) {
        return Err(CorrelateError::NoId);
    }
    if msg.len() < 3 {
        return Err(CorrelateError::NoBody);
    }
    let id = msg.pop_front().unwrap_or_default();
    msg.pop_front();
    Ok((id, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testkit::frames as m;

    #[test]
    fn ids_are_printable_fixed_length_and_never_repeat() {
        let mut ids = RequestIds::starting_at(u64::MAX - 1);
        let a = ids.next_id();
        let b = ids.next_id();
        let c = ids.next_id();
        assert_eq!(a, b"fffffffffffffffe");
        assert_eq!(b, b"ffffffffffffffff");
        assert_eq!(c, b"0000000000000000", "wraps around after 2^64");
        assert!([&a, &b, &c].iter().all(|id| id.len() == ID_LEN));
        let mut random = RequestIds::random();
        let seen: std::collections::HashSet<Frame> = (0..1000).map(|_| random.next_id()).collect();
        assert_eq!(seen.len(), 1000);
        assert!(seen.iter().all(|id| id.iter().all(u8::is_ascii_hexdigit)));
    }

    #[test]
    fn wrap_and_unwrap_round_trip_with_multi_frame_bodies() {
        let wire = wrap(
            b"0123456789abcdef".to_vec(),
            m(&[b"MDPC01", b"echo", b"hi"]),
        );
        assert_eq!(
            wire,
            m(&[b"0123456789abcdef", b"", b"MDPC01", b"echo", b"hi"])
        );
        let (id, rest) = unwrap(wire).unwrap();
        assert_eq!(id, b"0123456789abcdef");
        assert_eq!(rest, m(&[b"MDPC01", b"echo", b"hi"]));
        // A body frame may itself be empty.
        assert_eq!(unwrap(m(&[b"id", b"", b""])).unwrap().1, m(&[b""]));
    }

    #[test]
    fn replies_without_our_envelope_are_errors() {
        assert_eq!(unwrap(Message::new()), Err(CorrelateError::NoEnvelope));
        assert_eq!(unwrap(m(&[b"hello"])), Err(CorrelateError::NoEnvelope));
        assert_eq!(
            unwrap(m(&[b"id", b"body"])),
            Err(CorrelateError::NoEnvelope)
        );
        // Two envelope frames: routed for someone behind us, not an answer to us.
        assert_eq!(
            unwrap(m(&[b"hop", b"id", b"", b"x"])),
            Err(CorrelateError::NoEnvelope)
        );
        assert_eq!(unwrap(m(&[b"", b"", b"x"])), Err(CorrelateError::NoId));
        assert_eq!(unwrap(m(&[b"id", b""])), Err(CorrelateError::NoBody));
    }
}
