//! 7/MDP (Majordomo 0.1) and 18/MDP (0.2) client and worker codecs.
//!
//! Frames are listed as they travel after the ROUTER identity frame.
//!
//! 7/MDP, Majordomo 0.1:
//!
//! | sub-protocol | command | frames |
//! |---|---|---|
//! | client | REQUEST C→B     | `""`, `"MDPC01"`, service name, body (1+ frames) |
//! | client | REPLY B→C       | `""`, `"MDPC01"`, service name, body (1+ frames) |
//! | worker | READY W→B       | `""`, `"MDPW01"`, `0x01`, service name |
//! | worker | REQUEST B→W     | `""`, `"MDPW01"`, `0x02`, client address, `""`, body (1+) |
//! | worker | REPLY W→B       | `""`, `"MDPW01"`, `0x03`, client address, `""`, body (1+) |
//! | worker | HEARTBEAT both  | `""`, `"MDPW01"`, `0x04` |
//! | worker | DISCONNECT both | `""`, `"MDPW01"`, `0x05` |
//!
//! 18/MDP, Majordomo 0.2 (replies are streamed: zero or more PARTIAL, then one FINAL):
//!
//! | sub-protocol | command | frames |
//! |---|---|---|
//! | client | REQUEST C→B     | `"MDPC02"`, `0x01`, service name, body (1+ frames) |
//! | client | PARTIAL B→C     | `"MDPC02"`, `0x02`, service name, body (1+ frames) |
//! | client | FINAL B→C       | `"MDPC02"`, `0x03`, service name, body (1+ frames) |
//! | worker | READY W→B       | `"MDPW02"`, `0x01`, service name |
//! | worker | REQUEST B→W     | `"MDPW02"`, `0x02`, client address, `""`, body (1+) |
//! | worker | PARTIAL W→B     | `"MDPW02"`, `0x03`, client address, `""`, body (1+) |
//! | worker | FINAL W→B       | `"MDPW02"`, `0x04`, client address, `""`, body (1+) |
//! | worker | HEARTBEAT both  | `"MDPW02"`, `0x05` |
//! | worker | DISCONNECT both | `"MDPW02"`, `0x06` |
//!
//! The worker command bytes differ between the versions, so the header decides how a command
//! byte is read. 0.1 client messages carry no command byte at all: REQUEST and REPLY look the
//! same and only the direction of travel tells them apart, hence [`Direction`].
//!
//! 0.2 implementations in the wild disagree on whether a leading `""` is present, so decoding
//! accepts one and encoding never sends one. 0.1 requires it (a REQ or DEALER peer always
//! has it). A peer using a REQ socket has the delimiter added and stripped by the socket, so
//! it must push an empty frame in front of what it receives before decoding, and pop the one
//! at the front of an encoded message before sending.
//!
//! Decoding never panics: anything short, long or odd is an [`MdpError`] value (the Guide's
//! broker asserts on malformed input; a broker must simply drop such messages).
//!
//! **Client envelopes** (our extension, see [`crate::proto::correlate`]): a client behind a
//! ROUTER/DEALER proxy, or one that sends a request id, puts envelope frames in front of the
//! delimiter: `[envelope…]["" ]["MDPC01"|"MDPC02"]…`. A standard 0.2 client behind such a
//! proxy has no delimiter to show where its envelope ends: `[envelope…]["MDPC02"][0x01]…`
//! is read as that. [`split_client_envelope`] takes the envelope off a received message and
//! [`wrap_client_envelope`] puts it back on the reply, the way it came, so every frame in
//! front of the header returns unchanged, as REP sockets do.
//!
//! **Credit** (our extension, see [`WorkerCommand::Ready`] and [`WorkerCommand::Granted`]): a
//! worker that can serve N requests at once on one connection says so with one more frame
//! after the service name of its READY, `"credit=N"` (ASCII decimal, N ≥ 1):
//! `[""]["MDPW01"][0x01][service]["credit=10"]`. The Guide's brokers read the service frame
//! and ignore the rest, so to them it is an ordinary worker. A broker that honours it
//! answers at once, before any REQUEST, with a HEARTBEAT carrying the credit it grants:
//! `[""]["MDPW01"][0x04]["credit=10"]` (0.2: `["MDPW02"][0x05]["credit=10"]`), and may then
//! hand that worker up to that many requests before it replies. A worker whose first message
//! from the broker is anything else knows the broker gave it no credit.

use std::fmt;

use crate::msg::{Frame, Message};

/// Header of a 0.1 client message.
pub const MDPC01: &[u8] = b"MDPC01";
/// Header of a 0.1 worker message.
pub const MDPW01: &[u8] = b"MDPW01";
/// Header of a 0.2 client message.
pub const MDPC02: &[u8] = b"MDPC02";
/// Header of a 0.2 worker message.
pub const MDPW02: &[u8] = b"MDPW02";

// 0.2 client command bytes (0.1 client messages have none).
const C02_REQUEST: u8 = 0x01;
const C02_PARTIAL: u8 = 0x02;
const C02_FINAL: u8 = 0x03;

// 0.1 worker command bytes.
const W01_READY: u8 = 0x01;
const W01_REQUEST: u8 = 0x02;
const W01_REPLY: u8 = 0x03;
const W01_HEARTBEAT: u8 = 0x04;
const W01_DISCONNECT: u8 = 0x05;

// 0.2 worker command bytes: PARTIAL and FINAL replace REPLY, shifting the last two.
const W02_READY: u8 = 0x01;
const W02_REQUEST: u8 = 0x02;
const W02_PARTIAL: u8 = 0x03;
const W02_FINAL: u8 = 0x04;
const W02_HEARTBEAT: u8 = 0x05;
const W02_DISCONNECT: u8 = 0x06;

/// The protocol version, as told by the header frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// 7/MDP, Majordomo 0.1.
    V1,
    /// 18/MDP, Majordomo 0.2.
    V2,
}

impl Version {
    /// The client header for this version.
    pub fn client_header(self) -> &'static [u8] {
        match self {
            Version::V1 => MDPC01,
            Version::V2 => MDPC02,
        }
    }

    /// The worker header for this version.
    pub fn worker_header(self) -> &'static [u8] {
        match self {
            Version::V1 => MDPW01,
            Version::V2 => MDPW02,
        }
    }
}

/// Which way a client message travels. 0.1 needs it to tell REQUEST from REPLY; for 0.2 it
/// is checked against the command byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to broker: a REQUEST.
    ToBroker,
    /// Broker to client: a REPLY (0.1) or PARTIAL/FINAL (0.2).
    FromBroker,
}

/// A client sub-protocol command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    /// REQUEST, client to broker.
    Request,
    /// PARTIAL, broker to client: a piece of a streamed reply. 0.2 only.
    Partial,
    /// FINAL, broker to client: the last (or only) piece of a reply. A 0.1 REPLY decodes as
    /// this.
    Final,
}

