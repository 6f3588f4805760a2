//! 10/FLP, the Freelance Protocol: brokerless reliable request-reply between clients and
//! servers that both use ROUTER sockets.
//!
//! | message | frames (after the ROUTER identity) |
//! |---|---|
//! | PING (client → server)    | `"PING"` (exactly one frame) |
//! | PONG (server → client)    | `"PONG"` (exactly one frame) |
//! | REQUEST (client → server) | control frame, body (1+ frames) |
//! | REPLY (server → client)   | the request's control frame, unchanged, then the reply body (1+) |
//!
//! Routing: a server sets its socket identity to its public endpoint string (e.g.
//! `tcp://localhost:5555`), so a client ROUTER that connected to that endpoint addresses it by
//! pushing the endpoint string as the first frame. A server learns a client's identity only
//! from what the client sends, so it can only ever answer clients that spoke first.
//!
//! The control frame is opaque to the server. `pirate`'s client puts the request's sequence
//! number there, as decimal ASCII (what the Guide's `flcliapi` sends), see
//! [`control_frame`]/[`parse_control`], so it can tell a late reply to an earlier request
//! from the answer it is waiting for.
//!
//! One-frame messages are control (PING/PONG); a REQUEST or REPLY always has at least two
//! frames, so there is no ambiguity even when a control frame happens to read `PING`. A
//! one-frame message that is not PING/PONG is a request or reply without a body: malformed.
//! Decoding never panics; every malformed variant is an [`FlpError`] value.

use std::fmt;

use crate::msg::{Frame, Message};

/// The one frame a client sends to ask a server whether it is alive.
pub const PING: &[u8] = b"PING";
/// The one frame a server answers PING with.
pub const PONG: &[u8] = b"PONG";

/// What a client sends (what a server receives after the client's identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMsg {
    Ping,
    Request { control: Frame, body: Message },
}

/// What a server sends (what a client receives after the server's identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMsg {
    Pong,
    Reply { control: Frame, body: Message },
}

/// Why a message is not valid FLP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlpError {
    /// No frames at all (not even a routing identity).
    Empty,
    /// A routing identity with nothing after it.
    NoPayload,
    /// An empty routing identity frame (ZeroMQ never produces one; a forged message might).
    EmptyIdentity,
    /// A one-frame message other than PING (at a server) or PONG (at a client): a control
    /// frame without a body.
    MissingBody(Frame),
}

impl fmt::Display for FlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlpError::Empty => write!(f, "empty message"),
            FlpError::NoPayload => write!(f, "routing identity with nothing after it"),
            FlpError::EmptyIdentity => write!(f, "empty routing identity"),
            FlpError::MissingBody(c) => write!(
                f,
                "control frame {} without a body (and not a PING/PONG)",
                crate::msg::frame_text(c)
            ),
        }
    }
}

impl std::error::Error for FlpError {}

/// Splits a message received on a ROUTER into the peer's identity and the rest.
pub fn split_peer(mut msg: Message) -> Result<(Frame, Message), FlpError> {
    let peer = msg.pop_front().ok_or(FlpError::Empty)?;
    if peer.is_empty() {
        return Err(FlpError::EmptyIdentity);
    }
    if msg.is_empty() {
        return Err(FlpError::NoPayload);
    }
    Ok((peer, msg))
}

/// Puts `peer`'s identity in front of `msg`, for sending on a ROUTER.
pub fn route(peer: impl Into<Frame>, mut msg: Message) -> Message {
    msg.push_front(peer);
    msg
}

/// Splits `[control][body…]`; a lone frame is a control frame without a body.
fn control_and_body(mut msg: Message) -> Result<(Frame, Message), FlpError> {
    let control = msg.pop_front().ok_or(FlpError::NoPayload)?;
    if msg.is_empty() {
        return Err(FlpError::MissingBody(control));
    }
    Ok((control, msg))
}

/// Decodes what a server received, after the client's identity.
pub fn decode_client_msg(msg: Message) -> Result<ClientMsg, FlpError> {
    if msg.len() == 1 && msg.get(0) == Some(PING) {
        return Ok(ClientMsg::Ping);
    }
    let (control, body) = control_and_body(msg)?;
    Ok(ClientMsg::Request { control, body })
}

/// Decodes what a client received, after the server's identity.
pub fn decode_server_msg(msg: Message) -> Result<ServerMsg, FlpError> {
    if msg.len() == 1 && msg.get(0) == Some(PONG) {
        return Ok(ServerMsg::Pong);
    }
    let (control, body) = control_and_body(msg)?;
    Ok(ServerMsg::Reply { control, body })
}

impl ClientMsg {
    /// The frames to send, without the server's identity (see [`route`]).
    pub fn encode(self) -> Message {
        match self {
            ClientMsg::Ping => Message::from_frames([PING]),
            ClientMsg::Request { control, mut body } => {
                body.push_front(control);
                body
            }
        }
    }
}

impl ServerMsg {
    /// The frames to send, without the client's identity (see [`route`]).
    pub fn encode(self) -> Message {
        match self {
            ServerMsg::Pong => Message::from_frames([PONG]),
            ServerMsg::Reply { control, mut body } => {
                body.push_front(control);
                body
            }
        }
    }
}

