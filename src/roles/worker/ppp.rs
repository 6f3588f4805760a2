//! The Paranoid and Simple Pirate wire of `pirate worker` (6/PPP): how the worker reads what
//! the queue sends and what it sends back. REQ (Simple) adds and strips the empty delimiter itself, so both read
//! `[client]["" ][body…]` requests and `0x02` (or `"HEARTBEAT"`) heartbeats the same way.

use crate::msg::{Frame, Message};
use crate::proto::ppp::{self, Dialect, Ppp};

use super::job::Incoming;

/// The PPP wire (Simple and Paranoid: REQ adds and strips the delimiter itself), and for a
/// HEARTBEAT how the queue spelled it.
pub(super) fn decode(msg: Message) -> (Incoming, Option<Dialect>) {
    match ppp::decode_spoken(msg) {
        Ok((Ppp::Heartbeat, dialect)) => (Incoming::Heartbeat, dialect),
        Ok((Ppp::Data { envelope, body }, _)) => (Incoming::Request { envelope, body }, None),
        Ok((Ppp::Ready, _)) => (Incoming::Invalid("READY from the queue".into()), None),
        Err(e) => (Incoming::Invalid(e.to_string()), None),
    }
}

/// READY, spelled `form` (`0x01` or the word, see the worker's module docs).
pub(super) fn ready(form: Dialect) -> Message {
    ppp::encode_in(Ppp::Ready, form)
}

/// HEARTBEAT, spelled as the queue spells it.
pub(super) fn heartbeat(dialect: Dialect) -> Message {
    ppp::encode_in(Ppp::Heartbeat, dialect)
}

/// The reply to a request: `[client]["" ][body…]`.
pub(super) fn reply(envelope: Vec<Frame>, body: Message) -> Message {
    ppp::encode(Ppp::Data { envelope, body })
}