/// A decoded client sub-protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMsg {
    pub version: Version,
    pub command: ClientCommand,
    pub service: Vec<u8>,
    pub body: Message,
}

/// A worker sub-protocol command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerCommand {
    /// READY, worker to broker: registers the worker for a service. `credit` (our extension,
    /// see the module docs) is how many requests it can hold at once on this connection;
    /// `None` is a standard READY (one at a time).
    Ready {
        service: Vec<u8>,
        credit: Option<u32>,
    },
    /// Broker to worker, our extension: a HEARTBEAT with a `"credit=N"` frame, the answer to
    /// a READY that asked for credit. The worker may now hold up to `credit` requests.
    Granted { credit: u32 },
    /// REQUEST, broker to worker, for the client at `client`.
    Request { client: Vec<u8>, body: Message },
    /// REPLY, worker to broker. 0.1 only (0.2 has PARTIAL and FINAL instead).
    Reply { client: Vec<u8>, body: Message },
    /// PARTIAL, worker to broker. 0.2 only.
    Partial { client: Vec<u8>, body: Message },
    /// FINAL, worker to broker. 0.2 only.
    Final { client: Vec<u8>, body: Message },
    /// HEARTBEAT, both ways.
    Heartbeat,
    /// DISCONNECT, both ways.
    Disconnect,
}

/// A decoded worker sub-protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerMsg {
    pub version: Version,
    pub command: WorkerCommand,
}

/// Why a message is not valid MDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdpError {
    /// No frames at all.
    Empty,
    /// A 0.1 message without its leading empty frame.
    MissingDelimiter,
    /// Only a leading empty frame: no header after it.
    MissingHeader,
    /// A header that is not one this decoder reads (the other sub-protocol's header is
    /// reported here too).
    UnknownHeader(Vec<u8>),
    /// No command frame after the header.
    MissingCommand,
    /// A one-byte command frame with a value this version does not define.
    UnknownCommand(u8),
    /// A command frame that is not exactly one byte long.
    BadCommandFrame(Vec<u8>),
    /// A 0.2 client command travelling the wrong way (e.g. a REQUEST sent to a client).
    WrongDirection,
    /// No service frame.
    MissingService,
    /// An empty service name.
    EmptyService,
    /// No client address frame.
    MissingAddress,
    /// An empty client address.
    EmptyAddress,
    /// The frame after the client address is absent or not empty.
    MissingEnvelopeDelimiter,
    /// No body frame.
    MissingBody,
    /// Frames after a command that takes no more (HEARTBEAT, DISCONNECT, READY).
    TrailingFrames,
    /// A `"credit=…"` frame whose value is not a decimal number from 1 to 2^32-1.
    BadCredit(Vec<u8>),
}

impl fmt::Display for MdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MdpError::Empty => write!(f, "empty message"),
            MdpError::MissingDelimiter => write!(f, "0.1 message without leading empty frame"),
            MdpError::MissingHeader => write!(f, "no protocol header"),
            MdpError::UnknownHeader(h) => {
                write!(f, "unknown header {}", crate::msg::frame_text(h))
            }
            MdpError::MissingCommand => write!(f, "no command frame"),
            MdpError::UnknownCommand(c) => write!(f, "unknown command 0x{c:02X}"),
            MdpError::BadCommandFrame(c) => {
                write!(f, "command frame of {} bytes, expected 1", c.len())
            }
            MdpError::WrongDirection => write!(f, "command not allowed in this direction"),
            MdpError::MissingService => write!(f, "no service frame"),
            MdpError::EmptyService => write!(f, "empty service name"),
            MdpError::MissingAddress => write!(f, "no client address"),
            MdpError::EmptyAddress => write!(f, "empty client address"),
            MdpError::MissingEnvelopeDelimiter => {
                write!(f, "no empty frame after the client address")
            }
            MdpError::MissingBody => write!(f, "no body"),
            MdpError::TrailingFrames => write!(f, "unexpected frames after the command"),
            MdpError::BadCredit(frame) => {
                write!(f, "bad credit frame {}", crate::msg::frame_text(frame))
            }
        }
    }
}

impl std::error::Error for MdpError {}

/// Reads the header (skipping one leading empty frame) to tell a broker which decoder a peer
/// needs: `(version, is_worker)`. It validates nothing else, not even that a 0.1 message has
/// its leading empty frame; the decoder reports that.
pub fn peek_version(msg: &Message) -> Option<(Version, bool)> {
    let header = match msg.get(0)? {
        [] => msg.get(1)?,
        first => first,
    };
    match header {
        h if h == MDPC01 => Some((Version::V1, false)),
        h if h == MDPW01 => Some((Version::V1, true)),
        h if h == MDPC02 => Some((Version::V2, false)),
        h if h == MDPW02 => Some((Version::V2, true)),
        _ => None,
    }
}

/// A client's envelope: the frames in front of its MDP header (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub frames: Vec<Frame>,
    /// True if an empty delimiter separated the envelope from the header. A standard 0.2
    /// client behind a ROUTER/DEALER proxy has none (0.2 has no delimiter), and must get its
    /// reply the same way: `[envelope…]["MDPC02"]…`.
    pub delimited: bool,
}

/// Where the header of a client message with an envelope is: `(envelope frames, delimited)`
/// for `[envelope…]["" ]["MDPC01"|"MDPC02"]…` or `[envelope…]["MDPC02"][0x01]…` (a 0.2
/// REQUEST behind a proxy), with 1 to [`crate::msg::MAX_ENVELOPE`] envelope frames; `None`
/// for anything else, standard client messages (no envelope) included.
pub fn client_envelope_len<'a>(
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Option<(usize, bool)> {
    let mut frames = frames.into_iter().peekable();
    for n in 0..=crate::msg::MAX_ENVELOPE {
        let frame = frames.next()?;
        if frame.is_empty() {
            let header = frames.next()?;
            return (n > 0 && (header == MDPC01 || header == MDPC02)).then_some((n, true));
        }
        if n > 0 && frame == MDPC02 {
            return (frames.peek() == Some(&&[C02_REQUEST][..])).then_some((n, false));
        }
    }
    None
}

/// Takes a client's envelope off a message received after the ROUTER identity, leaving what
/// [`decode_client`] reads. A message without an envelope is left untouched (and gets an
/// empty, undelimited [`Envelope`], which [`wrap_client_envelope`] leaves out).
pub fn split_client_envelope(msg: &mut Message) -> Envelope {
    let Some((n, delimited)) = client_envelope_len(msg.iter()) else {
        return Envelope::default();
    };
    let frames = if delimited {
        let frames = msg.take_envelope().unwrap_or_default();
        msg.push_front(Vec::new());
        frames
    } else {
        (0..n).filter_map(|_| msg.pop_front()).collect()
    };
    Envelope { frames, delimited }
}

