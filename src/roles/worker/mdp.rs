//! The Majordomo wire of `pirate worker --protocol mdp|mdp2` (7/MDP 0.1, 18/MDP 0.2), for the
//! one worker machine in [`worker`](super): what it sends and how it reads what the
//! broker sends. The frames are [`crate::proto::mdp`]'s:
//! `[""]["MDPW0x"][command][…]` (0.1, the empty frame REQ-compatible) or
//! `["MDPW02"][command][…]` (0.2), with `[client][""][body…]` for REQUEST, REPLY/FINAL and
//! PARTIAL. In 0.2, `--exec` streams: every line of the command's stdout but the last goes out
//! as a PARTIAL as soon as it is written, and the last line is the FINAL.

use crate::msg::{Frame, Message};
use crate::proto::mdp::{self, Version, WorkerCommand, WorkerMsg};

use super::job::Incoming;

pub(super) fn encode(version: Version, command: WorkerCommand) -> Message {
    mdp::encode_worker(WorkerMsg { version, command })
}

/// READY for `service`, asking for `credit` requests at once on this connection (our
/// extension; `None` is the standard READY).
pub(crate) fn ready(version: Version, service: &str, credit: Option<u32>) -> Message {
    encode(
        version,
        WorkerCommand::Ready {
            service: service.as_bytes().to_vec(),
            credit,
        },
    )
}

pub(crate) fn heartbeat(version: Version) -> Message {
    encode(version, WorkerCommand::Heartbeat)
}

/// The client of a request: its envelope's one frame.
fn client(envelope: &[Frame]) -> Vec<u8> {
    envelope.first().cloned().unwrap_or_default()
}

/// The (final) reply: REPLY in 0.1, FINAL in 0.2.
pub(crate) fn reply(version: Version, envelope: &[Frame], body: Message) -> Message {
    let client = client(envelope);
    let command = match version {
        Version::V1 => WorkerCommand::Reply { client, body },
        Version::V2 => WorkerCommand::Final { client, body },
    };
    encode(version, command)
}

/// A PARTIAL (0.2 only: the machine streams only under 0.2).
pub(crate) fn partial(version: Version, envelope: &[Frame], body: Message) -> Message {
    encode(
        version,
        WorkerCommand::Partial {
            client: client(envelope),
            body,
        },
    )
}

/// Reads one message from the broker. A REQUEST must speak our version; a HEARTBEAT, credit
/// grant or DISCONNECT of either is accepted (liberal where nothing is at stake).
pub(crate) fn decode(version: Version, msg: Message) -> Incoming {
    match mdp::decode_worker(msg) {
        Ok(WorkerMsg {
            version: v,
            command: WorkerCommand::Request { client, body },
        }) if v == version => Incoming::Request {
            envelope: vec![client],
            body,
        },
        Ok(WorkerMsg {
            command: WorkerCommand::Heartbeat,
            ..
        }) => Incoming::Heartbeat,
        Ok(WorkerMsg {
            command: WorkerCommand::Disconnect,
            ..
        }) => Incoming::Disconnect,
        Ok(WorkerMsg {
            command: WorkerCommand::Granted { credit },
            ..
        }) => Incoming::Granted(credit),
        Ok(other) => Incoming::Invalid(format!("unexpected {:?}", other.command)),
        Err(e) => Incoming::Invalid(e.to_string()),
    }
}
