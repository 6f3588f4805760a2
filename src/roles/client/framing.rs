//! What goes around a request body on the wire: bare, or a Majordomo client request (7/MDP
//! 0.1 over REQ, 18/MDP 0.2 over DEALER), with or without a request id in front.

use crate::msg::{Frame, Message};
use crate::proto::correlate;
use crate::proto::mdp::{self, ClientCommand, ClientMsg, Direction, Version};
use crate::reactor::SocketKind;

use super::Correlation;

/// What goes around a request body on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The body alone (Lazy Pirate server, Simple/Paranoid Pirate queue).
    Bare,
    /// A Majordomo client request for `service`.
    Majordomo { version: Version, service: String },
}

/// What a received message turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A 0.2 PARTIAL: more is coming.
    Partial(Message),
    /// The (final) reply.
    Final(Message),
}

impl Framing {
    /// The socket type for a request on a socket of its own ([`Correlation::Socket`]): REQ
    /// where the protocol allows (what the Guide and 7/MDP recommend), DEALER for 0.2, which
    /// has no empty delimiter. A window of N requests uses N such sockets, so each reply is
    /// matched to its request by the socket it arrives on.
    pub fn socket_type(&self) -> SocketKind {
        match self {
            Framing::Majordomo {
                version: Version::V2,
                ..
            } => SocketKind::Dealer,
            _ => SocketKind::Req,
        }
    }

    /// The frames to send for `body`, for a socket of `socket_type()`.
    pub fn encode(&self, body: Message) -> Message {
        match self {
            Framing::Bare => body,
            Framing::Majordomo { version, service } => {
                let mut msg = mdp::encode_client(ClientMsg {
                    version: *version,
                    command: ClientCommand::Request,
                    service: service.as_bytes().to_vec(),
                    body,
                });
                if *version == Version::V1 {
                    msg.pop_front(); // REQ adds the empty delimiter itself
                }
                msg
            }
        }
    }

    /// The socket type for `correlation`: a DEALER when the client adds request ids itself.
    pub fn socket_type_for(&self, correlation: Correlation) -> SocketKind {
        match correlation {
            Correlation::RequestId => SocketKind::Dealer,
            Correlation::Socket => self.socket_type(),
        }
    }

    /// The frames to send for `body` with request id `id`, on a DEALER:
    /// `[id]["" ][request…]`, where the request is what a REQ socket would be given (so a 0.1
    /// request loses its leading `""`: the delimiter after the id takes its place).
    pub fn encode_with_id(&self, id: Frame, body: Message) -> Message {
        correlate::wrap(id, self.encode(body))
    }

    /// Reads a message received on a DEALER that sent `[id]["" ][request…]`: returns the id
    /// the reply carries and the reply. An error is a malformed reply.
    pub fn decode_with_id(&self, msg: Message) -> std::result::Result<(Frame, Received), String> {
        let (id, rest) = correlate::unwrap(msg).map_err(|e| e.to_string())?;
        Ok((id, self.decode(rest)?))
    }

    /// Reads a received message; an error is a malformed or misaddressed reply.
    pub fn decode(&self, mut msg: Message) -> std::result::Result<Received, String> {
        match self {
            Framing::Bare => Ok(Received::Final(msg)),
            Framing::Majordomo { version, service } => {
                if *version == Version::V1 {
                    msg.push_front(Vec::new()); // REQ stripped the delimiter
                }
                let reply =
                    mdp::decode_client(msg, Direction::FromBroker).map_err(|e| e.to_string())?;
                if reply.version != *version {
                    return Err("reply in another MDP version".into());
                }
                if reply.service != service.as_bytes() {
                    return Err(format!(
                        "reply for service {:?}, expected {service:?}",
                        String::from_utf8_lossy(&reply.service)
                    ));
                }
                Ok(match reply.command {
                    ClientCommand::Partial => Received::Partial(reply.body),
                    _ => Received::Final(reply.body),
                })
            }
        }
    }
}