/// `pirate`'s control frame for request `seq`: the number in decimal ASCII, as the Guide's
/// `flcliapi` sends it.
pub fn control_frame(seq: u64) -> Frame {
    seq.to_string().into_bytes()
}

/// The sequence number in a control frame made by [`control_frame`]; `None` for anything else
/// (another client's format, a sign, leading zeros, overflow), so only our exact bytes match.
pub fn parse_control(control: &[u8]) -> Option<u64> {
    let n: u64 = std::str::from_utf8(control).ok()?.parse().ok()?;
    (control_frame(n) == control).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testkit::frames as m;

    #[test]
    fn ping_and_pong_are_one_frame() {
        assert_eq!(ClientMsg::Ping.encode(), m(&[b"PING"]));
        assert_eq!(ServerMsg::Pong.encode(), m(&[b"PONG"]));
        assert_eq!(decode_client_msg(m(&[b"PING"])), Ok(ClientMsg::Ping));
        assert_eq!(decode_server_msg(m(&[b"PONG"])), Ok(ServerMsg::Pong));
    }

    #[test]
    fn a_request_is_control_then_body() {
        let req = ClientMsg::Request {
            control: b"7".to_vec(),
            body: m(&[b"hello", b"world"]),
        };
        let wire = req.clone().encode();
        assert_eq!(wire, m(&[b"7", b"hello", b"world"]));
        assert_eq!(decode_client_msg(wire), Ok(req));
    }

    #[test]
    fn a_reply_carries_the_control_frame_unchanged() {
        let rep = ServerMsg::Reply {
            control: vec![0x00, 0xFF, b'x'],
            body: m(&[b"OK"]),
        };
        let wire = rep.clone().encode();
        assert_eq!(wire, m(&[&[0x00, 0xFF, b'x'], b"OK"]));
        assert_eq!(decode_server_msg(wire), Ok(rep));
    }

    #[test]
    fn empty_control_and_empty_body_frames_are_still_valid() {
        assert_eq!(
            decode_client_msg(m(&[b"", b""])),
            Ok(ClientMsg::Request {
                control: vec![],
                body: m(&[b""])
            })
        );
        assert_eq!(
            decode_server_msg(m(&[b"", b""])),
            Ok(ServerMsg::Reply {
                control: vec![],
                body: m(&[b""])
            })
        );
    }

    #[test]
    fn a_control_frame_reading_ping_with_a_body_is_a_request() {
        assert_eq!(
            decode_client_msg(m(&[b"PING", b"x"])),
            Ok(ClientMsg::Request {
                control: b"PING".to_vec(),
                body: m(&[b"x"])
            })
        );
        assert_eq!(
            decode_server_msg(m(&[b"PONG", b"x"])),
            Ok(ServerMsg::Reply {
                control: b"PONG".to_vec(),
                body: m(&[b"x"])
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert_eq!(decode_client_msg(m(&[])), Err(FlpError::NoPayload));
        assert_eq!(decode_server_msg(m(&[])), Err(FlpError::NoPayload));
        // Control frame only.
        assert_eq!(
            decode_client_msg(m(&[b"7"])),
            Err(FlpError::MissingBody(b"7".to_vec()))
        );
        assert_eq!(
            decode_server_msg(m(&[b"7"])),
            Err(FlpError::MissingBody(b"7".to_vec()))
        );
        // The other side's keep-alive, or a wrong case, is not ours.
        assert!(decode_client_msg(m(&[b"PONG"])).is_err());
        assert!(decode_server_msg(m(&[b"PING"])).is_err());
        assert!(decode_client_msg(m(&[b"ping"])).is_err());
        assert!(decode_client_msg(m(&[b""])).is_err());
    }

    #[test]
    fn split_peer_and_route_round_trip() {
        let wire = route(b"tcp://localhost:5555".to_vec(), ClientMsg::Ping.encode());
        assert_eq!(wire, m(&[b"tcp://localhost:5555", b"PING"]));
        let (peer, rest) = split_peer(wire).unwrap();
        assert_eq!(peer, b"tcp://localhost:5555");
        assert_eq!(decode_client_msg(rest), Ok(ClientMsg::Ping));
    }

    #[test]
    fn split_peer_refuses_short_or_anonymous_messages() {
        assert_eq!(split_peer(m(&[])), Err(FlpError::Empty));
        assert_eq!(split_peer(m(&[b"id"])), Err(FlpError::NoPayload));
        assert_eq!(split_peer(m(&[b"", b"PING"])), Err(FlpError::EmptyIdentity));
    }

    #[test]
    fn control_frames_round_trip_and_foreign_ones_do_not_parse() {
        for n in [0, 1, 42, u64::MAX] {
            assert_eq!(parse_control(&control_frame(n)), Some(n));
        }
        assert_eq!(control_frame(12), b"12");
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-1",
            b"1 ",
            b"x",
            b"18446744073709551616",
            &[0xFF],
        ] {
            assert_eq!(parse_control(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_read_as_one_line() {
        assert_eq!(FlpError::Empty.to_string(), "empty message");
        assert_eq!(
            FlpError::MissingBody(b"7".to_vec()).to_string(),
            "control frame 7 without a body (and not a PING/PONG)"
        );
    }
}
