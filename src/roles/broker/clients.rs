//! The broker's client side: where a client's reply goes ([`ReplyAddress`]), the replies it
//! is sent, the answer to a client that does not speak Majordomo, and which messages are
//! from clients (a Binary Star node's votes).

use crate::msg::{Frame, Message};
use crate::proto::mdp::{self, ClientCommand, ClientMsg, Version};

/// The body of the answer to a request without a Majordomo header ([`not_mdp_answer`]): the
/// client it reaches learns what it talked to.
pub const NOT_MDP: &[u8] = b"this is a Majordomo broker: send [\"MDPC01\"][service][body] \
(pirate client --service NAME)";

/// Where a client's reply goes: its ROUTER identity, and the envelope it put in front of its
/// request (request id, proxy hops; empty for a standard client), returned unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ReplyAddress {
    pub(super) identity: Frame,
    pub(super) envelope: mdp::Envelope,
}

impl ReplyAddress {
    /// A client that sent its header right after its identity.
    pub(super) fn bare(identity: Frame) -> Self {
        ReplyAddress {
            identity,
            envelope: mdp::Envelope::default(),
        }
    }

    /// Bytes of the address: its identity and envelope frames.
    pub(super) fn bytes(&self) -> u64 {
        let envelope: u64 = self.envelope.frames.iter().map(|f| f.len() as u64).sum();
        self.identity.len() as u64 + envelope
    }

    /// `body` as `command` of `service` in the client's `version`, behind its envelope: the
    /// identity to send it to, and the frames.
    pub(super) fn reply(
        self,
        version: Version,
        command: ClientCommand,
        service: Frame,
        body: Message,
    ) -> (Frame, Message) {
        let msg = mdp::encode_client(ClientMsg {
            version,
            command,
            service,
            body,
        });
        (self.identity, mdp::wrap_client_envelope(self.envelope, msg))
    }
}

/// The answer to a request that has no Majordomo header but a REQ envelope (`[envelope…][""]
/// [body…]`: a Lazy Pirate client, or anything else behind a REQ socket): a 7/MDP client
/// REPLY, `[envelope…][""]["MDPC01"][""][NOT_MDP]`, so that the client learns at once that it
/// reached a Majordomo broker instead of retrying into silence. Nothing for a message without
/// a delimiter (a DEALER peer, a Pirate worker's READY: a REQ-less peer reads no reply).
pub(super) fn not_mdp_answer(mut msg: Message) -> Option<Message> {
    let envelope = msg.take_envelope()?;
    // A body that starts with a Majordomo header is Majordomo sent the wrong way (a worker
    // behind a proxy, say): invalid, but no sign of a client in another protocol.
    let headers = [mdp::MDPC01, mdp::MDPC02, mdp::MDPW01, mdp::MDPW02];
    match msg.iter().next() {
        None => return None,
        Some(first) if headers.contains(&first) => return None,
        Some(_) => {}
    }
    let mut reply = Message::from_frames(envelope);
    for frame in [
        Vec::new(),
        mdp::MDPC01.to_vec(),
        Vec::new(),
        NOT_MDP.to_vec(),
    ] {
        reply.push_back(frame);
    }
    Some(reply)
}

/// True if a ROUTER message (`[identity][frames…]`) is from an MDP client, with or without an
/// envelope.
pub(super) fn is_client_message(msg: &Message) -> bool {
    // The header is in the first two frames after the identity; copy only those.
    let head = Message::from_frames(msg.iter().skip(1).take(2).map(<[u8]>::to_vec));
    matches!(mdp::peek_version(&head), Some((_, false)))
        || mdp::client_envelope_len(msg.iter().skip(1)).is_some()
}
