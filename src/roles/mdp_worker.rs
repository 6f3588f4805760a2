//! The Majordomo wire of `pirate worker --protocol mdp|mdp2` (7/MDP 0.1, 18/MDP 0.2), for the
//! one worker machine in [`worker`](super::worker): what it sends and how it reads what the
//! broker sends. The frames are [`crate::proto::mdp`]'s:
//! `[""]["MDPW0x"][command][…]` (0.1, the empty frame REQ-compatible) or
//! `["MDPW02"][command][…]` (0.2), with `[client][""][body…]` for REQUEST, REPLY/FINAL and
//! PARTIAL. In 0.2, `--exec` streams: every line of the command's stdout but the last goes out
//! as a PARTIAL as soon as it is written, and the last line is the FINAL.

use crate::msg::{Frame, Message};
use crate::proto::mdp::{self, Version, WorkerCommand, WorkerMsg};

use super::work::Incoming;

fn encode(version: Version, command: WorkerCommand) -> Message {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(msg: &Message) -> Vec<Vec<u8>> {
        msg.iter().map(<[u8]>::to_vec).collect()
    }

    fn body(text: &str) -> Message {
        Message::from_frames([text.as_bytes().to_vec()])
    }

    #[test]
    fn what_the_worker_sends_is_byte_exact() {
        let v1 = |f: &[&[u8]]| -> Vec<Vec<u8>> {
            [&b""[..], b"MDPW01"]
                .iter()
                .chain(f)
                .map(|x| x.to_vec())
                .collect()
        };
        assert_eq!(
            frames(&ready(Version::V1, "echo", None)),
            v1(&[b"\x01", b"echo"])
        );
        assert_eq!(
            frames(&ready(Version::V1, "echo", Some(8))),
            v1(&[b"\x01", b"echo", b"credit=8"])
        );
        assert_eq!(frames(&heartbeat(Version::V1)), v1(&[b"\x04"]));
        assert_eq!(
            frames(&reply(Version::V1, &[b"c".to_vec()], body("hi"))),
            v1(&[b"\x03", b"c", b"", b"hi"])
        );
        let v2 = |f: &[&[u8]]| -> Vec<Vec<u8>> {
            std::iter::once(&b"MDPW02"[..])
                .chain(f.iter().copied())
                .map(|x| x.to_vec())
                .collect()
        };
        assert_eq!(
            frames(&ready(Version::V2, "echo", None)),
            v2(&[b"\x01", b"echo"])
        );
        assert_eq!(
            frames(&ready(Version::V2, "echo", Some(8))),
            v2(&[b"\x01", b"echo", b"credit=8"])
        );
        assert_eq!(
            frames(&partial(Version::V2, &[b"c".to_vec()], body("1"))),
            v2(&[b"\x03", b"c", b"", b"1"])
        );
        assert_eq!(
            frames(&reply(Version::V2, &[b"c".to_vec()], body("2"))),
            v2(&[b"\x04", b"c", b"", b"2"])
        );
    }

    #[test]
    fn what_the_broker_sends_is_read_or_refused() {
        let request = encode(
            Version::V1,
            WorkerCommand::Request {
                client: b"c".to_vec(),
                body: body("x"),
            },
        );
        assert_eq!(
            decode(Version::V1, request.clone()),
            Incoming::Request {
                envelope: vec![b"c".to_vec()],
                body: body("x")
            }
        );
        assert!(
            matches!(decode(Version::V2, request), Incoming::Invalid(_)),
            "a request in the other version"
        );
        assert_eq!(
            decode(Version::V1, heartbeat(Version::V2)),
            Incoming::Heartbeat
        );
        assert_eq!(
            decode(Version::V2, encode(Version::V2, WorkerCommand::Disconnect)),
            Incoming::Disconnect
        );
        assert_eq!(
            decode(
                Version::V1,
                encode(Version::V2, WorkerCommand::Granted { credit: 5 })
            ),
            Incoming::Granted(5)
        );
        assert!(matches!(
            decode(Version::V1, ready(Version::V1, "echo", None)),
            Incoming::Invalid(_)
        ));
        assert!(matches!(
            decode(Version::V1, Message::from_frames([b"junk".to_vec()])),
            Incoming::Invalid(_)
        ));
    }
}