/// Puts a client's envelope back in front of an encoded client message (from
/// [`encode_client`]): `[envelope…]["" ][header…]` when the client sent a delimiter (a 0.2
/// message then has one it otherwise goes without), `[envelope…][header…]` when it did not.
/// With no envelope the message is unchanged.
pub fn wrap_client_envelope(envelope: Envelope, mut msg: Message) -> Message {
    if envelope.frames.is_empty() {
        return msg;
    }
    if msg.get(0).is_some_and(<[u8]>::is_empty) {
        msg.pop_front();
    }
    if envelope.delimited {
        msg.push_envelope(envelope.frames);
    } else {
        for frame in envelope.frames.into_iter().rev() {
            msg.push_front(frame);
        }
    }
    msg
}

/// Encodes a client message. 0.1 output starts with the empty frame, 0.2 output never does.
///
/// 0.1 has no command byte, so REQUEST and FINAL (REPLY) encode identically, and it has no
/// PARTIAL: callers must not send one to a 0.1 client (debug builds assert; release builds
/// send it as a REPLY). An empty body is sent as one empty frame, because MDP requires at
/// least one body frame.
pub fn encode_client(msg: ClientMsg) -> Message {
    let ClientMsg {
        version,
        command,
        service,
        body,
    } = msg;
    let mut out = non_empty_body(body);
    out.push_front(service);
    match version {
        Version::V1 => {
            debug_assert!(command != ClientCommand::Partial, "MDP 0.1 has no PARTIAL");
            out.push_front(MDPC01);
            out.push_front(Vec::new());
        }
        Version::V2 => {
            let byte = match command {
                ClientCommand::Request => C02_REQUEST,
                ClientCommand::Partial => C02_PARTIAL,
                ClientCommand::Final => C02_FINAL,
            };
            out.push_front(vec![byte]);
            out.push_front(MDPC02);
        }
    }
    out
}

/// Decodes a client message travelling in `direction`.
pub fn decode_client(mut msg: Message, direction: Direction) -> Result<ClientMsg, MdpError> {
    let version = strip_header(&mut msg, MDPC01, MDPC02)?;
    let command = match version {
        // No command byte in 0.1: the direction is the command.
        Version::V1 => match direction {
            Direction::ToBroker => ClientCommand::Request,
            Direction::FromBroker => ClientCommand::Final,
        },
        Version::V2 => {
            let command = match command_byte(&mut msg)? {
                C02_REQUEST => ClientCommand::Request,
                C02_PARTIAL => ClientCommand::Partial,
                C02_FINAL => ClientCommand::Final,
                other => return Err(MdpError::UnknownCommand(other)),
            };
            let to_broker = command == ClientCommand::Request;
            if to_broker != (direction == Direction::ToBroker) {
                return Err(MdpError::WrongDirection);
            }
            command
        }
    };
    let service = service(&mut msg)?;
    if msg.is_empty() {
        return Err(MdpError::MissingBody);
    }
    Ok(ClientMsg {
        version,
        command,
        service,
        body: msg,
    })
}

/// Encodes a worker message. 0.1 output starts with the empty frame, 0.2 output never does.
///
/// Commands that do not exist in the message's version are mapped to their nearest
/// equivalent rather than refused, so a caller holding a reply need not care which version
/// the worker speaks: a 0.2 `Reply` is sent as FINAL, and a 0.1 `Final` as REPLY. A 0.1
/// `Partial` is a caller bug (0.1 cannot stream; debug builds assert) and is sent as REPLY.
/// An empty body is sent as one empty frame, because MDP requires at least one body frame.
pub fn encode_worker(msg: WorkerMsg) -> Message {
    let WorkerMsg { version, command } = msg;
    let v1 = version == Version::V1;
    let (byte, mut out) = match command {
        WorkerCommand::Ready { service, credit } => (
            if v1 { W01_READY } else { W02_READY },
            match credit {
                None => Message::from_frames([service]),
                Some(n) => Message::from_frames([service, credit_frame(n)]),
            },
        ),
        WorkerCommand::Granted { credit } => (
            if v1 { W01_HEARTBEAT } else { W02_HEARTBEAT },
            Message::from_frames([credit_frame(credit)]),
        ),
        WorkerCommand::Request { client, body } => (
            if v1 { W01_REQUEST } else { W02_REQUEST },
            envelope(client, body),
        ),
        WorkerCommand::Reply { client, body } => (
            if v1 { W01_REPLY } else { W02_FINAL },
            envelope(client, body),
        ),
        WorkerCommand::Partial { client, body } => {
            debug_assert!(!v1, "MDP 0.1 has no PARTIAL");
            (
                if v1 { W01_REPLY } else { W02_PARTIAL },
                envelope(client, body),
            )
        }
        WorkerCommand::Final { client, body } => (
            if v1 { W01_REPLY } else { W02_FINAL },
            envelope(client, body),
        ),
        WorkerCommand::Heartbeat => (
            if v1 { W01_HEARTBEAT } else { W02_HEARTBEAT },
            Message::new(),
        ),
        WorkerCommand::Disconnect => (
            if v1 { W01_DISCONNECT } else { W02_DISCONNECT },
            Message::new(),
        ),
    };
    out.push_front(vec![byte]);
    out.push_front(version.worker_header());
    if v1 {
        out.push_front(Vec::new());
    }
    out
}

/// Decodes a worker message (either direction: the commands are unambiguous).
pub fn decode_worker(mut msg: Message) -> Result<WorkerMsg, MdpError> {
    let version = strip_header(&mut msg, MDPW01, MDPW02)?;
    let byte = command_byte(&mut msg)?;
    let command = match (version, byte) {
        (Version::V1, W01_READY) | (Version::V2, W02_READY) => {
            let service = service(&mut msg)?;
            let credit = credit(&mut msg)?;
            no_trailing(&msg)?;
            WorkerCommand::Ready { service, credit }
        }
        (Version::V1, W01_REQUEST) | (Version::V2, W02_REQUEST) => {
            let (client, body) = open_envelope(msg)?;
            WorkerCommand::Request { client, body }
        }
        (Version::V1, W01_REPLY) => {
            let (client, body) = open_envelope(msg)?;
            WorkerCommand::Reply { client, body }
        }
        (Version::V2, W02_PARTIAL) => {
            let (client, body) = open_envelope(msg)?;
            WorkerCommand::Partial { client, body }
        }
        (Version::V2, W02_FINAL) => {
            let (client, body) = open_envelope(msg)?;
            WorkerCommand::Final { client, body }
        }
        (Version::V1, W01_HEARTBEAT) | (Version::V2, W02_HEARTBEAT) => {
            let credit = credit(&mut msg)?;
            no_trailing(&msg)?;
            match credit {
                Some(credit) => WorkerCommand::Granted { credit },
                None => WorkerCommand::Heartbeat,
            }
        }
        (Version::V1, W01_DISCONNECT) | (Version::V2, W02_DISCONNECT) => {
            no_trailing(&msg)?;
            WorkerCommand::Disconnect
        }
        (_, other) => return Err(MdpError::UnknownCommand(other)),
    };
    Ok(WorkerMsg { version, command })
}

/// Removes the optional-or-required leading empty frame and the header, returning the
/// version. `v1`/`v2` are the headers of the sub-protocol being decoded.
fn strip_header(msg: &mut Message, v1: &[u8], v2: &[u8]) -> Result<Version, MdpError> {
    let first = msg.pop_front().ok_or(MdpError::Empty)?;
    let (delimited, header) = if first.is_empty() {
        (true, msg.pop_front().ok_or(MdpError::MissingHeader)?)
    } else {
        (false, first)
    };
    if header == v1 {
        if delimited {
            Ok(Version::V1)
        } else {
            Err(MdpError::MissingDelimiter)
        }
    } else if header == v2 {
        Ok(Version::V2)
    } else {
        Err(MdpError::UnknownHeader(header))
    }
}

fn command_byte(msg: &mut Message) -> Result<u8, MdpError> {
    let frame = msg.pop_front().ok_or(MdpError::MissingCommand)?;
    match frame.as_slice() {
        [byte] => Ok(*byte),
        _ => Err(MdpError::BadCommandFrame(frame)),
    }
}

fn service(msg: &mut Message) -> Result<Vec<u8>, MdpError> {
    let service = msg.pop_front().ok_or(MdpError::MissingService)?;
    if service.is_empty() {
        return Err(MdpError::EmptyService);
    }
    Ok(service)
}

/// What a credit frame starts with (see the module docs).
pub const CREDIT_PREFIX: &[u8] = b"credit=";

/// `"credit=N"`.
pub fn credit_frame(credit: u32) -> Frame {
    let mut frame = CREDIT_PREFIX.to_vec();
    frame.extend_from_slice(credit.to_string().as_bytes());
    frame
}

/// Takes a `"credit=N"` frame off the front of `msg` if one is there. Any other frame is
/// left for [`no_trailing`] to refuse.
fn credit(msg: &mut Message) -> Result<Option<u32>, MdpError> {
    match msg.get(0) {
        Some(frame) if frame.starts_with(CREDIT_PREFIX) => {}
        _ => return Ok(None),
    }
    let frame = msg.pop_front().unwrap_or_default();
    let digits = &frame[CREDIT_PREFIX.len()..];
    let value = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u32>().ok())
        .filter(|n| *n >= 1);
    match value {
        Some(n) => Ok(Some(n)),
        None => Err(MdpError::BadCredit(frame)),
    }
}

fn no_trailing(msg: &Message) -> Result<(), MdpError> {
    if msg.is_empty() {
        Ok(())
    } else {
        Err(MdpError::TrailingFrames)
    }
}

/// Splits `client, "", body…` into the address and the body.
fn open_envelope(mut msg: Message) -> Result<(Frame, Message), MdpError> {
    let client = msg.pop_front().ok_or(MdpError::MissingAddress)?;
    if client.is_empty() {
        return Err(MdpError::EmptyAddress);
    }
    match msg.pop_front() {
        Some(delimiter) if delimiter.is_empty() => {}
        _ => return Err(MdpError::MissingEnvelopeDelimiter),
    }
    if msg.is_empty() {
        return Err(MdpError::MissingBody);
    }
    Ok((client, msg))
}

/// Builds `client, "", body…`.
fn envelope(client: Frame, body: Message) -> Message {
    let mut out = non_empty_body(body);
    out.push_front(Vec::new());
    out.push_front(client);
    out
}

/// A body of no frames would make a message every peer drops; send one empty frame instead.
fn non_empty_body(body: Message) -> Message {
    if body.is_empty() {
        Message::from_frames([Vec::new()])
    } else {
        body
    }
}

/// What randomised tests of MDP peers draw frames from: every header and command byte, and
/// empty frames (twice as likely), as a confused or hostile peer would send them.
#[cfg(test)]
pub(crate) const FUZZ_FRAMES: &[&[u8]] = &[
    b"",
    b"",
    MDPC01,
    MDPW01,
    MDPC02,
    MDPW02,
    &[0x01],
    &[0x02],
    &[0x03],
    &[0x04],
    &[0x05],
    &[0x06],
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Xorshift;

    #[test]
    fn client_envelopes_are_frames_before_the_delimiter_of_a_client_message() {
        let f = |frames: &[&[u8]]| client_envelope_len(frames.iter().copied());
        assert_eq!(f(&[b"rid", b"", b"MDPC01", b"echo", b"x"]), Some((1, true)));
        assert_eq!(
            f(&[b"hop", b"rid", b"", b"MDPC02", &[1], b"echo", b"x"]),
            Some((2, true))
        );
        // A standard 0.2 REQUEST behind a proxy: no delimiter.
        assert_eq!(
            f(&[b"hop", b"MDPC02", &[1], b"echo", b"x"]),
            Some((1, false))
        );
        assert_eq!(f(&[b"hop", b"MDPC02", &[3], b"echo", b"x"]), None);
        // Standard messages have no envelope.
        assert_eq!(f(&[b"", b"MDPC01", b"echo", b"x"]), None);
        assert_eq!(f(&[b"MDPC02", &[1], b"echo", b"x"]), None);
        // Workers never have one; nor does anything that is not MDP after the delimiter.
        assert_eq!(f(&[b"hop", b"", b"MDPW01", &[1], b"echo"]), None);
        assert_eq!(f(&[b"hop", b"MDPW02", &[1], b"echo"]), None);
        assert_eq!(f(&[b"hop", b"", b"hello"]), None);
        assert_eq!(
            f(&[b"hop", b"MDPC01", b"echo"]),
            None,
            "0.1 needs its delimiter"
        );
        assert_eq!(f(&[b"hop", b"rid"]), None);
        assert_eq!(f(&[b"hop", b""]), None);
        assert_eq!(f(&[]), None);
        let deep: Vec<&[u8]> = std::iter::repeat_n(&b"h"[..], crate::msg::MAX_ENVELOPE + 1)
            .chain([&b""[..], b"MDPC01", b"s", b"x"])
            .collect();
        assert_eq!(f(&deep), None, "bounded");
    }

    #[test]
    fn a_client_envelope_is_split_off_and_put_back_on_the_reply() {
        let mut msg = Message::from_frames([
            b"hop".to_vec(),
            b"rid".to_vec(),
            vec![],
            MDPC01.to_vec(),
            b"echo".to_vec(),
            b"x".to_vec(),
        ]);
        let envelope = split_client_envelope(&mut msg);
        assert_eq!(envelope.frames, vec![b"hop".to_vec(), b"rid".to_vec()]);
        assert!(envelope.delimited);
        let request = decode_client(msg, Direction::ToBroker).unwrap();
        assert_eq!(request.body.text(), "x");
        let reply = |version| {
            encode_client(ClientMsg {
                version,
                command: ClientCommand::Final,
                service: b"echo".to_vec(),
                body: Message::from_frames([b"X".to_vec()]),
            })
        };
        let v1 = wrap_client_envelope(envelope.clone(), reply(Version::V1));
        let frames: Vec<&[u8]> = v1.iter().collect();
        assert_eq!(frames, [&b"hop"[..], b"rid", b"", b"MDPC01", b"echo", b"X"]);
        let v2 = wrap_client_envelope(envelope, reply(Version::V2));
        let frames: Vec<&[u8]> = v2.iter().collect();
        assert_eq!(
            frames,
            [&b"hop"[..], b"rid", b"", b"MDPC02", &[3], b"echo", b"X"]
        );
        // No envelope: standard frames, untouched both ways.
        let mut plain = reply(Version::V2);
        assert!(split_client_envelope(&mut plain).frames.is_empty());
        assert_eq!(
            wrap_client_envelope(Envelope::default(), plain.clone()),
            plain
        );
    }

    #[test]
    fn a_standard_v2_client_behind_a_proxy_gets_its_reply_without_a_delimiter() {
        let mut msg = Message::from_frames([
            b"hop".to_vec(),
            MDPC02.to_vec(),
            vec![C02_REQUEST],
            b"echo".to_vec(),
            b"x".to_vec(),
        ]);
        let envelope = split_client_envelope(&mut msg);
        assert_eq!(envelope.frames, vec![b"hop".to_vec()]);
        assert!(!envelope.delimited);
        assert_eq!(
            decode_client(msg, Direction::ToBroker).unwrap().body.text(),
            "x"
        );
        let reply = encode_client(ClientMsg {
            version: Version::V2,
            command: ClientCommand::Final,
            service: b"echo".to_vec(),
            body: Message::from_frames([b"X".to_vec()]),
        });
        let wire = wrap_client_envelope(envelope, reply);
        let frames: Vec<&[u8]> = wire.iter().collect();
        assert_eq!(frames, [&b"hop"[..], b"MDPC02", &[3], b"echo", b"X"]);
    }

    use crate::testkit::frames as m;

    fn client(
        version: Version,
        command: ClientCommand,
        service: &[u8],
        body: &[&[u8]],
    ) -> ClientMsg {
        ClientMsg {
            version,
            command,
            service: service.to_vec(),
            body: m(body),
        }
    }

    fn worker(version: Version, command: WorkerCommand) -> WorkerMsg {
        WorkerMsg { version, command }
    }

    fn body(frames: &[&[u8]]) -> Message {
        m(frames)
    }

    /// Encodes `msg`, checks the frames, decodes them back, and checks the 0.2 variant with a
    /// leading empty frame decodes too.
    fn check_client(msg: ClientMsg, direction: Direction, wire: &[&[u8]]) {
        let wire = m(wire);
        assert_eq!(encode_client(msg.clone()), wire);
        assert_eq!(decode_client(wire.clone(), direction), Ok(msg.clone()));
        if msg.version == Version::V2 {
            let mut padded = wire;
            padded.push_front(Vec::new());
            assert_eq!(decode_client(padded, direction), Ok(msg));
        }
    }

    fn check_worker(msg: WorkerMsg, wire: &[&[u8]]) {
        let wire = m(wire);
        assert_eq!(encode_worker(msg.clone()), wire);
        assert_eq!(decode_worker(wire.clone()), Ok(msg.clone()));
        if msg.version == Version::V2 {
            let mut padded = wire;
            padded.push_front(Vec::new());
            assert_eq!(decode_worker(padded), Ok(msg));
        }
    }

    // ---- client, 0.1 ----

    #[test]
    fn v1_client_request() {
        check_client(
            client(Version::V1, ClientCommand::Request, b"echo", &[b"hi"]),
            Direction::ToBroker,
            &[b"", b"MDPC01", b"echo", b"hi"],
        );
    }

    #[test]
    fn v1_client_reply_is_final() {
        check_client(
            client(
                Version::V1,
                ClientCommand::Final,
                b"echo",
                &[b"a", b"", b"c"],
            ),
            Direction::FromBroker,
            &[b"", b"MDPC01", b"echo", b"a", b"", b"c"],
        );
    }

    #[test]
    fn v1_request_and_reply_encode_identically() {
        let req = encode_client(client(Version::V1, ClientCommand::Request, b"s", &[b"x"]));
        let rep = encode_client(client(Version::V1, ClientCommand::Final, b"s", &[b"x"]));
        assert_eq!(req, rep);
        assert_eq!(req.get(0), Some(&b""[..]));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "0.1 has no PARTIAL")]
    fn v1_client_partial_is_a_caller_bug() {
        encode_client(client(Version::V1, ClientCommand::Partial, b"s", &[b"x"]));
    }

    // ---- client, 0.2 ----

    #[test]
    fn v2_client_request() {
        check_client(
            client(Version::V2, ClientCommand::Request, b"echo", &[b"hi"]),
            Direction::ToBroker,
            &[b"MDPC02", &[0x01], b"echo", b"hi"],
        );
    }

    #[test]
    fn v2_client_partial() {
        check_client(
            client(
                Version::V2,
                ClientCommand::Partial,
                b"echo",
                &[b"p1", b"p2"],
            ),
            Direction::FromBroker,
            &[b"MDPC02", &[0x02], b"echo", b"p1", b"p2"],
        );
    }

    #[test]
    fn v2_client_final() {
        check_client(
            client(Version::V2, ClientCommand::Final, b"echo", &[b""]),
            Direction::FromBroker,
            &[b"MDPC02", &[0x03], b"echo", b""],
        );
    }

    #[test]
    fn v2_client_never_starts_with_empty_frame() {
        for command in [
            ClientCommand::Request,
            ClientCommand::Partial,
            ClientCommand::Final,
        ] {
            let out = encode_client(client(Version::V2, command, b"s", &[b"x"]));
            assert_eq!(out.get(0), Some(MDPC02));
        }
    }

    #[test]
    fn client_empty_body_is_sent_as_one_empty_frame() {
        let out = encode_client(client(Version::V2, ClientCommand::Request, b"s", &[]));
        assert_eq!(out, m(&[b"MDPC02", &[0x01], b"s", b""]));
        let out = encode_client(client(Version::V1, ClientCommand::Request, b"s", &[]));
        assert_eq!(out, m(&[b"", b"MDPC01", b"s", b""]));
    }

    #[test]
    fn v2_client_wrong_direction() {
        let to = Direction::ToBroker;
        let from = Direction::FromBroker;
        assert_eq!(
            decode_client(m(&[b"MDPC02", &[0x01], b"s", b"x"]), from),
            Err(MdpError::WrongDirection)
        );
        assert_eq!(
            decode_client(m(&[b"MDPC02", &[0x02], b"s", b"x"]), to),
            Err(MdpError::WrongDirection)
        );
        assert_eq!(
            decode_client(m(&[b"MDPC02", &[0x03], b"s", b"x"]), to),
            Err(MdpError::WrongDirection)
        );
    }

    #[test]
    fn client_malformed() {
        let to = Direction::ToBroker;
        let cases: &[(&[&[u8]], MdpError)] = &[
            (&[], MdpError::Empty),
            (&[b""], MdpError::MissingHeader),
            (&[b"MDPC01", b"s", b"x"], MdpError::MissingDelimiter),
            (
                &[b"", b"MDPC03", b"s", b"x"],
                MdpError::UnknownHeader(b"MDPC03".to_vec()),
            ),
            (
                &[b"", b"MDPW01", b"s", b"x"],
                MdpError::UnknownHeader(b"MDPW01".to_vec()),
            ),
            (
                &[b"MDPW02", &[1], b"s", b"x"],
                MdpError::UnknownHeader(b"MDPW02".to_vec()),
            ),
            (&[b"", b"", b"MDPC02"], MdpError::UnknownHeader(vec![])),
            (&[b"", b"MDPC01"], MdpError::MissingService),
            (&[b"", b"MDPC01", b""], MdpError::EmptyService),
            (&[b"", b"MDPC01", b"", b"x"], MdpError::EmptyService),
            (&[b"", b"MDPC01", b"s"], MdpError::MissingBody),
            (&[b"MDPC02"], MdpError::MissingCommand),
            (&[b"", b"MDPC02"], MdpError::MissingCommand),
            (
                &[b"MDPC02", &[0x04], b"s", b"x"],
                MdpError::UnknownCommand(4),
            ),
            (
                &[b"MDPC02", &[0x00], b"s", b"x"],
                MdpError::UnknownCommand(0),
            ),
            (
                &[b"MDPC02", &[1, 1], b"s", b"x"],
                MdpError::BadCommandFrame(vec![1, 1]),
            ),
            (
                &[b"MDPC02", b"", b"s", b"x"],
                MdpError::BadCommandFrame(vec![]),
            ),
            (&[b"MDPC02", &[1]], MdpError::MissingService),
            (&[b"MDPC02", &[1], b"", b"x"], MdpError::EmptyService),
            (&[b"MDPC02", &[1], b"s"], MdpError::MissingBody),
        ];
        for (wire, err) in cases {
            assert_eq!(decode_client(m(wire), to), Err(err.clone()), "{wire:?}");
        }
    }

    // ---- worker, 0.1 ----

    #[test]
    fn v1_worker_ready() {
        check_worker(
            worker(
                Version::V1,
                WorkerCommand::Ready {
                    service: b"echo".to_vec(),
                    credit: None,
                },
            ),
            &[b"", b"MDPW01", &[0x01], b"echo"],
        );
    }

    #[test]
    fn ready_with_credit_and_its_grant_in_both_versions() {
        check_worker(
            worker(
                Version::V1,
                WorkerCommand::Ready {
                    service: b"echo".to_vec(),
                    credit: Some(10),
                },
            ),
            &[b"", b"MDPW01", &[0x01], b"echo", b"credit=10"],
        );
        check_worker(
            worker(
                Version::V2,
                WorkerCommand::Ready {
                    service: b"echo".to_vec(),
                    credit: Some(1024),
                },
            ),
            &[b"MDPW02", &[0x01], b"echo", b"credit=1024"],
        );
        check_worker(
            worker(Version::V1, WorkerCommand::Granted { credit: 10 }),
            &[b"", b"MDPW01", &[0x04], b"credit=10"],
        );
        check_worker(
            worker(Version::V2, WorkerCommand::Granted { credit: 1 }),
            &[b"MDPW02", &[0x05], b"credit=1"],
        );
        check_worker(
            worker(Version::V1, WorkerCommand::Granted { credit: u32::MAX }),
            &[b"", b"MDPW01", &[0x04], b"credit=4294967295"],
        );
    }

    #[test]
    fn malformed_credit_frames_are_refused() {
        let bad = |frame: &[u8]| MdpError::BadCredit(frame.to_vec());
        let cases: Vec<(&[&[u8]], MdpError)> = vec![
            (&[b"", b"MDPW01", &[1], b"s", b"credit="], bad(b"credit=")),
            (&[b"", b"MDPW01", &[1], b"s", b"credit=0"], bad(b"credit=0")),
            (&[b"MDPW02", &[1], b"s", b"credit=-1"], bad(b"credit=-1")),
            (&[b"MDPW02", &[1], b"s", b"credit=+1"], bad(b"credit=+1")),
            (&[b"MDPW02", &[1], b"s", b"credit= 1"], bad(b"credit= 1")),
            (
                &[b"", b"MDPW01", &[1], b"s", b"credit=4294967296"],
                bad(b"credit=4294967296"),
            ),
            (&[b"", b"MDPW01", &[4], b"credit=x"], bad(b"credit=x")),
            (&[b"MDPW02", &[5], b"credit=\xff"], bad(b"credit=\xff")),
            // one credit frame, and nothing after it
            (
                &[b"", b"MDPW01", &[1], b"s", b"credit=1", b""],
                MdpError::TrailingFrames,
            ),
            (
                &[b"MDPW02", &[5], b"credit=1", b"credit=1"],
                MdpError::TrailingFrames,
            ),
            // a credit frame where the service belongs is a service name
            (
                &[b"MDPW02", &[1], b"credit=1", b"x"],
                MdpError::TrailingFrames,
            ),
            // DISCONNECT takes none
            (&[b"MDPW02", &[6], b"credit=1"], MdpError::TrailingFrames),
        ];
        for (wire, err) in cases {
            assert_eq!(decode_worker(m(wire)), Err(err.clone()), "{wire:?}");
        }
    }

    #[test]
    fn v1_worker_request() {
        check_worker(
            worker(
                Version::V1,
                WorkerCommand::Request {
                    client: b"c1".to_vec(),
                    body: body(&[b"hi", b""]),
                },
            ),
            &[b"", b"MDPW01", &[0x02], b"c1", b"", b"hi", b""],
        );
    }

    #[test]
    fn v1_worker_reply() {
        check_worker(
            worker(
                Version::V1,
                WorkerCommand::Reply {
                    client: b"c1".to_vec(),
                    body: body(&[b"ok"]),
                },
            ),
            &[b"", b"MDPW01", &[0x03], b"c1", b"", b"ok"],
        );
    }

    #[test]
    fn v1_worker_heartbeat_and_disconnect() {
        check_worker(
            worker(Version::V1, WorkerCommand::Heartbeat),
            &[b"", b"MDPW01", &[0x04]],
        );
        check_worker(
            worker(Version::V1, WorkerCommand::Disconnect),
            &[b"", b"MDPW01", &[0x05]],
        );
    }

    #[test]
    fn v1_final_is_sent_as_reply() {
        let out = encode_worker(worker(
            Version::V1,
            WorkerCommand::Final {
                client: b"c".to_vec(),
                body: body(&[b"x"]),
            },
        ));
        assert_eq!(out, m(&[b"", b"MDPW01", &[0x03], b"c", b"", b"x"]));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "0.1 has no PARTIAL")]
    fn v1_worker_partial_is_a_caller_bug() {
        encode_worker(worker(
            Version::V1,
            WorkerCommand::Partial {
                client: b"c".to_vec(),
                body: body(&[b"x"]),
            },
        ));
    }

    // ---- worker, 0.2 ----

    #[test]
    fn v2_worker_ready() {
        check_worker(
            worker(
                Version::V2,
                WorkerCommand::Ready {
                    service: b"echo".to_vec(),
                    credit: None,
                },
            ),
            &[b"MDPW02", &[0x01], b"echo"],
        );
    }

    #[test]
    fn v2_worker_request() {
        check_worker(
            worker(
                Version::V2,
                WorkerCommand::Request {
                    client: b"c1".to_vec(),
                    body: body(&[b"hi"]),
                },
            ),
            &[b"MDPW02", &[0x02], b"c1", b"", b"hi"],
        );
    }

    #[test]
    fn v2_worker_partial() {
        check_worker(
            worker(
                Version::V2,
                WorkerCommand::Partial {
                    client: b"c1".to_vec(),
                    body: body(&[b"p", b"q"]),
                },
            ),
            &[b"MDPW02", &[0x03], b"c1", b"", b"p", b"q"],
        );
    }

    #[test]
    fn v2_worker_final() {
        check_worker(
            worker(
                Version::V2,
                WorkerCommand::Final {
                    client: b"c1".to_vec(),
                    body: body(&[b""]),
                },
            ),
            &[b"MDPW02", &[0x04], b"c1", b"", b""],
        );
    }

    #[test]
    fn v2_worker_heartbeat_and_disconnect() {
        check_worker(
            worker(Version::V2, WorkerCommand::Heartbeat),
            &[b"MDPW02", &[0x05]],
        );
        check_worker(
            worker(Version::V2, WorkerCommand::Disconnect),
            &[b"MDPW02", &[0x06]],
        );
    }

    #[test]
    fn v2_reply_is_sent_as_final() {
        let out = encode_worker(worker(
            Version::V2,
            WorkerCommand::Reply {
                client: b"c".to_vec(),
                body: body(&[b"x"]),
            },
        ));
        assert_eq!(out, m(&[b"MDPW02", &[0x04], b"c", b"", b"x"]));
    }

    #[test]
    fn worker_empty_body_is_sent_as_one_empty_frame() {
        let out = encode_worker(worker(
            Version::V2,
            WorkerCommand::Request {
                client: b"c".to_vec(),
                body: Message::new(),
            },
        ));
        assert_eq!(out, m(&[b"MDPW02", &[0x02], b"c", b"", b""]));
    }

    #[test]
    fn version_specific_command_bytes() {
        // 0x03 is REPLY in 0.1 and PARTIAL in 0.2; 0x06 only exists in 0.2.
        let wire = |h: &[u8], c: u8| m(&[b"", h, &[c], b"c", b"", b"x"]);
        assert!(matches!(
            decode_worker(wire(MDPW01, 3)).unwrap().command,
            WorkerCommand::Reply { .. }
        ));
        assert!(matches!(
            decode_worker(wire(MDPW02, 3)).unwrap().command,
            WorkerCommand::Partial { .. }
        ));
        assert!(matches!(
            decode_worker(wire(MDPW02, 4)).unwrap().command,
            WorkerCommand::Final { .. }
        ));
        // 0x04 is HEARTBEAT in 0.1, so an envelope after it is trailing.
        assert_eq!(
            decode_worker(wire(MDPW01, 4)),
            Err(MdpError::TrailingFrames)
        );
        assert_eq!(
            decode_worker(m(&[b"", b"MDPW01", &[6]])),
            Err(MdpError::UnknownCommand(6))
        );
        assert_eq!(
            decode_worker(m(&[b"MDPW02", &[7]])),
            Err(MdpError::UnknownCommand(7))
        );
    }

    #[test]
    fn worker_malformed() {
        let cases: &[(&[&[u8]], MdpError)] = &[
            (&[], MdpError::Empty),
            (&[b""], MdpError::MissingHeader),
            (&[b"MDPW01", &[4]], MdpError::MissingDelimiter),
            (
                &[b"", b"MDPW03", &[4]],
                MdpError::UnknownHeader(b"MDPW03".to_vec()),
            ),
            (
                &[b"", b"MDPC01", &[4]],
                MdpError::UnknownHeader(b"MDPC01".to_vec()),
            ),
            (
                &[b"MDPC02", &[5]],
                MdpError::UnknownHeader(b"MDPC02".to_vec()),
            ),
            (&[b"", b"MDPW01"], MdpError::MissingCommand),
            (&[b"MDPW02"], MdpError::MissingCommand),
            (&[b"", b"MDPW01", &[0]], MdpError::UnknownCommand(0)),
            (
                &[b"", b"MDPW01", &[4, 0]],
                MdpError::BadCommandFrame(vec![4, 0]),
            ),
            (&[b"MDPW02", b""], MdpError::BadCommandFrame(vec![])),
            (
                &[b"MDPW02", b"READY", b"s"],
                MdpError::BadCommandFrame(b"READY".to_vec()),
            ),
            // READY
            (&[b"", b"MDPW01", &[1]], MdpError::MissingService),
            (&[b"", b"MDPW01", &[1], b""], MdpError::EmptyService),
            (
                &[b"", b"MDPW01", &[1], b"s", b"t"],
                MdpError::TrailingFrames,
            ),
            (&[b"MDPW02", &[1]], MdpError::MissingService),
            (&[b"MDPW02", &[1], b""], MdpError::EmptyService),
            (&[b"MDPW02", &[1], b"s", b""], MdpError::TrailingFrames),
            // envelope-carrying commands, each position missing or wrong
            (&[b"", b"MDPW01", &[2]], MdpError::MissingAddress),
            (
                &[b"", b"MDPW01", &[2], b"", b"", b"x"],
                MdpError::EmptyAddress,
            ),
            (
                &[b"", b"MDPW01", &[2], b"c"],
                MdpError::MissingEnvelopeDelimiter,
            ),
            (
                &[b"", b"MDPW01", &[2], b"c", b"x"],
                MdpError::MissingEnvelopeDelimiter,
            ),
            (&[b"", b"MDPW01", &[2], b"c", b""], MdpError::MissingBody),
            (&[b"", b"MDPW01", &[3]], MdpError::MissingAddress),
            (&[b"", b"MDPW01", &[3], b"", b"x"], MdpError::EmptyAddress),
            (
                &[b"", b"MDPW01", &[3], b"c"],
                MdpError::MissingEnvelopeDelimiter,
            ),
            (&[b"", b"MDPW01", &[3], b"c", b""], MdpError::MissingBody),
            (&[b"MDPW02", &[2]], MdpError::MissingAddress),
            (&[b"MDPW02", &[2], b"", b""], MdpError::EmptyAddress),
            (
                &[b"MDPW02", &[2], b"c", b"x", b"y"],
                MdpError::MissingEnvelopeDelimiter,
            ),
            (&[b"MDPW02", &[2], b"c", b""], MdpError::MissingBody),
            (&[b"MDPW02", &[3]], MdpError::MissingAddress),
            (&[b"MDPW02", &[3], b"c"], MdpError::MissingEnvelopeDelimiter),
            (&[b"MDPW02", &[3], b"c", b""], MdpError::MissingBody),
            (&[b"MDPW02", &[4]], MdpError::MissingAddress),
            (&[b"MDPW02", &[4], b"", b"", b"x"], MdpError::EmptyAddress),
            (&[b"MDPW02", &[4], b"c", b""], MdpError::MissingBody),
            // HEARTBEAT / DISCONNECT take nothing more
            (&[b"", b"MDPW01", &[4], b""], MdpError::TrailingFrames),
            (&[b"", b"MDPW01", &[5], b"x"], MdpError::TrailingFrames),
            (&[b"MDPW02", &[5], b""], MdpError::TrailingFrames),
            (&[b"MDPW02", &[6], b"x", b"y"], MdpError::TrailingFrames),
        ];
        for (wire, err) in cases {
            assert_eq!(decode_worker(m(wire)), Err(err.clone()), "{wire:?}");
        }
    }

    #[test]
    fn peek_version_reads_the_header() {
        assert_eq!(
            peek_version(&m(&[b"", b"MDPC01", b"s"])),
            Some((Version::V1, false))
        );
        assert_eq!(
            peek_version(&m(&[b"", b"MDPW01", &[4]])),
            Some((Version::V1, true))
        );
        assert_eq!(
            peek_version(&m(&[b"MDPC02", &[1]])),
            Some((Version::V2, false))
        );
        assert_eq!(
            peek_version(&m(&[b"", b"MDPC02"])),
            Some((Version::V2, false))
        );
        assert_eq!(peek_version(&m(&[b"MDPW02"])), Some((Version::V2, true)));
        assert_eq!(
            peek_version(&m(&[b"", b"MDPW02"])),
            Some((Version::V2, true))
        );
        // It does not validate the 0.1 delimiter; the decoder does.
        assert_eq!(peek_version(&m(&[b"MDPW01"])), Some((Version::V1, true)));
        assert_eq!(peek_version(&Message::new()), None);
        assert_eq!(peek_version(&m(&[b""])), None);
        assert_eq!(peek_version(&m(&[b"", b"", b"MDPC01"])), None);
        assert_eq!(peek_version(&m(&[b"MDPX01"])), None);
        assert_eq!(peek_version(&m(&[b"hello", b"", b"x"])), None);
    }

    #[test]
    fn version_headers() {
        assert_eq!(Version::V1.client_header(), b"MDPC01");
        assert_eq!(Version::V1.worker_header(), b"MDPW01");
        assert_eq!(Version::V2.client_header(), b"MDPC02");
        assert_eq!(Version::V2.worker_header(), b"MDPW02");
    }

    #[test]
    fn errors_display_a_reason() {
        assert_eq!(
            MdpError::UnknownCommand(7).to_string(),
            "unknown command 0x07"
        );
        assert_eq!(
            MdpError::UnknownHeader(b"XYZ".to_vec()).to_string(),
            "unknown header XYZ"
        );
        assert_eq!(
            MdpError::TrailingFrames.to_string(),
            "unexpected frames after the command"
        );
    }

    fn random_frame(rng: &mut Xorshift) -> Frame {
        let ours: &[&[u8]] = &[b"svc", b"c1"];
        let pool = [FUZZ_FRAMES, ours].concat();
        if rng.below(3) > 0 {
            pool[rng.below(pool.len() as u64)].to_vec()
        } else {
            (0..rng.below(9)).map(|_| rng.next_u64() as u8).collect()
        }
    }

    #[test]
    fn random_input_never_panics_and_ok_round_trips() {
        let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
        let (mut client_ok, mut worker_ok) = (0, 0);
        for _ in 0..10_000 {
            let count = rng.below(7);
            let mut frames: Vec<Frame> = (0..count).map(|_| random_frame(&mut rng)).collect();
            // Bias the front toward a real header so the later positions get exercised.
            if count >= 2 && rng.below(2) == 0 {
                let headers: [&[u8]; 4] = [MDPC01, MDPW01, MDPC02, MDPW02];
                let at = rng.below(2);
                frames[at] = headers[rng.below(4)].to_vec();
                if at == 1 {
                    frames[0] = Vec::new();
                }
                if at + 1 < count && rng.below(4) > 0 {
                    frames[at + 1] = vec![1 + rng.below(6) as u8];
                }
            }
            let msg = Message::from_frames(frames);
            for direction in [Direction::ToBroker, Direction::FromBroker] {
                if let Ok(decoded) = decode_client(msg.clone(), direction) {
                    client_ok += 1;
                    let again = decode_client(encode_client(decoded.clone()), direction);
                    assert_eq!(again, Ok(decoded), "{msg:?}");
                }
            }
            if let Ok(decoded) = decode_worker(msg.clone()) {
                worker_ok += 1;
                let again = decode_worker(encode_worker(decoded.clone()));
                assert_eq!(again, Ok(decoded), "{msg:?}");
            }
        }
        // The generator must reach valid messages, or the round-trip half tests nothing.
        assert!(client_ok > 100, "only {client_ok} valid client messages");
        assert!(worker_ok > 100, "only {worker_ok} valid worker messages");
    }
}
